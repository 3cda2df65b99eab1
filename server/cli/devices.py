"""CLI commands for serial devices: ``simulate``, ``devices probe|ports``, ``gateway``.

These are the tools clinic IT uses at a station PC: ``devices ports`` to find
which adapter is which, ``devices probe`` to check a cable and a device's
settings, ``simulate`` to stand in for a device, and ``gateway`` to run a
station's devices against a remote server. Every failure a user can cause (a
wrong port, an unknown driver, an unreachable server) ends in one clear line on
stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import threading
import time
import typing as t

import click
from serial.tools import list_ports

from devices import drivers
from devices.config import ConfigError
from devices.config import from_mapping
from devices.config import from_spec
from devices.config import load_toml
from devices.drivers import Driver
from devices.gateway import DeviceWorker
from devices.gateway import Gateway
from devices.gateway import default_normaliser
from devices.gateway import open_link
from devices.reading import Reading
from devices.reading import measurement_fields
from devices.simulators import runner
from devices.simulators.base import SCENARIOS
from devices.status import DeviceStatus
from devices.transport import LinkError
from devices.uplink import DiskBuffer
from devices.uplink import Uplink
from devices.uplink import status_to_json
from server.cli.common import EXIT_CONFIG
from server.cli.common import fail
from server.device_hooks import device_hooks
from server.logs import configure as configure_logging

BY_ID_DIR = "/dev/serial/by-id"
STATUS_INTERVAL = 2.0
"""Seconds between device status reports from a station gateway (the server believes one for 10 s)."""


def register(main: click.Group) -> None:
    """Attach this module's commands to the ``frontdesk`` group."""
    main.add_command(simulate)
    main.add_command(devices_group)
    main.add_command(gateway)


def _driver(name: str) -> Driver:
    try:
        return drivers.get(name)
    except KeyError as exc:
        fail(str(exc.args[0]), EXIT_CONFIG)


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so long-running commands close their ports on the way out."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@click.command()
@click.argument("driver")
@click.option("--pty", "use_pty", is_flag=True, help="Create a pseudo-terminal pair and print the path to "
              "connect to (the default).")
@click.option("--port", "port_url", metavar="URL", help="Write to this serial port or pyserial URL instead.")
@click.option("--scenario", default="normal", show_default=True,
              help=f"What the simulated device does: {', '.join(SCENARIOS)}, or a scenario of the driver's own "
              "(an unknown one lists them); 'unplug' drops and restores the line periodically.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulated values.")
@click.option("--link", "link_path", type=click.Path(dir_okay=False), help="With --pty: keep a symlink here "
              "pointing at the current pty, the way /dev/serial/by-id follows a re-plugged adapter.")
@click.option("--unplug-every", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="Seconds the line stays up in the unplug scenario.")
@click.option("--unplug-for", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="Seconds the line stays down in the unplug scenario.")
@click.option("--duration", type=click.FloatRange(min=0.0), help="Stop after this many seconds.")
def simulate(driver: str, use_pty: bool, port_url: str | None, scenario: str, seed: int,
             link_path: str | None, unplug_every: float, unplug_for: float, duration: float | None) -> None:
    """Simulate a DRIVER device on a pty or a serial port until interrupted.

    Prints the path (or URL) to connect to on stdout, again each time the line
    comes back in the unplug scenario.
    """
    if use_pty and port_url:
        raise click.UsageError("use either --pty or --port, not both")
    if link_path and port_url:
        raise click.UsageError("--link only applies to --pty")
    spec = _driver(driver)
    if scenario not in spec.scenarios:
        fail(f"unknown scenario {scenario!r} for {driver} (known: {', '.join(spec.scenarios)})", EXIT_CONFIG)
    device_scenario = "normal" if scenario == "unplug" else scenario
    endpoint: runner.Endpoint
    if port_url:
        endpoint = runner.PortEndpoint(port_url, spec.serial)
    else:
        endpoint = runner.PtyEndpoint(link=link_path)
    unplug = runner.Unplug(up=unplug_every, down=unplug_for) if scenario == "unplug" else None
    line = runner.Line(spec.simulator(device_scenario, seed), endpoint, unplug=unplug)
    stop = _stop_on_signals()
    if duration is not None:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()
    try:
        runner.run([line], stop, on_open=lambda path: click.echo(path))
    except LinkError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot create a pty: {exc.strerror or exc}")


