"""Sign-in throttling that slows guessing without locking staff out (OWASP; issue: lock-out as denial of service).

Failures lock a (username, address) pair with growing delays; an address that
fails a lot is slowed by a few seconds, never locked; throttled tries are not
counted; an administrator can unlock; staff get one alert per lock.
"""

from __future__ import annotations

import threading

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from server.models import AuditEvent
from server.services import Services
from server.services.context import FrozenClock
from server.services.staff import SignInFailed
from server.services.throttle import backoff
from tests.conftest import StaffActions

PASSWORD = "correct horse battery"
A, B = "10.0.0.1", "10.0.0.2"


def signs_in(services: Services, username: str, password: str = PASSWORD, address: str = A) -> bool:
    try:
        services.staff.sign_in(username, password, address)
    except SignInFailed:
        return False
    return True


def fail(services: Services, username: str, times: int, address: str = A) -> None:
    for attempt in range(times):
        assert not signs_in(services, username, f"guess {attempt}", address)


@pytest.fixture
def alice(services: Services) -> str:
    services.staff.add_user("alice", "front_desk", PASSWORD)
    return "alice"


def test_five_failures_lock_the_pair_not_the_user_elsewhere(services: Services, alice: str) -> None:
    fail(services, alice, 5)
    assert not signs_in(services, alice)
    assert signs_in(services, alice, address=B)


def test_throttled_tries_do_not_extend_the_lock(services: Services, alice: str, clock: FrozenClock) -> None:
    fail(services, alice, 5)
    for _ in range(5):
        clock.advance(seconds=10)
        assert not signs_in(services, alice, "another guess")
    clock.advance(seconds=11)
    assert signs_in(services, alice)


def test_delays_double_with_each_failure_after_the_lock(services: Services, alice: str, clock: FrozenClock) -> None:
    fail(services, alice, 5)
    clock.advance(seconds=61)
    fail(services, alice, 1)
    clock.advance(seconds=90)
    assert not signs_in(services, alice)
    clock.advance(seconds=31)
    assert signs_in(services, alice)


def test_a_password_spray_from_one_address_only_slows_it_briefly(services: Services, alice: str,
                                                                 clock: FrozenClock) -> None:
    for number in range(20):
        fail(services, f"nobody{number}", 1)
    assert not signs_in(services, alice)
    clock.advance(seconds=2)
    assert signs_in(services, alice)
    for number in range(20, 40):
        clock.advance(seconds=31)
        fail(services, f"nobody{number}", 1)
    assert not signs_in(services, alice)
    clock.advance(seconds=31)
    assert signs_in(services, alice)


def test_a_correct_password_does_not_count_against_the_address(services: Services, alice: str) -> None:
    fail(services, "nobody", 4)
    for _ in range(30):
        assert signs_in(services, alice)


def test_failures_are_forgotten_after_the_window(services: Services, alice: str, clock: FrozenClock) -> None:
    fail(services, alice, 4)
    clock.advance(minutes=16)
    fail(services, alice, 4)
    assert signs_in(services, alice)


def test_a_lock_raises_one_alert_and_an_unlock_clears_it(services: Services, alice: str) -> None:
    fail(services, alice, 5)
    for _ in range(3):
        assert not signs_in(services, alice)
    alerts = services.alerts.open()
    assert [(a.kind, a.subject) for a in alerts] == [("sign_in_locked", "alice")]
    assert A in alerts[0].detail
    assert services.staff.unlock(alice) == 1
    assert services.alerts.open() == []
    assert signs_in(services, alice)


def test_alerts_never_show_a_username_that_is_not_an_account(services: Services) -> None:
    fail(services, "MySecretPassw0rd", 5)
    assert [a.subject for a in services.alerts.open()] == ["(unknown username)"]


def test_an_address_slow_down_raises_an_alert_the_api_shows_to_admins(services: Services, staff: StaffActions,
                                                                      client: FlaskClient, clock: FrozenClock) -> None:
    for number in range(20):
        fail(services, f"nobody{number}", 1)
    staff.create("root", "admin")
    clock.advance(seconds=60)
    assert staff.sign_in("root").status_code == 302
    staff.pass_second_factor()
    body = client.get("/api/v1/security/alerts").json
    assert [(a["kind"], a["subject"]) for a in body["alerts"]] == [("address_throttled", A)]
    staff.create("fatima", "front_desk")
    staff.sign_out()
    staff.sign_in("fatima")
    assert client.get("/api/v1/security/alerts").status_code == 403


def test_thirty_concurrent_guesses_get_exactly_five_password_checks(services: Services, alice: str) -> None:
    start = threading.Barrier(30)

    def guess(number: int) -> None:
        start.wait()
        signs_in(services, alice, f"wrong {number}")

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with services.uow.begin() as session:
        details = session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "auth.sign_in")).all()
    assert details.count("bad_credentials") == 5
    assert details.count("throttled") == 25


def test_backoff_is_free_then_doubles_up_to_its_cap() -> None:
    import datetime as dt

    minute = dt.timedelta(minutes=1)
    assert [backoff(n, 5, minute, 15 * minute) / minute for n in (0, 4, 5, 6, 7, 8, 9, 60)] == \
        [0, 0, 1, 2, 4, 8, 15, 15]


def test_thirty_staff_signing_in_at_once_from_one_address_all_get_in(services: Services) -> None:
    """A clinic behind one NAT at the start of a shift: correct passwords in flight never trip the address limit."""
    for number in range(30):
        services.staff.add_user(f"staff{number}", "front_desk", PASSWORD)
    start = threading.Barrier(30)
    results: list[bool] = []

    def sign_in(number: int) -> None:
        start.wait()
        results.append(signs_in(services, f"staff{number}"))

    threads = [threading.Thread(target=sign_in, args=(n,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 30
