"""The whole loop in a real Chromium against ``frontdesk demo`` (every part real: HL7 listener,
dispatcher, reference records system, simulated devices on ptys, web server):

SIU^S12 in over MLLP → the patient checks in at the kiosk with a PHQ-9 → the board, open before,
shows them "Arrived" without a reload → the assistant takes vitals from the simulated devices →
the records system holds the ADT^A04, the questionnaire ORU^R01 and the PCD-01 ORU^R01 whose OBX
values are the readings the devices sent. Then every staff page reachable from the navigation, for
each role, gets an axe-core scan with zero violations.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser
from playwright.sync_api import Page
from playwright.sync_api import expect

from hl7.client import MLLPClient
from hl7.er7 import parse_message
from server.demo import siu_s12
from server.domain.vitals import ROW_BY_KEY
from server.services.vitals import METRICS
from tests.browsers import assert_accessible
from tests.demo_run import Demo
from tests.e2e.conftest import send_to_chart
from tests.e2e.conftest import sign_in
from tests.e2e.test_kiosk import ENGLISH
from tests.e2e.test_kiosk import answer_questionnaires
from tests.e2e.test_kiosk import identify
from tests.e2e.test_station import simulated_values
from tests.procs import clean_env
from tests.procs import eventually

PATIENT = ("W0001", "Whole", "Lupe", "19850505")
DEVICE_ROWS = ("spo2", "pulse", "systolic", "diastolic", "temperature", "weight")
"""Station rows the demo's devices at room1 fill: oximeter, blood-pressure monitor, thermometer, scale."""
PHQ9_TOTAL = "44261-6"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("whole-loop")
    running = Demo(clean_env(tmp / "instance"), tmp)
    try:
        running.wait_ready()
        yield running
    finally:
        assert running.stop() == 0
        assert "Traceback" not in "".join(running.errors)


def staff_page(browser: Browser, demo: Demo, username: str) -> Page:
    """A staff member signed in in their own browser; the admin with a printed recovery code."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US").new_page()
    sign_in(page, demo.base, username, demo.password(username))
    if username == "admin":
        page.get_by_label("Code from your app").fill(demo.recovery_codes()[0])
        page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("button", name="Sign out").first).to_be_visible()
    return page


def send_siu(demo: Demo) -> None:
    """Today's appointment for :data:`PATIENT`, sent to the demo's listener as a scheduler would."""
    now = dt.datetime.now(dt.UTC)
    mrn, family, given, born = PATIENT
    message = siu_s12("LOOP-SIU-1", now, now + dt.timedelta(minutes=10), mrn, family, given, born, "F", "en",
                      ("D01", "Okafor", "Ngozi"), "EXAM1")
    client = MLLPClient("127.0.0.1", demo.hl7, connect_timeout=5, ack_timeout=10)
    try:
        assert b"MSA|AA|LOOP-SIU-1" in client.send(message, "LOOP-SIU-1")
    finally:
        client.close()


def check_in_at_the_kiosk(kiosk: Page, demo: Demo) -> None:
    kiosk.goto(demo.base + demo.printed(r"(/kiosk/enroll\?code=\S+)"))
    kiosk.get_by_role("button", name="Check in", exact=True).click()
    identify(kiosk, "Whole", "05/05/1985")
    expect(kiosk.get_by_role("heading", level=1)).to_have_text("Hello, Lupe")
    kiosk.get_by_role("button", name="Yes, that's me").click()
    kiosk.get_by_role("button", name="Yes, this is correct").click()
    for _ in range(2):
        kiosk.get_by_label("To sign, type your full name").fill("Lupe Whole")
        kiosk.get_by_role("button", name="I agree and sign").click()
    scans: list[str] = []
    answer_questionnaires(kiosk, scans, texts=ENGLISH)
    assert "Mood questions (PHQ-9)" in scans
    expect(kiosk.get_by_role("heading", level=1)).to_have_text("You're checked in")


def take_vitals(station: Page, demo: Demo) -> dict[str, str]:
    """Take the patient's vitals at room1 from the simulated devices; returns what the page showed, by row."""
    station.goto(demo.base + "/staff/stations/room1")
    waiting = station.get_by_role("row").filter(has_text="Whole, Lupe")
    waiting.get_by_role("button", name="Take vitals").click()
    expect(station.get_by_role("heading", name="Vitals for Whole, Lupe")).to_be_visible()
    for key in DEVICE_ROWS:
        expect(station.get_by_label(ROW_BY_KEY[key].label, exact=True)).not_to_have_value("", timeout=60000)
    assert_accessible(station, "station page taking vitals")
    # The values are the ones the browser posted: the devices keep streaming, so a field read a moment
    # before the click may already show a newer reading.
    form = send_to_chart(station)
    return {key: form[key][0] for key in DEVICE_ROWS}


