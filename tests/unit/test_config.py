"""Configuration: defaults, file, environment overrides and one-line validation errors."""

from __future__ import annotations

import concurrent.futures
import os
import stat
from pathlib import Path

import pytest

from server.config import Config
from server.config import ConfigError
from server.config import WebConfig
from server.config import check_production
from server.config import ensure_secret_key
from server.config import listener_security
from server.config import load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "frontdesk.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_need_no_file(tmp_path: Path) -> None:
    config = load_config(env={}, instance_dir=tmp_path)
    assert (config.web.host, config.web.port) == ("127.0.0.1", 8080)
    assert (config.hl7.listen_host, config.hl7.listen_port) == ("127.0.0.1", 2575)
    assert config.database_url == f"sqlite:///{tmp_path / 'frontdesk.db'}"
    assert config.web.idle_timeout_minutes == 15 and config.web.absolute_timeout_hours == 12
    assert config.devices == ()


def test_file_values_and_devices(tmp_path: Path) -> None:
    path = write(tmp_path, """
[database]
url = "postgresql://db.example/frontdesk"
[web]
port = 9000
secure_cookies = true
[hl7]
vitals_coding = "LOINC"
allowed_senders = ["EHR^CLINIC"]
[kiosk]
idle_seconds = 60
[[devices]]
id = "ox1"
driver = "nonin-df8"
port = "/dev/ttyUSB0"
station = "room1"
""")
    config = load_config(path, env={}, instance_dir=tmp_path)
    assert config.database_url == "postgresql://db.example/frontdesk"
    assert config.web.port == 9000 and config.web.secure_cookies is True
    assert config.hl7.vitals_coding == "LOINC" and config.hl7.allowed_senders == ("EHR^CLINIC",)
    assert config.kiosk.idle_seconds == 60
    assert config.devices == ({"id": "ox1", "driver": "nonin-df8", "port": "/dev/ttyUSB0", "station": "room1"},)


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[web]\nport = 9000\n")
    env = {"FRONTDESK_WEB_PORT": "9100", "FRONTDESK_WEB_SECURE_COOKIES": "yes",
           "FRONTDESK_HL7_ALLOWED_SENDERS": "EHR^A, LAB^B", "FRONTDESK_CONFIG": str(path)}
    config = load_config(env=env, instance_dir=tmp_path)
    assert config.web.port == 9100
    assert config.web.secure_cookies is True
    assert config.hl7.allowed_senders == ("EHR^A", "LAB^B")


