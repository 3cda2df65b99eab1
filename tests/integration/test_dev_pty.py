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
from devices.gateway import read_wait
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
        self.frames = 0

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
            event = self._parse(line)
            self.frames += not isinstance(event, FrameRejected)
            events.append(event)

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
REGISTERED = drivers.names()
DRIVER_NAMES = REGISTERED + [driver.name for driver in TEST_DRIVERS]


@pytest.fixture(autouse=True)
def test_drivers() -> t.Iterator[None]:
    for driver in TEST_DRIVERS:
        drivers.register(driver)
    yield
    for driver in TEST_DRIVERS:
        del drivers.DRIVERS[driver.name]


class Wire:
    """A simulator behind a pty whose stable name is a symlink, and a gateway worker reading it.

    The simulator's clock runs ``SPEED`` times faster than the wall clock so the
    slow spot-check devices (a Nonin DF13 reading every 5 s) send enough frames
    for a short test; the unplug schedule is in that simulated time too. The
    gateway side runs in real time. Each reading is kept with the number of
    reconnects the worker had made when it arrived, which tells readings before
    an unplug from readings after the replug.
    """

    SPEED = 5.0

    def __init__(self, directory: pathlib.Path, driver_name: str, scenario: str,
                 unplug: runner.Unplug | None) -> None:
        directory.mkdir()
        self.driver = drivers.get(driver_name)
        self.link = str(directory / "ttyFRONTDESK0")
        self.slave_paths: list[str] = []
        self.readings: list[tuple[int, Reading]] = []
        simulator = self.driver.simulator("normal" if scenario == "unplug" else scenario, 7)
        self.line = runner.Line(simulator, runner.PtyEndpoint(link=self.link), unplug=unplug)
        config = DeviceConfig(id="dev1", driver=driver_name, port=self.link, station="room-1")
        link = SerialLink(self.link, self.driver.serial, backoff=Backoff(base=0.05, cap=0.5, jitter=0.05),
                          read_wait=read_wait(self.driver))
        self.worker = DeviceWorker(config, self.driver, self._received, normalise=default_normaliser(),
                                   link=link)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _received(self, reading: Reading) -> None:
        self.readings.append((self.status().reconnects, reading))

    def _opened(self, path: str) -> None:
        self.slave_paths.append(os.readlink(path))

    def start(self) -> None:
        start = time.monotonic()

        def simulated_clock() -> float:
            return start + (time.monotonic() - start) * self.SPEED

        self._threads = [
            threading.Thread(target=runner.run, args=([self.line], self._stop),
                             kwargs={"on_open": self._opened, "clock": simulated_clock}),
            threading.Thread(target=self.worker.run, args=(self._stop,)),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> bool:
        """Stop both sides; ``True`` when both threads ended."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5.0)
        return not any(thread.is_alive() for thread in self._threads)

    def status(self) -> DeviceStatus:
        return self.worker.status.snapshot(time.monotonic())

    def values(self) -> list[Reading]:
        return [reading for _, reading in self.readings]


def run_wires(tmp_path: pathlib.Path, names: t.Sequence[str], scenario: str,
              done: t.Callable[[Wire], bool], *, unplug: runner.Unplug | None = None,
              timeout: float = 30.0) -> dict[str, Wire]:
    """Run every driver in ``names`` at once until ``done`` holds for each (or the timeout passes).

    Running them side by side keeps the test as long as the slowest device, not the sum.
    """
    wires = {name: Wire(tmp_path / name, name, scenario, unplug) for name in names}
    pending = set(names)
    try:
        for wire in wires.values():
            wire.start()
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            pending = {name for name in pending if not done(wires[name])}
            time.sleep(0.05)
    finally:
        stopped = [wire.stop() for wire in wires.values()]
    assert not pending, {name: wires[name].status() for name in sorted(pending)}
    assert all(stopped)
    return wires


def test_readings_flow_over_a_pty(tmp_path: pathlib.Path) -> None:
    wires = run_wires(tmp_path, DRIVER_NAMES, "normal", lambda wire: len(wire.readings) >= 1)
    for name, wire in wires.items():
        status = wire.status()
        assert (status.frames_accepted >= 1, status.frames_rejected) == (True, 0), name
        for reading in wire.values():
            assert (reading.device_id, reading.station) == ("dev1", "room-1")
            assert reading.mdc_code == METRICS[reading.metric].mdc_code, name
            assert reading.host_time.tzinfo is not None


def test_garbage_is_counted_not_fatal(tmp_path: pathlib.Path) -> None:
    run_wires(tmp_path, DRIVER_NAMES, "garbage",
              lambda wire: wire.status().frames_rejected >= 1 and len(wire.readings) >= 1)


def test_sensor_off_is_visible(tmp_path: pathlib.Path) -> None:
    """A device with its probe off yields a no-value reading or a device condition, never a number."""
    def sensor_off_seen(wire: Wire) -> bool:
        return bool(wire.status().flags) or any(reading.value is None for reading in wire.values())

    wires = run_wires(tmp_path, REGISTERED, "sensor-off", sensor_off_seen)
    for name, wire in wires.items():
        assert all(reading.flags for reading in wire.values() if reading.value is None), name


def test_unplug_and_replug_under_a_new_pty(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    """Closing the master fails the read; the worker reopens the re-pointed link and readings resume.

    Each replug is a new pty with another ``/dev/pts`` number, found again only through the link.
    """
    def replugged(wire: Wire) -> bool:
        sessions = {reconnects for reconnects, _ in wire.readings}
        return 0 in sessions and any(reconnects >= 1 for reconnects in sessions)

    wires = run_wires(tmp_path, DRIVER_NAMES, "unplug", replugged, unplug=runner.Unplug(up=40.0, down=2.5))
    messages = [record.getMessage() for record in caplog.records]
    for name, wire in wires.items():
        paths = wire.slave_paths
        assert len(paths) >= 2 and all(old != new for old, new in zip(paths, paths[1:], strict=False)), name
        assert any(message.startswith(f"device dev1: port {wire.link} failed: ") for message in messages), name
