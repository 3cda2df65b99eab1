"""Put simulators on a wire: a pseudo-terminal pair or a real pyserial port.

The simulators are sans-I/O; this runner owns the I/O. On every tick it hands a
simulator what the host wrote, writes back its answers, then writes whatever the
simulator's stream has due. One runner serves any number of lines so a benchmark
can drive twenty devices from one process.

The ``unplug`` scenario is the runner's: it drops a line periodically the way a
cable pull does. For a pty that means closing the master, which fails the host's
read exactly like a USB-serial adapter that vanished (``devices.md`` §4); the
line comes back as a *new* pty under a new path, and, when a link path is given,
that symlink is re-pointed at it, the way ``/dev/serial/by-id`` follows an
adapter that re-enumerated.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
import tty
import typing as t
from dataclasses import dataclass

import serial

from devices.drivers import SerialSettings
from devices.simulators.base import Simulator
from devices.transport import OPEN_ERRORS
from devices.transport import PORT_ERRORS
from devices.transport import LinkError
from devices.transport import os_reason

log = logging.getLogger(__name__)

#: How often the runner services its lines; bounds answer latency, costs the runner's CPU only.
TICK = 0.01

#: Seconds before a line whose port failed is opened again.
REOPEN_DELAY = 1.0


class Endpoint(t.Protocol):
    """The runner's end of one line."""

    def open(self) -> str:
        """Open the line and return the path or URL the host should connect to."""
        ...

    def read(self) -> bytes:
        """Bytes the host wrote, without blocking (``b""`` if none)."""
        ...

    def write(self, data: bytes) -> None:
        """Send device bytes; bytes nobody can take are dropped, as on a real wire."""
        ...

    def unplug(self) -> None:
        """Drop the line the way a pulled cable does; :meth:`open` plugs it back in."""
        ...

    def close(self) -> None:
        ...


class PtyEndpoint:
    """A pseudo-terminal pair; the host opens the slave path, the runner keeps the master.

    The runner also keeps a slave descriptor open: without one, reading the
    master fails with EIO until the host opens the slave, and a runner started
    before its host would look unplugged.

    Unplugging closes the master (the host's next read fails as on a USB
    adapter pulled out) and removes the link. The pair that comes back is
    allocated *before* the old one is closed, so it has another ``/dev/pts``
    number, as an adapter that re-enumerates gets another ``/dev/ttyUSB`` name.

    :param link: optional symlink pointed at the current slave while plugged in,
        the way ``/dev/serial/by-id`` names an adapter.
    """

    def __init__(self, link: str | None = None) -> None:
        self.link = link
        self._pair: tuple[int, int] | None = None
        self._successor: tuple[int, int] | None = None

    def open(self) -> str:
        pair, self._successor = self._successor or _raw_pty(), None
        self._pair = pair
        path = os.ttyname(pair[1])
        if self.link is None:
            return path
        staging = f"{self.link}.{os.getpid()}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        os.symlink(path, staging)
        os.replace(staging, self.link)
        return self.link

    def read(self) -> bytes:
        if self._pair is None:
            return b""
        try:
            return os.read(self._pair[0], 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise

    def write(self, data: bytes) -> None:
        if self._pair is None or not data:
            return
        try:
            os.write(self._pair[0], data)
        except BlockingIOError:
            log.debug("simulator.bytes_dropped", extra={"count": len(data), "reason": "pty buffer full"})

    def unplug(self) -> None:
        if self._successor is None:
            self._successor = _raw_pty()
        self._close_pair()
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)

    def close(self) -> None:
        self._close_pair()
        for fd in self._successor or ():
            os.close(fd)
        self._successor = None

    def _close_pair(self) -> None:
        for fd in self._pair or ():
            os.close(fd)
        self._pair = None


