"""SureTemp Plus decoder and simulator: vendor packets, polling, the measurement cycle, chunking, resync."""

from __future__ import annotations

import random
import struct
from decimal import Decimal

import pytest

from devices import drivers
from devices.protocols import suretemp
from devices.protocols.base import DeviceState
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.simulators.suretemp import SureTempSimulator
from tests.dev_helpers import DEVICE_FIXTURES
from tests.dev_helpers import decode_split
from tests.dev_helpers import read_hex
from tests.dev_helpers import same_events_every_split

FIXTURES = DEVICE_FIXTURES / "suretemp"


def hex_fixture(name: str) -> bytes:
    return read_hex(FIXTURES / name)


def record_packet(final_k: float, *, counter: int = 1, algorithm: int = 0, error: int = 0, active: int = 1,
                  state: int | None = None, probe: int = 0, method: int = 0) -> bytes:
    """A temperature record; by default "final" when ``final_k`` is set and "ready" when it is 0."""
    if state is None:
        state = 6 if final_k else 2
    record = suretemp.TemperatureRecord(final_k, 300.0, counter, method, algorithm, state, error, active, probe)
    return suretemp.encode_packet(suretemp.CMD_TEMPERATURE_RECORD, suretemp.TYPE_GOOD_RESPONSE, record.to_bytes())


def decode(data: bytes, split: str = "whole") -> list[Event]:
    return decode_split(suretemp.SureTempDecoder(), data, split)


def conversation(scenario: str, polls: int = 120, seed: int = 7) -> bytes:
    """What the module answers to ``polls`` record requests, as one stream."""
    simulator = SureTempSimulator(scenario, seed)
    decoder = suretemp.SureTempDecoder()
    assert decoder.on_connect() == b""
    answers = [simulator.receive(decoder.poll(k * suretemp.POLL_INTERVAL)) for k in range(polls)]
    return b"".join(answers)


def measurements(events: list[Event]) -> list[Measurement]:
    return [e for e in events if isinstance(e, Measurement)]


def test_vendor_command_packets_match_the_encoder() -> None:
    assert suretemp.LOCK_PROBE == hex_fixture("lock_probe.hex")
    assert suretemp.READ_RECORD == hex_fixture("get_record.hex")


def test_vendor_record_has_no_final_temperature_yet() -> None:
    packet = hex_fixture("record_no_final.hex")
    assert sum(packet) & 0xFF == 0
    record = suretemp.TemperatureRecord.from_bytes(packet[8:-1])
    assert record.final == 0
    assert round(record.current - 273.15, 2) == 34.22
    assert (record.counter, record.state, record.error, record.active) == (78, 2, 0, 1)
    # The probe temperature is the probe warming up, not the patient: no measurement.
    assert decode(packet) == []


def test_reference_and_final_records_in_any_split() -> None:
    data = (hex_fixture("record_no_final.hex") + record_packet(309.75, counter=5) + record_packet(0.0, active=0)) * 3
    whole = decode(data)
    assert len(measurements(whole)) == 3
    assert decode(data, "bytes") == whole
    assert decode(data, "chunks-9") == whole


def test_final_temperature_is_reported_once_in_kelvin() -> None:
    packet = record_packet(309.75)
    events = decode(packet * 5)
    assert events == [Measurement("temperature_oral", Decimal("309.75"), "K")]


def test_next_measurement_is_reported_again() -> None:
    events = decode(record_packet(309.75) + record_packet(0.0) + record_packet(309.75, counter=2))
    assert len(measurements(events)) == 2


def test_repeated_final_record_is_one_reading_although_the_counter_runs() -> None:
    # The module refreshes the record every 173 ms: same final value, new sample counter each time.
    events = decode(b"".join(record_packet(309.75, counter=100 + k) for k in range(20)))
    assert events == [Measurement("temperature_oral", Decimal("309.75"), "K")]


@pytest.mark.parametrize(("algorithm", "metric"), [(0, "temperature_oral"), (1, "temperature_rectal"),
                                                   (2, "temperature_axillary"), (4, "temperature_axillary")])
def test_algorithm_names_the_site(algorithm: int, metric: str) -> None:
    assert measurements(decode(record_packet(310.0, algorithm=algorithm)))[0].metric == metric


