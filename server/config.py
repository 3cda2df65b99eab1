"""Configuration: a TOML file, overridden by ``FRONTDESK_<SECTION>_<KEY>`` variables.

Every setting has a default, so the service starts with no file at all
(SQLite under ``./instance/``, web on 127.0.0.1:8080, HL7 on 127.0.0.1:2575).
Values are validated once, at start: a bad one raises :class:`ConfigError`
naming the key and what is allowed, and the CLI turns that into one line and
exit status 2. Nothing later has to re-check a setting.

The secret key is never hard-coded: when none is configured, one is generated
on first start and kept in ``instance/secret_key`` with mode 0600, so sessions
survive restarts without anyone choosing a weak value.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tempfile
import tomllib
import typing as t
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

from devices import config as device_config
from devices import drivers
from hl7.listener import parse_allowed_sender
from hl7.model import CHARSET_NAMES

ENV_PREFIX = "FRONTDESK_"
STAFF_ROLES = ("front_desk", "assistant", "admin")
CONFIG_ENV = "FRONTDESK_CONFIG"
OTHER_ENV = (CONFIG_ENV, f"{ENV_PREFIX}INSTANCE_DIR", f"{ENV_PREFIX}TEST_DATABASE_URL")
"""``FRONTDESK_*`` variables that are not ``SECTION_KEY`` overrides (the last one is read by the test suite)."""

DATABASE_DRIVERS = {"sqlite": "SQLite (sqlite:///PATH)", "postgresql": "PostgreSQL with psycopg 3 (postgresql://…)"}


class ConfigError(ValueError):
    """A setting that cannot be used; ``str()`` is the one line shown to the operator."""


def _choice(*allowed: str) -> dict[str, t.Any]:
    return {"choices": allowed}


def _range(low: float, high: float) -> dict[str, t.Any]:
    return {"range": (low, high)}


@dataclass(frozen=True)
class DatabaseConfig:
    """``[database]``: where the data lives.

    ``schema`` (PostgreSQL only) sets the ``search_path``, so several instances,
    or test runs, can share one database without seeing each other.
    """

    url: str = ""
    schema: str = ""
    echo: bool = False


@dataclass(frozen=True)
class WebConfig:
    """``[web]``: the HTTP side (staff pages, kiosk, JSON API).

    ``secure_cookies`` must be true whenever the service is reached over HTTPS
    (directly or behind a proxy); ``production`` refuses to start without it.
    ``timezone`` is the clinic's (an IANA name such as ``America/Chicago``): it
    decides what "today" is on staff pages and how HL7 times sent without an
    offset are read. ``threads`` is how many requests are served at once: an
    open live page (a station page, a board) holds one for as long as it is
    open, so the default leaves room for 4 station pages and 2 boards beside 20
    kiosks and staff pages, each of whose requests holds one only briefly. At
    most ``threads`` minus a quarter of them (never fewer than 4) are given to
    live pages (24 of the default 32); pages beyond that work without live
    updates until one closes (:class:`server.live.StreamSlots`).
    """

    @property
    def zone(self) -> ZoneInfo:
        """The clinic's time zone (validated when the configuration is loaded)."""
        return ZoneInfo(self.timezone)

    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=_range(1, 65535))
    timezone: str = "UTC"
    secret_key: str = ""
    idle_timeout_minutes: int = field(default=15, metadata=_range(1, 24 * 60))
    absolute_timeout_hours: int = field(default=12, metadata=_range(1, 24 * 7))
    secure_cookies: bool = False
    production: bool = False
    max_content_kb: int = field(default=512, metadata=_range(16, 64 * 1024))
    login_max_failures_per_user: int = field(default=5, metadata=_range(1, 1000))
    login_max_failures_per_address: int = field(default=20, metadata=_range(1, 10000))
    login_window_minutes: int = field(default=15, metadata=_range(1, 24 * 60))
    login_address_delay_cap_seconds: int = field(default=30, metadata=_range(1, 300))
    mfa_roles: tuple[str, ...] = ("admin",)
    trusted_proxies: int = field(default=0, metadata=_range(0, 5))
    threads: int = field(default=32, metadata=_range(4, 512))
    connection_limit: int = field(default=500, metadata=_range(10, 1000))
    channel_timeout_seconds: int = field(default=30, metadata=_range(2, 3600))


