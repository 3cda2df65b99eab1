"""The JSON API under ``/api/v1/`` and the health endpoint.

Each view declares who may call it (:func:`server.auth.requires`, with the scope a staff API token
needs) and its request and response models (:data:`server.openapi.spec`); the OpenAPI document is
generated from those declarations. Every read of patient data is audited by the service it calls.
"""

from __future__ import annotations

import logging
import typing as t

from flask import Blueprint
from flask import Response
from flask import abort
from flask import g
from flask import jsonify
from flask import make_response
from pydantic import ValidationError
from spectree import Response as Answers

from server import schemas as s
from server.auth import client_address
from server.auth import public
from server.auth import requires
from server.auth import services
from server.auth import signed_in_staff
from server.openapi import GATEWAY
from server.openapi import STAFF
from server.openapi import document
from server.openapi import first_problem
from server.openapi import spec
from server.services.patients import PatientNotFound
from server.services.stations import DeviceReport
from server.services.stations import check_sender
from server.services.visits import VisitNotFound
from server.services.vitals import IncomingReading
from server.services.vitals import InvalidReading

log = logging.getLogger("frontdesk.api")

bp = Blueprint("api", __name__, url_prefix="/api/v1")
health_bp = Blueprint("health", __name__)

_STAFF_ERRORS = {"HTTP_401": s.ApiError, "HTTP_403": s.ApiError}
_GATEWAY_ERRORS = {"HTTP_401": s.ApiError}


Body = t.TypeVar("Body")


def _required(body: Body | None) -> Body:
    """The validated JSON body; a body sent as a form, or none at all, is a 400 like a malformed one.

    (spectree hands a view ``None`` for a body that was not sent as JSON.)
    """
    if body is None:
        abort(make_response(jsonify(error="body: must be JSON (Content-Type: application/json)"), 400))
    return body


@health_bp.get("/healthz")
@public
def healthz() -> tuple[Response, int]:
    """Database reachability and schema version; 503 unless both are fine."""
    report = services().health.check()
    return jsonify(report), 200 if report["status"] == "ok" else 503


@bp.get("/openapi.json")
@public
def openapi() -> Response:
    """The OpenAPI 3.1 description of this API, generated from the views and their models."""
    return jsonify(document())


@bp.get("/visits")
@requires(scope="visits")
@spec.validate(query=s.VisitsQuery, resp=Answers(HTTP_200=s.VisitList, **_STAFF_ERRORS), security=STAFF,
               tags=["visits"])
def visits(query: s.VisitsQuery) -> s.VisitList:
    """Visits of one day of the clinic (default today); one audit row per patient listed."""
    day = query.date or services().visits.today()
    rows = services().visits.for_day(day, actor=signed_in_staff().actor(client_address()))
    return s.VisitList(visits=[s.VisitOut(
        id=v.visit_id, patient_id=v.patient_id, state=v.state, patient_name=v.patient_name,
        birth_date=v.birth_date, start_at=v.start_at, provider_name=v.provider_name, location=v.location)
        for v in rows])


@bp.get("/visits/<int:visit_id>/observations")
@requires("assistant", "front_desk", scope="observations")
@spec.validate(resp=Answers(HTTP_200=s.ObservationList, HTTP_404=s.ApiError, **_STAFF_ERRORS), security=STAFF,
               tags=["observations"])
def observations(visit_id: int) -> s.ObservationList:
    """Vital signs of one visit, live and charted, oldest first; the read is audited."""
    try:
        rows = services().vitals.of_visit(visit_id, actor=signed_in_staff().actor(client_address()))
    except VisitNotFound:
        abort(404)
    return s.ObservationList(observations=[s.ObservationOut(
        id=o.id, metric=o.metric, value=o.value, unit=o.unit, method=o.method, status=o.status,
        measured_at=o.measured_at, device_id=o.device_id, flags=list(o.flags)) for o in rows])


@bp.get("/patients/<int:patient_id>")
@requires("assistant", "front_desk", scope="patients")
@spec.validate(resp=Answers(HTTP_200=s.PatientOut, HTTP_404=s.ApiError, **_STAFF_ERRORS), security=STAFF,
               tags=["patients"])
