"""Running ``frontdesk`` as an operator would: subprocesses, free ports, a cookie-keeping HTTP client."""

from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import threading
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


class Started(subprocess.Popen[str]):
    """A background ``frontdesk`` whose log (stderr) is read as it is written.

    A pipe holds 64 KiB. A server's log left unread in it fills it after a few
    hundred requests, and from then on every thread that logs (each request
    does) waits for a reader that only comes at :meth:`communicate`: the server
    looks hung. So stderr is drained into memory from the start;
    :meth:`communicate` returns it whole as before. Stdout stays the caller's
    to read (these commands print a line or two there, such as a pty's path).
    """

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        super().__init__(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pipe, self.stderr = self.stderr, None
        self._log: list[str] = []
        self._drain = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._drain.start()

    def _read(self, pipe: t.IO[str] | None) -> None:
        assert pipe is not None
        with pipe:
            for line in pipe:
                self._log.append(line)

    def log(self) -> str:
        """What the process has written on stderr so far."""
        return "".join(self._log)

    def communicate(self, input: str | None = None, timeout: float | None = None) -> tuple[t.Any, str]:
        """Wait for the process to end; ``(stdout, stderr)`` as :meth:`subprocess.Popen.communicate` gives."""
        out, _ = super().communicate(input, timeout)
        self._drain.join(timeout)
        return out, self.log()


def start(args: list[str], env: dict[str, str]) -> Started:
    """Start ``frontdesk ARGS`` in the background: stdout piped, stderr collected as it comes."""
    return Started([FRONTDESK, *args], env)


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
