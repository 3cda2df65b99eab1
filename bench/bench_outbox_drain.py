"""Outbox drain rate: a 10,000-message ADT backlog delivered and ACKed over loopback MLLP.

Ours: the backlog sits in the outbox (SQLite, and PostgreSQL when
``FRONTDESK_BENCH_DATABASE_URL`` names a server) and one ``frontdesk bridge``
process delivers it over 1, 2, 4 and 8 connections to the same receiver
(``destination_connections``): claim a batch, share it out between the
connections by patient, send on each, wait for each ACK, mark the batch sent.
The rate runs from the first message reaching the receiver to the
``--measure``-th ACK, so process start-up is not counted. After each run the
receiver's store is checked: every message stored once, and each patient's
messages stored in the order they were enqueued.

Baseline, in the same run against the same kind of receiver: the same backlog
sent without the outbox, one TCP connection per message (connect, send, read
the ACK, close), the way ``mllp_send``-style tools deliver.

Ceiling, also in the same run: the receiver alone, fed the same messages over
8 connections by a client process that does nothing else. No sender can
deliver faster than the receiver answers, so a goal above this line cannot be
shown on the machine the benchmark runs on.

The receiver is the reference records server in this process (an
:class:`hl7.listener.MLLPListener` in front of :class:`hl7.records_server.RecordsServer`),
storing every message in its own SQLite file with ``synchronous=FULL``; each
run gets a fresh store so every message is a new insert.

Run: ``.venv/bin/python bench/bench_outbox_drain.py [--messages N] [--patients K] [--measure M]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pickle
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import delete

from hl7 import builders
from hl7.listener import MLLPListener
from hl7.listener import PeerInfo
from hl7.mllp import MLLPDecoder
from hl7.mllp import encode_frame
from hl7.model import Destination
from hl7.model import PatientInfo
from hl7.model import Sender
from hl7.model import VisitInfo
from hl7.records_server import RecordsServer
from hl7.records_server import RecordStore
from server import migrate
from server.config import Config
from server.db import make_engine
from server.models import OutboxMessage
from server.services import Services
from server.services import build_services
from server.services.outbox import OutboxRepository

PG_ENV = "FRONTDESK_BENCH_DATABASE_URL"
FRONTDESK = str(Path(sys.executable).with_name("frontdesk"))
TARGET_PER_S = 3000.0
CONNECTIONS = (1, 2, 4, 8)

Backlog = list[tuple[str, str, bytes]]
"""``(MSH-10, ordering key, payload)`` in enqueue order."""


class Receiver:
    """The reference records server on a free loopback port, timing the ACKs it sends.

    :param target: how many ACKs to time; :attr:`done` is set when that many have been answered.
    """

    def __init__(self, store_path: Path, target: int = 0) -> None:
        self.store = RecordStore(store_path)
        self.records = RecordsServer(self.store, emit=lambda line: None)
        self.target = target
        self.first_arrival: float | None = None
        self.target_answered: float | None = None
        self.answered = 0
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.listener = MLLPListener(self._handle, port=0, max_connections=64)
        self.listener.start()
        self.port = self.listener.address[1]

    def _handle(self, data: bytes, peer: PeerInfo) -> bytes | None:
        with self._lock:
            if self.first_arrival is None:
                self.first_arrival = time.perf_counter()
        ack = self.records(data, peer)
        with self._lock:
            self.answered += 1
            if self.answered == self.target:
                self.target_answered = time.perf_counter()
                self.done.set()
        return ack

    def rate(self) -> float:
        """ACKs per second from the first arrival to the ``target``-th answer."""
        assert self.first_arrival is not None and self.target_answered is not None
        return self.target / (self.target_answered - self.first_arrival)

    def close(self) -> None:
        self.records.close()
        self.listener.close()
        self.store.close()


def adt_backlog(count: int, patients: int) -> Backlog:
    """``count`` ADT^A04 from the real builder, spread round-robin over ``patients`` ordering keys."""
    sender = Sender(application="FRONTDESK", facility="CLINIC")
    destination = Destination(application="EHR", facility="CLINIC")
    now = dt.datetime.now(dt.UTC)
    backlog = []
    for n in range(count):
        patient = n % patients
        control_id = "FD" + uuid.uuid4().hex[:18].upper()
        payload = builders.build_adt_a04(
            sender, destination,
            PatientInfo(mrn=f"MRN{patient:06d}", assigning_authority="CLINIC", family=f"Family{patient}",
                        given="Pat", birth_date=dt.date(1970, 1, 1) + dt.timedelta(days=patient), sex="F"),
            VisitInfo(visit_number=f"V{n:07d}", location="EXAM1", arrival=now),
            control_id=control_id, now=now)
        backlog.append((control_id, f"patient:{patient}", payload))
    return backlog


def open_services(url: str, instance: Path, schema: str = "") -> Services:
    """Services on a migrated database, as ``frontdesk`` opens them."""
    engine = make_engine(url, schema=schema or None)
    migrate.upgrade(engine)
    config = Config.for_tests(db_url=url, db_schema=schema, instance_dir=instance)
    return build_services(config, engine, secret="bench")


def enqueue(services: Services, backlog: Backlog, chunk: int = 1000) -> None:
    """Write the backlog into an emptied outbox, ``chunk`` messages per transaction."""
    with services.uow.begin() as session:
        session.execute(delete(OutboxMessage))
    for start in range(0, len(backlog), chunk):
        with services.uow.begin() as session:
            for control_id, key, payload in backlog[start:start + chunk]:
                services.outbox.enqueue(session, payload, control_id=control_id, message_type="ADT^A04",
                                        ordering_key=key)


def drain_with_bridges(env: dict[str, str], services: Services, backlog: Backlog, bridges: int, measure: int,
                       store: Path, timeout: float = 300.0) -> float:
    """ACKed messages per second over the first ``measure`` deliveries by ``bridges`` ``frontdesk bridge`` processes.

    The bridges are stopped (SIGTERM, a clean stop) once that many are ACKed;
    every message that reached the receiver must then be stored exactly once,
    marked ``sent`` in the outbox, and stored in enqueue order per patient.
    """
    enqueue(services, backlog)
    receiver = Receiver(store, target=measure)
    env = {**env, "FRONTDESK_HL7_DESTINATION_HOST": "127.0.0.1", "FRONTDESK_HL7_DESTINATION_PORT": str(receiver.port)}
    processes = [subprocess.Popen([FRONTDESK, "bridge"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(bridges)]
    try:
        if not receiver.done.wait(timeout):
            raise SystemExit(f"only {receiver.answered} of {measure} messages ACKed in {timeout} s")
        return receiver.rate()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
        stored = [m.control_id for m in receiver.store.messages()]
        sent = services.outbox.stats()["counts"]["sent"]  # type: ignore[index]
        receiver.close()
        if not len(stored) == len(set(stored)) == sent == receiver.answered:
            raise SystemExit(f"{receiver.answered} ACKs sent, {len(stored)} messages stored, {sent} rows sent: "
                             "a message was delivered twice or lost")
        check_patient_order(backlog, stored)


def check_patient_order(backlog: Backlog, stored: list[str]) -> None:
    """Each patient's stored messages are a prefix of that patient's backlog, in order (FIFO per patient)."""
    by_patient: dict[str, list[str]] = {}
    for control_id, key, _ in backlog:
        by_patient.setdefault(key, []).append(control_id)
    key_of = {control_id: key for control_id, key, _ in backlog}
    received: dict[str, list[str]] = {}
    for control_id in stored:
        received.setdefault(key_of[control_id], []).append(control_id)
    for key, control_ids in received.items():
        if by_patient[key][:len(control_ids)] != control_ids:
            raise SystemExit(f"messages of {key} arrived out of order")


def one_connection_per_message(backlog: Backlog, store: Path) -> float:
    """ACKed messages per second sent one TCP connection each, without the outbox."""
    receiver = Receiver(store, target=len(backlog))
    try:
        for _, _, payload in backlog:
            with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(encode_frame(payload))
                decoder = MLLPDecoder()
                while not decoder.feed(sock.recv(65536)):
                    pass
        return receiver.rate()
    finally:
        receiver.close()


_CEILING_CLIENT = """
import pickle, socket, sys, threading
from hl7.mllp import MLLPDecoder
port, connections = int(sys.argv[1]), int(sys.argv[2])
frames = pickle.load(sys.stdin.buffer)
def run(share):
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        decoder = MLLPDecoder()
        for frame in share:
            sock.sendall(frame)
            while not decoder.feed(sock.recv(65536)):
                pass
