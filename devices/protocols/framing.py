"""Framing and stream helpers shared by every device decoder.

Besides its own frame layout, every decoder has the same chores: hold the
frame in progress within a fixed bound and skip one that outgrows it, account
for bytes it had to throw away while hunting for the next frame, split text
protocols into bounded lines, and tell the gateway when a device condition
(sensor off, low battery) starts or stops. They live here once so the decoders
keep only what is specific to their wire format, and so a fix to a bound or a
rejection count is made in one place for every device.
"""

from __future__ import annotations

import re
import typing as t

from devices.protocols.base import DeviceState
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected

T = t.TypeVar("T")

NO_DATA = "no_data"
SENSOR_OFF = "sensor_off"
ARTIFACT = "artifact"
LOW_BATTERY = "low_battery"
IN_PROGRESS = "in_progress"
"""A measurement is under way (a cuff inflating, a thermometer predicting): shown as such, never charted."""

CONDITION_FLAGS: frozenset[str] = frozenset(
    {SENSOR_OFF, LOW_BATTERY, "battery_critical", "sensor_fault", "no_sensor", "defective_sensor",
     "unrecognised_sensor", "device_error"}
)
"""Flags that describe the device rather than one value; a change in them becomes a DeviceState."""


class RejectionSink(t.Protocol):
    """Anything rejections can be appended to (an event list, or a list of frames and rejections)."""

    def append(self, item: FrameRejected, /) -> None:
        """Add ``item`` at the end."""


def sum8(data: bytes | bytearray | memoryview) -> int:
    """Sum of ``data`` modulo 256, the checksum most of these devices use."""
    return sum(data) & 0xFF


class Discards:
    """Counts bytes dropped while resynchronising and reports them as one FrameRejected per run.

    A run ends when the next good frame is found, or when it reaches ``limit``
    bytes: reporting in fixed-size pieces keeps the report independent of how
    the stream was chunked and still tells the gateway, during a stream of pure
    noise (a wrong baud rate), that bytes are being rejected.
    The reason of a run is the reason of its first byte (a failed checksum
    explains the garbage that follows better than "no sync" does).
    """

    __slots__ = ("_limit", "_reason", "_size")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._size = 0
        self._reason = ""

    def add(self, size: int, reason: str, out: RejectionSink) -> None:
        """Record ``size`` dropped bytes, reporting into ``out`` whenever a run is full."""
        if self._size == 0:
            self._reason = reason
        self._size += size
        while self._size >= self._limit:
            out.append(FrameRejected(self._reason, self._limit))
            self._size -= self._limit

    def flush(self, out: RejectionSink) -> None:
        """Report the run in progress, if any (called just before a good frame's events)."""
        if self._size:
            out.append(FrameRejected(self._reason, self._size))
            self._size = 0


def hunt(buf: bytearray, marker: bytes, i: int, discards: Discards, out: RejectionSink) -> tuple[int, bool]:
    """Move from ``i`` to the next ``marker`` in ``buf``, recording the skipped bytes as "no sync".

    Returns the new position and whether a marker starts there. Without one,
    the last ``len(marker) - 1`` bytes are kept, since they may be its first part.
    """
    start = buf.find(marker, i)
    found = start >= 0
    if not found:
        start = max(i, len(buf) - len(marker) + 1)
    if start > i:
        discards.add(start - i, "no sync", out)
    return start, found


class ByteScanner(t.Generic[T]):
    """Base of the decoders that scan a byte buffer for frames they know by sync bytes, length and checksum.

    :meth:`feed` appends the new bytes, lets :meth:`_scan` consume every
    complete frame and every byte it rules out, and keeps only the rest: a
    frame still arriving, which ``_scan`` never lets grow past ``max_frame``.
    Bytes ruled out go through ``_discards``, reported in runs of at most
    ``discard_run`` bytes.
    """

    def __init__(self, max_frame: int, discard_run: int) -> None:
        self.max_frame = max_frame
        self.frames = 0
        """Frames that passed their checks (a subclass counts them in ``_scan``)."""
        self._buf = bytearray()
        self._discards = Discards(discard_run)

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[T | FrameRejected]:
        """Consume ``data``; return what the frames it completed yield, and rejections, in stream order."""
        out: list[T | FrameRejected] = []
        buf = self._buf
        buf += data
        del buf[: self._scan(buf, out)]
        return out

    def _scan(self, buf: bytearray, out: list[T | FrameRejected]) -> int:
        """Decode from the start of ``buf`` into ``out``; return how many bytes were consumed."""
        raise NotImplementedError


