"""The simulator runner on a pyserial URL: a ``socket://`` host that hangs up and comes back."""

from __future__ import annotations

import socket
import threading

from devices import drivers
from devices.drivers import SerialSettings
from devices.simulators import runner


def read_line(connection: socket.socket) -> bytes:
    connection.settimeout(10.0)
    data = b""
    while b"\n" not in data:
        chunk = connection.recv(256)
        assert chunk, data
        data += chunk
    return data


def test_port_line_reopens_after_the_host_hangs_up() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(10.0)
        url = f"socket://127.0.0.1:{listener.getsockname()[1]}"
        line = runner.Line(drivers.get("masimo-ascii").simulator("normal", 3),
                           runner.PortEndpoint(url, SerialSettings()))
        opened: list[str] = []
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=([line], stop), kwargs={"on_open": opened.append})
        thread.start()
        try:
            first, _ = listener.accept()
            with first:
                assert b"SPO2=" in read_line(first)
            second, _ = listener.accept()
            with second:
                assert b"SPO2=" in read_line(second)
        finally:
            stop.set()
            thread.join(5.0)
    assert not thread.is_alive()
    assert opened == [url, url]