@dataclass(frozen=True)
class HL7Config:
    """``[hl7]``: the inbound listener and the outbound destination.

    ``allowed_senders`` lists ``APP^FACILITY`` pairs (MSH-3.1 ^ MSH-4.1) the
    listener accepts; empty accepts any sender. ``tls_*`` secure the listener
    (``tls_ca`` with ``tls_require_client_cert`` is mutual TLS);
    ``destination_tls_*`` secure the connection to the records system;
    ``destination_tls_server_name`` is the name its certificate must carry when
    it is not ``destination_host`` (connecting by address to a certificate
    issued for a name). ``listen_idle_timeout_seconds`` is how long a sender's
    connection may stay silent before the listener closes it. ``max_attempts``
    counts the records system's own rejections (AR/CE) of a message: transport
    failures are retried for as long as they last, and an error is logged once
    the oldest waiting message is older than ``backlog_alert_minutes``. With no
    ``destination_host`` messages are kept in the outbox and none is sent.
    ``destination_charset`` is the character set the records system reads;
    ``destination_connections`` how many connections to it deliver at once
    (one, unless it is known to accept more: patients are shared out between
    them, each patient's messages always in order on one).
    """

    listen_host: str = "127.0.0.1"
    listen_port: int = field(default=2575, metadata=_range(1, 65535))
    listen_idle_timeout_seconds: int = field(default=60, metadata=_range(1, 86400))
    max_frame_kb: int = field(default=1024, metadata=_range(1, 64 * 1024))
    sending_application: str = "FRONTDESK"
    sending_facility: str = "CLINIC"
    destination_host: str = ""
    destination_port: int = field(default=2576, metadata=_range(1, 65535))
    receiving_application: str = "EHR"
    receiving_facility: str = "CLINIC"
    vitals_coding: str = field(default="MDC", metadata=_choice("MDC", "LOINC"))
    allowed_senders: tuple[str, ...] = ()
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    tls_require_client_cert: bool = False
    allow_plain_mllp: bool = False
    destination_tls_ca: str = ""
    destination_tls_cert: str = ""
    destination_tls_key: str = ""
    destination_tls_server_name: str = ""
    connect_timeout_seconds: int = field(default=10, metadata=_range(1, 300))
    ack_timeout_seconds: int = field(default=30, metadata=_range(1, 600))
    retry_base_seconds: int = field(default=2, metadata=_range(1, 3600))
    retry_cap_seconds: int = field(default=300, metadata=_range(1, 86400))
    max_attempts: int = field(default=20, metadata=_range(1, 1000))
    backlog_alert_minutes: int = field(default=15, metadata=_range(1, 7 * 24 * 60))
    batch_size: int = field(default=50, metadata=_range(1, 1000))
    keep_days: int = field(default=0, metadata=_range(0, 3650))
    destination_charset: str = field(default="UTF-8", metadata=_choice(*CHARSET_NAMES))
    destination_connections: int = field(default=1, metadata=_range(1, 32))


