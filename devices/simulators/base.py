"""The simulator contract: a device's side of the wire, without the wire.

A simulator is sans-I/O like a decoder: the pty or port runner in
:mod:`devices.simulators.runner` asks it for the bytes due by a monotonic time
and hands it whatever the host wrote, and writes its answers back. Simulators
build frames from the same layouts the decoders parse, so what they emit is what
the real device sends, byte for byte.

Scenarios (``--scenario``) every simulator knows: ``normal``, ``artifact``
(device flags motion or poor signal), ``sensor-off`` (probe or finger off: the
device's "no data" values), ``garbage`` (valid frames interleaved with noise and
corrupt frames), ``unplug`` (handled by the runner: it drops the line and comes
back). A simulator module adds its own, each reproducing a documented device
behaviour a decoder must get right (a scale's overload report, a thermometer's
calibration key); the driver table lists them per driver.
"""

from __future__ import annotations

import typing as t

SCENARIOS: tuple[str, ...] = ("normal", "artifact", "sensor-off", "garbage", "unplug")


class Simulator(t.Protocol):
    """One simulated device."""

    def output(self, now: float) -> bytes:
        """Bytes the device sends on its own up to monotonic time ``now`` (``b""`` if none is due)."""
        ...

    def receive(self, data: bytes) -> bytes:
        """Bytes the device answers to ``data`` written by the host (``b""`` if none)."""
        ...
