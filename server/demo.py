"""``frontdesk demo``: the whole product on an embedded default, with made-up data.

Everything runs in one process against a fresh SQLite database under
``instance/demo-PORT/`` (PORT: the web port), so two demos on different ports
can run side by side in one folder:

* a reference records system on 127.0.0.1:2576 (``--records-port``; it prints
  one line per message it receives: the ADT and ORU we send end up there);
* our HL7 listener on 127.0.0.1:2575 (``--hl7-port``), to which today's demo
  schedule is sent as SIU^S12 messages, exactly as a scheduler would;
* the outbox dispatcher delivering to the records system;
* simulated devices for stations ``room1`` and ``room2`` (pulse oximeter,
  blood-pressure monitor, thermometer, scale each) on pseudo-terminals, read
  by the in-process gateway exactly as real serial devices are;
* the web server (``--port``), with one staff sign-in per role (the
  administrator's second factor already set up, its key and recovery codes
  printed) and an enrolled kiosk: the printed kiosk link enrolls the browser
  that opens it. The first patients are checked in, so an assistant finds
  them waiting on a station page, takes their vitals from the simulated
  devices and sends them to the chart: the ORU^R01 arrives at the records
  system above.

CLI commands find the demo's database with ``FRONTDESK_INSTANCE_DIR`` (printed
on start). Nothing here is used by ``serve``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import shutil
import sys
import threading
from pathlib import Path

import click
import pyotp
from flask import Flask

from devices import drivers
from devices.simulators.runner import Line
from devices.simulators.runner import PtyEndpoint
from devices.simulators.runner import run as run_simulators
from hl7.client import MLLPClient
from hl7.er7 import Repeated
from hl7.er7 import encode_message
from hl7.er7 import encode_msh
from hl7.er7 import encode_segment
from hl7.er7 import format_timestamp
from hl7.records_server import RecordsSystem
from server import migrate
from server.cli.common import fail
from server.config import Config
from server.config import DatabaseConfig
from server.config import ensure_secret_key
from server.db import make_engine
from server.interfaces import service_parts
from server.runtime import Background
from server.runtime import run_server
from server.services import Services
from server.services import build_services
from server.services.context import SYSTEM
from server.services.outbox import new_control_id

RECORDS_PORT = 2576
STATIONS = ("room1", "room2")
ARRIVED_AT_START = 3
DEMO_USERS = (("frontdesk", "front_desk"), ("assistant", "assistant"), ("admin", "admin"))
DEMO_DRIVERS = (("ox", "nonin-df8"), ("bp", "datex-as3"), ("thermo", "suretemp"), ("scale", "tanita"))
DEMO_DEVICES = tuple((f"{kind}-{number}", driver, station)
                     for number, station in enumerate(STATIONS, start=1) for kind, driver in DEMO_DRIVERS)
"""(device id, driver, station): the same four devices at each station."""
DEMO_SCENARIOS = {"datex-as3": "nibp-only"}
"""The monitor serves as the blood-pressure monitor: the station's oximeter and thermometer are devices of their own."""

# Made-up people; any likeness to a real patient is accidental.
DEMO_PATIENTS = (
    ("D1001", "Rivera", "Ana", "19840309", "F", "es", ("D01", "Okafor", "Ngozi"), "EXAM1", 0),
    ("D1002", "Chen", "Wei", "19711123", "M", "en", ("D01", "Okafor", "Ngozi"), "EXAM2", 20),
    ("D1003", "O'Brien", "Siobhan", "19900602", "F", "en", ("D02", "Haddad", "Karim"), "EXAM3", 40),
    ("D1004", "Müller", "Zoë", "19800214", "F", "en", ("D02", "Haddad", "Karim"), "EXAM1", 60),
    ("D1005", "Johnson", "Marcus", "19580830", "M", "en", ("D01", "Okafor", "Ngozi"), "EXAM2", 80),
)

KIOSK_PATIENTS = tuple(f"{family} {born[4:6]}/{born[6:]}/{born[:4]}"
                       for _, family, _, born, *_ in DEMO_PATIENTS[ARRIVED_AT_START:])
"""Who can check in at the demo's kiosk: the patients not checked in at start (Müller's appointment is at the
next full hour, always within the arrival window; Johnson, over 65, also gets the falls questions)."""


class RecordsPart:
    """The reference records system, in process, printing one line per message it receives."""

    name = "records-server"

    def __init__(self, store: Path, port: int) -> None:
        self.system = RecordsSystem(store, port=port, emit=lambda line: click.echo(f"records: {line}"))

    def start(self) -> None:
        self.system.start()

    def stop(self) -> None:
        self.system.close()


