"""Outbound HL7 v2.6 messages: ADT for the visit, ORU^R01 for vitals (IHE PCD-01) and questionnaires.

Every builder returns the complete message as bytes in the destination's
charset (segments ending in CR, MSH-18 naming it; UTF-8 unless the destination
says otherwise), ready for MLLP framing and for storing in the outbox row as
is. Text the charset cannot carry raises :class:`hl7.er7.CharsetError` naming
the field, so the caller can hold that one message for staff instead of
sending a name the receiver would garble. MSH-10 (``control_id``) and MSH-7 (``now``) are parameters:
the server fixes both when the outbox row is written, and a retry must resend
the very same bytes.

Values reach the wire only through :mod:`hl7.er7`'s segment writer, which
escapes every leaf; nothing here formats user text into ER7 itself. hl7apy is
not used: it is three orders of magnitude slower and writes CR/LF in values
raw; it validates our output in the tests instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from collections.abc import Sequence

from hl7.er7 import FieldValue
from hl7.er7 import Repeated
from hl7.er7 import Repetition
from hl7.er7 import codec_for
from hl7.er7 import encode_message
from hl7.er7 import encode_msh
from hl7.er7 import encode_segment
from hl7.er7 import format_date
from hl7.er7 import format_timestamp
from hl7.model import Channel
from hl7.model import CodingProfile
from hl7.model import Destination
from hl7.model import Device
from hl7.model import InsuranceInfo
from hl7.model import Method
from hl7.model import PatientInfo
from hl7.model import QuestionnaireResult
from hl7.model import Sender
from hl7.model import Telephone
from hl7.model import VisitInfo
from hl7.model import VitalSign
from hl7.model import VitalsReport

__all__ = [
    "PCD01_PROFILE",
    "build_adt_a03",
    "build_adt_a04",
    "build_adt_a08",
    "build_adt_a11",
    "build_oru_questionnaire",
    "build_oru_vitals",
]

VERSION = "2.6"

PCD01_PROFILE: FieldValue = ("IHE_PCD_001", "IHE PCD", "1.3.6.1.4.1.19376.1.6.1.1.1", "ISO")
"""MSH-21 for PCD-01; receivers recognise the profile by the OID in EI-3."""

_MONITORING: FieldValue = ("182777000", "monitoring of patient", "SCT")
_SCORE_UNIT: FieldValue = ("{score}", "{score}", "UCUM")
_METHOD_TEXT = {Method.DEVICE: "auto-measurement", Method.MANUAL: "manual-measurement",
                Method.CALCULATED: "auto-calculation"}


def _optional_time(moment: dt.datetime | None) -> str:
    return "" if moment is None else format_timestamp(moment)


def _msh(sender: Sender, destination: Destination, message_type: tuple[str, str, str], *,
         control_id: str, now: dt.datetime, pcd01: bool = False) -> str:
    """MSH. PCD-01 asks for enhanced mode (MSH-15 ``AL``, MSH-16 ``NE``) and MSH-21;
    other messages use original mode, which every ADT receiver supports."""
    if not control_id:
        raise ValueError("MSH-10 control id is required")
    fields: dict[int, FieldValue] = {
        3: (sender.application, sender.universal_id, sender.universal_id_type),
        4: sender.facility,
        5: destination.application,
        6: destination.facility,
        7: format_timestamp(now),
        9: message_type,
        10: control_id,
        11: "P",
        12: VERSION,
        18: destination.charset.value,
    }
    if pcd01:
        fields[15] = "AL"
        fields[16] = "NE"
        fields[21] = PCD01_PROFILE
    return encode_msh(fields)


def _evn(now: dt.datetime, occurred: dt.datetime | None) -> str:
    """EVN-2 recorded date/time, EVN-6 when the event happened (arrival, departure)."""
    return encode_segment("EVN", {2: format_timestamp(now), 6: _optional_time(occurred)})


def _telephone(phone: Telephone) -> Repetition:
    """XTN for a home phone: XTN-2 ``PRN``, XTN-3 ``PH``, XTN-5 to XTN-8 when known, and XTN-12 as written.

    Both forms, because receivers differ: some read the components, others only
    the number as a whole. The whole number goes in XTN-12 (unformatted number):
    XTN-1 is withdrawn in v2.6 and a v2.6 message carrying it fails validation.
    """
    return ("", "PRN", "PH", "", phone.country_code, phone.area_code, phone.local_number, phone.extension,
            "", "", "", phone.text)


def _encode(segments: list[str], destination: Destination) -> bytes:
    return encode_message(segments, codec_for(destination.charset.value))


def _pid(patient: PatientInfo) -> str:
    """PID-3 CX (MRN, authority, ``MR``), PID-5 XPN (legal name, type ``L``), PID-7/8,
    PID-11 XAD home, PID-13 XTN phones (see :func:`_telephone`) then e-mail, PID-15 language.
    """
    fields: dict[int, FieldValue] = {
        3: (patient.mrn, "", "", patient.assigning_authority, "MR"),
        5: (patient.family, patient.given, patient.middle, "", "", "", "L"),
        7: "" if patient.birth_date is None else format_date(patient.birth_date),
        8: patient.sex,
    }
    if patient.address is not None:
        a = patient.address
        fields[11] = (a.street, a.other, a.city, a.state, a.postal_code, a.country, "H")
    contacts: list[Repetition] = [_telephone(phone) for phone in patient.phones]
    if patient.email:
        contacts.append(("", "NET", "Internet", patient.email))
    if contacts:
        fields[13] = Repeated(tuple(contacts))
    if patient.language:
        fields[15] = (patient.language, "", "ISO6391")
    return encode_segment("PID", fields)


def _cx(value: str, authority: str, kind: str = "") -> FieldValue:
    return (value, "", "", authority, kind) if value else ""


def _pv1(visit: VisitInfo, facility: str) -> str:
    """PV1-2 ``O`` outpatient, PV1-3 PL, PV1-7 XCN attending, PV1-44/45 arrival and departure, and the
    visit named the way the records system knows it:

    * PV1-19 visit number: the records system's own (PV1-19 of its SIU) when it
      sent one, else its filler appointment id (SCH-2), else the placer's
      (SCH-1); ours only for a visit it never scheduled. Receivers match an
      arrival to their encounter on PV1-19, and an outpatient scheduler's
      appointment id is that encounter's key (Epic's SIU carries the same
      contact number in SCH-2 and PV1-19).
    * PV1-5 preadmit number: the filler appointment id, the number the visit was
      booked under before the patient arrived, so it is there even when PV1-19
      holds a visit number.
    * PV1-50 alternate visit id: the placer appointment id, the requesting
      system's name for the same visit.
    * PV1-51 ``V``: PV1-19 identifies a visit.
    """
    filler, filler_namespace = visit.filler_appointment
    placer, placer_namespace = visit.placer_appointment
    visit_ids = [(visit.records_visit_number, visit.records_visit_authority), visit.filler_appointment,
                 visit.placer_appointment, (visit.visit_number, facility)]
    number, authority = next(((v, a) for v, a in visit_ids if v), ("", ""))
    fields: dict[int, FieldValue] = {
        2: "O",
        3: (visit.location, "", "", facility) if visit.location else "",
        5: _cx(filler, filler_namespace),
        7: (visit.provider_id, visit.provider_family, visit.provider_given, "", "", "", "", "",
            visit.provider_authority) if visit.provider_id or visit.provider_family else "",
        19: _cx(number, authority, "VN"),
        44: _optional_time(visit.arrival),
        45: _optional_time(visit.departure),
        50: _cx(placer, placer_namespace),
        51: "V" if number else "",
    }
    return encode_segment("PV1", fields)


def _in1(index: int, plan: InsuranceInfo) -> str:
    """IN1-2 plan, IN1-3/4 company, IN1-8 group, IN1-12/13 dates, IN1-16/17 insured, IN1-36 member id."""
    return encode_segment("IN1", {
        1: str(index),
        2: (plan.plan_id,),
        3: (plan.company_id,),
        4: (plan.company_name,),
        8: plan.group_number,
        12: "" if plan.effective is None else format_date(plan.effective),
        13: "" if plan.expiration is None else format_date(plan.expiration),
        16: (plan.insured_family, plan.insured_given),
        17: (plan.relationship, "", "HL70063") if plan.relationship else "",
        36: plan.member_id,
    })


def _adt(event: str, structure: str, sender: Sender, destination: Destination, patient: PatientInfo,
         visit: VisitInfo, *, occurred: dt.datetime | None, control_id: str, now: dt.datetime,
         insurance: Sequence[InsuranceInfo] = ()) -> bytes:
    segments = [
        _msh(sender, destination, ("ADT", event, structure), control_id=control_id, now=now),
        _evn(now, occurred),
        _pid(patient),
        _pv1(visit, sender.facility),
    ]
    segments.extend(_in1(i, plan) for i, plan in enumerate(insurance, start=1))
    return _encode(segments, destination)


def build_adt_a04(sender: Sender, destination: Destination, patient: PatientInfo, visit: VisitInfo,
                  *, control_id: str, now: dt.datetime) -> bytes:
    """ADT^A04 (register outpatient): the patient has checked in. EVN-6 and PV1-44 = arrival."""
    return _adt("A04", "ADT_A01", sender, destination, patient, visit,
                occurred=visit.arrival, control_id=control_id, now=now)


def build_adt_a08(sender: Sender, destination: Destination, patient: PatientInfo, visit: VisitInfo,
                  *, insurance: Sequence[InsuranceInfo] = (), control_id: str, now: dt.datetime) -> bytes:
    """ADT^A08 (update patient information) after staff approve demographic or insurance changes.

    Only the values present in ``patient`` are written; empty ones are left out so
    the receiver keeps what it has. Insurance plans follow as IN1, in priority order.
    """
    return _adt("A08", "ADT_A01", sender, destination, patient, visit,
                occurred=now, control_id=control_id, now=now, insurance=insurance)


def build_adt_a03(sender: Sender, destination: Destination, patient: PatientInfo, visit: VisitInfo,
                  *, control_id: str, now: dt.datetime) -> bytes:
    """ADT^A03 (discharge / end visit) at check-out: PV1-45 and EVN-6 = departure.

    :raises ValueError: if ``visit.departure`` is not set: an A03 without an end time
        would close the visit at an unknown moment.
    """
    if visit.departure is None:
        raise ValueError("ADT^A03 needs VisitInfo.departure (PV1-45)")
    return _adt("A03", "ADT_A03", sender, destination, patient, visit,
                occurred=visit.departure, control_id=control_id, now=now)


def build_adt_a11(sender: Sender, destination: Destination, patient: PatientInfo, visit: VisitInfo,
                  *, control_id: str, now: dt.datetime) -> bytes:
    """ADT^A11 (cancel admit / visit notification): undoes an A04 sent for a mistaken check-in."""
    return _adt("A11", "ADT_A09", sender, destination, patient, visit,
                occurred=now, control_id=control_id, now=now)


# ORU^R01 vitals (IHE PCD-01) ---------------------------------------------------------------------


def _device_identity(device: Device) -> FieldValue:
    """OBX-18 EI: ``EUI^^EUI^EUI-64`` as PCD-01 prefers, else ``serial^model``."""
    if device.eui64:
        return (device.eui64, "", device.eui64, "EUI-64")
    return (device.serial, device.model)


class _ObxWriter:
    """Numbers OBX rows (OBX-1 over the whole OBR) and writes device and metric rows."""

    def __init__(self, coding: CodingProfile, result_status: str) -> None:
        self.coding = coding
        self.result_status = result_status
        self.rows: list[str] = []

    def device_row(self, code: int, refid: str, position: str, identity: FieldValue = "") -> None:
        """A containment row (MDS, VMD, channel): no value, OBX-11 ``X``."""
        self.rows.append(encode_segment("OBX", {
            1: str(len(self.rows) + 1),
            3: (str(code), refid, "MDC"),
            4: position,
            11: "X",
            18: identity,
        }))

    def metric_row(self, vital: VitalSign, position: str) -> None:
        identifier, unit = _codes(vital, self.coding)
        self.rows.append(encode_segment("OBX", {
            1: str(len(self.rows) + 1),
            2: "NM",
            3: identifier,
            4: position,
            5: format(vital.value, "f"),
            6: unit,
            11: self.result_status,
            14: format_timestamp(vital.measured_at),
            17: (vital.method.value, _METHOD_TEXT[vital.method], "MDC"),
        }))


def _codes(vital: VitalSign, coding: CodingProfile) -> tuple[FieldValue, FieldValue]:
    """OBX-3 and OBX-6 for one vital: MDC first (PCD-01) or LOINC first, the other in the alternate triplet.

    A measurement with no MDC term (pain score) goes under LOINC and UCUM alone in either profile.
    """
    ucum = (vital.ucum, vital.ucum, "UCUM")
    if vital.mdc_code is None:
        return (vital.loinc, vital.loinc_name, "LN"), ucum
    mdc_id = (str(vital.mdc_code), vital.mdc_refid, "MDC")
    mdc_unit = (str(vital.mdc_unit_code), vital.mdc_unit_refid, "MDC")
    if coding is CodingProfile.LOINC:
        if not vital.loinc:
            raise ValueError(f"{vital.mdc_refid} has no LOINC code for a LOINC-coded destination")
        return (vital.loinc, vital.loinc_name, "LN", *mdc_id), (*ucum, *mdc_unit)
    return mdc_id, (*mdc_unit, *ucum)


def _group(vitals: Iterable[VitalSign],
           reporter: Device) -> dict[Device, dict[Channel | None, list[VitalSign]]]:
    """Vitals by device (MDS) then by channel, keeping first-seen order for stable OBX-4 numbers.

    The reporting station is MDS 1 whenever it reports anything itself (typed values).
    """
    tree: dict[Device, dict[Channel | None, list[VitalSign]]] = {reporter: {}}
    for vital in vitals:
        channels = tree.setdefault(vital.device or reporter, {})
        channels.setdefault(vital.channel, []).append(vital)
    return {device: channels for device, channels in tree.items() if channels}


def _vitals_observations(report: VitalsReport, coding: CodingProfile) -> list[str]:
    """OBX rows in PCD-01 containment order: MDS ``n.0.0.0``, VMD ``n.v.0.0``, channel ``n.v.1.0``,
    metrics ``n.v.1.m``; metrics without a channel are flattened to ``n.0.0.m``."""
    writer = _ObxWriter(coding, "C" if report.correction else "F" if report.validated else "R")
    for mds, (device, channels) in enumerate(_group(report.vitals, report.reporter).items(), start=1):
        writer.device_row(device.mds_code, device.mds_refid, f"{mds}.0.0.0", _device_identity(device))
        flat = 0
        vmd = 0
        for channel, vitals in channels.items():
            if channel is None:
                for vital in vitals:
                    flat += 1
                    writer.metric_row(vital, f"{mds}.0.0.{flat}")
                continue
            vmd += 1
            writer.device_row(channel.vmd_code, channel.vmd_refid, f"{mds}.{vmd}.0.0")
            writer.device_row(channel.chan_code, channel.chan_refid, f"{mds}.{vmd}.1.0")
            for metric, vital in enumerate(vitals, start=1):
                writer.metric_row(vital, f"{mds}.{vmd}.1.{metric}")
    return writer.rows


def build_oru_vitals(sender: Sender, destination: Destination, report: VitalsReport, *,
                     control_id: str, now: dt.datetime) -> bytes:
    """ORU^R01 for vitals per IHE PCD-01 (or its LOINC-first variant, per ``destination.coding``).

    OBR-3 (filler id) carries the report id with the reporter's EUI-64 in EI-3/EI-4;
    OBR-4 is SNOMED CT "monitoring of patient"; OBR-7 is the earliest measurement,
    and every metric row carries its own OBX-14, since spot checks are episodic.
    """
    reporter = report.reporter
    observed = min(v.measured_at for v in report.vitals)
    segments = [
        _msh(sender, destination, ("ORU", "R01", "ORU_R01"), control_id=control_id, now=now, pcd01=True),
        _pid(report.patient),
        _pv1(report.visit, sender.facility),
        encode_segment("OBR", {
            1: "1",
            2: (report.report_id, sender.application),
            3: (report.report_id, sender.application, reporter.eui64, "EUI-64" if reporter.eui64 else ""),
            4: _MONITORING,
            7: format_timestamp(observed),
        }),
    ]
    segments.extend(_vitals_observations(report, destination.coding))
    return _encode(segments, destination)


# ORU^R01 questionnaires ----------------------------------------------------------------------------


def _questionnaire_order(index: int, result: QuestionnaireResult, sender: Sender) -> list[str]:
    """One OBR per questionnaire (OBR-4 = its panel code), an OBX per answered item (a ``CWE``
    with its answer code, or ``TX`` for typed text), and, for a scored one, an NM total with unit
    ``{score}`` and the severity band as NTE on the total."""
    completed = format_timestamp(result.completed_at)
    filler = (result.result_id, sender.application)
    segments = [encode_segment("OBR", {
        1: str(index),
        2: filler,
        3: filler,
        4: (result.panel_code, result.panel_name, result.panel_system),
        7: completed,
    })]
    for number, item in enumerate(result.items, start=1):
        value = ((item.answer_code, item.answer_display, item.answer_system) if item.value_type == "CWE"
                 else item.answer_display)
        segments.append(encode_segment("OBX", {
            1: str(number),
            2: item.value_type,
            3: (item.code, item.text, item.system),
            5: value,
            11: "F",
            14: completed,
        }))
    if result.total_score is None:
        return segments
    segments.append(encode_segment("OBX", {
        1: str(len(result.items) + 1),
        2: "NM",
        3: (result.total_code, result.total_name, result.total_system),
        5: str(result.total_score),
        6: _SCORE_UNIT,
        11: "F",
        14: completed,
    }))
    if result.severity:
        segments.append(encode_segment("NTE", {1: "1", 3: f"Severity: {result.severity}"}))
    return segments


def build_oru_questionnaire(sender: Sender, destination: Destination, patient: PatientInfo,
                           visit: VisitInfo, results: Sequence[QuestionnaireResult], *,
                           control_id: str, now: dt.datetime) -> bytes:
    """ORU^R01 with questionnaire results (LOINC where LOINC has the code), one OBR per questionnaire."""
    if not results:
        raise ValueError("a questionnaire ORU needs at least one result")
    segments = [
        _msh(sender, destination, ("ORU", "R01", "ORU_R01"), control_id=control_id, now=now),
        _pid(patient),
        _pv1(visit, sender.facility),
    ]
    for index, result in enumerate(results, start=1):
        segments.extend(_questionnaire_order(index, result, sender))
    return _encode(segments, destination)
