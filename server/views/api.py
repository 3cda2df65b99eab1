"""The JSON API under ``/api/v1/`` and the health endpoint."""

from __future__ import annotations

import datetime as dt
import logging

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import g
from flask import jsonify
from flask import request

from server.auth import client_address
from server.auth import public
from server.auth import requires
from server.auth import services
from server.auth import signed_in_staff
from server.openapi import document
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
    gateway's buffer behind it. Replays (same ``reading_id``) are accepted and
    change nothing.
    """
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("readings"), list):
        return jsonify(error="body: must be an object with a list 'readings'"), 400
    if len(body["readings"]) > MAX_BATCH:
        return jsonify(error=f"readings: at most {MAX_BATCH} per request"), 400
    good: list[IncomingReading] = []
    rejected = []
    for index, item in enumerate(body["readings"]):
        try:
            good.append(IncomingReading.from_json(item))
        except InvalidReading as exc:
            rejected.append({"index": index, "error": str(exc)})
    accepted = services().vitals.record(good)
    if rejected:
        log.warning("api.readings_rejected", extra={"count": len(rejected), "device_id": g.device.name})
    return jsonify(accepted=accepted, rejected=rejected), 200


@bp.get("/devices")
@requires("assistant", "front_desk")
def devices() -> Response:
    """Status of the devices this server reads itself (``[[devices]]`` in its configuration)."""
    gateway = current_app.extensions.get("frontdesk.gateway")
    rows = gateway.status() if gateway is not None else []
    return jsonify(devices=[{
        "id": s.device_id, "driver": s.driver, "port": s.port, "connected": s.connected, "stale": s.stale,
        "last_frame_time": s.last_frame_time.isoformat() if s.last_frame_time else None,
        "frames_accepted": s.frames_accepted, "frames_rejected": s.frames_rejected,
        "last_error": s.last_error, "reconnects": s.reconnects, "flags": sorted(s.flags),
    } for s in rows])


@bp.get("/security/alerts")
@requires("admin")
def security_alerts() -> Response:
    """Open security alerts (locked sign-ins, throttled addresses), newest first."""
    return jsonify(alerts=[{
        "id": a.id, "kind": a.kind, "subject": a.subject, "detail": a.detail, "raised_at": a.raised_at.isoformat(),
    } for a in services().alerts.open()])
