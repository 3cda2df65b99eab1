"""PCD-01 ORU^R01 over MLLP from monitors and gateways: framing, OBX reading, tolerance, ACKs."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from devices import drivers
from devices.protocols import hl7_monitor as hm
from devices.protocols.base import FrameRejected
from devices.protocols.base import Unrecognised
from devices.simulators.hl7_monitor import Hl7MonitorSimulator
from tests.dev_helpers import DEVICE_FIXTURES
from tests.dev_helpers import decode_split
from tests.dev_helpers import feed_random_bytes
from tests.dev_helpers import measurements

FIXTURES = DEVICE_FIXTURES / "hl7_monitor"
UTC = dt.UTC
PLUS_8 = dt.timezone(dt.timedelta(hours=8))


def fixture_block(name: str) -> bytes:
    """A fixture file as sent on the wire: LF line ends become CR segment ends (files only)."""
    text = (FIXTURES / name).read_text(encoding="utf-8").replace("\r\n", "\n").replace("\n", "\r")
    return hm.START_BLOCK + text.encode("utf-8") + hm.END_BLOCK + hm.CARRIAGE_RETURN


def message(*segments: str, header: str = "MSH|^~\\&|MON|WARD|||20261126100000+0000||ORU^R01|C1|P|2.6") -> bytes:
    return hm.encode_block("\r".join((header, *segments)) + "\r")


def test_ihe_spot_check_example_becomes_one_reading_per_metric_row() -> None:
    found = measurements(hm.Hl7MonitorDecoder().feed(fixture_block("pcd01_spot_check.hl7")))
    assert [(m.metric, m.value, m.unit, m.flags) for m in found] == [
        ("spo2", Decimal("97"), "%", frozenset()),
        ("pulse_oximeter", Decimal("72"), "/min", frozenset()),
        ("systolic", Decimal("128"), "mm[Hg]", frozenset()),
        ("diastolic", Decimal("82"), "mm[Hg]", frozenset()),
        ("mean_arterial", Decimal("97"), "mm[Hg]", frozenset()),
        ("pulse_nibp", Decimal("74"), "/min", frozenset()),
        ("temperature_oral", Decimal("36.8"), "Cel", frozenset()),
    ]
    assert found[0].device_time == dt.datetime(2026, 11, 26, 9, 29, 1, tzinfo=UTC)
    assert found[-1].device_time == dt.datetime(2026, 11, 26, 9, 29, 30, tzinfo=UTC)


def test_gateway_deviations_are_tolerated_and_flagged() -> None:
    found = {m.metric: m for m in measurements(hm.Hl7MonitorDecoder().feed(fixture_block("gateway_deviations.hl7")))}
    assert found["spo2"].value == Decimal("98")
    assert found["spo2"].device_time == dt.datetime(2026, 11, 26, 10, 14, 58, tzinfo=PLUS_8)
    assert found["pulse_oximeter"].value is None
    assert found["pulse_oximeter"].flags == {"demo_data", "no_data"}
    assert (found["systolic"].value, found["systolic"].flags) == (Decimal("131"), frozenset({"high"}))
    assert found["systolic"].device_time == dt.datetime(2026, 11, 26, 10, 13, 20, tzinfo=PLUS_8)
    assert (found["diastolic"].value, found["diastolic"].unit) == (Decimal("84"), "mm[Hg]")
    assert (found["mean_arterial"].value, found["mean_arterial"].unit) == (Decimal("100"), "mm[Hg]")
    assert found["mean_arterial"].flags == {"unit_assumed"}
    assert (found["temperature"].value, found["temperature"].flags) == (None, {"not_available", "no_data"})
    assert (found["respiration_rate"].value, found["respiration_rate"].flags) == (None, {"unparseable", "no_data"})
    assert set(found) == {"spo2", "pulse_oximeter", "systolic", "diastolic", "mean_arterial", "temperature",
                          "respiration_rate"}


@pytest.mark.parametrize(("text", "plain"), [
    ("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", "a|b^c&d~e\\f"),
    ("\\XC3BC\\ber", "über"),
    ("\\XFC\\ber", "über"),
    ("line\\.br\\two", "line\rtwo"),
    ("\\H\\bold\\N\\", "bold"),
    ("\\Zunknown\\", "\\Zunknown\\"),
    ("dangling\\", "dangling\\"),
])
def test_unescape(text: str, plain: str) -> None:
    assert hm.unescape(text, hm.Delimiters()) == plain


def test_custom_delimiters_and_escaped_values_are_read() -> None:
    block = hm.encode_block(
        "MSH#$*!@#MON#WARD###20261126100000+0000##ORU$R01#C9#P#2.6\r"
        "OBX#1#NM#150456$MDC_PULS_OXIM_SAT_O2$MDC#1#9!S!6#262688$MDC_DIM_PERCENT$MDC#####R\r"
        "OBX#2#NM#150456$MDC_PULS_OXIM_SAT_O2$MDC#2#96#%$%$UCUM#####R\r")
    found = measurements(hm.Hl7MonitorDecoder().feed(block))
    assert [(m.value, m.flags) for m in found] == [(None, {"unparseable", "no_data"}), (Decimal("96"), frozenset())]


@pytest.mark.parametrize(("kind", "value", "expected", "flags"), [
    ("NM", " 36.80 ", Decimal("36.80"), frozenset()),
    ("NM", "NaN", None, {"unparseable", "no_data"}),
    ("NM", "37,2", None, {"unparseable", "no_data"}),
    ("SN", "^120", Decimal("120"), frozenset()),
    ("SN", "=^120", Decimal("120"), frozenset()),
    ("SN", ">^300", None, {"over_range", "no_data"}),
    ("SN", "<^20", None, {"under_range", "no_data"}),
    ("SN", "^1^:^2", None, {"unparseable", "no_data"}),
])
def test_numeric_and_structured_numeric_values(kind: str, value: str, expected: Decimal | None,
                                               flags: frozenset[str]) -> None:
    block = message(f"OBX|1|{kind}|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1|{value}|266016^MDC_DIM_MMHG^MDC|||||R")
    (found,) = measurements(hm.Hl7MonitorDecoder().feed(block))
    assert (found.value, found.flags) == (expected, flags)


def test_units_unknown_are_withheld_and_deleted_rows_skipped() -> None:
    block = message(
        "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1|97|furlongs|||||R",
        "OBX|2|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|2|97|%|||||D",
        "OBX|3|NM|150364^MDC_TEMP_BODY^MDC|3|98.9|[degF]^[degF]^UCUM|||||F",
        "OBX|4|NM|150364^MDC_TEMP_BODY^MDC|4|37.1|degC|||||R",
        "OBX|5|NM|8867-4^Heart rate^LN|5|70|/min|||||R",
    )
    found = measurements(hm.Hl7MonitorDecoder().feed(block))
    assert [(m.metric, m.value, m.unit) for m in found] == [
        ("spo2", None, ""), ("temperature", Decimal("98.9"), "[degF]"), ("temperature", Decimal("37.1"), "Cel")]
    assert found[0].flags == {"unknown_unit", "no_data"}


def test_mllp_handles_split_frames_missing_cr_and_several_frames_per_read() -> None:
    first = message("OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1|97|%|||||R")
    second = message("OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1|96|%|||||R",
                     header="MSH|^~\\&|MON|WARD|||20261126100005+0000||ORU^R01|C2|P|2.6")
    stream = first[:-1] + second + second[:40]
    decoder = hm.Hl7MonitorDecoder()
    assert [m.value for m in measurements(decoder.feed(stream))] == [Decimal("97"), Decimal("96")]
    assert decoder.buffered == 39


def test_split_inside_a_utf8_sequence_decodes_the_same() -> None:
    block = message("PID|||1||Müller^Zoë", "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1|97|%|||||R")
    cut = block.index("ü".encode()) + 1
    decoder = hm.Hl7MonitorDecoder()
    assert decoder.feed(block[:cut]) == []
    assert [m.value for m in measurements(decoder.feed(block[cut:]))] == [Decimal("97")]


def test_bytes_outside_blocks_and_unterminated_blocks_are_rejected_then_decoding_resumes() -> None:
    good = message("OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1|97|%|||||R")
    events = hm.Hl7MonitorDecoder().feed(b"noise" + good[:30] + good)
    assert events[:2] == [FrameRejected("bytes outside MLLP block", 5), FrameRejected("unterminated block", 29)]
    assert len(measurements(events)) == 1


def test_non_hl7_blocks_and_other_message_types_are_rejected() -> None:
    decoder = hm.Hl7MonitorDecoder()
    assert decoder.feed(hm.encode_block("hello")) == [FrameRejected("not an HL7 message", 5)]
    adt = message("PID|||1", header="MSH|^~\\&|MON|WARD|||20261126100000+0000||ADT^A01|C3|P|2.6")
    assert decoder.feed(adt) == [FrameRejected("unsupported message type ADT^A01", len(adt) - 3)]
    assert decoder.feed(hm.encode_block("MSH|^^^^|x")) == [FrameRejected("bad MSH encoding characters", 10)]


def test_oversize_block_is_dropped_without_growing_the_buffer() -> None:
    decoder = hm.Hl7MonitorDecoder()
    events = decoder.feed(b"\x0b" + b"A" * (decoder.max_frame + 3) + b"\x1c\r")
    assert events == [FrameRejected("oversize block", decoder.max_frame), FrameRejected("oversize block", 3)]
    assert decoder.buffered == 0


def test_acknowledgements_follow_the_sender_mode() -> None:
    decoder = hm.Hl7MonitorDecoder()
    decoder.feed(message("OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1|97|%|||||R"))
    assert decoder.poll(0.0) == hm.encode_block(
        "MSH|^~\\&|||MON|WARD|20261126100000+0000||ACK^R01^ACK|ACKC1|P|2.6\rMSA|AA|C1\r")
    assert decoder.poll(0.1) == b""
    enhanced = "MSH|^~\\&|MON|WARD|||20261126100000+0000||ORU^R01|C2|P|2.6|||AL|NE"
    decoder.feed(message(header=enhanced))
    assert decoder.poll(0.2).endswith(b"MSA|CA|C2\r\x1c\r")
    decoder.feed(message(header=enhanced.replace("C2", "C3").replace("|AL|NE", "|ER|ER")))
    assert decoder.poll(0.3) == b""


@pytest.mark.parametrize(("modes", "codes"), [
    ("|NE|AL", ["AA"]),        # GE B40/B20: no accept ACK, waits for the application ACK
    ("|AL|AL", ["CA", "AA"]),
    ("|SU|SU", ["CA", "AA"]),
    ("|AL|NE", ["CA"]),
    ("|NE|NE", []),
    ("||AL", ["CA", "AA"]),
])
def test_every_acknowledgement_a_monitor_asks_for_is_sent_in_order(modes: str, codes: list[str]) -> None:
    decoder = hm.Hl7MonitorDecoder()
    header = "MSH|^~\\&|MON|WARD|||20261126100000+0000||ORU^R01|G1|P|2.6|||" + modes[1:]
    decoder.feed(message("OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1|97|%|||||R", header=header))
    acks = hm.MllpFramer().feed(decoder.poll(0.0))
    assert [bytes(a).split(b"MSA|")[1][:2].decode() for a in acks] == codes
    assert all(bytes(a).endswith(b"|G1\r") for a in acks)


def test_the_acknowledgement_builder_given_is_used_and_a_failing_one_leaves_the_minimal_ack() -> None:
    calls: list[tuple[bytes, str]] = []

    def build(raw: bytes, code: str) -> bytes:
        calls.append((raw, code))
        return f"MSH|^~\\&|FD|CLINIC|MON|WARD|20261126100001||ACK^R01^ACK|X1|P|2.6\rMSA|{code}|C1\r".encode()

    decoder = hm.Hl7MonitorDecoder(acknowledge=build)
    block = message("OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1|97|%|||||R")
    decoder.feed(block)
    assert decoder.poll(0.0) == hm.encode_block(
        "MSH|^~\\&|FD|CLINIC|MON|WARD|20261126100001||ACK^R01^ACK|X1|P|2.6\rMSA|AA|C1\r")
    assert [code for _, code in calls] == ["AA"] and calls[0][0] == block[1:-2]

    def broken(raw: bytes, code: str) -> bytes:
        raise ValueError("cannot parse")

    decoder = hm.Hl7MonitorDecoder(acknowledge=broken)
    decoder.feed(block)
    assert decoder.poll(0.0).endswith(b"MSA|AA|C1\r\x1c\r")


VS900_AXILLARY = "OBX|5|NM|188496^MDC_TEMP_AXIL^MDC|1.2.1.3|35.1|268192^MDC_DIM_DEGC^MDC|||||F"


@pytest.mark.parametrize(("row", "metric", "flags"), [
    (VS900_AXILLARY, "temperature_axillary", frozenset()),
    ("OBX|1|NM|188452^MDC_TEMP_AXILLA^MDC|1|35.1|268192^MDC_DIM_DEGC^MDC|||||F", "temperature_axillary",
     frozenset()),
    ("OBX|1|NM|188424^MDC_TEMP_ORAL^MDC|1|35.1|268192^MDC_DIM_DEGC^MDC|||||F", "temperature_oral", frozenset()),
    ("OBX|1|NM|188420^MDC_TEMP_RECT^MDC|1|35.1|268192^MDC_DIM_DEGC^MDC|||||F", "temperature_rectal", frozenset()),
    ("OBX|1|NM|150392^MDC_TEMP_TYMP^MDC|1|35.1|268192^MDC_DIM_DEGC^MDC|||||F", "temperature_tympanic",
     frozenset()),
    ("OBX|1|NM|188428^MDC_TEMP_EAR^MDC|1|35.1|268192^MDC_DIM_DEGC^MDC|||||F", "temperature_tympanic", frozenset()),
    ("OBX|1|NM|150368^MDC_TEMP_CORE^MDC|1|35.1|268192^MDC_DIM_DEGC^MDC|||||F", "temperature",
     frozenset({"site_core"})),
    ("OBX|1|NM|150388^MDC_TEMP_SKIN^MDC|1|35.1|268192^MDC_DIM_DEGC^MDC|||||F", "temperature",
     frozenset({"site_skin"})),
])
def test_every_mdc_temperature_site_is_a_temperature_reading_with_its_site(
        row: str, metric: str, flags: frozenset[str]) -> None:
    (reading,) = measurements(hm.Hl7MonitorDecoder().feed(message(row)))
    assert (reading.metric, reading.value, reading.unit, reading.flags) == (metric, Decimal("35.1"), "Cel", flags)


def test_an_unknown_observation_is_counted_and_hierarchy_rows_are_not() -> None:
    decoder = hm.Hl7MonitorDecoder()
    events = decoder.feed(message("OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X",
                                  "OBX|2|NM|151708^MDC_CONC_AWAY_CO2_ET^MDC|1.1.1.1|38|266016^MDC_DIM_MMHG^MDC|||||F",
                                  VS900_AXILLARY))
    assert [type(e).__name__ for e in events] == ["Unrecognised", "Measurement"]
    assert events[0] == Unrecognised("OBX-3 151708^MDC_CONC_AWAY_CO2_ET^MDC")
    assert decoder.frames == 1


def test_a_resent_message_is_acknowledged_again_but_decoded_once() -> None:
    block = message("OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1|97|%|||||R")
    decoder = hm.Hl7MonitorDecoder()
    assert len(measurements(decoder.feed(block))) == 1
    assert measurements(decoder.feed(block)) == []
    assert decoder.poll(0.0).count(b"MSA|AA|C1") == 2


@pytest.mark.parametrize(("scenario", "expected"), [
    ("normal", frozenset()),
    ("artifact", frozenset({"questionable", "artifact", "no_data"})),
    ("sensor-off", frozenset({"not_available", "no_data"})),
    ("garbage", frozenset()),
])
def test_scenarios_decode_to_their_flags_in_both_message_shapes(scenario: str, expected: frozenset[str]) -> None:
    simulator = Hl7MonitorSimulator(scenario, 5)
    decoder = hm.Hl7MonitorDecoder()
    for now in (0.0, 5.0):
        events = decoder.feed(simulator.output(now))
        found = {m.metric: m for m in measurements(events)}
        assert set(found) == {"spo2", "pulse_oximeter", "systolic", "diastolic", "mean_arterial", "temperature"}
        for metric in ("spo2", "pulse_oximeter"):
            assert found[metric].flags == expected
            assert (found[metric].value is None) == bool(expected)
        assert found["systolic"].value is not None and found["systolic"].flags == frozenset()
        if scenario == "garbage":
            assert any(isinstance(e, FrameRejected) for e in events)


@pytest.mark.parametrize("scenario", ["normal", "garbage"])
def test_stream_decodes_the_same_whole_and_byte_by_byte(scenario: str) -> None:
    simulator = Hl7MonitorSimulator(scenario, 9)
    stream = b"".join(simulator.output(float(now)) for now in range(0, 30, 5))
    whole = hm.Hl7MonitorDecoder().feed(stream)
    single = decode_split(hm.Hl7MonitorDecoder(), stream, "bytes")
    assert whole == single and len(measurements(whole)) == 36


def test_acks_reach_the_simulated_monitor() -> None:
    simulator = Hl7MonitorSimulator("normal", 1)
    decoder = hm.Hl7MonitorDecoder()
    decoder.feed(simulator.output(0.0) + simulator.output(5.0))
    assert simulator.output(7.0) == b""
    assert simulator.receive(decoder.poll(7.0)) == b""
    assert simulator.acknowledged == [("CA", "MON000001"), ("CA", "MON000002")]


def test_random_bytes_give_no_reading_and_a_bounded_buffer() -> None:
    events = feed_random_bytes(hm.Hl7MonitorDecoder(), 2575, 300, 2000)
    assert events and all(isinstance(e, FrameRejected) for e in events)


def test_driver_is_registered() -> None:
    driver = drivers.get("hl7-monitor")
    assert driver.poll_interval is not None
    assert isinstance(driver.decoder(), hm.Hl7MonitorDecoder)
    assert isinstance(driver.simulator("garbage", 4), Hl7MonitorSimulator)
