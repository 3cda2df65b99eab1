"""Kiosk load: 20 simulated kiosks doing full check-ins with questionnaires against ``frontdesk serve``.

Each simulated kiosk is a thread with its own keep-alive HTTP connection and cookies, enrolled with a
code from ``frontdesk kiosks add``, doing what a browser does: every page GET, every form POST with its
CSRF token, redirects followed. A check-in is welcome → Check in → last name and birth date →
appointment → details → two consents → intake (2 pages) → PHQ-9 (PHQ-2 gate open, 2 pages) → GAD-7 →
AUDIT-C (→ STEADI for every other patient, who is over 65) → "You're checked in" → reset. Patients come
from SIU^S12 messages imported with ``frontdesk import-hl7``, as in a clinic.

Printed per step (method and route): p50 and p95 of the server's own time (``duration_ms`` from its
request log) and of the time the client saw, and check-ins per minute. Beside them, in the same run,
the floor: a bare Flask endpoint (``return "ok"``) under the same WSGI server with the same number of
threads, hit by the same 20 clients. Runs on SQLite, then on PostgreSQL when it is reachable (set
``FRONTDESK_BENCH_DATABASE_URL``; default ``postgresql://postgres@127.0.0.1:5432/test``). Also the size
of each kiosk page with its CSS and script (target 100 KB), against the bare endpoint's response.

    python bench/bench_kiosk_checkin.py [--kiosks 20] [--rounds 3] [--think 1.0] [--backend sqlite|postgresql]

Each simulated patient spends ``--think`` seconds on a screen (default 1 s, several times faster than
people); ``--think 0`` sends requests back to back and measures the server saturated.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlencode

import psycopg

from server.config import WebConfig
from server.demo import siu_s12

FRONTDESK = str(Path(sys.executable).with_name("frontdesk"))
PG_URL = os.environ.get("FRONTDESK_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
RADIO = re.compile(r'<input type="radio" id="[^"]+" name="([^"]+)" value="([^"]+)"')
TEXTAREA = re.compile(r'<textarea id="[^"]+" name="([^"]+)"')
ASSET = re.compile(r'(?:href|src)="(/kiosk/static/[^"]+)"')
BARE_APP = """
import logging
import sys
from flask import Flask
from waitress import serve
logging.getLogger("waitress").setLevel(logging.ERROR)
app = Flask("bare")
@app.get("/ping")
def ping():
    return "ok"
serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]), _quiet=True)
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, path: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answered on port {port}")


class Browser:
    """One kiosk: a keep-alive connection, its cookies, redirects followed; records each request's time."""

    def __init__(self, port: int, timings: dict[str, list[float]]) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = {}
        self.timings = timings
        self.think = 0.0

    def request(self, method: str, path: str, form: dict[str, str | list[str]] | None = None) -> tuple[str, str]:
        """One request and the redirects it leads to; returns the final path and body."""
        while True:
            headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
            body = None
            if form is not None:
                body = urlencode(form, doseq=True)
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            started = time.perf_counter()
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            text = response.read().decode()
            self.timings[f"{method} {re.sub(r'/[0-9]+', '/N', path)}"].append((time.perf_counter() - started) * 1000)
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                value = rest.split(";", 1)[0]
                if "Max-Age=0" in header or "expires=Thu, 01 Jan 1970" in header:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = value
            if response.status not in (301, 302, 303):
                if response.status >= 400:
                    raise RuntimeError(f"{method} {path}: HTTP {response.status}")
                return path, text
            method, path, form = "GET", response.headers["Location"], None

    def post(self, path: str, page: str, **fields: str | list[str]) -> tuple[str, str]:
        time.sleep(self.think)
        token = CSRF.search(page)
        assert token, f"no CSRF token on the page before {path}"
        return self.request("POST", path, {"csrf_token": token.group(1), **fields})


