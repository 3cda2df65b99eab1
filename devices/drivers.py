"""The driver table: driver name (as used in config and on the CLI) -> decoder, simulator, serial settings.

This module is the only place that knows which drivers exist. Each row pairs a
decoder factory from ``devices.protocols`` with a simulator factory from
``devices.simulators`` and the serial settings the device uses on the wire, so
a protocol module never imports its simulator (nor this table) and the import
graph has no cycle: protocols <- simulators <- drivers. Adding a driver is one
protocol module, one simulator module and one row in :data:`TABLE`.
"""

from __future__ import annotations

import functools
import math
import typing as t
from dataclasses import dataclass
from dataclasses import field

from devices.protocols import datex
from devices.protocols import hl7_monitor
from devices.protocols import intellivue
from devices.protocols import masimo
from devices.protocols import nonin
from devices.protocols import scales
from devices.protocols import suretemp
from devices.protocols.base import Decoder
from devices.simulators import datex as datex_sim
from devices.simulators import hl7_monitor as hl7_monitor_sim
from devices.simulators import intellivue as intellivue_sim
from devices.simulators import masimo as masimo_sim
from devices.simulators import nonin as nonin_sim
from devices.simulators import scales as scales_sim
from devices.simulators import suretemp as suretemp_sim
from devices.simulators.base import SCENARIOS
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
class Option:
    """A per-device decoder setting a ``[[devices]]`` entry may give, with the values it accepts.

    The first of ``choices`` is the default; the decoder factory receives the
    chosen value as the keyword argument ``key``.
    """

    key: str
    choices: tuple[str, ...]
    description: str

    @property
    def default(self) -> str:
        return self.choices[0]


@dataclass(frozen=True, slots=True)
class Driver:
    """How to decode, configure and simulate one kind of device.

    ``quiet_timeout`` is how long a connected device may stay silent before it is
    marked stale; ``poll_interval`` is set for request/response protocols whose
    decoder also implements :class:`devices.protocols.base.Conversation`.
    ``scenarios`` are what ``frontdesk simulate DRIVER --scenario`` accepts.
    ``hooks`` names the decoder's keyword arguments that the host application
    supplies (``acknowledge`` for monitors that want ACKs built by ``hl7``),
    as opposed to ``options`` set per device in configuration.
    """

    name: str
    description: str
    decoder: t.Callable[..., Decoder]
    simulator: t.Callable[[str, int], Simulator]
    serial: SerialSettings = field(default_factory=SerialSettings)
    quiet_timeout: float = 5.0
    poll_interval: float | None = None
    scenarios: tuple[str, ...] = SCENARIOS
    options: tuple[Option, ...] = ()
    hooks: tuple[str, ...] = ()

    def option(self, key: str) -> Option | None:
        """The option called ``key``, ``None`` if this driver has none of that name."""
        return next((option for option in self.options if option.key == key), None)


NONIN_QUIET_TIMEOUT = 3.0
"""Streaming Nonin formats send at least once a second; three silent seconds mean the link is gone."""

DF8_LAYOUT = Option("df8_layout", tuple(nonin.DF8_LAYOUTS),
                    "which DF8 bit map the oximeter uses (see devices.protocols.nonin.DF8_LAYOUTS)")


def _nonin(data_format: str, description: str, decoder: t.Callable[..., Decoder], *,
           quiet_timeout: float = NONIN_QUIET_TIMEOUT, options: tuple[Option, ...] = ()) -> Driver:
    return Driver(f"nonin-{data_format}", description, decoder,
                  functools.partial(nonin_sim.NoninSimulator, data_format), SerialSettings(9600),
                  quiet_timeout=quiet_timeout, scenarios=nonin_sim.SCENARIOS[data_format], options=options)


def _scale(kind: str, description: str, decoder: t.Callable[..., Decoder]) -> Driver:
    # A scale sends one record per weighing and nothing in between: silence says nothing about the link.
    return Driver(kind, description, decoder, functools.partial(scales_sim.ScaleSimulator, kind),
                  SerialSettings(9600), quiet_timeout=math.inf, scenarios=scales_sim.SCENARIOS[kind])


