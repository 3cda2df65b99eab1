"""Philips IntelliVue MIB/RS232: FCS vectors, framing, association, polling, numerics, scenarios."""

from __future__ import annotations

import datetime as dt
import random
import struct
from decimal import Decimal

import pytest

from devices import drivers
from devices.protocols import intellivue as iv
from devices.protocols.base import DeviceState
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.simulators.intellivue import IntelliVueSimulator
from tests.dev_helpers import DEVICE_FIXTURES
from tests.dev_helpers import by_metric
from tests.dev_helpers import decode_split
from tests.dev_helpers import feed_random_bytes
from tests.dev_helpers import measurements

FIXTURES = DEVICE_FIXTURES / "intellivue"


def associated(scenario: str = "normal", seed: int = 7) -> tuple[iv.IntelliVueDecoder, IntelliVueSimulator]:
    decoder = iv.IntelliVueDecoder()
    simulator = IntelliVueSimulator(scenario, seed)
    decoder.feed(simulator.receive(decoder.on_connect()))
    return decoder, simulator


def monitor_stream(scenario: str, polls: int = 4) -> bytes:
    """Everything the monitor sent during an association and ``polls`` poll rounds."""
    simulator = IntelliVueSimulator(scenario, 7)
    decoder = iv.IntelliVueDecoder()
    stream = simulator.receive(decoder.on_connect())
    decoder.feed(stream)
    for second in range(polls):
        answer = simulator.receive(decoder.poll(float(second)))
        decoder.feed(answer)
        stream += answer
    return stream


@pytest.mark.parametrize(("frame", "payload", "fcs"), [
    ("C0 3A 71 9B 26 C1", "3A 71", 0x269B),
    ("C0 3A 91 95 7D E1 C1", "3A 91", 0xC195),
])
def test_reference_fcs_vectors(frame: str, payload: str, fcs: int) -> None:
    wire, data = bytes.fromhex(frame), bytes.fromhex(payload)
    assert iv.fcs16(data) ^ 0xFFFF == fcs
    assert iv.fcs16(data + fcs.to_bytes(2, "little")) == 0xF0B8
    assert iv.frame_bytes(data) == wire
    assert iv.IntelliVueFramer().feed(wire) == [data]


def bitwise_fcs16(data: bytes) -> int:
    """RFC 1662 section C.1 FCS-16, one bit at a time: the definition the fast version must match."""
    fcs = 0xFFFF
    for byte in data:
        fcs ^= byte
        for _ in range(8):
            fcs = (fcs >> 1) ^ 0x8408 if fcs & 1 else fcs >> 1
    return fcs


