"""Vitals: live device readings per station, and charting them for one patient.

**Live readings.** Streaming devices report every second; what a station page
needs is the latest value of each metric of each device, so a new reading
replaces the live (unassigned) row of its device and metric, and only if it
is newer: a gateway replaying its disk buffer after an outage cannot overwrite
a fresher value. ``reading_id`` makes a replay of the same reading a no-op. A
device clock running ahead is not believed (:func:`server.domain.vitals.believed_time`).

**Attach rules.** A reading belongs to a patient only through a vitals session:
"Take vitals" opens one for a visit at a station, and only readings measured
after that moment (and after a later "Take again" or "Discard" of that row)
are offered. A reading that arrives while no session is open at its station is
never attached to anyone. A station has at most one open session, so a
reading's patient is never ambiguous; a visit has at most one, so two
assistants cannot chart it twice.

**Charting.** "Send to chart" writes the final observations (device, typed or
calculated; device id, measured and recorded times, the assistant), queues the
IHE PCD-01 ORU^R01 and moves the visit to ``vitals_taken``, in one transaction
with its audit row. A correction adds new rows and sends the corrected values
with OBX-11 ``C``; charted rows are never edited.

Every committed change is announced on the station's live channel
(``station:<id>``) with ids, values and states, never names or birth dates.
"""

from __future__ import annotations

import datetime as dt
import logging
import typing as t
import uuid
from dataclasses import dataclass
from dataclasses import field
from decimal import Decimal
from decimal import InvalidOperation

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm import joinedload

from devices.nomenclature import METRICS
from devices.reading import Reading
from hl7.model import Channel
from hl7.model import Device as HL7Device
from hl7.model import Method
from hl7.model import VitalSign
from server.db import UnitOfWork
from server.domain import vitals as rules
from server.domain.visit import VisitState
from server.live import Hub
from server.models import Appointment
from server.models import Device
from server.models import Observation
from server.models import OutboxMessage
from server.models import Station
from server.models import Visit
from server.models import VitalsSession
from server.services.audit import AuditTrail
from server.services.context import Actor
from server.services.context import Clock
from server.services.messages import OutboundMessages
from server.services.stations import ensure_station
from server.services.visits import VisitNotFound
from server.services.visits import Visits

log = logging.getLogger("frontdesk.vitals")

MAX_BATCH = 1000
VALUE_DIGITS = 32
"""The longest value text stored (``Observation.value``); no vital sign comes near it."""

WAITING_STATES = (VisitState.ARRIVED.value, VisitState.ROOMED.value)

MDS = (69965, "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS")
"""Every device and the station are reported as a multi-parameter monitor MDS (PCD-01 device rows)."""

CHANNELS: dict[str, Channel] = {
    **dict.fromkeys(("spo2", "pulse_oximeter"),
                    Channel(69642, "MDC_DEV_ANALY_SAT_O2_VMD", 69643, "MDC_DEV_ANALY_SAT_O2_CHAN")),
    **dict.fromkeys(("systolic", "diastolic", "mean_arterial", "pulse_nibp"),
                    Channel(70686, "MDC_DEV_PRESS_BLD_NONINV_VMD", 70687, "MDC_DEV_PRESS_BLD_NONINV_CHAN")),
    **dict.fromkeys(("temperature", "temperature_oral"),
                    Channel(69902, "MDC_DEV_METER_TEMP_VMD", 69903, "MDC_DEV_METER_TEMP_CHAN")),
}
"""The VMD/channel of device metrics (OBX-4 ``n.v.1.m``); scale values are flattened under their MDS."""

PAIN_LOINC = ("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported")
"""Pain has no MDC term (devices.md §5), so it is charted and sent under LOINC alone."""


class InvalidReading(ValueError):
    """A reading that cannot be stored; the message names the field."""



@dataclass(frozen=True)
class Recorded:
    """What a batch of readings did: ``accepted`` taken (new, or older than a value already shown), and
    ``duplicates`` the server already held under the same ``reading_id``."""

    accepted: int
    duplicates: int

class VitalsConflict(Exception):
    """A station action that cannot be done as asked; the message is for the assistant."""


class SessionNotFound(LookupError):
    """No open vitals session with that id at that station (for this assistant)."""


