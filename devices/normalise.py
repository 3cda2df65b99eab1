"""Turn a decoder's Measurement into a Reading: canonical unit, MDC code, plausibility flag, two clocks.

Decoders report values exactly as the device sent them (``154.2 [lb_av]``,
``309.65 K``) so that a wrong conversion can never hide in a protocol module;
this is the one place where units change. Conversions are exact Decimal
arithmetic, and the result keeps the device's resolution: it is rounded to the
number of decimals the device sent plus :attr:`Conversion.extra_places` (half up, as a
device display rounds), enough
that converting back gives the device's number, without inventing precision
(``154.2 [lb_av]`` becomes ``69.94 kg``, ``98.6 [degF]`` becomes ``37.00 Cel``).

Values outside the metric's plausible range are kept and flagged
``implausible`` for the assistant to look at; they are never dropped. A
measurement without a value (the device said "no reading") stays without one
and keeps its flags.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP
from decimal import Decimal

from devices.nomenclature import METRICS
from devices.protocols.base import Measurement
from devices.reading import Reading

IMPLAUSIBLE = "implausible"


class NormaliseError(ValueError):
    """A measurement that cannot be normalised: unknown metric, unit or a non-finite value."""


@dataclass(frozen=True, slots=True)
class Conversion:
    """``canonical = (value + before) * factor + after``, rounded to the sent decimals + ``extra_places``."""

    factor: Decimal
    before: Decimal = Decimal(0)
    after: Decimal = Decimal(0)
    extra_places: int = 0


CONVERSIONS: dict[tuple[str, str], Conversion] = {
    ("[lb_av]", "kg"): Conversion(Decimal("0.45359237"), extra_places=1),
    ("g", "kg"): Conversion(Decimal("0.001"), extra_places=3),
    ("[in_i]", "cm"): Conversion(Decimal("2.54")),
    ("m", "cm"): Conversion(Decimal(100), extra_places=-2),
    ("mm", "cm"): Conversion(Decimal("0.1"), extra_places=1),
    ("K", "Cel"): Conversion(Decimal(1), after=Decimal("-273.15")),
    ("[degF]", "Cel"): Conversion(Decimal(5) / Decimal(9), before=Decimal(-32), extra_places=1),
    ("kPa", "mm[Hg]"): Conversion(Decimal("7.500615758"), extra_places=-1),
    ("mmHg", "mm[Hg]"): Conversion(Decimal(1)),
    ("{beats}/min", "/min"): Conversion(Decimal(1)),
    ("{beat}/min", "/min"): Conversion(Decimal(1)),
    ("{breaths}/min", "/min"): Conversion(Decimal(1)),
}
"""(unit as sent, canonical UCUM unit) -> conversion. Exact factors: 1 lb = 0.45359237 kg, 1 in = 2.54 cm."""


def convert(value: Decimal, unit: str, canonical: str) -> Decimal:
    """``value`` in ``unit`` expressed in ``canonical``, at the device's resolution.

    :raises NormaliseError: no conversion from ``unit`` to ``canonical`` is known, or ``value`` is not finite.
    """
    if not value.is_finite():
        raise NormaliseError(f"value {value} is not a number")
    if unit == canonical:
        return value
    try:
        conversion = CONVERSIONS[(unit, canonical)]
    except KeyError:
        raise NormaliseError(f"no conversion from {unit!r} to {canonical!r}") from None
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        raise NormaliseError(f"value {value} is not a number")
    places = max(0, -exponent + conversion.extra_places)
    result = (value + conversion.before) * conversion.factor + conversion.after
    return result.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def normalise(event: Measurement, *, device_id: str, station: str, host_time: dt.datetime,
              host_monotonic: float) -> Reading:
    """The Reading for ``event`` as received from ``device_id`` at ``station``.

    :param host_time: when the frame was decoded; must be timezone-aware and is stored in UTC, because
        a naive time on a clinic PC is local time and would be read back as UTC hours off.
    :param host_monotonic: the monotonic clock at the same moment, which orders readings across wall-clock jumps.
    :raises NormaliseError: unknown metric, unconvertible unit, non-finite value or naive ``host_time``.
    """
    metric = METRICS.get(event.metric)
    if metric is None:
        raise NormaliseError(f"unknown metric {event.metric!r}")
    if host_time.tzinfo is None or host_time.utcoffset() is None:
        raise NormaliseError("host_time must be timezone-aware")
    flags = event.flags
    value = None
    if event.value is not None:
        value = convert(event.value, event.unit, metric.unit.ucum)
        low, high = metric.plausible
        if not low <= value <= high:
            flags = flags | {IMPLAUSIBLE}
    return Reading(
        device_id=device_id,
        station=station,
        metric=metric.key,
        mdc_code=metric.mdc_code,
        value=value,
        unit=metric.unit.ucum,
        flags=frozenset(flags),
        device_time=event.device_time,
        host_time=host_time.astimezone(dt.UTC),
        host_monotonic=host_monotonic,
    )
