"""PCD-01 monitors as real network peers: connecting in, waiting for ACKs, talking the instant they connect.

The gateway runs as in ``serve`` (real sockets, the ``hl7-monitor`` decoder,
ACKs built by :func:`hl7.ack.build_ack` through :func:`server.device_hooks`);
the monitor is a plain TCP client or server in the test, written to the GE
B40/B20 and Mindray VS-900 behaviour in the issue: a GE monitor opens the
connection itself, asks for application ACKs only (MSH-15 ``NE``, MSH-16
``AL``) and sends nothing more until it has one.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from devices.config import from_mapping
from devices.gateway import Gateway
from devices.protocols.hl7_monitor import MllpFramer
from devices.protocols.hl7_monitor import encode_block
from devices.reading import Reading
from hl7.ack import parse_ack
from hl7.er7 import parse_message
from server.device_hooks import device_hooks

DEADLINE = 20.0
GE_HEADER = "MSH|^~\\&|B40|ICU|FRONTDESK|CLINIC|20261126100000+0000||ORU^R01^ORU_R01|{cid}|P|2.6|||NE|AL"
VS900_HEADER = "MSH|^~\\&|VS-900|WARD|||20261126100000+0800||ORU^R01^ORU_R01|{cid}|P|2.6|||AL|NE"
SPO2 = "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|{value}|262688^MDC_DIM_PERCENT^MDC|||||F"
AXILLARY = "OBX|2|NM|188496^MDC_TEMP_AXIL^MDC|1.2.1.3|35.1|268192^MDC_DIM_DEGC^MDC|||||F"


def oru(header: str, control_id: str, *rows: str) -> bytes:
    return encode_block("\r".join((header.format(cid=control_id),
                                   "PID|||MRN1^^^CLINIC^MR", "OBR|1|||182777000^monitoring^SCT", *rows)) + "\r")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def gateway(port: str) -> Iterator[tuple[Gateway, queue.Queue[Reading]]]:
    readings: queue.Queue[Reading] = queue.Queue()
    config = from_mapping({"id": "mon-1", "driver": "hl7-monitor", "port": port, "station": "bay-1"})
    with Gateway([config], readings.put, hooks=device_hooks()) as running:
        yield running, readings


def connect_in(port: int) -> socket.socket:
    """A monitor dialling the gateway, retrying while its listener is not bound yet."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "the gateway never listened"
            time.sleep(0.02)


def receive_acks(sock: socket.socket, count: int) -> list[bytes]:
    framer = MllpFramer()
    acks: list[bytes] = []
    while len(acks) < count:
        data = sock.recv(65536)
        assert data, "the gateway closed the connection"
        for frame in framer.feed(data):
            assert isinstance(frame, bytes), frame
            acks.append(frame)
    return acks


def take(readings: queue.Queue[Reading], count: int) -> list[Reading]:
    return [readings.get(timeout=DEADLINE) for _ in range(count)]


def test_a_monitor_that_connects_in_and_waits_for_each_application_ack_gets_one_built_by_hl7() -> None:
    port = free_port()
    with gateway(f"listen://127.0.0.1:{port}") as (running, readings), connect_in(port) as monitor:
        for n, value in enumerate((97, 95, 93), start=1):
            control_id = f"GE{n}"
            monitor.sendall(oru(GE_HEADER, control_id, SPO2.format(value=value)))
            (frame,) = receive_acks(monitor, 1)
            ack = parse_ack(frame)
            assert (ack.code, ack.control_id) == ("AA", control_id)
            header = parse_message(frame).msh
            assert (header.value(3), header.value(5), header.value(9)) == ("FRONTDESK", "B40", "ACK")
        got = take(readings, 3)
        status = running.status()[0]
    assert [(r.metric, r.value) for r in got] == [("spo2", Decimal(97)), ("spo2", Decimal(95)), ("spo2", Decimal(93))]
    assert (status.frames_accepted, status.readings, status.frames_rejected) == (3, 3, 0)


def test_the_listener_takes_the_next_connection_when_a_monitor_reconnects() -> None:
    port = free_port()
    with gateway(f"listen://127.0.0.1:{port}") as (_, readings):
        for n in range(3):
            with connect_in(port) as monitor:
                monitor.sendall(oru(GE_HEADER, f"R{n}", SPO2.format(value=90 + n)))
                assert parse_ack(receive_acks(monitor, 1)[0]).code == "AA"
        assert [r.value for r in take(readings, 3)] == [Decimal(90), Decimal(91), Decimal(92)]


def test_the_vs900_axillary_temperature_is_a_temperature_reading_and_an_unknown_row_is_counted() -> None:
    port = free_port()
    unknown = "OBX|3|NM|151708^MDC_CONC_AWAY_CO2_ET^MDC|1.3.1.1|38|266016^MDC_DIM_MMHG^MDC|||||F"
    with gateway(f"listen://127.0.0.1:{port}") as (running, readings), connect_in(port) as monitor:
        monitor.sendall(oru(VS900_HEADER, "VS1", SPO2.format(value=98), AXILLARY, unknown))
        (accept,) = receive_acks(monitor, 1)
        assert parse_ack(accept).code == "CA"
        got = take(readings, 2)
        deadline = time.monotonic() + DEADLINE
        while running.status()[0].unrecognised < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        status = running.status()[0]
    assert [(r.metric, r.value, r.unit) for r in got] == [("spo2", Decimal(98), "%"),
                                                          ("temperature_axillary", Decimal("35.1"), "Cel")]
    assert (status.frames_accepted, status.readings, status.unrecognised) == (1, 2, 1)


def test_a_frame_sent_the_instant_the_connection_opens_is_never_lost() -> None:
    """A monitor we dial (``socket://``) that talks first: pyserial's handler lost this frame one run in four."""
    rounds = 20
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    acked: list[str] = []

    def monitor() -> None:
        with server:
            for n in range(rounds):
                conn, _ = server.accept()
                with conn:
                    conn.sendall(oru(GE_HEADER, f"F{n}", SPO2.format(value=90 + n % 10)))
                    acked.append(parse_ack(receive_acks(conn, 1)[0]).control_id)
                # Closing makes the gateway dial again: a fresh connection, a fresh first frame.

    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    with gateway(f"socket://127.0.0.1:{port}") as (_, readings):
        got = take(readings, rounds)
        thread.join(DEADLINE)
    assert acked == [f"F{n}" for n in range(rounds)]
    assert [r.value for r in got] == [Decimal(90 + n % 10) for n in range(rounds)]
