"""Security alerts for staff: raised by services, listed for the staff side, cleared by an administrator."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db import UnitOfWork
from server.models import SecurityAlert
from server.services.audit import AuditTrail
from server.services.context import Actor
from server.services.context import Clock


@dataclass(frozen=True)
class Alert:
    """An open alert as the staff side shows it."""

    id: int
    kind: str
    subject: str
    detail: str
    raised_at: dt.datetime


class SecurityAlerts:
    """Raises one alert per state change (a sign-in locked, an address throttled), never one per attempt.

    A second raise for a kind and subject that already has an open alert does
    nothing, so a guessing run fills no inbox (the alert floods Mirth users
    complain of). Alerts stay open until cleared, by an unlock or by hand.
    """

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit

    def raise_in(self, session: Session, kind: str, subject: str, detail: str, *, actor: Actor) -> None:
        """Open an alert in the caller's transaction unless the same one is open already."""
        existing = session.scalar(select(SecurityAlert.id).where(
            SecurityAlert.kind == kind, SecurityAlert.subject == subject, SecurityAlert.cleared_at.is_(None)))
        if existing is not None:
            return
        alert = SecurityAlert(kind=kind, subject=subject, detail=detail, raised_at=self.clock.now())
        session.add(alert)
        session.flush()
        self.audit.record(session, actor, "security.alert_raised", resource_type="security_alert",
                          resource_id=alert.id, outcome="failure", detail=f"kind={kind}")

    def clear_in(self, session: Session, kind: str, subject: str, *, actor: Actor) -> int:
        """Clear the open alerts of ``kind`` about ``subject``; returns how many."""
        rows = session.scalars(select(SecurityAlert).where(
            SecurityAlert.kind == kind, SecurityAlert.subject == subject, SecurityAlert.cleared_at.is_(None))).all()
        for row in rows:
            row.cleared_at = self.clock.now()
            self.audit.record(session, actor, "security.alert_cleared", resource_type="security_alert",
                              resource_id=row.id)
        return len(rows)

    def clear(self, alert_id: int, *, actor: Actor) -> bool:
        """Clear one alert by id (an administrator has looked at it); ``False`` if it is not open."""
        with self.uow.begin() as session:
            row = session.get(SecurityAlert, alert_id)
            if row is None or row.cleared_at is not None:
                return False
            row.cleared_at = self.clock.now()
            self.audit.record(session, actor, "security.alert_cleared", resource_type="security_alert",
                              resource_id=row.id)
            return True

    def open(self) -> list[Alert]:
        """Open alerts, newest first (the staff board shows these)."""
        with self.uow.begin() as session:
            rows = session.scalars(select(SecurityAlert).where(SecurityAlert.cleared_at.is_(None))
                                   .order_by(SecurityAlert.raised_at.desc(), SecurityAlert.id.desc())).all()
            return [Alert(r.id, r.kind, r.subject, r.detail, r.raised_at) for r in rows]
