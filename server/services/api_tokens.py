"""Bearer tokens for the JSON API, issued to staff users with the scopes they may read.

A script or a reporting tool reads visits or the outbox with a token instead of
a browser session. The token acts as its user: the user's role still bounds each
call, a disabled user's tokens stop at once, and every read of patient data is
audited under that user like a page view. Gateways have their own tokens
(:mod:`server.services.devices`).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from server.db import UnitOfWork
from server.models import ApiToken
from server.models import StaffUser
from server.services.audit import AuditTrail
from server.services.context import SYSTEM
from server.services.context import Actor
from server.services.context import Clock
from server.services.staff import USERNAME_RE
from server.services.staff import AccountError
from server.services.staff import StaffPrincipal
from server.services.staff import hash_token

SCOPES = ("visits", "patients", "observations", "flags", "outbox", "inbound", "devices")
"""What a staff token may read, one scope per API resource."""

LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class TokenListing:
    """One token as ``frontdesk tokens list`` shows it (never the token itself)."""

    id: int
    username: str
    name: str
    scopes: tuple[str, ...]
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiTokens:
    """Issues, checks and revokes staff API tokens; shown once, stored as SHA-256."""

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit

    def issue(self, username: str, name: str, scopes: tuple[str, ...], *, actor: Actor = SYSTEM) -> str:
        """Issue a token for an active user and return it (the only time it is seen).

        :raises AccountError: for an unknown or disabled user, a malformed name, or an unknown scope.
        """
        unknown = sorted(set(scopes) - set(SCOPES))
        if not scopes or unknown:
            raise AccountError(f"scope: choose one or more of {', '.join(SCOPES)}"
                               + (f" (not {', '.join(unknown)})" if unknown else ""))
        name = name.strip().lower()
        if not USERNAME_RE.match(name):
            raise AccountError("name: 2-64 characters, lower-case letters, digits, '.', '_' or '-'")
        token = secrets.token_urlsafe(32)
        with self.uow.begin() as session:
            user = session.scalar(select(StaffUser).where(StaffUser.username == username.strip().lower()))
            if user is None or not user.active:
                raise AccountError(f"username: no active user {username!r}")
            row = ApiToken(user_id=user.id, name=name, token_hash=hash_token(token),
                           scopes=" ".join(s for s in SCOPES if s in scopes), created_at=self.clock.now())
            session.add(row)
            session.flush()
            self.audit.record(session, actor, "api_token.issued", resource_type="api_token", resource_id=row.id,
                              detail=f"user={user.username} scopes={row.scopes}")
        return token

    def authenticate(self, token: str) -> StaffPrincipal | None:
        """The staff principal behind a token, or ``None`` for an unknown or revoked one or a disabled user."""
        now = self.clock.now()
        with self.uow.begin() as session:
            row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
            if row is None or row.revoked_at is not None or not row.user.active:
                return None
            if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
                row.last_used_at = now
            user = row.user
            return StaffPrincipal(user.id, user.username, user.display_name, user.role, 0,
                                  scopes=frozenset(row.scopes.split()))

    def list(self) -> list[TokenListing]:
        """Every token, revoked ones included, newest first."""
        with self.uow.begin() as session:
            rows = session.execute(select(ApiToken, StaffUser.username).join(StaffUser)
                                   .order_by(ApiToken.id.desc())).all()
            return [TokenListing(row.id, username, row.name, tuple(row.scopes.split()), row.created_at,
                                 row.last_used_at, row.revoked_at) for row, username in rows]

    def revoke(self, token_id: int, *, actor: Actor = SYSTEM) -> bool:
        """Revoke a token by its id; ``False`` when there is no such active token."""
        with self.uow.begin() as session:
            row = session.get(ApiToken, token_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = self.clock.now()
            self.audit.record(session, actor, "api_token.revoked", resource_type="api_token", resource_id=row.id)
            return True
