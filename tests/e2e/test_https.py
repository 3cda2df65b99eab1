"""Production settings over HTTPS in a real Chromium: sign in, submit a form, sign out.

``serve`` runs as in production (``production``, ``secure_cookies``) behind a
TLS-terminating proxy that sets ``X-Forwarded-Proto`` (``trusted_proxies = 1``),
which is how a clinic deploys it. The certificate is made here. Chromium sends
whatever Referer and Origin its policy allows, so this is the test that catches
a Referrer-Policy that breaks the CSRF check on HTTPS.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from playwright.sync_api import Page
from playwright.sync_api import Playwright
from playwright.sync_api import expect

from tests import browsers
from tests.browsers import assert_accessible
from tests.e2e.conftest import Served
from tests.e2e.conftest import serve
from tests.e2e.conftest import sign_in
from tests.pki import Authority
from tests.procs import run
from tests.tlsproxy import TLSProxy


@pytest.fixture(scope="module")
def tls_browser(playwright: Playwright) -> t.Iterator[Browser]:
    """Chromium that accepts the test's own certificate authority."""
    instance = browsers.launch(playwright, ignore_https_errors=True)
    yield instance
    instance.close()


@pytest.fixture
def tls_page(tls_browser: Browser) -> t.Iterator[Page]:
    context = tls_browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US",
                                      ignore_https_errors=True)
    yield context.new_page()
    context.close()


@pytest.fixture
def behind_tls(tmp_path: Path) -> t.Iterator[tuple[Served, TLSProxy]]:
    served = serve(tmp_path, FRONTDESK_WEB_PRODUCTION="true", FRONTDESK_WEB_SECURE_COOKIES="true",
                   FRONTDESK_WEB_TRUSTED_PROXIES="1", FRONTDESK_HL7_ALLOW_PLAIN_MLLP="true")
    issued = Authority(tmp_path, "clinic").issue("localhost", server=True)
    proxy = TLSProxy(int(served.base.rsplit(":", 1)[1]), certfile=issued.cert, keyfile=issued.key)
    yield served, proxy
    proxy.close()
    served.stop()


def _schedule_today(served: Served, tmp_path: Path) -> None:
    """One appointment today, sent through the HL7 import as the records system would."""
    start = dt.datetime.now(dt.UTC).replace(hour=15, minute=0, second=0, microsecond=0)
    message = "\r".join([
        "MSH|^~\\&|SCHED|FAMCLINIC|FRONTDESK|CLINIC|20261126070100+0000||SIU^S12^SIU_S12|TLS-0001|P|2.5.1",
        f"SCH|P9001^SCHED|F9001^SCHED|||||ROUTINE^Routine visit^HL70276||20|MIN|^^20^{start:%Y%m%d%H%M%S}+0000"
        "||||||||||||||Booked",
        "PID|1||MR99001^^^FAMCLINIC^MR||Quartey^Nana||19700101|F",
        "AIL|1||EXAM1^^^FAMCLINIC",
    ]) + "\r"
    path = tmp_path / "today.hl7"
    path.write_text(message)
    result = run(["import-hl7", str(path)], served.env)
    assert result.returncode == 0, result.stderr


def test_sign_in_submit_a_form_and_sign_out_over_https(tls_page: Page, behind_tls: tuple[Served, TLSProxy],
                                                       tmp_path: Path) -> None:
    served, proxy = behind_tls
    served.add_user("fatima", "front_desk")
    _schedule_today(served, tmp_path)

    sign_in(tls_page, proxy.base, "fatima")
    expect(tls_page.get_by_role("heading", level=1)).to_contain_text("Visits on")
    cookies = {c["name"]: c for c in tls_page.context.cookies()}
    assert cookies["__Host-frontdesk_session"]["secure"]
    assert_accessible(tls_page, "today page over HTTPS")

    patient = tls_page.get_by_role("row").filter(has=tls_page.get_by_role("rowheader", name="Quartey, Nana"))
    patient.get_by_role("button", name="Mark arrived").click()
    expect(tls_page.get_by_role("alert")).to_have_text("Done: the visit is marked as arrived.")
    expect(patient.get_by_role("cell", name="Arrived", exact=True)).to_be_visible()

    tls_page.get_by_role("button", name="Sign out").click()
    expect(tls_page).to_have_url(proxy.base + "/staff/login")
    tls_page.goto(proxy.base + "/staff/")
    expect(tls_page).to_have_url(proxy.base + "/staff/login")
    assert "plain MLLP, allowed by hl7.allow_plain_mllp" in served.stop()
