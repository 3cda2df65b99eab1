"""Security administration: staff passwords and lock-outs, device tokens, the audit chain, retention.

The logic lives in services (``StaffAccounts``, ``DevicePrincipals``,
``AuditVerifier``, ``AuditReports``) so the administration pages can call the same functions.
Every change is audited as done by ``system`` (an operator at the console).
"""

from __future__ import annotations

import csv
import datetime as dt
import sys

import click

from server import migrate
from server.cli.common import EXIT_CONFIG
from server.cli.common import fail
from server.cli.common import open_database
from server.cli.common import read_password
from server.cli.common import with_config
from server.cli.core import open_services
from server.config import Config
from server.services.audit_report import ReportError
from server.services.context import SYSTEM
from server.services.staff import AccountError


def register(main: click.Group) -> None:
    """Attach these commands to the ``frontdesk`` group and its ``users``, ``kiosks`` and ``gateways`` groups."""
    users = main.commands["users"]
    assert isinstance(users, click.Group)
    for command in (users_list, users_passwd, users_unlock, users_reset_mfa, users_enable):
        users.add_command(command)
    for kind in ("kiosk", "gateway"):
        group = main.commands[f"{kind}s"]
        assert isinstance(group, click.Group)
        group.add_command(_device_list(kind))
        group.add_command(_device_revoke(kind))
    main.add_command(audit)
    main.add_command(purge)
    db = main.commands["db"]
    assert isinstance(db, click.Group)
    db.add_command(db_grant)


