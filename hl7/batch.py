"""HL7 batches (``FHS BHS { MSH … } BTS FTS``), sans-I/O: split one into its messages, and acknowledge it.

A batch arrives as one MLLP frame (or one file). HL7 v2.5.1 chapter 2
(2.10.3, "HL7 batch protocol") leaves the acknowledgement to the application
among a few options; we use the first, *all messages are acknowledged in the
response batch*: the answer is a batch of its own whose BHS-12 (reference
batch control id) names the batch it answers and which holds one ACK per
message, in order. The alternative, acknowledging only the messages in error
(an empty response batch meaning "all accepted"), needs an agreement made in
advance and cannot tell a sender that a message was lost; an ACK for each
message can, and lets the sender match every MSA-2 to its MSH-10.

Each message is applied on its own: one message's error does not stop the
others, exactly as if they had been sent one by one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from hl7.er7 import FieldValue
from hl7.er7 import ParseError
from hl7.er7 import Segment
from hl7.er7 import encode_header
from hl7.er7 import encode_segment
from hl7.er7 import format_timestamp
from hl7.er7 import segment_lines
from hl7.escape import Delimiters
from hl7.escape import EncodingError
from hl7.escape import sendable_text

__all__ = ["Batch", "build_batch_ack", "is_batch", "split_batch"]

_HEADERS = (b"FHS", b"BHS")
_TRAILERS = ("BTS", "FTS")


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch split into its messages.

    :param file_header: FHS, when the batch came as a file (``FHS BHS … BTS FTS``).
    :param batch_header: BHS, when sent (a file may hold messages without one).
    :param messages: each message's bytes, segments ending in CR.
    """

    file_header: Segment | None
    batch_header: Segment | None
    messages: tuple[bytes, ...]


def is_batch(data: bytes) -> bool:
    """True when ``data`` starts with a file or batch header (FHS or BHS) rather than MSH."""
    return data.lstrip(b"\r\n")[:3] in _HEADERS


def _header(line: str, name: str) -> Segment:
    if len(line) < 8:
        raise ParseError(f"{name} segment is too short")
    separator = line[3]
    try:
        delimiters = Delimiters.from_msh(separator, line[4:].split(separator, 1)[0])
    except EncodingError as exc:
        raise ParseError(f"bad {name} delimiters: {exc}") from None
    parts = line.split(separator)
    parts.insert(1, separator)
    return Segment(tuple(parts), delimiters, "ascii")


def split_batch(data: bytes) -> Batch:
    """Split a batch into its messages; segment ends may be CR, CRLF or LF, as for single messages.

    Bytes are split before they are decoded, so each message is decoded in the
    charset its own MSH-18 declares. The trailers (BTS, FTS) are read past: the
    messages themselves are what gets acknowledged.

    :raises ParseError: if the data does not start with FHS or BHS, or a segment
        other than BHS comes before the first MSH.
    """
    text = data.lstrip(b"\r\n").decode("latin-1")  # one character per byte: splitting cannot shift a byte
    if text[:3].encode("latin-1") not in _HEADERS:
        raise ParseError("batch does not start with FHS or BHS")
    file_header: Segment | None = None
    batch_header: Segment | None = None
    messages: list[list[str]] = []
    for line in segment_lines(text, text[3]):
        name = line[:3]
        if name == "FHS" and file_header is None and batch_header is None and not messages:
            file_header = _header(line, name)
        elif name == "BHS" and batch_header is None and not messages:
            batch_header = _header(line, name)
        elif name in _TRAILERS:
            continue
        elif name == "MSH":
            messages.append([line])
        elif messages:
            messages[-1].append(line)
        else:
            raise ParseError(f"segment {name!r} before the first MSH of the batch")
    return Batch(file_header, batch_header, tuple(("\r".join(m) + "\r").encode("latin-1") for m in messages))


def _answer_header(name: str, original: Segment, control_id: str, now: dt.datetime) -> str:
    """FHS or BHS of the response: sender and receiver swapped, our id, and the original's id as reference."""
    fields: dict[int, FieldValue] = {
        3: sendable_text(original.value(5)),
        4: sendable_text(original.value(6)),
        5: sendable_text(original.value(3)),
        6: sendable_text(original.value(4)),
        7: format_timestamp(now),
        11: control_id,
        12: sendable_text(original.value(11)),
    }
    return encode_header(name, fields)


def build_batch_ack(batch: Batch, acks: Sequence[bytes], *, control_id: str, now: dt.datetime) -> bytes:
    """The response batch: FHS (if the original had one), BHS, one ACK per message, BTS, FTS.

    BTS-1 counts the ACKs and FTS-1 the batches (one). The ACKs keep the charset
    each was built in; the envelope is ASCII.

    :param acks: each message's ACK, in the order of ``batch.messages``.
    :param control_id: FHS-11 and BHS-11 of the response.
    """
    envelope = Segment(("BHS", "|", "^~\\&"), Delimiters(), "ascii")
    header = [_answer_header("BHS", batch.batch_header or batch.file_header or envelope, control_id, now)]
    if batch.file_header is not None:
        header.insert(0, _answer_header("FHS", batch.file_header, control_id, now))
    trailer = [encode_segment("BTS", {1: str(len(acks))})]
    if batch.file_header is not None:
        trailer.append(encode_segment("FTS", {1: "1"}))
    start = ("\r".join(header) + "\r").encode("ascii", errors="replace")
    end = ("\r".join(trailer) + "\r").encode("ascii")
    return start + b"".join(acks) + end
