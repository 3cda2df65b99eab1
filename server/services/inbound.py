"""Inbound HL7: the records system's schedule (SIU) and patient master (ADT).

Every message is kept raw with its outcome and the ACK we sent, whatever
happened to it. A repeated message (same MSH-3, MSH-4 and MSH-10) gets the ACK
stored the first time and changes nothing, so a sender's retries are safe.

Outcomes follow HL7's meaning, which tells the sender what to do next:

* ``AA``: applied.
* ``AE``: something in the message is wrong (a required field missing, a date
  that is not a date, bytes invalid in the declared charset): fix it, then resend.
  ERR names the segment and field.
* ``AR``: we do not take this message type (do not resend), or something failed
  on our side (resend later, unchanged: the resend is applied afresh).

A message is applied in one transaction together with its log row and audit
rows: either all of it is stored, or (on an error) nothing but the log row.
A rejected message is kept under its sender and MSH-10, so a resend gets the
same answer; one that failed on our side is kept under a key of its own, so
the resend is tried again. Values longer than we can store are refused (AE 104)
rather than cut, on every database alike.
"""

from __future__ import annotations

import datetime as dt
import logging
import typing as t
from dataclasses import dataclass

from sqlalchemy import Row
from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hl7.ack import ErrorDetail
from hl7.ack import build_ack
from hl7.er7 import CharsetError
from hl7.er7 import Message
from hl7.er7 import ParseError
from hl7.er7 import Segment
from hl7.er7 import parse_message
from server.db import UnitOfWork
from server.domain.visit import VisitState
from server.models import Appointment
from server.models import InboundMessage
from server.models import Observation
from server.models import OutboxMessage
from server.models import Patient
from server.models import QuestionnaireResponse
from server.models import Visit
from server.models.base import table_of
from server.services.audit import AuditTrail
from server.services.context import Actor
from server.services.context import Clock
from server.services.messages import patient_key
from server.services.outbox import new_control_id
from server.services.patients import APPOINTMENT
from server.services.patients import HL7_NULL
from server.services.patients import INSURANCE
from server.services.patients import PATIENT
from server.services.patients import AppointmentRecord
from server.services.patients import InsuranceRecord
from server.services.patients import PatientRecord
from server.services.patients import Patients
from server.services.visits import Visits

log = logging.getLogger("frontdesk.inbound")

INBOUND = table_of(InboundMessage)
_LOG_INBOUND = insert(INBOUND)
_FIND_INBOUND = select(INBOUND.c.outcome, INBOUND.c.ack, INBOUND.c.error).where(
    INBOUND.c.sending_application == bindparam("find_app"), INBOUND.c.sending_facility == bindparam("find_facility"),
    INBOUND.c.control_id == bindparam("find_control_id"))
SIU_EVENTS = frozenset({"S12", "S13", "S14", "S15", "S17", "S26"})
ADT_EVENTS = frozenset({"A04", "A08", "A28", "A31", "A40"})
SUPPORTED = {"SIU": SIU_EVENTS, "ADT": ADT_EVENTS}

# What a schedule event means for the appointment, and for a visit still waiting.
SIU_STATUS = {"S15": "cancelled", "S17": "deleted", "S26": "noshow"}
SIU_VISIT = {"S15": VisitState.CANCELLED, "S17": VisitState.CANCELLED, "S26": VisitState.NO_SHOW}


class Rejected(Exception):
    """The message cannot be applied; carries the ACK code and the ERR details.

    ``keyed`` is false when the message's own key (sender, MSH-10) cannot be
    stored, so it is kept under a key of its own.
    """

    def __init__(self, code: str, *errors: ErrorDetail, keyed: bool = True) -> None:
        super().__init__(errors[0].text if errors else code)
        self.code = code
        self.errors = errors
        self.keyed = keyed


def missing(segment: str, field: int, what: str) -> Rejected:
    """AE for a required field that is empty (table 0357 code 101)."""
    return Rejected("AE", ErrorDetail(f"{segment}-{field} {what} is required", code="101", segment=segment,
                                      sequence=1, field=field))


def bad_value(segment: str, field: int, what: str) -> Rejected:
    """AE for a field whose value has the wrong form (table 0357 code 102)."""
    return Rejected("AE", ErrorDetail(f"{segment}-{field} {what}", code="102", segment=segment, sequence=1,
                                      field=field))


