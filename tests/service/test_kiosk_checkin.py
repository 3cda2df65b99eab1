"""The check-in service on each backend: identification and its limits, codes, the check-in transaction
(A04 + questionnaire ORU + responses together), item-9 flag, changes with A08, check-out, timeouts."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from flask.testing import FlaskClient
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message as hl7apy_parse
from sqlalchemy import func
from sqlalchemy import select

from hl7.er7 import parse_message
from server.models import AuditEvent
from server.models import ConsentSignature
from server.models import KioskSession
from server.models import LookupAttempt
from server.models import OutboxMessage
from server.models import Patient
from server.models import QuestionnaireResponse
from server.models import StaffFlag
from server.models import Visit
from server.services import Services
from server.services.context import SYSTEM
from server.services.context import FrozenClock
from tests.conftest import START
from tests.conftest import StaffActions
from tests.kiosk_helpers import Kiosk
from tests.kiosk_helpers import enrolled_kiosk
from tests.kiosk_helpers import schedule

BORN = dt.date(1958, 3, 9)  # 68 on the test day: gets every questionnaire, STEADI included


@pytest.fixture
def kiosk(services: Services) -> Kiosk:
    return enrolled_kiosk(services)


@pytest.fixture
def visit(services: Services) -> int:
    return schedule(services, "K100", "O'Brien-Müller", "Siobhan", BORN, START + dt.timedelta(minutes=20))


def count(services: Services, model: type, *where: object) -> int:
    with services.uow.begin() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_name_match_ignores_case_accents_hyphens_apostrophes_and_spaces(kiosk: Kiosk, visit: int) -> None:
    kiosk.start()
    assert kiosk.identify("  obrien muller ", "3/9/1958") is None
    assert kiosk.step() == "appointment"
    screen = kiosk.services.checkin.screen(kiosk.creds, "appointment")
    assert screen.data["given_name"] == "Siobhan"


def test_hit_and_miss_answer_alike_and_a_miss_sends_to_the_front_desk(kiosk: Kiosk, visit: int,
                                                                     services: Services) -> None:
    kiosk.start()
    assert kiosk.identify("Nobody", "03/09/1958") is None       # same return as a hit: "go to the current step"
    assert kiosk.step() == "front_desk"
    with services.uow.begin() as session:
        attempt = session.scalars(select(LookupAttempt)).one()
        assert attempt.matched is False and len(attempt.identity_key) == 64 and "Nobody" not in attempt.identity_key


def test_malformed_input_re_asks_without_counting(kiosk: Kiosk, visit: int, services: Services) -> None:
    kiosk.start()
    screen = kiosk.identify("", "13/45/1958")
    assert screen is not None and screen.errors == {"last_name": "required", "birth_date": "date"}
    screen = kiosk.identify("Bad\x00Name", "03/09/1958")
    assert screen is not None and screen.errors == {"last_name": "name"}
    assert count(services, LookupAttempt) == 0 and kiosk.step() == "identify"


def test_outside_the_arrival_window_is_the_front_desk(kiosk: Kiosk, services: Services) -> None:
    schedule(services, "K200", "Early", "Eve", BORN, START + dt.timedelta(minutes=61))
    schedule(services, "K201", "Late", "Lou", BORN, START - dt.timedelta(minutes=31))
    for name in ("Early", "Late"):
        kiosk.start()
        kiosk.identify(name, "03/09/1958")
        assert kiosk.step() == "front_desk"


def test_twins_choose_by_time_and_clinician_never_by_name(kiosk: Kiosk, services: Services) -> None:
    schedule(services, "T1", "Garcia", "Ana", BORN, START + dt.timedelta(minutes=10), provider="Dr. Okafor")
    second = schedule(services, "T2", "Garcia", "Luz", BORN, START + dt.timedelta(minutes=30), provider="Dr. Haddad")
    kiosk.start()
    kiosk.identify("garcia", "03/09/1958")
    screen = kiosk.services.checkin.screen(kiosk.creds, "choose")
    assert screen.step == "choose"
    assert [(c["provider"], c["initial"]) for c in screen.data["choices"]] == [("Dr. Okafor", ""), ("Dr. Haddad", "")]
    assert "Ana" not in repr(screen.data) and "Luz" not in repr(screen.data)
    with services.uow.begin() as session:
        appointment_id = session.get(Visit, second).appointment_id
    assert kiosk.services.checkin.choose(kiosk.creds, "999999") is not None    # not one of the choices
    kiosk.services.checkin.choose(kiosk.creds, str(appointment_id))
    assert kiosk.services.checkin.screen(kiosk.creds, "appointment").data["given_name"] == "Luz"


def test_lockout_is_silent_flagged_and_audited(kiosk: Kiosk, visit: int, services: Services) -> None:
    limit = services.checkin.settings.lookup_max_failures
    kiosk.start()
    for _ in range(limit):
        kiosk.identify("Wrong", "01/01/1970")
        services.checkin.try_again(kiosk.creds)
    kiosk.identify("O'Brien-Müller", "03/09/1958")                   # right, but locked: looks like a miss
    assert kiosk.step() == "front_desk"
    assert count(services, StaffFlag, StaffFlag.kind == "identification_lockout") == 1
    assert count(services, AuditEvent, AuditEvent.action == "kiosk.lockout") == 1
    assert count(services, AuditEvent, AuditEvent.action == "kiosk.identify") == limit + 1


def test_one_identity_is_limited_across_kiosks(services: Services, visit: int) -> None:
    limit = services.checkin.settings.lookup_max_per_identity
    for n in range(limit):
        other = enrolled_kiosk(services, f"k-{n}")
        other.start()
        other.identify("O'Brien-Müller", "03/09/1958")
        assert other.step() == "appointment"
    last = enrolled_kiosk(services, "k-last")
    last.start()
    last.identify("O'Brien-Müller", "03/09/1958")
    assert last.step() == "front_desk"


def test_attempts_are_forgotten_after_the_window(kiosk: Kiosk, visit: int, services: Services,
                                                 clock: FrozenClock) -> None:
    kiosk.start()
    kiosk.identify("Wrong", "01/01/1970")
    clock.advance(minutes=services.checkin.settings.lookup_window_minutes + 1)
    kiosk.start()
    kiosk.identify("Wrong", "01/01/1970")
    assert count(services, LookupAttempt) == 1


def full_check_in(kiosk: Kiosk, item9: str = "LA6568-5") -> None:
    kiosk.to_questions("O'Brien-Müller", "03/09/1958")

    def choose(link_id: str, options: list[str]) -> str:
        if link_id == "44250-9":
            return "LA6571-9"            # opens the PHQ-2 gate
        if link_id == "44260-8":
            return item9
        return options[0]

    kiosk.answer_all(choose)


def test_check_in_writes_visit_a04_responses_and_oru_together(kiosk: Kiosk, visit: int, services: Services) -> None:
    full_check_in(kiosk)
    assert kiosk.step() == "done"
    screen = services.checkin.screen(kiosk.creds, "done")
    assert screen.data["ticket"] == 1 and screen.data["wait"] == 5
    with services.uow.begin() as session:
        row = session.get(Visit, visit)
        assert row is not None and row.state == "arrived"
        messages = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        assert [m.message_type for m in messages] == ["ADT^A04", "ORU^R01"]
        assert messages[0].created_at == messages[1].created_at == row.updated_at
        oru = parse_message(messages[1].payload)
        strict = hl7apy_parse(messages[1].payload.decode(), validation_level=VALIDATION_LEVEL.STRICT,
                              find_groups=True)
        assert strict.validate()
        panels = [obr.raw(4).split("^")[::2] for obr in oru.all("OBR")]
        assert panels == [["intake", "L"], ["44249-1", "LN"], ["69737-5", "LN"], ["72109-2", "LN"],
                          ["steadi-stay-independent", "L"]]
        observations = {obx.value(3): obx for obx in oru.all("OBX")}
        assert observations["8661-1"].raw(3).endswith("^LN") and observations["8661-1"].value(5) == "Cough"
        assert observations["allergies-changed"].raw(5) == "LA33-6^Yes^LN"
        assert (observations["44261-6"].value(5), observations["75626-2"].value(2)) == ("3", "NM")
        assert (observations["steadi-total"].value(5), observations["steadi-1"].raw(5)) == ("14", "LA33-6^Yes^LN")
        responses = {r.questionnaire: r for r in session.scalars(select(QuestionnaireResponse))}
        assert set(responses) == {"intake", "phq-9", "gad-7", "audit-c", "steadi"}
        assert (responses["phq-9"].score, responses["phq-9"].severity) == (3, "none-minimal")
        assert responses["steadi"].score == 14
        assert responses["phq-9"].answers["questionnaire"] == "urn:frontdesk:questionnaire:phq-9|2026.1"
        assert responses["phq-9"].answers["encounter"]["reference"] == f"Encounter/{row.visit_number}"
        assert session.scalar(select(func.count()).select_from(ConsentSignature)) == 2
        ended = session.scalars(select(KioskSession).where(KioskSession.step == "done")).one()
        assert ended.patient_id is None and ended.draft == {"ticket": 1, "wait": 5}


def test_a_failure_at_the_end_leaves_the_visit_untouched(kiosk: Kiosk, visit: int, services: Services,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> str:
        raise RuntimeError("records system message could not be built")

    monkeypatch.setattr(services.checkin.messages, "questionnaire_results", broken)
    with pytest.raises(RuntimeError):
        full_check_in(kiosk)
    with services.uow.begin() as session:
        assert session.get(Visit, visit).state == "expected"
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        assert session.scalar(select(func.count()).select_from(QuestionnaireResponse)) == 0


def test_item9_raises_an_urgent_flag_at_once_and_shows_no_score(kiosk: Kiosk, visit: int, services: Services,
                                                               client: FlaskClient, staff: StaffActions) -> None:
    kiosk.to_questions("O'Brien-Müller", "03/09/1958")

    def choose(link_id: str, options: list[str]) -> str:
        return {"44250-9": "LA6571-9", "44260-8": "LA6569-3"}.get(link_id, options[0])

    for _ in range(10):
        if kiosk.step() == "notice":
            break
        screen = services.checkin.screen(kiosk.creds, "questions")
        form = {item.link_id: [choose(item.link_id, [o.coding.code for o in item.options])] if item.options
                else ["false" if item.type == "boolean" else "Cough"]
                for top in screen.data["page"] for item in top.walk() if item.asks}
        services.checkin.answer(kiosk.creds, form)
    assert kiosk.step() == "notice"                                  # before the check-in has even finished
    flags = services.flags.open(actor=SYSTEM)
    assert [(f.kind, f.priority, f.patient_name) for f in flags] == [
        ("phq9_item9", "urgent", "O'Brien-Müller, Siobhan")]
    screen = services.checkin.screen(kiosk.creds, "notice")
    assert screen.data == {}
    staff.create("fd", "front_desk")
    staff.sign_in("fd")
    body = client.get("/api/v1/flags").json
    assert body["flags"][0]["kind"] == "phq9_item9" and body["flags"][0]["priority"] == "urgent"
    services.checkin.continue_after_notice(kiosk.creds)
    kiosk.answer_all(choose)
    assert kiosk.step() == "done"
    assert count(services, StaffFlag) == 1


def test_checking_in_twice_changes_nothing(kiosk: Kiosk, visit: int, services: Services) -> None:
    full_check_in(kiosk)
    kiosk.start()
    kiosk.identify("O'Brien-Müller", "03/09/1958")
    assert kiosk.step() == "already"
    assert services.checkin.screen(kiosk.creds, "already").data == {"done_seconds": 15}   # resets like "done"
    with services.uow.begin() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 2


def test_letter_code_checks_in_once_and_expires(kiosk: Kiosk, visit: int, services: Services,
                                                clock: FrozenClock) -> None:
    code, expires = services.checkin.issue_code("TEST", "A-K100", actor=SYSTEM)
    assert len(code) == 14 and expires > START
    token, screen = services.checkin.start_with_code(kiosk.creds, code.lower().replace("-", " "))
    kiosk.session = token
    assert screen is None and kiosk.step() == "appointment"
    kiosk.services.checkin.confirm_appointment(kiosk.creds, True)
    kiosk.services.checkin.confirm_details(kiosk.creds, False)
    from server.services.consents import Signature

    while kiosk.step() == "consent":
        services.checkin.sign(kiosk.creds, Signature("typed", "S. O'Brien"))
    kiosk.answer_all()
    assert kiosk.step() == "done"
    kiosk.session, _ = services.checkin.start_with_code(kiosk.creds, code)
    assert kiosk.step() == "already"                                  # a re-scan is kind and changes nothing
    forged = code[:-1] + ("0" if code[-1] != "0" else "1")
    kiosk.session, _ = services.checkin.start_with_code(kiosk.creds, forged)
    assert kiosk.step() == "front_desk"
    token, screen = services.checkin.start_with_code(kiosk.creds, "not a code")
    assert screen is not None and screen.errors == {"code": "code"}


def test_change_request_waits_for_staff_and_approval_sends_a08(kiosk: Kiosk, visit: int, services: Services) -> None:
    kiosk.start()
    kiosk.identify("O'Brien-Müller", "03/09/1958")
    services.checkin.confirm_appointment(kiosk.creds, True)
    details = services.checkin.screen(kiosk.creds, "details").data
    assert details["phone_last4"] == "0199" and details["member_last4"] == "7766"
    assert "XJ99887766" not in repr(details) and "555-010-0199" not in repr(details)
    services.checkin.confirm_details(kiosk.creds, True)
    from server.services.checkin import ChangeRequest

    bad = services.checkin.request_change(kiosk.creds, ChangeRequest({"phone": "call me", "email": "x"}))
    assert bad is not None and bad.errors == {"phone": "phone", "email": "email"}
    assert services.checkin.request_change(kiosk.creds, ChangeRequest(
        {"phone": "555-010-0123", "member_id": "NEW-1234", "city": "<script>x</script>"})) is None
    assert kiosk.step() == "details"
    with services.uow.begin() as session:
        patient = session.scalars(select(Patient)).one()
        assert patient.phone == "555-010-0199"                          # nothing applied yet
    [change] = services.changes.pending(actor=SYSTEM)
    assert ("phone", "555-010-0199", "555-010-0123") in change.fields
    control_id = services.changes.decide(change.change_id, True, actor=SYSTEM)
    with services.uow.begin() as session:
        patient = session.scalars(select(Patient)).one()
        assert patient.phone == "555-010-0123" and patient.insurance[0].member_id == "NEW-1234"
        a08 = session.scalars(select(OutboxMessage).where(OutboxMessage.message_type == "ADT^A08")).one()
        assert a08.control_id == control_id
        text = a08.payload.decode()
        assert "NEW-1234" in text and "\\T\\" not in text and "<script>x</script>" in text.replace("\r", "")
    assert services.changes.pending(actor=SYSTEM) == []


def test_check_out_sends_a03_and_a_follow_up_request_is_a_flag(kiosk: Kiosk, visit: int,
                                                              services: Services) -> None:
    full_check_in(kiosk)
    schedule(services, "K100", "O'Brien-Müller", "Siobhan", BORN, START + dt.timedelta(days=30),
             appointment_id="A-NEXT")
    kiosk.start("checkout")
    kiosk.identify("O'Brien-Müller", "03/09/1958")
    assert kiosk.step() == "checkout"
    services.checkin.check_out(kiosk.creds)
    screen = services.checkin.screen(kiosk.creds, "checked_out")
    assert screen.data["next_time"].date() == (START + dt.timedelta(days=30)).date()
    services.checkin.request_follow_up(kiosk.creds)
    services.checkin.request_follow_up(kiosk.creds)
    assert count(services, StaffFlag, StaffFlag.kind == "follow_up_request") == 1
    with services.uow.begin() as session:
        assert session.get(Visit, visit).state == "checked_out"
        assert "ADT^A03" in session.scalars(select(OutboxMessage.message_type)).all()


def test_idle_session_is_destroyed_on_the_server_and_audited(kiosk: Kiosk, visit: int, services: Services,
                                                             clock: FrozenClock) -> None:
    kiosk.start()
    kiosk.identify("O'Brien-Müller", "03/09/1958")
    settings = services.checkin.settings
    clock.advance(seconds=settings.idle_seconds + settings.warning_seconds + 11)
    assert kiosk.step() == "welcome"
    with services.uow.begin() as session:
        row = session.scalars(select(KioskSession)).one()
        assert row.end_reason == "timeout" and row.patient_id is None and row.draft == {}
    assert count(services, AuditEvent, AuditEvent.action == "kiosk.timeout") == 1


def test_activity_is_written_sparingly_but_never_ends_a_session_before_its_countdown(
        kiosk: Kiosk, visit: int, services: Services, clock: FrozenClock) -> None:
    kiosk.start()

    def last_seen() -> dt.datetime:
        with services.uow.begin() as session:
            return session.scalars(select(KioskSession)).one().last_seen_at

    started = last_seen()
    clock.advance(seconds=4)
    assert kiosk.step() == "identify"
    assert last_seen() == started                                   # a page right after a post writes nothing
    clock.advance(seconds=2)
    assert kiosk.step() == "identify"
    assert last_seen() == started + dt.timedelta(seconds=6)
    settings = services.checkin.settings
    clock.advance(seconds=4)                                        # activity at +10 s, not written
    assert kiosk.step() == "identify"
    clock.advance(seconds=settings.idle_seconds + settings.warning_seconds)
    assert kiosk.step() == "identify"                               # the page's countdown has only just ended


def csrf_token(page: str) -> str:
    """The CSRF token of a kiosk page (its forms write the hidden field themselves)."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "page has no CSRF token"
    return match.group(1)


