"""Simulated SureTemp Plus OEM module: answers the host's packets, never speaks unasked.

The measurement cycle advances one step per temperature-record request, so the
simulation is the same whatever the host's polling rate: the probe rests in its
well (ready), leaves it and predicts (the prediction in progress appears in the
final/predicted field), reaches a final body temperature that the module then
repeats in every record while its sample counter keeps running (as the real
module refreshes the record every 173 ms), and goes back to its well. Records
follow the layout :mod:`devices.protocols.suretemp` cites from the OEM manual.

Scenarios: ``normal`` (that cycle, final 36.4 to 37.4 Cel, oral); ``artifact``
(every other measurement ends in the error state with error code 3: a
thermometer has no artifact bit, an aborted prediction is its equivalent);
``sensor-off`` (the probe stays in its well: active flag 0, no final value);
``cal-key`` (the Cal Key is plugged in: algorithm 3, probe type 1, a final of
310.93 K that is a calibration check, not a patient); ``over-temp`` (every other
measurement ends in "final over temp"); ``monitor-mode`` (method 1, state 12:
the probe temperature is shown live and no prediction is made); ``garbage``
(noise before one answer in three, one answer in four with a broken checksum);
``unplug`` (normal; the runner drops the line).
"""

from __future__ import annotations

import random

from devices.protocols import suretemp
from devices.protocols.base import FrameRejected
from devices.simulators._common import check_scenario
from devices.simulators._common import noise
from devices.simulators.base import SCENARIOS as COMMON_SCENARIOS

KELVIN_OFFSET = 273.15
ROOM = 23.0
IDLE_STEPS = 3
WARMING_STEPS = 8
FINAL_STEPS = 10
CYCLE = IDLE_STEPS + WARMING_STEPS + FINAL_STEPS
PREDICT_FROM = 4
"""Warming steps after which the prediction in progress shows in the final/predicted field."""
ERROR_PREDICTION_FAILED = 3
"""The error code the artifact scenario uses; any non-zero code is reported the same way."""
CAL_KEY_KELVIN = 310.93
OVER_TEMP_KELVIN = 316.65

SCENARIOS: tuple[str, ...] = (*COMMON_SCENARIOS, "cal-key", "over-temp", "monitor-mode")
"""What ``frontdesk simulate suretemp --scenario`` accepts."""


class SureTempSimulator:
    """One SureTemp Plus module."""

    def __init__(self, scenario: str, seed: int) -> None:
        self._scenario = check_scenario(scenario, SCENARIOS)
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
        odd_cycle = (self._step // CYCLE) % 2 == 1
        self._step += 1
        self._counter += 1
        scenario = self._scenario
        final, error, active, state, current = 0.0, 0, 1, 2, ROOM + self._rng.gauss(0, 0.05)
        method, algorithm, probe = 0, 0, 0
        if scenario == "cal-key":
            algorithm, probe = suretemp.CAL_KEY_ALGORITHM, suretemp.CAL_KEY_PROBE
        if scenario == "sensor-off" or step < IDLE_STEPS:
            active = 0
        elif step < IDLE_STEPS + WARMING_STEPS:
            warmed = step - IDLE_STEPS + 1
            current = ROOM + (self._body - 1.5 - ROOM) * warmed / WARMING_STEPS
            state = 3 if warmed < PREDICT_FROM else 4
            if scenario == "monitor-mode":
                method, state = 1, 12
            elif warmed >= PREDICT_FROM:
                final = self._body + KELVIN_OFFSET - 0.1 * (WARMING_STEPS - warmed)
        else:
            current = self._body - 0.8
            state, final = 6, self._body + KELVIN_OFFSET
            if scenario == "monitor-mode":
                method, state, final, current = 1, 12, 0.0, self._body
            elif scenario == "cal-key":
                final = CAL_KEY_KELVIN
            elif scenario == "artifact" and odd_cycle:
                state, error, final = 20, ERROR_PREDICTION_FAILED, 0.0
            elif scenario == "over-temp" and odd_cycle:
                state, final = 8, OVER_TEMP_KELVIN
        if step == CYCLE - 1:
            self._body = self._new_body_temperature()
        record = suretemp.TemperatureRecord(final=final, current=current + KELVIN_OFFSET, counter=self._counter,
                                            method=method, algorithm=algorithm, state=state, error=error,
                                            active=active, probe_type=probe)
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
