"""Per-device health: what the station page and ``frontdesk devices`` show staff.

The device's own thread writes a :class:`StatusRecorder`; any other thread asks
it for a :class:`DeviceStatus` snapshot. Staleness is computed at snapshot time
from the monotonic clock, so a device that simply stops talking is reported
stale even though its thread never woke up to say so.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A consistent snapshot of one device's line and decoder counters.

    ``frames_accepted`` counts frames the decoder read (a monitor's message, a
    scale's record, an oximeter's packet); ``readings`` the values they carried
    (one frame can carry a dozen, or none); ``unrecognised`` observations in
    good frames that we do not chart; ``frames_rejected`` counts frames or runs
    of bytes the decoder dropped (checksum, layout, overflow, noise, a wrong
    baud rate). ``stale`` is true when
    the line is open but for the driver's quiet timeout no bytes arrived, or only
    bytes the decoder rejected: values shown from before that moment must not
    look current. Traffic counts, not events, because request/response decoders
    stay silent while the device repeats the same answer.
    """

    device_id: str
    driver: str
    port: str
    connected: bool
    stale: bool
    last_frame_time: dt.datetime | None
    frames_accepted: int
    frames_rejected: int
    last_error: str | None
    reconnects: int
    flags: frozenset[str]
    readings: int = 0
    unrecognised: int = 0


class StatusRecorder:
    """Mutable counters for one device, guarded by a lock because two threads touch them."""

    def __init__(self, device_id: str, driver: str, port: str, quiet_timeout: float) -> None:
        self._lock = threading.Lock()
        self._device_id = device_id
        self._driver = driver
        self._port = port
        self._quiet_timeout = quiet_timeout
        self._connected = False
        self._connects = 0
        self._last_frame_time: dt.datetime | None = None
        self._last_valid_monotonic = 0.0
        self._accepted = 0
        self._rejected = 0
        self._readings = 0
        self._unrecognised = 0
        self._last_error: str | None = None
        self._flags: frozenset[str] = frozenset()

    def connected(self, port: str, now: float) -> None:
        """The line opened on ``port`` at monotonic ``now``; the quiet timer starts here."""
        with self._lock:
            self._connected = True
            self._connects += 1
            self._port = port
            self._last_valid_monotonic = now

    def disconnected(self, error: str) -> None:
        with self._lock:
            self._connected = False
            self._last_error = error

    def failed(self, error: str) -> None:
        """An error that did not close the line (an open attempt, a decoder or callback fault)."""
        with self._lock:
            self._last_error = error

    def accepted(self, frames: int, readings: int, host_time: dt.datetime, now: float,
                 flags: frozenset[str] | None) -> None:
        """``frames`` good frames carrying ``readings`` values arrived; ``flags`` replaces the device condition
        when given."""
        with self._lock:
            self._accepted += frames
            self._readings += readings
            self._last_frame_time = host_time
            self._last_valid_monotonic = now
            if flags is not None:
                self._flags = flags

    def heard(self, now: float) -> None:
        """Bytes arrived at monotonic ``now`` and the decoder rejected none of them."""
        with self._lock:
            self._last_valid_monotonic = now

    def rejected(self, count: int) -> None:
        with self._lock:
            self._rejected += count

    def unrecognised(self, count: int) -> None:
        """``count`` observations arrived in good frames under codes we do not chart."""
        with self._lock:
            self._unrecognised += count

    def is_stale(self, now: float) -> bool:
        with self._lock:
            return self._stale(now)

    def snapshot(self, now: float) -> DeviceStatus:
        """The status as of monotonic time ``now``."""
        with self._lock:
            return DeviceStatus(
                device_id=self._device_id,
                driver=self._driver,
                port=self._port,
                connected=self._connected,
                stale=self._stale(now),
                last_frame_time=self._last_frame_time,
                frames_accepted=self._accepted,
                frames_rejected=self._rejected,
                last_error=self._last_error,
                reconnects=max(0, self._connects - 1),
                flags=self._flags,
                readings=self._readings,
                unrecognised=self._unrecognised,
            )

    def _stale(self, now: float) -> bool:
        return self._connected and now - self._last_valid_monotonic > self._quiet_timeout
