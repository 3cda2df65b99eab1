"""Stations and their devices as rows, so every process shows the same device status.

Whoever reads a device (the gateway inside ``serve``, or ``frontdesk gateway`` on
a station PC) reports its status here; pages in any ``serve`` read it back from
the database. A change of state (connected, stale, error, flags) is announced
on the station's live channel after commit; counters are written with the next
report without an announcement, since no page needs them to the second.

A reader that stops reporting (its process died, its network went) leaves rows
that claim "connected": :data:`REPORT_SILENCE` after its last report the device
is shown as not reporting instead.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from devices.status import DeviceStatus
from server.db import UnitOfWork
from server.live import Hub
from server.models import Device
from server.models import Station
from server.services.context import Clock

REPORT_SILENCE = dt.timedelta(seconds=10)
"""How long a device row is believed after its reader's last report."""


class StationNotFound(LookupError):
    """No station with that id."""


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """One device's status as its reader saw it (from :class:`devices.status.DeviceStatus`)."""

    device_id: str
    driver: str
    port: str
    station: str
    connected: bool
    stale: bool
    last_frame_at: dt.datetime | None
    frames_accepted: int
    frames_rejected: int
    reconnects: int
    last_error: str
    flags: tuple[str, ...]
    readings: int = 0
    unrecognised: int = 0

    @classmethod
    def from_status(cls, status: DeviceStatus, station: str) -> DeviceReport:
        """From the device layer's own snapshot (the gateway inside this process)."""
        return cls(status.device_id, status.driver, status.port, station, status.connected, status.stale,
                   status.last_frame_time, status.frames_accepted, status.frames_rejected, status.reconnects,
                   status.last_error or "", tuple(sorted(status.flags)), status.readings, status.unrecognised)

    @classmethod
    def from_json(cls, data: t.Any) -> DeviceReport:
        """From one item of ``POST /api/v1/devices/status`` (:func:`devices.uplink.status_to_json`).

        :raises ValueError: naming the first field that is wrong.
        """
        if not isinstance(data, dict):
            raise ValueError("device: must be an object")
        text = {}
        for key, limit in (("device_id", 64), ("driver", 32), ("port", 256), ("station", 64)):
            value = data.get(key)
            if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
                raise ValueError(f"{key}: must be a non-empty printable string of at most {limit} characters")
            text[key] = value
        numbers = {}
        for key in ("frames_accepted", "frames_rejected", "reconnects"):
            value = data.get(key)
            if type(value) is not int or value < 0:
                raise ValueError(f"{key}: must be a whole number")
            numbers[key] = value
        for key in ("readings", "unrecognised"):
            # Optional: gateways from before these counters existed do not send them.
            value = data.get(key, 0)
            if type(value) is not int or value < 0:
                raise ValueError(f"{key}: must be a whole number")
            numbers[key] = value
        flags = data.get("flags", [])
        if not isinstance(flags, list) or not all(isinstance(f, str) and len(f) <= 32 for f in flags):
            raise ValueError("flags: must be a list of short strings")
        last_frame = data.get("last_frame_time")
        try:
            last_frame_at = dt.datetime.fromisoformat(last_frame) if last_frame is not None else None
        except (TypeError, ValueError):
            raise ValueError("last_frame_time: must be an ISO 8601 time with offset or null") from None
        if last_frame_at is not None and last_frame_at.tzinfo is None:
            raise ValueError("last_frame_time: must carry a UTC offset")
        error = data.get("last_error") or ""
        if not isinstance(error, str):
            raise ValueError("last_error: must be a string or null")
        return cls(text["device_id"], text["driver"], text["port"], text["station"], bool(data.get("connected")),
                   bool(data.get("stale")), last_frame_at, numbers["frames_accepted"], numbers["frames_rejected"],
                   numbers["reconnects"], error, tuple(flags), numbers["readings"], numbers["unrecognised"])


