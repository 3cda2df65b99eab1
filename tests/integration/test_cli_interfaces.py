"""The HL7 commands as an operator runs them, and the outbox as staff see it through the API.

``import-hl7``, ``outbox`` and ``listen`` run as ``frontdesk`` subprocesses on
the test's database (SQLite and PostgreSQL); what they did is checked in that
database through the services. The inbound files live in
``tests/fixtures/inbound/``: LF-separated text as schedulers export it, MLLP
frames one per line as capture tools write them, and a file with one message
missing its patient's family name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy import select

from hl7.ack import parse_ack
from hl7.client import MLLPClient
from server.models import Appointment
from server.models import InboundMessage
from server.models import OutboxMessage
from server.models import Patient
from server.services import Services
from server.services.context import Actor
from server.services.outbox import OutboxRepository
from tests.conftest import Database
from tests.conftest import StaffActions

FRONTDESK = str(Path(sys.executable).with_name("frontdesk"))
INBOUND = Path(__file__).resolve().parents[1] / "fixtures" / "inbound"
CLERK = Actor("staff", "5", role="front_desk")


@pytest.fixture
def env(database: Database, tmp_path: Path) -> dict[str, str]:
    """A ``frontdesk`` environment on the test's database and nothing else from the caller's settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    clean.update(FRONTDESK_INSTANCE_DIR=str(tmp_path / "instance"), FRONTDESK_DATABASE_URL=database.url)
    if database.schema:
        clean["FRONTDESK_DATABASE_SCHEMA"] = database.schema
    return clean


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FRONTDESK, *args], env=env, capture_output=True, text=True, timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [f"frontdesk: error: {text}"]


def count(services: Services, model: type) -> int:
    with services.uow.begin() as session:
        return session.scalars(select(func.count()).select_from(model)).one()


def output_lines(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    return [line.split() for line in result.stdout.strip().splitlines()]


REPO = Path(__file__).resolve().parents[2]
PYTHON_HL7 = REPO / ".venv" / "peers" / "python-hl7"


@pytest.mark.skipif(not PYTHON_HL7.is_dir(), reason="the python-hl7 test peer is installed by make (see Makefile)")
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_python_hl7_shadowing_our_package_is_one_line_with_the_remedy(env: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run([FRONTDESK, "outbox", "list"], env={**env, "PYTHONPATH": str(PYTHON_HL7)},
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"frontdesk: error: the package 'hl7' in {PYTHON_HL7 / 'hl7'} (python-hl7")
    assert "pip uninstall hl7" in line and "Traceback" not in result.stderr


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("key", "value", "message"), [
    ("DESTINATION_CHARSET", "latin1", "must be one of UTF-8, ISO-8859-1, ASCII, got 'latin1'"),
    ("DESTINATION_CONNECTIONS", "0", "must be between 1 and 32, got 0"),
])
def test_a_bad_destination_setting_is_one_line_naming_the_key_and_exit_2(env: dict[str, str], key: str,
                                                                           value: str, message: str) -> None:
    result = run({**env, f"FRONTDESK_HL7_{key}": value, "FRONTDESK_HL7_DESTINATION_HOST": "127.0.0.1"}, "bridge")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"frontdesk: error: FRONTDESK_HL7_{key}: {message}"]


def test_import_of_a_crlf_batch_file_applies_every_message(env: dict[str, str], services: Services,
                                                           tmp_path: Path) -> None:
    lines = ["FHS|^~\\&|SCHED|MAIN", "BHS|^~\\&|SCHED|MAIN"]
    for n in (1, 2):
        lines += [f"MSH|^~\\&|SCHED|MAIN|FD|CLINIC|20261126070000||ADT^A28^ADT_A05|CR{n}|P|2.5",
                  f"PID|1||CR{n}^^^MAIN^MR||Crlf^Pat{n}"]
    path = tmp_path / "batch.hl7"
    path.write_bytes(("\r\n".join([*lines, "BTS|2", "FTS|1"]) + "\r\n").encode())
    result = run(env, "import-hl7", str(path))
    assert result.returncode == 0, result.stderr
    assert [line[:3] for line in output_lines(result)[:2]] == [["CR1", "ADT^A28", "AA"], ["CR2", "ADT^A28", "AA"]]
    assert count(services, Patient) == 2