def patient(patient_id: int) -> s.PatientOut:
    """Who a patient is, and no more (no address, phone or insurance); the read is audited."""
    try:
        p = services().patients.minimum(patient_id, actor=signed_in_staff().actor(client_address()))
    except PatientNotFound:
        abort(404)
    return s.PatientOut(id=p.id, mrn=p.mrn, family_name=p.family_name, given_name=p.given_name,
                        birth_date=p.birth_date, sex=p.sex)


@bp.get("/flags")
@requires("front_desk", "assistant", scope="flags")
@spec.validate(query=s.FlagsQuery, resp=Answers(HTTP_200=s.FlagList, **_STAFF_ERRORS), security=STAFF,
               tags=["flags"])
def flags(query: s.FlagsQuery) -> s.FlagList:
    """Staff flags not yet acknowledged (``all=1``: acknowledged ones too), most urgent first."""
    rows = services().flags.open(actor=signed_in_staff().actor(client_address()),
                                 include_acknowledged=query.all == "1")
    return s.FlagList(flags=[s.FlagOut(
        id=f.flag_id, kind=f.kind, priority=f.priority, message=f.message, patient_name=f.patient_name or None,
        visit_id=f.visit_id, kiosk_id=f.kiosk_id, created_at=f.created_at, acknowledged_at=f.acknowledged_at)
        for f in rows])


@bp.get("/pending-changes")
@requires("front_desk", scope="patients")
@spec.validate(resp=Answers(HTTP_200=s.ChangeList, **_STAFF_ERRORS), security=STAFF, tags=["patients"])
def pending_changes() -> s.ChangeList:
    """Contact and insurance changes patients asked for at the kiosk, waiting for staff."""
    rows = services().changes.pending(actor=signed_in_staff().actor(client_address()))
    return s.ChangeList(changes=[s.ChangeOut(
        id=c.change_id, patient_name=c.patient_name, created_at=c.created_at,
        fields=[s.FieldChange(field=name, on_file=now, requested=asked) for name, now, asked in c.fields])
        for c in rows])


@bp.get("/outbox")
@requires("front_desk", scope="outbox")
@spec.validate(resp=Answers(HTTP_200=s.OutboxReport, **_STAFF_ERRORS), security=STAFF, tags=["outbox"])
def outbox() -> s.OutboxReport:
    """Outbox health: counts by state, oldest undelivered age, and the messages needing attention."""
    svc = services()
    stats = svc.outbox.stats()
    held = svc.outbox.held(actor=signed_in_staff().actor(client_address()))
    return s.OutboxReport.model_validate({**stats, "messages": [s.OutboxMessageOut(
        id=row.id, control_id=row.control_id, message_type=row.message_type, status=row.status,
        attempts=row.attempts, created_at=row.created_at, next_attempt_at=row.next_attempt_at,
        last_error=row.last_error) for row in held]})


@bp.get("/inbound")
@requires("admin", scope="inbound")
@spec.validate(query=s.InboundQuery, resp=Answers(HTTP_200=s.InboundList, **_STAFF_ERRORS), security=STAFF,
               tags=["inbound"])
def inbound(query: s.InboundQuery) -> s.InboundList:
    """HL7 messages received, newest first (at most 200), by control id, type or day; no message text."""
    rows = services().inbound.recent(actor=signed_in_staff().actor(client_address()), control_id=query.control_id,
                                     message_type=query.message_type, day=query.date)
    return s.InboundList(messages=[s.InboundOut(
        id=m.id, control_id=m.control_id, message_type=m.message_type, sending_application=m.sending_application,
        outcome=m.outcome, error=m.error, received_at=m.received_at) for m in rows])


