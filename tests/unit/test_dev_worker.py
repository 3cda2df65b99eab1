"""The gateway's per-device worker: faults stay counted in the status, never end the thread.

The device side is the master of a real pty driven by the test; the decoders
here are fault injectors, each a few lines, so a test shows exactly which fault
it provokes.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
import typing as t
from decimal import Decimal

from devices.config import DeviceConfig
from devices.drivers import Driver
from devices.gateway import DeviceWorker
from devices.gateway import default_normaliser
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.protocols.base import ProtocolError
from devices.reading import Reading
from devices.transport import SerialLink

GREETING = b"HI"


class ScriptedDecoder:
    """``v`` → an SpO2 measurement, ``x`` → a rejected frame, ``?`` → an unknown metric,
    ``!`` → ProtocolError, ``#`` → a bug (KeyError); talks first with :data:`GREETING`."""

    max_frame = 16
    created = 0

    def __init__(self) -> None:
        ScriptedDecoder.created += 1
        self.frames = 0

    def on_connect(self) -> bytes:
        return GREETING

    def poll(self, now: float) -> bytes:
        return b""

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for byte in data:
            char = chr(byte)
            if char == "!":
                raise ProtocolError("cannot resynchronise")
            if char == "#":
                raise KeyError("bug")
            if char == "v":
                self.frames += 1
                events.append(Measurement("spo2", Decimal(97), "%"))
            elif char == "?":
                self.frames += 1
                events.append(Measurement("brightness", Decimal(1), "cd"))
            elif char == "x":
                events.append(FrameRejected("checksum", 1))
        return events


def scripted_driver(quiet_timeout: float = 60.0) -> Driver:
    def no_simulator(scenario: str, seed: int) -> t.Any:
        raise NotImplementedError

    return Driver("scripted", "fault injector", ScriptedDecoder, no_simulator, quiet_timeout=quiet_timeout,
                  poll_interval=0.05)


class Device:
    """The pty master: what the worker wrote, and a way to send it bytes."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.heard = b""

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait_heard(self, count: int, needle: bytes = GREETING, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.heard.count(needle) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"heard {self.heard!r}"
            if select.select([self.master], [], [], remaining)[0]:
                self.heard += os.read(self.master, 1024)


def wait_for(condition: t.Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


@contextlib.contextmanager
def running(driver: Driver, on_reading: t.Callable[[Reading], None]) -> t.Iterator[tuple[Device, DeviceWorker]]:
    master, slave = os.openpty()
    tty.setraw(master)
    path = os.ttyname(slave)
    config = DeviceConfig("dev1", driver.name, path, "room-1")
    worker = DeviceWorker(config, driver, on_reading, normalise=default_normaliser(),
                          link=SerialLink(path, driver.serial, read_wait=0.05))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        device = Device(master)
        device.wait_heard(1)
        yield device, worker
    finally:
        stop.set()
        thread.join(5.0)
        os.close(master)
        os.close(slave)
    assert not thread.is_alive()


def snapshot(worker: DeviceWorker) -> t.Any:
    return worker.status.snapshot(time.monotonic())


def test_protocol_error_restarts_the_decoder_and_the_association() -> None:
    readings: list[Reading] = []
    with running(scripted_driver(), readings.append) as (device, worker):
        created = ScriptedDecoder.created
        device.send(b"v")
        wait_for(lambda: len(readings) == 1, "first reading")
        device.send(b"!")
        device.wait_heard(2)
        assert ScriptedDecoder.created == created + 1
        device.send(b"v")
        wait_for(lambda: len(readings) == 2, "reading from the fresh decoder")
        status = snapshot(worker)
    assert (status.frames_accepted, status.frames_rejected) == (2, 1)
    assert status.last_error == "protocol error: cannot resynchronise"
    assert status.connected


def test_decoder_bug_is_contained() -> None:
    readings: list[Reading] = []
    with running(scripted_driver(), readings.append) as (device, worker):
        device.send(b"#")
        wait_for(lambda: snapshot(worker).frames_rejected == 1, "fault counted")
        device.send(b"v")
        wait_for(lambda: len(readings) == 1, "reading after the fault")
        assert snapshot(worker).last_error == "decoder fault: KeyError: 'bug'"


def test_rejected_frames_and_unknown_metrics_are_counted() -> None:
    readings: list[Reading] = []
    with running(scripted_driver(), readings.append) as (device, worker):
        device.send(b"xx?v")
        wait_for(lambda: snapshot(worker).readings == 1, "the good reading")
        status = snapshot(worker)
    # "?" is a frame that was read, whose one value could not be normalised.
    assert (status.frames_accepted, status.readings, status.frames_rejected) == (2, 1, 3)
    assert status.last_error is not None and status.last_error.startswith("not normalised: ")
    assert [(reading.metric, reading.value, reading.unit) for reading in readings] == [("spo2", Decimal(97), "%")]


def test_failing_callback_does_not_stop_the_device() -> None:
    delivered: list[Reading] = []

    def flaky(reading: Reading) -> None:
        if not delivered:
            delivered.append(reading)
            raise RuntimeError("database is locked")
        delivered.append(reading)

    with running(scripted_driver(), flaky) as (device, worker):
        device.send(b"v")
        wait_for(lambda: len(delivered) == 1, "first delivery attempt")
        device.send(b"v")
        wait_for(lambda: len(delivered) == 2, "second reading")
        status = snapshot(worker)
    assert status.frames_accepted == 2
    assert status.last_error == "delivery failed: RuntimeError: database is locked"


def test_quiet_device_is_marked_stale_and_renegotiated() -> None:
    with running(scripted_driver(quiet_timeout=0.2), lambda reading: None) as (device, worker):
        device.wait_heard(3)
        assert snapshot(worker).stale

        def fresh_after_a_frame() -> bool:
            device.send(b"v")
            return not snapshot(worker).stale

        wait_for(fresh_after_a_frame, "fresh again once frames arrive")
