"""Every driver over real pyserial on a pty pair: simulator on the master, gateway worker on the slave.

Besides the registered drivers, two drivers defined here exercise the gateway's
own paths with a format small enough to read at a glance: ``test-line`` streams
``metric=value`` lines, ``test-ask`` stays silent until the host greets it and
then answers each poll, as request/response monitors do.
"""

from __future__ import annotations

import os
import pathlib
import threading
import time
import typing as t
from decimal import Decimal
from decimal import InvalidOperation

import pytest

from devices import drivers
from devices.config import DeviceConfig
from devices.drivers import Driver
from devices.gateway import DeviceWorker
from devices.gateway import default_normaliser
from devices.nomenclature import METRICS
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.reading import Reading
from devices.simulators import runner
from devices.status import DeviceStatus
from devices.transport import Backoff
from devices.transport import SerialLink

GREETING = b"HELLO\n"
POLL = b"POLL\n"


class LineDecoder:
    """``metric=value`` LF-terminated lines; anything else is a rejected frame."""

    max_frame = 64

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        events: list[Event] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.max_frame:
                    events.append(FrameRejected("overflow", len(self._buffer)))
                    self._buffer.clear()
                return events
            line = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            events.append(self._parse(line))

    @staticmethod
    def _parse(line: bytes) -> Event:
        metric, _, text = line.decode("ascii", "replace").partition("=")
        if metric not in METRICS:
            return FrameRejected("layout", len(line) + 1)
        try:
            value = Decimal(text)
        except InvalidOperation:
            return FrameRejected("value", len(line) + 1)
        return Measurement(metric, value, METRICS[metric].unit.ucum)


class AskDecoder(LineDecoder):
    def on_connect(self) -> bytes:
        return GREETING

    def poll(self, now: float) -> bytes:
        return POLL


class LineSimulator:
    """Ten ``spo2=`` lines a second; ``garbage`` interleaves noise, ``asks`` answers polls instead."""

    def __init__(self, scenario: str, seed: int, *, asks: bool = False) -> None:
        self._garbage = scenario == "garbage"
        self._asks = asks
        self._greeted = False
        self._next = 0.0
        self._count = seed

    def output(self, now: float) -> bytes:
        if self._asks or now < self._next:
            return b""
        self._next = now + 0.1
        return self._line()

    def receive(self, data: bytes) -> bytes:
        if not self._asks:
            return b""
        if GREETING in data:
            self._greeted = True
        return b"".join(self._line() for _ in range(data.count(POLL))) if self._greeted else b""

    def _line(self) -> bytes:
        self._count += 1
        line = b"spo2=%d\n" % (90 + self._count % 10)
        return b"\xff\x00noise\n" + line if self._garbage else line


TEST_DRIVERS = (
    Driver("test-line", "metric=value lines", LineDecoder, LineSimulator, quiet_timeout=1.0),
    Driver("test-ask", "metric=value on request", AskDecoder,
           lambda scenario, seed: LineSimulator(scenario, seed, asks=True), quiet_timeout=1.0,
           poll_interval=0.1),
)
DRIVER_NAMES = drivers.names() + [driver.name for driver in TEST_DRIVERS]


@pytest.fixture(autouse=True)
def test_drivers() -> t.Iterator[None]:
    for driver in TEST_DRIVERS:
        drivers.register(driver)
    yield
    for driver in TEST_DRIVERS:
        del drivers.DRIVERS[driver.name]


class Wire:
    """A simulator behind a pty whose stable name is a symlink, and a gateway worker reading it."""

    def __init__(self, tmp_path: pathlib.Path, driver_name: str, scenario: str = "normal",
                 unplug: runner.Unplug | None = None) -> None:
        self.driver = drivers.get(driver_name)
        self.link = str(tmp_path / "ttyFRONTDESK0")
        self.slave_paths: list[str] = []
        self.readings: list[Reading] = []
        simulator = self.driver.simulator("normal" if scenario == "unplug" else scenario, 7)
        self.line = runner.Line(simulator, runner.PtyEndpoint(link=self.link), unplug=unplug)
        config = DeviceConfig(id="dev1", driver=driver_name, port=self.link, station="room-1")
        link = SerialLink(self.link, self.driver.serial, backoff=Backoff(base=0.05, cap=0.5, jitter=0.05))
        self.worker = DeviceWorker(config, self.driver, self.readings.append, normalise=default_normaliser(),
                                   link=link)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _opened(self, path: str) -> None:
        self.slave_paths.append(os.readlink(path))

    def __enter__(self) -> Wire:
        self._threads = [
            threading.Thread(target=runner.run, args=([self.line], self._stop),
                             kwargs={"on_open": self._opened}),
            threading.Thread(target=self.worker.run, args=(self._stop,)),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5.0)
        assert not any(thread.is_alive() for thread in self._threads)

    def status(self) -> DeviceStatus:
        return self.worker.status.snapshot(time.monotonic())

    def wait_for(self, condition: t.Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}; status: {self.status()}")
            time.sleep(0.02)


@pytest.mark.parametrize("driver_name", DRIVER_NAMES)
def test_readings_flow_over_a_pty(tmp_path: pathlib.Path, driver_name: str) -> None:
    with Wire(tmp_path, driver_name) as wire:
        wire.wait_for(lambda: len(wire.readings) >= 3, "three readings")
        status = wire.status()
    assert status.connected
    assert status.frames_accepted >= 3
    assert status.frames_rejected == 0
    for reading in wire.readings:
        assert reading.device_id == "dev1" and reading.station == "room-1"
        assert reading.mdc_code == METRICS[reading.metric].mdc_code
        assert reading.host_time.tzinfo is not None


@pytest.mark.parametrize("driver_name", DRIVER_NAMES)
def test_garbage_is_counted_not_fatal(tmp_path: pathlib.Path, driver_name: str) -> None:
    with Wire(tmp_path, driver_name, scenario="garbage") as wire:
        wire.wait_for(lambda: wire.status().frames_rejected >= 2 and len(wire.readings) >= 2,
                      "rejected frames and readings")
        assert wire.status().connected


@pytest.mark.parametrize("driver_name", drivers.names())
def test_sensor_off_is_visible(tmp_path: pathlib.Path, driver_name: str) -> None:
    def sensor_off_seen() -> bool:
        return bool(wire.status().flags) or any(reading.value is None for reading in wire.readings)

    with Wire(tmp_path, driver_name, scenario="sensor-off") as wire:
        wire.wait_for(sensor_off_seen, "a no-value reading or a device condition")
    assert all(reading.flags for reading in wire.readings if reading.value is None)


@pytest.mark.parametrize("driver_name", DRIVER_NAMES)
def test_unplug_and_replug_under_a_new_pty(tmp_path: pathlib.Path, driver_name: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """Closing the master fails the read; the worker reopens the re-pointed link and readings resume."""
    with Wire(tmp_path, driver_name, unplug=runner.Unplug(up=1.5, down=0.5)) as wire:
        wire.wait_for(lambda: len(wire.readings) >= 1, "readings before the unplug")
        wire.wait_for(lambda: wire.status().reconnects >= 1, "a reconnect after the unplug")
        count = len(wire.readings)
        wire.wait_for(lambda: len(wire.readings) > count, "readings after the replug")
    assert len(wire.slave_paths) >= 2
    assert any(record.getMessage().startswith(f"device dev1: port {wire.link} failed: ")
               for record in caplog.records)
