"""Core commands: ``serve``, ``demo``, ``db upgrade``, ``users add``, ``kiosks add``, ``gateways add``,
``checkin-code``."""

from __future__ import annotations

import click
from sqlalchemy import Engine

from server import migrate
from server.cli.common import EXIT_CONFIG
from server.cli.common import fail
from server.cli.common import open_database
from server.cli.common import read_password
from server.cli.common import with_config
from server.config import Config
from server.config import ConfigError
from server.config import check_production
from server.config import ensure_secret_key
from server.live import Hub
from server.models import ROLES
from server.services import Services
from server.services import build_services
from server.services.context import SYSTEM
from server.services.staff import AccountError


def register(main: click.Group) -> None:
    """Attach this module's commands to the ``frontdesk`` group."""
    main.add_command(serve)
    main.add_command(demo)
    main.add_command(db)
    main.add_command(users)
    main.add_command(kiosks)
    main.add_command(gateways)
    main.add_command(checkin_code)


@click.command()
@with_config
def serve(config: Config) -> None:
    """Run the service (web, kiosk, API) with the configured settings.

    Refuses to start when the database schema is not at this version's head:
    run ``frontdesk db upgrade`` first (after a backup).
    """
    try:
        check_production(config)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    _check_kiosk_files(config)
    engine = open_database(config)
    require_current_schema(engine)
    from server.interfaces import service_parts
    from server.runtime import run_server

    try:
        run_server(config, background=lambda app: service_parts(app, config))
    except OSError as exc:
        fail(f"cannot start: {exc.strerror or exc} (web {config.web.host}:{config.web.port}, "
             f"HL7 {config.hl7.listen_host}:{config.hl7.listen_port})")


def _check_kiosk_files(config: Config) -> None:
    """Stop with one line naming the file when a questionnaire or consent file cannot be used."""
    from pathlib import Path

    from server.questionnaires import QuestionnaireError
    from server.questionnaires import load_library
    from server.services.consents import ConsentError
    from server.services.consents import load_consents

    kiosk = config.kiosk
    try:
        load_library(Path(kiosk.questionnaires_dir) if kiosk.questionnaires_dir else None)
        load_consents(Path(kiosk.consents_dir) if kiosk.consents_dir else None)
    except QuestionnaireError as exc:
        fail(f"questionnaire {exc}", EXIT_CONFIG)
    except ConsentError as exc:
        fail(f"consent {exc}", EXIT_CONFIG)


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Web port (default: the configured one, 8080).")
@click.option("--hl7-port", type=click.IntRange(1, 65535), default=None,
              help="Our HL7 listener's port (default: the configured one, 2575).")
@click.option("--records-port", type=click.IntRange(1, 65535), default=None,
              help="The reference records system's port (default 2576).")
@with_config
def demo(config: Config, port: int | None, hl7_port: int | None, records_port: int | None) -> None:
    """Show the whole product on an embedded default, with demo data and sign-ins printed.

    Its database lives in instance/demo-PORT/; two demos on different ports run side by side.
    """
    from server.demo import run_demo

    run_demo(config, port=port, hl7_port=hl7_port, records_port=records_port)


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@with_config
def db_upgrade(config: Config) -> None:
    """Bring the database schema to this version (idempotent)."""
    engine = open_database(config, create=True)
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    after = migrate.current_revision(engine)
    click.echo(f"schema {before or 'empty'} -> {after}" if before != after else f"schema already at {after}")


@click.group()
def users() -> None:
    """Staff accounts."""


@users.command("add")
@click.argument("username")
@click.option("--role", required=True, help=f"What the user may do: {', '.join(ROLES)}.")
@click.option("--display-name", default="", help="Name shown on staff pages.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (scripts).")
@with_config
def users_add(config: Config, username: str, role: str, display_name: str, password_stdin: bool) -> None:
    """Create a staff user; the password is prompted for (or read with --password-stdin)."""
    password = read_password(password_stdin)
    services = open_services(config)
    try:
        user_id = services.staff.add_user(username, role, password, display_name=display_name)
    except AccountError as exc:
        fail(str(exc), EXIT_CONFIG)
    click.echo(f"user {username.strip().lower()} created (id {user_id}, role {role})")


