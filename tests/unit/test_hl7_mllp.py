from __future__ import annotations

import pytest

from hl7.mllp import MLLPDecoder
from hl7.mllp import MLLPProtocolError
from hl7.mllp import encode_frame

MSG_A = b"MSH|^~\\&|KIOSK|FAMCLINIC|EHR|FAMCLINIC|20261126093012+0000||ADT^A04^ADT_A01|A1|P|2.6\rPID|||1\r"
MSG_B = b"MSH|^~\\&|KIOSK|FAMCLINIC|EHR|FAMCLINIC|20261126093013+0000||ADT^A04^ADT_A01|B2|P|2.6\r"


def test_encode_frame_wraps_in_block_characters() -> None:
    assert encode_frame(b"MSH|x\r") == b"\x0bMSH|x\r\x1c\x0d"


@pytest.mark.parametrize("bad", [b"MSH|\x0b|x", b"MSH|\x1c|x"])
def test_encode_frame_refuses_block_characters_in_message(bad: bytes) -> None:
    with pytest.raises(ValueError):
        encode_frame(bad)


def test_one_frame_whole() -> None:
    assert MLLPDecoder().feed(encode_frame(MSG_A)) == [MSG_A]


def test_frame_split_byte_by_byte() -> None:
    decoder = MLLPDecoder()
    frames: list[bytes] = []
    for byte in encode_frame(MSG_A):
        frames += decoder.feed(bytes([byte]))
    assert frames == [MSG_A]
    assert not decoder.in_frame


def test_frame_split_inside_utf8_sequence() -> None:
    message = "MSH|^~\\&|K|F|E|F|20261126||ADT^A04|Z1|P|2.6\rPID|||1||Müller^Zoë\r".encode()
    wire = encode_frame(message)
    cut = wire.index("ü".encode()) + 1
    decoder = MLLPDecoder()
    assert decoder.feed(wire[:cut]) == []
    assert decoder.in_frame
    assert decoder.feed(wire[cut:]) == [message]


def test_back_to_back_frames_in_one_read() -> None:
    assert MLLPDecoder().feed(encode_frame(MSG_A) + encode_frame(MSG_B)) == [MSG_A, MSG_B]


def test_missing_trailing_cr_is_tolerated() -> None:
    wire = b"\x0b" + MSG_A + b"\x1c" + b"\x0b" + MSG_B + b"\x1c"
    assert MLLPDecoder().feed(wire) == [MSG_A, MSG_B]


def test_lf_inside_a_value_is_message_content() -> None:
    message = b"MSH|^~\\&|K|F\rNTE|1||line one\nline two\r"
    assert MLLPDecoder().feed(encode_frame(message)) == [message]


def test_empty_frame_is_returned_as_empty_message() -> None:
    assert MLLPDecoder().feed(b"\x0b\x1c\x0d") == [b""]


@pytest.mark.parametrize(
    "wire",
    [
        b"MSH|garbage",
        b"\x0d\x0bMSH\x1c\x0d",
        b"\x0bMSH\x1c\x0d\x0d",
        b"\x0bMSH\x1c\x0d\n",
        b"\x0bMSH|\x0bMSH\x1c\x0d",
    ],
)
def test_bytes_outside_a_frame_raise(wire: bytes) -> None:
    with pytest.raises(MLLPProtocolError):
        MLLPDecoder().feed(wire)


def test_error_keeps_frames_completed_in_the_same_read() -> None:
    with pytest.raises(MLLPProtocolError) as info:
        MLLPDecoder().feed(encode_frame(MSG_A) + b"junk")
    assert info.value.completed == (MSG_A,)


def test_decoder_stays_failed() -> None:
    decoder = MLLPDecoder()
    with pytest.raises(MLLPProtocolError):
        decoder.feed(b"x")
    with pytest.raises(MLLPProtocolError):
        decoder.feed(encode_frame(MSG_A))


def test_frame_of_exactly_max_frame_is_accepted() -> None:
    assert MLLPDecoder(max_frame=len(MSG_A)).feed(encode_frame(MSG_A)) == [MSG_A]


def test_oversize_frame_raises_with_bounded_partial_holding_msh() -> None:
    decoder = MLLPDecoder(max_frame=40)
    with pytest.raises(MLLPProtocolError) as info:
        for byte in encode_frame(MSG_A):
            decoder.feed(bytes([byte]))
    assert "larger" in info.value.reason
    assert info.value.partial == MSG_A[:40]
    assert decoder.buffered == 0


def test_oversize_detected_before_end_block_arrives() -> None:
    decoder = MLLPDecoder(max_frame=10)
    with pytest.raises(MLLPProtocolError):
        decoder.feed(b"\x0b" + b"A" * 11)


def test_max_frame_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MLLPDecoder(max_frame=0)


def test_in_frame_and_buffered_track_a_partial_frame() -> None:
    decoder = MLLPDecoder()
    decoder.feed(b"\x0bMSH|")
    assert decoder.in_frame
    assert decoder.buffered == 4
    decoder.feed(b"\x1c\x0d")
    assert not decoder.in_frame
    assert decoder.buffered == 0
