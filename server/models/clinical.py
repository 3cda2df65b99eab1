"""What is measured and asked during a visit: observations and questionnaire responses."""

from __future__ import annotations

import datetime as dt
import typing as t

from sqlalchemy import JSON
from sqlalchemy import CheckConstraint
from sqlalchemy import ForeignKey
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from server.models.base import Base
from server.models.base import UTCDateTime


class Observation(Base):
    """One vital sign: live from a device (``preliminary``) until an assistant sends it (``final``).

    ``value`` is the decimal text as measured (``"36.80"`` keeps its precision);
    ``None`` when the device said "no reading", with the reason in ``flags``.
    ``reading_id`` makes gateway replays idempotent. ``measured_at`` is always a
    true UTC instant; ``device_time`` is the device's own clock as it reported it
    (zone-less device clocks are kept digit for digit).
    """

    __tablename__ = "observation"
    __table_args__ = (
        CheckConstraint("method IN ('device', 'manual')", name="method"),
        CheckConstraint("status IN ('preliminary', 'final', 'entered_in_error')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reading_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visit.id"), index=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    station_id: Mapped[str | None] = mapped_column(ForeignKey("station.id"), index=True)
    metric: Mapped[str] = mapped_column(String(32))
    code_system: Mapped[str] = mapped_column(String(16), default="MDC")
    code: Mapped[str] = mapped_column(String(32))
    value: Mapped[str | None] = mapped_column(String(32))
    unit: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(8))
    device_id: Mapped[str | None] = mapped_column(String(64))
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    measured_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    device_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20), default="preliminary")


class QuestionnaireResponse(Base):
    """A completed questionnaire: the answers as given, and the score computed on the server."""

    __tablename__ = "questionnaire_response"

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visit.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    questionnaire: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(16), default="en")
    answers: Mapped[dict[str, t.Any]] = mapped_column(JSON)
    score: Mapped[int | None]
    severity: Mapped[str | None] = mapped_column(String(64))
    completed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