def of_patient(payloads: list[bytes]) -> list[t.Any]:
    return [m for m in map(parse_message, payloads) if m.value("PID", 5) == "Whole"]


def test_siu_kiosk_board_station_records(demo: Demo, browser: Browser) -> None:
    board = staff_page(browser, demo, "frontdesk")
    send_siu(demo)
    board.goto(demo.base + "/staff/")
    row = board.get_by_role("row").filter(has_text="Whole, Lupe")
    expect(row).to_be_visible()

    kiosk = browser.new_context(viewport={"width": 1080, "height": 1920}, locale="en-US").new_page()
    check_in_at_the_kiosk(kiosk, demo)
    expect(row).to_contain_text("Arrived", timeout=20000)  # the board was not reloaded: the arrival came to it
    assert_accessible(board, "board after a live update")

    station = staff_page(browser, demo, "assistant")
    shown = take_vitals(station, demo)

    [a04] = eventually(lambda: of_patient(demo.messages("ADT^A04")), timeout=60, what="the ADT^A04")
    assert a04.value("MSH", 9) == "ADT"
    orus = eventually(lambda: len(of_patient(demo.messages("ORU"))) >= 2 and of_patient(demo.messages("ORU")),
                      timeout=60, what="the questionnaire ORU and the PCD-01 ORU")
    codes = [{s.value(3): s.value(5) for s in m.all("OBX") if s.value(2) == "NM"} for m in orus]
    [questionnaire] = [c for c in codes if PHQ9_TOTAL in c]
    assert questionnaire[PHQ9_TOTAL].isdigit()
    [vitals] = [c for c in codes if str(METRICS["spo2"].mdc_code) in c]
    for key, value in shown.items():
        sent = {vitals[str(METRICS[m].mdc_code)] for m in ROW_BY_KEY[key].metrics if str(METRICS[m].mdc_code) in vitals}
        assert sent == {value}, (key, value, vitals)
    assert shown["spo2"] in simulated_values("nonin-df8", "spo2", seconds=3600)


STAFF_PATHS_NOT_PAGES = ("/staff/logout", "/events")


def walk(page: Page, demo: Demo) -> list[str]:
    """Every staff page reachable from the navigation and the header (and from those pages, in turn), each
    scanned with axe-core."""
    seen: list[str] = []
    queue = [urlsplit(a).path for a in page.locator("a[href^='/staff/']").evaluate_all(
        "links => links.map(a => a.href)")]
    while queue and len(seen) < 40:
        path = queue.pop(0)
        if path in seen or not path.startswith("/staff/") or any(p in path for p in STAFF_PATHS_NOT_PAGES):
            continue
        seen.append(path)
        response = page.goto(demo.base + path)
        assert response is not None and response.status == 200, path
        assert_accessible(page, path)
        for href in page.locator("a[href^='/staff/']").evaluate_all("links => links.map(a => a.href)"):
            queue.append(urlsplit(href).path)
    return seen


@pytest.mark.parametrize("username", ["frontdesk", "assistant", "admin"])
def test_every_staff_page_of_each_role_is_accessible(demo: Demo, browser: Browser, username: str) -> None:
    page = staff_page(browser, demo, username)
    visited = walk(page, demo)
    assert "/staff/" in visited and "/staff/password" in visited, visited
    if username != "frontdesk":
        assert "/staff/stations/room1" in visited and "/staff/stations/room2" in visited


def test_the_demo_keeps_its_database_where_it_says(demo: Demo) -> None:
    assert Path(demo.printed(r"FRONTDESK_INSTANCE_DIR=(\S+) \S*frontdesk users list")) == demo.home
