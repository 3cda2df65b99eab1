"""The front-desk board in a real Chromium: two open boards, one acting and one following live, every action,
the date picker, error pages that keep the navigation, and an accessibility scan of each state."""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from playwright.sync_api import Locator
from playwright.sync_api import Page
from playwright.sync_api import expect

from server.config import Config
from server.db import make_engine
from server.models import Visit
from server.services import Services
from server.services import build_services
from server.services.context import SYSTEM
from server.services.patients import AppointmentRecord
from server.services.patients import PatientRecord
from server.services.stations import ensure_station
from tests.browsers import assert_accessible
from tests.conftest import drop_postgres_schema
from tests.conftest import new_postgres_schema
from tests.e2e.conftest import Served
from tests.e2e.conftest import serve
from tests.e2e.conftest import sign_in
from tests.procs import clean_env
from tests.procs import free_port
from tests.procs import start

LIVE = 10_000
"""How long a live change may take to show in these tests (generous for a loaded CI machine; the benchmark
measures the real figure)."""


def offline_services(served: Served) -> Services:
    """The services on the served database, as a second process (what the scheduler and the kiosk would do)."""
    config = Config.for_tests(db_url=f"sqlite:///{served.instance / 'frontdesk.db'}", instance_dir=served.instance)
    return build_services(config, make_engine(config.database_url), secret="test")


def book(services: Services, mrn: str, family: str, given: str, minutes: int = 0) -> int:
    """A patient booked for now (plus ``minutes``); returns the visit id."""
    with services.uow.begin() as session:
        patient = services.patients.upsert_in(session, PatientRecord(
            mrn=mrn, mrn_authority="TEST", family_name=family, given_name=given,
            birth_date=dt.date(1980, 1, 2)), actor=SYSTEM)
        services.patients.schedule_in(session, patient, AppointmentRecord(
            source="TEST", external_id=f"APT-{mrn}", provider_name="Dr. Osei",
            start_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes), location="EXAM1"), actor=SYSTEM)
    return next(v.visit_id for v in services.visits.for_day(services.visits.today(), actor=SYSTEM)
                if v.patient_name.startswith(family))


def row(page: Page, name: str) -> Locator:
    return page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=name))


@pytest.fixture
def clinic(served: Served) -> tuple[Served, Services, int, int]:
    services = offline_services(served)
    with services.uow.begin() as session:
        ensure_station(session, "room1")
    first = book(services, "B-1", "Okafor", "Chidi")
    second = book(services, "B-2", "Lindqvist", "Maja", minutes=15)
    served.add_user("fatima", "front_desk")
    served.add_user("frank", "front_desk")
    return served, services, first, second


def test_one_board_acts_and_another_follows_live(browser: Browser, clinic: tuple[Served, Services, int, int]) -> None:
    served, services, first, second = clinic
    watching = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    acting = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    try:
        sign_in(watching, served.base, "fatima")
        expect(watching.get_by_role("heading", level=1)).to_contain_text("(today)")
        expect(watching.locator("[data-board]")).to_have_attribute("data-live", "connected")
        watching.evaluate("window.notReloaded = true")
        assert_accessible(watching, "board")
        sign_in(acting, served.base, "frank")

        okafor = row(acting, "Okafor, Chidi")
        expect(okafor.get_by_role("button")).to_have_text(["Mark arrived", "Did not come", "Cancel visit"])
        okafor.get_by_role("button", name="Mark arrived").click()
        expect(acting.get_by_role("alert")).to_have_text("Done: the visit is marked as arrived.")
        expect(row(watching, "Okafor, Chidi").locator("[data-status]")).to_have_text("Arrived", timeout=LIVE)
        expect(row(watching, "Okafor, Chidi")).to_contain_text("0 min")

        okafor = row(acting, "Okafor, Chidi")
        okafor.get_by_label("Room for Okafor, Chidi").select_option("room1")
        okafor.get_by_role("button", name="Room").click()
        expect(acting.get_by_role("alert")).to_have_text("Done: the visit is put in a room.")
        expect(row(watching, "Okafor, Chidi").locator("[data-status]")).to_have_text("In a room (room1)",
                                                                                     timeout=LIVE)
        row(acting, "Okafor, Chidi").get_by_role("button", name="Check out").click()
        expect(row(watching, "Okafor, Chidi").locator("[data-status]")).to_have_text("Checked out", timeout=LIVE)
        expect(row(watching, "Okafor, Chidi").get_by_role("button")).to_have_count(0)

        row(acting, "Lindqvist, Maja").get_by_role("button", name="Mark arrived").click()
        expect(row(watching, "Lindqvist, Maja").locator("[data-status]")).to_have_text("Arrived", timeout=LIVE)
        row(acting, "Lindqvist, Maja").get_by_role("button", name="Cancel check-in").click()
        expect(acting.get_by_role("alert")).to_contain_text("check-in cancelled")
        expect(row(watching, "Lindqvist, Maja").locator("[data-status]")).to_have_text("Expected", timeout=LIVE)
        assert watching.evaluate("window.notReloaded") is True
        assert_accessible(watching, "board after live updates")
    finally:
        watching.context.close()
        acting.context.close()


