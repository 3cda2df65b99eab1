"""Inbound HL7: the records system's schedule (SIU) and patient master (ADT).

:mod:`hl7.inbound` reads each message into records (every HL7 rule lives
there); this service stores them. Every message is kept raw with its outcome
and the ACK we sent, whatever happened to it. A repeated message (same MSH-3,
MSH-4 and MSH-10, same content) gets the ACK stored the first time and changes
nothing, so a sender's retries are safe. A *different* message under an
MSH-10 already used gets AE (table 0357 code 205) and is kept for review:
answering it with the old AA would tell the sender it was applied.

Outcomes follow HL7's meaning, which tells the sender what to do next:

* ``AA``: applied.
* ``AE``: something in the message is wrong (a required field missing, a date
  that is not a date, a value that cannot be carried, bytes invalid in the
  declared charset): fix it, then resend. ERR names the segment and field.
* ``AR``: we do not take this message type or event (do not resend), or
  something failed on our side (resend later, unchanged: the resend is applied
  afresh).

Group commit: messages that arrive together (pipelined on one connection, or a
batch) are applied in one transaction, and each is acknowledged only after
that transaction commits, so an ACK still means "stored". One commit per group
instead of one per message is what lets a busy feed keep up. Every rule is
checked before the transaction starts, so a message that is wrong is answered
without disturbing the others; should the database itself fail part-way, the
group is rolled back and its messages are applied one by one.

A message is applied in one transaction together with its log row and audit
rows: either all of it is stored, or (on an error) nothing but the log row.
A rejected message is kept under its sender and MSH-10, so a resend gets the
same answer; one that failed on our side is kept under a key of its own, so
the resend is tried again.
"""

from __future__ import annotations

import datetime as dt
import logging
import typing as t
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Column
from sqlalchemy import bindparam
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hl7.ack import ErrorDetail
from hl7.ack import build_ack
from hl7.batch import build_batch_ack
from hl7.batch import is_batch
from hl7.batch import split_batch
from hl7.er7 import CharsetError
from hl7.er7 import Message
from hl7.er7 import ParseError
from hl7.er7 import parse_header
from hl7.er7 import parse_message
from hl7.inbound import AppointmentUpdate
from hl7.inbound import Identifier
from hl7.inbound import InboundUpdate
from hl7.inbound import MessageKey
from hl7.inbound import Rejection
from hl7.inbound import message_key
from hl7.inbound import read_inbound
from server.db import UnitOfWork
from server.db import one_of
from server.domain.visit import VisitState
from server.models import Appointment
from server.models import InboundMessage
from server.models import Observation
from server.models import OutboxMessage
from server.models import QuestionnaireResponse
from server.models import Visit
from server.models.base import table_of
from server.services.audit import AuditTrail
from server.services.context import Actor
from server.services.context import Clock
from server.services.outbox import new_control_id
from server.services.outbox import patient_key
from server.services.patients import APPOINTMENT
from server.services.patients import INSURANCE
from server.services.patients import PATIENT
from server.services.patients import KnownRows
from server.services.patients import Patients
from server.services.visits import Visits

log = logging.getLogger("frontdesk.inbound")

INBOUND = table_of(InboundMessage)
_LOG_INBOUND = insert(INBOUND)

# What a schedule status means for a visit still waiting.
STATUS_VISIT = {"cancelled": VisitState.CANCELLED, "deleted": VisitState.CANCELLED, "noshow": VisitState.NO_SHOW}

