"""Measuring what the decode benchmarks share: a driver's wire rate and the best of a few timed runs.

Both decode benches compare our decoder with a naive one and with the previous
version of our decoders (:class:`PreviousDecoders`) on the same stream in the
same run and express each rate as a multiple of the wire rate; computing those
numbers in one place keeps the figures of the two benches comparable. Imported
by the bench scripts, which run with ``bench/`` first on ``sys.path``.
"""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile
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


PREVIOUS_REF = os.environ.get("BENCH_PREVIOUS_REF", "main")
"""The git revision whose decoders are measured beside ours (override with ``BENCH_PREVIOUS_REF``)."""

_PREVIOUS_SCRIPT = """
import sys, time
from devices import drivers
name, path, read_size, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = open(path, "rb").read()
best, found = float("inf"), 0
for _ in range(rounds):
    decoder = drivers.get(name).decoder()
    getattr(decoder, "on_connect", lambda: b"")()
    started = time.perf_counter()
    found = 0
    for start in range(0, len(data), read_size):
        found += sum(type(e).__name__ == "Measurement" for e in decoder.feed(data[start:start + read_size]))
    best = min(best, time.perf_counter() - started)
print(len(data) / best, found)
"""


class PreviousDecoders:
    """The decoders of :data:`PREVIOUS_REF`, run on the same bytes in the same run, for the figure beside ours.

    ``git archive`` unpacks that revision's ``devices/`` package into a
    temporary directory and each measurement runs in a subprocess whose
    ``sys.path`` starts there, so the old modules are imported exactly as they
    were, without renaming anything or mixing them with the current package. The
    subprocess times the decoding alone, as :func:`best_rate` does, on the stream
    our decoder was given.
    """

    def __init__(self, ref: str = PREVIOUS_REF) -> None:
        self.ref = ref
        self._root = tempfile.TemporaryDirectory(prefix="frontdesk-previous-")
        repo = pathlib.Path(__file__).resolve().parent.parent
        self.commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", ref], check=True,
                                     capture_output=True, text=True).stdout.strip()
        archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "devices"], check=True,
                                 capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(self._root.name, filter="data")

    def rate(self, name: str, data: bytes, read_size: int) -> tuple[float, int] | None:
        """Bytes per second and readings of the previous decoder of ``name``; ``None`` if it had no such driver."""
        path = pathlib.Path(self._root.name) / "stream.bin"
        path.write_bytes(data)
        result = subprocess.run([sys.executable, "-c", _PREVIOUS_SCRIPT, name, str(path), str(read_size),
                                 str(ROUNDS)], cwd=self._root.name, capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": self._root.name})
        if result.returncode:
            return None
        rate, found = result.stdout.split()
        return float(rate), int(found)

    def close(self) -> None:
        self._root.cleanup()
