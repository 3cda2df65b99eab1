"""Message builders: hl7apy STRICT validation, PCD-01 profile rules, field placement, injection safety."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message as hl7apy_parse

from devices.nomenclature import METRICS
from devices.nomenclature import Metric
from hl7.builders import build_adt_a03
from hl7.builders import build_adt_a04
from hl7.builders import build_adt_a08
from hl7.builders import build_adt_a11
from hl7.builders import build_oru_questionnaire
from hl7.builders import build_oru_vitals
from hl7.er7 import CharsetError
from hl7.er7 import Message
from hl7.er7 import Segment
from hl7.er7 import load_messages
from hl7.er7 import parse_message
from hl7.escape import EscapeError
from hl7.model import Address
from hl7.model import Channel
from hl7.model import Charset
from hl7.model import CodingProfile
from hl7.model import Destination
from hl7.model import Device
from hl7.model import InsuranceInfo
from hl7.model import Method
from hl7.model import PatientInfo
from hl7.model import QuestionnaireItem
from hl7.model import QuestionnaireResult
from hl7.model import Sender
from hl7.model import Telephone
from hl7.model import VisitInfo
from hl7.model import VitalSign
from hl7.model import VitalsReport
from hl7.profile import check_pcd01

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 26, 9, 30, 12, tzinfo=UTC)
ARRIVAL = dt.datetime(2026, 11, 26, 9, 2, 0, tzinfo=UTC)
DEPARTURE = dt.datetime(2026, 11, 26, 10, 15, 0, tzinfo=UTC)
SENDER = Sender("KIOSK_VITALS", "FAMCLINIC", "0012A3FFFE4B5C6D", "EUI-64")
EHR = Destination("EHR", "FAMCLINIC")
EHR_LOINC = Destination("EHR", "FAMCLINIC", CodingProfile.LOINC)
PATIENT = PatientInfo(
    "004711", "FAMCLINIC", "Müller", "Zoë", "Anne", dt.date(1980, 2, 14), "F",
    Address("12 Elm St", "Apt 2", "Springfield", "IL", "62701", "USA"),
    (Telephone("(217) 555-0100", "1", "217", "5550100", "12"), Telephone("+1 217 555 0101")), "zoe@example.org",
    "de",
)
VISIT = VisitInfo("V0008812", "EXAM2", "D123", "House", "Greg", arrival=ARRIVAL)
STATION = Device(69965, "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", eui64="0012A3FFFE4B5C6D")
OXIMETER = Device(69965, "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", serial="501234567", model="Nonin 3231")
BP_MONITOR = Device(69965, "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", eui64="00A0B1FFFE123456")
SPO2_CHANNEL = Channel(69642, "MDC_DEV_ANALY_SAT_O2_VMD", 69643, "MDC_DEV_ANALY_SAT_O2_CHAN")
NIBP_CHANNEL = Channel(70686, "MDC_DEV_PRESS_BLD_NONINV_VMD", 70687, "MDC_DEV_PRESS_BLD_NONINV_CHAN")
TEMP_CHANNEL = Channel(69902, "MDC_DEV_METER_TEMP_VMD", 69903, "MDC_DEV_METER_TEMP_CHAN")
INSURANCE = InsuranceInfo("PPO-1", "AET01", "Aetna & Sons | Health", "W123456789", "G-77", "Müller", "Zoë",
                          "SEL", dt.date(2026, 1, 1), dt.date(2026, 12, 31))


def vital(key: str, value: str, method: Method = Method.DEVICE, device: Device | None = None,
          channel: Channel | None = None, at: dt.datetime = NOW) -> VitalSign:
    metric: Metric = METRICS[key]
    return VitalSign(
        metric.mdc_code, metric.mdc_refid, metric.unit.mdc_code, metric.unit.mdc_refid, metric.unit.ucum,
        metric.loinc, metric.loinc_name, Decimal(value), at, method, device, channel,
    )


def spot_check() -> VitalsReport:
    """Like the PCD-01 reference example: three devices, typed temperature and weight (17 OBX rows)."""
    return VitalsReport(PATIENT, VISIT, STATION, "KV-0001", (
        vital("spo2", "97", device=OXIMETER, channel=SPO2_CHANNEL),
        vital("pulse_oximeter", "72", device=OXIMETER, channel=SPO2_CHANNEL),
        vital("systolic", "128", device=BP_MONITOR, channel=NIBP_CHANNEL),
        vital("diastolic", "82", device=BP_MONITOR, channel=NIBP_CHANNEL),
        vital("mean_arterial", "97", device=BP_MONITOR, channel=NIBP_CHANNEL),
        vital("pulse_nibp", "74", device=BP_MONITOR, channel=NIBP_CHANNEL),
        vital("temperature_oral", "36.80", Method.MANUAL, channel=TEMP_CHANNEL),
        vital("weight", "72.5", Method.MANUAL),
    ))


PHQ9_ITEMS = [
    ("44250-9", "Little interest or pleasure in doing things"),
    ("44255-8", "Feeling down, depressed, or hopeless"),
    ("44259-0", "Trouble falling or staying asleep, or sleeping too much"),
    ("44254-1", "Feeling tired or having little energy"),
    ("44251-7", "Poor appetite or overeating"),
    ("44258-2", "Feeling bad about yourself - or that you are a failure or have let yourself or your "
                "family down"),
    ("44252-5", "Trouble concentrating on things, such as reading the newspaper or watching television"),
    ("44253-3", "Moving or speaking so slowly that other people could have noticed. Or the opposite - "
                "being so fidgety or restless that you have been moving around a lot more than usual"),
    ("44260-8", "Thoughts that you would be better off dead, or of hurting yourself in some way"),
]
GAD7_ITEMS = [
    ("69725-0", "Feeling nervous, anxious or on edge"),
    ("68509-9", "Not being able to stop or control worrying"),
    ("69733-4", "Worrying too much about different things"),
    ("69734-2", "Trouble relaxing"),
    ("69735-9", "Being so restless that it is hard to sit still"),
    ("69689-8", "Becoming easily annoyed or irritable"),
    ("69736-7", "Feeling afraid as if something awful might happen"),
]
ANSWERS = [("LA6568-5", "Not at all"), ("LA6569-3", "Several days"), ("LA6570-1", "More than half the days"),
           ("LA6571-9", "Nearly every day")]


def questionnaire(result_id: str, panel: tuple[str, str], total: tuple[str, str],
                  items: list[tuple[str, str]], scores: list[int], severity: str) -> QuestionnaireResult:
    answered = tuple(
        QuestionnaireItem(code, text, *ANSWERS[score]) for (code, text), score in zip(items, scores, strict=True)
    )
    return QuestionnaireResult(result_id, *panel, answered, *total, sum(scores), severity, NOW)


PHQ9 = questionnaire("KQ-0042", ("44249-1", "PHQ-9 quick depression assessment panel"),
                     ("44261-6", "Patient health questionnaire 9 item total score"),
                     PHQ9_ITEMS, [1, 1, 2, 1, 0, 1, 0, 1, 0], "mild")
GAD7 = questionnaire("KQ-0043", ("69737-5", "Generalized anxiety disorder 7 item (GAD-7)"),
                     ("70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score"),
                     GAD7_ITEMS, [2, 2, 2, 1, 1, 2, 1], "moderate")
STEADI = QuestionnaireResult(
    "KQ-0044", "steadi-stay-independent", "CDC STEADI Stay Independent brochure",
    (QuestionnaireItem("steadi-1", "I have fallen in the past year.", "LA33-6", "Yes", "L"),
     QuestionnaireItem("steadi-2", "I use or have been advised to use a cane or walker to get around safely.",
                       "LA32-8", "No", "L")),
    "steadi-total", "Stay Independent total score", 2, "not at risk", NOW, panel_system="L", total_system="L")
INTAKE = QuestionnaireResult(
    "KQ-0045", "intake", "Before your visit",
    (QuestionnaireItem("8661-1", "What is the main reason for your visit today?", "",
                       "Knee pain | since Monday\rOBX|9|NM|x", value_type="TX"),
     QuestionnaireItem("allergies-changed", "Do you have any new allergies since your last visit?", "LA32-8", "No",
                       "L"),
     QuestionnaireItem("fasting", "Have you eaten today?", "Y", "Yes", "L", answer_system="HL70136")),
    "", "", None, "", NOW, panel_system="L")


def all_messages() -> dict[str, bytes]:
    checked_out = dataclasses.replace(VISIT, departure=DEPARTURE)
    return {
        "A04": build_adt_a04(SENDER, EHR, PATIENT, VISIT, control_id="C-A04", now=NOW),
        "A08": build_adt_a08(SENDER, EHR, PATIENT, VISIT, insurance=[INSURANCE, INSURANCE],
                             control_id="C-A08", now=NOW),
        "A03": build_adt_a03(SENDER, EHR, PATIENT, checked_out, control_id="C-A03", now=NOW),
        "A11": build_adt_a11(SENDER, EHR, PATIENT, VISIT, control_id="C-A11", now=NOW),
        "ORU-MDC": build_oru_vitals(SENDER, EHR, spot_check(), control_id="C-V1", now=NOW),
        "ORU-LOINC": build_oru_vitals(SENDER, EHR_LOINC, spot_check(), control_id="C-V2", now=NOW),
        "ORU-Q": build_oru_questionnaire(SENDER, EHR, PATIENT, VISIT, [PHQ9, GAD7], control_id="C-Q", now=NOW),
        "ORU-Q-LOCAL": build_oru_questionnaire(SENDER, EHR, PATIENT, VISIT, [STEADI, INTAKE], control_id="C-QL",
                                               now=NOW),
    }


MESSAGES = all_messages()
VITALS = ["ORU-MDC", "ORU-LOINC"]


@pytest.mark.parametrize("name", list(MESSAGES))
def test_every_message_passes_hl7apy_strict_validation(name: str) -> None:
    data = MESSAGES[name]
    parsed = hl7apy_parse(data.decode("utf-8"), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert parsed.validate()


@pytest.mark.parametrize("name", list(MESSAGES))
def test_every_message_is_utf8_bytes_with_cr_segments(name: str) -> None:
    data = MESSAGES[name]
    assert isinstance(data, bytes)
    assert b"\n" not in data
    assert data.endswith(b"\r")
    message = parse_message(data)
    assert message.value("MSH", 18) == "UNICODE UTF-8"
    assert message.value("MSH", 7) == "20261126093012+0000"
    assert message.value("MSH", 10).startswith("C-")


@pytest.mark.parametrize("name", VITALS)
def test_vitals_messages_satisfy_pcd01_profile(name: str) -> None:
    assert check_pcd01(MESSAGES[name]) == []


def test_reference_example_satisfies_pcd01_profile() -> None:
    data = (Path(__file__).resolve().parents[1] / "fixtures" / "hl7" / "pcd01_reference_lf.hl7").read_bytes()
    (message,) = load_messages(data)
    assert check_pcd01(message) == []


def obx_rows(message: Message) -> list[Segment]:
    return list(message.all("OBX"))


def test_pcd01_header_and_order() -> None:
    message = parse_message(MESSAGES["ORU-MDC"])
    msh = message.msh
    assert msh.raw(3) == "KIOSK_VITALS^0012A3FFFE4B5C6D^EUI-64"
    assert msh.raw(9) == "ORU^R01^ORU_R01"
    assert (msh.value(15), msh.value(16)) == ("AL", "NE")
    assert msh.raw(21) == "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
    assert message.segment_names[:4] == ("MSH", "PID", "PV1", "OBR")
    obr = message.segment("OBR")
    assert obr is not None
    assert obr.raw(3) == "KV-0001^KIOSK_VITALS^0012A3FFFE4B5C6D^EUI-64"
    assert obr.raw(4) == "182777000^monitoring of patient^SCT"
    assert obr.value(7) == "20261126093012+0000"


def test_pcd01_containment_tree() -> None:
    rows = obx_rows(parse_message(MESSAGES["ORU-MDC"]))
    layout = [(r.value(1), r.value(3, 2), r.value(4), r.value(11)) for r in rows]
    assert layout == [
        ("1", "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", "1.0.0.0", "X"),
        ("2", "MDC_DEV_METER_TEMP_VMD", "1.1.0.0", "X"),
        ("3", "MDC_DEV_METER_TEMP_CHAN", "1.1.1.0", "X"),
        ("4", "MDC_TEMP_ORAL", "1.1.1.1", "F"),
        ("5", "MDC_MASS_BODY_ACTUAL", "1.0.0.1", "F"),
        ("6", "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", "2.0.0.0", "X"),
        ("7", "MDC_DEV_ANALY_SAT_O2_VMD", "2.1.0.0", "X"),
        ("8", "MDC_DEV_ANALY_SAT_O2_CHAN", "2.1.1.0", "X"),
        ("9", "MDC_PULS_OXIM_SAT_O2", "2.1.1.1", "F"),
        ("10", "MDC_PULS_OXIM_PULS_RATE", "2.1.1.2", "F"),
        ("11", "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", "3.0.0.0", "X"),
        ("12", "MDC_DEV_PRESS_BLD_NONINV_VMD", "3.1.0.0", "X"),
        ("13", "MDC_DEV_PRESS_BLD_NONINV_CHAN", "3.1.1.0", "X"),
        ("14", "MDC_PRESS_BLD_NONINV_SYS", "3.1.1.1", "F"),
        ("15", "MDC_PRESS_BLD_NONINV_DIA", "3.1.1.2", "F"),
        ("16", "MDC_PRESS_BLD_NONINV_MEAN", "3.1.1.3", "F"),
        ("17", "MDC_PULS_RATE_NON_INV", "3.1.1.4", "F"),
    ]


def test_raw_device_data_is_sent_as_r() -> None:
    report = dataclasses.replace(spot_check(), validated=False)
    rows = obx_rows(parse_message(build_oru_vitals(SENDER, EHR, report, control_id="C", now=NOW)))
    assert {r.value(11) for r in rows} == {"X", "R"}


def test_device_identity_and_method() -> None:
    rows = obx_rows(parse_message(MESSAGES["ORU-MDC"]))
    by_position = {r.value(4): r for r in rows}
    assert by_position["1.0.0.0"].raw(18) == "0012A3FFFE4B5C6D^^0012A3FFFE4B5C6D^EUI-64"
    assert by_position["2.0.0.0"].raw(18) == "501234567^Nonin 3231"
    assert by_position["1.1.1.1"].raw(17) == "MMEAS^manual-measurement^MDC"
    assert by_position["2.1.1.1"].raw(17) == "AMEAS^auto-measurement^MDC"
    assert by_position["2.1.1.1"].raw(18) == ""


def test_metric_values_units_and_times() -> None:
    rows = {r.value(3, 2): r for r in obx_rows(parse_message(MESSAGES["ORU-MDC"]))}
    temperature = rows["MDC_TEMP_ORAL"]
    assert temperature.value(2) == "NM"
    assert temperature.raw(3) == "188424^MDC_TEMP_ORAL^MDC"
    assert temperature.value(5) == "36.80"
    assert temperature.raw(6) == "268192^MDC_DIM_DEGC^MDC^Cel^Cel^UCUM"
    assert temperature.value(14) == "20261126093012+0000"
    assert rows["MDC_PRESS_BLD_NONINV_SYS"].raw(6) == "266016^MDC_DIM_MMHG^MDC^mm[Hg]^mm[Hg]^UCUM"


def test_loinc_profile_puts_loinc_first_and_mdc_as_alternate() -> None:
    rows = [r for r in obx_rows(parse_message(MESSAGES["ORU-LOINC"])) if r.value(2) == "NM"]
    spo2 = next(r for r in rows if r.value(3) == "59408-5")
    assert spo2.raw(3) == (
        "59408-5^Oxygen saturation in Arterial blood by Pulse oximetry^LN^150456^MDC_PULS_OXIM_SAT_O2^MDC"
    )
    assert spo2.raw(6) == "%^%^UCUM^262688^MDC_DIM_PERCENT^MDC"
    assert {r.value(3, 3) for r in rows} == {"LN"}


def test_loinc_profile_refuses_a_vital_without_loinc() -> None:
    uncoded = dataclasses.replace(vital("spo2", "97"), loinc="", loinc_name="")
    report = VitalsReport(PATIENT, VISIT, STATION, "KV-3", (uncoded,))
    assert check_pcd01(build_oru_vitals(SENDER, EHR, report, control_id="C", now=NOW)) == []
    with pytest.raises(ValueError, match="no LOINC code"):
        build_oru_vitals(SENDER, EHR_LOINC, report, control_id="C", now=NOW)


def test_large_decimal_is_written_without_exponent() -> None:
    report = VitalsReport(PATIENT, VISIT, STATION, "KV-2", (vital("weight", "1.2E+2", Method.MANUAL),))
    data = build_oru_vitals(SENDER, EHR, report, control_id="C", now=NOW)
    rows = obx_rows(parse_message(data))
    assert rows[1].value(5) == "120"


def test_patient_and_visit_fields() -> None:
    message = parse_message(MESSAGES["A04"])
    pid = message.segment("PID")
    pv1 = message.segment("PV1")
    assert pid is not None and pv1 is not None
    assert pid.raw(3) == "004711^^^FAMCLINIC^MR"
    assert pid.raw(5) == "Müller^Zoë^Anne^^^^L"
    assert (pid.value(7), pid.value(8)) == ("19800214", "F")
    assert pid.raw(11) == "12 Elm St^Apt 2^Springfield^IL^62701^USA^H"
    # The components (XTN-5 to XTN-8) and the number as written (XTN-12: XTN-1 is withdrawn in v2.6).
    assert pid.raw(13).split("~") == ["^PRN^PH^^1^217^5550100^12^^^^(217) 555-0100",
                                      "^PRN^PH^^^^^^^^^+1 217 555 0101", "^NET^Internet^zoe@example.org"]
    assert pid.raw(15) == "de^^ISO6391"
    assert pv1.value(2) == "O"
    assert pv1.raw(3) == "EXAM2^^^FAMCLINIC"
    assert pv1.raw(7) == "D123^House^Greg"
    assert pv1.raw(19) == "V0008812^^^FAMCLINIC^VN"
    assert (pv1.raw(5), pv1.raw(50)) == ("", "")
    assert pv1.value(44) == "20261126090200+0000"
    assert pv1.value(51) == "V"
    assert message.value("EVN", 6) == "20261126090200+0000"
    assert message.msh.raw(9) == "ADT^A04^ADT_A01"
    assert message.msh.raw(15) == "" and message.msh.raw(21) == ""


@pytest.mark.parametrize(
    ("visit", "pv1_5", "pv1_19", "pv1_50"),
    [
        (VisitInfo("V1", records_visit_number="36996", records_visit_authority="EPIC",
                   placer_appointment=("P7", "ORDERS"), filler_appointment=("F9", "CADENCE")),
         "F9^^^CADENCE", "36996^^^EPIC^VN", "P7^^^ORDERS"),
        (VisitInfo("V1", filler_appointment=("F9", "CADENCE")), "F9^^^CADENCE", "F9^^^CADENCE^VN", ""),
        (VisitInfo("V1", placer_appointment=("P7", "")), "", "P7^^^^VN", "P7"),
        (VisitInfo("V1"), "", "V1^^^FAMCLINIC^VN", ""),
    ],
)
def test_pv1_names_the_visit_as_the_records_system_knows_it(visit: VisitInfo, pv1_5: str, pv1_19: str,
                                                             pv1_50: str) -> None:
    pv1 = parse_message(build_adt_a04(SENDER, EHR, PATIENT, visit, control_id="C", now=NOW)).segment("PV1")
    assert pv1 is not None
    assert (pv1.raw(5), pv1.raw(19), pv1.raw(50), pv1.value(51)) == (pv1_5, pv1_19, pv1_50, "V")


def test_pv1_7_is_an_xcn_with_name_parts_and_authority() -> None:
    visit = VisitInfo(provider_id="1234567890", provider_family="Okafor", provider_given="Ngozi",
                      provider_authority="NPI")
    pv1 = parse_message(build_adt_a04(SENDER, EHR, PATIENT, visit, control_id="C", now=NOW)).segment("PV1")
    assert pv1 is not None and pv1.raw(7) == "1234567890^Okafor^Ngozi^^^^^^NPI"


def test_destination_charset_sets_msh_18_and_refuses_what_it_cannot_carry() -> None:
    latin1 = Destination("EHR", "FAMCLINIC", charset=Charset.LATIN1)
    data = build_adt_a04(SENDER, latin1, PATIENT, VISIT, control_id="C", now=NOW)
    assert b"M\xfcller" in data
    message = parse_message(data)
    assert (message.value("MSH", 18), message.value("PID", 5)) == ("8859/1", "Müller")
    with pytest.raises(CharsetError, match="PID-5: character '李' cannot be sent in latin-1"):
        build_adt_a04(SENDER, latin1, PatientInfo("1", "FAC", "李"), VISIT, control_id="C", now=NOW)


def test_adt_event_types_and_checkout_time() -> None:
    assert parse_message(MESSAGES["A08"]).msh.raw(9) == "ADT^A08^ADT_A01"
    assert parse_message(MESSAGES["A11"]).msh.raw(9) == "ADT^A11^ADT_A09"
    a03 = parse_message(MESSAGES["A03"])
    assert a03.msh.raw(9) == "ADT^A03^ADT_A03"
    assert a03.value("PV1", 45) == "20261126101500+0000"
    assert a03.value("EVN", 6) == "20261126101500+0000"
    with pytest.raises(ValueError, match="departure"):
        build_adt_a03(SENDER, EHR, PATIENT, VISIT, control_id="C", now=NOW)


def test_a08_insurance_segments() -> None:
    message = parse_message(MESSAGES["A08"])
    first, second = message.all("IN1")
    assert (first.value(1), second.value(1)) == ("1", "2")
    assert first.value(4) == "Aetna & Sons | Health"
    assert first.raw(4) == "Aetna \\T\\ Sons \\F\\ Health"
    assert first.value(36) == "W123456789"
    assert first.raw(17) == "SEL^^HL70063"
    assert (first.value(12), first.value(13)) == ("20260101", "20261231")


def test_minimal_patient_and_visit_leave_fields_out() -> None:
    data = build_adt_a04(SENDER, EHR, PatientInfo("1", "FAC", "Doe"), VisitInfo(), control_id="C", now=NOW)
    message = parse_message(data)
    assert message.segment("PID") is not None
    assert message.all("PID")[0].field_count == 5
    assert message.all("PV1")[0].field_count == 2
    hl7apy_parse(data.decode(), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True).validate()


def test_questionnaire_message() -> None:
    message = parse_message(MESSAGES["ORU-Q"])
    assert message.msh.raw(21) == ""
    phq_obr, gad_obr = message.all("OBR")
    assert phq_obr.raw(4) == "44249-1^PHQ-9 quick depression assessment panel^LN"
    assert gad_obr.value(1) == "2"
    rows = obx_rows(message)
    assert len(rows) == 9 + 1 + 7 + 1
    first = rows[0]
    assert first.raw(3) == "44250-9^Little interest or pleasure in doing things^LN"
    assert first.raw(5) == "LA6569-3^Several days^LN"
    assert (first.value(2), first.value(11), first.value(14)) == ("CWE", "F", "20261126093012+0000")
    total = rows[9]
    assert total.raw(3) == "44261-6^Patient health questionnaire 9 item total score^LN"
    assert (total.value(1), total.value(2), total.value(5)) == ("10", "NM", "7")
    assert total.raw(6) == "{score}^{score}^UCUM"
    assert [n.value(3) for n in message.all("NTE")] == ["Severity: mild", "Severity: moderate"]
    assert rows[-1].value(5) == "11"
    assert rows[11].raw(5) == "LA6570-1^More than half the days^LN"


def test_questionnaire_with_local_codes_and_typed_answers() -> None:
    message = parse_message(MESSAGES["ORU-Q-LOCAL"])
    steadi_obr, intake_obr = message.all("OBR")
    assert steadi_obr.raw(4) == "steadi-stay-independent^CDC STEADI Stay Independent brochure^L"
    assert intake_obr.raw(4) == "intake^Before your visit^L"
    rows = obx_rows(message)
    assert [row.value(1) for row in rows] == ["1", "2", "3", "1", "2", "3"]
    assert rows[0].raw(3) == "steadi-1^I have fallen in the past year.^L"
    assert rows[0].raw(5) == "LA33-6^Yes^LN"
    assert (rows[2].value(2), rows[2].raw(3), rows[2].value(5)) == (
        "NM", "steadi-total^Stay Independent total score^L", "2")
    reason, allergies, fasting = rows[3:]
    assert (reason.value(2), reason.raw(3)) == ("TX", "8661-1^What is the main reason for your visit today?^LN")
    assert reason.value(5) == "Knee pain | since Monday\rOBX|9|NM|x"
    assert allergies.raw(5) == "LA32-8^No^LN"
    assert fasting.raw(5) == "Y^Yes^HL70136"
    assert [n.value(3) for n in message.all("NTE")] == ["Severity: not at risk"]


def test_user_text_cannot_forge_segments() -> None:
    forged = PatientInfo("1", "FAC", "SMITH\rOBX|1|NM|8867-4^Heart rate^LN||999|/min", "O^Brien & Co~")
    data = build_adt_a04(SENDER, EHR, forged, VISIT, control_id="C", now=NOW)
    message = parse_message(data)
    assert message.segment_names == ("MSH", "EVN", "PID", "PV1")
    assert message.value("PID", 5, 1) == forged.family
    assert message.value("PID", 5, 2) == forged.given
    hl7apy_message = hl7apy_parse(data.decode(), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert [c.name for c in hl7apy_message.children] == ["MSH", "EVN", "PID", "PV1"]


def test_control_characters_are_refused_at_build_time() -> None:
    with pytest.raises(EscapeError):
        build_adt_a04(SENDER, EHR, PatientInfo("1", "FAC", "Doe\x0b"), VISIT, control_id="C", now=NOW)


def test_builders_need_a_control_id() -> None:
    with pytest.raises(ValueError, match="MSH-10"):
        build_adt_a04(SENDER, EHR, PATIENT, VISIT, control_id="", now=NOW)


@pytest.mark.parametrize(
    "make",
    [
        lambda: VisitInfo(arrival=dt.datetime(2026, 11, 26, 9)),
        lambda: vital("spo2", "97", at=dt.datetime(2026, 11, 26, 9)),
        lambda: vital("spo2", "NaN"),
        lambda: Device(69965, "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", eui64="0012a3fffe4b5c6d"),
        lambda: Device(69965, "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS"),
        lambda: PatientInfo("1", "FAC", "Doe", sex="X"),
        lambda: PatientInfo("", "FAC", "Doe"),
        lambda: VitalsReport(PATIENT, VISIT, STATION, "KV", ()),
        lambda: QuestionnaireResult("Q", "1", "p", (), "2", "t", 0, "", dt.datetime(2026, 11, 26)),
        lambda: Sender("", "FAC"),
    ],
)
def test_value_objects_refuse_what_hl7_cannot_carry(make: object) -> None:
    assert callable(make)
    with pytest.raises(ValueError):
        make()


def test_questionnaire_needs_results() -> None:
    with pytest.raises(ValueError, match="at least one"):
        build_oru_questionnaire(SENDER, EHR, PATIENT, VISIT, [], control_id="C", now=NOW)


def mutate(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "violation"),
    [
        (b"^1.3.6.1.4.1.19376.1.6.1.1.1^", b"^1.3.6.1.4.1.19376.1.6.1.4.1^", "MSH-21"),
        (b"ORU^R01^ORU_R01", b"ORU^R01", "MSH-9"),
        (b"|20261126093012+0000||ORU", b"|20261126093012||ORU", "MSH-7"),
        (b"|AL|NE|", b"|||", "MSH-15/16"),
        (b"|C-V1|", b"||", "MSH-10"),
        (b"|KV-0001^KIOSK_VITALS^0012A3FFFE4B5C6D^EUI-64|", b"||", "OBR-3"),
        (b"|182777000^monitoring of patient^SCT|", b"||", "OBR-4"),
        (b"|1.1.1.1|", b"|1.0.0.1|", "repeats under OBR 1"),
        (b"|1.1.1.1|", b"|1.1.1|", "OBX-4 must be"),
        (b"|268192^MDC_DIM_DEGC^MDC^Cel^Cel^UCUM|", b"||", "OBX-6"),
        (b"|36.80|", b"||", "OBX-5"),
        (b"^UCUM|||||F|", b"^UCUM||||||", "OBX-11"),
        (b"^UCUM|||||F|", b"^UCUM|||||P|", "OBX-11 'P'"),
        (b"|NM|188424", b"|TX|188424", "OBX-2"),
        (b"|NM|188424", b"|XX|188424", "OBX-2"),
        (b"MMEAS^manual", b"MANUAL^manual", "OBX-17"),
        (b"|188424^MDC_TEMP_ORAL^MDC|", b"|8310-5^Body temperature^LN|", "OBX-3"),
        (b"|188424^MDC_TEMP_ORAL^MDC|", b"|MDC_TEMP_ORAL^MDC_TEMP_ORAL^MDC|", "numeric"),
        (b"\rOBX|2|", b"\rOBX|7|", "OBX-1"),
    ],
)
def test_profile_checker_finds_each_violation(old: bytes, new: bytes, violation: str) -> None:
    problems = check_pcd01(mutate(MESSAGES["ORU-MDC"], old, new))
    assert any(violation in p for p in problems), problems


def test_profile_checker_on_questionnaire_and_adt_reports_problems() -> None:
    assert any("MSH-21" in p for p in check_pcd01(MESSAGES["ORU-Q"]))
    assert "no OBR segment" in check_pcd01(MESSAGES["A04"])
