"""Staff pages: sign-in, sign-out, the board (a day's visits, live) and the outbox.

The board works without script: every action is a form post answered with a
redirect back to the board (Post/Redirect/Get), confirmations at the top and
problems beside the row they concern. ``static/board.js`` adds live updates:
the board's Server-Sent Events stream (:mod:`server.live`, as on a station
page) names the visit that changed, and the page fetches that row again.
"""

from __future__ import annotations

import datetime as dt
import typing as t

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import flash
from flask import get_flashed_messages
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask.typing import ResponseReturnValue

from server.auth import client_address
from server.auth import forbid
from server.auth import public
from server.auth import requires
from server.auth import services
from server.auth import session_cookie_name
from server.auth import signed_in_staff
from server.domain.visit import ACTIONS
from server.domain.visit import IllegalTransition
from server.domain.visit import VisitState
from server.domain.visit import actions_for
from server.domain.visit import may_set
from server.forms import BoardActionForm
from server.forms import OutboxActionForm
from server.forms import SignInForm
from server.forms import SignOutForm
from server.forms import VisitStateForm
from server.live import BOARD_CHANNEL
from server.live import sse_stream
from server.services.board import CHANGE_LABELS
from server.services.flags import FlagNotFound
from server.services.outbox import OutboxError
from server.services.outbox import OutboxNotFound
from server.services.staff import SignInFailed
from server.services.visits import UnknownRoom
from server.services.visits import VisitNotFound
from server.views.staff.decisions import decide_change

bp = Blueprint("staff", __name__, url_prefix="/staff")
root = Blueprint("root", __name__)

TARGETS = {action.target.value: action for action in ACTIONS}
"""The states the board's buttons set, each with its button."""

HEARTBEAT_SECONDS = 1.0
"""Keep-alive of the board's event stream; as on a station page (:data:`server.views.staff.stations.HEARTBEAT_SECONDS`),
it is also how soon a closed board gives its server thread back."""

MIN_DAY, MAX_DAY = dt.date(1900, 1, 1), dt.date(9998, 12, 31)
"""The days the board shows: any a clinic could mean, with a next day that still exists."""


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> ResponseReturnValue:
    """Sign in. Every failure renders the same page with the same message and status."""
    form = SignInForm()
    if form.validate_on_submit():
        previous = request.cookies.get(session_cookie_name())
        if previous:
            # A shared workstation: whoever was signed in on this browser is signed out, whatever happens next.
            services().staff.sign_out(previous, client_address())
        try:
            token = services().staff.sign_in(form.username.data or "", form.password.data or "",
                                             client_address())
        except SignInFailed as failure:
            return render_template("staff/login.html", form=form, error=str(failure)), 200
        session.clear()
        response = redirect(url_for("staff.home"))
        response.set_cookie(session_cookie_name(), token, httponly=True, samesite="Lax", secure=_secure(),
                            path="/")
        return response
    return render_template("staff/login.html", form=form, error=None)


@bp.post("/logout")
@public
def logout() -> ResponseReturnValue:
    """Sign out: revoke the session row, drop the cookie and tell the browser to clear its data."""
    form = SignOutForm()
    if not form.validate_on_submit():
        abort(400)
    token = request.cookies.get(session_cookie_name())
    if token:
        services().staff.sign_out(token, client_address())
    session.clear()
    response = redirect(url_for("staff.login"))
    response.delete_cookie(session_cookie_name(), path="/", secure=_secure(), samesite="Lax")
    response.headers["Clear-Site-Data"] = '"cache", "cookies", "storage"'
    return response


@root.get("/")
@public
def index() -> ResponseReturnValue:
    """The site's root: staff go to the board (or sign in first); kiosks have their own address."""
    return redirect(url_for("staff.home"))


def _day(text: str | None) -> dt.date | None:
    """A board day from ``YYYY-MM-DD`` (what a date input sends); ``None`` when it is not a date we can show."""
    try:
        day = dt.date.fromisoformat(text or "")
    except ValueError:
        return None
    return day if MIN_DAY <= day <= MAX_DAY else None


@bp.get("/")
@requires()
def home() -> tuple[str, int]:
    """The board: a day's visits (today unless another day is chosen), with what the signed-in role may do."""
    staff = signed_in_staff()
    asked = request.args.get("day")
    day = _day(asked) if asked else services().board.today()
    error = None
    if day is None:
        error = "Enter a date such as 2026-03-31, or choose one from the calendar."
        day = services().board.today()
    board = services().board.day(day, actor=staff.actor(client_address()))
    flashed = t.cast(list[tuple[str, str]], get_flashed_messages(with_categories=True))
    row_errors = {int(category[4:]): message for category, message in flashed if category.startswith("row:")}
    return render_template("staff/board/page.html", board=board, staff=staff, asked=asked if error else None,
                           date_error=error, is_today=day == services().board.today(), row_errors=row_errors,
                           one_day=dt.timedelta(days=1), **_forms()), 400 if error else 200


def _forms() -> dict[str, t.Any]:
    return {"state_form": VisitStateForm(), "action_form": BoardActionForm(), "sign_out": SignOutForm(),
            "actions_for": actions_for, "change_labels": CHANGE_LABELS}


