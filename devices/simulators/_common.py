"""Pacing, scenario checking and patient-like values shared by the simulators in this family."""

from __future__ import annotations

import random
import typing as t

from devices.simulators.base import SCENARIOS


def check_scenario(scenario: str, known: t.Sequence[str] = SCENARIOS) -> str:
    """Return ``scenario`` if it is one of ``known``, else raise :class:`ValueError` naming them."""
    if scenario not in known:
        raise ValueError(f"unknown scenario {scenario!r} (known: {', '.join(known)})")
    return scenario


class Pacer:
    """How many units (frames, packets, lines) are due at a fixed rate since the first call.

    The first call makes one unit due at once, so a freshly opened port sees data
    immediately. When the caller stalls (a suspended laptop, a debugger), at most
    ``max_burst`` units are produced and the rest are skipped, as a real device
    would not have queued them either.
    """

    __slots__ = ("_max_burst", "_per_second", "_sent", "_start")

    def __init__(self, per_second: float, max_burst: int = 10) -> None:
        self._per_second = per_second
        self._max_burst = max_burst
        self._start: float | None = None
        self._sent = 0

    def due(self, now: float) -> int:
        """Units to produce now."""
        if self._start is None:
            self._start = now
        total = int((now - self._start) * self._per_second) + 1
        count = total - self._sent
        if count > self._max_burst:
            self._sent = total - self._max_burst
            count = self._max_burst
        self._sent += max(count, 0)
        return max(count, 0)


class OximeterVitals:
    """SpO2 and pulse that wander like a resting adult's: mean-reverting steps with noise."""

    __slots__ = ("_hr", "_rng", "_spo2")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._spo2 = 97.0
        self._hr = 72.0

    def step(self) -> tuple[int, int]:
        """Next (SpO2 %, pulse /min) pair."""
        rng = self._rng
        self._spo2 += 0.3 * (97.0 - self._spo2) + rng.gauss(0, 0.6)
        self._hr += 0.2 * (72.0 - self._hr) + rng.gauss(0, 1.5)
        return max(90, min(100, round(self._spo2))), max(50, min(110, round(self._hr)))


def cuff_pressures(rng: random.Random, systolic: float, diastolic: float) -> tuple[int, int, int]:
    """One NIBP reading around ``systolic``/``diastolic`` mmHg: (systolic, diastolic, mean arterial).

    The mean is what a monitor reports for a resting adult, diastolic plus a
    third of the pulse pressure, so the three values always agree with each other.
    """
    high = round(rng.gauss(systolic, 4))
    low = round(rng.gauss(diastolic, 3))
    return high, low, low + round((high - low) / 3)


def garbled(rng: random.Random, count: int, unit: bytes, damaged: t.Callable[[], bytes], max_noise: int) -> bytes:
    """``unit`` (a frame, block or answer) as the garbage scenario sends its ``count``-th one.

    Random noise of 1 to ``max_noise - 1`` bytes comes before every unit, and
    before every even one also a damaged copy the decoder must reject, so a run
    exercises both resynchronisation after noise and rejection of a frame that
    looks whole.
    """
    junk = rng.randbytes(rng.randrange(1, max_noise))
    if count % 2:
        return junk + unit
    return junk + damaged() + unit


def noise(rng: random.Random, low: int = 1, high: int = 12, top: int = 0xFF) -> bytes:
    """Between ``low`` and ``high`` random bytes no greater than ``top`` (line noise, a glitching cable)."""
    return bytes(rng.randint(0, top) for _ in range(rng.randint(low, high)))


def split_randomly(data: bytes, rng: random.Random, max_chunk: int = 64) -> list[bytes]:
    """``data`` cut into pieces of 1..``max_chunk`` bytes, the way a serial read delivers a stream.

    Replaying a recording through this is how a decoder's chunking invariance is checked.
    """
    pieces = []
    start = 0
    while start < len(data):
        end = start + rng.randint(1, max_chunk)
        pieces.append(data[start:end])
        start = end
    return pieces
