"""Property tests for the multi-parameter monitor decoders (datex-as3, intellivue-mib, hl7-monitor).

The invariants of :mod:`devices.protocols.base`, checked on arbitrary input:
only events or ProtocolError come out, the buffer never exceeds ``max_frame``,
and the events do not depend on how the stream was chunked.
"""

from __future__ import annotations

import typing as t

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from devices import drivers
from devices.protocols import datex
from devices.protocols import hl7_monitor
from devices.protocols import intellivue
from devices.protocols.base import DeviceState
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.protocols.base import ProtocolError
from tests.dev_helpers import BoundedDecoder

DRIVER_NAMES = ("datex-as3", "intellivue-mib", "hl7-monitor")
EVENT_TYPES = (Measurement, DeviceState, FrameRejected)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decoder_for(name: str) -> BoundedDecoder:
    decoder = drivers.get(name).decoder()
    on_connect = getattr(decoder, "on_connect", None)
    if on_connect is not None:
        on_connect()
    assert isinstance(decoder, BoundedDecoder)
    return decoder


def feed_checked(decoder: BoundedDecoder, chunks: list[bytes]) -> list[object]:
    events: list[object] = []
    for chunk in chunks:
        try:
            produced = decoder.feed(chunk)
        except ProtocolError:
            continue
        assert all(isinstance(event, EVENT_TYPES) for event in produced)
        assert decoder.buffered <= decoder.max_frame
        events += produced
    return events


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def recorded_stream(name: str, seed: int) -> bytes:
    """What the device sent during a short conversation in the garbage scenario."""
    driver = drivers.get(name)
    simulator = driver.simulator("garbage", seed)
    decoder = driver.decoder()
    stream = b""
    outgoing = getattr(decoder, "on_connect", lambda: b"")()
    for tick in range(12):
        now = tick * 2.5
        incoming = simulator.receive(outgoing) + simulator.output(now)
        decoder.feed(incoming)
        stream += incoming
        outgoing = getattr(decoder, "poll", lambda _now: b"")(now)
    return stream


@FUZZ
@given(name=st.sampled_from(DRIVER_NAMES), chunks=st.lists(st.binary(max_size=600), max_size=12))
def test_arbitrary_bytes_give_only_events_and_a_bounded_buffer(name: str, chunks: list[bytes]) -> None:
    feed_checked(decoder_for(name), chunks)


@FUZZ
@given(name=st.sampled_from(DRIVER_NAMES), seed=st.integers(0, 2**16), cuts=st.lists(st.integers(0, 10**6)))
def test_events_do_not_depend_on_chunking(name: str, seed: int, cuts: list[int]) -> None:
    stream = recorded_stream(name, seed)
    whole = feed_checked(decoder_for(name), [stream])
    assert feed_checked(decoder_for(name), split(stream, cuts)) == whole
    assert any(isinstance(event, Measurement) for event in whole)


@FUZZ
@given(record=st.binary(max_size=1500), garbage=st.binary(max_size=64))
def test_datex_checksum_valid_frames_with_any_content(record: bytes, garbage: bytes) -> None:
    frame = datex.encode_frame(record)
    feed_checked(decoder_for("datex-as3"), [garbage, frame, frame[: len(frame) // 2], frame])


@FUZZ
@given(body=st.binary(max_size=400), data_export=st.booleans())
def test_intellivue_fcs_valid_frames_with_any_user_data(body: bytes, data_export: bool) -> None:
    user_data = (intellivue.SP_HEADER.pack(intellivue.DATA_SESSION, 2, 2, len(body)) + body) if data_export else body
    decoder = decoder_for("intellivue-mib")
    feed_checked(decoder, [intellivue.encode_frame(user_data), intellivue.frame_bytes(body)])
    t.cast(intellivue.IntelliVueDecoder, decoder).poll(100.0)


@FUZZ
@given(text=st.text(max_size=400), obx=st.lists(st.text(max_size=60), max_size=8))
def test_hl7_blocks_with_any_text(text: str, obx: list[str]) -> None:
    header = "MSH|^~\\&|MON|WARD|||20261126100000+0000||ORU^R01|X|P|2.6"
    message = "\r".join([header, *("OBX|" + row for row in obx), text])
    feed_checked(decoder_for("hl7-monitor"), [hl7_monitor.encode_block(message), hl7_monitor.encode_block(text)])
