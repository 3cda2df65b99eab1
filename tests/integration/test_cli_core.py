"""The ``frontdesk`` script as an operator uses it: clear one-line errors, then a real server."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from server import migrate
from tests.procs import Browser
from tests.procs import clean_env
from tests.procs import free_port
from tests.procs import run
from tests.procs import start
from tests.procs import wait_for


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "instance")


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("frontdesk: error: ") and text in lines[0]
    assert "Traceback" not in result.stderr


def test_help_lists_the_commands(env: dict[str, str]) -> None:
    result = run(["--help"], env)
    assert result.returncode == 0
    for command in ("serve", "demo", "db", "users", "kiosks"):
        assert re.search(rf"^\s+{command}\b", result.stdout, re.M), command


def test_bad_environment_value_exits_2(env: dict[str, str]) -> None:
    assert_one_line_error(run(["serve"], {**env, "FRONTDESK_WEB_PORT": "eighty"}), 2,
                          "FRONTDESK_WEB_PORT: must be a whole number")


def test_bad_config_file_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[hl7]\nvitals_coding = "SNOMED"\n')
    assert_one_line_error(run(["serve", "--config", str(config)], env), 2, "hl7.vitals_coding: must be one of")


def test_bad_device_option_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[devices]]\nid = "ox1"\ndriver = "masimo-ascii"\nport = "/dev/x"\nstation = "s"\n'
                      'df8_layout = "extended-status"\n')
    assert_one_line_error(run(["serve", "--config", str(config)], env), 2,
                          "key 'df8_layout' does not apply to driver 'masimo-ascii'")


def test_unreachable_database_is_one_line(env: dict[str, str]) -> None:
    port = free_port()
    result = run(["db", "upgrade"], {**env, "FRONTDESK_DATABASE_URL": f"postgresql://nobody@127.0.0.1:{port}/x"})
    assert_one_line_error(result, 1, "is unreachable")


def test_serve_refuses_an_out_of_date_schema(env: dict[str, str]) -> None:
    assert_one_line_error(run(["serve"], env), 2, "run 'frontdesk db upgrade'")


def test_version(env: dict[str, str]) -> None:
    result = run(["--version"], env)
    assert result.returncode == 0 and re.fullmatch(r"frontdesk \d+\.\d+\.\d+\S*\n", result.stdout)


@pytest.mark.parametrize("command", [["serve"], ["outbox", "list"], ["users", "disable", "bob"], ["users", "list"],
                                     ["kiosks", "list"], ["gateways", "list"], ["tokens", "list"],
                                     ["audit", "verify"]])
def test_commands_before_db_upgrade_say_so_and_leave_no_empty_database(env: dict[str, str], tmp_path: Path,
                                                                       command: list[str]) -> None:
    result = run(command, env)
    assert_one_line_error(result, 2, "no database yet")
    assert result.stdout == ""
    assert not (tmp_path / "instance" / "frontdesk.db").exists()
    assert run(["db", "upgrade"], env).returncode == 0
    assert (tmp_path / "instance" / "frontdesk.db").exists()


@pytest.mark.parametrize(("url", "text"), [
    ("mysql://user:hunter2@db/frontdesk", "'mysql' is not supported; supported are SQLite"),
    ("not a url", "database.url: not a database URL"),
    ("postgresql://user:hunter2@db:fivefourthree/frontdesk", "database.url: not a database URL"),
])
def test_unsupported_database_url_is_one_line_naming_the_drivers(env: dict[str, str], url: str, text: str) -> None:
    result = run(["outbox", "list"], {**env, "FRONTDESK_DATABASE_URL": url})
    assert_one_line_error(result, 2, text)
    assert "hunter2" not in result.stderr


def test_unknown_environment_variable_is_refused_like_an_unknown_key(env: dict[str, str]) -> None:
    assert_one_line_error(run(["serve"], {**env, "FRONTDESK_WEB_PORTT": "9000"}), 2,
                          "FRONTDESK_WEB_PORTT: unknown setting")


def test_unknown_role_and_short_password(env: dict[str, str]) -> None:
    assert run(["db", "upgrade"], env).returncode == 0
    assert_one_line_error(run(["users", "add", "bob", "--role", "surgeon", "--password-stdin"], env,
                              "correct horse battery\n"), 2, "role: must be one of front_desk, assistant, admin")
    assert_one_line_error(run(["users", "add", "bob", "--role", "admin", "--password-stdin"], env, "short\n"),
                          2, "password: must be at least 12")


def test_kiosk_and_gateway_tokens_are_printed_once(env: dict[str, str]) -> None:
    assert run(["db", "upgrade"], env).returncode == 0
    kiosk = run(["kiosks", "add", "lobby-1", "--location", "Lobby"], env)
    assert kiosk.returncode == 0 and re.search(r"token \(shown once\): \S{40,}", kiosk.stdout)
    assert_one_line_error(run(["kiosks", "add", "lobby-1"], env), 2, "exists")
    gateway = run(["gateways", "add", "room-1", "--station", "room1"], env)
    assert gateway.returncode == 0 and "token (shown once)" in gateway.stdout


def test_serve_answers_health_and_staff_sign_in(env: dict[str, str]) -> None:
    port = free_port()
    env = {**env, "FRONTDESK_WEB_PORT": str(port)}
    head = migrate.head_revision()
    assert f"schema empty -> {head}" in run(["db", "upgrade"], env).stdout
    assert f"schema already at {head}" in run(["db", "upgrade"], env).stdout
    assert run(["users", "add", "alice", "--role", "front_desk", "--password-stdin"], env,
               "correct horse battery\n").returncode == 0
    server = start(["serve"], {**env, "FRONTDESK_HL7_LISTEN_PORT": str(free_port())})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/healthz")
        browser = Browser(base)
        status, body, _ = browser.request("/healthz")
        assert status == 200 and '"up_to_date":true' in body.replace(" ", "")
        status, page, headers = browser.request("/staff/login")
        assert status == 200 and "Sign in" in page and headers["Cache-Control"] == "no-store"
        assert browser.sign_in("alice", "correct horse battery") == 302
        status, home, _ = browser.request("/staff/")
        assert status == 200 and "Visits on" in home
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert '"event": "runtime.stopped"' in err