@click.group("devices")
def devices_group() -> None:
    """Inspect serial ports and check devices."""


@devices_group.command("probe")
@click.argument("driver")
@click.argument("port")
@click.option("--count", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop after this many readings.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Give up after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per reading.")
@click.option("--baudrate", type=click.IntRange(min=1), help="Override the driver's baud rate.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A decoder option as in [[devices]] (e.g. df8_layout=extended-status); repeatable.")
def probe(driver: str, port: str, count: int, timeout: float, as_json: bool, baudrate: int | None,
          options: tuple[str, ...]) -> None:
    """Open PORT with DRIVER and print the decoded readings.

    PORT is a device path or a pyserial URL (loop://, socket://host:port, rfc2217://…).
    Exits non-zero when the port cannot be opened or fewer than COUNT readings
    arrive in time; the device's counters are printed on stderr at the end.
    """
    spec = _driver(driver)
    entry: dict[str, t.Any] = {"id": "probe", "driver": driver, "port": port, "station": "probe"}
    if baudrate:
        entry["baudrate"] = baudrate
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key in entry:
            fail(f"--option {option!r}: expected KEY=VALUE with a decoder option as KEY", EXIT_CONFIG)
        entry[key] = value
    try:
        config = from_mapping(entry)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    link = open_link(config, spec)
    try:
        link.open()
    except LinkError as exc:
        fail(str(exc))
    readings: queue.Queue[Reading] = queue.Queue()
    worker = DeviceWorker(config, spec, readings.put, normalise=default_normaliser(), link=link,
                          hooks=device_hooks())
    stop = _stop_on_signals()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True, name="probe")
    thread.start()
    deadline = time.monotonic() + timeout
    printed = 0
    try:
        while printed < count and not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                reading = readings.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            click.echo(json.dumps(measurement_fields(reading)) if as_json else _reading_text(reading))
            printed += 1
    finally:
        stop.set()
        thread.join(2.0)
    status = worker.status.snapshot(time.monotonic())
    click.echo(f"{counts(status)}" + (f"; last error: {status.last_error}" if status.last_error else ""), err=True)
    if printed < count:
        fail(f"{printed} of {count} readings from {port} within {timeout:g} s")


def counts(status: DeviceStatus) -> str:
    """A device's counters in words: frames as frames, readings as readings."""
    return (f"{_plural(status.frames_accepted, 'frame')} decoded with {_plural(status.readings, 'reading')}, "
            f"{_plural(status.unrecognised, 'observation')} not recognised, "
            f"{_plural(status.frames_rejected, 'frame')} rejected")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _reading_text(reading: Reading) -> str:
    value = "---" if reading.value is None else str(reading.value)
    text = f"{reading.metric:<18} {value:>8} {reading.unit}"
    if reading.flags:
        text += "  [" + ", ".join(sorted(reading.flags)) + "]"
    if reading.device_time is not None:
        text += f"  device time {reading.device_time.isoformat()}"
    return text


@devices_group.command("ports")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per port.")
def ports(as_json: bool) -> None:
    """List serial ports with their USB identities (serial number, VID:PID, by-id path)."""
    by_id = _by_id_links()
    for info in sorted(list_ports.comports(), key=lambda info: info.device):
        vid_pid = f"{info.vid:04X}:{info.pid:04X}" if info.vid is not None and info.pid is not None else None
        row = {
            "device": info.device,
            "serial_number": info.serial_number,
            "vid_pid": vid_pid,
            "description": info.description,
            "by_id": by_id.get(os.path.realpath(info.device)),
        }
        if as_json:
            click.echo(json.dumps(row))
        else:
            shown = {key: value for key, value in row.items() if value not in (None, "n/a")}
            click.echo("  ".join(f"{key}={value}" for key, value in shown.items()))


