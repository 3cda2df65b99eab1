"""Inbound over real MLLP: the listener inside the service answers, applies and keeps what it cannot apply."""

from __future__ import annotations

import dataclasses
import typing as t

import pytest
from sqlalchemy import select

from hl7.ack import parse_ack
from hl7.client import MLLPClient
from server.config import Config
from server.interfaces import ListenerPart
from server.models import InboundMessage
from server.models import Patient
from server.services import Services
from tests.hl7_samples import siu


@pytest.fixture
def listener(services: Services, config: Config, request: pytest.FixtureRequest) -> t.Iterator[ListenerPart]:
    allowed = getattr(request, "param", ())
    part = ListenerPart(services, dataclasses.replace(config.hl7, listen_port=0, allowed_senders=allowed))
    part.start()
    yield part
    part.stop()


def send(part: ListenerPart, raw: bytes, control_id: str) -> bytes:
    host, port = part.listener.address
    client = MLLPClient(host, port, connect_timeout=5, ack_timeout=10)
    try:
        return client.send(raw, control_id)
    finally:
        client.close()


def kept(services: Services) -> list[tuple[str, str, bytes]]:
    with services.uow.begin() as session:
        return [(m.control_id, m.outcome, m.raw) for m in session.scalars(select(InboundMessage))]


def test_schedule_message_is_applied_and_acknowledged(listener: ListenerPart, services: Services) -> None:
    ack = parse_ack(send(listener, siu("S12", "M1"), "M1"))
    assert (ack.code, ack.control_id) == ("AA", "M1")
    with services.uow.begin() as session:
        assert session.scalar(select(Patient.family_name)) == "Nguyen"


def test_bytes_invalid_in_the_charset_get_ae_and_are_kept(listener: ListenerPart, services: Services) -> None:
    raw = siu("S12", "M2").replace(b"Nguyen", b"Ngu\xc3en")
    ack = parse_ack(send(listener, raw, "M2"))
    assert ack.code == "AE" and any("not valid in UNICODE UTF-8" in e for e in ack.errors)
    assert kept(services) == [("M2", "AE", raw)]
    with services.uow.begin() as session:
        assert session.scalar(select(Patient.id)) is None


@pytest.mark.parametrize("listener", [("OTHER^SITE",)], indirect=True)
def test_sender_not_allowed_gets_ar_and_nothing_changes(listener: ListenerPart, services: Services) -> None:
    ack = parse_ack(send(listener, siu("S12", "M3"), "M3"))
    assert ack.code == "AR" and any("not allowed" in e for e in ack.errors)
    assert kept(services) == []
