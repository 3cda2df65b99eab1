"""Typed, frozen input for the message builders.

The builders know HL7, not the clinic: the server fills these objects from its
records and the shared code table and hands them over with every code already
chosen (MDC, UCUM, LOINC, LA answer codes). Validation here is about what HL7
needs (aware times, an EUI-64 that is 16 hex digits, finite numbers), so a bad
value fails when the outbox row is written, inside the service transaction,
rather than at a receiver hours later.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import typing as t
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "CHARSET_NAMES",
    "Address",
    "Channel",
    "Charset",
    "CodingProfile",
    "Destination",
    "Device",
    "InsuranceInfo",
    "Method",
    "PatientInfo",
    "QuestionnaireItem",
    "QuestionnaireResult",
    "Sender",
    "Telephone",
    "VisitInfo",
    "VitalSign",
    "VitalsReport",
]

_EUI64 = re.compile(r"[0-9A-F]{16}")
_SEX_CODES = frozenset({"F", "M", "O", "U", "A", "N", ""})  # HL7 table 0001; "" = not known


def _require_aware(name: str, moment: dt.datetime | None) -> None:
    if moment is not None and moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime: HL7 times carry a UTC offset")


def _require(name: str, value: str) -> None:
    if not value:
        raise ValueError(f"{name} is required")


class CodingProfile(enum.StrEnum):
    """How vitals are coded in OBX-3 for one destination.

    ``MDC`` is IHE PCD-01 proper. ``LOINC`` is for records systems that map
    flowsheet rows by OBX-3 (LOINC first, MDC in the alternate triplet).
    """

    MDC = "MDC"
    LOINC = "LOINC"


@dataclass(frozen=True, slots=True)
class Sender:
    """MSH-3/MSH-4: our application (HD) and facility.

    :param universal_id: HD-2, e.g. the station's EUI-64, which PCD-01 wants in MSH-3.
    :param universal_id_type: HD-3, e.g. ``EUI-64``.
    """

    application: str
    facility: str
    universal_id: str = ""
    universal_id_type: str = ""

    def __post_init__(self) -> None:
        _require("Sender.application", self.application)


class Charset(enum.StrEnum):
    """The character set a destination reads, as MSH-18 names it (HL7 table 0211).

    UTF-8 carries every name; ISO 8859-1 is for records systems that take
    nothing else, and a message with a character outside it cannot be sent there.
    """

    UTF8 = "UNICODE UTF-8"
    LATIN1 = "8859/1"
    ASCII = ""


CHARSET_NAMES: dict[str, Charset] = {"UTF-8": Charset.UTF8, "ISO-8859-1": Charset.LATIN1, "ASCII": Charset.ASCII}
"""The names a destination's charset is configured by, and the MSH-18 each stands for."""


@dataclass(frozen=True, slots=True)
class Destination:
    """MSH-5/MSH-6 and the per-receiver choices: vitals coding and character set."""

    application: str
    facility: str
    coding: CodingProfile = CodingProfile.MDC
    charset: Charset = Charset.UTF8


@dataclass(frozen=True, slots=True)
class Address:
    """PID-11 XAD, home address."""

    street: str = ""
    other: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""
    country: str = ""


@dataclass(frozen=True, slots=True)
class Telephone:
    """A telephone number (XTN) in both forms receivers read.

    :param text: the number as written (XTN-1, the form before v2.5 and still
        the one many receivers read).
    :param country_code: XTN-5; ``area_code`` XTN-6; ``local_number`` XTN-7;
        ``extension`` XTN-8 (the v2.5 components); empty when not known.
    """

    text: str
    country_code: str = ""
    area_code: str = ""
    local_number: str = ""
    extension: str = ""


@dataclass(frozen=True, slots=True)
class PatientInfo:
    """PID: who the message is about.

    PID-3 (MRN + assigning authority) and PID-5 are what receivers match on.
    Empty optional values are not sent, so an A08 built from partial data never
    clears what the receiver holds.

    :param sex: HL7 table 0001 (``F M O U A N``), ``""`` if not known.
    :param language: ISO 639-1 code for PID-15.
    """

    mrn: str
    assigning_authority: str
    family: str
    given: str = ""
    middle: str = ""
    birth_date: dt.date | None = None
    sex: str = ""
    address: Address | None = None
    phones: tuple[Telephone, ...] = ()
    email: str = ""
    language: str = ""

    def __post_init__(self) -> None:
        _require("PatientInfo.mrn", self.mrn)
        if self.sex not in _SEX_CODES:
            raise ValueError(f"PatientInfo.sex {self.sex!r} is not in HL7 table 0001")


@dataclass(frozen=True, slots=True)
class VisitInfo:
    """PV1: the outpatient encounter, named the way the records system knows it.

    :param visit_number: our own visit number.
    :param location: PV1-3.1 point of care (room or area); the facility is the sender's.
    :param provider_authority: XCN-9, the authority that assigned ``provider_id``.
    :param arrival: PV1-44, when the patient checked in.
    :param departure: PV1-45, when the patient checked out (A03).
    :param records_visit_number: the records system's own visit number (PV1-19 of its SIU),
        with ``records_visit_authority``.
    :param placer_appointment: SCH-1 of the appointment (id, namespace); ``filler_appointment`` SCH-2.
    """

    visit_number: str = ""
    location: str = ""
    provider_id: str = ""
    provider_family: str = ""
    provider_given: str = ""
    arrival: dt.datetime | None = None
    departure: dt.datetime | None = None
    provider_authority: str = ""
    records_visit_number: str = ""
    records_visit_authority: str = ""
    placer_appointment: tuple[str, str] = ("", "")
    filler_appointment: tuple[str, str] = ("", "")

    def __post_init__(self) -> None:
        _require_aware("VisitInfo.arrival", self.arrival)
        _require_aware("VisitInfo.departure", self.departure)