@bp.get("/devices")
@requires("assistant", "front_desk", scope="devices")
@spec.validate(resp=Answers(HTTP_200=s.DeviceList, **_STAFF_ERRORS), security=STAFF, tags=["devices"])
def devices() -> s.DeviceList:
    """Status of every known device, as its reader last reported it (the same in every process)."""
    return s.DeviceList(devices=[s.DeviceOut(
        id=d.id, driver=d.driver, port=d.port, station=d.station_id, state=d.state,
        connected=d.state in ("connected", "stale"), stale=d.stale, last_frame_time=d.last_frame_at,
        last_seen=d.last_seen_at, frames_accepted=d.frames_accepted, frames_rejected=d.frames_rejected,
        readings=d.readings, unrecognised=d.unrecognised, last_error=d.last_error or None,
        reconnects=d.reconnects, flags=list(d.flags), reported_by=d.reported_by)
        for d in services().stations.devices()])


@bp.get("/security/alerts")
@requires("admin")
@spec.validate(resp=Answers(HTTP_200=s.AlertList, **_STAFF_ERRORS), security=[{"staffSession": []}],
               tags=["security"])
def security_alerts() -> s.AlertList:
    """Open security alerts (locked sign-ins, throttled addresses), newest first; browser sessions only."""
    return s.AlertList(alerts=[s.AlertOut(id=a.id, kind=a.kind, subject=a.subject, detail=a.detail,
                                          raised_at=a.raised_at) for a in services().alerts.open()])


@bp.post("/readings")
@requires(principals=("gateway",))
@spec.validate(json=s.ReadingBatch, resp=Answers(HTTP_200=s.ReadingsStored, **_GATEWAY_ERRORS), security=GATEWAY,
               tags=["gateways"])
def readings(json: s.ReadingBatch) -> s.ReadingsStored:
    """Readings from a station gateway; replays (same ``reading_id``) change nothing and are counted apart
    as ``duplicates``, so a gateway can say how much of a replay was new.

    Each reading is checked on its own: valid ones are stored and bad ones are
    listed back with the reason, so one malformed reading cannot block the
    gateway's buffer behind it. A reading for a station the gateway is not
    registered for, or from a device of another station, is refused the same way.
    """
    json = _required(json)
    good: list[IncomingReading] = []
    rejected = []
    owners = services().stations.owners()
    for index, item in enumerate(json.readings):
        try:
            reading = IncomingReading.from_json(s.ReadingIn.model_validate(item).model_dump())
            check_sender(g.device.stations, owners, reading.station, reading.device_id)
            good.append(reading)
        except ValidationError as exc:
            rejected.append(s.Rejected(index=index, error=first_problem(exc)))
        except (InvalidReading, ValueError) as exc:
            rejected.append(s.Rejected(index=index, error=str(exc)))
    recorded = services().vitals.record(good)
    if rejected:
        log.warning("api.readings_rejected", extra={"count": len(rejected), "device_id": g.device.name})
    if recorded.duplicates:
        log.info("api.readings_duplicate", extra={"duplicates": recorded.duplicates, "device_id": g.device.name})
    return s.ReadingsStored(accepted=recorded.accepted, duplicates=recorded.duplicates, rejected=rejected)


@bp.post("/devices/status")
@requires(principals=("gateway",))
@spec.validate(json=s.DeviceStatusBatch, resp=Answers(HTTP_200=s.PerItem, **_GATEWAY_ERRORS), security=GATEWAY,
               tags=["gateways"])
def device_status(json: s.DeviceStatusBatch) -> s.PerItem:
    """Device status from a station gateway, for the stations it is registered for.

    Reports are checked one by one like readings; refused ones are listed back.
    """
    json = _required(json)
    reports: list[DeviceReport] = []
    positions: list[int] = []
    rejected = []
    for index, item in enumerate(json.devices):
        try:
            reports.append(DeviceReport.from_json(s.DeviceStatusIn.model_validate(item).model_dump()))
            positions.append(index)
        except ValidationError as exc:
            rejected.append(s.Rejected(index=index, error=first_problem(exc)))
        except ValueError as exc:
            rejected.append(s.Rejected(index=index, error=str(exc)))
    refused = services().stations.report(reports, reporter=g.device.name, stations=g.device.stations)
    rejected += [s.Rejected(index=positions[i], error=reason) for i, reason in refused]
    return s.PerItem(accepted=len(reports) - len(refused), rejected=rejected)
