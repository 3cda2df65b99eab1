"""Appending to the audit trail inside the caller's transaction."""

from __future__ import annotations

import contextlib
import typing as t

from sqlalchemy import insert
from sqlalchemy.orm import Session

from server.models import AuditEvent
from server.models.base import table_of
from server.services.context import Actor
from server.services.context import Clock

# Built once: the values come as parameters, so nothing is constructed per event.
INSERT_AUDIT_EVENT = insert(table_of(AuditEvent))


class AuditTrail:
    """Writes :class:`AuditEvent` rows; it has no method to change or remove one.

    It writes into the session it is given rather than opening its own
    transaction: an audited change and its audit row commit or roll back
    together, so the trail never claims something that did not happen. Rows
    are inserted at once rather than through the session's unit of work: they
    are never read back or changed, and on busy paths (inbound messages) the
    unit of work's bookkeeping cost more than the insert.
    """

    def __init__(self, *, clock: Clock) -> None:
        self.clock = clock

    def record(self, session: Session, actor: Actor, action: str, *, patient_id: int | None = None,
               resource_type: str = "", resource_id: str | int = "", outcome: str = "success",
               detail: str = "") -> None:
        """Append one event. ``detail`` must hold no patient identifiers (ids only).

        Inside :meth:`deferred` the row is held and written with the others at its end.
        """
        row = {
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
        }
        pending = session.info.get(_PENDING)
        if pending is None:
            session.execute(INSERT_AUDIT_EVENT, row)
        else:
            pending.append(row)

    @contextlib.contextmanager
    def deferred(self, session: Session) -> t.Iterator[None]:
        """Hold the events recorded in ``session`` and write them in one statement when the block ends.

        For a transaction that records many events (a group of inbound
        messages): one multi-row insert instead of a round trip per event. The
        rows are still written inside the transaction, before it commits.
        """
        session.info[_PENDING] = []
        try:
            yield
            rows = session.info[_PENDING]
            if rows:
                session.execute(INSERT_AUDIT_EVENT, rows)
        finally:
            del session.info[_PENDING]


_PENDING = "audit.pending"
