"""Kiosk devices and kiosk sessions: enrolment, one server-side session per patient turn, and its end.

A kiosk browser is enrolled once with the code ``frontdesk kiosks add``
printed: the code is exchanged for a new random device secret (kept in a
long-lived HttpOnly cookie), so the printed code works once and the device
stays enrolled until an administrator revokes it.

Every kiosk request runs in one transaction opened by :meth:`KioskSessions.turn`:
it authenticates the device, resumes the patient's session and ends it when
it has been idle longer than the screen allowed plus the warning countdown,
so a kiosk whose browser lost its script still forgets the patient. Ending a
session (timeout, the patient, staff) drops everything it held; each end is
audited with its reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import threading
import typing as t
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.config import KioskConfig
from server.db import UnitOfWork
from server.models import KioskDevice
from server.models import KioskSession
from server.services.audit import AuditTrail
from server.services.context import Actor
from server.services.context import Clock
from server.services.staff import hash_token

GRACE = dt.timedelta(seconds=10)
"""Slack after the countdown before the server ends a session itself (the page's own reset comes first)."""

DEVICE_SEEN_RESOLUTION = dt.timedelta(minutes=1)
SESSION_SEEN_RESOLUTION = dt.timedelta(seconds=5)
"""A session's last activity is written at most this often: a page view that follows a form post
(post, redirect, page) then writes nothing, and the database commits once per step, not three times.
It must stay well below :data:`GRACE`, so the server never ends a session before the page's own
countdown has run out."""
LANGUAGES = ("en", "es")


class NotEnrolled(Exception):
    """The browser is not an enrolled kiosk (no device cookie, an unknown one, or a revoked one)."""


@dataclass(frozen=True)
class Credentials:
    """What a kiosk request carries: the device cookie, the session cookie and the caller's address."""

    device_token: str | None
    session_token: str | None
    address: str = ""


@dataclass
class Turn:
    """One kiosk request inside its transaction: the device, the live session (if any) and the actor."""

    session: Session
    device: KioskDevice
    kiosk_session: KioskSession | None
    actor: Actor
    now: dt.datetime

    @property
    def language(self) -> str:
        """The patient's language on this kiosk session (English without one)."""
        return self.kiosk_session.language if self.kiosk_session else "en"


@dataclass(frozen=True)
class KioskStatus:
    """A kiosk as staff see it: whether a patient is using it right now."""

    kiosk_id: int
    name: str
    location: str
    in_use: bool
    last_seen_at: dt.datetime | None


class KioskSessions:
    """Enrols kiosks and runs their sessions."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail, settings: KioskConfig) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit
        self.settings = settings
        self._after = threading.local()

    def enroll(self, code: str, address: str) -> str | None:
        """Exchange a one-time enrolment code for this kiosk's device secret; ``None`` for a bad code.

        The stored hash is replaced, so the printed code cannot enrol a second browser.
        """
        with self.uow.begin() as session:
            device = session.scalar(select(KioskDevice).where(KioskDevice.token_hash == hash_token(code.strip()),
                                                              KioskDevice.revoked_at.is_(None)))
            if device is None:
                self.audit.record(session, Actor("kiosk", "unknown", address=address), "kiosk.enroll",
                                  outcome="failure")
                return None
            secret = secrets.token_urlsafe(32)
            device.token_hash = hash_token(secret)
            device.last_seen_at = self.clock.now()
            self.audit.record(session, Actor("kiosk", device.name, address=address), "kiosk.enroll",
                              resource_type="kiosk", resource_id=device.id)
            return secret

    @contextlib.contextmanager
    def turn(self, credentials: Credentials, *, activity: bool = True) -> t.Iterator[Turn]:
        """Open the transaction of one kiosk request.

        :param activity: whether this request counts as the patient doing
            something (a status poll does not, so it never keeps a session alive).
        :raises NotEnrolled: when the device cookie is missing, unknown or revoked.
        """
        if not credentials.device_token:
            raise NotEnrolled()
        with self.uow.begin() as session:
            now = self.clock.now()
            device = session.scalar(select(KioskDevice).where(
                KioskDevice.token_hash == hash_token(credentials.device_token), KioskDevice.revoked_at.is_(None)))
            if device is None:
                raise NotEnrolled()
            if device.last_seen_at is None or now - device.last_seen_at >= DEVICE_SEEN_RESOLUTION:
                device.last_seen_at = now
            actor = Actor("kiosk", device.name, address=credentials.address)
            current = None
            if credentials.session_token:
                current = session.scalar(select(KioskSession).where(
                    KioskSession.token_hash == hash_token(credentials.session_token),
                    KioskSession.kiosk_id == device.id, KioskSession.ended_at.is_(None)))
            if current is not None and self._expired(current, now):
                self.end_in(session, current, "timeout", actor, now)
                current = None
            if current is not None and activity and now - current.last_seen_at >= SESSION_SEEN_RESOLUTION:
                current.last_seen_at = now
            turn = Turn(session, device, current, actor, now)
            yield turn
        row = turn.kiosk_session
        self._after.step = row.step if row is not None and row.ended_at is None else "welcome"

    def step_after_turn(self) -> str | None:
        """The step this thread's last committed turn left its session at (``welcome`` when none), once.

        A form post redirects straight to that page instead of through ``/kiosk/current``: one request
        and one transaction fewer for every step a patient takes.
        """
        step: str | None = getattr(self._after, "step", None)
        self._after.step = None
        return step

    def _expired(self, row: KioskSession, now: dt.datetime) -> bool:
        allowed = dt.timedelta(seconds=row.idle_seconds + self.settings.warning_seconds) + GRACE
        return now - row.last_seen_at > allowed

    def start_in(self, turn: Turn, mode: str) -> str:
        """Begin a new patient session on this kiosk (ending any earlier one of this browser); returns its token."""
        previous = turn.kiosk_session
        if previous is not None:
            self.end_in(turn.session, previous, "restarted", turn.actor, turn.now)
        token = secrets.token_urlsafe(32)
        row = KioskSession(token_hash=hash_token(token), kiosk_id=turn.device.id, mode=mode, step="identify",
                           language=turn.language, large_text=bool(previous and previous.large_text),
                           idle_seconds=self.settings.idle_seconds, draft={}, created_at=turn.now,
                           last_seen_at=turn.now)
        turn.session.add(row)
        turn.session.flush()
        turn.kiosk_session = row
        self.audit.record(turn.session, turn.actor, "kiosk.session_started", resource_type="kiosk_session",
                          resource_id=row.id, detail=f"mode={mode}")
        return token

    def welcome_in(self, turn: Turn) -> str:
        """A session for someone still on the welcome screen (they chose a language or large text)."""
        token = self.start_in(turn, "checkin")
        assert turn.kiosk_session is not None
        turn.kiosk_session.step = "welcome"
        return token

    def end_in(self, session: Session, row: KioskSession, reason: str, actor: Actor, now: dt.datetime) -> None:
        """End a session and drop what it held; audited as ``kiosk.<reason>``."""
        row.ended_at = now
        row.end_reason = reason
        row.draft = {}
        row.patient_id = None
        row.visit_id = None
        self.audit.record(session, actor, "kiosk.timeout" if reason == "timeout" else "kiosk.reset",
                          resource_type="kiosk_session", resource_id=row.id, detail=f"reason={reason}")

    def set_preferences(self, credentials: Credentials, *, language: str | None = None,
                        large_text: bool | None = None) -> str | None:
        """Change the language or text size of the current session (starting one on the welcome screen);
        returns a new session token when one was started."""
        with self.turn(credentials) as turn:
            token = None
            if turn.kiosk_session is None:
                token = self.welcome_in(turn)
            row = turn.kiosk_session
            assert row is not None
            if language in LANGUAGES:
                row.language = language
            if large_text is not None:
                row.large_text = large_text
            return token

    def reset(self, credentials: Credentials, reason: str) -> None:
        """End the current session: the patient finished or cancelled, or the page's idle countdown ran out."""
        with self.turn(credentials, activity=False) as turn:
            if turn.kiosk_session is not None:
                self.end_in(turn.session, turn.kiosk_session, reason, turn.actor, turn.now)

    def extend(self, credentials: Credentials) -> bool:
        """"I need more time": count as activity; ``False`` when the session has already ended."""
        with self.turn(credentials) as turn:
            return turn.kiosk_session is not None

    def alive(self, credentials: Credentials) -> bool:
        """Whether this browser's session still exists (a page polls this to notice a reset by staff)."""
        with self.turn(credentials, activity=False) as turn:
            return turn.kiosk_session is not None

    def force_reset(self, kiosk_id: int, *, actor: Actor) -> int:
        """Staff end whatever session a kiosk is running; returns how many were ended."""
        with self.uow.begin() as session:
            rows = session.scalars(select(KioskSession).where(KioskSession.kiosk_id == kiosk_id,
                                                              KioskSession.ended_at.is_(None))).all()
            for row in rows:
                self.end_in(session, row, "staff", actor, self.clock.now())
            return len(rows)

    def status(self) -> list[KioskStatus]:
        """Every active kiosk, and whether someone is using it."""
        with self.uow.begin() as session:
            in_use = set(session.scalars(select(KioskSession.kiosk_id).where(
                KioskSession.ended_at.is_(None), KioskSession.step != "welcome")).all())
            devices = session.scalars(select(KioskDevice).where(KioskDevice.revoked_at.is_(None))
                                      .order_by(KioskDevice.name)).all()
            return [KioskStatus(d.id, d.name, d.location, d.id in in_use, d.last_seen_at) for d in devices]
