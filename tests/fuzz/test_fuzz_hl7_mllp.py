"""Property tests of the MLLP decoder: chunking invariance, closed failure set, bounded buffer.

The invariant is the one h11's fuzz harness states: any input either decodes or
raises the package's protocol error, never anything else, and the answer does
not depend on how the bytes were split into reads.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from hl7.mllp import MLLPDecoder
from hl7.mllp import MLLPProtocolError
from hl7.mllp import encode_frame

MAX_FRAME = 64

messages = st.binary(max_size=MAX_FRAME).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))
# Arbitrary bytes biased towards the framing characters, so the interesting paths are hit often.
wire_bytes = st.lists(
    st.one_of(st.sampled_from([b"\x0b", b"\x1c", b"\x0d", b"MSH|"]), st.binary(max_size=8)),
    max_size=40,
).map(b"".join)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def decode(chunks: list[bytes], max_frame: int = MAX_FRAME) -> tuple[list[bytes], bool]:
    """Feed ``chunks`` in order; returns every frame produced (including those an error carried) and
    whether the stream ended in an error. Any exception other than MLLPProtocolError escapes."""
    decoder = MLLPDecoder(max_frame)
    frames: list[bytes] = []
    for chunk in chunks:
        try:
            frames += decoder.feed(chunk)
        except MLLPProtocolError as exc:
            frames += exc.completed
            assert len(exc.partial) <= max_frame
            return frames, True
        assert decoder.buffered <= max_frame
    return frames, False


@settings(max_examples=300)
@given(st.lists(messages, max_size=6), st.lists(st.booleans(), min_size=6, max_size=6), st.lists(st.integers(0, 10**6)))
def test_valid_streams_decode_the_same_however_split(
    payloads: list[bytes], trailing_cr: list[bool], cuts: list[int]
) -> None:
    wire = b"".join(
        encode_frame(p) if cr else encode_frame(p)[:-1] for p, cr in zip(payloads, trailing_cr, strict=False)
    )
    assert decode([wire]) == (payloads, False)
    assert decode(split(wire, cuts)) == (payloads, False)
    assert decode([bytes([b]) for b in wire]) == (payloads, False)


@settings(max_examples=500)
@given(wire_bytes, st.lists(st.integers(0, 10**6)))
def test_arbitrary_bytes_give_frames_or_protocol_error_independent_of_splitting(data: bytes, cuts: list[int]) -> None:
    whole = decode([data])
    assert decode(split(data, cuts)) == whole
    assert decode([bytes([b]) for b in data]) == whole


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=4 * MAX_FRAME), st.lists(st.integers(0, 10**6)))
def test_buffer_never_exceeds_max_frame(body: bytes, cuts: list[int]) -> None:
    data = b"\x0b" + body.replace(b"\x0b", b"").replace(b"\x1c", b"")
    frames, failed = decode(split(data, cuts))
    assert frames == []
    assert failed == (len(data) - 1 > MAX_FRAME)