@pytest.mark.parametrize(("text", "env", "message"), [
    ("[web]\nport = 70000\n", {}, "web.port: must be between 1 and 65535, got 70000"),
    ("[web]\nport = \"eighty\"\n", {}, "web.port: must be a whole number, got 'eighty'"),
    ("[web]\nsecure_cookies = \"maybe\"\n", {}, "web.secure_cookies: must be true or false"),
    ("[hl7]\nvitals_coding = \"SNOMED\"\n", {}, "hl7.vitals_coding: must be one of MDC, LOINC"),
    ("[web]\ncolour = 1\n", {}, "web.colour: unknown key; allowed are"),
    ("[printer]\nx = 1\n", {}, "unknown section [printer]"),
    ("devices = 3\n", {}, "devices: must be an array of tables"),
    ("[hl7]\nallowed_senders = [\"EHR\"]\n", {}, "hl7.allowed_senders: expected APPLICATION^FACILITY"),
    ("[hl7]\ntls_require_client_cert = true\n", {}, "hl7.tls_require_client_cert: needs hl7.tls_cert"),
    ("[web]\ntimezone = \"Mars/Olympus\"\n", {}, "web.timezone: must be an IANA time zone"),
    ("[hl7]\ntls_cert = \"a.pem\"\n", {}, "hl7.tls_cert and hl7.tls_key: give both or neither"),
    ("[hl7]\ndestination_tls_cert = \"c.pem\"\ndestination_tls_key = \"k.pem\"\n", {},
     "hl7.destination_tls_ca: must be set"),
    ("[[devices]]\nid = \"a\"\ndriver = \"nonin-df8\"\nport = \"/dev/x\"\n", {}, "devices: device 'a': missing key"),
    ("[[devices]]\nid = \"a\"\ndriver = \"toaster\"\nport = \"/dev/x\"\nstation = \"s\"\n", {},
     "devices: device 'a': driver must be one of"),
    ("[[devices]]\nid = \"a\"\ndriver = \"nonin-df8\"\nport = \"/dev/x\"\nstation = \"s\"\ndf8_layout = \"x\"\n", {},
     "devices: device 'a': key 'df8_layout' must be one of onyx-9560, extended-status, got 'x'"),
    ("[web\n", {}, "not valid TOML"),
    ("", {"FRONTDESK_WEB_PORT": "abc"}, "FRONTDESK_WEB_PORT: must be a whole number, got 'abc'"),
    ("", {"FRONTDESK_KIOSK_IDLE_SECONDS": "5"}, "FRONTDESK_KIOSK_IDLE_SECONDS: must be between 15 and 3600"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env=env, instance_dir=tmp_path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={}, instance_dir=tmp_path)


def test_secret_key_is_generated_once_with_private_mode(tmp_path: Path) -> None:
    config = load_config(env={}, instance_dir=tmp_path / "inst")
    first = ensure_secret_key(config)
    second = ensure_secret_key(config)
    assert first == second and len(first) == 64
    mode = stat.S_IMODE(os.stat(tmp_path / "inst" / "secret_key").st_mode)
    assert mode == 0o600


def test_processes_starting_together_share_one_secret_key(tmp_path: Path) -> None:
    config = load_config(env={}, instance_dir=tmp_path / "inst")
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        keys = set(pool.map(lambda _: ensure_secret_key(config), range(32)))
    assert len(keys) == 1 and len(keys.pop()) == 64
    assert [p.name for p in (tmp_path / "inst").iterdir()] == ["secret_key"]


def test_configured_secret_key_is_used_and_no_file_written(tmp_path: Path) -> None:
    config = load_config(env={"FRONTDESK_WEB_SECRET_KEY": "s" * 40}, instance_dir=tmp_path)
    assert ensure_secret_key(config) == "s" * 40
    assert not (tmp_path / "secret_key").exists()


def test_production_refuses_insecure_cookies_and_plain_database(tmp_path: Path) -> None:
    insecure = Config(instance_dir=tmp_path, web=WebConfig(production=True))
    with pytest.raises(ConfigError, match="web.secure_cookies"):
        check_production(insecure)
    plain_pg = load_config(env={"FRONTDESK_WEB_PRODUCTION": "true", "FRONTDESK_WEB_SECURE_COOKIES": "true",
                                "FRONTDESK_DATABASE_URL": "postgresql://db/x"}, instance_dir=tmp_path)
    with pytest.raises(ConfigError, match="sslmode=verify-full"):
        check_production(plain_pg)
    check_production(load_config(env={"FRONTDESK_WEB_PRODUCTION": "true", "FRONTDESK_WEB_SECURE_COOKIES": "1",
                                      "FRONTDESK_HL7_ALLOW_PLAIN_MLLP": "true"}, instance_dir=tmp_path))


PRODUCTION = {"FRONTDESK_WEB_PRODUCTION": "true", "FRONTDESK_WEB_SECURE_COOKIES": "true"}
TLS = {"FRONTDESK_HL7_TLS_CERT": "/etc/frontdesk/mllp.pem", "FRONTDESK_HL7_TLS_KEY": "/etc/frontdesk/mllp.key"}


@pytest.mark.parametrize(("settings", "refused", "line"), [
    ({}, True, "plain MLLP"),
    (TLS, True, "TLS without client certificates"),
    ({**TLS, "FRONTDESK_HL7_TLS_CA": "/etc/frontdesk/ca.pem", "FRONTDESK_HL7_TLS_REQUIRE_CLIENT_CERT": "true"}, False,
     "mutual TLS: only senders with a certificate from hl7.tls_ca"),
    ({"FRONTDESK_HL7_ALLOW_PLAIN_MLLP": "true"}, False, "plain MLLP, allowed by hl7.allow_plain_mllp"),
])
def test_production_requires_mutual_tls_on_the_hl7_listener_unless_plain_is_allowed(
        tmp_path: Path, settings: dict[str, str], refused: bool, line: str) -> None:
    config = load_config(env={**PRODUCTION, **settings}, instance_dir=tmp_path)
    assert listener_security(config.hl7) == line
    if refused:
        with pytest.raises(ConfigError, match="hl7.tls_require_client_cert: the HL7 listener must use mutual TLS"):
            check_production(config)
    else:
        check_production(config)
    check_production(load_config(env=settings, instance_dir=tmp_path))