@pytest.mark.parametrize(("algorithm", "probe"), [(3, 0), (0, 1), (3, 1)])
def test_cal_key_is_never_a_patient_temperature(algorithm: int, probe: int) -> None:
    events = decode(record_packet(310.93, algorithm=algorithm, probe=probe) * 3)
    assert measurements(events) == [Measurement("temperature", None, "K", frozenset({"calibration_key"}))
                                    if algorithm == 3 else
                                    Measurement("temperature_oral", None, "K", frozenset({"calibration_key"}))]


@pytest.mark.parametrize(("state", "flags"), [(8, {"over_range"}), (9, {"over_range", "probe_position"}),
                                              (10, {"under_range"}), (11, {"under_range", "probe_position"})])
def test_final_out_of_range_states_are_flags_only(state: int, flags: set[str]) -> None:
    events = decode(record_packet(316.65, state=state) * 3)
    assert events == [Measurement("temperature_oral", None, "K", frozenset(flags))]


def test_monitor_mode_is_flags_only() -> None:
    events = decode(record_packet(309.9, state=12, method=1) * 3 + record_packet(0.0, state=12, method=1))
    assert events == [Measurement("temperature_oral", None, "K", frozenset({"monitor_mode"}))]


def test_prediction_streams_as_in_progress_then_one_final() -> None:
    data = (record_packet(0.0, state=3) + record_packet(309.55, state=4) * 2 + record_packet(309.65, state=4)
            + record_packet(309.75) * 4 + record_packet(0.0, state=2))
    assert decode(data) == [Measurement("temperature_oral", Decimal("309.55"), "K", frozenset({"in_progress"})),
                            Measurement("temperature_oral", Decimal("309.65"), "K", frozenset({"in_progress"})),
                            Measurement("temperature_oral", Decimal("309.75"), "K")]


def test_final_position_keeps_the_value_with_a_flag() -> None:
    assert decode(record_packet(309.75, state=7)) == [
        Measurement("temperature_oral", Decimal("309.75"), "K", frozenset({"probe_position"}))]


def test_error_state_and_error_code_void_the_value() -> None:
    assert decode(record_packet(309.75, state=20)) == [
        Measurement("temperature_oral", None, "K", frozenset({"device_error"}))]


def test_unknown_state_is_rejected() -> None:
    assert decode(record_packet(309.75, state=17)) == [FrameRejected("unknown state", 28)]


def test_error_code_voids_value_and_raises_device_error() -> None:
    events = decode(record_packet(309.75, error=7))
    assert events == [DeviceState(frozenset({"device_error"}), "module error 7"),
                      Measurement("temperature_oral", None, "K", frozenset({"device_error"}))]


def test_probe_in_well_is_sensor_off_then_cleared() -> None:
    events = decode(record_packet(0.0, active=0) * 3 + record_packet(0.0))
    assert events == [DeviceState(frozenset({"sensor_off"}), "probe in its well"),
                      DeviceState(frozenset(), "cleared")]


@pytest.mark.parametrize("final", [float("nan"), float("inf"), -5.0, 1000.0])
def test_nonsense_temperature_is_rejected(final: float) -> None:
    events = decode(record_packet(final) + record_packet(309.0))
    assert isinstance(events[0], FrameRejected) and events[0].reason == "bad temperature"
    assert measurements(events)[0].value == Decimal("309.00")


def test_short_record_and_failed_command_are_reported() -> None:
    short = suretemp.encode_packet(suretemp.CMD_TEMPERATURE_RECORD, suretemp.TYPE_GOOD_RESPONSE, b"\x00" * 5)
    failed = suretemp.encode_packet(suretemp.CMD_LOCK_PROBE, 0x15)
    events = decode(short + failed)
    assert events[0] == FrameRejected("bad record length", 14)
    assert isinstance(events[1], DeviceState) and events[1].flags == {"command_failed"}


def test_bad_checksum_then_good_packet() -> None:
    good = record_packet(309.75)
    bad = good[:-1] + bytes(((good[-1] + 1) & 0xFF,))
    events = decode(bad + good)
    assert events[0] == FrameRejected("bad checksum", len(bad))
    assert len(measurements(events)) == 1


