"""Patients and appointments as the records system sends them.

Upserts are keyed by what the sender keys them by (MRN within its assigning
authority; appointment id within its source) so that replaying the same
message changes nothing. They take :mod:`hl7.inbound` records, whose fields are
each *unchanged*, *cleared* or a value, and write only what changed: an
unchanged field keeps the stored value, a cleared one stores "no value" (the
empty string, or no date). This module knows columns, never HL7 field numbers.

Both upserts are safe when two connections create the same patient or
appointment at once (PostgreSQL): the insert is ``ON CONFLICT DO NOTHING``, so
the second waits for the first to commit, inserts nothing, and then finds and
updates the row the first created, in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields

from sqlalchemy import Insert
from sqlalchemy import String
from sqlalchemy import Update
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from hl7.inbound import CLEARED
from hl7.inbound import UNCHANGED
from hl7.inbound import AppointmentUpdate
from hl7.inbound import Coverage
from hl7.inbound import Identifier
from hl7.inbound import Marker
from hl7.inbound import PatientUpdate
from hl7.inbound import PersonName
from hl7.inbound import Provider
from hl7.model import Address
from hl7.model import Telephone
from server.db import UnitOfWork
from server.db import one_of
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
    """One coverage, every value known (seed data, tests)."""

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
    """A patient whose every detail is known (seed data, tests); empty strings mean "none"."""

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

    def as_update(self) -> PatientUpdate:
        """The same details as an update that sets every field."""
        return PatientUpdate(
            mrn=Identifier(self.mrn, self.mrn_authority),
            name=PersonName(self.family_name, self.given_name, self.middle_name),
            birth_date=CLEARED if self.birth_date is None else self.birth_date,
            sex=self.sex,
            address=Address(self.address_line1, self.address_line2, self.city, self.state, self.postal_code,
                            self.country),
            phone=_phone_update(self.phone),
            email=self.email,
            language=self.preferred_language,
            insurance=tuple(Coverage(**_values(plan)) for plan in self.insurance) or UNCHANGED,
        )


@dataclass(frozen=True)
class AppointmentRecord:
    """A booked slot whose every detail is known (seed data, tests)."""

    source: str
    external_id: str
    start_at: dt.datetime
    duration_minutes: int = 15
    provider_id: str = ""
    provider_name: str = ""
    location: str = ""
    appointment_type: str = ""
    status: str = "booked"

    def as_update(self) -> AppointmentUpdate:
        """The same details as an update that sets every field; the name is kept whole as the family name."""
        return AppointmentUpdate(
            source=self.source, key=self.external_id, start=self.start_at, filler_id=Identifier(self.external_id),
            duration_minutes=self.duration_minutes, provider=Provider(self.provider_id, self.provider_name),
            location=self.location, appointment_type=self.appointment_type, status=self.status)


_Row = dict[str, t.Any]


@dataclass
class _Table:
    """One table's rows as this transaction knows them.

    :param insert: the backend's ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` for the table.
    :param rows: rows read or written, by key; ``None`` when known not to exist.
    :param pending: rows created in this transaction but not yet inserted (their ids are already theirs).
    :param free_ids: ids reserved for rows still to be created.
    :param changed: changes to existing rows not yet written, by row id, later changes merged over earlier ones.
    """

    insert: Insert
    rows: dict[tuple[str, str], _Row | None] = field(default_factory=dict)
    pending: dict[tuple[str, str], _Row] = field(default_factory=dict)
    free_ids: list[int] = field(default_factory=list)
    changed: dict[int, _Row] = field(default_factory=dict)


class CreatedMeanwhile(Exception):
    """A row this transaction meant to create was created by another connection first: start over."""


@dataclass
class KnownRows:
    """What a group of inbound messages knows of its patients, appointments and new visits.

    The group reads all of its rows in two queries (:meth:`Patients.prefetch`)
    instead of two per message, and keeps them current as it goes, so a later
    message of the group sees what an earlier one did. New patients,
    appointments and visits get their ids up front and are inserted together by
    :meth:`write` (one statement per table instead of one per row), which the
    caller runs before anything reads those tables and before it commits.
    Changes to existing rows wait there too, merged per row, so a group of
    updates costs one batch per table rather than a round trip per message.

    :param moved_visits: visits to hand to another patient (a rebooked slot), by appointment id.
    """

    patients: _Table
    appointments: _Table
    visits: dict[int, _Row] = field(default_factory=dict)
    moved_visits: dict[int, _Row] = field(default_factory=dict)

    def forget(self) -> None:
        """Drop the rows read (after a change they do not follow, such as a merge); call :meth:`write` first."""
        self.patients.rows.clear()
        self.appointments.rows.clear()

    def write(self, session: Session) -> None:
        """Insert what is held (patients, then appointments, then visits), then write the changes held.

        :raises CreatedMeanwhile: if another connection created one of these patients or appointments since
            they were looked up; the caller rolls back and applies its messages one by one.
        """
        for table in (self.patients, self.appointments):
            if table.pending:
                rows = list(table.pending.values())
                if len(session.execute(table.insert, rows).all()) != len(rows):
                    raise CreatedMeanwhile(f"{len(rows)} rows to create, some already there")
                table.pending.clear()
        if self.visits:
            session.execute(_INSERT_VISIT, list(self.visits.values()))
            self.visits.clear()
        for table, statement in ((self.patients, _UPDATE_PATIENT), (self.appointments, _UPDATE_APPOINTMENT)):
            _update_many(session, statement, table.changed)
        _update_many(session, _MOVE_VISIT, self.moved_visits)


class PatientNotFound(LookupError):
    """No patient with that id."""


@dataclass(frozen=True)
class PatientSummary:
    """The minimum necessary about a patient for another system: identity, never contact or insurance."""

    id: int
    mrn: str
    family_name: str
    given_name: str
    birth_date: dt.date | None
    sex: str


class Patients:
    """Writes patients and appointments, and opens the day's visits."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit
        dialect = uow.engine.dialect.name
        self._sequences = dialect == "postgresql"
        self._insert_patient = _insert_if_new(PATIENT, ("mrn", "mrn_authority"), dialect)
        self._insert_appointment = _insert_if_new(APPOINTMENT, ("source", "external_id"), dialect)
        self._find_patients = select(PATIENT).where(PATIENT.c.mrn_authority == bindparam("find_authority"),
                                                    one_of(PATIENT.c.mrn, "find_mrns", dialect))
        self._find_appointments = select(APPOINTMENT).where(APPOINTMENT.c.source == bindparam("find_source"),
                                                            one_of(APPOINTMENT.c.external_id, "find_ids", dialect))

    def minimum(self, patient_id: int, *, actor: Actor) -> PatientSummary:
        """Who a patient is, audited as a read of their record.

        :raises PatientNotFound: for an unknown id.
        """
        with self.uow.begin() as session:
            row = session.get(Patient, patient_id)
            if row is None:
                raise PatientNotFound(patient_id)
            self.audit.record(session, actor, "patient.read", patient_id=row.id, resource_type="patient",
                              resource_id=row.id)
            return PatientSummary(row.id, row.mrn, row.family_name, row.given_name, row.birth_date, row.sex)

    def upsert(self, record: PatientRecord | PatientUpdate, *, actor: Actor) -> int:
        """Create or update a patient in its own transaction; returns the patient id."""
        with self.uow.begin() as session:
            return self.upsert_in(session, record, actor=actor)

    def prefetch(self, session: Session, patients: t.Iterable[Identifier], appointments: t.Iterable[tuple[str, str]],
                 *, reserve: bool = True) -> KnownRows:
        """Read the rows of these patients (MRN, authority) and appointments (source, id) in one query each and,
        with ``reserve``, reserve an id for each of them that does not exist yet."""
        known = self.new_known_rows()
        for authority, mrns in _grouped((p.authority, p.value) for p in patients).items():
            rows = session.execute(self._find_patients, {"find_authority": authority, "find_mrns": mrns})
            found = {row.mrn: dict(row._mapping) for row in rows}
            known.patients.rows.update({(mrn, authority): found.get(mrn) for mrn in mrns})
        for source, keys in _grouped(appointments).items():
            rows = session.execute(self._find_appointments, {"find_source": source, "find_ids": keys})
            found = {row.external_id: dict(row._mapping) for row in rows}
            known.appointments.rows.update({(source, key): found.get(key) for key in keys})
        for table, model in ((known.patients, PATIENT), (known.appointments, APPOINTMENT)):
            missing = sum(row is None for row in table.rows.values())
            if missing and reserve:
                table.free_ids = self._reserve_ids(session, model, missing)
        return known

    def new_known_rows(self) -> KnownRows:
        """Nothing known yet (for a transaction that reads as it goes)."""
        return KnownRows(_Table(self._insert_patient), _Table(self._insert_appointment))

    def _reserve_ids(self, session: Session, table: t.Any, count: int) -> list[int]:
        """``count`` ids for new rows of ``table``, unused by anyone else.

        PostgreSQL: from the table's sequence, like any insert. SQLite: after the
        highest id, which is safe because a transaction there holds the write
        lock from its first statement (see :mod:`server.db`).
        """
        if self._sequences:
            return list(session.scalars(text(f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) "
                                             "FROM generate_series(1, :count)"), {"count": count}))
        highest = session.scalar(select(func.coalesce(func.max(table.c.id), 0)))
        return list(range(int(t.cast(int, highest)) + 1, int(t.cast(int, highest)) + 1 + count))

    def upsert_in(self, session: Session, record: PatientRecord | PatientUpdate, *, actor: Actor,
                  known: KnownRows | None = None) -> int:
        """:meth:`upsert` inside the caller's transaction (an inbound message is one transaction).

        Written as plain statements rather than through the session's unit of
        work: this runs for every schedule and patient message, and the ORM's
        bookkeeping cost more than the SQL. Insurance is replaced when the
        update carries any. A patient merged into another (A40) is not revived:
        later messages about them are recorded against the surviving patient,
        whose details they do not change.
        """
        update_ = record.as_update() if isinstance(record, PatientRecord) else record
        now = self.clock.now()
        columns = _patient_columns(update_)
        mrn, authority = update_.mrn.value, update_.mrn.authority
        table = known.patients if known is not None else _Table(self._insert_patient)
        key = (mrn, authority)
        row, created = _find_or_create(
            session, known, table, key, _FIND_PATIENT, {"find_mrn": mrn, "find_authority": authority},
            {**_new_row(columns), "mrn": mrn, "mrn_authority": authority,
                                  "merged_into_id": None, "created_at": now, "updated_at": now})
        if created:
            patient_id, action = int(row["id"]), "patient.created"
        elif row["merged_into_id"] is not None:
            patient_id, action = int(row["merged_into_id"]), "patient.confirmed"
        else:
            patient_id = int(row["id"])
            changed = _changes(row, columns)
            if changed and key not in table.pending:
                _change(session, _UPDATE_PATIENT, patient_id, {**changed, "updated_at": now},
                        held=known.patients.changed if known is not None else None)
            row.update(changed)
            action = "patient.updated" if changed else "patient.confirmed"
        if not isinstance(update_.insurance, Marker) or update_.insurance is CLEARED:
            if known is not None:
                known.write(session)  # the plans refer to the patient row
            plans = () if isinstance(update_.insurance, Marker) else update_.insurance
            session.execute(_DELETE_INSURANCE, {"row_id": patient_id})
            if plans:
                session.execute(insert(INSURANCE), [{"patient_id": patient_id, **_values(plan)} for plan in plans])
            action = "patient.updated" if action == "patient.confirmed" else action
        self.audit.record(session, actor, action, patient_id=patient_id, resource_type="patient",
                          resource_id=patient_id)
        return patient_id

    def find_in(self, session: Session, identifier: Identifier) -> tuple[int, int | None] | None:
        """A patient's id and the id it was merged into, by MRN within its authority."""
        row = session.execute(_FIND_PATIENT, {"find_mrn": identifier.value,
                                              "find_authority": identifier.authority}).first()
        return None if row is None else (row.id, row.merged_into_id)

    def schedule_in(self, session: Session, patient_id: int, record: AppointmentRecord | AppointmentUpdate, *,
                    actor: Actor, known: KnownRows | None = None) -> int:
        """Create or update an appointment and, for a new one, its expected visit; returns the appointment id.

        With ``known``, a new appointment and its visit are held there until :meth:`KnownRows.write`.
        """
        update_ = record.as_update() if isinstance(record, AppointmentRecord) else record
        now = self.clock.now()
        columns = _appointment_columns(update_)
        fixed = {"patient_id": patient_id, "start_at": update_.start, "updated_at": now}
        table = known.appointments if known is not None else _Table(self._insert_appointment)
        key = (update_.source, update_.key)
        row, created = _find_or_create(
            session, known, table, key, _FIND_APPOINTMENT,
            {"find_source": update_.source, "find_external_id": update_.key},
            {**_new_row(columns), **fixed, "source": update_.source, "external_id": update_.key})
        appointment_id = int(row["id"])
        if created:
            visit = {"patient_id": patient_id, "appointment_id": appointment_id,
                     "visit_number": f"V{appointment_id:08d}", "state": VisitState.EXPECTED.value,
                     "created_at": now, "updated_at": now}
            if known is None:
                session.execute(_INSERT_VISIT, visit)
            else:
                known.visits[appointment_id] = visit
        elif key in table.pending:
            # Created earlier in this group and not inserted yet: change the row and its visit to be.
            row.update({**_changes(row, columns), **fixed})
            known_visit = known.visits[appointment_id] if known is not None else {}
            known_visit.update(patient_id=patient_id, updated_at=now)
        else:
            changed = _changes(row, columns)
            _change(session, _UPDATE_APPOINTMENT, appointment_id, {**changed, **fixed},
                    held=known.appointments.changed if known is not None else None)
            row.update(changed)
            # A slot rebooked for another patient takes its visit along, or staff and the ADT would name the wrong one.
            _change(session, _MOVE_VISIT, appointment_id,
                    {"patient_id": patient_id, "new_patient": patient_id, "updated_at": now},
                    held=known.moved_visits if known is not None else None)
        self.audit.record(session, actor, "appointment.scheduled", patient_id=patient_id,
                          resource_type="appointment", resource_id=appointment_id)
        return appointment_id


