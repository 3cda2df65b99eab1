"""Staff pages: sign-in, sign-out, the day's visits and the outbox."""

from __future__ import annotations

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import make_response
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
from server.domain.visit import IllegalTransition
from server.forms import OutboxActionForm
from server.forms import SignInForm
from server.forms import SignOutForm
from server.forms import VisitStateForm
from server.services.outbox import OutboxError
from server.services.staff import SignInFailed
from server.services.visits import VisitNotFound

bp = Blueprint("staff", __name__, url_prefix="/staff")

# Which staff role may move a visit into which state; admin may do all.
TRANSITION_ROLES = {
    "arrived": ("front_desk",),
    "expected": ("front_desk",),
    "cancelled": ("front_desk",),
    "no_show": ("front_desk",),
    "checked_out": ("front_desk",),
    "roomed": ("assistant", "front_desk"),
    "vitals_taken": ("assistant",),
}


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


@bp.get("/")
@requires()
def home() -> str:
    """Today's visits, with the actions the signed-in role may take."""
    staff = signed_in_staff()
    today = services().visits.today()
    visits = services().visits.for_day(today, actor=staff.actor(client_address()))
    return render_template("staff/home.html", visits=visits, today=today, staff=staff,
                           state_form=VisitStateForm(), sign_out=SignOutForm())


@bp.post("/visits/<int:visit_id>/state")
@requires("front_desk", "assistant")
def change_state(visit_id: int) -> ResponseReturnValue:
    """Move one visit to another state, if the role allows that state."""
    staff = signed_in_staff()
    form = VisitStateForm()
    if not form.validate_on_submit():
        abort(400)
    target = form.target.data or ""
    if staff.role != "admin" and staff.role not in TRANSITION_ROLES.get(target, ()):
        return forbid(staff, "Your role does not allow this change.")
    try:
        services().visits.transition(visit_id, target, actor=staff.actor(client_address()))
    except VisitNotFound:
        abort(404)
    except IllegalTransition as exc:
        flash(str(exc), "error")
    return make_response(redirect(url_for("staff.home")))


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
    except OutboxError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Message {message_id}: {'sent again' if action == 'retry' else 'discarded'}.", "info")
    return redirect(url_for("staff.outbox"))
