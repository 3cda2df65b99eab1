"""``frontdesk demo``: the whole product on an embedded default, with made-up data.

Everything runs in one process against a fresh SQLite database under
``instance/demo/``: staff sign-ins are created with random passwords and
printed, today's demo schedule is loaded, and the web server starts. Nothing
here is used by ``serve``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import shutil

import click

from server import migrate
from server.config import Config
from server.config import DatabaseConfig
from server.config import ensure_secret_key
from server.db import make_engine
from server.runtime import run_server
from server.services import Services
from server.services import build_services
from server.services.context import SYSTEM
from server.services.patients import AppointmentRecord
from server.services.patients import InsuranceRecord
from server.services.patients import PatientRecord

DEMO_USERS = (("frontdesk", "front_desk"), ("assistant", "assistant"), ("admin", "admin"))

# Made-up people; any likeness to a real patient is accidental.
DEMO_PATIENTS = (
    ("D1001", "Rivera", "Ana", dt.date(1984, 3, 9), "F", "es", "Dr. Okafor", "EXAM1", 0),
    ("D1002", "Chen", "Wei", dt.date(1971, 11, 23), "M", "en", "Dr. Okafor", "EXAM2", 20),
    ("D1003", "O'Brien", "Siobhan", dt.date(1990, 6, 2), "F", "en", "Dr. Haddad", "EXAM3", 40),
    ("D1004", "Müller", "Zoë", dt.date(1980, 2, 14), "F", "en", "Dr. Haddad", "EXAM1", 60),
    ("D1005", "Johnson", "Marcus", dt.date(1958, 8, 30), "M", "en", "Dr. Okafor", "EXAM2", 80),
)


def run_demo(config: Config, *, port: int | None) -> None:
    """Reset the demo database, load demo data, print how to get in, and serve."""
    demo_dir = config.instance_dir / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    demo_dir.mkdir(parents=True)
    config = dataclasses.replace(
        config,
        instance_dir=demo_dir,
        database=DatabaseConfig(url=f"sqlite:///{demo_dir / 'frontdesk.db'}"),
        web=dataclasses.replace(config.web, port=port or config.web.port),
    )
    engine = make_engine(config.database_url)
    migrate.upgrade(engine)
    services = build_services(config, engine, secret=ensure_secret_key(config))
    logins = _create_users(services)
    _load_schedule(services)
    engine.dispose()

    def welcome(base: str) -> None:
        click.echo(f"\nFrontdesk demo is running at {base}/staff/  (health: {base}/healthz)")
        click.echo("Demo staff sign-ins (new every run):")
        for username, role, password in logins:
            click.echo(f"  {username:<10} {password}   ({role.replace('_', ' ')})")
        click.echo("Stop with Ctrl+C.\n")

    run_server(config, ready=welcome)


def _create_users(services: Services) -> list[tuple[str, str, str]]:
    logins = []
    for username, role in DEMO_USERS:
        password = "-".join(secrets.token_hex(3) for _ in range(3))
        services.staff.add_user(username, role, password)
        logins.append((username, role, password))
    return logins


def _load_schedule(services: Services) -> None:
    now = services.clock.now()
    first = now.replace(minute=0, second=0, microsecond=0)
    with services.uow.begin() as session:
        for mrn, family, given, born, sex, language, provider, room, offset in DEMO_PATIENTS:
            patient_id = services.patients.upsert_in(session, PatientRecord(
                mrn=mrn, mrn_authority="DEMO", family_name=family, given_name=given, birth_date=born, sex=sex,
                preferred_language=language, address_line1="1 Demo Street", city="Springfield", state="IL",
                postal_code="62701", country="USA", phone="555-0100",
                insurance=(InsuranceRecord(payer_name="Demo Health Plan", member_id=f"M{mrn}"),),
            ), actor=SYSTEM)
            services.patients.schedule_in(session, patient_id, AppointmentRecord(
                source="DEMO", external_id=f"A{mrn}", start_at=first + dt.timedelta(minutes=offset),
                provider_name=provider, location=room, appointment_type="Follow-up",
            ), actor=SYSTEM)