_LIMIT_COLUMNS: dict[str, Column[t.Any]] = {
    "sending_application": INBOUND.c.sending_application, "sending_facility": INBOUND.c.sending_facility,
    "control_id": INBOUND.c.control_id, "mrn": PATIENT.c.mrn, "mrn_authority": PATIENT.c.mrn_authority,
    "family": PATIENT.c.family_name, "given": PATIENT.c.given_name, "middle": PATIENT.c.middle_name,
    "street": PATIENT.c.address_line1, "other": PATIENT.c.address_line2, "city": PATIENT.c.city,
    "state": PATIENT.c.state, "postal_code": PATIENT.c.postal_code, "country": PATIENT.c.country,
    "phone": PATIENT.c.phone, "phone_country_code": PATIENT.c.phone_country_code,
    "phone_area_code": PATIENT.c.phone_area_code, "phone_local_number": PATIENT.c.phone_local_number,
    "phone_extension": PATIENT.c.phone_extension, "email": PATIENT.c.email, "language": PATIENT.c.preferred_language,
    "payer_name": INSURANCE.c.payer_name, "payer_id": INSURANCE.c.payer_id, "plan_name": INSURANCE.c.plan_name,
    "member_id": INSURANCE.c.member_id, "group_number": INSURANCE.c.group_number,
    "subscriber_name": INSURANCE.c.subscriber_name, "source": APPOINTMENT.c.source,
    "placer_id": APPOINTMENT.c.placer_id, "placer_authority": APPOINTMENT.c.placer_authority,
    "filler_id": APPOINTMENT.c.filler_id, "filler_authority": APPOINTMENT.c.filler_authority,
    "provider_id": APPOINTMENT.c.provider_id, "provider_family": APPOINTMENT.c.provider_family,
    "provider_given": APPOINTMENT.c.provider_given, "provider_authority": APPOINTMENT.c.provider_authority,
    "location": APPOINTMENT.c.location, "appointment_type": APPOINTMENT.c.appointment_type,
    "status": APPOINTMENT.c.status, "visit_number": APPOINTMENT.c.visit_number,
    "visit_authority": APPOINTMENT.c.visit_authority, "merge_mrn": PATIENT.c.mrn,
    "merge_authority": PATIENT.c.mrn_authority,
}
LIMITS: dict[str, int] = {name: int(length) for name, column in _LIMIT_COLUMNS.items()
                          if (length := getattr(column.type, "length", None))}
"""The longest value each column takes, by the names :func:`hl7.inbound.read_inbound` reports errors under."""


class InboundNotFound(LookupError):
    """No stored message with this id, or one that cannot be reprocessed (it was accepted)."""


@dataclass(frozen=True)
class InboundResult:
    """What happened to one message: for the CLI's one line per message, never patient data."""

    control_id: str
    message_type: str
    outcome: str
    duplicate: bool
    ack: bytes
    error: str


@dataclass(frozen=True)
class _Prepared:
    """One message read before any database work: its key, its records, or why it cannot be applied.

    ``key`` is ``None`` when the message's own key cannot be stored (it is kept
    under one of its own); ``message`` is ``None`` when not even MSH could be
    read (there is nobody to answer).
    """

    raw: bytes
    message: Message | None
    key: MessageKey | None
    update: InboundUpdate | None = None
    rejection: Rejection | None = None

    @property
    def message_type(self) -> str:
        return self.key.message_type if self.key else "unreadable"


@dataclass(frozen=True)
class _Stored:
    """A message already kept under a key: how it was answered, and its bytes (to tell a resend from a reuse)."""

    outcome: str
    ack: bytes
    error: str
    raw: bytes


