"""Staff accounts, sign-in with throttling, and server-side sessions."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import typing as t
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError
from sqlalchemy import CursorResult
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from server.config import WebConfig
from server.db import UnitOfWork
from server.models import ROLES
from server.models import StaffMfa
from server.models import StaffSession
from server.models import StaffUser
from server.services.alerts import SecurityAlerts
from server.services.audit import AuditTrail
from server.services.context import SYSTEM
from server.services.context import Actor
from server.services.context import Clock
from server.services.throttle import Attempt
from server.services.throttle import SignInThrottle

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD_LENGTH = 12
LAST_SEEN_RESOLUTION = dt.timedelta(seconds=15)
_SIGN_IN = Actor("system", "sign-in")


class AccountError(ValueError):
    """A staff account cannot be created as asked; the message says why."""


class SignInFailed(Exception):
    """Sign-in refused. Deliberately one type and one message for every cause.

    Unknown user, wrong password, disabled account and throttling all look the
    same to the caller, so the sign-in page cannot be used to find out which
    usernames exist (ASVS 6.3.8).
    """

    MESSAGE = "Sign-in failed. Check your username and password, or ask an administrator."

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


@dataclass(frozen=True)
class StaffListing:
    """One account as ``frontdesk users list`` shows it."""

    username: str
    display_name: str
    role: str
    active: bool
    second_factor: bool
    last_sign_in: dt.datetime | None
    user_id: int


@dataclass(frozen=True)
class SessionListing:
    """One open session of a staff user, as an administrator sees it (never its token)."""

    session_id: int
    created_at: dt.datetime
    last_seen_at: dt.datetime
    address: str


@dataclass(frozen=True)
class StaffPrincipal:
    """A signed-in staff member, as the web layer sees them."""

    user_id: int
    username: str
    display_name: str
    role: str
    session_id: int
    needs_second_factor: bool = False
    scopes: frozenset[str] | None = None
    """What an API token may read; ``None`` for a signed-in browser, which its role alone bounds."""

    def actor(self, address: str) -> Actor:
        """This principal as the actor of a service call."""
        return Actor("staff", str(self.user_id), role=self.role, address=address)


def _named(session: Session, username: str) -> StaffUser:
    """The account called ``username`` (any case, spaces around ignored).

    :raises AccountError: when no such user exists.
    """
    user = session.scalar(select(StaffUser).where(StaffUser.username == username.strip().lower()))
    if user is None:
        raise AccountError(f"username: no user called {username!r}")
    return user


def hash_token(token: str) -> str:
    """SHA-256 of a random bearer token: enough for 256-bit secrets, and cheap per request."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class StaffAccounts:
    """Creates staff users, signs them in and keeps their sessions honest.

    Failed sign-ins are throttled per (username, address) and per address
    (:mod:`server.services.throttle`). Every path, including a throttled or
    unknown user, runs one Argon2 verification so that response timing does
    not tell them apart.
    """

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail, alerts: SecurityAlerts,
                 policy: WebConfig, pepper: str, hasher: PasswordHasher | None = None) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit
        self.alerts = alerts
        self.policy = policy
        self.throttle = SignInThrottle(policy=policy, pepper=pepper.encode("utf-8"))
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    def add_user(self, username: str, role: str, password: str, *, display_name: str = "",
                 actor: Actor = SYSTEM) -> int:
        """Create a staff user and return its id.

        :raises AccountError: for a malformed username, an unknown role, a short
            password or a username that is taken.
        """
        username = username.strip().lower()
        if not USERNAME_RE.match(username):
            raise AccountError("username: 2-64 characters, lower-case letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise AccountError(f"role: must be one of {', '.join(ROLES)}, got {role!r}")
        self._check_password(password)
        with self.uow.begin() as session:
            if session.scalar(select(StaffUser.id).where(StaffUser.username == username)) is not None:
                raise AccountError(f"username: {username!r} is taken")
            user = StaffUser(username=username, role=role, display_name=display_name or username,
                             password_hash=self._hasher.hash(password), created_at=self.clock.now())
            session.add(user)
            session.flush()
            self.audit.record(session, actor, "staff.user_created", resource_type="staff_user",
                              resource_id=user.id, detail=f"role={role}")
            return user.id

    def sign_in(self, username: str, password: str, address: str) -> str:
        """Check the credentials and open a session; returns the cookie token.

        The attempt is counted first (:class:`SignInThrottle`), in a short
        transaction of its own, then the password is checked outside any lock,
        then the session is opened or the failure audited. A locked pair or a
        throttled address raises one staff alert per state change; the alert
        names the account only when it exists (a "username" typed by mistake
        is sometimes a password, and never goes on a board).

        :raises SignInFailed: for any failure, throttling included.
        """
        now = self.clock.now()
        name = username.strip().lower()
        with self.uow.begin() as session:
            attempt = self.throttle.reserve(session, name, address, now)
            user = session.scalar(select(StaffUser).where(StaffUser.username == name))
            stored_hash = user.password_hash if user else self._dummy_hash
            if attempt.pair_locked_now:
                subject = user.username if user else "(unknown username)"
                self.alerts.raise_in(session, "sign_in_locked", subject,
                                     f"repeated failed sign-ins for {subject} from {address}", actor=_SIGN_IN)
        verified = self._verify(stored_hash, password)
        with self.uow.begin() as session:
            if attempt.throttled or user is None or not user.active or not verified:
                actor = Actor("staff", str(user.id) if user else "unknown", address=address)
                self.audit.record(session, actor, "auth.sign_in", outcome="failure",
                                  detail="throttled" if attempt.throttled else "bad_credentials")
                if not attempt.throttled:
                    self.record_failure(session, attempt, address)
                failed = True
            else:
                self.throttle.give_back(session, attempt)
                token = secrets.token_urlsafe(32)
                staff_session = StaffSession(token_hash=hash_token(token), user_id=user.id, created_at=now,
                                             last_seen_at=now, address=address)
                session.add(staff_session)
                session.flush()
                self.audit.record(session, Actor("staff", str(user.id), role=user.role, address=address),
                                  "auth.sign_in", resource_type="staff_session", resource_id=staff_session.id)
                if self._hasher.check_needs_rehash(user.password_hash):
                    session.execute(update(StaffUser).where(StaffUser.id == user.id)
                                    .values(password_hash=self._hasher.hash(password)))
                failed = False
        if failed:
            raise SignInFailed()
        return token

    def record_failure(self, session: Session, attempt: Attempt, address: str) -> None:
        """Count a failed password or code against the address, and tell staff when that starts slowing it."""
        if self.throttle.record_failure(session, attempt, self.clock.now()):
            self.alerts.raise_in(session, "address_throttled", address,
                                 f"many failed sign-ins from {address}: every sign-in there is slowed",
                                 actor=_SIGN_IN)

    def resume(self, token: str, address: str) -> StaffPrincipal | None:
        """The principal behind a session cookie, or ``None`` when it is unknown, revoked or expired.

        An idle or too-old session is revoked here, so it cannot come back even
        if the limits were raised later.
        """
        now = self.clock.now()
        with self.uow.begin() as session:
            row = session.scalar(select(StaffSession).where(StaffSession.token_hash == hash_token(token)))
            if row is None or row.revoked_at is not None:
                return None
            idle = now - row.last_seen_at > dt.timedelta(minutes=self.policy.idle_timeout_minutes)
            too_old = now - row.created_at > dt.timedelta(hours=self.policy.absolute_timeout_hours)
            if idle or too_old or not row.user.active:
                row.revoked_at = now
                self.audit.record(session, Actor("staff", str(row.user_id), address=address),
                                  "auth.session_expired", resource_type="staff_session", resource_id=row.id,
                                  detail="idle" if idle else "absolute" if too_old else "user_disabled")
                return None
            if now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
                row.last_seen_at = now
            user = row.user
            pending = row.second_factor_at is None and (
                user.role in self.policy.mfa_roles
                or session.scalar(select(StaffMfa.confirmed_at).where(StaffMfa.user_id == user.id)) is not None)
            return StaffPrincipal(user.id, user.username, user.display_name, user.role, row.id, pending)

    def sign_out(self, token: str, address: str) -> None:
        """Revoke the session behind ``token`` (idempotent)."""
        with self.uow.begin() as session:
            row = session.scalar(select(StaffSession).where(StaffSession.token_hash == hash_token(token)))
            if row is None or row.revoked_at is not None:
                return
            row.revoked_at = self.clock.now()
            self.audit.record(session, Actor("staff", str(row.user_id), address=address), "auth.sign_out",
                              resource_type="staff_session", resource_id=row.id)

    def disable(self, username: str, *, actor: Actor = SYSTEM) -> int:
        """Disable an account and end its open sessions at once (ASVS 7.4.2); returns how many were ended.

        :raises AccountError: when no such user exists.
        """
        with self.uow.begin() as session:
            user = _named(session, username)
            user.active = False
            self.audit.record(session, actor, "staff.user_disabled", resource_type="staff_user", resource_id=user.id)
            user_id = user.id
        return self.revoke_sessions(user_id, actor=actor)

    def revoke_sessions(self, user_id: int, *, actor: Actor) -> int:
        """End every open session of a user (disabling an account, a lost badge); returns how many."""
        with self.uow.begin() as session:
            result = t.cast(CursorResult[t.Any], session.execute(
                update(StaffSession)
                .where(StaffSession.user_id == user_id, StaffSession.revoked_at.is_(None))
                .values(revoked_at=self.clock.now())))
            self.audit.record(session, actor, "staff.sessions_revoked", resource_type="staff_user",
                              resource_id=user_id, detail=f"count={result.rowcount}")
            return int(result.rowcount)

    def unlock(self, username: str, *, actor: Actor = SYSTEM) -> int:
        """Forget a user's failed sign-ins from every address and clear the alert; returns how many were forgotten.

        :raises AccountError: when no such user exists.
        """
        name = username.strip().lower()
        with self.uow.begin() as session:
            user = _named(session, name)
            forgotten = self.throttle.unlock_user(session, name)
            self.alerts.clear_in(session, "sign_in_locked", name, actor=actor)
            self.audit.record(session, actor, "staff.user_unlocked", resource_type="staff_user", resource_id=user.id,
                              detail=f"count={forgotten}")
            return forgotten

    def unlock_address(self, address: str, *, actor: Actor = SYSTEM) -> int:
        """End the slow-down of an address (after finding the cause) and clear its alert."""
        with self.uow.begin() as session:
            forgotten = self.throttle.unlock_address(session, address)
            self.alerts.clear_in(session, "address_throttled", address, actor=actor)
            self.audit.record(session, actor, "staff.address_unlocked", detail=f"count={forgotten}")
            return forgotten

    def set_password(self, username: str, password: str, *, actor: Actor = SYSTEM) -> None:
        """Give a user a new password (administrator or CLI) and end their sessions.

        :raises AccountError: for an unknown user or a short password.
        """
        self._check_password(password)
        with self.uow.begin() as session:
            user = _named(session, username)
            user.password_hash = self._hasher.hash(password)
            self.audit.record(session, actor, "staff.password_changed", resource_type="staff_user",
                              resource_id=user.id)
            user_id = user.id
        self.revoke_sessions(user_id, actor=actor)

    def change_own_password(self, principal: StaffPrincipal, current: str, new: str, *, address: str) -> None:
        """A signed-in user changes their password; their other sessions end, this one stays.

        :raises AccountError: when the current password is wrong or the new one too short.
        """
        self._check_password(new)
        actor = principal.actor(address)
        with self.uow.begin() as session:
            user = session.get(StaffUser, principal.user_id, with_for_update=True)
            if user is None or not self._verify(user.password_hash, current):
                self.audit.record(session, actor, "staff.password_changed", outcome="failure",
                                  resource_type="staff_user", resource_id=principal.user_id)
                failed = True
            else:
                user.password_hash = self._hasher.hash(new)
                session.execute(update(StaffSession).where(
                    StaffSession.user_id == user.id, StaffSession.revoked_at.is_(None),
                    StaffSession.id != principal.session_id).values(revoked_at=self.clock.now()))
                self.audit.record(session, actor, "staff.password_changed", resource_type="staff_user",
                                  resource_id=user.id)
                failed = False
        if failed:
            raise AccountError("current password: not correct")

    def list_users(self) -> list[StaffListing]:
        """Every staff account with its role, state, second factor and last sign-in."""
        with self.uow.begin() as session:
            last = (select(StaffSession.user_id, func.max(StaffSession.created_at).label("last"))
                    .group_by(StaffSession.user_id).subquery())
            rows = session.execute(
                select(StaffUser, last.c.last, StaffMfa.confirmed_at)
                .outerjoin(last, last.c.user_id == StaffUser.id)
                .outerjoin(StaffMfa, StaffMfa.user_id == StaffUser.id)
                .order_by(StaffUser.username)).all()
            return [StaffListing(u.username, u.display_name, u.role, u.active, confirmed is not None, last_at, u.id)
                    for u, last_at, confirmed in rows]

    def user(self, user_id: int) -> StaffListing:
        """One account by id.

        :raises AccountError: when no such user exists.
        """
        found = [u for u in self.list_users() if u.user_id == user_id]
        if not found:
            raise AccountError(f"user: no user with id {user_id}")
        return found[0]

    def enable(self, username: str, *, actor: Actor = SYSTEM) -> None:
        """Let a disabled account sign in again (its old sessions stay ended).

        :raises AccountError: when no such user exists.
        """
        with self.uow.begin() as session:
            user = _named(session, username)
            user.active = True
            self.audit.record(session, actor, "staff.user_enabled", resource_type="staff_user", resource_id=user.id)

    def open_sessions(self, user_id: int) -> list[SessionListing]:
        """A user's sessions that are not revoked, newest first (an idle or old one ends at its next use)."""
        with self.uow.begin() as session:
            rows = session.scalars(select(StaffSession).where(
                StaffSession.user_id == user_id, StaffSession.revoked_at.is_(None))
                .order_by(StaffSession.created_at.desc(), StaffSession.id.desc())).all()
            return [SessionListing(r.id, r.created_at, r.last_seen_at, r.address) for r in rows]

    def end_session(self, user_id: int, session_id: int, *, actor: Actor) -> bool:
        """End one of a user's sessions (a browser left signed in elsewhere); ``False`` when it is not open."""
        with self.uow.begin() as session:
            row = session.get(StaffSession, session_id)
            if row is None or row.user_id != user_id or row.revoked_at is not None:
                return False
            row.revoked_at = self.clock.now()
            self.audit.record(session, actor, "staff.session_ended", resource_type="staff_session",
                              resource_id=row.id, detail=f"user={user_id}")
            return True

    def _check_password(self, password: str) -> None:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountError(f"password: must be at least {MIN_PASSWORD_LENGTH} characters")

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(password_hash, password))
        except (VerificationError, InvalidHashError):
            return False
