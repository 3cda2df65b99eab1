"""Structured logs: one JSON object per line, built from an allow-list of fields.

Log lines leave the PHI boundary (files, collectors, support tickets), so they
carry ids, codes and counts only. A record's message is a fixed event name;
values go in ``extra`` and only the keys in :data:`ALLOWED_FIELDS` are written,
so a careless ``extra={"name": ...}`` cannot leak a patient's name.

Writing a line never holds up the work that logs it. Every request logs a
line, and a write to stderr blocks once whoever reads it stops (a terminal
paused with Ctrl-S, a pipe into a program that no longer reads): with a plain
stream handler the request thread would wait inside the handler's lock and
every other thread that logs behind it, so the whole service would stop
answering. Lines are formatted in the caller's thread and written by one
writer thread instead; when the reader is gone for long, lines beyond
:data:`QUEUE_LIMIT` are dropped and their number is logged (``log.dropped``)
once the reader is back.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import sys
import threading
import time
import typing as t

ALLOWED_FIELDS = frozenset({
    "request_id", "method", "endpoint", "status", "duration_ms", "actor_type", "actor_id", "role",
    "visit_id", "patient_id", "appointment_id", "control_id", "message_type", "outcome", "reason",
    "device_id", "driver", "port", "station", "count", "attempts", "address", "host", "port_number",
    "schema", "version", "path", "peer", "delay_seconds", "age_seconds", "frames", "readings", "rejected",
    "accepted", "duplicates", "replayed", "error", "state", "direction", "unrecognised", "metric",
})


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with the allow-listed extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, t.Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.msg if isinstance(record.msg, str) else type(record.msg).__name__,
        }
        if record.args:
            # Our own events carry their values as fields; libraries (the WSGI server) still log with arguments.
            entry["message"] = record.getMessage()
        for key in ALLOWED_FIELDS & record.__dict__.keys():
            if record.__dict__[key] is not None:
                entry[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, sort_keys=True)


QUEUE_LIMIT = 10_000
"""Lines waiting for a reader that stopped reading (a few MB at most); later ones are dropped and counted."""

FLUSH_SECONDS = 2.0
"""How long a flush (at exit) waits for waiting lines to be written to a reader that may never read again."""


class BackgroundHandler(logging.Handler):
    """Formats in the caller's thread, writes on its own thread (see the module docstring for why)."""

    def __init__(self, stream: t.TextIO, limit: int = QUEUE_LIMIT) -> None:
        super().__init__()
        self.stream = stream
        self._lines: queue.Queue[str] = queue.Queue(limit)
        self._dropped = 0
        self._dropped_lock = threading.Lock()
        threading.Thread(target=self._write, name="log-writer", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        try:
            self._lines.put_nowait(line)
        except queue.Full:
            with self._dropped_lock:
                self._dropped += 1

    def flush(self) -> None:
        """Wait, for at most :data:`FLUSH_SECONDS`, until every waiting line is written (the last lines at exit)."""
        deadline = time.monotonic() + FLUSH_SECONDS
        while self._lines.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _write(self) -> None:
        while True:
            line = self._lines.get()
            try:
                self.stream.write(line + "\n")
                if self._lines.empty():
                    # Lines were dropped while the queue was full, so after every line that waited in it.
                    with self._dropped_lock:
                        dropped, self._dropped = self._dropped, 0
                    if dropped:
                        self.stream.write(self.format(logging.makeLogRecord({
                            "name": __name__, "levelno": logging.WARNING, "levelname": "WARNING",
                            "msg": "log.dropped", "count": dropped})) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # stderr is closed: there is no one left to tell
            finally:
                self._lines.task_done()


def configure(level: int = logging.INFO, stream: t.TextIO | None = None) -> None:
    """Send all logging as JSON lines to stderr through a :class:`BackgroundHandler`, or straight to ``stream``
    (tests read it back at once); safe to call more than once."""
    handler = logging.StreamHandler(stream) if stream is not None else BackgroundHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("werkzeug", "waitress", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
