"""Datex-Ohmeda S/5 computer interface: framing, checksum, record layout, conversation, scenarios."""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal

import pytest

from devices import drivers
from devices.protocols import datex
from devices.protocols.base import DeviceState
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.simulators.datex import DatexSimulator
from tests.dev_helpers import DEVICE_FIXTURES
from tests.dev_helpers import by_metric
from tests.dev_helpers import decode_split
from tests.dev_helpers import feed_random_bytes

FIXTURES = DEVICE_FIXTURES / "datex"


def pushed_stream(scenario: str, seed: int = 3, records: int = 4) -> bytes:
    simulator = DatexSimulator(scenario, seed)
    stream = simulator.receive(datex.build_request(5))
    for second in range(5, 5 * records, 5):
        stream += simulator.output(float(second))
    return stream


def test_stuffing_escapes_flag_and_escape_bytes_and_round_trips() -> None:
    assert datex.stuff(b"\x01\x7e\x02\x7d\x03") == b"\x01\x7d\x5e\x02\x7d\x5d\x03"
    assert datex.unstuff(datex.stuff(bytes(range(256)))) == bytes(range(256))
    assert datex.unstuff(b"\x01\x7d") is None


def test_checksum_is_sum8_of_the_record_and_is_stuffed_when_it_equals_the_flag() -> None:
    assert datex.encode_frame(b"\x01\x02") == b"\x7e\x01\x02\x03\x7e"
    assert datex.encode_frame(b"\x7e") == b"\x7e\x7d\x5e\x7d\x5e\x7e"
    assert datex.encode_frame(b"\xff\x7f") == b"\x7e\xff\x7f\x7d\x5e\x7e"


def test_basic_class_offsets_follow_the_published_group_sizes() -> None:
    sizes = {"ecg": 16, "p1": 14, "p2": 14, "p3": 14, "p4": 14, "nibp": 14, "t1": 8, "t2": 8, "t3": 8,
             "t4": 8, "spo2": 14}
    offsets: dict[str, int] = {}
    position = 0
    for name, size in sizes.items():
        offsets[name] = position
        position += size
    assert (offsets["ecg"], offsets["nibp"], offsets["t1"], offsets["spo2"]) == (
        datex.ECG_GROUP, datex.NIBP_GROUP, datex.T1_GROUP, datex.SPO2_GROUP)
    assert datex.HEADER.size + datex.SR_DESC_COUNT * datex.SR_DESC.size == datex.HEADER_SIZE
    assert datex.PHDB_REQUEST.size == 9


def test_request_is_a_49_byte_phdb_record_asking_for_displayed_values() -> None:
    frame = datex.build_request(5)
    assert frame == (FIXTURES / "request_displayed_5s.bin").read_bytes()
    (record,) = datex.DatexFramer().feed(frame)
    assert isinstance(record, bytes)
    assert len(record) == 49 and struct.unpack_from("<h", record)[0] == 49
    assert struct.unpack_from("<h", record, 14)[0] == datex.DRI_MT_PHDB
    assert datex.parse_request(record) == datex.PhdbRequest(datex.DRI_PH_DISPL, 5, 0)


def test_fixture_record_decodes_to_the_displayed_values_with_device_time() -> None:
    events = datex.DatexDecoder().feed((FIXTURES / "displayed_normal.bin").read_bytes())
    values = {m.metric: (m.value, m.unit) for m in by_metric(events).values()}
    assert values == {
        "systolic": (Decimal("124.00"), "mm[Hg]"),
        "diastolic": (Decimal("78.00"), "mm[Hg]"),
        "mean_arterial": (Decimal("93.00"), "mm[Hg]"),
        "pulse_nibp": (Decimal("71"), "/min"),
        "temperature": (Decimal("36.71"), "Cel"),
        "spo2": (Decimal("97.00"), "%"),
        "pulse_oximeter": (Decimal("70"), "/min"),
    }
    assert all(e.flags == frozenset() for e in by_metric(events).values())
    # The monitor's wall clock as it reads, with no zone (see the module docstring).
    assert {e.device_time for e in by_metric(events).values()} == {dt.datetime(2026, 11, 25, 9, 46, 40)}


def test_simulator_is_byte_exact_with_the_fixture() -> None:
    assert DatexSimulator("normal", 7).receive(datex.build_request(5)) == (
        FIXTURES / "displayed_normal.bin").read_bytes()


NIBP_FIELDS = sum(field.group == datex.NIBP_GROUP for field in datex.FIELDS)
FOUR_RECORDS_ONE_NIBP_RESULT = 4 * len(datex.FIELDS) - 3 * NIBP_FIELDS
"""Every value of four records, but the NIBP result (repeated unchanged by the monitor) only once."""


@pytest.mark.parametrize("scenario", ["normal", "artifact", "sensor-off", "garbage"])
def test_stream_decodes_the_same_whole_and_byte_by_byte(scenario: str) -> None:
    stream = pushed_stream(scenario)
    whole = datex.DatexDecoder().feed(stream)
    single = decode_split(datex.DatexDecoder(), stream, "bytes")
    assert whole == single
    assert sum(isinstance(e, Measurement) for e in whole) == FOUR_RECORDS_ONE_NIBP_RESULT


