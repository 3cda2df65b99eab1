"""Patients and appointments as the records system sends them.

Upserts are keyed by what the sender keys them by (MRN within its assigning
authority; appointment id within its source) so that replaying the same
message changes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db import UnitOfWork
from server.domain.visit import VisitState
from server.models import Appointment
from server.models import Insurance
from server.models import Patient
from server.models import Visit
from server.services.audit import AuditTrail
from server.services.context import Actor
from server.services.context import Clock


@dataclass(frozen=True)
class InsuranceRecord:
    """One coverage as received (IN1)."""

    payer_name: str
    member_id: str
    priority: int = 1
    payer_id: str = ""
    plan_name: str = ""
    group_number: str = ""
    subscriber_name: str = ""
    relationship_to_subscriber: str = "self"


@dataclass(frozen=True)
class PatientRecord:
    """Demographics as received (PID); empty strings mean "not sent"."""

    mrn: str
    mrn_authority: str
    family_name: str
    given_name: str
    middle_name: str = ""
    birth_date: dt.date | None = None
    sex: str = "U"
    address_line1: str = ""
    address_line2: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""
    country: str = ""
    phone: str = ""
    email: str = ""
    preferred_language: str = "en"
    insurance: tuple[InsuranceRecord, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class AppointmentRecord:
    """A booked slot as received (SCH, AIL, AIP)."""

    source: str
    external_id: str
    start_at: dt.datetime
    duration_minutes: int = 15
    provider_id: str = ""
    provider_name: str = ""
    location: str = ""
    appointment_type: str = ""
    status: str = "booked"


class Patients:
    """Writes patients and appointments, and opens the day's visits."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit

    def upsert(self, record: PatientRecord, *, actor: Actor) -> int:
        """Create or update a patient in its own transaction; returns the patient id."""
        with self.uow.begin() as session:
            return self.upsert_in(session, record, actor=actor)

    def upsert_in(self, session: Session, record: PatientRecord, *, actor: Actor) -> int:
        """:meth:`upsert` inside the caller's transaction (an inbound message is one transaction)."""
        now = self.clock.now()
        patient = session.scalar(select(Patient).where(Patient.mrn == record.mrn,
                                                       Patient.mrn_authority == record.mrn_authority))
        values = asdict(record)
        values.pop("insurance")
        created = patient is None
        if patient is None:
            patient = Patient(created_at=now, **values)
            session.add(patient)
        else:
            for key, value in values.items():
                setattr(patient, key, value)
        patient.updated_at = now
        if record.insurance:
            patient.insurance = [Insurance(**asdict(i)) for i in record.insurance]
        session.flush()
        self.audit.record(session, actor, "patient.created" if created else "patient.updated",
                          patient_id=patient.id, resource_type="patient", resource_id=patient.id)
        return patient.id

    def schedule_in(self, session: Session, patient_id: int, record: AppointmentRecord, *,
                    actor: Actor) -> int:
        """Create or update an appointment and its expected visit; returns the appointment id."""
        now = self.clock.now()
        appointment = session.scalar(select(Appointment).where(Appointment.source == record.source,
                                                               Appointment.external_id == record.external_id))
        values = asdict(record)
        if appointment is None:
            appointment = Appointment(patient_id=patient_id, updated_at=now, **values)
            session.add(appointment)
        else:
            for key, value in values.items():
                setattr(appointment, key, value)
            appointment.patient_id = patient_id
            appointment.updated_at = now
        session.flush()
        visit = session.scalar(select(Visit).where(Visit.appointment_id == appointment.id))
        if visit is None:
            session.add(Visit(patient_id=patient_id, appointment_id=appointment.id,
                              visit_number=f"V{appointment.id:08d}", state=VisitState.EXPECTED.value,
                              created_at=now, updated_at=now))
        self.audit.record(session, actor, "appointment.scheduled", patient_id=patient_id,
                          resource_type="appointment", resource_id=appointment.id)
        return appointment.id
