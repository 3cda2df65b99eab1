"""A real ``frontdesk serve`` keeps answering: with many live pages open, and with no one reading its log."""

from __future__ import annotations

import signal
import subprocess
import typing as t
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from server.config import WebConfig
from server.live import StreamSlots
from tests.procs import FRONTDESK
from tests.procs import Browser
from tests.procs import clean_env
from tests.procs import eventually
from tests.procs import free_port
from tests.procs import run
from tests.procs import start
from tests.procs import wait_for

PASSWORD = "correct horse battery"
POOL_CONNECTIONS = 15
"""SQLAlchemy's default pool (5 + 10 overflow): more live pages than this show a stream holds no connection."""


def prepared(tmp_path: Path) -> tuple[dict[str, str], str]:
    """A migrated database with station ``room1`` (its device is not plugged in) and an assistant."""
    config = tmp_path / "frontdesk.toml"
    config.write_text(f'[[devices]]\nid = "ox-1"\ndriver = "nonin-df8"\nport = "{tmp_path / "no-tty"}"\n'
                      'station = "room1"\n')
    port = free_port()
    env = clean_env(tmp_path / "instance", FRONTDESK_CONFIG=str(config), FRONTDESK_WEB_PORT=str(port),
                    FRONTDESK_HL7_LISTEN_PORT=str(free_port()))
    assert run(["db", "upgrade"], env).returncode == 0
    added = run(["users", "add", "ama", "--role", "assistant", "--password-stdin"], env, PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    return env, f"http://127.0.0.1:{port}"


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=20) as response:
        response.read()
        return int(response.status)


def open_stream(staff: Browser) -> tuple[t.Any, str]:
    """A station event stream in the signed-in browser ``staff`` and its first event (``live`` or ``busy``)."""
    response = staff.opener.open(staff.base + "/staff/stations/room1/events", timeout=20)
    for line in iter(response.readline, b""):
        if line.startswith(b"event: "):
            return response, line.decode().split(": ", 1)[1].strip()
    raise AssertionError("the stream ended before its first event")


def test_live_pages_up_to_the_limit_and_twenty_clients_all_get_answers(tmp_path: Path) -> None:
    env, base = prepared(tmp_path)
    server = start(["serve"], env)
    streams: list[t.Any] = []
    try:
        wait_for(base + "/healthz")
        staff = Browser(base)  # one assistant's browser; every tab shares its session
        assert staff.sign_in("ama", PASSWORD) == 302
        limit = StreamSlots.for_threads(WebConfig().threads).limit
        assert limit > POOL_CONNECTIONS
        with ThreadPoolExecutor(8) as pool:
            opened = list(pool.map(lambda _: open_stream(staff), range(limit)))
        streams = [response for response, _ in opened]
        assert [kind for _, kind in opened] == ["live"] * limit
        refused, kind = open_stream(staff)
        refused.close()
        assert kind == "busy"

        def client(index: int) -> list[int]:
            statuses = []
            for _ in range(5):
                statuses.append(staff.request("/staff/stations/room1")[0])
                statuses.append(get(base + "/healthz"))
            return statuses

        with ThreadPoolExecutor(20) as pool:
            answered = [s for statuses in pool.map(client, range(20)) for s in statuses]
        assert answered == [200] * 20 * 10

        streams.pop().close()
        eventually(lambda: open_stream(staff)[1] == "live", what="a closed page's slot to be free again")
    finally:
        for response in streams:
            response.close()
        server.send_signal(signal.SIGTERM)
        log = server.communicate(timeout=30)[1]
    assert server.returncode == 0
    assert '"level": "error"' not in log and "Traceback" not in log


@pytest.mark.timeout(180)
def test_serve_keeps_answering_when_no_one_reads_its_log(tmp_path: Path) -> None:
    env, base = prepared(tmp_path)
    # Deliberately not tests.procs.start (which reads the log as it comes): nothing reads this pipe until
    # the end, as with a paused terminal; 600 requests write far more than the pipe's 64 KiB.
    server = subprocess.Popen([FRONTDESK, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        wait_for(base + "/healthz")
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: get(base + "/staff/login"), range(600)))
        assert statuses == [200] * 600
    finally:
        server.send_signal(signal.SIGTERM)
        log = server.communicate(timeout=30)[1]
    assert log.count('"endpoint": "/staff/login"') == 600, "every line is written once the reader is back"
    assert '"event": "runtime.stopped"' in log
