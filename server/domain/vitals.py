"""The rules of a vitals check, as pure functions: what a station page shows and what may be charted.

No database, no Flask, no clock: the service (:mod:`server.services.vitals`)
feeds these functions what it loaded and the time it read, so every rule here is
unit-tested on plain values.

* **Rows.** The page has one row per thing an assistant charts (SpO2, Pulse,
  Systolic …). A row takes its device value from one or more metrics (Pulse
  from an oximeter or a blood-pressure monitor) and, where a person can measure
  it by hand, has a typed field with the units people actually use.
* **Flags.** A device flag either only informs (low battery, low perfusion) or
  voids the value (artifact, sensor off, calibrating …). The list of flags that
  only inform is closed: a flag we do not know voids the value, because charting
  a number the device itself doubted is worse than asking the assistant to
  measure again.
* **Units.** Typed values are converted with the device layer's one table of
  exact UCUM factors (:func:`devices.normalise.convert`: 1 [lb_av] = 0.45359237
  kg, 1 [in_i] = 2.54 cm, degF by (F - 32) x 5/9), keeping the precision typed.
* **Checks.** A value outside the metric's plausible range (the table in
  :mod:`devices.nomenclature`) or far from the patient's last charted value is
  highlighted and needs the assistant's confirming click: never silently
  accepted, never silently refused.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP
from decimal import Decimal

from devices.nomenclature import METRICS
from devices.normalise import NormaliseError
from devices.normalise import convert

CLOCK_AHEAD = "clock_ahead"
CLOCK_AHEAD_LIMIT = dt.timedelta(minutes=5)
"""A device time further ahead of the host than this is not believed (flagged, ordered by host time)."""

INFORMATIVE_FLAGS: frozenset[str] = frozenset({
    "implausible", "low_battery", "battery_critical", "low_perfusion", "marginal_perfusion", "low_quality",
    "low_signal_iq", "fast_averaging", "event_marked", "spot_check_mode", "from_memory", "net_weight",
    "critical_low", "critical_high", "unit_assumed", "bad_device_time", CLOCK_AHEAD, "artifact", "probe_position",
})
"""Flags that leave a value chartable; every other flag voids it (see the module docstring).