def test_a_form_post_leads_straight_to_the_next_step(services: Services, client: FlaskClient, visit: int) -> None:
    code = services.devices.add("kiosk", "lobby-2")
    page = client.get("/kiosk/").text
    client.post("/kiosk/enroll", data={"csrf_token": csrf_token(page), "code": code})
    page = client.get("/kiosk/").text
    started = client.post("/kiosk/start", data={"csrf_token": csrf_token(page), "mode": "checkin"})
    assert started.headers["Location"] == "/kiosk/identify"
    page = client.get("/kiosk/identify").text
    missed = client.post("/kiosk/identify", data={"csrf_token": csrf_token(page), "last_name": "Nobody",
                                                  "birth_date": "03/09/1958"})
    assert (missed.status_code, missed.headers["Location"]) == (303, "/kiosk/front-desk")
    page = client.get("/kiosk/front-desk").text
    again = client.post("/kiosk/front-desk", data={"csrf_token": csrf_token(page)})
    assert again.headers["Location"] == "/kiosk/identify"
    page = client.get("/kiosk/identify").text
    found = client.post("/kiosk/identify", data={"csrf_token": csrf_token(page), "last_name": "O'Brien-Müller",
                                                 "birth_date": "03/09/1958"})
    assert (found.status_code, found.headers["Location"]) == (303, "/kiosk/appointment")
    page = client.get("/kiosk/appointment").text
    finished = client.post("/kiosk/reset", data={"csrf_token": csrf_token(page), "reason": "cancelled"})
    assert finished.headers["Location"] == "/kiosk/"


