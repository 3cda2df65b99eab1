"""The front-desk board: a day's visits with their status, time waiting and everything that needs a person.

One query per kind of thing (visits, flags, pending changes, dead letters) for
the whole day, whatever the number of visits, so the board of a busy clinic
costs what a quiet one does plus its rows. Every patient shown is an audited
read (``visit.listed``), and so is each flag and change shown beside them.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db import UnitOfWork
from server.domain.visit import STATE_TEXT
from server.domain.visit import VisitState
from server.models import OutboxMessage
from server.models import PendingChange
from server.models import StaffFlag
from server.models import Station
from server.models import Visit
from server.models import VisitTransition
from server.services.audit import AuditTrail
from server.services.context import Actor
from server.services.context import Clock
from server.services.flags import FLAG_KINDS
from server.services.flags import ChangeView
from server.services.flags import PendingChanges
from server.services.outbox import patient_key
from server.services.visits import day_query

WAITING_STATES = frozenset({VisitState.ARRIVED, VisitState.ROOMED, VisitState.VITALS_TAKEN})
"""States in which the patient is in the clinic, so the minutes since arrival mean something."""

CHANGE_LABELS = {"address_line1": "Address", "address_line2": "Address line 2", "city": "City", "state": "State",
                 "postal_code": "ZIP code", "phone": "Phone", "email": "Email", "payer_name": "Insurance",
                 "member_id": "Member ID"}


@dataclass(frozen=True)
class FlagItem:
    """An open flag on the board."""

    flag_id: int
    priority: str
    message: str
    created_at: dt.datetime


@dataclass(frozen=True)
class BoardRow:
    """One visit on the board. Holds patient data: built only through an audited read."""

    visit_id: int
    state: str
    status: str
    patient_name: str
    birth_date: dt.date | None
    start_at: dt.datetime | None
    provider_name: str
    room: str
    arrived_at: dt.datetime | None
    waiting_minutes: int | None
    flags: tuple[FlagItem, ...]
    changes: tuple[ChangeView, ...]
    dead_letters: int
    messages_of: str

    @property
    def needs_attention(self) -> bool:
        """Anything for a person to do beyond moving the visit on."""
        return bool(self.flags or self.changes or self.dead_letters)


@dataclass(frozen=True)
class BoardPage:
    """A day's board: its rows, the flags that belong to no visit (a kiosk lock-out), the rooms, and when."""

    day: dt.date
    now: dt.datetime
    rows: tuple[BoardRow, ...]
    loose_flags: tuple[FlagItem, ...]
    rooms: tuple[tuple[str, str], ...]


