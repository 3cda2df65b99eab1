"""Staff flags and pending demographic changes: what the kiosk hands over to people.

A flag is raised inside the transaction of what caused it (an answer, a
lock-out, a request) and is visible at once through :meth:`StaffFlags.open`
and the JSON API. Changes a patient asks for at the kiosk are never applied
directly: they wait as a :class:`PendingChange` until staff approve them,
and only an approval changes the patient and tells the records system
(ADT^A08), in one transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db import UnitOfWork
from server.live import BOARD_CHANNEL
from server.live import Hub
from server.live import LocalHub
from server.live import publish_after_commit
from server.models import Insurance
from server.models import Patient
from server.models import PendingChange
from server.models import StaffFlag
from server.models import Visit
from server.services.audit import AuditTrail
from server.services.context import Actor
from server.services.context import Clock
from server.services.messages import OutboundMessages

FLAG_KINDS: dict[str, tuple[str, str]] = {
    "phq9_item9": ("urgent", "Answered PHQ-9 question 9 above \"Not at all\": follow up before the clinician"),
    "identification_lockout": ("high", "Kiosk identification locked after repeated failures"),
    "follow_up_request": ("normal", "Patient asked for a follow-up appointment at check-out"),
    "consent_question": ("normal", "Patient wants to talk about a consent before signing"),
}
"""Flag kinds, their priority and the sentence staff read."""

CHANGE_FIELDS = ("address_line1", "address_line2", "city", "state", "postal_code", "phone", "email",
                 "payer_name", "member_id")
"""What a patient may ask to change at the kiosk (patient columns, then primary insurance)."""

INSURANCE_FIELDS = frozenset({"payer_name", "member_id"})


def _current(patient: Patient, plan: Insurance | None, name: str) -> str:
    if name in INSURANCE_FIELDS:
        return str(getattr(plan, name)) if plan is not None else ""
    return str(getattr(patient, name))


class ChangeNotFound(LookupError):
    """No pending change with that id (or it was decided already)."""


class FlagNotFound(LookupError):
    """No open flag with that id."""


@dataclass(frozen=True)
class FlagView:
    """A flag as staff see it. ``patient_name`` is patient data: reading it is audited."""

    flag_id: int
    kind: str
    priority: str
    message: str
    patient_name: str
    visit_id: int | None
    kiosk_id: int | None
    created_at: dt.datetime
    acknowledged_at: dt.datetime | None


@dataclass(frozen=True)
class ChangeView:
    """A pending change as staff see it: the patient, and each field's current and requested value."""

    change_id: int
    patient_name: str
    fields: tuple[tuple[str, str, str], ...]
    created_at: dt.datetime


_PRIORITY_ORDER = {"urgent": 0, "high": 1, "normal": 2}


class StaffFlags:
    """Raises, lists and acknowledges flags; every read of a flagged patient's name is audited."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail, live: Hub | None = None) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit
        self.live = live or LocalHub()

    def raise_in(self, session: Session, kind: str, *, actor: Actor, patient_id: int | None = None,
                 visit_id: int | None = None, kiosk_id: int | None = None, detail: str = "") -> int:
        """Raise a flag in the caller's transaction; returns its id. ``detail`` holds ids and codes only."""
        priority, _ = FLAG_KINDS[kind]
        flag = StaffFlag(kind=kind, priority=priority, patient_id=patient_id, visit_id=visit_id, kiosk_id=kiosk_id,
                         detail=detail, created_at=self.clock.now())
        session.add(flag)
        session.flush()
        self.audit.record(session, actor, "flag.raised", patient_id=patient_id, resource_type="staff_flag",
                          resource_id=flag.id, detail=f"kind={kind}")
        publish_after_commit(session, self.live, BOARD_CHANNEL, "flag", {"visit_id": visit_id})
        return flag.id

    def open(self, *, actor: Actor, include_acknowledged: bool = False) -> list[FlagView]:
        """Flags not yet acknowledged (or all of today's), most urgent first, then oldest first."""
        with self.uow.begin() as session:
            query = select(StaffFlag, Patient).outerjoin(Patient, Patient.id == StaffFlag.patient_id)
            if not include_acknowledged:
                query = query.where(StaffFlag.acknowledged_at.is_(None))
            rows = session.execute(query.order_by(StaffFlag.created_at, StaffFlag.id)).all()
            views = []
            for flag, patient in rows:
                if patient is not None:
                    self.audit.record(session, actor, "flag.viewed", patient_id=patient.id,
                                      resource_type="staff_flag", resource_id=flag.id)
                views.append(FlagView(flag.id, flag.kind, flag.priority, FLAG_KINDS[flag.kind][1],
                                      f"{patient.family_name}, {patient.given_name}" if patient else "",
                                      flag.visit_id, flag.kiosk_id, flag.created_at, flag.acknowledged_at))
            return sorted(views, key=lambda v: (_PRIORITY_ORDER[v.priority], v.created_at))

    def exists(self, flag_id: int) -> bool:
        """Whether a flag with this id was ever raised (an acknowledged one too)."""
        with self.uow.begin() as session:
            return session.get(StaffFlag, flag_id) is not None

    def acknowledge(self, flag_id: int, *, actor: Actor) -> None:
        """Mark a flag as seen and handled by ``actor`` (audited).

        :raises FlagNotFound: for an unknown or already acknowledged flag.
        """
        with self.uow.begin() as session:
            flag = session.get(StaffFlag, flag_id, with_for_update=True)
            if flag is None or flag.acknowledged_at is not None:
                raise FlagNotFound(flag_id)
            flag.acknowledged_at = self.clock.now()
            flag.acknowledged_by = f"{actor.actor_type}:{actor.actor_id}"
            self.audit.record(session, actor, "flag.acknowledged", patient_id=flag.patient_id,
                              resource_type="staff_flag", resource_id=flag.id, detail=f"kind={flag.kind}")
            publish_after_commit(session, self.live, BOARD_CHANNEL, "flag", {"visit_id": flag.visit_id})