def check_sender(allowed: frozenset[str], owners: t.Mapping[str, str | None], station: str, device_id: str) -> None:
    """Refuse a gateway's reading for a station it is not registered for, or from another station's device.

    :param owners: device id -> its station (:meth:`Stations.owners`).
    :raises ValueError: naming the field and why.
    """
    if station not in allowed:
        raise ValueError(f"station: this gateway is not registered for station {station!r}")
    owner = owners.get(device_id)
    if owner is not None and owner != station:
        raise ValueError(f"device_id: device {device_id!r} belongs to station {owner!r}")


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A device as staff see it; ``state`` is ``connected``, ``stale``, ``disconnected`` or ``silent``."""

    id: str
    driver: str
    port: str
    station_id: str | None
    state: str
    state_text: str
    connected: bool
    stale: bool
    last_frame_at: dt.datetime | None
    last_seen_at: dt.datetime | None
    frames_accepted: int
    frames_rejected: int
    reconnects: int
    last_error: str
    flags: tuple[str, ...]
    reported_by: str
    readings: int = 0
    unrecognised: int = 0

    def event(self) -> dict[str, t.Any]:
        """The live-update form (no patient data in it)."""
        return {"device_id": self.id, "state": self.state, "state_text": self.state_text,
                "last_error": self.last_error, "flags": list(self.flags)}


STATE_TEXT = {
    "connected": "Connected",
    "stale": "Connected, but no data lately",
    "disconnected": "Disconnected",
    "silent": "Not reporting (its gateway is silent)",
}


@dataclass(frozen=True, slots=True)
class StationSummary:
    """A station for the list page."""

    id: str
    name: str
    location: str
    devices: int


def _view(row: Device, now: dt.datetime) -> DeviceView:
    if row.last_seen_at is None or now - row.last_seen_at > REPORT_SILENCE:
        state = "silent"
    elif not row.connected:
        state = "disconnected"
    elif row.stale:
        state = "stale"
    else:
        state = "connected"
    return DeviceView(row.id, row.driver, row.port, row.station_id, state, STATE_TEXT[state], row.connected,
                      row.stale, row.last_frame_at, row.last_seen_at, row.frames_accepted, row.frames_rejected,
                      row.reconnects, row.last_error, tuple(row.flags), row.reported_by, row.readings,
                      row.unrecognised)


class Stations:
    """Station and device rows: filled from configuration and readers' reports, read by pages and the API."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock, live: Hub) -> None:
        self.uow = uow
        self.clock = clock
        self.live = live

    def all(self) -> list[StationSummary]:
        """Every station, by id, with its number of devices."""
        with self.uow.begin() as session:
            stations = session.scalars(select(Station).order_by(Station.id)).all()
            counts: dict[str | None, int] = {}
            for station_id in session.scalars(select(Device.station_id)):
                counts[station_id] = counts.get(station_id, 0) + 1
            return [StationSummary(s.id, s.name, s.location, counts.get(s.id, 0)) for s in stations]

    def get(self, station_id: str) -> StationSummary:
        """One station.

        :raises StationNotFound: for an unknown id.
        """
        for station in self.all():
            if station.id == station_id:
                return station
        raise StationNotFound(station_id)

    def devices(self, station_id: str | None = None) -> list[DeviceView]:
        """Devices (of one station, or all), by id, with their state as of now."""
        now = self.clock.now()
        query = select(Device).order_by(Device.id)
        if station_id is not None:
            query = query.where(Device.station_id == station_id)
        with self.uow.begin() as session:
            return [_view(row, now) for row in session.scalars(query)]

    def owners(self) -> dict[str, str | None]:
        """Device id -> station id, for checking what a gateway sends."""
        with self.uow.begin() as session:
            return {device_id: station for device_id, station in session.execute(select(Device.id, Device.station_id))}

    def configure(self, devices: t.Iterable[tuple[str, str, str, str]]) -> None:
        """Create the rows of configured ``(device id, driver, port, station)`` entries, and their stations."""
        with self.uow.begin() as session:
            for device_id, driver, port, station in devices:
                ensure_station(session, station)
                row = session.get(Device, device_id)
                if row is None:
                    row = Device(id=device_id, connected=False, stale=False, frames_accepted=0, frames_rejected=0,
                                 reconnects=0, flags=[], last_error="", serial_number="", reported_by="")
                    session.add(row)
                row.driver, row.port, row.station_id = driver, port, station

    def report(self, reports: t.Sequence[DeviceReport], *, reporter: str,
               stations: frozenset[str] | None = None) -> list[tuple[int, str]]:
        """Store readers' reports; announce each change of state on the station's channel.

        :param stations: the stations ``reporter`` may report for; ``None`` for the server's own gateway.
        :returns: ``(index, reason)`` for each report refused (a station the reporter is not bound to,
            or a device that belongs to another station).
        """
        now = self.clock.now()
        refused: list[tuple[int, str]] = []
        changed: list[DeviceView] = []
        with self.uow.begin() as session:
            for index, report in enumerate(reports):
                row = session.get(Device, report.device_id, with_for_update=True)
                try:
                    if stations is not None:
                        check_sender(stations, {report.device_id: row.station_id if row else None},
                                     report.station, report.device_id)
                except ValueError as exc:
                    refused.append((index, str(exc)))
                    continue
                ensure_station(session, report.station)
                if row is None:
                    row = Device(id=report.device_id, serial_number="")
                    session.add(row)
                before = _view(row, now) if row.last_seen_at is not None else None
                row.driver, row.port, row.station_id = report.driver, report.port, report.station
                row.connected, row.stale, row.last_frame_at = report.connected, report.stale, report.last_frame_at
                row.frames_accepted, row.frames_rejected = report.frames_accepted, report.frames_rejected
                row.readings, row.unrecognised = report.readings, report.unrecognised
                row.reconnects, row.last_error, row.flags = report.reconnects, report.last_error[:512], \
                    sorted(report.flags)
                row.reported_by, row.last_seen_at = reporter, now
                after = _view(row, now)
                if before is None or before.event() != after.event():
                    changed.append(after)
        for view in changed:
            self.live.publish(f"station:{view.station_id}", "device", view.event())
        return refused


def ensure_station(session: Session, station_id: str) -> None:
    """Create the station row on first mention (from configuration, a gateway or a reading)."""
    if session.get(Station, station_id) is None:
        session.add(Station(id=station_id, name=station_id, location=""))
        session.flush()