class FrameBuffer:
    """The frame in progress, held to at most ``max_frame`` bytes.

    A frame that outgrows the bound is reported once, as ``oversize`` of
    ``max_frame`` bytes, the moment it crosses it; the rest of it is only
    counted, and reported when the frame ends. Memory therefore stays bounded
    whatever the sender does, and the sizes reported add up to the bytes
    dropped however the stream was chunked.

    :param max_frame: the bound, in wire bytes.
    :param oversize: the rejection reason of a frame past the bound.
    """

    __slots__ = ("_buffer", "_oversize", "_skipped", "max_frame")

    def __init__(self, max_frame: int, oversize: str) -> None:
        self.max_frame = max_frame
        self._oversize = oversize
        self._buffer = bytearray()
        self._skipped = -1

    def __len__(self) -> int:
        return len(self._buffer)

    def take(self, chunk: bytes, out: RejectionSink) -> None:
        """Add ``chunk`` to the frame, or only count it once the frame is past the bound."""
        if self._skipped >= 0:
            self._skipped += len(chunk)
            return
        room = self.max_frame - len(self._buffer)
        if len(chunk) <= room:
            self._buffer += chunk
            return
        out.append(FrameRejected(self._oversize, self.max_frame))
        self._buffer.clear()
        self._skipped = len(chunk) - room

    def close(self, out: RejectionSink) -> bytes | None:
        """End the frame: its bytes, or ``None`` when it was empty or oversize (its rest reported into ``out``)."""
        if self._skipped >= 0:
            if self._skipped:
                out.append(FrameRejected(self._oversize, self._skipped))
            self._skipped = -1
            return None
        if not self._buffer:
            return None
        raw = bytes(self._buffer)
        self._buffer.clear()
        return raw

    def drop(self, reason: str, out: RejectionSink) -> None:
        """Abandon the frame (its end never came), reporting what it held as ``reason``."""
        raw = self.close(out)
        if raw:
            out.append(FrameRejected(reason, len(raw)))


class BlockFramer:
    """Splits a byte stream into blocks that open with one byte and close with another.

    Bytes outside blocks are reported as ``outside`` at the next start byte, or
    in ``max_frame`` runs during a stream of noise, so the report does not
    depend on chunking. A start byte inside a block drops the unfinished one as
    ``unterminated``; an end byte outside a block is noise. ``trailer`` is an
    optional byte a sender may put after the end byte (MLLP's CR): it is
    swallowed when present, even when it arrives in the next chunk.

    Subclasses check a complete block in :meth:`_block`; by default it is
    passed on as it is.
    """

    __slots__ = ("_after_end", "_delimiters", "_end", "_frame", "_in_block", "_junk", "_outside", "_start",
                 "_trailer", "_unterminated", "max_frame")

    def __init__(self, start: int, end: int, max_frame: int, *, outside: str, oversize: str, unterminated: str,
                 trailer: bytes = b"") -> None:
        self.max_frame = max_frame
        self._start = start
        self._end = end
        self._delimiters = re.compile(b"[" + re.escape(bytes((start, end))) + b"]")
        self._outside = outside
        self._unterminated = unterminated
        self._trailer = trailer
        self._frame = FrameBuffer(max_frame, oversize)
        self._junk = Discards(max_frame)
        self._in_block = False
        self._after_end = False

    @property
    def buffered(self) -> int:
        """Bytes held for the block in progress."""
        return len(self._frame)

    def feed(self, data: bytes) -> list[bytes | FrameRejected]:
        """Return the blocks and rejections completed by ``data``."""
        out: list[bytes | FrameRejected] = []
        frame = self._frame
        pos = 0
        if self._after_end and data[:1] == self._trailer:
            pos = 1
        if data:
            self._after_end = False
        while True:
            match = self._delimiters.search(data, pos)
            end = len(data) if match is None else match.start()
            if self._in_block:
                frame.take(data[pos:end], out)
            else:
                self._junk.add(end - pos, self._outside, out)
            if match is None:
                return out
            pos = end + 1
            if data[end] == self._start:
                if self._in_block:
                    frame.drop(self._unterminated, out)
                else:
                    self._junk.flush(out)
                self._in_block = True
            elif not self._in_block:
                self._junk.add(1, self._outside, out)
            else:
                self._in_block = False
                raw = frame.close(out)
                if raw is not None:
                    self._block(raw, out)
                if not self._trailer:
                    continue
                if pos == len(data):
                    self._after_end = True
                elif data[pos : pos + 1] == self._trailer:
                    pos += 1

    def _block(self, raw: bytes, out: list[bytes | FrameRejected]) -> None:
        """Check one complete block and append it, or its rejection, to ``out``."""
        out.append(raw)