def test_poll_is_paced_by_the_callers_clock() -> None:
    decoder = suretemp.SureTempDecoder()
    assert decoder.poll(100.0) == suretemp.READ_RECORD
    assert decoder.poll(100.2) == b""
    assert decoder.poll(100.5) == suretemp.READ_RECORD
    assert decoder.on_connect() == b""
    assert decoder.poll(100.6) == suretemp.READ_RECORD


def test_simulator_answers_commands_split_across_writes() -> None:
    simulator = SureTempSimulator("normal", 1)
    command = suretemp.READ_RECORD
    assert simulator.output(5.0) == b""
    assert simulator.receive(command[:4]) == b""
    answer = simulator.receive(command[4:] + suretemp.LOCK_PROBE)
    assert answer.startswith(suretemp.HEADER + suretemp.CMD_TEMPERATURE_RECORD + b"\x02\x13\x00")
    assert answer.endswith(suretemp.encode_packet(suretemp.CMD_LOCK_PROBE, suretemp.TYPE_GOOD_RESPONSE))


@pytest.mark.parametrize("scenario", ("normal", "artifact", "sensor-off", "garbage", "cal-key", "over-temp",
                                      "monitor-mode"))
def test_chunking_does_not_change_events(scenario: str) -> None:
    data = conversation(scenario)
    whole = same_events_every_split(lambda split: decode(data, split))
    assert whole


def finals(events: list[Event]) -> list[Measurement]:
    return [m for m in measurements(events) if "in_progress" not in m.flags]


def test_normal_scenario_gives_one_plausible_temperature_per_measurement() -> None:
    values = finals(decode(conversation("normal")))
    assert len(values) == 120 // 21 + 1
    assert all(m.unit == "K" and not m.flags for m in values)
    assert all(Decimal("309.5") <= m.value <= Decimal("310.6") for m in values if m.value)


def test_artifact_scenario_reports_module_errors() -> None:
    events = decode(conversation("artifact"))
    errors = [e for e in events if isinstance(e, DeviceState) and "device_error" in e.flags]
    assert errors and all(e.detail == "module error 3" for e in errors)
    assert all(m.value is None for m in finals(events) if "device_error" in m.flags)
    assert any(m.value is not None for m in finals(events))


@pytest.mark.parametrize(("scenario", "flag"), [("cal-key", "calibration_key"), ("monitor-mode", "monitor_mode")])
def test_flag_only_scenarios_never_chart_a_value(scenario: str, flag: str) -> None:
    values = measurements(decode(conversation(scenario)))
    assert values and all(m.value is None and m.flags == {flag} for m in values)
    assert len(values) == 120 // 21 + 1


def test_over_temp_scenario_alternates_a_reading_and_an_over_range_flag() -> None:
    values = finals(decode(conversation("over-temp")))
    assert [m.flags for m in values][:2] == [frozenset(), frozenset({"over_range"})]
    assert all((m.value is None) == ("over_range" in m.flags) for m in values)


def test_sensor_off_scenario_has_no_temperature() -> None:
    events = decode(conversation("sensor-off"))
    assert events == [DeviceState(frozenset({"sensor_off"}), "probe in its well")]


def test_garbage_scenario_keeps_good_answers() -> None:
    events = decode(conversation("garbage", polls=200))
    assert any(isinstance(e, FrameRejected) for e in events)
    assert len(finals(events)) >= 5


def test_resync_and_wrong_baud() -> None:
    noise = random.Random(2).randbytes(10000)
    assert not measurements(decode(noise, "chunks-3"))
    assert measurements(decode(noise + record_packet(309.75))) == [
        Measurement("temperature_oral", Decimal("309.75"), "K")]


def test_record_layout_is_19_bytes() -> None:
    assert suretemp.RECORD.size == 19
    with pytest.raises(struct.error):
        suretemp.TemperatureRecord.from_bytes(b"\x00" * 18)


def test_registered_driver() -> None:
    driver = drivers.get("suretemp")
    assert driver.poll_interval == suretemp.POLL_INTERVAL
    assert (driver.serial.baudrate, driver.serial.bytesize, driver.serial.parity, driver.serial.stopbits) == \
        (9600, 8, "N", 1)
    assert driver.simulator("normal", 1).receive(suretemp.READ_RECORD)
