"""Two PostgreSQL roles: the owner migrates, the runtime role cannot touch the audit trail's history."""

from __future__ import annotations

import typing as t
import uuid

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from server import migrate
from server.config import Config
from server.db import make_engine
from server.services import build_services
from server.services.context import SystemClock
from tests.conftest import drop_postgres_schema
from tests.conftest import new_postgres_schema

pytestmark = pytest.mark.postgres


@pytest.fixture
def runtime(postgres_url: str, tmp_path: t.Any) -> t.Iterator[tuple[str, str]]:
    """A migrated schema owned by the test's login, and a runtime role granted by ``grant_runtime``."""
    schema = new_postgres_schema(postgres_url)
    role = f"frontdesk_rt_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        owner = make_engine(postgres_url, schema=schema)
        migrate.upgrade(owner)
        migrate.grant_runtime(owner, role, schema)
        owner.dispose()
        yield schema, make_url(postgres_url).set(username=role).render_as_string(hide_password=False)
    finally:
        drop_postgres_schema(postgres_url, schema)
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            connection.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_service_runs_as_the_runtime_role(runtime: tuple[str, str], tmp_path: t.Any) -> None:
    schema, url = runtime
    config = Config.for_tests(db_url=url, db_schema=schema, instance_dir=tmp_path)
    engine = make_engine(url, schema=schema)
    services = build_services(config, engine, secret="s" * 64, clock=SystemClock())
    services.staff.add_user("alice", "front_desk", "correct horse battery")
    services.staff.sign_in("alice", "correct horse battery", "10.0.0.1")
    assert services.audit_verifier.verify().finding is None
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


@pytest.mark.parametrize("statement", [
    "DELETE FROM audit_event",
    "UPDATE audit_event SET outcome = 'success'",
    "TRUNCATE audit_event",
    "ALTER TABLE audit_event DISABLE TRIGGER ALL",
    "ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only",
    "DROP TRIGGER audit_event_append_only ON audit_event",
    "DROP TABLE audit_event",
    "UPDATE alembic_version SET version_num = '0001'",
])
def test_the_runtime_role_cannot_rewrite_the_audit_trail(runtime: tuple[str, str], statement: str) -> None:
    schema, url = runtime
    with psycopg.connect(url, options=f"-c search_path={schema}") as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(statement)


def test_the_runtime_role_may_insert_and_read_audit_rows(runtime: tuple[str, str]) -> None:
    schema, url = runtime
    with psycopg.connect(url, options=f"-c search_path={schema}") as connection:
        connection.execute("INSERT INTO audit_event (at, actor_type, actor_id, action, outcome, resource_type, "
                           "resource_id, address, correlation_id, detail) "
                           "VALUES (now(), 'system', 't', 'probe', 'success', '', '', '', '', '')")
        assert connection.execute("SELECT count(*) FROM audit_event").fetchone() == (1,)
