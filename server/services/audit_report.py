"""The accounting of disclosures: who viewed or changed one patient's data between two dates.

HIPAA lets a patient ask who has seen their record (45 CFR 164.528; the
access report of the proposed rule under 164.312(b)). Every read and write of
patient data leaves an audit row naming the patient's id, so the answer is a
query on the trail: the patient's rows between two days, with each staff
actor's username beside their id. Running the report reads patient data in
its turn and is audited like any other read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select

from server.db import UnitOfWork
from server.models import AuditEvent
from server.models import Patient
from server.models import StaffUser
from server.services.audit import AuditTrail
from server.services.context import Actor

MAX_DAYS = 3660
"""The longest period one report covers (ten years, beyond the six HIPAA keeps audit records for)."""

ACTION_TEXT = {
    "visit.listed": "Saw the visit on a list", "flag.viewed": "Saw a flag", "flag.raised": "Raised a flag",
    "flag.acknowledged": "Acknowledged a flag", "patient.change_viewed": "Saw a requested change",
    "patient.change_requested": "Asked to change details", "patient.change_approved": "Approved a change",
    "patient.change_rejected": "Rejected a change", "visit.arrived": "Checked in", "visit.roomed": "Roomed",
    "visit.expected": "Cancelled the check-in", "visit.checked_out": "Checked out", "visit.cancelled": "Cancelled",
    "visit.no_show": "Marked as not come", "visit.vitals_taken": "Vitals sent to chart",
    "audit.report": "Ran this report",
}
"""Human words for the commonest actions; others show their recorded name."""


class ReportError(ValueError):
    """A report cannot be made as asked; the message says what to change."""


@dataclass(frozen=True)
class AccessRow:
    """One access to the patient's data."""

    at: dt.datetime
    actor_type: str
    actor_id: str
    actor_name: str
    action: str
    description: str
    outcome: str
    resource: str
    address: str


@dataclass(frozen=True)
class AccessReport:
    """The report for one MRN: how many patient records it names (one per assigning authority) and the rows."""

    mrn: str
    start: dt.date
    end: dt.date
    patients: int
    rows: tuple[AccessRow, ...]


class AuditReports:
    """Builds access reports from the audit trail."""

    def __init__(self, *, uow: UnitOfWork, audit: AuditTrail, zone: dt.tzinfo = dt.UTC) -> None:
        self.uow = uow
        self.audit = audit
        self.zone = zone

    def accesses(self, mrn: str, start: dt.date, end: dt.date, *, actor: Actor) -> AccessReport:
        """Every audited access to the data of the patient(s) with ``mrn``, from ``start`` to ``end`` inclusive
        (clinic days), oldest first.

        :raises ReportError: for an empty MRN, ``end`` before ``start`` or a period over :data:`MAX_DAYS`.
        """
        mrn = mrn.strip()
        if not mrn or len(mrn) > 64:
            raise ReportError("Enter the patient's medical record number (MRN).")
        if end < start:
            raise ReportError("The end date is before the start date.")
        if (end - start).days > MAX_DAYS:
            raise ReportError(f"One report covers at most {MAX_DAYS} days; choose a shorter period.")
        since = dt.datetime.combine(start, dt.time(), tzinfo=self.zone)
        until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=self.zone)
        with self.uow.begin() as session:
            ids = list(session.scalars(select(Patient.id).where(Patient.mrn == mrn)))
            events = session.scalars(
                select(AuditEvent).where(AuditEvent.patient_id.in_(ids), AuditEvent.at >= since,
                                         AuditEvent.at < until)
                .order_by(AuditEvent.at, AuditEvent.id)).all() if ids else []
            staff_ids = {int(e.actor_id) for e in events if e.actor_type == "staff" and e.actor_id.isdigit()}
            names = {user_id: username for user_id, username in session.execute(
                select(StaffUser.id, StaffUser.username).where(StaffUser.id.in_(staff_ids)))}
            rows = tuple(AccessRow(
                e.at, e.actor_type, e.actor_id,
                names.get(int(e.actor_id), "") if e.actor_type == "staff" and e.actor_id.isdigit() else e.actor_id,
                e.action, ACTION_TEXT.get(e.action, e.action), e.outcome,
                f"{e.resource_type} {e.resource_id}".strip(), e.address) for e in events)
            for patient_id in ids:
                self.audit.record(session, actor, "audit.report", patient_id=patient_id, resource_type="patient",
                                  resource_id=patient_id, detail=f"from={start.isoformat()} to={end.isoformat()}")
        return AccessReport(mrn, start, end, len(ids), rows)
