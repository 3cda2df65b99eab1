"""The persistent MLLP client against the real listener and a fault-injecting receiver."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator

import pytest

from hl7.ack import build_ack
from hl7.ack import parse_ack
from hl7.client import AckTimeout
from hl7.client import ConnectFailed
from hl7.client import ConnectionLost
from hl7.client import MLLPClient
from hl7.listener import MLLPListener
from hl7.listener import PeerInfo
from hl7.mllp import MLLPDecoder
from hl7.mllp import encode_frame

NOW = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)


def message(control_id: str) -> bytes:
    return (
        f"MSH|^~\\&|KIOSK|FAMCLINIC|EHR|FAMCLINIC|20261126093012+0000||ADT^A04^ADT_A01|{control_id}|P|2.6\r"
        "PID|||004711^^^FAMCLINIC^MR||Doe^Jane\r"
    ).encode()


def ack_for(control_id: str, code: str = "AA") -> bytes:
    return build_ack(message(control_id), code, control_id="R" + control_id, now=NOW)


Script = Callable[[bytes], "bytes | None"]


class ScriptedReceiver:
    """A receiver on a real socket that answers each frame with whatever ``script`` returns.

    ``script`` gets the message and returns the raw bytes to write (``b""``:
    stay silent) or ``None`` to close the connection.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.received: list[bytes] = []
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.getsockname()[:2]
        return str(host), int(port)

    def close(self) -> None:
        self._stop.set()
        socket.socket.shutdown(self._server, socket.SHUT_RDWR)
        self._server.close()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                self._converse(conn)

    def _converse(self, conn: socket.socket) -> None:
        decoder = MLLPDecoder()
        conn.settimeout(5)
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            for frame in decoder.feed(data):
                self.received.append(frame)
                reply = self.script(frame)
                if reply is None:
                    return
                conn.sendall(reply)


def control_id_of(frame: bytes) -> str:
    return frame.split(b"\r")[0].split(b"|")[9].decode()


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[Script], ScriptedReceiver]]:
    receivers: list[ScriptedReceiver] = []

    def make(script: Script) -> ScriptedReceiver:
        receivers.append(ScriptedReceiver(script))
        return receivers[-1]

    yield make
    for receiver in receivers:
        receiver.close()


class AAHandler:
    def __init__(self) -> None:
        self.peers: list[PeerInfo] = []

    def __call__(self, data: bytes, peer: PeerInfo) -> bytes:
        self.peers.append(peer)
        return build_ack(data, "AA", control_id="L1", now=NOW)


def test_one_connection_carries_many_messages() -> None:
    handler = AAHandler()
    with MLLPListener(handler, port=0) as server, MLLPClient(*server.address, ack_timeout=5) as client:
        for n in range(5):
            ack = parse_ack(client.send(message(f"M{n}"), f"M{n}"))
            assert (ack.code, ack.control_id) == ("AA", f"M{n}")
    assert len({peer.port for peer in handler.peers}) == 1


def test_ack_with_wrong_msa2_is_skipped_for_the_matching_one(
    receiver_factory: Callable[[Script], ScriptedReceiver],
) -> None:
    receiver = receiver_factory(
        lambda frame: encode_frame(ack_for("STALE")) + encode_frame(ack_for(control_id_of(frame)))
    )
    with MLLPClient(*receiver.address, ack_timeout=5) as client:
        ack = parse_ack(client.send(message("W1"), "W1"))
    assert ack.control_id == "W1"


def test_only_wrong_msa2_ends_in_timeout_and_a_fresh_connection(
    receiver_factory: Callable[[Script], ScriptedReceiver],
) -> None:
    receiver = receiver_factory(lambda frame: encode_frame(ack_for("SOMEONE-ELSE")))
    with MLLPClient(*receiver.address, ack_timeout=0.3) as client:
        with pytest.raises(AckTimeout):
            client.send(message("W2"), "W2")
        assert not client.connected
        with pytest.raises(AckTimeout):
            client.send(message("W2"), "W2")
    assert receiver.connections == 2
    assert [control_id_of(f) for f in receiver.received] == ["W2", "W2"]


def test_silent_receiver_gives_ack_timeout(receiver_factory: Callable[[Script], ScriptedReceiver]) -> None:
    receiver = receiver_factory(lambda frame: b"")
    with MLLPClient(*receiver.address, ack_timeout=0.2) as client, pytest.raises(AckTimeout):
        client.send(message("S1"), "S1")


def test_unreadable_ack_is_ignored(receiver_factory: Callable[[Script], ScriptedReceiver]) -> None:
    receiver = receiver_factory(lambda frame: encode_frame(b"not an ack") + encode_frame(ack_for("U1")))
    with MLLPClient(*receiver.address, ack_timeout=5) as client:
        assert parse_ack(client.send(message("U1"), "U1")).code == "AA"


def test_connection_refused_is_connect_failed() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with MLLPClient("127.0.0.1", port, connect_timeout=2) as client, pytest.raises(ConnectFailed):
        client.send(message("R1"), "R1")


def test_receiver_closing_before_ack_is_connection_lost_and_next_send_reconnects(
    receiver_factory: Callable[[Script], ScriptedReceiver],
) -> None:
    replies = iter([None, "ack"])
    receiver = receiver_factory(
        lambda frame: None if next(replies) is None else encode_frame(ack_for(control_id_of(frame)))
    )
    with MLLPClient(*receiver.address, ack_timeout=5) as client:
        with pytest.raises(ConnectionLost):
            client.send(message("D1"), "D1")
        assert parse_ack(client.send(message("D1"), "D1")).control_id == "D1"
    assert receiver.connections == 2


def test_framing_violation_by_receiver_is_connection_lost(
    receiver_factory: Callable[[Script], ScriptedReceiver],
) -> None:
    receiver = receiver_factory(lambda frame: b"garbage")
    with MLLPClient(*receiver.address, ack_timeout=5) as client:
        with pytest.raises(ConnectionLost):
            client.send(message("G1"), "G1")
        assert not client.connected


def test_connection_closed_by_idle_receiver_is_replaced_before_sending() -> None:
    handler = AAHandler()
    with MLLPListener(handler, port=0, idle_timeout=0.2) as server, MLLPClient(*server.address) as client:
        client.send(message("I1"), "I1")
        deadline = time.monotonic() + 10
        while server.active_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.active_connections == 0
        assert parse_ack(client.send(message("I2"), "I2")).control_id == "I2"
    assert len({peer.port for peer in handler.peers}) == 2


def test_message_with_block_characters_is_refused_before_connecting() -> None:
    with MLLPClient("127.0.0.1", 9, connect_timeout=1) as client, pytest.raises(ValueError):
        client.send(b"MSH|\x1c|", "X")