@dataclass(frozen=True)
class KioskConfig:
    """``[kiosk]``: the patient-facing check-in screens.

    Idle limits are per screen (questionnaire pages get longer); after the
    limit a warning with a countdown of ``warning_seconds`` appears, then the
    kiosk session is destroyed. Only today's appointments between
    ``arrival_window_before_minutes`` before and ``arrival_window_after_minutes``
    after their start can be checked in. ``questionnaires_dir`` and
    ``consents_dir`` default to the files shipped with Frontdesk.
    """

    idle_seconds: int = field(default=90, metadata=_range(15, 3600))
    questionnaire_idle_seconds: int = field(default=240, metadata=_range(15, 3600))
    warning_seconds: int = field(default=30, metadata=_range(30, 300))
    done_seconds: int = field(default=15, metadata=_range(5, 120))
    arrival_window_before_minutes: int = field(default=60, metadata=_range(0, 24 * 60))
    arrival_window_after_minutes: int = field(default=30, metadata=_range(0, 24 * 60))
    lookup_max_failures: int = field(default=5, metadata=_range(1, 100))
    lookup_max_failures_per_kiosk: int = field(default=15, metadata=_range(1, 1000))
    lookup_max_per_identity: int = field(default=6, metadata=_range(1, 1000))
    lookup_window_minutes: int = field(default=15, metadata=_range(1, 24 * 60))
    minutes_per_patient: int = field(default=12, metadata=_range(1, 240))
    questionnaires_dir: str = ""
    consents_dir: str = ""
    languages: tuple[str, ...] = ("en", "es")


@dataclass(frozen=True)
class Config:
    """The whole configuration, as validated at start."""

    instance_dir: Path
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    web: WebConfig = field(default_factory=WebConfig)
    hl7: HL7Config = field(default_factory=HL7Config)
    kiosk: KioskConfig = field(default_factory=KioskConfig)
    devices: tuple[dict[str, t.Any], ...] = ()
    testing: bool = False

    @property
    def database_url(self) -> str:
        """The configured URL, or SQLite in the instance folder."""
        return self.database.url or f"sqlite:///{self.instance_dir / 'frontdesk.db'}"

    @classmethod
    def for_tests(cls, *, db_url: str, instance_dir: Path, db_schema: str = "", **sections: t.Any) -> Config:
        """A configuration for tests: a given database, a throwaway secret, no file lookups."""
        web = dataclasses.replace(WebConfig(secret_key=secrets.token_hex(32)), **sections.pop("web", {}))
        built = {name: dataclasses.replace(_SECTIONS[name](), **sections.pop(name, {}))
                 for name in ("hl7", "kiosk") if name in sections}
        return cls(instance_dir=instance_dir, database=DatabaseConfig(url=db_url, schema=db_schema), web=web,
                   testing=True, **built, **sections)


_SECTIONS: dict[str, type[t.Any]] = {
    "database": DatabaseConfig,
    "web": WebConfig,
    "hl7": HL7Config,
    "kiosk": KioskConfig,
}


def load_config(path: str | os.PathLike[str] | None = None, *, env: t.Mapping[str, str] | None = None,
                instance_dir: Path | None = None) -> Config:
    """Read, merge and validate the configuration.

    :param path: a TOML file; when ``None``, ``FRONTDESK_CONFIG`` names it, and
        without that the defaults apply.
    :param env: the environment to read overrides from (``os.environ`` by default).
    :param instance_dir: where generated files live (default ``./instance``).
    :raises ConfigError: for an unreadable file or a bad value.
    """
    env = os.environ if env is None else env
    path = path or env.get(CONFIG_ENV) or None
    raw: dict[str, t.Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path}: not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path}: cannot be read ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    unknown = sorted(set(raw) - set(_SECTIONS) - {"devices"})
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}]: allowed are {', '.join(sorted(_SECTIONS))}, [[devices]]")
    _check_environment(env)
    sections = {name: _build_section(name, cls, raw.get(name, {}), env) for name, cls in _SECTIONS.items()}
    _check_database_url(sections["database"].url)
    devices = raw.get("devices", [])
    if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
        raise ConfigError("devices: must be an array of tables ([[devices]])")
    _check_devices(devices)
    _check_tls(sections["hl7"])
    try:
        ZoneInfo(sections["web"].timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"web.timezone: must be an IANA time zone such as America/Chicago, "
                          f"got {sections['web'].timezone!r}") from None
    for role in sections["web"].mfa_roles:
        if role not in STAFF_ROLES:
            raise ConfigError(f"web.mfa_roles: each must be one of {', '.join(STAFF_ROLES)}, got {role!r}")
    for entry in sections["hl7"].allowed_senders:
        try:
            parse_allowed_sender(entry)
        except ValueError as exc:
            raise ConfigError(f"hl7.allowed_senders: {exc}") from None
    instance = (instance_dir or Path(env.get(f"{ENV_PREFIX}INSTANCE_DIR", "instance"))).resolve()
    return Config(instance_dir=instance, devices=tuple(devices), **sections)


