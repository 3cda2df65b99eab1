"""Core commands: ``serve``, ``demo``, ``db upgrade``, ``users add``, ``kiosks add``, ``gateways add``."""

from __future__ import annotations

import click

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
from server.models import ROLES
from server.services import Services
from server.services import build_services
from server.services.staff import AccountError


def register(main: click.Group) -> None:
    """Attach this module's commands to the ``frontdesk`` group."""
    main.add_command(serve)
    main.add_command(demo)
    main.add_command(db)
    main.add_command(users)
    main.add_command(kiosks)
    main.add_command(gateways)


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
    engine = open_database(config)
    current, head = migrate.current_revision(engine), migrate.head_revision()
    if current != head:
        fail(f"database schema is at {current or 'nothing (empty database)'} but this version needs {head}: "
             "run 'frontdesk db upgrade'", EXIT_CONFIG)
    from server.interfaces import service_parts
    from server.runtime import run_server

    try:
        run_server(config, background=lambda app: service_parts(app, config))
    except OSError as exc:
        fail(f"cannot start: {exc.strerror or exc} (web {config.web.host}:{config.web.port}, "
             f"HL7 {config.hl7.listen_host}:{config.hl7.listen_port})")


@click.command()
@click.option("--port", type=int, default=None, help="Web port (default: the configured one, 8080).")
@with_config
def demo(config: Config, port: int | None) -> None:
    """Show the whole product on an embedded default, with demo data and sign-ins printed."""
    from server.demo import run_demo

    run_demo(config, port=port)


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@with_config
def db_upgrade(config: Config) -> None:
    """Bring the database schema to this version (idempotent)."""
    engine = open_database(config)
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
@with_config
def gateways_add(config: Config, name: str) -> None:
    """Register a station gateway and print its token (shown once; pass it as --token)."""
    _add_device(config, "gateway", name, "")


def _add_device(config: Config, kind: str, name: str, location: str) -> None:
    services = open_services(config)
    try:
        token = services.devices.add(kind, name, location=location)
    except AccountError as exc:
        fail(str(exc), EXIT_CONFIG)
    click.echo(f"{kind} {name.strip().lower()} registered; token (shown once): {token}")


def open_services(config: Config) -> Services:
    """The services on the configured database, which must be reachable and current."""
    engine = open_database(config)
    if migrate.current_revision(engine) != migrate.head_revision():
        fail("database schema is not current: run 'frontdesk db upgrade'", EXIT_CONFIG)
    return build_services(config, engine, secret=ensure_secret_key(config))