@dataclass(frozen=True)
class IncomingReading:
    """A reading as the server takes it: from the in-process gateway or the JSON API."""

    reading_id: str
    device_id: str
    station: str
    metric: str
    value: Decimal | None
    unit: str
    flags: tuple[str, ...]
    device_time: dt.datetime | None
    host_time: dt.datetime

    @property
    def measured_at(self) -> dt.datetime:
        """When the value was measured: the device's time if it carries a zone and is believable,
        else when we received it (see :func:`server.domain.vitals.believed_time`)."""
        return rules.believed_time(self.device_time, self.host_time)[0]

    @property
    def stored_flags(self) -> list[str]:
        """The device's flags, plus ``clock_ahead`` when its time was not believed."""
        ahead = rules.believed_time(self.device_time, self.host_time)[1]
        return sorted({*self.flags, rules.CLOCK_AHEAD} if ahead else set(self.flags))

    @classmethod
    def from_reading(cls, reading: Reading, reading_id: str) -> IncomingReading:
        """From the device layer's :class:`~devices.reading.Reading`."""
        return cls(reading_id, reading.device_id, reading.station, reading.metric, reading.value, reading.unit,
                   tuple(sorted(reading.flags)), reading.device_time, reading.host_time)

    @classmethod
    def from_json(cls, data: t.Any) -> IncomingReading:
        """From one item of ``POST /api/v1/readings``.

        :raises InvalidReading: naming the first field that is wrong.
        """
        if not isinstance(data, dict):
            raise InvalidReading("reading: must be an object")
        text = {key: _text(data, key, limit) for key, limit in
                (("reading_id", 64), ("device_id", 64), ("station", 64), ("metric", 32), ("unit", 32))}
        metric = METRICS.get(text["metric"])
        if metric is None:
            raise InvalidReading(f"metric: unknown metric {text['metric']!r}")
        if data.get("mdc_code") != metric.mdc_code:
            raise InvalidReading(f"mdc_code: {text['metric']} is {metric.mdc_code}")
        if text["unit"] != metric.unit.ucum:
            raise InvalidReading(f"unit: {text['metric']} is stored in {metric.unit.ucum}")
        raw_value = data.get("value")
        try:
            value = None if raw_value is None else Decimal(str(raw_value))
        except InvalidOperation:
            raise InvalidReading("value: must be a decimal string or null") from None
        if value is not None and not value.is_finite():
            raise InvalidReading("value: must be finite")
        if value is not None and len(str(value)) > VALUE_DIGITS:
            raise InvalidReading(f"value: at most {VALUE_DIGITS} characters")
        flags = data.get("flags", [])
        if not isinstance(flags, list) or not all(isinstance(f, str) and len(f) <= 32 for f in flags):
            raise InvalidReading("flags: must be a list of short strings")
        return cls(text["reading_id"], text["device_id"], text["station"], text["metric"], value, text["unit"],
                   tuple(sorted(flags)), _time(data, "device_time", optional=True),
                   t.cast(dt.datetime, _time(data, "host_time", optional=False)))


