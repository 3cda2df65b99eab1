"""The patient kiosk at ``/kiosk/``: thin views over :class:`server.services.checkin.CheckIn`.

Each view reads the two kiosk cookies (the enrolled device, the patient's
session), calls one service method and renders or redirects. A page the
session is not at redirects to the one it is at, so the browser's Back
button can only ever show the current step, and after a reset the welcome
screen. No patient data ever goes into a URL; every page is ``no-store``.
"""

from __future__ import annotations

import json
import time
import typing as t

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import g
from flask import jsonify
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import stream_with_context
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import validate_csrf
from werkzeug.wrappers import Response as BaseResponse
from wtforms import ValidationError

from server.auth import client_address
from server.auth import public
from server.auth import services
from server.live import Subscription
from server.services.checkin import ChangeRequest
from server.services.checkin import Screen
from server.services.consents import Signature
from server.services.flags import CHANGE_FIELDS
from server.services.kiosks import Credentials
from server.services.kiosks import NotEnrolled

bp = Blueprint("kiosk", __name__, url_prefix="/kiosk", template_folder="templates", static_folder="static")

DEVICE_COOKIE = "frontdesk_kiosk"
SESSION_COOKIE = "frontdesk_kiosk_session"
DEVICE_COOKIE_DAYS = 400  # browsers cap cookie lifetimes at about 400 days; the kiosk renews it on every visit
LOBBY_REFRESH_SECONDS = 10.0
STEPS = ("identify", "choose", "appointment", "details", "change", "consent", "questions", "notice", "done",
         "already", "front_desk", "checkout", "checked_out")


F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def enrolled(view: F) -> F:
    """Mark a view as serving enrolled kiosks only.

    The device cookie is checked inside the service call (one transaction with
    the session); a browser that is not enrolled gets :class:`NotEnrolled`,
    answered by :func:`_not_enrolled`.
    """
    view._access = {"roles": (), "principals": ("kiosk",)}  # type: ignore[attr-defined]
    return view


def _cookie_name(name: str) -> str:
    return f"__Host-{name}" if current_app.config["SESSION_COOKIE_SECURE"] else name


def credentials() -> Credentials:
    """This request's kiosk cookies and address."""
    return Credentials(request.cookies.get(_cookie_name(DEVICE_COOKIE)),
                       request.cookies.get(_cookie_name(SESSION_COOKIE)), client_address())


def _set_cookie(response: Response, name: str, value: str, *, days: int | None = None) -> None:
    response.set_cookie(_cookie_name(name), value, httponly=True, samesite="Strict", path="/",
                        secure=bool(current_app.config["SESSION_COOKIE_SECURE"] or request.is_secure),
                        max_age=days * 86400 if days else None)


def _check_csrf() -> None:
    try:
        validate_csrf(request.form.get("csrf_token") or request.headers.get("X-CSRFToken", ""))
    except ValidationError:
        abort(400, description="The form expired. Please start again.")


@bp.errorhandler(NotEnrolled)
def _not_enrolled(_error: NotEnrolled) -> ResponseReturnValue:
    if request.method == "GET" and request.endpoint == "kiosk.welcome":
        return _render(Screen("enroll"), "enroll.html")
    if request.path.endswith(("/alive", "/events")):
        return jsonify(error="not an enrolled kiosk"), 401
    return redirect(url_for("kiosk.welcome"))


def _render(screen: Screen, template: str, status: int = 200, **extra: t.Any) -> ResponseReturnValue:
    g.language = screen.language
    return render_template(f"kiosk/{template}", screen=screen, steps=STEPS,
                           warning_seconds=current_app.config["FRONTDESK"].kiosk.warning_seconds, **extra), status


def _page(step: str) -> ResponseReturnValue:
    screen = services().checkin.screen(credentials(), step)
    if screen.step != step:
        return redirect(url_for(f"kiosk.{screen.step}"))
    return _render(screen, f"{step}.html")


