"""The service layer: every use of the database goes through here.

Services own their transactions (``with self.uow.begin()``) so that a domain
change, its outbox message and its audit row commit together. They take their
collaborators as keyword-only arguments, which is how tests hand them a frozen
clock. :func:`build_services` wires one set for an app or a CLI command.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from server.config import Config
from server.db import UnitOfWork
from server.live import Hub
from server.live import LocalHub
from server.questionnaires import load_library
from server.services.alerts import SecurityAlerts
from server.services.api_tokens import ApiTokens
from server.services.audit import AuditTrail
from server.services.audit import AuditVerifier
from server.services.audit_report import AuditReports
from server.services.board import Board
from server.services.checkin import CheckIn
from server.services.consents import load_consents
from server.services.context import Clock
from server.services.context import SystemClock
from server.services.devices import DevicePrincipals
from server.services.flags import PendingChanges
from server.services.flags import StaffFlags
from server.services.health import Health
from server.services.inbound import Inbound
from server.services.kiosks import KioskSessions
from server.services.messages import OutboundMessages
from server.services.mfa import SecondFactors
from server.services.outbox import Outbox
from server.services.patients import Patients
from server.services.retention import Retention
from server.services.staff import StaffAccounts
from server.services.stations import Stations
from server.services.visits import Visits
from server.services.vitals import Vitals


@dataclass(frozen=True)
class Services:
    """One of each service, sharing a unit of work and a clock."""

    uow: UnitOfWork
    clock: Clock
    audit: AuditTrail
    audit_verifier: AuditVerifier
    audit_reports: AuditReports
    alerts: SecurityAlerts
    staff: StaffAccounts
    mfa: SecondFactors
    devices: DevicePrincipals
    outbox: Outbox
    patients: Patients
    visits: Visits
    board: Board
    inbound: Inbound
    vitals: Vitals
    stations: Stations
    health: Health
    live: Hub
    kiosks: KioskSessions
    checkin: CheckIn
    flags: StaffFlags
    changes: PendingChanges
    retention: Retention
    api_tokens: ApiTokens


def build_services(config: Config, engine: Engine, *, secret: str, clock: Clock | None = None,
                   live: Hub | None = None) -> Services:
    """Wire the services for ``engine`` with the policies from ``config``.

    :param secret: the instance secret, used as the pepper of keyed hashes.
    :param live: where services announce committed changes (:func:`server.live.make_hub`);
        in-process only when omitted (CLI commands).
    """
    clock = clock or SystemClock()
    live = live or LocalHub()
    uow = UnitOfWork(engine)
    audit = AuditTrail(clock=clock)
    outbox = Outbox(uow=uow, clock=clock, audit=audit)
    messages = OutboundMessages(settings=config.hl7, outbox=outbox, clock=clock)
    patients = Patients(uow=uow, clock=clock, audit=audit)
    visits = Visits(uow=uow, clock=clock, audit=audit, messages=messages, zone=config.web.zone, live=live)
    alerts = SecurityAlerts(uow=uow, clock=clock, audit=audit)
    staff = StaffAccounts(uow=uow, clock=clock, audit=audit, alerts=alerts, policy=config.web, pepper=secret)
    # A separate `frontdesk bridge` (or another `serve`) hears about new messages through the hub.
    outbox.subscribe(lambda: live.publish("outbox", "enqueued", {}))
    kiosk = config.kiosk
    kiosks = KioskSessions(uow=uow, clock=clock, audit=audit, settings=kiosk)
    flags = StaffFlags(uow=uow, clock=clock, audit=audit, live=live)
    changes = PendingChanges(uow=uow, clock=clock, audit=audit, messages=messages, live=live)
    checkin = CheckIn(
        kiosks=kiosks, uow=uow, clock=clock, audit=audit, visits=visits, messages=messages, flags=flags,
        changes=changes, settings=kiosk, pepper=secret, live=live,
        library=load_library(Path(kiosk.questionnaires_dir) if kiosk.questionnaires_dir else None),
        consents=load_consents(Path(kiosk.consents_dir) if kiosk.consents_dir else None))
    return Services(
        uow=uow,
        clock=clock,
        audit=audit,
        audit_verifier=AuditVerifier(uow=uow),
        audit_reports=AuditReports(uow=uow, audit=audit, zone=config.web.zone),
        alerts=alerts,
        staff=staff,
        mfa=SecondFactors(uow=uow, clock=clock, audit=audit, staff=staff, secret=secret),
        devices=DevicePrincipals(uow=uow, clock=clock, audit=audit),
        patients=patients,
        outbox=outbox,
        visits=visits,
        board=Board(uow=uow, clock=clock, audit=audit, changes=changes, zone=config.web.zone),
        inbound=Inbound(uow=uow, clock=clock, audit=audit, patients=patients, visits=visits, zone=config.web.zone),
        vitals=Vitals(uow=uow, clock=clock, live=live, audit=audit, visits=visits, messages=messages),
        stations=Stations(uow=uow, clock=clock, live=live),
        health=Health(engine=engine, outbox=outbox,
                      backlog_alert=dt.timedelta(minutes=config.hl7.backlog_alert_minutes)),
        live=live,
        kiosks=kiosks,
        checkin=checkin,
        flags=flags,
        changes=changes,
        retention=Retention(uow=uow, clock=clock, audit=audit, keep_days=config.hl7.keep_days),
        api_tokens=ApiTokens(uow=uow, clock=clock, audit=audit),
    )
