"""The outbox: HL7 messages written with the change they report, and delivered from here.

:class:`Outbox` is what services and staff use (enqueue inside a transaction,
list, retry, discard, counts). :class:`OutboxRepository` is the storage side
of :class:`hl7.dispatcher.Dispatcher`, with one claim strategy per backend:

* PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` so any number of dispatchers
  share the work without waiting for each other or taking the same row.
* SQLite: no row locks exist (SQLAlchemy silently drops ``FOR UPDATE`` there),
  so the claim runs under ``BEGIN IMMEDIATE`` (the write lock, see
  :mod:`server.db`) and one dispatcher at a time holds the
  ``outbox-dispatcher`` lease; a second one waits until that lease expires.
  The lease lasts one and a half claim leases and is renewed once less than a
  claim lease is left, so an idle dispatcher writes rarely and a crashed one
  blocks its successor for a bounded time.

Per-patient FIFO is a property of the claim query on both: a row is claimable
only if no older row with the same ``ordering_key`` is pending, sending or
dead. A dead letter therefore holds that patient's later messages, and no
other patient's, until staff retry or discard it.

The claim walks rows in id order from the oldest undelivered one and stops
after ``limit`` claimable rows, so its cost follows the batch, not the backlog
or the history. (Written with ``OR`` on the status, the same condition makes
SQLite collect every due row and sort them: 36 ms instead of 0.7 ms at 10,000
due messages.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import typing as t
import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement
from sqlalchemy import CursorResult
from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import case
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm import aliased

from hl7.dispatcher import OutboundItem
from server.db import UnitOfWork
from server.models import OutboxMessage
from server.models import Patient
from server.models import ServiceLease
from server.models.base import table_of
from server.services.audit import AuditTrail
from server.services.context import SYSTEM
from server.services.context import Actor
from server.services.context import Clock

log = logging.getLogger("frontdesk.outbox")

UNDELIVERED = ("pending", "sending", "dead")
DISPATCHER_LEASE = "outbox-dispatcher"


class OutboxError(LookupError):
    """A staff action on a message that does not exist or is not in a state that allows it."""


class OutboxNotFound(OutboxError):
    """No outbox message with this id."""


def new_control_id() -> str:
    """A fresh MSH-10: 20 characters, unique, fixed for the life of the message."""
    return "FD" + uuid.uuid4().hex[:18].upper()


def patient_key(patient_id: int) -> str:
    """The ordering key of a patient's messages (FIFO per patient)."""
    return f"patient:{patient_id}"


def patient_of(ordering_key: str) -> int | None:
    """The patient id in an ordering key written by :func:`patient_key`, if it is one."""
    prefix, _, number = ordering_key.partition(":")
    return int(number) if prefix == "patient" and number.isdigit() else None


@dataclass(frozen=True)
class Selection:
    """Which messages a bulk retry or discard applies to; empty fields select everything.

    :param mrn: only the messages of the patient (or patients, across
        authorities) with this medical record number.
    :param error: only messages whose last error contains this text (any case).
    """

    mrn: str = ""
    error: str = ""


@dataclass(frozen=True)
class OutboxRow:
    """One message as staff see it (no payload: it holds patient data)."""

    id: int
    control_id: str
    message_type: str
    ordering_key: str
    status: str
    attempts: int
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    last_error: str


