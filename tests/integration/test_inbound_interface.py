"""The HL7 interface as a records system uses it: bytes over real MLLP sockets, both ways.

Inbound messages go to the listener inside the service (``ListenerPart``) over a
plain TCP socket, written byte for byte as senders write them (CR, LF or CRLF
segment ends, batches, several frames in one write). What we send back out is
delivered by the real dispatcher to the reference records server and read from
its store, then checked with hl7apy STRICT.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import threading
import time
import typing as t
from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hl7apy import load_reference
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message as hl7apy_parse
from sqlalchemy import select

from hl7.ack import parse_ack
from hl7.er7 import Message
from hl7.er7 import parse_message
from hl7.mllp import MLLPDecoder
from hl7.mllp import encode_frame
from hl7.records_server import RecordsSystem
from server.config import Config
from server.interfaces import DispatcherPart
from server.interfaces import ListenerPart
from server.models import Appointment
from server.models import InboundMessage
from server.models import OutboxMessage
from server.models import Patient
from server.models import Visit
from server.services import Services
from server.services import build_services
from server.services.context import Actor

CLERK = Actor("staff", "7", role="front_desk")
MSH = "MSH|^~\\&|EPIC|MAINCLINIC|FRONTDESK|CLINIC|20261126080000-0500||{type}|{control}|P|{version}||||||UNICODE UTF-8"
PID = ("PID|1||MRN77^^^MAINCLINIC^MR||{name}||19750412|F|||12 Elm St^Apt 3^Springfield^IL^62701^USA||"
       "{phone}||es")
SCH = ("SCH|P100^ORDERS|F100^CADENCE|||||ROUTINE^Routine visit|FOLLOWUP^Follow-up visit|20|min|"
       "^^20^20261126103000-0500|||||||||||||Booked")
PV1 = "PV1|1|O|EXAM3||||||||||||||||36996^^^EPIC^VN"
AIL = "AIL|1||EXAM3^^^MAINCLINIC"
AIP = "AIP|1||1234567890^Okafor^Ngozi^^^^^^NPI"
PHONE = "^PRN^PH^^1^217^5550999"


def message(*segments: str, end: str = "\r") -> bytes:
    return (end.join(segments) + end).encode("utf-8")


def siu(control: str, *, name: str = "Nguyen^Linh", phone: str = PHONE, version: str = "2.5.1", end: str = "\r",
        event: str = "S12") -> bytes:
    return message(MSH.format(type=f"SIU^{event}^SIU_S12", control=control, version=version), SCH,
                   PID.format(name=name, phone=phone), PV1, AIL, AIP, end=end)


def adt(event: str, control: str, pid: str, *, version: str = "2.5.1") -> bytes:
    return message(MSH.format(type=f"ADT^{event}^ADT_A01", control=control, version=version),
                   f"EVN|{event}|20261126080000", pid)


@pytest.fixture
def listener(services: Services, config: Config) -> Iterator[ListenerPart]:
    part = ListenerPart(services, dataclasses.replace(config.hl7, listen_port=0))
    part.start()
    yield part
    part.stop()


def exchange(part: ListenerPart, *messages: bytes, together: bool = False) -> list[bytes]:
    """Send each message as one MLLP frame over one connection; return the ACK frames in order.

    :param together: write every frame in one ``sendall``, as a pipelining sender does.
    """
    frames = [encode_frame(m) for m in messages]
    answers: list[bytes] = []
    with socket.create_connection(part.listener.address, timeout=10) as sock:
        decoder = MLLPDecoder()
        for frame in [b"".join(frames)] if together else frames:
            sock.sendall(frame)
            wanted = len(frames) if together else len(answers) + 1
            while len(answers) < wanted:
                data = sock.recv(65536)
                assert data, "listener closed the connection"
                answers.extend(decoder.feed(data))
    return answers


def ack_code(frame: bytes) -> str:
    return parse_ack(frame).code


def err(frame: bytes) -> tuple[str, str, str]:
    """ERR-2.1, ERR-2.3 and ERR-3.1 of an ACK (v2.5 and later)."""
    segment = parse_message(frame).segment("ERR")
    assert segment is not None
    return segment.value(2, 1), segment.value(2, 3), segment.value(3, 1)


def patient(services: Services) -> Patient:
    with services.uow.begin() as session:
        return session.scalars(select(Patient)).one()


def check_in(services: Services) -> None:
    with services.uow.begin() as session:
        visit_id = session.scalars(select(Visit.id)).one()
    services.visits.transition(visit_id, "arrived", actor=CLERK)


@pytest.fixture
def deliver(services: Services, config: Config, tmp_path: Path) -> Iterator[Callable[..., list[Message]]]:
    """Deliver the outbox to the reference records server over MLLP; returns what it stored, parsed.

    :param through: the services whose dispatcher delivers (default: the test's).
    """
    parts: list[tuple[DispatcherPart, RecordsSystem]] = []

    def run(through: Services = services, **settings: t.Any) -> list[Message]:
        system = RecordsSystem(tmp_path / f"records-{len(parts)}.sqlite3", emit=lambda line: None, port=0)
        system.start()
        hl7 = dataclasses.replace(config.hl7, destination_host="127.0.0.1", destination_port=system.address[1],
                                  connect_timeout_seconds=2, ack_timeout_seconds=5, **settings)
        part = DispatcherPart(through, hl7, poll_interval=0.05)
        parts.append((part, system))
        part.start()
        deadline = time.monotonic() + 30
        while any(row.status in ("pending", "sending") for row in outbox(through)):
            assert time.monotonic() < deadline, "outbox not drained"
            time.sleep(0.05)
        return [parse_message(m.payload) for m in system.store.messages()]

    yield run
    for part, system in parts:
        part.stop()
        system.close()


def outbox(services: Services) -> list[OutboxMessage]:
    with services.uow.begin() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def validate_strict(payload: bytes, charset: str = "utf-8") -> None:
    """hl7apy STRICT accepts what we sent (our builders write v2.6)."""
    hl7apy_parse(payload.decode(charset), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True).validate()


# 1. Whatever is stored can be sent back out -------------------------------------------------------


def test_a_tab_in_a_name_becomes_a_space_and_the_patient_can_check_in(
        listener: ListenerPart, services: Services, deliver: Callable[..., list[Message]]) -> None:
    (ack,) = exchange(listener, siu("T1", name="Nguyen\tVan^Linh\\X09\\Mai"))
    assert ack_code(ack) == "AA"
    stored = patient(services)
    assert (stored.family_name, stored.given_name) == ("Nguyen Van", "Linh Mai")
    check_in(services)
    (adt_a04,) = deliver()
    assert adt_a04.value("PID", 5, 1) == "Nguyen Van"
    validate_strict(outbox(services)[0].payload)


@pytest.mark.parametrize("name", ["Ngu\ayen^Linh", "Nguyen^Li\\X07\\nh", "Nguyen^Linh\\X1B\\"])
def test_a_control_character_is_refused_with_ae_naming_the_field_and_nothing_stored(
        listener: ListenerPart, services: Services, name: str) -> None:
    (ack,) = exchange(listener, siu("T2", name=name))
    assert ack_code(ack) == "AE"
    assert err(ack) == ("PID", "5", "102")
    assert "control character" in parse_ack(ack).errors[0]
    with services.uow.begin() as session:
        assert session.scalars(select(Patient)).all() == []
        assert session.scalars(select(InboundMessage.outcome)).all() == ["AE"]


# 2. HL7 update rules: empty means no change, "" means delete -----------------------------------------


def test_an_update_leaving_fields_out_changes_nothing_and_explicit_nulls_clear(
        listener: ListenerPart, services: Services, deliver: Callable[..., list[Message]]) -> None:
    exchange(listener, siu("U1"))
    partial = "PID|1||MRN77^^^MAINCLINIC^MR||Nguyen^Linh"
    assert ack_code(exchange(listener, adt("A08", "U2", partial))[0]) == "AA"
    kept = patient(services)
    assert (kept.sex, kept.preferred_language, kept.birth_date, kept.city) == ("F", "es", dt.date(1975, 4, 12),
                                                                            "Springfield")
    cleared = 'PID|1||MRN77^^^MAINCLINIC^MR||Nguyen^Linh||""|""|||""||""||""'
    assert [ack_code(a) for a in exchange(listener, adt("A31", "U3", cleared))] == ["AA"]
    gone = patient(services)
    assert (gone.sex, gone.preferred_language, gone.birth_date, gone.city, gone.phone, gone.email) == (
        "", "", None, "", "", "")
    check_in(services)
    (sent,) = deliver()
    pid = sent.segment("PID")
    assert pid is not None and (pid.raw(7), pid.raw(8), pid.raw(13), pid.raw(15)) == ("", "", "", "")


def test_an_mrn_cannot_be_cleared(listener: ListenerPart, services: Services) -> None:
    (ack,) = exchange(listener, adt("A08", "U4", 'PID|1||""||Nguyen^Linh'))
    assert ack_code(ack) == "AE" and err(ack) == ("PID", "3", "101")


# 3. Line ends, batches, pipelining -------------------------------------------------------------------


@pytest.mark.parametrize("end", ["\r", "\n", "\r\n"])
def test_every_line_end_is_applied_and_acknowledged(listener: ListenerPart, services: Services, end: str) -> None:
    (ack,) = exchange(listener, siu("L1", name="Müller^Zoë", end=end))
    assert ack_code(ack) == "AA"
    assert patient(services).family_name == "Müller"


def test_a_batch_gets_a_response_batch_with_an_ack_for_every_message(listener: ListenerPart,
                                                                       services: Services) -> None:
    good = "PID|1||B{n}^^^MAINCLINIC^MR||Batch{n}^Pat"
    batch = "\n".join([
        "FHS|^~\\&|EPIC|MAINCLINIC|FRONTDESK|CLINIC|20261126070000||||FILE7",
        "BHS|^~\\&|EPIC|MAINCLINIC|FRONTDESK|CLINIC|20261126070000||||BATCH7",
        *adt("A28", "B1", good.format(n=1)).decode().split("\r")[:-1],
        *adt("A28", "B2", "PID|1||^^^MAINCLINIC^MR||NoMrn^Pat").decode().split("\r")[:-1],
        *adt("A28", "B3", good.format(n=3)).decode().split("\r")[:-1],
        "BTS|3", "FTS|1", ""]).encode()
    (answer,) = exchange(listener, batch)
    lines = answer.split(b"\r")
    assert [line[:3] for line in lines if line] == [b"FHS", b"BHS", b"MSH", b"MSA", b"MSH", b"MSA", b"ERR",
                                                    b"MSH", b"MSA", b"BTS", b"FTS"]
    bhs = lines[1].decode().split("|")
    assert bhs[11] == "BATCH7" and lines[0].decode().split("|")[11] == "FILE7"
    acks = [parse_ack(b"MSH" + part) for part in answer.split(b"\rMSH")[1:]]
    assert [(a.code, a.control_id) for a in acks] == [("AA", "B1"), ("AE", "B2"), ("AA", "B3")]
    assert lines[-2] == b"FTS|1" and b"BTS|3" in lines
    with services.uow.begin() as session:
        assert sorted(session.scalars(select(Patient.mrn))) == ["B1", "B3"]


def test_pipelined_messages_are_acknowledged_in_order_after_one_commit(listener: ListenerPart,
                                                                        services: Services) -> None:
    messages = [adt("A28", f"P{n}", f"PID|1||PIPE{n}^^^MAINCLINIC^MR||Pipe^Pat{n}") for n in range(20)]
    messages[7] = adt("A28", "P7", "PID|1||PIPE7^^^MAINCLINIC^MR||Pipe\x07^Pat")
    acks = [parse_ack(frame) for frame in exchange(listener, *messages, together=True)]
    assert [a.control_id for a in acks] == [f"P{n}" for n in range(20)]
    assert [a.code for a in acks] == ["AA"] * 7 + ["AE"] + ["AA"] * 12
    with services.uow.begin() as session:
        assert len(session.scalars(select(Patient.id)).all()) == 19


# 4. and 5. Phones in both forms, the appointment named back, providers as XCN -------------------------


def test_phone_components_and_appointment_ids_come_back_in_the_adt(
        listener: ListenerPart, services: Services, deliver: Callable[..., list[Message]]) -> None:
    assert ack_code(exchange(listener, siu("A1"))[0]) == "AA"
    stored = patient(services)
    assert (stored.phone, stored.phone_area_code, stored.phone_local_number) == ("(217) 555-0999", "217", "5550999")
    with services.uow.begin() as session:
        appointment = session.scalars(select(Appointment)).one()
        assert (appointment.placer_id, appointment.filler_id, appointment.visit_number) == ("P100", "F100", "36996")
        assert (appointment.provider_family, appointment.provider_given) == ("Okafor", "Ngozi")
    check_in(services)
    (sent,) = deliver()
    pid, pv1 = sent.segment("PID"), sent.segment("PV1")
    assert pid is not None and pv1 is not None
    assert pid.raw(13) == "^PRN^PH^^1^217^5550999^^^^^(217) 555-0999"
    assert (pv1.raw(19), pv1.raw(5), pv1.raw(50)) == ("36996^^^EPIC^VN", "F100^^^CADENCE", "P100^^^ORDERS")
    assert pv1.raw(7) == "1234567890^Okafor^Ngozi^^^^^^NPI"
    validate_strict(outbox(services)[0].payload)


def test_a_legacy_xtn_1_phone_is_read_too(listener: ListenerPart, services: Services) -> None:
    exchange(listener, siu("A2", phone="(217)555-0142^PRN^PH"))
    assert (patient(services).phone, patient(services).phone_area_code) == ("(217)555-0142", "")


# 6. ACKs in the sender's version ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6"])
@pytest.mark.parametrize("error", [False, True])
def test_acks_pass_hl7apy_strict_in_the_version_the_sender_declared(listener: ListenerPart, version: str,
                                                                     error: bool) -> None:
    name = "Ngu\ayen^Linh" if error else "Nguyen^Linh"
    (ack,) = exchange(listener, siu(f"V{version}", name=name, version=version))
    text = ack.decode()
    assert parse_message(ack).value("MSH", 12) == version
    # hl7apy names a v2.3 ACK's structure after MSH-9 (ACK_S12), which v2.3 does not define: give it ACK.
    profile = {"ACK_S12": load_reference("ACK", "Message", version)} if version == "2.3" else None
    hl7apy_parse(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True,
                 message_profile=profile).validate()
    assert ack_code(ack) == ("AE" if error else "AA")
    if error and version < "2.5":
        parsed = parse_message(ack)
        assert parsed.value("MSA", 3) and parsed.value("MSA", 6) == "102"
        assert (parsed.value("ERR", 1, 1), parsed.value("ERR", 1, 3)) == ("PID", "5")


# 7. Smaller: event codes, formatting escapes, a reused MSH-10 ---------------------------------------


def test_unsupported_type_is_200_and_unsupported_event_201(listener: ListenerPart) -> None:
    orm, a01 = exchange(listener, adt("A01", "E1", "PID|1||M^^^X^MR||X").replace(b"ADT^A01", b"ORM^O01"),
                        adt("A01", "E2", "PID|1||M^^^X^MR||X"))
    assert (ack_code(orm), err(orm)) == ("AR", ("MSH", "9", "200"))
    assert (ack_code(a01), err(a01)) == ("AR", ("MSH", "9", "201"))


def test_highlighting_escapes_are_dropped_not_re_escaped(
        listener: ListenerPart, services: Services, deliver: Callable[..., list[Message]]) -> None:
    exchange(listener, siu("H1", name="\\H\\Nguyen\\N\\^Linh"))
    assert patient(services).family_name == "Nguyen"
    check_in(services)
    deliver()
    assert b"Nguyen^Linh" in outbox(services)[0].payload and b"\\E\\" not in outbox(services)[0].payload


def test_a_reused_control_id_with_different_content_is_refused_and_kept(listener: ListenerPart,
                                                                        services: Services) -> None:
    first, resend, reuse = exchange(listener, siu("R1"), siu("R1"), siu("R1", name="Other^Person"))
    assert (ack_code(first), resend, ack_code(reuse)) == ("AA", first, "AE")
    assert err(reuse) == ("MSH", "10", "205")
    assert patient(services).family_name == "Nguyen"
    with services.uow.begin() as session:
        kept = session.execute(select(InboundMessage.outcome, InboundMessage.raw)
                               .order_by(InboundMessage.id)).all()
    assert [outcome for outcome, _ in kept] == ["AA", "AE"] and b"Other^Person" in kept[1][1]


# 9. The destination's charset --------------------------------------------------------------------------


def test_latin1_destination_gets_latin1_and_a_name_it_cannot_carry_is_a_dead_letter_for_that_patient_only(
        services: Services, config: Config, deliver: Callable[..., list[Message]]) -> None:
    latin1_config = dataclasses.replace(config, hl7=dataclasses.replace(config.hl7, listen_port=0,
                                                                         destination_charset="ISO-8859-1"))
    latin1 = build_services(latin1_config, services.uow.engine, secret="test", clock=services.clock)
    part = ListenerPart(latin1, latin1_config.hl7)
    part.start()
    try:
        second = siu("C2", name="李^小龙").replace(b"MRN77", b"MRN78").replace(b"F100", b"F200")
        assert [ack_code(a) for a in exchange(part, siu("C1", name="Müller^Zoë"), second)] == ["AA", "AA"]
    finally:
        part.stop()
    with latin1.uow.begin() as session:
        visits = dict(session.execute(select(Patient.mrn, Visit.id).join(Visit, Visit.patient_id == Patient.id)).all())
    for mrn in ("MRN78", "MRN77"):
        latin1.visits.transition(visits[mrn], "arrived", actor=CLERK)
    rows = outbox(latin1)
    assert [(row.status, row.attempts) for row in rows] == [("dead", 0), ("pending", 0)]
    assert rows[0].last_error.startswith("not sent: PID-5: character '李' cannot be sent in latin-1")
    (delivered,) = deliver(latin1)
    assert (delivered.value("MSH", 18), delivered.value("PID", 5)) == ("8859/1", "Müller")
    assert b"M\xfcller" in outbox(latin1)[1].payload
    validate_strict(outbox(latin1)[1].payload, "latin-1")
    assert [row.status for row in outbox(latin1)] == ["dead", "sent"]


# 8. Two connections creating the same patient at once (PostgreSQL) -----------------------------------


@pytest.mark.parametrize("database", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_two_connections_creating_the_same_patient_at_once_both_get_aa(listener: ListenerPart,
                                                                       services: Services) -> None:
    # Hold every patient insert for 0.3 s, so both transactions look the patient up before either commits:
    # without a race-safe upsert the second one fails on the unique key and its sender gets AR.
    with services.uow.engine.begin() as connection:
        connection.exec_driver_sql("CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS "
                                   "$$ BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$")
        connection.exec_driver_sql("CREATE TRIGGER slow_patient BEFORE INSERT ON patient FOR EACH ROW "
                                   "EXECUTE FUNCTION slow_insert()")
    start = threading.Barrier(2)

    def send(control_id: str, given: str) -> bytes:
        start.wait()
        return exchange(listener, adt("A28", control_id, f"PID|1||RACE1^^^MAINCLINIC^MR||Race^{given}"))[0]

    with ThreadPoolExecutor(2) as pool:
        acks = list(pool.map(send, ["RACE-A", "RACE-B"], ["Ann", "Anne"]))
    assert [ack_code(a) for a in acks] == ["AA", "AA"]
    with services.uow.begin() as session:
        assert session.scalars(select(Patient.mrn)).all() == ["RACE1"]
        assert sorted(session.scalars(select(InboundMessage.outcome))) == ["AA", "AA"]


def test_a_batch_between_pipelined_messages_is_applied_in_arrival_order(listener: ListenerPart,
                                                                         services: Services) -> None:
    pid = "PID|1||ORD1^^^MAINCLINIC^MR||{family}^Pat"
    batch = b"BHS|^~\\&|EPIC|MAINCLINIC\r" + adt("A28", "O2", pid.format(family="Second")) + b"BTS|1\r"
    answers = exchange(listener, adt("A28", "O1", pid.format(family="First")), batch,
                       adt("A08", "O3", pid.format(family="Third")), together=True)
    assert [ack_code(answers[0]), ack_code(answers[2])] == ["AA", "AA"] and answers[1].startswith(b"BHS")
    assert patient(services).family_name == "Third"


def test_a_cancellation_right_behind_its_booking_cancels_the_visit(listener: ListenerPart,
                                                                   services: Services) -> None:
    booked, cancelled = exchange(listener, siu("G1"), siu("G2", event="S15"), together=True)
    assert (ack_code(booked), ack_code(cancelled)) == ("AA", "AA")
    with services.uow.begin() as session:
        assert session.scalars(select(Visit.state)).all() == ["cancelled"]
        assert session.scalars(select(Appointment.status)).all() == ["cancelled"]


def test_one_group_creating_updating_and_merging_patients_ends_as_sent_one_by_one(listener: ListenerPart,
                                                                                  services: Services) -> None:
    old = "PID|1||OLD9^^^MAINCLINIC^MR||Before^Pat"
    messages = [
        siu("M1").replace(b"MRN77", b"OLD9"),
        adt("A08", "M2", old.replace("Before", "Renamed") + "||19800101|M"),
        adt("A40", "M3", "PID|1||NEW9^^^MAINCLINIC^MR||Survivor^Pat", ) + b"MRG|OLD9^^^MAINCLINIC^MR\r",
        adt("A28", "M4", "PID|1||NEW9^^^MAINCLINIC^MR||Survivor^Pat||19800101|F"),
    ]
    acks = exchange(listener, *messages, together=True)
    assert [ack_code(a) for a in acks] == ["AA"] * 4
    with services.uow.begin() as session:
        rows = {p.mrn: p for p in session.scalars(select(Patient))}
        assert (rows["OLD9"].family_name, rows["OLD9"].sex) == ("Renamed", "M")
        assert rows["OLD9"].merged_into_id == rows["NEW9"].id and rows["NEW9"].sex == "F"
        assert session.scalars(select(Visit.patient_id)).all() == [rows["NEW9"].id]
        assert session.scalars(select(Appointment.patient_id)).all() == [rows["NEW9"].id]


def test_a_group_of_updates_to_existing_rows_ends_as_sent_one_by_one(listener: ListenerPart,
                                                                     services: Services) -> None:
    """Changes to rows that already exist are held and written together at the end of the group: later
    changes to the same row win, untouched fields stay, and a slot rebooked for another patient takes its
    visit along."""
    other = "PID|1||MRN88^^^MAINCLINIC^MR||Other^Pat||19900101|M"
    exchange(listener, siu("U0"), adt("A28", "U1", other))
    messages = [
        siu("U2", event="S13").replace(b"EXAM3^^^MAINCLINIC", b"EXAM5^^^MAINCLINIC"),
        siu("U3", event="S13").replace(b"MRN77", b"MRN88").replace(b"Nguyen^Linh", b"Other^Pat")
        .replace(b"EXAM3^^^MAINCLINIC", b"EXAM5^^^MAINCLINIC").replace(b"|20|min|", b"|30|min|"),
        adt("A08", "U4", "PID|1||MRN77^^^MAINCLINIC^MR||Nguyen^Lin||19750412|M"),
        adt("A08", "U5", "PID|1||MRN77^^^MAINCLINIC^MR||Nguyen-Tran^Linh"),
    ]
    acks = exchange(listener, *messages, together=True)
    assert [ack_code(a) for a in acks] == ["AA"] * 4
    with services.uow.begin() as session:
        rows = {p.mrn: p for p in session.scalars(select(Patient))}
        first = rows["MRN77"]
        assert (first.family_name, first.given_name, first.sex) == ("Nguyen-Tran", "Linh", "M")
        assert (first.birth_date, first.preferred_language) == (dt.date(1975, 4, 12), "es")
        appointment = session.scalars(select(Appointment)).one()
        assert (appointment.patient_id, appointment.location, appointment.duration_minutes) == (
            rows["MRN88"].id, "EXAM5", 30)
        assert session.scalars(select(Visit.patient_id)).all() == [rows["MRN88"].id]