def _to_current() -> BaseResponse:
    """After a form post: to the page of the step the service left the session at (see
    :meth:`KioskSessions.step_after_turn`), else through ``/kiosk/current``."""
    step = services().kiosks.step_after_turn()
    if step is None:
        return redirect(url_for("kiosk.current"), code=303)
    return redirect(url_for("kiosk.welcome" if step == "welcome" else f"kiosk.{step}"), code=303)


def _after(result: Screen | None, template: str) -> ResponseReturnValue:
    """Render a screen returned with errors, else go to wherever the session now is."""
    if result is not None:
        return _render(result, template)
    return _to_current()


@bp.get("/")
@public
def welcome() -> ResponseReturnValue:
    """The welcome screen (or, for a browser that is not an enrolled kiosk, only the enrolment form)."""
    screen = services().checkin.screen(credentials(), "welcome")
    if screen.step != "welcome":
        return redirect(url_for(f"kiosk.{screen.step}"))
    return _render(screen, "welcome.html")


@bp.route("/enroll", methods=["GET", "POST"])
@public
def enroll() -> ResponseReturnValue:
    """Turn this browser into an enrolled kiosk with the code ``frontdesk kiosks add`` printed.

    The code is typed into the form, or comes in a link (``/kiosk/enroll?code=…``, which
    ``frontdesk demo`` prints): either way it works once, so a link seen later is worthless.
    """
    if request.method == "POST":
        _check_csrf()
        code = request.form.get("code", "")
    else:
        code = request.args.get("code", "")
        if not code.strip():
            return redirect(url_for("kiosk.welcome"))
    secret = services().kiosks.enroll(code[:200], client_address()) if code.strip() else None
    if secret is None:
        return _render(Screen("enroll", errors={"code": "enroll"}), "enroll.html", 200)
    session.clear()
    response = make_response(redirect(url_for("kiosk.welcome"), code=303))
    _set_cookie(response, DEVICE_COOKIE, secret, days=DEVICE_COOKIE_DAYS)
    return response


@bp.get("/current")
@enrolled
def current() -> ResponseReturnValue:
    """Wherever the session is now (the target of every form, hit or miss alike)."""
    screen = services().checkin.screen(credentials(), "")
    return redirect(url_for("kiosk.welcome" if screen.step == "welcome" else f"kiosk.{screen.step}"))


@bp.post("/code")
@enrolled
def code() -> ResponseReturnValue:
    """The code from a reminder letter, scanned or typed on the welcome screen."""
    _check_csrf()
    token, screen = services().checkin.start_with_code(credentials(), request.form.get("code", "")[:100])
    response = make_response(_render(screen, "identify.html") if screen is not None
                             else _to_current())
    _set_cookie(response, SESSION_COOKIE, token)
    return response


@bp.post("/start")
@enrolled
def start() -> ResponseReturnValue:
    """"Check in" or "Check out": a new kiosk session."""
    _check_csrf()
    token = services().checkin.start(credentials(), request.form.get("mode", "checkin"))
    response = make_response(redirect(url_for("kiosk.identify"), code=303))
    _set_cookie(response, SESSION_COOKIE, token)
    return response


@bp.post("/preferences")
@enrolled
def preferences() -> ResponseReturnValue:
    """Language and large text, from the buttons on every screen."""
    _check_csrf()
    large = request.form.get("large_text")
    token = services().kiosks.set_preferences(credentials(), language=request.form.get("language"),
                                              large_text=None if large is None else large == "on")
    response = make_response(_to_current())
    if token:
        _set_cookie(response, SESSION_COOKIE, token)
    return response


