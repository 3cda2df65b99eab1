"""Inbound SIU and ADT as typed records, sans-I/O: every HL7 field rule lives here.

:func:`read_inbound` turns a parsed message into an :class:`InboundUpdate`
whose fields say, each on its own, what the sender asked for:

* :data:`UNCHANGED`: the field was empty (not sent). HL7 reads that as "no
  change", so an A08 that leaves out PID-8 must not touch the stored sex.
* :data:`CLEARED`: the field was the explicit null ``""``: delete the stored value.
* a value: store it. A field that is present replaces the whole stored item it
  maps to; components it leaves empty are empty (PID-11 without a second line
  means there is none).

The server applies these records without knowing a single field number; every
error it can answer with (AE and AR, ERR location, table 0357 code) is decided
here, so the rules are unit-tested without a database.

Text is kept sendable: whatever is stored can always be written back out
through :func:`hl7.escape.escape_text`. A TAB, CR or LF inside a one-line value
(a name, an address line; ``\\.br\\`` and ``\\X09\\`` included) is harmless and
becomes a space; any other control character cannot be carried, so the message
gets AE naming the field rather than a stored value that would later stop a
check-in. Values longer than the caller can store are refused (AE 104) rather
than cut: the caller passes its limits (:data:`LIMIT_KEYS` names them).
"""

from __future__ import annotations

import datetime as dt
import enum
import typing as t
from collections.abc import Mapping
from dataclasses import dataclass

from hl7.ack import ErrorDetail
from hl7.er7 import NULL
from hl7.er7 import Message
from hl7.er7 import Segment
from hl7.escape import CharsetError
from hl7.escape import find_unsendable
from hl7.model import Address
from hl7.model import Telephone

__all__ = [
    "CLEARED",
    "LIMIT_KEYS",
    "SUPPORTED_EVENTS",
    "UNCHANGED",
    "AppointmentUpdate",
    "Coverage",
    "Identifier",
    "InboundUpdate",
    "Marker",
    "MessageKey",
    "PatientUpdate",
    "PersonName",
    "Provider",
    "Rejection",
    "Update",
    "format_phone",
    "message_key",
    "parse_timestamp",
    "read_inbound",
]


class Marker(enum.Enum):
    """What a field said when it carried no value."""

    UNCHANGED = "unchanged"
    CLEARED = "cleared"


UNCHANGED: t.Final = Marker.UNCHANGED
"""The field was not sent: keep what is stored."""

CLEARED: t.Final = Marker.CLEARED
"""The field was ``""``: remove what is stored."""

T = t.TypeVar("T")
Update: t.TypeAlias = t.Union[T, Marker]  # noqa: UP007 (a generic alias needs Union)
"""A field as sent: :data:`UNCHANGED`, :data:`CLEARED` or a value of type ``T``."""

SUPPORTED_EVENTS: Mapping[str, frozenset[str]] = {
    "SIU": frozenset({"S12", "S13", "S14", "S15", "S17", "S26"}),
    "ADT": frozenset({"A04", "A08", "A28", "A31", "A40"}),
}
"""Message types (MSH-9.1) and the events (MSH-9.2) of each we apply."""

_SIU_STATUS = {"S15": "cancelled", "S17": "deleted", "S26": "noshow"}
_DEFAULT_AUTHORITY = "UNKNOWN"
_MAX_DURATION_MINUTES = 24 * 60
_HOUR_UNITS = frozenset({"H", "HR", "HRS", "HOUR", "HOURS"})
_EMAIL_EQUIPMENT = frozenset({"INTERNET", "X.400"})
_SPACES = str.maketrans("\t\r\n", "   ")