def _by_id_links() -> dict[str, str]:
    """Map each device's real path to its stable ``/dev/serial/by-id`` name."""
    try:
        names = os.listdir(BY_ID_DIR)
    except OSError:
        return {}
    return {os.path.realpath(os.path.join(BY_ID_DIR, name)): os.path.join(BY_ID_DIR, name) for name in names}


@click.command()
@click.option("--server", required=True, metavar="URL", help="Base URL of the Frontdesk server.")
@click.option("--token", required=True, envvar="FRONTDESK_GATEWAY_TOKEN", metavar="TOKEN",
              help="API token of this gateway (or FRONTDESK_GATEWAY_TOKEN).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="FRONTDESK_CONFIG",
              help="TOML file with [[devices]] tables.")
@click.option("--device", "device_specs", multiple=True, metavar="ID:DRIVER:PORT:STATION",
              help="A device, in addition to the config file; repeatable.")
@click.option("--buffer-dir", type=click.Path(file_okay=False), default="instance/gateway-buffer",
              show_default=True, help="Where readings wait while the server is unreachable.")
@click.option("--name", default=socket.gethostname, show_default="host name", help="This gateway's name.")
@click.option("--ca", "cafile", type=click.Path(dir_okay=False, exists=True), envvar="FRONTDESK_GATEWAY_CA",
              help="PEM file of the CA that signed the server's certificate (or FRONTDESK_GATEWAY_CA); "
                   "default: the public ones.")
@click.option("--allow-http", is_flag=True,
              help="Allow a plain http:// server other than this machine (the token then travels in clear text).")
@click.option("--verbose", is_flag=True, help="Log every connection step.")
def gateway(server: str, token: str, config_path: str | None, device_specs: tuple[str, ...], buffer_dir: str,
            name: str, cafile: str | None, allow_http: bool, verbose: bool) -> None:
    """Read this station's devices and post their readings to the server.

    Readings are stored on local disk first and replayed in order when the
    server is back; stop with Ctrl-C or SIGTERM. Logs are JSON lines on stderr,
    as the server's are.
    """
    try:
        configs = load_toml(config_path) if config_path else []
        configs += [from_spec(spec) for spec in device_specs]
        ids = [device.id for device in configs]
        duplicate = next((device_id for device_id in ids if ids.count(device_id) > 1), None)
        if duplicate is not None:
            raise ConfigError(f"device {duplicate!r}: key 'id' is used by another device")
        if not configs:
            raise ConfigError("no devices: give --config FILE with [[devices]] or --device")
        buffer = DiskBuffer(buffer_dir)
        uplink = Uplink(server, token, name, buffer, cafile=cafile, allow_http=allow_http)
        station = Gateway(configs, uplink.submit, hooks=device_hooks())
    except (ConfigError, ValueError) as exc:
        fail(str(exc), EXIT_CONFIG)
    except OSError as exc:
        fail(str(exc))
    configure_logging(logging.DEBUG if verbose else logging.INFO)
    stop = _stop_on_signals()
    log = logging.getLogger("frontdesk.gateway")
    log.info("gateway.started", extra={"host": name, "count": len(configs), "path": uplink.url,
                                       "readings": len(buffer)})
    uplink.start()
    station.start()
    stations = [device.station for device in configs]
    ticks = 0
    try:
        while not stop.wait(STATUS_INTERVAL):
            statuses = station.status()
            failure = uplink.post_status([status_to_json(s, st) for s, st in zip(statuses, stations, strict=True)])
            if failure and ticks % 30 == 0:
                log.warning("gateway.status_not_delivered", extra={"reason": failure})
            ticks += 1
            if ticks % 30 == 0:
                for status in statuses:
                    log.info("gateway.device_status", extra={
                        "device_id": status.device_id, "port": status.port,
                        "state": "stale" if status.stale else "connected" if status.connected else "disconnected",
                        "frames": status.frames_accepted, "readings": status.readings,
                        "rejected": status.frames_rejected, "unrecognised": status.unrecognised,
                        "error": status.last_error})
    finally:
        station.stop()
        uplink.stop()
        log.info("gateway.stopped", extra={"readings": uplink.flush()})
