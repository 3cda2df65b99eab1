"""``frontdesk records-server`` as a subprocess, driven by our MLLP client over loopback."""

from __future__ import annotations

import queue
import re
import signal
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest

from hl7.ack import parse_ack
from hl7.client import AckTimeout
from hl7.client import MLLPClient
from hl7.mllp import encode_frame

REPO = Path(__file__).resolve().parents[2]
FRONTDESK = REPO / ".venv" / "bin" / "frontdesk"
PATIENT = "Sentinelname^Privateperson"


def message(control_id: str, event: str = "A04") -> bytes:
    return (
        f"MSH|^~\\&|KIOSK|FAMCLINIC|EHR|FAMCLINIC|20261126093012+0000||ADT^{event}^ADT_A01|{control_id}|P|2.6\r"
        f"PID|||004711^^^FAMCLINIC^MR||{PATIENT}||19800214|F\r"
        "PV1||O\r"
    ).encode()


class RecordsProcess:
    """A running records server; its stdout lines are collected as they come."""

    def __init__(self, store: Path, *args: str) -> None:
        self.store = store
        self.process = subprocess.Popen(
            [str(FRONTDESK), "records-server", "--listen", "127.0.0.1:0", "--store", str(store), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        first = self.next_line()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", first)
        assert found, f"unexpected first line {first!r}"
        self.port = int(found.group(1))

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line.rstrip("\n"))

    def next_line(self) -> str:
        return self.lines.get(timeout=30)

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, stderr = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        return self.process.returncode, stderr

    def client(self, ack_timeout: float = 10.0) -> MLLPClient:
        return MLLPClient("127.0.0.1", self.port, ack_timeout=ack_timeout)

    def stored(self) -> list[tuple[str, str]]:
        with sqlite3.connect(self.store) as db:
            return db.execute("SELECT control_id, message_type FROM message ORDER BY id").fetchall()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., RecordsProcess]]:
    started: list[RecordsProcess] = []

    def run(*args: str) -> RecordsProcess:
        started.append(RecordsProcess(tmp_path / "records.sqlite3", *args))
        return started[-1]

    yield run
    for process in started:
        process.stop()


def test_stores_acks_and_deduplicates_by_control_id(start: Callable[..., RecordsProcess]) -> None:
    server = start()
    with server.client() as client:
        first = client.send(message("C1"), "C1")
        assert parse_ack(client.send(message("C2", "A08"), "C2")).code == "AA"
        again = client.send(message("C1"), "C1")
    assert parse_ack(first) == parse_ack(again)
    assert again == first
    lines = [server.next_line() for _ in range(3)]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ADT\^A04\^ADT_A01 C1 stored", lines[0])
    assert lines[1].endswith("ADT^A08^ADT_A01 C2 stored")
    assert lines[2].endswith("ADT^A04^ADT_A01 C1 duplicate")
    code, stderr = server.stop()
    assert code == 0
    assert server.stored() == [("C1", "ADT^A04^ADT_A01"), ("C2", "ADT^A08^ADT_A01")]
    everything = "".join(server.output) + stderr
    assert "Sentinelname" not in everything
    assert "19800214" not in everything


def test_messages_survive_a_restart_and_stay_deduplicated(start: Callable[..., RecordsProcess]) -> None:
    server = start()
    with server.client() as client:
        client.send(message("R1"), "R1")
    server.stop()
    restarted = start()
    with restarted.client() as client:
        client.send(message("R1"), "R1")
    assert restarted.next_line().endswith("R1 duplicate")
    assert restarted.stored() == [("R1", "ADT^A04^ADT_A01")]


@pytest.mark.parametrize("code", ["AE", "AR"])
def test_reply_rejects_without_storing(start: Callable[..., RecordsProcess], code: str) -> None:
    server = start("--reply", code)
    with server.client() as client:
        ack = parse_ack(client.send(message("N1"), "N1"))
    assert (ack.code, ack.control_id) == (code, "N1")
    assert ack.errors
    assert server.next_line().endswith(f"N1 rejected {code}")
    assert server.stored() == []


def test_reply_none_stores_but_never_answers(start: Callable[..., RecordsProcess]) -> None:
    server = start("--reply", "none")
    with server.client(ack_timeout=0.5) as client, pytest.raises(AckTimeout):
        client.send(message("Q1"), "Q1")
    assert server.next_line().endswith("Q1 stored (no reply)")
    assert server.stored() == [("Q1", "ADT^A04^ADT_A01")]


def test_reply_slow_answers_after_the_delay(start: Callable[..., RecordsProcess]) -> None:
    server = start("--reply", "slow=1")
    with server.client(ack_timeout=0.2) as client, pytest.raises(AckTimeout):
        client.send(message("S1"), "S1")
    with server.client(ack_timeout=20) as client:
        assert parse_ack(client.send(message("S1"), "S1")).code == "AA"
    outcomes = {" ".join(server.next_line().split()[2:]) for _ in range(2)}
    assert outcomes == {"S1 stored", "S1 duplicate"}


def test_bytes_outside_a_frame_close_the_connection_and_store_nothing(
    start: Callable[..., RecordsProcess],
) -> None:
    server = start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"hello\r\n" + encode_frame(message("G1")))
        assert sock.recv(65536) == b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(encode_frame(message("G2"))[:50])
    with server.client() as client:
        assert parse_ack(client.send(message("G3"), "G3")).code == "AA"
    assert server.stored() == [("G3", "ADT^A04^ADT_A01")]


def test_oversize_message_gets_ar_and_nothing_is_stored(start: Callable[..., RecordsProcess]) -> None:
    server = start()
    huge = message("BIG") + b"NTE|1||" + b"x" * (1024 * 1024) + b"\r"
    with server.client() as client:
        ack = parse_ack(client.send(huge, "BIG"))
    assert (ack.code, ack.control_id) == ("AR", "BIG")
    assert server.stored() == []


def test_allow_list_refuses_other_senders(start: Callable[..., RecordsProcess]) -> None:
    server = start("--allow", "OTHER^ELSEWHERE")
    with server.client() as client:
        assert parse_ack(client.send(message("A1"), "A1")).code == "AR"
    assert server.stored() == []


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--reply", "maybe"], "--reply"),
        (["--reply", "slow=soon"], "--reply"),
        (["--listen", "nowhere"], "--listen"),
        (["--allow", "KIOSK"], "--allow"),
    ],
)
def test_bad_options_exit_with_one_clear_line(tmp_path: Path, args: list[str], complaint: str) -> None:
    result = subprocess.run(
        [str(FRONTDESK), "records-server", "--store", str(tmp_path / "r.sqlite3"), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr


def test_messages_on_many_connections_are_stored_once_each_and_repeats_get_the_first_ack(
        start: Callable[..., RecordsProcess]) -> None:
    server = start()
    answers: dict[int, list[bytes]] = {}

    def send(connection: int) -> None:
        with server.client() as client:
            # Every connection sends the shared message S, and messages of its own.
            answers[connection] = [client.send(message(control_id), control_id)
                                   for control_id in ("S", f"K{connection}-1", f"K{connection}-2")]

    threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    server.stop()
    stored = [control_id for control_id, _ in server.stored()]
    assert sorted(stored) == sorted(["S", *(f"K{n}-{m}" for n in range(6) for m in (1, 2))])
    assert len({answer[0] for answer in answers.values()}) == 1
    assert all(parse_ack(a).code == "AA" for answer in answers.values() for a in answer)
