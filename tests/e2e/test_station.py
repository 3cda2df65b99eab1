"""A vitals station end to end: simulated devices on ptys, ``frontdesk serve``, a real Chromium, and the
reference records system receiving the ORU^R01, on SQLite and with two ``serve`` processes on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
import signal
import sqlite3
import typing as t
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Page
from playwright.sync_api import expect

from devices import drivers
from devices.protocols.base import Measurement
from hl7.er7 import parse_message
from server.config import Config
from server.db import make_engine
from server.services import build_services
from server.services.context import SYSTEM
from server.services.patients import AppointmentRecord
from server.services.patients import PatientRecord
from tests.browsers import assert_accessible
from tests.conftest import drop_postgres_schema
from tests.conftest import new_postgres_schema
from tests.e2e.conftest import Served
from tests.e2e.conftest import send_to_chart
from tests.e2e.conftest import serve
from tests.e2e.conftest import sign_in
from tests.procs import clean_env
from tests.procs import eventually
from tests.procs import free_port
from tests.procs import start

LB_TO_KG = Decimal("0.45359237")


def simulated_values(driver: str, metric: str, seconds: int = 900) -> set[str]:
    """Every value the seeded simulator emits for ``metric`` in its first ``seconds``, decoded by our decoder."""
    spec = drivers.get(driver)
    simulator, decoder = spec.simulator("normal", 0), spec.decoder()
    values = set()
    for now in range(seconds):
        for event in decoder.feed(simulator.output(float(now))):
            if isinstance(event, Measurement) and event.metric == metric and event.value is not None:
                values.add(str(event.value))
    return values


class Records:
    """``frontdesk records-server`` in a subprocess, and what it stored."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.store = tmp_path / "records.sqlite3"
        self.process = start(["records-server", "--listen", f"127.0.0.1:{self.port}", "--store", str(self.store)],
                             clean_env(tmp_path / "records"))
        assert self.process.stdout is not None
        assert "listening" in self.process.stdout.readline()

    def messages(self, message_type: str) -> list[bytes]:
        if not self.store.exists():
            return []
        with sqlite3.connect(self.store) as db:
            return [bytes(p) for (p,) in db.execute("SELECT payload FROM message WHERE message_type LIKE ?",
                                                    (f"{message_type}%",))]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=10)


@pytest.fixture
def records(tmp_path: Path) -> t.Iterator[Records]:
    system = Records(tmp_path)
    yield system
    system.stop()


@pytest.fixture
def oximeter(tmp_path: Path) -> t.Iterator[Path]:
    link = tmp_path / "tty-ox-1"
    process = start(["simulate", "nonin-df8", "--pty", "--link", str(link)], clean_env(tmp_path / "sim"))
    assert process.stdout is not None and process.stdout.readline().strip() == str(link)
    yield link
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=10)


def station_config(link: Path, records: Records) -> str:
    return (f'[hl7]\ndestination_host = "127.0.0.1"\ndestination_port = {records.port}\n'
            f'[[devices]]\nid = "ox-1"\ndriver = "nonin-df8"\nport = "{link}"\nstation = "room1"\n')


def arrive_patient(url: str, schema: str, instance: Path) -> None:
    """Schedule a patient for now and check them in, through the services (the kiosk's part)."""
    config = Config.for_tests(db_url=url, db_schema=schema, instance_dir=instance)
    engine = make_engine(url, schema=schema or None)
    services = build_services(config, engine, secret="test")
    try:
        with services.uow.begin() as session:
            patient = services.patients.upsert_in(session, PatientRecord(
                mrn="E2E-1", mrn_authority="TEST", family_name="Okonkwo", given_name="Ada",
                birth_date=dt.date(1979, 4, 2)), actor=SYSTEM)
            services.patients.schedule_in(session, patient, AppointmentRecord(
                source="TEST", external_id="E2E-APT", start_at=dt.datetime.now(dt.UTC), location="EXAM2"),
                actor=SYSTEM)
        [visit] = services.visits.for_day(services.visits.today(), actor=SYSTEM)
        services.visits.transition(visit.visit_id, "arrived", actor=SYSTEM)
    finally:
        engine.dispose()


