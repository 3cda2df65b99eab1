"""Fixtures shared by every test layer.

Database tests run on SQLite always and on PostgreSQL when
``FRONTDESK_TEST_DATABASE_URL`` names a server. Each PostgreSQL test works in a
schema of its own (created, migrated and dropped here), so runs on a shared
server never see each other. Outside CI an unreachable server skips those tests
with the reason; with ``CI=true`` it fails them, so CI cannot go green without
having run them.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import typing as t
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from server import create_app
from server import migrate
from server.config import Config
from server.db import make_engine
from server.services import Services
from server.services.context import FrozenClock

PG_ENV = "FRONTDESK_TEST_DATABASE_URL"
START = dt.datetime(2026, 11, 26, 14, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Database:
    """Where a test's database lives."""

    backend: str
    url: str
    schema: str = ""


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server to test against (see the module docstring)."""
    url = os.environ.get(PG_ENV, "")
    if not url:
        pytest.skip(f"{PG_ENV} is not set; PostgreSQL tests run in CI (.ci/run)")
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        message = f"PostgreSQL at {url} did not answer: {str(exc).strip().splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once keeps the suite fast)."""
    path = tmp_path_factory.mktemp("template") / "frontdesk.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


def new_postgres_schema(url: str) -> str:
    """Create an empty, uniquely named schema and return its name."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    return schema


def drop_postgres_schema(url: str, schema: str) -> None:
    """Drop a schema made by :func:`new_postgres_schema` and all it holds."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> t.Iterator[Database]:
    """A migrated, empty database of each backend."""
    if request.param == "sqlite":
        path = tmp_path / "frontdesk.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield Database("sqlite", f"sqlite:///{path}")
        return
    url = request.getfixturevalue("postgres_url")
    schema = new_postgres_schema(url)
    try:
        engine = make_engine(url, schema=schema)
        migrate.upgrade(engine)
        engine.dispose()
        yield Database("postgresql", url, schema)
    finally:
        drop_postgres_schema(url, schema)


@pytest.fixture
def clock() -> FrozenClock:
    """A clock at a fixed instant that tests move explicitly."""
    return FrozenClock(START)


@pytest.fixture
def config(database: Database, tmp_path: Path) -> Config:
    """Test settings on the test's database."""
    return Config.for_tests(db_url=database.url, db_schema=database.schema, instance_dir=tmp_path / "instance")


@pytest.fixture
def app(config: Config, clock: FrozenClock) -> t.Iterator[Flask]:
    """The application, on the test database and the frozen clock."""
    application = create_app(config, clock=clock)
    yield application
    application.extensions["frontdesk"].live.close()
    application.extensions["frontdesk.engine"].dispose()


@pytest.fixture
def services(app: Flask) -> Services:
    """The app's service layer."""
    return t.cast(Services, app.extensions["frontdesk"])


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser-like test client."""
    return app.test_client()


SECRET_RE = re.compile(r'id="secret-key"[^>]*>([A-Z2-7 ]+)<')
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token(html: str) -> str:
    """The CSRF token of the first form in a page."""
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


class StaffActions:
    """Signing in and out as a person would, through the pages (CSRF included)."""

    def __init__(self, client: FlaskClient, services: Services) -> None:
        self.client = client
        self.services = services

    def create(self, username: str, role: str, password: str = "correct horse battery") -> int:
        return self.services.staff.add_user(username, role, password)

    def sign_in(self, username: str, password: str = "correct horse battery") -> t.Any:
        page = self.client.get("/staff/login")
        return self.client.post("/staff/login", data={
            "csrf_token": csrf_token(page.text), "username": username, "password": password})

    def pass_second_factor(self) -> tuple[str, list[str]]:
        """Set up the second factor as a person would (reading the key off the page); returns key and recovery codes."""
        import pyotp

        page = self.client.get("/staff/second-factor").text
        match = SECRET_RE.search(page)
        assert match, "no key on the set-up page"
        code = pyotp.TOTP(match.group(1).replace(" ", "")).at(self.services.clock.now())
        done = self.client.post("/staff/second-factor", data={"csrf_token": csrf_token(page), "code": code})
        assert done.status_code == 200 and "recovery codes" in done.text, done.text
        return match.group(1).replace(" ", ""), re.findall(r"<li>([0-9a-f]{5}-[0-9a-f]{5})</li>", done.text)

    def sign_out(self) -> t.Any:
        page = self.client.get("/staff/")
        return self.client.post("/staff/logout", data={"csrf_token": csrf_token(page.text)})


@pytest.fixture
def staff(client: FlaskClient, services: Services) -> StaffActions:
    """Sign-in helpers bound to the test client."""
    return StaffActions(client, services)


SENTINEL_PATIENT = {"mrn": "SENT-4711", "family_name": "Tester", "given_name": "Sentinel",
                    "birth_date": dt.date(1961, 7, 23)}


@pytest.fixture
def demo_visit(services: Services) -> int:
    """One patient with an appointment on the test day; returns the visit id.

    The names and numbers are unusual on purpose: tests search logs for them.
    """
    from sqlalchemy import select

    from server.models import Visit
    from server.services.context import SYSTEM
    from server.services.patients import AppointmentRecord
    from server.services.patients import PatientRecord

    with services.uow.begin() as session:
        patient_id = services.patients.upsert_in(
            session, PatientRecord(mrn_authority="TEST", **SENTINEL_PATIENT), actor=SYSTEM)
        appointment_id = services.patients.schedule_in(session, patient_id, AppointmentRecord(
            source="TEST", external_id="APT-1", start_at=START, provider_name="Dr. Who", location="EXAM1"),
            actor=SYSTEM)
        return int(session.scalar(select(Visit.id).where(Visit.appointment_id == appointment_id)))