@dataclass(frozen=True)
class InboundResult:
    """What happened to one message: for the CLI's one line per message, never patient data."""

    control_id: str
    message_type: str
    outcome: str
    duplicate: bool
    ack: bytes
    error: str


class Inbound:
    """Applies inbound SIU and ADT messages and answers each with an ACK."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail, patients: Patients,
                 visits: Visits, zone: dt.tzinfo = dt.UTC) -> None:
        self.zone = zone
        self.uow = uow
        self.clock = clock
        self.audit = audit
        self.patients = patients
        self.visits = visits

    def handle(self, raw: bytes, peer: str) -> bytes:
        """The listener's handler: apply ``raw`` and return the ACK to send."""
        return self.receive(raw, peer).ack

    def receive(self, raw: bytes, peer: str) -> InboundResult:
        """Apply one message (see the module docstring) and return what happened."""
        try:
            message = parse_message(raw)
        except (ParseError, CharsetError) as exc:
            return self._unreadable(raw, peer, exc)
        msh = message.msh
        key = (msh.value(3), msh.value(4), msh.value(10))
        message_type = f"{msh.value(9, 1)}^{msh.value(9, 2)}"
        actor = Actor("peer", f"{key[0]}^{key[1]}"[:64], address=peer)
        try:
            _check_key(key)
            with self.uow.begin() as session:
                stored = self._stored_in(session, key)
                if stored is None:
                    self._apply(session, message, actor)
                    ack = self._ack(message, "AA")
                    self._log(session, key, message_type, raw, "AA", "", ack, peer)
            if stored is not None:
                return InboundResult(key[2], message_type, stored.outcome, True, stored.ack, stored.error)
            result = InboundResult(key[2], message_type, "AA", False, ack, "")
        except Rejected as rejection:
            # The same message would be rejected again: kept under its own key, so a resend gets this answer.
            keyed = key if rejection.keyed else _unique_key(key)
            ack = self._ack(message, rejection.code, rejection.errors)
            return self._keep(keyed, message_type, raw, rejection.code, str(rejection), ack, peer)
        except IntegrityError:
            stored = self._stored(key)
            if stored is None:
                return self._failed(message, key, message_type, raw, peer)
            return InboundResult(key[2], message_type, stored.outcome, True, stored.ack, stored.error)
        except Exception:
            return self._failed(message, key, message_type, raw, peer)
        log.info("hl7.inbound", extra={"control_id": key[2], "message_type": message_type,
                                       "outcome": result.outcome, "address": peer})
        return result

    def _failed(self, message: Message, key: tuple[str, str, str], message_type: str, raw: bytes,
                peer: str) -> InboundResult:
        """AR for a failure on our side: kept for review under a key of its own, so the resend is applied."""
        log.exception("hl7.inbound_failed", extra={"control_id": key[2], "message_type": message_type})
        ack = self._ack(message, "AR", (ErrorDetail("receiver error, resend later", code="207"),))
        return self._keep(_unique_key(key), message_type, raw, "AR", "receiver error", ack, peer)

    def _unreadable(self, raw: bytes, peer: str, exc: Exception) -> InboundResult:
        """AE for a message we cannot read (kept raw for review), addressed from its MSH line alone."""
        line = raw.split(b"\r", 1)[0].decode("ascii", "replace")
        try:
            header: Message | None = parse_message(line)
        except ParseError:
            header = None
        error = f"message cannot be read: {exc}"
        ack = self._ack(header, "AE", (ErrorDetail(error[:200], code="102"),)) if header else b""
        key = (header.msh.value(3), header.msh.value(4), header.msh.value(10)) if header else ("", "", "")
        try:
            _check_key(key)
        except Rejected:
            key = _unique_key(key)
        return self._keep(key, "unreadable", raw, "AE", error, ack, peer)

    def _keep(self, key: tuple[str, str, str], message_type: str, raw: bytes, outcome: str, error: str,
              ack: bytes, peer: str) -> InboundResult:
        """Store a message that was not applied; a resend of one already kept gets the stored answer."""
        try:
            with self.uow.begin() as session:
                self._log(session, key, message_type, raw, outcome, error, ack, peer)
        except IntegrityError:
            stored = self._stored(key)
            if stored is None:
                raise
            return InboundResult(key[2], message_type, stored.outcome, True, stored.ack, stored.error)
        log.warning("hl7.inbound", extra={"control_id": key[2], "message_type": message_type, "outcome": outcome,
                                          "address": peer})
        return InboundResult(key[2], message_type, outcome, False, ack, error)

    def _stored(self, key: tuple[str, str, str]) -> Row[str, bytes, str] | None:
        with self.uow.begin() as session:
            return self._stored_in(session, key)

    @staticmethod
    def _stored_in(session: Session, key: tuple[str, str, str]) -> Row[str, bytes, str] | None:
        """Outcome, ACK and error of a message already received from this sender with this MSH-10."""
        return session.execute(_FIND_INBOUND, {"find_app": key[0], "find_facility": key[1],
                                               "find_control_id": key[2]}).first()

    def _log(self, session: Session, key: tuple[str, str, str], message_type: str, raw: bytes, outcome: str,
             error: str, ack: bytes, peer: str) -> None:
        session.execute(_LOG_INBOUND, {
            "sending_application": key[0][:128], "sending_facility": key[1][:128], "control_id": key[2][:64],
            "message_type": message_type[:32], "raw": raw, "outcome": outcome, "error": error, "ack": ack,
            "peer": peer[:128], "received_at": self.clock.now()})

    def _ack(self, message: Message, code: str, errors: tuple[ErrorDetail, ...] = ()) -> bytes:
        return build_ack(message, code, errors=errors, control_id=new_control_id(), now=self.clock.now())

    def _apply(self, session: Session, message: Message, actor: Actor) -> None:
        try:
            self._apply_readable(session, message, actor)
        except CharsetError as exc:
            # A \X..\ escape whose bytes are not valid in the declared charset, met while reading a field.
            raise Rejected("AE", ErrorDetail(f"a value cannot be read: {exc}", code="102")) from None

    def _apply_readable(self, session: Session, message: Message, actor: Actor) -> None:
        family, event = message.msh.value(9, 1), message.msh.value(9, 2)
        if event not in SUPPORTED.get(family, ()):
            raise Rejected("AR", ErrorDetail(f"message type {family}^{event} is not supported", code="200",
                                             segment="MSH", sequence=1, field=9))
        pid = message.segment("PID")
        if pid is None:
            raise Rejected("AE", ErrorDetail("PID segment is required", code="100", segment="PID"))
        patient_id = self.patients.upsert_in(session, patient_record(pid, message.all("IN1")), actor=actor)
        if family == "SIU":
            self._schedule(session, message, event, patient_id, actor)
        elif event == "A40":
            self._merge(session, message, patient_id, actor)

    def _schedule(self, session: Session, message: Message, event: str, patient_id: int, actor: Actor) -> None:
        record = appointment_record(message, event, self.zone)
        appointment_id = self.patients.schedule_in(session, patient_id, record, actor=actor)
        target = SIU_VISIT.get(event)
        if target is None:
            return
        visit = session.scalar(select(Visit).where(Visit.appointment_id == appointment_id).with_for_update())
        if visit is not None and visit.state == VisitState.EXPECTED.value:
            self.visits.transition_in(session, visit, target, actor=actor)

    def _merge(self, session: Session, message: Message, survivor_id: int, actor: Actor) -> None:
        """A40: move everything of the prior patient (MRG-1) to the survivor, re-keying unsent messages."""
        mrg = message.segment("MRG")
        if mrg is None or not mrg.value(1, 1):
            raise missing("MRG", 1, "prior patient identifier")
        prior = session.scalar(select(Patient).where(Patient.mrn == mrg.value(1, 1),
                                                     Patient.mrn_authority == authority(mrg.value(1, 4, 1))))
        if prior is None or prior.id == survivor_id:
            return
        for model in (Appointment, Visit, Observation, QuestionnaireResponse):
            session.execute(update(model).where(model.patient_id == prior.id).values(patient_id=survivor_id))
        session.execute(update(OutboxMessage)
                        .where(OutboxMessage.ordering_key == patient_key(prior.id),
                               OutboxMessage.status.in_(("pending", "sending", "dead")))
                        .values(ordering_key=patient_key(survivor_id)))
        prior.merged_into_id = survivor_id
        self.audit.record(session, actor, "patient.merged", patient_id=survivor_id, resource_type="patient",
                          resource_id=prior.id)


