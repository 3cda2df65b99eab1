"""Simulated Nonin oximeters: the byte streams of DF2, DF7, DF8, DF13 and the ASCII models.

Frames come from the encoders in :mod:`devices.protocols.nonin`, so they follow
the layouts that module cites from the OEM spec. Scenarios:

* ``normal``: a resting adult, green perfusion. DF13 first replays one stored
  reading (MEM set), as an unlinked device does when the host connects.
* ``artifact``: two units in three carry the artifact bit, on one pulse (12
  frames) of a DF2/DF7 packet or in the DF8 status; the values stay, as the
  oximeter keeps displaying them. DF13 lacks the SPA quality bit instead, and the
  ASCII models (no artifact bit) show ``---``.
* ``sensor-off``: finger out: HR 511, SpO2 127 with the sensor alarm bit
  (DF2/7/8), NOMS (DF13), ``---`` (ASCII).
* ``reserved-bits`` (binary formats): every reserved bit set and reserved bytes
  random, as the spec allows; the values must come through unchanged.
* ``perfusion`` (DF2/DF7): each packet has a green pulse then a red one, which
  is a red packet, not a yellow one.
* ``garbage``: noise before one unit in three and one corrupted unit in four (DF8: one in six
  and one in eight, and its noise keeps bit 7 clear: without a checksum, noise that happens to
  look like a frame would be a reading).
* ``unplug``: a normal stream; the runner drops and restores the line.

The device answers the set-format command with ACK (``06``) when ZZ names a
format it knows and NAK (``15``) otherwise; it keeps streaming its own format.
"""

from __future__ import annotations

import datetime as dt
import random

from devices.protocols import nonin
from devices.protocols.framing import ARTIFACT
from devices.protocols.framing import NO_DATA
from devices.protocols.framing import SENSOR_OFF
from devices.simulators._common import OximeterVitals
from devices.simulators._common import Pacer
from devices.simulators._common import check_scenario
from devices.simulators._common import noise
from devices.simulators.base import SCENARIOS as COMMON_SCENARIOS

UNITS_PER_SECOND: dict[str, float] = {"df2": 3.0, "df7": 3.0, "df8": 1.0, "df13": 0.2, "ascii": 1.0}
"""DF2/DF7 send a 25-frame packet every third of a second (75 frames/s); DF13 one spot check every 5 s."""

DEVICE_CLOCK_START = dt.datetime(2026, 1, 15, 9, 0, 0)
"""The simulated device's own clock at power-on; deliberately unrelated to the host clock."""

COMMAND_LENGTH = 6
PULSE_FRAMES = slice(4, 16)
"""The frames of a DF2/DF7 packet one pulse's status bits cover (12 frames = 160 ms, spec p. 8)."""

RESERVED_SLOTS = (4, 11, 12, 17, 18, 23, 24)
"""Float slots (frame number - 1) the spec marks reserved, "undefined (range of 0 to 255)" (pp. 7, 11)."""

SCENARIOS: dict[str, tuple[str, ...]] = {
    "df2": (*COMMON_SCENARIOS, "reserved-bits", "perfusion"),
    "df7": (*COMMON_SCENARIOS, "reserved-bits", "perfusion"),
    "df8": (*COMMON_SCENARIOS, "reserved-bits"),
    "df13": (*COMMON_SCENARIOS, "reserved-bits"),
    "ascii": COMMON_SCENARIOS,
}
"""What ``frontdesk simulate nonin-FORMAT --scenario`` accepts."""