def _check_environment(env: t.Mapping[str, str]) -> None:
    """Refuse a ``FRONTDESK_*`` variable that sets nothing, as an unknown TOML key is refused.

    A misspelt override (``FRONTDESK_WEB_PORTT``) would otherwise be ignored
    silently and the service would start with a setting nobody chose.
    """
    known = set(OTHER_ENV) | {f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}"
                              for name, cls in _SECTIONS.items() for f in dataclasses.fields(cls)}
    unknown = sorted(key for key in env if key.startswith(ENV_PREFIX) and key not in known)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown setting; variables are FRONTDESK_<SECTION>_<KEY> for a key of "
                          f"[{'], ['.join(_SECTIONS)}], or {', '.join(OTHER_ENV[:2])}")


def _check_database_url(url: str) -> None:
    """Accept only URLs of a backend we support, so a typo is one line at start rather than a traceback."""
    if not url:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError("database.url: not a database URL; supported are " + ", ".join(DATABASE_DRIVERS.values())
                          ) from None
    backend, _, driver = parsed.drivername.partition("+")
    backend = "postgresql" if backend == "postgres" else backend
    if backend not in DATABASE_DRIVERS or driver not in ("", "psycopg", "pysqlite"):
        raise ConfigError(f"database.url: {parsed.drivername!r} is not supported; supported are "
                          + ", ".join(DATABASE_DRIVERS.values()))


def _check_tls(hl7: HL7Config) -> None:
    """Refuse TLS settings that would quietly leave a link in plain text or unauthenticated."""
    if bool(hl7.tls_cert) != bool(hl7.tls_key):
        raise ConfigError("hl7.tls_cert and hl7.tls_key: give both or neither")
    if hl7.tls_require_client_cert and not (hl7.tls_cert and hl7.tls_ca):
        raise ConfigError("hl7.tls_require_client_cert: needs hl7.tls_cert, hl7.tls_key and hl7.tls_ca")
    if bool(hl7.destination_tls_cert) != bool(hl7.destination_tls_key):
        raise ConfigError("hl7.destination_tls_cert and hl7.destination_tls_key: give both or neither")
    if hl7.destination_tls_cert and not hl7.destination_tls_ca:
        raise ConfigError("hl7.destination_tls_ca: must be set to use a client certificate toward the records system")


def _check_devices(entries: list[dict[str, t.Any]]) -> None:
    """Validate ``[[devices]]`` entries with the device layer's own rules, and their driver names."""
    seen: set[str] = set()
    known = drivers.names()
    for entry in entries:
        try:
            device = device_config.from_mapping(entry)
        except device_config.ConfigError as exc:
            raise ConfigError(f"devices: {exc}") from None
        if device.driver not in known:
            raise ConfigError(f"devices: device {device.id!r}: driver must be one of {', '.join(known)}, "
                              f"got {device.driver!r}")
        if device.id in seen:
            raise ConfigError(f"devices: device id {device.id!r} is used twice")
        seen.add(device.id)


