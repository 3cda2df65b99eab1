"""Masimo ASCII 1 decoder: the published Rad-8 line, trend printouts, EXC flags, chunking and resync."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest

from devices import drivers
from devices.protocols import masimo
from devices.protocols.base import DeviceState
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.simulators.masimo import MasimoSimulator
from tests.dev_helpers import DEVICE_FIXTURES
from tests.dev_helpers import decode_split
from tests.dev_helpers import measurements
from tests.dev_helpers import read_sample
from tests.dev_helpers import same_events_every_split

FIXTURES = DEVICE_FIXTURES / "masimo"


def decode(data: bytes, split: str = "whole") -> list[Event]:
    return decode_split(masimo.MasimoDecoder(), data, split)


def simulated(scenario: str, seconds: int = 30, seed: int = 7, model: str = "rad-8") -> bytes:
    simulator = MasimoSimulator(scenario, seed, model)
    return b"".join(simulator.output(float(k)) for k in range(seconds))


RAD8 = read_sample(FIXTURES / "rad8_capture_yahnatan.sample").data
RAD8_LINE = RAD8.split(b"\r\n")[0] + b"\r\n"


def test_published_rad8_line_with_its_device_time_and_perfusion_index() -> None:
    when = dt.datetime(2016, 2, 22, 22, 47, 45)
    assert decode(RAD8_LINE) == [
        Measurement("spo2", Decimal(98), "%", device_time=when),
        Measurement("pulse_oximeter", Decimal(97), "/min", device_time=when),
        Measurement("perfusion_index", Decimal("3.60"), "%", device_time=when),
    ]


def test_reference_lines_in_any_split() -> None:
    data = (RAD8_LINE + (FIXTURES / "trend_off_patient.txt").read_bytes()) * 3
    whole = decode(data)
    assert len(measurements(whole)) == 18
    assert decode(data, "bytes") == whole
    assert decode(data, "chunks-9") == whole


def test_every_field_is_kept_and_placeholders_are_no_value() -> None:
    parsed = masimo.parse_line(RAD8_LINE.decode().strip())
    assert parsed.values["PI"] == Decimal("3.60")
    assert parsed.values["SPCO"] is None and parsed.values["SPMET"] is None
    assert parsed.values["DESAT"] is None and parsed.values["PIDELTA"] is None
    assert parsed.raw["SN"] == "0000056661" and parsed.raw["ALARM"] == "0000"
    assert parsed.exception_flags == frozenset() and not parsed.voided


def test_trend_printout_off_patient_zeros_are_not_values() -> None:
    events = decode((FIXTURES / "trend_off_patient.txt").read_bytes())
    assert events == [
        DeviceState(frozenset({"sensor_off"})),
        Measurement("spo2", None, "%", frozenset({"sensor_off", "no_data"})),
        Measurement("pulse_oximeter", None, "/min", frozenset({"sensor_off", "no_data"})),
        Measurement("perfusion_index", None, "%", frozenset({"sensor_off", "no_data"})),
    ]


@pytest.mark.parametrize(("exc", "flags", "voided"), [
    ("000001", {"no_sensor", "sensor_off"}, True),
    ("000002", {"defective_sensor"}, True),
    ("000004", {"low_perfusion"}, False),
    ("000008", {"pulse_search"}, True),
    ("000010", {"artifact", "interference"}, True),
    ("000040", {"artifact", "ambient_light"}, True),
    ("000080", {"unrecognised_sensor"}, True),
    ("000400", {"low_signal_iq"}, False),
    ("000C04", {"low_signal_iq", "low_perfusion"}, False),
    ("001800", {"unknown_exception"}, False),
])
def test_exc_mask(exc: str, flags: set[str], voided: bool) -> None:
    values = measurements(decode(f"SPO2=097% BPM=072 EXC={exc}\r\n".encode()))
    assert [m.flags for m in values] == [frozenset(flags)] * 2
    assert [m.value for m in values] == ([None, None] if voided else [Decimal(97), Decimal(72)])


def test_radical7_line_with_pvi_and_other_order() -> None:
    line = b"PVI=014 BPM=061 SPO2=099% PI=01.20% EXC=000800\r\n"
    assert masimo.parse_line(line.decode().strip()).values["PVI"] == Decimal(14)
    assert measurements(decode(line)) == [Measurement("pulse_oximeter", Decimal(61), "/min"),
                                          Measurement("spo2", Decimal(99), "%"),
                                          Measurement("perfusion_index", Decimal("1.20"), "%")]


@pytest.mark.parametrize("line", [b"SPO2=9x% BPM=072\r\n", b"PI=03.60% EXC=000800\r\n",
                                  b"SPO2=097% BPM=072 EXC=zz\r\n", b"hello world\r\n", b"SPO2=NaN BPM=072\r\n"])
def test_malformed_lines_are_rejected(line: bytes) -> None:
    events = decode(line)
    assert len(events) == 1 and isinstance(events[0], FrameRejected)


@pytest.mark.parametrize("scenario", ("normal", "artifact", "sensor-off", "garbage"))
@pytest.mark.parametrize("model", ("rad-8", "radical-7"))
def test_chunking_does_not_change_events(scenario: str, model: str) -> None:
    data = simulated(scenario, model=model)
    whole = same_events_every_split(lambda split: decode(data, split))
    assert measurements(whole)


def test_normal_scenario() -> None:
    events = decode(simulated("normal"))
    values = measurements(events)
    assert len(values) == 90
    assert all(m.value is not None and not m.flags and m.device_time for m in values)
    assert {m.metric for m in values} == {"spo2", "pulse_oximeter", "perfusion_index"}
    assert not [e for e in events if not isinstance(e, Measurement)]


def test_artifact_scenario() -> None:
    values = measurements(decode(simulated("artifact")))
    flagged = [m for m in values if "artifact" in m.flags]
    assert flagged and len(flagged) < len(values)
    assert all(m.value is None for m in flagged)
    assert all(m.value is not None for m in values if not m.flags)


def test_sensor_off_scenario() -> None:
    events = decode(simulated("sensor-off"))
    assert all(m.value is None and {"sensor_off", "no_data"} <= m.flags for m in measurements(events))
    assert [e for e in events if isinstance(e, DeviceState)] == [DeviceState(frozenset({"sensor_off"}))]


def test_garbage_scenario() -> None:
    events = decode(simulated("garbage", seconds=40))
    assert any(isinstance(e, FrameRejected) for e in events)
    values = measurements(events)
    assert len(values) >= 30
    assert all(m.value is not None and not m.flags for m in values)


def test_resync_after_noise_and_wrong_baud() -> None:
    clean = simulated("normal", seconds=10)
    noise = random.Random(1).randbytes(5000)
    events = decode(noise + clean, "chunks-4")
    assert measurements(events)[-18:] == measurements(decode(clean))[-18:]
    assert not measurements(decode(noise, "chunks-5"))


def test_overlong_line_is_bounded() -> None:
    decoder = masimo.MasimoDecoder()
    events = decoder.feed(b"SPO2=" + b"9" * 2000)
    assert decoder.buffered <= decoder.max_frame
    events += decoder.feed(b"\r\n" + RAD8_LINE)
    assert sum(e.size for e in events if isinstance(e, FrameRejected)) == 2007
    assert len(measurements(events)) == 3


def test_registered_driver() -> None:
    driver = drivers.get("masimo-ascii")
    assert driver.serial.baudrate == 9600 and driver.serial.parity == "N"
    assert driver.quiet_timeout == pytest.approx(1.1)
    assert isinstance(driver.decoder(), masimo.MasimoDecoder)
    assert driver.simulator("normal", 1).output(0.0).endswith(b"EXC=000800\r\n")
