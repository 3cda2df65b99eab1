"""The device gateway inside the server process, for devices plugged into the server's own machine.

Station PCs run ``frontdesk gateway`` instead and post to ``/api/v1/readings``
and ``/api/v1/devices/status``; both paths end in the same services
(:meth:`server.services.vitals.Vitals.record`, :meth:`server.services.stations.Stations.report`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from flask import Flask

from devices.config import from_mapping
from devices.gateway import Gateway
from devices.reading import Reading
from server.config import Config
from server.device_hooks import device_hooks
from server.services import Services
from server.services.stations import DeviceReport
from server.services.vitals import IncomingReading

log = logging.getLogger("frontdesk.stations")

STATUS_INTERVAL = 0.5
"""How often device status is looked at: an unplugged device shows as disconnected within a second."""

STATUS_HEARTBEAT = 3.0
"""Status is written at least this often even when nothing changed, so pages know this reader is alive."""

REPORTER = "server"


class DevicesPart:
    """Reads the configured ``[[devices]]``, stores their readings as live values and their status as rows."""

    name = "devices"

    def __init__(self, app: Flask, config: Config) -> None:
        self.services: Services = app.extensions["frontdesk"]
        self.devices = [from_mapping(entry) for entry in config.devices]
        self.gateway = Gateway(self.devices, self._store, hooks=device_hooks())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.services.stations.configure((d.id, d.driver, d.port, d.station) for d in self.devices)
        self.gateway.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._report_status, name="device-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.gateway.stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _store(self, reading: Reading) -> None:
        try:
            self.services.vitals.record([IncomingReading.from_reading(reading, uuid.uuid4().hex)])
        except Exception:
            # A storage hiccup must not stop the device thread; the next reading replaces this one.
            log.exception("stations.store_failed", extra={"device_id": reading.device_id})

    def _report_status(self) -> None:
        """Write device status when its state changes, and as a heartbeat."""
        last_state: list[tuple[bool, bool, str, tuple[str, ...]]] = []
        last_written = 0.0
        while not self._stop.wait(STATUS_INTERVAL):
            reports = self._reports()
            state = [(r.connected, r.stale, r.last_error, r.flags) for r in reports]
            if state != last_state or time.monotonic() - last_written >= STATUS_HEARTBEAT:
                try:
                    self.services.stations.report(reports, reporter=REPORTER)
                except Exception:
                    log.exception("stations.status_failed")
                    continue
                last_state, last_written = state, time.monotonic()

    def _reports(self) -> list[DeviceReport]:
        return [DeviceReport.from_status(status, device.station)
                for status, device in zip(self.gateway.status(), self.devices, strict=True)]
