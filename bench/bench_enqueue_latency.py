"""Enqueue-to-ACK latency through the outbox at 10 messages per second.

Ours: an ADT^A04 is enqueued through :class:`server.services.outbox.Outbox` in
its own transaction; the clock starts when that transaction has committed and
stops when the dispatcher has committed the row as ``sent`` (after the
receiver's AA). The dispatcher is the one ``DispatcherPart`` runs (same client,
retry policy and repository), in a thread, polling every 0.5 s as ``serve`` and
``bridge`` do: once woken by the commit of each enqueue, as ``serve`` does for
messages written in its own process, and once without that wake-up (the
previous version, and today's case of a separate ``bridge`` process), plus a
10 ms poll without wake-up. SQLite always; PostgreSQL too when
``FRONTDESK_BENCH_DATABASE_URL`` names a server.

Baseline, in the same run against the same receiver: the raw MLLP round trip of
the same message (a fresh MSH-10 each time) on a persistent
:class:`hl7.client.MLLPClient`, with no outbox at all.

The receiver is the reference records server in this process, storing every
message with ``synchronous=FULL``.

Run: ``.venv/bin/python bench/bench_enqueue_latency.py [--messages N] [--rate PER_SECOND]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import tempfile
import threading
import time
import typing as t
import uuid
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path

import psycopg
from bench_outbox_drain import Receiver
from bench_outbox_drain import open_services

from hl7 import builders
from hl7.client import MLLPClient
from hl7.dispatcher import Dispatcher
from hl7.model import Destination
from hl7.model import PatientInfo
from hl7.model import Sender
from hl7.model import VisitInfo
from hl7.retry import RetryPolicy
from server.config import HL7Config
from server.services import Services
from server.services.outbox import OutboxRepository
from server.services.outbox import new_control_id

PG_ENV = "FRONTDESK_BENCH_DATABASE_URL"
T = t.TypeVar("T")
TARGET_P99_MS = 20.0
SENDER = Sender(application="FRONTDESK", facility="CLINIC")
DESTINATION = Destination(application="EHR", facility="CLINIC")
PATIENT = PatientInfo(mrn="MRN000001", assigning_authority="CLINIC", family="Family", given="Pat",
                      birth_date=dt.date(1970, 1, 1), sex="F")


def adt(control_id: str) -> bytes:
    now = dt.datetime.now(dt.UTC)
    return builders.build_adt_a04(SENDER, DESTINATION, PATIENT, VisitInfo(visit_number="V1", arrival=now),
                                  control_id=control_id, now=now)


class TimedRepository(OutboxRepository):
    """The real repository, noting when each row's ``sent`` state has committed."""

    def __init__(self, services: Services) -> None:
        super().__init__(uow=services.uow, audit=services.audit)
        self.sent: dict[int, float] = {}
        self.changed = threading.Condition()

    def mark_sent(self, acks: Sequence[tuple[int, bytes]], now: dt.datetime) -> None:
        super().mark_sent(acks, now)
        with self.changed:
            for id, _ in acks:
                self.sent[id] = time.perf_counter()
            self.changed.notify_all()


def paced(count: int, rate: float, action: Callable[[int], T]) -> list[T]:
    """Call ``action(n)`` for ``n`` in ``range(count)``, starting one every ``1 / rate`` seconds."""
    results = []
    start = time.perf_counter()
    for n in range(count):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        results.append(action(n))
    return results


def through_outbox(services: Services, port: int, poll: float, count: int, rate: float, *,
                   wake: bool) -> list[float]:
    """Latencies (ms) from enqueue commit to ``sent`` commit, dispatcher polling every ``poll`` seconds
    and, with ``wake``, woken by each enqueue's commit."""
    settings = HL7Config()
    repository = TimedRepository(services)
    client = MLLPClient("127.0.0.1", port, connect_timeout=settings.connect_timeout_seconds,
                        ack_timeout=settings.ack_timeout_seconds)
    dispatcher = Dispatcher(repository, client, clock=services.clock.now, rng=random.Random(),
                            retry=RetryPolicy(base=settings.retry_base_seconds, cap=settings.retry_cap_seconds,
                                              max_attempts=settings.max_attempts))
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), kwargs={"poll_interval": poll}, daemon=True)
    if wake:
        services.outbox.subscribe(dispatcher.wake)
    thread.start()

    committed: dict[int, float] = {}

    def enqueue(n: int) -> None:
        control_id = new_control_id()
        with services.uow.begin() as session:
            row_id = services.outbox.enqueue(session, adt(control_id), control_id=control_id,
                                             message_type="ADT^A04", ordering_key=f"patient:{n}")
        committed[row_id] = time.perf_counter()

    try:
        # Open loop: the next message is enqueued on schedule whether or not the last one is out yet.
        paced(count, rate, enqueue)
        with repository.changed:
            if not repository.changed.wait_for(lambda: committed.keys() <= repository.sent.keys(), timeout=60):
                raise SystemExit("not every message was sent within 60 s")
        return [(repository.sent[row_id] - at) * 1000 for row_id, at in committed.items()]
    finally:
        if wake:
            services.outbox.unsubscribe(dispatcher.wake)
        stop.set()
        dispatcher.wake()
        thread.join()
        repository.release()


def raw_round_trip(port: int, count: int, rate: float) -> list[float]:
    """Latencies (ms) of send + matching ACK on one persistent connection, no outbox."""
    with MLLPClient("127.0.0.1", port) as client:
        def send(n: int) -> float:
            control_id = new_control_id()
            payload = adt(control_id)
            started = time.perf_counter()
            client.send(payload, control_id)
            return (time.perf_counter() - started) * 1000

        return paced(count, rate, send)


def summary(label: str, latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    print(f"{label:<62} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   max {ordered[-1]:7.1f} ms")
    return p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=150)
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second")
    args = parser.parse_args()
    print(f"{args.messages} ADT^A04 at {args.rate:g}/s; target p99 <= {TARGET_P99_MS:.0f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        receiver = Receiver(work / "records.sqlite3")
        try:
            summary("baseline  raw MLLP round trip (MLLPClient)", raw_round_trip(receiver.port, args.messages,
                                                                                   args.rate))
            backends = [("SQLite", f"sqlite:///{work / 'frontdesk.db'}", "")]
            pg_url = os.environ.get(PG_ENV, "")
            if pg_url:
                schema = f"bench_{uuid.uuid4().hex[:12]}"
                with psycopg.connect(pg_url, autocommit=True) as connection:
                    connection.execute(f'CREATE SCHEMA "{schema}"')
                backends.append(("PostgreSQL", pg_url, schema))
            else:
                print(f"PostgreSQL runs skipped: set {PG_ENV} to run them")
            try:
                for name, url, schema in backends:
                    services = open_services(url, work / "instance", schema)
                    for label, poll, wake in (("poll 500 ms, woken on enqueue (serve)", 0.5, True),
                                              ("poll 500 ms, no wake-up (previous version)", 0.5, False),
                                              ("poll 10 ms, no wake-up", 0.01, False)):
                        summary(f"ours      {name}, {label}",
                                through_outbox(services, receiver.port, poll, args.messages, args.rate, wake=wake))
                    services.uow.engine.dispose()
            finally:
                for _, url, schema in backends:
                    if schema:
                        with psycopg.connect(url, autocommit=True) as connection:
                            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            receiver.close()


if __name__ == "__main__":
    main()