# Column sizes of the inbound log's key: a longer value cannot be stored, so cannot be de-duplicated.
_KEY_LIMITS = (("MSH", 3, 128, "sending application"), ("MSH", 4, 128, "sending facility"),
               ("MSH", 10, 64, "message control id"))


def _check_key(key: tuple[str, str, str]) -> None:
    """The sender and MSH-10 must be storable, or a resend could not be recognised."""
    if not key[2]:
        raise Rejected("AE", ErrorDetail("MSH-10 message control id is required", code="101", segment="MSH",
                                         sequence=1, field=10), keyed=False)
    for value, (segment, field, limit, what) in zip(key, _KEY_LIMITS, strict=True):
        if len(value) > limit:
            raise Rejected("AE", ErrorDetail(f"{segment}-{field} {what} is longer than {limit} characters",
                                             code="104", segment=segment, sequence=1, field=field), keyed=False)


def _unique_key(key: tuple[str, str, str]) -> tuple[str, str, str]:
    """A key no other message has, for keeping a message whose own key cannot be stored or must not be reused."""
    return key[0][:128], key[1][:128], f"kept-{new_control_id()}"


def too_long(segment: str, field: int, what: str, limit: int) -> Rejected:
    """AE for a value longer than we can store (table 0357 code 104)."""
    return Rejected("AE", ErrorDetail(f"{segment}-{field} {what} is longer than {limit} characters", code="104",
                                      segment=segment, sequence=1, field=field))