LIMIT_KEYS: Mapping[str, tuple[str, int, str]] = {
    "sending_application": ("MSH", 3, "sending application"),
    "sending_facility": ("MSH", 4, "sending facility"),
    "control_id": ("MSH", 10, "message control id"),
    "mrn": ("PID", 3, "patient identifier (MRN)"),
    "mrn_authority": ("PID", 3, "assigning authority"),
    "family": ("PID", 5, "family name"),
    "given": ("PID", 5, "given name"),
    "middle": ("PID", 5, "middle name"),
    "street": ("PID", 11, "street"),
    "other": ("PID", 11, "other address line"),
    "city": ("PID", 11, "city"),
    "state": ("PID", 11, "state"),
    "postal_code": ("PID", 11, "postal code"),
    "country": ("PID", 11, "country"),
    "phone": ("PID", 13, "phone number"),
    "phone_country_code": ("PID", 13, "phone country code"),
    "phone_area_code": ("PID", 13, "phone area code"),
    "phone_local_number": ("PID", 13, "phone local number"),
    "phone_extension": ("PID", 13, "phone extension"),
    "email": ("PID", 13, "e-mail address"),
    "language": ("PID", 15, "primary language"),
    "payer_name": ("IN1", 4, "insurance company name"),
    "payer_id": ("IN1", 3, "insurance company id"),
    "plan_name": ("IN1", 2, "insurance plan"),
    "member_id": ("IN1", 36, "policy number"),
    "group_number": ("IN1", 8, "group number"),
    "subscriber_name": ("IN1", 16, "name of insured"),
    "source": ("MSH", 3, "sending application and facility"),
    "placer_id": ("SCH", 1, "placer appointment id"),
    "placer_authority": ("SCH", 1, "placer appointment id namespace"),
    "filler_id": ("SCH", 2, "filler appointment id"),
    "filler_authority": ("SCH", 2, "filler appointment id namespace"),
    "provider_id": ("AIP", 3, "provider id"),
    "provider_family": ("AIP", 3, "provider family name"),
    "provider_given": ("AIP", 3, "provider given name"),
    "provider_authority": ("AIP", 3, "provider id assigning authority"),
    "location": ("AIL", 3, "location"),
    "appointment_type": ("SCH", 8, "appointment type"),
    "status": ("SCH", 25, "filler status"),
    "visit_number": ("PV1", 19, "visit number"),
    "visit_authority": ("PV1", 19, "visit number assigning authority"),
    "merge_mrn": ("MRG", 1, "prior patient identifier"),
    "merge_authority": ("MRG", 1, "prior assigning authority"),
}
"""The names a caller's ``limits`` use, with the field each value comes from (for the AE 104 it causes)."""


class Rejection(Exception):
    """The message cannot be applied: the ACK code (AE or AR) and the ERR details to answer with.

    ``keyed`` is false when the message's own key (sender and MSH-10) cannot
    be stored, so it must be kept under a key of its own.
    """

    def __init__(self, code: str, *errors: ErrorDetail, keyed: bool = True) -> None:
        super().__init__(errors[0].text if errors else code)
        self.code = code
        self.errors = errors
        self.keyed = keyed


def _what(key: str) -> str:
    """How an error names the value stored under ``key``."""
    return LIMIT_KEYS[key][2] if key else "value"


def _error(code: str, segment: str, field: int, text: str, *, keyed: bool = True) -> Rejection:
    return Rejection("AE", ErrorDetail(f"{segment}-{field} {text}", code=code, segment=segment, sequence=1,
                                       field=field), keyed=keyed)


@dataclass(frozen=True, slots=True)
class Identifier:
    """An identifier within its assigning authority or namespace (CX-1/CX-4, EI-1/EI-2)."""

    value: str
    authority: str = ""


@dataclass(frozen=True, slots=True)
class PersonName:
    """XPN family, given and middle name."""

    family: str
    given: str = ""
    middle: str = ""


@dataclass(frozen=True, slots=True)
class Coverage:
    """One insurance plan (IN1).

    :param relationship_to_subscriber: the patient's relationship to the insured; IN1-17 is not read
        yet, so plans from HL7 say ``self``.
    """

    payer_name: str
    member_id: str
    priority: int
    payer_id: str = ""
    plan_name: str = ""
    group_number: str = ""
    subscriber_name: str = ""
    relationship_to_subscriber: str = "self"


@dataclass(frozen=True, slots=True)
class PatientUpdate:
    """PID (and IN1) as sent. The MRN and name are always present: PID-3 and PID-5 are required fields."""

    mrn: Identifier
    name: PersonName
    birth_date: Update[dt.date] = UNCHANGED
    sex: Update[str] = UNCHANGED
    address: Update[Address] = UNCHANGED
    phone: Update[Telephone] = UNCHANGED
    email: Update[str] = UNCHANGED
    language: Update[str] = UNCHANGED
    insurance: Update[tuple[Coverage, ...]] = UNCHANGED


@dataclass(frozen=True, slots=True)
class Provider:
    """The appointment's provider as an XCN: id, family and given name, assigning authority."""

    id: str
    family: str = ""
    given: str = ""
    authority: str = ""

    @property
    def display_name(self) -> str:
        """Given then family name, as staff read it."""
        return " ".join(filter(None, (self.given, self.family)))


