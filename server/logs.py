"""Structured logs: one JSON object per line, built from an allow-list of fields.

Log lines leave the PHI boundary (files, collectors, support tickets), so they
carry ids, codes and counts only. A record's message is a fixed event name;
values go in ``extra`` and only the keys in :data:`ALLOWED_FIELDS` are written,
so a careless ``extra={"name": ...}`` cannot leak a patient's name.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import typing as t

ALLOWED_FIELDS = frozenset({
    "request_id", "method", "endpoint", "status", "duration_ms", "actor_type", "actor_id", "role",
    "visit_id", "patient_id", "appointment_id", "control_id", "message_type", "outcome", "reason",
    "device_id", "driver", "port", "station", "count", "attempts", "address", "host", "port_number",
    "schema", "version", "path",
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
            # The hl7/ and devices/ packages log with %-arguments that are ids, ports and codes only.
            entry["message"] = record.getMessage()
        for key in ALLOWED_FIELDS & record.__dict__.keys():
            if record.__dict__[key] is not None:
                entry[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, sort_keys=True)


def configure(level: int = logging.INFO, stream: t.TextIO | None = None) -> None:
    """Send all logging to ``stream`` (stderr) as JSON lines; safe to call more than once."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("werkzeug", "waitress", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
