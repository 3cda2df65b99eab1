"""Security state: sign-in throttles, staff-side security alerts, second factors, the audit chain head."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from server.models.base import Base
from server.models.base import UTCDateTime


class LoginThrottle(Base):
    """Failed sign-ins counted for one key: a (username, address) pair or an address.

    ``scope`` is ``pair`` or ``address``; ``key`` is an HMAC so that guessed
    usernames are not kept in clear. ``username_key`` (pairs only) lets an
    administrator unlock one user on every address. One row per key, changed
    under a row lock, so concurrent attempts count one by one.
    """

    __tablename__ = "login_throttle"

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    username_key: Mapped[str] = mapped_column(String(64), default="", index=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class SecurityAlert(Base):
    """Something staff should look at: a locked sign-in, a throttled address.

    Raised once per state change (not per attempt) and open until cleared by an
    administrator (an unlock clears the alerts it resolves).
    """

    __tablename__ = "security_alert"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str] = mapped_column(String(128))
    detail: Mapped[str] = mapped_column(Text, default="")
    raised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    cleared_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)


class StaffMfa(Base):
    """A staff user's TOTP second factor (RFC 6238).

    ``secret`` is encrypted with a key derived from the instance secret, so a
    copy of the database alone does not yield working codes. ``last_step`` is
    the last 30-second step accepted: a code is good once (replay protection).
    """

    __tablename__ = "staff_mfa"

    user_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(256))
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_step: Mapped[int] = mapped_column(default=0)


class MfaRecoveryCode(Base):
    """A single-use recovery code; only its SHA-256 is stored."""

    __tablename__ = "mfa_recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class AuditChainHead(Base):
    """The last link of the audit hash chain: one row, locked by every audit insert.

    Holding its row lock until commit gives the chain one order, the commit
    order, on PostgreSQL with many writers; SQLite's one writer gives it anyway.
    """

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(default=0)
    hash: Mapped[str] = mapped_column(String(64))