PATIENT = table_of(Patient)
INSURANCE = table_of(Insurance)
APPOINTMENT = table_of(Appointment)
VISIT = table_of(Visit)

# Built once; values come as parameters. Parameter names that are not column
# names (find_*, row_id) keep WHERE values apart from the values being written.
_FIND_PATIENT = select(PATIENT).where(PATIENT.c.mrn == bindparam("find_mrn"),
                                      PATIENT.c.mrn_authority == bindparam("find_authority"))
_UPDATE_PATIENT = update(PATIENT).where(PATIENT.c.id == bindparam("row_id"))
_DELETE_INSURANCE = delete(INSURANCE).where(INSURANCE.c.patient_id == bindparam("row_id"))
_FIND_APPOINTMENT = select(APPOINTMENT).where(APPOINTMENT.c.source == bindparam("find_source"),
                                              APPOINTMENT.c.external_id == bindparam("find_external_id"))
_UPDATE_APPOINTMENT = update(APPOINTMENT).where(APPOINTMENT.c.id == bindparam("row_id"))
_INSERT_VISIT = insert(VISIT)
_MOVE_VISIT = (update(VISIT)
               .where(VISIT.c.appointment_id == bindparam("row_id"), VISIT.c.patient_id != bindparam("new_patient")))

def _insert_if_new(table: t.Any, key: tuple[str, ...], dialect: str) -> Insert:
    """``INSERT … ON CONFLICT (key) DO NOTHING RETURNING id`` for the backend: the race-safe half of an upsert."""
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return make(table).on_conflict_do_nothing(index_elements=list(key)).returning(table.c.id)


