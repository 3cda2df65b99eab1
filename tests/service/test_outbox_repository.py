"""The outbox repository's claim rules, by seeding states and moving an injected ``now``.

Nothing here sleeps: lease expiry and backoff are reached by passing a later
``now`` to :meth:`OutboxRepository.claim_next`, the way the dispatcher passes
its clock. Each test runs on SQLite and on PostgreSQL except the two that are
about one backend's concurrency strategy (the SQLite lease, PostgreSQL's
``SKIP LOCKED``).
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from sqlalchemy import select

from hl7.dispatcher import OutboundItem
from server.db import UnitOfWork
from server.db import make_engine
from server.models import AuditEvent
from server.models import OutboxMessage
from server.models import ServiceLease
from server.services import Services
from server.services.context import Actor
from server.services.context import FrozenClock
from server.services.outbox import DISPATCHER_LEASE
from server.services.outbox import OutboxError
from server.services.outbox import OutboxRepository
from tests.conftest import Database

LEASE = 30.0
CLERK = Actor("staff", "12", role="front_desk", address="10.0.0.9")


def enqueue(services: Services, *keys: str) -> list[int]:
    """One message per key, in the order given, each with a distinct MSH-10 derived from its position."""
    ids = []
    with services.uow.begin() as session:
        for n, key in enumerate(keys, start=1):
            control_id = f"C{n:03d}-{key}"
            payload = f"MSH|^~\\&|FRONTDESK|CLINIC|EHR|CLINIC|20261126140000||ADT^A04|{control_id}|P|2.5\r".encode()
            ids.append(services.outbox.enqueue(session, payload, control_id=control_id, message_type="ADT^A04",
                                               ordering_key=key))
    return ids


def repository(services: Services, owner: str = "dispatcher-a") -> OutboxRepository:
    return OutboxRepository(uow=services.uow, audit=services.audit, owner=owner)


def claimed(items: list[OutboundItem]) -> list[int]:
    return [item.id for item in items]


def row(services: Services, message_id: int) -> OutboxMessage:
    with services.uow.begin() as session:
        found = session.get(OutboxMessage, message_id)
        assert found is not None
        return found


def audit_actions(services: Services, message_id: int) -> list[str]:
    with services.uow.begin() as session:
        return list(session.scalars(select(AuditEvent.action).where(
            AuditEvent.resource_type == "outbox_message", AuditEvent.resource_id == str(message_id))
            .order_by(AuditEvent.id)))


def later(clock: FrozenClock, seconds: float) -> dt.datetime:
    return clock.now() + dt.timedelta(seconds=seconds)


def test_one_message_per_key_in_id_order_and_the_next_only_after_the_first_is_sent(
        services: Services, clock: FrozenClock) -> None:
    a1, b1, a2, b2 = enqueue(services, "patient:A", "patient:B", "patient:A", "patient:B")
    repo = repository(services)
    first = repo.claim_next(clock.now(), LEASE, 10)
    assert claimed(first) == [a1, b1]
    assert {item.ordering_key for item in first} == {"patient:A", "patient:B"}
    assert repo.claim_next(clock.now(), LEASE, 10) == []
    repo.mark_sent([(a1, b"MSH|ack a1\r")], clock.now())
    assert claimed(repo.claim_next(clock.now(), LEASE, 10)) == [a2]
    repo.mark_sent([(b1, b"MSH|ack b1\r")], clock.now())
    assert claimed(repo.claim_next(clock.now(), LEASE, 10)) == [b2]
    sent = row(services, a1)
    assert (sent.status, sent.ack, sent.lease_until, sent.lease_owner) == ("sent", b"MSH|ack a1\r", None, None)
    assert row(services, a2).status == "sending"


def test_claim_respects_the_limit_and_returns_the_oldest_keys_first(services: Services, clock: FrozenClock) -> None:
    ids = enqueue(services, "k1", "k2", "k3", "k4", "k5")
    repo = repository(services)
    assert claimed(repo.claim_next(clock.now(), LEASE, 2)) == ids[:2]
    assert claimed(repo.claim_next(clock.now(), LEASE, 2)) == ids[2:4]
    assert claimed(repo.claim_next(clock.now(), LEASE, 2)) == ids[4:]


def test_a_dead_letter_blocks_its_key_only(services: Services, clock: FrozenClock) -> None:
    a1, b1, a2, b2 = enqueue(services, "patient:A", "patient:B", "patient:A", "patient:B")
    repo = repository(services)
    assert claimed(repo.claim_next(clock.now(), LEASE, 10)) == [a1, b1]
    repo.mark_dead(a1, "AE: PID-3 unknown patient")
    repo.mark_sent([(b1, b"MSH|ack\r")], clock.now())
    far = later(clock, 3600)
    assert claimed(repo.claim_next(far, LEASE, 10)) == [b2]
    repo.mark_sent([(b2, b"MSH|ack\r")], far)
    assert repo.claim_next(later(clock, 7200), LEASE, 10) == []
    dead = row(services, a1)
    assert (dead.status, dead.last_error, dead.lease_owner) == ("dead", "AE: PID-3 unknown patient", None)
    assert row(services, a2).status == "pending" and row(services, a2).attempts == 0
    assert audit_actions(services, a1) == ["outbox.dead_letter"]


def test_staff_retry_of_a_dead_letter_sends_it_again_first_with_the_same_control_id(
        services: Services, clock: FrozenClock) -> None:
    a1, a2 = enqueue(services, "patient:A", "patient:A")
    repo = repository(services)
    (first,) = repo.claim_next(clock.now(), LEASE, 10)
    repo.mark_dead(a1, "AE")
    clock.advance(minutes=10)
    services.outbox.retry(a1, actor=CLERK)
    retried = row(services, a1)
    assert (retried.status, retried.attempts, retried.next_attempt_at) == ("pending", 0, clock.now())
    (again,) = repo.claim_next(clock.now(), LEASE, 10)
    assert (again.id, again.control_id, again.payload, again.attempts) == (
        a1, first.control_id, first.payload, 1)
    repo.mark_sent([(a1, b"MSH|ack\r")], clock.now())
    assert claimed(repo.claim_next(clock.now(), LEASE, 10)) == [a2]
    assert audit_actions(services, a1) == ["outbox.dead_letter", "outbox.retry"]
    with services.uow.begin() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "outbox.retry")).one()
        assert (event.actor_type, event.actor_id, event.detail) == ("staff", "12", f"control_id={first.control_id}")


def test_staff_discard_of_a_dead_letter_lets_the_key_flow_and_is_audited(
        services: Services, clock: FrozenClock) -> None:
    a1, a2 = enqueue(services, "patient:A", "patient:A")
    repo = repository(services)
    repo.claim_next(clock.now(), LEASE, 10)
    repo.mark_dead(a1, "AE")
    services.outbox.discard(a1, actor=CLERK)
    assert row(services, a1).status == "discarded"
    assert claimed(repo.claim_next(clock.now(), LEASE, 10)) == [a2]
    assert audit_actions(services, a1) == ["outbox.dead_letter", "outbox.discard"]
    with pytest.raises(OutboxError, match="is discarded"):
        services.outbox.retry(a1, actor=CLERK)
    with pytest.raises(OutboxError, match="does not exist"):
        services.outbox.discard(a1 + 1000, actor=CLERK)
    assert audit_actions(services, a1) == ["outbox.dead_letter", "outbox.discard"]


def test_a_message_being_sent_cannot_be_retried_or_discarded_by_staff(services: Services, clock: FrozenClock) -> None:
    (a1,) = enqueue(services, "patient:A")
    repository(services).claim_next(clock.now(), LEASE, 10)
    for action in (services.outbox.retry, services.outbox.discard):
        with pytest.raises(OutboxError, match="is sending"):
            action(a1, actor=CLERK)
    assert row(services, a1).status == "sending"
    assert audit_actions(services, a1) == []


def test_an_expired_lease_is_claimed_again_with_one_more_attempt_and_the_same_control_id(
        services: Services, clock: FrozenClock) -> None:
    a1, a2 = enqueue(services, "patient:A", "patient:A")
    repo = repository(services)
    (first,) = repo.claim_next(clock.now(), LEASE, 10)
    stuck = row(services, a1)
    assert (stuck.status, stuck.attempts, stuck.lease_until, stuck.lease_owner) == (
        "sending", 1, later(clock, LEASE), "dispatcher-a")
    assert repo.claim_next(later(clock, LEASE - 1), LEASE, 10) == []
    (second,) = repo.claim_next(later(clock, LEASE), LEASE, 10)
    assert (second.id, second.control_id, second.payload, second.attempts) == (
        a1, first.control_id, first.payload, 2)
    assert row(services, a1).lease_until == later(clock, 2 * LEASE)
    assert row(services, a2).status == "pending"


def test_a_retry_in_the_future_is_not_claimed_before_its_time(services: Services, clock: FrozenClock) -> None:
    a1, b1 = enqueue(services, "patient:A", "patient:B")
    repo = repository(services)
    repo.claim_next(clock.now(), LEASE, 10)
    repo.mark_retry(a1, "AR: busy", later(clock, 60))
    repo.mark_sent([(b1, b"MSH|ack\r")], clock.now())
    waiting = row(services, a1)
    assert (waiting.status, waiting.last_error, waiting.lease_until, waiting.attempts) == (
        "pending", "AR: busy", None, 1)
    assert repo.claim_next(later(clock, 59), LEASE, 10) == []
    (item,) = repo.claim_next(later(clock, 60), LEASE, 10)
    assert (item.id, item.attempts) == (a1, 2)


def test_settling_a_message_that_is_no_longer_sending_changes_nothing(services: Services, clock: FrozenClock) -> None:
    (a1,) = enqueue(services, "patient:A")
    repo = repository(services)
    repo.claim_next(clock.now(), LEASE, 10)
    repo.mark_dead(a1, "AE")
    services.outbox.discard(a1, actor=CLERK)
    repo.mark_sent([(a1, b"MSH|late ack\r")], clock.now())
    repo.mark_retry(a1, "late", clock.now())
    repo.mark_dead(a1, "late")
    late = row(services, a1)
    assert (late.status, late.ack, late.last_error) == ("discarded", None, "AE")
    assert audit_actions(services, a1) == ["outbox.dead_letter", "outbox.discard"]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_sqlite_lease_is_renewed_only_when_less_than_a_claim_is_left(services: Services, clock: FrozenClock) -> None:
    first = repository(services, "dispatcher-a")
    assert first.claim_next(clock.now(), LEASE, 10) == []
    expires = lease_expiry(services)
    assert expires == later(clock, 1.5 * LEASE)
    assert first.claim_next(later(clock, LEASE / 2 - 1), LEASE, 10) == []
    assert lease_expiry(services) == expires, "an idle poll with time to spare writes nothing"
    assert first.claim_next(later(clock, LEASE / 2 + 1), LEASE, 10) == []
    assert lease_expiry(services) == later(clock, 2 * LEASE + 1)


def lease_expiry(services: Services) -> dt.datetime:
    with services.uow.begin() as session:
        lease = session.get(ServiceLease, DISPATCHER_LEASE)
        assert lease is not None
        return lease.expires_at


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_sqlite_one_dispatcher_holds_the_lease_until_it_expires_or_is_released(
        services: Services, clock: FrozenClock) -> None:
    a1, b1, c1 = enqueue(services, "patient:A", "patient:B", "patient:C")
    first = repository(services, "dispatcher-a")
    second = repository(services, "dispatcher-b")
    assert claimed(first.claim_next(clock.now(), LEASE, 1)) == [a1]
    assert second.claim_next(clock.now(), LEASE, 10) == []
    # The dispatcher lease outlasts a claim by half (renewed only once less than a claim is left).
    assert second.claim_next(later(clock, 1.5 * LEASE - 1), LEASE, 10) == []
    assert row(services, b1).status == "pending"
    # The first dispatcher went silent: once its lease runs out the second takes over, its claim included.
    (taken_over,) = second.claim_next(later(clock, 1.5 * LEASE), LEASE, 1)
    assert (taken_over.id, taken_over.attempts) == (a1, 2)
    assert row(services, a1).lease_owner == "dispatcher-b"
    assert first.claim_next(later(clock, 1.5 * LEASE + 1), LEASE, 10) == []
    first.release()
    assert first.claim_next(later(clock, 1.5 * LEASE + 1), LEASE, 10) == [], "release gives up only one's own lease"
    second.release()
    assert claimed(first.claim_next(later(clock, 1.5 * LEASE + 1), LEASE, 10)) == [b1, c1]
    assert {row(services, b1).lease_owner, row(services, c1).lease_owner} == {"dispatcher-a"}


@pytest.mark.postgres
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_postgresql_concurrent_claims_never_share_a_row_and_keep_each_key_in_order(
        services: Services, clock: FrozenClock, database: Database) -> None:
    keys = [f"patient:{n}" for n in range(60)]
    ids = enqueue(services, *(keys * 4))
    key_of = {message_id: keys[n % len(keys)] for n, message_id in enumerate(ids)}
    engines = [make_engine(database.url, schema=database.schema) for _ in range(2)]
    repos = [OutboxRepository(uow=UnitOfWork(engine), audit=services.audit, owner=f"dispatcher-{n}")
             for n, engine in enumerate(engines)]
    lock = threading.Lock()
    order: list[tuple[str, int]] = []
    start = threading.Barrier(len(repos))
    errors: list[BaseException] = []

    def work(repo: OutboxRepository) -> None:
        try:
            start.wait(timeout=10)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                items = repo.claim_next(clock.now(), LEASE, 3)
                with lock:
                    order.extend((repo.owner, item.id) for item in items)
                    if not items and len(order) >= len(ids):
                        return
                for item in items:
                    repo.mark_sent([(item.id, b"MSH|ack\r")], clock.now())
        except BaseException as exc:  # handed to the main thread, which fails the test with it
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(repo,)) for repo in repos]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
    finally:
        for engine in engines:
            engine.dispose()
    assert not errors, errors
    claimed_ids = [message_id for _, message_id in order]
    assert sorted(claimed_ids) == sorted(ids), "every row claimed, none twice"
    assert {owner for owner, _ in order} == {"dispatcher-0", "dispatcher-1"}
    for key in keys:
        assert [i for i in claimed_ids if key_of[i] == key] == [i for i in ids if key_of[i] == key]
    with services.uow.begin() as session:
        assert set(session.scalars(select(OutboxMessage.status))) == {"sent"}


def test_unsent_messages_are_due_again_at_once_without_an_attempt(services: Services, clock: FrozenClock) -> None:
    a1, b1, c1 = enqueue(services, "patient:A", "patient:B", "patient:C")
    repo = repository(services, "dispatcher-a")
    assert claimed(repo.claim_next(clock.now(), LEASE, 10)) == [a1, b1, c1]
    repo.mark_sent([(a1, b"MSH|ack\r")], clock.now())
    repo.mark_unsent([b1, c1], clock.now())
    assert [(row(services, i).status, row(services, i).attempts, row(services, i).lease_owner) for i in (b1, c1)] == [
        ("pending", 0, None), ("pending", 0, None)]
    assert claimed(repo.claim_next(clock.now(), LEASE, 10)) == [b1, c1]


def test_a_late_result_never_overwrites_another_dispatchers_claim(services: Services, clock: FrozenClock) -> None:
    (a1,) = enqueue(services, "patient:A")
    first = repository(services, "dispatcher-a")
    second = repository(services, "dispatcher-b")
    assert claimed(first.claim_next(clock.now(), LEASE, 10)) == [a1]
    first.release()
    # The first dispatcher stalled past its lease; the second took the message over.
    assert claimed(second.claim_next(later(clock, LEASE), LEASE, 10)) == [a1]
    first.mark_retry(a1, "late timeout", later(clock, LEASE + 60))
    first.mark_dead(a1, "late AE")
    first.mark_unsent([a1], clock.now())
    first.mark_sent([(a1, b"MSH|late ack\r")], clock.now())
    still = row(services, a1)
    assert (still.status, still.lease_owner, still.attempts, still.ack) == ("sending", "dispatcher-b", 2, None)
    second.mark_sent([(a1, b"MSH|ack\r")], clock.now())
    assert (row(services, a1).status, row(services, a1).ack) == ("sent", b"MSH|ack\r")
