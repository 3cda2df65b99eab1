"""Schema migrations (Alembic) driven from code, for the CLI, ``serve`` and tests.

``serve`` never migrates on its own: it compares the database's revision with
the code's head and refuses to start when they differ, so an upgrade is always
a deliberate step (``frontdesk db upgrade``) that an operator can back up for.
``demo`` upgrades its own throwaway database.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The revision the code expects."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, ``None`` for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` in one transaction."""
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def autogenerate(engine: Engine, message: str) -> None:
    """Write a new revision file from the difference between models and database (development)."""
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)


def grant_runtime(engine: Engine, role: str, schema: str = "public") -> None:
    """Give the runtime database role what ``serve`` needs and no more (PostgreSQL; run as the owner).

    The owner role runs migrations and owns every table; the runtime role
    only reads and writes rows. On ``audit_event`` it may only SELECT and
    INSERT, and since it owns nothing it cannot ALTER a table, disable a
    trigger or TRUNCATE: whoever takes over the running service still cannot
    rewrite the audit trail. Re-run after every ``db upgrade`` (new tables).

    :raises ValueError: for a role or schema name that is not a plain identifier.
    """
    for name in (role, schema):
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a plain SQL identifier: {name!r}")
    statements = [
        f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"',
        f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM "{role}"',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"',
        f'REVOKE INSERT, UPDATE, DELETE ON "{schema}".alembic_version FROM "{role}"',
        f'REVOKE UPDATE, DELETE ON "{schema}".audit_event FROM "{role}"',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"',
    ]
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