_Key = tuple[str, str, str]


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
        # Built once, with the control ids as one list parameter, so every group reuses the compiled statement.
        self._find_inbound = (
            select(INBOUND.c.control_id, INBOUND.c.outcome, INBOUND.c.ack, INBOUND.c.error, INBOUND.c.raw)
            .where(INBOUND.c.sending_application == bindparam("find_app"),
                   INBOUND.c.sending_facility == bindparam("find_facility"),
                   one_of(INBOUND.c.control_id, "find_ids", uow.engine.dialect.name)))

    def recent(self, *, actor: Actor, control_id: str | None = None, message_type: str | None = None,
               day: dt.date | None = None, limit: int = 200) -> list[InboundMessage]:
        """Messages received, newest first, narrowed by control id, type (``SIU^S12``) or the clinic's day.

        Audited: an error text may quote a field of the message (a malformed birth date, say).
        """
        query = select(InboundMessage).order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc())
        if control_id:
            query = query.where(InboundMessage.control_id == control_id)
        if message_type:
            query = query.where(InboundMessage.message_type == message_type)
        if day is not None:
            start = dt.datetime.combine(day, dt.time(), tzinfo=self.zone)
            query = query.where(InboundMessage.received_at >= start,
                                InboundMessage.received_at < start + dt.timedelta(days=1))
        with self.uow.begin() as session:
            rows = list(session.scalars(query.limit(limit)))
            self.audit.record(session, actor, "inbound.listed", resource_type="inbound_message",
                              detail=f"count={len(rows)}")
            return rows

    def handle(self, raw: bytes, peer: str) -> bytes:
        """The listener's handler for one frame (a message or a batch): apply it and return the ACK to send."""
        if is_batch(raw):
            return self.receive_batch(raw, peer)
        return self.receive(raw, peer).ack

    def handle_group(self, frames: Sequence[bytes], peer: str) -> list[bytes]:
        """The listener's handler for frames that arrived together: applied in order, each run of single
        messages in one commit; every ACK in order."""
        acks: list[bytes] = []
        run: list[bytes] = []
        for frame in [*frames, b""]:
            if frame and not is_batch(frame):
                run.append(frame)
                continue
            acks += [result.ack for result in self.receive_many(run, peer)]
            run = []
            if frame:
                acks.append(self.receive_batch(frame, peer))
        return acks

    def receive(self, raw: bytes, peer: str) -> InboundResult:
        """Apply one message (see the module docstring) and return what happened."""
        return self.receive_many([raw], peer)[0]

    def receive_batch(self, raw: bytes, peer: str) -> bytes:
        """Apply every message of a batch (FHS/BHS) and return the response batch, one ACK per message.

        :raises ParseError: for a batch whose structure cannot be read.
        """
        batch = split_batch(raw)
        results = self.receive_many(batch.messages, peer)
        return build_batch_ack(batch, [r.ack for r in results if r.ack], control_id=new_control_id(),
                               now=self.clock.now())

    def receive_many(self, raws: Sequence[bytes], peer: str) -> list[InboundResult]:
        """Apply messages that arrived together in one transaction (group commit); one result each, in order."""
        if not raws:
            return []
        prepared = [self._prepare(raw) for raw in raws]
        try:
            with self.uow.begin() as session:
                # Reserving ids costs a query per table: worth it only when several rows share one insert.
                results = self._settle_all(session, prepared, peer, reserve=len(prepared) > 1)
        except Exception as exc:
            log.warning("hl7.inbound_group_retried", extra={"count": len(prepared), "reason": type(exc).__name__})
            return [self._alone(item, peer) for item in prepared]
        for result in results:
            log.log(logging.INFO if result.outcome == "AA" else logging.WARNING, "hl7.inbound",
                    extra={"control_id": result.control_id, "message_type": result.message_type,
                           "outcome": result.outcome, "address": peer})
        return results

    def _alone(self, item: _Prepared, peer: str) -> InboundResult:
        """One message of a failed group, in a transaction of its own, creating rows as it goes: if another
        connection creates the same patient meanwhile, this one waits for it and updates that row instead."""
        try:
            with self.uow.begin() as session:
                return self._settle_all(session, [item], peer, reserve=False)[0]
        except Exception as exc:
            return self._recover(item, peer, exc)

    def _recover(self, item: _Prepared, peer: str, exc: Exception) -> InboundResult:
        """After a failed transaction: the same message stored meanwhile by another connection, or AR."""
        if isinstance(exc, IntegrityError) and item.key is not None:
            stored = self._stored(item.key)
            if stored is not None:
                return self._answer_stored(item, stored)
        log.error("hl7.inbound_failed", exc_info=exc, extra={"control_id": item.key.control_id if item.key else "",
                                                             "message_type": item.message_type})
        ack = self._ack(item.message, "AR", (ErrorDetail("receiver error, resend later", code="207"),))
        with self.uow.begin() as session:
            session.execute(_LOG_INBOUND, self._log_row(_unique_key(item), item, "AR", "receiver error", ack, peer))
        return InboundResult(_control_id(item), item.message_type, "AR", False, ack, "receiver error")

    def reprocess(self, inbound_id: int, *, actor: Actor) -> InboundResult:
        """Apply a stored message we rejected (AE/AR) again, as if it had just arrived; audited.

        After the cause is fixed (a receiver error that passed, a setting
        corrected), an analyst need not ask the sender to resend. When it now
        applies, the stored row becomes ``AA`` with the ACK we would have sent,
        so a resend from the sender is answered as accepted; when it is still
        rejected, the row keeps its outcome with the new reason.

        :raises InboundNotFound: no stored message with this id, or one that was accepted.
        """
        with self.uow.begin() as session:
            row = session.get(InboundMessage, inbound_id, with_for_update=True)
            if row is None or row.outcome not in ("AE", "AR"):
                raise InboundNotFound(inbound_id)
            item = self._prepare(row.raw)
            if item.update is None or item.message is None:
                rejection = item.rejection or Rejection("AE")
                row.error = str(rejection)
                outcome = row.outcome
            else:
                known = self.patients.prefetch(session, [item.update.patient.mrn],
                                               [(item.update.appointment.source, item.update.appointment.key)]
                                               if item.update.appointment else [], reserve=False)
                peer_actor = Actor("peer", f"{row.sending_application}^{row.sending_facility}"[:64],
                                   address=row.peer)
                self._apply(session, item.update, peer_actor, known)
                known.write(session)
                row.outcome, row.error, row.ack = "AA", "", self._ack(item.message, "AA")
                outcome = "AA"
            self.audit.record(session, actor, "inbound.reprocess", resource_type="inbound_message",
                              resource_id=inbound_id, outcome="success" if outcome == "AA" else "failure")
            result = InboundResult(row.control_id, row.message_type, outcome, False, row.ack, row.error)
        log.info("hl7.inbound_reprocessed", extra={"control_id": result.control_id, "outcome": outcome,
                                                   "message_type": result.message_type})
        return result

    # Reading (no database) ------------------------------------------------------------------------

    def _prepare(self, raw: bytes) -> _Prepared:
        try:
            message = parse_message(raw)
        except (ParseError, CharsetError) as exc:
            header = parse_header(raw)
            rejection = Rejection("AE", ErrorDetail(f"message cannot be read: {exc}"[:200], code="102"))
            return _Prepared(raw, header, self._key_or_none(header), rejection=rejection)
        try:
            key = message_key(message, LIMITS)
        except Rejection as rejection:
            return _Prepared(raw, message, None, rejection=rejection)
        try:
            return _Prepared(raw, message, key, update=read_inbound(message, limits=LIMITS, zone=self.zone))
        except Rejection as rejection:
            return _Prepared(raw, message, key, rejection=rejection)

    @staticmethod
    def _key_or_none(header: Message | None) -> MessageKey | None:
        if header is None:
            return None
        try:
            key = message_key(header, LIMITS)
        except Rejection:
            return None
        return MessageKey(key.sending_application, key.sending_facility, key.control_id, "unreadable")

    # Storing --------------------------------------------------------------------------------------

    def _settle_all(self, session: Session, items: Sequence[_Prepared], peer: str, *,
                    reserve: bool) -> list[InboundResult]:
        """Answer every message of a group in one transaction. New rows and log rows are written together at
        the end (one statement per table instead of one per row; the audit trail does the same for its rows at
        commit); with ``reserve``, new patients and appointments too (see
        :class:`~server.services.patients.KnownRows`)."""
        stored = self._stored_in(session, [_key(item.key) for item in items if item.key is not None])
        updates = [item.update for item in items if item.update is not None]
        known = self.patients.prefetch(session, [u.patient.mrn for u in updates],
                                       [(u.appointment.source, u.appointment.key) for u in updates if u.appointment],
                                       reserve=reserve)
        logged: list[dict[str, t.Any]] = []
        results = [self._settle(session, item, stored, peer, logged, known) for item in items]
        known.write(session)
        if logged:
            session.execute(_LOG_INBOUND, logged)
        return results

    def _settle(self, session: Session, item: _Prepared, stored: dict[_Key, _Stored], peer: str,
                logged: list[dict[str, t.Any]], known: KnownRows) -> InboundResult:
        """Answer one message inside the group's transaction; ``stored`` grows with each message kept."""
        if item.key is None:
            rejection = item.rejection or Rejection("AE")
            return self._keep(logged, _unique_key(item), item, rejection.code, rejection, peer)
        key = _key(item.key)
        earlier = stored.get(key)
        if earlier is not None:
            if _same_content(earlier.raw, item.raw):
                return self._answer_stored(item, earlier)
            reuse = Rejection("AE", ErrorDetail(
                f"MSH-10 {item.key.control_id!r} was already used for a different message from this sender; "
                "this message was not applied and is kept for review", code="205", segment="MSH", sequence=1,
                field=10))
            return self._keep(logged, _unique_key(item), item, "AE", reuse, peer)
        if item.rejection is not None:
            where = key if item.rejection.keyed else _unique_key(item)
            result = self._keep(logged, where, item, item.rejection.code, item.rejection, peer)
        else:
            assert item.update is not None and item.message is not None
            self._apply(session, item.update, Actor("peer", f"{key[0]}^{key[1]}"[:64], address=peer), known)
            ack = self._ack(item.message, "AA")
            logged.append(self._log_row(key, item, "AA", "", ack, peer))
            result = InboundResult(key[2], item.message_type, "AA", False, ack, "")
        stored[key] = _Stored(result.outcome, result.ack, result.error, item.raw)
        return result

    def _keep(self, logged: list[dict[str, t.Any]], key: _Key, item: _Prepared, outcome: str,
              rejection: Rejection, peer: str) -> InboundResult:
        """Keep a message that was not applied, with the answer it gets."""
        ack = self._ack(item.message, outcome, rejection.errors)
        error = str(rejection)
        logged.append(self._log_row(key, item, outcome, error, ack, peer))
        return InboundResult(_control_id(item), item.message_type, outcome, False, ack, error)

    @staticmethod
    def _answer_stored(item: _Prepared, stored: _Stored) -> InboundResult:
        return InboundResult(_control_id(item), item.message_type, stored.outcome, True, stored.ack, stored.error)

    def _stored(self, key: MessageKey) -> _Stored | None:
        with self.uow.begin() as session:
            return self._stored_in(session, [_key(key)]).get(_key(key))

    def _stored_in(self, session: Session, keys: list[_Key]) -> dict[_Key, _Stored]:
        """The messages already received under any of ``keys`` (sender and MSH-10): one query per sender."""
        by_sender: dict[tuple[str, str], list[str]] = {}
        for application, facility, control_id in keys:
            by_sender.setdefault((application, facility), []).append(control_id)
        found = {}
        for (application, facility), control_ids in by_sender.items():
            rows = session.execute(self._find_inbound, {"find_app": application, "find_facility": facility,
                                                        "find_ids": control_ids})
            found.update({(application, facility, r.control_id): _Stored(r.outcome, r.ack, r.error, r.raw)
                          for r in rows})
        return found

    def _log_row(self, key: _Key, item: _Prepared, outcome: str, error: str, ack: bytes,
                 peer: str) -> dict[str, t.Any]:
        """The inbound log row keeping a message, its outcome and our ACK."""
        return {"sending_application": key[0], "sending_facility": key[1], "control_id": key[2],
                "message_type": item.message_type[:32], "raw": item.raw, "outcome": outcome, "error": error,
                "ack": ack, "peer": peer[:128], "received_at": self.clock.now()}

    def _ack(self, message: Message | None, code: str, errors: Sequence[ErrorDetail] = ()) -> bytes:
        if message is None:
            return b""
        return build_ack(message, code, errors=errors, control_id=new_control_id(), now=self.clock.now())

    # Applying -------------------------------------------------------------------------------------

    def _apply(self, session: Session, update_: InboundUpdate, actor: Actor, known: KnownRows) -> None:
        patient_id = self.patients.upsert_in(session, update_.patient, actor=actor, known=known)
        if update_.appointment is not None:
            self._schedule(session, update_.appointment, patient_id, actor, known)
        if update_.merge_from is not None:
            known.write(session)
            self._merge(session, update_.merge_from, patient_id, actor)
            known.forget()

    def _schedule(self, session: Session, record: AppointmentUpdate, patient_id: int, actor: Actor,
                  known: KnownRows) -> None:
        appointment_id = self.patients.schedule_in(session, patient_id, record, actor=actor, known=known)
        target = STATUS_VISIT.get(record.status) if isinstance(record.status, str) else None
        if target is None:
            return
        known.write(session)
        visit = session.scalar(select(Visit).where(Visit.appointment_id == appointment_id).with_for_update())
        if visit is not None and visit.state == VisitState.EXPECTED.value:
            self.visits.transition_in(session, visit, target, actor=actor)

    def _merge(self, session: Session, prior_identifier: Identifier, survivor_id: int, actor: Actor) -> None:
        """A40: move everything of the prior patient to the survivor, re-keying unsent messages."""
        found = self.patients.find_in(session, prior_identifier)
        if found is None or found[0] == survivor_id:
            return
        prior_id = found[0]
        for model in (Appointment, Visit, Observation, QuestionnaireResponse):
            session.execute(update(model).where(model.patient_id == prior_id).values(patient_id=survivor_id))
        session.execute(update(OutboxMessage)
                        .where(OutboxMessage.ordering_key == patient_key(prior_id),
                               OutboxMessage.status.in_(("pending", "sending", "dead")))
                        .values(ordering_key=patient_key(survivor_id)))
        session.execute(update(PATIENT).where(PATIENT.c.id == bindparam("row_id")),
                        {"row_id": prior_id, "merged_into_id": survivor_id})
        self.audit.record(session, actor, "patient.merged", patient_id=survivor_id, resource_type="patient",
                          resource_id=prior_id)


def _key(key: MessageKey) -> _Key:
    return key.sending_application, key.sending_facility, key.control_id


def _control_id(item: _Prepared) -> str:
    if item.key is not None:
        return item.key.control_id
    return item.message.msh.value(10) if item.message is not None else ""


def _unique_key(item: _Prepared) -> _Key:
    """A key no other message has, for keeping a message whose own key cannot be stored or must not be reused."""
    msh = item.message.msh if item.message is not None else None
    application = msh.value(3)[:128] if msh is not None else ""
    facility = msh.value(4)[:128] if msh is not None else ""
    return application, facility, f"kept-{new_control_id()}"


def _same_content(first: bytes, second: bytes) -> bool:
    """True when two messages differ at most in MSH-7: some senders stamp a resend with a new time."""
    return _without_time(first) == _without_time(second)


def _without_time(raw: bytes) -> bytes:
    end = min((i for i in (raw.find(b"\r"), raw.find(b"\n")) if i >= 0), default=len(raw))
    msh, rest = raw[:end], raw[end:]
    if len(msh) < 4:
        return raw
    fields = msh.split(msh[3:4])
    if len(fields) > 6:
        fields[6] = b""
    return msh[3:4].join(fields) + rest.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
