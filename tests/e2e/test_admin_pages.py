"""Administration in a real Chromium: an administrator unlocks a locked-out user, resets a password, ends a
session, registers and revokes a kiosk, and runs the audit report; axe on every page."""

from __future__ import annotations

import datetime as dt

import pyotp
from playwright.sync_api import Browser
from playwright.sync_api import Page
from playwright.sync_api import expect

from server.config import Config
from server.db import make_engine
from server.services import build_services
from server.services.context import SYSTEM
from server.services.patients import AppointmentRecord
from server.services.patients import PatientRecord
from tests.browsers import assert_accessible
from tests.e2e.conftest import PASSWORD
from tests.e2e.conftest import Served
from tests.e2e.conftest import sign_in


def sign_in_admin(page: Page, served: Served) -> None:
    """Sign in as the administrator, setting up the second factor as a person would."""
    served.add_user("root", "admin")
    sign_in(page, served.base, "root")
    key = page.locator("#secret-key").inner_text().replace(" ", "")
    page.get_by_label("Code from your app").fill(pyotp.TOTP(key).now())
    page.get_by_role("button", name="Confirm").click()
    page.get_by_role("link", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Visits on")


def test_administrator_lets_a_locked_out_user_back_in(browser: Browser, page: Page, served: Served) -> None:
    served.add_user("kim", "front_desk")
    locked = browser.new_context().new_page()
    try:
        for _ in range(5):
            sign_in(locked, served.base, "kim", "not the password")
        sign_in(locked, served.base, "kim")
        expect(locked.get_by_role("alert")).to_contain_text("Sign-in failed")

        sign_in_admin(page, served)
        page.get_by_role("link", name="Administration").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Administration")
        assert_accessible(page, "administration page with an alert")
        page.get_by_role("link", name="Staff users").first.click()
        expect(page.get_by_role("row", name="kim")).to_contain_text("locked out")
        assert_accessible(page, "staff users page")
        page.get_by_role("link", name="kim").click()
        assert_accessible(page, "a staff user's page")
        page.get_by_role("button", name="Unlock").click()
        expect(page.get_by_role("alert")).to_contain_text("they can sign in again now")

        sign_in(locked, served.base, "kim")
        expect(locked.get_by_role("heading", level=1)).to_contain_text("Visits on")
        page.reload()
        expect(page.get_by_role("button", name="End session")).to_have_count(1)
        page.get_by_role("button", name="End session").click()
        expect(page.get_by_role("alert")).to_contain_text("Session ended")
        locked.reload()
        expect(locked).to_have_url(served.base + "/staff/login")

        page.get_by_label("New password").fill("short")
        page.get_by_role("button", name="Set new password").click()
        expect(page.get_by_role("alert")).to_contain_text("at least 12 characters")
        assert_accessible(page, "a staff user's page with an error")
        page.get_by_label("New password").fill("a brand new passphrase")
        page.get_by_role("button", name="Set new password").click()
        expect(page.get_by_role("alert")).to_contain_text("kim has a new password")
        sign_in(locked, served.base, "kim", "a brand new passphrase")
        expect(locked.get_by_role("heading", level=1)).to_contain_text("Visits on")
    finally:
        locked.context.close()


def test_add_user_devices_stations_content_and_audit_report(page: Page, served: Served) -> None:
    config = Config.for_tests(db_url=f"sqlite:///{served.instance / 'frontdesk.db'}", instance_dir=served.instance)
    services = build_services(config, make_engine(config.database_url), secret="test")
    with services.uow.begin() as session:
        patient = services.patients.upsert_in(session, PatientRecord(
            mrn="AUD-7", mrn_authority="TEST", family_name="Audit", given_name="Ann",
            birth_date=dt.date(1970, 5, 6)), actor=SYSTEM)
        services.patients.schedule_in(session, patient, AppointmentRecord(
            source="TEST", external_id="APT-AUD", start_at=dt.datetime.now(dt.UTC)), actor=SYSTEM)
    sign_in_admin(page, served)
    page.goto(served.base + "/staff/admin/users")
    page.get_by_label("Username").fill("New Person")
    page.get_by_label("First password").fill(PASSWORD)
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("alert")).to_contain_text("Username: 2-64 characters")
    assert_accessible(page, "staff users page with an error")
    page.get_by_label("Username").fill("new.person")
    page.get_by_label("Full name").fill("New Person")
    page.get_by_label("Role").select_option(label="Medical assistant")
    page.get_by_label("First password").fill(PASSWORD)
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("alert")).to_contain_text("User new.person added.")
    expect(page.get_by_role("row", name="new.person")).to_contain_text("Medical assistant")

    page.goto(served.base + "/staff/admin/devices")
    assert_accessible(page, "kiosks and gateways page")
    page.get_by_label("Name").first.fill("lobby-2")
    page.get_by_label("Where it stands").fill("Lobby")
    page.get_by_role("button", name="Register kiosk").click()
    code = page.locator("#one-time-code").inner_text()
    assert len(code) > 20
    assert_accessible(page, "kiosks page showing a one-time code")
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("alert")).to_contain_text("lobby-2 is revoked")
    expect(page.locator("#one-time-code")).to_have_count(0)

    page.goto(served.base + "/staff/admin/stations")
    assert_accessible(page, "stations page")
    page.goto(served.base + "/staff/admin/content")
    expect(page.get_by_role("table").last).to_contain_text("phq-9")
    assert_accessible(page, "consents and questionnaires page")

    page.goto(served.base + "/staff/")  # the board: admin reads the patient's visit
    page.goto(served.base + "/staff/admin/audit")
    page.get_by_label("Medical record number (MRN)").fill("AUD-7")
    page.get_by_label("To").fill("2001-01-01")
    page.get_by_role("button", name="Show report").click()
    expect(page.get_by_role("alert")).to_have_text("The end date is before the start date.")
    assert_accessible(page, "audit report page with an error")
    page.get_by_label("To").fill(services.board.today().isoformat())
    page.get_by_role("button", name="Show report").click()
    expect(page.get_by_role("table")).to_contain_text("Saw the visit on a list")
    expect(page.get_by_role("table")).to_contain_text("root")
    assert "AUD-7" not in page.url
    assert_accessible(page, "audit report page")
