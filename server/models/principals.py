"""Who may act: staff users with their server-side sessions, and kiosk devices."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint
from sqlalchemy import ForeignKey
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from server.config import STAFF_ROLES
from server.models.base import Base
from server.models.base import DeviceCredential
from server.models.base import UTCDateTime

ROLES = STAFF_ROLES


class StaffUser(Base):
    """One person on staff; logins are never shared (HIPAA 164.312(a)(2)(i))."""

    __tablename__ = "staff_user"
    __table_args__ = (CheckConstraint("role IN ('front_desk', 'assistant', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class StaffSession(Base):
    """A signed-in browser; the cookie carries a random token and only its SHA-256 is stored.

    Server-side so that logout, idle timeout and an admin's revocation really end
    access (ASVS 7.4.1), which a signed client-side cookie cannot do.
    """

    __tablename__ = "staff_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    address: Mapped[str] = mapped_column(String(64), default="")
    second_factor_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[StaffUser] = relationship()


class KioskDevice(DeviceCredential, Base):
    """A check-in kiosk: a device principal with a hashed, revocable secret."""

    __tablename__ = "kiosk_device"

    location: Mapped[str] = mapped_column(String(128), default="")


class ApiToken(Base):
    """A bearer token for the JSON API, issued to one staff user with the scopes it may read.

    The token acts as its user: a disabled user's tokens stop working, and the
    user's role still bounds what any scope reaches. Only its SHA-256 is stored.
    """

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[StaffUser] = relationship()
