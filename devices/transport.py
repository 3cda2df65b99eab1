"""The serial line to one device: open by path or URL, find it again, back off, reconnect.

pyserial is used as a transport only: bytes in, bytes out. Decoding stays in the
sans-I/O decoders, so nothing here knows a protocol.

Why reconnect is built in: a USB-serial adapter that is unplugged (or a pty whose
master closes, which fails the same way) raises :class:`serial.SerialException`
on the next read; if the old file descriptor stayed open the kernel would bring
the adapter back under a new name (``/dev/ttyUSB1``). So a failed line is closed
at once and reopened with exponential backoff, and when the configuration gives
the adapter's USB serial number the port is looked up again by that number.
"""

from __future__ import annotations

import logging
import os
import random
import typing as t
from dataclasses import dataclass

import serial
from serial.tools import list_ports

from devices.drivers import SerialSettings

try:
    import termios
except ImportError:  # Windows station PCs have no termios; pyserial raises SerialException there.
    PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError)
else:
    PORT_ERRORS = (serial.SerialException, OSError, termios.error)

#: Opening also fails with ValueError: an unknown URL scheme or an invalid setting.
OPEN_ERRORS: tuple[type[BaseException], ...] = (*PORT_ERRORS, ValueError)

log = logging.getLogger(__name__)

#: What a read waits for at most, so the caller can poll, watch the quiet timeout and stop.
MAX_READ_WAIT = 0.5

#: Upper bound of one read; a serial device never has more buffered in practice.
READ_CHUNK = 65536


class LinkError(Exception):
    """The line could not be opened or failed while in use; the message names the port."""


