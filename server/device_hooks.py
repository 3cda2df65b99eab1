"""What the application lends the device decoders: ACKs for monitors, built by :mod:`hl7`.

``devices/`` may not import ``hl7``, yet a monitor that sends PCD-01 over MLLP
deserves the same acknowledgement any HL7 peer gets from us: sender and
receiver swapped, MSA-2 echoing its MSH-10, the form of the version it
declared, its character set. The decoders take the builder as a hook
(:attr:`devices.drivers.Driver.hooks`) and everything here that starts a
gateway passes :func:`device_hooks`.
"""

from __future__ import annotations

import datetime as dt

from hl7.ack import build_ack
from server.services.outbox import new_control_id


def acknowledge(raw: bytes, code: str) -> bytes:
    """The ACK with MSA-1 ``code`` for one message a monitor sent, unframed."""
    return build_ack(raw, code, control_id=new_control_id(), now=dt.datetime.now(dt.UTC))


def device_hooks() -> dict[str, object]:
    """The hooks every gateway in this application passes to its decoders."""
    return {"acknowledge": acknowledge}
