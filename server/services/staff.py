"""Staff accounts, sign-in with throttling, and server-side sessions."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import typing as t
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError
from sqlalchemy import CursorResult
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from server.config import WebConfig
from server.db import UnitOfWork
from server.models import ROLES
from server.models import LoginFailure
from server.models import StaffSession
from server.models import StaffUser
from server.services.audit import AuditTrail
from server.services.context import SYSTEM
from server.services.context import Actor
from server.services.context import Clock

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD_LENGTH = 12
LAST_SEEN_RESOLUTION = dt.timedelta(seconds=15)


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
class StaffPrincipal:
    """A signed-in staff member, as the web layer sees them."""

    user_id: int
    username: str
    display_name: str
    role: str
    session_id: int

    def actor(self, address: str) -> Actor:
        """This principal as the actor of a service call."""
        return Actor("staff", str(self.user_id), role=self.role, address=address)


def hash_token(token: str) -> str:
    """SHA-256 of a random bearer token: enough for 256-bit secrets, and cheap per request."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class StaffAccounts:
    """Creates staff users, signs them in and keeps their sessions honest.

    Failed sign-ins are throttled per username and per address over a sliding
    window. The per-username key is an HMAC so the failure table holds no
    cleartext guesses. Every path, including a throttled or unknown user, runs
    one Argon2 verification so that response timing does not tell them apart.
    """

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail, policy: WebConfig,
                 pepper: str, hasher: PasswordHasher | None = None) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit
        self.policy = policy
        self._pepper = pepper.encode("utf-8")
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
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountError(f"password: must be at least {MIN_PASSWORD_LENGTH} characters")
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

        :raises SignInFailed: for any failure, throttling included.
        """
        now = self.clock.now()
        username_key = self._username_key(username)
        with self.uow.begin() as session:
            user = session.scalar(select(StaffUser).where(StaffUser.username == username.strip().lower()))
            throttled = self._throttled(session, username_key, address, now)
            verified = self._verify(user.password_hash if user else self._dummy_hash, password)
            if throttled or user is None or not user.active or not verified:
                session.add(LoginFailure(username_key=username_key, address=address, at=now))
                actor = Actor("staff", str(user.id) if user else "unknown", address=address)
                self.audit.record(session, actor, "auth.sign_in", outcome="failure",
                                  detail="throttled" if throttled else "bad_credentials")
                failed = True
            else:
                token = secrets.token_urlsafe(32)
                staff_session = StaffSession(token_hash=hash_token(token), user_id=user.id, created_at=now,
                                             last_seen_at=now, address=address)
                session.add(staff_session)
                session.flush()
                self.audit.record(session, Actor("staff", str(user.id), role=user.role, address=address),
                                  "auth.sign_in", resource_type="staff_session", resource_id=staff_session.id)
                if self._hasher.check_needs_rehash(user.password_hash):
                    user.password_hash = self._hasher.hash(password)
                failed = False
        if failed:
            raise SignInFailed()
        return token

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
            return StaffPrincipal(user.id, user.username, user.display_name, user.role, row.id)

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
            user = session.scalar(select(StaffUser).where(StaffUser.username == username.strip().lower()))
            if user is None:
                raise AccountError(f"username: no user called {username!r}")
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

    def _username_key(self, username: str) -> str:
        return hmac.new(self._pepper, username.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()

    def _throttled(self, session: Session, username_key: str, address: str, now: dt.datetime) -> bool:
        since = now - dt.timedelta(minutes=self.policy.login_window_minutes)
        session.execute(delete(LoginFailure).where(LoginFailure.at < since))
        by_user = session.scalar(select(func.count()).select_from(LoginFailure)
                                 .where(LoginFailure.username_key == username_key, LoginFailure.at >= since))
        by_address = session.scalar(select(func.count()).select_from(LoginFailure)
                                    .where(LoginFailure.address == address, LoginFailure.at >= since))
        return bool((by_user or 0) >= self.policy.login_max_failures_per_user
                    or (by_address or 0) >= self.policy.login_max_failures_per_address)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(password_hash, password))
        except (VerificationError, InvalidHashError):
            return False
