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
from tests.dev_helpers import read_sample
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


def sample(name: str) -> bytes:
    return read_sample(FIXTURES / name).data


SC240 = "tanita_sc240_manual_p24.sample"
HOM = "healthometer_proplus_manual_p33.sample"


def test_tanita_checksum_is_the_8_bit_sum_the_manual_prints() -> None:
    line = sample(SC240)
    head = line[: line.index(b"CS,")]
    assert scales.tanita_checksum(head) == "FD"
    xor = 0
    for byte in head:
        xor ^= byte
    assert f"{xor:02X}" == "35"  # what the earlier reading of the manual computed: it rejected every line


def test_tanita_checksum_and_layout_errors() -> None:
    line = sample(SC240)
    wrong = line.replace(b"Wk,82.7", b"Wk,89.7")
    assert decode("tanita", wrong) == [FrameRejected("bad checksum", len(wrong) - 2)]
    assert decode("tanita", b"Wk,70.2\r\n") == [FrameRejected("no checksum", 7)]
    assert decode("tanita", b'{0,16,MO,"WB-3000",Wk,70.2\r\n') == [FrameRejected("no checksum", 26)]
    assert decode("tanita", scales.encode_tanita([("Wk", "70.x")])) == [FrameRejected("bad Wk value", 13)]
    assert decode("tanita", scales.encode_tanita([("Hm", "170.0")])) == [FrameRejected("no weight field", 14)]


def test_tanita_bd815u_weight_gain_and_recall_lines_are_not_weights() -> None:
    assert decode("tanita", b"Gg,120,Rg,2868\r\nRg,2868\r\n") == []


@pytest.mark.parametrize(("height", "inches"), [("5-07.5", "67.5"), ("6-01.0", "73.0"), ("4-11", "59")])
def test_tanita_lb_mode_height_is_feet_and_inches(height: str, inches: str) -> None:
    line = scales.encode_tanita([("{0", "16"), ("MO", '"WB-3000"'), ("Hf", height), ("Wp", "154.8")])
    assert decode("tanita", line) == [Measurement("weight", Decimal("154.8"), "[lb_av]"),
                                      Measurement("height", Decimal(inches), "[in_i]")]


@pytest.mark.parametrize("height", ["67.5", "5-12.0", "5'07", ""])
def test_tanita_lb_mode_height_that_is_not_feet_and_inches_is_rejected(height: str) -> None:
    line = scales.encode_tanita([("Hf", height), ("Wp", "154.8")])
    assert decode("tanita", line) == [FrameRejected("bad Hf value", len(line) - 2)]


def test_tanita_stray_signal_is_ignored_but_real_noise_reported() -> None:
    line = sample(SC240)
    assert not [e for e in decode("tanita", line + b"\x00" + line) if isinstance(e, FrameRejected)]
    events = decode("tanita", line + b"\xff\x00\x81\x90" + line)
    assert FrameRejected("line noise", 4) in events
    assert len(measurements(events)) == 6


@pytest.mark.parametrize("line", [b"   154.2 lb Gross \r\n", b"    154.2 oz Gross \r\n", b"    154.2 lb Tare  \r\n",
                                  b"    15x.2 lb Gross \r\n", b"    154.2-lb Gross \r\n",
                                  b"    154.2 lb   Net  \r\n", b"PATIENT HEIGHT 6-01.0 YD\r\n"])
def test_ricelake_malformed_lines(line: bytes) -> None:
    events = decode("ricelake", line)
    assert len(events) == 1 and isinstance(events[0], FrameRejected)


def test_ricelake_bmi_report_with_a_tare_flags_the_net_weight() -> None:
    report = scales.encode_ricelake_bmi(Decimal("253.0"), Decimal("38.0"), "LB", "6-01.0", "FT", Decimal("28.4"))
    assert measurements(decode("ricelake", report))[0] == Measurement("weight", Decimal("215.0"), "[lb_av]",
                                                                      frozenset({"net_weight"}))


def test_healthometer_overload_is_no_value() -> None:
    for weight in (b"999.99", b"999.9"):
        record = b"\x1bR\x1bW" + weight + b"\x1bNc\x1bE"
        assert decode("healthometer", record) == [Measurement("weight", None, "[lb_av]", frozenset({"over_range"}))]


def test_healthometer_customary_with_height_and_bmi() -> None:
    record = b"\x1bR\x1bI          \x1bW154.80\x1bH067.50\x1bB24.2\x1bNc\x1bE"
    assert decode("healthometer", record) == [Measurement("weight", Decimal("154.80"), "[lb_av]"),
                                              Measurement("height", Decimal("67.50"), "[in_i]"),
                                              Measurement("bmi", Decimal("24.2"), "kg/m2")]


@pytest.mark.parametrize(("record", "reason"), [(b"\x1bR\x1bW154.80\x1bE", "no unit field"),
                                                (b"\x1bR\x1bW154.80\x1bNe\x1bE", "unknown unit")])
def test_healthometer_never_guesses_the_unit(record: bytes, reason: str) -> None:
    assert decode("healthometer", record) == [FrameRejected(reason, len(record))]


def test_healthometer_patient_id_is_not_in_events() -> None:
    events = decode("healthometer", sample(HOM))
    assert "1234567890" not in repr(events)


def test_healthometer_restarts_at_the_record_start_after_noise() -> None:
    events = decode("healthometer", b"\x1bZ\x01\x02" + sample(HOM))
    assert events[0] == FrameRejected("no record start", 4)
    assert measurements(events) == [Measurement("weight", Decimal("200.00"), "kg")]


def test_healthometer_unterminated_record_is_bounded() -> None:
    decoder = scales.HealthOMeterDecoder()
    events = decoder.feed(b"\x1bR\x1bW" + b"1" * 1000)
    assert decoder.buffered <= decoder.max_frame
    events += decoder.feed(sample(HOM))
    assert sum(e.size for e in events if isinstance(e, FrameRejected)) == 1004
    assert len(measurements(events)) == 1


@pytest.mark.parametrize(("kind", "scenario", "expected"), [
    ("tanita", "pounds", {("weight", "[lb_av]"), ("height", "[in_i]"), ("bmi", "kg/m2")}),
    ("tanita", "bd-815u", {("weight", "g")}),
    ("ricelake", "net", {("weight", "[lb_av]")}),
    ("ricelake", "bmi-mode", {("weight", "[lb_av]"), ("height", "[in_i]"), ("bmi", "kg/m2")}),
])
def test_device_scenarios_chart_every_weighing(kind: str, scenario: str, expected: set[tuple[str, str]]) -> None:
    events = decode(kind, simulated(kind, scenario))
    assert not [e for e in events if isinstance(e, FrameRejected)]
    values = measurements(events)
    assert {(m.metric, m.unit) for m in values} == expected
    assert len([m for m in values if m.metric == "weight" and m.value is not None]) == 12


def test_overload_scenario() -> None:
    weights = measurements(decode("healthometer", simulated("healthometer", "overload")))
    assert [m.flags for m in weights if m.metric == "weight"][:2] == [frozenset(), frozenset({"over_range"})]
    assert all(m.value is None for m in weights if "over_range" in m.flags)


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
def test_driver_row(kind: str) -> None:
    driver = drivers.get(kind)
    assert (driver.serial.baudrate, driver.serial.bytesize, driver.serial.parity) == (9600, 8, "N")
    assert driver.quiet_timeout == float("inf")
    assert driver.simulator("normal", 1).output(0.0)
    assert set(driver.scenarios) > {"normal", "artifact", "sensor-off", "garbage", "unplug"}
