"""The decoder contract every device protocol module implements.

A decoder is sans-I/O (the h11 shape): it is handed bytes as they arrive from
whatever transport (a serial port, a pty, a file replay, a fuzzer) and returns
the events those bytes completed. It holds no port, socket, clock or thread, so
the same object serves production, tests and benchmarks.

Invariants every decoder keeps:

* ``feed`` returns the same events whether the stream arrives whole, byte by
  byte, or in any other split (chunking invariance).
* Arbitrary input yields only events or :class:`ProtocolError`, never another
  exception type (closed failure set).
* The internal buffer never exceeds ``max_frame`` bytes: a frame that would is
  dropped, reported as :class:`FrameRejected`, and the decoder resynchronises.
* A frame that fails its checksum, layout or range checks is never turned into a
  measurement: it becomes :class:`FrameRejected` so the gateway can count it.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass
from dataclasses import field
from decimal import Decimal


class ProtocolError(Exception):
    """Input a decoder cannot resynchronise from (raised, never returned)."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One value a device reported, in the device's own unit and precision.

    ``value`` is ``None`` when the device said "no reading" (a sentinel such as
    Nonin's HR 511, Masimo's ``---``): the flags say why, and the value is never
    charted. ``metric`` is a key of :data:`devices.nomenclature.METRICS`.

    Do not subclass: the gateway matches on the exact type.
    """

    metric: str
    value: Decimal | None
    unit: str
    flags: frozenset[str] = field(default_factory=frozenset)
    device_time: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class DeviceState:
    """A device-reported condition with no value (sensor off, low battery, error code)."""

    flags: frozenset[str]
    detail: str = ""
    device_time: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class FrameRejected:
    """A frame (or run of bytes) that was dropped: bad checksum, bad layout, overflow, garbage."""

    reason: str
    size: int


@dataclass(frozen=True, slots=True)
class Unrecognised:
    """An observation the device sent in a good frame that we do not chart (an OBX with a code we do not
    know): counted and shown, never silently dropped, so a missing reading can be explained."""

    what: str


Event = Measurement | DeviceState | FrameRejected | Unrecognised


class Decoder(t.Protocol):
    """What the transport and gateway need from a protocol module.

    ``frames`` counts the frames (messages, records, packets, lines) decoded so
    far, which is not the number of readings: one monitor message can carry a
    dozen, one oximeter packet none.
    """

    max_frame: int
    frames: int

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data`` and return the events it completed, in stream order."""
        ...


class Conversation(t.Protocol):
    """Extra surface of request/response protocols (poll, keep-alive, association).

    The gateway asks what to write at connect time and periodically; the decoder
    stays free of clocks because the caller passes ``now`` (monotonic seconds).
    """

    def on_connect(self) -> bytes:
        """Bytes to write right after the port opens (format select, association request)."""
        ...

    def poll(self, now: float) -> bytes:
        """Bytes due at monotonic time ``now`` (keep-alive, poll request); ``b""`` when none."""
        ...