def _when(moment: dt.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


@click.command("list")
@with_config
def users_list(config: Config) -> None:
    """List staff accounts: role, state, second factor and last sign-in."""
    rows = open_services(config).staff.list_users()
    click.echo(f"{'USERNAME':<24} {'ROLE':<11} {'STATE':<9} {'2FA':<4} LAST SIGN-IN")
    for row in rows:
        click.echo(f"{row.username:<24} {row.role:<11} {'active' if row.active else 'disabled':<9} "
                   f"{'yes' if row.second_factor else 'no':<4} {_when(row.last_sign_in)}")


@click.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input (scripts).")
@with_config
def users_passwd(config: Config, username: str, password_stdin: bool) -> None:
    """Set a staff user's password; their open sessions end."""
    password = read_password(password_stdin, "New password")
    try:
        open_services(config).staff.set_password(username, password)
    except AccountError as exc:
        fail(str(exc), EXIT_CONFIG)
    click.echo(f"password of {username.strip().lower()} changed; their sessions ended")


@click.command("enable")
@click.argument("username")
@with_config
def users_enable(config: Config, username: str) -> None:
    """Let a disabled staff user sign in again (as Administration's "Enable")."""
    try:
        open_services(config).staff.enable(username)
    except AccountError as exc:
        fail(str(exc), EXIT_CONFIG)
    click.echo(f"user {username.strip().lower()} enabled")


@click.command("unlock")
@click.argument("username", required=False)
@click.option("--address", default="", help="Instead: end the slow-down of sign-ins from this address.")
@with_config
def users_unlock(config: Config, username: str | None, address: str) -> None:
    """Let a user sign in again at once after repeated failures (from every address), and clear the alert."""
    services = open_services(config)
    if address:
        services.staff.unlock_address(address)
        click.echo(f"sign-ins from {address} are no longer slowed")
        return
    if not username:
        fail("give a USERNAME, or --address ADDRESS", EXIT_CONFIG)
    try:
        forgotten = services.staff.unlock(username)
    except AccountError as exc:
        fail(str(exc), EXIT_CONFIG)
    click.echo(f"user {username.strip().lower()} unlocked ({forgotten} address(es) had failures)")


@click.command("reset-mfa")
@click.argument("username")
@with_config
def users_reset_mfa(config: Config, username: str) -> None:
    """Remove a user's second factor (a lost phone) and end their sessions; they set it up again at sign-in."""
    try:
        open_services(config).mfa.reset(username)
    except AccountError as exc:
        fail(str(exc), EXIT_CONFIG)
    click.echo(f"second factor of {username.strip().lower()} removed; their sessions ended")


def _device_list(kind: str) -> click.Command:
    @click.command("list", help=f"List registered {kind}s, revoked ones included (tokens are never shown).")
    @with_config
    def command(config: Config) -> None:
        rows = open_services(config).devices.list(kind)
        click.echo(f"{'NAME':<24} {'STATE':<8} {'REGISTERED':<21} {'LAST SEEN':<21} LOCATION")
        for row in rows:
            state = "revoked" if row.revoked_at else "active"
            click.echo(f"{row.name:<24} {state:<8} {_when(row.created_at):<21} {_when(row.last_seen_at):<21} "
                       f"{row.location}")

    return command


def _device_revoke(kind: str) -> click.Command:
    @click.command("revoke", help=f"Revoke a {kind}'s token: its next request is refused (401).")
    @click.argument("name")
    @with_config
    def command(config: Config, name: str) -> None:
        if not open_services(config).devices.revoke(kind, name):
            fail(f"no active {kind} called {name.strip().lower()!r}", EXIT_CONFIG)
        click.echo(f"{kind} {name.strip().lower()} revoked")

    return command


@click.group()
def audit() -> None:
    """The audit trail."""


@audit.command("verify")
@with_config
def audit_verify(config: Config) -> None:
    """Re-compute the audit hash chain; report the first row altered, deleted or reordered (exit status 1)."""
    result = open_services(config).audit_verifier.verify()
    if result.finding is not None:
        fail(f"audit trail broken: {result.finding} ({result.checked} rows before it are intact)")
    click.echo(f"audit trail intact: {result.checked} rows; head {result.head_seq} {result.head_hash}")


@audit.command("report")
@click.option("--mrn", required=True, help="The patient's medical record number.")
@click.option("--from", "start", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day, YYYY-MM-DD.")
@click.option("--to", "end", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day, YYYY-MM-DD.")
@with_config
def audit_report(config: Config, mrn: str, start: dt.datetime, end: dt.datetime) -> None:
    """Who viewed or changed a patient's data between two days (inclusive, clinic time), as CSV on stdout.

    Running the report is itself audited, as done by ``system``.
    """
    try:
        report = open_services(config).audit_reports.accesses(mrn, start.date(), end.date(), actor=SYSTEM)
    except ReportError as exc:
        fail(str(exc), EXIT_CONFIG)
    if not report.patients:
        click.echo(f"no patient with MRN {report.mrn}", err=True)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["at", "actor_type", "actor_id", "actor_name", "action", "description", "outcome", "resource",
                  "address"])
    for row in report.rows:
        out.writerow([row.at.isoformat(), row.actor_type, row.actor_id, row.actor_name, row.action,
                      row.description, row.outcome, row.resource, row.address])


@click.command("grant")
@click.argument("role")
@with_config
def db_grant(config: Config, role: str) -> None:
    """PostgreSQL: give the runtime ROLE row access only (SELECT and INSERT on audit_event). Run as the owner."""
    if not config.database_url.startswith("postgresql"):
        fail("db grant: only for PostgreSQL (SQLite has no roles; protect the file instead)", EXIT_CONFIG)
    try:
        migrate.grant_runtime(open_database(config), role, config.database.schema or "public")
    except ValueError as exc:
        fail(str(exc), EXIT_CONFIG)
    click.echo(f"role {role}: rows of every table; audit_event SELECT and INSERT only")


@click.command()
@with_config
def purge(config: Config) -> None:
    """Delete HL7 messages older than [hl7] keep_days: raw inbound, and outbound once delivered (never others)."""
    if not config.hl7.keep_days:
        fail("hl7.keep_days is 0 (keep every message): set it to the days to keep", EXIT_CONFIG)
    purged = open_services(config).retention.purge()
    click.echo(f"deleted {purged.inbound} inbound and {purged.outbound} delivered outbound message(s) "
               f"older than {config.hl7.keep_days} days")
