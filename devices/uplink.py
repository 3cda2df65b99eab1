"""Deliver a station's readings to the server over HTTP, surviving outages on local disk.

Every reading is written to a disk buffer (stdlib ``sqlite3``, ``synchronous=FULL``
so each append is fsynced) *before* any attempt to send it, and gets its
``reading_id`` at that moment. A sender thread posts the oldest readings in
batches to ``POST {server}/api/v1/readings`` and deletes them only after a 200.
So a server outage, a network cut or a gateway restart loses nothing; replays
arrive in the original order, and because the id never changes the server can
drop duplicates (a batch the server stored but whose answer was lost is sent
again).

Retry classification:

* 200 → delivered.
* 401 / 403 → the token is wrong; logged once as an error, readings stay
  buffered, retried with backoff (an operator fixes the token, nothing is lost).
* any other status, a timeout or a connection error → retried with capped
  exponential backoff. A 4xx other than auth is logged with the server's answer:
  we keep the data rather than guess it is disposable.

The bearer token travels with every request, so the server is reached over
HTTPS, verified against the public trust store or the CA file given
(``cafile``, for a clinic's own CA). Plain ``http://`` is refused except to
this machine (loopback) unless explicitly allowed (``allow_http``).

Replays are visible: after a start with readings still buffered, or after an
outage, the gateway logs ``gateway.replayed`` once the backlog is delivered,
with how many readings it sent and how many of them the server already held
(its answer's ``duplicates``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import random
import sqlite3
import ssl
import threading
import typing as t
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass

from devices.reading import Reading
from devices.reading import measurement_fields
from devices.status import DeviceStatus
from devices.transport import Backoff

log = logging.getLogger(__name__)

READINGS_PATH = "/api/v1/readings"
STATUS_PATH = "/api/v1/devices/status"

#: Readings per POST: large enough to drain a long outage quickly, small enough for one request.
BATCH_SIZE = 200

#: Upper bound of the wait between attempts while the server is unreachable.
UPLINK_BACKOFF = Backoff(base=0.5, cap=30.0, jitter=0.5)


def reading_to_json(reading: Reading, reading_id: str) -> dict[str, t.Any]:
    """The wire form of one reading (the server's JSON API contract)."""
    return {
        "reading_id": reading_id,
        "device_id": reading.device_id,
        "station": reading.station,
        **measurement_fields(reading),
        "host_time": reading.host_time.astimezone(dt.UTC).isoformat(),
    }


def status_to_json(status: DeviceStatus, station: str) -> dict[str, t.Any]:
    """The wire form of one device's status (the server's ``/api/v1/devices/status`` contract)."""
    return {
        "device_id": status.device_id,
        "driver": status.driver,
        "port": status.port,
        "station": station,
        "connected": status.connected,
        "stale": status.stale,
        "last_frame_time": None if status.last_frame_time is None else status.last_frame_time.isoformat(),
        "frames_accepted": status.frames_accepted,
        "frames_rejected": status.frames_rejected,
        "readings": status.readings,
        "unrecognised": status.unrecognised,
        "reconnects": status.reconnects,
        "last_error": status.last_error,
        "flags": sorted(status.flags),
    }


class DiskBuffer:
    """An ordered, durable queue of JSON readings in one SQLite file.

    Readings are removed only by :meth:`remove_through`, after the server
    acknowledged them, so the file holds exactly what is not yet delivered.
    """

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "readings.sqlite3")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS pending ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " reading_id TEXT NOT NULL UNIQUE,"
            " body TEXT NOT NULL)"
        )

    def append(self, body: dict[str, t.Any]) -> None:
        """Store one reading durably; returns after the write reached the disk."""
        with self._lock:
            self._db.execute("INSERT INTO pending (reading_id, body) VALUES (?, ?)",
                             (body["reading_id"], json.dumps(body, separators=(",", ":"))))

    def peek(self, limit: int) -> list[tuple[int, dict[str, t.Any]]]:
        """The oldest ``limit`` readings with their sequence numbers, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT seq, body FROM pending ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [(seq, json.loads(body)) for seq, body in rows]

    def remove_through(self, seq: int) -> None:
        """Forget every reading up to and including ``seq`` (they were delivered)."""
        with self._lock:
            self._db.execute("DELETE FROM pending WHERE seq <= ?", (seq,))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt did: ``sent`` readings delivered, or why not."""

    sent: int
    retry: bool
    error: str | None = None
    duplicates: int = 0


def _loopback(host: str) -> bool:
    """True for this machine: ``localhost`` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _duplicates(answer: bytes) -> int:
    """How many readings of a batch the server already held (``duplicates`` in its answer; 0 if absent)."""
    try:
        value = json.loads(answer).get("duplicates", 0)
    except (ValueError, AttributeError):
        return 0
    return value if type(value) is int and value >= 0 else 0


class Replay:
    """Counts a backlog's delivery (buffered at start, or piled up in an outage) and logs it once, when done."""

    def __init__(self, buffered: int) -> None:
        self.active = buffered > 0
        self.replayed = 0
        self.duplicates = 0

    def outage(self) -> None:
        self.active = True

    def sent(self, count: int, duplicates: int) -> None:
        if self.active:
            self.replayed += count
            self.duplicates += duplicates

    def done(self) -> None:
        """The buffer is empty: log what the replay delivered, if there was one."""
        if self.active and self.replayed:
            log.info("gateway.replayed", extra={"replayed": self.replayed, "duplicates": self.duplicates})
        self.active, self.replayed, self.duplicates = False, 0, 0


