from __future__ import annotations

import datetime as dt
import itertools
import pathlib
import socket
from decimal import Decimal

import pytest

from devices.reading import Reading
from devices.uplink import DiskBuffer
from devices.uplink import Uplink
from devices.uplink import reading_to_json

EST = dt.timezone(dt.timedelta(hours=-5))


def reading(value: str | None = "36.80", metric: str = "temperature") -> Reading:
    return Reading(
        device_id="temp1", station="room-1", metric=metric, mdc_code=150364,
        value=None if value is None else Decimal(value), unit="Cel",
        flags=frozenset({"sensor_off", "artifact"}) if value is None else frozenset(),
        device_time=dt.datetime(2026, 3, 1, 9, 15, 0, tzinfo=EST),
        host_time=dt.datetime(2026, 3, 1, 14, 15, 2, 500000, tzinfo=dt.UTC),
        host_monotonic=1234.5,
    )


def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_wire_form_keeps_precision_offsets_and_no_value() -> None:
    assert reading_to_json(reading(), "r1") == {
        "reading_id": "r1", "device_id": "temp1", "station": "room-1", "metric": "temperature",
        "mdc_code": 150364, "value": "36.80", "unit": "Cel", "flags": [],
        "device_time": "2026-03-01T09:15:00-05:00", "host_time": "2026-03-01T14:15:02.500000+00:00",
    }
    body = reading_to_json(reading(None), "r2")
    assert (body["value"], body["flags"]) == (None, ["artifact", "sensor_off"])


def test_disk_buffer_is_ordered_and_survives_reopen(tmp_path: pathlib.Path) -> None:
    buffer = DiskBuffer(str(tmp_path))
    for n in range(5):
        buffer.append({"reading_id": f"id{n}", "n": n})
    batch = buffer.peek(3)
    assert [body["n"] for _, body in batch] == [0, 1, 2]
    buffer.remove_through(batch[-1][0])
    buffer.close()
    reopened = DiskBuffer(str(tmp_path))
    assert len(reopened) == 2
    assert [body["reading_id"] for _, body in reopened.peek(10)] == ["id3", "id4"]
    reopened.append({"reading_id": "id5", "n": 5})
    assert [body["n"] for _, body in reopened.peek(10)] == [3, 4, 5]
    reopened.close()


def test_unreachable_server_keeps_everything_with_fixed_ids(tmp_path: pathlib.Path) -> None:
    ids = (f"{n:032x}" for n in itertools.count())
    buffer = DiskBuffer(str(tmp_path))
    server = f"http://127.0.0.1:{closed_port()}"
    uplink = Uplink(server, "secret", "station-a", buffer, ids=lambda: next(ids), timeout=2.0)
    uplink.submit(reading("36.80"))
    uplink.submit(reading("37.10"))
    before = buffer.peek(10)
    outcome = uplink.send_once()
    assert outcome.sent == 0 and outcome.retry
    assert outcome.error is not None
    assert outcome.error.startswith(f"server {server}/api/v1/readings unreachable")
    assert buffer.peek(10) == before
    assert [body["reading_id"] for _, body in before] == [f"{0:032x}", f"{1:032x}"]
    buffer.close()


def test_empty_buffer_sends_nothing(tmp_path: pathlib.Path) -> None:
    buffer = DiskBuffer(str(tmp_path))
    uplink = Uplink(f"http://127.0.0.1:{closed_port()}", "secret", "station-a", buffer)
    outcome = uplink.send_once()
    assert (outcome.sent, outcome.retry, outcome.error) == (0, False, None)
    buffer.close()


@pytest.mark.parametrize("server", ["127.0.0.1:8080", "ftp://example.org", ""])
def test_server_url_needs_http_scheme(tmp_path: pathlib.Path, server: str) -> None:
    buffer = DiskBuffer(str(tmp_path))
    with pytest.raises(ValueError, match=r"must start with https:// \(or http:// on this machine\)"):
        Uplink(server, "secret", "station-a", buffer)
    buffer.close()
