"""Clinic scales: Tanita (``tanita``), Rice Lake 350-10 / RL550 (``ricelake``), Health o meter ProPlus
(``healthometer``).

All three send one record when a weighing is done (or the print key is
pressed) and nothing in between. Weight and height are reported in the unit the
scale sent (``kg``, ``g`` or ``[lb_av]``; ``cm`` or ``[in_i]``);
:mod:`devices.normalise` converts them.

A weight of zero is an empty platform and a negative weight a zeroing or
load artifact (someone leaned on the scale while it zeroed): neither is a body
weight, so both become ``value=None`` with ``no_data`` or ``artifact``. A height
or BMI of zero means "not entered" and is left out.

**Tanita** (WB-3000, WB-8000RW, SC-240, BD-815U), 9600 8N1: comma-separated
``key,value`` items ending CR LF.

* ``CS,xx`` closes the line of every model except the BD-815U: two hex digits
  of the 8-bit sum of every byte from the start of the line through the comma
  before ``CS``. Source: Tanita SC-240 Instruction Manual, "Connection with a
  personal computer", output sample p. 24 (``...,ZF,369.4,CS,FD``: the sum is
  0xFD; an XOR would give 0x35). The manual prints ", " between items; only
  "," alone gives that sum, so there is no space on the wire.
* The BD-815U sends ``{0,16,~0,1,MO,"BD-815",Wg,3972`` CR LF, weight in grams
  and no ``CS`` item (Tanita BD-815U Instruction Manual, "Output Data Format",
  pp. 22-23). A line without ``CS`` is accepted only when its model field is
  ``"BD-815"``; its Weight Gain (``Gg``) and Recall (``Rg``) outputs carry no
  body weight and are ignored.
* Keys: ``Wk`` kg, ``Wp`` lb, ``Wg`` g, ``Hm`` cm, ``Hf`` height in lb mode,
  ``MI`` BMI (WB-3000 Instruction Manual, "Output data", p. 10; SC-240 p. 24).
  Other keys (body composition, control data) are skipped.
* The WB-3000 manual (p. 10) says that in lb mode "all the height data is
  converted into ft-in": ``Hf`` is feet and inches. **Assumption to verify on
  a scale**: the separator is ``-`` (``5-07.5``), as Rice Lake prints
  ``6-01.0 FT``; the Tanita manual prints no lb-mode example. A plain number
  in ``Hf`` is rejected rather than guessed to be inches or feet.
* The scale emits a stray signal about 0.1 s after its output (WB-3000 p. 10);
  up to :data:`TANITA_STRAY_BYTES` non-text bytes before a line are dropped
  without a report.

Vendor samples: SC-240 p. 24 (with ``CS``) and BD-815U p. 23 (without). No
WB-3000 or WB-8000RW sample line is printed in their manuals.

**Rice Lake** 350-10 series, 9600 8N1 (350-10 Technical Manual §4.0-4.1):

* Print key, weight displayed: ``xxxxxxxxx<SP>uu<SP>mmmmm<SP><CR><LF>``, the
  weight right-aligned in 9 characters, ``lb``/``kg``, ``Gross``/``Net``. The
  manual's own Net example, ``<SP>x4 -10.0<SP>lb<SP><SP>Net<SP><SP><SP>``, is
  20 characters before CR LF, so the mode may follow one or two spaces.
* Print key in BMI mode: five lines, ``GROSS WEIGHT 215.0 LB``, ``TARE WEIGHT
  0.0 LB``, ``NET WEIGHT 215.0 LB``, ``PATIENT HEIGHT 6-01.0 FT``, ``PATIENT BMI
  28.4``. The net weight is the patient's (gross less tare), the height is feet
  and inches. **Assumption to verify on a scale**: in kg mode the same lines
  say ``KG`` and the height ``CM``.

**Health o meter ProPlus** (1100KL-2700KL), ESC-delimited, scale initiated
(ProPlus Operation Manual, "PC Communication Protocol", pp. 33-35):
``<ESC>R<ESC>I1234567890<ESC>W200.00<ESC>Nm<ESC>...<ESC>E``. ``W``/``H``/``T``/
``B`` weight, height, tare, BMI; ``N`` units, ``m`` metric or ``c``
"constitutional" (pounds and inches). A record without ``N``, or with another
letter, is rejected: a weight of unknown unit is off by a factor of 2.2 half
the time. ``W999.99`` (``999.9`` on older firmware) is the scale's report of an
overloaded or under-loaded platform (Rice Lake 160-10-7N Technical Manual,
§5.2.1, Table 5-2; 140-10-7 §8.3, the same escape protocol): no value, flag
``over_range``. The patient ID field (``I``) is never copied into an event.
**Assumption to verify on a scale**: the baud rate is not published (9600
8N1 here).
"""

from __future__ import annotations

import re
from decimal import Decimal
from decimal import InvalidOperation

from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.protocols.framing import ARTIFACT
from devices.protocols.framing import NO_DATA
from devices.protocols.framing import ByteScanner
from devices.protocols.framing import LineDecoder
from devices.protocols.framing import hunt
from devices.protocols.framing import sum8

