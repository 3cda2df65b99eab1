"""The JSON API under ``/api/v1/`` and the health endpoint."""

from __future__ import annotations

import datetime as dt
import logging

from flask import Blueprint
from flask import Response
from flask import abort
from flask import g
from flask import jsonify
from flask import request

from server.auth import client_address
from server.auth import public
from server.auth import requires
from server.auth import services
from server.auth import signed_in_staff
from server.openapi import document
from server.services.stations import DeviceReport
from server.services.stations import check_sender
from server.services.vitals import MAX_BATCH
from server.services.vitals import IncomingReading
from server.services.vitals import InvalidReading

log = logging.getLogger("frontdesk.api")

bp = Blueprint("api", __name__, url_prefix="/api/v1")
health_bp = Blueprint("health", __name__)


@health_bp.get("/healthz")
@public
def healthz() -> tuple[Response, int]:
    """Database reachability and schema version; 503 unless both are fine."""
    report = services().health.check()
    return jsonify(report), 200 if report["status"] == "ok" else 503


@bp.get("/openapi.json")
@public
def openapi() -> Response:
    """The OpenAPI 3.1 description of this API."""
    return jsonify(document())


@bp.get("/visits")
@requires()
def visits() -> Response:
    """Visits of one day (``?date=YYYY-MM-DD``, default today)."""
    staff = signed_in_staff()
    raw = request.args.get("date")
    try:
        day = dt.date.fromisoformat(raw) if raw else services().visits.today()
    except ValueError:
        abort(400, description="date: expected YYYY-MM-DD")
    rows = services().visits.for_day(day, actor=staff.actor(client_address()))
    return jsonify(visits=[{
        "id": v.visit_id,
        "state": v.state,
        "patient_name": v.patient_name,
        "birth_date": v.birth_date.isoformat() if v.birth_date else None,
        "start_at": v.start_at.isoformat() if v.start_at else None,
        "provider_name": v.provider_name,
        "location": v.location,
    } for v in rows])


@bp.get("/outbox")
@requires("front_desk")
def outbox() -> Response:
    """Outbox health: counts by state, oldest undelivered age, and the messages needing attention."""
    svc = services()
    stats = svc.outbox.stats()
    held = svc.outbox.held(actor=signed_in_staff().actor(client_address()))
    return jsonify(**stats, messages=[{
        "id": row.id, "control_id": row.control_id, "message_type": row.message_type, "status": row.status,
        "attempts": row.attempts, "created_at": row.created_at.isoformat(),
        "next_attempt_at": row.next_attempt_at.isoformat(), "last_error": row.last_error,
    } for row in held])


@bp.post("/readings")
@requires(principals=("gateway",))
def readings() -> tuple[Response, int]:
    """Readings from a station gateway (bearer token).

    Each reading is checked on its own: valid ones are stored and bad ones are
    listed back with the reason, so one malformed reading cannot block the
    gateway's buffer behind it. A reading for a station the gateway is not
    registered for, or from a device of another station, is refused the same
    way. Replays (same ``reading_id``) change nothing and are counted apart as
    ``duplicates``, so a gateway can say how much of a replay was new.
    """
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("readings"), list):
        return jsonify(error="body: must be an object with a list 'readings'"), 400
    if len(body["readings"]) > MAX_BATCH:
        return jsonify(error=f"readings: at most {MAX_BATCH} per request"), 400
    good: list[IncomingReading] = []
    rejected = []
    owners = services().stations.owners()
    for index, item in enumerate(body["readings"]):
        try:
            reading = IncomingReading.from_json(item)
            check_sender(g.device.stations, owners, reading.station, reading.device_id)
            good.append(reading)
        except (InvalidReading, ValueError) as exc:
            rejected.append({"index": index, "error": str(exc)})
    recorded = services().vitals.record(good)
    if rejected:
        log.warning("api.readings_rejected", extra={"count": len(rejected), "device_id": g.device.name})
    if recorded.duplicates:
        log.info("api.readings_duplicate", extra={"duplicates": recorded.duplicates, "device_id": g.device.name})
    return jsonify(accepted=recorded.accepted, duplicates=recorded.duplicates, rejected=rejected), 200


@bp.get("/devices")
@requires("assistant", "front_desk")
def devices() -> Response:
    """Status of every known device, as its reader last reported it (the same in every process)."""
    return jsonify(devices=[{
        "id": d.id, "driver": d.driver, "port": d.port, "station": d.station_id, "state": d.state,
        "connected": d.state in ("connected", "stale"), "stale": d.stale,
        "last_frame_time": d.last_frame_at.isoformat() if d.last_frame_at else None,
        "last_seen": d.last_seen_at.isoformat() if d.last_seen_at else None,
        "frames_accepted": d.frames_accepted, "frames_rejected": d.frames_rejected,
        "readings": d.readings, "unrecognised": d.unrecognised,
        "last_error": d.last_error or None, "reconnects": d.reconnects, "flags": list(d.flags),
        "reported_by": d.reported_by,
    } for d in services().stations.devices()])


@bp.post("/devices/status")
@requires(principals=("gateway",))
def device_status() -> tuple[Response, int]:
    """Device status from a station gateway (bearer token), for the stations it is registered for.

    Reports are checked one by one like readings; refused ones are listed back.
    """
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("devices"), list) or len(body["devices"]) > 64:
        return jsonify(error="body: must be an object with a list 'devices' of at most 64"), 400
    reports: list[DeviceReport] = []
    positions: list[int] = []
    rejected = []
    for index, item in enumerate(body["devices"]):
        try:
            reports.append(DeviceReport.from_json(item))
            positions.append(index)
        except ValueError as exc:
            rejected.append({"index": index, "error": str(exc)})
    refused = services().stations.report(reports, reporter=g.device.name, stations=g.device.stations)
    rejected += [{"index": positions[i], "error": reason} for i, reason in refused]
    return jsonify(accepted=len(reports) - len(refused), rejected=rejected), 200


@bp.get("/flags")
@requires("front_desk", "assistant")
def flags() -> Response:
    """Staff flags not yet acknowledged (``?all=1``: acknowledged ones too), most urgent first."""
    rows = services().flags.open(actor=signed_in_staff().actor(client_address()),
                                 include_acknowledged=request.args.get("all") == "1")
    return jsonify(flags=[{
        "id": f.flag_id, "kind": f.kind, "priority": f.priority, "message": f.message,
        "patient_name": f.patient_name or None, "visit_id": f.visit_id, "kiosk_id": f.kiosk_id,
        "created_at": f.created_at.isoformat(),
        "acknowledged_at": f.acknowledged_at.isoformat() if f.acknowledged_at else None,
    } for f in rows])


@bp.get("/pending-changes")
@requires("front_desk")
def pending_changes() -> Response:
    """Contact and insurance changes patients asked for at the kiosk, waiting for staff."""
    rows = services().changes.pending(actor=signed_in_staff().actor(client_address()))
    return jsonify(changes=[{
        "id": c.change_id, "patient_name": c.patient_name, "created_at": c.created_at.isoformat(),
        "fields": [{"field": name, "on_file": now, "requested": asked} for name, now, asked in c.fields],
    } for c in rows])


@bp.get("/security/alerts")
@requires("admin")
def security_alerts() -> Response:
    """Open security alerts (locked sign-ins, throttled addresses), newest first."""
    return jsonify(alerts=[{
        "id": a.id, "kind": a.kind, "subject": a.subject, "detail": a.detail, "raised_at": a.raised_at.isoformat(),
    } for a in services().alerts.open()])
