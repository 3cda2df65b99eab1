"""The JSON API under ``/api/v1/`` and the health endpoint."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint
from flask import Response
from flask import abort
from flask import jsonify
from flask import request

from server.auth import client_address
from server.auth import current_staff
from server.auth import public
from server.auth import requires
from server.auth import services
from server.openapi import document

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
    staff = current_staff()
    assert staff is not None
    raw = request.args.get("date")
    try:
        day = dt.date.fromisoformat(raw) if raw else services().clock.now().date()
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
    held = [*svc.outbox.list(status="dead", limit=100), *svc.outbox.list(status="pending", limit=100)]
    return jsonify(**stats, messages=[{
        "id": row.id, "control_id": row.control_id, "message_type": row.message_type, "status": row.status,
        "attempts": row.attempts, "created_at": row.created_at.isoformat(),
        "next_attempt_at": row.next_attempt_at.isoformat(), "last_error": row.last_error,
    } for row in held])