class SimulatorsPart:
    """Simulated devices on pseudo-terminals, each behind a stable symlink like ``/dev/serial/by-id``."""

    name = "device-simulators"

    def __init__(self, links: dict[str, Path]) -> None:
        self.lines = [Line(drivers.get(driver).simulator(DEMO_SCENARIOS.get(driver, "normal"), index),
                           PtyEndpoint(str(links[device_id])))
                      for index, (device_id, driver, _) in enumerate(DEMO_DEVICES)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=run_simulators, args=(self.lines, self._stop), daemon=True,
                                        name="device-simulators")
        self._opened = threading.Event()

    def start(self) -> None:
        self._thread.start()
        while not all(line.path for line in self.lines) and self._thread.is_alive():
            self._opened.wait(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclasses.dataclass(frozen=True)
class Login:
    """A demo staff sign-in as printed; an administrator's second factor is set up already."""

    username: str
    role: str
    password: str
    totp_key: str = ""
    recovery_codes: tuple[str, ...] = ()


def demo_dir(config: Config, web_port: int) -> Path:
    """Where the demo on ``web_port`` keeps its database, secret and device links."""
    return config.instance_dir / f"demo-{web_port}"


def run_demo(config: Config, *, port: int | None, hl7_port: int | None = None,
             records_port: int | None = None) -> None:
    """Reset the demo instance, start every part, load today's schedule over HL7, and serve."""
    web_port = port or config.web.port
    records_port = records_port or RECORDS_PORT
    home = demo_dir(config, web_port)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    links = {device_id: home / f"tty-{device_id}" for device_id, _, _ in DEMO_DEVICES}
    config = dataclasses.replace(
        config,
        instance_dir=home,
        database=DatabaseConfig(url=f"sqlite:///{home / 'frontdesk.db'}"),
        web=dataclasses.replace(config.web, port=web_port),
        hl7=dataclasses.replace(config.hl7, listen_port=hl7_port or config.hl7.listen_port,
                                destination_host="127.0.0.1", destination_port=records_port,
                                retry_base_seconds=1, retry_cap_seconds=10),
        devices=tuple({"id": device_id, "driver": driver, "port": str(links[device_id]), "station": station}
                      for device_id, driver, station in DEMO_DEVICES),
    )
    engine = make_engine(config.database_url)
    migrate.upgrade(engine)
    services = build_services(config, engine, secret=ensure_secret_key(config))
    logins = [add_login(services, username, role, config) for username, role in DEMO_USERS]
    kiosk_code = services.devices.add("kiosk", "demo-lobby", location="Lobby")
    engine.dispose()

    def parts(app: Flask) -> list[Background]:
        return [RecordsPart(home / "records.db", records_port), SimulatorsPart(links),
                *service_parts(app, config)]

    def welcome(base: str) -> None:
        loaded = send_schedule(config)
        arrived = check_in_first(config, ARRIVED_AT_START)
        echo = click.echo
        echo(f"\nFrontdesk demo is running.  Board (front desk): {base}/staff/   health: {base}/healthz")
        echo(f"Patient kiosk (this link enrolls the browser that opens it, once): "
             f"{base}/kiosk/enroll?code={kiosk_code}")
        echo(f"  then check in as {' or '.join(KIOSK_PATIENTS)} (the first {ARRIVED_AT_START} patients have "
             f"arrived already; Español on any screen); lobby screen: {base}/kiosk/lobby")
        for station in STATIONS:
            devices = ", ".join(f"{d} ({v})" for d, v, s in DEMO_DEVICES if s == station)
            echo(f"Station {station}: {base}/staff/stations/{station}   devices: {devices}")
        echo(f"{arrived} patients are checked in and waiting: sign in as the assistant, open a station and "
             "choose \"Take vitals\".")
        echo(f"Today's schedule: {loaded} appointments sent as SIU^S12 to our HL7 listener on "
             f"{config.hl7.listen_host}:{config.hl7.listen_port}.")
        echo(f"Records system (receives our ADT and ORU, one line each below): 127.0.0.1:{records_port}")
        echo("Demo staff sign-ins (new every run):")
        for login in logins:
            echo(f"  {login.username:<10} {login.password}   ({login.role.replace('_', ' ')})")
            if login.totp_key:
                echo(f"             second factor: add key {login.totp_key} to an authenticator app, or use "
                     f"a recovery code (each works once): {', '.join(login.recovery_codes)}")
        echo(f"CLI on this demo's database: FRONTDESK_INSTANCE_DIR={home} {_program()} users list")
        echo("Stop with Ctrl+C.\n")

    try:
        run_server(config, background=parts, ready=welcome)
    except OSError as exc:
        fail(f"demo cannot start: {exc.strerror or exc} (is another demo or service using ports "
             f"{web_port}, {config.hl7.listen_port} or {records_port}? move them with --port, --hl7-port "
             "and --records-port)")


def add_login(services: Services, username: str, role: str, config: Config) -> Login:
    """Add a demo user; for a role that must use a second factor, set it up as the user would at first
    sign-in (so a newcomer signs in with the printed key or a recovery code, no phone needed)."""
    password = "-".join(secrets.token_hex(3) for _ in range(3))
    services.staff.add_user(username, role, password)
    if role not in config.web.mfa_roles:
        return Login(username, role, password)
    token = services.staff.sign_in(username, password, "127.0.0.1")
    principal = services.staff.resume(token, "127.0.0.1")
    assert principal is not None
    enrolment = services.mfa.begin_enrolment(principal)
    code = pyotp.TOTP(enrolment.secret).at(services.clock.now())
    codes = services.mfa.confirm_enrolment(principal, code, address="127.0.0.1")
    services.staff.sign_out(token, "127.0.0.1")
    return Login(username, role, password, enrolment.secret, tuple(codes[:3]))


def siu_s12(control_id: str, now: dt.datetime, start: dt.datetime, mrn: str, family: str, given: str, born: str,
            sex: str, language: str, provider: tuple[str, str, str], room: str) -> bytes:
    """One SIU^S12 (new appointment) as a scheduler sends it: SCH, PID, AIL and AIP."""
    return encode_message([
        encode_msh({3: "DEMO_EHR", 4: "DEMO", 5: "FRONTDESK", 6: "CLINIC", 7: format_timestamp(now),
                    9: ("SIU", "S12", "SIU_S12"), 10: control_id, 11: "P", 12: "2.5.1", 18: "UNICODE UTF-8"}),
        encode_segment("SCH", {1: f"P{mrn}", 2: f"A{mrn}", 7: ("FU", "Follow-up"), 8: ("FU", "Follow-up"),
                               9: "20", 10: "min", 11: ("", "", "20", format_timestamp(start)),
                               25: "Booked"}),
        encode_segment("PID", {1: "1", 3: (mrn, "", "", "DEMO", "MR"), 5: (family, given, "", "", "", "", "L"),
                               7: born, 8: sex, 11: ("1 Demo Street", "", "Springfield", "IL", "62701", "USA"),
                               13: Repeated(("555-0100", ("", "NET", "Internet", f"{mrn.lower()}@example.org"))),
                               15: language}),
        encode_segment("AIL", {1: "1", 3: (room, "", "", "CLINIC")}),
        encode_segment("AIP", {1: "1", 3: provider}),
    ])


def schedule_messages(today: dt.datetime) -> list[tuple[str, bytes]]:
    """Today's demo schedule as SIU^S12 messages, as a scheduler would send them."""
    first = today.replace(minute=0, second=0, microsecond=0)
    messages = []
    for mrn, family, given, born, sex, language, provider, room, offset in DEMO_PATIENTS:
        control_id = new_control_id()
        messages.append((control_id, siu_s12(control_id, today, first + dt.timedelta(minutes=offset), mrn, family,
                                             given, born, sex, language, provider, room)))
    return messages


def send_schedule(config: Config) -> int:
    """Send the demo schedule to our own listener and count the messages it accepted."""
    client = MLLPClient(config.hl7.listen_host, config.hl7.listen_port, connect_timeout=5, ack_timeout=10)
    accepted = 0
    try:
        for control_id, message in schedule_messages(dt.datetime.now(dt.UTC)):
            if b"MSA|AA|" in client.send(message, control_id):
                accepted += 1
    finally:
        client.close()
    return accepted


def check_in_first(config: Config, count: int) -> int:
    """Check in the first ``count`` patients of today's schedule, as the kiosk or front desk would."""
    engine = make_engine(config.database_url)
    services = build_services(config, engine, secret=ensure_secret_key(config))
    try:
        visits = services.visits.for_day(services.visits.today(), actor=SYSTEM)[:count]
        for visit in visits:
            services.visits.transition(visit.visit_id, "arrived", actor=SYSTEM)
        return len(visits)
    finally:
        engine.dispose()


def _program() -> str:
    """How to call this same ``frontdesk`` from the current folder: ``make demo`` runs it from ``.venv``,
    which is not on a newcomer's PATH."""
    program = Path(sys.argv[0]).resolve()
    if program.name != "frontdesk":
        return "frontdesk"
    try:
        return str(program.relative_to(Path.cwd()))
    except ValueError:
        return str(program)