class Board:
    """Reads the board; changes go through :class:`~server.services.visits.Visits` and the flag services."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail, changes: PendingChanges,
                 zone: dt.tzinfo = dt.UTC) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit
        self.changes = changes
        self.zone = zone

    def today(self) -> dt.date:
        """The clinic's date now."""
        return self.clock.now().astimezone(self.zone).date()

    def day(self, day: dt.date, *, actor: Actor, visit_id: int | None = None) -> BoardPage:
        """The board of ``day`` (or only its row for ``visit_id``, a live update); every row shown is audited.

        A ``visit_id`` not on that day gives a page without rows.
        """
        now = self.clock.now()
        with self.uow.begin() as session:
            query = day_query(day, self.zone)
            if visit_id is not None:
                query = query.where(Visit.id == visit_id)
            visits = session.scalars(query).all()
            ids = [v.id for v in visits]
            patients = {v.patient_id for v in visits}
            arrivals = self._arrivals(session, ids)
            flags, loose = self._flags(session, visits, loose=visit_id is None)
            changes = self._changes(session, patients, actor)
            dead = self._dead_letters(session, patients)
            rooms = {s.id: s.name for s in session.scalars(select(Station).order_by(Station.name))}
            rows = []
            for visit in visits:
                patient, appointment = visit.patient, visit.appointment
                self.audit.record(session, actor, "visit.listed", patient_id=patient.id, resource_type="visit",
                                  resource_id=visit.id)
                for flag in flags.get(visit.id, ()):
                    self.audit.record(session, actor, "flag.viewed", patient_id=patient.id,
                                      resource_type="staff_flag", resource_id=flag.flag_id)
                state = VisitState(visit.state)
                arrived = arrivals.get(visit.id) if state in WAITING_STATES else None
                rows.append(BoardRow(
                    visit.id, visit.state, STATE_TEXT[state], f"{patient.family_name}, {patient.given_name}",
                    patient.birth_date, appointment.start_at.astimezone(self.zone) if appointment else None,
                    appointment.provider_name if appointment else "",
                    rooms.get(visit.station_id or "", "") if state is VisitState.ROOMED else "",
                    arrived, int((now - arrived).total_seconds() // 60) if arrived else None,
                    tuple(flags.get(visit.id, ())), tuple(changes.get(patient.id, ())),
                    dead.get(patient_key(patient.id), 0), patient_key(patient.id)))
            return BoardPage(day, now, tuple(rows), tuple(loose), tuple(rooms.items()))

    def _arrivals(self, session: Session, visit_ids: list[int]) -> dict[int, dt.datetime]:
        """When each visit last became ``arrived`` (a cancelled check-in and a new one: the new one)."""
        if not visit_ids:
            return {}
        return {visit_id: at for visit_id, at in session.execute(
            select(VisitTransition.visit_id, func.max(VisitTransition.at))
            .where(VisitTransition.visit_id.in_(visit_ids), VisitTransition.to_state == VisitState.ARRIVED.value)
            .group_by(VisitTransition.visit_id))}

    def _flags(self, session: Session, visits: t.Sequence[Visit],
               *, loose: bool) -> tuple[dict[int, list[FlagItem]], list[FlagItem]]:
        """Open flags by visit. A flag naming only the patient goes on that patient's row of the day; a flag
        naming neither (an identification lock-out) goes above the table when ``loose``."""
        by_patient = {v.patient_id: v.id for v in visits}
        visit_ids = {v.id for v in visits}
        query = select(StaffFlag).where(StaffFlag.acknowledged_at.is_(None))
        if not loose:
            query = query.where(StaffFlag.patient_id.in_(by_patient) | StaffFlag.visit_id.in_(visit_ids))
        by_visit: dict[int, list[FlagItem]] = {}
        unplaced: list[FlagItem] = []
        for flag in session.scalars(query.order_by(StaffFlag.created_at, StaffFlag.id)):
            item = FlagItem(flag.id, flag.priority, FLAG_KINDS[flag.kind][1], flag.created_at)
            target = flag.visit_id if flag.visit_id in visit_ids else by_patient.get(flag.patient_id or 0)
            if target is not None:
                by_visit.setdefault(target, []).append(item)
            elif flag.patient_id is None and flag.visit_id is None:
                unplaced.append(item)
        order = {"urgent": 0, "high": 1, "normal": 2}
        for items in by_visit.values():
            items.sort(key=lambda f: order[f.priority])
        return by_visit, unplaced

    def _changes(self, session: Session, patient_ids: set[int], actor: Actor) -> dict[int, list[ChangeView]]:
        if not patient_ids:
            return {}
        found: dict[int, list[ChangeView]] = {}
        for patient_id, view in self.changes.pending_in(session, actor, PendingChange.patient_id.in_(patient_ids)):
            found.setdefault(patient_id, []).append(view)
        return found

    def _dead_letters(self, session: Session, patient_ids: set[int]) -> dict[str, int]:
        if not patient_ids:
            return {}
        keys = [patient_key(p) for p in patient_ids]
        return {key: count for key, count in session.execute(
            select(OutboxMessage.ordering_key, func.count())
            .where(OutboxMessage.status == "dead", OutboxMessage.ordering_key.in_(keys))
            .group_by(OutboxMessage.ordering_key))}

