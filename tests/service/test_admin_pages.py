"""Administration through its forms: staff users, kiosks and gateways, stations, content, the audit report."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from server.services import Services
from server.services.context import SYSTEM
from server.services.context import Actor
from server.services.staff import SignInFailed
from tests.conftest import START
from tests.conftest import StaffActions
from tests.conftest import csrf_token

PASSWORD = "correct horse battery"


@pytest.fixture
def admin(staff: StaffActions) -> StaffActions:
    staff.create("root", "admin")
    staff.sign_in("root")
    staff.pass_second_factor()
    return staff


def _post(client: FlaskClient, page_url: str, url: str, **data: str) -> tuple[int, str]:
    page = client.get(page_url)
    response = client.post(url, data={"csrf_token": csrf_token(page.text), **data})
    if response.status_code == 302:
        return 302, client.get(response.headers["Location"]).text
    return response.status_code, response.text


def _user_id(services: Services, username: str) -> int:
    return next(u.user_id for u in services.staff.list_users() if u.username == username)


@pytest.mark.parametrize("path", ["/staff/admin/", "/staff/admin/users", "/staff/admin/devices",
                                  "/staff/admin/stations", "/staff/admin/content", "/staff/admin/audit"])
def test_administration_is_for_administrators_only(staff: StaffActions, client: FlaskClient, path: str) -> None:
    staff.create("fatima", "front_desk")
    staff.sign_in("fatima")
    page = client.get(path)
    assert page.status_code == 403 and "Sign out" in page.text


def test_add_a_user_politely_re_asked_on_bad_input(admin: StaffActions, client: FlaskClient,
                                                   services: Services) -> None:
    status, page = _post(client, "/staff/admin/users", "/staff/admin/users", username="Bad Name!",
                         role="front_desk", password=PASSWORD)
    assert status == 400 and "Username: 2-64 characters" in page and 'value="Bad Name!"' in page
    status, page = _post(client, "/staff/admin/users", "/staff/admin/users", username="kim", role="front_desk",
                         password="short")
    assert status == 400 and "at least 12 characters" in page
    status, page = _post(client, "/staff/admin/users", "/staff/admin/users", username="kim", display_name="Kim Lee",
                         role="assistant", password=PASSWORD)
    assert status == 302 and "User kim added." in page and "Medical assistant" in page
    services.staff.sign_in("kim", PASSWORD, "127.0.0.1")


def test_disable_enable_reset_password_and_sessions(admin: StaffActions, client: FlaskClient,
                                                    services: Services) -> None:
    services.staff.add_user("kim", "front_desk", PASSWORD)
    services.staff.sign_in("kim", PASSWORD, "10.0.0.7")
    kim = _user_id(services, "kim")
    page = client.get(f"/staff/admin/users/{kim}").text
    assert "10.0.0.7" in page and "End session" in page

    _, page = _post(client, f"/staff/admin/users/{kim}", f"/staff/admin/users/{kim}/disable")
    assert "kim is disabled; 1 open session ended." in page and "Not signed in anywhere." in page
    with pytest.raises(SignInFailed):
        services.staff.sign_in("kim", PASSWORD, "10.0.0.7")
    _, page = _post(client, f"/staff/admin/users/{kim}", f"/staff/admin/users/{kim}/enable")
    assert "kim can sign in again." in page

    status, page = _post(client, f"/staff/admin/users/{kim}", f"/staff/admin/users/{kim}/password", password="short")
    assert status == 400 and "at least 12 characters" in page
    _, page = _post(client, f"/staff/admin/users/{kim}", f"/staff/admin/users/{kim}/password",
                    password="a brand new passphrase")
    assert "kim has a new password" in page
    services.staff.sign_in("kim", "a brand new passphrase", "10.0.0.7")
    session_id = services.staff.open_sessions(kim)[0].session_id
    _, page = _post(client, f"/staff/admin/users/{kim}", f"/staff/admin/users/{kim}/sessions/{session_id}")
    assert "Session ended" in page and services.staff.open_sessions(kim) == []


def test_an_administrator_cannot_disable_themselves(admin: StaffActions, client: FlaskClient,
                                                    services: Services) -> None:
    me = _user_id(services, "root")
    _, page = _post(client, f"/staff/admin/users/{me}", f"/staff/admin/users/{me}/disable")
    assert "You cannot disable your own account" in page and services.staff.user(me).active


def test_unlock_lets_a_locked_out_user_back_in(admin: StaffActions, client: FlaskClient,
                                               services: Services) -> None:
    services.staff.add_user("kim", "front_desk", PASSWORD)
    for _ in range(services.staff.policy.login_max_failures_per_user):
        with pytest.raises(SignInFailed):
            services.staff.sign_in("kim", "wrong password here", "10.0.0.7")
    with pytest.raises(SignInFailed):
        services.staff.sign_in("kim", PASSWORD, "10.0.0.7")
    assert "locked out" in client.get("/staff/admin/users").text
    kim = _user_id(services, "kim")
    _, page = _post(client, f"/staff/admin/users/{kim}", f"/staff/admin/users/{kim}/unlock")
    assert "they can sign in again now" in page
    services.staff.sign_in("kim", PASSWORD, "10.0.0.7")


@pytest.mark.parametrize(("method", "url"), [
    ("GET", "/staff/admin/users/999"), ("GET", "/staff/admin/users/99999999999999999999"),
    ("POST", "/staff/admin/users/999/unlock"), ("POST", "/staff/admin/users/999/password"),
    ("POST", "/staff/admin/devices/kiosk/nobody/revoke"), ("POST", "/staff/admin/users/1/sessions/999"),
    ("POST", "/staff/admin/users/1/sessions/99999999999999999999")])
def test_ids_that_do_not_exist_are_404(admin: StaffActions, client: FlaskClient, method: str, url: str) -> None:
    page = client.get("/staff/admin/users")
    response = client.open(url, method=method, data={"csrf_token": csrf_token(page.text), "password": PASSWORD})
    assert response.status_code == 404 and "Sign out" in response.text


def test_register_a_kiosk_shows_its_code_once_and_revoke(admin: StaffActions, client: FlaskClient,
                                                         services: Services) -> None:
    status, page = _post(client, "/staff/admin/devices", "/staff/admin/devices/kiosk", name="lobby-1",
                         location="Lobby")
    assert status == 200
    code = re.search(r'id="one-time-code">([^<]+)<', page)
    assert code and services.kiosks.enroll(code.group(1), "127.0.0.1") is not None
    assert 'id="one-time-code"' not in client.get("/staff/admin/devices").text
    status, page = _post(client, "/staff/admin/devices", "/staff/admin/devices/gateway", name="pc-1",
                         stations="")
    assert status == 400 and "at least one station" in page
    status, page = _post(client, "/staff/admin/devices", "/staff/admin/devices/gateway", name="pc-1",
                         stations="room1 room2")
    assert status == 200 and 'id="one-time-code"' in page
    _, page = _post(client, "/staff/admin/devices", "/staff/admin/devices/kiosk/lobby-1/revoke")
    assert "lobby-1 is revoked" in page and [d.revoked_at is not None for d in services.devices.list("kiosk")] == [True]


def test_stations_and_content_show_what_is_in_use(admin: StaffActions, client: FlaskClient,
                                                  services: Services) -> None:
    services.stations.configure([("ox-1", "nonin", "loop://", "room1")])
    page = client.get("/staff/admin/stations").text
    assert "room1" in page and "ox-1" in page and "nonin" in page
    page = client.get("/staff/admin/content").text
    for consent in services.checkin.consents:
        assert consent.consent_id in page and consent.version in page
    assert "phq-9" in page.lower()


def test_audit_report_page_names_who_saw_the_patient(admin: StaffActions, client: FlaskClient,
                                                     services: Services, demo_visit: int) -> None:
    services.staff.add_user("kim", "front_desk", PASSWORD)
    services.board.day(START.date(), actor=Actor("staff", str(_user_id(services, "kim"))))
    day = START.date().isoformat()
    status, page = _post(client, "/staff/admin/audit", "/staff/admin/audit", mrn="SENT-4711", start=day, end=day)
    assert status == 200 and "kim" in page and "Saw the visit on a list" in page
    assert "SENT-4711" not in client.get("/staff/admin/audit").text
    status, page = _post(client, "/staff/admin/audit", "/staff/admin/audit", mrn="SENT-4711", start=day,
                         end="2000-01-01")
    assert status == 400 and "The end date is before the start date." in page
    status, page = _post(client, "/staff/admin/audit", "/staff/admin/audit", mrn="SENT-4711", start="yesterday",
                         end=day)
    assert status == 400 and "Enter both days as dates" in page
    ran = services.audit_reports.accesses("SENT-4711", START.date(), START.date(), actor=SYSTEM)
    assert "audit.report" in [r.action for r in ran.rows]