threads = [threading.Thread(target=run, args=(frames[i::connections],)) for i in range(connections)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""


def receiver_ceiling(backlog: Backlog, store: Path, measure: int, connections: int = 8) -> float:
    """ACKs per second the receiver gives a client process that only sends the backlog, waiting for each ACK."""
    receiver = Receiver(store, target=measure)
    try:
        client = subprocess.Popen([sys.executable, "-c", _CEILING_CLIENT, str(receiver.port), str(connections)],
                                  stdin=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
        assert client.stdin is not None
        client.stdin.write(pickle.dumps([encode_frame(payload) for _, _, payload in backlog]))
        client.stdin.close()
        client.wait(timeout=300)
        if not receiver.done.is_set():
            raise SystemExit(f"only {receiver.answered} of {measure} messages ACKed by the receiver alone")
        return receiver.rate()
    finally:
        receiver.close()


def claim_cost_ms(services: Services, backlog: Backlog, calls: int = 10) -> float:
    """Milliseconds per ``claim_next`` (10 messages) with ``backlog`` due: the dispatcher's fixed cost per batch."""
    enqueue(services, backlog)
    repository = OutboxRepository(uow=services.uow, audit=services.audit)
    started = time.perf_counter()
    for _ in range(calls):
        repository.claim_next(services.clock.now(), 300.0, 10)
    return (time.perf_counter() - started) / calls * 1000


def frontdesk_env(url: str, instance: Path, schema: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env.update(FRONTDESK_DATABASE_URL=url, FRONTDESK_INSTANCE_DIR=str(instance),
               FRONTDESK_WEB_SECRET_KEY=secrets.token_hex(32))
    if schema:
        env["FRONTDESK_DATABASE_SCHEMA"] = schema
    return env


def drain_lines(label: str, env: dict[str, str], services: Services, backlog: Backlog, measure: int, work: Path,
                baseline: float) -> None:
    """One line per number of connections."""
    for connections in CONNECTIONS:
        run_env = {**env, "FRONTDESK_HL7_DESTINATION_CONNECTIONS": str(connections)}
        rate = drain_with_bridges(run_env, services, backlog, 1, measure, work / f"{label}-{connections}.sqlite3")
        verdict = "meets" if rate >= TARGET_PER_S else "below"
        print(f"ours      outbox drain, {label:<10}, {connections} connection{'s' if connections > 1 else ' '}  "
              f"{rate:8.0f} msg/s  ({rate / baseline:.1f}x baseline; {verdict} the {TARGET_PER_S:.0f}/s goal)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--patients", type=int, default=1_000, help="ordering keys the backlog is spread over")
    parser.add_argument("--measure", type=int, default=3_000,
                        help="deliveries timed from the full backlog (0: the whole backlog)")
    args = parser.parse_args()
    measure = args.measure or args.messages
    backlog = adt_backlog(args.messages, args.patients)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"backlog: {len(backlog)} ADT^A04 over {args.patients} patients, "
              f"{sum(len(p) for _, _, p in backlog) // len(backlog)} bytes each on average; "
              f"ours timed over the first {measure} deliveries")

        baseline = one_connection_per_message(backlog, work / "baseline.sqlite3")
        print(f"baseline  one connection per message, no outbox          {baseline:8.0f} msg/s")
        ceiling = receiver_ceiling(backlog, work / "ceiling.sqlite3", measure)
        print(f"ceiling   the receiver alone, 8 connections, bare client {ceiling:8.0f} msg/s")

        url = f"sqlite:///{work / 'frontdesk.db'}"
        services = open_services(url, work / "instance")
        drain_lines("SQLite", frontdesk_env(url, work / "instance"), services, backlog, measure, work, baseline)
        print(f"          where it goes: one claim of 10 takes {claim_cost_ms(services, backlog):.1f} ms with "
              f"{len(backlog)} messages due, {claim_cost_ms(services, backlog[:100]):.1f} ms with 100")
        services.uow.engine.dispose()

        pg_url = os.environ.get(PG_ENV, "")
        if not pg_url:
            print(f"PostgreSQL drain skipped: set {PG_ENV} to run it")
            return
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_url, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
        try:
            services = open_services(pg_url, work / "instance", schema)
            drain_lines("PostgreSQL", frontdesk_env(pg_url, work / "instance", schema), services, backlog, measure,
                        work, baseline)
            services.uow.engine.dispose()
        finally:
            with psycopg.connect(pg_url, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