_NAME_LENGTH = t.cast(String, APPOINTMENT.c.provider_name.type).length  # given and family together may be longer

# What a column holds when it has no value; a column not listed holds the empty string.
_NO_VALUE: dict[str, t.Any] = {"birth_date": None, "duration_minutes": 15, "status": "booked"}


def _look_up(session: Session, cache: dict[tuple[str, str], _Row | None], key: tuple[str, str], statement: t.Any,
              params: dict[str, str]) -> _Row | None:
    """The row for ``key``: from the transaction's cache when it was read before, else from the database."""
    if key not in cache:
        row = session.execute(statement, params).first()
        cache[key] = None if row is None else dict(row._mapping)
    return cache[key]


def _find_or_create(session: Session, known: KnownRows | None, table: _Table, key: tuple[str, str], find: t.Any,
                    params: dict[str, str], values: _Row) -> tuple[_Row, bool]:
    """The row for ``key``, found or created with ``values``; True when this call created it.

    With an id reserved for it, a new row is held in ``table`` for
    :meth:`KnownRows.write`; otherwise it is inserted at once (after anything
    held, whose reserved ids it must not take). When that insert finds the key
    taken (another connection created the row since our look-up, and has
    committed), that row is read and returned.
    """
    row = _look_up(session, table.rows, key, find, params)
    if row is not None:
        return row, False
    if table.free_ids:
        row = {**values, "id": table.free_ids.pop(0)}
        table.rows[key] = table.pending[key] = row
        return row, True
    if known is not None:
        known.write(session)
    created = session.execute(table.insert, values).scalar()
    if created is None:
        table.rows.pop(key, None)
        row = _look_up(session, table.rows, key, find, params)
        assert row is not None
        return row, False
    row = {**values, "id": created}
    table.rows[key] = row
    return row, True