def serve_with_patient(page: Page, tmp_path: Path, config_text: str, **settings: str) -> Served:
    """``serve`` on SQLite with one arrived patient and the assistant signed in."""
    served = serve(tmp_path, config_text, **settings)
    served.add_user("ama", "assistant")
    arrive_patient(f"sqlite:///{served.instance / 'frontdesk.db'}", "", served.instance)
    sign_in(page, served.base, "ama")
    return served


def take_vitals_and_chart(page: Page, base: str, records: Records) -> None:
    """The assistant's whole job on the station page, checked against what the records system receives."""
    page.goto(base + "/staff/stations/room1")
    expect(page.get_by_text("Okonkwo, Ada")).to_be_visible()
    assert_accessible(page, "station page with a waiting patient")
    page.get_by_role("button", name="Take vitals").click()
    expect(page.get_by_role("heading", name="Vitals for Okonkwo, Ada")).to_be_visible()
    spo2 = page.get_by_label("SpO2", exact=True)
    expect(spo2).not_to_have_value("", timeout=15000)
    shown = spo2.input_value()
    expect(spo2).not_to_have_value(shown, timeout=15000)  # it streams: a later reading replaces it live
    retake = page.get_by_role("listitem").filter(has_text="SpO2")
    expect(retake.get_by_role("button", name="Take again")).to_be_visible()  # offered for a live reading too
    expect(retake).to_contain_text(re.compile(r"SpO2 \d+ %"))
    assert_accessible(page, "station page taking vitals")
    page.get_by_label("Weight", exact=True).fill("154")
    page.get_by_label("Weight unit").select_option(label="lb")
    send_to_chart(page)
    assert_accessible(page, "station page after sending to chart")

    [payload] = eventually(lambda: records.messages("ORU"), what="the ORU^R01 at the records system")
    message = parse_message(payload)
    values = {s.value(3): s.value(5) for s in message.all("OBX") if s.value(2) == "NM"}
    assert values["150456"] in simulated_values("nonin-df8", "spo2")
    assert values["149530"] in simulated_values("nonin-df8", "pulse_oximeter")
    assert Decimal(values["188736"]) == (Decimal(154) * LB_TO_KG).quantize(Decimal("0.1"))
    assert message.value("PID", 5) == "Okonkwo"
    page.reload()
    expect(page.get_by_text("Delivered to the records system.")).to_be_visible()
    expect(page.get_by_text("Nobody is waiting for vitals.")).to_be_visible()


def test_station_sees_the_device_types_a_weight_and_charts(page: Page, tmp_path: Path, records: Records,
                                                          oximeter: Path) -> None:
    served = serve_with_patient(page, tmp_path, station_config(oximeter, records))
    try:
        page.goto(served.base + "/staff/stations/")
        expect(page.get_by_text("ox-1: Connected")).to_be_visible(timeout=15000)
        assert_accessible(page, "station list")
        take_vitals_and_chart(page, served.base, records)
    finally:
        served.stop()


@pytest.mark.postgres
def test_two_serve_processes_on_postgresql_share_one_station(page: Page, tmp_path: Path, records: Records,
                                                             oximeter: Path, postgres_url: str) -> None:
    schema = new_postgres_schema(postgres_url)
    database = {"FRONTDESK_DATABASE_URL": postgres_url, "FRONTDESK_DATABASE_SCHEMA": schema,
                "FRONTDESK_WEB_SECRET_KEY": "a shared secret for both processes"}
    reader: Served | None = None
    other: Served | None = None
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        # The first process reads the device; the browser only ever talks to the second.
        reader = serve(tmp_path / "a", station_config(oximeter, records), **database)
        other = serve(tmp_path / "b", f'[hl7]\ndestination_host = "127.0.0.1"\ndestination_port = {records.port}\n',
                      **database)
        other.add_user("ama", "assistant")
        arrive_patient(postgres_url, schema, tmp_path / "arrive")
        sign_in(page, other.base, "ama")
        take_vitals_and_chart(page, other.base, records)
    finally:
        for process in (other, reader):
            if process is not None:
                process.stop()
        drop_postgres_schema(postgres_url, schema)


