"""Device principals: kiosks and station gateways, each with its own revocable token.

A gateway is registered for the stations it serves and may send readings and
device status for those only: a stolen or misconfigured station PC cannot put
readings on another room's screen.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from dataclasses import field

from sqlalchemy import select

from server.db import UnitOfWork
from server.models import Gateway
from server.models import KioskDevice
from server.models import Station
from server.models.base import DeviceCredential
from server.services.audit import AuditTrail
from server.services.context import SYSTEM
from server.services.context import Actor
from server.services.context import Clock
from server.services.staff import USERNAME_RE
from server.services.staff import AccountError
from server.services.staff import hash_token

_KINDS: dict[str, type[DeviceCredential]] = {"kiosk": KioskDevice, "gateway": Gateway}


@dataclass(frozen=True)
class DeviceListing:
    """One registered kiosk or gateway as ``frontdesk kiosks list`` shows it (never its token)."""

    name: str
    location: str
    created_at: dt.datetime
    last_seen_at: dt.datetime | None
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class DevicePrincipal:
    """An authenticated kiosk or gateway."""

    kind: str
    device_id: int
    name: str
    stations: frozenset[str] = field(default_factory=frozenset)

    def actor(self, address: str) -> Actor:
        """This device as the actor of a service call."""
        return Actor(self.kind, self.name, address=address)


class DevicePrincipals:
    """Registers kiosks and gateways and checks their tokens.

    A token is shown once, when the device is added; only its SHA-256 is
    stored. Revoking sets ``revoked_at`` and the next request gets 401.
    """

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit

    def add(self, kind: str, name: str, *, location: str = "", stations: tuple[str, ...] = (),
            actor: Actor = SYSTEM) -> str:
        """Register a device of ``kind`` (``kiosk`` or ``gateway``) and return its new token.

        :param stations: the stations a gateway may report for (created when new); at least one.
        :raises AccountError: for a malformed or taken name, or a gateway without a station.
        """
        if kind == "gateway" and not stations:
            raise AccountError("station: a gateway must be registered for at least one station (--station)")
        model = _KINDS[kind]
        name = name.strip().lower()
        if not USERNAME_RE.match(name):
            raise AccountError("name: 2-64 characters, lower-case letters, digits, '.', '_' or '-'")
        token = secrets.token_urlsafe(32)
        with self.uow.begin() as session:
            if session.scalar(select(model.id).where(model.name == name)) is not None:
                raise AccountError(f"name: a {kind} called {name!r} exists")
            row = model()
            row.name, row.token_hash, row.created_at = name, hash_token(token), self.clock.now()
            if isinstance(row, KioskDevice):
                row.location = location
            if isinstance(row, Gateway):
                for station_id in dict.fromkeys(s.strip() for s in stations):
                    if not USERNAME_RE.match(station_id):
                        raise AccountError(f"station: {station_id!r} is not a station id (letters, digits, . _ -)")
                    station = session.get(Station, station_id) or Station(id=station_id, name=station_id,
                                                                          location="")
                    row.stations.append(station)
            session.add(row)
            session.flush()
            self.audit.record(session, actor, f"{kind}.registered", resource_type=kind, resource_id=row.id)
        return token

    def authenticate(self, kind: str, token: str) -> DevicePrincipal | None:
        """The device holding ``token``, or ``None`` for an unknown or revoked one."""
        model = _KINDS[kind]
        with self.uow.begin() as session:
            row = session.scalar(select(model).where(model.token_hash == hash_token(token)))
            if row is None or row.revoked_at is not None:
                return None
            row.last_seen_at = self.clock.now()
            stations = frozenset(s.id for s in row.stations) if isinstance(row, Gateway) else frozenset()
            return DevicePrincipal(kind, row.id, row.name, stations)

    def list(self, kind: str) -> list[DeviceListing]:
        """Every registered device of ``kind``, revoked ones included, by name."""
        model = _KINDS[kind]
        with self.uow.begin() as session:
            return [DeviceListing(row.name, getattr(row, "location", ""), row.created_at, row.last_seen_at,
                                  row.revoked_at)
                    for row in session.scalars(select(model).order_by(model.name))]

    def revoke(self, kind: str, name: str, *, actor: Actor = SYSTEM) -> bool:
        """Revoke a device's token; ``False`` when no such active device exists."""
        model = _KINDS[kind]
        with self.uow.begin() as session:
            row = session.scalar(select(model).where(model.name == name.strip().lower(), model.revoked_at.is_(None)))
            if row is None:
                return False
            row.revoked_at = self.clock.now()
            self.audit.record(session, actor, f"{kind}.revoked", resource_type=kind, resource_id=row.id)
            return True
