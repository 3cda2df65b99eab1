"""python-hl7 0.4.5 as an independent MLLP peer and ER7 parser, in both directions.

python-hl7's import name ``hl7`` is also ours, so it lives in its own target
directory (``.venv/peers/python-hl7``) and runs only in subprocesses whose
``PYTHONPATH`` puts that directory first and whose working directory is
outside the repository. Its asyncio ``hl7.mllp`` handles persistent,
pipelined and split frames, which makes it the best reference peer we have.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hl7.ack import build_ack
from hl7.ack import parse_ack
from hl7.client import MLLPClient
from hl7.listener import MLLPListener
from hl7.listener import PeerInfo

REPO = Path(__file__).resolve().parents[2]
PEER_DIR = REPO / ".venv" / "peers" / "python-hl7"
INSTALL = ".venv/bin/pip install --target .venv/peers/python-hl7 hl7==0.4.5"
NOW = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)

# Sends four messages on one connection: one whole, one written byte by byte,
# two pipelined in a single write; reads four ACKs and reports what python-hl7's
# parser finds in each.
PEER_CLIENT = r"""
import asyncio, json, sys
import hl7
from hl7.mllp import open_hl7_connection

async def main(port, messages):
    reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    frames = [b"\x0b" + m.encode("utf-8") + b"\x1c\x0d" for m in messages]
    writer.write(frames[0])
    for byte in frames[1]:
        writer.write(bytes([byte]))
        await writer.drain()
    writer.write(frames[2] + frames[3])
    await writer.drain()
    acks = []
    for _ in messages:
        ack = await asyncio.wait_for(reader.readmessage(), 10)
        acks.append({"code": str(ack.segment("MSA")[1]), "control_id": str(ack.segment("MSA")[2]),
                     "type": str(ack.segment("MSH")[9])})
    writer.close()
    await writer.wait_closed()
    return acks

print(json.dumps(asyncio.run(main(int(sys.argv[1]), json.loads(sys.stdin.read())))))
"""

# Serves MLLP until stdin closes, answering every message with python-hl7's own ACK.
PEER_SERVER = REPO / "tests" / "peers" / "python_hl7_server.py"


def peer_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PEER_DIR)}


@pytest.fixture(scope="module")
def peer_cwd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory outside the repository, after checking python-hl7 is the ``hl7`` imported there."""
    cwd = tmp_path_factory.mktemp("python-hl7-peer")
    if not PEER_DIR.is_dir():
        pytest.fail(f"python-hl7 peer missing: run `{INSTALL}` in {REPO}")
    found = subprocess.run(
        [sys.executable, "-c", "import hl7; print(hl7.__file__)"],
        cwd=cwd,
        env=peer_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    location = Path(found.stdout.strip()).resolve()
    if found.returncode != 0 or PEER_DIR.resolve() not in location.parents:
        pytest.fail(
            f"`import hl7` in the peer subprocess gave {location or found.stderr.strip()!r}, "
            f"not python-hl7 under {PEER_DIR}; run `{INSTALL}`"
        )
    return cwd


def message(control_id: str, name: str = "Doe^Jane") -> str:
    return (
        f"MSH|^~\\&|KIOSK|FAMCLINIC|EHR|FAMCLINIC|20261126093012+0000||ADT^A04^ADT_A01|{control_id}|P|2.6|||"
        "AL|NE||UNICODE UTF-8\r"
        f"PID|||004711^^^FAMCLINIC^MR||{name}\r"
        "PV1||O\r"
    )


class RecordingHandler:
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._lock = threading.Lock()

    def __call__(self, data: bytes, peer: PeerInfo) -> bytes:
        with self._lock:
            self.received.append(data)
        return build_ack(data, "AA", control_id=f"ACK{len(self.received)}", now=NOW)


def test_python_hl7_client_talks_to_our_listener(peer_cwd: Path) -> None:
    messages = [message("P1"), message("P2", "Müller^Zoë"), message("P3"), message("P4")]
    handler = RecordingHandler()
    with MLLPListener(handler, port=0) as server:
        result = subprocess.run(
            [sys.executable, "-c", PEER_CLIENT, str(server.address[1])],
            input=json.dumps(messages),
            cwd=peer_cwd,
            env=peer_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    acks = json.loads(result.stdout)
    assert [(a["code"], a["control_id"]) for a in acks] == [("AA", f"P{n}") for n in range(1, 5)]
    assert all(a["type"] == "ACK^A04^ACK" for a in acks)
    assert handler.received == [m.encode("utf-8") for m in messages]


@pytest.fixture
def peer_server(peer_cwd: Path) -> Iterator[int]:
    process = subprocess.Popen(
        [sys.executable, str(PEER_SERVER)],
        cwd=peer_cwd,
        env=peer_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            process.kill()
            pytest.fail(f"python-hl7 server did not start: {process.communicate(timeout=10)[1]}")
        yield int(line)
    finally:
        if process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_our_client_talks_to_python_hl7_server(peer_server: int) -> None:
    with MLLPClient("127.0.0.1", peer_server, ack_timeout=10) as client:
        for n in range(1, 4):
            ack = parse_ack(client.send(message(f"Q{n}", "Müller^Zoë").encode("utf-8"), f"Q{n}"))
            assert (ack.code, ack.control_id) == ("AA", f"Q{n}")