def test_staff_force_reset_ends_the_session(kiosk: Kiosk, visit: int, services: Services) -> None:
    kiosk.start()
    kiosk.identify("O'Brien-Müller", "03/09/1958")
    [status] = services.kiosks.status()
    assert status.in_use
    assert services.kiosks.force_reset(status.kiosk_id, actor=SYSTEM) == 1
    assert not services.kiosks.alive(kiosk.creds)
    assert kiosk.step() == "welcome"


def test_enrolment_code_works_once_and_revocation_ends_the_kiosk(services: Services) -> None:
    code = services.devices.add("kiosk", "hall")
    secret = services.kiosks.enroll(code, "10.0.0.9")
    assert secret is not None and services.kiosks.enroll(code, "10.0.0.9") is None
    kiosk = Kiosk(services, secret)
    assert kiosk.step() == "welcome"
    services.devices.revoke("kiosk", "hall")
    from server.services.kiosks import NotEnrolled

    with pytest.raises(NotEnrolled):
        kiosk.step()


def test_text_typed_at_the_kiosk_is_inert_on_staff_pages_and_in_the_api(kiosk: Kiosk, visit: int, services: Services,
                                                                       client: FlaskClient,
                                                                       staff: StaffActions) -> None:
    from server.services.checkin import ChangeRequest

    kiosk.start()
    kiosk.identify("O'Brien-Müller", "03/09/1958")
    services.checkin.confirm_appointment(kiosk.creds, True)
    services.checkin.confirm_details(kiosk.creds, True)
    services.checkin.request_change(kiosk.creds, ChangeRequest({"city": '<img src=x onerror="alert(1)">'}))
    staff.create("fd", "front_desk")
    staff.sign_in("fd")
    page = client.get("/staff/kiosk/").text
    assert '<img src=x' not in page and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page
    api = client.get("/api/v1/pending-changes")
    assert api.headers["Content-Type"] == "application/json"
    assert api.json["changes"][0]["fields"][0]["requested"] == '<img src=x onerror="alert(1)">'


