"""What is measured and asked during a visit: observations and questionnaire responses."""

from __future__ import annotations

import datetime as dt
import typing as t

from sqlalchemy import JSON
from sqlalchemy import CheckConstraint
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy import text
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

    Charted rows (``final``) are never edited: a correction adds a new ``final``
    row whose ``replaces_id`` points at the old one, which becomes ``corrected``.
    ``entered`` keeps what the assistant typed, in the unit typed (``154 [lb_av]``).
    """

    __tablename__ = "observation"
    __table_args__ = (
        CheckConstraint("method IN ('device', 'manual', 'calculated')", name="method"),
        CheckConstraint("status IN ('preliminary', 'final', 'corrected', 'entered_in_error')", name="status"),
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
    method: Mapped[str] = mapped_column(String(12))
    device_id: Mapped[str | None] = mapped_column(String(64))
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    measured_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    device_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20), default="preliminary")
    session_id: Mapped[int | None] = mapped_column(ForeignKey("vitals_session.id"), index=True)
    entered_by: Mapped[str] = mapped_column(String(64), default="")
    entered: Mapped[str] = mapped_column(String(48), default="")
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("observation.id"))


class VitalsSession(Base):
    """An assistant taking one visit's vitals at one station, from "Take vitals" to "Send to chart".

    Only readings measured after ``started_at`` are offered (a reading from
    before the patient sat down belongs to nobody); ``not_before`` holds later
    per-metric starts after "Take again" or "Discard". ``captured`` keeps, per
    metric, the latest chartable reading offered to this session, so a probe
    taken off the finger a second before "Send to chart" does not lose the value
    it measured. At most one session per visit and one per station is ``open``
    (partial unique indexes): two assistants cannot chart one visit twice, and a
    station's readings belong to exactly one patient at a time. ``control_id``
    is the MSH-10 of the ORU that charted it.
    """

    __tablename__ = "vitals_session"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'charted', 'cancelled')", name="status"),
        Index("uq_vitals_session_open_visit", "visit_id", unique=True,
              sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
        Index("uq_vitals_session_open_station", "station_id", unique=True,
              sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"), index=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("station.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    started_by: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    captured: Mapped[dict[str, dict[str, t.Any]]] = mapped_column(JSON, default=dict)
    charted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    charted_by: Mapped[str] = mapped_column(String(64), default="")
    report_id: Mapped[str] = mapped_column(String(64), default="")
    control_id: Mapped[str] = mapped_column(String(32), default="")


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
