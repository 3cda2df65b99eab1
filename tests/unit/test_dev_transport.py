from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import tty
import typing as t

import pytest
from serial.tools.list_ports_common import ListPortInfo

from devices.drivers import SerialSettings
from devices.status import StatusRecorder
from devices.transport import Backoff
from devices.transport import LinkError
from devices.transport import SerialLink
from devices.transport import find_port_by_serial_number


def usb_port(device: str, serial_number: str) -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.serial_number = serial_number
    info.vid, info.pid = 0x0403, 0x6001
    return info


def no_jitter() -> float:
    return 0.0


def test_backoff_doubles_then_caps() -> None:
    policy = Backoff(base=0.1, cap=1.0, jitter=0.5)
    assert [policy.delay(n, no_jitter) for n in range(6)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert policy.delay(3, lambda: 1.0) == pytest.approx(0.9)


def test_find_port_by_serial_number() -> None:
    ports = [usb_port("/dev/ttyUSB0", "AAA"), usb_port("/dev/ttyUSB1", "BBB")]
    assert find_port_by_serial_number("BBB", lambda: ports) == "/dev/ttyUSB1"
    assert find_port_by_serial_number("CCC", lambda: ports) is None


def test_loop_url_round_trip() -> None:
    link = SerialLink("loop://", SerialSettings(), read_wait=0.2)
    link.open()
    try:
        link.write(b"SPO2=097 HR=072\r\n")
        assert link.read() == b"SPO2=097 HR=072\r\n"
        assert link.read() == b""
    finally:
        link.close()
    assert not link.is_open


def test_missing_port_error_names_it() -> None:
    link = SerialLink("/dev/frontdesk-no-such-port", SerialSettings())
    with pytest.raises(LinkError) as info:
        link.open()
    assert str(info.value) == "cannot open port /dev/frontdesk-no-such-port: No such file or directory"


def test_invalid_url_is_a_link_error() -> None:
    with pytest.raises(LinkError, match=r"^cannot open port nosuch://x: invalid URL"):
        SerialLink("nosuch://x", SerialSettings()).open()


def test_connect_backs_off_between_failed_opens() -> None:
    link = SerialLink("/dev/frontdesk-no-such-port", SerialSettings(),
                      backoff=Backoff(base=1.0, cap=4.0, jitter=0.0), rand=no_jitter)
    attempts: list[float] = []
    for now in [0.0, 0.5, 1.0, 2.0, 3.0, 3.5, 7.0]:
        try:
            link.connect(now)
        except LinkError:
            attempts.append(now)
    assert attempts == [0.0, 1.0, 3.0, 7.0]
    assert link.wait_time(7.0) == 4.0


def test_adapter_found_again_by_serial_number() -> None:
    """The configured path is gone; the adapter with the configured serial number is opened instead."""
    ports: list[ListPortInfo] = []
    link = SerialLink("/dev/frontdesk-gone", SerialSettings(), serial_number="FT123", comports=lambda: ports)
    with pytest.raises(LinkError, match="/dev/frontdesk-gone"):
        link.open()
    ports.append(usb_port("loop://", "FT123"))
    assert link.connect(100.0)
    try:
        assert link.path == "loop://"
        link.write(b"x")
        assert link.read() == b"x"
    finally:
        link.close()


@pytest.fixture
def pty_pair() -> t.Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(master)
    path = os.ttyname(slave)
    os.close(slave)
    try:
        yield master, path
    finally:
        try:
            os.close(master)
        except OSError:
            pass


def test_closed_master_fails_the_read_and_closes_the_line(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    link = SerialLink(path, SerialSettings())
    assert link.connect(0.0)
    os.write(master, b"\x80\x48\x61\x00")
    assert link.read() == b"\x80\x48\x61\x00"
    link.write(b"\x02")
    assert os.read(master, 16) == b"\x02"
    os.close(master)
    with pytest.raises(LinkError, match=f"^port {path} failed: "):
        link.read()
    assert not link.is_open
    with pytest.raises(LinkError, match=f"cannot open port {path}"):
        link.connect(0.0)


def test_status_goes_stale_after_quiet_timeout() -> None:
    status = StatusRecorder("ox1", "nonin-df8", "/dev/ttyUSB0", quiet_timeout=3.0)
    assert not status.snapshot(100.0).stale
    status.connected("/dev/ttyUSB0", 100.0)
    assert not status.snapshot(102.9).stale
    assert status.snapshot(103.1).stale
    status.accepted(2, 5, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 104.0, frozenset({"artifact"}))
    status.rejected(3)
    status.unrecognised(1)
    snapshot = status.snapshot(105.0)
    assert (snapshot.stale, snapshot.frames_accepted, snapshot.readings, snapshot.frames_rejected,
            snapshot.unrecognised, snapshot.flags) == (False, 2, 5, 3, 1, frozenset({"artifact"}))
    status.disconnected("port /dev/ttyUSB0 failed: Input/output error")
    status.connected("/dev/ttyUSB1", 200.0)
    snapshot = status.snapshot(200.0)
    assert (snapshot.connected, snapshot.reconnects, snapshot.port, snapshot.last_error) == (
        True, 1, "/dev/ttyUSB1", "port /dev/ttyUSB0 failed: Input/output error")


def test_socket_url_peer_close_is_a_link_failure() -> None:
    """A terminal server on ``socket://``: it answers only after a host byte (pyserial discards earlier ones)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def terminal_server() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(1)
                connection.sendall(b"SPO2=097 HR=072\r\n")

        server = threading.Thread(target=terminal_server)
        server.start()
        link = SerialLink(f"socket://127.0.0.1:{port}", SerialSettings(), read_wait=0.2)
        link.open()
        link.write(b"\r")
        received = b""
        with pytest.raises(LinkError, match=f"^port socket://127.0.0.1:{port} failed: "):
            while True:
                received += link.read()
        server.join()
    assert received == b"SPO2=097 HR=072\r\n"
    assert not link.is_open
