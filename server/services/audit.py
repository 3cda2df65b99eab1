"""Appending to the audit trail inside the caller's transaction, chained at commit."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.orm import Session

from server import audit_chain
from server.db import UnitOfWork
from server.models import AuditEvent
from server.models.base import table_of
from server.services.context import Actor
from server.services.context import Clock

# Built once: the values come as parameters, so nothing is constructed per event.
INSERT_AUDIT_EVENT = insert(table_of(AuditEvent))
_LOCK_HEAD = text("SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE")
_READ_HEAD = text("SELECT seq, hash FROM audit_chain_head WHERE id = 1")
_MOVE_HEAD = text("UPDATE audit_chain_head SET seq = :seq, hash = :hash WHERE id = 1")
_PENDING = "frontdesk.audit_pending"


class AuditTrail:
    """Writes :class:`AuditEvent` rows; it has no method to change or remove one.

    It writes into the session it is given rather than opening its own
    transaction: an audited change and its audit row commit or roll back
    together, so the trail never claims something that did not happen.

    Events are held on the session and inserted just before it commits, where
    each gets the next ``seq`` and its ``chain_hash`` under the chain head's row
    lock (:mod:`server.audit_chain`). Taking that lock last, after every other
    row lock the transaction holds, means it can never be part of a lock cycle
    (a deadlock) on PostgreSQL, and it is held only for the few inserts at the
    end. Rows are inserted as plain statements rather than through the
    session's unit of work: they are never read back or changed, and on busy
    paths (inbound messages) the unit of work's bookkeeping cost more than the
    insert.
    """

    def __init__(self, *, clock: Clock) -> None:
        self.clock = clock

    def record(self, session: Session, actor: Actor, action: str, *, patient_id: int | None = None,
               resource_type: str = "", resource_id: str | int = "", outcome: str = "success",
               detail: str = "") -> None:
        """Append one event. ``detail`` must hold no patient identifiers (ids only)."""
        session.info.setdefault(_PENDING, []).append({
            "at": self.clock.now(),
            "actor_type": actor.actor_type,
            "actor_id": actor.actor_id,
            "action": action,
            "outcome": outcome,
            "patient_id": patient_id,
            "resource_type": resource_type,
            "resource_id": str(resource_id),
            "address": actor.address,
            "correlation_id": actor.correlation_id,
            "detail": detail,
        })


@event.listens_for(Session, "before_commit")
def _chain_pending(session: Session) -> None:
    """Insert the session's held events, each linked to the one before, as the last work of the transaction."""
    pending: list[dict[str, t.Any]] = session.info.pop(_PENDING, [])
    if not pending:
        return
    session.flush()
    # SQLite: no FOR UPDATE; every transaction already holds the write lock (BEGIN IMMEDIATE, see server.db).
    lock = _READ_HEAD if session.get_bind().dialect.name == "sqlite" else _LOCK_HEAD
    seq, previous = session.execute(lock).one()
    for values in pending:
        seq += 1
        previous = audit_chain.link(previous, seq, values)
        values.update(seq=seq, chain_hash=previous)
    session.execute(INSERT_AUDIT_EVENT, pending)
    session.execute(_MOVE_HEAD, {"seq": seq, "hash": previous})


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    """Events of a transaction that rolled back never happened."""
    session.info.pop(_PENDING, None)


@dataclass(frozen=True)
class Verification:
    """The result of :meth:`AuditVerifier.verify`."""

    checked: int
    head_seq: int
    head_hash: str
    finding: audit_chain.Finding | None


class AuditVerifier:
    """Re-computes the audit chain from the stored rows (``frontdesk audit verify``)."""

    def __init__(self, *, uow: UnitOfWork) -> None:
        self.uow = uow

    def verify(self, *, batch: int = 5000) -> Verification:
        """Walk every row in ``seq`` order and report the first one that was altered, deleted or reordered."""
        columns = [table_of(AuditEvent).c[name] for name in audit_chain.FIELDS]
        with self.uow.begin() as session:
            head_seq, head_hash = session.execute(_READ_HEAD).one()
            unchained = session.execute(select(AuditEvent.id).where(AuditEvent.seq.is_(None)).limit(1)).first()
            query = (select(AuditEvent.id, AuditEvent.seq, AuditEvent.chain_hash, *columns)
                     .order_by(AuditEvent.seq).execution_options(yield_per=batch))
            rows = t.cast(t.Iterable[t.Mapping[str, t.Any]], session.execute(query).mappings())
            finding, checked = audit_chain.first_break(rows, head_seq, head_hash)
            if finding is None and unchained is not None:
                finding = audit_chain.Finding(head_seq + 1, unchained.id, "is not in the chain (no sequence number)")
        return Verification(checked, head_seq, head_hash, finding)
