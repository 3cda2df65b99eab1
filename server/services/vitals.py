"""Live readings from the device layer, kept per station until an assistant charts them.

Streaming devices report every second; charting every value would flood the
chart and the table. What the station page needs is the latest value of each
metric of each device, so a new reading replaces the live (unconfirmed,
unassigned) row of its device and metric, and only if it is newer: a gateway
replaying its disk buffer after an outage cannot overwrite a fresher value.
``reading_id`` makes a replay of the same reading a no-op.
"""

from __future__ import annotations

import datetime as dt
import logging
import typing as t
from dataclasses import dataclass
from decimal import Decimal
from decimal import InvalidOperation

from sqlalchemy import select
from sqlalchemy.orm import Session

from devices.nomenclature import METRICS
from devices.reading import Reading
from server.db import UnitOfWork
from server.models import Observation
from server.models import Station
from server.services.context import Clock

log = logging.getLogger("frontdesk.vitals")

MAX_BATCH = 1000
VALUE_DIGITS = 32
"""The longest value text stored (``Observation.value``); no vital sign comes near it."""


class InvalidReading(ValueError):
    """A reading that cannot be stored; the message names the field."""


@dataclass(frozen=True)
class IncomingReading:
    """A reading as the server takes it: from the in-process gateway or the JSON API."""

    reading_id: str
    device_id: str
    station: str
    metric: str
    value: Decimal | None
    unit: str
    flags: tuple[str, ...]
    device_time: dt.datetime | None
    host_time: dt.datetime

    @property
    def measured_at(self) -> dt.datetime:
        """When the value was measured: the device's time if it carries a zone, else when we received it.

        Most device clocks keep local time without a zone and drift; charting
        such a time as UTC would shift the value by hours, so it is kept only as
        :attr:`device_time` and the host's UTC receive time is used instead.
        """
        if self.device_time is not None and self.device_time.tzinfo is not None:
            return self.device_time
        return self.host_time

    @classmethod
    def from_reading(cls, reading: Reading, reading_id: str) -> IncomingReading:
        """From the device layer's :class:`~devices.reading.Reading`."""
        return cls(reading_id, reading.device_id, reading.station, reading.metric, reading.value, reading.unit,
                   tuple(sorted(reading.flags)), reading.device_time, reading.host_time)

    @classmethod
    def from_json(cls, data: t.Any) -> IncomingReading:
        """From one item of ``POST /api/v1/readings``.

        :raises InvalidReading: naming the first field that is wrong.
        """
        if not isinstance(data, dict):
            raise InvalidReading("reading: must be an object")
        text = {key: _text(data, key, limit) for key, limit in
                (("reading_id", 64), ("device_id", 64), ("station", 64), ("metric", 32), ("unit", 32))}
        metric = METRICS.get(text["metric"])
        if metric is None:
            raise InvalidReading(f"metric: unknown metric {text['metric']!r}")
        if data.get("mdc_code") != metric.mdc_code:
            raise InvalidReading(f"mdc_code: {text['metric']} is {metric.mdc_code}")
        if text["unit"] != metric.unit.ucum:
            raise InvalidReading(f"unit: {text['metric']} is stored in {metric.unit.ucum}")
        raw_value = data.get("value")
        try:
            value = None if raw_value is None else Decimal(str(raw_value))
        except InvalidOperation:
            raise InvalidReading("value: must be a decimal string or null") from None
        if value is not None and not value.is_finite():
            raise InvalidReading("value: must be finite")
        if value is not None and len(str(value)) > VALUE_DIGITS:
            raise InvalidReading(f"value: at most {VALUE_DIGITS} characters")
        flags = data.get("flags", [])
        if not isinstance(flags, list) or not all(isinstance(f, str) and len(f) <= 32 for f in flags):
            raise InvalidReading("flags: must be a list of short strings")
        return cls(text["reading_id"], text["device_id"], text["station"], text["metric"], value, text["unit"],
                   tuple(sorted(flags)), _time(data, "device_time", optional=True),
                   t.cast(dt.datetime, _time(data, "host_time", optional=False)))


def _text(data: dict[str, t.Any], key: str, limit: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise InvalidReading(f"{key}: must be a non-empty printable string of at most {limit} characters")
    return value


def _time(data: dict[str, t.Any], key: str, *, optional: bool) -> dt.datetime | None:
    value = data.get(key)
    if value is None and optional:
        return None
    try:
        moment = dt.datetime.fromisoformat(t.cast(str, value))
    except (TypeError, ValueError):
        raise InvalidReading(f"{key}: must be an ISO 8601 time with offset") from None
    if moment.tzinfo is None and not optional:
        raise InvalidReading(f"{key}: must carry a UTC offset")
    return moment


def _as_stored(device_time: dt.datetime | None) -> dt.datetime | None:
    """A device time for the ``device_time`` column, which holds the device's clock digits as reported.

    A zone-less device time is stored with its digits unchanged (labelled UTC
    only because the column is zone-aware); :attr:`IncomingReading.measured_at`
    never uses such a time.
    """
    if device_time is None or device_time.tzinfo is not None:
        return device_time
    return device_time.replace(tzinfo=dt.UTC)


class Vitals:
    """Stores live readings and answers what a station currently shows."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock) -> None:
        self.uow = uow
        self.clock = clock

    def record(self, readings: t.Sequence[IncomingReading]) -> int:
        """Store a batch in one transaction; returns how many were new or already known (accepted)."""
        with self.uow.begin() as session:
            for reading in readings:
                self._record_one(session, reading)
        return len(readings)

    def live(self, station: str) -> list[Observation]:
        """The latest unconfirmed reading of every device and metric at ``station``."""
        with self.uow.begin() as session:
            return list(session.scalars(
                select(Observation).where(Observation.station_id == station, Observation.status == "preliminary",
                                          Observation.visit_id.is_(None))
                .order_by(Observation.metric, Observation.device_id)))

    def _record_one(self, session: Session, reading: IncomingReading) -> None:
        if session.scalar(select(Observation.id).where(Observation.reading_id == reading.reading_id)):
            return
        if session.get(Station, reading.station) is None:
            session.add(Station(id=reading.station, name=reading.station))
            session.flush()
        measured_at = reading.measured_at
        row = session.scalar(select(Observation).where(
            Observation.device_id == reading.device_id, Observation.metric == reading.metric,
            Observation.status == "preliminary", Observation.visit_id.is_(None)))
        if row is not None and row.measured_at > measured_at:
            return
        if row is None:
            row = Observation(device_id=reading.device_id, metric=reading.metric, method="device",
                              status="preliminary")
            session.add(row)
        metric = METRICS[reading.metric]
        row.reading_id = reading.reading_id
        row.station_id = reading.station
        row.code_system = "MDC"
        row.code = str(metric.mdc_code)
        row.value = None if reading.value is None else str(reading.value)
        row.unit = reading.unit
        row.flags = list(reading.flags)
        row.measured_at = measured_at
        row.device_time = _as_stored(reading.device_time)
        row.recorded_at = self.clock.now()
