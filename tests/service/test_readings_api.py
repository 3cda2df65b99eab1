"""POST /api/v1/readings: gateway tokens, idempotent replays, newest value wins, bad readings listed back."""

from __future__ import annotations

import datetime as dt
import typing as t
from decimal import Decimal

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from devices.reading import Reading
from server.models import Observation
from server.services import Services
from server.services.vitals import IncomingReading

NOW = "2026-11-26T14:00:00+00:00"


def reading(reading_id: str, value: str | None = "97", *, metric: str = "spo2", host_time: str = NOW,
            **extra: t.Any) -> dict[str, t.Any]:
    codes = {"spo2": (150456, "%"), "pulse_oximeter": (149530, "/min")}
    code, unit = codes[metric]
    return {"reading_id": reading_id, "device_id": "ox-1", "station": "room1", "metric": metric, "mdc_code": code,
            "value": value, "unit": unit, "flags": [], "device_time": None, "host_time": host_time, **extra}


@pytest.fixture
def token(services: Services) -> str:
    return services.devices.add("gateway", "station-pc-1")


def post(client: FlaskClient, token: str, readings: list[dict[str, t.Any]]) -> t.Any:
    return client.post("/api/v1/readings", json={"gateway": "station-pc-1", "readings": readings},
                       headers={"Authorization": f"Bearer {token}"})


def live(services: Services) -> list[tuple[str, str | None, list[str]]]:
    return [(o.metric, o.value, o.flags) for o in services.vitals.live("room1")]


def test_readings_are_stored_as_live_values(client: FlaskClient, token: str, services: Services) -> None:
    response = post(client, token, [reading("r1"), reading("r2", "72", metric="pulse_oximeter")])
    assert response.status_code == 200 and response.json == {"accepted": 2, "rejected": []}
    assert live(services) == [("pulse_oximeter", "72", []), ("spo2", "97", [])]


def test_replay_is_idempotent_and_older_values_never_win(client: FlaskClient, token: str,
                                                         services: Services) -> None:
    post(client, token, [reading("r1", "97", host_time="2026-11-26T14:00:05+00:00")])
    assert post(client, token, [reading("r1", "97", host_time="2026-11-26T14:00:05+00:00")]).json["accepted"] == 1
    post(client, token, [reading("r0", "90", host_time="2026-11-26T14:00:01+00:00")])
    assert live(services) == [("spo2", "97", [])]
    post(client, token, [reading("r3", "99", host_time="2026-11-26T14:00:09+00:00")])
    assert live(services) == [("spo2", "99", [])]
    with services.uow.begin() as session:
        assert len(session.scalars(select(Observation.id)).all()) == 1


def test_no_reading_keeps_its_flags_and_no_value(client: FlaskClient, token: str, services: Services) -> None:
    post(client, token, [reading("r1", None, flags=["sensor_off", "no_data"])])
    assert live(services) == [("spo2", None, ["no_data", "sensor_off"])]


@pytest.mark.parametrize(("change", "field"), [
    ({"metric": "blood_sugar"}, "metric"),
    ({"mdc_code": 1}, "mdc_code"),
    ({"unit": "kg"}, "unit"),
    ({"value": "lots"}, "value"),
    ({"value": "NaN"}, "value"),
    ({"value": "1" * 40}, "value"),
    ({"host_time": "yesterday"}, "host_time"),
    ({"host_time": "2026-11-26T14:00:00"}, "host_time"),
    ({"reading_id": ""}, "reading_id"),
    ({"station": "room\n1"}, "station"),
])
def test_bad_reading_is_listed_back_and_others_stored(client: FlaskClient, token: str, services: Services,
                                                      change: dict[str, t.Any], field: str) -> None:
    bad = {**reading("bad"), **change}
    response = post(client, token, [bad, reading("good", "95")])
    assert response.status_code == 200
    assert response.json["accepted"] == 1
    [rejected] = response.json["rejected"]
    assert rejected["index"] == 0 and rejected["error"].startswith(f"{field}:")
    assert live(services) == [("spo2", "95", [])]


def test_malformed_body_and_oversize_batch(client: FlaskClient, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/readings", data="not json", headers=headers).status_code == 400
    assert client.post("/api/v1/readings", json={"readings": "x"}, headers=headers).status_code == 400
    assert post(client, token, [reading(f"r{i}") for i in range(1001)]).status_code == 400


def test_tokens_are_checked_and_revocable(client: FlaskClient, token: str, services: Services) -> None:
    assert client.post("/api/v1/readings", json={"readings": []}).status_code == 401
    assert post(client, "not-a-token", [reading("r1")]).status_code == 401
    assert post(client, token, []).status_code == 200
    assert services.devices.revoke("gateway", "station-pc-1")
    assert post(client, token, [reading("r1")]).status_code == 401
    assert live(services) == []


def test_a_staff_session_is_not_a_gateway(client: FlaskClient, staff: t.Any, token: str) -> None:
    staff.create("alice", "admin")
    staff.sign_in("alice")
    staff.pass_second_factor()
    assert client.post("/api/v1/readings", json={"readings": []}).status_code == 401
    assert client.get("/api/v1/devices").json == {"devices": []}


def test_device_time_without_zone_is_kept_but_not_used_as_measurement_time(
        client: FlaskClient, token: str, services: Services) -> None:
    post(client, token, [reading("r1", device_time="2026-11-26T09:00:00", host_time="2026-11-26T14:00:03+00:00")])
    [row] = services.vitals.live("room1")
    assert row.device_time is not None and row.device_time.strftime("%Y-%m-%d %H:%M") == "2026-11-26 09:00"
    assert row.measured_at.isoformat() == "2026-11-26T14:00:03+00:00"
    post(client, token, [reading("r2", device_time="2026-11-26T13:59:00+00:00",
                                 host_time="2026-11-26T14:00:09+00:00")])
    assert post(client, token, []).status_code == 200
    [row] = services.vitals.live("room1")
    assert row.measured_at.isoformat() == "2026-11-26T14:00:03+00:00" and row.reading_id == "r1"


def test_in_process_readings_with_a_zone_less_device_clock_are_stored(services: Services) -> None:
    received = dt.datetime(2026, 11, 26, 14, 0, 5, tzinfo=dt.UTC)
    reading = Reading("bp-1", "room1", "systolic", 150021, Decimal("128"), "mm[Hg]", frozenset(),
                      dt.datetime(2026, 11, 26, 9, 0, 1), received, 12.5)
    services.vitals.record([IncomingReading.from_reading(reading, "in-process-1")])
    [row] = services.vitals.live("room1")
    assert (row.metric, row.value, row.unit, row.measured_at) == ("systolic", "128", "mm[Hg]", received)
