"""What one client can make ``frontdesk serve`` hold: body size, slow senders, open connections.

These run against the real server over real sockets, because the limits live
in waitress, in front of Flask: a test client never sees them.
"""

from __future__ import annotations

import socket
import typing as t
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import Served
from tests.e2e.conftest import serve


@pytest.fixture
def limited(tmp_path: Path) -> t.Iterator[Served]:
    served = serve(tmp_path, FRONTDESK_WEB_MAX_CONTENT_KB="64", FRONTDESK_WEB_CHANNEL_TIMEOUT_SECONDS="2")
    yield served
    served.stop()


def _address(served: Served) -> tuple[str, int]:
    host, port = served.base.removeprefix("http://").split(":")
    return host, int(port)


def test_an_oversize_upload_is_refused_from_its_headers(limited: Served) -> None:
    """A 250 MB body announced by Content-Length gets 413 before a byte of it is sent."""
    with socket.create_connection(_address(limited), timeout=10) as sock:
        sock.sendall(b"POST /staff/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 262144000\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]


def test_a_client_that_stops_half_way_is_disconnected(limited: Served) -> None:
    with socket.create_connection(_address(limited), timeout=20) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert sock.recv(4096) == b""


def test_health_answers_while_a_hundred_and_ten_half_sent_connections_are_open(limited: Served) -> None:
    """Waitress reads requests asynchronously and hands only complete ones to its threads, so stalled
    senders cost a socket each, not a thread: the default connection limit leaves room for real callers."""
    stalled = []
    try:
        for _ in range(110):
            sock = socket.create_connection(_address(limited), timeout=5)
            sock.sendall(b"POST /staff/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nusern")
            stalled.append(sock)
        with urllib.request.urlopen(limited.base + "/healthz", timeout=20) as response:
            assert response.status == 200
    finally:
        for sock in stalled:
            sock.close()