def _check_lengths(values: t.Any, table: Table, sources: dict[str, tuple[str, int]]) -> None:
    """Every text value fits its column; the error names the HL7 field it came from."""
    for column, (segment, field) in sources.items():
        limit = getattr(table.c[column].type, "length", None)
        value = getattr(values, column)
        if isinstance(value, str) and limit is not None and len(value) > limit:
            raise too_long(segment, field, column.replace("_", " "), limit)


_PATIENT_SOURCES = {
    "mrn": ("PID", 3), "mrn_authority": ("PID", 3), "family_name": ("PID", 5), "given_name": ("PID", 5),
    "middle_name": ("PID", 5), "address_line1": ("PID", 11), "address_line2": ("PID", 11), "city": ("PID", 11),
    "state": ("PID", 11), "postal_code": ("PID", 11), "country": ("PID", 11), "phone": ("PID", 13),
    "email": ("PID", 13),
}
_INSURANCE_SOURCES = {
    "payer_name": ("IN1", 4), "member_id": ("IN1", 36), "payer_id": ("IN1", 3), "plan_name": ("IN1", 2),
    "group_number": ("IN1", 8), "subscriber_name": ("IN1", 16),
}
_APPOINTMENT_SOURCES = {
    "external_id": ("SCH", 2), "provider_id": ("AIP", 3), "provider_name": ("AIP", 3), "location": ("AIL", 3),
    "appointment_type": ("SCH", 8),
}


def authority(value: str) -> str:
    """The assigning authority of an identifier (CX-4), with the one default both PID-3 and MRG-1 use."""
    return value or "UNKNOWN"


def _date(segment: Segment, field: int, what: str) -> dt.date | None:
    text = segment.value(field)
    if not text:
        return None
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        raise bad_value(segment.name, field, f"{what} must be a date YYYYMMDD") from None


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
    formats = {8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    if len(body) not in formats or not body.isdigit():
        raise ValueError(text)
    moment = dt.datetime.strptime(body, formats[len(body)])
    if offset is None:
        return moment.replace(tzinfo=zone)
    if len(offset) != 5 or not offset[1:].isdigit():
        raise ValueError(text)
    minutes = int(offset[1:3]) * 60 + int(offset[3:5])
    return moment.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes if offset[0] == "+" else -minutes)))