def _change(session: Session, statement: Update, row_id: int, values: _Row, *, held: dict[int, _Row] | None) -> None:
    """Change an existing row at once or, given ``held`` (a :class:`KnownRows` map), merged there until
    :meth:`KnownRows.write`."""
    if held is None:
        session.execute(statement, {**values, "row_id": row_id})
    else:
        held.setdefault(row_id, {}).update(values)


def _update_many(session: Session, statement: Update, changes: dict[int, _Row]) -> None:
    """Write held changes (``{row id: values}``) and forget them: one batch per set of columns changed.

    Rows are taken in id order, so two groups changing the same rows lock them in the same order.
    """
    shapes: dict[tuple[str, ...], list[_Row]] = {}
    for row_id, values in sorted(changes.items()):
        shapes.setdefault(tuple(sorted(values)), []).append({**values, "row_id": row_id})
    for rows in shapes.values():
        session.execute(statement, rows)
    changes.clear()


def _new_row(columns: dict[str, t.Any]) -> _Row:
    """Column values for a new row: the values sent, and "no value" for the fields that were not."""
    return {name: _stored(name, value) for name, value in columns.items()}


def _grouped(pairs: t.Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """``(group, key)`` pairs as ``{group: [keys…]}``, each key once: one query per group."""
    grouped: dict[str, dict[str, None]] = {}
    for group, key in pairs:
        grouped.setdefault(group, {})[key] = None
    return {group: list(keys) for group, keys in grouped.items()}


def _stored(column: str, value: t.Any) -> t.Any:
    """What to write into ``column`` for a new row: the value, or the column's "no value"."""
    return _NO_VALUE.get(column, "") if isinstance(value, Marker) else value


def _changes(row: _Row, columns: dict[str, t.Any]) -> dict[str, t.Any]:
    """The columns an update changes: unchanged fields are left out, cleared ones become "no value"."""
    changed = {}
    for name, value in columns.items():
        if value is UNCHANGED:
            continue
        new = _stored(name, value)
        if row[name] != new:
            changed[name] = new
    return changed


def _spread(value: t.Any, names: tuple[str, ...], parts: t.Callable[[t.Any], tuple[t.Any, ...]]) -> dict[str, t.Any]:
    """One field that fills several columns: each column takes the field's marker, or its part of the value."""
    if isinstance(value, Marker):
        return dict.fromkeys(names, value)
    return dict(zip(names, parts(value), strict=True))


def _patient_columns(update_: PatientUpdate) -> dict[str, t.Any]:
    return {
        "family_name": update_.name.family,
        "given_name": update_.name.given,
        "middle_name": update_.name.middle,
        "birth_date": update_.birth_date,
        "sex": update_.sex,
        **_spread(update_.address, ("address_line1", "address_line2", "city", "state", "postal_code", "country"),
                  lambda a: (a.street, a.other, a.city, a.state, a.postal_code, a.country)),
        **_spread(update_.phone, ("phone", "phone_country_code", "phone_area_code", "phone_local_number",
                                  "phone_extension"),
                  lambda p: (p.text, p.country_code, p.area_code, p.local_number, p.extension)),
        "email": update_.email,
        "preferred_language": update_.language,
    }


def _appointment_columns(update_: AppointmentUpdate) -> dict[str, t.Any]:
    return {
        "duration_minutes": update_.duration_minutes,
        **_spread(update_.provider, ("provider_id", "provider_name", "provider_family", "provider_given",
                                     "provider_authority"),
                  lambda p: (p.id, p.display_name[:_NAME_LENGTH], p.family, p.given, p.authority)),
        "location": update_.location,
        "appointment_type": update_.appointment_type,
        "status": update_.status,
        **_spread(update_.placer_id, ("placer_id", "placer_authority"), lambda i: (i.value, i.authority)),
        **_spread(update_.filler_id, ("filler_id", "filler_authority"), lambda i: (i.value, i.authority)),
        **_spread(update_.visit_number, ("visit_number", "visit_authority"), lambda i: (i.value, i.authority)),
    }


def _phone_update(text: str) -> Telephone | Marker:
    return Telephone(text) if text else CLEARED


def _values(record: t.Any, exclude: tuple[str, ...] = ()) -> dict[str, t.Any]:
    """A record's fields as column values (shallow, unlike ``dataclasses.asdict``)."""
    return {f.name: getattr(record, f.name) for f in fields(record) if f.name not in exclude}