def _text(data: dict[str, t.Any], key: str, limit: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise InvalidReading(f"{key}: must be a non-empty printable string of at most {limit} characters")
    return value


def _time(data: dict[str, t.Any], key: str, *, optional: bool) -> dt.datetime | None:
    value = data.get(key)
    if value is None and optional:
        return None
    try:
        moment = dt.datetime.fromisoformat(t.cast(str, value))
    except (TypeError, ValueError):
        raise InvalidReading(f"{key}: must be an ISO 8601 time with offset") from None
    if moment.tzinfo is None and not optional:
        raise InvalidReading(f"{key}: must carry a UTC offset")
    return moment


def _as_stored(device_time: dt.datetime | None) -> dt.datetime | None:
    """A device time for the ``device_time`` column, which holds the device's clock digits as reported.

    A zone-less device time is stored with its digits unchanged (labelled UTC
    only because the column is zone-aware); :attr:`IncomingReading.measured_at`
    never uses such a time.
    """
    if device_time is None or device_time.tzinfo is not None:
        return device_time
    return device_time.replace(tzinfo=dt.UTC)


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# Page models ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveValue:
    """A device value on a row: what it is, where it came from and how much to trust it."""

    metric: str
    device_id: str
    value: str | None
    unit: str
    flags: tuple[str, ...]
    measured_at: dt.datetime
    device_time: dt.datetime | None
    reading_id: str

    @property
    def usable(self) -> bool:
        return rules.usable(self.value, self.flags)

    @property
    def in_progress(self) -> bool:
        return rules.in_progress(self.flags)

    def event(self, station: str) -> dict[str, t.Any]:
        """The live-update form: ids, values and states only."""
        row = rules.ROW_OF_METRIC.get(self.metric)
        return {"station": station, "row": row.key if row else None, "metric": self.metric,
                "device_id": self.device_id, "value": self.value, "unit": self.unit,
                "unit_text": rules.unit_text(self.unit), "flags": list(self.flags),
                "flag_text": list(dict.fromkeys(rules.flag_text(f) for f in self.flags
                                                if f not in rules.IN_PROGRESS_FLAGS)),
                "usable": self.usable,
                "in_progress": self.in_progress, "measured_at": _iso(self.measured_at),
                "device_time": _iso(self.device_time), "reading_id": self.reading_id}


@dataclass(frozen=True)
class WaitingPatient:
    """A patient waiting for vitals at the station's clinic; holds patient data (callers are audited)."""

    visit_id: int
    name: str
    birth_date: dt.date | None
    start_at: dt.datetime | None
    location: str
    state_text: str
    busy: str


@dataclass(frozen=True)
class RowView:
    """One row of an open session: the captured device value, the live state, and the typed field."""

    row: rules.Row
    captured: LiveValue | None
    current: LiveValue | None
    since: dt.datetime


@dataclass(frozen=True)
class OpenSession:
    """The assistant's open vitals session at the station, with the patient shown for identification."""

    id: int
    visit_id: int
    patient_name: str
    birth_date: dt.date | None
    started_at: dt.datetime
    rows: tuple[RowView, ...]


@dataclass(frozen=True)
class ChartedValue:
    """One charted value, for the "sent to chart" summary and corrections."""

    observation_id: int
    row: rules.Row
    metric: str
    value: str
    unit: str
    method: str
    device_id: str | None
    measured_at: dt.datetime
    status: str


@dataclass(frozen=True)
class ChartedSession:
    """A charted session: its values and where its ORU^R01 stands."""

    id: int
    visit_id: int
    patient_name: str
    birth_date: dt.date | None
    charted_at: dt.datetime
    delivery: str
    values: tuple[ChartedValue, ...]


@dataclass(frozen=True)
class StationPage:
    """Everything a station page shows."""

    station_id: str
    name: str
    waiting: tuple[WaitingPatient, ...]
    session: OpenSession | None
    charted: tuple[ChartedSession, ...]


@dataclass(frozen=True)
class Draft:
    """What the assistant submitted: per row the typed text, its unit and whether the field holds the
    device value (``device``) or their own typing (``typed``), and the rows whose warnings they confirmed.

    ``shown`` holds, per row, the id of the device reading the page showed (empty: none). When a row is in
    it, only that reading is charted: a newer one that arrived while the form was on its way is never sent
    unseen; the page shows it and asks again.
    """

    fields: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    confirmed: frozenset[str] = frozenset()
    shown: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChartOutcome:
    """The result of "Send to chart": charted with its MSH-10, or what must be fixed or confirmed first."""

    control_id: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)

    @property
    def charted(self) -> bool:
        return bool(self.control_id)


@dataclass(frozen=True)
class _Value:
    """A value about to be charted."""

    row: rules.Row
    metric: str
    value: Decimal
    unit: str
    method: str
    measured_at: dt.datetime
    device_id: str | None = None
    device_time: dt.datetime | None = None
    flags: tuple[str, ...] = ()
    entered: str = ""


DELIVERY_TEXT = {
    "sent": "Delivered to the records system.",
    "pending": "Queued: the records system has not answered yet; it will be sent as soon as it does.",
    "sending": "Being delivered to the records system.",
    "dead": "The records system refused it; the front desk has been alerted (Outbox page).",
    "discarded": "Not delivered: discarded on the Outbox page.",
}


