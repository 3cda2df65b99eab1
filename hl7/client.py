"""Persistent MLLP client: send one message, wait for the ACK that names it.

One message is in flight at a time (send, wait for its ACK, then the next):
every receiver handles that, and it is what makes an ACK unambiguous.

Why ACKs are matched by MSA-2 and not by arrival order: a receiver can answer
late (after our timeout) or twice (node-hl7-server repeats the previous
MSA-2 on the second message of a connection). Accepting whatever arrives next
would mark the wrong message delivered. An ACK whose MSA-2 is not the control
id (MSH-10) we are waiting for is ignored; if the right one never comes, the
wait ends in :class:`AckTimeout` and the connection is dropped, so nothing
stale is read on the next exchange.

Why an ACK timeout is not a failure: the receiver may have stored the message
and lost the ACK. The caller retries with the same MSH-10 and relies on the
receiver de-duplicating (at-least-once delivery).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import time

from hl7.ack import parse_ack
from hl7.er7 import CharsetError
from hl7.er7 import ParseError
from hl7.mllp import DEFAULT_MAX_FRAME
from hl7.mllp import MLLPDecoder
from hl7.mllp import MLLPProtocolError
from hl7.mllp import encode_frame

log = logging.getLogger(__name__)

_READ_SIZE = 65536


class TransportError(Exception):
    """The message may or may not have arrived; retry it with the same MSH-10."""


class ConnectFailed(TransportError):
    """No connection (refused, unreachable, connect timeout, TLS handshake or certificate refused)."""


class ConnectionLost(TransportError):
    """The connection closed or broke MLLP framing before the matching ACK arrived."""


class AckTimeout(TransportError):
    """No ACK naming our MSH-10 arrived in time; the outcome is unknown."""


class MLLPClient:
    """A reusable connection to one MLLP receiver.

    The connection opens on the first :meth:`send` and stays open across
    messages; any error closes it and the next :meth:`send` reconnects. Not
    thread-safe: one dispatcher owns one client.

    :param host: receiver host name or address (from configuration only).
    :param port: receiver TCP port.
    :param ssl_context: a context from :func:`hl7.tls.client_context` for TLS or
        mutual TLS; ``None`` for plain MLLP.
    :param server_hostname: name checked against the receiver's certificate;
        defaults to ``host``.
    :param connect_timeout: seconds allowed for TCP connect plus TLS handshake.
    :param ack_timeout: seconds allowed between the end of the send and the
        matching ACK.
    :param max_frame: largest ACK frame accepted, in bytes.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout: float = 10.0,
        ack_timeout: float = 30.0,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        if connect_timeout <= 0 or ack_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname or host
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self.max_frame = max_frame
        self._sock: socket.socket | None = None
        self._decoder = MLLPDecoder(max_frame)

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def __enter__(self) -> MLLPClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the connection, if any; the next :meth:`send` reconnects."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                log.debug("hl7.close_failed", exc_info=True)

    def send(self, message: bytes, control_id: str) -> bytes:
        """Send ``message`` and return the ACK message whose MSA-2 is ``control_id``.

        The returned bytes are the ACK without MLLP framing; classifying its
        code (AA, AE, …) is the caller's decision, not the transport's.

        :param message: one complete ER7 message.
        :param control_id: the message's MSH-10, the value the ACK must echo.
        :raises TransportError: (one of its subclasses) when the outcome is unknown.
        :raises ValueError: if ``message`` cannot be framed.
        """
        frame = encode_frame(message)
        sock = self._connection()
        try:
            sock.sendall(frame)
        except OSError as exc:
            self.close()
            raise ConnectionLost(f"send failed: {exc}") from exc
        return self._await_ack(sock, control_id)

    def _connection(self) -> socket.socket:
        if self._sock is not None and self._is_stale(self._sock):
            log.info("hl7.reconnecting", extra={"peer": f"{self.host}:{self.port}",
                                                "reason": "connection closed or desynchronised"})
            self.close()
        if self._sock is None:
            self._sock = self._connect()
            self._decoder = MLLPDecoder(self.max_frame)
        return self._sock

    @staticmethod
    def _is_stale(sock: socket.socket) -> bool:
        """True if the idle connection has anything to read: EOF from the peer or an unsolicited frame.

        Between exchanges nothing should arrive. Either way the safest course
        is a fresh connection, and finding out before sending avoids a wasted
        ACK wait on a socket the receiver already closed.
        """
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)

    def _connect(self) -> socket.socket:
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise ConnectFailed(f"connect to {self.host}:{self.port} failed: {exc}") from exc
        # Request/response with small frames: without this, Nagle's algorithm can hold a write for the peer's
        # delayed ACK (~40 ms).
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is None:
            return raw
        try:
            return self.ssl_context.wrap_socket(raw, server_hostname=self.server_hostname)
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            raise ConnectFailed(f"TLS handshake with {self.host}:{self.port} failed: {exc}") from exc

    def _await_ack(self, sock: socket.socket, control_id: str) -> bytes:
        deadline = time.monotonic() + self.ack_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise AckTimeout(f"no ACK for {control_id} within {self.ack_timeout} s")
            try:
                sock.settimeout(remaining)
                data = sock.recv(_READ_SIZE)
            except TimeoutError:
                continue
            except OSError as exc:
                self.close()
                raise ConnectionLost(f"receive failed: {exc}") from exc
            if not data:
                self.close()
                raise ConnectionLost("receiver closed the connection before the ACK")
            try:
                frames = self._decoder.feed(data)
            except MLLPProtocolError as exc:
                self.close()
                raise ConnectionLost(f"receiver broke MLLP framing: {exc.reason}") from exc
            for frame in frames:
                if self._names(frame, control_id):
                    return frame

    @staticmethod
    def _names(frame: bytes, control_id: str) -> bool:
        try:
            ack = parse_ack(frame)
        except (ParseError, CharsetError) as exc:
            log.warning("hl7.ack_ignored", extra={"control_id": control_id, "reason": f"unreadable: {exc}"})
            return False
        if ack.control_id != control_id:
            log.warning("hl7.ack_ignored", extra={"control_id": control_id,
                                                  "reason": f"MSA-2 {ack.control_id!r} is another message's"})
            return False
        return True