class Uplink:
    """Buffer readings and post them to the server from a background thread.

    :param server: base URL, e.g. ``https://frontdesk.clinic.example``.
    :param token: the gateway's API token (sent as ``Authorization: Bearer``).
    :param gateway: this gateway's name, sent with every batch.
    :param buffer: the durable queue; survives restarts, so a new ``Uplink`` on
        the same directory replays what the last one did not deliver.
    :param cafile: PEM file of the CA(s) that may sign the server's certificate, instead of the public ones.
    :param allow_http: permit plain ``http://`` to a host other than this machine (the token travels in clear).
    :raises ValueError: for a URL that is not http(s), or plain http to another host without ``allow_http``.
    """

    def __init__(self, server: str, token: str, gateway: str, buffer: DiskBuffer, *,
                 batch_size: int = BATCH_SIZE, backoff: Backoff = UPLINK_BACKOFF, timeout: float = 10.0,
                 ids: t.Callable[[], str] = lambda: uuid.uuid4().hex,
                 rand: t.Callable[[], float] = random.random, cafile: str | None = None,
                 allow_http: bool = False) -> None:
        parts = urllib.parse.urlsplit(server)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"server URL {server!r} must start with https:// (or http:// on this machine)")
        if parts.scheme == "http" and not allow_http and not _loopback(parts.hostname or ""):
            raise ValueError(f"server URL {server!r} is plain http: the gateway token would cross the network "
                             "in clear text; use https://, or allow it explicitly (--allow-http)")
        self._context = ssl.create_default_context(cafile=cafile) if parts.scheme == "https" else None
        self.url = server.rstrip("/") + READINGS_PATH
        self.status_url = server.rstrip("/") + STATUS_PATH
        self.gateway = gateway
        self.buffer = buffer
        self._token = token
        self._batch_size = batch_size
        self._backoff = backoff
        self._timeout = timeout
        self._ids = ids
        self._rand = rand
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._auth_reported = False
        self._replay = Replay(len(buffer))

    def submit(self, reading: Reading) -> None:
        """Buffer ``reading`` durably with a fresh id and wake the sender; safe from any thread."""
        self.buffer.append(reading_to_json(reading, self._ids()))
        self._wake.set()

    def send_once(self) -> Outcome:
        """Post the oldest batch once and drop it from the buffer if the server took it."""
        pending = self.buffer.peek(self._batch_size)
        if not pending:
            return Outcome(sent=0, retry=False)
        body = json.dumps({"gateway": self.gateway, "readings": [reading for _, reading in pending]})
        request = urllib.request.Request(self.url, data=body.encode(), method="POST", headers={
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        })
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._context) as response:
                answer = response.read()
        except urllib.error.HTTPError as exc:
            return self._refused(exc)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return Outcome(sent=0, retry=True, error=f"server {self.url} unreachable: {reason}")
        self.buffer.remove_through(pending[-1][0])
        self._auth_reported = False
        return Outcome(sent=len(pending), retry=False, duplicates=_duplicates(answer))

    def post_status(self, devices: t.Sequence[dict[str, t.Any]]) -> str | None:
        """Send the devices' status (:func:`status_to_json` items) once; returns why it failed, or ``None``.

        Status is not buffered: only the latest matters, and the next report
        (every few seconds) replaces a lost one.
        """
        body = json.dumps({"gateway": self.gateway, "devices": list(devices)}).encode()
        request = urllib.request.Request(self.status_url, data=body, method="POST", headers={
            "Authorization": f"Bearer {self._token}", "Content-Type": "application/json",
            "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._context) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            return f"server {self.status_url} answered HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return f"server {self.status_url} unreachable: {getattr(exc, 'reason', exc)}"
        return None

    def _refused(self, exc: urllib.error.HTTPError) -> Outcome:
        detail = exc.read(500).decode("utf-8", "replace").strip()
        if exc.code in (401, 403):
            message = f"server {self.url} refused the gateway token (HTTP {exc.code}); readings stay buffered"
            if not self._auth_reported:
                log.error("gateway.token_refused", extra={"status": exc.code, "path": self.url})
                self._auth_reported = True
            return Outcome(sent=0, retry=True, error=message)
        return Outcome(sent=0, retry=True, error=f"server {self.url} answered HTTP {exc.code}: {detail}")

    def drain(self, stop: threading.Event) -> None:
        """Send until the buffer is empty or ``stop`` is set, backing off while the server fails."""
        while not stop.is_set():
            outcome = self.send_once()
            if outcome.error is not None:
                self._failures += 1
                self._replay.outage()
                if self._failures == 1 or self._failures % 10 == 0:
                    log.log(logging.WARNING if self._failures < 10 else logging.ERROR, "gateway.server_unreachable",
                            extra={"reason": outcome.error, "count": len(self.buffer), "attempts": self._failures})
                stop.wait(self._backoff.delay(self._failures, self._rand))
                continue
            if self._failures:
                log.info("gateway.server_recovered", extra={"attempts": self._failures})
            self._failures = 0
            self._replay.sent(outcome.sent, outcome.duplicates)
            if outcome.sent == 0:
                self._replay.done()
                return

    def flush(self) -> int:
        """Send what is buffered without waiting between attempts; stop at the first failure.

        Used on shutdown: deliver what can be delivered now, leave the rest on disk.
        :returns: the number of readings still buffered.
        """
        while self.send_once().sent:
            pass
        return len(self.buffer)

    def run(self) -> None:
        """Sender loop: drain, then sleep until a new reading arrives (or a periodic re-check)."""
        while not self._stop.is_set():
            self._wake.clear()
            self.drain(self._stop)
            self._wake.wait(timeout=5.0)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, daemon=True, name="uplink")
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sending; whatever is still buffered stays on disk for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