class PendingChanges:
    """Patient-requested changes: recorded from the kiosk, decided by staff."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail, messages: OutboundMessages,
                 live: Hub | None = None) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit
        self.messages = messages
        self.live = live or LocalHub()

    def request_in(self, session: Session, patient_id: int, visit_id: int | None, changes: dict[str, str], *,
                   actor: Actor) -> int:
        """Record a requested change in the caller's transaction; returns its id."""
        unknown = set(changes) - set(CHANGE_FIELDS)
        if unknown or not changes:
            raise ValueError(f"not changeable at the kiosk: {sorted(unknown)}")
        row = PendingChange(patient_id=patient_id, visit_id=visit_id, changes=dict(changes),
                            created_at=self.clock.now())
        session.add(row)
        session.flush()
        self.audit.record(session, actor, "patient.change_requested", patient_id=patient_id,
                          resource_type="pending_change", resource_id=row.id,
                          detail="fields=" + ",".join(sorted(changes)))
        publish_after_commit(session, self.live, BOARD_CHANNEL, "change", {"visit_id": visit_id})
        return row.id

    def pending(self, *, actor: Actor) -> list[ChangeView]:
        """Changes waiting for a decision, oldest first, each beside the value it would replace."""
        with self.uow.begin() as session:
            return [view for _, view in self.pending_in(session, actor)]

    def pending_in(self, session: Session, actor: Actor,
                   *where: ColumnElement[bool]) -> list[tuple[int, ChangeView]]:
        """:meth:`pending` in the caller's transaction, narrowed by ``where``; each view with its patient id."""
        rows = session.execute(select(PendingChange, Patient).join(Patient, Patient.id == PendingChange.patient_id)
                               .where(PendingChange.status == "pending", *where).order_by(PendingChange.id)).all()
        views = []
        for change, patient in rows:
            self.audit.record(session, actor, "patient.change_viewed", patient_id=patient.id,
                              resource_type="pending_change", resource_id=change.id)
            plan = patient.insurance[0] if patient.insurance else None
            fields = tuple((name, _current(patient, plan, name), change.changes[name]) for name in CHANGE_FIELDS
                           if name in change.changes)
            views.append((patient.id, ChangeView(change.id, f"{patient.family_name}, {patient.given_name}", fields,
                                                 change.created_at)))
        return views

    def exists(self, change_id: int) -> bool:
        """Whether a change with this id was ever asked for (a decided one too)."""
        with self.uow.begin() as session:
            return session.get(PendingChange, change_id) is not None

    def decide(self, change_id: int, approve: bool, *, actor: Actor) -> str | None:
        """Approve (apply the change and enqueue ADT^A08) or reject a pending change.

        :returns: the A08's MSH-10 when approved.
        :raises ChangeNotFound: for an unknown or already decided change.
        """
        with self.uow.begin() as session:
            change = session.get(PendingChange, change_id, with_for_update=True)
            if change is None or change.status != "pending":
                raise ChangeNotFound(change_id)
            change.status = "approved" if approve else "rejected"
            change.decided_at = self.clock.now()
            change.decided_by = f"{actor.actor_type}:{actor.actor_id}"
            control_id = None
            if approve:
                patient = session.get(Patient, change.patient_id)
                assert patient is not None
                self._apply(patient, change.changes)
                visit = session.get(Visit, change.visit_id) if change.visit_id else None
                control_id = self.messages.patient_updated(session, patient, visit)
            self.audit.record(session, actor, f"patient.change_{change.status}", patient_id=change.patient_id,
                              resource_type="pending_change", resource_id=change.id,
                              detail=f"control_id={control_id}" if control_id else "")
            publish_after_commit(session, self.live, BOARD_CHANNEL, "change", {"visit_id": change.visit_id})
            return control_id

    def _apply(self, patient: Patient, changes: dict[str, str]) -> None:
        for name, value in changes.items():
            if name not in INSURANCE_FIELDS:
                setattr(patient, name, value)
        if INSURANCE_FIELDS & changes.keys():
            plan = patient.insurance[0] if patient.insurance else None
            if plan is None:
                plan = Insurance(priority=1, payer_name="", member_id="")
                patient.insurance.append(plan)
            if "payer_name" in changes:
                # A new payer means the old payer's identifiers no longer apply.
                plan.payer_name, plan.payer_id, plan.plan_name = changes["payer_name"], "", ""
            if "member_id" in changes:
                plan.member_id = changes["member_id"]
        patient.updated_at = self.clock.now()