@dataclass(frozen=True, slots=True)
class AppointmentUpdate:
    """SCH with its resources (AIP, AIL, AIS, TQ1) and the visit number of its PV1.

    :param source: the sending system (MSH-3^MSH-4); with ``key`` it identifies the appointment.
    :param key: the appointment's id: the filler's (SCH-2) when sent, else the placer's (SCH-1).
    :param status: ``cancelled``, ``deleted`` or ``noshow`` for S15/S17/S26, else SCH-25 in lower case.
    :param visit_number: the records system's own visit (encounter) number, PV1-19.
    """

    source: str
    key: str
    start: dt.datetime
    placer_id: Update[Identifier] = UNCHANGED
    filler_id: Update[Identifier] = UNCHANGED
    duration_minutes: Update[int] = UNCHANGED
    provider: Update[Provider] = UNCHANGED
    location: Update[str] = UNCHANGED
    appointment_type: Update[str] = UNCHANGED
    status: Update[str] = UNCHANGED
    visit_number: Update[Identifier] = UNCHANGED


@dataclass(frozen=True, slots=True)
class InboundUpdate:
    """Everything one message asks for.

    :param appointment: for SIU; ``None`` for ADT.
    :param merge_from: for A40, the prior patient (MRG-1) whose records move to ``patient``.
    """

    message_type: str
    patient: PatientUpdate
    appointment: AppointmentUpdate | None = None
    merge_from: Identifier | None = None


@dataclass(frozen=True, slots=True)
class MessageKey:
    """Sender (MSH-3.1, MSH-4.1) and MSH-10: the key a repeated message is recognised by."""

    sending_application: str
    sending_facility: str
    control_id: str
    message_type: str


def message_key(message: Message, limits: Mapping[str, int]) -> MessageKey:
    """The message's key and type (``SIU^S12``), checked to be storable.

    :raises Rejection: (not keyed) for an empty MSH-10, or a key longer than ``limits`` allow.
    """
    msh = message.msh
    key = MessageKey(msh.value(3), msh.value(4), msh.value(10), f"{msh.value(9, 1)}^{msh.value(9, 2)}")
    if not key.control_id:
        raise _error("101", "MSH", 10, "message control id is required", keyed=False)
    for name in ("sending_application", "sending_facility", "control_id"):
        segment, field, what = LIMIT_KEYS[name]
        limit = limits.get(name)
        if limit is not None and len(getattr(key, name)) > limit:
            raise _error("104", segment, field, f"{what} is longer than {limit} characters", keyed=False)
    return key


def read_inbound(message: Message, *, limits: Mapping[str, int], zone: dt.tzinfo = dt.UTC) -> InboundUpdate:
    """Read a SIU or ADT message (see the module docstring).

    :param limits: the longest value the caller can store, by :data:`LIMIT_KEYS` name.
    :param zone: the sender's time zone, for times sent without a UTC offset.
    :raises Rejection: AR for a message type or event we do not take (table 0357
        200, 201); AE for a missing required segment or field (100, 101), a
        value of the wrong form or one that cannot be carried (102), or one
        too long to store (104).
    """
    try:
        return _Reader(message, limits, zone).read()
    except CharsetError as exc:
        # A \X..\ escape whose bytes are not valid in the declared charset, met while reading a field.
        raise Rejection("AE", ErrorDetail(f"a value cannot be read: {exc}", code="102")) from None


def parse_timestamp(text: str, zone: dt.tzinfo = dt.UTC) -> dt.datetime:
    """An HL7 DTM (``YYYYMMDD[HH[MM[SS[.S+]]]][+/-ZZZZ]``) as an aware datetime.

    HL7 reads a time without an offset as the sender's local time; ``zone`` is
    that time zone (the clinic's).

    :raises ValueError: for anything else.
    """
    body, offset = text, None
    for sign in ("+", "-"):
        if sign in text[8:]:
            index = text.index(sign, 8)
            body, offset = text[:index], text[index:]
    body = body.split(".", 1)[0]
    if len(body) not in (8, 10, 12, 14) or not body.isascii() or not body.isdigit():
        raise ValueError(text)
    # Fixed-width digits: slicing is exact and many times cheaper than strptime, which runs per message.
    hour, minute, second = (int(body[i:i + 2] or 0) for i in (8, 10, 12))
    moment = dt.datetime(int(body[:4]), int(body[4:6]), int(body[6:8]), hour, minute, second)
    if offset is None:
        return moment.replace(tzinfo=zone)
    if len(offset) != 5 or not offset[1:].isdigit():
        raise ValueError(text)
    minutes = int(offset[1:3]) * 60 + int(offset[3:5])
    return moment.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes if offset[0] == "+" else -minutes)))


