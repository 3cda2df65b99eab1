"""HL7 rules of inbound SIU/ADT, without a database: unchanged, cleared or value, and every refusal's ERR."""

from __future__ import annotations

import datetime as dt

import pytest

from hl7.er7 import parse_message
from hl7.inbound import CLEARED
from hl7.inbound import UNCHANGED
from hl7.inbound import Identifier
from hl7.inbound import InboundUpdate
from hl7.inbound import PersonName
from hl7.inbound import Provider
from hl7.inbound import Rejection
from hl7.inbound import format_phone
from hl7.inbound import message_key
from hl7.inbound import parse_timestamp
from hl7.inbound import read_inbound
from hl7.model import Address
from hl7.model import Telephone

MSH = "MSH|^~\\&|EPIC|MAIN|FD|CLINIC|20261126080000||{type}|C1|P|2.5.1"
LIMITS = {"family": 20, "control_id": 8, "phone_area_code": 3}


def read(*segments: str, type_: str = "ADT^A08", limits: dict[str, int] | None = None) -> InboundUpdate:
    text = "\r".join([MSH.format(type=type_), *segments]) + "\r"
    return read_inbound(parse_message(text), limits=LIMITS if limits is None else limits,
                        zone=dt.timezone(dt.timedelta(hours=-5)))


def refusal(*segments: str, type_: str = "ADT^A08") -> tuple[str, str, int | None, str, str]:
    with pytest.raises(Rejection) as caught:
        read(*segments, type_=type_)
    error = caught.value.errors[0]
    return caught.value.code, error.segment, error.field, error.code, error.text


def test_fields_left_out_are_unchanged() -> None:
    patient = read("PID|1||M1^^^MAIN^MR||Nguyen^Linh").patient
    assert patient.mrn == Identifier("M1", "MAIN")
    assert patient.name == PersonName("Nguyen", "Linh")
    assert (patient.birth_date, patient.sex, patient.address, patient.phone, patient.email, patient.language,
            patient.insurance) == (UNCHANGED,) * 7


def test_explicit_nulls_clear() -> None:
    patient = read('PID|1||M1^^^MAIN^MR||Nguyen||""|""|||""||""||""').patient
    assert (patient.birth_date, patient.sex, patient.address, patient.phone, patient.email,
            patient.language) == (CLEARED,) * 6


def test_values_are_read_and_a_present_field_replaces_the_whole_item() -> None:
    patient = read("PID|1||X9^^^SSA^SS~M1^^^MAIN^MR||Nguyen^Linh^Q||19750412|f|||^^Springfield^IL||"
                   "^NET^Internet^pat@example.org||ES^Spanish^ISO6391").patient
    assert patient.mrn == Identifier("M1", "MAIN")
    assert (patient.birth_date, patient.sex, patient.language) == (dt.date(1975, 4, 12), "F", "es")
    assert patient.address == Address("", "", "Springfield", "IL", "", "")
    # PID-13 replaces the stored contacts: an e-mail alone clears the phone.
    assert (patient.phone, patient.email) == (CLEARED, "pat@example.org")


@pytest.mark.parametrize(
    ("xtn", "phone"),
    [
        ("^PRN^PH^^1^217^5550999", Telephone("(217) 555-0999", "1", "217", "5550999")),
        ("^PRN^PH^^1^217^5550999^42", Telephone("(217) 555-0999 x42", "1", "217", "5550999", "42")),
        ("(217)555-0142^PRN^PH", Telephone("(217)555-0142")),
        ("^PRN^PH^^44^20^79460000", Telephone("+44 20 79460000", "44", "20", "79460000")),
        ("^PRN^PH^^^^^^^^^+1 217 555 0100", Telephone("+1 217 555 0100")),
        ("^PRN^FX^^1^217^5550000~^PRN^PH^^1^217^5550999", Telephone("(217) 555-0999", "1", "217", "5550999")),
    ],
)
def test_phone_in_every_xtn_form(xtn: str, phone: Telephone) -> None:
    assert read(f"PID|1||M1^^^MAIN^MR||Nguyen||||||||{xtn}").patient.phone == phone


