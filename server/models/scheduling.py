"""Appointments from the scheduler and the visits they become on the day."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey
from sqlalchemy import String
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from server.models.base import Base
from server.models.base import UTCDateTime
from server.models.patients import Patient


class Appointment(Base):
    """A booked slot, keyed by the scheduler's id (SCH-2, else SCH-1) within its source.

    The placer and filler appointment ids and the records system's visit number
    (PV1-19 of its SIU) are kept as sent, so the ADT we send on arrival can name
    the appointment in the records system's own terms.
    """

    __tablename__ = "appointment"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(128))
    external_id: Mapped[str] = mapped_column(String(128))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    provider_id: Mapped[str] = mapped_column(String(64), default="")
    provider_name: Mapped[str] = mapped_column(String(256), default="")
    provider_family: Mapped[str] = mapped_column(String(128), default="", server_default="")
    provider_given: Mapped[str] = mapped_column(String(128), default="", server_default="")
    provider_authority: Mapped[str] = mapped_column(String(64), default="", server_default="")
    placer_id: Mapped[str] = mapped_column(String(128), default="", server_default="")
    placer_authority: Mapped[str] = mapped_column(String(64), default="", server_default="")
    filler_id: Mapped[str] = mapped_column(String(128), default="", server_default="")
    filler_authority: Mapped[str] = mapped_column(String(64), default="", server_default="")
    visit_number: Mapped[str] = mapped_column(String(64), default="", server_default="")
    visit_authority: Mapped[str] = mapped_column(String(64), default="", server_default="")
    location: Mapped[str] = mapped_column(String(128), default="")
    start_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    duration_minutes: Mapped[int] = mapped_column(default=15)
    appointment_type: Mapped[str] = mapped_column(String(128), default="")
    status: Mapped[str] = mapped_column(String(32), default="booked")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    patient: Mapped[Patient] = relationship()


class Visit(Base):
    """A patient's encounter on the day; ``state`` moves only through :mod:`server.domain.visit`."""

    __tablename__ = "visit"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointment.id"), unique=True)
    visit_number: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    station_id: Mapped[str | None] = mapped_column(ForeignKey("station.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    patient: Mapped[Patient] = relationship()
    appointment: Mapped[Appointment | None] = relationship()
    transitions: Mapped[list[VisitTransition]] = relationship(
        back_populates="visit", order_by="VisitTransition.id", cascade="all, delete-orphan")


class VisitTransition(Base):
    """One state change of a visit: when, from what, to what, and who did it."""

    __tablename__ = "visit_transition"

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(64))

    visit: Mapped[Visit] = relationship(back_populates="transitions")
