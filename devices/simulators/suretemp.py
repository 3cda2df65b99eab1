"""Simulated SureTemp Plus OEM module: answers the host's packets, never speaks unasked.

The measurement cycle advances one step per temperature-record request, so the
simulation is the same whatever the host's polling rate: the probe leaves its
well, warms from room temperature, the prediction gives a final body
temperature that the module then repeats, and the probe goes back to its well.

Scenarios: ``normal`` (that cycle, final 36.4 to 37.4 Cel); ``artifact`` (every
other measurement ends in a module error instead of a final value: a
thermometer has no artifact bit, an aborted prediction is its equivalent);
``sensor-off`` (the probe stays in its well: active flag 0, no final value);
``garbage`` (noise before one answer in three, one answer in four with a broken
checksum); ``unplug`` (normal; the runner drops the line).
"""

from __future__ import annotations

import random

from devices.protocols import suretemp
from devices.protocols.base import FrameRejected
from devices.simulators._common import check_scenario
from devices.simulators._common import noise

KELVIN_OFFSET = 273.15
ROOM = 23.0
IDLE_STEPS = 3
WARMING_STEPS = 8
FINAL_STEPS = 10
CYCLE = IDLE_STEPS + WARMING_STEPS + FINAL_STEPS
ERROR_PREDICTION_FAILED = 3
"""The error code the artifact scenario uses; any non-zero code is reported the same way."""


class SureTempSimulator:
    """One SureTemp Plus module."""

    def __init__(self, scenario: str, seed: int) -> None:
        self._scenario = check_scenario(scenario)
        self._rng = random.Random(seed)
        self._framer = suretemp.PacketFramer()
        self._step = 0
        self._answers = 0
        self._body = self._new_body_temperature()
        self._counter = 0

    def output(self, now: float) -> bytes:
        """Nothing: the module only answers."""
        return b""

    def receive(self, data: bytes) -> bytes:
        """Answer every complete command packet in ``data``."""
        answers = []
        for packet in self._framer.feed(data):
            if isinstance(packet, FrameRejected) or packet.packet_type != suretemp.TYPE_COMMAND:
                continue
            if packet.command == suretemp.CMD_TEMPERATURE_RECORD:
                answers.append(self._wrap(self._record()))
            elif packet.command == suretemp.CMD_LOCK_PROBE:
                answers.append(self._wrap(suretemp.encode_packet(packet.command, suretemp.TYPE_GOOD_RESPONSE)))
        return b"".join(answers)

    def _new_body_temperature(self) -> float:
        return round(self._rng.uniform(36.4, 37.4), 1)

    def _record(self) -> bytes:
        step = self._step % CYCLE
        measurement = self._step // CYCLE
        self._step += 1
        final = 0.0
        error = 0
        active = 1
        if self._scenario == "sensor-off" or step < IDLE_STEPS:
            current = ROOM + self._rng.gauss(0, 0.05)
            active = 0
        elif step < IDLE_STEPS + WARMING_STEPS:
            progress = (step - IDLE_STEPS + 1) / WARMING_STEPS
            current = ROOM + (self._body - 1.5 - ROOM) * progress
            self._counter += 1
        else:
            current = self._body - 0.8
            if self._scenario == "artifact" and measurement % 2:
                error = ERROR_PREDICTION_FAILED
            else:
                final = self._body + KELVIN_OFFSET
        if step == CYCLE - 1:
            self._body = self._new_body_temperature()
        record = suretemp.TemperatureRecord(final=final, current=current + KELVIN_OFFSET, counter=self._counter,
                                            method=0, algorithm=0, state=2, error=error, active=active,
                                            probe_type=0)
        return suretemp.encode_packet(suretemp.CMD_TEMPERATURE_RECORD, suretemp.TYPE_GOOD_RESPONSE,
                                      record.to_bytes())

    def _wrap(self, answer: bytes) -> bytes:
        index = self._answers
        self._answers += 1
        if self._scenario != "garbage":
            return answer
        if index % 4 == 3:
            answer = answer[:-1] + bytes(((answer[-1] + 1) & 0xFF,))
        if index % 3:
            return answer
        return noise(self._rng) + answer
