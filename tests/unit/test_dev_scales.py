"""Clinic scale decoders (Tanita, Rice Lake, Health o meter): records, units, flags, chunking, resync."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from devices import drivers
from devices.protocols import scales
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.simulators.scales import ScaleSimulator
from tests.dev_helpers import DEVICE_FIXTURES
from tests.dev_helpers import decode_split
from tests.dev_helpers import measurements
from tests.dev_helpers import same_events_every_split

FIXTURES = DEVICE_FIXTURES / "scales"
KINDS = ("tanita", "ricelake", "healthometer")


def decode(kind: str, data: bytes, split: str = "whole") -> list[Event]:
    decoder = drivers.get(kind).decoder()
    assert isinstance(decoder, scales.TanitaDecoder | scales.RiceLakeDecoder | scales.HealthOMeterDecoder)
    return decode_split(decoder, data, split)


def simulated(kind: str, scenario: str, weighings: int = 12, seed: int = 7, metric: bool | None = None) -> bytes:
    simulator = ScaleSimulator(kind, scenario, seed, metric)
    return b"".join(simulator.output(k * 10.0) for k in range(weighings))


@pytest.mark.parametrize(("kind", "pattern", "count"), [("tanita", "tanita_*.txt", 6),
                                                       ("ricelake", "ricelake_*.txt", 2),
                                                       ("healthometer", "healthometer_*.bin", 1)])
def test_reference_records_in_any_split(kind: str, pattern: str, count: int) -> None:
    data = b"".join(path.read_bytes() for path in sorted(FIXTURES.glob(pattern))) * 3
    whole = decode(kind, data)
    assert len(measurements(whole)) == 3 * count
    assert decode(kind, data, "bytes") == whole
    assert decode(kind, data, "chunks-9") == whole


def test_tanita_metric_line() -> None:
    assert decode("tanita", (FIXTURES / "tanita_wb3000_kg.txt").read_bytes()) == [
        Measurement("weight", Decimal("70.2"), "kg"),
        Measurement("height", Decimal("170.0"), "cm"),
        Measurement("bmi", Decimal("24.3"), "kg/m2"),
    ]


def test_tanita_imperial_line() -> None:
    assert decode("tanita", (FIXTURES / "tanita_wb3000_lb.txt").read_bytes()) == [
        Measurement("weight", Decimal("154.8"), "[lb_av]"),
        Measurement("height", Decimal("67.5"), "[in_i]"),
        Measurement("bmi", Decimal("23.9"), "kg/m2"),
    ]


def test_tanita_checksum_and_layout_errors() -> None:
    line = (FIXTURES / "tanita_wb3000_kg.txt").read_bytes()
    wrong = line.replace(b"Wk,070.2", b"Wk,079.2")
    assert decode("tanita", wrong) == [FrameRejected("bad checksum", len(wrong) - 2)]
    assert decode("tanita", b"Wk,70.2\r\n") == [FrameRejected("no checksum", 7)]
    assert decode("tanita", scales.encode_tanita([("Wk", "70.x")])) == [FrameRejected("bad Wk value", 13)]
    assert decode("tanita", scales.encode_tanita([("Hm", "170.0")])) == [FrameRejected("no weight field", 14)]


def test_tanita_stray_signal_is_ignored_but_real_noise_reported() -> None:
    line = (FIXTURES / "tanita_wb3000_kg.txt").read_bytes()
    assert not [e for e in decode("tanita", line + b"\x00" + line) if isinstance(e, FrameRejected)]
    events = decode("tanita", line + b"\xff\x00\x81\x90" + line)
    assert FrameRejected("line noise", 4) in events
    assert len(measurements(events)) == 6


def test_ricelake_lines() -> None:
    assert decode("ricelake", (FIXTURES / "ricelake_gross_lb.txt").read_bytes()) == [
        Measurement("weight", Decimal("154.2"), "[lb_av]")]
    assert decode("ricelake", (FIXTURES / "ricelake_net_kg.txt").read_bytes()) == [
        Measurement("weight", Decimal("70.0"), "kg", frozenset({"net_weight"}))]


@pytest.mark.parametrize("line", [b"   154.2 lb Gross \r\n", b"    154.2 oz Gross \r\n", b"    154.2 lb Tare  \r\n",
                                  b"    15x.2 lb Gross \r\n", b"    154.2-lb Gross \r\n"])
def test_ricelake_malformed_lines(line: bytes) -> None:
    events = decode("ricelake", line)
    assert len(events) == 1 and isinstance(events[0], FrameRejected)


def test_healthometer_record_and_query_reply() -> None:
    record = (FIXTURES / "healthometer_metric.bin").read_bytes()
    reply = (FIXTURES / "healthometer_query_reply.bin").read_bytes()
    assert decode("healthometer", reply + record) == [Measurement("weight", Decimal("200.00"), "kg")]


def test_healthometer_imperial_with_height_and_bmi() -> None:
    record = b"\x1bR\x1bI          \x1bW154.80\x1bH067.5\x1bB24.2\x1bNe\x1bE"
    assert decode("healthometer", record) == [Measurement("weight", Decimal("154.80"), "[lb_av]"),
                                              Measurement("height", Decimal("67.5"), "[in_i]"),
                                              Measurement("bmi", Decimal("24.2"), "kg/m2")]


def test_healthometer_never_guesses_the_unit() -> None:
    events = decode("healthometer", b"\x1bR\x1bW154.80\x1bE")
    assert events == [FrameRejected("no unit field", len(b"\x1bR\x1bW154.80\x1bE"))]


def test_healthometer_patient_id_is_not_in_events() -> None:
    events = decode("healthometer", (FIXTURES / "healthometer_metric.bin").read_bytes())
    assert "1234567890" not in repr(events)


def test_healthometer_restarts_at_the_record_start_after_noise() -> None:
    record = (FIXTURES / "healthometer_metric.bin").read_bytes()
    events = decode("healthometer", b"\x1bZ\x01\x02" + record)
    assert events[0] == FrameRejected("no record start", 4)
    assert measurements(events) == [Measurement("weight", Decimal("200.00"), "kg")]


def test_healthometer_unterminated_record_is_bounded() -> None:
    decoder = scales.HealthOMeterDecoder()
    events = decoder.feed(b"\x1bR\x1bW" + b"1" * 1000)
    assert decoder.buffered <= decoder.max_frame
    events += decoder.feed((FIXTURES / "healthometer_metric.bin").read_bytes())
    assert sum(e.size for e in events if isinstance(e, FrameRejected)) == 1004
    assert len(measurements(events)) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scenario", ("normal", "artifact", "sensor-off", "garbage"))
def test_chunking_does_not_change_events(kind: str, scenario: str) -> None:
    data = simulated(kind, scenario)
    whole = same_events_every_split(lambda split: decode(kind, data, split))
    assert measurements(whole)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("metric", (True, False))
def test_normal_scenario(kind: str, metric: bool) -> None:
    events = decode(kind, simulated(kind, "normal", metric=metric))
    assert not [e for e in events if isinstance(e, FrameRejected)]
    weights = [m for m in measurements(events) if m.metric == "weight"]
    assert len(weights) == 12
    assert all(m.value is not None and not m.flags for m in weights)
    assert {m.unit for m in weights} == {"kg" if metric else "[lb_av]"}


@pytest.mark.parametrize("kind", KINDS)
def test_artifact_scenario(kind: str) -> None:
    weights = [m for m in measurements(decode(kind, simulated(kind, "artifact"))) if m.metric == "weight"]
    flagged = [m for m in weights if "artifact" in m.flags]
    assert len(flagged) == 8 and all(m.value is None for m in flagged)


@pytest.mark.parametrize("kind", KINDS)
def test_sensor_off_scenario(kind: str) -> None:
    values = measurements(decode(kind, simulated(kind, "sensor-off")))
    assert len(values) == 12
    assert all(m.metric == "weight" and m.value is None and m.flags == {"no_data"} for m in values)


@pytest.mark.parametrize("kind", KINDS)
def test_garbage_scenario(kind: str) -> None:
    events = decode(kind, simulated(kind, "garbage", weighings=24))
    assert any(isinstance(e, FrameRejected) for e in events)
    weights = [m for m in measurements(events) if m.metric == "weight"]
    # A cut line swallows the next one (no LF between them) and printable noise spoils a line; the rest decode.
    assert len(weights) >= 8
    assert all(m.value is not None and not m.flags for m in weights)


@pytest.mark.parametrize("kind", KINDS)
def test_resync_and_wrong_baud(kind: str) -> None:
    noise = random.Random(kind).randbytes(20000)
    assert not measurements(decode(kind, noise, "chunks-3"))
    clean = simulated(kind, "normal", weighings=4)
    expected = measurements(decode(kind, clean))
    assert measurements(decode(kind, noise + b"\r\n" + clean, "chunks-4")) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_registered_driver(kind: str) -> None:
    driver = drivers.get(kind)
    assert (driver.serial.baudrate, driver.serial.bytesize, driver.serial.parity) == (9600, 8, "N")
    assert driver.quiet_timeout == float("inf")
    assert driver.simulator("normal", 1).output(0.0)
