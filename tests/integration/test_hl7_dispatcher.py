"""The outbox dispatcher over real sockets against the real reference records server.

The outbox here is a small in-memory repository written for these tests; it
keeps the claim rules the SQL implementations keep (oldest undelivered message
per key, nothing behind a dead letter, leases), so the dispatcher's behaviour
can be checked without a database. The clock is manual: backoff and lease
expiry are reached by moving it, never by sleeping.
"""

from __future__ import annotations

import datetime as dt
import itertools
import tempfile
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine
from hypothesis.stateful import invariant
from hypothesis.stateful import rule

from hl7.ack import Outcome
from hl7.ack import build_ack
from hl7.client import MLLPClient
from hl7.dispatcher import Dispatcher
from hl7.dispatcher import OutboundItem
from hl7.er7 import Message
from hl7.listener import MLLPListener
from hl7.listener import PeerInfo
from hl7.records_server import ACCEPT
from hl7.records_server import RecordsSystem
from hl7.records_server import ReplyMode
from hl7.retry import RetryPolicy

START = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)
QUICK_RETRY = RetryPolicy(base=1.0, cap=8.0, jitter=1.0, max_attempts=10)


@dataclass
class Row:
    id: int
    control_id: str
    ordering_key: str
    payload: bytes
    status: str = "pending"
    attempts: int = 0
    rejections: int = 0
    next_attempt_at: dt.datetime = START
    lease_until: dt.datetime | None = None
    reason: str = ""
    ack: bytes = b""


class MemoryOutbox:
    """An outbox in a dict, with the claim rules of the real repositories."""

    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def enqueue(self, control_id: str, ordering_key: str, payload: bytes) -> int:
        with self._lock:
            row = Row(next(self._ids), control_id, ordering_key, payload)
            self.rows[row.id] = row
            return row.id

    def claim_next(self, now: dt.datetime, lease_seconds: float, limit: int) -> list[OutboundItem]:
        with self._lock:
            claimed: list[OutboundItem] = []
            seen_keys: set[str] = set()
            for row in sorted(self.rows.values(), key=lambda r: r.id):
                if row.status in ("sent", "discarded") or row.ordering_key in seen_keys:
                    continue
                seen_keys.add(row.ordering_key)
                due = (row.status == "pending" and row.next_attempt_at <= now) or (
                    row.status == "sending" and row.lease_until is not None and row.lease_until <= now
                )
                if due and len(claimed) < limit:
                    row.status = "sending"
                    row.lease_until = now + dt.timedelta(seconds=lease_seconds)
                    row.attempts += 1
                    claimed.append(OutboundItem(row.id, row.control_id, row.ordering_key, row.payload, row.attempts,
                                                row.rejections))
            return claimed

    def mark_sent(self, acks: Sequence[tuple[int, bytes]], now: dt.datetime) -> None:
        with self._lock:
            for id, ack_bytes in acks:
                self.rows[id].status = "sent"
                self.rows[id].ack = ack_bytes

    def mark_unsent(self, ids: Sequence[int], now: dt.datetime) -> None:
        with self._lock:
            for id in ids:
                row = self.rows[id]
                row.status, row.next_attempt_at, row.lease_until, row.attempts = "pending", now, None, row.attempts - 1

    def mark_retry(self, id: int, reason: str, next_attempt_at: dt.datetime, *, rejected: bool = False) -> None:
        with self._lock:
            row = self.rows[id]
            row.status, row.reason, row.next_attempt_at, row.lease_until = "pending", reason, next_attempt_at, None
            row.rejections += rejected

    def mark_dead(self, id: int, reason: str) -> None:
        with self._lock:
            self.rows[id].status = "dead"
            self.rows[id].reason = reason

    def retry_dead(self, id: int, now: dt.datetime) -> None:
        """The staff action: put a dead letter back in line with a fresh attempt allowance."""
        with self._lock:
            row = self.rows[id]
            assert row.status == "dead"
            row.status, row.next_attempt_at, row.attempts, row.rejections = "pending", now, 0, 0

    def statuses(self) -> dict[str, str]:
        return {row.control_id: row.status for row in self.rows.values()}


class ManualClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class FixedRandom:
    def __init__(self, value: float = 0.5) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def message(control_id: str, patient: str) -> bytes:
    return (
        f"MSH|^~\\&|KIOSK|FAMCLINIC|EHR|FAMCLINIC|20261126093012+0000||ADT^A04^ADT_A01|{control_id}|P|2.6\r"
        f"PID|||{patient}^^^FAMCLINIC^MR||Doe^Jane\r"
        "PV1||O\r"
    ).encode()


