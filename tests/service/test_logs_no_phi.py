"""Logs leave the PHI boundary: a full request cycle about a patient logs none of their identifiers."""

from __future__ import annotations

import io
import logging

import pytest
from flask.testing import FlaskClient

from server.logs import configure
from tests.conftest import SENTINEL_PATIENT
from tests.conftest import StaffActions
from tests.conftest import csrf_token


@pytest.fixture
def captured_logs() -> io.StringIO:
    stream = io.StringIO()
    configure(logging.DEBUG, stream)
    yield stream
    logging.getLogger().handlers.clear()


def test_request_cycle_logs_no_patient_identifiers(staff: StaffActions, client: FlaskClient,
                                                   demo_visit: int, captured_logs: io.StringIO) -> None:
    staff.create("alice", "front_desk")
    staff.sign_in("alice")
    page = client.get("/staff/")
    assert "Tester, Sentinel" in page.text
    client.get("/api/v1/visits?date=2026-11-26")
    client.post(f"/staff/visits/{demo_visit}/state", data={"csrf_token": csrf_token(page.text), "target": "arrived"})
    client.get("/api/v1/visits?date=not-a-date")
    client.get("/no/such/page?name=Tester")
    staff.sign_out()
    logs = captured_logs.getvalue()
    assert logs.count('"event": "http.request"') >= 6
    born = SENTINEL_PATIENT["birth_date"]
    for needle in ("Tester", "Sentinel", SENTINEL_PATIENT["mrn"], born.isoformat(), born.strftime("%m/%d/%Y"),
                   born.strftime("%Y%m%d")):
        assert needle not in logs


def test_a_careless_extra_field_is_not_written(captured_logs: io.StringIO) -> None:
    logging.getLogger("frontdesk.test").info("test.event", extra={"patient_name": "Tester", "count": 3})
    line = captured_logs.getvalue()
    assert '"count": 3' in line and "Tester" not in line
