"""Gateway CPU with 20 simulated devices streaming, and frame → reading latency.

Run: ``.venv/bin/python bench/bench_gateway.py [--devices 20] [--seconds 10] [--driver nonin-df2]``

The simulators run in a child process (this script re-invoked with
``--simulators``), each on its own pty, so the CPU measured here is the
gateway's alone: ``time.process_time()`` of this process over a wall-clock
interval, as a percentage of one core.

Two gateways read the same devices, one after the other, in the same run:

* **ours**: :class:`devices.gateway.Gateway` (one thread per device, one
  wake-up per burst, the whole burst decoded at once);
* **baseline**: the naive loop, one ``read(1)`` and one ``decoder.feed`` per byte.

Latency: a 21st device is a pty this process writes Masimo lines to itself;
the time from ``os.write`` of a line to the callback receiving its first reading
is one sample (p50 / p99 over the run), measured while the 20 devices stream.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import tty
import typing as t

import serial

from devices import drivers
from devices.config import DeviceConfig
from devices.gateway import Gateway
from devices.gateway import default_normaliser
from devices.gateway import read_wait
from devices.gateway import utc_now
from devices.protocols.base import Conversation
from devices.protocols.base import Measurement
from devices.reading import Reading
from devices.simulators import runner

PROBE_DRIVER = "masimo-ascii"
LATENCY_INTERVAL = 0.05


def serve_simulators(names: list[str]) -> None:
    """Child process: one simulator per name on its own pty; print the paths, run until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    lines = [runner.Line(drivers.get(name).simulator("normal", n), runner.PtyEndpoint())
             for n, name in enumerate(names)]
    runner.run(lines, stop, on_open=lambda path: print(path, flush=True))


def device_mix(count: int) -> list[str]:
    """Every registered driver in turn, so the load has each protocol's framing and rate."""
    return list(itertools.islice(itertools.cycle(drivers.names()), count))


class NaiveGateway:
    """The baseline: per device a thread that reads one byte at a time and feeds it to the decoder."""

    def __init__(self, configs: t.Sequence[DeviceConfig], on_reading: t.Callable[[Reading], None]) -> None:
        self.configs = configs
        self.on_reading = on_reading
        self.normalise = default_normaliser()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(config,), daemon=True) for config in configs]

    def _run(self, config: DeviceConfig) -> None:
        driver = drivers.get(config.driver)
        s = config.serial_settings(driver.serial)
        port = serial.serial_for_url(config.port, baudrate=s.baudrate, bytesize=s.bytesize, parity=s.parity,
                                     stopbits=s.stopbits, rtscts=s.rtscts, xonxoff=s.xonxoff,
                                     timeout=read_wait(driver))
        decoder = driver.decoder()
        conversation = t.cast(Conversation, decoder) if callable(getattr(decoder, "poll", None)) else None
        if conversation is not None:
            port.write(conversation.on_connect())
        try:
            while not self._stop.is_set():
                if conversation is not None:
                    request = conversation.poll(time.monotonic())
                    if request:
                        port.write(request)
                byte = port.read(1)
                if not byte:
                    continue
                host_time = time.monotonic()
                for event in decoder.feed(byte):
                    if type(event) is Measurement:
                        self.on_reading(self.normalise(event, device_id=config.id, station=config.station,
                                                       host_time=utc_now(), host_monotonic=host_time))
        finally:
            port.close()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5.0)


class LatencyProbe:
    """A pty this process writes Masimo lines to; records write → first-reading delays."""

    def __init__(self) -> None:
        master, slave = os.openpty()
        tty.setraw(master)
        self.master = master
        self.path = os.ttyname(slave)
        self._slave = slave
        self._simulator = drivers.get(PROBE_DRIVER).simulator("normal", 99)
        self._sent_at: float | None = None
        self.samples: list[float] = []
        self._lock = threading.Lock()

    def on_reading(self, reading: Reading) -> None:
        now = time.monotonic()
        with self._lock:
            if self._sent_at is not None:
                self.samples.append(now - self._sent_at)
                self._sent_at = None

    def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        unit = itertools.count(start=1)
        while time.monotonic() < deadline:
            frame = self._simulator.output(float(next(unit)))
            with self._lock:
                self._sent_at = time.monotonic()
            os.write(self.master, frame)
            time.sleep(LATENCY_INTERVAL)

    def close(self) -> None:
        os.close(self.master)
        os.close(self._slave)


