"""Vitals stations: the list, a station's page with live device readings, "Take vitals" and "Send to chart".

The page works without script (every action is a form post and a redirect);
``static/station.js`` adds the live updates through the station's
Server-Sent Events stream, served from :mod:`server.live` (a push over plain
HTTP that Flask streams with no extra library, reconnects by itself in every
browser, and crosses processes through PostgreSQL ``LISTEN/NOTIFY``).
"""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue

from server.auth import client_address
from server.auth import requires
from server.auth import services
from server.auth import signed_in_staff
from server.domain import vitals as rules
from server.forms import SignOutForm
from server.forms import StationForm
from server.live import sse_stream
from server.services.stations import StationNotFound
from server.services.vitals import ChartOutcome
from server.services.vitals import Draft
from server.services.vitals import SessionNotFound
from server.services.vitals import VitalsConflict

bp = Blueprint("stations", __name__, url_prefix="/staff/stations")

HEARTBEAT_SECONDS = 1.0
"""Keep-alive of a station's event stream. The server learns that a page was closed only when a write to it
fails, so this is also how soon a closed or reloaded page gives its server thread back (shorter than
:data:`server.live.SLOT_WAIT`, so a reloaded page gets its slot back); one short comment a second per open
page costs nothing beside that."""


@bp.get("/")
@requires("assistant")
def index() -> str:
    """Every station, with its devices' state."""
    svc = services()
    devices = svc.stations.devices()
    return render_template("staff/stations/index.html", stations=svc.stations.all(), devices=devices,
                           staff=signed_in_staff(), sign_out=SignOutForm())


def _page(station_id: str, *, draft: Draft | None = None, outcome: ChartOutcome | None = None,
          status: int = 200) -> tuple[str, int]:
    svc = services()
    staff = signed_in_staff()
    try:
        page = svc.vitals.station_page(station_id, actor=staff.actor(client_address()))
    except SessionNotFound:
        abort(404)
    return render_template("staff/stations/station.html", page=page, devices=svc.stations.devices(station_id),
                           draft=draft or Draft(), outcome=outcome or ChartOutcome(), rules=rules,
                           form=StationForm(), staff=staff, sign_out=SignOutForm()), status


@bp.get("/<station_id>")
@requires("assistant")
def station(station_id: str) -> tuple[str, int]:
    """The station: waiting patients, the assistant's open vitals check, today's charted vitals."""
    return _page(station_id)


@bp.get("/<station_id>/events")
@requires("assistant")
def events(station_id: str) -> Response:
    """The station's live updates as Server-Sent Events (readings, device states, sessions; no patient data)."""
    try:
        services().stations.get(station_id)
    except StationNotFound:
        abort(404)
    stream = sse_stream(services().live, [f"station:{station_id}"], slots=current_app.extensions["frontdesk.streams"],
                        heartbeat=HEARTBEAT_SECONDS)
    return Response(stream, mimetype="text/event-stream", headers={"X-Accel-Buffering": "no"})


def _checked_form() -> None:
    if not StationForm().validate_on_submit():
        abort(400)


@bp.post("/<station_id>/take")
@requires("assistant")
def take(station_id: str) -> ResponseReturnValue:
    """"Take vitals" for one waiting patient."""
    _checked_form()
    visit_id = request.form.get("visit_id", "")
    if not visit_id.isdigit():
        abort(400)
    try:
        services().vitals.take(station_id, int(visit_id), actor=signed_in_staff().actor(client_address()))
    except SessionNotFound:
        abort(404)
    except VitalsConflict as exc:
        flash(str(exc), "error")
    return redirect(url_for("stations.station", station_id=station_id))


def _draft() -> Draft:
    fields = {row.key: (request.form.get(row.key, "")[:32], request.form.get(f"{row.key}_unit", "")[:16],
                        request.form.get(f"{row.key}_source", "typed"))
              for row in rules.ROWS}
    shown = {row.key: request.form.get(f"{row.key}_reading", "")[:64] for row in rules.ROWS
             if f"{row.key}_reading" in request.form}
    return Draft(fields, frozenset(request.form.getlist("confirm")), shown)


@bp.post("/<station_id>/sessions/<int:session_id>")
@requires("assistant")
def act(station_id: str, session_id: int) -> ResponseReturnValue:
    """"Send to chart", "Take again", "Discard" or "Cancel" on the assistant's open vitals check."""
    _checked_form()
    svc = services()
    actor = signed_in_staff().actor(client_address())
    action = request.form.get("action", "")
    try:
        if action == "chart":
            draft = _draft()
            outcome = svc.vitals.chart(station_id, session_id, draft, actor=actor)
            if not outcome.charted:
                return _page(station_id, draft=draft, outcome=outcome, status=422)
            flash("Sent to chart.", "info")
        elif action.startswith(("retake:", "discard:")):
            key = action.partition(":")[2]
            svc.vitals.restart_rows(station_id, session_id, [key], actor=actor)
        elif action == "cancel":
            svc.vitals.cancel(station_id, session_id, actor=actor)
            flash("Vitals check cancelled; nothing was sent.", "info")
        else:
            abort(400)
    except SessionNotFound:
        abort(404)
    except VitalsConflict as exc:
        flash(str(exc), "error")
    return redirect(url_for("stations.station", station_id=station_id))


@bp.post("/<station_id>/observations/<int:observation_id>")
@requires("assistant")
def correct(station_id: str, observation_id: int) -> ResponseReturnValue:
    """Correct one charted value (sent again as a correction, OBX-11 C)."""
    _checked_form()
    try:
        outcome = services().vitals.correct(
            station_id, observation_id, request.form.get("value", "")[:32], request.form.get("unit", "")[:16],
            confirmed=request.form.get("confirm") == "yes", actor=signed_in_staff().actor(client_address()))
    except SessionNotFound:
        abort(404)
    except VitalsConflict as exc:
        flash(str(exc), "error")
        return redirect(url_for("stations.station", station_id=station_id))
    if outcome.charted:
        flash("Correction sent to chart.", "info")
    else:
        for message in [*outcome.errors.values(), *(w for found in outcome.warnings.values() for w in found)]:
            flash(message, "error")
        if outcome.warnings:
            flash("To send it anyway, tick \"Value is right\" and choose Correct again.", "error")
    return redirect(url_for("stations.station", station_id=station_id))
