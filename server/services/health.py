"""Health of the service for monitoring (``GET /healthz``)."""

from __future__ import annotations

import typing as t

from sqlalchemy import Engine
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from server import migrate


class Health:
    """Answers whether the database is reachable and its schema current."""

    def __init__(self, *, engine: Engine) -> None:
        self.engine = engine

    def check(self) -> dict[str, t.Any]:
        """A JSON-ready report; ``status`` is ``ok`` only when the schema is at the code's head."""
        head = migrate.head_revision()
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            current = migrate.current_revision(self.engine)
        except SQLAlchemyError:
            return {"status": "error", "database": {"status": "unreachable"},
                    "schema": {"current": None, "expected": head}}
        ok = current == head
        return {
            "status": "ok" if ok else "degraded",
            "database": {"status": "ok", "backend": self.engine.dialect.name},
            "schema": {"current": current, "expected": head, "up_to_date": ok},
        }
