"""The gateway loop: serial line → decoder → normalise → callback, one thread per device.

Why a thread per device rather than one selector: pyserial's URL handlers
(``loop://``, ``socket://``, ``rfc2217://``) do not all expose a file descriptor,
and a blocking read that wakes once per burst (see
:meth:`devices.transport.SerialLink.read`) already keeps twenty streaming devices
under one percent of one core (``bench/bench_gateway.py``). A device's failure —
a vanished port, a decoder fault, a callback that raises — stays in its own
thread and its own status; it never stops the others.

The caller decides where readings go: the server passes a callback that stores
them, the standalone gateway passes :meth:`devices.uplink.Uplink.submit`.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import threading
import time
import typing as t

from devices import drivers
from devices.config import ConfigError
from devices.config import DeviceConfig
from devices.drivers import Driver
from devices.netlink import SocketLink
from devices.netlink import is_network
from devices.protocols.base import Conversation
from devices.protocols.base import Decoder
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.protocols.base import ProtocolError
from devices.protocols.base import Unrecognised
from devices.reading import Reading
from devices.status import DeviceStatus
from devices.status import StatusRecorder
from devices.transport import MAX_READ_WAIT
from devices.transport import Backoff
from devices.transport import Link
from devices.transport import LinkError
from devices.transport import SerialLink

log = logging.getLogger(__name__)

ReadingCallback = t.Callable[[Reading], None]


class Normaliser(t.Protocol):
    def __call__(self, event: Measurement, *, device_id: str, station: str, host_time: dt.datetime,
                 host_monotonic: float) -> Reading: ...


def default_normaliser() -> Normaliser:
    """:func:`devices.normalise.normalise`, imported when first needed."""
    module = importlib.import_module("devices.normalise")
    return t.cast(Normaliser, module.normalise)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def read_wait(driver: Driver) -> float:
    """How long a read may block: short enough to send the driver's polls on time."""
    if driver.poll_interval is None:
        return MAX_READ_WAIT
    return min(MAX_READ_WAIT, driver.poll_interval)


def open_link(config: DeviceConfig, driver: Driver, *, backoff: Backoff | None = None) -> Link:
    """The line to a configured device: our own socket for ``socket://`` and ``listen://``
    (:mod:`devices.netlink` says why), pyserial for every other path or URL."""
    if is_network(config.port):
        return SocketLink(config.port, backoff=backoff, read_wait=read_wait(driver))
    return SerialLink(config.port, config.serial_settings(driver.serial), serial_number=config.serial_number,
                      backoff=backoff, read_wait=read_wait(driver))


