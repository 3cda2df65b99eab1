"""Appending to the audit trail inside the caller's transaction."""

from __future__ import annotations

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
        """Append one event. ``detail`` must hold no patient identifiers (ids only)."""
        session.execute(INSERT_AUDIT_EVENT, {
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