def test_a_follow_up_question_is_not_shown_after_the_answer_that_skips_it(kiosk: Kiosk, visit: int) -> None:
    """"Which new allergies?" shares a screen with the next question; after "No" only that question is asked."""
    kiosk.to_questions("O'Brien-Müller", "03/09/1958")
    asked: list[list[str]] = []

    def choose(link_id: str, options: list[str]) -> str:
        return "LA32-8" if link_id.endswith("-changed") else options[0]

    for _ in range(40):
        if kiosk.step() == "notice":
            kiosk.services.checkin.continue_after_notice(kiosk.creds)
            continue
        if kiosk.step() != "questions":
            break
        screen = kiosk.services.checkin.screen(kiosk.creds, "questions")
        items = [item for top in screen.data["page"] for item in top.walk() if item.asks]
        asked.append([item.link_id for item in items])
        form = {item.link_id: [choose(item.link_id, [o.coding.code for o in item.options])] if item.type == "choice"
                else ["false"] if item.type == "boolean" else ["Cough"] for item in items}
        assert kiosk.services.checkin.answer(kiosk.creds, form) is None
    questions = [link for page in asked for link in page]
    assert "allergies-changed" in questions and "medications-changed" in questions
    assert "allergies" not in questions and "medications" not in questions
    assert kiosk.step() == "done"