def test_import_of_an_lf_separated_file_applies_each_message_once(env: dict[str, str], services: Services) -> None:
    result = run(env, "import-hl7", str(INBOUND / "siu_day_lf.hl7"))
    assert result.returncode == 0, result.stderr
    assert output_lines(result) == [
        ["IMP-LF-0001", "SIU^S12", "AA"], ["IMP-LF-0002", "SIU^S12", "AA"], ["IMP-LF-0003", "SIU^S12", "AA"],
        ["3", "messages:", "AA=3"]]
    with services.uow.begin() as session:
        assert sorted(session.scalars(select(Patient.family_name))) == ["Haddad", "Lindqvist", "Okonkwo"]
        assert sorted(session.scalars(select(Appointment.external_id))) == ["F5001", "F5002", "F5003"]
    again = run(env, "import-hl7", str(INBOUND / "siu_day_lf.hl7"))
    assert again.returncode == 0, again.stderr
    assert [line[-2:] for line in output_lines(again)[:3]] == [["AA", "(duplicate)"]] * 3
    assert (count(services, Appointment), count(services, InboundMessage)) == (3, 3)


def test_import_of_an_mllp_framed_file_prints_one_line_per_message(env: dict[str, str], services: Services) -> None:
    result = run(env, "import-hl7", str(INBOUND / "siu_day_mllp.hl7"))
    assert result.returncode == 0, result.stderr
    assert output_lines(result) == [
        ["IMP-MLLP-0001", "SIU^S12", "AA"], ["IMP-MLLP-0002", "SIU^S13", "AA"], ["2", "messages:", "AA=2"]]
    assert (count(services, Patient), count(services, Appointment), count(services, InboundMessage)) == (2, 2, 2)


def test_import_with_one_bad_message_reports_ae_for_it_applies_the_rest_and_exits_1(
        env: dict[str, str], services: Services) -> None:
    result = run(env, "import-hl7", str(INBOUND / "siu_one_bad_lf.hl7"))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and "Traceback" not in result.stderr
    assert lines[0].split() == ["IMP-BAD-0001", "SIU^S12", "AA"]
    assert lines[1].split()[:3] == ["IMP-BAD-0002", "SIU^S12", "AE"]
    assert "PID-5 patient family name is required" in lines[1]
    assert lines[2] == "2 messages: AA=1, AE=1"
    with services.uow.begin() as session:
        assert list(session.scalars(select(Patient.family_name))) == ["Novak"]
        kept = dict(session.execute(select(InboundMessage.control_id, InboundMessage.outcome)).all())
    assert kept == {"IMP-BAD-0001": "AA", "IMP-BAD-0002": "AE"}


def test_import_of_a_file_that_is_not_hl7_is_one_line_and_changes_nothing(
        env: dict[str, str], services: Services, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"PID|1||123\nthis is not a message\n")
    result = run(env, "import-hl7", str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"frontdesk: error: {path}: ")
    assert count(services, InboundMessage) == 0


def seed_outbox(services: Services, demo_visit: int) -> tuple[int, int]:
    """One dead and one pending message for the demo patient; returns their ids."""
    services.visits.transition(demo_visit, "arrived", actor=CLERK)
    services.visits.transition(demo_visit, "checked_out", actor=CLERK)
    repository = OutboxRepository(uow=services.uow, audit=services.audit)
    (item,) = repository.claim_next(services.clock.now(), 30, 10)
    repository.mark_dead(item.id, "AE: PID-3 patient not known here")
    repository.release()
    with services.uow.begin() as session:
        pending = session.scalars(select(OutboxMessage.id).where(OutboxMessage.status == "pending")).one()
    return item.id, pending