@bp.get("/board/rows")
@requires()
def rows() -> ResponseReturnValue:
    """A live update's fetch: the board's body for ``day``, or one visit's row (empty when it is not on that day)."""
    day = _day(request.args.get("day"))
    visit = request.args.get("visit", "")
    if day is None or (visit and not (visit.isascii() and visit.isdigit())) or len(visit) > 18:
        abort(404)
    staff = signed_in_staff()
    board = services().board.day(day, actor=staff.actor(client_address()), visit_id=int(visit) if visit else None)
    template = "staff/board/row.html" if visit else "staff/board/body.html"
    if visit and not board.rows:
        return "", 204
    return render_template(template, board=board, row=board.rows[0] if visit else None, staff=staff,
                           **_forms())


@bp.get("/board/events")
@requires()
def events() -> Response:
    """The board's live updates as Server-Sent Events (visit ids only; the page fetches rows through :func:`rows`)."""
    stream = sse_stream(services().live, [BOARD_CHANNEL], slots=current_app.extensions["frontdesk.streams"],
                        heartbeat=HEARTBEAT_SECONDS)
    return Response(stream, mimetype="text/event-stream", headers={"X-Accel-Buffering": "no"})


def _back(day: str | None, visit_id: int | None = None) -> ResponseReturnValue:
    """Back to the board of the day the form was on (Post/Redirect/Get), at the row acted on."""
    chosen = _day(day)
    other_day = chosen is not None and chosen != services().board.today()
    url = url_for("staff.home", day=chosen.isoformat()) if chosen and other_day else url_for("staff.home")
    return redirect(url + (f"#visit-{visit_id}" if visit_id is not None else ""))


@bp.post("/visits/<int:visit_id>/state")
@requires("front_desk", "assistant")
def change_state(visit_id: int) -> ResponseReturnValue:
    """Move one visit on, if its state and the role allow it; the outcome shows at the top or beside the row."""
    staff = signed_in_staff()
    form = VisitStateForm()
    if not form.validate_on_submit():
        abort(400)
    target = form.target.data or ""
    if target not in set(VisitState):
        abort(400)
    if not may_set(staff.role, target):
        return forbid(staff, "Your role does not allow this change.")
    action = TARGETS[target]
    room = (form.room.data or "").strip() or None
    if target == VisitState.ROOMED and room is None and services().stations.all():
        flash("Choose a room first, then press Room.", f"row:{visit_id}")
        return _back(form.day.data, visit_id)
    try:
        services().visits.transition(visit_id, target, actor=staff.actor(client_address()), room=room)
    except VisitNotFound:
        abort(404)
    except (IllegalTransition, UnknownRoom) as exc:
        flash(str(exc), f"row:{visit_id}")
    else:
        flash(f"Done: the visit is {action.done}.", "info")
    return _back(form.day.data, visit_id)


@bp.post("/flags/<int:flag_id>")
@requires("front_desk", "assistant")
def acknowledge(flag_id: int) -> ResponseReturnValue:
    """Acknowledge a flag from the board (audited): someone has seen it and is dealing with it."""
    form = BoardActionForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        services().flags.acknowledge(flag_id, actor=signed_in_staff().actor(client_address()))
    except FlagNotFound:
        if not services().flags.exists(flag_id):
            abort(404)
        flash("Someone else has already acknowledged that flag.", "info")
    else:
        flash("Flag acknowledged.", "info")
    return _back(form.day.data)


@bp.post("/changes/<int:change_id>")
@requires("front_desk")
def decide(change_id: int) -> ResponseReturnValue:
    """Approve (update the patient, send ADT^A08) or reject contact or insurance details changed at the kiosk."""
    form = BoardActionForm()
    if not form.validate_on_submit() or form.action.data not in ("approve", "reject"):
        abort(400)
    decide_change(change_id, form.action.data == "approve")
    return _back(form.day.data)


def _secure() -> bool:
    """Secure cookies when configured, and whenever this request itself came over HTTPS."""
    return bool(current_app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


@bp.get("/outbox")
@requires("front_desk")
def outbox() -> str:
    """Messages to the records system that need attention: dead letters first, then those waiting."""
    svc = services()
    held = svc.outbox.held(actor=signed_in_staff().actor(client_address()))
    return render_template("staff/outbox.html", stats=svc.outbox.stats(), messages=held, action_form=OutboxActionForm(),
                           staff=signed_in_staff(), sign_out=SignOutForm())


@bp.post("/outbox/<int:message_id>")
@requires("front_desk")
def outbox_action(message_id: int) -> ResponseReturnValue:
    """Retry (same MSH-10) or discard one message; either releases the patient's later messages."""
    staff = signed_in_staff()
    form = OutboxActionForm()
    if not form.validate_on_submit():
        abort(400)
    action = form.action.data or ""
    try:
        getattr(services().outbox, action)(message_id, actor=staff.actor(client_address()))
    except OutboxNotFound:
        abort(404)
    except OutboxError:
        flash(f"Message {message_id} was already delivered or discarded; nothing was changed.", "error")
    else:
        flash(f"Message {message_id}: {'sent again' if action == 'retry' else 'discarded'}.", "info")
    return redirect(url_for("staff.outbox"))