def test_format_phone() -> None:
    assert format_phone("", "217", "555-0999") == "(217) 555-0999"
    assert format_phone("49", "30", "1234567", "9") == "+49 30 1234567 x9"


@pytest.mark.parametrize(
    ("name", "family", "given"),
    [
        ("Nguyen\tVan^Linh", "Nguyen Van", "Linh"),
        ("Nguyen\\X09\\Van^Li\\.br\\nh", "Nguyen Van", "Li nh"),
        ("\\H\\Nguyen\\N\\^Linh", "Nguyen", "Linh"),
        ('Nguyen^""', "Nguyen", ""),
        ("  Nguyen ^ Linh ", "Nguyen", "Linh"),
    ],
)
def test_names_are_kept_on_one_line_without_formatting(name: str, family: str, given: str) -> None:
    assert read(f"PID|1||M1^^^MAIN^MR||{name}").patient.name == PersonName(family, given)


@pytest.mark.parametrize("name", ["Ngu\ayen", "Nguyen^Li\\X07\\nh", "Nguyen\\X1B\\", "Ngu\x00yen"])
def test_a_control_character_is_ae_102_naming_the_field(name: str) -> None:
    code, segment, field, table, text = refusal(f"PID|1||M1^^^MAIN^MR||{name}")
    assert (code, segment, field, table) == ("AE", "PID", 5, "102")
    assert "control character U+00" in text


@pytest.mark.parametrize(
    ("pid", "expected"),
    [
        ("PID|1||^^^MAIN^MR||Nguyen", ("AE", "PID", 3, "101")),
        ('PID|1||""||Nguyen', ("AE", "PID", 3, "101")),
        ("PID|1||M1^^^MAIN^MR", ("AE", "PID", 5, "101")),
        ('PID|1||M1^^^MAIN^MR||""', ("AE", "PID", 5, "101")),
        ("PID|1||M1^^^MAIN^MR||Nguyen||1975-04-12", ("AE", "PID", 7, "102")),
        ("PID|1||M1^^^MAIN^MR||N" + "x" * 20, ("AE", "PID", 5, "104")),
        ("PID|1||M1^^^MAIN^MR||Nguyen||||||||^PRN^PH^^1^2170^5550999", ("AE", "PID", 13, "104")),
    ],
)
def test_refusals_name_segment_field_and_table_0357_code(pid: str, expected: tuple[str, str, int, str]) -> None:
    assert refusal(pid)[:4] == expected


def test_message_type_and_event_support() -> None:
    assert refusal("PID|1||M1^^^MAIN^MR||N", type_="ORM^O01")[:4] == ("AR", "MSH", 9, "200")
    assert refusal("PID|1||M1^^^MAIN^MR||N", type_="ADT^A01")[:4] == ("AR", "MSH", 9, "201")
    assert refusal(type_="ADT^A08")[:4] == ("AE", "PID", None, "100")


def test_message_key_must_be_storable() -> None:
    message = parse_message(MSH.format(type="ADT^A08").replace("|C1|", "|C123456789|") + "\r")
    with pytest.raises(Rejection) as caught:
        message_key(message, LIMITS)
    assert not caught.value.keyed and caught.value.errors[0].code == "104"
    key = message_key(parse_message(MSH.format(type="SIU^S12") + "\r"), LIMITS)
    assert (key.sending_application, key.sending_facility, key.control_id, key.message_type) == (
        "EPIC", "MAIN", "C1", "SIU^S12")


SCH = "SCH|P1^ORD|F1^CAD|||||R^Routine|FU^Follow-up|1|HR|^^60^20261126103000||||||||||||||Booked"
PID = "PID|1||M1^^^MAIN^MR||Nguyen"


