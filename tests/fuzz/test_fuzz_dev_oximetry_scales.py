"""Property tests for the oximeter, thermometer and scale decoders.

Invariants (devices/protocols/base.py): any bytes give only events or
ProtocolError; the buffer never exceeds ``max_frame``; the events do not depend
on how the stream is split; every emitted measurement normalises; after any
garbage the decoder finds the next good frames again.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from devices import drivers
from devices.normalise import normalise
from devices.protocols.base import DeviceState
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.protocols.base import ProtocolError
from devices.protocols.nonin import DF8_LOCK_FRAMES

NAMES = ("nonin-df2", "nonin-df7", "nonin-df8", "nonin-df13", "nonin-ascii", "masimo-ascii", "suretemp",
         "tanita", "ricelake", "healthometer")
HOST_TIME = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
READINGS_PER_UNIT = {"nonin-df2": 2, "nonin-df7": 2, "nonin-df8": 2 * DF8_LOCK_FRAMES, "nonin-df13": 2,
                     "nonin-ascii": 2, "masimo-ascii": 3, "suretemp": 0, "tanita": 3, "ricelake": 1, "healthometer": 2}
"""Measurements in one unit (frame, packet, line, record): how many a resynchronisation may cost
(DF8, without a checksum, relocks only after four frames line up)."""
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def device_stream(name: str, seed: int) -> bytes:
    """A few seconds of the simulated device's normal output (or its answers to polls)."""
    driver = drivers.get(name)
    simulator = driver.simulator("normal", seed)
    if driver.poll_interval is None:
        step = 10.0 if name in ("tanita", "ricelake", "healthometer", "nonin-df13") else 0.5
        units = 3 * DF8_LOCK_FRAMES if name == "nonin-df8" else 6
        return b"".join(simulator.output(k * step) for k in range(units))
    decoder = driver.decoder()
    return b"".join(simulator.receive(decoder.poll(k * driver.poll_interval)) for k in range(40))


def feed_split(name: str, data: bytes, cuts: list[int]) -> list[Event]:
    decoder = drivers.get(name).decoder()
    events: list[Event] = []
    start = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]:
        try:
            events.extend(decoder.feed(data[start:cut]))
        except ProtocolError:
            events.append(FrameRejected("protocol error", cut - start))
        assert decoder.buffered <= decoder.max_frame
        start = cut
    return events


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=20))
def test_any_bytes_give_events_and_a_bounded_buffer(name: str, data: bytes, cuts: list[int]) -> None:
    events = feed_split(name, data, cuts)
    assert all(isinstance(e, Measurement | DeviceState | FrameRejected) for e in events)
    assert events == feed_split(name, data, [])
    for event in events:
        if isinstance(event, Measurement):
            normalise(event, device_id="d", station="s", host_time=HOST_TIME, host_monotonic=0.0)


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(seed=st.integers(0, 2**16), garbage=st.binary(min_size=1, max_size=300),
       position=st.integers(min_value=0), cuts=st.lists(st.integers(min_value=0, max_value=8000), max_size=30))
def test_garbage_inside_a_stream_is_survived_and_resynchronised(name: str, seed: int, garbage: bytes,
                                                               position: int, cuts: list[int]) -> None:
    head = device_stream(name, seed)
    tail = device_stream(name, seed + 1)
    at = position % (len(head) + 1)
    damaged = head[:at] + garbage + head[at:] + tail
    events = feed_split(name, damaged, cuts)
    assert events == feed_split(name, damaged, [])
    expected = [e for e in feed_split(name, tail, []) if isinstance(e, Measurement)][READINGS_PER_UNIT[name]:]
    got = [e for e in events if isinstance(e, Measurement)]
    assert expected, "the simulator stream must carry readings"
    # Garbage may cost the unit it touches and the next one (resync within one frame), nothing after that.
    assert got[-len(expected):] == expected


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(seed=st.integers(0, 2**16), flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)),
                                                  min_size=1, max_size=5))
def test_corrupted_bytes_never_crash(name: str, seed: int, flips: list[tuple[int, int]]) -> None:
    damaged = bytearray(device_stream(name, seed))
    for position, mask in flips:
        damaged[position % len(damaged)] ^= mask
    events = feed_split(name, bytes(damaged), [7, 100, 333])
    assert all(isinstance(e, Measurement | DeviceState | FrameRejected) for e in events)