class Vitals:
    """Stores live readings, shows a station's state and charts vitals."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock, live: Hub, audit: AuditTrail, visits: Visits,
                 messages: OutboundMessages) -> None:
        self.uow = uow
        self.clock = clock
        self.hub = live
        self.audit = audit
        self.visits = visits
        self.messages = messages

    # Live readings -------------------------------------------------------------------------------

    def record(self, readings: t.Sequence[IncomingReading]) -> Recorded:
        """Store a batch in one transaction, then announce it; says how many were taken and how many the
        server already held (a gateway's replay after a lost answer: same ``reading_id``, nothing changes)."""
        announced: list[LiveValue] = []
        duplicates = 0
        with self.uow.begin() as session:
            for reading in readings:
                if session.scalar(select(Observation.id).where(Observation.reading_id == reading.reading_id)):
                    duplicates += 1
                    continue
                stored = self._record_one(session, reading)
                if stored is not None:
                    announced.append(stored)
        stations = {reading.reading_id: reading.station for reading in readings}
        for value in announced:
            station = stations[value.reading_id]
            self.hub.publish(f"station:{station}", "reading", value.event(station))
        return Recorded(len(readings) - duplicates, duplicates)

    def of_visit(self, visit_id: int, *, actor: Actor) -> list[Observation]:
        """Every observation of a visit, live and charted, oldest first; audited as a read of the patient's.

        :raises VisitNotFound: for an unknown visit.
        """
        with self.uow.begin() as session:
            visit = session.get(Visit, visit_id)
            if visit is None:
                raise VisitNotFound(visit_id)
            self.audit.record(session, actor, "observation.listed", patient_id=visit.patient_id,
                              resource_type="visit", resource_id=visit.id)
            return list(session.scalars(select(Observation).where(Observation.visit_id == visit_id)
                                        .order_by(Observation.measured_at, Observation.id)))

    def live(self, station: str) -> list[Observation]:
        """The latest unassigned reading of every device and metric at ``station``."""
        with self.uow.begin() as session:
            return list(session.scalars(_live_query(station).order_by(Observation.metric, Observation.device_id)))

    def _record_one(self, session: Session, reading: IncomingReading) -> LiveValue | None:
        ensure_station(session, reading.station)
        measured_at = reading.measured_at
        row = session.scalar(select(Observation).where(
            Observation.device_id == reading.device_id, Observation.metric == reading.metric,
            Observation.status == "preliminary", Observation.visit_id.is_(None)))
        if row is not None and row.measured_at > measured_at:
            return None
        if row is None:
            row = Observation(device_id=reading.device_id, metric=reading.metric, method="device",
                              status="preliminary")
            session.add(row)
        metric = METRICS[reading.metric]
        row.reading_id = reading.reading_id
        row.station_id = reading.station
        row.code_system = "MDC"
        row.code = str(metric.mdc_code)
        row.value = None if reading.value is None else str(reading.value)
        row.unit = reading.unit
        row.flags = reading.stored_flags
        row.measured_at = measured_at
        row.device_time = _as_stored(reading.device_time)
        row.recorded_at = self.clock.now()
        value = _live_value(row)
        if value.usable:
            self._capture(session, reading.station, value)
        return value

    def _capture(self, session: Session, station: str, value: LiveValue) -> None:
        """Offer a chartable reading to the station's open session, if it was measured after the session
        (and its row) started and is newer than what the session holds."""
        vitals = session.scalar(select(VitalsSession).where(VitalsSession.station_id == station,
                                                            VitalsSession.status == "open"))
        if vitals is None or value.measured_at <= _since(vitals, value.metric):
            return
        held = vitals.captured.get(value.metric)
        if held is not None and dt.datetime.fromisoformat(held["measured_at"]) > value.measured_at:
            return
        vitals.captured = {**vitals.captured, value.metric: {
            "device_id": value.device_id, "value": value.value, "unit": value.unit, "flags": list(value.flags),
            "measured_at": _iso(value.measured_at), "device_time": _iso(value.device_time),
            "reading_id": value.reading_id}}

    # The station page ----------------------------------------------------------------------------

    def station_page(self, station_id: str, *, actor: Actor) -> StationPage:
        """The station's waiting patients, the actor's open session there, and today's charted sessions.

        Every patient shown is audited (a PHI read).
        """
        today = self.visits.today()
        start = dt.datetime.combine(today, dt.time(), tzinfo=self.visits.zone)
        end = start + dt.timedelta(days=1)
        with self.uow.begin() as session:
            station = session.get(Station, station_id)
            if station is None:
                raise SessionNotFound(station_id)
            open_sessions = {s.visit_id: s for s in session.scalars(
                select(VitalsSession).where(VitalsSession.status == "open"))}
            visits = session.scalars(
                select(Visit).join(Appointment).where(Appointment.start_at >= start, Appointment.start_at < end,
                                                      Visit.state.in_(WAITING_STATES))
                .order_by(Appointment.start_at, Visit.id)
                .options(joinedload(Visit.patient), joinedload(Visit.appointment))).all()
            waiting = []
            for visit in visits:
                busy = open_sessions.get(visit.id)
                waiting.append(WaitingPatient(
                    visit.id, _name(visit), visit.patient.birth_date,
                    visit.appointment.start_at.astimezone(self.visits.zone) if visit.appointment else None,
                    visit.appointment.location if visit.appointment else "",
                    "Waiting for vitals" if visit.state == VisitState.ARRIVED.value else "In a room",
                    _busy_text(busy, actor, station_id)))
                self.audit.record(session, actor, "visit.listed", patient_id=visit.patient_id,
                                  resource_type="visit", resource_id=visit.id, detail=f"station={station_id}")
            mine = session.scalar(select(VitalsSession).where(
                VitalsSession.station_id == station_id, VitalsSession.status == "open",
                VitalsSession.started_by == actor.actor_id))
            open_view = self._open_view(session, mine, actor) if mine is not None else None
            charted = self._charted(session, station_id, start, actor)
            return StationPage(station.id, station.name, tuple(waiting), open_view, charted)

    def _open_view(self, session: Session, vitals: VitalsSession, actor: Actor) -> OpenSession:
        visit = session.get(Visit, vitals.visit_id, options=[joinedload(Visit.patient)])
        assert visit is not None
        self.audit.record(session, actor, "vitals.viewed", patient_id=visit.patient_id, resource_type="visit",
                          resource_id=visit.id, detail=f"session={vitals.id}")
        current: dict[str, LiveValue] = {}
        for obs in session.scalars(_live_query(vitals.station_id)):
            value = _live_value(obs)
            if value.measured_at > _since(vitals, value.metric):
                held = current.get(value.metric)
                if held is None or held.measured_at < value.measured_at:
                    current[value.metric] = value
        rows = []
        for row in rules.ROWS:
            captured = _latest(_captured(vitals, metric) for metric in row.metrics)
            now_showing = _latest(current.get(metric) for metric in row.metrics)
            since = max(_since(vitals, metric) for metric in row.metrics) if row.metrics else vitals.started_at
            rows.append(RowView(row, captured, now_showing, since))
        return OpenSession(vitals.id, visit.id, _name(visit), visit.patient.birth_date, vitals.started_at,
                           tuple(rows))

    def _charted(self, session: Session, station_id: str, since: dt.datetime,
                 actor: Actor) -> tuple[ChartedSession, ...]:
        rows = session.scalars(select(VitalsSession).where(
            VitalsSession.station_id == station_id, VitalsSession.status == "charted",
            VitalsSession.charted_at >= since).order_by(VitalsSession.charted_at.desc()).limit(5)).all()
        return tuple(self._charted_view(session, vitals, actor) for vitals in rows)

    def _charted_view(self, session: Session, vitals: VitalsSession, actor: Actor) -> ChartedSession:
        visit = session.get(Visit, vitals.visit_id, options=[joinedload(Visit.patient)])
        assert visit is not None and vitals.charted_at is not None
        self.audit.record(session, actor, "vitals.viewed", patient_id=visit.patient_id, resource_type="visit",
                          resource_id=visit.id, detail=f"session={vitals.id}")
        delivery = session.scalar(select(OutboxMessage.status).where(OutboxMessage.control_id == vitals.control_id))
        values = tuple(
            ChartedValue(o.id, _row_for(o.metric), o.metric, o.value or "", o.unit, o.method, o.device_id,
                         o.measured_at, o.status)
            for o in session.scalars(select(Observation).where(
                Observation.session_id == vitals.id, Observation.status == "final").order_by(Observation.id)))
        return ChartedSession(vitals.id, visit.id, _name(visit), visit.patient.birth_date, vitals.charted_at,
                              DELIVERY_TEXT.get(delivery or "", "Not queued."), values)

    # Taking vitals -------------------------------------------------------------------------------

    def take(self, station_id: str, visit_id: int, *, actor: Actor) -> int:
        """"Take vitals": open a session for ``visit_id`` at ``station_id`` from now on; returns its id.

        The same assistant taking the same visit again gets their session back
        (two tabs, a reload). Their open session for another patient at this
        station is closed first (they moved on). An arrived patient is roomed.

        :raises VitalsConflict: the visit is not waiting, another assistant has it,
            or another assistant is using this station.
        :raises SessionNotFound: for an unknown station.
        """
        now = self.clock.now()
        try:
            with self.uow.begin() as session:
                if session.get(Station, station_id) is None:
                    raise SessionNotFound(station_id)
                visit = session.get(Visit, visit_id, with_for_update=True)
                if visit is None or visit.state not in WAITING_STATES:
                    raise VitalsConflict("This patient is not waiting for vitals any more. The list is updated.")
                held = session.scalar(select(VitalsSession).where(VitalsSession.visit_id == visit_id,
                                                                  VitalsSession.status == "open"))
                if held is not None:
                    if held.started_by == actor.actor_id and held.station_id == station_id:
                        return held.id
                    raise VitalsConflict(_busy_text(held, actor, station_id) + " Nothing was changed.")
                here = session.scalar(select(VitalsSession).where(VitalsSession.station_id == station_id,
                                                                  VitalsSession.status == "open"))
                if here is not None and here.started_by != actor.actor_id:
                    raise VitalsConflict("Another assistant is taking vitals at this station. Ask them to send "
                                         "or cancel first, so readings go to the right patient.")
                if here is not None:
                    here.status = "cancelled"
                    session.flush()
                if visit.state == VisitState.ARRIVED.value:
                    self.visits.transition_in(session, visit, VisitState.ROOMED.value, actor=actor)
                visit.station_id = station_id
                vitals = VitalsSession(visit_id=visit_id, station_id=station_id, status="open", started_at=now,
                                       started_by=actor.actor_id, not_before={}, captured={}, charted_by="",
                                       report_id="", control_id="")
                session.add(vitals)
                session.flush()
                self.audit.record(session, actor, "vitals.started", patient_id=visit.patient_id,
                                  resource_type="visit", resource_id=visit.id, detail=f"station={station_id}")
                session_id = vitals.id
        except IntegrityError:
            raise VitalsConflict("Someone else started on this patient or station a moment ago. "
                                 "The page is updated; nothing was changed.") from None
        self.hub.publish(f"station:{station_id}", "session", {"station": station_id, "session_id": session_id,
                                                               "visit_id": visit_id, "status": "open"})
        return session_id

    def _own_open(self, session: Session, station_id: str, session_id: int, actor: Actor) -> VitalsSession:
        vitals = session.get(VitalsSession, session_id, with_for_update=True)
        if vitals is None or vitals.station_id != station_id or vitals.started_by != actor.actor_id:
            raise SessionNotFound(session_id)
        if vitals.status == "charted":
            at = vitals.charted_at.astimezone(self.visits.zone) if vitals.charted_at else None
            raise VitalsConflict(f"These vitals were already sent to the chart{f' at {at:%H:%M}' if at else ''}. "
                                 "Nothing was sent twice.")
        if vitals.status != "open":
            raise VitalsConflict("This vitals check was closed. Choose \"Take vitals\" to start again.")
        return vitals

    def restart_rows(self, station_id: str, session_id: int, row_keys: t.Sequence[str], *, actor: Actor) -> None:
        """"Take again" / "Discard": drop what the rows hold and offer only readings measured from now on."""
        now = self.clock.now()
        with self.uow.begin() as session:
            vitals = self._own_open(session, station_id, session_id, actor)
            metrics = [m for key in row_keys if key in rules.ROW_BY_KEY for m in rules.ROW_BY_KEY[key].metrics]
            vitals.not_before = {**vitals.not_before, **dict.fromkeys(metrics, now.isoformat())}
            vitals.captured = {m: v for m, v in vitals.captured.items() if m not in metrics}
            self.audit.record(session, actor, "vitals.discarded", resource_type="vitals_session",
                              resource_id=vitals.id, detail=f"rows={','.join(row_keys)[:200]}")
        self.hub.publish(f"station:{station_id}", "session", {"station": station_id, "session_id": session_id,
                                                               "status": "open"})

    def cancel(self, station_id: str, session_id: int, *, actor: Actor) -> None:
        """Leave without charting: nothing is sent, the patient stays in the waiting list."""
        with self.uow.begin() as session:
            vitals = self._own_open(session, station_id, session_id, actor)
            vitals.status = "cancelled"
            self.audit.record(session, actor, "vitals.cancelled", resource_type="vitals_session",
                              resource_id=vitals.id)
        self.hub.publish(f"station:{station_id}", "session", {"station": station_id, "session_id": session_id,
                                                               "status": "cancelled"})

    def chart(self, station_id: str, session_id: int, draft: Draft, *, actor: Actor) -> ChartOutcome:
        """"Send to chart": check the values, then store, queue the ORU^R01 and move the visit, together.

        Nothing is stored while a value is unreadable or a warning is not
        confirmed; the outcome says which rows need what.

        :raises VitalsConflict: the session was already charted (another tab) or closed.
        :raises SessionNotFound: not this assistant's session at this station.
        """
        now = self.clock.now()
        with self.uow.begin() as session:
            vitals = self._own_open(session, station_id, session_id, actor)
            visit = session.get(Visit, vitals.visit_id, with_for_update=True)
            assert visit is not None
            values, errors = self._values(vitals, draft, now)
            if not errors and not values:
                errors["_"] = "There is nothing to send yet: wait for a device reading or type a value."
            warnings = {}
            for value in values:
                found = rules.warnings(value.metric, value.value, value.unit,
                                       self._last_charted(session, visit.patient_id, value.metric))
                if found and value.row.key not in draft.confirmed:
                    warnings[value.row.key] = found
            if errors or warnings:
                return ChartOutcome(errors=errors, warnings=warnings)
            observations = [self._observation(vitals, visit, value, actor, now) for value in values]
            session.add_all(observations)
            session.flush()
            vitals.report_id = f"V{vitals.id}-{uuid.uuid4().hex[:8].upper()}"
            control_id = self.messages.vitals(session, visit, station_id, vitals.report_id,
                                              [_vital_sign(session, o) for o in observations])
            vitals.status, vitals.charted_at, vitals.charted_by, vitals.control_id = \
                "charted", now, actor.actor_id, control_id
            if visit.state == VisitState.ROOMED.value:
                self.visits.transition_in(session, visit, VisitState.VITALS_TAKEN.value, actor=actor)
            self.audit.record(session, actor, "vitals.charted", patient_id=visit.patient_id, resource_type="visit",
                              resource_id=visit.id, detail=f"control_id={control_id} values={len(observations)}")
        self.hub.publish(f"station:{station_id}", "session", {"station": station_id, "session_id": session_id,
                                                               "status": "charted"})
        log.info("vitals.charted", extra={"control_id": control_id, "count": len(observations)})
        return ChartOutcome(control_id=control_id)

    def correct(self, station_id: str, observation_id: int, text: str, unit: str, *, confirmed: bool,
                actor: Actor) -> ChartOutcome:
        """Correct one charted value: a new row replaces it and the ORU^R01 goes again with OBX-11 ``C``.

        A corrected weight or height recomputes a charted BMI. Errors and
        warnings come back as for :meth:`chart`, keyed by the row.
        """
        now = self.clock.now()
        with self.uow.begin() as session:
            old = session.get(Observation, observation_id, with_for_update=True)
            vitals = session.get(VitalsSession, old.session_id) if old is not None and old.session_id else None
            if old is None or vitals is None or vitals.station_id != station_id:
                raise SessionNotFound(observation_id)
            if old.status != "final":
                raise VitalsConflict("That value was already corrected. The page shows the current one.")
            row = _row_for(old.metric)
            if row.typed is None:
                raise VitalsConflict(f"{row.label} cannot be typed; take it again from the device instead.")
            try:
                entry = rules.parse_entry(row, text, unit)
            except rules.EntryError as exc:
                return ChartOutcome(errors={row.key: str(exc)})
            if entry is None:
                return ChartOutcome(errors={row.key: f"{row.label}: enter the corrected value"})
            visit = session.get(Visit, vitals.visit_id, options=[joinedload(Visit.patient)])
            assert visit is not None
            found = rules.warnings(entry.metric, entry.value, entry.unit,
                                   self._last_charted(session, visit.patient_id, entry.metric, before=old.id))
            if found and not confirmed:
                return ChartOutcome(warnings={row.key: found})
            replaced = [(old, _Value(row, entry.metric, entry.value, entry.unit, "manual", now,
                                     entered=entry.entered))]
            replaced += self._recomputed_bmi(session, vitals, old, entry, now)
            new_rows = []
            for previous, value in replaced:
                previous.status = "corrected"
                observation = self._observation(vitals, visit, value, actor, now)
                observation.replaces_id = previous.id
                new_rows.append(observation)
            session.add_all(new_rows)
            session.flush()
            control_id = self.messages.vitals(session, visit, station_id, vitals.report_id,
                                              [_vital_sign(session, o) for o in new_rows], correction=True)
            self.audit.record(session, actor, "vitals.corrected", patient_id=visit.patient_id,
                              resource_type="observation", resource_id=old.id, detail=f"control_id={control_id}")
        self.hub.publish(f"station:{station_id}", "session", {"station": station_id, "session_id": vitals.id,
                                                               "status": "corrected"})
        return ChartOutcome(control_id=control_id)

    def _recomputed_bmi(self, session: Session, vitals: VitalsSession, old: Observation, entry: rules.Entry,
                        now: dt.datetime) -> list[tuple[Observation, _Value]]:
        if old.metric not in ("weight", "height"):
            return []
        charted = {o.metric: o for o in session.scalars(select(Observation).where(
            Observation.session_id == vitals.id, Observation.status == "final",
            Observation.metric.in_(("weight", "height", "bmi"))))}
        if "bmi" not in charted:
            return []
        weight = entry.value if old.metric == "weight" else Decimal(charted["weight"].value or "0")
        height = entry.value if old.metric == "height" else Decimal(charted["height"].value or "0")
        value = rules.bmi(weight, height)
        if value is None:
            return []
        return [(charted["bmi"], _Value(rules.ROW_BY_KEY["bmi"], "bmi", value, "kg/m2", "calculated", now))]

    def _values(self, vitals: VitalsSession, draft: Draft, now: dt.datetime) -> tuple[list[_Value], dict[str, str]]:
        values: list[_Value] = []
        errors: dict[str, str] = {}
        for row in rules.ROWS:
            text, unit, source = draft.fields.get(row.key, ("", "", "device"))
            captured = _latest(_captured(vitals, metric) for metric in row.metrics)
            if captured is not None and (source == "device" or row.typed is None):
                if row.key in draft.shown and draft.shown[row.key] != captured.reading_id:
                    errors[row.key] = "A newer reading arrived just now: check the value shown and send again."
                    continue
                values.append(_Value(row, captured.metric, Decimal(t.cast(str, captured.value)), captured.unit,
                                     "device", captured.measured_at, captured.device_id, captured.device_time,
                                     captured.flags))
                continue
            try:
                entry = rules.parse_entry(row, text, unit)
            except rules.EntryError as exc:
                errors[row.key] = str(exc)
                continue
            if entry is not None:
                values.append(_Value(row, entry.metric, entry.value, entry.unit, "manual", now, entered=entry.entered))
        by_metric = {value.metric: value for value in values}
        if "weight" in by_metric and "height" in by_metric:
            computed = rules.bmi(by_metric["weight"].value, by_metric["height"].value)
            if computed is not None:
                values.append(_Value(rules.ROW_BY_KEY["bmi"], "bmi", computed, "kg/m2", "calculated", now))
        return values, errors

    def _last_charted(self, session: Session, patient_id: int, metric: str,
                      before: int | None = None) -> tuple[Decimal, dt.datetime] | None:
        query = select(Observation.value, Observation.measured_at).where(
            Observation.patient_id == patient_id, Observation.metric == metric, Observation.status == "final")
        if before is not None:
            query = query.where(Observation.id < before)
        last = session.execute(query.order_by(Observation.measured_at.desc()).limit(1)).first()
        if last is None or last.value is None:
            return None
        return Decimal(last.value), last.measured_at

    def _observation(self, vitals: VitalsSession, visit: Visit, value: _Value, actor: Actor,
                     now: dt.datetime) -> Observation:
        code_system, code = ("LN", PAIN_LOINC[0]) if value.metric == rules.PAIN else \
            ("MDC", str(METRICS[value.metric].mdc_code))
        return Observation(visit_id=visit.id, patient_id=visit.patient_id, station_id=vitals.station_id,
                           session_id=vitals.id, metric=value.metric, code_system=code_system, code=code,
                           value=str(value.value), unit=value.unit, method=value.method, device_id=value.device_id,
                           flags=list(value.flags), measured_at=value.measured_at, device_time=value.device_time,
                           recorded_at=now, status="final", entered_by=actor.actor_id, entered=value.entered)

def _vital_sign(session: Session, observation: Observation) -> VitalSign:
    """The builder's view of a charted observation: codes from the one code table, the device as OBX-18."""
    value = Decimal(t.cast(str, observation.value))
    method = {"device": Method.DEVICE, "manual": Method.MANUAL, "calculated": Method.CALCULATED}[observation.method]
    if observation.metric == rules.PAIN:
        return VitalSign(None, "", None, "", "{score}", PAIN_LOINC[0], PAIN_LOINC[1], value,
                         observation.measured_at, method)
    metric = METRICS[observation.metric]
    device = None
    channel = None
    if observation.device_id:
        driver = session.scalar(select(Device.driver).where(Device.id == observation.device_id)) or ""
        device = HL7Device(MDS[0], MDS[1], serial=observation.device_id, model=driver)
        channel = CHANNELS.get(observation.metric)
    return VitalSign(metric.mdc_code, metric.mdc_refid, metric.unit.mdc_code, metric.unit.mdc_refid,
                     metric.unit.ucum, metric.loinc, metric.loinc_name, value, observation.measured_at, method,
                     device, channel)


def _live_query(station: str) -> t.Any:
    return select(Observation).where(Observation.station_id == station, Observation.status == "preliminary",
                                     Observation.visit_id.is_(None))


def _live_value(obs: Observation) -> LiveValue:
    return LiveValue(obs.metric, obs.device_id or "", obs.value, obs.unit, tuple(obs.flags), obs.measured_at,
                     obs.device_time, obs.reading_id or "")


def _since(vitals: VitalsSession, metric: str) -> dt.datetime:
    later = vitals.not_before.get(metric)
    return max(vitals.started_at, dt.datetime.fromisoformat(later)) if later else vitals.started_at


def _captured(vitals: VitalsSession, metric: str) -> LiveValue | None:
    held = vitals.captured.get(metric)
    if held is None:
        return None
    device_time = held.get("device_time")
    return LiveValue(metric, held["device_id"], held["value"], held["unit"], tuple(held["flags"]),
                     dt.datetime.fromisoformat(held["measured_at"]),
                     dt.datetime.fromisoformat(device_time) if device_time else None, held["reading_id"])


def _latest(values: t.Iterable[LiveValue | None]) -> LiveValue | None:
    present = [v for v in values if v is not None]
    return max(present, key=lambda v: v.measured_at) if present else None


def _row_for(metric: str) -> rules.Row:
    if metric == "bmi":
        return rules.ROW_BY_KEY["bmi"]
    if metric == rules.PAIN:
        return rules.ROW_BY_KEY[rules.PAIN]
    return rules.ROW_OF_METRIC[metric]


def _name(visit: Visit) -> str:
    return f"{visit.patient.family_name}, {visit.patient.given_name}"


def _busy_text(held: VitalsSession | None, actor: Actor, station_id: str) -> str:
    if held is None:
        return ""
    if held.started_by == actor.actor_id:
        return "You are taking vitals" + ("" if held.station_id == station_id else f" at station {held.station_id}")
    return f"Another assistant is taking vitals at station {held.station_id}."
