"""Fixtures for end-to-end tests: a real ``frontdesk serve`` and a real Chromium.

The server runs as the operator would run it (``db upgrade``, ``users add``,
``serve`` as subprocesses on free ports); the browser is Debian's Chromium
driven by Playwright, so what passes here is what a person's browser does,
headers and all.
"""

from __future__ import annotations

import signal
import subprocess
import typing as t
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from playwright.sync_api import Browser
from playwright.sync_api import Page
from playwright.sync_api import Playwright
from playwright.sync_api import expect
from playwright.sync_api import sync_playwright

from tests import browsers
from tests.procs import FRONTDESK
from tests.procs import clean_env
from tests.procs import free_port
from tests.procs import run
from tests.procs import wait_for

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def playwright() -> t.Iterator[Playwright]:
    """One Playwright driver for the session."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> t.Iterator[Browser]:
    """Headless system Chromium, shared by the session (each test gets its own context)."""
    instance = browsers.launch(playwright)
    yield instance
    instance.close()


@pytest.fixture
def page(browser: Browser) -> t.Iterator[Page]:
    """A fresh browser context (no cookies, no cache) and one tab, desktop-sized."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    tab = context.new_page()
    yield tab
    context.close()


@dataclass
class Served:
    """A running ``frontdesk serve`` and how to reach and administer it."""

    base: str
    env: dict[str, str]
    process: subprocess.Popen[str]
    instance: Path
    log: Path
    users: dict[str, str] = field(default_factory=dict)

    def add_user(self, username: str, role: str) -> str:
        """Create a staff user through the CLI; returns the username."""
        result = run(["users", "add", username, "--role", role, "--password-stdin"], self.env, PASSWORD + "\n")
        assert result.returncode == 0, result.stderr
        self.users[username] = role
        return username

    def stop(self) -> str:
        """Stop the server as an operator would (SIGTERM) and return what it logged."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        return self.log.read_text()


def serve(tmp_path: Path, config_text: str = "", **settings: str) -> Served:
    """Migrate a fresh SQLite database and start ``frontdesk serve`` on free ports."""
    instance = tmp_path / "instance"
    port = free_port()
    extra = dict(settings)
    if config_text:
        config = tmp_path / "frontdesk.toml"
        config.write_text(config_text)
        extra["FRONTDESK_CONFIG"] = str(config)
    env = clean_env(instance, FRONTDESK_WEB_PORT=str(port), FRONTDESK_HL7_LISTEN_PORT=str(free_port()), **extra)
    upgraded = run(["db", "upgrade"], env)
    assert upgraded.returncode == 0, upgraded.stderr
    # Logs go to a file, not a pipe: a long test makes more log lines than a pipe holds, and a server
    # whose pipe is full blocks on its next log line.
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        process = subprocess.Popen([FRONTDESK, "serve"], env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    served = Served(f"http://127.0.0.1:{port}", env, process, instance, log)
    try:
        wait_for(served.base + "/healthz")
    except AssertionError:
        raise AssertionError(f"serve did not start: {served.stop()}") from None
    return served


@pytest.fixture
def served(tmp_path: Path) -> t.Iterator[Served]:
    """``frontdesk serve`` on a fresh SQLite database with default settings."""
    server = serve(tmp_path)
    yield server
    server.stop()


def sign_in(page: Page, base: str, username: str, password: str = PASSWORD) -> None:
    """Sign in through the staff sign-in page, as a person would."""
    page.goto(base + "/staff/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def send_to_chart(station: Page, tries: int = 5) -> dict[str, list[str]]:
    """Press "Send to chart" until the station charts; returns the form the browser posted.

    Devices keep streaming while the assistant looks, so a reading can arrive while the form is on its way:
    the page then shows the newest value and asks again, and the assistant sends again.
    """
    for _ in range(tries):
        with station.expect_request(lambda r: r.method == "POST" and "/sessions/" in r.url) as posted:
            station.get_by_role("button", name="Send to chart").click()
        charted = station.get_by_text("Sent to chart.")
        expect(charted.or_(station.get_by_text("A newer reading arrived").first)).to_be_visible()
        if charted.is_visible():
            return parse_qs(posted.value.post_data or "")
    raise AssertionError("the station never charted: a newer reading arrived at every try")