class Link(t.Protocol):
    """What the gateway loop drives: :class:`SerialLink`, or :class:`devices.netlink.SocketLink`."""

    port: str
    path: str | None
    backoff: Backoff

    @property
    def is_open(self) -> bool: ...

    def open(self) -> None: ...

    def connect(self, now: float) -> bool: ...

    def wait_time(self, now: float) -> float: ...

    def read(self) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with jitter, a pure function of the failure count.

    ``delay(n) = min(cap, base * 2 ** (n - 1)) + U(0, jitter)`` for ``n`` consecutive
    failures (the urllib3 ``Retry`` shape): a vanished adapter is retried quickly at
    first, because a replug usually takes a second or two, and then no more often
    than every ``cap`` seconds so a missing device does not burn CPU or flood the log.
    """

    base: float = 0.1
    cap: float = 2.0
    jitter: float = 0.1

    def delay(self, failures: int, rand: t.Callable[[], float] = random.random) -> float:
        """Seconds to wait after ``failures`` consecutive failures (0 before the first)."""
        if failures <= 0:
            return 0.0
        exponential: float = self.base * 2.0 ** (failures - 1)
        return min(self.cap, exponential) + rand() * self.jitter


class Attempts:
    """When a link may next try to open: the failures in a row and the backoff they earned.

    Shared by every kind of link so serial ports and sockets back off alike.
    """

    def __init__(self, backoff: Backoff, rand: t.Callable[[], float]) -> None:
        self.backoff = backoff
        self._rand = rand
        self.failures = 0
        self.next_at = 0.0

    def try_open(self, now: float, opener: t.Callable[[], None]) -> bool:
        """Run ``opener`` if the backoff allows it at monotonic time ``now``; ``False`` when it does not.

        :raises LinkError: from ``opener``; the next attempt then waits longer.
        """
        if now < self.next_at:
            return False
        try:
            opener()
        except LinkError:
            self.failures += 1
            self.next_at = now + self.backoff.delay(self.failures, self._rand)
            raise
        self.failures = 0
        return True

    def lost(self) -> None:
        """An open line failed: the next attempt may come at once, then back off as after one failure."""
        self.failures = 1
        self.next_at = 0.0

    def wait_time(self, now: float) -> float:
        """Seconds until the next attempt is allowed."""
        return max(0.0, self.next_at - now)


Comports = t.Callable[[], t.Iterable[t.Any]]


def find_port_by_serial_number(serial_number: str, comports: Comports = list_ports.comports) -> str | None:
    """The device path of the USB adapter with ``serial_number``, or ``None`` if it is not plugged in."""
    for info in comports():
        if info.serial_number == serial_number:
            return str(info.device)
    return None


class SerialLink:
    """One device's serial line, opened on demand and reopened after a failure.

    :param port: a device path (``/dev/ttyUSB0``, ``/dev/serial/by-id/…``) or any
        pyserial URL (``loop://``, ``socket://host:port``, ``rfc2217://…``).
    :param settings: baud rate, framing and flow control.
    :param serial_number: the adapter's USB serial number; when given, the port is
        looked up by it on every open and ``port`` is the fallback.
    :param backoff: delay policy between failed opens.
    :param read_wait: the longest a :meth:`read` blocks. It is fixed when the port
        opens because changing a pyserial timeout reprograms the terminal
        (``tcsetattr``) on every call, which costs CPU and fails on some drivers.
    :param opener: ``serial.serial_for_url`` or a stand-in with its signature.
    :param comports: the port enumerator used for the serial-number lookup.
    """

    def __init__(self, port: str, settings: SerialSettings, *, serial_number: str | None = None,
                 backoff: Backoff | None = None, read_wait: float = MAX_READ_WAIT,
                 opener: t.Callable[..., serial.SerialBase] = serial.serial_for_url,
                 comports: Comports = list_ports.comports,
                 rand: t.Callable[[], float] = random.random) -> None:
        self.port = port
        self.settings = settings
        self.serial_number = serial_number
        self.backoff = backoff or Backoff()
        self.read_wait = read_wait
        self._opener = opener
        self._comports = comports
        self._serial: serial.SerialBase | None = None
        self._failure: BaseException | None = None
        self._attempts = Attempts(self.backoff, rand)
        self.path: str | None = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def resolve(self) -> str:
        """The path to open now: the adapter found by serial number, else the configured port."""
        if self.serial_number is not None:
            found = find_port_by_serial_number(self.serial_number, self._comports)
            if found is not None:
                return found
        return self.port

    def open(self) -> None:
        """Open the line once.

        :raises LinkError: naming the port and the operating system's reason.
        """
        path = self.resolve()
        s = self.settings
        try:
            self._serial = self._opener(path, baudrate=s.baudrate, bytesize=s.bytesize, parity=s.parity,
                                        stopbits=s.stopbits, rtscts=s.rtscts, xonxoff=s.xonxoff,
                                        timeout=self.read_wait, write_timeout=MAX_READ_WAIT)
        except OPEN_ERRORS as exc:
            raise LinkError(f"cannot open port {path}: {os_reason(exc)}") from None
        self.path = path

    def connect(self, now: float) -> bool:
        """Try to open the line if the backoff allows it at monotonic time ``now``.

        :returns: ``True`` when the line is open after the call.
        :raises LinkError: when this attempt failed; the next one waits longer.
        """
        if self._serial is not None:
            return True
        return self._attempts.try_open(now, self.open)

    def wait_time(self, now: float) -> float:
        """Seconds until the next open attempt is allowed."""
        return self._attempts.wait_time(now)

    def read(self) -> bytes:
        """Wait up to ``read_wait`` seconds for bytes and return all that have arrived.

        One wake-up per burst rather than per byte: block for the first byte, then
        take whatever else is already buffered.

        :raises LinkError: when the line failed; it is closed and will be reopened.
        """
        port = self._require()
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise self._lost(failure)
        try:
            data = port.read(1)
        except PORT_ERRORS as exc:
            raise self._lost(exc) from None
        if not data:
            return b""
        try:
            waiting = port.in_waiting
            if waiting:
                data += port.read(min(waiting, READ_CHUNK))
        except PORT_ERRORS as exc:
            # The first byte is real data: hand it over now and report the failure on the next read.
            self._failure = exc
        return bytes(data)

    def write(self, data: bytes) -> None:
        """Write ``data`` to the device.

        :raises LinkError: when the line failed; it is closed and will be reopened.
        """
        port = self._require()
        try:
            port.write(data)
        except PORT_ERRORS as exc:
            raise self._lost(exc) from None

    def close(self) -> None:
        """Close the line (idempotent); an error while closing a dead port is irrelevant."""
        port, self._serial = self._serial, None
        self._failure = None
        if port is not None:
            try:
                port.close()
            except PORT_ERRORS as exc:
                log.debug("device.close_failed", extra={"port": self.path, "reason": str(exc)})

    def _require(self) -> serial.SerialBase:
        if self._serial is None:
            raise LinkError(f"port {self.port} is not open")
        return self._serial

    def _lost(self, exc: BaseException) -> LinkError:
        """Close at once: an fd kept open on a vanished adapter makes it re-enumerate under a new name."""
        path = self.path or self.port
        self.close()
        self._attempts.lost()
        return LinkError(f"port {path} failed: {os_reason(exc)}")


def os_reason(exc: BaseException) -> str:
    """The operating system's words for a failure, without pyserial's repetition of the path."""
    cause = exc.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int):
        return os.strerror(errno)
    return str(exc) or type(exc).__name__