class Receiver(RecordsSystem):
    """The reference records system on a free port, keeping its output lines for assertions."""

    def __init__(self, store_path: Path, reply: ReplyMode | Callable[[Message], ReplyMode] = ACCEPT) -> None:
        self.lines: list[str] = []
        super().__init__(store_path, reply=reply, emit=self.lines.append, port=0)

    @property
    def port(self) -> int:
        return self.address[1]

    def stored_ids(self) -> list[str]:
        return [m.control_id for m in self.store.messages()]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    receiver = Receiver(tmp_path / "records.sqlite3")
    receiver.start()
    yield receiver
    receiver.close()


@pytest.fixture
def outbox() -> MemoryOutbox:
    return MemoryOutbox()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def make_dispatcher(
    outbox: MemoryOutbox,
    port: int,
    clock: ManualClock,
    *,
    ack_timeout: float = 5.0,
    retry: RetryPolicy = QUICK_RETRY,
    on_dead: Callable[[OutboundItem, str], None] | None = None,
) -> Dispatcher:
    client = MLLPClient("127.0.0.1", port, connect_timeout=2.0, ack_timeout=ack_timeout)
    return Dispatcher(outbox, client, clock=clock, rng=FixedRandom(), retry=retry, on_dead=on_dead)


def drain(dispatcher: Dispatcher, clock: ManualClock, *, steps: int = 50) -> None:
    """Dispatch until a step claims nothing, moving the clock past any backoff in between."""
    for _ in range(steps):
        if not dispatcher.dispatch_once():
            return
        clock.advance(1)
    raise AssertionError("dispatcher still busy")