def test_fcs_matches_the_bitwise_definition_on_random_data() -> None:
    rng = random.Random(1662)
    for size in (0, 1, 2, 7, 64, 1500):
        data = rng.randbytes(size)
        assert iv.fcs16(data) == bitwise_fcs16(data)
        assert iv.fcs16(data[size // 2 :], iv.fcs16(data[: size // 2])) == bitwise_fcs16(data)


def test_vector_frames_without_a_data_export_header_are_rejected_by_the_decoder() -> None:
    events = iv.IntelliVueDecoder().feed(bytes.fromhex("C03A719B26C1"))
    assert events == [FrameRejected("short frame", 2)]


def test_escaping_covers_both_delimiters_and_the_escape_byte() -> None:
    assert iv.escape(b"\xc0\xc1\x7d\x01") == b"\x7d\xe0\x7d\xe1\x7d\x5d\x01"
    payload = bytes(range(256))
    assert iv.IntelliVueFramer().feed(iv.frame_bytes(payload)) == [payload]


def test_abort_sequence_drops_the_frame() -> None:
    frame = iv.encode_frame(b"\x0e\x00")
    events = iv.IntelliVueFramer().feed(b"\xc0\x11\x01\x00\x7d\xc1" + frame)
    assert events == [FrameRejected("aborted frame", 4), b"\x11\x01\x00\x02\x0e\x00"]


def test_bad_fcs_is_rejected_and_the_next_frame_decodes() -> None:
    good = iv.encode_frame(iv.session_message(iv.AC_SPDU_SI, b"\x00"))
    bad = bytearray(good)
    bad[5] ^= 0x01
    decoder = iv.IntelliVueDecoder()
    events = decoder.feed(bytes(bad) + good)
    assert events == [FrameRejected("checksum", len(good) - 2), DeviceState(frozenset({"associated"}))]


def test_start_of_frame_inside_a_frame_drops_the_unfinished_one() -> None:
    good = iv.encode_frame(iv.session_message(iv.AC_SPDU_SI, b"\x00"))
    events = iv.IntelliVueDecoder().feed(b"\xc0\x11\x01" + good)
    assert events == [FrameRejected("truncated frame", 2), DeviceState(frozenset({"associated"}))]


def test_session_length_indicator_grows_past_254_bytes() -> None:
    assert iv.session_message(iv.AC_SPDU_SI, b"\x01" * 3)[:2] == b"\x0e\x03"
    assert iv.session_message(iv.AC_SPDU_SI, b"\x01" * 300)[:4] == b"\x0e\xff\x01\x2c"
    assert iv.ASSOCIATION_REQUEST[1] == len(iv.ASSOCIATION_REQUEST) - 2


def test_float_codes_and_values() -> None:
    assert iv.decode_float(0x007FFFFF) == "no_data"
    assert iv.decode_float(0x00800000) == "not_resolved"
    assert iv.decode_float(0x007FFFFE) == "over_range"
    assert iv.decode_float(0x00800002) == "under_range"
    assert iv.decode_float(0xFF000170) == Decimal("36.8")
    assert iv.decode_float(0x00FFFFFF) == Decimal("-1")
    assert iv.decode_float(0x0200000C) == Decimal("1200")
    for text in ("36.8", "120", "97", "-4.25"):
        assert iv.decode_float(iv.encode_float(Decimal(text))) == Decimal(text)


def test_absolute_time_is_bcd_and_unset_time_is_none() -> None:
    when = dt.datetime(2026, 11, 26, 9, 30, 12, 450000)
    assert iv.encode_time(when) == bytes.fromhex("2026112609301245")
    assert iv.decode_time(iv.encode_time(when)) == when
    assert iv.decode_time(b"\xff" * 8) is None
    assert iv.decode_time(bytes.fromhex("2026133209301245")) is None


@pytest.mark.parametrize(("state", "flags"), [
    (0x8000, {"invalid", "no_data"}),
    (0x4000, {"questionable", "artifact", "no_data"}),
    (0x2000, {"unavailable", "no_data"}),
    (0x1000, {"calibrating", "no_data"}),
    (0x0800, {"test_data", "no_data"}),
    (0x0400, {"demo_data", "no_data"}),
])
def test_measurement_states_withhold_the_value(state: int, flags: set[str]) -> None:
    value = iv.NU_OBS_VALUE.pack(0x4BB8, state, 0x0220, iv.encode_float(Decimal(97)))
    measurement = iv.numeric(value, None)
    assert measurement is not None and measurement.value is None and measurement.flags == flags


def test_informative_states_keep_the_value_and_unknown_units_do_not() -> None:
    measuring = iv.numeric(iv.NU_OBS_VALUE.pack(0x4A05, 0x0022, 0x0F20, 120), None)
    assert measuring == Measurement("systolic", Decimal(120), "mm[Hg]", frozenset({"measuring", "alarm"}))
    odd_unit = iv.numeric(iv.NU_OBS_VALUE.pack(0x4A05, 0, 0x1234, 120), None)
    assert odd_unit is not None and odd_unit.value is None and "unknown_unit" in odd_unit.flags
    assert iv.numeric(iv.NU_OBS_VALUE.pack(0x0101, 0, 0x0220, 1), None) is None


def test_association_then_mds_create_leads_to_polling_and_readings() -> None:
    decoder = iv.IntelliVueDecoder()
    simulator = IntelliVueSimulator("normal", 7)
    request = decoder.on_connect()
    assert request == (FIXTURES / "association_request.bin").read_bytes()
    assert decoder.state == iv.ASSOCIATING
    answer = simulator.receive(request)
    assert answer == (FIXTURES / "association_result_and_mds_create.bin").read_bytes()
    assert decoder.feed(answer) == [DeviceState(frozenset({"associated"}))]
    assert decoder.state == iv.POLLING
    due = decoder.poll(1.0)
    assert not simulator.mds_confirmed
    reply = simulator.receive(due)
    assert simulator.mds_confirmed
    events = decoder.feed(reply)
    # The reply also carries NOM_PULS_RATE (0x480A, the generic pulse, 9/min higher): never the oximeter's.
    assert len([m for m in measurements(events) if m.metric == "pulse_oximeter"]) == 1
    found = by_metric(events)
    assert {k: (m.value, m.unit) for k, m in found.items()} == {
        "spo2": (Decimal(97), "%"),
        "pulse_oximeter": (Decimal(75), "/min"),
        "systolic": (Decimal(120), "mm[Hg]"),
        "diastolic": (Decimal(80), "mm[Hg]"),
        "mean_arterial": (Decimal(93), "mm[Hg]"),
        "pulse_nibp": (Decimal(74), "/min"),
        "temperature": (Decimal("36.9"), "Cel"),
    }
    assert found["spo2"].device_time == dt.datetime(2026, 11, 26, 9, 0, 0)


@pytest.mark.parametrize(("physio_id", "metric"), [
    (0x4BB8, "spo2"), (0x4822, "pulse_oximeter"), (0xF0E5, "pulse_nibp"), (0x4A05, "systolic"),
    (0x4B48, "temperature"), (0xF108, "temperature_oral"), (0xF110, "temperature_oral"),
    (0xF10C, "temperature_axillary"), (0xE004, "temperature_rectal"), (0x4B78, "temperature_tympanic"),
    (0x480A, None), (0x482A, None), (0x481A, None), (0x4B5C, None), (0xE008, None), (0x4BB0, None),
])
def test_physio_ids_follow_the_philips_list(physio_id: int, metric: str | None) -> None:
    found = iv.numeric(iv.NU_OBS_VALUE.pack(physio_id, 0, 0x0AA0, 72), None)
    assert (found.metric if found else None) == metric


def test_polls_follow_the_poll_period_and_keep_alives_are_answered() -> None:
    decoder, simulator = associated()
    assert decoder.poll(0.0)
    assert decoder.poll(0.5) == b""
    poll = decoder.poll(1.0)
    assert poll and len(by_metric(decoder.feed(simulator.receive(poll)))) == 7
    keep_alive_round = decoder.poll(4.0)
    frames = iv.IntelliVueFramer().feed(keep_alive_round)
    assert len(frames) == 2
    codes = []
    for frame in frames:
        assert isinstance(frame, bytes)
        _, _, _, body = iv.split_data_message(frame[4:])
        codes.append(iv.POLL_REQUEST.unpack_from(body, iv.ACTION_ARGUMENT.size)[2])
    assert codes == [iv.NOM_MOC_VMO_METRIC_NU, iv.NOM_MOC_VMS_MDS]
    events = decoder.feed(simulator.receive(keep_alive_round))
    assert len(by_metric(events)) == 7 and decoder.state == iv.POLLING


def test_polls_before_association_are_ignored_by_the_monitor() -> None:
    simulator = IntelliVueSimulator("normal", 1)
    assert simulator.receive(iv.poll_request(1, 1, iv.NOM_MOC_VMO_METRIC_NU)) == b""


@pytest.mark.parametrize(("scenario", "expected"), [
    ("normal", frozenset()),
    ("artifact", frozenset({"questionable", "artifact", "no_data"})),
    ("sensor-off", frozenset({"unavailable", "no_data"})),
    ("garbage", frozenset()),
])
def test_scenarios_decode_to_their_flags(scenario: str, expected: frozenset[str]) -> None:
    decoder, simulator = associated(scenario)
    decoder.poll(0.0)
    events = decoder.feed(simulator.receive(decoder.poll(1.0)))
    found = by_metric(events)
    for metric in ("spo2", "pulse_oximeter"):
        assert found[metric].flags == expected
        assert (found[metric].value is None) == bool(expected)
    assert found["systolic"].value is not None
    if scenario == "garbage":
        assert any(isinstance(e, FrameRejected) for e in events)


@pytest.mark.parametrize("scenario", ["normal", "garbage"])
def test_monitor_stream_decodes_the_same_whole_and_byte_by_byte(scenario: str) -> None:
    stream = monitor_stream(scenario)
    first, second = iv.IntelliVueDecoder(), iv.IntelliVueDecoder()
    first.on_connect()
    second.on_connect()
    whole = first.feed(stream)
    single = decode_split(second, stream, "bytes")
    assert whole == single and len(by_metric(whole)) == 7


def test_refusal_waits_before_asking_again() -> None:
    decoder = iv.IntelliVueDecoder()
    decoder.on_connect()
    events = decoder.feed(iv.encode_frame(iv.session_message(iv.RF_SPDU_SI, b"\x00")))
    assert events == [DeviceState(frozenset({"association_refused"}))]
    assert decoder.state == iv.UNASSOCIATED
    assert decoder.poll(10.0) == b""
    assert decoder.poll(14.9) == b""
    assert decoder.poll(15.0) == iv.encode_frame(iv.ASSOCIATION_REQUEST)
    assert decoder.state == iv.ASSOCIATING


def test_unanswered_association_request_is_repeated() -> None:
    decoder = iv.IntelliVueDecoder()
    decoder.on_connect()
    assert decoder.poll(0.0) == b""
    assert decoder.poll(iv.ASSOCIATION_TIMEOUT) == iv.encode_frame(iv.ASSOCIATION_REQUEST)


def test_silence_while_polling_drops_the_association_and_reassociates() -> None:
    decoder, simulator = associated()
    decoder.feed(simulator.receive(decoder.poll(0.0)))
    assert decoder.poll(1.0) != b""
    assert decoder.poll(10.9) != b""
    assert decoder.state == iv.POLLING
    assert decoder.poll(11.0) == iv.encode_frame(iv.ASSOCIATION_REQUEST)
    assert decoder.state == iv.ASSOCIATING


def test_release_is_confirmed_and_reported() -> None:
    decoder, simulator = associated()
    events = decoder.feed(simulator.receive(decoder.release()))
    assert events == [DeviceState(frozenset({"association_released"}))]
    assert not simulator.associated


def test_remote_error_and_malformed_messages_do_not_break_the_link() -> None:
    decoder, simulator = associated()
    error = iv.data_message(iv.ROER_APDU, 1, 3, b"")
    malformed = iv.SP_HEADER.pack(iv.DATA_SESSION, 2, iv.RORS_APDU, 40) + b"\x00" * 6
    events = decoder.feed(iv.encode_frame(error) + iv.encode_frame(malformed))
    assert events == [DeviceState(frozenset({"remote_error"}), "error value 3"),
                      FrameRejected("malformed message", 4 + len(malformed))]
    assert decoder.state == iv.POLLING
    assert len(by_metric(decoder.feed(simulator.receive(decoder.poll(0.0))))) == 7


def test_poll_reply_with_lying_list_lengths_is_rejected() -> None:
    decoder, simulator = associated()
    reply = bytearray(simulator.receive(decoder.poll(0.0)))
    (payload,) = iv.IntelliVueFramer().feed(bytes(reply))
    assert isinstance(payload, bytes)
    broken = bytearray(payload)
    list_length_at = 4 + 8 + 6 + 10 + iv.POLL_REPLY_HEAD.size + 2
    struct.pack_into(">H", broken, list_length_at, 0xFFF0)
    assert decoder.feed(iv.frame_bytes(bytes(broken))) == [FrameRejected("malformed message", len(broken))]


def test_random_bytes_give_no_reading_and_a_bounded_buffer() -> None:
    decoder, _ = associated()
    events = feed_random_bytes(decoder, 115200, 200, 900)
    assert events and all(isinstance(e, FrameRejected) for e in events)


def test_oversize_frame_is_dropped_without_growing_the_buffer() -> None:
    decoder = iv.IntelliVueDecoder()
    events = decoder.feed(b"\xc0" + b"\x01" * (decoder.max_frame + 10) + b"\xc1")
    assert events == [FrameRejected("oversize frame", decoder.max_frame), FrameRejected("oversize frame", 10)]
    assert decoder.buffered == 0


def test_driver_is_registered_with_the_mib_serial_settings() -> None:
    driver = drivers.get("intellivue-mib")
    assert (driver.serial.baudrate, driver.serial.bytesize, driver.serial.parity, driver.serial.stopbits,
            driver.serial.rtscts) == (115200, 8, "N", 1, False)
    assert driver.poll_interval is not None and driver.poll_interval <= iv.POLL_PERIOD
    assert isinstance(driver.decoder(), iv.IntelliVueDecoder)
    assert isinstance(driver.simulator("artifact", 4), IntelliVueSimulator)
