"""POST /api/v1/readings: gateway tokens bound to stations, idempotent replays, newest value wins, device clocks
that run ahead, bad readings listed back; POST /api/v1/devices/status and GET /api/v1/devices."""

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
    return services.devices.add("gateway", "station-pc-1", stations=("room1",))


def post(client: FlaskClient, token: str, readings: list[dict[str, t.Any]]) -> t.Any:
    return client.post("/api/v1/readings", json={"gateway": "station-pc-1", "readings": readings},
                       headers={"Authorization": f"Bearer {token}"})


def live(services: Services) -> list[tuple[str, str | None, list[str]]]:
    return [(o.metric, o.value, o.flags) for o in services.vitals.live("room1")]


def test_readings_are_stored_as_live_values(client: FlaskClient, token: str, services: Services) -> None:
    response = post(client, token, [reading("r1"), reading("r2", "72", metric="pulse_oximeter")])
    assert response.status_code == 200 and response.json == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert live(services) == [("pulse_oximeter", "72", []), ("spo2", "97", [])]


def test_replay_is_idempotent_and_older_values_never_win(client: FlaskClient, token: str,
                                                         services: Services) -> None:
    post(client, token, [reading("r1", "97", host_time="2026-11-26T14:00:05+00:00")])
    replay = post(client, token, [reading("r1", "97", host_time="2026-11-26T14:00:05+00:00"), reading("r2", "96")])
    assert (replay.json["accepted"], replay.json["duplicates"]) == (1, 1)
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
    """A staff session cannot post readings; with no device reported yet, the device list is empty."""
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


def test_a_gateway_may_send_only_for_its_own_stations(client: FlaskClient, token: str, services: Services) -> None:
    other = services.devices.add("gateway", "room2-pc", stations=("room2",))
    post(client, other, [{**reading("room2-1"), "device_id": "ox-2", "station": "room2"}])
    response = post(client, token, [{**reading("elsewhere"), "station": "room2"}, reading("mine", "96")])
    assert response.json["accepted"] == 1
    assert [r["error"].split(":")[0] for r in response.json["rejected"]] == ["station"]
    services.stations.configure([("ox-2", "nonin-df8", "/dev/ttyUSB1", "room2")])
    response = post(client, token, [{**reading("borrowed2"), "device_id": "ox-2"}])
    assert response.json["rejected"] == [{"index": 0, "error": "device_id: device 'ox-2' belongs to station 'room2'"}]
    assert live(services) == [("spo2", "96", [])]


def test_a_gateway_needs_a_station(services: Services) -> None:
    from server.services.staff import AccountError

    with pytest.raises(AccountError, match="station"):
        services.devices.add("gateway", "nowhere-pc")


def test_a_device_clock_far_ahead_is_flagged_and_cannot_pin_a_stale_value(
        client: FlaskClient, token: str, services: Services) -> None:
    post(client, token, [reading("future", "91", device_time="2099-01-01T00:00:00+00:00",
                                 host_time="2026-11-26T14:00:01+00:00")])
    [row] = services.vitals.live("room1")
    assert row.value == "91" and "clock_ahead" in row.flags
    assert row.measured_at.isoformat() == "2026-11-26T14:00:01+00:00"
    post(client, token, [reading("later", "97", host_time="2026-11-26T14:00:02+00:00")])
    assert live(services) == [("spo2", "97", [])]


def test_a_device_clock_slightly_ahead_is_believed(client: FlaskClient, token: str, services: Services) -> None:
    post(client, token, [reading("r1", "95", device_time="2026-11-26T14:02:00+00:00", host_time=NOW)])
    [row] = services.vitals.live("room1")
    assert row.flags == [] and row.measured_at.isoformat() == "2026-11-26T14:02:00+00:00"


def status_item(device_id: str = "ox-1", station: str = "room1", **extra: t.Any) -> dict[str, t.Any]:
    return {"device_id": device_id, "driver": "nonin-df8", "port": "/dev/ttyUSB0", "station": station,
            "connected": True, "stale": False, "last_frame_time": NOW, "frames_accepted": 10,
            "frames_rejected": 1, "reconnects": 0, "last_error": None, "flags": [], **extra}


def test_gateway_status_becomes_device_rows_every_process_reads(client: FlaskClient, token: str, staff: t.Any,
                                                                services: Services, clock: t.Any) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    response = client.post("/api/v1/devices/status", headers=headers, json={"gateway": "station-pc-1", "devices": [
        status_item(), status_item("ox-9", "room9"), status_item("bp-1", frames_accepted=-1)]})
    assert response.status_code == 200 and response.json["accepted"] == 1
    assert [r["index"] for r in response.json["rejected"]] == [2, 1]
    staff.create("ama", "assistant")
    staff.sign_in("ama")
    [device] = client.get("/api/v1/devices").json["devices"]
    assert (device["id"], device["station"], device["state"], device["reported_by"]) == \
        ("ox-1", "room1", "connected", "station-pc-1")
    client.post("/api/v1/devices/status", headers=headers, json={"devices": [
        status_item(connected=False, last_error="device disconnected")]})
    [device] = client.get("/api/v1/devices").json["devices"]
    assert device["state"] == "disconnected" and device["last_error"] == "device disconnected"
    clock.advance(seconds=11)
    [device] = client.get("/api/v1/devices").json["devices"]
    assert device["state"] == "silent"