def per_patient(ids: list[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for control_id in ids:
        grouped.setdefault(control_id.split("-")[0], []).append(control_id)
    return grouped


def enqueue_for(outbox: MemoryOutbox, patients: list[str], per_patient_count: int) -> list[str]:
    ids = []
    for n in range(per_patient_count):
        for patient in patients:
            control_id = f"{patient}-{n}"
            outbox.enqueue(control_id, patient, message(control_id, patient))
            ids.append(control_id)
    return ids


def test_delivers_everything_in_order_per_patient(receiver: Receiver, outbox: MemoryOutbox, clock: ManualClock) -> None:
    ids = enqueue_for(outbox, ["PA", "PB", "PC"], 3)
    dispatcher = make_dispatcher(outbox, receiver.port, clock)
    drain(dispatcher, clock)
    dispatcher.sender.close()
    assert set(outbox.statuses().values()) == {"sent"}
    assert sorted(receiver.stored_ids()) == sorted(ids)
    assert per_patient(receiver.stored_ids()) == per_patient(ids)
    assert all(row.ack.startswith(b"MSH|") for row in outbox.rows.values())


def test_receiver_down_then_back_loses_nothing_and_keeps_order(
    receiver: Receiver, outbox: MemoryOutbox, clock: ManualClock
) -> None:
    receiver.stop()
    ids = enqueue_for(outbox, ["PA", "PB"], 3)
    dispatcher = make_dispatcher(outbox, receiver.port, clock)
    for _ in range(3):
        deliveries = dispatcher.dispatch_once()
        assert deliveries and {d.outcome for d in deliveries} == {Outcome.RETRY}
        clock.advance(30)
    assert set(outbox.statuses().values()) == {"pending"}
    assert all(row.reason for row in outbox.rows.values() if row.attempts)
    receiver.start()
    drain(dispatcher, clock)
    dispatcher.sender.close()
    assert set(outbox.statuses().values()) == {"sent"}
    assert sorted(receiver.stored_ids()) == sorted(ids)
    assert per_patient(receiver.stored_ids()) == per_patient(ids)


def test_ae_dead_letters_and_holds_only_that_patient(tmp_path: Path, outbox: MemoryOutbox, clock: ManualClock) -> None:
    rejecting = {"BAD"}

    def rule(msg: Message) -> ReplyMode:
        return ReplyMode("AE") if msg.value("PID", 3) in rejecting else ReplyMode("AA")

    receiver = Receiver(tmp_path / "records.sqlite3", reply=rule)
    receiver.start()
    dead: list[tuple[str, str]] = []
    try:
        ids = enqueue_for(outbox, ["BAD", "GOOD"], 3)
        dispatcher = make_dispatcher(
            outbox, receiver.port, clock, on_dead=lambda item, reason: dead.append((item.control_id, reason))
        )
        drain(dispatcher, clock)
        assert outbox.statuses() == {
            "BAD-0": "dead",
            "BAD-1": "pending",
            "BAD-2": "pending",
            "GOOD-0": "sent",
            "GOOD-1": "sent",
            "GOOD-2": "sent",
        }
        assert dead == [("BAD-0", "AE: rehearsed AE from the reference records server")]
        assert outbox.rows[1].reason == dead[0][1]
        assert outbox.rows[1].attempts == 1
        assert receiver.stored_ids() == ["GOOD-0", "GOOD-1", "GOOD-2"]

        rejecting.clear()
        outbox.retry_dead(1, clock())
        drain(dispatcher, clock)
        dispatcher.sender.close()
        assert set(outbox.statuses().values()) == {"sent"}
        assert per_patient(receiver.stored_ids()) == per_patient(ids)
        assert len(dead) == 1
    finally:
        receiver.close()


def test_ack_with_wrong_msa2_is_not_a_delivery(outbox: MemoryOutbox, clock: ManualClock) -> None:
    def wrong_msa2(data: bytes, peer: PeerInfo) -> bytes:
        return build_ack(message("SOMEONE-ELSE", "PX"), "AA", control_id="R1", now=START)

    with MLLPListener(wrong_msa2, port=0) as listener:
        outbox.enqueue("PA-0", "PA", message("PA-0", "PA"))
        dispatcher = make_dispatcher(outbox, listener.address[1], clock, ack_timeout=0.3)
        [delivery] = dispatcher.dispatch_once()
        dispatcher.sender.close()
    assert delivery.outcome is Outcome.RETRY
    assert outbox.rows[1].status == "pending"
    assert "AckTimeout" in outbox.rows[1].reason
    assert outbox.rows[1].ack == b""


def test_ack_timeout_retries_with_the_same_control_id_and_the_receiver_deduplicates(
    tmp_path: Path, outbox: MemoryOutbox, clock: ManualClock
) -> None:
    modes = iter([ReplyMode(code=None), ReplyMode("AA")])
    receiver = Receiver(tmp_path / "records.sqlite3", reply=lambda msg: next(modes))
    receiver.start()
    try:
        outbox.enqueue("PA-0", "PA", message("PA-0", "PA"))
        dispatcher = make_dispatcher(outbox, receiver.port, clock, ack_timeout=0.5)
        [first] = dispatcher.dispatch_once()
        assert first.outcome is Outcome.RETRY
        assert outbox.rows[1].next_attempt_at == START + dt.timedelta(seconds=1.5)
        assert dispatcher.dispatch_once() == []
        clock.advance(1.5)
        [second] = dispatcher.dispatch_once()
        dispatcher.sender.close()
        assert (second.control_id, second.outcome) == ("PA-0", Outcome.DELIVERED)
        assert [line.split()[-2:] for line in receiver.lines] == [["(no", "reply)"], ["PA-0", "duplicate"]]
        assert receiver.stored_ids() == ["PA-0"]
        assert outbox.rows[1].attempts == 2
    finally:
        receiver.close()


def test_retry_cap_and_backoff_are_honoured(tmp_path: Path, outbox: MemoryOutbox, clock: ManualClock) -> None:
    receiver = Receiver(tmp_path / "records.sqlite3", reply=ReplyMode("AR"))
    receiver.start()
    policy = RetryPolicy(base=1.0, cap=4.0, jitter=1.0, max_attempts=4)
    try:
        outbox.enqueue("PA-0", "PA", message("PA-0", "PA"))
        dispatcher = make_dispatcher(outbox, receiver.port, clock, retry=policy)
        waits = []
        while outbox.rows[1].status != "dead":
            before = clock()
            [delivery] = dispatcher.dispatch_once()
            row = outbox.rows[1]
            if row.status == "pending":
                waits.append((row.next_attempt_at - before).total_seconds())
                assert dispatcher.dispatch_once() == []
                clock.now = row.next_attempt_at
        dispatcher.sender.close()
        assert waits == [1.5, 2.5, 4.5]
        assert outbox.rows[1].attempts == 4
        assert outbox.rows[1].reason.startswith("rejected 4 times; last: AR")
        assert len(receiver.lines) == 4
    finally:
        receiver.close()


def test_resumes_after_a_crash_once_the_lease_expires(
    receiver: Receiver, outbox: MemoryOutbox, clock: ManualClock
) -> None:
    outbox.enqueue("PA-0", "PA", message("PA-0", "PA"))
    outbox.enqueue("PA-1", "PA", message("PA-1", "PA"))
    crashed = outbox.claim_next(clock(), 120, 10)
    assert [item.control_id for item in crashed] == ["PA-0"]

    restarted = make_dispatcher(outbox, receiver.port, clock)
    assert restarted.dispatch_once() == []
    clock.advance(121)
    drain(restarted, clock)
    restarted.sender.close()
    assert receiver.stored_ids() == ["PA-0", "PA-1"]
    assert outbox.rows[1].attempts == 2


def test_run_loop_delivers_until_stopped(receiver: Receiver, outbox: MemoryOutbox) -> None:
    ids = enqueue_for(outbox, ["PA", "PB"], 2)
    client = MLLPClient("127.0.0.1", receiver.port, connect_timeout=2.0, ack_timeout=5.0)
    dispatcher = Dispatcher(outbox, client, clock=lambda: dt.datetime.now(dt.UTC), rng=FixedRandom())
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), kwargs={"poll_interval": 0.05})
    thread.start()
    deadline = time.monotonic() + 30
    while set(outbox.statuses().values()) != {"sent"} and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert not client.connected
    assert per_patient(receiver.stored_ids()) == per_patient(ids)


