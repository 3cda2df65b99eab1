"""Property: whatever the listener stores can always be sent back out.

Arbitrary text (any code point, control characters written as ``\\Xhh\\`` the
way senders escape them) goes into a patient's name and city through the
inbound service; the message is either refused with AE naming the field, or
stored, and then checking that patient in writes an ADT^A04 (never a dead
letter, never an exception) whose PID carries exactly what was stored.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from sqlalchemy import select

from hl7.er7 import parse_message
from hl7.escape import escape_text
from server.models import OutboxMessage
from server.models import Patient
from server.models import Visit
from server.services import Services
from server.services.context import Actor

CLERK = Actor("staff", "9", role="front_desk")
SEQUENCE = itertools.count()


def as_sent(text: str) -> str:
    """``text`` the way a sender writes it into a field: delimiters escaped, control characters as hex."""
    out = []
    for char in text:
        if ord(char) < 0x20 and char not in "\r\n":
            out.append(f"\\X{ord(char):02X}\\")
        else:
            out.append(escape_text(char))
    return "".join(out)


def siu(n: int, family: str, city: str) -> bytes:
    segments = [
        f"MSH|^~\\&|SCHED|MAIN|FD|CLINIC|20261126080000||SIU^S12^SIU_S12|P{n}|P|2.5.1||||||UNICODE UTF-8",
        f"SCH|P{n}|F{n}|||||||20|min|^^20^20261126143000+0000",
        f"PID|1||M{n}^^^MAIN^MR||{as_sent(family)}^Pat||19750412|F|||1 Elm St^^{as_sent(city)}^IL",
    ]
    return ("\r".join(segments) + "\r").encode("utf-8")


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(family=st.text(max_size=40), city=st.text(max_size=40))
def test_stored_text_can_always_be_sent(services: Services, family: str, city: str) -> None:
    n = next(SEQUENCE)
    result = services.inbound.receive(siu(n, family, city), "fuzz")
    with services.uow.begin() as session:
        stored = session.scalars(select(Patient).where(Patient.mrn == f"M{n}")).one_or_none()
    if result.outcome == "AE":
        assert stored is None
        assert result.error.startswith(("PID-5 ", "PID-11 ")), result.error
        return
    assert result.outcome == "AA", result.error
    assert stored is not None
    with services.uow.begin() as session:
        visit_id = session.scalars(select(Visit.id).where(Visit.patient_id == stored.id)).one()
    services.visits.transition(visit_id, "arrived", actor=CLERK)
    with services.uow.begin() as session:
        row = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(1)).one()
    assert (row.status, row.last_error) == ("pending", "")
    pid = parse_message(row.payload).segment("PID")
    assert pid is not None
    assert (pid.value(5, 1), pid.value(11, 3)) == (stored.family_name, stored.city)
