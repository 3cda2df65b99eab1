"""Masimo Rad-8, Radical-7 and Rad-57 serial output in "ASCII 1" mode (driver ``masimo-ascii``).

One line a second, for example (Rad-8)::

    02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-%
    DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800

(one line on the wire, wrapped here).

Why the line is read as generic ``KEY=value`` tokens rather than with a fixed
pattern: the models differ (Radical-7 adds ``PVI=``, trend printouts say
``SpO2=`` and ``PR=``), and a fixed pattern written for one model silently
fails on another, while an integer-only filter nulls ``PI=03.60``. Every token is
kept in :class:`MasimoLine`; the ones with a metric in
:data:`devices.nomenclature.METRICS` (:data:`PARAMETERS`) become measurements.

Placeholders (``---``, ``--.-``, ``--``, ``+--``) and the ``000`` a trend shows
off patient are "no value", never zero. The ``EXC`` hex mask (Rad-8 manual p.
4-24) is decoded by :data:`EXCEPTIONS`; sensor problems, pulse search and
interference void the values, low perfusion and low signal IQ only flag them.
``ALARM=`` bits are not public and are kept raw only.

``PI`` (perfusion index, percent) is charted as ``perfusion_index``
(MDC_PULS_OXIM_PERF_REL); like SpO2 and pulse it is voided by the exceptions
above and ``00.00`` off patient is no value.

Sources: Rad-8 Operator's Manual (PDF in ``remkolems/masimo-datacapture``):
serial port 9600 8N1, ASCII 1 output, ``EXC`` bits p. 4-24; the line layout
from a public capture (``yahnatan/pulseox`` ``README.md``, five consecutive
lines of 2016-02-22), which is this driver's vendor sample; Radical-7's ``PVI``
field from ``mdpnp/mdpnp``
``devices/masimo/src/main/resources/org/mdpnp/devices/masimo/radical/masimo-radical-7.spec``.

Assumptions to verify on a device: the timestamp is ``MM/DD/YY`` (the US order
of the published sample); a device set to another date order would need its
own entry in :data:`DATE_FORMATS`. Lines end CR LF (the capture shows an empty
line between lines, as a terminal shows CR LF).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from decimal import InvalidOperation

from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.protocols.framing import ARTIFACT
from devices.protocols.framing import NO_DATA
from devices.protocols.framing import SENSOR_OFF
from devices.protocols.framing import ConditionTracker
from devices.protocols.framing import LineDecoder
from devices.protocols.framing import key_values

MAX_LINE = 512

PARAMETERS: dict[str, tuple[str | None, str]] = {
    "SPO2": ("spo2", "%"),
    "BPM": ("pulse_oximeter", "/min"),
    "PR": ("pulse_oximeter", "/min"),
    "PI": ("perfusion_index", "%"),
    "SPCO": (None, "%"),
    "SPMET": (None, "%"),
    "SPHB": (None, "g/dL"),
    "PVI": (None, "%"),
    "DESAT": (None, ""),
    "PIDELTA": (None, ""),
}
"""Key -> (METRICS key or None when no metric exists for it yet, UCUM unit). Keys not listed stay raw."""

ZERO_MEANS_ABSENT: frozenset[str] = frozenset({"SPO2", "BPM", "PR", "PI"})
"""Parameters whose zero is the off-patient display (``000``, ``00.00``), not a measured zero."""


@dataclass(frozen=True, slots=True)
class ExceptionBit:
    """One bit of the ``EXC`` mask."""

    mask: int
    flags: frozenset[str]
    voids: bool


def _exc(mask: int, voids: bool, *flags: str) -> ExceptionBit:
    return ExceptionBit(mask, frozenset(flags), voids)


EXCEPTIONS: tuple[ExceptionBit, ...] = (
    _exc(0x001, True, "no_sensor", SENSOR_OFF),
    _exc(0x002, True, "defective_sensor"),
    _exc(0x004, False, "low_perfusion"),
    _exc(0x008, True, "pulse_search"),
    _exc(0x010, True, ARTIFACT, "interference"),
    _exc(0x020, True, SENSOR_OFF),
    _exc(0x040, True, ARTIFACT, "ambient_light"),
    _exc(0x080, True, "unrecognised_sensor"),
    _exc(0x400, False, "low_signal_iq"),
    _exc(0x800, False),
)
"""EXC bits (Rad-8 manual p. 4-24). 0x800 (SET mode) is the normal state and raises no flag."""

KNOWN_EXCEPTION_BITS = sum(e.mask for e in EXCEPTIONS)

DATE_FORMATS: tuple[str, ...] = ("%m/%d/%y %H:%M:%S",)


@dataclass(frozen=True, slots=True)
class MasimoLine:
    """One parsed line: every ``KEY=value`` as sent, and what was made of it."""

    device_time: dt.datetime | None
    raw: dict[str, str]
    values: dict[str, Decimal | None]
    exception_flags: frozenset[str]
    voided: bool


class LineError(ValueError):
    """A line that is not an ASCII 1 line (reported as FrameRejected)."""


def _number(key: str, text: str) -> Decimal | None:
    text = text.rstrip("%")
    if text and set(text) <= {"-", "+", "."}:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise LineError(f"bad {key} value") from None
    if not value.is_finite():
        raise LineError(f"bad {key} value")
    if value == 0 and key in ZERO_MEANS_ABSENT:
        return None
    return value


def _exceptions(raw: str | None) -> tuple[frozenset[str], bool]:
    if raw is None:
        return frozenset(), False
    code = raw.partition(":")[0]
    try:
        mask = int(code, 16)
    except ValueError:
        raise LineError("bad EXC value") from None
    flags: set[str] = set()
    voided = False
    for entry in EXCEPTIONS:
        if mask & entry.mask:
            flags |= entry.flags
            voided = voided or entry.voids
    if mask & ~KNOWN_EXCEPTION_BITS:
        flags.add("unknown_exception")
    return frozenset(flags), voided


def _device_time(bare: list[str]) -> dt.datetime | None:
    stamp = " ".join(bare[:2])
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(stamp, fmt)
        except ValueError:
            continue
    return None


def parse_line(text: str) -> MasimoLine:
    """Parse one ASCII 1 line; raise :class:`LineError` if it is not one.

    >>> parse_line("02/22/16 22:47:45 SPO2=098% BPM=097 PI=03.60% EXC=000800").values["PI"]
    Decimal('3.60')
    """
    bare, raw = key_values(text)
    if "SPO2" not in raw and "BPM" not in raw and "PR" not in raw:
        raise LineError("no SpO2 or pulse field")
    values = {key: _number(key, value) for key, value in raw.items() if key in PARAMETERS}
    flags, voided = _exceptions(raw.get("EXC"))
    return MasimoLine(_device_time(bare), raw, values, flags, voided)


class MasimoDecoder(LineDecoder):
    """Line decoder for ``masimo-ascii``: one SpO2 and one pulse measurement per line."""

    max_line = MAX_LINE

    def __init__(self) -> None:
        super().__init__()
        self._conditions = ConditionTracker()

    def _line(self, line: bytes, out: list[Event]) -> None:
        try:
            parsed = parse_line(line.decode("ascii"))
        except LineError as error:
            out.append(FrameRejected(str(error), len(line)))
            return
        self._conditions.update(parsed.exception_flags, out)
        out.extend(self._measurements(parsed))

    @staticmethod
    def _measurements(parsed: MasimoLine) -> list[Event]:
        events: list[Event] = []
        seen: set[str] = set()
        for key, value in parsed.values.items():
            metric, unit = PARAMETERS[key]
            if metric is None or metric in seen:
                continue
            seen.add(metric)
            flags = parsed.exception_flags
            if value is None:
                flags |= {NO_DATA}
            shown = None if parsed.voided else value
            events.append(Measurement(metric, shown, unit, flags, parsed.device_time))
        return events


QUIET_TIMEOUT = 1.1
"""A line comes every second; OpenICE's 1.1 s quiet time catches a stopped stream within one period."""
