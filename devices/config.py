"""``[[devices]]`` entries as validated, frozen values.

The server's configuration loader and the standalone gateway both end up with a
list of plain mappings (parsed TOML or command-line specs); this module turns
each into a :class:`DeviceConfig` and refuses anything it cannot use with an
error that names the offending key, because a misspelt ``baudrate`` silently
ignored is a device that never talks.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing as t
from dataclasses import dataclass

from devices import drivers
from devices import netlink
from devices.drivers import SerialSettings

PARITIES: frozenset[str] = frozenset({"N", "E", "O", "M", "S"})
BYTESIZES: frozenset[int] = frozenset({5, 6, 7, 8})
STOPBITS: frozenset[float] = frozenset({1, 1.5, 2})

_REQUIRED: tuple[str, ...] = ("id", "driver", "port", "station")
_SERIAL_KEYS: tuple[str, ...] = ("baudrate", "bytesize", "parity", "stopbits", "rtscts", "xonxoff")
_KNOWN: frozenset[str] = frozenset(_REQUIRED + _SERIAL_KEYS + ("serial_number",))
_OPTION_KEYS: frozenset[str] = frozenset(option.key for driver in drivers.TABLE for option in driver.options)
"""Decoder options some driver takes (``df8_layout``); each is accepted only for a driver that declares it."""


class ConfigError(ValueError):
    """A device entry that cannot be used; the message names the entry and the key."""


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One configured device.

    Serial overrides are ``None`` when the entry leaves the driver's own setting
    in force; :meth:`serial_settings` merges them. ``serial_number`` is the USB
    serial number of the adapter, used to find it again when it re-enumerates
    under another device name.
    """

    id: str
    driver: str
    port: str
    station: str
    baudrate: int | None = None
    bytesize: int | None = None
    parity: str | None = None
    stopbits: float | None = None
    rtscts: bool | None = None
    xonxoff: bool | None = None
    serial_number: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def decoder_options(self) -> dict[str, str]:
        """The decoder options this entry sets, as keyword arguments for the driver's decoder factory."""
        return dict(self.options)

    def serial_settings(self, base: SerialSettings) -> SerialSettings:
        """The driver's settings ``base`` with this entry's overrides applied."""
        overrides = {key: getattr(self, key) for key in _SERIAL_KEYS if getattr(self, key) is not None}
        return dataclasses.replace(base, **overrides)


def from_mapping(data: t.Mapping[str, object]) -> DeviceConfig:
    """Validate one ``[[devices]]`` entry.

    :param data: the entry as parsed from TOML (or built from a command line).
    :raises ConfigError: on a missing, unknown or ill-typed key; the message names it.
    """
    label = f"device {data['id']!r}" if isinstance(data.get("id"), str) else "device entry"
    unknown = sorted(set(data) - _KNOWN - _OPTION_KEYS)
    if unknown:
        raise ConfigError(f"{label}: unknown key {unknown[0]!r}")
    values: dict[str, t.Any] = {}
    for key in _REQUIRED:
        if key not in data:
            raise ConfigError(f"{label}: missing key {key!r}")
        values[key] = _text(label, key, data[key])
    if netlink.is_network(values["port"]):
        try:
            netlink.parse_address(values["port"])
        except ValueError as exc:
            raise ConfigError(f"{label}: key 'port': {exc}") from None
    if "serial_number" in data:
        values["serial_number"] = _text(label, "serial_number", data["serial_number"])
    if "baudrate" in data:
        baudrate = data["baudrate"]
        if type(baudrate) is not int or baudrate <= 0:
            raise ConfigError(f"{label}: key 'baudrate' must be a positive integer, got {baudrate!r}")
        values["baudrate"] = baudrate
    if "bytesize" in data:
        values["bytesize"] = _choice(label, "bytesize", data["bytesize"], BYTESIZES, int)
    if "parity" in data:
        parity = data["parity"]
        values["parity"] = _choice(label, "parity", parity.upper() if isinstance(parity, str) else parity,
                                   PARITIES, str)
    if "stopbits" in data:
        values["stopbits"] = _choice(label, "stopbits", data["stopbits"], STOPBITS, (int, float))
    for key in ("rtscts", "xonxoff"):
        if key in data:
            if not isinstance(data[key], bool):
                raise ConfigError(f"{label}: key {key!r} must be true or false, got {data[key]!r}")
            values[key] = data[key]
    values["options"] = _options(label, values["driver"], data)
    return DeviceConfig(**values)


def _options(label: str, driver_name: str, data: t.Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """The decoder options of an entry, each checked against what its driver declares."""
    given = sorted(set(data) & _OPTION_KEYS)
    driver = drivers.DRIVERS.get(driver_name)
    options = []
    for key in given:
        option = driver.option(key) if driver is not None else None
        if option is None:
            raise ConfigError(f"{label}: key {key!r} does not apply to driver {driver_name!r}")
        value = data[key]
        if value not in option.choices:
            raise ConfigError(f"{label}: key {key!r} must be one of {', '.join(option.choices)}, got {value!r}")
        options.append((key, option.choices[option.choices.index(value)]))
    return tuple(options)


def from_spec(spec: str) -> DeviceConfig:
    """Parse the command line's ``ID:DRIVER:PORT:STATION``.

    The port sits between the first two fields and the last one so that URLs
    with colons (``socket://127.0.0.1:4001``) need no quoting.
    """
    parts = spec.split(":")
    if len(parts) < 4 or not all(parts[:2]) or not parts[-1]:
        raise ConfigError(f"device spec {spec!r}: expected ID:DRIVER:PORT:STATION")
    return from_mapping({"id": parts[0], "driver": parts[1], "port": ":".join(parts[2:-1]),
                         "station": parts[-1]})


def load_list(entries: t.Iterable[t.Mapping[str, object]]) -> list[DeviceConfig]:
    """Validate every entry and refuse two devices with the same ``id``."""
    devices: list[DeviceConfig] = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, t.Mapping):
            raise ConfigError(f"device entry must be a table, got {entry!r}")
        device = from_mapping(entry)
        if device.id in seen:
            raise ConfigError(f"device {device.id!r}: key 'id' is used by another device")
        seen.add(device.id)
        devices.append(device)
    return devices


def load_toml(path: str) -> list[DeviceConfig]:
    """The ``[[devices]]`` tables of a TOML file; other tables are the server's and are ignored."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    entries = document.get("devices", [])
    if not isinstance(entries, list):
        raise ConfigError(f"config file {path}: 'devices' must be an array of tables ([[devices]])")
    return load_list(entries)


def _text(label: str, key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{label}: key {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _choice(label: str, key: str, value: object, allowed: t.Collection[t.Any],
            kind: type | tuple[type, ...]) -> t.Any:
    if isinstance(value, bool) or not isinstance(value, kind) or value not in allowed:
        choices = ", ".join(str(choice) for choice in sorted(allowed))
        raise ConfigError(f"{label}: key {key!r} must be one of {choices}, got {value!r}")
    return value
