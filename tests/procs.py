"""Running ``frontdesk`` as an operator would: subprocesses, free ports, a cookie-keeping HTTP client."""

from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import time
import typing as t
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

FRONTDESK = str(Path(sys.executable).with_name("frontdesk"))
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(instance: Path, **settings: str) -> dict[str, str]:
    """This process's environment without FRONTDESK_* settings, plus an instance folder and ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env["FRONTDESK_INSTANCE_DIR"] = str(instance)
    env.update(settings)
    return env


def run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``frontdesk ARGS`` to completion."""
    return subprocess.run([FRONTDESK, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``frontdesk ARGS`` in the background with piped output."""
    return subprocess.Popen([FRONTDESK, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(url: str, timeout: float = 30) -> None:
    """Wait until ``url`` answers at all (any HTTP status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def eventually(check: t.Callable[[], t.Any], timeout: float = 20, what: str = "condition") -> t.Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Browser:
    """Just enough of a browser: cookies, no redirects followed, CSRF tokens read from forms."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: t.Any, **kwargs: t.Any) -> None:
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str, t.Any]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(self.base + path, data=body, timeout=10) as response:
                return response.status, response.read().decode(), response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(), error.headers

    def sign_in(self, username: str, password: str) -> int:
        _, page, _ = self.request("/staff/login")
        match = CSRF_RE.search(page)
        assert match, "sign-in page has no CSRF token"
        status, _, _ = self.request("/staff/login", {"csrf_token": match.group(1), "username": username,
                                                     "password": password})
        return status
