"""The append-only audit trail (HIPAA 164.312(b))."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from server.models.base import Base
from server.models.base import UTCDateTime


class AuditEvent(Base):
    """Who did what to which patient's data, when and from where.

    Rows are only ever inserted: the application has no code path that updates
    or deletes them, and a database trigger (see the initial migration) refuses
    UPDATE and DELETE on both SQLite and PostgreSQL.

    ``seq`` numbers rows without gaps in commit order and ``chain_hash`` is
    SHA-256 over the previous row's hash and this row (see
    :mod:`server.audit_chain`), so a row altered, deleted or reordered by anyone
    who gets past the triggers is found by ``frontdesk audit verify``.
    """

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    patient_id: Mapped[int | None] = mapped_column(index=True)
    resource_type: Mapped[str] = mapped_column(String(32), default="")
    resource_id: Mapped[str] = mapped_column(String(64), default="")
    address: Mapped[str] = mapped_column(String(64), default="")
    correlation_id: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True, index=True)
    chain_hash: Mapped[str] = mapped_column(String(64), default="", server_default="")