def test_schedule_ids_visit_number_and_resources() -> None:
    update = read(SCH, PID, "PV1|1|O|||||||||||||||||CSN9^^^EPIC^VN", "AIL|1||EXAM3^^^MAIN",
                  "AIP|1||D12^Okafor^Ngozi^^^^^^NPI", type_="SIU^S12")
    appointment = update.appointment
    assert appointment is not None
    assert (appointment.source, appointment.key) == ("EPIC^MAIN", "F1")
    assert (appointment.placer_id, appointment.filler_id) == (Identifier("P1", "ORD"), Identifier("F1", "CAD"))
    assert appointment.visit_number == Identifier("CSN9", "EPIC")
    assert appointment.start == dt.datetime(2026, 11, 26, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert (appointment.duration_minutes, appointment.location, appointment.appointment_type,
            appointment.status) == (60, "EXAM3", "Follow-up", "booked")
    assert appointment.provider == Provider("D12", "Okafor", "Ngozi", "NPI")
    assert appointment.provider.display_name == "Ngozi Okafor"


def test_schedule_fields_left_out_are_unchanged_and_events_set_the_status() -> None:
    sch = "SCH||F1^CAD|||||||||^^^20261126103000"
    modified = read(sch, PID, type_="SIU^S14").appointment
    assert modified is not None
    assert (modified.placer_id, modified.duration_minutes, modified.provider, modified.location,
            modified.appointment_type, modified.status, modified.visit_number) == (UNCHANGED,) * 7
    cancelled = read(sch, PID, type_="SIU^S15").appointment
    assert cancelled is not None and cancelled.status == "cancelled"
    assert refusal("SCH|||||||||||^^^20261126103000", PID, type_="SIU^S12")[:4] == ("AE", "SCH", 2, "101")
    assert refusal("SCH||F1", PID, type_="SIU^S12")[:4] == ("AE", "SCH", 11, "101")
    assert refusal(PID, type_="SIU^S12")[:4] == ("AE", "SCH", None, "100")


def test_merge_needs_the_prior_identifier() -> None:
    assert read(PID, "MRG|OLD1", type_="ADT^A40").merge_from == Identifier("OLD1", "UNKNOWN")
    assert refusal(PID, "MRG|", type_="ADT^A40")[:4] == ("AE", "MRG", 1, "101")


def test_insurance_present_replaces_absent_keeps() -> None:
    in1 = "IN1|1|PPO1^Gold PPO|BCBS01|Blue Cross||||GRP-77||||||||Nguyen^Linh|SEL|||||||||||||||||||MEM-1"
    plans = read(PID, in1).patient.insurance
    assert not isinstance(plans, type(UNCHANGED)) and [p.member_id for p in plans] == ["MEM-1"]
    assert read(PID).patient.insurance is UNCHANGED


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("20261126", dt.datetime(2026, 11, 26, tzinfo=dt.UTC)),
        ("202611261030-0500", dt.datetime(2026, 11, 26, 15, 30, tzinfo=dt.UTC)),
        ("20261126103015.123+0100", dt.datetime(2026, 11, 26, 9, 30, 15, tzinfo=dt.UTC)),
        ("2026112610", dt.datetime(2026, 11, 26, 10, tzinfo=dt.UTC)),
    ],
)
def test_parse_timestamp(text: str, moment: dt.datetime) -> None:
    assert parse_timestamp(text) == moment


@pytest.mark.parametrize("text", ["2026", "202611", "2026112", "20261326", "20260230", "2026112625",
                                  "2026 1126", "+2026112", "２０２６１１２６", "20261126+05", "20261126+ab00"])
def test_parse_timestamp_refuses_what_is_not_a_dtm(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


@pytest.mark.parametrize("birth", ["1955011", "19551301", "１９５５０１１５"])
def test_a_date_of_birth_that_is_not_yyyymmdd_is_refused_naming_the_field(birth: str) -> None:
    assert refusal(f"PID|1||MR1^^^H^MR||Lee^Ann||{birth}")[:4] == ("AE", "PID", 7, "102")
