"""HL7 messages in flight: the outbox we deliver from and the inbound log we answer from."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint
from sqlalchemy import Index
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from server.models.base import Base
from server.models.base import UTCDateTime

OUTBOX_STATES = ("pending", "sending", "sent", "dead", "discarded")


class OutboxMessage(Base):
    """One HL7 message to deliver, written in the transaction of the change it reports.

    ``control_id`` (MSH-10) is fixed here and never regenerated, so a receiver can
    de-duplicate retries. ``ordering_key`` (the patient) gives FIFO per patient:
    a row is claimable only when no older row of its key is pending, sending or
    dead. ``sha256`` of ``payload`` lets anyone check the bytes were not altered.
    """

    __tablename__ = "outbox_message"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sending', 'sent', 'dead', 'discarded')", name="status"),
        Index("ix_outbox_message_status_next", "status", "next_attempt_at"),
        Index("ix_outbox_message_key_id", "ordering_key", "id"),
        # The claim's "is an older message of this patient undelivered?" probe; sent rows stay out of it.
        Index("ix_outbox_message_undelivered_key", "ordering_key", "id",
              postgresql_where=text("status IN ('pending', 'sending', 'dead')"),
              sqlite_where=text("status IN ('pending', 'sending', 'dead')")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    control_id: Mapped[str] = mapped_column(String(64), unique=True)
    message_type: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(64), default="default")
    ordering_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    # The receiver's own retryable rejections (AR/CE): only these count toward a dead letter.
    rejections: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str] = mapped_column(Text, default="")
    ack: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class InboundMessage(Base):
    """Every message received, raw, with its outcome and the ACK we answered.

    The unique key on sender and MSH-10 is how a repeated message gets the same
    ACK and changes nothing; messages we rejected are kept here for review.
    """

    __tablename__ = "inbound_message"
    __table_args__ = (UniqueConstraint("sending_application", "sending_facility", "control_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sending_application: Mapped[str] = mapped_column(String(128))
    sending_facility: Mapped[str] = mapped_column(String(128))
    control_id: Mapped[str] = mapped_column(String(64))
    message_type: Mapped[str] = mapped_column(String(32))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    outcome: Mapped[str] = mapped_column(String(2))
    error: Mapped[str] = mapped_column(Text, default="")
    ack: Mapped[bytes] = mapped_column(LargeBinary)
    peer: Mapped[str] = mapped_column(String(128), default="")
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


class ServiceLease(Base):
    """A named lease that at most one process holds at a time (until ``expires_at``).

    On SQLite only one outbox dispatcher may run: the database has no row locks
    to share the work safely, so the dispatcher holds ``outbox-dispatcher`` and
    renews it while it works (see :mod:`server.services.outbox`). A crashed
    holder's lease simply expires.
    """

    __tablename__ = "service_lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