def test_artifact_scenario_flags_ecg_artifact_and_withholds_oximetry() -> None:
    events = datex.DatexDecoder().feed(pushed_stream("artifact", records=1))
    assert DeviceState in {type(e) for e in events}
    assert next(e for e in events if isinstance(e, DeviceState)).flags == {"artifact"}
    found = by_metric(events)
    for metric in ("spo2", "pulse_oximeter"):
        assert found[metric].value is None
        assert found[metric].flags == {"no_data", "not_updated"}
    assert found["systolic"].value is not None


def test_sensor_off_scenario_reports_inactive_groups_as_sensor_off_without_values() -> None:
    found = by_metric(datex.DatexDecoder().feed(pushed_stream("sensor-off", records=1)))
    for metric in ("spo2", "pulse_oximeter", "temperature"):
        assert found[metric].value is None
        assert found[metric].flags == {"no_data", "sensor_off", "invalid"}
    assert found["diastolic"].value is not None and not found["diastolic"].flags


def test_garbage_scenario_rejects_noise_and_corrupt_frames_and_keeps_every_good_record() -> None:
    events = datex.DatexDecoder().feed(pushed_stream("garbage", records=4))
    rejected = [e for e in events if isinstance(e, FrameRejected)]
    assert rejected and {"checksum"} <= {e.reason for e in rejected}
    assert sum(isinstance(e, Measurement) for e in events) == FOUR_RECORDS_ONE_NIBP_RESULT
    assert all(e.value is not None for e in events if isinstance(e, Measurement))


@pytest.mark.parametrize(("raw", "flag"), sorted(datex.SPECIAL_VALUES.items()) + [(-32100, "invalid")])
def test_special_values_are_flags_never_numbers(raw: int, flag: str) -> None:
    field = datex.FIELDS[0]
    measurement = datex._value(raw, field, frozenset(), None)
    assert measurement.value is None
    assert measurement.flags == {"no_data", flag}


def test_absent_module_produces_no_events_for_its_values() -> None:
    simulator = DatexSimulator("normal", 1)
    record = bytearray(simulator.record())
    start = datex.HEADER_SIZE + datex.CLASS_OFFSET
    struct.pack_into("<I", record, start + datex.T1_GROUP, 0)
    found = by_metric(datex.DatexDecoder().feed(datex.encode_frame(bytes(record))))
    assert "temperature" not in found and "spo2" in found


def test_wrong_checksum_is_rejected_and_the_next_good_frame_decodes() -> None:
    record = DatexSimulator("normal", 1).record()
    bad = b"\x7e" + datex.stuff(record + bytes(((sum(record) + 1) & 0xFF,))) + b"\x7e"
    decoder = datex.DatexDecoder()
    assert decoder.feed(bad) == [FrameRejected("checksum", len(datex.stuff(record)) + 1)]
    assert len(by_metric(decoder.feed(datex.encode_frame(record)))) == len(datex.FIELDS)


