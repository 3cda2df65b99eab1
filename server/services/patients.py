"""Patients and appointments as the records system sends them.

Upserts are keyed by what the sender keys them by (MRN within its assigning
authority; appointment id within its source) so that replaying the same
message changes nothing.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields

from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from server.db import UnitOfWork
from server.domain.visit import VisitState
from server.models import Appointment
from server.models import Insurance
from server.models import Patient
from server.models import Visit
from server.models.base import table_of
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
        """:meth:`upsert` inside the caller's transaction (an inbound message is one transaction).

        Written as plain statements rather than through the session's unit of
        work: this runs for every schedule and patient message, and the ORM's
        bookkeeping cost more than the SQL. Only the fields that changed are
        written, with HL7's meaning of empty: an empty value was not sent and
        changes nothing, ``""`` (:data:`HL7_NULL`) clears the field. Insurance is
        replaced when the message carries any. A patient merged into another
        (A40) is not revived: later messages about them are recorded against the
        surviving patient, whose details they do not change.
        """
        now = self.clock.now()
        given = _values(record, exclude=("insurance",))
        sent = {key: value for key, value in given.items() if value not in ("", None)}
        row = session.execute(_FIND_PATIENT, {"find_mrn": record.mrn, "find_authority": record.mrn_authority}).first()
        if row is None:
            written = {key: _cleared(value) for key, value in given.items()}
            patient_id = _inserted_id(session.execute(_INSERT_PATIENT, {**written, "created_at": now,
                                                                        "updated_at": now}))
            action = "patient.created"
        elif row.merged_into_id is not None:
            patient_id = row.merged_into_id
            action = "patient.confirmed"
        else:
            patient_id = row.id
            changed = {key: _cleared(value) for key, value in sent.items() if row._mapping[key] != _cleared(value)}
            if changed:
                session.execute(_UPDATE_PATIENT, {**changed, "updated_at": now, "row_id": patient_id})
            action = "patient.updated" if changed else "patient.confirmed"
        if record.insurance:
            session.execute(_DELETE_INSURANCE, {"row_id": patient_id})
            session.execute(insert(INSURANCE),
                            [{"patient_id": patient_id, **_values(plan)} for plan in record.insurance])
            action = "patient.updated" if action == "patient.confirmed" else action
        self.audit.record(session, actor, action, patient_id=patient_id, resource_type="patient",
                          resource_id=patient_id)
        return patient_id

    def schedule_in(self, session: Session, patient_id: int, record: AppointmentRecord, *,
                    actor: Actor) -> int:
        """Create or update an appointment and, for a new one, its expected visit; returns the appointment id."""
        now = self.clock.now()
        values = {**_values(record), "patient_id": patient_id, "updated_at": now}
        appointment_id = session.scalar(_FIND_APPOINTMENT, {"find_source": record.source,
                                                            "find_external_id": record.external_id})
        if appointment_id is None:
            appointment_id = _inserted_id(session.execute(_INSERT_APPOINTMENT, values))
            session.execute(_INSERT_VISIT, {
                "patient_id": patient_id, "appointment_id": appointment_id,
                "visit_number": f"V{appointment_id:08d}", "state": VisitState.EXPECTED.value,
                "created_at": now, "updated_at": now})
        else:
            session.execute(_UPDATE_APPOINTMENT, {**values, "row_id": appointment_id})
            # A slot rebooked for another patient takes its visit along, or staff and the ADT would name the wrong one.
            session.execute(_MOVE_VISIT, {"patient_id": patient_id, "new_patient": patient_id, "updated_at": now,
                                          "row_id": appointment_id})
        self.audit.record(session, actor, "appointment.scheduled", patient_id=patient_id,
                          resource_type="appointment", resource_id=appointment_id)
        return appointment_id


PATIENT = table_of(Patient)
INSURANCE = table_of(Insurance)
APPOINTMENT = table_of(Appointment)

# Built once; values come as parameters. Parameter names that are not column
# names (find_*, row_id) keep WHERE values apart from the values being written.
_FIND_PATIENT = select(PATIENT).where(PATIENT.c.mrn == bindparam("find_mrn"),
                                      PATIENT.c.mrn_authority == bindparam("find_authority"))
_INSERT_PATIENT = insert(PATIENT)
_UPDATE_PATIENT = update(PATIENT).where(PATIENT.c.id == bindparam("row_id"))
_DELETE_INSURANCE = delete(INSURANCE).where(INSURANCE.c.patient_id == bindparam("row_id"))
_FIND_APPOINTMENT = select(APPOINTMENT.c.id).where(APPOINTMENT.c.source == bindparam("find_source"),
                                                   APPOINTMENT.c.external_id == bindparam("find_external_id"))
_INSERT_APPOINTMENT = insert(APPOINTMENT)
_UPDATE_APPOINTMENT = update(APPOINTMENT).where(APPOINTMENT.c.id == bindparam("row_id"))
VISIT = table_of(Visit)
_INSERT_VISIT = insert(VISIT)
_MOVE_VISIT = (update(VISIT)
               .where(VISIT.c.appointment_id == bindparam("row_id"), VISIT.c.patient_id != bindparam("new_patient")))

HL7_NULL = '""'
"""HL7's explicit null: the sender asks for the stored value to be removed."""


def _cleared(value: t.Any) -> t.Any:
    return "" if value == HL7_NULL else value


def _values(record: t.Any, exclude: tuple[str, ...] = ()) -> dict[str, t.Any]:
    """A record's fields as column values (shallow, unlike ``dataclasses.asdict``)."""
    return {f.name: getattr(record, f.name) for f in fields(record) if f.name not in exclude}


def _inserted_id(result: t.Any) -> int:
    return int(result.inserted_primary_key[0])