Starter = t.Callable[[t.Callable[[Reading], None], str], t.Callable[[], None]]


def measure(label: str, start: Starter, seconds: float) -> dict[str, float]:
    """Start a gateway, let it settle, then measure its CPU share and the probe's latency."""
    counted = itertools.count()
    probe = LatencyProbe()

    def on_reading(reading: Reading) -> None:
        if reading.device_id == "probe":
            probe.on_reading(reading)
        else:
            next(counted)

    stop = start(on_reading, probe.path)
    try:
        time.sleep(2.0)
        readings_before = next(counted)
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        cpu1, wall1 = time.process_time(), time.monotonic()
        readings = next(counted) - readings_before - 1
        probe.run(min(seconds, 5.0))
    finally:
        stop()
        probe.close()
    samples = sorted(probe.samples)
    result = {
        "cpu": 100.0 * (cpu1 - cpu0) / (wall1 - wall0),
        "readings_per_s": readings / (wall1 - wall0),
        "p50_ms": 1000 * statistics.median(samples) if samples else float("nan"),
        "p99_ms": 1000 * samples[min(len(samples) - 1, int(0.99 * len(samples)))] if samples else float("nan"),
        "samples": float(len(samples)),
    }
    print(f"{label:<9} CPU {result['cpu']:5.1f} % of one core   {result['readings_per_s']:6.1f} readings/s   "
          f"latency p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  ({len(samples)} samples)",
          flush=True)
    return result


class Simulators:
    """The child process holding the simulated devices, fresh for each gateway.

    Fresh ptys per run, because on Linux a pty whose line settings were set to
    parity (Datex AS3 is 8E1) refuses a second pyserial open with EINVAL.
    """

    def __init__(self, names: list[str]) -> None:
        self.child = subprocess.Popen([sys.executable, __file__, "--simulators", ",".join(names)],
                                      stdout=subprocess.PIPE, text=True)
        assert self.child.stdout is not None
        paths = [self.child.stdout.readline().strip() for _ in names]
        self.configs = [DeviceConfig(f"dev{n}", name, path, "bench")
                        for n, (name, path) in enumerate(zip(names, paths, strict=True))]

    def stop(self) -> None:
        self.child.send_signal(signal.SIGTERM)
        self.child.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--driver", help="simulate this driver on every device instead of the mix of all")
    parser.add_argument("--simulators", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulators:
        serve_simulators(args.simulators.split(","))
        return

    names = [args.driver] * args.devices if args.driver else device_mix(args.devices)
    print(f"{len(names)} devices: " + ", ".join(sorted(set(names))), flush=True)

    def starter(kind: type[Gateway] | type[NaiveGateway]) -> Starter:
        def start(on_reading: t.Callable[[Reading], None], probe_path: str) -> t.Callable[[], None]:
            simulators = Simulators(names)
            gateway = kind([*simulators.configs, DeviceConfig("probe", PROBE_DRIVER, probe_path, "bench")],
                           on_reading)
            gateway.start()

            def stop() -> None:
                gateway.stop()
                simulators.stop()

            return stop

        return start

    results = {label: measure(label, starter(kind), args.seconds)
               for label, kind in (("ours", Gateway), ("baseline", NaiveGateway))}
    ratio = results["baseline"]["cpu"] / results["ours"]["cpu"] if results["ours"]["cpu"] else float("inf")
    verdict = "met" if results["ours"]["cpu"] < 25.0 else "NOT met"
    print(f"gateway CPU target < 25 % of one core: {verdict}; baseline uses {ratio:.1f}x the CPU of ours")


if __name__ == "__main__":
    main()
