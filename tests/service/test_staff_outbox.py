"""The staff outbox page: dead letters shown, retried or discarded by the front desk, refused to others."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from server.models import AuditEvent
from server.models import OutboxMessage
from server.services import Services
from server.services.context import FrozenClock
from server.services.outbox import OutboxRepository
from tests.conftest import StaffActions
from tests.conftest import csrf_token


@pytest.fixture
def dead_letter(services: Services, clock: FrozenClock) -> int:
    with services.uow.begin() as session:
        message_id = services.outbox.enqueue(session, b"MSH|^~\\&|X\r", control_id="FDDEAD0000000000001",
                                             message_type="ADT^A04", ordering_key="patient:1")
    repository = OutboxRepository(uow=services.uow, audit=services.audit)
    [item] = repository.claim_next(clock.now(), 60, 10)
    repository.mark_dead(item.id, "AE: PID-3 unknown to the receiver")
    return message_id


def status(services: Services, message_id: int) -> str:
    with services.uow.begin() as session:
        return str(session.scalar(select(OutboxMessage.status).where(OutboxMessage.id == message_id)))


def test_front_desk_sees_and_retries_a_dead_letter(staff: StaffActions, client: FlaskClient, services: Services,
                                                   dead_letter: int) -> None:
    staff.create("alice", "front_desk")
    staff.sign_in("alice")
    page = client.get("/staff/outbox")
    assert page.status_code == 200
    assert "FDDEAD0000000000001" in page.text and "PID-3 unknown to the receiver" in page.text
    assert "Stopped with an error: 1" in page.text
    with services.uow.begin() as session:
        viewed = session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "outbox.viewed")).all()
        assert viewed == ["shown=1"]
    response = client.post(f"/staff/outbox/{dead_letter}", data={"csrf_token": csrf_token(page.text),
                                                                  "action": "retry"})
    assert response.status_code == 302
    assert status(services, dead_letter) == "pending"
    assert "sent again" in client.get("/staff/outbox").text
    with services.uow.begin() as session:
        assert session.scalar(select(AuditEvent.actor_type).where(AuditEvent.action == "outbox.retry")) == "staff"


def test_discard_and_a_second_discard_is_explained(staff: StaffActions, client: FlaskClient, services: Services,
                                                   dead_letter: int) -> None:
    staff.create("alice", "front_desk")
    staff.sign_in("alice")
    token = csrf_token(client.get("/staff/outbox").text)
    client.post(f"/staff/outbox/{dead_letter}", data={"csrf_token": token, "action": "discard"})
    assert status(services, dead_letter) == "discarded"
    client.post(f"/staff/outbox/{dead_letter}", data={"csrf_token": token, "action": "discard"})
    assert "was already delivered or discarded; nothing was changed." in client.get("/staff/outbox").text


def test_assistants_may_not_and_forms_need_csrf(staff: StaffActions, client: FlaskClient, services: Services,
                                               dead_letter: int) -> None:
    staff.create("ama", "assistant")
    staff.sign_in("ama")
    assert client.get("/staff/outbox").status_code == 403
    assert client.post(f"/staff/outbox/{dead_letter}", data={"action": "retry"}).status_code == 400
    staff.create("alice", "front_desk")
    client.post("/staff/logout", data={"csrf_token": csrf_token(client.get("/staff/").text)})
    staff.sign_in("alice")
    assert client.post(f"/staff/outbox/{dead_letter}", data={"action": "retry"}).status_code == 400
    assert status(services, dead_letter) == "dead"


def test_a_message_that_does_not_exist_is_404(staff: StaffActions, client: FlaskClient) -> None:
    staff.create("alice", "front_desk")
    staff.sign_in("alice")
    token = csrf_token(client.get("/staff/outbox").text)
    assert client.post("/staff/outbox/4242", data={"csrf_token": token, "action": "retry"}).status_code == 404
