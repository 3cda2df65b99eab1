"""What the device decoder tests share: fixture files, feeding a stream in pieces, picking out measurements.

Every decoder must give the same events however its stream is split and must
never hold more than ``max_frame`` bytes; the helpers here feed streams the
ways a serial port can deliver them and check the bound after every piece, so
each protocol's tests state only what is specific to that protocol.
"""

from __future__ import annotations

import random
import typing as t
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from devices.protocols.base import Event
from devices.protocols.base import Measurement
from devices.simulators._common import split_randomly

DEVICE_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "devices"
"""Recorded and published device streams, one folder per protocol family."""


@t.runtime_checkable
class BoundedDecoder(t.Protocol):
    """A decoder that says how many bytes it holds (every decoder in ``devices.protocols`` does).

    Runtime-checkable so a test can check that a driver's decoder has the
    surface, rather than assume it.
    """

    max_frame: int

    @property
    def buffered(self) -> int:
        """Bytes held for the frame in progress."""
        ...

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data`` and return the events it completed."""
        ...


def read_hex(path: Path) -> bytes:
    """A hex dump fixture as bytes; lines starting with ``#`` are comments (the source of the dump)."""
    lines = path.read_text().splitlines()
    return bytes.fromhex(" ".join(line for line in lines if not line.startswith("#")))


def decode_split(decoder: BoundedDecoder, data: bytes, split: str = "whole") -> list[Event]:
    """Feed ``data`` to ``decoder`` and return every event, checking the buffer bound after each piece.

    :param split: ``"whole"`` (one call), ``"bytes"`` (one byte per call), or
        any other string, which seeds a random split into 1..64-byte reads.
    """
    if split == "whole":
        return decoder.feed(data)
    if split == "bytes":
        pieces = [data[i:i + 1] for i in range(len(data))]
    else:
        pieces = split_randomly(data, random.Random(split))
    events: list[Event] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
        assert decoder.buffered <= decoder.max_frame
    return events


def same_events_every_split(decode: t.Callable[[str], list[Event]]) -> list[Event]:
    """Decode one stream whole, byte by byte and in two random splits; assert the events agree and return them.

    :param decode: decodes the stream under test with a fresh decoder, split
        as :func:`decode_split` understands its argument.
    """
    whole = decode("whole")
    for split in ("bytes", "chunks-1", "chunks-2"):
        assert decode(split) == whole, f"the {split!r} split changed the events"
    return whole


def feed_random_bytes(decoder: BoundedDecoder, seed: int, reads: int, longest: int) -> list[Event]:
    """Events from ``reads`` random reads of 1..``longest - 1`` bytes (a wrong baud rate, a bad cable).

    The buffer bound is checked after every read.
    """
    rng = random.Random(seed)
    events: list[Event] = []
    for _ in range(reads):
        events += decoder.feed(rng.randbytes(rng.randrange(1, longest)))
        assert decoder.buffered <= decoder.max_frame
    return events


def measurements(events: t.Iterable[object]) -> list[Measurement]:
    """The measurements among ``events``, in stream order."""
    return [e for e in events if isinstance(e, Measurement)]


def by_metric(events: t.Iterable[object]) -> dict[str, Measurement]:
    """The last measurement of each metric among ``events``."""
    return {e.metric: e for e in measurements(events)}


@dataclass(frozen=True)
class VendorSample:
    """A sample frame or line transcribed from a vendor manual or a cited public capture.

    File format (``*.sample`` under :data:`DEVICE_FIXTURES`), one directive a line:

    * ``# ...``: the source, page and date, and anything the transcription had to decide;
    * ``driver NAME`` and optionally ``option KEY VALUE`` (a ``[[devices]]`` decoder option);
    * ``text ...``: bytes as text with Python escapes (``\\r``, ``\\n``, ``\\x1b``); ``hex ...``: bytes in hex;
      several data lines are concatenated in order;
    * ``expect METRIC VALUE UNIT [FLAG,FLAG]``: one measurement the vendor says the bytes mean, in order;
      ``VALUE`` ``-`` means no value (the device reported a state, not a number);
    * ``rejected N``: how many rejections the bytes must produce (0 when absent).
    """

    path: Path
    driver: str
    options: dict[str, str]
    data: bytes
    expected: list[Measurement]
    rejected: int


def read_sample(path: Path) -> VendorSample:
    """Parse one ``*.sample`` file (see :class:`VendorSample`)."""
    driver = ""
    options: dict[str, str] = {}
    data = bytearray()
    expected: list[Measurement] = []
    rejected = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        directive, _, rest = line.partition(" ")
        if not line.strip() or line.startswith("#"):
            continue
        if directive == "driver":
            driver = rest.strip()
        elif directive == "option":
            key, value = rest.split()
            options[key] = value
        elif directive == "text":
            data += rest.encode("latin-1").decode("unicode_escape").encode("latin-1")
        elif directive == "hex":
            data += bytes.fromhex(rest)
        elif directive == "expect":
            metric, value, unit, *flags = rest.split()
            expected.append(Measurement(metric, None if value == "-" else Decimal(value), unit,
                                        frozenset(flags[0].split(",")) if flags else frozenset()))
        elif directive == "rejected":
            rejected = int(rest)
        else:
            raise ValueError(f"{path.name}: unknown directive {directive!r}")
    return VendorSample(path, driver, options, bytes(data), expected, rejected)


def vendor_samples() -> list[Path]:
    """Every vendor sample file, sorted."""
    return sorted(DEVICE_FIXTURES.glob("*/*.sample"))
