"""Devices reach the server: read in the server process, or by a station gateway across an outage."""

from __future__ import annotations

import json
import signal
import subprocess
import typing as t
from pathlib import Path

import pytest
from sqlalchemy import select

from devices.uplink import DiskBuffer
from server.db import make_engine
from server.models import Observation
from tests.procs import Browser
from tests.procs import clean_env
from tests.procs import eventually
from tests.procs import free_port
from tests.procs import run
from tests.procs import start
from tests.procs import wait_for


def live_values(db: Path) -> dict[tuple[str, str], str | None]:
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(Observation.device_id, Observation.metric, Observation.value)
                                      .where(Observation.status == "preliminary")).all()
    finally:
        engine.dispose()
    return {(device, metric): value for device, metric, value in rows}


def buffered_count(directory: Path) -> int:
    """Readings waiting in a gateway's disk buffer (read with the gateway's own buffer class)."""
    if not (directory / "readings.sqlite3").exists():
        return 0
    buffer = DiskBuffer(str(directory))
    try:
        return len(buffer)
    finally:
        buffer.close()


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    return tmp_path / "instance"


@pytest.fixture
def simulator(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    link = tmp_path / "tty-ox-1"
    process = start(["simulate", "nonin-df8", "--pty", "--link", str(link)], clean_env(tmp_path / "sim"))
    assert process.stdout is not None
    assert process.stdout.readline().strip() == str(link)
    yield process, link
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=10)


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return err


def test_serve_reads_its_configured_devices(instance: Path, tmp_path: Path,
                                            simulator: tuple[subprocess.Popen[str], Path]) -> None:
    _, link = simulator
    config = tmp_path / "frontdesk.toml"
    config.write_text(f'[[devices]]\nid = "ox-1"\ndriver = "nonin-df8"\nport = "{link}"\nstation = "room1"\n')
    port = free_port()
    env = clean_env(instance, FRONTDESK_CONFIG=str(config), FRONTDESK_WEB_PORT=str(port),
                    FRONTDESK_HL7_LISTEN_PORT=str(free_port()))
    assert run(["db", "upgrade"], env).returncode == 0
    assert run(["users", "add", "ama", "--role", "assistant", "--password-stdin"], env,
               "correct horse battery\n").returncode == 0
    server = start(["serve"], env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/healthz")
        values = eventually(lambda: live_values(instance / "frontdesk.db"), what="readings from the pty device")
        assert set(values) >= {("ox-1", "spo2"), ("ox-1", "pulse_oximeter")}
        assert all(70 <= float(v) <= 100 for (_, metric), v in values.items() if metric == "spo2" and v)
        browser = Browser(base)
        assert browser.sign_in("ama", "correct horse battery") == 302

        def counted() -> dict[str, t.Any] | None:
            """The device's status once its reader has reported a frame (status goes out every few seconds)."""
            status, body, _ = browser.request("/api/v1/devices")
            assert status == 200
            [device] = json.loads(body)["devices"]
            return device if device["frames_accepted"] > 0 else None

        device = eventually(counted, what="the device's frame count")
        assert device["id"] == "ox-1" and device["connected"] is True and device["frames_rejected"] == 0
    finally:
        stop(server)


def test_station_gateway_buffers_while_server_is_down_then_delivers(
        instance: Path, tmp_path: Path, simulator: tuple[subprocess.Popen[str], Path]) -> None:
    _, link = simulator
    port = free_port()
    env = clean_env(instance, FRONTDESK_WEB_PORT=str(port), FRONTDESK_HL7_LISTEN_PORT=str(free_port()))
    assert run(["db", "upgrade"], env).returncode == 0
    registered = run(["gateways", "add", "room1-pc", "--station", "room1"], env)
    token = registered.stdout.rsplit(" ", 1)[-1].strip()
    buffer_dir = tmp_path / "buffer"
    gateway = start(["gateway", "--server", f"http://127.0.0.1:{port}", "--token", token, "--name", "room1-pc",
                     "--buffer-dir", str(buffer_dir), "--device", f"ox-1:nonin-df8:{link}:room1"],
                    clean_env(tmp_path / "gw"))
    try:
        buffered = eventually(lambda: buffered_count(buffer_dir) >= 3, what="readings in the disk buffer")
        assert buffered and live_values(instance / "frontdesk.db") == {}
        server = start(["serve"], env)
        try:
            wait_for(f"http://127.0.0.1:{port}/healthz")
            values = eventually(lambda: live_values(instance / "frontdesk.db"), what="buffered readings")
            assert ("ox-1", "spo2") in values
            eventually(lambda: buffered_count(buffer_dir) == 0, what="the buffer to drain")
        finally:
            stop(server)
    finally:
        stop(gateway)
