"""A simulated GE Datex-Ohmeda S/5 monitor on its computer interface.

It stays silent until the host writes a displayed-values request, answers it
with one record at once, then pushes a record every requested interval (0 stops
the pushes), as the monitor does. Records are built from the same layout
constants the decoder reads (:mod:`devices.protocols.datex`), so a layout fix in
one place changes both sides.
"""

from __future__ import annotations

import random
import struct

from devices.protocols.datex import CLASS_OFFSET
from devices.protocols.datex import CLASS_SIZE
from devices.protocols.datex import DRI_PH_DISPL
from devices.protocols.datex import ECG_ARTIFACT
from devices.protocols.datex import ECG_GROUP
from devices.protocols.datex import FIELDS
from devices.protocols.datex import HEADER_SIZE
from devices.protocols.datex import LABEL_OFFSET
from devices.protocols.datex import NIBP_GROUP
from devices.protocols.datex import NIBP_STATES
from devices.protocols.datex import SPO2_GROUP
from devices.protocols.datex import STATUS_ACTIVE
from devices.protocols.datex import STATUS_EXISTS
from devices.protocols.datex import SUBRECORD_SIZE
from devices.protocols.datex import T1_GROUP
from devices.protocols.datex import DatexFramer
from devices.protocols.datex import build_header
from devices.protocols.datex import encode_frame
from devices.protocols.datex import parse_request
from devices.protocols.datex import stuff
from devices.simulators._common import check_scenario
from devices.simulators._common import cuff_pressures
from devices.simulators._common import garbled
from devices.simulators.base import SCENARIOS as COMMON_SCENARIOS

DATA_INVALID = -32767
DATA_NOT_UPDATED = -32766
EPOCH = 1_795_600_000
"""Monitor clock at simulator time 0 (UNIX seconds, late 2026); fixed so streams are reproducible."""

LIVE = STATUS_EXISTS | STATUS_ACTIVE

SCENARIOS: tuple[str, ...] = (*COMMON_SCENARIOS, "nibp-only")
"""``nibp-only``: a monitor used as a blood-pressure monitor, with no SpO2 or temperature module fitted
(a station whose oximeter and thermometer are devices of their own)."""

NIBP_CYCLE = 60
NIBP_MEASURING = (40, 55)
"""Seconds of each minute during which the cuff is measuring (NIBP label "measuring" bit set)."""


class DatexSimulator:
    """One S/5 monitor: NIBP, temperature T1, SpO2 and ECG groups of the basic class.

    The cuff measures for 15 s of every minute (:data:`NIBP_MEASURING`), as
    an automatic NIBP cycle does, so a station shows the measurement in progress;
    between cycles every record repeats the last result unchanged, as the
    monitor does.

    :param scenario: one of :data:`SCENARIOS`.
    :param seed: seeds the measurement noise and the garbage, so a run replays.
    """

    def __init__(self, scenario: str = "normal", seed: int = 0) -> None:
        self.scenario = check_scenario(scenario, SCENARIOS)
        self._rng = random.Random(seed)
        self._framer = DatexFramer()
        self._now = 0.0
        self._interval = 0
        self._next_due = 0.0
        self._sent = 0
        self._nibp: tuple[int, int, int, int] | None = None
        self._nibp_cycle = -1

    def receive(self, data: bytes) -> bytes:
        """Answer a transmission request with the first record; other frames get no answer."""
        answer = b""
        for item in self._framer.feed(data):
            if not isinstance(item, bytes):
                continue
            request = parse_request(item)
            if request is None or request.record_type != DRI_PH_DISPL:
                continue
            self._interval = max(request.interval, 0)
            if self._interval:
                answer += self._frame()
                self._next_due = self._now + self._interval
        return answer

    def output(self, now: float) -> bytes:
        """The records due by ``now``; after a stall, one record and a fresh schedule, not a burst."""
        self._now = now
        if not self._interval or now < self._next_due:
            return b""
        self._next_due = max(self._next_due + self._interval, now)
        return self._frame()

    def record(self) -> bytes:
        """One displayed-values record (unframed) for the current scenario."""
        basic = bytearray(CLASS_SIZE)
        rng = self._rng
        ecg_status = LIVE | (ECG_ARTIFACT if self.scenario == "artifact" else 0)
        struct.pack_into("<I", basic, ECG_GROUP, ecg_status)
        struct.pack_into("<h", basic, ECG_GROUP + 6, round(rng.gauss(72, 2)))
        systolic, diastolic, mean = cuff_pressures(rng, 122, 79)
        pulse = round(rng.gauss(72, 2))
        # The result shown is the last completed cycle's; a new one appears when a cycle's measuring ends.
        cycle = int(self._now) // NIBP_CYCLE + (int(self._now) % NIBP_CYCLE >= NIBP_MEASURING[1])
        if self._nibp is None or cycle != self._nibp_cycle:
            self._nibp, self._nibp_cycle = (systolic, diastolic, mean, pulse), cycle
        systolic, diastolic, mean, nibp_pulse = self._nibp
        values = {
            "systolic": systolic * 100,
            "diastolic": diastolic * 100,
            "mean_arterial": mean * 100,
            "pulse_nibp": nibp_pulse,
            "temperature": round(rng.gauss(36.8, 0.1) * 100),
            "spo2": min(100, round(rng.gauss(97.5, 0.8))) * 100,
            "pulse_oximeter": pulse + rng.choice((-1, 0, 1)),
        }
        status = {NIBP_GROUP: LIVE, T1_GROUP: LIVE, SPO2_GROUP: LIVE}
        if self.scenario == "artifact":
            values["spo2"] = values["pulse_oximeter"] = DATA_NOT_UPDATED
        elif self.scenario == "sensor-off":
            status[SPO2_GROUP] = status[T1_GROUP] = STATUS_EXISTS
            values["spo2"] = values["pulse_oximeter"] = values["temperature"] = DATA_INVALID
        if self.scenario == "nibp-only":
            status[SPO2_GROUP] = status[T1_GROUP] = 0
        for group, bits in status.items():
            struct.pack_into("<I", basic, group, bits)
        if NIBP_MEASURING[0] <= int(self._now) % NIBP_CYCLE < NIBP_MEASURING[1]:
            struct.pack_into("<H", basic, NIBP_GROUP + LABEL_OFFSET, NIBP_STATES[0][0])
        for field in FIELDS:
            struct.pack_into("<h", basic, field.group + field.offset, values[field.metric])
        time = EPOCH + int(self._now)
        subrecord = struct.pack("<I", time) + bytes(basic) + bytes(SUBRECORD_SIZE - CLASS_OFFSET - CLASS_SIZE)
        return build_header(HEADER_SIZE + len(subrecord), time, [(0, DRI_PH_DISPL)]) + subrecord

    def _frame(self) -> bytes:
        record = self.record()
        self._sent += 1
        frame = encode_frame(record)
        if self.scenario != "garbage":
            return frame

        def damaged() -> bytes:
            broken = bytearray(record)
            broken[HEADER_SIZE + 10] = (broken[HEADER_SIZE + 10] + 1) & 0xFF
            wrong_sum = bytes((sum(record) & 0xFF,))
            return b"\x7e" + stuff(bytes(broken) + wrong_sum) + b"\x7e"

        return garbled(self._rng, self._sent, frame, damaged, 64)