def _build_section(name: str, cls: type[t.Any], table: t.Any, env: t.Mapping[str, str]) -> t.Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}]: must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        if key not in fields:
            raise ConfigError(f"{name}.{key}: unknown key; allowed are {', '.join(fields)}")
    values: dict[str, t.Any] = {}
    for key, spec in fields.items():
        env_key = f"{ENV_PREFIX}{name.upper()}_{key.upper()}"
        if env_key in env:
            values[key] = _coerce(f"{env_key}", spec, env[env_key], from_env=True)
        elif key in table:
            values[key] = _coerce(f"{name}.{key}", spec, table[key], from_env=False)
    return cls(**values)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(where: str, spec: dataclasses.Field[t.Any], value: t.Any, *, from_env: bool) -> t.Any:
    kind = spec.type if isinstance(spec.type, str) else spec.type.__name__
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if from_env and str(value).lower() in _TRUE | _FALSE:
            return str(value).lower() in _TRUE
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    if kind == "int":
        if from_env and str(value).strip().lstrip("-").isdigit():
            number = int(value)
        elif not from_env and isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            raise ConfigError(f"{where}: must be a whole number, got {value!r}")
        low, high = spec.metadata.get("range", (None, None))
        if low is not None and not low <= number <= high:
            raise ConfigError(f"{where}: must be between {low} and {high}, got {number}")
        return number
    if kind.startswith("tuple"):
        items = value.split(",") if from_env and isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{where}: must be a list of strings")
        return tuple(i.strip() for i in items if i.strip())
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string, got {value!r}")
    choices = spec.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{where}: must be one of {', '.join(choices)}, got {value!r}")
    return value


def ensure_secret_key(config: Config) -> str:
    """The configured secret key, or the one kept in the instance folder (created on first use).

    The key is written to a private temporary file (mode 0600) and then linked
    into place, which fails if the file exists: two processes starting at once
    both end up reading the one key that won, and none can read a file that is
    created but not yet written.
    """
    if config.web.secret_key:
        return config.web.secret_key
    path = config.instance_dir / "secret_key"
    config.instance_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd, staging = tempfile.mkstemp(dir=config.instance_dir, prefix=".secret_key.")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(32))
                handle.flush()
                os.fsync(handle.fileno())
            os.link(staging, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(staging)
    return path.read_text(encoding="ascii").strip()


def check_production(config: Config) -> None:
    """Refuse settings that are unsafe once real patients use the service.

    :raises ConfigError: for cookies without ``Secure``, a PostgreSQL URL
        without ``sslmode=verify-full`` (HIPAA 164.312(e), ASVS 12.1.1), or an
        HL7 listener without mutual TLS unless ``hl7.allow_plain_mllp`` says
        plain MLLP is meant (a TLS tunnel or a private link in front of it).
    """
    if not config.web.production:
        return
    if not config.web.secure_cookies:
        raise ConfigError("web.secure_cookies: must be true when web.production is true (serve over HTTPS)")
    url = config.database_url
    if url.startswith("postgresql") and "sslmode=verify-full" not in url:
        raise ConfigError("database.url: must use sslmode=verify-full when web.production is true")
    hl7 = config.hl7
    if not hl7.allow_plain_mllp and not (hl7.tls_cert and hl7.tls_require_client_cert):
        raise ConfigError("hl7.tls_require_client_cert: the HL7 listener must use mutual TLS (tls_cert, tls_key, "
                          "tls_ca) when web.production is true, or set hl7.allow_plain_mllp = true to accept "
                          "plain MLLP (e.g. behind a TLS tunnel)")


def listener_security(hl7: HL7Config) -> str:
    """How the HL7 listener admits senders, in words for the one line logged at start."""
    if hl7.tls_cert and hl7.tls_require_client_cert:
        return "mutual TLS: only senders with a certificate from hl7.tls_ca"
    if hl7.tls_cert:
        return "TLS without client certificates"
    if hl7.allow_plain_mllp:
        return "plain MLLP, allowed by hl7.allow_plain_mllp"
    return "plain MLLP"