``artifact`` and ``probe_position`` come with a value only where the vendor
documents that value as still the best reading (Nonin's displayed values during
motion, SureTemp's probe-position warning); decoders for devices that void
their values during artifact send the flag with no value.
"""

IN_PROGRESS_FLAGS: frozenset[str] = frozenset({"measuring", "in_progress", "inflating", "predicting"})
"""Flags by which a device says a measurement (a cuff inflating, a thermometer predicting) is under way."""

FLAG_TEXT: dict[str, str] = {
    "artifact": "Artifact", "sensor_off": "Sensor off", "no_data": "No reading", "no_sensor": "No sensor",
    "low_perfusion": "Low perfusion", "marginal_perfusion": "Marginal perfusion", "low_battery": "Low battery",
    "implausible": "Outside the plausible range", CLOCK_AHEAD: "Device clock is ahead; ordered by arrival time",
    "measuring": "Measuring…", "in_progress": "Measuring…", "inflating": "Measuring…", "predicting": "Measuring…",
    "out_of_track": "Signal lost", "pulse_search": "Searching for a pulse", "low_quality": "Low signal quality",
    "device_error": "Device error", "over_range": "Above the device's range", "under_range":
    "Below the device's range", "from_memory": "From the device's memory", "net_weight": "Net weight",
    "probe_position": "Check the probe position", "calibration_key": "Calibration check, not a patient reading",
    "old_result": "Measured over a minute ago", "calibrating": "Calibrating",
}


def flag_text(flag: str) -> str:
    """Human words for a device flag."""
    return FLAG_TEXT.get(flag, flag.replace("_", " ").capitalize())


def usable(value: Decimal | str | None, flags: tuple[str, ...] | frozenset[str] | list[str]) -> bool:
    """Whether a device value may be charted: it has a number and no flag that voids it."""
    return value is not None and set(flags) <= INFORMATIVE_FLAGS


def in_progress(flags: tuple[str, ...] | frozenset[str] | list[str]) -> bool:
    """Whether the flags say a measurement is under way."""
    return bool(set(flags) & IN_PROGRESS_FLAGS)


def believed_time(device_time: dt.datetime | None, host_time: dt.datetime) -> tuple[dt.datetime, bool]:
    """When a reading was measured, and whether the device clock was caught running ahead.

    A zone-less device time is never used (device clocks keep local time and
    drift). A zoned time more than :data:`CLOCK_AHEAD_LIMIT` after the host's
    receive time is impossible, so the host time is used instead and the reading
    is flagged: otherwise one device dated 2099 would stay "newest" forever and
    pin a stale value on the screen.
    """
    if device_time is None or device_time.tzinfo is None:
        return host_time, False
    if device_time - host_time > CLOCK_AHEAD_LIMIT:
        return host_time, True
    return device_time, False


@dataclass(frozen=True, slots=True)
class Typed:
    """How a row may be typed: the metric it is charted as and the units offered (canonical first)."""

    metric: str
    units: tuple[str, ...]
    low: Decimal | None = None
    high: Decimal | None = None
    integer: bool = False


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the station page.

    :param metrics: device metrics that fill it (Pulse from an oximeter or a blood-pressure monitor); when
        several devices offer one, the latest measured wins.
    :param typed: how it may be typed; ``None`` for device-only rows (SpO2) and BMI.
    """

    key: str
    label: str
    metrics: tuple[str, ...]
    typed: Typed | None

    @property
    def unit(self) -> str:
        """The UCUM unit its devices report in (BMI, fed by no device, in kg/m2)."""
        return METRICS[self.metrics[0]].unit.ucum if self.metrics else "kg/m2"


PAIN = "pain"

ROWS: tuple[Row, ...] = (
    Row("spo2", "SpO2", ("spo2",), None),
    Row("pulse", "Pulse", ("pulse_oximeter", "pulse_nibp"), Typed("pulse_nibp", ("/min",), integer=True)),
    Row("systolic", "Systolic", ("systolic",), Typed("systolic", ("mm[Hg]",), integer=True)),
    Row("diastolic", "Diastolic", ("diastolic",), Typed("diastolic", ("mm[Hg]",), integer=True)),
    Row("mean_arterial", "Mean arterial pressure", ("mean_arterial",), None),
    Row("perfusion_index", "Perfusion index", ("perfusion_index",), None),
    Row("temperature", "Temperature", ("temperature", "temperature_oral", "temperature_rectal",
                                       "temperature_axillary", "temperature_tympanic"),
        Typed("temperature", ("Cel", "[degF]"))),
    Row("respiration_rate", "Respiration rate", ("respiration_rate",),
        Typed("respiration_rate", ("/min",), integer=True)),
    Row("weight", "Weight", ("weight",), Typed("weight", ("kg", "[lb_av]"))),
    Row("height", "Height", ("height",), Typed("height", ("cm", "[in_i]"))),
    Row("bmi", "BMI", (), None),
    Row(PAIN, "Pain (0 to 10)", (), Typed(PAIN, ("{score}",), Decimal(0), Decimal(10), integer=True)),
)
ROW_BY_KEY: dict[str, Row] = {row.key: row for row in ROWS}
ROW_OF_METRIC: dict[str, Row] = {metric: row for row in ROWS for metric in row.metrics}

UNIT_TEXT: dict[str, str] = {
    "Cel": "°C", "[degF]": "°F", "kg": "kg", "[lb_av]": "lb", "cm": "cm", "[in_i]": "in", "/min": "/min",
    "mm[Hg]": "mmHg", "%": "%", "{score}": "", "kg/m2": "kg/m²",
}


def unit_text(ucum: str) -> str:
    """How a UCUM unit is shown to people."""
    return UNIT_TEXT.get(ucum, ucum)


PLAIN_NUMBER = re.compile(r"\d+(?:[.,]\d*)?|[.,]\d+")
"""What a typed value may look like: digits with one decimal point or comma. No sign, no exponent ("1e3"
is a slip, and HL7 NM has no exponent), no "NaN"."""


class EntryError(ValueError):
    """A typed value that cannot be used; the message is for the assistant, naming the field."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A typed value in the metric's canonical unit, and what was typed."""

    metric: str
    value: Decimal
    unit: str
    entered: str


def parse_entry(row: Row, text: str, unit: str) -> Entry | None:
    """The typed value of ``row``, converted to its canonical unit; ``None`` when the field is empty.

    :raises EntryError: for text that is not a number, a unit not offered, or a
        value outside a fixed scale (pain 0 to 10).
    """
    typed = row.typed
    text = text.strip()
    if typed is None or not text:
        return None
    if unit not in typed.units:
        raise EntryError(f"{row.label}: choose a unit from the list")
    if not PLAIN_NUMBER.fullmatch(text) or len(text) > 12:
        raise EntryError(f"{row.label}: enter a number, like {'98.6' if unit == '[degF]' else '72'}")
    number = Decimal(text.replace(",", "."))
    if typed.integer and number != number.to_integral_value():
        raise EntryError(f"{row.label}: enter a whole number")
    if typed.low is not None and typed.high is not None and not typed.low <= number <= typed.high:
        raise EntryError(f"{row.label}: enter a whole number from {typed.low} to {typed.high}")
    canonical = typed.units[0]
    try:
        value = convert(number, unit, canonical)
    except NormaliseError as exc:
        raise EntryError(f"{row.label}: {exc}") from None
    return Entry(typed.metric, value, canonical, f"{text} {unit}")


def bmi(weight_kg: Decimal, height_cm: Decimal) -> Decimal | None:
    """Body-mass index in kg/m2, to one decimal (as charts show it); ``None`` for a zero height."""
    if height_cm <= 0:
        return None
    metres = height_cm / Decimal(100)
    return (weight_kg / (metres * metres)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


LARGE_CHANGE: dict[str, tuple[Decimal, Decimal]] = {
    "weight": (Decimal(5), Decimal("0.10")),
    "height": (Decimal(5), Decimal(0)),
    **dict.fromkeys(("temperature", "temperature_oral", "temperature_rectal", "temperature_axillary",
                     "temperature_tympanic"), (Decimal("1.5"), Decimal(0))),
    "systolic": (Decimal(40), Decimal(0)),
    "diastolic": (Decimal(30), Decimal(0)),
    "pulse_oximeter": (Decimal(40), Decimal(0)),
    "pulse_nibp": (Decimal(40), Decimal(0)),
    "spo2": (Decimal(6), Decimal(0)),
    "respiration_rate": (Decimal(10), Decimal(0)),
}
"""metric -> (absolute change, relative change) beyond which a value is far from the last charted one.

Both must be exceeded for weight (5 kg *and* 10 %: a 5 kg change means little
for a heavy adult, much for a child); the others are absolute. Height over 5 cm
is a units mix-up far more often than growth between visits.
"""


def warnings(metric: str, value: Decimal, unit: str, last: tuple[Decimal, dt.datetime] | None) -> list[str]:
    """What needs the assistant's confirming click before ``value`` is charted, in plain words.

    :param last: the patient's last charted value of this metric and when it was measured.
    """
    found = []
    spec = METRICS.get(metric)
    if spec is not None:
        low, high = spec.plausible
        if not low <= value <= high:
            found.append(f"{value} {unit_text(unit)} is outside the plausible range "
                         f"{low} to {high} {unit_text(unit)}.")
    limits = LARGE_CHANGE.get(metric)
    if last is not None and limits is not None:
        previous, when = last
        change = abs(value - previous)
        absolute, relative = limits
        if change > absolute and (relative == 0 or change > relative * previous):
            found.append(f"Last charted {previous} {unit_text(unit)} on {when:%m/%d/%Y}: "
                         f"a change of {change} {unit_text(unit)}.")
    return found