def _raw_pty() -> tuple[int, int]:
    """A pty pair in raw mode with a non-blocking master: (master, slave)."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave


class PortEndpoint:
    """A pyserial port or URL, e.g. one end of a null-modem cable or ``socket://``."""

    def __init__(self, url: str, settings: SerialSettings) -> None:
        self.url = url
        self.settings = settings
        self._serial: serial.SerialBase | None = None

    def open(self) -> str:
        """Open the port; :class:`LinkError` names it when that fails."""
        s = self.settings
        try:
            self._serial = serial.serial_for_url(self.url, baudrate=s.baudrate, bytesize=s.bytesize,
                                                 parity=s.parity, stopbits=s.stopbits, rtscts=s.rtscts,
                                                 xonxoff=s.xonxoff, timeout=0, write_timeout=1)
        except OPEN_ERRORS as exc:
            raise LinkError(f"cannot open port {self.url}: {os_reason(exc)}") from None
        return self.url

    def read(self) -> bytes:
        if self._serial is None:
            return b""
        waiting = self._serial.in_waiting
        return bytes(self._serial.read(waiting)) if waiting else b""

    def write(self, data: bytes) -> None:
        if self._serial is not None and data:
            try:
                self._serial.write(data)
            except serial.SerialTimeoutException:
                log.debug("simulator.bytes_dropped", extra={"count": len(data), "reason": "write timed out"})

    def unplug(self) -> None:
        self.close()

    def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            port.close()


@dataclass(frozen=True, slots=True)
class Unplug:
    """The line is up for ``up`` seconds, then down for ``down`` seconds, repeatedly."""

    up: float = 3.0
    down: float = 1.0


class Line:
    """One simulator on one endpoint, with its own unplug schedule.

    A line whose port fails (the host side of ``socket://`` went away, a USB
    adapter was pulled) is closed and reopened after :data:`REOPEN_DELAY`, so a
    simulator left running survives what the device it imitates would.
    """

    def __init__(self, simulator: Simulator, endpoint: Endpoint, *, unplug: Unplug | None = None) -> None:
        self.simulator = simulator
        self.endpoint = endpoint
        self.unplug = unplug
        self.path: str | None = None
        self._change_at = float("inf")

    def start(self, now: float) -> str:
        self.path = self.endpoint.open()
        self._change_at = now + self.unplug.up if self.unplug else float("inf")
        return self.path

    def service(self, now: float, on_open: t.Callable[[str], None]) -> None:
        """Answer the host, send what is due, and pull or restore the cable on schedule."""
        if self.path is None:
            if now >= self._change_at:
                self._reopen(now, on_open)
            return
        if now >= self._change_at and self.unplug is not None:
            log.info("simulator.unplugged", extra={"path": self.path})
            self._drop(now + self.unplug.down)
            return
        try:
            request = self.endpoint.read()
            if request:
                self.endpoint.write(self.simulator.receive(request))
            self.endpoint.write(self.simulator.output(now))
        except PORT_ERRORS as exc:
            log.warning("simulator.port_failed", extra={"path": self.path, "reason": os_reason(exc),
                                                        "delay_seconds": REOPEN_DELAY})
            self._drop(now + REOPEN_DELAY)

    def _reopen(self, now: float, on_open: t.Callable[[str], None]) -> None:
        try:
            path = self.start(now)
        except (LinkError, OSError) as exc:
            log.warning("simulator.port_failed", extra={"reason": str(exc), "delay_seconds": REOPEN_DELAY})
            self._change_at = now + REOPEN_DELAY
            return
        on_open(path)

    def _drop(self, until: float) -> None:
        with contextlib.suppress(*PORT_ERRORS):
            self.endpoint.unplug()
        self.path = None
        self._change_at = until

    def close(self) -> None:
        if self.path is not None:
            self.endpoint.close()
            self.path = None


def run(lines: t.Sequence[Line], stop: threading.Event, *,
        on_open: t.Callable[[str], None] = lambda path: None,
        clock: t.Callable[[], float] = time.monotonic, tick: float = TICK) -> None:
    """Open every line, then service them every ``tick`` until ``stop`` is set; close them on the way out.

    :param on_open: called with the path to connect to whenever a line (re)opens.
    """
    try:
        now = clock()
        for line in lines:
            on_open(line.start(now))
        while not stop.is_set():
            now = clock()
            for line in lines:
                line.service(now, on_open)
            stop.wait(tick)
    finally:
        for line in lines:
            line.close()