@users.command("disable")
@click.argument("username")
@with_config
def users_disable(config: Config, username: str) -> None:
    """Disable a staff user and sign them out everywhere at once."""
    services = open_services(config)
    try:
        ended = services.staff.disable(username)
    except AccountError as exc:
        fail(str(exc), EXIT_CONFIG)
    click.echo(f"user {username.strip().lower()} disabled; {ended} session(s) ended")


@click.group()
def kiosks() -> None:
    """Check-in kiosks."""


@kiosks.command("add")
@click.argument("name")
@click.option("--location", default="", help="Where the kiosk stands (shown to staff).")
@with_config
def kiosks_add(config: Config, name: str, location: str) -> None:
    """Register a kiosk and print its token (shown once; configure it on the kiosk)."""
    _add_device(config, "kiosk", name, location)


@click.group()
def gateways() -> None:
    """Station gateways (``frontdesk gateway`` on a station PC)."""


@gateways.command("add")
@click.argument("name")
@click.option("--station", "stations", multiple=True, required=True,
              help="A station this gateway reads devices for; repeatable. Readings for others are refused.")
@with_config
def gateways_add(config: Config, name: str, stations: tuple[str, ...]) -> None:
    """Register a station gateway and print its token (shown once; pass it as --token)."""
    _add_device(config, "gateway", name, "", stations)


@click.command("checkin-code")
@click.argument("appointment")
@click.option("--source", default=None, help="The scheduler the appointment came from (MSH-3^MSH-4 as stored); "
                                             "needed only when two schedulers share appointment ids.")
@click.option("--qr", "qr_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the code as a QR code (SVG) to this file, for the reminder letter.")
@with_config
def checkin_code(config: Config, appointment: str, source: str | None, qr_path: str | None) -> None:
    """Issue a check-in code for a reminder letter: valid on the appointment's day, for one check-in.

    APPOINTMENT is the scheduler's appointment id (SCH-2). The code is printed
    as the last word of the output; a barcode scanner at the kiosk types it.
    """
    from sqlalchemy import select

    from server.models import Appointment

    services = open_services(config)
    with services.uow.begin() as session:
        sources = session.scalars(select(Appointment.source).where(Appointment.external_id == appointment)).all()
    if source is None and len(set(sources)) > 1:
        fail(f"appointment {appointment!r} exists in several schedules ({', '.join(sorted(set(sources)))}): "
             "give --source", EXIT_CONFIG)
    try:
        code, expires = services.checkin.issue_code(source or (sources[0] if sources else ""), appointment,
                                                    actor=SYSTEM)
    except LookupError:
        fail(f"no appointment {appointment!r}", EXIT_CONFIG)
    if qr_path:
        import segno

        segno.make(code.replace("-", ""), error="m").save(qr_path, kind="svg", scale=8, border=4)
    click.echo(f"check-in code for appointment {appointment}, valid until {expires.isoformat()}: {code}")


def _add_device(config: Config, kind: str, name: str, location: str, stations: tuple[str, ...] = ()) -> None:
    services = open_services(config)
    try:
        token = services.devices.add(kind, name, location=location, stations=stations)
    except AccountError as exc:
        fail(str(exc), EXIT_CONFIG)
    click.echo(f"{kind} {name.strip().lower()} registered; token (shown once): {token}")


def open_services(config: Config, *, live: Hub | None = None) -> Services:
    """The services on the configured database, which must be reachable and current.

    :param live: the live hub for commands that wait on other processes (``bridge``); in-process by default.
    """
    engine = open_database(config)
    require_current_schema(engine)
    return build_services(config, engine, secret=ensure_secret_key(config), live=live)


def require_current_schema(engine: Engine) -> None:
    """Exit with one line unless the schema is at this version's head (``serve`` never migrates by itself)."""
    current, head = migrate.current_revision(engine), migrate.head_revision()
    if current is None:
        fail("no database yet: run 'frontdesk db upgrade'", EXIT_CONFIG)
    if current != head:
        fail(f"database schema is at {current} but this version needs {head}: run 'frontdesk db upgrade' "
             "(back up first)", EXIT_CONFIG)