def test_unplugged_device_shows_disconnected_and_values_can_be_typed(page: Page, tmp_path: Path,
                                                                     records: Records) -> None:
    link = tmp_path / "tty-ox-1"
    simulator = start(["simulate", "nonin-df8", "--pty", "--link", str(link), "--scenario", "unplug",
                       "--unplug-every", "4", "--unplug-for", "4"], clean_env(tmp_path / "sim"))
    assert simulator.stdout is not None and simulator.stdout.readline().strip() == str(link)
    served = serve_with_patient(page, tmp_path, station_config(link, records))
    try:
        page.goto(served.base + "/staff/stations/room1")
        page.get_by_role("button", name="Take vitals").click()
        device = page.locator('li[data-device="ox-1"] [data-state]')
        expect(device).to_have_text("Disconnected", timeout=20000)
        expect(device).to_have_text("Connected", timeout=20000)
        page.get_by_label("Pulse", exact=True).fill("64")
        send_to_chart(page)
        [payload] = eventually(lambda: records.messages("ORU"), what="the ORU^R01")
        values = {s.value(3): (s.value(5), s.value(17)) for s in parse_message(payload).all("OBX")
                  if s.value(2) == "NM"}
        assert values["149546"] == ("64", "MMEAS")
    finally:
        served.stop()
        simulator.send_signal(signal.SIGTERM)
        simulator.communicate(timeout=10)


def test_records_system_down_still_charts_and_says_queued(page: Page, tmp_path: Path, oximeter: Path) -> None:
    config = (f'[hl7]\ndestination_host = "127.0.0.1"\ndestination_port = {free_port()}\n'
              f'[[devices]]\nid = "ox-1"\ndriver = "nonin-df8"\nport = "{oximeter}"\nstation = "room1"\n')
    served = serve_with_patient(page, tmp_path, config)
    try:
        page.goto(served.base + "/staff/stations/room1")
        page.get_by_role("button", name="Take vitals").click()
        expect(page.get_by_label("SpO2", exact=True)).not_to_have_value("", timeout=15000)
        send_to_chart(page)
        expect(page.get_by_text("Queued: the records system has not answered yet")).to_be_visible()
    finally:
        served.stop()



def test_a_page_beyond_the_live_page_limit_says_so_works_and_goes_live_when_a_slot_frees(
        page: Page, tmp_path: Path, records: Records, oximeter: Path) -> None:
    # 4 request threads leave room for one live page (server.live.StreamSlots).
    served = serve_with_patient(page, tmp_path, station_config(oximeter, records), FRONTDESK_WEB_THREADS="4")
    try:
        page.goto(served.base + "/staff/stations/room1")
        # Signing in lands on the board, whose live stream holds the slot until the server sees it closed.
        expect(page.locator("[data-station-page]")).to_have_attribute("data-live", "connected", timeout=20000)
        other = page.context.new_page()
        other.goto(served.base + "/staff/stations/room1")
        expect(other.locator("[data-station-page]")).to_have_attribute("data-live", "busy")
        expect(other.get_by_role("status")).to_contain_text("Live readings are paused")
        assert_accessible(other, "station page with live readings paused")
        other.get_by_role("button", name="Take vitals").click()
        expect(other.get_by_role("heading", name="Vitals for Okonkwo, Ada")).to_be_visible()
        page.close()  # the browser asks again within 10 s and gets the freed slot
        expect(other.locator("[data-station-page]")).to_have_attribute("data-live", "connected", timeout=20000)
        expect(other.get_by_label("SpO2", exact=True)).not_to_have_value("", timeout=15000)
    finally:
        served.stop()
