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
  In a batch frame (FHS/BHS) every message's sender must be allowed, or every
  message gets AR in the response batch; a batch whose structure cannot be
  read is closed like a frame without MSH.
* Handler raised: AR ("resend later"), because the fault is ours, not the
  message's; the traceback goes to the log, the message bytes do not.
* A peer silent for ``idle_timeout``, or taking longer than ``read_timeout``
  to finish a frame (slowloris), or failing the TLS handshake: closed.
* More than ``max_connections`` at once: the new connection is closed at once
  rather than left waiting in the backlog.

Frames that complete in the same read (a sender pipelining messages without
waiting for each ACK) go to ``group_handler`` together when one is given, so
the application can store them in one transaction; their ACKs go back in
order, in one write.

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
from collections.abc import Sequence
from dataclasses import dataclass

from hl7.ack import ErrorDetail
from hl7.ack import build_ack
from hl7.batch import build_batch_ack
from hl7.batch import is_batch
from hl7.batch import split_batch
from hl7.er7 import CharsetError
from hl7.er7 import Message
from hl7.er7 import ParseError
from hl7.er7 import parse_header
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

    @property
    def address(self) -> str:
        """``host:port``, as logs name a peer."""
        return f"{self.host}:{self.port}"


Handler = Callable[[bytes, PeerInfo], bytes | None]
"""Called with one complete message (no framing); returns the ACK message, or ``None`` to send nothing."""

UnreadableHandler = Callable[[bytes, PeerInfo, str], bytes | None]
"""Called with a message whose MSH is readable but whose body is not (bytes invalid in its
charset, say) and the reason; returns the ACK (an AE) or ``None``."""