@dataclass(frozen=True, slots=True)
class InsuranceInfo:
    """IN1: one insurance plan, in priority order when several are sent.

    :param relationship: IN1-17, HL7 table 0063 (``SEL`` self, ``SPO`` spouse, ``CHD`` child …).
    """

    plan_id: str
    company_id: str
    company_name: str
    member_id: str
    group_number: str = ""
    insured_family: str = ""
    insured_given: str = ""
    relationship: str = ""
    effective: dt.date | None = None
    expiration: dt.date | None = None

    def __post_init__(self) -> None:
        _require("InsuranceInfo.plan_id", self.plan_id)


@dataclass(frozen=True, slots=True)
class Device:
    """A device as PCD-01 names it: its MDS code and its identity (OBX-18).

    An EUI-64 is preferred; devices without one are identified by serial number
    and model.
    """

    mds_code: int
    mds_refid: str
    eui64: str = ""
    serial: str = ""
    model: str = ""

    def __post_init__(self) -> None:
        if self.eui64 and not _EUI64.fullmatch(self.eui64):
            raise ValueError(f"EUI-64 must be 16 upper-case hex digits, got {self.eui64!r}")
        if not self.eui64 and not self.serial:
            raise ValueError("a Device needs an EUI-64 or a serial number")


@dataclass(frozen=True, slots=True)
class Channel:
    """The VMD and channel a metric belongs to, giving OBX-4 its middle levels (``1.2.1.x``)."""

    vmd_code: int
    vmd_refid: str
    chan_code: int
    chan_refid: str


class Method(enum.StrEnum):
    """OBX-17: measured by a device, typed by staff, or calculated from other values (BMI)."""

    DEVICE = "AMEAS"
    MANUAL = "MMEAS"
    CALCULATED = "ACALC"


@dataclass(frozen=True, slots=True)
class VitalSign:
    """One vital-sign value with every code it is sent under.

    :param value: kept as a :class:`~decimal.Decimal` so ``36.80`` stays ``36.80``
        (PCD-01: the reporter keeps the device's precision).
    :param device: the device that measured it; ``None`` reports it under the
        reporting station.
    :param channel: VMD/channel grouping; ``None`` flattens the metric under its MDS.
    :param mdc_code: ``None`` for a measurement with no MDC term (pain score): it is sent
        under its LOINC code and UCUM unit whatever the destination's coding.
    """

    mdc_code: int | None
    mdc_refid: str
    mdc_unit_code: int | None
    mdc_unit_refid: str
    ucum: str
    loinc: str
    loinc_name: str
    value: Decimal
    measured_at: dt.datetime
    method: Method
    device: Device | None = None
    channel: Channel | None = None

    def __post_init__(self) -> None:
        _require_aware("VitalSign.measured_at", self.measured_at)
        if not self.value.is_finite():
            raise ValueError(f"VitalSign.value must be a finite number, got {self.value}")


@dataclass(frozen=True, slots=True)
class VitalsReport:
    """One ORU^R01 worth of vitals for one patient.

    :param reporter: the vitals station (the PCD Device Observation Reporter): its
        EUI-64 goes into OBR-3 and manually typed values are reported under it.
    :param report_id: unique over time; OBR-2/OBR-3 entity identifier.
    :param validated: values confirmed by staff are sent as OBX-11 ``F``, raw
        device data as ``R``.
    :param correction: the report replaces values sent before under the same
        ``report_id``: every value goes as OBX-11 ``C``.
    """

    patient: PatientInfo
    visit: VisitInfo
    reporter: Device
    report_id: str
    vitals: tuple[VitalSign, ...]
    validated: bool = True
    correction: bool = False

    def __post_init__(self) -> None:
        _require("VitalsReport.report_id", self.report_id)
        if not self.vitals:
            raise ValueError("a VitalsReport needs at least one vital sign")


@dataclass(frozen=True, slots=True)
class QuestionnaireItem:
    """One answered question: its code and text, and the answer.

    A coded answer (``value_type`` ``CWE``) is ``answer_code`` in ``answer_system``
    with ``answer_display``; a typed one (``TX``) is ``answer_display`` alone.
    ``system`` is the item code's HL7 coding system: ``LN`` (LOINC) or ``L``
    (local), for questions LOINC has no code for.
    """

    code: str
    text: str
    answer_code: str
    answer_display: str
    system: str = "LN"
    value_type: t.Literal["CWE", "TX"] = "CWE"
    answer_system: str = "LN"


@dataclass(frozen=True, slots=True)
class QuestionnaireResult:
    """One completed questionnaire (PHQ-9, GAD-7 …, or the answers of an unscored intake).

    :param total_score: the server's score, or ``None`` for a questionnaire
        that has none (then no total OBX is sent).
    :param severity: the band the total falls in (``"moderate"``), sent as a note
        on the total: LOINC has no answer list for the bands.
    :param panel_system: ``LN``, or ``L`` for a local panel code.
    """

    result_id: str
    panel_code: str
    panel_name: str
    items: tuple[QuestionnaireItem, ...]
    total_code: str
    total_name: str
    total_score: int | None
    severity: str
    completed_at: dt.datetime
    panel_system: str = "LN"
    total_system: str = "LN"

    def __post_init__(self) -> None:
        _require("QuestionnaireResult.result_id", self.result_id)
        _require_aware("QuestionnaireResult.completed_at", self.completed_at)
