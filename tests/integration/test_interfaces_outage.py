"""A records-system outage, and the receiver's own rejections, over real sockets.

The real dispatcher delivers the real outbox (SQLite and PostgreSQL) with the
real MLLP client; the receiver is the reference records server behind an MLLP
listener. The clock is the test's frozen one, moved past each retry's due
time, so an outage of many retry rounds takes no waiting.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from hl7.ack import ErrorDetail
from hl7.ack import build_ack
from hl7.client import MLLPClient
from hl7.dispatcher import Dispatcher
from hl7.er7 import parse_message
from hl7.listener import PeerInfo
from hl7.records_server import ACCEPT
from hl7.records_server import ReplyMode
from hl7.retry import RetryPolicy
from server.models import AuditEvent
from server.services import Services
from server.services.context import Actor
from server.services.context import FrozenClock
from server.services.outbox import BacklogWatch
from server.services.outbox import OutboxRepository
from server.services.outbox import Selection
from tests.conftest import Database
from tests.integration.test_delivery_contract import Receiver
from tests.integration.test_delivery_contract import add_patients
from tests.integration.test_delivery_contract import assert_delivered_once_in_order
from tests.integration.test_delivery_contract import frontdesk_env
from tests.integration.test_delivery_contract import mrn_of
from tests.integration.test_delivery_contract import outbox_rows
from tests.integration.test_delivery_contract import visit_through

FRONTDESK = str(Path(sys.executable).with_name("frontdesk"))
POLICY = RetryPolicy(base=1.0, cap=4.0, jitter=1.0, max_attempts=3)
ADMIN = Actor("staff", "1", role="admin")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def dispatcher_to(services: Services, port: int) -> Dispatcher:
    client = MLLPClient("127.0.0.1", port, connect_timeout=1.0, ack_timeout=5.0)
    repository = OutboxRepository(uow=services.uow, audit=services.audit)
    return Dispatcher(repository, client, clock=services.clock.now, rng=random.Random(7), retry=POLICY)


def stop(dispatcher: Dispatcher) -> None:
    """Close its connection and give up the SQLite dispatcher lease, as a clean stop does."""
    dispatcher.close()
    assert isinstance(dispatcher.repository, OutboxRepository)
    dispatcher.repository.release()


def deliver_to(services: Services, receiver: Receiver, rounds: int = 1) -> Receiver:
    """Start ``receiver``, run ``rounds`` dispatch rounds toward it, then stop both; returns the receiver."""
    receiver.start()
    dispatcher = dispatcher_to(services, receiver.port)
    try:
        for _ in range(rounds):
            dispatcher.dispatch_once()
    finally:
        stop(dispatcher)
        receiver.close()
    return receiver


def next_due(services: Services, clock: FrozenClock) -> None:
    """Move the clock to when the latest-due waiting message is due again."""
    clock.current = max(row.next_attempt_at for row in outbox_rows(services) if row.status == "pending")


def test_an_outage_longer_than_the_retry_allowance_keeps_every_message_and_delivers_them_in_order(
        services: Services, clock: FrozenClock, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    visits = add_patients(services, 3)
    for visit_id in visits:
        visit_through(services, visit_id, "arrived", "checked_out")
    port = free_port()
    dispatcher = dispatcher_to(services, port)
    rounds = 4 * POLICY.max_attempts
    with caplog.at_level(logging.INFO, logger="hl7.dispatcher"):
        for _ in range(rounds):
            dispatcher.dispatch_once()
            next_due(services, clock)
        rows = outbox_rows(services)
        assert {row.status for row in rows} == {"pending"}
        # Each patient's first message was tried every round; none counted as a rejection.
        assert sorted(row.attempts for row in rows) == [0, 0, 0, rounds, rounds, rounds]
        assert {row.rejections for row in rows} == {0}
        assert all("connect to 127.0.0.1" in row.last_error for row in rows if row.attempts)
        gaps = [(row.next_attempt_at - clock.current).total_seconds() for row in rows if row.attempts]
        assert all(gap <= POLICY.cap + POLICY.jitter for gap in gaps)

        receiver = Receiver(tmp_path / "records.sqlite3")
        receiver.port = port
        receiver.start()
        try:
            for _ in range(6):
                dispatcher.dispatch_once()
                clock.advance(seconds=POLICY.cap + POLICY.jitter)
            assert_delivered_once_in_order(services, receiver)
        finally:
            stop(dispatcher)
            receiver.close()
    failures = [r for r in caplog.records if r.msg == "hl7.destination_failed"]
    assert len(failures) == rounds
    assert [r.levelname for r in failures[:3]] == ["WARNING", "WARNING", "ERROR"]
    assert all(r.__dict__["peer"] == f"127.0.0.1:{port}" and "refused" in r.__dict__["reason"] for r in failures)
    recovered = [r for r in caplog.records if r.msg == "hl7.destination_recovered"]
    assert [(r.levelname, r.__dict__["count"]) for r in recovered] == [("INFO", rounds)]
    assert not [r for r in caplog.records if r.msg == "hl7.dead_letter"]


def test_only_the_receivers_rejections_count_toward_a_dead_letter(
        services: Services, clock: FrozenClock, tmp_path: Path) -> None:
    (visit_id,) = add_patients(services, 1)
    visit_through(services, visit_id, "arrived")
    port = free_port()
    dispatcher = dispatcher_to(services, port)
    for _ in range(POLICY.max_attempts + 2):
        dispatcher.dispatch_once()
        next_due(services, clock)
    receiver = Receiver(tmp_path / "records.sqlite3", rule=ReplyMode("AR"))
    receiver.port = port
    receiver.start()
    try:
        for expected in range(1, POLICY.max_attempts):
            dispatcher.dispatch_once()
            (row,) = outbox_rows(services)
            assert (row.status, row.rejections) == ("pending", expected)
            next_due(services, clock)
        dispatcher.dispatch_once()
    finally:
        stop(dispatcher)
        receiver.close()
    (row,) = outbox_rows(services)
    assert row.status == "dead" and row.last_error.startswith(f"rejected {POLICY.max_attempts} times; last: AR")


def dead_letters(services: Services, clock: FrozenClock, tmp_path: Path) -> list[str]:
    """Three patients' messages rejected with AE by the receiver; returns the MRNs in patient order."""
    visits = add_patients(services, 3)
    for visit_id in visits:
        visit_through(services, visit_id, "arrived", "checked_out")

    def reject(data: bytes, _peer: PeerInfo) -> bytes:
        message = parse_message(data)
        text = "Unknown location" if mrn_of(message) == "MRN0002" else "Bad patient class"
        return build_ack(message, "AE", errors=[ErrorDetail(text)], control_id="R" + message.msh.value(10),
                         now=clock.now())

    deliver_to(services, Receiver(tmp_path / "rejecting.sqlite3", observe=reject))
    assert [row.status for row in outbox_rows(services)] == ["dead", "pending"] * 3
    return ["MRN0000", "MRN0001", "MRN0002"]


