"""The MLLP listener over real loopback sockets, driven with raw bytes."""

from __future__ import annotations

import datetime as dt
import itertools
import socket
import threading
from collections.abc import Iterator

import pytest

from hl7.ack import Ack
from hl7.ack import build_ack
from hl7.ack import parse_ack
from hl7.listener import MLLPListener
from hl7.listener import PeerInfo
from hl7.listener import parse_allowed_sender
from hl7.mllp import MLLPDecoder
from hl7.mllp import encode_frame

NOW = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)


def message(control_id: str, sender: str = "KIOSK", facility: str = "FAMCLINIC") -> bytes:
    return (
        f"MSH|^~\\&|{sender}|{facility}|EHR|FAMCLINIC|20261126093012+0000||ADT^A04^ADT_A01|{control_id}|P|2.6\r"
        "PID|||004711^^^FAMCLINIC^MR||Doe^Jane\r"
    ).encode()


class RecordingHandler:
    """Acknowledges with AA and remembers every message it was given."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.peers: list[PeerInfo] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def __call__(self, data: bytes, peer: PeerInfo) -> bytes:
        with self._lock:
            self.received.append(data)
            self.peers.append(peer)
            ack_id = f"ACK{next(self._ids)}"
        return build_ack(data, "AA", control_id=ack_id, now=NOW)


class FailingHandler:
    def __call__(self, data: bytes, peer: PeerInfo) -> bytes:
        raise RuntimeError("database is down")


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def listener(handler: RecordingHandler) -> Iterator[MLLPListener]:
    with MLLPListener(handler, port=0, max_frame=4096, idle_timeout=10.0, read_timeout=10.0) as server:
        yield server


def connect(server: MLLPListener) -> socket.socket:
    sock = socket.create_connection(server.address, timeout=10)
    return sock


def read_acks(sock: socket.socket, count: int) -> list[Ack]:
    decoder = MLLPDecoder()
    frames: list[bytes] = []
    while len(frames) < count:
        data = sock.recv(65536)
        assert data, f"connection closed after {len(frames)} of {count} ACKs"
        frames += decoder.feed(data)
    return [parse_ack(frame) for frame in frames]


def assert_closed_by_server(sock: socket.socket) -> None:
    """The server closed the connection: recv reaches EOF (after any pending reply bytes)."""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return
        if not data:
            return


def test_many_messages_on_one_connection_split_byte_by_byte(listener: MLLPListener, handler: RecordingHandler) -> None:
    with connect(listener) as sock:
        for n in range(3):
            for byte in encode_frame(message(f"C{n}")):
                sock.sendall(bytes([byte]))
            [ack] = read_acks(sock, 1)
            assert (ack.code, ack.control_id) == ("AA", f"C{n}")
    assert handler.received == [message("C0"), message("C1"), message("C2")]


def test_back_to_back_frames_in_one_write_get_acks_in_order(listener: MLLPListener, handler: RecordingHandler) -> None:
    with connect(listener) as sock:
        sock.sendall(b"".join(encode_frame(message(f"B{n}")) for n in range(5)))
        acks = read_acks(sock, 5)
    assert [a.control_id for a in acks] == [f"B{n}" for n in range(5)]
    assert len(handler.received) == 5


def test_hundred_concurrent_connections(handler: RecordingHandler) -> None:
    with MLLPListener(handler, port=0, max_connections=128) as server:
        sockets = [connect(server) for _ in range(100)]
        try:
            for n, sock in enumerate(sockets):
                sock.sendall(encode_frame(message(f"P{n}")))
            codes = {read_acks(sock, 1)[0].control_id for sock in sockets}
        finally:
            for sock in sockets:
                sock.close()
    assert codes == {f"P{n}" for n in range(100)}
    assert len(handler.received) == 100


def test_bytes_outside_a_frame_close_the_connection_and_the_listener_keeps_serving(
    listener: MLLPListener, handler: RecordingHandler
) -> None:
    with connect(listener) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert_closed_by_server(sock)
    with connect(listener) as sock:
        sock.sendall(encode_frame(message("AFTER")))
        assert read_acks(sock, 1)[0].control_id == "AFTER"
    assert handler.received == [message("AFTER")]


def test_frame_before_garbage_in_the_same_write_is_still_answered(
    listener: MLLPListener, handler: RecordingHandler
) -> None:
    with connect(listener) as sock:
        sock.sendall(encode_frame(message("GOOD")) + b"junk")
        assert read_acks(sock, 1)[0].control_id == "GOOD"
        assert_closed_by_server(sock)
    assert handler.received == [message("GOOD")]


def test_oversize_frame_gets_ar_then_close_and_is_not_handled(
    listener: MLLPListener, handler: RecordingHandler
) -> None:
    big = message("BIG") + b"NTE|1||" + b"x" * 10_000 + b"\r"
    with connect(listener) as sock:
        try:
            sock.sendall(encode_frame(big))
        except (BrokenPipeError, ConnectionResetError):
            pass
        [ack] = read_acks(sock, 1)
        assert (ack.code, ack.control_id) == ("AR", "BIG")
        assert_closed_by_server(sock)
    assert handler.received == []


def test_frame_without_msh_closes_the_connection(listener: MLLPListener, handler: RecordingHandler) -> None:
    with connect(listener) as sock:
        sock.sendall(encode_frame(b"hello"))
        assert_closed_by_server(sock)
    assert handler.received == []


def test_body_invalid_in_declared_charset_gets_ae(listener: MLLPListener, handler: RecordingHandler) -> None:
    latin1_in_ascii = message("CS1").replace(b"Jane", "Zoë".encode("latin-1"))
    with connect(listener) as sock:
        sock.sendall(encode_frame(latin1_in_ascii))
        [ack] = read_acks(sock, 1)
    assert (ack.code, ack.control_id) == ("AE", "CS1")
    assert handler.received == []


def test_connection_closed_mid_frame_hands_nothing_on(listener: MLLPListener, handler: RecordingHandler) -> None:
    with connect(listener) as sock:
        sock.sendall(encode_frame(message("HALF"))[:40])
    with connect(listener) as sock:
        sock.sendall(encode_frame(message("WHOLE")))
        read_acks(sock, 1)
    assert handler.received == [message("WHOLE")]


def test_sender_not_in_allow_list_gets_ar(handler: RecordingHandler) -> None:
    allowed = {("KIOSK", "FAMCLINIC")}
    with MLLPListener(handler, port=0, allowed_senders=allowed) as server, connect(server) as sock:
        sock.sendall(encode_frame(message("X1", sender="INTRUDER")))
        sock.sendall(encode_frame(message("X2", sender="KIOSK")))
        first, second = read_acks(sock, 2)
    assert (first.code, first.control_id) == ("AR", "X1")
    assert "not allowed" in first.errors[0]
    assert (second.code, second.control_id) == ("AA", "X2")
    assert handler.received == [message("X2", sender="KIOSK")]


def test_allow_list_compares_the_namespace_component(handler: RecordingHandler) -> None:
    allowed = {("KIOSK_VITALS", "FAMCLINIC")}
    sender = "KIOSK_VITALS^0012A3FFFE4B5C6D^EUI-64"
    with MLLPListener(handler, port=0, allowed_senders=allowed) as server, connect(server) as sock:
        sock.sendall(encode_frame(message("V1", sender=sender)))
        assert read_acks(sock, 1)[0].code == "AA"


def test_handler_failure_becomes_ar_and_the_connection_stays_open() -> None:
    with MLLPListener(FailingHandler(), port=0) as server, connect(server) as sock:
        sock.sendall(encode_frame(message("F1")) + encode_frame(message("F2")))
        acks = read_acks(sock, 2)
    assert [(a.code, a.control_id) for a in acks] == [("AR", "F1"), ("AR", "F2")]


def test_idle_connection_is_closed(handler: RecordingHandler) -> None:
    with MLLPListener(handler, port=0, idle_timeout=0.2) as server, connect(server) as sock:
        assert_closed_by_server(sock)


def test_slow_sender_is_closed_when_a_frame_takes_too_long(handler: RecordingHandler) -> None:
    with (
        MLLPListener(handler, port=0, idle_timeout=10.0, read_timeout=0.2) as server,
        connect(server) as sock,
    ):
        sock.sendall(b"\x0bMSH|")
        assert_closed_by_server(sock)
    assert handler.received == []


def test_connections_over_the_limit_are_refused(handler: RecordingHandler) -> None:
    with MLLPListener(handler, port=0, max_connections=2) as server:
        first, second = connect(server), connect(server)
        try:
            first.sendall(encode_frame(message("L1")))
            second.sendall(encode_frame(message("L2")))
            read_acks(first, 1)
            read_acks(second, 1)
            with connect(server) as third:
                assert_closed_by_server(third)
            first.sendall(encode_frame(message("L3")))
            assert read_acks(first, 1)[0].control_id == "L3"
        finally:
            first.close()
            second.close()


def test_close_ends_open_connections(handler: RecordingHandler) -> None:
    server = MLLPListener(handler, port=0)
    server.start()
    sock = connect(server)
    sock.sendall(encode_frame(message("O1")))
    read_acks(sock, 1)
    server.close()
    assert_closed_by_server(sock)
    sock.close()
    assert server.active_connections == 0


def test_allow_list_entries_read_from_configuration_text() -> None:
    assert parse_allowed_sender(" KIOSK_VITALS^FAMCLINIC ") == ("KIOSK_VITALS", "FAMCLINIC")
    for bad in ("KIOSK", "KIOSK^", "^FAMCLINIC", "A^B^C"):
        with pytest.raises(ValueError):
            parse_allowed_sender(bad)