@bp.post("/reset")
@enrolled
def reset() -> ResponseReturnValue:
    """End the patient's session (finished, cancelled, or the idle countdown ran out) and forget it."""
    _check_csrf()
    reason = request.form.get("reason", "")
    services().kiosks.reset(credentials(), reason if reason in ("finished", "cancelled", "timeout") else "cancelled")
    session.clear()
    response = make_response(redirect(url_for("kiosk.welcome"), code=303))
    response.delete_cookie(_cookie_name(SESSION_COOKIE), path="/", samesite="Strict",
                           secure=bool(current_app.config["SESSION_COOKIE_SECURE"] or request.is_secure))
    # Not "cookies": that would also drop the device cookie and un-enrol the kiosk.
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response


@bp.post("/extend")
@enrolled
def extend() -> ResponseReturnValue:
    """"I need more time" from the timeout warning (the page's script calls this)."""
    _check_csrf()
    return jsonify(active=services().kiosks.extend(credentials()))


@bp.get("/alive")
@enrolled
def alive() -> ResponseReturnValue:
    """Whether this browser's session still exists; a page that had one goes home when it does not."""
    return jsonify(active=services().kiosks.alive(credentials()))


@bp.route("/identify", methods=["GET", "POST"])
@enrolled
def identify() -> ResponseReturnValue:
    """Last name and date of birth, or the code from a reminder letter."""
    if request.method == "GET":
        return _page("identify")
    _check_csrf()
    checkin = services().checkin
    if "code" in request.form:
        return _after(checkin.identify_code(credentials(), request.form.get("code", "")[:100]), "identify.html")
    return _after(checkin.identify(credentials(), request.form.get("last_name", "")[:200],
                                   request.form.get("birth_date", "")[:40]), "identify.html")


@bp.route("/choose", methods=["GET", "POST"])
@enrolled
def choose() -> ResponseReturnValue:
    """Several matches (twins): pick the appointment by time and clinician."""
    if request.method == "GET":
        return _page("choose")
    _check_csrf()
    return _after(services().checkin.choose(credentials(), request.form.get("appointment", "")), "choose.html")


@bp.route("/appointment", methods=["GET", "POST"])
@enrolled
def appointment() -> ResponseReturnValue:
    """Confirm today's appointment."""
    if request.method == "GET":
        return _page("appointment")
    _check_csrf()
    services().checkin.confirm_appointment(credentials(), request.form.get("answer") == "yes")
    return _to_current()


@bp.route("/details", methods=["GET", "POST"])
@enrolled
def details() -> ResponseReturnValue:
    """Contact details and insurance, masked: "Yes, this is correct" or "Change"."""
    if request.method == "GET":
        return _page("details")
    _check_csrf()
    services().checkin.confirm_details(credentials(), request.form.get("answer") == "change")
    return _to_current()


@bp.route("/change", methods=["GET", "POST"])
@enrolled
def change() -> ResponseReturnValue:
    """New contact or insurance details, for staff to review."""
    if request.method == "GET":
        return _page("change")
    _check_csrf()
    request_ = None if request.form.get("answer") == "cancel" else ChangeRequest(
        {name: request.form.get(name, "")[:300] for name in CHANGE_FIELDS})
    return _after(services().checkin.request_change(credentials(), request_), "change.html")


@bp.route("/consent", methods=["GET", "POST"])
@enrolled
def consent() -> ResponseReturnValue:
    """One consent text, signed by typing a name (or drawing), or "I'd like to talk to staff first"."""
    if request.method == "GET":
        return _page("consent")
    _check_csrf()
    action = request.form.get("answer", "")
    if action == "talk":
        signature = Signature("declined")
    elif request.form.get("drawing", "").strip() and not request.form.get("signer_name", "").strip():
        signature = Signature("drawn", drawing=request.form.get("drawing", "")[:20000])
    else:
        signature = Signature("typed", name=request.form.get("signer_name", "")[:300])
    return _after(services().checkin.sign(credentials(), signature), "consent.html")


@bp.route("/questions", methods=["GET", "POST"])
@enrolled
def questions() -> ResponseReturnValue:
    """One page of a questionnaire."""
    if request.method == "GET":
        return _page("questions")
    _check_csrf()
    form = {key: request.form.getlist(key) for key in request.form if key != "csrf_token"}
    return _after(services().checkin.answer(credentials(), form, decline=request.form.get("answer") == "decline"),
                  "questions.html")


