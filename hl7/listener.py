"""Inbound MLLP server: many connections, many messages per connection, optional (mutual) TLS.

Each accepted connection gets a thread with its own :class:`~hl7.mllp.MLLPDecoder`;
every complete frame goes to a handler that returns the ACK to send back. The
listener owns everything a handler should not have to think about: framing,
bounded resources, TLS, the sender allow-list, and turning failures into
negative ACKs or a closed connection instead of a crash.

Failure policy, per connection (the listener itself keeps serving):

* Bytes outside a frame, a start block inside a frame, an oversize frame: the
  connection cannot be trusted to be in sync any more, so it is closed, after
  an AR when the frame's MSH could still be read. Frames completed before the
  bad bytes are answered normally; a partial frame is never handed on.
* A frame with no readable MSH: closed, since there is nobody to address an
  ACK to. MSH readable but the body invalid in its declared charset: AE (the
  sender must fix the message).
* MSH-3/MSH-4 not in the allow-list: AR, the handler never sees the message.
* Handler raised: AR ("resend later"), because the fault is ours, not the
  message's; the traceback goes to the log, the message bytes do not.
* A peer silent for ``idle_timeout``, or taking longer than ``read_timeout``
  to finish a frame (slowloris), or failing the TLS handshake: closed.
* More than ``max_connections`` at once: the new connection is closed at once
  rather than left waiting in the backlog.

Nothing here logs message content: logs carry peer addresses and MSH-10.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import ssl
import threading
import time
import typing as t
import uuid
from collections.abc import Callable
from collections.abc import Collection
from dataclasses import dataclass

from hl7.ack import ErrorDetail
from hl7.ack import build_ack
from hl7.er7 import CharsetError
from hl7.er7 import Message
from hl7.er7 import ParseError
from hl7.er7 import parse_message
from hl7.mllp import DEFAULT_MAX_FRAME
from hl7.mllp import MLLPDecoder
from hl7.mllp import MLLPProtocolError
from hl7.mllp import encode_frame

log = logging.getLogger(__name__)

_READ_SIZE = 65536


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Who sent a message: address, and the certificate name under mutual TLS.

    :param certificate_subject: commonName of the verified client certificate;
        empty without mutual TLS. Handlers can authorise on it, which is
        stronger than trusting an IP address.
    """

    host: str
    port: int
    tls: bool = False
    certificate_subject: str = ""


Handler = Callable[[bytes, PeerInfo], bytes | None]
"""Called with one complete message (no framing); returns the ACK message, or ``None`` to send nothing."""

UnreadableHandler = Callable[[bytes, PeerInfo, str], bytes | None]
"""Called with a message whose MSH is readable but whose body is not (bytes invalid in its
charset, say) and the reason; returns the ACK (an AE) or ``None``."""


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _random_control_id() -> str:
    # 20 characters: the MSH-10 length limit of HL7 v2.3-2.5 receivers.
    return uuid.uuid4().hex[:20].upper()


def _header(frame: bytes) -> Message | None:
    """The MSH segment alone, for addressing a negative ACK when the whole message is unreadable."""
    end = frame.find(b"\r")
    line = frame if end < 0 else frame[:end]
    try:
        return parse_message(line.decode("ascii", "replace"))
    except ParseError:
        return None


def parse_allowed_sender(text: str) -> tuple[str, str]:
    """Read an allow-list entry written ``APPLICATION^FACILITY`` (MSH-3.1 and MSH-4.1), as in configuration.

    :raises ValueError: unless both parts are present.
    """
    application, sep, facility = text.strip().partition("^")
    if not sep or not application or not facility or "^" in facility:
        raise ValueError(f"expected APPLICATION^FACILITY, got {text!r}")
    return application, facility


def _sender(message: Message) -> tuple[str, str]:
    return message.msh.value(3), message.msh.value(4)