def check_in(browser: Browser, last: str, born: str) -> None:
    """One full check-in, as a patient at a kiosk does it (``browser.think`` seconds on each screen)."""
    _, page = browser.request("GET", "/kiosk/")
    _, page = browser.post("/kiosk/start", page, mode="checkin")
    where, page = browser.post("/kiosk/identify", page, last_name=last, birth_date=born)
    assert where == "/kiosk/appointment", where
    where, page = browser.post("/kiosk/appointment", page, answer="yes")
    where, page = browser.post("/kiosk/details", page, answer="ok")
    while where == "/kiosk/consent":
        where, page = browser.post("/kiosk/consent", page, answer="sign", signer_name=last)
    while where == "/kiosk/questions":
        answers: dict[str, str | list[str]] = {"answer": "next"}
        for name, value in RADIO.findall(page):
            if name not in answers:
                answers[name] = "LA6571-9" if name == "44250-9" else value
        for name in TEXTAREA.findall(page):
            answers[name] = "Cough and a sore throat"
        where, page = browser.post("/kiosk/questions", page, **answers)
    assert where == "/kiosk/done", where
    browser.post("/kiosk/reset", page, reason="finished")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def server_times(log: Path) -> dict[str, list[float]]:
    """The server's own ``duration_ms`` per method and route, from its JSON request log."""
    found: dict[str, list[float]] = defaultdict(list)
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "http.request" and str(entry.get("endpoint", "")).startswith("/kiosk"):
            found[f"{entry['method']} {entry['endpoint']}"].append(float(entry["duration_ms"]))
    return found