TABLE: tuple[Driver, ...] = (
    Driver("datex-as3", "GE Datex-Ohmeda S/5 computer interface: NIBP, SpO2, pulse, temperature",
           datex.DatexDecoder, datex_sim.DatexSimulator,
           SerialSettings(baudrate=19200, bytesize=8, parity="E", stopbits=1, rtscts=True),
           quiet_timeout=3.0 * datex.DEFAULT_INTERVAL + 2.0, poll_interval=1.0, scenarios=datex_sim.SCENARIOS),
    Driver("intellivue-mib", "Philips IntelliVue MIB/RS232 data export: NIBP, SpO2, pulse, temperature",
           intellivue.IntelliVueDecoder, intellivue_sim.IntelliVueSimulator,
           SerialSettings(baudrate=115200, bytesize=8, parity="N", stopbits=1),
           quiet_timeout=intellivue.LINK_TIMEOUT, poll_interval=0.5),
    Driver("hl7-monitor", "Monitor or gateway sending IHE PCD-01 ORU^R01 over MLLP "
                          "(serial, socket://HOST:PORT to dial it, listen://HOST:PORT to let it connect in)",
           hl7_monitor.Hl7MonitorDecoder, hl7_monitor_sim.Hl7MonitorSimulator,
           SerialSettings(baudrate=115200, bytesize=8, parity="N", stopbits=1),
           quiet_timeout=30.0, poll_interval=0.2, hooks=("acknowledge",)),
    _nonin("df2", "Nonin data format 2 (75 frames/s, 8-bit pleth, checksummed)",
           functools.partial(nonin.StreamDecoder, nonin.DF2)),
    _nonin("df7", "Nonin data format 7 (75 frames/s, 16-bit pleth, checksummed)",
           functools.partial(nonin.StreamDecoder, nonin.DF7)),
    _nonin("df8", "Nonin data format 8 (SpO2 and pulse once a second, no checksum)", nonin.Df8Decoder,
           options=(DF8_LAYOUT,)),
    # DF13 speaks only after a spot check, so silence says nothing about the link.
    _nonin("df13", "Nonin data format 13 (SmartPoint spot check with device time and memory replay)",
           nonin.Df13Decoder, quiet_timeout=math.inf),
    _nonin("ascii", "Nonin ASCII models (SPO2=ddd HR=ddd lines; Avant 9600/7500FO want 2 stop bits)",
           nonin.AsciiDecoder),
    Driver("masimo-ascii", "Masimo Rad-8 / Radical-7 / Rad-57 serial output, ASCII 1 mode",
           masimo.MasimoDecoder, masimo_sim.MasimoSimulator, SerialSettings(9600),
           quiet_timeout=masimo.QUIET_TIMEOUT),
    Driver("suretemp", "Welch Allyn SureTemp Plus OEM thermometer module (request/response)",
           suretemp.SureTempDecoder, suretemp_sim.SureTempSimulator, SerialSettings(9600),
           quiet_timeout=4 * suretemp.POLL_INTERVAL, poll_interval=suretemp.POLL_INTERVAL,
           scenarios=suretemp_sim.SCENARIOS),
    _scale("tanita", "Tanita WB-3000 / WB-8000RW / SC-240 / BD-815U (key,value lines)", scales.TanitaDecoder),
    _scale("ricelake", "Rice Lake 350-10 / RL550 (print line, or the BMI-mode report)", scales.RiceLakeDecoder),
    _scale("healthometer", "Health o meter ProPlus 1100KL-2700KL (ESC-delimited records)",
           scales.HealthOMeterDecoder),
)

DRIVERS: dict[str, Driver] = {driver.name: driver for driver in TABLE}


def register(driver: Driver) -> Driver:
    """Add ``driver`` to :data:`DRIVERS` (tests add stand-in drivers); a name used twice is a programming error."""
    if driver.name in DRIVERS:
        raise ValueError(f"driver {driver.name!r} registered twice")
    DRIVERS[driver.name] = driver
    return driver


def get(name: str) -> Driver:
    """The driver called ``name``; :class:`KeyError` naming the known drivers otherwise."""
    try:
        return DRIVERS[name]
    except KeyError:
        known = ", ".join(sorted(DRIVERS))
        raise KeyError(f"unknown driver {name!r} (known: {known})") from None


def names() -> list[str]:
    """Every driver name, sorted."""
    return sorted(DRIVERS)
