"""Staff sign-in and the day's page in a real Chromium, with an accessibility scan of each page."""

from __future__ import annotations

from playwright.sync_api import Page
from playwright.sync_api import expect

from tests.browsers import assert_accessible
from tests.e2e.conftest import Served
from tests.e2e.conftest import sign_in


def test_sign_in_see_today_and_sign_out(page: Page, served: Served) -> None:
    served.add_user("fatima", "front_desk")
    page.goto(served.base + "/staff/")
    expect(page).to_have_url(served.base + "/staff/login")
    assert_accessible(page, "sign-in page")

    sign_in(page, served.base, "fatima")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Visits on")
    assert_accessible(page, "today page")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(served.base + "/staff/login")
    page.goto(served.base + "/staff/")
    expect(page).to_have_url(served.base + "/staff/login")


def test_wrong_password_is_refused_politely(page: Page, served: Served) -> None:
    served.add_user("fatima", "front_desk")
    sign_in(page, served.base, "fatima", "not the password")
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_label("Username")).to_be_visible()
    assert_accessible(page, "sign-in page with an error")
