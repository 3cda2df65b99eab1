"""Security administration from the console: passwords, unlocks, device tokens, and audit verification."""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
from pathlib import Path

import pytest

from server.config import ensure_secret_key
from server.config import load_config
from server.db import make_engine
from server.services import build_services
from server.services.context import SYSTEM
from server.services.context import Actor
from server.services.patients import PatientRecord
from server.services.staff import SignInFailed
from tests.procs import clean_env
from tests.procs import run

PASSWORD = "correct horse battery"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = clean_env(tmp_path / "instance")
    assert run(["db", "upgrade"], env).returncode == 0
    added = run(["users", "add", "alice", "--role", "front_desk", "--password-stdin"], env, PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    return env


def database(env: dict[str, str]) -> Path:
    return Path(env["FRONTDESK_INSTANCE_DIR"]) / "frontdesk.db"


def in_process(env: dict[str, str]):  # type: ignore[no-untyped-def]
    """The same services the CLI uses, on the CLI's database and secret (for what only a browser would do)."""
    config = load_config(env={"FRONTDESK_INSTANCE_DIR": env["FRONTDESK_INSTANCE_DIR"]})
    return build_services(config, make_engine(config.database_url), secret=ensure_secret_key(config))


def test_users_list_passwd_and_unlock(env: dict[str, str]) -> None:
    listing = run(["users", "list"], env)
    assert listing.returncode == 0 and "alice" in listing.stdout and "front_desk" in listing.stdout

    services = in_process(env)
    for attempt in range(5):
        with pytest.raises(SignInFailed):
            services.staff.sign_in("alice", f"guess {attempt}", "10.1.1.1")
    with pytest.raises(SignInFailed):
        services.staff.sign_in("alice", PASSWORD, "10.1.1.1")

    unlocked = run(["users", "unlock", "alice"], env)
    assert unlocked.returncode == 0 and "unlocked" in unlocked.stdout
    services.staff.sign_in("alice", PASSWORD, "10.1.1.1")

    changed = run(["users", "passwd", "alice", "--password-stdin"], env, "a brand new passphrase\n")
    assert changed.returncode == 0, changed.stderr
    with pytest.raises(SignInFailed):
        services.staff.sign_in("alice", PASSWORD, "10.1.1.2")
    services.staff.sign_in("alice", "a brand new passphrase", "10.1.1.2")

    short = run(["users", "passwd", "alice", "--password-stdin"], env, "short\n")
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    assert run(["users", "unlock", "nobody"], env).returncode == 2


@pytest.mark.parametrize("kind", ["kiosk", "gateway"])
def test_devices_list_and_revoke(env: dict[str, str], kind: str) -> None:
    added = run([f"{kind}s", "add", "front-1", *(["--station", "room1"] if kind == "gateway" else [])], env)
    token = added.stdout.split()[-1]
    services = in_process(env)
    assert services.devices.authenticate(kind, token) is not None
    listing = run([f"{kind}s", "list"], env)
    assert "front-1" in listing.stdout and "active" in listing.stdout and token not in listing.stdout
    assert run([f"{kind}s", "revoke", "front-1"], env).returncode == 0
    assert services.devices.authenticate(kind, token) is None
    assert "revoked" in run([f"{kind}s", "list"], env).stdout
    again = run([f"{kind}s", "revoke", "front-1"], env)
    assert again.returncode == 2 and "no active" in again.stderr


def tamper(env: dict[str, str], *statements: str) -> None:
    """What someone with the database file could do: lift the append-only triggers and change rows."""
    with sqlite3.connect(database(env)) as connection:
        connection.execute("DROP TRIGGER audit_event_no_update")
        connection.execute("DROP TRIGGER audit_event_no_delete")
        for statement in statements:
            connection.execute(statement)


@pytest.fixture
def trail(env: dict[str, str]) -> dict[str, str]:
    """Seven audit rows: a user created, kiosks registered and revoked."""
    for number in range(3):
        run(["kiosks", "add", f"kiosk-{number}"], env)
        run(["kiosks", "revoke", f"kiosk-{number}"], env)
    verified = run(["audit", "verify"], env)
    assert verified.returncode == 0 and "audit trail intact" in verified.stdout, verified.stderr
    return env


def test_audit_verify_finds_a_deleted_row(trail: dict[str, str]) -> None:
    tamper(trail, "DELETE FROM audit_event WHERE seq = 4")
    result = run(["audit", "verify"], trail)
    assert result.returncode == 1
    assert "audit row 4: is missing (deleted)" in result.stderr and "3 rows before it are intact" in result.stderr


def test_audit_verify_finds_an_altered_row(trail: dict[str, str]) -> None:
    tamper(trail, "UPDATE audit_event SET outcome = 'failure' WHERE seq = 6")
    result = run(["audit", "verify"], trail)
    assert result.returncode == 1 and "audit row 6 (id 6): was altered" in result.stderr


def test_audit_verify_finds_reordered_rows(trail: dict[str, str]) -> None:
    tamper(trail, "UPDATE audit_event SET id = -id WHERE seq IN (2, 3)",
           "UPDATE audit_event SET id = 3 WHERE id = -2", "UPDATE audit_event SET id = 2 WHERE id = -3")
    result = run(["audit", "verify"], trail)
    assert result.returncode == 1 and "audit row 3 (id 2): is out of order" in result.stderr


def test_audit_verify_finds_rows_cut_from_the_end(trail: dict[str, str]) -> None:
    tamper(trail, "DELETE FROM audit_event WHERE seq >= (SELECT MAX(seq) - 1 FROM audit_event)")
    result = run(["audit", "verify"], trail)
    assert result.returncode == 1 and "is missing (deleted): the chain head says" in result.stderr


def test_audit_report_is_csv_of_who_saw_the_patient(env: dict[str, str]) -> None:
    services = in_process(env)
    with services.uow.begin() as session:
        services.patients.upsert_in(session, PatientRecord(mrn="AR-1", mrn_authority="TEST", family_name="Report",
                                                           given_name="Ada"), actor=SYSTEM)
    alice = next(u.user_id for u in services.staff.list_users() if u.username == "alice")
    services.audit_reports.accesses("AR-1", dt.date(2000, 1, 1), dt.date(2000, 1, 1),
                                    actor=Actor("staff", str(alice)))
    today = services.board.today().isoformat()
    report = run(["audit", "report", "--mrn", "AR-1", "--from", today, "--to", today], env)
    assert report.returncode == 0, report.stderr
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    seen = {(r["actor_name"], r["action"]) for r in rows}
    assert seen >= {("alice", "audit.report"), ("frontdesk", "patient.created")}
    assert "Ada" not in report.stdout and "Report" not in report.stdout

    refused = run(["audit", "report", "--mrn", "AR-1", "--from", today, "--to", "2000-01-01"], env)
    assert refused.returncode == 2 and "end date is before the start date" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_users_disable_and_enable(env: dict[str, str]) -> None:
    assert run(["users", "disable", "alice"], env).returncode == 0
    services = in_process(env)
    with pytest.raises(SignInFailed):
        services.staff.sign_in("alice", PASSWORD, "10.1.1.3")
    enabled = run(["users", "enable", "alice"], env)
    assert enabled.returncode == 0 and "alice enabled" in enabled.stdout
    services.staff.sign_in("alice", PASSWORD, "10.1.1.3")
    missing = run(["users", "enable", "nobody"], env)
    assert missing.returncode == 2 and "no user called" in missing.stderr