class NoninSimulator:
    """One Nonin device streaming ``data_format`` under ``scenario``."""

    def __init__(self, data_format: str, scenario: str, seed: int) -> None:
        if data_format not in UNITS_PER_SECOND:
            raise ValueError(f"unknown Nonin data format {data_format!r}")
        self._format = data_format
        self._scenario = check_scenario(scenario, SCENARIOS[data_format])
        self._rng = random.Random(seed)
        self._vitals = OximeterVitals(self._rng)
        self._pacer = Pacer(UNITS_PER_SECOND[data_format])
        self._count = 0
        self._commands = bytearray()

    def output(self, now: float) -> bytes:
        """The units due by ``now``."""
        return b"".join(self._unit() for _ in range(self._pacer.due(now)))

    def receive(self, data: bytes) -> bytes:
        """ACK or NAK each set-format command in ``data``; other bytes need no answer."""
        self._commands += data
        replies = bytearray()
        while True:
            start = self._commands.find(bytes((nonin.STX, 0x70)))
            if start < 0:
                del self._commands[:-1]
                return bytes(replies)
            del self._commands[:start]
            if len(self._commands) < COMMAND_LENGTH:
                return bytes(replies)
            command = bytes(self._commands[:COMMAND_LENGTH])
            del self._commands[:COMMAND_LENGTH]
            known = command[4] in nonin.FORMAT_CODES.values()
            accepted = known and command == nonin.set_format_command(command[4])
            replies.append(nonin.ACK if accepted else nonin.NAK)

    def _unit(self) -> bytes:
        index = self._count
        self._count += 1
        spo2, hr = self._vitals.step()
        flags: frozenset[str] = frozenset()
        if self._scenario == "sensor-off":
            spo2, hr = nonin.NONIN_MISSING_SPO2, nonin.NONIN_MISSING_HR
            flags = frozenset({SENSOR_OFF})
        elif self._scenario == "artifact" and index % 3:
            flags = frozenset({ARTIFACT})
        unit = self._encode(index, spo2, hr, flags)
        if self._scenario != "garbage":
            return unit
        # DF8 needs four clean frames in a row to lock (it has no checksum), so its garbage is sparser.
        corrupt_every, noise_every = (8, 6) if self._format == "df8" else (4, 3)
        if index % corrupt_every == corrupt_every - 1:
            unit = self._corrupt(unit)
        if index % noise_every:
            return unit
        return noise(self._rng, top=0x7F if self._format == "df8" else 0xFF) + unit

    def _encode(self, index: int, spo2: int, hr: int, flags: frozenset[str]) -> bytes:
        reserved = self._scenario == "reserved-bits"
        if self._format in ("df2", "df7"):
            return self._packet(spo2, hr, flags)
        if self._format == "df8":
            return nonin.encode_df8(hr, spo2, flags, reserved=reserved)
        if self._format == "df13":
            return self._spot_check(index, spo2, hr, flags)
        if flags:
            return b"SPO2=--- HR=---\r\n"
        return f"SPO2={spo2:03d} HR={hr:03d}\r\n".encode("ascii")

    def _packet(self, spo2: int, hr: int, flags: frozenset[str]) -> bytes:
        layout = nonin.DF2 if self._format == "df2" else nonin.DF7
        reserved = self._scenario == "reserved-bits"
        statuses = [nonin.GREEN] * nonin.FRAMES_PER_PACKET
        if self._scenario == "perfusion":
            half = nonin.FRAMES_PER_PACKET // 2
            statuses[half:] = [nonin.RED] * (nonin.FRAMES_PER_PACKET - half)
        for bit in nonin.STREAM_STATUS_BITS:
            if bit.flag in flags:
                pulse = range(nonin.FRAMES_PER_PACKET)[PULSE_FRAMES if bit.flag == ARTIFACT else slice(None)]
                for frame in pulse:
                    statuses[frame] |= bit.mask
        floats = nonin.stream_floats(hr, spo2, 0)
        if reserved:
            for slot in RESERVED_SLOTS:
                floats[slot] = self._rng.randint(0, 0xFF)
            floats[layout.hr_display_msb_frame] |= 0x7C
            floats[layout.stat2_frame] |= 0x5E
            statuses = [status | 0x40 for status in statuses]
        frames = []
        for slot, value in enumerate(floats):
            pleth = self._rng.randint(0, 0xFFFF if layout.lead is None else 0xFF)
            frames.append(nonin.encode_stream_frame(layout, statuses[slot] | (nonin.STATUS_SYNC if slot == 0 else 0),
                                                    pleth, value))
        return b"".join(frames)

    def _spot_check(self, index: int, spo2: int, hr: int, flags: frozenset[str]) -> bytes:
        when = DEVICE_CLOCK_START + dt.timedelta(seconds=index * 5)
        if self._scenario == "sensor-off":
            flags = frozenset({NO_DATA})
        elif self._scenario == "artifact" and flags:
            flags = frozenset({"low_quality"})
        elif index == 0:
            flags = frozenset({"from_memory"})
            when -= dt.timedelta(hours=2)
        return nonin.encode_df13(hr, spo2, flags, when, reserved=self._scenario == "reserved-bits")

    def _corrupt(self, unit: bytes) -> bytes:
        """Damage ``unit`` the way a bad cable would: a flipped bit in a checksummed byte, or a cut line."""
        if self._format in ("df8", "ascii"):
            return unit[: len(unit) // 2]
        position = self._rng.randrange(len(unit) - 1) if self._format == "df13" else 4
        damaged = bytearray(unit)
        damaged[position] ^= 0x10
        return bytes(damaged)
