"""Welch Allyn SureTemp Plus OEM module (driver ``suretemp``): request/response temperature.

Source: "SureTemp Plus Module OEM Implementation", chapter 8. The host asks
and the module always answers; nothing arrives unasked, so this decoder is also
a :class:`devices.protocols.base.Conversation` whose :meth:`SureTempDecoder.poll`
requests the temperature record every :data:`POLL_INTERVAL` seconds.

Packet: ``03 02 10``, command (2 bytes), type (``01`` command, ``02`` good
response), data length (2 bytes LE), data, checksum (two's complement of the
sum8 of everything before it, so a packet sums to 0).

Temperature record (command ``94 1C``, 19 bytes, :data:`RECORD`): final
temperature float32 LE kelvin (0 = none yet), current probe temperature, sample
counter, method, algorithm, state, error code, active flag, probe type.

Why only the final temperature becomes a measurement: the current probe
temperature is the probe warming up, not the patient's temperature, and must
never be charted. The final value is emitted once per measurement (the module
repeats it in every record until the next one starts), in kelvin as sent;
:mod:`devices.normalise` converts it to Cel.

Assumptions to verify on a device (the manual's tables beyond the record
layout are not in our reference): algorithm 0 is oral and other algorithms are
reported as a generic body temperature (:data:`ALGORITHMS`); an active flag of 0
is read as the probe resting in its well, reported as ``sensor_off``; error
codes other than 0 are reported by number (:data:`ERROR_CODES` is empty).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from decimal import Decimal

from devices.drivers import Driver
from devices.drivers import SerialSettings
from devices.drivers import register
from devices.protocols.base import DeviceState
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.protocols.framing import SENSOR_OFF
from devices.protocols.framing import ByteScanner
from devices.protocols.framing import ConditionTracker
from devices.protocols.framing import hunt
from devices.simulators.base import Simulator

HEADER = b"\x03\x02\x10"
TYPE_COMMAND = 0x01
TYPE_GOOD_RESPONSE = 0x02
CMD_TEMPERATURE_RECORD = b"\x94\x1c"
CMD_LOCK_PROBE = b"\x35\x03"
HEADER_SIZE = 8
MAX_FRAME = 64
POLL_INTERVAL = 0.5
"""The module refreshes the record every 173 ms; two reads a second show a final value promptly."""

RECORD = struct.Struct("<ffIBBBHBB")
"""final K, current probe K, sample counter, method, algorithm, state, error code, active, probe type."""

ALGORITHMS: dict[int, str] = {0: "temperature_oral"}
"""Algorithm byte -> METRICS key; unlisted algorithms are reported as ``temperature`` (body, site unknown)."""

ERROR_CODES: dict[int, str] = {}
"""Error code -> description, to fill from the OEM manual; unknown codes are reported by number."""

DEVICE_ERROR = "device_error"


def encode_packet(command: bytes, packet_type: int, data: bytes = b"") -> bytes:
    """A packet with its length and checksum (used for requests and by the simulator for answers)."""
    body = HEADER + command + bytes((packet_type,)) + len(data).to_bytes(2, "little") + data
    return body + bytes(((-sum(body)) & 0xFF,))


READ_RECORD = encode_packet(CMD_TEMPERATURE_RECORD, TYPE_COMMAND)
LOCK_PROBE = encode_packet(CMD_LOCK_PROBE, TYPE_COMMAND, b"\x01")


@dataclass(frozen=True, slots=True)
class TemperatureRecord:
    """The 19-byte temperature record, field by field (temperatures in kelvin, 0 = none)."""

    final: float
    current: float
    counter: int
    method: int
    algorithm: int
    state: int
    error: int
    active: int
    probe_type: int

    @classmethod
    def from_bytes(cls, data: bytes) -> TemperatureRecord:
        """Unpack ``data``; :class:`struct.error` if it is not exactly one record long."""
        return cls(*RECORD.unpack(data))

    def to_bytes(self) -> bytes:
        """The record as the module sends it."""
        return RECORD.pack(self.final, self.current, self.counter, self.method, self.algorithm, self.state,
                           self.error, self.active, self.probe_type)


@dataclass(frozen=True, slots=True)
class Packet:
    """One checked packet."""

    command: bytes
    packet_type: int
    data: bytes


class PacketFramer(ByteScanner[Packet]):
    """Finds packets by header, length and checksum in a byte stream, holding at most ``MAX_FRAME`` bytes.

    Serves both directions: the decoder frames the module's answers, the
    simulator frames the host's commands.
    """

    def __init__(self) -> None:
        super().__init__(MAX_FRAME, MAX_FRAME)

    def _scan(self, buf: bytearray, packets: list[Packet | FrameRejected]) -> int:
        i = 0
        n = len(buf)
        while i < n:
            i, found = hunt(buf, HEADER, i, self._discards, packets)
            if not found:
                break
            if n - i < HEADER_SIZE:
                break
            total = HEADER_SIZE + (buf[i + 6] | buf[i + 7] << 8) + 1
            if total > MAX_FRAME:
                self._discards.add(1, "bad length", packets)
                i += 1
                continue
            if n - i < total:
                break
            if sum(buf[i:i + total]) & 0xFF:
                self._discards.add(1, "bad checksum", packets)
                i += 1
                continue
            self._discards.flush(packets)
            packets.append(Packet(bytes(buf[i + 3:i + 5]), buf[i + 5], bytes(buf[i + HEADER_SIZE:i + total - 1])))
            i += total
        return i


class SureTempDecoder:
    """Decoder and poller for the SureTemp Plus module."""

    def __init__(self) -> None:
        self.max_frame = MAX_FRAME
        self._framer = PacketFramer()
        self._conditions = ConditionTracker()
        self._reported: tuple[bytes, int] | None = None
        self._next_poll: float | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete packet."""
        return self._framer.buffered

    def on_connect(self) -> bytes:
        """Nothing to set up; the next :meth:`poll` asks for the record at once whatever its clock says."""
        self._next_poll = None
        return b""

    def poll(self, now: float) -> bytes:
        """The record request when one is due at ``now``, else ``b""``."""
        if self._next_poll is not None and now < self._next_poll:
            return b""
        self._next_poll = now + POLL_INTERVAL
        return READ_RECORD

    def feed(self, data: bytes) -> list[Event]:
        """Consume the module's answers in ``data``; return the events they carry."""
        out: list[Event] = []
        for packet in self._framer.feed(data):
            if isinstance(packet, FrameRejected):
                out.append(packet)
            elif packet.packet_type != TYPE_GOOD_RESPONSE:
                detail = f"command {packet.command.hex()} answered with type {packet.packet_type:#04x}"
                out.append(DeviceState(frozenset({"command_failed"}), detail))
            elif packet.command == CMD_TEMPERATURE_RECORD:
                self._record(packet.data, out)
        return out

    def _record(self, data: bytes, out: list[Event]) -> None:
        if len(data) != RECORD.size:
            out.append(FrameRejected("bad record length", len(data) + HEADER_SIZE + 1))
            return
        record = TemperatureRecord.from_bytes(data)
        final = record.final
        if not math.isfinite(final) or not 0 <= final < 400:
            out.append(FrameRejected("bad temperature", len(data) + HEADER_SIZE + 1))
            return
        flags: frozenset[str] = frozenset()
        detail = ""
        if record.error:
            flags = frozenset({DEVICE_ERROR})
            detail = ERROR_CODES.get(record.error, f"module error {record.error}")
        elif not record.active:
            flags = frozenset({SENSOR_OFF})
            detail = "probe in its well"
        self._conditions.update(flags, out, detail)
        if final == 0:
            self._reported = None
            return
        key = (data[:4], record.counter)
        if key == self._reported:
            return
        self._reported = key
        metric = ALGORITHMS.get(record.algorithm, "temperature")
        value = None if record.error else Decimal(f"{final:.2f}")
        out.append(Measurement(metric, value, "K", flags))


def _simulator(scenario: str, seed: int) -> Simulator:
    # Imported here: the simulator answers with this module's packet encoder.
    from devices.simulators.suretemp import SureTempSimulator

    return SureTempSimulator(scenario, seed)


register(
    Driver(
        name="suretemp",
        description="Welch Allyn SureTemp Plus OEM thermometer module (request/response)",
        decoder=SureTempDecoder,
        simulator=_simulator,
        serial=SerialSettings(baudrate=9600),
        quiet_timeout=4 * POLL_INTERVAL,
        poll_interval=POLL_INTERVAL,
    )
)
