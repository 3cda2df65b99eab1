"""Clinic scales: Tanita (``tanita``), Rice Lake 350-10 / RL550 (``ricelake``), Health o meter ProPlus
(``healthometer``).

All three send one record when a weighing is done (or the print key is
pressed) and nothing in between, so silence says nothing about the link and
their drivers have no quiet timeout. Weight and height are reported in the unit
the scale sent (``kg`` or ``[lb_av]``, ``cm`` or ``[in_i]``);
:mod:`devices.normalise` converts them.

A weight of zero is an empty platform and a negative weight a zeroing or
load artifact (someone leaned on the scale while it zeroed): neither is a body
weight, so both become ``value=None`` with ``no_data`` or ``artifact``. A height
or BMI of zero means "not entered" and is left out.

**Tanita** (WB-3000, WB-8000RW, SC-240, BD-815U), 9600 8N1: comma-separated
``key,value`` pairs ending ``CS,xx`` CR LF, e.g.
``{0,16,~0,1,~1,1,~2,1,MO,"WB-3000",Hm,170.0,Wk,070.2,MI,24.3,CS,5C``.
Assumption to verify on a device: the ``CS`` algorithm is not public; we take
it to be the XOR of every byte from the start of the line up to and including
the comma before ``CS``, as two hex digits (:func:`tanita_checksum`). ``Hf`` is
taken to be height in decimal inches. The scale emits a stray signal about
0.1 s after its output; up to :data:`TANITA_STRAY_BYTES` non-text bytes before a
line are dropped without a report.

**Rice Lake**, 9600 8N1: the print key sends 21 characters,
``xxxxxxxxx uu mmmmm `` CR LF (weight right-aligned, ``lb``/``kg``, ``Gross``/``Net``);
:data:`RICELAKE_COLUMNS` is the layout.

**Health o meter ProPlus** (1100KL-2700KL), ESC-delimited:
``<ESC>R<ESC>I1234567890<ESC>W200.00<ESC>Nm<ESC>E``. Assumptions to verify on a
device: the baud rate is not published (9600 8N1 here); ``N`` is ``m`` for
metric and any other letter means pounds and inches; a record without ``N`` is
rejected, because a weight of unknown unit is off by a factor of 2.2 half the
time. The patient ID field (``I``) is never copied into an event.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from decimal import InvalidOperation

from devices.drivers import Driver
from devices.drivers import SerialSettings
from devices.drivers import register
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.protocols.framing import ARTIFACT
from devices.protocols.framing import NO_DATA
from devices.protocols.framing import ByteScanner
from devices.protocols.framing import LineDecoder
from devices.protocols.framing import hunt
from devices.simulators.base import Simulator


class RecordError(ValueError):
    """A record that does not follow the layout (reported as FrameRejected)."""


def _decimal(name: str, text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise RecordError(f"bad {name} value") from None
    if not value.is_finite():
        raise RecordError(f"bad {name} value")
    return value


def scale_measurement(metric: str, value: Decimal, unit: str, flags: frozenset[str] = frozenset()) -> Event | None:
    """The event for one scale value: weight <= 0 is flagged, height and BMI of 0 are "not entered"."""
    if metric != "weight":
        return None if value <= 0 else Measurement(metric, value, unit, flags)
    if value == 0:
        return Measurement(metric, None, unit, flags | {NO_DATA})
    if value < 0:
        return Measurement(metric, None, unit, flags | {ARTIFACT})
    return Measurement(metric, value, unit, flags)


def _collect(items: list[tuple[str, Decimal, str]], flags: frozenset[str] = frozenset()) -> list[Event]:
    events = [scale_measurement(metric, value, unit, flags) for metric, value, unit in items]
    return [event for event in events if event is not None]


class _LineScale(LineDecoder):
    """Line scales: a RecordError from the record parser becomes a rejection of the line."""

    def _line(self, line: bytes, out: list[Event]) -> None:
        try:
            out.extend(self._parse(line.decode("ascii")))
        except RecordError as error:
            out.append(FrameRejected(str(error), len(line)))

    def _parse(self, text: str) -> list[Event]:
        raise NotImplementedError


# ---- Tanita ---------------------------------------------------------------------------------------

TANITA_FIELDS: dict[str, tuple[str, str]] = {
    "Wk": ("weight", "kg"),
    "Wp": ("weight", "[lb_av]"),
    "Hm": ("height", "cm"),
    "Hf": ("height", "[in_i]"),
    "MI": ("bmi", "kg/m2"),
}
"""Tanita keys -> (METRICS key, UCUM unit as sent). Other keys (body composition, model) are skipped."""

TANITA_STRAY_BYTES = 2


def tanita_checksum(data: bytes) -> str:
    """The two hex digits expected after ``CS,`` for a line whose text before ``CS`` is ``data``."""
    value = 0
    for byte in data:
        value ^= byte
    return f"{value:02X}"


class TanitaDecoder(_LineScale):
    """Tanita ``key,value,...,CS,xx`` lines."""

    silent_noise = TANITA_STRAY_BYTES

    def _parse(self, text: str) -> list[Event]:
        head, sep, checksum = text.rpartition(",CS,")
        if not sep:
            raise RecordError("no checksum")
        if checksum.strip().upper() != tanita_checksum((head + ",").encode("ascii")):
            raise RecordError("bad checksum")
        items = head.split(",")
        if len(items) % 2:
            raise RecordError("unpaired key")
        pairs = dict(zip(items[0::2], items[1::2], strict=True))
        if "Wk" not in pairs and "Wp" not in pairs:
            raise RecordError("no weight field")
        found = [(metric, _decimal(key, pairs[key]), unit)
                 for key, (metric, unit) in TANITA_FIELDS.items() if key in pairs]
        return _collect(found)


def encode_tanita(fields: list[tuple[str, str]]) -> bytes:
    """A Tanita line from ``fields`` with its ``CS`` item and CR LF (the simulator's half)."""
    head = ",".join(f"{key},{value}" for key, value in fields) + ","
    return f"{head}CS,{tanita_checksum(head.encode('ascii'))}\r\n".encode("ascii")


# ---- Rice Lake ------------------------------------------------------------------------------------

RICELAKE_LINE = 19
RICELAKE_COLUMNS: dict[str, slice] = {"weight": slice(0, 9), "unit": slice(10, 12), "mode": slice(13, 18)}
RICELAKE_SPACES = (9, 12, 18)
RICELAKE_UNITS: dict[str, str] = {"LB": "[lb_av]", "KG": "kg"}
RICELAKE_MODES: dict[str, frozenset[str]] = {"GROSS": frozenset(), "NET": frozenset({"net_weight"})}
"""Gross is the platform load; Net has a tare (a wheelchair, a coat) taken off, worth flagging."""


class RiceLakeDecoder(_LineScale):
    """Rice Lake 21-character print lines."""

    max_line = 64

    def _parse(self, text: str) -> list[Event]:
        if len(text) != RICELAKE_LINE or any(text[i] != " " for i in RICELAKE_SPACES):
            raise RecordError("not a 21-character print line")
        unit = RICELAKE_UNITS.get(text[RICELAKE_COLUMNS["unit"]].strip().upper())
        mode = RICELAKE_MODES.get(text[RICELAKE_COLUMNS["mode"]].strip().upper())
        if unit is None:
            raise RecordError("unknown unit")
        if mode is None:
            raise RecordError("unknown mode")
        return _collect([("weight", _decimal("weight", text[RICELAKE_COLUMNS["weight"]]), unit)], mode)


def encode_ricelake(weight: Decimal, unit: str, mode: str) -> bytes:
    """A Rice Lake print line (``unit`` ``lb``/``kg``, ``mode`` ``Gross``/``Net``)."""
    return f"{weight:>9} {unit:<2} {mode:<5} \r\n".encode("ascii")


# ---- Health o meter -------------------------------------------------------------------------------

ESC = b"\x1b"
HOM_END = ESC + b"E"
HOM_MAX_FRAME = 256
HOM_RECORD_STARTS: tuple[bytes, ...] = (ESC + b"R", ESC + b"P")
"""``R`` opens a weighing record; ``P`` a reply to a settings query (no measurement)."""

HOM_FIELDS: dict[str, tuple[str, int]] = {"W": ("weight", 0), "H": ("height", 1), "B": ("bmi", 2)}
"""Field letter -> (METRICS key, index into the unit triple of :data:`HOM_UNITS`)."""

HOM_UNITS: dict[bool, tuple[str, str, str]] = {
    True: ("kg", "cm", "kg/m2"),
    False: ("[lb_av]", "[in_i]", "kg/m2"),
}
"""Metric (``Nm``) or not -> units of weight, height and BMI."""


class HealthOMeterDecoder(ByteScanner[Event]):
    """Health o meter ProPlus ESC-delimited records."""

    def __init__(self) -> None:
        super().__init__(HOM_MAX_FRAME, HOM_MAX_FRAME)

    def _scan(self, buf: bytearray, out: list[Event]) -> int:
        i = 0
        n = len(buf)
        while i < n:
            i, found = hunt(buf, ESC, i, self._discards, out)
            if not found:
                break
            end = buf.find(HOM_END, i + 1)
            size = end + len(HOM_END) - i if end >= 0 else n - i
            if size > HOM_MAX_FRAME:
                self._discards.add(1, "record too long", out)
                i += 1
                continue
            if end < 0:
                break
            record = bytes(buf[i:end])
            start = max(record.rfind(marker) for marker in HOM_RECORD_STARTS)
            if start < 0:
                self._discards.add(size, "no record start", out)
            else:
                if start:
                    self._discards.add(start, "no record start", out)
                self._discards.flush(out)
                self._record(record[start:], size - start, out)
            i += size
        return i

    def _record(self, record: bytes, size: int, out: list[Event]) -> None:
        try:
            text = record.decode("ascii")
            out.extend(self._fields(text))
        except (UnicodeDecodeError, RecordError) as error:
            reason = str(error) if isinstance(error, RecordError) else "not ASCII"
            out.append(FrameRejected(reason, size))

    @staticmethod
    def _fields(text: str) -> list[Event]:
        fields = {part[:1]: part[1:] for part in text.split("\x1b") if part}
        if "P" in fields and "R" not in fields:
            return []
        if "W" not in fields:
            raise RecordError("no weight field")
        if not fields.get("N"):
            raise RecordError("no unit field")
        units = HOM_UNITS[fields["N"] == "m"]
        found = [(metric, _decimal(letter, fields[letter]), units[slot])
                 for letter, (metric, slot) in HOM_FIELDS.items() if fields.get(letter, "").strip()]
        return _collect(found)


def encode_healthometer(weight: Decimal, height: Decimal | None, metric: bool, patient_id: str = "") -> bytes:
    """A ProPlus weighing record (the simulator's half of :data:`HOM_FIELDS`)."""
    parts = ["R", f"I{patient_id:<10}", f"W{weight:06.2f}"]
    if height is not None:
        parts.append(f"H{height:05.1f}")
    parts.append("Nm" if metric else "Ne")
    return b"".join(ESC + part.encode("ascii") for part in parts) + HOM_END


# ---- registration ---------------------------------------------------------------------------------


def _simulator(kind: str) -> Callable[[str, int], Simulator]:
    def make(scenario: str, seed: int) -> Simulator:
        # Imported here: the simulator builds its records with this module's encoders.
        from devices.simulators.scales import ScaleSimulator

        return ScaleSimulator(kind, scenario, seed)

    return make


_DECODERS: dict[str, tuple[Callable[[], TanitaDecoder | RiceLakeDecoder | HealthOMeterDecoder], str]] = {
    "tanita": (TanitaDecoder, "Tanita WB-3000 / WB-8000RW / SC-240 / BD-815U (key,value lines with CS)"),
    "ricelake": (RiceLakeDecoder, "Rice Lake 350-10 / RL550 (21-character print line)"),
    "healthometer": (HealthOMeterDecoder, "Health o meter ProPlus 1100KL-2700KL (ESC-delimited records)"),
}

for _name, (_factory, _description) in _DECODERS.items():
    register(
        Driver(
            name=_name,
            description=_description,
            decoder=_factory,
            simulator=_simulator(_name),
            serial=SerialSettings(baudrate=9600),
            quiet_timeout=math.inf,
        )
    )
