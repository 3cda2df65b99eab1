"""Gateway and uplink against a real HTTP server on 127.0.0.1 that goes down, refuses and comes back.

The server here is the readings endpoint's contract in miniature: bearer token,
``{"accepted": n, "duplicates": d}``, duplicates by ``reading_id`` counted and stored once; over
HTTPS with a certificate from a test CA when asked. It
keeps every reading it was sent (``received``) apart from what it stored, so
the tests can tell "arrived exactly once" from "was sent more than once".
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import typing as t
from decimal import Decimal

import pytest

from devices import drivers
from devices.config import DeviceConfig
from devices.gateway import Gateway
from devices.reading import Reading
from devices.simulators import runner
from devices.transport import Backoff
from devices.uplink import DiskBuffer
from devices.uplink import Uplink
from hl7.tls import server_context
from tests.pki import Authority

TOKEN = "station-token"
FAST = Backoff(base=0.05, cap=0.2, jitter=0.0)
FRONTDESK = str(pathlib.Path(sys.executable).with_name("frontdesk"))


class ReadingsServer:
    """``POST /api/v1/readings`` on a fixed local port; ``script`` holds forced answers for the next requests.

    A forced answer is an HTTP status, or ``"drop"``: store the batch, then close
    the connection without answering, as when a response is lost on the way back.
    """

    def __init__(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self.received: list[dict[str, t.Any]] = []
        self.stored: dict[str, dict[str, t.Any]] = {}
        self.gateways: set[str] = set()
        self.script: list[int | str] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._httpd: http.server.HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with server._lock:
                    server.requests += 1
                    forced = server.script.pop(0) if server.script else None
                if self.path != "/api/v1/readings":
                    self._answer(404, {"error": "not found"})
                elif self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._answer(401, {"error": "bad token"})
                elif isinstance(forced, int):
                    self._answer(forced, {"error": "forced"})
                else:
                    document = json.loads(body)
                    duplicates = 0
                    with server._lock:
                        server.gateways.add(document["gateway"])
                        for reading in document["readings"]:
                            server.received.append(reading)
                            duplicates += reading["reading_id"] in server.stored
                            server.stored.setdefault(reading["reading_id"], reading)
                    if forced == "drop":
                        self.close_connection = True
                        return
                    self._answer(200, {"accepted": len(document["readings"]) - duplicates,
                                       "duplicates": duplicates})

            def _answer(self, status: int, document: dict[str, t.Any]) -> None:
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: t.Any) -> None:
                pass

        self._httpd = http.server.HTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            self._httpd.socket = self.tls.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = self._thread = None

    def stored_ids(self) -> list[str]:
        with self._lock:
            return list(self.stored)

    def received_ids(self) -> list[str]:
        with self._lock:
            return [reading["reading_id"] for reading in self.received]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server() -> t.Iterator[ReadingsServer]:
    """A server on a free port, not yet started: the tests decide when it is up."""
    readings_server = ReadingsServer(free_port())
    yield readings_server
    readings_server.stop()


def wait_for(condition: t.Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.02)


def reading(n: int) -> Reading:
    return Reading("ox1", "room-1", "spo2", 150456, Decimal(90 + n % 10), "%", frozenset(), None,
                   dt.datetime(2026, 3, 1, 14, 0, tzinfo=dt.UTC) + dt.timedelta(seconds=n), float(n))


def buffered_ids(directory: pathlib.Path) -> list[str]:
    buffer = DiskBuffer(str(directory))
    ids = [body["reading_id"] for _, body in buffer.peek(100_000)]
    buffer.close()
    return ids


class Station:
    """Simulated devices on ptys feeding an in-process gateway whose uplink posts to ``server``."""

    DEVICES = (("ox1", "masimo-ascii"), ("ox2", "nonin-df2"))

    def __init__(self, tmp_path: pathlib.Path, server: ReadingsServer) -> None:
        self.lines = [runner.Line(drivers.get(driver).simulator("normal", n), runner.PtyEndpoint(
            link=str(tmp_path / f"tty-{device_id}"))) for n, (device_id, driver) in enumerate(self.DEVICES)]
        self.configs = [DeviceConfig(device_id, driver, str(tmp_path / f"tty-{device_id}"), "room-1")
                        for device_id, driver in self.DEVICES]
        self.buffer_dir = tmp_path / "buffer"
        self.server = server
        self._stop = threading.Event()
        self._runner = threading.Thread(target=runner.run, args=(self.lines, self._stop))

    def __enter__(self) -> Station:
        self._runner.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._runner.join()

    def gateway(self) -> tuple[Gateway, Uplink]:
        """A gateway as started on the station PC: a new uplink on the same buffer directory."""
        uplink = Uplink(self.server.url, TOKEN, "station-a", DiskBuffer(str(self.buffer_dir)), backoff=FAST,
                        timeout=2.0)
        return Gateway(self.configs, uplink.submit, backoff=FAST), uplink


def test_outage_and_restart_lose_nothing_and_replay_in_order(tmp_path: pathlib.Path,
                                                             server: ReadingsServer) -> None:
    with Station(tmp_path, server) as station:
        gateway, uplink = station.gateway()
        uplink.start()
        gateway.start()
        wait_for(lambda: len(uplink.buffer) >= 20, "readings buffered while the server is down")
        gateway.stop()
        uplink.stop()
        uplink.buffer.close()
        during_outage = buffered_ids(station.buffer_dir)
        assert server.requests == 0

        server.start()
        gateway, uplink = station.gateway()
        uplink.start()
        gateway.start()
        wait_for(lambda: len(server.stored_ids()) >= len(during_outage) + 5, "replay and new readings")
        gateway.stop()
        wait_for(lambda: len(uplink.buffer) == 0, "buffer drained")
        uplink.stop()
        uplink.buffer.close()

    stored = server.stored_ids()
    assert stored[:len(during_outage)] == during_outage
    assert server.received_ids() == stored
    assert server.gateways == {"station-a"}
    for device_id, _ in Station.DEVICES:
        times = [r["host_time"] for r in server.stored.values() if r["device_id"] == device_id]
        assert times and times == sorted(times)


def test_server_errors_are_retried_in_order(tmp_path: pathlib.Path, server: ReadingsServer) -> None:
    server.script = [500, 503, 502]
    server.start()
    uplink = Uplink(server.url, TOKEN, "station-a", DiskBuffer(str(tmp_path)), backoff=FAST, batch_size=7)
    for n in range(30):
        uplink.submit(reading(n))
    expected = buffered_ids(tmp_path)
    uplink.drain(threading.Event())
    assert server.stored_ids() == expected
    assert server.received_ids() == expected
    assert server.requests == 3 + 5
    assert len(uplink.buffer) == 0


def test_lost_answer_is_resent_and_stored_once(tmp_path: pathlib.Path, server: ReadingsServer) -> None:
    server.script = ["drop"]
    server.start()
    uplink = Uplink(server.url, TOKEN, "station-a", DiskBuffer(str(tmp_path)), backoff=FAST, batch_size=10)
    for n in range(15):
        uplink.submit(reading(n))
    expected = buffered_ids(tmp_path)
    uplink.drain(threading.Event())
    assert server.stored_ids() == expected
    assert server.received_ids() == expected[:10] + expected
    assert len(uplink.buffer) == 0


def test_wrong_token_is_reported_once_and_keeps_buffering(tmp_path: pathlib.Path, server: ReadingsServer,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    server.start()
    wrong = Uplink(server.url, "not-the-token", "station-a", DiskBuffer(str(tmp_path)), backoff=FAST)
    for n in range(5):
        wrong.submit(reading(n))
    wrong.start()
    wait_for(lambda: server.requests >= 4, "several attempts")
    wrong.stop()
    wrong.buffer.close()
    errors = [record for record in caplog.records
              if record.levelname == "ERROR" and record.msg == "gateway.token_refused"]
    assert len(errors) == 1 and errors[0].__dict__["status"] == 401
    assert server.stored_ids() == []

    expected = buffered_ids(tmp_path)
    assert len(expected) == 5
    fixed = Uplink(server.url, TOKEN, "station-a", DiskBuffer(str(tmp_path)), backoff=FAST)
    fixed.drain(threading.Event())
    assert server.stored_ids() == expected
    fixed.buffer.close()


def test_standalone_gateway_command(tmp_path: pathlib.Path, server: ReadingsServer) -> None:
    """``frontdesk simulate`` and ``frontdesk gateway`` as on a station PC; the server comes up late."""
    simulate = subprocess.Popen([FRONTDESK, "simulate", "masimo-ascii", "--pty"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    gateway: subprocess.Popen[str] | None = None
    try:
        assert simulate.stdout is not None
        path = simulate.stdout.readline().strip()
        gateway = subprocess.Popen(
            [FRONTDESK, "gateway", "--server", server.url, "--device", f"ox1:masimo-ascii:{path}:room-1",
             "--buffer-dir", str(tmp_path / "buffer"), "--name", "station-b"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "FRONTDESK_GATEWAY_TOKEN": TOKEN})
        wait_for(lambda: len(buffered_ids(tmp_path / "buffer")) >= 3, "readings buffered during the outage")
        server.start()
        wait_for(lambda: len(server.stored_ids()) >= 4, "readings posted after the server came up")
        gateway.send_signal(signal.SIGTERM)
        _, err = gateway.communicate(timeout=15)
        assert gateway.returncode == 0, err
    finally:
        for process in (simulate, gateway):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate()
    received = server.received_ids()
    assert len(received) == len(set(received))
    assert server.gateways == {"station-b"}
    assert {(r["device_id"], r["station"]) for r in server.stored.values()} == {("ox1", "room-1")}
    events = [json.loads(line) for line in err.splitlines()]
    assert {"gateway.started", "gateway.server_unreachable", "gateway.replayed", "gateway.stopped"} <= {
        event["event"] for event in events}
    assert all(set(event) >= {"time", "level", "event"} and "message" not in event for event in events)
    assert buffered_ids(tmp_path / "buffer") == []


@pytest.mark.parametrize("url", ["http://192.0.2.10:8080", "http://frontdesk.clinic.test"])
def test_plain_http_to_another_machine_is_refused_unless_allowed(tmp_path: pathlib.Path, url: str) -> None:
    buffer = DiskBuffer(str(tmp_path))
    with pytest.raises(ValueError, match="plain http: the gateway token would cross the network in clear text"):
        Uplink(url, TOKEN, "station-a", buffer)
    assert Uplink(url, TOKEN, "station-a", buffer, allow_http=True).url == url + "/api/v1/readings"
    for local in ("http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"):
        Uplink(local, TOKEN, "station-a", buffer)
    buffer.close()


def test_https_with_the_clinics_own_ca(tmp_path: pathlib.Path) -> None:
    ca = Authority(tmp_path, "clinic-ca")
    issued = ca.issue("frontdesk", server=True)
    server = ReadingsServer(free_port(), server_context(certfile=str(issued.cert), keyfile=str(issued.key)))
    server.start()
    try:
        public_only = Uplink(server.url, TOKEN, "station-a", DiskBuffer(str(tmp_path / "a")), backoff=FAST)
        public_only.submit(reading(1))
        outcome = public_only.send_once()
        assert outcome.retry and outcome.error is not None and "CERTIFICATE_VERIFY_FAILED" in outcome.error
        trusting = Uplink(server.url, TOKEN, "station-a", DiskBuffer(str(tmp_path / "a")), backoff=FAST,
                          cafile=str(ca.cafile))
        assert trusting.send_once().sent == 1
        assert len(server.stored_ids()) == 1
    finally:
        server.stop()


def test_a_replay_is_logged_with_how_many_the_server_already_held(tmp_path: pathlib.Path, server: ReadingsServer,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    server.script = ["drop"]
    server.start()
    uplink = Uplink(server.url, TOKEN, "station-a", DiskBuffer(str(tmp_path)), backoff=FAST, batch_size=10,
                    timeout=2.0)
    for n in range(6):
        uplink.submit(reading(n))
    with caplog.at_level("INFO", logger="devices.uplink"):
        uplink.drain(threading.Event())
    uplink.buffer.close()
    (replayed,) = [r for r in caplog.records if r.msg == "gateway.replayed"]
    assert (replayed.__dict__["replayed"], replayed.__dict__["duplicates"]) == (6, 6)
    assert len(server.stored_ids()) == 6 and len(server.received_ids()) == 12
