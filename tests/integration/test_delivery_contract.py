"""The HL7 delivery contract end to end: visit changes to the records system over real sockets.

Messages are written by the service layer (``services.visits.transition``, which
builds ADT with the real builders and enqueues it in the same transaction), and
delivered by the real dispatcher (``DispatcherPart`` in-process, or the
``frontdesk bridge`` subprocess) to the real reference records server on
127.0.0.1. Faults are real too: a receiver that is not listening, one that
answers AE for one patient, a dispatcher killed with SIGKILL while it waits for
an ACK, two dispatchers on one PostgreSQL backlog.

The clock is the real one here, because the ``frontdesk`` subprocesses use it
too; retry delays are kept to a second or two by configuration. Tests wait for
states (with a deadline), never for a length of time.

Lease expiry after the SIGKILL is reached by moving the stored expiry into the
past, as procrastinate's stalled-job tests do: the lease the dispatcher derives
is ``batch × (connect + ACK timeout) + 60 s``, so at least 80 s with the
smallest timeouts the configuration allows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import typing as t
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy import update

from hl7.ack import parse_ack
from hl7.er7 import Message
from hl7.er7 import parse_message
from hl7.listener import MLLPListener
from hl7.listener import PeerInfo
from hl7.records_server import ACCEPT
from hl7.records_server import RecordsServer
from hl7.records_server import RecordStore
from hl7.records_server import ReplyMode
from server.config import Config
from server.config import HL7Config
from server.interfaces import DispatcherPart
from server.models import AuditEvent
from server.models import OutboxMessage
from server.models import ServiceLease
from server.models import Visit
from server.services import Services
from server.services.context import SYSTEM
from server.services.context import Actor
from server.services.context import SystemClock
from server.services.patients import AppointmentRecord
from server.services.patients import PatientRecord
from tests.conftest import Database

FRONTDESK = str(Path(sys.executable).with_name("frontdesk"))
CLERK = Actor("staff", "3", role="front_desk")
DEADLINE = 60.0
SECRET = secrets.token_hex(32)


@pytest.fixture
def clock() -> SystemClock:
    """The real clock, shared with the ``frontdesk`` subprocesses (overrides the frozen one)."""
    return SystemClock()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def add_patients(services: Services, count: int) -> list[int]:
    """``count`` patients with an appointment today; returns their visit ids."""
    start = services.clock.now().replace(microsecond=0)
    visits = []
    with services.uow.begin() as session:
        for n in range(count):
            patient_id = services.patients.upsert_in(session, PatientRecord(
                mrn=f"MRN{n:04d}", mrn_authority="TEST", family_name=f"Family{n}", given_name="Pat",
                birth_date=dt.date(1970, 1, 1) + dt.timedelta(days=n)), actor=SYSTEM)
            appointment_id = services.patients.schedule_in(session, patient_id, AppointmentRecord(
                source="TEST", external_id=f"APT-{n}", start_at=start, location="EXAM1"), actor=SYSTEM)
            visits.append(session.scalars(select(Visit.id).where(Visit.appointment_id == appointment_id)).one())
    return visits


def visit_through(services: Services, visit_id: int, *states: str) -> None:
    for state in states:
        services.visits.transition(visit_id, state, actor=CLERK)


def outbox_rows(services: Services) -> list[OutboxMessage]:
    with services.uow.begin() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def all_sent(services: Services) -> bool:
    return {row.status for row in outbox_rows(services)} == {"sent"}


def per_key(rows: list[OutboxMessage], control_ids: list[str]) -> dict[str, list[str]]:
    """``control_ids`` (in their order) grouped by the ordering key of their outbox row."""
    key_of = {row.control_id: row.ordering_key for row in rows}
    grouped: dict[str, list[str]] = {}
    for control_id in control_ids:
        grouped.setdefault(key_of[control_id], []).append(control_id)
    return grouped


def frontdesk_env(database: Database, tmp_path: Path, **settings: str) -> dict[str, str]:
    """Environment for a ``frontdesk`` subprocess on the test's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env.update(FRONTDESK_INSTANCE_DIR=str(tmp_path / "instance"), FRONTDESK_DATABASE_URL=database.url,
               FRONTDESK_WEB_SECRET_KEY=SECRET)
    if database.schema:
        env["FRONTDESK_DATABASE_SCHEMA"] = database.schema
    env.update({f"FRONTDESK_{key.upper()}": value for key, value in settings.items()})
    return env


