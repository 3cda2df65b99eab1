"""Inbound schedule rate: SIU^S12 over one MLLP connection, parsed, stored and acknowledged.

Three servers, each in its own process on a free loopback port, measured in
the same run by the same client (this process):

* ours: ``frontdesk listen`` (the listener ``serve`` runs), on SQLite and, when
  ``FRONTDESK_BENCH_DATABASE_URL`` names a server, PostgreSQL. Every message is
  parsed, checked for a repeat by MSH-10, applied (patient upsert, appointment,
  expected visit, audit rows, the raw message and its ACK kept) and committed
  before its ACK is sent;
* the previous version: the same command from the commit this branch started
  from (``git archive`` into a temporary directory, run with the same
  interpreter), on the same databases;
* python-hl7 0.4.5's asyncio MLLP server (the test peer under ``.venv/peers``),
  which parses each message and answers AA but stores nothing.

Two ways of sending over the one connection: *one at a time* (send, wait for
the ACK, send the next: what most senders do) and *pipelined* (up to
``--window`` messages in flight, as an interface engine replaying a backlog
does). Pipelined messages arrive back to back, which is what lets the
listener commit them together (group commit); each ACK still follows the
commit of its message.

Run: ``.venv/bin/python bench/bench_inbound_siu.py [--messages N] [--window W] [--previous REV]``
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from bench_outbox_drain import frontdesk_env

from hl7.ack import parse_ack
from hl7.client import MLLPClient
from hl7.mllp import MLLPDecoder
from hl7.mllp import encode_frame

REPO = Path(__file__).resolve().parents[1]
FRONTDESK = str(Path(sys.executable).with_name("frontdesk"))
PYTHON_HL7 = REPO / ".venv" / "peers" / "python-hl7"
PG_ENV = "FRONTDESK_BENCH_DATABASE_URL"
GOAL_PER_S = 1000.0

PEER_SERVER = REPO / "tests" / "peers" / "python_hl7_server.py"
OLD_FRONTDESK = "import sys\nfrom server.cli import main\nsys.argv[0] = 'frontdesk'\nmain()\n"

Messages = list[tuple[str, bytes]]


def siu_s12(n: int, run: str) -> tuple[str, bytes]:
    """A new appointment for patient ``n``: its MSH-10 and the message (segments ending in CR)."""
    control_id = f"{run}{n:07d}"
    segments = [
        f"MSH|^~\\&|SCHED|FAMCLINIC|FRONTDESK|CLINIC|20261126070000+0000||SIU^S12^SIU_S12|{control_id}|P|2.5.1",
        f"SCH|P{n}^SCHED|F{n}^SCHED|||||ROUTINE^Routine visit^HL70276||20|MIN|"
        f"^^20^20261126{9 + n % 8:02d}{n % 4 * 15:02d}00+0000||||||||||||||Booked",
        f"PID|1||MR{n:07d}^^^FAMCLINIC^MR||Family{n}^Given^Q||19{50 + n % 50:02d}0{1 + n % 9}1{n % 10}|F|||"
        f"{n} Elm St^^Springfield^IL^62701^USA||^PRN^PH^^1^217^555{n % 10000:04d}||en",
        "AIL|1||EXAM2^^^FAMCLINIC",
        "AIP|1||D204^Mensah^Efua",
    ]
    return control_id, ("\r".join(segments) + "\r").encode()


def one_at_a_time(port: int, messages: Messages) -> float:
    """Messages per second sent one by one, each waiting for its ACK (AA required)."""
    with MLLPClient("127.0.0.1", port, connect_timeout=5, ack_timeout=60) as client:
        started = time.perf_counter()
        acks = [client.send(payload, control_id) for control_id, payload in messages]
        elapsed = time.perf_counter() - started
    check(acks, messages)
    return len(messages) / elapsed


def pipelined(port: int, messages: Messages, window: int) -> float:
    """Messages per second with up to ``window`` messages sent ahead of their ACKs (AA required)."""
    slots = threading.BoundedSemaphore(window)
    acks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def read() -> None:
            decoder = MLLPDecoder()
            while len(acks) < len(messages):
                data = sock.recv(65536)
                if not data:
                    return
                for frame in decoder.feed(data):
                    acks.append(frame)
                    slots.release()

        reader = threading.Thread(target=read)
        started = time.perf_counter()
        reader.start()
        for _, payload in messages:
            slots.acquire()
            sock.sendall(encode_frame(payload))
        reader.join()
        elapsed = time.perf_counter() - started
    check(acks, messages)
    return len(messages) / elapsed


def check(acks: list[bytes], messages: Messages) -> None:
    codes = [(parse_ack(ack).code, parse_ack(ack).control_id) for ack in acks]
    if codes != [("AA", control_id) for control_id, _ in messages]:
        refused = next((c for c in codes if c[0] != "AA"), codes[-1] if codes else None)
        raise SystemExit(f"{len(acks)} ACKs for {len(messages)} messages, not all AA in order: {refused}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def frontdesk_listener(command: list[str], env: dict[str, str], log: Path) -> Iterator[int]:
    """``frontdesk db upgrade`` then ``frontdesk listen`` (ours or the previous version); yields the port.

    Its log goes to a file: a pipe nobody reads would fill and stop the listener.
    """
    port = free_port()
    env = {**env, "FRONTDESK_HL7_LISTEN_PORT": str(port)}
    subprocess.run([*command, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    with log.open("w") as output:
        process = subprocess.Popen([*command, "listen"], env=env, stdout=subprocess.DEVNULL, stderr=output)
    try:
        deadline = time.monotonic() + 60
        while "listening for HL7" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{command} listen did not start: {log.read_text()[-500:]}")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def python_hl7_server() -> Iterator[int]:
    env = {**os.environ, "PYTHONPATH": str(PYTHON_HL7)}
    with tempfile.TemporaryDirectory() as outside:
        process = subprocess.Popen([sys.executable, str(PEER_SERVER)], env=env, cwd=outside, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None and process.stdin is not None
            yield int(process.stdout.readline())
        finally:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=30)


@contextmanager
def databases(work: Path, label: str) -> Iterator[list[tuple[str, dict[str, str]]]]:
    """A fresh SQLite file, and a fresh PostgreSQL schema when a server is named: ``(backend, environment)``."""
    found = [("SQLite", frontdesk_env(f"sqlite:///{work / (label + '.db')}", work / f"{label}-instance"))]
    pg_url = os.environ.get(PG_ENV, "")
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    if pg_url:
        with psycopg.connect(pg_url, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
        found.append(("PostgreSQL", frontdesk_env(pg_url, work / f"{label}-instance", schema)))
    try:
        yield found
    finally:
        if pg_url:
            with psycopg.connect(pg_url, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def previous_checkout(revision: str, into: Path) -> Path:
    """The tree of ``revision`` exported into ``into`` (no work tree or branch is touched)."""
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def base_revision() -> str:
    """The commit this branch started from: where it left ``main``."""
    result = subprocess.run(["git", "-C", str(REPO), "merge-base", "HEAD", "main"], capture_output=True, text=True)
    return result.stdout.strip() or "HEAD"


def measure(label: str, port: int, messages: dict[str, Messages], window: int) -> None:
    waited = one_at_a_time(port, messages["single"])
    ahead = pipelined(port, messages["piped"], window)
    print(f"{label:<42} {waited:8.0f} msg/s {ahead:12.0f} msg/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--window", type=int, default=32, help="messages in flight when pipelining")
    parser.add_argument("--previous", default="", help="revision of the previous version (default: merge-base)")
    args = parser.parse_args()
    revision = args.previous or base_revision()
    batches = {mode: [siu_s12(n, mode[0].upper()) for n in range(args.messages)] for mode in ("single", "piped")}
    print(f"{args.messages} SIU^S12 per mode over one MLLP connection; pipelined = up to {args.window} in flight; "
          f"previous version = {revision[:10]}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'server':<42} {'one at a time':>14} {'pipelined':>18}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with python_hl7_server() as port:
            measure("baseline  python-hl7 asyncio, parse + AA only", port, batches, args.window)
        old_tree = previous_checkout(revision, work / "previous")
        old_command = [sys.executable, "-c", OLD_FRONTDESK]
        for label, command, extra in (("previous", old_command, {"PYTHONPATH": str(old_tree)}),
                                      ("ours", [FRONTDESK], {})):
            with databases(work, label) as backends:
                for backend, env in backends:
                    with frontdesk_listener(command, {**env, **extra}, work / f"{label}-{backend}.log") as port:
                        measure(f"{label:<9} {backend}, stored", port, batches, args.window)
    print(f"goal: at least {GOAL_PER_S:.0f} msg/s stored on SQLite and PostgreSQL, each ACK after its commit")


if __name__ == "__main__":
    main()
