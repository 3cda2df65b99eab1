"""The front-desk board through its forms: statuses in words, only legal changes per role, flags, changes,
dead letters, other days, confirmations and errors, and the live announcements it listens to."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from server.models import AuditEvent
from server.models import OutboxMessage
from server.models import Visit
from server.services import Services
from server.services.context import SYSTEM
from server.services.messages import patient_key
from server.services.stations import ensure_station
from tests.conftest import START
from tests.conftest import StaffActions
from tests.conftest import csrf_token
from tests.kiosk_helpers import enrolled_kiosk
from tests.kiosk_helpers import schedule

INTERNAL_NAMES = re.compile(r">[^<]*\b(checked_out|vitals_taken|no_show|roomed|expected)\b[^<]*<")


def _patient(services: Services, visit_id: int) -> int:
    with services.uow.begin() as session:
        visit = session.get(Visit, visit_id)
        assert visit is not None
        return visit.patient_id


def _state(services: Services, visit_id: int) -> str:
    with services.uow.begin() as session:
        visit = session.get(Visit, visit_id)
        assert visit is not None
        return visit.state


def _row(html: str, visit_id: int) -> str:
    match = re.search(rf'<tr id="visit-{visit_id}".*?</tr>', html, re.S)
    assert match, "no row for the visit"
    return match.group(0)


def _buttons(row: str) -> list[str]:
    return re.findall(r"<button[^>]*>([^<]+)</button>", row)


def _post(client: FlaskClient, url: str, **data: str) -> tuple[int, str]:
    page = client.get("/staff/")
    response = client.post(url, data={"csrf_token": csrf_token(page.text), **data})
    status = response.status_code
    if status == 302:
        return status, client.get(response.headers["Location"]).text
    return status, response.text


@pytest.fixture
def front_desk(staff: StaffActions) -> StaffActions:
    staff.create("fatima", "front_desk")
    staff.sign_in("fatima")
    return staff


def test_expected_visit_offers_exactly_its_legal_front_desk_changes(front_desk: StaffActions, client: FlaskClient,
                                                                    demo_visit: int) -> None:
    page = client.get("/staff/").text
    row = _row(page, demo_visit)
    assert "Expected" in row and "Tester, Sentinel" in row
    assert _buttons(row) == ["Mark arrived", "Did not come", "Cancel visit"]
    assert not INTERNAL_NAMES.search(page)


def test_mark_arrived_confirms_and_reports_then_offers_the_next_steps(front_desk: StaffActions, client: FlaskClient,
                                                                      services: Services, demo_visit: int) -> None:
    status, page = _post(client, f"/staff/visits/{demo_visit}/state", target="arrived")
    assert status == 302
    assert "Done: the visit is marked as arrived." in page
    row = _row(page, demo_visit)
    assert "Arrived" in row and "0 min" in row
    assert _buttons(row) == ["Room", "Cancel check-in", "Check out", "Cancel visit"]
    with services.uow.begin() as session:
        assert [m.message_type for m in session.scalars(select(OutboxMessage))] == ["ADT^A04"]


def test_a_change_made_meanwhile_is_refused_beside_the_row_in_words(front_desk: StaffActions, client: FlaskClient,
                                                                    services: Services, demo_visit: int) -> None:
    services.visits.transition(demo_visit, "arrived", actor=SYSTEM)
    services.visits.transition(demo_visit, "checked_out", actor=SYSTEM)
    status, page = _post(client, f"/staff/visits/{demo_visit}/state", target="arrived")
    assert status == 302
    row = _row(page, demo_visit)
    assert "This visit is checked out, so it can no longer be changed here." in row
    assert 'id="error-' in row and _buttons(row) == []
    assert "Nothing was changed" in page and not INTERNAL_NAMES.search(row)


def test_rooming_needs_a_room_and_records_it(front_desk: StaffActions, client: FlaskClient, services: Services,
                                             demo_visit: int) -> None:
    with services.uow.begin() as session:
        ensure_station(session, "room1")
    services.visits.transition(demo_visit, "arrived", actor=SYSTEM)
    _, page = _post(client, f"/staff/visits/{demo_visit}/state", target="roomed")
    assert "Choose a room first" in _row(page, demo_visit) and _state(services, demo_visit) == "arrived"
    _, page = _post(client, f"/staff/visits/{demo_visit}/state", target="roomed", room="nowhere")
    assert "That room is not in the list" in _row(page, demo_visit)
    _, page = _post(client, f"/staff/visits/{demo_visit}/state", target="roomed", room="room1")
    assert "In a room (room1)" in _row(page, demo_visit)
    with services.uow.begin() as session:
        visit = session.get(Visit, demo_visit)
        assert visit is not None and (visit.state, visit.station_id) == ("roomed", "room1")


def test_assistant_may_only_room_and_a_refusal_keeps_the_navigation(staff: StaffActions, client: FlaskClient,
                                                                    services: Services, demo_visit: int) -> None:
    staff.create("ama", "assistant")
    staff.sign_in("ama")
    assert _buttons(_row(client.get("/staff/").text, demo_visit)) == []
    services.visits.transition(demo_visit, "arrived", actor=SYSTEM)
    assert _buttons(_row(client.get("/staff/").text, demo_visit)) == ["Room"]
    status, page = _post(client, f"/staff/visits/{demo_visit}/state", target="checked_out")
    assert status == 403
    assert "Sign out" in page and 'aria-label="Staff"' in page and "Your role does not allow this change." in page


def test_flags_changes_and_dead_letters_show_on_the_patients_row(front_desk: StaffActions, client: FlaskClient,
                                                                 services: Services, demo_visit: int) -> None:
    patient_id = _patient(services, demo_visit)
    with services.uow.begin() as session:
        flag_id = services.flags.raise_in(session, "phq9_item9", actor=SYSTEM, patient_id=patient_id,
                                          visit_id=demo_visit)
        services.flags.raise_in(session, "identification_lockout", actor=SYSTEM, kiosk_id=None)
        services.changes.request_in(session, patient_id, demo_visit, {"phone": "555-0199"}, actor=SYSTEM)
        services.outbox.enqueue(session, b"MSH|^~\\&|", control_id="DEAD1", message_type="ADT^A04",
                                ordering_key=patient_key(patient_id), dead_reason="refused")
    page = client.get("/staff/").text
    row = _row(page, demo_visit)
    assert "Urgent:" in row and "PHQ-9 question 9" in row
    assert "Phone" in row and "555-0199" in row and "Approve" in row
    assert "1 message to the records system stopped" in row
    assert "Kiosk alerts" in page and "Kiosk identification locked" in page

    _, page = _post(client, f"/staff/flags/{flag_id}", day=START.date().isoformat())
    assert "Flag acknowledged." in page and "PHQ-9" not in _row(page, demo_visit)
    fatima = str(services.staff.list_users()[0].user_id)
    with services.uow.begin() as session:
        assert session.scalar(select(AuditEvent.actor_id).where(AuditEvent.action == "flag.acknowledged")) == fatima
    status, _ = _post(client, f"/staff/flags/{flag_id}")
    assert status == 302  # a second press is told it was done already, not an error


def test_approving_a_change_sends_adt_a08(front_desk: StaffActions, client: FlaskClient, services: Services,
                                          demo_visit: int) -> None:
    patient_id = _patient(services, demo_visit)
    with services.uow.begin() as session:
        change_id = services.changes.request_in(session, patient_id, demo_visit, {"phone": "555-0199"},
                                                actor=SYSTEM)
    _, page = _post(client, f"/staff/changes/{change_id}", action="approve")
    assert "Change approved and sent to the records system." in page
    with services.uow.begin() as session:
        assert [m.message_type for m in session.scalars(select(OutboxMessage))] == ["ADT^A08"]


@pytest.mark.parametrize("url", ["/staff/flags/99", "/staff/flags/99999999999999999999", "/staff/changes/99",
                                 "/staff/visits/99/state", "/staff/visits/99999999999999999999/state"])
def test_ids_that_do_not_exist_are_404(front_desk: StaffActions, client: FlaskClient, url: str) -> None:
    status, page = _post(client, url, target="arrived", action="approve")
    assert status == 404 and "Page not found" in page and "Sign out" in page


def test_another_day_and_a_bad_day(front_desk: StaffActions, client: FlaskClient, demo_visit: int) -> None:
    tomorrow = (START.date() + dt.timedelta(days=1)).isoformat()
    page = client.get(f"/staff/?day={tomorrow}")
    assert page.status_code == 200 and "No visits are booked on this day." in page.text
    assert "Tester" in client.get(f"/staff/?day={START.date().isoformat()}").text
    bad = client.get("/staff/?day=31/02/2026")
    assert bad.status_code == 400 and "Enter a date such as" in bad.text and 'aria-invalid="true"' in bad.text


def test_root_goes_to_the_board(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"] == "/staff/"


def test_live_row_fetch(front_desk: StaffActions, client: FlaskClient, demo_visit: int) -> None:
    day = START.date().isoformat()
    row = client.get(f"/staff/board/rows?day={day}&visit={demo_visit}")
    assert row.status_code == 200 and row.text.lstrip().startswith("<tr") and "Tester" in row.text
    other = (START.date() + dt.timedelta(days=3)).isoformat()
    assert client.get(f"/staff/board/rows?day={other}&visit={demo_visit}").status_code == 204
    assert client.get("/staff/board/rows?day=nope").status_code == 404
    assert client.get(f"/staff/board/rows?day={day}&visit=1e9").status_code == 404
    assert client.get(f"/staff/board/rows?day={day}&visit=\u00b2").status_code == 404
    assert client.get(f"/staff/board/rows?day={day}&visit={'9' * 30}").status_code == 404


def test_changes_are_announced_after_commit_only(services: Services, demo_visit: int) -> None:
    with services.live.subscribe(["board"]) as subscription:
        with pytest.raises(RuntimeError), services.uow.begin() as session:
            visit = session.get(Visit, demo_visit)
            assert visit is not None
            services.visits.transition_in(session, visit, "arrived", actor=SYSTEM)
            raise RuntimeError("rolled back")
        assert subscription.get(timeout=0.05) is None
        services.visits.transition(demo_visit, "arrived", actor=SYSTEM)
        event = subscription.get(timeout=2)
    assert event is not None and (event.channel, event.kind, event.data) == ("board", "visit",
                                                                              {"visit_id": demo_visit})


def test_every_row_shown_is_an_audited_read(front_desk: StaffActions, client: FlaskClient, services: Services,
                                            demo_visit: int) -> None:
    client.get("/staff/")
    report = services.audit_reports.accesses("SENT-4711", START.date(), START.date(), actor=SYSTEM)
    assert [r.action for r in report.rows].count("visit.listed") >= 1
    assert {r.actor_name for r in report.rows if r.action == "visit.listed"} == {"fatima"}


def test_a_kiosk_check_in_reaches_the_board(services: Services, client: FlaskClient, front_desk: StaffActions) -> None:
    born = dt.date(1958, 3, 9)
    visit_id = schedule(services, "K100", "Kiosk", "Kim", born, START + dt.timedelta(minutes=20))
    kiosk = enrolled_kiosk(services)
    with services.live.subscribe(["board"]) as subscription:
        kiosk.to_questions("Kiosk", "03/09/1958")
        kiosk.answer_all(lambda link_id, options: "LA6571-9" if link_id == "44250-9" else
                         "LA6570-1" if link_id == "44260-8" else options[0])
        events = []
        while (event := subscription.get(timeout=0.2)) is not None:
            events.append((event.kind, event.data.get("visit_id")))
    assert ("visit", visit_id) in events and ("flag", visit_id) in events
    row = _row(client.get(f"/staff/board/rows?day={START.date().isoformat()}&visit={visit_id}").text, visit_id)
    assert "Arrived" in row and "Urgent:" in row
