"""ACKs: building them for senders, reading receivers' ACKs, and the delivery classifier table."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hl7apy import load_reference
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message as hl7apy_parse

from hl7.ack import DEFAULT_POLICY
from hl7.ack import Ack
from hl7.ack import AckPolicy
from hl7.ack import ErrorDetail
from hl7.ack import Outcome
from hl7.ack import build_ack
from hl7.ack import classify
from hl7.ack import parse_ack
from hl7.er7 import ParseError
from hl7.er7 import parse_message

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hl7"
NOW = dt.datetime(2026, 11, 26, 9, 30, 13, tzinfo=dt.UTC)
ORIGINAL = (
    b"MSH|^~\\&|KIOSK_VITALS^0012A3FFFE4B5C6D^EUI-64|FAMCLINIC|EHR|FAMCLINIC|20261126093012+0000||"
    b"ORU^R01^ORU_R01|KV20261126093012-0001|P|2.6|||AL|NE||UNICODE UTF-8\r"
    b"PID|||004711^^^FAMCLINIC^MR||M\xc3\xbcller^Zo\xc3\xab\r"
)


def test_ack_swaps_sender_and_receiver_and_echoes_control_id() -> None:
    ack = parse_message(build_ack(ORIGINAL, "CA", control_id="ACK1", now=NOW))
    assert ack.segment_names == ("MSH", "MSA")
    assert ack.msh.raw(3) == "EHR"
    assert ack.msh.raw(4) == "FAMCLINIC"
    assert ack.msh.raw(5) == "KIOSK_VITALS^0012A3FFFE4B5C6D^EUI-64"
    assert ack.msh.raw(9) == "ACK^R01^ACK"
    assert ack.value("MSH", 7) == "20261126093013+0000"
    assert ack.value("MSH", 10) == "ACK1"
    assert (ack.value("MSH", 11), ack.value("MSH", 12)) == ("P", "2.6")
    assert ack.value("MSA", 1) == "CA"
    assert ack.value("MSA", 2) == "KV20261126093012-0001"


def test_ack_errors_are_located_coded_and_escaped() -> None:
    errors = [
        ErrorDetail("Name | contains ^ delimiters\rand a CR", code="102", segment="PID", sequence=1, field=5),
        ErrorDetail("Look-up service down", severity="W"),
    ]
    data = build_ack(ORIGINAL, "AE", errors=errors, control_id="ACK2", now=NOW)
    ack = parse_message(data)
    first, second = ack.all("ERR")
    assert first.raw(2) == "PID^1^5"
    assert first.raw(3) == "102^Data type error^HL70357"
    assert first.value(4) == "E"
    assert first.value(8) == "Name | contains ^ delimiters\rand a CR"
    assert second.raw(2) == ""
    assert second.raw(3) == "207^Application internal error^HL70357"
    assert second.value(4) == "W"
    assert len(ack.segments) == 4


@pytest.mark.parametrize("code", ["AA", "AE", "AR", "CA", "CE", "CR"])
def test_every_ack_passes_hl7apy_strict_validation(code: str) -> None:
    errors = [] if code in ("AA", "CA") else [ErrorDetail("bad & wrong", code="101", segment="PID",
                                                            sequence=1, field=3)]
    data = build_ack(ORIGINAL, code, errors=errors, control_id="ACK3", now=NOW)
    hl7apy_parse(data.decode(), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True).validate()


def test_ack_from_custom_delimiters_uses_ours() -> None:
    original = b"MSH^~\\|&^SEND~X^FAC^RECV^FAC^20261126100000+0000^^ADT~A04~ADT_A01^CUST|S|1^P^2.5\r"
    ack = parse_message(build_ack(original, "AA", control_id="A", now=NOW))
    assert ack.delimiters.field == "|"
    assert ack.msh.raw(5) == "SEND^X"
    assert ack.msh.raw(9) == "ACK^A04^ACK"
    assert ack.value("MSA", 2) == "CUST~1"
    assert ack.msh.raw(12) == "2.5"


def test_ack_for_header_with_control_characters_is_still_built() -> None:
    # No MSH-18: the sender writes ASCII, so the ACK is ASCII too and U+FFFD goes out as "?".
    original = b"MSH|^~\\&|SEND\x0bER|FAC|||20261126||ADT^A04|ID\x1c1|P\r"
    ack = parse_message(build_ack(original, "AR", control_id="A", now=NOW))
    assert ack.value("MSH", 5) == "SEND?ER"
    assert ack.value("MSA", 2) == "ID?1"
    assert ack.value("MSH", 12) == "2.6"
    utf8 = original.replace(b"|P\r", b"|P|2.5||||||UNICODE UTF-8\r")
    ack = parse_message(build_ack(utf8, "AR", control_id="A", now=NOW))
    assert (ack.value("MSH", 5), ack.value("MSH", 18)) == ("SEND\ufffdER", "UNICODE UTF-8")


def test_error_text_quoting_control_characters_is_still_sent() -> None:
    data = build_ack(ORIGINAL, "AE", errors=[ErrorDetail("bad byte \x1c in PID-5")], control_id="A", now=NOW)
    assert parse_ack(data).errors == ("bad byte \ufffd in PID-5",)


def test_ack_accepts_a_parsed_message() -> None:
    data = build_ack(parse_message(ORIGINAL), "AA", control_id="A", now=NOW)
    assert parse_ack(data) == Ack("AA", "KV20261126093012-0001")


def test_build_ack_refuses_unknown_code_and_naive_time() -> None:
    with pytest.raises(ValueError, match="acknowledgment code"):
        build_ack(ORIGINAL, "XX", control_id="A", now=NOW)
    with pytest.raises(ValueError, match="aware"):
        build_ack(ORIGINAL, "AA", control_id="A", now=NOW.replace(tzinfo=None))


@pytest.mark.parametrize(("kwargs", "match"), [({"code": "999"}, "0357"), ({"severity": "X"}, "severity")])
def test_error_detail_validates_tables(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ErrorDetail("text", **kwargs)


def test_build_ack_of_garbage_raises_parse_error() -> None:
    with pytest.raises(ParseError):
        build_ack(b"not hl7", "AR", control_id="A", now=NOW)


def test_parse_reference_accept_ack() -> None:
    ack = parse_ack((FIXTURES / "ack_ca.hl7").read_bytes())
    assert ack == Ack(code="CA", control_id="KV20261126093012-0001", errors=())


def test_parse_v23_error_ack_collects_msa3_and_err1_text() -> None:
    ack = parse_ack((FIXTURES / "ack_ae_v23.hl7").read_bytes())
    assert ack.code == "AE"
    assert ack.control_id == "ADT0007"
    assert ack.errors == ("Patient not found", "Unknown key identifier")


def test_parse_ack_prefers_err8_then_err3_text() -> None:
    data = (b"MSH|^~\\&|EHR|F|K|F|20261126||ACK|9|P|2.6\rMSA|ae|C1\r"
            b"ERR||PID^1^5|102^Data type error^HL70357|E||||Bad \\T\\ name\r"
            b"ERR|||103^Table value not found^HL70357|E\r")
    assert parse_ack(data) == Ack("AE", "C1", ("Bad & name", "Table value not found"))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"MSH|^~\\&|EHR|F|K|F|20261126||ACK|9|P|2.6\r", "no MSA"),
        (b"MSH|^~\\&|EHR|F|K|F|20261126||ACK|9|P|2.6\rMSA||C1\r", "empty MSA-1"),
        (b"\x0bMSH|^~\\&|\x1c\r", "MSH"),
    ],
)
def test_unreadable_acks_raise_parse_error(data: bytes, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        parse_ack(data)


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("AA", Outcome.DELIVERED),
        ("CA", Outcome.DELIVERED),
        ("AR", Outcome.RETRY),
        ("CE", Outcome.RETRY),
        ("AE", Outcome.DEAD_LETTER),
        ("CR", Outcome.DEAD_LETTER),
        ("ZZ", Outcome.PROTOCOL_ERROR),
    ],
)
def test_classify_default_table(code: str, outcome: Outcome) -> None:
    assert classify(Ack(code, "C1"), "C1").outcome is outcome


def test_dead_letter_reason_carries_the_error_text() -> None:
    decision = classify(Ack("AE", "C1", ("MSA text", "ERR-8 text")), "C1")
    assert decision.outcome is Outcome.DEAD_LETTER
    assert decision.reason == "AE: MSA text; ERR-8 text"


def test_mismatched_control_id_is_a_protocol_error_even_for_aa() -> None:
    decision = classify(Ack("AA", "PREVIOUS"), "C2")
    assert decision.outcome is Outcome.PROTOCOL_ERROR
    assert "PREVIOUS" in decision.reason and "C2" in decision.reason


def test_per_receiver_override() -> None:
    policy = AckPolicy({"AE": Outcome.RETRY, "AR": Outcome.DEAD_LETTER})
    assert classify(Ack("AE", "C1"), "C1", policy).outcome is Outcome.RETRY
    assert classify(Ack("AR", "C1"), "C1", policy).outcome is Outcome.DEAD_LETTER
    assert classify(Ack("CA", "C1"), "C1", policy).outcome is Outcome.DELIVERED
    assert classify(Ack("AE", "C1"), "C1", DEFAULT_POLICY).outcome is Outcome.DEAD_LETTER


def test_policy_is_immutable_and_validated() -> None:
    source = {"AE": Outcome.RETRY}
    policy = AckPolicy(source)
    source["AE"] = Outcome.DELIVERED
    assert policy.outcome("AE") is Outcome.RETRY
    with pytest.raises(TypeError):
        policy.overrides["AE"] = Outcome.DELIVERED  # type: ignore[index]
    with pytest.raises(ValueError, match="not acknowledgment codes"):
        AckPolicy({"OK": Outcome.DELIVERED})
    with pytest.raises(ValueError, match="reserved"):
        AckPolicy({"AE": Outcome.PROTOCOL_ERROR})


@pytest.mark.parametrize(
    ("version", "msh9", "legacy"),
    [("2.3", "ACK^S12", True), ("2.3.1", "ACK^S12^ACK", True), ("2.4", "ACK^S12^ACK", True),
     ("2.5", "ACK^S12^ACK", False), ("2.5.1", "ACK^S12^ACK", False), ("2.6", "ACK^S12^ACK", False)],
)
def test_ack_takes_the_form_of_the_senders_version(version: str, msh9: str, legacy: bool) -> None:
    original = (f"MSH|^~\\&|EPIC|MAIN|FD|CLINIC|20261126080000||SIU^S12^SIU_S12|C1|P|{version}\r"
                "PID|1||M1\r").encode()
    errors = [ErrorDetail("PID-3 is required", code="101", segment="PID", sequence=1, field=3),
              ErrorDetail("and something else", code="207")]
    data = build_ack(original, "AE", errors=errors, control_id="A1", now=NOW)
    ack = parse_message(data)
    assert (ack.msh.raw(9), ack.value("MSH", 12)) == (msh9, version)
    err = ack.segment("ERR")
    assert err is not None
    if legacy:
        assert err.raw(1) == "PID^1^3^101&Required field missing&HL70357~^^^207&Application internal error&HL70357"
        assert (ack.value("MSA", 3), ack.value("MSA", 6)) == ("PID-3 is required; and something else", "101")
        assert len(ack.all("ERR")) == 1
    else:
        assert (err.raw(1), err.raw(2), err.value(3), ack.value("MSA", 3)) == ("", "PID^1^3", "101", "")
        assert len(ack.all("ERR")) == 2
    profile = {"ACK_S12": load_reference("ACK", "Message", version)} if version == "2.3" else None
    hl7apy_parse(data.decode(), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True,
                 message_profile=profile).validate()
    assert parse_ack(data).errors[0].startswith("PID-3 is required")
