"""MLLP framing, sans-I/O: ``0x0B`` + message + ``0x1C 0x0D``.

The decoder is handed bytes as they arrive (socket, TLS stream, file replay,
fuzzer) and returns the complete frames those bytes finished. It holds no
socket, clock or thread, so the client, the listener and the tests share it.

Theory of operation: the stream is either *outside* a frame, where the only
legal bytes are a start block (``0x0B``) and the single carriage return that
ends the previous frame, or *inside* one, where bytes accumulate until the end
block (``0x1C``). A frame is complete at ``0x1C``; the trailing ``0x0D`` is
accepted but not required, because some senders omit it and the next start
block is unambiguous anyway.

Invariants:

* Chunking invariance: the frames returned (plus :attr:`MLLPProtocolError.completed`)
  are the same whether the stream arrives whole, byte by byte or split anywhere.
* Closed failure set: any input yields frames or :class:`MLLPProtocolError`,
  never another exception type.
* Bounded memory: the partial frame never exceeds ``max_frame`` bytes.
* No silent resynchronisation: bytes outside a frame, a start block inside a
  frame and an oversize frame are errors, and the decoder stays failed. The
  connection is not trustworthy after that, so the caller closes it.

Segments inside a frame end with ``\\r`` only; field values may contain LF,
so nothing here (or anywhere in :mod:`hl7`) splits on ``\\n``.
"""

from __future__ import annotations

import typing as t

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
DEFAULT_MAX_FRAME = 1024 * 1024

_START = START_BLOCK[0]
_END = END_BLOCK[0]
_CR = CARRIAGE_RETURN[0]


class MLLPProtocolError(Exception):
    """The byte stream broke MLLP framing; the connection must be closed.

    :param reason: what went wrong, for logs (never contains message bytes).
    :param completed: frames that were complete earlier in the same
        :meth:`MLLPDecoder.feed` call. They are valid and must not be lost just
        because garbage followed them in the same read.
    :param partial: the bytes of the frame that was being read when the error
        happened (at most ``max_frame``). The listener reads MSH from it to
        answer an oversize message with an AR before closing.
    """

    def __init__(self, reason: str, *, completed: tuple[bytes, ...] = (), partial: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.completed = completed
        self.partial = partial


def encode_frame(message: bytes) -> bytes:
    """Wrap one HL7 message in MLLP start and end blocks.

    :raises ValueError: if ``message`` contains a start or end block byte. Such
        a message would be cut in two by every receiver, so it is refused here
        rather than sent corrupted.
    """
    if START_BLOCK in message or END_BLOCK in message:
        raise ValueError("message contains an MLLP block character (0x0B or 0x1C)")
    return START_BLOCK + message + END_BLOCK + CARRIAGE_RETURN


class MLLPDecoder:
    """Incremental MLLP frame decoder with a bounded buffer.

    :param max_frame: the largest message accepted, in bytes, excluding the
        block characters. The default (1 MiB) fits any vitals or ADT message
        many times over while keeping a hostile or broken sender from growing
        the buffer without limit.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be at least 1")
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._in_frame = False
        # One carriage return may follow an end block; anything else outside a frame is an error.
        self._after_end = False
        self._failed: str | None = None

    @property
    def in_frame(self) -> bool:
        """True while a frame has started and not ended (EOF now would truncate it)."""
        return self._in_frame

    @property
    def buffered(self) -> int:
        """Bytes of the partial frame held so far."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data`` and return the frames it completed, in stream order.

        Runs in time linear in ``len(data)``: the end block is found with
        ``bytes.find`` and each byte is copied at most once.

        :raises MLLPProtocolError: on bytes outside a frame, a start block inside
            a frame, an oversize frame, or any call after an earlier failure.
        """
        if self._failed is not None:
            raise MLLPProtocolError(f"decoder already failed: {self._failed}")
        frames: list[bytes] = []
        i = 0
        n = len(data)
        while i < n:
            if not self._in_frame:
                byte = data[i]
                if byte == _START:
                    self._in_frame = True
                elif byte != _CR or not self._after_end:
                    self._fail("bytes outside a frame", frames)
                self._after_end = False
                i += 1
                continue
            end = data.find(END_BLOCK, i)
            stop = n if end < 0 else end
            if data.find(START_BLOCK, i, stop) >= 0:
                self._fail("start block inside a frame", frames)
            if len(self._buffer) + (stop - i) > self.max_frame:
                self._buffer += data[i : i + self.max_frame - len(self._buffer)]
                self._fail(f"frame larger than {self.max_frame} bytes", frames)
            self._buffer += data[i:stop]
            if end < 0:
                break
            frames.append(bytes(self._buffer))
            self._buffer.clear()
            self._in_frame = False
            self._after_end = True
            i = end + 1
        return frames

    def _fail(self, reason: str, frames: list[bytes]) -> t.NoReturn:
        partial = bytes(self._buffer)
        self._failed = reason
        self._buffer.clear()
        raise MLLPProtocolError(reason, completed=tuple(frames), partial=partial)
