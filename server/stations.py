"""The device gateway inside the server process, for devices plugged into the server's own machine.

Station PCs run ``frontdesk gateway`` instead and post to ``/api/v1/readings``;
both paths end in :meth:`server.services.vitals.Vitals.record`.
"""

from __future__ import annotations

import logging
import uuid

from flask import Flask

from devices.config import from_mapping
from devices.gateway import Gateway
from devices.reading import Reading
from server.config import Config
from server.services import Services
from server.services.vitals import IncomingReading

log = logging.getLogger("frontdesk.stations")


class DevicesPart:
    """Reads the configured ``[[devices]]`` and stores their readings as live values.

    Its status is published on the app as ``frontdesk.gateway`` for ``GET /api/v1/devices``.
    """

    name = "devices"

    def __init__(self, app: Flask, config: Config) -> None:
        self.services: Services = app.extensions["frontdesk"]
        self.gateway = Gateway([from_mapping(entry) for entry in config.devices], self._store)
        app.extensions["frontdesk.gateway"] = self.gateway

    def start(self) -> None:
        self.gateway.start()

    def stop(self) -> None:
        self.gateway.stop()

    def _store(self, reading: Reading) -> None:
        try:
            self.services.vitals.record([IncomingReading.from_reading(reading, uuid.uuid4().hex)])
        except Exception:
            # A storage hiccup must not stop the device thread; the next reading replaces this one.
            log.exception("stations.store_failed", extra={"device_id": reading.device_id})