class Outbox:
    """Enqueueing and staff operations on the outbox."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit
        self._subscribers: list[t.Callable[[], None]] = []

    def subscribe(self, callback: t.Callable[[], None]) -> None:
        """Call ``callback`` after every commit that enqueued a message (an in-process dispatcher's wake-up)."""
        self._subscribers.append(callback)

    def unsubscribe(self, callback: t.Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        self._subscribers.remove(callback)

    def _notify(self, _session: Session) -> None:
        for callback in self._subscribers:
            callback()

    def enqueue(self, session: Session, payload: bytes, *, control_id: str, message_type: str,
                ordering_key: str, destination: str = "default", dead_reason: str = "") -> int:
        """Add a message inside the caller's transaction; returns its row id.

        :param control_id: the MSH-10 already written into ``payload``.
        :param ordering_key: messages with the same key are delivered in order (the patient).
        :param dead_reason: when set, the message is known to be unsendable as it stands and is
            written as a dead letter with this reason, for staff to retry or discard.
        """
        now = self.clock.now()
        row = OutboxMessage(control_id=control_id, message_type=message_type, destination=destination,
                            ordering_key=ordering_key, payload=payload,
                            sha256=hashlib.sha256(payload).hexdigest(), status="dead" if dead_reason else "pending",
                            attempts=0, next_attempt_at=now, created_at=now, last_error=dead_reason)
        session.add(row)
        session.flush()
        if dead_reason:
            # The reason may quote patient text: it is stored for staff and kept out of the log.
            log.error("outbox.dead_letter", extra={"control_id": control_id, "attempts": 0,
                                                   "reason": "not sendable to this destination"})
            self.audit.record(session, SYSTEM, "outbox.dead_letter", outcome="failure",
                              resource_type="outbox_message", resource_id=row.id)
        if self._subscribers and not session.info.get("outbox.notify"):
            session.info["outbox.notify"] = True
            event.listen(session, "after_commit", self._notify, once=True)
        return row.id

    def list(self, *, status: str | None = None, limit: int = 100) -> list[OutboxRow]:
        """Newest first, optionally of one status."""
        query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
        if status:
            query = query.where(OutboxMessage.status == status)
        with self.uow.begin() as session:
            return [OutboxRow(r.id, r.control_id, r.message_type, r.ordering_key, r.status, r.attempts,
                              r.created_at, r.next_attempt_at, r.last_error) for r in session.scalars(query)]

    def held(self, *, actor: Actor, limit: int = 100) -> t.Sequence[OutboxRow]:
        """The messages that need staff attention, dead letters first, then those waiting; the view is audited
        because their errors are the receiver's text and may quote patient data."""
        rows = [*self.list(status="dead", limit=limit), *self.list(status="pending", limit=limit)]
        with self.uow.begin() as session:
            self.audit.record(session, actor, "outbox.viewed", resource_type="outbox_message",
                              detail=f"shown={len(rows)}")
        return rows

    def retry(self, message_id: int, *, actor: Actor) -> None:
        """Send a dead (or waiting) message again now, with a fresh attempt budget and the same MSH-10.

        :raises OutboxError: unknown id, or a message already sent or discarded.
        """
        self._staff_action(message_id, "retry", actor=actor, allowed=("dead", "pending"), values=self._retry_values())

    def discard(self, message_id: int, *, actor: Actor) -> None:
        """Give up on a message for good; the patient's later messages flow again.

        :raises OutboxError: unknown id, or a message already sent or discarded.
        """
        self._staff_action(message_id, "discard", actor=actor, allowed=("dead", "pending"),
                           values={"status": "discarded"})

    def retry_many(self, selection: Selection, *, actor: Actor) -> int:
        """Send every selected dead or waiting message again now, each with a fresh budget; returns how many.

        After an outage this is how staff send the backlog at once instead of
        waiting out each message's backoff, and how dead letters of one cause
        (one patient, one error) are released together. Each message is audited.
        """
        return self._bulk_action(selection, "retry", actor=actor, allowed=("dead", "pending"),
                                 values=self._retry_values())

    def discard_many(self, selection: Selection, *, actor: Actor) -> int:
        """Give up on every selected dead letter; returns how many.

        Only dead letters: a waiting message is one the receiver has not
        refused, and discarding a whole backlog by mistake cannot be undone.
        """
        return self._bulk_action(selection, "discard", actor=actor, allowed=("dead",),
                                 values={"status": "discarded"})

    def _retry_values(self) -> dict[str, object]:
        return {"status": "pending", "attempts": 0, "rejections": 0, "next_attempt_at": self.clock.now()}

    def _bulk_action(self, selection: Selection, action: str, *, actor: Actor, allowed: tuple[str, ...],
                     values: dict[str, object]) -> int:
        with self.uow.begin() as session:
            query = select(OutboxMessage).where(OutboxMessage.status.in_(allowed)).order_by(OutboxMessage.id)
            if selection.mrn:
                ids = session.scalars(select(Patient.id).where(Patient.mrn == selection.mrn)).all()
                query = query.where(OutboxMessage.ordering_key.in_([patient_key(i) for i in ids]))
            if selection.error:
                query = query.where(func.lower(OutboxMessage.last_error).contains(selection.error.lower(),
                                                                                autoescape=True))
            # Locked (on PostgreSQL) so a dispatcher cannot claim a row between the selection and the change.
            rows = session.scalars(query.with_for_update()).all()
            for row in rows:
                for key, value in values.items():
                    setattr(row, key, value)
                self.audit.record(session, actor, f"outbox.{action}", patient_id=patient_of(row.ordering_key),
                                  resource_type="outbox_message", resource_id=row.id,
                                  detail=f"control_id={row.control_id} bulk")
            return len(rows)

    def stats(self) -> dict[str, object]:
        """Counts by status and the age in seconds of the oldest undelivered message."""
        now = self.clock.now()
        with self.uow.begin() as session:
            counts = dict(session.execute(select(OutboxMessage.status, func.count())
                                          .group_by(OutboxMessage.status)).all())
            oldest = session.scalar(select(func.min(OutboxMessage.created_at))
                                    .where(OutboxMessage.status.in_(("pending", "sending"))))
        return {
            "counts": {state: int(counts.get(state, 0)) for state in
                       ("pending", "sending", "sent", "dead", "discarded")},
            "oldest_pending_age_seconds": round((now - oldest).total_seconds(), 3) if oldest else None,
        }

    def _staff_action(self, message_id: int, action: str, *, actor: Actor, allowed: tuple[str, ...],
                      values: dict[str, object]) -> None:
        with self.uow.begin() as session:
            # Locked (on PostgreSQL) so a dispatcher cannot claim the row between the check and the change.
            row = session.get(OutboxMessage, message_id, with_for_update=True)
            if row is None:
                raise OutboxNotFound(f"outbox message {message_id} does not exist")
            if row.status not in allowed:
                raise OutboxError(f"outbox message {message_id} is {row.status}; {action} needs "
                                  f"{' or '.join(allowed)}")
            for key, value in values.items():
                setattr(row, key, value)
            self.audit.record(session, actor, f"outbox.{action}", patient_id=patient_of(row.ordering_key),
                              resource_type="outbox_message", resource_id=row.id,
                              detail=f"control_id={row.control_id}")


def stalled(stats: t.Mapping[str, object], limit: dt.timedelta) -> bool:
    """Whether the oldest undelivered message in ``stats`` (from :meth:`Outbox.stats`) has waited past ``limit``."""
    age = t.cast(float | None, stats["oldest_pending_age_seconds"])
    return age is not None and age > limit.total_seconds()


class BacklogWatch:
    """Alerts when the oldest undelivered message has waited too long, once per state change.

    Transport failures never dead-letter (see :mod:`hl7.dispatcher`), so during
    an outage nothing else would change state: the backlog's age is the alarm.
    ``outbox.backlog_stalled`` is logged as an error when the oldest waiting
    message passes ``limit``, and ``outbox.backlog_cleared`` once it is back
    under it: two lines per outage, however long it lasts.
    """

    def __init__(self, outbox: Outbox, *, limit: dt.timedelta) -> None:
        self.outbox = outbox
        self.limit = limit
        self.stalled = False

    def check(self) -> bool:
        """Look at the backlog now; returns whether it is stalled."""
        stats = self.outbox.stats()
        age = t.cast(float | None, stats["oldest_pending_age_seconds"])
        counts = t.cast(dict[str, int], stats["counts"])
        now_stalled = stalled(stats, self.limit)
        if now_stalled and not self.stalled:
            log.error("outbox.backlog_stalled", extra={"age_seconds": age,
                                                       "count": counts["pending"] + counts["sending"]})
        elif self.stalled and not now_stalled:
            log.info("outbox.backlog_cleared", extra={"age_seconds": age})
        self.stalled = now_stalled
        return now_stalled


class OutboxRepository:
    """The dispatcher's view of the outbox (:class:`hl7.dispatcher.OutboxRepository`).

    :param owner: this dispatcher's name, stored with each claim and lease.
    """

    def __init__(self, *, uow: UnitOfWork, audit: AuditTrail, owner: str | None = None) -> None:
        self.uow = uow
        self.audit = audit
        self.owner = owner or f"dispatcher-{uuid.uuid4().hex[:12]}"
        self._sqlite = uow.engine.dialect.name == "sqlite"

    def claim_next(self, now: dt.datetime, lease_seconds: float, limit: int) -> list[OutboundItem]:
        """Claim up to ``limit`` due messages, at most one per ordering key (see the module docstring)."""
        lease_until = now + dt.timedelta(seconds=lease_seconds)
        with self.uow.begin() as session:
            if self._sqlite and not self._hold_lease(session, now, lease_seconds):
                return []
            query = select(OutboxMessage.id).where(self._due(now)).order_by(OutboxMessage.id).limit(limit)
            if not self._sqlite:
                query = query.with_for_update(skip_locked=True, of=OutboxMessage)
                # Walk the primary key in order and stop at ``limit``, whatever the table statistics say: right
                # after a backlog arrives they are stale, and the planner would collect and sort every due row.
                for setting in _ORDERED_SCAN:
                    session.execute(setting)
            ids = list(session.scalars(query))
            if not ids:
                return []
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids))
                .values(status="sending", lease_until=lease_until, lease_owner=self.owner,
                        attempts=OutboxMessage.attempts + 1))
            rows = session.execute(
                select(OutboxMessage.id, OutboxMessage.control_id, OutboxMessage.ordering_key,
                       OutboxMessage.payload, OutboxMessage.attempts, OutboxMessage.rejections)
                .where(OutboxMessage.id.in_(ids)).order_by(OutboxMessage.id)).all()
            return [OutboundItem(r.id, r.control_id, r.ordering_key, r.payload, r.attempts, r.rejections)
                    for r in rows]

    def mark_sent(self, acks: t.Sequence[tuple[int, bytes]], now: dt.datetime) -> None:
        """Delivered: keep the ACK that confirmed each, all in one transaction."""
        with self.uow.begin() as session:
            session.connection().execute(_MARK_SENT, [{"row_id": row_id, "ack_bytes": ack, "sent": now,
                                                       "owner": self.owner} for row_id, ack in acks])

    def mark_unsent(self, ids: t.Sequence[int], now: dt.datetime) -> None:
        """Not sent after all (the batch ran out of lease time): due at once, the attempt not counted."""
        with self.uow.begin() as session:
            session.execute(update(OutboxMessage)
                            .where(OutboxMessage.id.in_(ids), *self._owned())
                            .values(status="pending", next_attempt_at=now, attempts=OutboxMessage.attempts - 1,
                                    lease_until=None, lease_owner=None))

    def mark_retry(self, id: int, reason: str, next_attempt_at: dt.datetime, *, rejected: bool = False) -> None:
        """Back to pending until ``next_attempt_at``; a receiver's rejection is counted."""
        self._settle(id, status="pending", next_attempt_at=next_attempt_at, last_error=reason,
                     rejections=OutboxMessage.rejections + (1 if rejected else 0))

    def mark_dead(self, id: int, reason: str) -> None:
        """Dead letter, audited once (the state change, not each attempt)."""
        with self.uow.begin() as session:
            changed = t.cast(CursorResult[t.Any], session.execute(
                update(OutboxMessage).where(OutboxMessage.id == id, *self._owned())
                .values(status="dead", last_error=reason, lease_until=None, lease_owner=None))).rowcount
            if changed:
                self.audit.record(session, SYSTEM, "outbox.dead_letter", outcome="failure",
                                  resource_type="outbox_message", resource_id=id)

    def release(self) -> None:
        """Give up the SQLite dispatcher lease (on a clean stop) so a successor need not wait."""
        if not self._sqlite:
            return
        with self.uow.begin() as session:
            lease = session.get(ServiceLease, DISPATCHER_LEASE)
            if lease is not None and lease.owner == self.owner:
                session.delete(lease)

    def _settle(self, id: int, **values: object) -> None:
        with self.uow.begin() as session:
            session.execute(update(OutboxMessage)
                            .where(OutboxMessage.id == id, *self._owned())
                            .values(lease_until=None, lease_owner=None, **values))

    def _owned(self) -> tuple[ColumnElement[bool], ...]:
        """Only a row this dispatcher is still sending: after its lease ran out another may have claimed it,
        and a late result must not overwrite that claim."""
        return OutboxMessage.status == "sending", OutboxMessage.lease_owner == self.owner

    @staticmethod
    def _due(now: dt.datetime) -> ColumnElement[bool]:
        older = aliased(OutboxMessage)
        # A scalar subquery with LIMIT, not EXISTS: PostgreSQL turns EXISTS into an anti-join whose plan depends on
        # table statistics, and right after a backlog arrives those are stale (50 ms per claim of 50 instead of 1).
        # As a subquery it is one probe of the partial index on undelivered rows per candidate row.
        blocked = (select(older.id).where(older.ordering_key == OutboxMessage.ordering_key,
                                          older.id < OutboxMessage.id, older.status.in_(UNDELIVERED))
                   .limit(1).correlate(OutboxMessage).scalar_subquery().is_not(None))
        oldest_undelivered = (select(func.min(OutboxMessage.id))
                              .where(OutboxMessage.status.in_(("pending", "sending"))).scalar_subquery())
        due_at = case((OutboxMessage.status == "pending", OutboxMessage.next_attempt_at),
                      (OutboxMessage.status == "sending", OutboxMessage.lease_until))
        return and_(OutboxMessage.id >= oldest_undelivered, due_at <= now, ~blocked)

    def _hold_lease(self, session: Session, now: dt.datetime, lease_seconds: float) -> bool:
        """Hold the SQLite dispatcher lease for at least ``lease_seconds`` more, renewing only when needed."""
        lease = session.get(ServiceLease, DISPATCHER_LEASE)
        renewed = now + dt.timedelta(seconds=1.5 * lease_seconds)
        if lease is None:
            session.add(ServiceLease(name=DISPATCHER_LEASE, owner=self.owner, expires_at=renewed))
            return True
        if lease.owner != self.owner and lease.expires_at > now:
            return False
        if lease.owner != self.owner or lease.expires_at - now < dt.timedelta(seconds=lease_seconds):
            lease.owner, lease.expires_at = self.owner, renewed
        return True


_ORDERED_SCAN = (text("SET LOCAL enable_bitmapscan = off"), text("SET LOCAL enable_seqscan = off"),
                 text("SET LOCAL enable_sort = off"))

# Core UPDATE run once per batch with one parameter set per delivered message.
_OUTBOX = table_of(OutboxMessage)
_MARK_SENT = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("row_id"), _OUTBOX.c.status == "sending",
           _OUTBOX.c.lease_owner == bindparam("owner"))
    .values(status="sent", ack=bindparam("ack_bytes"), sent_at=bindparam("sent"), last_error="",
            lease_until=None, lease_owner=None)
)