def bare_floor(kiosks: int, requests_each: int) -> list[float]:
    """Latency of ``return "ok"`` under waitress with as many threads as ``serve``, hit by the same number
    of clients."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port), str(WebConfig().threads)])
    try:
        wait_for(port, "/ping")
        timings: dict[str, list[float]] = defaultdict(list)

        browsers: list[Browser] = []

        def client() -> None:
            browser = Browser(port, timings)
            browsers.append(browser)
            for _ in range(requests_each):
                browser.request("GET", "/ping")

        threads = [threading.Thread(target=client) for _ in range(kiosks)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for browser in browsers:
            browser.connection.close()
        return timings["GET /ping"]
    finally:
        process.terminate()
        process.wait()


def run_backend(name: str, kiosks: int, rounds: int, think: float, extra_env: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
        env.update(FRONTDESK_INSTANCE_DIR=str(root / "instance"), FRONTDESK_WEB_PORT=str(port),
                   FRONTDESK_HL7_LISTEN_PORT=str(free_port()), **extra_env)
        subprocess.run([FRONTDESK, "db", "upgrade"], env=env, check=True, capture_output=True)
        now = dt.datetime.now(dt.UTC)
        patients = [(f"B{k:02d}{r:02d}", f"Bench{k:02d}x{r:02d}", "19500101" if (k + r) % 2 == 0 else "19800101")
                    for k in range(kiosks) for r in range(rounds)]
        schedule = root / "schedule.hl7"
        schedule.write_bytes(b"".join(
            siu_s12(f"BENCH-{mrn}", now, now + dt.timedelta(minutes=10), mrn, last, "Pat", born, "F", "en",
                    ("D01", "Okafor", "Ngozi"), "EXAM1") for mrn, last, born in patients))
        subprocess.run([FRONTDESK, "import-hl7", str(schedule)], env=env, check=True, capture_output=True)
        codes = [subprocess.run([FRONTDESK, "kiosks", "add", f"bench-{k}"], env=env, check=True,
                                capture_output=True, text=True).stdout.split()[-1] for k in range(kiosks)]
        log = root / "serve.log"
        with log.open("w") as sink:
            server = subprocess.Popen([FRONTDESK, "serve"], env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            wait_for(port, "/healthz")
            timings: dict[str, list[float]] = defaultdict(list)
            browsers = []
            for code in codes:
                browser = Browser(port, defaultdict(list))
                _, page = browser.request("GET", "/kiosk/")
                browser.post("/kiosk/enroll", page, code=code)
                browser.timings = timings
                browser.think = think
                browsers.append(browser)
            browsers[0].think = 0.0
            sizes = page_sizes(browsers[0], patients[0][1], patients[0][2])
            browsers[0].think = think
            failures: list[str] = []
            load = os.getloadavg()
            started = time.perf_counter()

            def kiosk(index: int) -> None:
                try:
                    for r in range(1 if index == 0 else 0, rounds):
                        _, last, born = patients[index * rounds + r]
                        check_in(browsers[index], last, f"{born[4:6]}/{born[6:]}/{born[:4]}")
                except Exception as exc:  # a failed check-in is reported, not hidden
                    failures.append(f"kiosk {index}: {exc}")

            threads = [threading.Thread(target=kiosk, args=(i,)) for i in range(kiosks)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - started
            for browser in browsers:
                browser.connection.close()
        finally:
            server.terminate()
            server.wait()
        completed = kiosks * rounds - 1 - len(failures)
        per_step = sum(len(v) for v in timings.values())
        floor = bare_floor(kiosks, max(50, per_step // kiosks))
        server_side = server_times(log)
        print(f"\n== {name}: {kiosks} kiosks, {think:.1f} s on each screen, {completed} check-ins in {wall:.1f} s = "
              f"{completed / wall * 60:.0f} check-ins/min ({per_step} requests); failures: {len(failures)}; "
              f"load average {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
              f"({os.cpu_count()} CPUs)")
        for failure in failures[:3]:
            print(f"   {failure}")
        print(f"   {'step':32} {'n':>5}  {'server p50':>10} {'p95':>7}   {'client p50':>10} {'p95':>7}  (ms)")
        for step in sorted(timings):
            server_values = server_side.get(step, [])
            server_cols = (f"{statistics.median(server_values):10.1f} {percentile(server_values, .95):7.1f}"
                           if server_values else f"{'-':>10} {'-':>7}")
            client = timings[step]
            print(f"   {step:32} {len(client):5}  {server_cols}   {statistics.median(client):10.1f} "
                  f"{percentile(client, .95):7.1f}")
        all_server = [v for values in server_side.values() for v in values]
        print(f"   {'all kiosk requests':32} {len(all_server):5}  {statistics.median(all_server):10.1f} "
              f"{percentile(all_server, .95):7.1f}")
        print(f"   {'floor: bare Flask GET /ping':32} {len(floor):5}  {'':>10} {'':>7}   "
              f"{statistics.median(floor):10.1f} {percentile(floor, .95):7.1f}")
        if sizes:
            print("   page sizes, HTML + CSS + JS (target <= 100 KB):")
            for page_name, (html, assets) in sizes.items():
                print(f"     {page_name:28} {html / 1024:6.1f} KB HTML + {assets / 1024:5.1f} KB assets = "
                      f"{(html + assets) / 1024:6.1f} KB")
            print("     floor: bare Flask response       0.0 KB (2 bytes)")


def page_sizes(browser: Browser, last: str, born: str) -> dict[str, tuple[int, int]]:
    """Bytes of each kiosk page on the way through one check-in, and of the CSS and script it loads."""
    sizes: dict[str, tuple[int, int]] = {}
    asset_sizes: dict[str, int] = {}

    def measure(name: str, page: str) -> None:
        for asset in ASSET.findall(page):
            if asset not in asset_sizes:
                asset_sizes[asset] = len(browser.request("GET", asset)[1].encode())
        sizes.setdefault(name, (len(page.encode()), sum(asset_sizes[a] for a in ASSET.findall(page))))

    _, page = browser.request("GET", "/kiosk/")
    measure("welcome", page)
    where, page = browser.post("/kiosk/start", page, mode="checkin")
    measure("identify", page)
    where, page = browser.post("/kiosk/identify", page, last_name=last, birth_date=f"{born[4:6]}/{born[6:]}/{born[:4]}")
    measure("appointment", page)
    where, page = browser.post("/kiosk/appointment", page, answer="yes")
    measure("details", page)
    where, page = browser.post("/kiosk/details", page, answer="ok")
    while where == "/kiosk/consent":
        measure("consent", page)
        where, page = browser.post("/kiosk/consent", page, answer="sign", signer_name=last)
    while where == "/kiosk/questions":
        title = re.search(r"<h1>([^<]+)</h1>", page)
        measure(f"questions: {title.group(1) if title else '?'}"[:28], page)
        answers: dict[str, str | list[str]] = {"answer": "next"}
        for name, value in RADIO.findall(page):
            answers.setdefault(name, "LA6571-9" if name == "44250-9" else value)
        for name in TEXTAREA.findall(page):
            answers[name] = "Cough"
        where, page = browser.post("/kiosk/questions", page, **answers)
    measure("done", page)
    browser.post("/kiosk/reset", page, reason="finished")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kiosks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="check-ins per kiosk")
    parser.add_argument("--think", type=float, default=1.0,
                        help="seconds each simulated patient spends on a screen (people take 5-30 s; 0 saturates)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), help="only this one (default: both)")
    args = parser.parse_args()
    limits = {"FRONTDESK_KIOSK_LOOKUP_MAX_FAILURES_PER_KIOSK": "1000"}
    if args.backend != "postgresql":
        run_backend("SQLite", args.kiosks, args.rounds, args.think, limits)
    if args.backend == "sqlite":
        return
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        print(f"\n== PostgreSQL: skipped ({str(exc).strip().splitlines()[0]})")
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        run_backend("PostgreSQL", args.kiosks, args.rounds, args.think,
                    {**limits, "FRONTDESK_DATABASE_URL": PG_URL, "FRONTDESK_DATABASE_SCHEMA": schema})
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