def patient_record(pid: Segment, in1_segments: tuple[Segment, ...]) -> PatientRecord:
    """PID (and IN1) as a :class:`PatientRecord`; the medical record number (type MR) comes first.

    A whole PID-11 or PID-13 sent as ``""`` clears every value taken from it.
    """
    repetitions = range(1, pid.repetition_count(3) + 1)
    chosen = next((r for r in repetitions if pid.value(3, 5, repetition=r) == "MR"), 1)
    mrn = pid.value(3, 1, repetition=chosen)
    if not mrn:
        raise missing("PID", 3, "patient identifier (MRN)")
    family = pid.value(5, 1)
    if not family:
        raise missing("PID", 5, "patient family name")
    phone = pid.value(13, 1) or pid.value(13, 12)
    email = next((pid.value(13, 4, repetition=r) for r in range(1, pid.repetition_count(13) + 1)
                  if pid.value(13, 4, repetition=r)), "")
    if pid.raw(13) == HL7_NULL:
        phone = email = HL7_NULL
    address = [pid.value(11, component) for component in range(1, 7)]
    if pid.raw(11) == HL7_NULL:
        address = [HL7_NULL] * 6
    plans: dict[int, InsuranceRecord] = {}
    for index, in1 in enumerate(in1_segments, start=1):
        if not (in1.value(4, 1) or in1.value(3, 1)):
            continue
        priority = int(in1.value(1)) if in1.value(1).isdecimal() else index
        plan = InsuranceRecord(
            payer_name=in1.value(4, 1) or in1.value(3, 1), member_id=in1.value(36) or in1.value(2, 1),
            priority=priority, payer_id=in1.value(3, 1), plan_name=in1.value(2, 2), group_number=in1.value(8),
            subscriber_name=" ".join(filter(None, (in1.value(16, 2), in1.value(16, 1)))))
        _check_lengths(plan, INSURANCE, _INSURANCE_SOURCES)
        plans.setdefault(priority, plan)
    record = PatientRecord(
        mrn=mrn, mrn_authority=authority(pid.value(3, 4, repetition=chosen)),
        family_name=family, given_name=pid.value(5, 2), middle_name=pid.value(5, 3),
        birth_date=_date(pid, 7, "date of birth"), sex=(pid.value(8) or "U")[:1],
        address_line1=address[0], address_line2=address[1], city=address[2], state=address[3],
        postal_code=address[4], country=address[5],
        phone=phone, email=email, preferred_language=(pid.value(15, 1) or "en").lower()[:16],
        insurance=tuple(plans.values()),
    )
    _check_lengths(record, PATIENT, _PATIENT_SOURCES)
    return record


def appointment_record(message: Message, event: str, zone: dt.tzinfo = dt.UTC) -> AppointmentRecord:
    """SCH with its AIL/AIP/AIS (and TQ1) as an :class:`AppointmentRecord`; times without an offset are in ``zone``."""
    sch = message.segment("SCH")
    if sch is None:
        raise Rejected("AE", ErrorDetail("SCH segment is required", code="100", segment="SCH"))
    external_id = sch.value(2, 1) or sch.value(1, 1)
    if not external_id:
        raise missing("SCH", 2, "appointment id (filler or placer)")
    start_text = (sch.value(11, 4) or message.value("TQ1", 7) or message.value("AIS", 4)
                  or message.value("AIL", 6) or message.value("AIP", 6))
    if not start_text:
        raise missing("SCH", 11, "appointment start (SCH-11.4, TQ1-7 or AIS-4)")
    try:
        start = parse_timestamp(start_text, zone)
    except ValueError:
        raise bad_value("SCH", 11, f"appointment start {start_text!r} is not a timestamp") from None
    duration = sch.value(9)
    record = AppointmentRecord(
        source=f"{message.msh.value(3)}^{message.msh.value(4)}"[:128],
        external_id=external_id,
        start_at=start,
        duration_minutes=int(duration) if duration.isdecimal() and 0 < int(duration) <= 24 * 60 else 15,
        provider_id=message.value("AIP", 3, 1),
        provider_name=" ".join(filter(None, (message.value("AIP", 3, 3), message.value("AIP", 3, 2)))),
        location=message.value("AIL", 3, 1),
        appointment_type=sch.value(8, 2) or sch.value(8, 1) or sch.value(7, 2),
        status=SIU_STATUS.get(event, (sch.value(25, 1) or "booked").lower())[:32],
    )
    _check_lengths(record, APPOINTMENT, _APPOINTMENT_SOURCES)
    return record
