"""Nonin decoders: reference frames, simulator streams, chunking invariance, flags and resync."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest

from devices import drivers
from devices.protocols import nonin
from devices.protocols.base import DeviceState
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.simulators.nonin import NoninSimulator
from tests.dev_helpers import DEVICE_FIXTURES
from tests.dev_helpers import BoundedDecoder
from tests.dev_helpers import decode_split
from tests.dev_helpers import measurements
from tests.dev_helpers import read_hex
from tests.dev_helpers import same_events_every_split

FIXTURES = DEVICE_FIXTURES / "nonin"
FORMATS = ("df2", "df7", "df8", "df13", "ascii")
STREAMING = ("df2", "df7", "df8")


def hex_fixture(name: str) -> bytes:
    return read_hex(FIXTURES / name)


def decoder_for(data_format: str) -> BoundedDecoder:
    decoder = drivers.get(f"nonin-{data_format}").decoder()
    assert isinstance(decoder, BoundedDecoder)
    return decoder


def decode(data_format: str, data: bytes, split: str = "whole") -> list[Event]:
    return decode_split(decoder_for(data_format), data, split)


def simulated(data_format: str, scenario: str, seconds: float = 12.0, seed: int = 7) -> bytes:
    simulator = NoninSimulator(data_format, scenario, seed)
    step = 0.25
    return b"".join(simulator.output(k * step) for k in range(int(seconds / step) + 1))


def test_df8_frames_are_trusted_once_four_line_up() -> None:
    # Frames built from the spec's byte table (p. 15); the spec prints no sample frame.
    good, no_data = hex_fixture("df8_spo2_97_hr_72.hex"), hex_fixture("df8_no_data_sensor_alarm.hex")
    assert decode("df8", good * 3) == []
    assert decode("df8", good * 3 + no_data) == [
        Measurement("spo2", Decimal(97), "%"),
        Measurement("pulse_oximeter", Decimal(72), "/min"),
    ] * 3 + [
        DeviceState(frozenset({"sensor_off"})),
        Measurement("spo2", None, "%", frozenset({"no_data", "sensor_off"})),
        Measurement("pulse_oximeter", None, "/min", frozenset({"no_data", "sensor_off"})),
    ]


def test_df8_lone_frames_wait_for_confirmation_then_stream() -> None:
    # No checksum: a few frames alone could be noise, so they are held until four line up.
    decoder = nonin.Df8Decoder()
    frame = hex_fixture("df8_spo2_97_hr_72.hex")
    assert decoder.feed(frame * 3) == []
    assert len(measurements(decoder.feed(frame))) == 8
    assert len(measurements(decoder.feed(b"\x11\x22" + frame))) == 2


def test_df8_reserved_bits_are_ignored() -> None:
    frame = bytes((0x80 | 0x40, 72, 97, 0x56))  # every bit the 9560 spec marks reserved (R) or SPA, set
    assert measurements(decode("df8", frame * 4))[:2] == [Measurement("spo2", Decimal(97), "%"),
                                                          Measurement("pulse_oximeter", Decimal(72), "/min")]


def test_df8_artifact_keeps_the_displayed_values() -> None:
    frame = nonin.encode_df8(72, 97, frozenset({"artifact"}))
    assert measurements(decode("df8", frame * 4))[:2] == [
        Measurement("spo2", Decimal(97), "%", frozenset({"artifact"})),
        Measurement("pulse_oximeter", Decimal(72), "/min", frozenset({"artifact"}))]


def test_df13_reference_frames() -> None:
    data = hex_fixture("df13_spa_hr72_spo2_97.hex") + hex_fixture("df13_noms.hex")
    when = dt.datetime(2025, 6, 15, 14, 30, 5)
    absent = frozenset({"no_data", "low_quality"})
    assert decode("df13", data) == [
        Measurement("spo2", Decimal(97), "%", device_time=when),
        Measurement("pulse_oximeter", Decimal(72), "/min", device_time=when),
        Measurement("spo2", None, "%", absent, when),
        Measurement("pulse_oximeter", None, "/min", absent, when),
    ]


@pytest.mark.parametrize(("data_format", "fixtures"), [
    ("df8", ("df8_spo2_97_hr_72.hex", "df8_spo2_97_hr_72.hex", "df8_no_data_sensor_alarm.hex")),
    ("df13", ("df13_spa_hr72_spo2_97.hex", "df13_noms.hex")),
])
def test_reference_frames_in_any_split(data_format: str, fixtures: tuple[str, ...]) -> None:
    data = b"".join(hex_fixture(name) for name in fixtures) * 3
    whole = decode(data_format, data)
    assert len(measurements(whole)) == 2 * len(fixtures) * 3
    assert decode(data_format, data, "bytes") == whole
    assert decode(data_format, data, "chunks-9") == whole


@pytest.mark.parametrize("data_format", STREAMING)
def test_registered_driver_settings(data_format: str) -> None:
    driver = drivers.get(f"nonin-{data_format}")
    assert (driver.serial.baudrate, driver.serial.bytesize, driver.serial.parity, driver.serial.stopbits) == \
        (9600, 8, "N", 1)
    assert driver.quiet_timeout == 3.0 and driver.poll_interval is None


def test_df13_encoder_reproduces_the_reference_frame() -> None:
    frame = nonin.encode_df13(72, 97, frozenset(), dt.datetime(2025, 6, 15, 14, 30, 5))
    assert frame == hex_fixture("df13_spa_hr72_spo2_97.hex")


@pytest.mark.parametrize(("layout", "fixture", "pleth"), [(nonin.DF2, "df2_frame1.hex", 0x80),
                                                           (nonin.DF7, "df7_frame1.hex", 0x1234)])
def test_stream_reference_frame_starts_a_packet(layout: nonin.StreamLayout, fixture: str, pleth: int) -> None:
    first = hex_fixture(fixture)
    assert nonin.encode_stream_frame(layout, nonin.STATUS_SYNC, pleth, 0) == first
    floats = nonin.stream_floats(72, 97, 0)
    rest = b"".join(nonin.encode_stream_frame(layout, 0x02, 0x40, value) for value in floats[1:])
    decoder = nonin.StreamDecoder(layout)
    assert decoder.feed(first) == []
    assert decoder.buffered == 0
    assert decoder.feed(rest) == [Measurement("spo2", Decimal(97), "%"),
                                  Measurement("pulse_oximeter", Decimal(72), "/min")]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("scenario", ("normal", "artifact", "sensor-off", "garbage"))
def test_chunking_does_not_change_events(data_format: str, scenario: str) -> None:
    data = simulated(data_format, scenario, seconds=8.0 if data_format != "df13" else 30.0)
    whole = same_events_every_split(lambda split: decode(data_format, data, split))
    assert measurements(whole)


@pytest.mark.parametrize("data_format", FORMATS)
def test_normal_scenario_gives_charted_values(data_format: str) -> None:
    events = decode(data_format, simulated(data_format, "normal", seconds=30.0))
    values = measurements(events)
    assert len(values) >= 4
    assert not [e for e in events if isinstance(e, FrameRejected)]
    assert all(m.value is not None and m.flags <= {"from_memory"} for m in values)
    assert all(Decimal(90) <= m.value <= Decimal(100) for m in values if m.metric == "spo2" and m.value)


@pytest.mark.parametrize(("data_format", "flag", "voids"), [("df2", "artifact", False),
                                                           ("df7", "artifact", False),
                                                           ("df8", "artifact", False),
                                                           ("df13", "low_quality", False),
                                                           ("ascii", "no_data", True)])
def test_artifact_scenario_flags(data_format: str, flag: str, voids: bool) -> None:
    values = measurements(decode(data_format, simulated(data_format, "artifact", seconds=30.0)))
    flagged = [m for m in values if flag in m.flags]
    assert flagged and len(flagged) < len(values)
    assert all((m.value is None) == voids for m in flagged)


@pytest.mark.parametrize("data_format", FORMATS)
def test_sensor_off_scenario_never_charts_a_number(data_format: str) -> None:
    events = decode(data_format, simulated(data_format, "sensor-off", seconds=30.0))
    values = measurements(events)
    assert values and all(m.value is None and "no_data" in m.flags for m in values)
    if data_format in STREAMING:
        assert all("sensor_off" in m.flags for m in values)
        assert [e for e in events if isinstance(e, DeviceState)] == [DeviceState(frozenset({"sensor_off"}))]


@pytest.mark.parametrize("data_format", FORMATS)
def test_garbage_scenario_rejects_noise_and_keeps_good_frames(data_format: str) -> None:
    events = decode(data_format, simulated(data_format, "garbage", seconds=40.0))
    assert any(isinstance(e, FrameRejected) for e in events)
    values = measurements(events)
    assert len(values) >= 8
    assert all(m.value is not None and m.flags <= {"from_memory"} for m in values)


@pytest.mark.parametrize("data_format", FORMATS)
def test_resynchronises_after_garbage(data_format: str) -> None:
    clean = simulated(data_format, "normal", seconds=30.0, seed=3)
    noise = bytes(random.Random(5).randrange(256) for _ in range(300))
    expected = measurements(decode(data_format, clean))
    events = decode(data_format, noise + clean)
    assert any(isinstance(e, FrameRejected) for e in events)
    got = measurements(events)
    # The first unit may be swallowed while resynchronising; everything after it decodes as without noise.
    assert got == expected[len(expected) - len(got):]
    assert len(got) >= len(expected) - 4


@pytest.mark.parametrize("data_format", FORMATS)
def test_wrong_baud_rate_gives_no_reading(data_format: str) -> None:
    noise = random.Random(data_format).randbytes(20000)
    events = decode(data_format, noise, "chunks-3")
    assert not measurements(events)
    assert sum(e.size for e in events if isinstance(e, FrameRejected)) > 10000


def test_bad_checksum_is_rejected_and_the_next_frame_decodes() -> None:
    good = hex_fixture("df13_spa_hr72_spo2_97.hex")
    bad = good[:-2] + bytes(((good[-2] + 1) & 0xFF,)) + good[-1:]
    events = decode("df13", bad + good)
    assert events[0] == FrameRejected("bad checksum", len(bad))
    assert measurements(events) == measurements(decode("df13", good))


def test_truncated_df13_frame_then_good_frame() -> None:
    good = hex_fixture("df13_spa_hr72_spo2_97.hex")
    events = decode("df13", good[:15] + good)
    assert isinstance(events[0], FrameRejected)
    assert measurements(events) == measurements(decode("df13", good))


def test_df13_invalid_clock_keeps_the_reading() -> None:
    frame = bytearray(hex_fixture("df13_spa_hr72_spo2_97.hex"))
    frame[8] = 0x13  # month 13, as after a battery change
    frame[20] = sum(frame[6:20]) & 0xFF
    values = measurements(decode("df13", bytes(frame)))
    assert [m.value for m in values] == [Decimal(97), Decimal(72)]
    assert all(m.device_time is None and m.flags == {"bad_device_time"} for m in values)


def test_df13_memory_replay_is_flagged() -> None:
    values = measurements(decode("df13", simulated("df13", "normal", seconds=1.0)))
    assert values and all(m.flags == {"from_memory"} for m in values)
    assert all(m.device_time is not None for m in values)


@pytest.mark.parametrize("data_format", ("df2", "df7", "df8", "df13"))
def test_set_format_on_connect_and_its_ack(data_format: str) -> None:
    decoder = decoder_for(data_format)
    assert isinstance(decoder, nonin.StreamDecoder | nonin.Df8Decoder | nonin.Df13Decoder)
    command = decoder.on_connect()
    assert command == bytes((0x02, 0x70, 0x02, 0x02, nonin.FORMAT_CODES[data_format], 0x03))
    assert decoder.poll(10.0) == b""
    reply = NoninSimulator(data_format, "normal", 1).receive(command)
    assert reply == b"\x06"
    assert decoder.feed(reply) == [DeviceState(frozenset({"format_accepted"}), f"data format "
                                               f"{nonin.FORMAT_CODES[data_format]:#04x} selected")]


def test_nak_is_reported_and_unawaited_ack_is_noise() -> None:
    decoder = nonin.Df8Decoder()
    assert decoder.feed(b"\x06") == []
    decoder.on_connect()
    events = decoder.feed(b"\x15")
    assert [e for e in events if isinstance(e, DeviceState)][0].flags == {"format_rejected"}


def test_simulator_naks_a_malformed_command_and_buffers_split_ones() -> None:
    simulator = NoninSimulator("df8", "normal", 1)
    command = nonin.set_format_command(0x08)
    assert simulator.receive(command[:3]) == b""
    assert simulator.receive(command[3:] + bytes.fromhex("02 70 02 02 FF 03")) == b"\x06\x15"


def test_df8_layout_is_chosen_per_device() -> None:
    frame = bytes((0x80 | 0x40, 72, 97, 0x02))
    documented = drivers.get("nonin-df8").decoder()
    assert measurements(documented.feed(frame * 4))[0] == Measurement("spo2", Decimal(97), "%")
    other = drivers.get("nonin-df8").decoder(df8_layout="extended-status")
    assert measurements(other.feed(frame * 4))[0] == Measurement("spo2", None, "%",
                                                                  frozenset({"sensor_off", "battery_critical"}))


def packet(layout: nonin.StreamLayout, statuses: list[int], floats: list[int]) -> bytes:
    return b"".join(nonin.encode_stream_frame(layout, status | (nonin.STATUS_SYNC if k == 0 else 0), 0x40, value)
                    for k, (status, value) in enumerate(zip(statuses, floats, strict=True)))


@pytest.mark.parametrize("layout", [nonin.DF2, nonin.DF7])
def test_one_artifact_frame_keeps_the_packet_values_and_flags_them(layout: nonin.StreamLayout) -> None:
    statuses = [nonin.GREEN] * 25
    statuses[6] |= 0x20
    events = nonin.StreamDecoder(layout).feed(packet(layout, statuses, nonin.stream_floats(72, 97, 0)))
    assert measurements(events) == [Measurement("spo2", Decimal(97), "%", frozenset({"artifact"})),
                                    Measurement("pulse_oximeter", Decimal(72), "/min", frozenset({"artifact"}))]


@pytest.mark.parametrize("layout", [nonin.DF2, nonin.DF7])
def test_packet_reports_the_display_values(layout: nonin.StreamLayout) -> None:
    # During sustained artifact the recording values (frames 1-3) go to "missing"; the display ones stay.
    floats = nonin.stream_floats(72, 97, 0)
    floats[0], floats[1], floats[2] = 0x03, 0x7F, 127
    events = nonin.StreamDecoder(layout).feed(packet(layout, [nonin.GREEN] * 25, floats))
    assert [m.value for m in measurements(events)] == [Decimal(97), Decimal(72)]


@pytest.mark.parametrize(("colours", "flag"), [
    ((nonin.GREEN, nonin.RED), {"low_perfusion"}),
    ((nonin.GREEN, nonin.YELLOW), {"marginal_perfusion"}),
    ((nonin.GREEN, nonin.GREEN), set()),
    ((nonin.RED, nonin.YELLOW), {"low_perfusion"}),
])
def test_perfusion_is_read_per_frame_not_ored(colours: tuple[int, int], flag: set[str]) -> None:
    statuses = [colours[0]] * 12 + [colours[1]] * 13
    events = nonin.StreamDecoder(nonin.DF2).feed(packet(nonin.DF2, statuses, nonin.stream_floats(72, 97, 0)))
    assert all(m.flags == flag and m.value is not None for m in measurements(events))


@pytest.mark.parametrize("data_format", ["df2", "df7", "df8", "df13"])
def test_reserved_bits_scenario_charts_every_value(data_format: str) -> None:
    events = decode(data_format, simulated(data_format, "reserved-bits", seconds=30.0))
    values = measurements(events)
    assert len(values) >= 4
    assert not [e for e in events if isinstance(e, FrameRejected)]
    assert all(m.value is not None and m.flags <= {"from_memory"} for m in values)


@pytest.mark.parametrize("data_format", ["df2", "df7"])
def test_perfusion_scenario_is_red_not_yellow(data_format: str) -> None:
    values = measurements(decode(data_format, simulated(data_format, "perfusion")))
    assert values and all(m.flags == {"low_perfusion"} and m.value is not None for m in values)


@pytest.mark.parametrize(("line", "spo2", "hr", "flags"), [
    (b"SPO2=097 HR=072\r\n", Decimal(97), Decimal(72), frozenset()),
    (b"SPO2=095 HR=101 F\r\n", Decimal(95), Decimal(101), frozenset({"fast_averaging"})),
    (b"12:00:01 SPO2=098 HR=066*\r\n", Decimal(98), Decimal(66), frozenset({"event_marked"})),
    (b"SPO2=--- HR=---\r\n", None, None, frozenset({"no_data"})),
])
def test_ascii_lines(line: bytes, spo2: Decimal | None, hr: Decimal | None, flags: frozenset[str]) -> None:
    absent = {"no_data"} if spo2 is None else set()
    assert decode("ascii", line) == [Measurement("spo2", spo2, "%", flags | absent),
                                     Measurement("pulse_oximeter", hr, "/min", flags | absent)]


@pytest.mark.parametrize("line", [b"SPO2=097\r\n", b"SPO2=197 HR=072\r\n", b"SPO2=9x7 HR=072\r\n",
                                  b"hello\r\n"])
def test_ascii_malformed_lines_are_rejected(line: bytes) -> None:
    events = decode("ascii", line)
    assert len(events) == 1 and isinstance(events[0], FrameRejected)


def test_ascii_overlong_line_is_dropped_with_a_bounded_buffer() -> None:
    decoder = nonin.AsciiDecoder()
    events = decoder.feed(b"X" * 500)
    assert decoder.buffered <= decoder.max_frame
    events += decoder.feed(b"\r\nSPO2=097 HR=072\r\n")
    assert sum(e.size for e in events if isinstance(e, FrameRejected)) == 502
    assert len(measurements(events)) == 2
