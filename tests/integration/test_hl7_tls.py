"""TLS and mutual TLS between the MLLP client and listener, with certificates made here.

Needs the ``cryptography`` package (test-only) to issue a CA, server and
client certificates, plus a rogue CA whose certificates must be refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hl7.ack import build_ack
from hl7.ack import parse_ack
from hl7.client import ConnectFailed
from hl7.client import MLLPClient
from hl7.client import TransportError
from hl7.listener import MLLPListener
from hl7.listener import PeerInfo
from hl7.tls import client_context
from hl7.tls import server_context
from server.config import HL7Config
from server.interfaces import destination_tls
from server.interfaces import dispatcher_clients
from tests.pki import Authority
from tests.pki import Issued

NOW = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)


@dataclass(frozen=True)
class PKI:
    ca: Authority
    rogue: Authority
    server: Issued
    client: Issued
    rogue_server: Issued
    rogue_client: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    ca = Authority(directory, "clinic")
    rogue = Authority(directory, "rogue")
    return PKI(
        ca=ca,
        rogue=rogue,
        server=ca.issue("records.clinic.test", server=True),
        client=ca.issue("kiosk-01", server=False),
        rogue_server=rogue.issue("records.clinic.test", server=True),
        rogue_client=rogue.issue("kiosk-01", server=False),
    )


def message(control_id: str) -> bytes:
    return (
        f"MSH|^~\\&|KIOSK|FAMCLINIC|EHR|FAMCLINIC|20261126093012+0000||ADT^A04^ADT_A01|{control_id}|P|2.6\r"
    ).encode()


class AAHandler:
    def __init__(self) -> None:
        self.peers: list[PeerInfo] = []
        self._lock = threading.Lock()

    def __call__(self, data: bytes, peer: PeerInfo) -> bytes:
        with self._lock:
            self.peers.append(peer)
        return build_ack(data, "AA", control_id="T1", now=NOW)


@pytest.fixture
def handler() -> AAHandler:
    return AAHandler()


@pytest.fixture
def tls_listener(pki: PKI, handler: AAHandler) -> Iterator[MLLPListener]:
    context = server_context(certfile=str(pki.server.cert), keyfile=str(pki.server.key))
    with MLLPListener(handler, port=0, ssl_context=context, read_timeout=5) as server:
        yield server


@pytest.fixture
def mtls_listener(pki: PKI, handler: AAHandler) -> Iterator[MLLPListener]:
    context = server_context(
        certfile=str(pki.server.cert), keyfile=str(pki.server.key), client_cafile=str(pki.ca.cafile)
    )
    with MLLPListener(handler, port=0, ssl_context=context, read_timeout=5) as server:
        yield server


def send(server: MLLPListener, context: ssl.SSLContext | None, control_id: str = "TLS1") -> str:
    with MLLPClient(*server.address, ssl_context=context, connect_timeout=5, ack_timeout=5) as client:
        return parse_ack(client.send(message(control_id), control_id)).code


def test_tls_round_trip(pki: PKI, tls_listener: MLLPListener, handler: AAHandler) -> None:
    assert send(tls_listener, client_context(cafile=str(pki.ca.cafile))) == "AA"
    assert handler.peers[0].tls
    assert handler.peers[0].certificate_subject == ""


def test_client_refuses_server_certificate_from_another_ca(pki: PKI, handler: AAHandler) -> None:
    context = server_context(certfile=str(pki.rogue_server.cert), keyfile=str(pki.rogue_server.key))
    with MLLPListener(handler, port=0, ssl_context=context, read_timeout=5) as server:
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            send(server, client_context(cafile=str(pki.ca.cafile)))
    assert handler.peers == []


def test_client_refuses_server_certificate_for_another_name(pki: PKI, tls_listener: MLLPListener) -> None:
    host, port = tls_listener.address
    context = client_context(cafile=str(pki.ca.cafile))
    with MLLPClient(host, port, ssl_context=context, server_hostname="ehr.elsewhere.test") as client:
        with pytest.raises(ConnectFailed):
            client.send(message("N1"), "N1")


def test_plaintext_client_gets_nothing_from_a_tls_listener(
    pki: PKI, tls_listener: MLLPListener, handler: AAHandler
) -> None:
    with pytest.raises(TransportError):
        send(tls_listener, None)
    assert handler.peers == []
    assert send(tls_listener, client_context(cafile=str(pki.ca.cafile))) == "AA"


def test_mutual_tls_round_trip_names_the_client(pki: PKI, mtls_listener: MLLPListener, handler: AAHandler) -> None:
    context = client_context(cafile=str(pki.ca.cafile), certfile=str(pki.client.cert), keyfile=str(pki.client.key))
    assert send(mtls_listener, context) == "AA"
    assert handler.peers[0].certificate_subject == "kiosk-01"


def test_mutual_tls_refuses_a_client_without_certificate(
    pki: PKI, mtls_listener: MLLPListener, handler: AAHandler
) -> None:
    with pytest.raises(TransportError):
        send(mtls_listener, client_context(cafile=str(pki.ca.cafile)))
    assert handler.peers == []


def test_mutual_tls_refuses_a_client_certificate_from_another_ca(
    pki: PKI, mtls_listener: MLLPListener, handler: AAHandler
) -> None:
    context = client_context(
        cafile=str(pki.ca.cafile), certfile=str(pki.rogue_client.cert), keyfile=str(pki.rogue_client.key)
    )
    with pytest.raises(TransportError):
        send(mtls_listener, context)
    assert handler.peers == []
    good = client_context(cafile=str(pki.ca.cafile), certfile=str(pki.client.cert), keyfile=str(pki.client.key))
    assert send(mtls_listener, good) == "AA"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_below_1_2_is_refused(pki: PKI, tls_listener: MLLPListener) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(pki.ca.cafile))
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ConnectFailed):
        send(tls_listener, context)


def test_contexts_require_tls_1_2(pki: PKI) -> None:
    client = client_context(cafile=str(pki.ca.cafile))
    server = server_context(certfile=str(pki.server.cert), keyfile=str(pki.server.key))
    assert client.minimum_version == server.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client.verify_mode == ssl.CERT_REQUIRED
    assert client.check_hostname


def test_client_certificate_needs_its_key(pki: PKI) -> None:
    with pytest.raises(ValueError):
        client_context(cafile=str(pki.ca.cafile), certfile=str(pki.client.cert))


def test_the_server_name_setting_checks_a_certificate_issued_for_a_name_when_connecting_by_address(
        pki: PKI, handler: AAHandler) -> None:
    named = pki.ca.issue("records-by-name", server=True, names=["records.clinic.test"])
    context = server_context(certfile=str(named.cert), keyfile=str(named.key))
    settings = HL7Config(destination_host="127.0.0.1", destination_tls_ca=str(pki.ca.cafile))
    with MLLPListener(handler, port=0, ssl_context=context, read_timeout=5) as server:
        by_address = MLLPClient(*server.address, ssl_context=destination_tls(settings), connect_timeout=5)
        with by_address, pytest.raises(ConnectFailed, match="127.0.0.1"):
            by_address.send(message("N2"), "N2")
        named_settings = dataclasses.replace(settings, destination_port=server.address[1],
                                             destination_tls_server_name="records.clinic.test")
        (client,) = dispatcher_clients(named_settings)
        with client:
            assert parse_ack(client.send(message("N3"), "N3")).code == "AA"


def test_a_rotated_certificate_is_used_from_the_next_connection_without_a_restart(
        pki: PKI, handler: AAHandler, tmp_path: Path) -> None:
    cert, key = tmp_path / "listener.pem", tmp_path / "listener.key"
    cert.write_bytes(pki.rogue_server.cert.read_bytes())
    key.write_bytes(pki.rogue_server.key.read_bytes())
    context = server_context(certfile=str(cert), keyfile=str(key))
    trusting = client_context(cafile=str(pki.ca.cafile))
    with MLLPListener(handler, port=0, ssl_context=context, read_timeout=5) as server:
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            send(server, trusting, "R1")
        key.write_bytes(pki.server.key.read_bytes())
        cert.write_bytes(pki.server.cert.read_bytes())
        assert send(server, trusting, "R2") == "AA"
    assert [peer.tls for peer in handler.peers] == [True]


def test_a_failed_handshake_is_a_warning_naming_the_peer_and_the_reason(
        pki: PKI, mtls_listener: MLLPListener, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="hl7.listener"):
        with pytest.raises(TransportError):
            send(mtls_listener, client_context(cafile=str(pki.ca.cafile)))
        deadline = time.monotonic() + 10
        # The listener logs from its connection thread, possibly after the client has given up.
        while not [r for r in caplog.records if r.msg == "hl7.listener_handshake_failed"]:
            assert time.monotonic() < deadline, "no handshake failure logged"
            time.sleep(0.01)
    (record,) = [r for r in caplog.records if r.msg == "hl7.listener_handshake_failed"]
    assert record.levelname == "WARNING"
    assert record.__dict__["peer"].startswith("127.0.0.1:")
    assert "certificate" in record.__dict__["reason"].lower()
