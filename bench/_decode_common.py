"""Measuring what the decode benchmarks share: a driver's wire rate and the best of a few timed runs.

Both decode benches compare our decoder with a naive one on the same stream in
the same run and express each rate as a multiple of the wire rate; computing
those two numbers in one place keeps the figures of the two benches
comparable. Imported by the bench scripts, which run with ``bench/`` first on
``sys.path``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from devices.drivers import SerialSettings

ROUNDS = 3
"""Timed runs per figure; the fastest counts, as the others measure the machine's other load."""


def wire_rate(settings: SerialSettings) -> float:
    """Payload bytes per second the serial settings carry: start bit, data bits, parity bit, stop bits."""
    bits = 1 + settings.bytesize + (settings.parity != "N") + settings.stopbits
    return settings.baudrate / bits


def best_rate(run: Callable[[], int], size: int) -> tuple[float, int]:
    """Bytes per second of the fastest of :data:`ROUNDS` runs of ``run`` over ``size`` bytes, and what it counted."""
    best = float("inf")
    counted = 0
    for _ in range(ROUNDS):
        started = time.perf_counter()
        counted = run()
        best = min(best, time.perf_counter() - started)
    return size / best, counted