def test_bulk_retry_by_patient_and_by_error_then_all_delivers_every_message_in_order(
        services: Services, clock: FrozenClock, tmp_path: Path) -> None:
    mrns = dead_letters(services, clock, tmp_path)
    assert services.outbox.retry_many(Selection(mrn=mrns[0]), actor=ADMIN) == 2
    assert [row.status for row in outbox_rows(services)] == ["pending", "pending", "dead", "pending", "dead",
                                                             "pending"]
    assert services.outbox.retry_many(Selection(error="UNKNOWN LOCATION"), actor=ADMIN) == 1
    assert [row.status for row in outbox_rows(services)] == ["pending", "pending", "dead", "pending", "pending",
                                                             "pending"]
    assert services.outbox.retry_many(Selection(), actor=ADMIN) == 6
    receiver = deliver_to(services, Receiver(tmp_path / "records.sqlite3", rule=ACCEPT), rounds=3)
    assert_delivered_once_in_order(services, receiver)
    with services.uow.begin() as session:
        retries = session.execute(select(AuditEvent.actor_id, AuditEvent.patient_id, AuditEvent.resource_id)
                                  .where(AuditEvent.action == "outbox.retry").order_by(AuditEvent.id)).all()
    assert len(retries) == 9 and {actor for actor, _, _ in retries} == {"1"}
    assert all(patient is not None for _, patient, _ in retries)


def test_bulk_retry_and_discard_from_the_command_line_are_audited(
        services: Services, clock: FrozenClock, database: Database, tmp_path: Path) -> None:
    mrns = dead_letters(services, clock, tmp_path)
    env = frontdesk_env(database, tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([FRONTDESK, "outbox", *args], env=env, capture_output=True, text=True, timeout=60)

    usage = run("retry")
    assert usage.returncode == 2 and usage.stderr.strip().splitlines() == [
        "frontdesk: error: give either a message id or --all, --mrn or --error to say which messages to retry"]
    discarded = run("discard", "--error", "bad patient class")
    assert (discarded.returncode, discarded.stdout.strip()) == (0, "discard done for 2 messages")
    retried = run("retry", "--mrn", mrns[2])
    assert (retried.returncode, retried.stdout.strip()) == (0, "retry done for 2 messages")
    assert [row.status for row in outbox_rows(services)] == ["discarded", "pending", "discarded", "pending",
                                                             "pending", "pending"]
    nothing = run("discard", "--all")
    assert (nothing.returncode, nothing.stdout.strip()) == (0, "discard done for 0 messages")
    with services.uow.begin() as session:
        actions = session.execute(select(AuditEvent.action, AuditEvent.actor_id).where(
            AuditEvent.action.in_(("outbox.retry", "outbox.discard"))).order_by(AuditEvent.id)).all()
    assert [tuple(a) for a in actions] == [("outbox.discard", "cli")] * 2 + [("outbox.retry", "cli")] * 2


def test_a_staff_retry_gives_a_fresh_allowance(services: Services, clock: FrozenClock, tmp_path: Path) -> None:
    dead_letters(services, clock, tmp_path)
    first = outbox_rows(services)[0]
    services.outbox.retry(first.id, actor=ADMIN)
    row = outbox_rows(services)[0]
    assert (row.status, row.attempts, row.rejections) == ("pending", 0, 0)




def test_a_backlog_older_than_the_limit_alerts_once_and_its_clearing_is_logged_once(
        services: Services, clock: FrozenClock, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (visit_id,) = add_patients(services, 1)
    visit_through(services, visit_id, "arrived")
    watch = BacklogWatch(services.outbox, limit=dt.timedelta(minutes=15))
    with caplog.at_level(logging.INFO, logger="frontdesk.outbox"):
        assert watch.check() is False
        clock.advance(minutes=16)
        assert [watch.check(), watch.check()] == [True, True]
        deliver_to(services, Receiver(tmp_path / "records.sqlite3"))
        assert [watch.check(), watch.check()] == [False, False]
    events = [(r.msg, r.levelname) for r in caplog.records if str(r.msg).startswith("outbox.backlog")]
    assert events == [("outbox.backlog_stalled", "ERROR"), ("outbox.backlog_cleared", "INFO")]
