"""Who is calling, and may they: principals and the one authorisation decorator.

Three kinds of principal reach the HTTP side: staff users (session cookie),
kiosk devices and station gateways (bearer tokens). Every view declares which
may call it with :func:`requires` or opts out with :func:`public`; a test walks
the URL map and fails for any view that does neither, so a new route cannot be
left open by accident.
"""

from __future__ import annotations

import functools
import typing as t

from flask import Response
from flask import current_app
from flask import g
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue

from server.forms import SignOutForm
from server.services import Services
from server.services.devices import DevicePrincipal
from server.services.staff import StaffPrincipal

SESSION_COOKIE = "frontdesk_session"
SECURE_SESSION_COOKIE = "__Host-frontdesk_session"

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def services() -> Services:
    """The services of the current app."""
    return t.cast(Services, current_app.extensions["frontdesk"])


def session_cookie_name() -> str:
    """``__Host-`` prefixed when cookies are Secure (the prefix requires it)."""
    return SECURE_SESSION_COOKIE if current_app.config["SESSION_COOKIE_SECURE"] else SESSION_COOKIE


def client_address() -> str:
    """The caller's address (after ProxyFix when proxies are trusted)."""
    return request.remote_addr or ""


def current_staff() -> StaffPrincipal | None:
    """The signed-in staff member of this request, resolved once."""
    if "staff" not in g:
        token = request.cookies.get(session_cookie_name())
        if token:
            g.staff = services().staff.resume(token, client_address())
        else:
            bearer = _bearer() if wants_json() else None
            g.staff = services().api_tokens.authenticate(bearer) if bearer else None
    return t.cast(StaffPrincipal | None, g.staff)


def signed_in_staff() -> StaffPrincipal:
    """The staff member of a view guarded by :func:`requires` (which has already checked there is one)."""
    staff = current_staff()
    if staff is None:
        raise RuntimeError("signed_in_staff() used outside a @requires view")
    return staff


def _bearer() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def current_device(kind: str) -> DevicePrincipal | None:
    """The kiosk or gateway presenting a bearer token on this request."""
    token = _bearer()
    return services().devices.authenticate(kind, token) if token else None


def public(view: F) -> F:
    """Mark a view as reachable without a principal (login page, health, OpenAPI)."""
    view._access = "public"  # type: ignore[attr-defined]
    return view


def requires(*roles: str, principals: tuple[str, ...] = ("staff",),
             before_second_factor: bool = False, scope: str | None = None) -> t.Callable[[F], F]:
    """Allow a view to the given principal kinds; staff additionally need one of ``roles``.

    An empty ``roles`` admits every staff role; ``admin`` is always admitted.
    Without a principal, API routes answer 401 and pages redirect to sign-in;
    with the wrong role the answer is 403 and the refusal is audited. Staff
    still owing their second factor reach only views marked
    ``before_second_factor`` (the second-factor pages); elsewhere pages send
    them there and the API answers 401. A staff API token (no browser session)
    also needs ``scope`` among its scopes; without one, a view takes no token.
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: t.Any, **kwargs: t.Any) -> t.Any:
            for kind in principals:
                if kind == "staff":
                    staff = current_staff()
                    if staff is None:
                        continue
                    if staff.needs_second_factor and not before_second_factor:
                        if wants_json():
                            return jsonify(error="second factor required"), 401
                        return redirect(url_for("account.second_factor"))
                    if roles and staff.role not in roles and staff.role != "admin":
                        return forbid(staff)
                    if staff.scopes is not None and (scope is None or scope not in staff.scopes):
                        return forbid(staff)
                    return view(*args, **kwargs)
                device = current_device(kind)
                if device is not None:
                    g.device = device
                    return view(*args, **kwargs)
            return _unauthenticated(principals)

        wrapped._access = {"roles": roles, "principals": principals, "scope": scope}  # type: ignore[attr-defined]
        return t.cast(F, wrapped)

    return decorate


def wants_json() -> bool:
    """Whether this request is for the JSON API (errors answer in JSON there)."""
    return request.path.startswith("/api/") or request.path == "/healthz"


def _unauthenticated(principals: tuple[str, ...]) -> ResponseReturnValue:
    if wants_json() or "staff" not in principals:
        return jsonify(error="authentication required"), 401
    return redirect(url_for("staff.login"))


def forbid(staff: StaffPrincipal, message: str = "Your role does not allow this page.") -> tuple[Response | str, int]:
    """Refuse a signed-in staff member (403) and audit the refusal."""
    svc = services()
    with svc.uow.begin() as session:
        svc.audit.record(session, staff.actor(client_address()), "authz.denied", outcome="failure",
                         detail=f"endpoint={request.endpoint}")
    if wants_json():
        return jsonify(error="not allowed for your role"), 403
    return render_template("error.html", status=403, message="Not allowed", explanation=message,
                           **staff_chrome()), 403


def staff_chrome() -> dict[str, t.Any]:
    """What a page needs to show the staff navigation and "Sign out" (an error page too): nothing for
    anyone not fully signed in, so the navigation never shows to a kiosk or before the second factor."""
    try:
        staff = current_staff()
    except Exception:  # noqa: BLE001 (an error page must render even when the database is what failed)
        return {}
    if staff is None or staff.needs_second_factor:
        return {}
    # No form data: an error page may be answering a body that could not be read (malformed JSON).
    return {"staff": staff, "sign_out": SignOutForm(formdata=None)}
