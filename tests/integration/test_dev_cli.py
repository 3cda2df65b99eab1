"""The device commands as clinic IT runs them: ``frontdesk`` subprocesses on real ptys."""

from __future__ import annotations

import json
import pathlib
import re
import signal
import subprocess
import sys
import typing as t

import pytest

FRONTDESK = str(pathlib.Path(sys.executable).with_name("frontdesk"))
READING_KEYS = {"metric", "mdc_code", "value", "unit", "flags", "device_time"}


class Simulator:
    """``frontdesk simulate`` in the background; ``paths`` are the lines it printed."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([FRONTDESK, "simulate", *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)

    def next_path(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line, self.stop()[1]
        return line

    def stop(self) -> tuple[int, str]:
        """SIGTERM, as a service manager would; returns the exit status and stderr."""
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=30)
        return self.process.returncode, err


@pytest.fixture
def simulators() -> t.Iterator[list[Simulator]]:
    started: list[Simulator] = []
    yield started
    for simulator in started:
        if simulator.process.poll() is None:
            simulator.process.kill()
            simulator.process.communicate()


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FRONTDESK, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("driver", ["masimo-ascii", "nonin-df8", "intellivue-mib", "datex-as3"])
def test_probe_reads_a_simulated_device(simulators: list[Simulator], driver: str) -> None:
    simulators.append(Simulator(driver, "--pty"))
    path = simulators[0].next_path()
    assert path.startswith("/dev/pts/")
    probe = run("devices", "probe", driver, path, "--count", "3", "--json", "--timeout", "30")
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        reading = json.loads(line)
        assert set(reading) == READING_KEYS
        assert isinstance(reading["mdc_code"], int)
        assert reading["value"] is None or float(reading["value"]) > 0
    # Frames as frames and readings as readings: a Datex record or a monitor message carries several values.
    assert re.fullmatch(r"\d+ frames? decoded with \d+ readings?, \d+ observations? not recognised, "
                        r"\d+ frames? rejected\n", probe.stderr), probe.stderr
    readings = int(re.findall(r"with (\d+) reading", probe.stderr)[0])
    assert readings >= 3
    status, err = simulators[0].stop()
    assert status == 0, err


def test_probe_text_output(simulators: list[Simulator]) -> None:
    simulators.append(Simulator("nonin-ascii", "--pty"))
    probe = run("devices", "probe", "nonin-ascii", simulators[0].next_path(), "--count", "2")
    assert probe.returncode == 0, probe.stderr
    assert [line.split()[0] for line in probe.stdout.splitlines()] in (
        ["spo2", "pulse_oximeter"], ["pulse_oximeter", "spo2"])


def test_probe_missing_port_is_one_clear_line(tmp_path: pathlib.Path) -> None:
    port = str(tmp_path / "ttyUSB9")
    probe = run("devices", "probe", "nonin-df8", port, "--count", "1")
    assert probe.returncode != 0
    assert probe.stdout == ""
    assert probe.stderr.strip() == f"frontdesk: error: cannot open port {port}: No such file or directory"


def test_probe_unknown_driver() -> None:
    probe = run("devices", "probe", "nonin-df99", "loop://")
    assert probe.returncode == 2
    assert probe.stderr.startswith("frontdesk: error: unknown driver 'nonin-df99' (known: ")
    assert "Traceback" not in probe.stderr


def test_probe_gives_up_on_a_silent_port() -> None:
    probe = run("devices", "probe", "masimo-ascii", "loop://", "--count", "1", "--timeout", "1")
    assert probe.returncode != 0
    assert "frontdesk: error: 0 of 1 readings from loop:// within 1 s" in probe.stderr


def test_unplug_scenario_reopens_under_the_link(simulators: list[Simulator], tmp_path: pathlib.Path) -> None:
    link = tmp_path / "serial-by-id-sim"
    simulators.append(Simulator("masimo-ascii", "--pty", "--link", str(link), "--scenario", "unplug",
                                "--unplug-every", "1.0", "--unplug-for", "0.2"))
    first = simulators[0].next_path()
    second = simulators[0].next_path()
    assert first == second == str(link)
    assert link.is_symlink() and link.resolve().as_posix().startswith("/dev/pts/")
    status, err = simulators[0].stop()
    assert status == 0, err


def test_simulate_rejects_both_pty_and_port() -> None:
    result = run("simulate", "masimo-ascii", "--pty", "--port", "loop://")
    assert result.returncode == 2
    assert "use either --pty or --port" in result.stderr


def test_simulate_unknown_scenario_lists_the_drivers_own() -> None:
    result = run("simulate", "suretemp", "--scenario", "smoke")
    assert result.returncode == 2
    assert result.stderr.strip() == ("frontdesk: error: unknown scenario 'smoke' for suretemp (known: normal, "
                                     "artifact, sensor-off, garbage, unplug, cal-key, over-temp, monitor-mode)")


@pytest.mark.parametrize(("driver", "scenario"), [("suretemp", "cal-key"), ("healthometer", "overload"),
                                                  ("ricelake", "bmi-mode"), ("nonin-df8", "reserved-bits"),
                                                  ("nonin-df2", "perfusion"), ("tanita", "bd-815u")])
def test_simulate_runs_a_drivers_own_scenario(driver: str, scenario: str) -> None:
    result = run("simulate", driver, "--pty", "--scenario", scenario, "--duration", "0.3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("/dev/pts/")


def test_simulate_on_a_port_that_does_not_exist(tmp_path: pathlib.Path) -> None:
    port = str(tmp_path / "ttyS9")
    result = run("simulate", "masimo-ascii", "--port", port)
    assert result.returncode == 1
    assert result.stderr.strip() == f"frontdesk: error: cannot open port {port}: No such file or directory"


def test_ports_lists_json_lines() -> None:
    result = run("devices", "ports", "--json")
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        assert set(json.loads(line)) == {"device", "serial_number", "vid_pid", "description", "by_id"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "ox1:masimo-ascii:/dev/ttyUSB0"], "expected ID:DRIVER:PORT:STATION"),
        (["--device", "ox1:nonin-df99:/dev/ttyUSB0:room-1"], "device 'ox1': key 'driver': unknown driver"),
        ([], "no devices: give --config FILE with [[devices]] or --device"),
        (["--config", "/nonexistent/frontdesk.toml"], "cannot read config file /nonexistent/frontdesk.toml"),
    ],
)
def test_gateway_configuration_errors(tmp_path: pathlib.Path, args: list[str], message: str) -> None:
    result = run("gateway", "--server", "http://127.0.0.1:9", "--token", "t", "--buffer-dir",
                 str(tmp_path / "buffer"), *args)
    assert result.returncode == 2
    assert result.stderr.startswith("frontdesk: error: ") and message in result.stderr
    assert "Traceback" not in result.stderr
