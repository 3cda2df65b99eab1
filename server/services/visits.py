"""The day's visits: listing them for staff and moving them through their states."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Select
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm import joinedload

from server.db import UnitOfWork
from server.domain.visit import VisitState
from server.domain.visit import VitalsNotCharted
from server.domain.visit import next_state
from server.live import BOARD_CHANNEL
from server.live import Hub
from server.live import LocalHub
from server.live import publish_after_commit
from server.models import Appointment
from server.models import Observation
from server.models import Station
from server.models import Visit
from server.models import VisitTransition
from server.services.audit import AuditTrail
from server.services.context import Actor
from server.services.context import Clock
from server.services.messages import OutboundMessages


class VisitNotFound(LookupError):
    """No visit with that id."""


class UnknownRoom(ValueError):
    """The room chosen for a patient is not a station (any more)."""

    def __init__(self) -> None:
        super().__init__("That room is not in the list any more: choose a room and try again.")


@dataclass(frozen=True)
class VisitSummary:
    """One row of the staff's day list. Holds patient data: callers are audited."""

    visit_id: int
    state: str
    patient_name: str
    birth_date: dt.date | None
    start_at: dt.datetime | None
    provider_name: str
    location: str
    patient_id: int = 0


def day_query(day: dt.date, zone: dt.tzinfo) -> Select[Visit]:
    """Visits whose appointment starts on ``day`` in ``zone``, earliest first, with patient and appointment."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    return (select(Visit).join(Appointment)
            .where(Appointment.start_at >= start, Appointment.start_at < start + dt.timedelta(days=1))
            .order_by(Appointment.start_at, Visit.id)
            .options(joinedload(Visit.patient), joinedload(Visit.appointment)))


class Visits:
    """Visit queries and transitions, each audited."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail, messages: OutboundMessages,
                 zone: dt.tzinfo = dt.UTC, live: Hub | None = None) -> None:
        self.zone = zone
        self.live = live or LocalHub()
        self.uow = uow
        self.clock = clock
        self.audit = audit
        self.messages = messages

    def today(self) -> dt.date:
        """The clinic's date now."""
        return self.clock.now().astimezone(self.zone).date()

    def for_day(self, day: dt.date, *, actor: Actor) -> list[VisitSummary]:
        """Visits whose appointment starts on ``day`` in the clinic's time zone, earliest first, with times
        in that zone; one audit row per patient."""
        with self.uow.begin() as session:
            rows = session.scalars(day_query(day, self.zone)).all()
            summaries = []
            for visit in rows:
                patient, appointment = visit.patient, visit.appointment
                self.audit.record(session, actor, "visit.listed", patient_id=patient.id,
                                  resource_type="visit", resource_id=visit.id)
                summaries.append(VisitSummary(
                    visit.id, visit.state, f"{patient.family_name}, {patient.given_name}", patient.birth_date,
                    appointment.start_at.astimezone(self.zone) if appointment else None,
                    appointment.provider_name if appointment else "", appointment.location if appointment else "",
                    patient.id))
            return summaries

    def transition(self, visit_id: int, target: str, *, actor: Actor, room: str | None = None) -> None:
        """Move a visit to ``target``, recording when and by whom, and tell the records system.

        The transition, its audit row and the ADT it calls for (A04 on arrival,
        A03 at check-out, A11 when a check-in is undone) commit together.

        ``vitals_taken`` is refused unless vitals were charted for the visit:
        that state is what "Send to chart" on a station page sets.

        :param room: for ``roomed``, the station the patient is shown to.

        :raises VisitNotFound: for an unknown id.
        :raises UnknownRoom: for a ``room`` that is not a station.
        :raises server.domain.visit.IllegalTransition: when the rules forbid it
            (:class:`~server.domain.visit.VitalsNotCharted` for ``vitals_taken`` without vitals).
        """
        with self.uow.begin() as session:
            # Locked (on PostgreSQL) so two concurrent changes cannot both pass the state check.
            visit = session.get(Visit, visit_id, with_for_update=True)
            if visit is None:
                raise VisitNotFound(visit_id)
            if target == VisitState.VITALS_TAKEN.value and session.scalar(
                    select(Observation.id).where(Observation.visit_id == visit_id, Observation.status == "final")
                    .limit(1)) is None:
                raise VitalsNotCharted()
            if room is not None and target == VisitState.ROOMED.value:
                if session.get(Station, room) is None:
                    raise UnknownRoom()
                visit.station_id = room
            self.transition_in(session, visit, target, actor=actor)

    def transition_in(self, session: Session, visit: Visit, target: str, *, actor: Actor) -> None:
        """:meth:`transition` inside the caller's transaction (an inbound schedule change)."""
        before = VisitState(visit.state)
        new = next_state(before, target)
        now = self.clock.now()
        visit.transitions.append(VisitTransition(from_state=visit.state, to_state=new.value, at=now,
                                                 actor_type=actor.actor_type, actor_id=actor.actor_id))
        visit.state = new.value
        visit.updated_at = now
        control_id = self.messages.visit_changed(session, visit, before, new)
        self.audit.record(session, actor, f"visit.{new.value}", patient_id=visit.patient_id,
                          resource_type="visit", resource_id=visit.id,
                          detail=f"control_id={control_id}" if control_id else "")
        publish_after_commit(session, self.live, BOARD_CHANNEL, "visit", {"visit_id": visit.id})
