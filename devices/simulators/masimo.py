"""Simulated Masimo Rad-8 (or Radical-7) printing ASCII 1 lines once a second.

Scenarios: ``normal`` (EXC 000800, SET mode only); ``artifact`` (two lines in
three with EXC 000810, interference, values still printed as the device does);
``sensor-off`` (dashes everywhere, EXC 000820); ``garbage`` (noise before one
line in three, one line in four cut short); ``unplug`` (normal; the runner
drops the line). The device takes no commands.
"""

from __future__ import annotations

import datetime as dt
import random

from devices.simulators._common import OximeterVitals
from devices.simulators._common import Pacer
from devices.simulators._common import check_scenario
from devices.simulators._common import noise

DEVICE_CLOCK_START = dt.datetime(2026, 1, 15, 9, 0, 0)
SERIAL_NUMBER = "0000056661"
EXC_NORMAL = 0x800
EXC_INTERFERENCE = 0x810
EXC_SENSOR_OFF = 0x820


class MasimoSimulator:
    """One Masimo oximeter; ``model`` ``"radical-7"`` adds the PVI field."""

    def __init__(self, scenario: str, seed: int, model: str = "rad-8") -> None:
        if model not in ("rad-8", "radical-7"):
            raise ValueError(f"unknown Masimo model {model!r}")
        self._scenario = check_scenario(scenario)
        self._model = model
        self._rng = random.Random(seed)
        self._vitals = OximeterVitals(self._rng)
        self._pacer = Pacer(1.0)
        self._count = 0

    def output(self, now: float) -> bytes:
        """The lines due by ``now``."""
        return b"".join(self._line() for _ in range(self._pacer.due(now)))

    def receive(self, data: bytes) -> bytes:
        """Nothing: the serial output is one-way."""
        return b""

    def _line(self) -> bytes:
        index = self._count
        self._count += 1
        when = DEVICE_CLOCK_START + dt.timedelta(seconds=index)
        spo2, hr = self._vitals.step()
        pi = f"{self._rng.uniform(1.0, 6.0):05.2f}"
        fields = [when.strftime("%m/%d/%y %H:%M:%S"), f"SN={SERIAL_NUMBER}"]
        exc = EXC_NORMAL
        if self._scenario == "sensor-off":
            exc = EXC_SENSOR_OFF
            fields += ["SPO2=---%", "BPM=---", "PI=--.--%"]
        else:
            if self._scenario == "artifact" and index % 3:
                exc = EXC_INTERFERENCE
            fields += [f"SPO2={spo2:03d}%", f"BPM={hr:03d}", f"PI={pi}%"]
        fields += ["SPCO=--.-%", "SPMET=--.-%"]
        if self._model == "radical-7":
            fields.append(f"PVI={self._rng.randint(8, 20):03d}" if exc == EXC_NORMAL else "PVI=---")
        fields += ["DESAT=--", "PIDELTA=+--", "ALARM=0000", f"EXC={exc:06X}"]
        line = (" ".join(fields) + "\r\n").encode("ascii")
        if self._scenario != "garbage":
            return line
        if index % 4 == 3:
            line = line[: len(line) // 2]
        if index % 3:
            return line
        return noise(self._rng) + line