def test_outbox_list_shows_counts_and_messages(env: dict[str, str], services: Services, demo_visit: int) -> None:
    dead_id, pending_id = seed_outbox(services, demo_visit)
    result = run(env, "outbox", "list")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().splitlines()
    assert header.split()[:5] == ["pending=1", "sending=0", "sent=0", "dead=1", "discarded=0"]
    assert header.split()[5].startswith("oldest_pending_age_s=")
    assert [row.split()[:3] for row in rows] == [[str(pending_id), "pending", "ADT^A03"],
                                                 [str(dead_id), "dead", "ADT^A04"]]
    assert "AE: PID-3 patient not known here" in rows[1]
    only_dead = run(env, "outbox", "list", "--status", "dead")
    assert [row.split()[:2] for row in only_dead.stdout.strip().splitlines()[1:]] == [[str(dead_id), "dead"]]


def test_outbox_discard_from_the_cli_releases_the_patient(env: dict[str, str], services: Services,
                                                          demo_visit: int) -> None:
    dead_id, pending_id = seed_outbox(services, demo_visit)
    result = run(env, "outbox", "discard", str(dead_id))
    assert (result.returncode, result.stdout.strip()) == (0, f"outbox message {dead_id}: discard done")
    repository = OutboxRepository(uow=services.uow, audit=services.audit)
    assert [item.id for item in repository.claim_next(services.clock.now(), 30, 10)] == [pending_id]
    again = run(env, "outbox", "discard", str(dead_id))
    assert_one_line_error(again, f"outbox message {dead_id} is discarded; discard needs dead or pending")


@pytest.mark.parametrize("action", ["retry", "discard"])
def test_outbox_action_on_an_unknown_id_is_one_line_and_exit_1(env: dict[str, str], services: Services,
                                                                action: str) -> None:
    assert_one_line_error(run(env, "outbox", action, "424242"), "outbox message 424242 does not exist")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_listen_accepts_an_siu_over_mllp_answers_aa_and_stops_on_sigterm(
        env: dict[str, str], services: Services, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "listen.log"
    with open(log, "wb") as out:
        listener = subprocess.Popen([FRONTDESK, "listen"], env={**env, "FRONTDESK_HL7_LISTEN_PORT": str(port)},
                                    stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while f"listening for HL7 on 127.0.0.1:{port}" not in log.read_text(errors="replace"):
            assert listener.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        message = (INBOUND / "siu_day_mllp.hl7").read_bytes().split(b"\x1c")[0].lstrip(b"\x0b")
        with MLLPClient("127.0.0.1", port, connect_timeout=5, ack_timeout=10) as client:
            first = client.send(message, "IMP-MLLP-0001")
            repeat = client.send(message, "IMP-MLLP-0001")
        ack = parse_ack(first)
        assert (ack.code, ack.control_id) == ("AA", "IMP-MLLP-0001")
        assert repeat == first
        with services.uow.begin() as session:
            assert session.scalar(select(Patient.family_name)) == "Tanaka"
            assert session.scalars(select(InboundMessage.peer)).one().startswith("127.0.0.1:")
        assert count(services, Appointment) == 1
    finally:
        listener.send_signal(signal.SIGTERM)
        status = listener.wait(timeout=30)
    assert status == 0, log.read_text(errors="replace")


def test_outbox_api_shows_counts_and_the_dead_message_to_front_desk_only(
        staff: StaffActions, services: Services, demo_visit: int) -> None:
    dead_id, pending_id = seed_outbox(services, demo_visit)
    staff.create("desk", "front_desk")
    staff.create("nurse", "assistant")
    staff.sign_in("desk")
    response = staff.client.get("/api/v1/outbox")
    assert response.status_code == 200
    body = response.get_json()
    assert body["counts"] == {"pending": 1, "sending": 0, "sent": 0, "dead": 1, "discarded": 0}
    assert body["oldest_pending_age_seconds"] is not None
    by_id = {m["id"]: m for m in body["messages"]}
    assert set(by_id) == {dead_id, pending_id}
    assert (by_id[dead_id]["status"], by_id[dead_id]["message_type"], by_id[dead_id]["attempts"]) == (
        "dead", "ADT^A04", 1)
    assert by_id[dead_id]["last_error"] == "AE: PID-3 patient not known here"
    assert "payload" not in by_id[dead_id]
    staff.sign_out()
    staff.sign_in("nurse")
    assert staff.client.get("/api/v1/outbox").status_code == 403