def test_flags_and_changes_are_handled_from_the_board(browser: Browser,
                                                       clinic: tuple[Served, Services, int, int]) -> None:
    served, services, first, _ = clinic
    with services.uow.begin() as session:
        visit = session.get(Visit, first)
        assert visit is not None
        services.flags.raise_in(session, "phq9_item9", actor=SYSTEM, patient_id=visit.patient_id, visit_id=first)
        services.changes.request_in(session, visit.patient_id, first, {"phone": "555-0142"}, actor=SYSTEM)
    watching = browser.new_context().new_page()
    acting = browser.new_context().new_page()
    try:
        sign_in(watching, served.base, "fatima")
        expect(watching.locator("[data-board]")).to_have_attribute("data-live", "connected")
        sign_in(acting, served.base, "frank")
        okafor = row(acting, "Okafor, Chidi")
        expect(okafor).to_contain_text("Urgent:")
        okafor.get_by_text("Details changed at the kiosk").click()
        expect(okafor).to_contain_text("555-0142")
        assert_accessible(acting, "board with a flag and a change")
        okafor.get_by_role("button", name="Acknowledge").click()
        expect(acting.get_by_role("alert")).to_have_text("Flag acknowledged.")
        expect(row(watching, "Okafor, Chidi")).not_to_contain_text("Urgent:", timeout=LIVE)
        row(acting, "Okafor, Chidi").get_by_role("button", name="Approve").click()
        expect(acting.get_by_role("alert")).to_have_text("Change approved and sent to the records system.")
        expect(row(watching, "Okafor, Chidi")).not_to_contain_text("Details changed", timeout=LIVE)
    finally:
        watching.context.close()
        acting.context.close()


def test_a_change_made_elsewhere_meanwhile_is_explained_beside_the_row(page: Page,
                                                                       clinic: tuple[Served, Services, int, int]
                                                                       ) -> None:
    served, services, first, _ = clinic
    sign_in(page, served.base, "fatima")
    # Another process (no live announcement reaches this page) checks the patient in and out meanwhile.
    services.visits.transition(first, "arrived", actor=SYSTEM)
    services.visits.transition(first, "checked_out", actor=SYSTEM)
    row(page, "Okafor, Chidi").get_by_role("button", name="Mark arrived").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was changed")
    expect(row(page, "Okafor, Chidi")).to_contain_text("This visit is checked out, so it can no longer be changed")
    assert_accessible(page, "board with an error beside a row")
    page.get_by_role("link", name="This visit is checked out").click()
    expect(page).to_have_url(served.base + f"/staff/#error-{first}")