def mrn_of(message: Message) -> str:
    return message.value("PID", 3, 1)


class Receiver:
    """The reference records server behind an MLLP listener, restartable on the same port.

    :param rule: the reply for each message (the records server's per-message rule).
    :param observe: called with each message and its peer before the records server sees it.
    """

    def __init__(self, path: Path, rule: ReplyMode | Callable[[Message], ReplyMode] = ACCEPT,
                 observe: Callable[[bytes, PeerInfo], bytes | None] | None = None) -> None:
        self.path = path
        self.store = RecordStore(path)
        self.records = RecordsServer(self.store, reply=rule, emit=lambda line: None)
        self.observe = observe
        self.port = 0
        self.listener: MLLPListener | None = None

    def handle(self, data: bytes, peer: PeerInfo) -> bytes | None:
        if self.observe is not None:
            return self.observe(data, peer)
        return self.records(data, peer)

    def start(self) -> None:
        self.listener = MLLPListener(self.handle, port=self.port)
        self.listener.start()
        self.port = self.listener.address[1]

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def close(self) -> None:
        self.records.close()
        self.stop()
        self.store.close()

    def stored(self) -> list[tuple[str, bytes]]:
        """``(MSH-10, ACK sent for it)`` of every stored message, in arrival order."""
        with sqlite3.connect(self.path) as db:
            return [(c, bytes(a)) for c, a in db.execute("SELECT control_id, ack FROM message ORDER BY id")]

    def stored_ids(self) -> list[str]:
        return [control_id for control_id, _ in self.stored()]


