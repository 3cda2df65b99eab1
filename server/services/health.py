"""Health of the service for monitoring (``GET /healthz``)."""

from __future__ import annotations

import datetime as dt
import typing as t

from sqlalchemy import Engine
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from server import migrate
from server.services.outbox import Outbox
from server.services.outbox import stalled


class Health:
    """Answers whether the database is reachable and its schema current, and how the outbox is doing.

    The outbox part never changes the status code: a records system that is
    down leaves this service healthy (its messages wait), and a monitor that
    restarted the service for it would only interrupt the clinic. It is there
    so the same probe can raise a separate alarm on ``outbox.stalled``.

    :param backlog_alert: the age of the oldest waiting message past which the outbox is stalled.
    """

    def __init__(self, *, engine: Engine, outbox: Outbox, backlog_alert: dt.timedelta) -> None:
        self.engine = engine
        self.outbox = outbox
        self.backlog_alert = backlog_alert

    def check(self) -> dict[str, t.Any]:
        """A JSON-ready report; ``status`` is ``ok`` only when the schema is at the code's head."""
        head = migrate.head_revision()
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            current = migrate.current_revision(self.engine)
            stats = self.outbox.stats()
        except SQLAlchemyError:
            return {"status": "error", "database": {"status": "unreachable"},
                    "schema": {"current": None, "expected": head}}
        ok = current == head
        counts = t.cast(dict[str, int], stats["counts"])
        age = t.cast(float | None, stats["oldest_pending_age_seconds"])
        return {
            "status": "ok" if ok else "degraded",
            "database": {"status": "ok", "backend": self.engine.dialect.name},
            "schema": {"current": current, "expected": head, "up_to_date": ok},
            "outbox": {"waiting": counts["pending"] + counts["sending"], "held": counts["dead"],
                       "oldest_waiting_seconds": age,
                       "stalled": stalled(stats, self.backlog_alert)},
        }
