"""Administration (administrators only): staff users, kiosks and gateways, stations, the consents and
questionnaires in use, and the audit report.

Every operation calls the same service function as its ``frontdesk`` command
(``users``, ``kiosks``, ``gateways``, ``audit report``), audited as done by the
signed-in administrator. Changes answer with a redirect and a confirmation
(Post/Redirect/Get); a registration answers with the page itself, because the
one-time code it shows must never be stored anywhere to be shown again.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint
from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue

from server.auth import client_address
from server.auth import requires
from server.auth import services
from server.auth import signed_in_staff
from server.forms import ActionForm
from server.forms import AddUserForm
from server.forms import AuditReportForm
from server.forms import RegisterDeviceForm
from server.forms import ResetPasswordForm
from server.forms import SignOutForm
from server.services.audit_report import ReportError
from server.services.context import Actor
from server.services.staff import AccountError
from server.services.staff import StaffListing

bp = Blueprint("admin", __name__, url_prefix="/staff/admin")

ROLE_TEXT = {"front_desk": "Front desk", "assistant": "Medical assistant", "admin": "Administrator"}
DEVICE_KINDS = {"kiosk": "kiosk", "gateway": "station gateway"}


def _page(template: str, status: int = 200, **context: object) -> tuple[str, int]:
    return render_template(f"staff/admin/{template}", staff=signed_in_staff(), sign_out=SignOutForm(),
                           role_text=ROLE_TEXT, **context), status


def _actor() -> Actor:
    return signed_in_staff().actor(client_address())


def _human(exc: AccountError) -> str:
    """``field: reason`` from the service, as a sentence."""
    field, _, reason = str(exc).partition(": ")
    return f"{field.capitalize()}: {reason}." if reason else str(exc)


def _checked() -> None:
    if not ActionForm().validate_on_submit():
        abort(400)


@bp.get("/")
@requires("admin")
def index() -> tuple[str, int]:
    """What an administrator looks after, and the security alerts waiting for them."""
    return _page("index.html", alerts=services().alerts.open())


@bp.route("/users", methods=["GET", "POST"])
@requires("admin")
def users() -> ResponseReturnValue:
    """Every staff account; the form below adds one."""
    form = AddUserForm()
    error = None
    if form.validate_on_submit():
        try:
            services().staff.add_user(form.username.data or "", form.role.data or "", form.password.data or "",
                                      display_name=(form.display_name.data or "").strip(), actor=_actor())
        except AccountError as exc:
            error = _human(exc)
        else:
            flash(f"User {(form.username.data or '').strip().lower()} added. Give them their first password "
                  "in person; they can change it after signing in.", "info")
            return redirect(url_for("admin.users"))
    elif form.errors:
        error = next(iter(form.errors.values()))[0]
    locked = {a.subject for a in services().alerts.open() if a.kind == "sign_in_locked"}
    return _page("users.html", 400 if error else 200, users=services().staff.list_users(), locked=locked,
                 form=form, error=error)


def _user(user_id: int) -> StaffListing:
    try:
        return services().staff.user(user_id)
    except AccountError:
        abort(404)


@bp.get("/users/<int:user_id>")
@requires("admin")
def user(user_id: int) -> tuple[str, int]:
    """One account: its state, its open sessions, and what an administrator can do to it."""
    return _user_page(_user(user_id))


def _user_page(account: StaffListing, *, error: str | None = None) -> tuple[str, int]:
    locked = any(a.kind == "sign_in_locked" and a.subject == account.username for a in services().alerts.open())
    return _page("user.html", 400 if error else 200, account=account, locked=locked,
                 sessions=services().staff.open_sessions(account.user_id), action_form=ActionForm(),
                 password_form=ResetPasswordForm(), error=error)


@bp.post("/users/<int:user_id>/<any(disable, enable, unlock, end_sessions):action>")
@requires("admin")
def user_action(user_id: int, action: str) -> ResponseReturnValue:
    """Disable (ends their sessions), enable, unlock after failed sign-ins, or end every session."""
    _checked()
    account = _user(user_id)
    staff = services().staff
    if action == "disable":
        if account.user_id == signed_in_staff().user_id:
            flash("You cannot disable your own account; ask another administrator.", "error")
            return redirect(url_for("admin.user", user_id=user_id))
        ended = staff.disable(account.username, actor=_actor())
        flash(f"{account.username} is disabled; {ended} open session{'s' if ended != 1 else ''} ended.", "info")
    elif action == "enable":
        staff.enable(account.username, actor=_actor())
        flash(f"{account.username} can sign in again.", "info")
    elif action == "unlock":
        staff.unlock(account.username, actor=_actor())
        flash(f"{account.username}'s failed sign-ins are forgotten: they can sign in again now.", "info")
    else:
        ended = staff.revoke_sessions(account.user_id, actor=_actor())
        flash(f"{ended} session{'s' if ended != 1 else ''} of {account.username} ended.", "info")
    return redirect(url_for("admin.user", user_id=user_id))


@bp.post("/users/<int:user_id>/password")
@requires("admin")
def reset_password(user_id: int) -> ResponseReturnValue:
    """Give a user a new password (a forgotten one); their sessions end."""
    account = _user(user_id)
    form = ResetPasswordForm()
    if not form.validate_on_submit():
        if not form.errors.get("password"):
            abort(400)
        return _user_page(account, error=form.errors["password"][0])
    try:
        services().staff.set_password(account.username, form.password.data or "", actor=_actor())
    except AccountError as exc:
        return _user_page(account, error=_human(exc))
    flash(f"{account.username} has a new password and was signed out everywhere. Give it to them in person.",
          "info")
    return redirect(url_for("admin.user", user_id=user_id))


@bp.post("/users/<int:user_id>/sessions/<int:session_id>")
@requires("admin")
def end_session(user_id: int, session_id: int) -> ResponseReturnValue:
    """End one session of a user (a browser left signed in on another desk)."""
    _checked()
    _user(user_id)
    if not services().staff.end_session(user_id, session_id, actor=_actor()):
        abort(404)
    flash("Session ended: that browser must sign in again.", "info")
    return redirect(url_for("admin.user", user_id=user_id))


def _devices_page(form: RegisterDeviceForm | None = None, *, kind: str = "", error: str | None = None,
                  code: str | None = None, registered: str = "", status: int = 200) -> tuple[str, int]:
    devices = services().devices
    return _page("devices.html", status, kiosks=devices.list("kiosk"), gateways=devices.list("gateway"),
                 kiosk_form=form if kind == "kiosk" and form else RegisterDeviceForm(formdata=None),
                 gateway_form=form if kind == "gateway" and form else RegisterDeviceForm(formdata=None),
                 action_form=ActionForm(), error_kind=kind if error else "", error=error, code=code,
                 registered=registered, kinds=DEVICE_KINDS)


@bp.get("/devices")
@requires("admin")
def devices() -> tuple[str, int]:
    """Kiosks and station gateways: when each was registered and last seen, and whether it is revoked."""
    return _devices_page()


@bp.post("/devices/<any(kiosk, gateway):kind>")
@requires("admin")
def register(kind: str) -> tuple[str, int]:
    """Register a kiosk or gateway and show its one-time code, once, on this answer only."""
    form = RegisterDeviceForm()
    if not form.validate_on_submit():
        if not form.errors.get("name"):
            abort(400)
        return _devices_page(form, kind=kind, error=form.errors["name"][0], status=400)
    stations = tuple(s for s in (form.stations.data or "").replace(",", " ").split() if s)
    try:
        code = services().devices.add(kind, form.name.data or "", location=(form.location.data or "").strip(),
                                      stations=stations, actor=_actor())
    except AccountError as exc:
        return _devices_page(form, kind=kind, error=_human(exc), status=400)
    return _devices_page(kind=kind, code=code, registered=(form.name.data or "").strip().lower())


@bp.post("/devices/<any(kiosk, gateway):kind>/<name>/revoke")
@requires("admin")
def revoke(kind: str, name: str) -> ResponseReturnValue:
    """Revoke a kiosk's or gateway's token: its next request is refused."""
    _checked()
    if not services().devices.revoke(kind, name, actor=_actor()):
        abort(404)
    flash(f"The {DEVICE_KINDS[kind]} {name} is revoked: it can no longer connect.", "info")
    return redirect(url_for("admin.devices"))


@bp.get("/stations")
@requires("admin")
def stations() -> tuple[str, int]:
    """Vitals stations and the devices configured at each, with their state now."""
    svc = services()
    return _page("stations.html", stations=svc.stations.all(), devices=svc.stations.devices())


@bp.get("/content")
@requires("admin")
def content() -> tuple[str, int]:
    """The consents and questionnaires the kiosk uses, with their versions (read-only: they are files)."""
    checkin = services().checkin
    return _page("content.html", consents=checkin.consents,
                 questionnaires=sorted(checkin.library.questionnaires.values(), key=lambda q: q.key),
                 rules=checkin.library.rules)


@bp.route("/audit", methods=["GET", "POST"])
@requires("admin")
def audit_report() -> ResponseReturnValue:
    """Who viewed or changed one patient's data between two days (the MRN is posted, never put in a URL)."""
    form = AuditReportForm()
    report = None
    error = None
    if form.validate_on_submit():
        try:
            start = dt.date.fromisoformat(form.start.data or "")
            end = dt.date.fromisoformat(form.end.data or "")
        except ValueError:
            error = "Enter both days as dates such as 2026-03-31, or choose them from the calendar."
        else:
            try:
                report = services().audit_reports.accesses(form.mrn.data or "", start, end, actor=_actor())
            except ReportError as exc:
                error = str(exc)
    elif form.errors:
        error = next(iter(form.errors.values()))[0]
    if not form.is_submitted():
        today = services().board.today()
        form.start.data = form.start.data or (today - dt.timedelta(days=30)).isoformat()
        form.end.data = form.end.data or today.isoformat()
    return _page("audit.html", 400 if error else 200, form=form, report=report, error=error)
