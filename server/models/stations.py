"""Vitals stations, the serial devices plugged into them and the gateways that read those devices."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON
from sqlalchemy import Column
from sqlalchemy import ForeignKey
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from server.models.base import Base
from server.models.base import DeviceCredential
from server.models.base import UTCDateTime


class Station(Base):
    """A vitals station (a room or a bay) where an assistant takes measurements."""

    __tablename__ = "station"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    location: Mapped[str] = mapped_column(String(128), default="")


class Device(Base):
    """A serial device and its last known status, as its reader (``serve`` or a station gateway) reported it.

    The row is what every process shows, so a second ``serve`` sees the same
    status as the one that reads the device. ``last_seen_at`` is when the reader
    last reported: a reader that falls silent makes its devices unknown, which
    the station page shows as disconnected rather than trusting an old
    "connected".
    """

    __tablename__ = "device"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    driver: Mapped[str] = mapped_column(String(32))
    port: Mapped[str] = mapped_column(String(256))
    station_id: Mapped[str | None] = mapped_column(ForeignKey("station.id"))
    serial_number: Mapped[str] = mapped_column(String(64), default="")
    connected: Mapped[bool] = mapped_column(default=False)
    stale: Mapped[bool] = mapped_column(default=False)
    last_frame_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    frames_accepted: Mapped[int] = mapped_column(default=0)
    frames_rejected: Mapped[int] = mapped_column(default=0)
    readings: Mapped[int] = mapped_column(default=0, server_default="0")
    unrecognised: Mapped[int] = mapped_column(default=0, server_default="0")
    reconnects: Mapped[int] = mapped_column(default=0)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    last_error: Mapped[str] = mapped_column(String(512), default="")
    reported_by: Mapped[str] = mapped_column(String(64), default="")
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


gateway_station = Table(
    "gateway_station",
    Base.metadata,
    Column("gateway_id", ForeignKey("gateway.id", ondelete="CASCADE"), primary_key=True),
    Column("station_id", ForeignKey("station.id", ondelete="CASCADE"), primary_key=True),
)
"""Which stations a gateway may send readings for."""


class Gateway(DeviceCredential, Base):
    """A station PC running ``frontdesk gateway``: a device principal with its own revocable token,
    bound to the stations it was registered for."""

    __tablename__ = "gateway"

    stations: Mapped[list[Station]] = relationship(secondary=gateway_station)
