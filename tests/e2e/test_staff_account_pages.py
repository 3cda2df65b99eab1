"""A staff member's own sign-in pages in a real Chromium: the second factor and changing the password.

Each page is scanned with axe-core. The code is computed from the key the page
shows, as a person's authenticator app would.
"""

from __future__ import annotations

import pyotp
from playwright.sync_api import Page
from playwright.sync_api import expect

from tests.browsers import assert_accessible
from tests.e2e.conftest import PASSWORD
from tests.e2e.conftest import Served
from tests.e2e.conftest import sign_in


def test_an_administrator_sets_up_and_uses_the_second_factor(page: Page, served: Served) -> None:
    served.add_user("root", "admin")
    sign_in(page, served.base, "root")
    expect(page).to_have_url(served.base + "/staff/second-factor")
    expect(page.get_by_role("heading", level=1)).to_have_text("Set up your sign-in code")
    expect(page.get_by_role("img", name="QR code to add Frontdesk to your authenticator app")).to_be_visible()
    assert_accessible(page, "second-factor set-up page")

    page.get_by_label("Code from your app").fill("000000")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("alert")).to_contain_text("That code did not work")
    assert_accessible(page, "second-factor set-up page with an error")

    key = page.locator("#secret-key").inner_text().replace(" ", "")
    page.get_by_label("Code from your app").fill(pyotp.TOTP(key).now())
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your recovery codes")
    codes = page.get_by_role("list", name="Recovery codes").get_by_role("listitem").all_inner_texts()
    assert len(codes) == 10
    assert_accessible(page, "recovery codes page")
    page.get_by_role("link", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Visits on")

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, served.base, "root")
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your sign-in code")
    assert_accessible(page, "second-factor code page")
    page.get_by_label("Code from your app").fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Visits on")


def test_a_member_of_staff_changes_their_password(page: Page, served: Served) -> None:
    served.add_user("fatima", "front_desk")
    sign_in(page, served.base, "fatima")
    page.get_by_role("link", name="Change password").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Change your password")
    assert_accessible(page, "change password page")
    page.get_by_label("Current password").fill("not my password")
    page.get_by_label("New password", exact=True).fill("a fresh long passphrase")
    page.get_by_label("New password again").fill("a fresh long passphrase")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_have_text("Your current password is not correct.")
    assert_accessible(page, "change password page with an error")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("a fresh long passphrase")
    page.get_by_label("New password again").fill("a fresh long passphrase")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_contain_text("Your password is changed")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, served.base, "fatima", "a fresh long passphrase")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Visits on")
