"""Vitals stations, the serial devices plugged into them and the gateways that read those devices."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

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
    """A configured serial device (``[[devices]]``) and its last known status."""

    __tablename__ = "device"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    driver: Mapped[str] = mapped_column(String(32))
    port: Mapped[str] = mapped_column(String(256))
    station_id: Mapped[str | None] = mapped_column(ForeignKey("station.id"))
    serial_number: Mapped[str] = mapped_column(String(64), default="")
    connected: Mapped[bool] = mapped_column(default=False)
    last_frame_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    frames_accepted: Mapped[int] = mapped_column(default=0)
    frames_rejected: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(String(512), default="")


class Gateway(DeviceCredential, Base):
    """A station PC running ``frontdesk gateway``: a device principal with its own revocable token."""

    __tablename__ = "gateway"
