"""Welch Allyn SureTemp Plus OEM module (driver ``suretemp``): request/response temperature.

Source for every layout fact: "Welch Allyn SureTemp Plus Module OEM
Implementation", manual 71332-0000B (2004), chapter 8 (manualsdir.com manual
641719). The host asks and the module always answers; nothing arrives unasked,
so this decoder is also a :class:`devices.protocols.base.Conversation` whose
:meth:`SureTempDecoder.poll` requests the temperature record every
:data:`POLL_INTERVAL` seconds. 9600 8N1.

Packet (pp. 30-31): ``03 02 10``, command (2 bytes), type (``01`` command,
``02`` good response), data length (2 bytes LE), data, checksum (two's
complement of the sum8 of everything before it, so a packet sums to 0).

Temperature record (command ``94 1C``, 19 data bytes, p. 36; example p. 63):
final/predicted temperature float32 LE kelvin (0 = none), current probe
temperature float32, sample counter uint32 (one per 173 ms), method (0 normal,
1 monitor, 2 clinical), algorithm (0 oral, 1 rectal, 2 pediatric axillary, 3
Cal Key, 4 adult axillary), SureTemp state (:data:`STATES`), error code uint16,
active (probe out and active), physical probe type (0 oral/axillary, 1 Cal Key,
2 rectal, 3 no probe). The 33-byte variant of p. 35 is not decoded: its example
on p. 64 has 34 data bytes and does not sum to zero, so its layout cannot be
confirmed; it is rejected as a bad record length.

What becomes a reading, and why:

* Only a final patient measurement (state 6 "Final" or 7 "Final position")
  becomes a value, exactly once: the module refreshes the record every 173 ms
  and repeats the final value until the next cycle, so a record is new only
  when the outcome or the final value changes. The current probe temperature is
  the probe warming up and is never charted.
* States 3-5 (predict) may carry the prediction in progress: it is reported as
  a value flagged ``in_progress`` (the station shows it; it is not a final
  reading).
* Final over temp (8, 9) and under temp (10, 11) are outside the module's
  range: no value, ``over_range``/``under_range``. Monitor mode (12: "no
  predict"), an error (state 20 or a non-zero error code) and any measurement
  with the Cal Key (algorithm 3 or probe type 1, a calibration check, not a
  patient) give flags only: ``monitor_mode``, ``device_error``,
  ``calibration_key``. Each is reported once per cycle.
* The algorithm names the site: oral, rectal, axillary (:data:`ALGORITHMS`).

Assumptions to verify on a module: the "position" states (5, 7, 9, 11) are
read as the module's probe-position warning and flagged ``probe_position``
beside the value, as the manual names them without describing them; an active
flag of 0 is read as the probe resting in its well (``sensor_off``); error
codes are reported by number (the table on p. 65 is not in our reference).

Vendor samples: the record of p. 63 (final 0, probe 307.37 K, ready) and the
command strings of pp. 59-63. The manual prints no record with a final value.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from decimal import Decimal

from devices.protocols.base import DeviceState
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.protocols.framing import IN_PROGRESS
from devices.protocols.framing import SENSOR_OFF
from devices.protocols.framing import ByteScanner
from devices.protocols.framing import ConditionTracker
from devices.protocols.framing import hunt

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

ALGORITHMS: dict[int, str] = {0: "temperature_oral", 1: "temperature_rectal", 2: "temperature_axillary",
                              4: "temperature_axillary"}
"""Algorithm byte -> METRICS key (p. 36: oral, rectal, pediatric and adult axillary)."""

CAL_KEY_ALGORITHM = 3
CAL_KEY_PROBE = 1
NO_PROBE = 3

STATES: dict[int, str] = {
    0: "idle", 1: "not ready", 2: "ready", 3: "predict", 4: "predict display", 5: "predict position",
    6: "final", 7: "final position", 8: "final over temp", 9: "final over temp position",
    10: "final under temp", 11: "final under temp position", 12: "no predict (monitor mode)",
    13: "end normal status", 20: "error status",
}
"""SureTemp state byte (p. 36); a record with any other state is rejected."""

FINAL_STATES: frozenset[int] = frozenset({6, 7})
PREDICT_STATES: frozenset[int] = frozenset({3, 4, 5})
POSITION_STATES: frozenset[int] = frozenset({5, 7, 9, 11})
STATE_FLAGS: dict[int, frozenset[str]] = {
    8: frozenset({"over_range"}), 9: frozenset({"over_range"}),
    10: frozenset({"under_range"}), 11: frozenset({"under_range"}),
    12: frozenset({"monitor_mode"}), 20: frozenset({"device_error"}),
}
"""States that end a cycle without a value, and the flags they raise."""

ERROR_CODES: dict[int, str] = {}
"""Error code -> description, to fill from the OEM manual (p. 65); unknown codes are reported by number."""

DEVICE_ERROR = "device_error"
CALIBRATION_KEY = "calibration_key"
PROBE_POSITION = "probe_position"


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
        self.frames = 0
        self._framer = PacketFramer()
        self._conditions = ConditionTracker()
        self._reported: tuple[frozenset[str], bytes] | None = None
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
                continue
            self.frames += 1
            if packet.packet_type != TYPE_GOOD_RESPONSE:
                detail = f"command {packet.command.hex()} answered with type {packet.packet_type:#04x}"
                out.append(DeviceState(frozenset({"command_failed"}), detail))
            elif packet.command == CMD_TEMPERATURE_RECORD:
                self._record(packet.data, out)
        return out

    def _record(self, data: bytes, out: list[Event]) -> None:
        size = len(data) + HEADER_SIZE + 1
        if len(data) != RECORD.size:
            out.append(FrameRejected("bad record length", size))
            return
        record = TemperatureRecord.from_bytes(data)
        final = record.final
        if not math.isfinite(final) or not 0 <= final < 400:
            out.append(FrameRejected("bad temperature", size))
            return
        if record.state not in STATES:
            out.append(FrameRejected("unknown state", size))
            return
        condition, detail = self._condition(record)
        self._conditions.update(condition, out, detail)
        outcome = self._outcome(record)
        if outcome is None:
            self._reported = None
            return
        flags, keep_value = outcome
        key = (flags, data[:4] if keep_value else b"")
        if key == self._reported:
            return
        self._reported = key
        metric = ALGORITHMS.get(record.algorithm, "temperature")
        out.append(Measurement(metric, Decimal(f"{final:.2f}") if keep_value else None, "K", flags))

    @staticmethod
    def _condition(record: TemperatureRecord) -> tuple[frozenset[str], str]:
        """The device condition the record shows (error, no probe, probe in its well) and its detail."""
        if record.error:
            return frozenset({DEVICE_ERROR}), ERROR_CODES.get(record.error, f"module error {record.error}")
        if record.probe_type == NO_PROBE:
            return frozenset({"no_sensor"}), "no probe connected"
        if not record.active:
            return frozenset({SENSOR_OFF}), "probe in its well"
        return frozenset(), ""

    @staticmethod
    def _outcome(record: TemperatureRecord) -> tuple[frozenset[str], bool] | None:
        """(flags, whether the final field is a value to report) of a record, ``None`` when it reports nothing.

        Checked in order of precedence: an error or the Cal Key voids whatever the
        state says; then final, out-of-range, monitor and predict states.
        """
        state = record.state
        position = frozenset({PROBE_POSITION}) if state in POSITION_STATES else frozenset()
        if record.error or state == 20:
            return frozenset({DEVICE_ERROR}), False
        calibration = record.algorithm == CAL_KEY_ALGORITHM or record.probe_type == CAL_KEY_PROBE
        if calibration and (state in FINAL_STATES or state in STATE_FLAGS or state in PREDICT_STATES):
            return frozenset({CALIBRATION_KEY}), False
        if state in FINAL_STATES and record.final > 0:
            return position, True
        if state in STATE_FLAGS:
            return STATE_FLAGS[state] | position, False
        if state in PREDICT_STATES and record.final > 0:
            return frozenset({IN_PROGRESS}) | position, True
        return None