class DeviceWorker:
    """Runs one configured device until told to stop.

    State machine (after OpenICE's serial devices): *connecting* (open with
    backoff) → *connected* (decoder fresh, ``on_connect()`` written for
    request/response protocols) → back to *connecting* on any line failure. While
    connected, a request/response device that has been quiet longer than the
    driver's ``quiet_timeout`` is renegotiated (``on_connect()`` again) at most
    once per timeout, since a monitor that dropped its association answers
    nothing until asked afresh.

    :param clock: monotonic seconds; :param wall: aware UTC now. Both injected so
        tests and benchmarks control time.
    :param hooks: decoder arguments the application supplies (see :attr:`Driver.hooks`); each driver
        gets those it declares.
    """

    def __init__(self, config: DeviceConfig, driver: Driver, on_reading: ReadingCallback, *,
                 normalise: Normaliser, link: Link | None = None, hooks: t.Mapping[str, object] | None = None,
                 clock: t.Callable[[], float] = time.monotonic,
                 wall: t.Callable[[], dt.datetime] = utc_now) -> None:
        self.config = config
        self.driver = driver
        self.link = link or open_link(config, driver)
        self.status = StatusRecorder(config.id, driver.name, config.port, driver.quiet_timeout)
        self._hooks = {key: value for key, value in (hooks or {}).items() if key in driver.hooks}
        self._on_reading = on_reading
        self._normalise = normalise
        self._clock = clock
        self._wall = wall
        self._decoder: Decoder | None = None
        self._conversation: Conversation | None = None
        self._negotiated_at = 0.0
        self._open_failures = 0

    def run(self, stop: threading.Event) -> None:
        """Connect, exchange and reconnect until ``stop`` is set; the line is closed on return."""
        try:
            while not stop.is_set():
                if self._decoder is None and not self._connect(stop):
                    continue
                try:
                    self._exchange()
                except LinkError as exc:
                    self._decoder = None
                    self.status.disconnected(str(exc))
                    log.warning("device.disconnected", extra={"device_id": self.config.id, "reason": str(exc)})
                except Exception as exc:
                    # A fault outside the decoder (a driver's odd port error) must not end
                    # the thread: the device would stay dead until a restart.
                    log.exception("device.fault", extra={"device_id": self.config.id})
                    self._decoder = None
                    self.link.close()
                    self.status.disconnected(f"unexpected fault: {type(exc).__name__}: {exc}")
                    stop.wait(self.link.backoff.delay(1))
        finally:
            self.link.close()

    def _connect(self, stop: threading.Event) -> bool:
        now = self._clock()
        try:
            opened = self.link.connect(now)
        except LinkError as exc:
            self._open_failures += 1
            self.status.failed(str(exc))
            if self._open_failures == 1:
                log.warning("device.open_failed", extra={"device_id": self.config.id, "reason": str(exc)})
            opened = False
        if not opened:
            stop.wait(self.link.wait_time(self._clock()))
            return False
        self._open_failures = 0
        self._start_session(now)
        return True

    def _start_session(self, now: float) -> None:
        path = self.link.path or self.config.port
        self.status.connected(path, now)
        log.info("device.connected", extra={"device_id": self.config.id, "port": path})
        self._new_decoder()
        self._negotiate(now)

    def _new_decoder(self) -> None:
        decoder = self.driver.decoder(**self.config.decoder_options(), **self._hooks)
        self._decoder = decoder
        is_conversation = callable(getattr(decoder, "on_connect", None)) and callable(
            getattr(decoder, "poll", None))
        self._conversation = t.cast(Conversation, decoder) if is_conversation else None

    def _negotiate(self, now: float) -> None:
        if self._conversation is not None:
            self._negotiated_at = now
            greeting = self._conversation.on_connect()
            if greeting:
                self.link.write(greeting)

    def _exchange(self) -> None:
        """One turn: write what the protocol has due, read one burst, decode it."""
        now = self._clock()
        if self._conversation is not None:
            if self.status.is_stale(now) and now - self._negotiated_at >= self.driver.quiet_timeout:
                log.info("device.renegotiating", extra={"device_id": self.config.id,
                                                        "delay_seconds": self.driver.quiet_timeout})
                self._negotiate(now)
            request = self._conversation.poll(now)
            if request:
                self.link.write(request)
        data = self.link.read()
        if data:
            self.feed(data)

    def feed(self, data: bytes) -> None:
        """Decode ``data`` and deliver its readings; decoder and callback faults are counted, not raised."""
        decoder = self._decoder
        if decoder is None:
            return
        host_time = self._wall()
        host_monotonic = self._clock()
        frames_before = decoder.frames
        try:
            events = decoder.feed(data)
        except ProtocolError as exc:
            self._decoder_fault(f"protocol error: {exc}")
            return
        except Exception as exc:
            log.exception("device.decoder_fault", extra={"device_id": self.config.id})
            self._decoder_fault(f"decoder fault: {type(exc).__name__}: {exc}")
            return
        frames = decoder.frames - frames_before
        readings = rejected = unrecognised = 0
        flags: frozenset[str] | None = None
        for event in events:
            if isinstance(event, FrameRejected):
                rejected += 1
            elif isinstance(event, Unrecognised):
                unrecognised += 1
            elif isinstance(event, Measurement) and not self._deliver(event, host_time, host_monotonic):
                rejected += 1
            else:
                readings += isinstance(event, Measurement)
                flags = event.flags
        if rejected:
            self.status.rejected(rejected)
        else:
            self.status.heard(host_monotonic)
        if unrecognised:
            self.status.unrecognised(unrecognised)
        if frames or readings or flags is not None:
            self.status.accepted(frames, readings, host_time, host_monotonic, flags)

    def _deliver(self, event: Measurement, host_time: dt.datetime, host_monotonic: float) -> bool:
        """Normalise and hand over one measurement.

        :returns: ``False`` when it cannot be normalised (unknown metric or unit):
            such a frame is counted as rejected, like one with a bad checksum. A
            callback that fails is the receiver's fault, not the device's: the
            frame still counts as accepted and the error goes to the status.
        """
        try:
            reading = self._normalise(event, device_id=self.config.id, station=self.config.station,
                                      host_time=host_time, host_monotonic=host_monotonic)
        except Exception as exc:
            log.warning("device.reading_not_normalised", extra={"device_id": self.config.id, "metric": event.metric,
                                                                "reason": str(exc)})
            self.status.failed(f"not normalised: {type(exc).__name__}: {exc}")
            return False
        try:
            self._on_reading(reading)
        except Exception as exc:
            log.exception("device.reading_not_delivered", extra={"device_id": self.config.id, "metric": event.metric})
            self.status.failed(f"delivery failed: {type(exc).__name__}: {exc}")
        return True

    def _decoder_fault(self, message: str) -> None:
        """Count the burst as rejected and start over with a fresh decoder (and a fresh association)."""
        self.status.rejected(1)
        self.status.failed(message)
        self._new_decoder()
        self._negotiate(self._clock())


class Gateway:
    """All configured devices of one station PC (or of the server), each on its own thread.

    :param devices: validated device entries.
    :param on_reading: called from device threads with every normalised reading;
        it must be thread-safe.
    :param normalise: defaults to :func:`devices.normalise.normalise`.
    :param backoff: reconnect policy for every line.
    :raises ConfigError: when an entry names an unknown driver.
    """

    def __init__(self, devices: t.Sequence[DeviceConfig], on_reading: ReadingCallback, *,
                 normalise: Normaliser | None = None, backoff: Backoff | None = None,
                 registry: t.Callable[[str], Driver] = drivers.get,
                 hooks: t.Mapping[str, object] | None = None) -> None:
        normaliser = normalise or default_normaliser()
        self.workers: list[DeviceWorker] = []
        for device in devices:
            try:
                driver = registry(device.driver)
            except KeyError as exc:
                raise ConfigError(f"device {device.id!r}: key 'driver': {exc.args[0]}") from None
            link = open_link(device, driver, backoff=backoff)
            self.workers.append(DeviceWorker(device, driver, on_reading, normalise=normaliser, link=link,
                                             hooks=hooks))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        for worker in self.workers:
            thread = threading.Thread(target=worker.run, args=(self._stop,), daemon=True,
                                      name=f"device-{worker.config.id}")
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every device thread and close its line; a read in progress ends within its wait."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [thread for thread in self._threads if thread.is_alive()]

    def status(self) -> list[DeviceStatus]:
        now = time.monotonic()
        return [worker.status.snapshot(now) for worker in self.workers]

    def __enter__(self) -> Gateway:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