def test_lease_must_cover_one_send(outbox: MemoryOutbox, clock: ManualClock) -> None:
    client = MLLPClient("127.0.0.1", 9, connect_timeout=2.0, ack_timeout=5.0)
    with pytest.raises(ValueError, match="lease_seconds"):
        Dispatcher(outbox, client, clock=clock, rng=FixedRandom(), batch_size=10, lease_seconds=7)
    assert Dispatcher(outbox, client, clock=clock, rng=FixedRandom(), batch_size=10).lease_seconds == 14


def test_a_batch_never_outlives_its_lease(receiver: Receiver, outbox: MemoryOutbox) -> None:
    ids = enqueue_for(outbox, [f"P{n}" for n in range(6)], 1)
    clock = ManualClock()

    class Ticking(MLLPClient):
        def send(self, message: bytes, control_id: str) -> bytes:
            clock.advance(4.0)
            return super().send(message, control_id)

    client = Ticking("127.0.0.1", receiver.port, connect_timeout=2.0, ack_timeout=5.0)
    dispatcher = Dispatcher(outbox, client, clock=clock, rng=FixedRandom(), batch_size=6, lease_seconds=14)
    try:
        first = dispatcher.dispatch_once()
    finally:
        client.close()
    assert [d.outcome for d in first] == [Outcome.DELIVERED, Outcome.DELIVERED]
    statuses = outbox.statuses()
    assert [statuses[i] for i in ids] == ["sent", "sent", "pending", "pending", "pending", "pending"]
    assert [outbox.rows[n].attempts for n in range(3, 7)] == [0, 0, 0, 0]
    assert receiver.stored_ids() == ids[:2]


class DeliveryContract(RuleBasedStateMachine):
    """Random enqueues, dispatch steps, receiver outages and NAKs against the real records server.

    Invariants (reliability contract): for every patient, the messages the
    receiver stored are exactly the ones marked sent, in enqueue order; sent
    messages always form a prefix of that patient's queue (nothing overtakes a
    pending or dead message); no message exceeds the attempt cap.
    """

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.mode = ReplyMode("AA")
        self.receiver = Receiver(Path(self.directory.name) / "records.sqlite3", reply=lambda msg: self.mode)
        self.receiver.start()
        self.outbox = MemoryOutbox()
        self.clock = ManualClock()
        self.dispatcher = make_dispatcher(self.outbox, self.receiver.port, self.clock)
        self.sequence = itertools.count()

    @rule(patient=st.sampled_from(["PA", "PB", "PC"]))
    def enqueue(self, patient: str) -> None:
        control_id = f"{patient}-{next(self.sequence)}"
        self.outbox.enqueue(control_id, patient, message(control_id, patient))

    @rule()
    def dispatch_step(self) -> None:
        self.dispatcher.dispatch_once()
        self.clock.advance(10)

    @rule(code=st.sampled_from(["AA", "AA", "AR", "AE"]))
    def receiver_replies(self, code: str) -> None:
        self.mode = ReplyMode(code)

    @rule()
    def receiver_goes_down(self) -> None:
        self.receiver.stop()

    @rule()
    def receiver_comes_back(self) -> None:
        if not self.receiver.running:
            self.receiver.start()

    @rule()
    def staff_retry_dead_letters(self) -> None:
        for row in list(self.outbox.rows.values()):
            if row.status == "dead":
                self.outbox.retry_dead(row.id, self.clock())

    @invariant()
    def stored_equals_sent_in_order_per_patient(self) -> None:
        sent = [row.control_id for row in sorted(self.outbox.rows.values(), key=lambda r: r.id) if row.status == "sent"]
        assert per_patient(self.receiver.stored_ids()) == per_patient(sent)

    @invariant()
    def sent_messages_are_a_prefix_of_each_queue(self) -> None:
        for patient in ("PA", "PB", "PC"):
            statuses = [
                row.status
                for row in sorted(self.outbox.rows.values(), key=lambda r: r.id)
                if row.ordering_key == patient
            ]
            sent = statuses.count("sent")
            assert statuses[:sent] == ["sent"] * sent

    @invariant()
    def attempts_within_cap(self) -> None:
        assert all(row.attempts <= QUICK_RETRY.max_attempts for row in self.outbox.rows.values())

    def teardown(self) -> None:
        self.dispatcher.sender.close()
        self.receiver.close()
        self.directory.cleanup()


DeliveryContract.TestCase.settings = settings(max_examples=15, stateful_step_count=30, deadline=None)
test_delivery_contract = DeliveryContract.TestCase
