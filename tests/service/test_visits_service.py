"""Visit transitions through the service: timestamped with their actor, audited, all or nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from server.domain.visit import IllegalTransition
from server.models import AuditEvent
from server.models import Visit
from server.services import Services
from server.services.context import Actor
from server.services.context import FrozenClock
from server.services.visits import VisitNotFound
from server.services.vitals import Draft

NURSE = Actor("staff", "7", role="assistant", address="10.0.0.5")


def test_each_transition_is_recorded_with_time_and_actor(services: Services, demo_visit: int,
                                                         clock: FrozenClock) -> None:
    for target in ("arrived", "roomed", "vitals_taken", "checked_out"):
        clock.advance(minutes=5)
        if target == "vitals_taken":
            # Only charting vitals at a station moves a visit there.
            services.stations.configure([("ox-1", "nonin-df8", "/dev/ttyUSB0", "room1")])
            session_id = services.vitals.take("room1", demo_visit, actor=NURSE)
            assert services.vitals.chart("room1", session_id, Draft({"weight": ("70", "kg", "typed")}),
                                         actor=NURSE).charted
        else:
            services.visits.transition(demo_visit, target, actor=NURSE)
    with services.uow.begin() as session:
        visit = session.get(Visit, demo_visit)
        assert visit is not None and visit.state == "checked_out"
        steps = [(t.from_state, t.to_state, t.actor_type, t.actor_id) for t in visit.transitions]
        assert steps == [("expected", "arrived", "staff", "7"), ("arrived", "roomed", "staff", "7"),
                         ("roomed", "vitals_taken", "staff", "7"), ("vitals_taken", "checked_out", "staff", "7")]
        times = [t.at for t in visit.transitions]
        assert times == sorted(times) and times[0] == dt.datetime(2026, 11, 26, 14, 5, tzinfo=dt.UTC)
        audit = session.scalars(select(AuditEvent.action).where(AuditEvent.patient_id == visit.patient_id,
                                                                AuditEvent.actor_id == "7",
                                                                AuditEvent.action.like("visit.%"))).all()
        assert audit == ["visit.arrived", "visit.roomed", "visit.vitals_taken", "visit.checked_out"]


def test_vitals_taken_needs_charted_vitals(services: Services, demo_visit: int) -> None:
    services.visits.transition(demo_visit, "arrived", actor=NURSE)
    services.visits.transition(demo_visit, "roomed", actor=NURSE)
    with pytest.raises(IllegalTransition, match="this visit has none yet"):
        services.visits.transition(demo_visit, "vitals_taken", actor=NURSE)


def test_illegal_transition_changes_nothing(services: Services, demo_visit: int) -> None:
    with services.uow.begin() as session:
        audit_before = len(session.scalars(select(AuditEvent.id)).all())
    with pytest.raises(IllegalTransition):
        services.visits.transition(demo_visit, "vitals_taken", actor=NURSE)
    with services.uow.begin() as session:
        visit = session.get(Visit, demo_visit)
        assert visit is not None and visit.state == "expected" and visit.transitions == []
        assert len(session.scalars(select(AuditEvent.id)).all()) == audit_before


def test_unknown_visit(services: Services) -> None:
    with pytest.raises(VisitNotFound):
        services.visits.transition(999, "arrived", actor=NURSE)


def test_listing_the_day_audits_each_patient_read(services: Services, demo_visit: int) -> None:
    rows = services.visits.for_day(dt.date(2026, 11, 26), actor=NURSE)
    assert [r.visit_id for r in rows] == [demo_visit]
    assert rows[0].patient_name == "Tester, Sentinel"
    assert services.visits.for_day(dt.date(2026, 11, 27), actor=NURSE) == []
    with services.uow.begin() as session:
        listed = session.scalars(select(AuditEvent).where(AuditEvent.action == "visit.listed")).all()
        assert [(e.actor_id, e.address, e.resource_id) for e in listed] == [("7", "10.0.0.5", str(demo_visit))]