def format_phone(country_code: str, area_code: str, local_number: str, extension: str = "") -> str:
    """A phone number from its XTN components as people write it: ``(217) 555-0999`` in North America,
    ``+44 20 79460000`` elsewhere, with ``x123`` for an extension."""
    digits = local_number.replace("-", "").replace(" ", "")
    if country_code in ("", "1") and len(area_code) == 3 and len(digits) == 7:
        text = f"({area_code}) {digits[:3]}-{digits[3:]}"
    else:
        text = " ".join(filter(None, (f"+{country_code}" if country_code else "", area_code, local_number)))
    return f"{text} x{extension}" if extension else text


class _Reader:
    """One message's fields, read with the message's own error locations and the caller's limits."""

    def __init__(self, message: Message, limits: Mapping[str, int], zone: dt.tzinfo) -> None:
        self.message = message
        self.limits = limits
        self.zone = zone

    def read(self) -> InboundUpdate:
        msh = self.message.msh
        family, event = msh.value(9, 1), msh.value(9, 2)
        if family not in SUPPORTED_EVENTS:
            raise Rejection("AR", ErrorDetail(f"message type {family or '(none)'} is not supported", code="200",
                                              segment="MSH", sequence=1, field=9))
        if event not in SUPPORTED_EVENTS[family]:
            raise Rejection("AR", ErrorDetail(f"event {family}^{event} is not supported", code="201",
                                              segment="MSH", sequence=1, field=9))
        pid = self._required_segment("PID")
        patient = self._patient(pid)
        appointment = self._appointment(event) if family == "SIU" else None
        merge_from = self._merge_from() if event == "A40" else None
        return InboundUpdate(f"{family}^{event}", patient, appointment, merge_from)

    # Values -------------------------------------------------------------------------------------

    def _required_segment(self, name: str) -> Segment:
        segment = self.message.segment(name)
        if segment is None:
            raise Rejection("AE", ErrorDetail(f"{name} segment is required", code="100", segment=name))
        return segment

    def _text(self, segment: Segment, field: int, component: int = 1, subcomponent: int = 1, *,
              repetition: int = 1, key: str = "") -> str:
        """One leaf as stored: unescaped, ``""`` read as empty, one line, sendable, within its limit."""
        value = segment.value(field, component, subcomponent, repetition=repetition)
        if value == NULL:
            return ""
        return self._clean(value, segment.name, field, key)

    def _clean(self, value: str, segment: str, field: int, key: str) -> str:
        # Printable text (nearly every value) holds no line break, TAB or control character: skip the scans.
        if value.isprintable():
            value = value.strip()
        else:
            value = value.translate(_SPACES).strip()
            bad = find_unsendable(value)
            if bad is not None:
                raise _error("102", segment, field, f"{_what(key)} contains the control character "
                                                     f"U+{ord(bad):04X}, which cannot be stored or sent")
        limit = self.limits.get(key) if key else None
        if limit is not None and len(value) > limit:
            raise _error("104", segment, field, f"{_what(key)} is longer than {limit} characters")
        return value

    @staticmethod
    def _state(segment: Segment, field: int) -> Marker | None:
        """UNCHANGED for an empty field, CLEARED for ``""``, ``None`` when it holds a value."""
        raw = segment.raw(field)
        if raw == "":
            return UNCHANGED
        if raw == NULL:
            return CLEARED
        return None

    def _date(self, segment: Segment, field: int, what: str) -> Update[dt.date]:
        state = self._state(segment, field)
        if state is not None:
            return state
        text = segment.value(field)
        try:
            return parse_timestamp(text[:8]).date()
        except ValueError:
            raise _error("102", segment.name, field, f"{what} must be a date YYYYMMDD") from None

    # PID and IN1 --------------------------------------------------------------------------------

    def _patient(self, pid: Segment) -> PatientUpdate:
        if self._state(pid, 3) is CLEARED:
            raise _error("101", "PID", 3, "patient identifier (MRN) cannot be cleared: it is how the patient is "
                                          "known")
        repetitions = range(1, pid.repetition_count(3) + 1)
        chosen = next((r for r in repetitions if pid.value(3, 5, repetition=r) == "MR"), 1)
        mrn = self._text(pid, 3, 1, repetition=chosen, key="mrn")
        if not mrn:
            raise _error("101", "PID", 3, "patient identifier (MRN) is required")
        authority = self._text(pid, 3, 4, repetition=chosen, key="mrn_authority") or _DEFAULT_AUTHORITY
        family = self._text(pid, 5, 1, key="family")
        if not family:
            raise _error("101", "PID", 5, "patient family name is required")
        name = PersonName(family, self._text(pid, 5, 2, key="given"), self._text(pid, 5, 3, key="middle"))
        phone, email = self._contacts(pid)
        return PatientUpdate(
            mrn=Identifier(mrn, authority),
            name=name,
            birth_date=self._date(pid, 7, "date of birth"),
            sex=self._coded(pid, 8, transform=lambda code: code[:1].upper()),
            address=self._address(pid),
            phone=phone,
            email=email,
            language=self._coded(pid, 15, transform=lambda code: code.lower(), key="language"),
            insurance=self._insurance(),
        )

    def _coded(self, segment: Segment, field: int, *, transform: t.Callable[[str], str],
               key: str = "") -> Update[str]:
        state = self._state(segment, field)
        if state is not None:
            return state
        return transform(self._text(segment, field, 1, key=key))

    def _address(self, pid: Segment) -> Update[Address]:
        state = self._state(pid, 11)
        if state is not None:
            return state
        repetitions = range(1, pid.repetition_count(11) + 1)
        chosen = next((r for r in repetitions if pid.value(11, 7, repetition=r) == "H"), 1)
        parts = [self._text(pid, 11, c, repetition=chosen, key=key) for c, key in enumerate(
            ("street", "other", "city", "state", "postal_code", "country"), start=1)]
        return Address(*parts)

    def _contacts(self, pid: Segment) -> tuple[Update[Telephone], Update[str]]:
        """PID-13: the first telephone (not a fax) and the first e-mail address; the field replaces both."""
        state = self._state(pid, 13)
        if state is not None:
            return state, state
        phone: Update[Telephone] = CLEARED
        email: Update[str] = CLEARED
        for r in range(1, pid.repetition_count(13) + 1):
            use, equipment = pid.value(13, 2, repetition=r).upper(), pid.value(13, 3, repetition=r).upper()
            if use == "NET" or equipment in _EMAIL_EQUIPMENT:
                address = self._text(pid, 13, 4, repetition=r, key="email") or self._text(
                    pid, 13, 1, repetition=r, key="email")
                if address and email is CLEARED:
                    email = address
            elif equipment != "FX" and phone is CLEARED:
                phone = self._phone(pid, r) or CLEARED
        return phone, email

    def _phone(self, pid: Segment, r: int) -> Telephone | None:
        def part(component: int, key: str) -> str:
            return self._text(pid, 13, component, repetition=r, key=key)

        country, area, local = part(5, "phone_country_code"), part(6, "phone_area_code"), part(7,
                                                                                             "phone_local_number")
        extension = part(8, "phone_extension")
        text = part(1, "phone") or part(12, "phone")
        if not text and local:
            text = self._clean(format_phone(country, area, local, extension), "PID", 13, "phone")
        if not text:
            return None
        return Telephone(text, country, area, local, extension)

    def _insurance(self) -> Update[tuple[Coverage, ...]]:
        segments = self.message.all("IN1")
        if not segments:
            return UNCHANGED
        plans: dict[int, Coverage] = {}
        for index, in1 in enumerate(segments, start=1):
            payer = self._text(in1, 4, 1, key="payer_name") or self._text(in1, 3, 1, key="payer_name")
            if not payer:
                continue
            priority = int(in1.value(1)) if in1.value(1).isdecimal() else index
            subscriber = " ".join(filter(None, (self._text(in1, 16, 2), self._text(in1, 16, 1))))
            plans.setdefault(priority, Coverage(
                payer_name=payer,
                member_id=self._text(in1, 36, key="member_id") or self._text(in1, 2, 1, key="member_id"),
                priority=priority,
                payer_id=self._text(in1, 3, 1, key="payer_id"),
                plan_name=self._text(in1, 2, 2, key="plan_name"),
                group_number=self._text(in1, 8, key="group_number"),
                subscriber_name=self._clean(subscriber, "IN1", 16, "subscriber_name"),
            ))
        return tuple(plans.values())

    # SCH, its resources and PV1 -----------------------------------------------------------------

    def _appointment(self, event: str) -> AppointmentUpdate:
        sch = self._required_segment("SCH")
        placer, filler = self._entity(sch, 1, "placer"), self._entity(sch, 2, "filler")
        key = next((i.value for i in (filler, placer) if isinstance(i, Identifier) and i.value), "")
        if not key:
            raise _error("101", "SCH", 2, "appointment id (filler or placer) is required")
        msh = self.message.msh
        source = self._clean(f"{msh.value(3)}^{msh.value(4)}", "MSH", 3, "source")
        return AppointmentUpdate(
            source=source,
            key=key,
            start=self._start(sch),
            placer_id=placer,
            filler_id=filler,
            duration_minutes=self._duration(sch),
            provider=self._provider(),
            location=self._location(),
            appointment_type=self._appointment_type(sch),
            status=_SIU_STATUS.get(event) or self._coded(sch, 25, transform=str.lower, key="status"),
            visit_number=self._visit_number(),
        )

    def _entity(self, segment: Segment, field: int, role: str) -> Update[Identifier]:
        state = self._state(segment, field)
        if state is not None:
            return state
        return Identifier(self._text(segment, field, 1, key=f"{role}_id"),
                          self._text(segment, field, 2, key=f"{role}_authority"))

    def _start(self, sch: Segment) -> dt.datetime:
        candidates = (sch.value(11, 4), self.message.value("TQ1", 7), self.message.value("AIS", 4),
                      self.message.value("AIL", 6), self.message.value("AIP", 6))
        text = next((c for c in candidates if c and c != NULL), "")
        if not text:
            raise _error("101", "SCH", 11, "appointment start (SCH-11.4, TQ1-7 or AIS-4) is required")
        try:
            return parse_timestamp(text, self.zone)
        except ValueError:
            raise _error("102", "SCH", 11, f"appointment start {text!r} is not a timestamp") from None

    def _duration(self, sch: Segment) -> Update[int]:
        state = self._state(sch, 9)
        if state is not None:
            return state
        text = sch.value(9)
        if not text.isdecimal():
            raise _error("102", "SCH", 9, f"appointment duration {text!r} is not a whole number")
        minutes = int(text) * (60 if sch.value(10, 1).upper() in _HOUR_UNITS else 1)
        if not 0 < minutes <= _MAX_DURATION_MINUTES:
            raise _error("102", "SCH", 9, f"appointment duration must be 1 to {_MAX_DURATION_MINUTES} minutes")
        return minutes

    def _provider(self) -> Update[Provider]:
        aip = self.message.segment("AIP")
        if aip is None:
            return UNCHANGED
        state = self._state(aip, 3)
        if state is not None:
            return state
        return Provider(self._text(aip, 3, 1, key="provider_id"), self._text(aip, 3, 2, key="provider_family"),
                        self._text(aip, 3, 3, key="provider_given"), self._text(aip, 3, 9, key="provider_authority"))

    def _location(self) -> Update[str]:
        ail = self.message.segment("AIL")
        if ail is None:
            return UNCHANGED
        state = self._state(ail, 3)
        if state is not None:
            return state
        return self._text(ail, 3, 1, key="location")

    def _appointment_type(self, sch: Segment) -> Update[str]:
        for field in (8, 7):
            state = self._state(sch, field)
            if state is None:
                return self._text(sch, field, 2, key="appointment_type") or self._text(
                    sch, field, 1, key="appointment_type")
            if state is CLEARED:
                return state
        return UNCHANGED

    def _visit_number(self) -> Update[Identifier]:
        pv1 = self.message.segment("PV1")
        if pv1 is None:
            return UNCHANGED
        state = self._state(pv1, 19)
        if state is not None:
            return state
        return Identifier(self._text(pv1, 19, 1, key="visit_number"),
                          self._text(pv1, 19, 4, key="visit_authority"))

    # MRG ----------------------------------------------------------------------------------------

    def _merge_from(self) -> Identifier:
        mrg = self.message.segment("MRG")
        prior = self._text(mrg, 1, 1, key="merge_mrn") if mrg is not None else ""
        if mrg is None or not prior:
            raise _error("101", "MRG", 1, "prior patient identifier is required")
        return Identifier(prior, self._text(mrg, 1, 4, key="merge_authority") or _DEFAULT_AUTHORITY)