@pytest.fixture
def make_receiver(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(*args: t.Any, **kwargs: t.Any) -> Receiver:
        receiver = Receiver(tmp_path / f"records-{len(made)}.sqlite3", *args, **kwargs)
        made.append(receiver)
        receiver.start()
        return receiver

    yield make
    for receiver in made:
        receiver.close()


def hl7_settings(config: Config, port: int) -> HL7Config:
    """Delivery to ``port`` with timeouts and retry delays short enough for a test."""
    return dataclasses.replace(config.hl7, destination_host="127.0.0.1", destination_port=port,
                               connect_timeout_seconds=1, ack_timeout_seconds=5, retry_base_seconds=1,
                               retry_cap_seconds=2)


@pytest.fixture
def run_dispatcher(services: Services, config: Config) -> Iterator[Callable[[int], DispatcherPart]]:
    started: list[DispatcherPart] = []

    def run(port: int) -> DispatcherPart:
        part = DispatcherPart(services, hl7_settings(config, port), poll_interval=0.05)
        part.start()
        started.append(part)
        return part

    yield run
    for part in started:
        part.stop()


def assert_delivered_once_in_order(services: Services, receiver: Receiver) -> None:
    """Every outbox message stored once, each patient's in outbox order, each row holding the ACK it got."""
    rows = outbox_rows(services)
    stored = receiver.stored()
    stored_ids = [control_id for control_id, _ in stored]
    assert sorted(stored_ids) == sorted(row.control_id for row in rows)
    assert per_key(rows, stored_ids) == per_key(rows, [row.control_id for row in rows])
    ack_for = dict(stored)
    for row in rows:
        assert row.status == "sent" and row.ack == ack_for[row.control_id]
        ack = parse_ack(row.ack)
        assert (ack.code, ack.control_id) == ("AA", row.control_id)


def test_visit_changes_reach_the_records_server_in_order_with_their_acks(
        services: Services, make_receiver: Callable[..., Receiver],
        run_dispatcher: Callable[[int], DispatcherPart]) -> None:
    receiver = make_receiver()
    visits = add_patients(services, 3)
    for visit_id in visits:
        visit_through(services, visit_id, "arrived", "checked_out")
    rows = outbox_rows(services)
    assert [row.message_type for row in rows] == ["ADT^A04", "ADT^A03"] * 3
    assert {row.status for row in rows} == {"pending"}
    run_dispatcher(receiver.port)
    wait_until(lambda: all_sent(services), "every message sent")
    assert_delivered_once_in_order(services, receiver)
    stored = {m.control_id: m for m in receiver.store.messages()}
    for row in rows:
        assert stored[row.control_id].payload == row.payload
        assert parse_message(row.payload).msh.value(9, 2) == row.message_type.split("^")[1]


def test_a_message_enqueued_in_process_is_sent_without_waiting_for_the_poll(
        services: Services, config: Config, make_receiver: Callable[..., Receiver]) -> None:
    receiver = make_receiver()
    (visit_id,) = add_patients(services, 1)
    part = DispatcherPart(services, hl7_settings(config, receiver.port), poll_interval=60)
    part.start()
    try:
        time.sleep(0.2)
        visit_through(services, visit_id, "arrived")
        wait_until(lambda: all_sent(services), "the A04 to be sent long before the next poll", timeout=10)
    finally:
        started = time.monotonic()
        part.stop()
    assert time.monotonic() - started < 10, "stop wakes the dispatcher instead of waiting out the poll"
    assert_delivered_once_in_order(services, receiver)


def test_receiver_down_then_back_loses_nothing_and_keeps_each_patients_order(
        services: Services, make_receiver: Callable[..., Receiver],
        run_dispatcher: Callable[[int], DispatcherPart]) -> None:
    receiver = make_receiver()
    receiver.stop()
    for visit_id in add_patients(services, 3):
        visit_through(services, visit_id, "arrived", "expected", "arrived", "checked_out")
    run_dispatcher(receiver.port)

    def first_of_each_patient_failed() -> bool:
        rows = outbox_rows(services)
        firsts = [min((r for r in rows if r.ordering_key == key), key=lambda r: r.id)
                  for key in {r.ordering_key for r in rows}]
        return all(r.status == "pending" and r.attempts >= 1 and "connect" in r.last_error for r in firsts)

    wait_until(first_of_each_patient_failed, "a failed attempt for each patient")
    rows = outbox_rows(services)
    assert not any(row.status == "sent" for row in rows)
    receiver.start()
    wait_until(lambda: all_sent(services), "every message sent after the receiver came back")
    assert_delivered_once_in_order(services, receiver)
    assert len(receiver.stored_ids()) == 12


def test_ae_for_one_patient_holds_that_patient_only_until_staff_retry_from_the_cli(
        services: Services, database: Database, tmp_path: Path, make_receiver: Callable[..., Receiver],
        run_dispatcher: Callable[[int], DispatcherPart]) -> None:
    rejecting = {"MRN0001"}
    receiver = make_receiver(lambda message: ReplyMode("AE") if mrn_of(message) in rejecting else ACCEPT)
    visits = add_patients(services, 4)
    for visit_id in visits[:3]:
        visit_through(services, visit_id, "arrived", "checked_out")
    rows = outbox_rows(services)
    held_key = rows[2].ordering_key
    dead_id, behind_id = rows[2].id, rows[3].id
    run_dispatcher(receiver.port)

    def others_sent_and_one_dead() -> bool:
        status = {row.id: row.status for row in outbox_rows(services)}
        return status.pop(dead_id) == "dead" and status.pop(behind_id) == "pending" and set(status.values()) == {
            "sent"}

    wait_until(others_sent_and_one_dead, "AE patient dead-lettered, others delivered")
    # A message for another patient enqueued now is delivered while the held one still waits untouched.
    visit_through(services, visits[3], "arrived")
    wait_until(lambda: outbox_rows(services)[-1].status == "sent", "a later patient's message delivered")
    by_id = {row.id: row for row in outbox_rows(services)}
    assert by_id[dead_id].attempts == 1 and "rehearsed AE" in by_id[dead_id].last_error
    assert (by_id[behind_id].status, by_id[behind_id].attempts) == ("pending", 0)
    assert all(row.ordering_key != held_key for row in outbox_rows(services) if row.status == "sent")

    rejecting.clear()
    result = subprocess.run([FRONTDESK, "outbox", "retry", str(dead_id)], env=frontdesk_env(database, tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"outbox message {dead_id}: retry done"
    wait_until(lambda: all_sent(services), "the retried patient's messages delivered")
    assert_delivered_once_in_order(services, receiver)
    with services.uow.begin() as session:
        actors = session.execute(select(AuditEvent.action, AuditEvent.actor_type, AuditEvent.actor_id).where(
            AuditEvent.resource_type == "outbox_message", AuditEvent.resource_id == str(dead_id))).all()
    assert [tuple(a) for a in actors] == [("outbox.dead_letter", "system", "frontdesk"),
                                          ("outbox.retry", "system", "cli")]




def test_four_connections_keep_each_patients_order_and_a_dead_letter_holds_only_its_patient(
        services: Services, config: Config, make_receiver: Callable[..., Receiver]) -> None:
    rejecting = {"MRN0002"}
    records: list[Receiver] = []
    connection_of: dict[str, set[int]] = {}

    def observe(data: bytes, peer: PeerInfo) -> bytes | None:
        connection_of.setdefault(mrn_of(parse_message(data)), set()).add(peer.port)
        return records[0].records(data, peer)

    receiver = make_receiver(lambda message: ReplyMode("AE") if mrn_of(message) in rejecting else ACCEPT,
                             observe=observe)
    records.append(receiver)
    for visit_id in add_patients(services, 12):
        visit_through(services, visit_id, "arrived", "expected", "arrived", "checked_out")
    rows = outbox_rows(services)
    held = [row for row in rows if row.ordering_key == rows[8].ordering_key]
    part = DispatcherPart(services, dataclasses.replace(hl7_settings(config, receiver.port),
                                                        destination_connections=4), poll_interval=0.05)
    part.start()
    try:
        def all_but_the_held_patient_sent() -> bool:
            status = {row.id: row.status for row in outbox_rows(services)}
            held_status = [status.pop(row.id) for row in held]
            return held_status == ["dead", "pending", "pending", "pending"] and set(status.values()) == {"sent"}

        wait_until(all_but_the_held_patient_sent, "every patient delivered but the one held by its dead letter")
        assert len(set().union(*connection_of.values())) == 4
        assert all(len(ports) == 1 for ports in connection_of.values())
        rejecting.clear()
        services.outbox.retry(held[0].id, actor=CLERK)
        wait_until(lambda: all_sent(services), "the held patient's messages delivered after the retry")
    finally:
        part.stop()
    assert_delivered_once_in_order(services, receiver)


class Bridge:
    """A ``frontdesk bridge`` subprocess, its output kept in files so it can never block on a full pipe."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen([FRONTDESK, "bridge"], env=env, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM and the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@pytest.fixture
def bridges(database: Database, tmp_path: Path) -> Iterator[Callable[[int], Bridge]]:
    started: list[Bridge] = []

    def start(port: int) -> Bridge:
        env = frontdesk_env(database, tmp_path, hl7_destination_host="127.0.0.1", hl7_destination_port=str(port),
                            hl7_connect_timeout_seconds="1", hl7_ack_timeout_seconds="30",
                            hl7_retry_base_seconds="1", hl7_batch_size="5")
        bridge = Bridge(env, tmp_path / f"bridge-{len(started)}.log")
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        if bridge.process.poll() is None:
            bridge.kill()


class Recorder:
    """In front of the records server: notes every MSH-10 as it arrives, and can swallow one ACK.

    :param withhold: the MSH-10 whose first ACK is withheld (the message is
        stored, the ACK lost), as if the line dropped it.
    """

    def __init__(self, withhold: str = "") -> None:
        self.records: RecordsServer | None = None
        self.withhold = withhold
        self.received: list[str] = []
        self.withheld = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, data: bytes, peer: PeerInfo) -> bytes | None:
        assert self.records is not None
        control_id = parse_message(data).msh.value(10)
        with self._lock:
            self.received.append(control_id)
        ack = self.records(data, peer)
        if control_id == self.withhold and not self.withheld.is_set():
            self.withheld.set()
            return None
        return ack


def expire_leases(services: Services) -> None:
    """Move every stored lease into the past, as if its full length had gone by."""
    past = services.clock.now() - dt.timedelta(seconds=1)
    with services.uow.begin() as session:
        session.execute(update(OutboxMessage).where(OutboxMessage.status == "sending").values(lease_until=past))
        session.execute(update(ServiceLease).values(expires_at=past))


def test_dispatcher_killed_while_an_ack_is_withheld_resends_that_message_once_restarted(
        services: Services, make_receiver: Callable[..., Receiver], bridges: Callable[[int], Bridge]) -> None:
    (visit_id,) = add_patients(services, 1)
    visit_through(services, visit_id, "arrived", "expected", "arrived", "expected", "arrived")
    c = [row.control_id for row in outbox_rows(services)]
    assert len(c) == 5
    recorder = Recorder(withhold=c[2])
    receiver = make_receiver(observe=recorder)
    recorder.records = receiver.records

    first = bridges(receiver.port)
    wait_until(recorder.withheld.is_set, f"C3 to arrive (bridge output: {first.output()})")
    first.kill()
    assert first.process.returncode == -signal.SIGKILL
    status = [(row.status, row.attempts) for row in outbox_rows(services)]
    assert status == [("sent", 1), ("sent", 1), ("sending", 1), ("pending", 0), ("pending", 0)]

    expire_leases(services)
    second = bridges(receiver.port)
    wait_until(lambda: all_sent(services), f"every message sent (bridge output: {second.output()})")
    assert second.stop() == 0, second.output()
    assert recorder.received == [c[0], c[1], c[2], c[2], c[3], c[4]]
    assert receiver.stored_ids() == c
    assert [row.attempts for row in outbox_rows(services)] == [1, 1, 2, 1, 1]
    assert_delivered_once_in_order(services, receiver)


class InFlight:
    """In front of the records server: holds the first messages until two senders are connected, and
    notes any message that arrives while a copy of it is still being handled."""

    def __init__(self, senders: int) -> None:
        self.records: RecordsServer | None = None
        self.senders = senders
        self.received: list[str] = []
        self.overlaps: list[str] = []
        self.peers: dict[tuple[str, int], int] = {}
        self.all_connected = threading.Event()
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, data: bytes, peer: PeerInfo) -> bytes | None:
        assert self.records is not None
        control_id = parse_message(data).msh.value(10)
        with self._lock:
            self.received.append(control_id)
            self.peers[(peer.host, peer.port)] = self.peers.get((peer.host, peer.port), 0) + 1
            if control_id in self._busy:
                self.overlaps.append(control_id)
            self._busy.add(control_id)
            if len(self.peers) >= self.senders:
                self.all_connected.set()
        try:
            # Until every sender has a message in flight nobody is answered: the work is then provably shared.
            self.all_connected.wait(20)
            return self.records(data, peer)
        finally:
            with self._lock:
                self._busy.discard(control_id)


@pytest.mark.postgres
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_two_bridges_on_postgresql_share_one_backlog_without_sending_a_row_twice(
        services: Services, make_receiver: Callable[..., Receiver], bridges: Callable[[int], Bridge]) -> None:
    for visit_id in add_patients(services, 30):
        visit_through(services, visit_id, "arrived", "checked_out")
    in_flight = InFlight(senders=2)
    receiver = make_receiver(observe=in_flight)
    in_flight.records = receiver.records
    pair = [bridges(receiver.port), bridges(receiver.port)]
    wait_until(lambda: all_sent(services), "every message sent by the two bridges")
    assert [bridge.stop() for bridge in pair] == [0, 0], [bridge.output() for bridge in pair]
    rows = outbox_rows(services)
    assert in_flight.overlaps == []
    assert sorted(in_flight.received) == sorted(row.control_id for row in rows), "each message sent exactly once"
    assert len(in_flight.peers) == 2 and all(count > 0 for count in in_flight.peers.values())
    assert {row.lease_owner for row in rows} == {None}
    assert_delivered_once_in_order(services, receiver)
