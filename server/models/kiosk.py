"""What the patient kiosk keeps: sessions, identification attempts, check-in codes, tickets, consents,
staff flags and demographic changes waiting for staff.

A kiosk session is server-side: the browser holds a random token whose
SHA-256 is stored here, so a timeout, a reset by the patient or a reset by
staff destroys it for real. Identification attempts store only a keyed hash
of the identity typed (last name and date of birth), never the values.
"""

from __future__ import annotations

import datetime as dt
import typing as t

from sqlalchemy import JSON
from sqlalchemy import CheckConstraint
from sqlalchemy import Date
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from server.models.base import Base
from server.models.base import UTCDateTime


class KioskSession(Base):
    """One patient's turn at a kiosk, from "Check in" to the last screen or a reset.

    ``draft`` holds what the patient has entered so far (answers, signatures,
    requested changes); it is written to the records only when the check-in
    completes, and discarded with the session otherwise.
    """

    __tablename__ = "kiosk_session"
    __table_args__ = (CheckConstraint("mode IN ('checkin', 'checkout')", name="mode"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kiosk_id: Mapped[int] = mapped_column(ForeignKey("kiosk_device.id"), index=True)
    mode: Mapped[str] = mapped_column(String(16), default="checkin")
    step: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(8), default="en")
    large_text: Mapped[bool] = mapped_column(default=False)
    idle_seconds: Mapped[int]
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visit.id"))
    failures: Mapped[int] = mapped_column(default=0)
    draft: Mapped[dict[str, t.Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str] = mapped_column(String(32), default="")


class LookupAttempt(Base):
    """One identification attempt, for rate limits per kiosk and per identity.

    ``identity_key`` is an HMAC of the normalised last name and date of birth
    (or of the code typed), so the table holds nothing a person could read back.
    """

    __tablename__ = "lookup_attempt"
    __table_args__ = (Index("ix_lookup_attempt_kiosk_at", "kiosk_id", "at"),
                      Index("ix_lookup_attempt_identity_at", "identity_key", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    kiosk_id: Mapped[int] = mapped_column(ForeignKey("kiosk_device.id"))
    identity_key: Mapped[str] = mapped_column(String(64))
    matched: Mapped[bool]
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class CheckinCode(Base):
    """A check-in code printed on a reminder letter: valid on the appointment's day, one check-in only."""

    __tablename__ = "checkin_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointment.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Ticket(Base):
    """The number a patient gets on checking in; the lobby screen calls numbers, never names."""

    __tablename__ = "ticket"
    __table_args__ = (UniqueConstraint("day", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"), unique=True)
    day: Mapped[dt.date] = mapped_column(Date)
    number: Mapped[int]
    kiosk_id: Mapped[int | None] = mapped_column(ForeignKey("kiosk_device.id"))
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ConsentSignature(Base):
    """A consent the patient signed (or chose to discuss with staff), with the exact version shown."""

    __tablename__ = "consent_signature"
    __table_args__ = (CheckConstraint("method IN ('typed', 'drawn', 'declined')", name="method"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    consent_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(8))
    method: Mapped[str] = mapped_column(String(16))
    signer_name: Mapped[str] = mapped_column(String(128), default="")
    drawing: Mapped[str] = mapped_column(Text, default="")
    signed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    kiosk_id: Mapped[int | None] = mapped_column(ForeignKey("kiosk_device.id"))


class StaffFlag(Base):
    """Something staff must see: an urgent questionnaire answer, a locked-out kiosk, a follow-up request.

    ``detail`` carries ids and codes only; the patient is linked by id and read
    through an audited service call.
    """

    __tablename__ = "staff_flag"
    __table_args__ = (CheckConstraint("priority IN ('urgent', 'high', 'normal')", name="priority"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    priority: Mapped[str] = mapped_column(String(8))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visit.id"))
    kiosk_id: Mapped[int | None] = mapped_column(ForeignKey("kiosk_device.id"))
    detail: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str] = mapped_column(String(64), default="")


class PendingChange(Base):
    """Contact or insurance details a patient changed at the kiosk, waiting for staff to approve or reject."""

    __tablename__ = "pending_change"
    __table_args__ = (CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visit.id"))
    changes: Mapped[dict[str, str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str] = mapped_column(String(64), default="")
