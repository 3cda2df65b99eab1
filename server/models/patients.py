"""Patients and their insurance, as the records system sends them (ADT, SIU)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date
from sqlalchemy import ForeignKey
from sqlalchemy import String
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from server.models.base import Base
from server.models.base import UTCDateTime


class Patient(Base):
    """A person the clinic knows, identified by MRN within its assigning authority (PID-3 CX-1/CX-4)."""

    __tablename__ = "patient"
    __table_args__ = (UniqueConstraint("mrn", "mrn_authority"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mrn: Mapped[str] = mapped_column(String(64))
    mrn_authority: Mapped[str] = mapped_column(String(64))
    family_name: Mapped[str] = mapped_column(String(128))
    given_name: Mapped[str] = mapped_column(String(128))
    middle_name: Mapped[str] = mapped_column(String(128), default="")
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(1), default="U")
    address_line1: Mapped[str] = mapped_column(String(256), default="")
    address_line2: Mapped[str] = mapped_column(String(256), default="")
    city: Mapped[str] = mapped_column(String(128), default="")
    state: Mapped[str] = mapped_column(String(64), default="")
    postal_code: Mapped[str] = mapped_column(String(32), default="")
    country: Mapped[str] = mapped_column(String(64), default="")
    phone: Mapped[str] = mapped_column(String(64), default="")
    # The XTN components (XTN-5 to XTN-8) when the records system sent them; ``phone`` is the readable form.
    phone_country_code: Mapped[str] = mapped_column(String(8), default="", server_default="")
    phone_area_code: Mapped[str] = mapped_column(String(8), default="", server_default="")
    phone_local_number: Mapped[str] = mapped_column(String(16), default="", server_default="")
    phone_extension: Mapped[str] = mapped_column(String(16), default="", server_default="")
    email: Mapped[str] = mapped_column(String(256), default="")
    preferred_language: Mapped[str] = mapped_column(String(16), default="en")
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    insurance: Mapped[list[Insurance]] = relationship(
        back_populates="patient", order_by="Insurance.priority", cascade="all, delete-orphan")


class Insurance(Base):
    """One coverage of a patient (IN1); ``priority`` 1 is primary."""

    __tablename__ = "insurance"
    __table_args__ = (UniqueConstraint("patient_id", "priority"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    priority: Mapped[int] = mapped_column(default=1)
    payer_id: Mapped[str] = mapped_column(String(64), default="")
    payer_name: Mapped[str] = mapped_column(String(256))
    plan_name: Mapped[str] = mapped_column(String(256), default="")
    member_id: Mapped[str] = mapped_column(String(64))
    group_number: Mapped[str] = mapped_column(String(64), default="")
    subscriber_name: Mapped[str] = mapped_column(String(256), default="")
    relationship_to_subscriber: Mapped[str] = mapped_column(String(32), default="self")

    patient: Mapped[Patient] = relationship(back_populates="insurance")