@bp.route("/notice", methods=["GET", "POST"])
@enrolled
def notice() -> ResponseReturnValue:
    """"A staff member will follow up", with crisis-line information; never a score."""
    if request.method == "GET":
        return _page("notice")
    _check_csrf()
    services().checkin.continue_after_notice(credentials())
    return _to_current()


@bp.get("/done")
@enrolled
def done() -> ResponseReturnValue:
    """"You're checked in": ticket number and estimated wait."""
    return _page("done")


@bp.get("/already")
@enrolled
def already() -> ResponseReturnValue:
    """Checked in before today: nothing changes."""
    return _page("already")


@bp.route("/front-desk", methods=["GET", "POST"])
@enrolled
def front_desk() -> ResponseReturnValue:
    """"Please see the front desk" (no match, outside the window, or locked: the same screen)."""
    if request.method == "GET":
        return _page("front_desk")
    _check_csrf()
    services().checkin.try_again(credentials())
    return _to_current()


@bp.route("/checkout", methods=["GET", "POST"])
@enrolled
def checkout() -> ResponseReturnValue:
    """Confirm checking out."""
    if request.method == "GET":
        return _page("checkout")
    _check_csrf()
    services().checkin.check_out(credentials())
    return _to_current()


@bp.route("/checked-out", methods=["GET", "POST"])
@enrolled
def checked_out() -> ResponseReturnValue:
    """Checked out: the next appointment, and "Request a follow-up"."""
    if request.method == "GET":
        return _page("checked_out")
    _check_csrf()
    services().checkin.request_follow_up(credentials())
    return _to_current()


@bp.get("/lobby")
@enrolled
def lobby() -> ResponseReturnValue:
    """The waiting-room screen: ticket numbers called and the estimated wait, updated live."""
    state = services().checkin.lobby(credentials())
    return _render(Screen("lobby"), "lobby.html", lobby=state)


@bp.get("/lobby/events")
@enrolled
def lobby_events() -> ResponseReturnValue:
    """Server-Sent Events for the lobby screen: its whole state now, then again whenever it changes."""
    svc = services()
    creds = credentials()
    first = svc.checkin.lobby(creds)
    subscription = svc.live.subscribe(["lobby", "board"])
    return Response(stream_with_context(lobby_stream(subscription, lambda: svc.checkin.lobby(creds), first)),
                    mimetype="text/event-stream", headers={"X-Accel-Buffering": "no"})


def lobby_stream(subscription: Subscription, fetch: t.Callable[[], dict[str, t.Any]], first: dict[str, t.Any], *,
                 refresh: float = LOBBY_REFRESH_SECONDS, heartbeat: float = 15.0) -> t.Iterator[str]:
    """The lobby's state as ``state`` events: at once, on every hub event, and every ``refresh`` seconds.

    Events are hints (:mod:`server.live`); the state is always fetched whole, so
    a missed event costs at most one refresh period. The periodic fetch also
    catches a patient called to a room by a path that announces nothing.
    """
    try:
        yield "retry: 2000\n\n"
        sent = first
        yield _state(first)
        last_sent = last_fetch = time.monotonic()
        while not subscription.closed:
            event = subscription.get(timeout=1.0)
            now = time.monotonic()
            if event is None and now - last_fetch < refresh:
                if now - last_sent >= heartbeat:
                    yield ": keep-alive\n\n"
                    last_sent = now
                continue
            last_fetch = now
            try:
                state = fetch()
            except NotEnrolled:
                return
            if state != sent or event is not None:
                sent, last_sent = state, now
                yield _state(state)
    finally:
        subscription.close()


def _state(state: dict[str, t.Any]) -> str:
    return f"event: state\ndata: {json.dumps(state, separators=(',', ':'))}\n\n"