OVER_RANGE = "over_range"
NET_WEIGHT = "net_weight"
INCHES_PER_FOOT = 12


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


FEET_INCHES = re.compile(r"(\d{1,2})-(\d{1,2}(?:\.\d+)?)")


def feet_inches(name: str, text: str) -> Decimal:
    """``6-01.0`` (feet, ``-``, inches) as inches (``73.0``); :class:`RecordError` if it is not that shape."""
    match = FEET_INCHES.fullmatch(text.strip())
    if match is None:
        raise RecordError(f"bad {name} value")
    inches = Decimal(match[2])
    if inches >= INCHES_PER_FOOT:
        raise RecordError(f"bad {name} value")
    return int(match[1]) * INCHES_PER_FOOT + inches


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
    "Wg": ("weight", "g"),
    "Hm": ("height", "cm"),
    "Hf": ("height", "[in_i]"),
    "MI": ("bmi", "kg/m2"),
}
"""Tanita keys -> (METRICS key, UCUM unit as sent). ``Hf`` is sent as feet-inches and reported in inches."""

TANITA_WEIGHTS = ("Wk", "Wp", "Wg")
TANITA_UNCHECKED_MODELS: frozenset[str] = frozenset({'"BD-815"'})
"""Models whose manual documents lines without a ``CS`` item."""
TANITA_NO_BODY_WEIGHT: frozenset[str] = frozenset({"Gg", "Rg"})
"""BD-815U Weight Gain and Recall outputs: a difference and a stored value, never today's weight."""

TANITA_STRAY_BYTES = 2


def tanita_checksum(data: bytes) -> str:
    """The two hex digits expected after ``CS,`` for a line whose text before ``CS`` is ``data``."""
    return f"{sum8(data):02X}"


def _tanita_pairs(text: str) -> dict[str, str]:
    items = text.split(",")
    if len(items) % 2:
        raise RecordError("unpaired key")
    return dict(zip(items[0::2], items[1::2], strict=True))


class TanitaDecoder(_LineScale):
    """Tanita ``key,value,...[,CS,xx]`` lines."""

    silent_noise = TANITA_STRAY_BYTES

    def _parse(self, text: str) -> list[Event]:
        head, sep, checksum = text.rpartition(",CS,")
        if sep:
            if checksum.strip().upper() != tanita_checksum((head + ",").encode("ascii")):
                raise RecordError("bad checksum")
            pairs = _tanita_pairs(head)
        else:
            pairs = _tanita_pairs(text)
            if set(pairs) <= TANITA_NO_BODY_WEIGHT:
                return []
            if pairs.get("MO") not in TANITA_UNCHECKED_MODELS:
                raise RecordError("no checksum")
        if not any(key in pairs for key in TANITA_WEIGHTS):
            raise RecordError("no weight field")
        found = []
        for key, (metric, unit) in TANITA_FIELDS.items():
            if key in pairs:
                value = feet_inches(key, pairs[key]) if key == "Hf" else _decimal(key, pairs[key])
                found.append((metric, value, unit))
        return _collect(found)


def encode_tanita(fields: list[tuple[str, str]], *, checksum: bool = True) -> bytes:
    """A Tanita line from ``fields`` with CR LF, and its ``CS`` item unless ``checksum`` is false (BD-815U)."""
    body = ",".join(f"{key},{value}" for key, value in fields)
    if not checksum:
        return f"{body}\r\n".encode("ascii")
    head = body + ","
    return f"{head}CS,{tanita_checksum(head.encode('ascii'))}\r\n".encode("ascii")


# ---- Rice Lake ------------------------------------------------------------------------------------

RICELAKE_PRINT = re.compile(r"(?P<weight>[ \-.0-9]{9}) (?P<unit>lb|kg) {1,2}(?P<mode>gross|net) *", re.IGNORECASE)
"""The print line: 9-character right-aligned weight, unit, mode after one or two spaces (§4.1)."""
RICELAKE_MAX_PRINT = 20
RICELAKE_UNITS: dict[str, str] = {"LB": "[lb_av]", "KG": "kg"}
RICELAKE_MODES: dict[str, frozenset[str]] = {"GROSS": frozenset(), "NET": frozenset({NET_WEIGHT})}
"""Gross is the platform load; Net has a tare (a wheelchair, a coat) taken off, worth flagging."""

RICELAKE_BMI_LINE = re.compile(r"(?P<label>GROSS WEIGHT|TARE WEIGHT|NET WEIGHT|PATIENT HEIGHT|PATIENT BMI) +"
                               r"(?P<value>-?[0-9.\-]+)(?: +(?P<unit>[A-Z]+))?", re.IGNORECASE)
"""One line of the BMI-mode report (§4.1, Table 4-2)."""
RICELAKE_HEIGHT_UNITS: dict[str, str] = {"FT": "[in_i]", "CM": "cm"}