GroupHandler = Callable[[Sequence[bytes], PeerInfo], Sequence[bytes | None]]
"""Called with the frames that arrived together and passed the listener's checks; returns one ACK
(or ``None``) per frame, in order."""


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What the listener decided about one frame before any handler sees it.

    ``answer`` is set when the listener answers the frame itself; ``close``
    when the connection must end; otherwise the frame goes to the handler
    (``problem`` set: to ``on_unreadable``).
    """

    headers: tuple[Message, ...] = ()
    answer: bytes | None = None
    close: bool = False
    problem: str | None = None

    @property
    def for_handler(self) -> bool:
        return self.answer is None and not self.close and self.problem is None


def _address(addr: tuple[t.Any, ...]) -> str:
    return f"{addr[0]}:{addr[1]}"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _random_control_id() -> str:
    # 20 characters: the MSH-10 length limit of HL7 v2.3-2.5 receivers.
    return uuid.uuid4().hex[:20].upper()




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
    :param group_handler: receives frames completed by the same read together
        (see the module docstring); without it each frame goes to ``handler``.
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
        group_handler: GroupHandler | None = None,
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
        self.group_handler = group_handler
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
        host, port = self.address
        log.info("hl7.listener_started", extra={"host": host, "port_number": port,
                                                "state": "tls" if self.ssl_context else "plain"})

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
                log.warning("hl7.accept_failed", exc_info=True)
                # Out of file descriptors and the like: back off instead of spinning.
                self._closing.wait(0.1)
                continue
            if not self._slots.acquire(blocking=False):
                log.warning("hl7.connection_refused", extra={"peer": _address(addr), "count": self.max_connections,
                                                             "reason": "connection limit reached"})
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
                log.error("hl7.connection_refused", extra={"peer": _address(addr), "reason": "no thread available"})
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
                try:
                    sock = self.ssl_context.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError) as exc:
                    # A plain client, an unknown CA, a missing certificate, an old TLS version: the operator
                    # needs the peer and the reason to tell a misconfigured sender from a probe.
                    log.warning("hl7.listener_handshake_failed", extra={"peer": _address(addr), "reason": str(exc)})
                    return
                with self._lock:
                    self._connections[key] = (sock, self._connections[key][1])
            self._converse(sock, self._peer(sock, addr))
        except (OSError, ssl.SSLError) as exc:
            log.info("hl7.connection_ended", extra={"peer": _address(addr), "reason": str(exc)})
        except Exception:
            log.exception("hl7.connection_failed", extra={"peer": _address(addr)})
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
                log.info("hl7.connection_closed", extra={"peer": peer.address, "reason": "too slow to finish a frame"})
                return
            sock.settimeout(timeout)
            try:
                data = sock.recv(_READ_SIZE)
            except TimeoutError:
                log.info("hl7.connection_closed", extra={"peer": peer.address, "reason": "idle or too slow"})
                return
            if not data:
                if decoder.in_frame:
                    log.info("hl7.connection_closed", extra={"peer": peer.address,
                                                             "reason": "closed mid-frame; partial frame discarded"})
                return
            try:
                frames = decoder.feed(data)
            except MLLPProtocolError as exc:
                if not self._answer(sock, list(exc.completed), peer):
                    return
                log.warning("hl7.framing_error", extra={"peer": peer.address, "reason": exc.reason})
                header = parse_header(exc.partial) if b"\r" in exc.partial or b"\n" in exc.partial else None
                if header is not None:
                    self._send(sock, encode_frame(self._negative(header, "AR", f"MLLP framing error: {exc.reason}")))
                self._drain(sock)
                return
            if not self._answer(sock, frames, peer):
                return

    def _answer(self, sock: socket.socket, frames: list[bytes], peer: PeerInfo) -> bool:
        """Answer frames that arrived together, in order, in one write; False when the connection must close."""
        verdicts = [self._screen(frame, peer) for frame in frames]
        grouped = [i for i, v in enumerate(verdicts) if v.for_handler]
        group: dict[int, bytes | None] = {}
        if self.group_handler is not None and len(grouped) > 1:
            group = self._call_group([frames[i] for i in grouped], [verdicts[i] for i in grouped], peer, grouped)
        acks: list[bytes] = []
        for index, (frame, verdict) in enumerate(zip(frames, verdicts, strict=True)):
            if verdict.close:
                self._send(sock, b"".join(acks))
                return False
            ack = group[index] if index in group else self._handle(frame, verdict, peer)
            if ack is not None:
                try:
                    acks.append(encode_frame(ack))
                except ValueError:
                    log.error("hl7.ack_unframeable", extra={"peer": peer.address})
                    self._send(sock, b"".join(acks))
                    return False
        return self._send(sock, b"".join(acks))

    def _screen(self, frame: bytes, peer: PeerInfo) -> _Verdict:
        """The listener's own checks: a readable header, an allowed sender; a negative answer or a pass."""
        if is_batch(frame):
            return self._screen_batch(frame, peer)
        problem: str | None = None
        try:
            message = parse_message(frame)
        except (ParseError, CharsetError) as exc:
            header = parse_header(frame)
            if header is None:
                log.warning("hl7.unreadable_frame", extra={"peer": peer.address, "reason": "no readable MSH"})
                return _Verdict(close=True)
            message, problem = header, str(exc)
        if not self._allowed(message, peer):
            return _Verdict((message,), answer=self._negative(message, "AR", "sending application not allowed"))
        if problem is not None and self.on_unreadable is None:
            return _Verdict((message,), answer=self._negative(message, "AE", problem, code_0357="102"))
        return _Verdict((message,), problem=problem)

    def _screen_batch(self, frame: bytes, peer: PeerInfo) -> _Verdict:
        try:
            batch = split_batch(frame)
        except ParseError as exc:
            log.warning("hl7.unreadable_frame", extra={"peer": peer.address, "reason": f"batch: {exc}"})
            return _Verdict(close=True)
        headers = tuple(parse_header(message) for message in batch.messages)
        if any(header is None for header in headers):
            log.warning("hl7.unreadable_frame", extra={"peer": peer.address,
                                                       "reason": "batch holding a message with no readable MSH"})
            return _Verdict(close=True)
        readable = tuple(h for h in headers if h is not None)
        if all(self._allowed(header, peer) for header in readable):
            return _Verdict(readable)
        acks = [self._negative(header, "AR", "sending application not allowed") for header in readable]
        return _Verdict(readable, answer=build_batch_ack(batch, acks, control_id=self.ack_ids(), now=self.clock()))

    def _allowed(self, message: Message, peer: PeerInfo) -> bool:
        if self.allowed_senders is None or _sender(message) in self.allowed_senders:
            return True
        log.warning("hl7.sender_not_allowed", extra={"peer": peer.address, "host": "^".join(_sender(message)),
                                                     "control_id": message.msh.value(10)})
        return False

    def _handle(self, frame: bytes, verdict: _Verdict, peer: PeerInfo) -> bytes | None:
        """One frame's answer: the listener's own, or the handler's (AR when the handler fails)."""
        if verdict.answer is not None:
            return verdict.answer
        try:
            if verdict.problem is None:
                return self.handler(frame, peer)
            assert self.on_unreadable is not None
            return self.on_unreadable(frame, peer, verdict.problem)
        except Exception:
            log.exception("hl7.handler_failed", extra={"control_id": ",".join(h.msh.value(10)
                                                                               for h in verdict.headers)})
            return self._failure(frame, verdict)

    def _call_group(self, frames: list[bytes], verdicts: list[_Verdict], peer: PeerInfo,
                    positions: list[int]) -> dict[int, bytes | None]:
        assert self.group_handler is not None
        try:
            acks = list(self.group_handler(frames, peer))
            if len(acks) != len(frames):
                raise RuntimeError(f"group handler answered {len(acks)} of {len(frames)} frames")
        except Exception:
            log.exception("hl7.handler_failed", extra={"count": len(frames)})
            acks = [self._failure(frame, verdict) for frame, verdict in zip(frames, verdicts, strict=True)]
        return dict(zip(positions, acks, strict=True))

    def _failure(self, frame: bytes, verdict: _Verdict) -> bytes:
        """AR ("resend later") for a frame the application failed on: one ACK, or a batch of them."""
        acks = [self._negative(header, "AR", "receiver error, resend later") for header in verdict.headers]
        if is_batch(frame):
            return build_batch_ack(split_batch(frame), acks, control_id=self.ack_ids(), now=self.clock())
        return acks[0]

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

    def _send(self, sock: socket.socket, frames: bytes) -> bool:
        """Write already framed ACKs (nothing to write is fine)."""
        if frames:
            sock.settimeout(self.idle_timeout)
            sock.sendall(frames)
        return True


def _shutdown(sock: socket.socket) -> None:
    """Wake a thread blocked in accept/recv on ``sock`` without racing its TLS state."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass
