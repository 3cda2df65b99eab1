"""The outbox dispatcher: deliver stored HL7 messages at least once, in order per patient.

The service layer writes each outbound message into the outbox in the same
transaction as the change it reports, with its MSH-10 fixed for good. This loop
claims due messages from an :class:`OutboxRepository`, sends each over MLLP,
and records what the receiver's ACK means:

=========================================  ==============================================
``AA`` / ``CA`` (MSA-2 = our MSH-10)       delivered (:meth:`OutboxRepository.mark_sent`)
no connection, TLS refused, ACK timeout,   retry with the same MSH-10 at a capped
connection lost, unreadable or stray ACK   exponential backoff with jitter, for as long
                                           as it takes: never a dead letter
``AR`` / ``CE`` (the receiver's own        retry the same way, counted; after
rejection, retryable)                      ``max_attempts`` of them a dead letter
``AE`` / ``CR``                            dead letter with the receiver's ERR text
=========================================  ==============================================

Why transport failures never dead-letter: they say the receiver could not be
reached, nothing about the message. Counted against a cap, an hour's outage or
an expired certificate would dead-letter every queued message, each holding
its patient until staff retried it by hand. Waiting is what an outage needs;
the backlog and its age are what staff watch and what alerts.

Logs follow the receiver's state, not each message: the first transport
failure of a connection is a warning (``hl7.destination_failed``, with peer and
reason), from the third in a row they are errors, and the first success after
failures logs ``hl7.destination_recovered`` once.

Ordering and blocking are the repository's job, because only the database can
enforce them across restarts and (on PostgreSQL) across dispatchers: it hands
out only the oldest undelivered message of each ordering key (patient), never
one behind a dead letter, so one patient's stuck message holds back that
patient alone.

Crash safety comes from the lease: a claimed message is ``sending`` until
``now + lease_seconds``; if the process dies mid-send, the lease expires and
the message is claimed again (at-least-once; the receiver de-duplicates by
MSH-10). Nothing here is held across a send except the claim itself. A batch
never outlives its lease: a send that could not finish before the lease ends is
not started, and the rest of the batch is handed back unsent.

Deliveries of a batch are recorded together, in one transaction, when the
batch ends: the items have distinct ordering keys, so no patient's next message
waits on it, and one commit per batch instead of one per message is what lets
a backlog drain at the receiver's pace. A crash before that commit means the
batch's messages are sent again, which MSH-10 de-duplication absorbs.

Several connections: one connection waits for each ACK, so the receiver's
round trip caps a single connection's rate. Given several senders (connections
to the same receiver), the dispatcher shares every batch out between them by
ordering key (a hash of the patient), and each connection delivers its share
in order while the others deliver theirs. Per-patient order needs nothing more:
a batch holds at most one message per patient, and a patient's next message is
not claimable until this one is settled. A patient always lands on the same
connection, so a receiver that reads its connections one by one still sees
each patient's messages in order.

Time and randomness are injected (``clock``, ``rng``) so every rule above can be
tested with a fixed clock and a fixed jitter.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import typing as t
import zlib
from collections.abc import Callable
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hl7.ack import DEFAULT_POLICY
from hl7.ack import AckPolicy
from hl7.ack import Outcome
from hl7.ack import classify
from hl7.ack import parse_ack
from hl7.client import ConnectFailed
from hl7.client import TransportError
from hl7.er7 import CharsetError
from hl7.er7 import ParseError
from hl7.retry import DEFAULT_RETRY_POLICY
from hl7.retry import RandomSource
from hl7.retry import RetryPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboundItem:
    """One claimed outbox message.

    :param id: the outbox row id.
    :param control_id: MSH-10 of ``payload``, fixed when the row was written.
    :param ordering_key: messages with the same key are delivered in id order
        (the patient id for ADT and ORU).
    :param payload: the complete ER7 message, exactly as it will be sent.
    :param attempts: delivery attempts including the one this claim starts.
    :param rejections: how many times the receiver answered ``AR``/``CE`` before this attempt.

    Do not subclass: repositories build these and the dispatcher relies on the exact shape.
    """

    id: int
    control_id: str
    ordering_key: str
    payload: bytes
    attempts: int
    rejections: int = 0


class OutboxRepository(t.Protocol):
    """The storage the dispatcher needs; ``server/`` implements it for SQLite and PostgreSQL.

    Times are aware UTC datetimes taken from the dispatcher's clock.
    """

    def claim_next(self, now: dt.datetime, lease_seconds: float, limit: int) -> list[OutboundItem]:
        """Claim up to ``limit`` due messages and return them.

        Due: ``pending`` with ``next_attempt_at <= now``, or ``sending`` with an
        expired lease (a dispatcher died mid-send). Only the oldest undelivered
        message of each ordering key is eligible, and none of a key whose oldest
        undelivered message is dead, so the returned items have distinct keys.
        Claiming sets ``sending``, ``lease_until = now + lease_seconds`` and
        increments ``attempts`` in one transaction.
        """
        ...

    def mark_sent(self, acks: t.Sequence[tuple[int, bytes]], now: dt.datetime) -> None:
        """Record deliveries with the ACK that confirmed each, in one transaction; their keys' next
        messages become eligible."""
        ...

    def mark_unsent(self, ids: t.Sequence[int], now: dt.datetime) -> None:
        """Hand back claimed messages that were not sent: due again at once, the claim's attempt not counted."""
        ...

    def mark_retry(self, id: int, reason: str, next_attempt_at: dt.datetime, *, rejected: bool = False) -> None:
        """Back to ``pending`` until ``next_attempt_at``, keeping MSH-10 and payload unchanged.

        :param rejected: the receiver itself rejected the message (``AR``/``CE``): count one rejection.
        """
        ...

    def mark_dead(self, id: int, reason: str) -> None:
        """Dead letter: hold this key until staff retry or discard it.

        A staff retry (outside the dispatcher) makes the row ``pending`` again
        with ``attempts`` and ``rejections`` reset, so the cap applies afresh rather than
        dead-lettering the message on its first new failure.
        """
        ...


class Sender(t.Protocol):
    """What the dispatcher needs from a transport; :class:`hl7.client.MLLPClient` is the real one."""

    connect_timeout: float
    ack_timeout: float
    host: str
    port: int

    def send(self, message: bytes, control_id: str) -> bytes:
        """Return the ACK whose MSA-2 is ``control_id``, or raise :class:`~hl7.client.TransportError`."""
        ...

    def close(self) -> None: ...


DeadLetterHook = Callable[[OutboundItem, str], None]


@dataclass(frozen=True, slots=True)
class Delivery:
    """What happened to one claimed item in a dispatch step (for logs, metrics and tests)."""

    item_id: int
    control_id: str
    outcome: Outcome
    reason: str


_Lane = tuple[list[Delivery], list[tuple[int, bytes]]]
"""What one connection did with its share of a batch: every item's fate, and the ACKs of those delivered."""


class Dispatcher:
    """Claims due outbox messages and delivers them through one or more senders.

    :param repository: the outbox.
    :param sender: the MLLP client for the receiver, or several (one per
        connection; see the module docstring).
    :param clock: returns the current aware UTC time.
    :param rng: jitter source for the retry delay.
    :param retry: backoff and attempt cap.
    :param ack_policy: per-receiver meaning of ACK codes.
    :param batch_size: messages claimed per step for each sender (one per ordering key): with several
        connections each still gets a batch's worth of work per step.
    :param lease_seconds: how long a claim lasts; at least one send (connect +
        ACK timeout) must fit. The default, twice that, bounds how long a crashed
        dispatcher's messages wait before another takes them.
    :param on_dead: called once when a message becomes a dead letter (alerting),
        never per attempt.
    """

    def __init__(
        self,
        repository: OutboxRepository,
        sender: Sender | Sequence[Sender],
        *,
        clock: Callable[[], dt.datetime],
        rng: RandomSource,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        ack_policy: AckPolicy = DEFAULT_POLICY,
        batch_size: int = 50,
        lease_seconds: float | None = None,
        on_dead: DeadLetterHook | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.senders: tuple[Sender, ...] = tuple(sender) if isinstance(sender, Sequence) else (sender,)
        if not self.senders:
            raise ValueError("a dispatcher needs at least one sender")
        one_send = max(s.connect_timeout + s.ack_timeout for s in self.senders)
        if lease_seconds is None:
            lease_seconds = 2 * one_send
        if lease_seconds <= one_send:
            raise ValueError(f"lease_seconds ({lease_seconds}) must exceed connect + ACK timeout = {one_send}")
        self.repository = repository
        self.sender = self.senders[0]
        self.clock = clock
        self.rng = rng
        self.retry = retry
        self.ack_policy = ack_policy
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.on_dead = on_dead
        self._send_budget = dt.timedelta(seconds=lease_seconds - one_send)
        self._health = ReceiverHealth()
        self._wake = threading.Event()
        self._pool = ThreadPoolExecutor(len(self.senders) - 1, "hl7-dispatch") if len(self.senders) > 1 else None

    def dispatch_once(self) -> list[Delivery]:
        """Claim one batch and settle every item in it; returns what happened to each.

        With several senders the batch is shared out between them by ordering
        key and delivered on all of them at once. A connection failure means
        the receiver is unreachable on that connection, so the rest of its
        share is not tried: each is scheduled for retry with the same backoff
        instead of waiting out its own connect timeout.
        """
        claimed_at = self.clock()
        items = self.repository.claim_next(claimed_at, self.lease_seconds, self.batch_size * len(self.senders))
        if not items:
            return []
        shares: list[list[OutboundItem]] = [[] for _ in self.senders]
        for item in items:
            shares[zlib.crc32(item.ordering_key.encode()) % len(shares)].append(item)
        lanes: list[_Lane] = []
        try:
            if self._pool is None:
                lanes.append(self._deliver_share(self.sender, items, claimed_at))
            else:
                futures = [self._pool.submit(self._deliver_share, sender, share, claimed_at)
                           for sender, share in zip(self.senders[1:], shares[1:], strict=True) if share]
                lanes.append(self._deliver_share(self.sender, shares[0], claimed_at))
                lanes.extend(future.result() for future in futures)
        finally:
            acks = [ack for _, lane_acks in lanes for ack in lane_acks]
            if acks:
                self.repository.mark_sent(acks, self.clock())
                log.info("hl7.batch_delivered", extra={"count": len(acks)})
        return [delivery for deliveries, _ in lanes for delivery in deliveries]

    def _deliver_share(self, sender: Sender, items: list[OutboundItem], claimed_at: dt.datetime) -> _Lane:
        """Deliver one connection's share of a batch, in order; deliveries are recorded by the caller."""
        deliveries: list[Delivery] = []
        acks: list[tuple[int, bytes]] = []
        unreachable: str | None = None
        for index, item in enumerate(items):
            if unreachable is not None:
                deliveries.append(self._retry(item, f"not sent, receiver unreachable: {unreachable}"))
                continue
            if self.clock() - claimed_at > self._send_budget:
                self.repository.mark_unsent([i.id for i in items[index:]], self.clock())
                break
            try:
                delivery, ack = self._deliver(sender, item)
            except ConnectFailed as exc:
                unreachable = str(exc)
                self._health.failed(sender, unreachable)
                deliveries.append(self._retry(item, unreachable))
                continue
            deliveries.append(delivery)
            if ack is not None:
                acks.append((item.id, ack))
        return deliveries, acks

    def wake(self) -> None:
        """Cut short the wait of :meth:`run`: something was just enqueued."""
        self._wake.set()

    def run(self, stop: threading.Event, *, poll_interval: float = 1.0) -> None:
        """Dispatch until ``stop`` is set, waiting up to ``poll_interval`` seconds whenever nothing was due.

        :meth:`wake` ends a wait early, so a message enqueued in this process is
        sent at once; polling remains for messages written by other processes.
        Set ``stop`` and then call :meth:`wake` to stop without waiting out the poll.
        A failing step (the database briefly unavailable, say) is logged and
        retried on the next poll rather than ending the loop: the outbox keeps
        every message, so waiting loses nothing.
        """
        try:
            while not stop.is_set():
                try:
                    busy = bool(self.dispatch_once())
                except Exception:
                    log.exception("hl7.dispatch_step_failed", extra={"delay_seconds": poll_interval})
                    busy = False
                if not busy:
                    self._wake.wait(poll_interval)
                    self._wake.clear()
        finally:
            self.close()

    def close(self) -> None:
        """Close every connection and stop the connection threads."""
        for sender in self.senders:
            sender.close()
        if self._pool is not None:
            self._pool.shutdown()

    def _deliver(self, sender: Sender, item: OutboundItem) -> tuple[Delivery, bytes | None]:
        """Send one item and decide; returns the ACK to record when it was delivered.

        Retries and dead letters are recorded here at once; deliveries are
        recorded by the caller with the rest of the batch.
        :class:`ConnectFailed` propagates so the batch can stop.
        """
        try:
            ack_bytes = sender.send(item.payload, item.control_id)
        except ConnectFailed:
            raise
        except TransportError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self._health.failed(sender, reason)
            return self._retry(item, reason), None
        except ValueError as exc:
            return self._dead(item, f"message cannot be framed: {exc}"), None
        self._health.answered(sender)
        try:
            ack = parse_ack(ack_bytes)
        except (ParseError, CharsetError) as exc:
            return self._retry(item, f"unreadable ACK: {exc}"), None
        decision = classify(ack, item.control_id, self.ack_policy)
        if decision.outcome is Outcome.DELIVERED:
            log.debug("hl7.delivered", extra={"control_id": item.control_id, "outcome": ack.code})
            return Delivery(item.id, item.control_id, Outcome.DELIVERED, decision.reason), ack_bytes
        # The receiver's ERR text is stored for staff but kept out of the log: it may quote patient data.
        if decision.outcome is Outcome.DEAD_LETTER:
            return self._dead(item, decision.reason, ack.code), None
        return self._retry(item, decision.reason, ack.code, rejected=decision.outcome is Outcome.RETRY), None

    def _retry(self, item: OutboundItem, reason: str, code: str | None = None, *, rejected: bool = False) -> Delivery:
        """Schedule another attempt; only the receiver's own rejections count toward a dead letter."""
        if rejected and self.retry.exhausted(item.rejections + 1):
            return self._dead(item, f"rejected {item.rejections + 1} times; last: {reason}", code)
        delay = self.retry.delay(item.attempts, self.rng)
        self.repository.mark_retry(item.id, reason, self.clock() + dt.timedelta(seconds=delay), rejected=rejected)
        log.info("hl7.retry_scheduled", extra={"control_id": item.control_id, "attempts": item.attempts,
                                               "delay_seconds": round(delay, 1),
                                               "outcome": code or "no answer", "reason": None if code else reason})
        return Delivery(item.id, item.control_id, Outcome.RETRY, reason)

    def _dead(self, item: OutboundItem, reason: str, code: str | None = None) -> Delivery:
        self.repository.mark_dead(item.id, reason)
        log.error("hl7.dead_letter", extra={"control_id": item.control_id, "attempts": item.attempts,
                                            "outcome": code, "reason": None if code else reason})
        if self.on_dead is not None:
            self.on_dead(item, reason)
        return Delivery(item.id, item.control_id, Outcome.DEAD_LETTER, reason)


REPEATED_FAILURES = 3
"""Consecutive transport failures of one connection from which each is logged as an error, not a warning."""


class ReceiverHealth:
    """Logs a connection's transport failures and its recovery by state, not by message.

    The first failure is a warning naming the peer and the reason; from the
    :data:`REPEATED_FAILURES`-th in a row each is an error (an outage, not a
    blip); the first answer after failures logs ``hl7.destination_recovered``
    once. Thread-safe: each connection of a dispatcher reports from its own thread.
    """

    def __init__(self) -> None:
        self._failures: dict[int, int] = {}
        self._lock = threading.Lock()

    def failed(self, sender: Sender, reason: str) -> None:
        with self._lock:
            count = self._failures[id(sender)] = self._failures.get(id(sender), 0) + 1
        level = logging.ERROR if count >= REPEATED_FAILURES else logging.WARNING
        log.log(level, "hl7.destination_failed", extra={"peer": f"{sender.host}:{sender.port}", "reason": reason,
                                                        "count": count})

    def answered(self, sender: Sender) -> None:
        with self._lock:
            count = self._failures.pop(id(sender), 0)
        if count:
            log.info("hl7.destination_recovered", extra={"peer": f"{sender.host}:{sender.port}", "count": count})
