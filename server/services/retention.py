"""Retention of HL7 message copies: raw inbound messages and delivered outbound ones.

Both are copies of patient data whose purpose ends: the records system holds
the chart, and a copy kept only for tracing need not be kept for ever. After
``[hl7] keep_days`` they are deleted; 0 keeps everything. Outbound messages
are deleted only once **delivered**: pending, sending, dead-lettered and
discarded ones stay whatever their age, because they are still somebody's
work (or the record of a decision). Purging inbound messages also forgets
their control ids, so a sender re-sending a message older than ``keep_days``
gets it applied again, which is what the sender asked for.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy import func

from server.db import UnitOfWork
from server.models import InboundMessage
from server.models import OutboxMessage
from server.services.audit import AuditTrail
from server.services.context import SYSTEM
from server.services.context import Actor
from server.services.context import Clock

log = logging.getLogger("frontdesk.retention")

PURGE_INTERVAL = dt.timedelta(hours=6)


@dataclass(frozen=True)
class Purged:
    """How many messages one purge deleted."""

    inbound: int
    outbound: int


class Retention:
    """Deletes HL7 message copies older than ``keep_days`` (see the module docstring)."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail, keep_days: int) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit
        self.keep_days = keep_days

    def purge(self, *, actor: Actor = SYSTEM) -> Purged:
        """Delete what is past retention, in one audited transaction; nothing when ``keep_days`` is 0."""
        if not self.keep_days:
            return Purged(0, 0)
        cutoff = self.clock.now() - dt.timedelta(days=self.keep_days)
        with self.uow.begin() as session:
            inbound = session.execute(delete(InboundMessage).where(InboundMessage.received_at < cutoff))
            outbound = session.execute(delete(OutboxMessage).where(
                OutboxMessage.status == "sent",
                func.coalesce(OutboxMessage.sent_at, OutboxMessage.created_at) < cutoff))
            purged = Purged(int(getattr(inbound, "rowcount", 0)), int(getattr(outbound, "rowcount", 0)))
            self.audit.record(session, actor, "retention.purged", resource_type="hl7_message",
                              detail=f"inbound={purged.inbound} outbound={purged.outbound} "
                                     f"keep_days={self.keep_days}")
        return purged


class RetentionPart:
    """Runs :meth:`Retention.purge` in ``serve``: at start, then every :data:`PURGE_INTERVAL`."""

    name = "retention"

    def __init__(self, retention: Retention, *, interval: dt.timedelta = PURGE_INTERVAL) -> None:
        self.retention = retention
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                purged = self.retention.purge()
                log.info("retention.purged", extra={"count": purged.inbound + purged.outbound})
            except Exception:  # noqa: BLE001 - a failed purge is retried next interval; serving goes on
                log.exception("retention.failed")
            self._stop.wait(self.interval.total_seconds())