class LineFramer:
    """Splits a byte stream into LF-terminated lines while holding at most ``max_line`` bytes.

    A line that grows past ``max_line`` without an LF is dropped in
    ``max_line``-sized pieces and its tail is dropped when the LF finally comes,
    so a device sending binary at the wrong baud rate cannot grow memory. A CR
    before the LF is removed; lone CRs stay in the line for the parser to judge.
    """

    __slots__ = ("_buffer", "_max_line", "_overlong")

    def __init__(self, max_line: int) -> None:
        self._max_line = max_line
        self._buffer = bytearray()
        self._overlong = False

    @property
    def buffered(self) -> int:
        """Bytes held for the line in progress."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | FrameRejected]:
        """Return the lines (without CR LF) and overflow rejections completed by ``data``."""
        out: list[bytes | FrameRejected] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            self._take(data[start:] if end < 0 else data[start:end], out)
            if end < 0:
                return out
            line = bytes(self._buffer)
            self._buffer.clear()
            if self._overlong:
                self._overlong = False
                out.append(FrameRejected("line too long", len(line) + 1))
            else:
                out.append(line[:-1] if line.endswith(b"\r") else line)
            start = end + 1

    def _take(self, chunk: bytes, out: list[bytes | FrameRejected]) -> None:
        self._buffer += chunk
        while len(self._buffer) > self._max_line:
            del self._buffer[: self._max_line]
            self._overlong = True
            out.append(FrameRejected("line too long", self._max_line))


class LineDecoder:
    """Base of the text-line decoders: bounded lines, line noise stripped, each non-blank line to :meth:`_line`.

    A subclass sets ``max_line`` (its bound, also its ``max_frame``) and reads
    one line in :meth:`_line`. Line noise (see :func:`strip_line_noise`) is
    reported as a rejection unless it is at most ``silent_noise`` bytes, which a
    device known to send a stray byte after its output sets.
    """

    max_line = 256
    silent_noise = 0

    def __init__(self) -> None:
        self.max_frame = self.max_line
        self.frames = 0
        self._lines = LineFramer(self.max_line)

    @property
    def buffered(self) -> int:
        """Bytes held for the line in progress."""
        return self._lines.buffered

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data``; return the events of the lines it completed, in stream order."""
        out: list[Event] = []
        silent_noise = self.silent_noise
        for line in self._lines.feed(data):
            if isinstance(line, FrameRejected):
                out.append(line)
                continue
            dropped, line = strip_line_noise(line)
            if dropped > silent_noise:
                out.append(FrameRejected("line noise", dropped))
            if line.strip():
                self.frames += 1
                self._line(line, out)
        return out

    def _line(self, line: bytes, out: list[Event]) -> None:
        """Append the events of one line (CR LF and noise removed, never blank) to ``out``."""
        raise NotImplementedError


def key_values(text: str) -> tuple[list[str], dict[str, str]]:
    """Split a whitespace-separated line into bare tokens and ``KEY=value`` pairs.

    Parsing generic pairs instead of a fixed pattern per model is what keeps one
    decoder working across firmware versions that add, drop or reorder fields.
    """
    bare: list[str] = []
    pairs: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep and key:
            pairs[key.upper()] = value
        else:
            bare.append(token)
    return bare, pairs


class ConditionTracker:
    """Emits a DeviceState when the set of device-condition flags changes.

    Measurements already carry their flags; this gives the station page one
    event when, say, the finger comes out, instead of one per frame.
    """

    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: frozenset[str] = frozenset()

    def update(self, flags: frozenset[str], out: list[Event], detail: str = "") -> None:
        """Compare the condition part of ``flags`` with the last one seen; report a change into ``out``."""
        conditions = flags & CONDITION_FLAGS
        if conditions != self._current:
            self._current = conditions
            out.append(DeviceState(conditions, detail or ("cleared" if not conditions else "")))


_PRINTABLE = bytes(range(0x20, 0x7F))


def strip_line_noise(line: bytes) -> tuple[int, bytes]:
    """Split ``line`` after its last byte that is not printable ASCII: (noise length, rest).

    Text devices send only printable ASCII, so anything up to the last other byte
    is line noise (a plug-in glitch, Tanita's stray signal after output, the tail
    of a frame sent at another baud rate). Dropping it lets the good text after it
    still be read: resynchronisation inside a line.
    """
    unprintable = line.translate(None, _PRINTABLE)
    if not unprintable:
        return 0, line
    end = max(line.rfind(bytes((byte,))) for byte in set(unprintable)) + 1
    return end, line[end:]
