"""Network lines to devices that speak over TCP: dial out to ``socket://HOST:PORT``, or wait for
the device to connect in on ``listen://HOST:PORT``.

Both present the same surface as :class:`devices.transport.SerialLink`, so the
gateway loop does not know which one it drives.

Why our own sockets and not pyserial's ``socket://`` handler: it empties its
input when the port opens (``reset_input_buffer`` in ``open``), so a message a
monitor sends the instant the connection is up can be thrown away unread, with
no ACK and nothing counted (one run in four in a site test). Here every byte
received after the connection opened is handed to the decoder.

Why listening: many monitors connect *to* the records side (the GE B40/B20
manual: "Any HIS … must act as the server. The monitor tries to open a
connection"). ``listen://`` binds that address and accepts one monitor at a
time; when it disconnects, the next connection is accepted. The listening
socket stays open across connections, so a monitor that reconnects at once is
never refused.
"""

from __future__ import annotations

import logging
import random
import socket
import typing as t
import urllib.parse

from devices.transport import MAX_READ_WAIT
from devices.transport import READ_CHUNK
from devices.transport import Attempts
from devices.transport import Backoff
from devices.transport import LinkError

log = logging.getLogger(__name__)

DIAL_SCHEME = "socket"
LISTEN_SCHEME = "listen"


def parse_address(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a ``socket://`` or ``listen://`` URL.

    :raises ValueError: for another scheme, a missing host or a port outside 1–65535.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in (DIAL_SCHEME, LISTEN_SCHEME):
        raise ValueError(f"{url!r} is not a socket:// or listen:// address")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or not 1 <= port <= 65535:
        raise ValueError(f"{url!r}: expected {parts.scheme}://HOST:PORT with a port from 1 to 65535")
    return parts.scheme, parts.hostname, port


def is_network(url: str) -> bool:
    """True for the URLs this module opens (``socket://``, ``listen://``)."""
    return url.split("://", 1)[0] in (DIAL_SCHEME, LISTEN_SCHEME)


class SocketLink:
    """A device reached over TCP, dialling out or listening (see the module docstring).

    :param url: ``socket://HOST:PORT`` (dial out) or ``listen://HOST:PORT`` (wait for the device).
    :param backoff: delay policy between failed connects or binds.
    :param read_wait: the longest a :meth:`read` (and, listening, a wait for the device) blocks.
    """

    def __init__(self, url: str, *, backoff: Backoff | None = None, read_wait: float = MAX_READ_WAIT,
                 rand: t.Callable[[], float] = random.random) -> None:
        self.scheme, self.host, self.port_number = parse_address(url)
        self.port = url
        self.backoff = backoff or Backoff()
        self.read_wait = read_wait
        self._server: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._attempts = Attempts(self.backoff, rand)
        self.path: str | None = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    @property
    def listening(self) -> bool:
        return self.scheme == LISTEN_SCHEME

    @property
    def address(self) -> tuple[str, int]:
        """The bound address while listening (the port chosen when 0 was asked for), else the device's."""
        if self._server is not None:
            host, port = self._server.getsockname()[:2]
            return str(host), int(port)
        return self.host, self.port_number

    def open(self) -> None:
        """Connect (dialling) or bind (listening) once; listening, a device may not have connected yet.

        :raises LinkError: naming the address and the operating system's reason.
        """
        if self.listening:
            self._bind()
            self._accept()
            return
        try:
            conn = socket.create_connection((self.host, self.port_number), timeout=self.read_wait * 4)
        except OSError as exc:
            raise LinkError(f"cannot connect to {self.host}:{self.port_number}: {exc.strerror or exc}") from None
        self._start(conn, f"{self.host}:{self.port_number}")

    def connect(self, now: float) -> bool:
        """Try to open the line if the backoff allows it at monotonic time ``now``.

        Listening, this waits up to ``read_wait`` for the device to connect and
        returns ``False`` (with no backoff) while none has.

        :raises LinkError: when a connect or bind failed; the next attempt waits longer.
        """
        if self._conn is not None:
            return True
        return self._attempts.try_open(now, self.open) and self._conn is not None

    def wait_time(self, now: float) -> float:
        """Seconds until the next attempt is allowed."""
        return self._attempts.wait_time(now)

    def read(self) -> bytes:
        """Wait up to ``read_wait`` seconds for bytes and return what has arrived.

        :raises LinkError: when the device closed the connection or it failed; the next
            :meth:`connect` dials again (or, listening, accepts the next connection).
        """
        conn = self._require()
        try:
            data = conn.recv(READ_CHUNK)
        except TimeoutError:
            return b""
        except OSError as exc:
            raise self._lost(exc.strerror or str(exc)) from None
        if not data:
            raise self._lost("the device closed the connection")
        return data

    def write(self, data: bytes) -> None:
        """Send ``data`` to the device.

        :raises LinkError: when the connection failed.
        """
        conn = self._require()
        try:
            conn.sendall(data)
        except OSError as exc:
            raise self._lost(exc.strerror or str(exc)) from None

    def close(self) -> None:
        """Close the connection and stop listening (idempotent)."""
        self._drop()
        server, self._server = self._server, None
        if server is not None:
            server.close()

    def _bind(self) -> None:
        if self._server is not None:
            return
        try:
            self._server = socket.create_server((self.host, self.port_number))
        except OSError as exc:
            raise LinkError(f"cannot listen on {self.host}:{self.port_number}: {exc.strerror or exc}") from None
        self._server.settimeout(self.read_wait)

    def _accept(self) -> None:
        assert self._server is not None
        try:
            conn, addr = self._server.accept()
        except TimeoutError:
            return
        except OSError as exc:
            raise LinkError(f"cannot accept on {self.host}:{self.port_number}: {exc.strerror or exc}") from None
        self._start(conn, f"{addr[0]}:{addr[1]}")

    def _start(self, conn: socket.socket, peer: str) -> None:
        conn.settimeout(self.read_wait)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = conn
        self.path = peer

    def _require(self) -> socket.socket:
        if self._conn is None:
            raise LinkError(f"{self.port} is not connected")
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _lost(self, reason: str) -> LinkError:
        """Close the connection (not the listening socket) and say why."""
        peer = self.path or self.port
        self._drop()
        return LinkError(f"connection {peer} ended: {reason}")
