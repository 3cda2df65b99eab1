"""A staff member's own sign-in: the second factor (TOTP, RFC 6238) and their password.

The second factor is required per role, accepts one step of skew, refuses replays, has single-use recovery
codes and is audited.
"""

from __future__ import annotations

import re
import typing as t

import pyotp
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from server.models import AuditEvent
from server.services import Services
from server.services.context import FrozenClock
from tests.conftest import StaffActions
from tests.conftest import csrf_token


def enter(client: FlaskClient, code: str) -> tuple[int, str]:
    page = client.get("/staff/second-factor").text
    response = client.post("/staff/second-factor", data={"csrf_token": csrf_token(page), "code": code})
    return response.status_code, response.text


def audit_of(services: Services, action: str) -> list[tuple[str, str]]:
    with services.uow.begin() as session:
        return [(e.outcome, e.detail) for e in session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                                                .order_by(AuditEvent.id))]


@pytest.fixture
def enrolled_admin(staff: StaffActions, client: FlaskClient) -> tuple[str, list[str]]:
    """An administrator who has set up the second factor, then signed out; returns the key and recovery codes."""
    staff.create("root", "admin")
    staff.sign_in("root")
    secret, codes = staff.pass_second_factor()
    staff.sign_out()
    return secret, codes


def test_an_admin_must_set_up_a_second_factor_before_any_page(staff: StaffActions, client: FlaskClient) -> None:
    staff.create("root", "admin")
    assert staff.sign_in("root").headers["Location"] == "/staff/"
    assert client.get("/staff/").headers["Location"] == "/staff/second-factor"
    assert client.get("/api/v1/visits").status_code == 401
    page = client.get("/staff/second-factor").text
    assert "Set up your sign-in code" in page and 'src="data:image/svg+xml' in page
    assert len(staff.pass_second_factor()[1]) == 10
    assert client.get("/staff/").status_code == 200


def test_front_desk_needs_no_second_factor_by_default(staff: StaffActions, client: FlaskClient) -> None:
    staff.create("fatima", "front_desk")
    staff.sign_in("fatima")
    assert client.get("/staff/").status_code == 200
    assert client.get("/staff/second-factor").headers["Location"] == "/staff/"


def test_the_code_is_asked_at_every_sign_in_and_accepts_one_step_of_skew(
        staff: StaffActions, client: FlaskClient, clock: FrozenClock, enrolled_admin: tuple[str, list[str]]) -> None:
    secret, _ = enrolled_admin
    clock.advance(minutes=5)
    staff.sign_in("root")
    assert client.get("/staff/").headers["Location"] == "/staff/second-factor"
    totp = pyotp.TOTP(secret)
    too_old = totp.at(clock.now().timestamp() - 60)
    status, text = enter(client, too_old)
    assert status == 200 and "That code did not work" in text
    previous_step = totp.at(clock.now().timestamp() - 30)
    enter(client, previous_step)
    assert client.get("/staff/").status_code == 200


def test_a_code_works_only_once(staff: StaffActions, client: FlaskClient, clock: FrozenClock,
                                enrolled_admin: tuple[str, list[str]], services: Services) -> None:
    secret, _ = enrolled_admin
    clock.advance(minutes=5)
    code = pyotp.TOTP(secret).at(clock.now())
    staff.sign_in("root")
    enter(client, code)
    assert client.get("/staff/").status_code == 200
    staff.sign_out()
    staff.sign_in("root")
    status, text = enter(client, code)
    assert "That code did not work" in text
    assert client.get("/staff/").headers["Location"] == "/staff/second-factor"
    assert ("failure", "bad_code") in audit_of(services, "mfa.verify")


def test_a_recovery_code_works_once(staff: StaffActions, client: FlaskClient, services: Services,
                                    enrolled_admin: tuple[str, list[str]]) -> None:
    _, codes = enrolled_admin
    staff.sign_in("root")
    enter(client, codes[0].upper())
    assert client.get("/staff/").status_code == 200
    staff.sign_out()
    staff.sign_in("root")
    enter(client, codes[0])
    assert client.get("/staff/").headers["Location"] == "/staff/second-factor"
    assert audit_of(services, "mfa.verify") == [("success", "recovery_code"), ("failure", "bad_code")]


def test_wrong_codes_are_throttled_like_passwords(staff: StaffActions, client: FlaskClient, services: Services,
                                                  clock: FrozenClock, enrolled_admin: tuple[str, list[str]]) -> None:
    secret, _ = enrolled_admin
    staff.sign_in("root")
    for _ in range(5):
        enter(client, "000000")
    enter(client, pyotp.TOTP(secret).at(clock.now().timestamp() + 30))
    assert client.get("/staff/").headers["Location"] == "/staff/second-factor"
    assert audit_of(services, "mfa.verify")[-1] == ("failure", "throttled")


def test_a_reset_removes_the_factor_and_ends_sessions(staff: StaffActions, client: FlaskClient, services: Services,
                                                      enrolled_admin: tuple[str, list[str]]) -> None:
    staff.sign_in("root")
    services.mfa.reset("root")
    assert client.get("/staff/").headers["Location"] == "/staff/login"
    staff.sign_in("root")
    assert "Set up your sign-in code" in client.get("/staff/second-factor").text
    assert ("success", "") in audit_of(services, "mfa.reset")


def test_the_secret_is_not_stored_in_clear(services: Services, enrolled_admin: tuple[str, list[str]]) -> None:
    from server.models import StaffMfa

    secret, _ = enrolled_admin
    with services.uow.begin() as session:
        stored = session.scalars(select(StaffMfa.secret)).one()
    assert secret not in stored and not re.fullmatch(r"[A-Z2-7]+", stored)


def test_staff_change_their_own_password_and_other_browsers_are_signed_out(
        staff: StaffActions, client: FlaskClient, app: t.Any, services: Services) -> None:
    staff.create("fatima", "front_desk")
    other = StaffActions(app.test_client(), services)
    other.sign_in("fatima")
    staff.sign_in("fatima")
    page = client.get("/staff/password").text

    def change(current: str, new: str, confirm: str) -> str:
        return client.post("/staff/password", data={"csrf_token": csrf_token(page), "current": current,
                                                    "new": new, "confirm": confirm}, follow_redirects=True).text

    new = "a new passphrase here"
    assert "Your current password is not correct." in change("wrong one", new, new)
    assert "The new passwords differ." in change("correct horse battery", "a new passphrase here", "another")
    assert "at least 12 characters" in change("correct horse battery", "short", "short")
    assert "Your password is changed" in change("correct horse battery", "a new passphrase here",
                                                "a new passphrase here")
    assert client.get("/staff/").status_code == 200
    assert other.client.get("/staff/").headers["Location"] == "/staff/login"
    assert ("failure", "") in audit_of(services, "staff.password_changed")
