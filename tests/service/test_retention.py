"""Retention: old inbound copies and delivered outbound messages go; undelivered and dead letters stay."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from server.models import AuditEvent
from server.models import InboundMessage
from server.models import OutboxMessage
from server.services import Services
from server.services.context import FrozenClock
from server.services.retention import Purged
from server.services.retention import RetentionPart
from tests.procs import eventually

OLD = dt.timedelta(days=31)


def seed(services: Services, clock: FrozenClock) -> None:
    now = clock.now()
    with services.uow.begin() as session:
        for number, (status, age) in enumerate([("pending", OLD), ("sending", OLD), ("dead", OLD),
                                                 ("discarded", OLD), ("sent", OLD), ("sent", dt.timedelta(days=2))]):
            session.add(OutboxMessage(control_id=f"C{number}", message_type="ADT^A04", ordering_key="p1",
                                      payload=b"MSH|", sha256="0" * 64, status=status, attempts=1,
                                      next_attempt_at=now - age, created_at=now - age,
                                      sent_at=now - age if status == "sent" else None))
        for number, age in enumerate([OLD, dt.timedelta(days=29)]):
            session.add(InboundMessage(sending_application="EHR", sending_facility="CLINIC", control_id=f"I{number}",
                                       message_type="SIU^S12", raw=b"MSH|", outcome="AA", error="", ack=b"MSA|AA",
                                       peer="", received_at=now - age))


def test_purge_keeps_undelivered_and_dead_letters_whatever_their_age(services: Services, clock: FrozenClock) -> None:
    seed(services, clock)
    retention = services.retention
    retention.keep_days = 30
    purged = retention.purge()
    assert (purged.inbound, purged.outbound) == (1, 1)
    with services.uow.begin() as session:
        left = sorted(session.scalars(select(OutboxMessage.control_id)))
        inbound = session.scalars(select(InboundMessage.control_id)).all()
        audit = session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "retention.purged")).all()
    assert left == ["C0", "C1", "C2", "C3", "C5"]
    assert inbound == ["I1"]
    assert audit == ["inbound=1 outbound=1 keep_days=30"]


def test_keep_days_zero_keeps_everything(services: Services, clock: FrozenClock) -> None:
    seed(services, clock)
    assert services.retention.keep_days == 0
    assert services.retention.purge() == Purged(0, 0)
    with services.uow.begin() as session:
        assert len(session.scalars(select(OutboxMessage.id)).all()) == 6


def test_the_scheduled_purge_runs_when_serve_starts(services: Services, clock: FrozenClock) -> None:
    seed(services, clock)
    services.retention.keep_days = 30
    part = RetentionPart(services.retention)
    part.start()
    try:
        def purged() -> bool:
            with services.uow.begin() as session:
                return len(session.scalars(select(OutboxMessage.id)).all()) == 5
        eventually(purged, what="the purge at start")
    finally:
        part.stop()
