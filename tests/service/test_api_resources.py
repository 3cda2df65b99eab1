"""The staff side of ``/api/v1/``: scoped tokens acting as their user, minimum-necessary patient data,
observations of a visit, inbound messages, and an audit row for every read of patient data."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from server.models import AuditEvent
from server.models import Observation
from server.models import Visit
from server.services import Services
from server.services.context import FrozenClock
from server.services.staff import AccountError
from tests.conftest import SENTINEL_PATIENT
from tests.conftest import StaffActions
from tests.hl7_samples import siu


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audited(services: Services, action: str) -> list[tuple[str, str, int | None]]:
    with services.uow.begin() as session:
        return [(e.actor_type, e.actor_id, e.patient_id)
                for e in session.scalars(select(AuditEvent).where(AuditEvent.action == action))]


@pytest.fixture
def user(services: Services) -> int:
    return services.staff.add_user("reporter", "front_desk", "correct horse battery")


def test_a_token_reads_what_its_scopes_allow_and_each_read_is_audited_as_its_user(
        client: FlaskClient, services: Services, user: int, demo_visit: int) -> None:
    token = services.api_tokens.issue("reporter", "nightly", ("visits", "patients"))
    [visit] = client.get("/api/v1/visits?date=2026-11-26", headers=bearer(token)).json["visits"]
    assert visit["id"] == demo_visit and visit["patient_name"] == "Tester, Sentinel"
    patient = client.get(f"/api/v1/patients/{visit['patient_id']}", headers=bearer(token)).json
    assert patient == {"id": visit["patient_id"], "mrn": SENTINEL_PATIENT["mrn"], "family_name": "Tester",
                       "given_name": "Sentinel", "birth_date": "1961-07-23", "sex": "U"}
    assert audited(services, "visit.listed") == [("staff", str(user), visit["patient_id"])]
    assert audited(services, "patient.read") == [("staff", str(user), visit["patient_id"])]
    assert client.get("/api/v1/outbox", headers=bearer(token)).status_code == 403
    assert client.get(f"/api/v1/visits/{demo_visit}/observations", headers=bearer(token)).status_code == 403


def test_the_role_still_bounds_a_token(client: FlaskClient, services: Services, user: int) -> None:
    token = services.api_tokens.issue("reporter", "all", ("inbound",))
    assert client.get("/api/v1/inbound", headers=bearer(token)).status_code == 403


def test_a_token_is_not_a_browser_session(client: FlaskClient, services: Services, user: int) -> None:
    token = services.api_tokens.issue("reporter", "nightly", ("visits",))
    assert client.get("/staff/", headers=bearer(token)).status_code == 302
    assert client.get("/api/v1/security/alerts", headers=bearer(token)).status_code in (401, 403)


def test_revoked_tokens_and_disabled_users_are_refused(client: FlaskClient, services: Services, user: int) -> None:
    first = services.api_tokens.issue("reporter", "one", ("visits",))
    second = services.api_tokens.issue("reporter", "two", ("visits",))
    [newest, oldest] = services.api_tokens.list()
    assert (newest.name, oldest.name) == ("two", "one")
    assert services.api_tokens.revoke(oldest.id) and not services.api_tokens.revoke(oldest.id)
    assert client.get("/api/v1/visits", headers=bearer(first)).status_code == 401
    assert client.get("/api/v1/visits", headers=bearer(second)).status_code == 200
    services.staff.disable("reporter")
    assert client.get("/api/v1/visits", headers=bearer(second)).status_code == 401


@pytest.mark.parametrize(("username", "name", "scopes", "field"), [
    ("nobody", "x1", ("visits",), "username"),
    ("reporter", "Bad Name!", ("visits",), "name"),
    ("reporter", "x1", ("everything",), "scope"),
    ("reporter", "x1", (), "scope"),
])
def test_bad_token_requests_say_which_field(services: Services, user: int, username: str, name: str,
                                            scopes: tuple[str, ...], field: str) -> None:
    with pytest.raises(AccountError, match=f"^{field}:"):
        services.api_tokens.issue(username, name, scopes)


def test_unknown_and_out_of_range_ids_are_404(client: FlaskClient, services: Services, user: int,
                                             staff: StaffActions) -> None:
    token = services.api_tokens.issue("reporter", "all", ("patients", "observations"))
    for path in ("/api/v1/patients/999", "/api/v1/patients/99999999999999999999",
                 "/api/v1/visits/999/observations", "/api/v1/visits/-1/observations"):
        response = client.get(path, headers=bearer(token))
        assert response.status_code == 404 and response.json == {"error": "Not Found"}, path


def test_observations_of_a_visit(client: FlaskClient, services: Services, staff: StaffActions,
                                 demo_visit: int, clock: FrozenClock) -> None:
    with services.uow.begin() as session:
        visit = session.get(Visit, demo_visit)
        assert visit is not None
        session.add(Observation(visit_id=demo_visit, patient_id=visit.patient_id, metric="weight", code="188736",
                                value="70.5", unit="kg", method="manual", status="final", flags=[],
                                measured_at=clock.now(), recorded_at=clock.now()))
    staff.create("ama", "assistant")
    staff.sign_in("ama")
    [row] = client.get(f"/api/v1/visits/{demo_visit}/observations").json["observations"]
    assert (row["metric"], row["value"], row["unit"], row["method"], row["status"]) == \
        ("weight", "70.5", "kg", "manual", "final")
    assert len(audited(services, "observation.listed")) == 1


def test_inbound_messages_by_control_id_and_day(client: FlaskClient, services: Services,
                                                staff: StaffActions) -> None:
    services.inbound.receive(siu("S12", "CTRL-1"), "test")
    services.inbound.receive(siu("S12", "CTRL-2", mrn="MRN002", appt="101"), "test")
    staff.create("root", "admin")
    staff.sign_in("root")
    staff.pass_second_factor()
    found = client.get("/api/v1/inbound?control_id=CTRL-2").json["messages"]
    assert [(m["control_id"], m["message_type"], m["outcome"]) for m in found] == [("CTRL-2", "SIU^S12", "AA")]
    assert len(client.get("/api/v1/inbound?date=2026-11-26").json["messages"]) == 2
    assert client.get("/api/v1/inbound?date=2026-11-27").json["messages"] == []
    assert len(audited(services, "inbound.listed")) == 3
    response = client.get("/api/v1/inbound?date=tomorrow")
    assert response.status_code == 400 and response.json["error"].startswith("date:")


def test_health_reports_a_stalled_outbox_without_failing_the_probe(client: FlaskClient, services: Services,
                                                                    clock: FrozenClock) -> None:
    """A records system that is down leaves this service healthy (200); the outbox part says it is stalled."""
    assert client.get("/healthz").get_json()["outbox"] == {"waiting": 0, "held": 0, "oldest_waiting_seconds": None,
                                                           "stalled": False}
    with services.uow.begin() as session:
        services.outbox.enqueue(session, b"MSH|^~\\&|FRONTDESK\r", control_id="H1", message_type="ADT^A04",
                                ordering_key="patient:1")
    clock.advance(minutes=16)
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.get_json()["status"] == "ok"
    assert answer.get_json()["outbox"] == {"waiting": 1, "held": 0, "oldest_waiting_seconds": 960.0,
                                           "stalled": True}
