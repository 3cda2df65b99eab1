"""Inbound SIU and ADT: idempotent upserts, clear AE/AR with ERR, every message kept."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func
from sqlalchemy import select

from hl7.ack import parse_ack
from hl7.er7 import parse_message
from server.models import Appointment
from server.models import InboundMessage
from server.models import OutboxMessage
from server.models import Patient
from server.models import Visit
from server.services import Services
from server.services.context import Actor
from tests.hl7_samples import MSH
from tests.hl7_samples import PID
from tests.hl7_samples import adt
from tests.hl7_samples import message
from tests.hl7_samples import siu


def count(services: Services, model: type) -> int:
    with services.uow.begin() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def test_new_appointment_creates_patient_appointment_and_expected_visit(services: Services) -> None:
    result = services.inbound.receive(siu("S12", "C1"), "127.0.0.1:5000")
    assert result.outcome == "AA" and not result.duplicate
    ack = parse_ack(result.ack)
    assert ack.code == "AA" and ack.control_id == "C1"
    with services.uow.begin() as session:
        patient = session.scalar(select(Patient))
        assert (patient.mrn, patient.mrn_authority, patient.family_name, patient.given_name) == (
            "MRN001", "MAINCLINIC", "Nguyen", "Linh")
        assert patient.birth_date == dt.date(1975, 4, 12) and patient.sex == "F"
        assert (patient.city, patient.postal_code, patient.phone, patient.email) == (
            "Springfield", "62701", "555-0142", "pat@example.org")
        assert patient.preferred_language == "es"
        appointment = session.scalar(select(Appointment))
        assert appointment.external_id == "F100" and appointment.source == "EPIC^MAINCLINIC"
        assert appointment.start_at == dt.datetime(2026, 11, 26, 15, 30, tzinfo=dt.UTC)
        assert (appointment.duration_minutes, appointment.location, appointment.provider_name) == (
            20, "EXAM3", "Ngozi Okafor")
        assert appointment.appointment_type == "Follow-up visit" and appointment.status == "booked"
        assert session.scalar(select(Visit.state)) == "expected"


def test_repeated_message_gets_the_same_ack_and_changes_nothing(services: Services) -> None:
    first = services.inbound.receive(siu("S12", "C1"), "peer")
    again = services.inbound.receive(siu("S12", "C1"), "peer")
    restamped = services.inbound.receive(siu("S12", "C1").replace(b"20261126080000-0500", b"20261126080500-0500"),
                                         "peer")
    assert again.duplicate and again.ack == first.ack
    assert restamped.duplicate and restamped.ack == first.ack
    assert count(services, InboundMessage) == 1


def test_a_reused_control_id_with_other_content_is_ae_205_and_kept(services: Services) -> None:
    first = services.inbound.receive(siu("S12", "C1"), "peer")
    reused = services.inbound.receive(siu("S12", "C1", family="Changed"), "peer")
    assert (first.outcome, reused.outcome, reused.duplicate) == ("AA", "AE", False)
    err = parse_message(reused.ack).segment("ERR")
    assert err is not None and (err.value(2, 1), err.value(2, 3), err.value(3, 1)) == ("MSH", "10", "205")
    with services.uow.begin() as session:
        assert session.scalar(select(Patient.family_name)) == "Nguyen"
        kept = session.execute(select(InboundMessage.control_id, InboundMessage.outcome)
                               .order_by(InboundMessage.id)).all()
    assert kept[0] == ("C1", "AA") and kept[1][1] == "AE" and kept[1][0].startswith("kept-")


def test_reschedule_cancel_and_no_show(services: Services) -> None:
    services.inbound.receive(siu("S12", "C1"), "peer")
    services.inbound.receive(siu("S13", "C2", start="20261126113000-0500"), "peer")
    with services.uow.begin() as session:
        assert session.scalar(select(Appointment.start_at)) == dt.datetime(2026, 11, 26, 16, 30, tzinfo=dt.UTC)
    assert services.inbound.receive(siu("S15", "C3"), "peer").outcome == "AA"
    with services.uow.begin() as session:
        assert session.scalar(select(Appointment.status)) == "cancelled"
        assert session.scalar(select(Visit.state)) == "cancelled"
    services.inbound.receive(siu("S12", "C4", appt="200"), "peer")
    services.inbound.receive(siu("S26", "C5", appt="200"), "peer")
    with services.uow.begin() as session:
        states = dict(session.execute(select(Appointment.external_id, Visit.state).join(Visit)).all())
        assert states == {"F100": "cancelled", "F200": "no_show"}
    assert count(services, OutboxMessage) == 0


def test_adt_updates_the_patient(services: Services) -> None:
    services.inbound.receive(adt("A28", "A1"), "peer")
    assert services.inbound.receive(adt("A08", "A2", family="Tran"), "peer").outcome == "AA"
    with services.uow.begin() as session:
        assert session.scalars(select(Patient.family_name)).all() == ["Tran"]


def test_insurance_from_in1(services: Services) -> None:
    in1 = "IN1|1|PPO1^Gold PPO|BCBS01|Blue Cross||||GRP-77||||||||Nguyen^Linh|SEL|||||||||||||||||||MEM-12345"
    assert services.inbound.receive(adt("A31", "A1", in1), "peer").outcome == "AA"
    with services.uow.begin() as session:
        patient = session.scalar(select(Patient))
        plan = patient.insurance[0]
        assert (plan.payer_name, plan.member_id, plan.payer_id, plan.plan_name, plan.group_number) == (
            "Blue Cross", "MEM-12345", "BCBS01", "Gold PPO", "GRP-77")


def test_merge_moves_visits_and_rekeys_unsent_messages(services: Services) -> None:
    services.inbound.receive(siu("S12", "C1", mrn="OLD1"), "peer")
    with services.uow.begin() as session:
        visit_id = session.scalar(select(Visit.id))
        old_id = session.scalar(select(Patient.id))
    services.visits.transition(visit_id, "arrived", actor=Actor("staff", "1"))
    merge = adt("A40", "M1", "MRG|OLD1^^^MAINCLINIC^MR", mrn="NEW1")
    assert services.inbound.receive(merge, "peer").outcome == "AA"
    with services.uow.begin() as session:
        new = session.scalar(select(Patient).where(Patient.mrn == "NEW1"))
        old = session.get(Patient, old_id)
        assert old.merged_into_id == new.id
        assert session.scalar(select(Visit.patient_id)) == new.id
        assert session.scalars(select(OutboxMessage.ordering_key)).all() == [f"patient:{new.id}"]


def test_missing_mrn_is_ae_naming_pid_3(services: Services) -> None:
    raw = message(MSH.format(type="ADT^A28^ADT_A05", control="E1"), "PID|1||^^^MAINCLINIC^MR||Nguyen^Linh")
    result = services.inbound.receive(raw, "peer")
    assert result.outcome == "AE" and "PID-3" in result.error
    err = parse_message(result.ack).segment("ERR")
    assert err is not None and (err.value(2, 1), err.value(2, 3), err.value(3, 1)) == ("PID", "3", "101")
    assert count(services, Patient) == 0
    with services.uow.begin() as session:
        kept = session.scalar(select(InboundMessage))
        assert (kept.outcome, kept.raw) == ("AE", raw)


def test_missing_appointment_id_and_bad_date(services: Services) -> None:
    no_id = siu("S12", "E2").replace(b"SCH|P100|F100|", b"SCH|||")
    result = services.inbound.receive(no_id, "peer")
    assert result.outcome == "AE" and "SCH-2" in result.error
    bad_dob = siu("S12", "E3").replace(b"19750412", b"1975-04-12")
    result = services.inbound.receive(bad_dob, "peer")
    assert result.outcome == "AE" and "PID-7" in result.error
    assert count(services, Patient) == 0 and count(services, Appointment) == 0


def test_unsupported_type_is_ar_with_err(services: Services) -> None:
    raw = message(MSH.format(type="ORM^O01^ORM_O01", control="U1"), PID.format(mrn="M", family="X", given="Y"))
    result = services.inbound.receive(raw, "peer")
    ack = parse_ack(result.ack)
    assert ack.code == "AR" and any("not supported" in e for e in ack.errors)
    err = parse_message(result.ack).segment("ERR")
    assert err is not None and (err.value(2, 1), err.value(2, 3), err.value(3, 1)) == ("MSH", "9", "200")


def test_bytes_invalid_in_declared_charset_are_ae_and_kept(services: Services) -> None:
    raw = siu("S12", "X1").replace(b"Nguyen", b"Ngu\xffen")
    result = services.inbound.receive(raw, "peer")
    assert result.outcome == "AE" and parse_ack(result.ack).control_id == "X1"
    assert count(services, Patient) == 0
    with services.uow.begin() as session:
        assert session.scalar(select(InboundMessage.raw)) == raw


def test_utf8_names_and_escaped_delimiters_arrive_intact(services: Services) -> None:
    raw = siu("S12", "N1", family="Müller-O\\S\\Brien \\T\\ Zoë")
    assert services.inbound.receive(raw, "peer").outcome == "AA"
    with services.uow.begin() as session:
        assert session.scalar(select(Patient.family_name)) == "Müller-O^Brien & Zoë"


def test_a_field_not_sent_keeps_its_value_and_an_hl7_null_clears_it(services: Services) -> None:
    services.inbound.receive(adt("A28", "K1"), "peer")
    without_address = adt("A08", "K2").replace(b"12 Elm St^Apt 3^Springfield^IL^62701^USA", b"")
    services.inbound.receive(without_address, "peer")
    with services.uow.begin() as session:
        assert session.scalar(select(Patient.city)) == "Springfield"
    cleared = adt("A08", "K3").replace(b"555-0142^PRN^PH~^NET^Internet^pat@example.org", b'""')
    assert services.inbound.receive(cleared, "peer").outcome == "AA"
    with services.uow.begin() as session:
        assert (session.scalar(select(Patient.phone)), session.scalar(select(Patient.email))) == ("", "")


def test_a_patient_without_a_given_name_is_stored(services: Services) -> None:
    raw = message(MSH.format(type="ADT^A28^ADT_A05", control="G1"), "PID|1||M9^^^MAINCLINIC^MR||Solo")
    assert services.inbound.receive(raw, "peer").outcome == "AA"


def test_a_rebooked_slot_takes_its_visit_to_the_new_patient(services: Services) -> None:
    services.inbound.receive(siu("S12", "R1", mrn="FIRST"), "peer")
    services.inbound.receive(siu("S14", "R2", mrn="SECOND", family="Other"), "peer")
    with services.uow.begin() as session:
        second = session.scalar(select(Patient.id).where(Patient.mrn == "SECOND"))
        assert session.scalar(select(Appointment.patient_id)) == second
        assert session.scalar(select(Visit.patient_id)) == second


def test_merge_without_an_authority_and_later_messages_for_the_merged_patient(services: Services) -> None:
    no_authority = PID.replace("{mrn}^^^MAINCLINIC^MR", "{mrn}")
    services.inbound.receive(message(MSH.format(type="ADT^A28^ADT_A05", control="M1"),
                                     no_authority.format(mrn="OLD", family="Nguyen", given="Linh")), "peer")
    merge = message(MSH.format(type="ADT^A40^ADT_A39", control="M2"),
                    no_authority.format(mrn="NEW", family="Nguyen", given="Linh"), "MRG|OLD")
    assert services.inbound.receive(merge, "peer").outcome == "AA"
    services.inbound.receive(siu("S12", "M3", mrn="OLD").replace(b"OLD^^^MAINCLINIC^MR", b"OLD"), "peer")
    with services.uow.begin() as session:
        new = session.scalar(select(Patient).where(Patient.mrn == "NEW"))
        old = session.scalar(select(Patient).where(Patient.mrn == "OLD"))
        assert old.merged_into_id == new.id
        assert session.scalar(select(Appointment.patient_id)) == new.id


def test_a_repeated_rejected_message_gets_the_same_answer(services: Services) -> None:
    raw = siu("S12", "D1").replace(b"Nguyen", b"Ngu\xffen")
    first = services.inbound.receive(raw, "peer")
    again = services.inbound.receive(raw, "peer")
    assert (first.outcome, again.outcome, again.duplicate, again.ack) == ("AE", "AE", True, first.ack)
    no_id = message(MSH.format(type="ADT^A28^ADT_A05", control=""), PID.format(mrn="M", family="X", given="Y"))
    assert [services.inbound.receive(no_id, "peer").outcome for _ in range(2)] == ["AE", "AE"]
    with services.uow.begin() as session:
        assert len(session.scalars(select(InboundMessage.id)).all()) == 3


def test_values_too_long_to_store_are_refused_by_name(services: Services) -> None:
    long_id = "X" * 65
    result = services.inbound.receive(siu("S12", long_id), "peer")
    assert result.outcome == "AE" and "MSH-10" in result.error
    assert services.inbound.receive(siu("S12", long_id), "peer").outcome == "AE"
    result = services.inbound.receive(siu("S12", "L2", family="N" * 129), "peer")
    assert result.outcome == "AE" and "PID-5 family name is longer than 128" in result.error
    assert count(services, Patient) == 0


def test_an_escape_invalid_in_the_charset_is_ae_not_a_crash(services: Services) -> None:
    raw = siu("S12", "E9", family="Ngu\\XFF\\en")
    result = services.inbound.receive(raw, "peer")
    assert result.outcome == "AE" and "cannot be read" in result.error
    assert count(services, Patient) == 0


def test_two_in1_with_the_same_set_id_keep_the_first(services: Services) -> None:
    in1 = "IN1|1|PPO1^Gold|BCBS01|Blue Cross||||GRP||||||||Nguyen^Linh|SEL|||||||||||||||||||MEM-1"
    other = in1.replace("Blue Cross", "Aetna").replace("MEM-1", "MEM-2")
    assert services.inbound.receive(adt("A31", "I1", in1, other), "peer").outcome == "AA"
    with services.uow.begin() as session:
        assert [p.payer_name for p in session.scalar(select(Patient)).insurance] == ["Blue Cross"]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_failure_on_our_side_is_ar_and_the_resend_is_applied(services: Services) -> None:
    engine = services.uow.engine
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TRIGGER appointment_down BEFORE INSERT ON appointment "
                                   "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
    raw = siu("S12", "F1")
    failed = services.inbound.receive(raw, "peer")
    assert failed.outcome == "AR" and parse_ack(failed.ack).control_id == "F1"
    assert count(services, Patient) == 0
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER appointment_down")
    resent = services.inbound.receive(raw, "peer")
    assert (resent.outcome, resent.duplicate) == ("AA", False)
    with services.uow.begin() as session:
        kept = session.execute(select(InboundMessage.control_id, InboundMessage.outcome)
                               .order_by(InboundMessage.id)).all()
    assert [outcome for _, outcome in kept] == ["AR", "AA"] and kept[0][0].startswith("kept-")