class MLLPListener:
    """Serve MLLP on one address until :meth:`close`.

    :param handler: turns a message into its ACK; called from connection
        threads, so it must be thread-safe.
    :param host: address to bind; the default keeps the listener off the network.
    :param port: TCP port; 0 picks a free one (see :attr:`address`).
    :param ssl_context: from :func:`hl7.tls.server_context`; ``None`` for plain MLLP.
    :param max_connections: concurrent connections served; more are refused.
    :param idle_timeout: seconds a connection may stay silent between messages.
    :param read_timeout: seconds allowed to receive one frame once it started,
        and for the TLS handshake.
    :param max_frame: largest message accepted, in bytes.
    :param allowed_senders: ``(MSH-3.1, MSH-4.1)`` pairs allowed to send, or
        ``None`` to accept any sender. The first component (HD namespace id) is
        compared because the others carry per-device identifiers (PCD-01 puts
        the EUI-64 in MSH-3.2).
    :param on_unreadable: receives messages that do not parse but whose MSH does
        (after the allow-list), so the application can keep them for review and
        answer them; without it the listener answers AE itself and keeps nothing.
    :param clock: MSH-7 of the negative ACKs the listener builds itself.
    :param ack_ids: MSH-10 source for those ACKs.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 2575,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 128,
        idle_timeout: float = 60.0,
        read_timeout: float = 30.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        allowed_senders: Collection[tuple[str, str]] | None = None,
        on_unreadable: UnreadableHandler | None = None,
        clock: Callable[[], dt.datetime] = _utc_now,
        ack_ids: Callable[[], str] = _random_control_id,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if idle_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.handler = handler
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.read_timeout = read_timeout
        self.max_frame = max_frame
        self.allowed_senders = None if allowed_senders is None else frozenset(allowed_senders)
        self.on_unreadable = on_unreadable
        self.clock = clock
        self.ack_ids = ack_ids
        self._server: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._connections: dict[int, tuple[socket.socket, threading.Thread]] = {}

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``; only valid after :meth:`start`."""
        if self._server is None:
            raise RuntimeError("listener is not started")
        sockname = self._server.getsockname()
        return str(sockname[0]), int(sockname[1])

    def __enter__(self) -> MLLPListener:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Bind and start accepting in a background thread."""
        if self._server is not None:
            raise RuntimeError("listener already started")
        self._server = socket.create_server((self.host, self.port), backlog=max(128, self.max_connections))
        self._accept_thread = threading.Thread(target=self._accept_loop, name="mllp-accept", daemon=True)
        self._accept_thread.start()
        log.info("MLLP listener on %s:%s%s", *self.address, " (TLS)" if self.ssl_context else "")

    def close(self) -> None:
        """Stop accepting, drop every connection and wait for their threads."""
        self._closing.set()
        server, self._server = self._server, None
        if server is not None:
            _shutdown(server)
            server.close()
        if self._accept_thread is not None and self._accept_thread is not threading.current_thread():
            self._accept_thread.join()
        with self._lock:
            connections = list(self._connections.values())
        for sock, _ in connections:
            _shutdown(sock)
        for _, thread in connections:
            if thread is not threading.current_thread():
                thread.join()

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def _accept_loop(self) -> None:
        server = self._server
        assert server is not None
        while not self._closing.is_set():
            try:
                conn, addr = server.accept()
            except OSError:
                if self._closing.is_set():
                    return
                log.warning("accept failed", exc_info=True)
                # Out of file descriptors and the like: back off instead of spinning.
                self._closing.wait(0.1)
                continue
            if not self._slots.acquire(blocking=False):
                log.warning("connection limit %d reached; refusing %s:%s", self.max_connections, *addr[:2])
                conn.close()
                continue
            # One small ACK per message: Nagle's algorithm plus the peer's delayed ACK would add ~40 ms.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._serve, args=(conn, addr), name="mllp-conn", daemon=True)
            with self._lock:
                self._connections[id(conn)] = (conn, thread)
            try:
                thread.start()
            except RuntimeError:
                log.error("cannot start a thread for %s:%s; refusing the connection", *addr[:2])
                with self._lock:
                    self._connections.pop(id(conn), None)
                self._slots.release()
                conn.close()

    def _serve(self, conn: socket.socket, addr: tuple[t.Any, ...]) -> None:
        key = id(conn)
        sock = conn
        try:
            if self.ssl_context is not None:
                conn.settimeout(self.read_timeout)
                sock = self.ssl_context.wrap_socket(conn, server_side=True)
                with self._lock:
                    self._connections[key] = (sock, self._connections[key][1])
            self._converse(sock, self._peer(sock, addr))
        except (OSError, ssl.SSLError) as exc:
            log.info("connection from %s:%s ended: %s", addr[0], addr[1], exc)
        except Exception:
            log.exception("connection from %s:%s failed", addr[0], addr[1])
        finally:
            sock.close()
            with self._lock:
                self._connections.pop(key, None)
            self._slots.release()

    def _peer(self, sock: socket.socket, addr: tuple[t.Any, ...]) -> PeerInfo:
        if not isinstance(sock, ssl.SSLSocket):
            return PeerInfo(host=str(addr[0]), port=int(addr[1]))
        certificate = sock.getpeercert() or {}
        names = [str(attr[1]) for rdn in certificate.get("subject", ()) for attr in rdn if attr[0] == "commonName"]
        subject = names[-1] if names else ""
        return PeerInfo(host=str(addr[0]), port=int(addr[1]), tls=True, certificate_subject=subject)

    def _converse(self, sock: socket.socket, peer: PeerInfo) -> None:
        decoder = MLLPDecoder(self.max_frame)
        frame_deadline: float | None = None
        while not self._closing.is_set():
            now = time.monotonic()
            if decoder.in_frame:
                frame_deadline = frame_deadline or now + self.read_timeout
                timeout = min(self.idle_timeout, frame_deadline - now)
            else:
                frame_deadline = None
                timeout = self.idle_timeout
            if timeout <= 0:
                log.info("%s:%s too slow to finish a frame; closing", peer.host, peer.port)
                return
            sock.settimeout(timeout)
            try:
                data = sock.recv(_READ_SIZE)
            except TimeoutError:
                log.info("%s:%s idle or too slow; closing", peer.host, peer.port)
                return
            if not data:
                if decoder.in_frame:
                    log.info("%s:%s closed mid-frame; partial frame discarded", peer.host, peer.port)
                return
            try:
                frames = decoder.feed(data)
            except MLLPProtocolError as exc:
                for frame in exc.completed:
                    if not self._reply(sock, frame, peer):
                        return
                log.warning("%s:%s broke MLLP framing (%s); closing", peer.host, peer.port, exc.reason)
                header = _header(exc.partial) if b"\r" in exc.partial else None
                if header is not None:
                    self._send(sock, self._negative(header, "AR", f"MLLP framing error: {exc.reason}"))
                self._drain(sock)
                return
            for frame in frames:
                if not self._reply(sock, frame, peer):
                    return

    def _reply(self, sock: socket.socket, frame: bytes, peer: PeerInfo) -> bool:
        """Answer one frame; False when the connection must close."""
        problem: str | None = None
        try:
            message = parse_message(frame)
        except (ParseError, CharsetError) as exc:
            header = _header(frame)
            if header is None:
                log.warning("%s:%s sent a frame with no readable MSH; closing", peer.host, peer.port)
                return False
            message, problem = header, str(exc)
        if self.allowed_senders is not None and _sender(message) not in self.allowed_senders:
            log.warning(
                "%s:%s sender %r not allowed; AR for %s",
                peer.host,
                peer.port,
                _sender(message),
                message.msh.value(10),
            )
            return self._send(sock, self._negative(message, "AR", "sending application not allowed"))
        if problem is not None and self.on_unreadable is None:
            return self._send(sock, self._negative(message, "AE", problem, code_0357="102"))
        try:
            if problem is None:
                ack = self.handler(frame, peer)
            else:
                assert self.on_unreadable is not None
                ack = self.on_unreadable(frame, peer, problem)
        except Exception:
            log.exception("handler failed for %s", message.msh.value(10))
            ack = self._negative(message, "AR", "receiver error, resend later")
        if ack is None:
            return True
        return self._send(sock, ack)

    def _negative(self, message: Message, code: str, text: str, *, code_0357: str = "207") -> bytes:
        return build_ack(
            message,
            code,
            errors=(ErrorDetail(text=text, code=code_0357),),
            control_id=self.ack_ids(),
            now=self.clock(),
        )

    def _drain(self, sock: socket.socket) -> None:
        """Half-close, then discard what the peer is still sending (bounded by ``max_frame``).

        Closing a socket with unread input makes the kernel send a reset, which
        can destroy the AR we just wrote before the peer reads it and turns a
        clean close into a connection error on the peer's side.
        """
        try:
            socket.socket.shutdown(sock, socket.SHUT_WR)
            sock.settimeout(min(self.read_timeout, 1.0))
            budget = self.max_frame
            while budget > 0:
                data = sock.recv(_READ_SIZE)
                if not data:
                    return
                budget -= len(data)
        except OSError:
            return

    def _send(self, sock: socket.socket, ack: bytes) -> bool:
        try:
            frame = encode_frame(ack)
        except ValueError:
            log.error("handler returned an ACK containing MLLP block characters; closing")
            return False
        sock.settimeout(self.idle_timeout)
        sock.sendall(frame)
        return True


def _shutdown(sock: socket.socket) -> None:
    """Wake a thread blocked in accept/recv on ``sock`` without racing its TLS state."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