def test_truncated_frame_is_rejected_once_and_decoding_resumes_at_the_next_frame() -> None:
    frame = datex.encode_frame(DatexSimulator("normal", 1).record())
    events = datex.DatexDecoder().feed(frame[: len(frame) // 2] + frame)
    assert [type(e) for e in events[:1]] == [FrameRejected]
    assert len(by_metric(events)) == len(datex.FIELDS)


def test_checksum_valid_record_with_wrong_length_field_is_rejected() -> None:
    record = bytearray(DatexSimulator("normal", 1).record())
    struct.pack_into("<h", record, 0, len(record) + 2)
    assert datex.DatexDecoder().feed(datex.encode_frame(bytes(record))) == [
        FrameRejected("length mismatch", len(record))]


def test_random_bytes_as_from_a_wrong_baud_rate_give_no_reading_and_a_bounded_buffer() -> None:
    decoder = datex.DatexDecoder()
    events = feed_random_bytes(decoder, 20261126, 200, 700)
    assert events and all(isinstance(e, FrameRejected) for e in events)
    good = datex.encode_frame(DatexSimulator("normal", 1).record())
    assert len(by_metric(decoder.feed(b"\x7e" + good))) == len(datex.FIELDS)


def test_oversize_frame_is_dropped_without_growing_the_buffer() -> None:
    decoder = datex.DatexDecoder()
    events = decoder.feed(b"\x7e" + b"\x01" * (decoder.max_frame + 500))
    assert events == [FrameRejected("oversize frame", decoder.max_frame)]
    assert decoder.buffered == 0
    good = datex.encode_frame(DatexSimulator("normal", 1).record())
    events = decoder.feed(good)
    assert events[0] == FrameRejected("oversize frame", 500)
    assert len(by_metric(events)) == len(datex.FIELDS)


def test_conversation_request_is_answered_and_then_pushed_every_interval() -> None:
    decoder = datex.DatexDecoder(interval=5)
    simulator = DatexSimulator("normal", 2)
    assert simulator.output(1.0) == b""
    assert len(by_metric(decoder.feed(simulator.receive(decoder.on_connect())))) == len(datex.FIELDS)
    assert simulator.output(3.0) == b""
    assert len(by_metric(decoder.feed(simulator.output(6.0)))) == len(datex.FIELDS) - NIBP_FIELDS
    assert simulator.receive(datex.build_request(0)) == b""
    assert simulator.output(60.0) == b""


def test_poll_repeats_the_request_only_after_the_monitor_went_quiet() -> None:
    decoder = datex.DatexDecoder(interval=5)
    simulator = DatexSimulator("normal", 2)
    decoder.feed(simulator.receive(decoder.on_connect()))
    assert decoder.poll(0.0) == b""
    assert decoder.poll(10.0) == b""
    decoder.feed(simulator.output(10.0))
    assert decoder.poll(14.0) == b""
    assert decoder.poll(28.9) == b""
    assert decoder.poll(29.0) == datex.build_request(5)


def test_driver_is_registered_with_the_interface_serial_settings() -> None:
    driver = drivers.get("datex-as3")
    assert (driver.serial.baudrate, driver.serial.bytesize, driver.serial.parity, driver.serial.stopbits,
            driver.serial.rtscts) == (19200, 8, "E", 1, True)
    assert driver.poll_interval is not None and driver.quiet_timeout > 5
    assert isinstance(driver.decoder(), datex.DatexDecoder)
    assert isinstance(driver.simulator("sensor-off", 4), DatexSimulator)
    assert DatexSimulator("unplug", 4).receive(datex.build_request(5)) == DatexSimulator("normal", 4).receive(
        datex.build_request(5))
    with pytest.raises(ValueError):
        driver.simulator("smoke", 4)


def with_nibp_label(label: bytes) -> bytes:
    """The simulator's first record with the NIBP group's label word (little-endian on the wire) replaced."""
    record = bytearray(DatexSimulator("normal", 1).record())
    at = datex.HEADER_SIZE + datex.CLASS_OFFSET + datex.NIBP_GROUP + datex.LABEL_OFFSET
    record[at : at + 2] = label
    return datex.encode_frame(bytes(record))


NIBP_METRICS = ("systolic", "diastolic", "mean_arterial", "pulse_nibp")


@pytest.mark.parametrize(("label", "flag"), [(b"\x20\x00", "in_progress"), (b"\x80\x00", "calibrating"),
                                             (b"\x00\x01", "old_result")])
def test_nibp_label_states_withhold_the_shown_result(label: bytes, flag: str) -> None:
    found = by_metric(datex.DatexDecoder().feed(with_nibp_label(label)))
    for metric in NIBP_METRICS:
        assert found[metric].value is None
        assert found[metric].flags == {"no_data", flag}
    assert found["spo2"].value is not None and found["temperature"].value is not None


def test_nibp_auto_stat_and_stasis_bits_leave_the_result_as_it_is() -> None:
    found = by_metric(datex.DatexDecoder().feed(with_nibp_label(b"\x58\x00")))
    assert all(found[metric].value is not None and not found[metric].flags for metric in NIBP_METRICS)


def test_simulated_cuff_measures_for_part_of_every_minute_and_each_result_is_reported_once() -> None:
    simulator = DatexSimulator("normal", 2)
    decoder = datex.DatexDecoder()
    decoder.feed(simulator.receive(datex.build_request(5)))
    states = {}
    for second in range(5, 65, 5):
        systolic = by_metric(decoder.feed(simulator.output(float(second)))).get("systolic")
        states[second] = None if systolic is None else "measuring" if "in_progress" in systolic.flags else "result"
    assert states == {5: None, 10: None, 15: None, 20: None, 25: None, 30: None, 35: None,
                      40: "measuring", 45: "measuring", 50: "measuring", 55: "result", 60: None}


def test_a_repeated_nibp_result_is_not_reported_again_unless_a_cuff_cycle_came_between() -> None:
    """The monitor repeats its last result in every record: the next patient must never be offered it."""
    decoder = datex.DatexDecoder()
    first = by_metric(decoder.feed(with_nibp_label(b"\x00\x00")))
    assert all(first[metric].value is not None for metric in NIBP_METRICS)
    repeat = by_metric(decoder.feed(with_nibp_label(b"\x00\x00")))
    assert not set(NIBP_METRICS) & set(repeat) and repeat["spo2"].value is not None
    decoder.feed(with_nibp_label(b"\x20\x00"))
    again = by_metric(decoder.feed(with_nibp_label(b"\x00\x00")))
    assert all(again[metric].value == first[metric].value for metric in NIBP_METRICS)


def test_nibp_only_monitor_reports_blood_pressure_and_nothing_else() -> None:
    found = by_metric(datex.DatexDecoder().feed(pushed_stream("nibp-only", records=1)))
    assert set(found) == set(NIBP_METRICS)
    assert all(m.value is not None for m in found.values())