class RiceLakeDecoder(_LineScale):
    """Rice Lake print lines and BMI-mode reports.

    The BMI report spreads one weighing over five lines; the tare line is
    remembered so that the net weight after it is flagged when a tare was taken.
    """

    max_line = 64

    def __init__(self) -> None:
        super().__init__()
        self._tare: Decimal | None = None

    def _parse(self, text: str) -> list[Event]:
        if len(text) <= RICELAKE_MAX_PRINT and (match := RICELAKE_PRINT.fullmatch(text)):
            self._tare = None
            unit = RICELAKE_UNITS[match["unit"].upper()]
            weight = _decimal("weight", match["weight"])
            return _collect([("weight", weight, unit)], RICELAKE_MODES[match["mode"].upper()])
        match = RICELAKE_BMI_LINE.fullmatch(text.strip())
        if match is None:
            raise RecordError("not a print line")
        return self._bmi_line(match["label"].upper(), match["value"], (match["unit"] or "").upper())

    def _bmi_line(self, label: str, value: str, unit: str) -> list[Event]:
        if label == "PATIENT BMI":
            return _collect([("bmi", _decimal("BMI", value), "kg/m2")])
        if label == "PATIENT HEIGHT":
            height_unit = RICELAKE_HEIGHT_UNITS.get(unit)
            if height_unit is None:
                raise RecordError("unknown unit")
            height = feet_inches("height", value) if unit == "FT" else _decimal("height", value)
            return _collect([("height", height, height_unit)])
        weight_unit = RICELAKE_UNITS.get(unit)
        if weight_unit is None:
            raise RecordError("unknown unit")
        weight = _decimal(label.lower(), value)
        if label == "GROSS WEIGHT":
            self._tare = None
            return []
        if label == "TARE WEIGHT":
            self._tare = weight
            return []
        flags = frozenset({NET_WEIGHT}) if self._tare else frozenset()
        self._tare = None
        return _collect([("weight", weight, weight_unit)], flags)


def encode_ricelake(weight: Decimal, unit: str, mode: str) -> bytes:
    """A Rice Lake print line (``unit`` ``lb``/``kg``, ``mode`` ``Gross``/``Net``), laid out as §4.1's examples."""
    if mode == "Net":
        return f"{weight:>9} {unit:<2}  {mode:<6}\r\n".encode("ascii")
    return f"{weight:>9} {unit:<2} {mode:<5} \r\n".encode("ascii")


def encode_ricelake_bmi(gross: Decimal, tare: Decimal, unit: str, height: str, height_unit: str,
                        bmi: Decimal) -> bytes:
    """The five-line BMI-mode report (§4.1); ``height`` as the scale prints it (``6-01.0`` for ``FT``)."""
    lines = [f"GROSS WEIGHT {gross} {unit}", f"TARE WEIGHT {tare} {unit}", f"NET WEIGHT {gross - tare} {unit}",
             f"PATIENT HEIGHT {height} {height_unit}", f"PATIENT BMI {bmi}"]
    return "".join(line + "\r\n" for line in lines).encode("ascii")


# ---- Health o meter -------------------------------------------------------------------------------

ESC = b"\x1b"
HOM_END = ESC + b"E"
HOM_MAX_FRAME = 256
HOM_RECORD_STARTS: tuple[bytes, ...] = (ESC + b"R", ESC + b"P")
"""``R`` opens a weighing record; ``P`` a reply to a settings query (no measurement)."""

HOM_FIELDS: dict[str, tuple[str, int]] = {"W": ("weight", 0), "H": ("height", 1), "B": ("bmi", 2)}
"""Field letter -> (METRICS key, index into the unit triple of :data:`HOM_UNITS`)."""

HOM_UNITS: dict[str, tuple[str, str, str]] = {
    "m": ("kg", "cm", "kg/m2"),
    "c": ("[lb_av]", "[in_i]", "kg/m2"),
}
"""``N`` letter (metric, "constitutional") -> units of weight, height and BMI."""

HOM_OUT_OF_RANGE: frozenset[Decimal] = frozenset({Decimal("999.99"), Decimal("999.9")})
"""The weight the escape protocol sends for an overloaded (or under-loaded) platform."""


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
                self.frames += 1
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
        if not fields.get("W", "").strip():
            raise RecordError("no weight field")
        if not fields.get("N"):
            raise RecordError("no unit field")
        units = HOM_UNITS.get(fields["N"])
        if units is None:
            raise RecordError("unknown unit")
        if _decimal("W", fields["W"]) in HOM_OUT_OF_RANGE:
            return [Measurement("weight", None, units[0], frozenset({OVER_RANGE}))]
        return _collect([(metric, _decimal(letter, fields[letter]), units[slot])
                         for letter, (metric, slot) in HOM_FIELDS.items() if fields.get(letter, "").strip()])


def encode_healthometer(weight: Decimal, height: Decimal | None, metric: bool, patient_id: str = "") -> bytes:
    """A ProPlus weighing record (the simulator's half of :data:`HOM_FIELDS`)."""
    parts = ["R", f"I{patient_id:<10}", f"W{weight:06.2f}"]
    if height is not None:
        parts.append(f"H{height:06.2f}")
    parts.append("Nm" if metric else "Nc")
    return b"".join(ESC + part.encode("ascii") for part in parts) + HOM_END
