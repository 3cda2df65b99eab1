"""The driver registry: driver name (as used in config and on the CLI) -> how to talk to it.

One entry per driver name ties together a decoder factory, the serial settings
the device uses on the wire, and the simulator that emits its byte-exact stream.
Protocol modules add their entries to :data:`DRIVERS`; nothing else needs to know
which protocols exist.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from dataclasses import field

from devices.protocols.base import Decoder
from devices.simulators.base import Simulator


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """pyserial settings as the device expects them; a ``[[devices]]`` entry may override each."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False


@dataclass(frozen=True, slots=True)
class Driver:
    """How to decode, configure and simulate one kind of device.

    ``quiet_timeout`` is how long a connected device may stay silent before it is
    marked stale; ``poll_interval`` is set for request/response protocols whose
    decoder also implements :class:`devices.protocols.base.Conversation`.
    """

    name: str
    description: str
    decoder: t.Callable[[], Decoder]
    simulator: t.Callable[[str, int], Simulator]
    serial: SerialSettings = field(default_factory=SerialSettings)
    quiet_timeout: float = 5.0
    poll_interval: float | None = None


DRIVERS: dict[str, Driver] = {}


def register(driver: Driver) -> Driver:
    """Add ``driver`` to the registry; a second driver of the same name is a programming error."""
    if driver.name in DRIVERS:
        raise ValueError(f"driver {driver.name!r} registered twice")
    DRIVERS[driver.name] = driver
    return driver


def get(name: str) -> Driver:
    """The driver called ``name``; :class:`KeyError` naming the known drivers otherwise."""
    _load_protocols()
    try:
        return DRIVERS[name]
    except KeyError:
        known = ", ".join(sorted(DRIVERS))
        raise KeyError(f"unknown driver {name!r} (known: {known})") from None


def names() -> list[str]:
    """Every registered driver name, sorted."""
    _load_protocols()
    return sorted(DRIVERS)


PROTOCOL_MODULES: tuple[str, ...] = (
    "devices.protocols.datex",
    "devices.protocols.intellivue",
    "devices.protocols.hl7_monitor",
    "devices.protocols.nonin",
    "devices.protocols.masimo",
    "devices.protocols.suretemp",
    "devices.protocols.scales",
)


def _load_protocols() -> None:
    """Import each protocol module once; importing registers its drivers."""
    import importlib

    for module in PROTOCOL_MODULES:
        importlib.import_module(module)