def test_other_days_and_error_pages_keep_the_navigation(page: Page,
                                                        clinic: tuple[Served, Services, int, int]) -> None:
    served, services, _, _ = clinic
    sign_in(page, served.base, "fatima")
    tomorrow = services.board.today() + dt.timedelta(days=1)
    page.get_by_label("Show another day").fill(tomorrow.isoformat())
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text("No visits are booked on this day.")).to_be_visible()
    page.get_by_role("link", name="Today").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("(today)")

    page.goto(served.base + "/staff/nowhere")
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    expect(page.get_by_role("navigation", name="Staff")).to_be_visible()
    assert_accessible(page, "404 page signed in")
    page.goto(served.base + "/staff/admin/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    assert_accessible(page, "403 page")
    page.goto(served.base + "/")
    expect(page).to_have_url(served.base + "/staff/")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(served.base + "/staff/login")


def test_board_without_script_still_works(browser: Browser, clinic: tuple[Served, Services, int, int]) -> None:
    served, _, _, _ = clinic
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, served.base, "fatima")
        row(page, "Okafor, Chidi").get_by_role("button", name="Mark arrived").click()
        expect(page.get_by_role("alert")).to_have_text("Done: the visit is marked as arrived.")
        expect(row(page, "Okafor, Chidi").locator("[data-status]")).to_have_text("Arrived")
    finally:
        context.close()


def test_a_dead_letter_shows_on_the_patients_row_live(browser: Browser, tmp_path: Path) -> None:
    records_port = free_port()
    records = start(["records-server", "--listen", f"127.0.0.1:{records_port}", "--reply", "AE",
                     "--store", str(tmp_path / "records.sqlite3")], clean_env(tmp_path / "records"))
    assert records.stdout is not None and "listening" in records.stdout.readline()
    served = serve(tmp_path, f'[hl7]\ndestination_host = "127.0.0.1"\ndestination_port = {records_port}\n')
    watching = browser.new_context().new_page()
    acting = browser.new_context().new_page()
    try:
        book(offline_services(served), "D-1", "Haddad", "Rami")
        served.add_user("fatima", "front_desk")
        sign_in(watching, served.base, "fatima")
        expect(watching.locator("[data-board]")).to_have_attribute("data-live", "connected")
        sign_in(acting, served.base, "fatima")
        row(acting, "Haddad, Rami").get_by_role("button", name="Mark arrived").click()
        expect(row(watching, "Haddad, Rami")).to_contain_text("1 message to the records system stopped with an error",
                                                             timeout=LIVE)
        assert_accessible(watching, "board with a dead letter")
        row(watching, "Haddad, Rami").get_by_role("link", name="See the outbox").click()
        expect(watching.get_by_role("row", name="ADT^A04")).to_contain_text("Stopped with an error")
        assert_accessible(watching, "outbox page with a dead letter")
        watching.get_by_role("button", name="Discard").click()
        expect(watching.get_by_role("alert")).to_contain_text("discarded")
    finally:
        watching.context.close()
        acting.context.close()
        served.stop()
        records.send_signal(signal.SIGTERM)
        records.communicate(timeout=10)


@pytest.mark.postgres
def test_boards_on_two_serve_processes_follow_each_other(browser: Browser, tmp_path: Path,
                                                         postgres_url: str) -> None:
    schema = new_postgres_schema(postgres_url)
    database = {"FRONTDESK_DATABASE_URL": postgres_url, "FRONTDESK_DATABASE_SCHEMA": schema,
                "FRONTDESK_WEB_SECRET_KEY": "a shared secret for both processes"}
    servers: list[Served] = []
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        servers = [serve(tmp_path / "a", **database), serve(tmp_path / "b", **database)]
        config = Config.for_tests(db_url=postgres_url, db_schema=schema, instance_dir=tmp_path / "book")
        engine = make_engine(postgres_url, schema=schema)
        book(build_services(config, engine, secret="test"), "P-1", "Nakamura", "Yui")
        engine.dispose()
        servers[0].add_user("fatima", "front_desk")
        watching = browser.new_context().new_page()
        acting = browser.new_context().new_page()
        sign_in(watching, servers[0].base, "fatima")
        expect(watching.locator("[data-board]")).to_have_attribute("data-live", "connected")
        sign_in(acting, servers[1].base, "fatima")
        row(acting, "Nakamura, Yui").get_by_role("button", name="Mark arrived").click()
        expect(row(watching, "Nakamura, Yui").locator("[data-status]")).to_have_text("Arrived", timeout=LIVE)
        watching.context.close()
        acting.context.close()
    finally:
        for server in servers:
            server.stop()
        drop_postgres_schema(postgres_url, schema)
