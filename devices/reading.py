"""The normalised reading the device layer hands to the server."""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement from one device, normalised to the metric's canonical unit.

    Two clocks, because device clocks drift and are never synchronised with the
    host: ``device_time`` is what the device said (``None`` when it sends no
    time), ``host_time`` is the UTC wall time the frame was decoded and
    ``host_monotonic`` orders readings even when the wall clock jumps.

    ``value`` keeps the device's precision (``Decimal("36.80")`` stays so) and is
    ``None`` when the device reported no reading; ``flags`` then say why
    (``sensor_off``, ``artifact``, ``no_data``, ``implausible``…).
    """

    device_id: str
    station: str
    metric: str
    mdc_code: int
    value: Decimal | None
    unit: str
    flags: frozenset[str]
    device_time: dt.datetime | None
    host_time: dt.datetime
    host_monotonic: float


def measurement_fields(reading: Reading) -> dict[str, t.Any]:
    """What was measured, as JSON-ready values: the part of a reading shared by every wire form.

    ``frontdesk devices probe --json`` prints exactly these; the gateway's upload
    adds the reading's identity, device, station and host time.
    """
    return {
        "metric": reading.metric,
        "mdc_code": reading.mdc_code,
        "value": None if reading.value is None else str(reading.value),
        "unit": reading.unit,
        "flags": sorted(reading.flags),
        "device_time": None if reading.device_time is None else reading.device_time.isoformat(),
    }
