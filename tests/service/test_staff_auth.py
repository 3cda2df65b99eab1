"""Staff sign-in: identical failures, CSRF, sessions with idle and absolute limits, roles, throttling, audit."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select

from server.auth import SESSION_COOKIE
from server.models import AuditEvent
from server.models import StaffSession
from server.services import Services
from server.services.context import SYSTEM
from server.services.context import FrozenClock
from tests.conftest import StaffActions
from tests.conftest import csrf_token


def audit_actions(services: Services) -> list[tuple[str, str, str]]:
    with services.uow.begin() as session:
        return [(e.action, e.outcome, e.detail) for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_sign_in_opens_a_session_and_shows_the_day(staff: StaffActions, client: FlaskClient) -> None:
    staff.create("alice", "front_desk")
    response = staff.sign_in("alice")
    assert response.status_code == 302 and response.headers["Location"] == "/staff/"
    cookie = response.headers.getlist("Set-Cookie")
    session_cookie = next(c for c in cookie if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    page = client.get("/staff/")
    assert page.status_code == 200 and "Visits on" in page.text


def test_unknown_user_and_wrong_password_look_the_same(staff: StaffActions, client: FlaskClient) -> None:
    staff.create("alice", "front_desk")
    wrong = staff.sign_in("alice", "not the password")
    unknown = staff.sign_in("mallory", "not the password")
    assert wrong.status_code == unknown.status_code == 200
    same_input = unknown.text.replace('value="mallory"', 'value="alice"')
    assert csrf_token_free(wrong.text) == csrf_token_free(same_input)
    assert "Sign-in failed" in wrong.text
    assert client.get("/staff/").status_code == 302


def csrf_token_free(html: str) -> str:
    token = csrf_token(html)
    return html.replace(token, "<token>")


def test_login_without_csrf_token_is_refused(staff: StaffActions, client: FlaskClient) -> None:
    staff.create("alice", "front_desk")
    response = client.post("/staff/login", data={"username": "alice", "password": "correct horse battery"})
    assert response.status_code == 400
    assert client.get("/staff/").status_code == 302


def test_logout_is_post_only_and_revokes_the_session(staff: StaffActions, client: FlaskClient,
                                                      services: Services) -> None:
    staff.create("alice", "front_desk")
    staff.sign_in("alice")
    token = client.get_cookie(SESSION_COOKIE)
    assert token is not None
    assert client.get("/staff/logout").status_code == 405
    response = staff.sign_out()
    assert response.status_code == 302
    assert "cookies" in response.headers["Clear-Site-Data"]
    client.set_cookie(SESSION_COOKIE, token.value)
    assert client.get("/staff/").status_code == 302
    with services.uow.begin() as session:
        assert session.scalar(select(StaffSession.revoked_at)) is not None


def test_logout_without_csrf_token_is_refused(staff: StaffActions, client: FlaskClient) -> None:
    staff.create("alice", "front_desk")
    staff.sign_in("alice")
    assert client.post("/staff/logout").status_code == 400
    assert client.get("/staff/").status_code == 200


def test_idle_logoff_after_fifteen_minutes(staff: StaffActions, client: FlaskClient, clock: FrozenClock,
                                           services: Services) -> None:
    staff.create("alice", "front_desk")
    staff.sign_in("alice")
    clock.advance(minutes=14)
    assert client.get("/staff/").status_code == 200
    clock.advance(minutes=14, seconds=59)
    assert client.get("/staff/").status_code == 200
    clock.advance(minutes=15, seconds=1)
    assert client.get("/staff/").status_code == 302
    assert ("auth.session_expired", "success", "idle") in audit_actions(services)
    clock.advance(seconds=1)
    assert client.get("/staff/").status_code == 302


def test_absolute_lifetime_ends_an_active_session(staff: StaffActions, client: FlaskClient,
                                                  clock: FrozenClock, services: Services) -> None:
    staff.create("alice", "front_desk")
    staff.sign_in("alice")
    for _ in range(12 * 6):
        clock.advance(minutes=10)
        assert client.get("/staff/").status_code == 200
    clock.advance(minutes=1)
    assert client.get("/staff/").status_code == 302
    assert ("auth.session_expired", "success", "absolute") in audit_actions(services)


def test_api_without_session_is_401(client: FlaskClient) -> None:
    response = client.get("/api/v1/visits")
    assert response.status_code == 401 and response.json == {"error": "authentication required"}


def test_role_is_enforced_and_refusal_audited(staff: StaffActions, client: FlaskClient, services: Services,
                                              demo_visit: int) -> None:
    staff.create("ama", "assistant")
    staff.sign_in("ama")
    page = client.get("/staff/")
    response = client.post(f"/staff/visits/{demo_visit}/state",
                           data={"csrf_token": csrf_token(page.text), "target": "cancelled"})
    assert response.status_code == 403
    allowed = client.post(f"/staff/visits/{demo_visit}/state",
                          data={"csrf_token": csrf_token(page.text), "target": "arrived"})
    assert allowed.status_code == 403
    denials = [a for a in audit_actions(services) if a[0] == "authz.denied"]
    assert denials == [("authz.denied", "failure", "endpoint=staff.change_state")] * 2


def test_state_change_requires_csrf(staff: StaffActions, client: FlaskClient, demo_visit: int) -> None:
    staff.create("alice", "front_desk")
    staff.sign_in("alice")
    assert client.post(f"/staff/visits/{demo_visit}/state", data={"target": "arrived"}).status_code == 400


def test_front_desk_checks_a_patient_in(staff: StaffActions, client: FlaskClient, services: Services,
                                        demo_visit: int) -> None:
    staff.create("alice", "front_desk")
    staff.sign_in("alice")
    page = client.get("/staff/")
    assert "Tester, Sentinel" in page.text
    response = client.post(f"/staff/visits/{demo_visit}/state",
                           data={"csrf_token": csrf_token(page.text), "target": "arrived"})
    assert response.status_code == 302
    assert client.get("/api/v1/visits?date=2026-11-26").json["visits"][0]["state"] == "arrived"
    actions = [a for a, _, _ in audit_actions(services)]
    assert "visit.arrived" in actions and "visit.listed" in actions


def test_sign_in_and_failures_are_audited(staff: StaffActions, services: Services) -> None:
    staff.create("alice", "front_desk")
    staff.sign_in("alice", "bad password 1")
    staff.sign_in("alice")
    actions = audit_actions(services)
    assert ("auth.sign_in", "failure", "bad_credentials") in actions
    assert ("auth.sign_in", "success", "") in actions


def test_failed_logins_are_throttled_per_username(staff: StaffActions, client: FlaskClient,
                                                  services: Services, clock: FrozenClock) -> None:
    staff.create("alice", "front_desk")
    for attempt in range(5):
        staff.sign_in("alice", f"guess {attempt}")
    throttled = staff.sign_in("alice")
    assert throttled.status_code == 200 and "Sign-in failed" in throttled.text
    assert ("auth.sign_in", "failure", "throttled") in audit_actions(services)
    clock.advance(minutes=16)
    assert staff.sign_in("alice").status_code == 302


def test_failed_logins_are_throttled_per_address(staff: StaffActions, services: Services,
                                                 clock: FrozenClock) -> None:
    staff.create("alice", "front_desk")
    for attempt in range(20):
        staff.sign_in(f"nobody{attempt}", "guess")
    assert staff.sign_in("alice").status_code == 200
    assert audit_actions(services)[-1] == ("auth.sign_in", "failure", "throttled")


def test_revoking_a_user_sessions_signs_them_out(staff: StaffActions, client: FlaskClient,
                                                 services: Services) -> None:
    user_id = staff.create("alice", "front_desk")
    staff.sign_in("alice")
    assert services.staff.revoke_sessions(user_id, actor=SYSTEM) == 1
    assert client.get("/staff/").status_code == 302


def test_over_https_the_cookie_is_secure_and_cross_site_posts_refused(staff: StaffActions, client: FlaskClient) -> None:
    staff.create("alice", "front_desk")
    page = client.get("/staff/login", base_url="https://frontdesk.test")
    form = {"csrf_token": csrf_token(page.text), "username": "alice", "password": "correct horse battery"}
    cross_site = client.post("/staff/login", base_url="https://frontdesk.test", data=form,
                             headers={"Referer": "https://evil.test/"})
    assert cross_site.status_code == 400
    response = client.post("/staff/login", base_url="https://frontdesk.test", data=form,
                           headers={"Referer": "https://frontdesk.test/staff/login"})
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith(SESSION_COOKIE + "="))
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_signing_in_ends_the_previous_session_on_that_browser(staff: StaffActions, client: FlaskClient,
                                                              services: Services) -> None:
    staff.create("alice", "front_desk")
    staff.create("bob", "assistant")
    staff.sign_in("alice")
    alice_token = client.get_cookie(SESSION_COOKIE)
    assert alice_token is not None
    staff.sign_in("bob")
    client.set_cookie(SESSION_COOKIE, alice_token.value)
    assert client.get("/staff/").status_code == 302
    assert ("auth.sign_out", "success", "") in audit_actions(services)


def test_disabling_a_user_ends_their_sessions_and_refuses_sign_in(staff: StaffActions, client: FlaskClient,
                                                                  services: Services) -> None:
    staff.create("alice", "front_desk")
    staff.sign_in("alice")
    assert services.staff.disable("Alice") == 1
    assert client.get("/staff/").status_code == 302
    assert "Sign-in failed" in staff.sign_in("alice").text
    assert ("staff.user_disabled", "success", "") in audit_actions(services)
