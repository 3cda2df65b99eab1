"""Migrations and models agree, and the audit trail is append-only, on each backend."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from server import migrate
from server.db import make_engine
from server.models import Base
from tests.conftest import Database


def test_autogenerate_finds_no_difference(database: Database) -> None:
    engine = make_engine(database.url, schema=database.schema or None)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


@pytest.mark.parametrize("statement", ["UPDATE audit_event SET action = 'x'", "DELETE FROM audit_event"])
def test_audit_rows_cannot_be_changed(database: Database, statement: str) -> None:
    engine = make_engine(database.url, schema=database.schema or None)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO audit_event (at, actor_type, actor_id, action, outcome, resource_type, resource_id, "
            "address, correlation_id, detail) VALUES (CURRENT_TIMESTAMP, 'system', 't', 'test', 'success', "
            "'', '', '', '', '')"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(statement))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT action FROM audit_event")).scalars().all() == ["test"]
    engine.dispose()


def test_upgrade_is_idempotent(database: Database) -> None:
    engine = make_engine(database.url, schema=database.schema or None)
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()
