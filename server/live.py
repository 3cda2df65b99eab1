"""Live updates: services publish what changed, open pages subscribe.

One interface, two carriers:

* :class:`LocalHub` fans events out inside one process. It serves SQLite,
  where there is only ever one ``serve`` process.
* :class:`PostgresHub` carries events between processes through PostgreSQL
  ``LISTEN``/``NOTIFY``, so a reading ingested by one ``serve`` appears on a
  page served by another, and a ``bridge`` process can be woken by an enqueue
  in ``serve``. No other broker is needed, because the database is already the
  one thing every process shares.

Rules that keep pages right rather than merely fast:

* **Publish after commit.** An event says "this changed, here is the new
  state"; publishing before the commit could show a page something that is
  then rolled back. ``NOTIFY`` sent outside the data transaction keeps that
  order on PostgreSQL too.
* **Events are hints, the database is the truth.** A subscriber that falls
  behind (a full queue) or a listener that lost its connection gets a
  ``resync`` event, which tells the page to fetch its whole state again
  instead of trusting a gap-ridden stream.
* **No patient names or birth dates in events.** ``NOTIFY`` payloads are
  visible to every session of the database and land in server logs on error;
  events carry ids, states and measured values, and pages fetch anything
  identifying through an audited service call.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import threading
import time
import typing as t
from dataclasses import dataclass

import psycopg
from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger("frontdesk.live")

QUEUE_LIMIT = 256
"""Events one subscriber may have waiting; beyond it the oldest go and the subscriber is told to resync."""

NOTIFY_LIMIT = 7900
"""PostgreSQL refuses ``NOTIFY`` payloads of 8000 bytes or more; larger events become a ``resync`` hint."""

RESYNC = "resync"

BOARD_CHANNEL = "board"
"""Where anything shown on the front-desk board is announced: visits, flags, changes, dead letters.
Events carry a ``visit_id`` when the change belongs to one visit, and nothing identifying."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something changed on ``channel`` (e.g. ``station:room1``, ``board``, ``outbox``).

    ``kind`` names what happened (``reading``, ``visit``, ``resync`` …) and
    ``data`` carries the new state as JSON-ready values. ``seq`` increases per
    process and becomes the Server-Sent Events ``id``.
    """

    channel: str
    kind: str
    data: dict[str, t.Any]
    seq: int = 0


class Subscription:
    """The events of some channels, in order, for one reader (one open page, one dispatcher)."""

    def __init__(self, hub: LocalHub, channels: frozenset[str]) -> None:
        self.channels = channels
        self._hub = hub
        self._queue: collections.deque[Event] = collections.deque()
        self._ready = threading.Condition()
        self._overflowed = False
        self.closed = False

    def get(self, timeout: float) -> Event | None:
        """The next event, waiting up to ``timeout`` seconds; ``None`` when none came or the hub closed."""
        with self._ready:
            if not self._queue and not self.closed and not self._overflowed:
                self._ready.wait(timeout)
            if self._overflowed:
                self._overflowed = False
                self._queue.clear()
                return Event("*", RESYNC, {})
            return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        """Stop receiving; a reader blocked in :meth:`get` returns at once."""
        self._hub._drop(self)
        self._wake_closed()

    def _deliver(self, event: Event) -> None:
        with self._ready:
            if len(self._queue) >= QUEUE_LIMIT:
                self._overflowed = True
            else:
                self._queue.append(event)
            self._ready.notify_all()

    def _wake_closed(self) -> None:
        with self._ready:
            self.closed = True
            self._ready.notify_all()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Hub(t.Protocol):
    """Where services publish and pages subscribe."""

    def publish(self, channel: str, kind: str, data: dict[str, t.Any]) -> None:
        """Announce a committed change; never raises (a lost hint costs a page one refresh)."""
        ...

    def subscribe(self, channels: t.Iterable[str]) -> Subscription:
        """Receive the events of ``channels`` from now on."""
        ...

    def close(self) -> None:
        """End every subscription (server shutdown) and release connections."""
        ...


class LocalHub:
    """In-process fan-out: a publish reaches every subscription of its channel in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: set[Subscription] = set()
        self._seq = itertools.count(1)
        self._closed = False

    def publish(self, channel: str, kind: str, data: dict[str, t.Any]) -> None:
        self.deliver(channel, kind, data)

    def deliver(self, channel: str, kind: str, data: dict[str, t.Any]) -> None:
        """Hand an event to this process's subscribers of ``channel`` (``*`` reaches all of them)."""
        with self._lock:
            event = Event(channel, kind, data, next(self._seq))
            targets = [s for s in self._subscriptions if channel == "*" or channel in s.channels]
        for subscription in targets:
            subscription._deliver(event)

    def subscribe(self, channels: t.Iterable[str]) -> Subscription:
        """Receive the events of ``channels``; after :meth:`close` the subscription is closed from the start."""
        subscription = Subscription(self, frozenset(channels))
        with self._lock:
            if not self._closed:
                self._subscriptions.add(subscription)
                return subscription
        subscription._wake_closed()
        return subscription

    def close(self) -> None:
        with self._lock:
            self._closed = True
            subscriptions, self._subscriptions = self._subscriptions, set()
        for subscription in subscriptions:
            subscription._wake_closed()

    def _drop(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(subscription)


class PostgresHub:
    """Events between processes through ``LISTEN``/``NOTIFY`` on one PostgreSQL channel.

    One background thread per process, started by the first subscription,
    listens and hands each notification to a :class:`LocalHub`; publishing
    sends ``NOTIFY`` on a separate connection, so the publisher's own
    subscribers receive the event the same way as every other process's (once,
    in commit order). When the listening connection
    drops, the thread reconnects with backoff and tells every subscriber to
    resync, since notifications sent meanwhile are gone.

    :param url: a libpq connection string (the ``postgresql://`` URL of the database).
    :param channel: the ``NOTIFY`` channel; instances sharing one database in
        separate schemas use separate channels.
    """

    def __init__(self, url: str, channel: str = "frontdesk") -> None:
        self.url = url
        self.channel = channel
        self.local = LocalHub()
        self._publish_lock = threading.Lock()
        self._publisher: psycopg.Connection[t.Any] | None = None
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def wait_listening(self, timeout: float) -> bool:
        """Whether the listener is connected (tests wait for it before publishing)."""
        return self._listening.wait(timeout)

    def publish(self, channel: str, kind: str, data: dict[str, t.Any]) -> None:
        payload = json.dumps({"c": channel, "k": kind, "d": data}, separators=(",", ":"), default=str)
        if len(payload.encode()) > NOTIFY_LIMIT:
            payload = json.dumps({"c": channel, "k": RESYNC, "d": {}})
        with self._publish_lock:
            for attempt in (1, 2):
                try:
                    if self._publisher is None or self._publisher.closed:
                        self._publisher = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                    self._publisher.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))
                    return
                except psycopg.Error as exc:
                    self._publisher = None
                    if attempt == 2:
                        log.warning("live.publish_failed", extra={"reason": type(exc).__name__})

    def subscribe(self, channels: t.Iterable[str]) -> Subscription:
        """Subscribe, starting the listener on first use (a CLI command that only publishes never listens)."""
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._listen, name="live-listener", daemon=True)
                self._thread.start()
        return self.local.subscribe(channels)

    def close(self) -> None:
        self._stop.set()
        with self._start_lock:
            if self._thread is not None:
                self._thread.join(timeout=5)
        self.local.close()
        with self._publish_lock:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None

    def _listen(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as connection:
                    connection.execute(f'LISTEN "{self.channel}"')
                    if delay > 0.5:
                        # Reconnected: whatever was announced while we were away is lost.
                        self.local.deliver("*", RESYNC, {})
                        log.info("live.listener_recovered")
                    delay = 0.5
                    self._listening.set()
                    while not self._stop.is_set():
                        for notify in connection.notifies(timeout=0.5):
                            self._dispatch(notify.payload)
            except psycopg.Error as exc:
                self._listening.clear()
                log.warning("live.listener_lost", extra={"reason": type(exc).__name__})
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def _dispatch(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            self.local.deliver(str(message["c"]), str(message["k"]), dict(message["d"]))
        except (ValueError, KeyError, TypeError):
            log.warning("live.bad_payload")


_AFTER_COMMIT = "frontdesk.live_pending"


def publish_after_commit(session: Session, hub: Hub, channel: str, kind: str, data: dict[str, t.Any]) -> None:
    """Publish on ``hub`` once ``session``'s transaction commits, and never if it rolls back.

    For services that change something inside a caller's transaction (a
    kiosk check-in moving a visit): the event must not reach a page before the
    change it announces is visible to that page's next read.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append((hub, channel, kind, data))


@event.listens_for(Session, "after_commit")
def _publish_pending(session: Session) -> None:
    for hub, channel, kind, data in session.info.pop(_AFTER_COMMIT, []):
        hub.publish(channel, kind, data)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)


def make_hub(database_url: str, schema: str = "") -> Hub:
    """The hub for a database: cross-process on PostgreSQL, in-process on SQLite."""
    if database_url.startswith("postgresql"):
        url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        return PostgresHub(url, channel=f"frontdesk_{schema}" if schema else "frontdesk")
    return LocalHub()


class StreamSlots:
    """How many event streams this process keeps open at once.

    An open stream holds one of the web server's request threads for as long
    as its page is open. Without a limit, enough open pages (tabs left open on
    every desk) would hold every thread, and kiosks and staff pages would stop
    getting answers. A page beyond the limit is told it is not live for now
    (``busy``) and its browser asks again later; the page keeps working
    without live updates meanwhile.

    A stream asking when all slots are taken may wait a moment for one
    (:meth:`take`): a page that reloads asks for its new stream before the
    server has noticed that the old one is gone (it notices at the old
    stream's next keep-alive), and would otherwise be refused its own slot.
    At most ``waiters`` streams wait at once, so waiting never takes more than
    a few of the threads kept for other requests.
    """

    def __init__(self, limit: int, waiters: int = 1) -> None:
        self.limit = limit
        self.waiters = waiters
        self._open = 0
        self._waiting = 0
        self._changed = threading.Condition()

    @classmethod
    def for_threads(cls, threads: int) -> StreamSlots:
        """Leave a quarter of ``threads``, and never fewer than 4, to ordinary requests (at least one stream);
        up to a quarter of those may be spent waiting for a slot."""
        limit = max(1, threads - max(4, threads // 4))
        return cls(limit, waiters=max(1, (threads - limit) // 4))

    def take(self, wait: float = 0.0) -> bool:
        """Take a slot if one is free, or becomes free within ``wait`` seconds."""
        with self._changed:
            if self._open < self.limit:
                self._open += 1
                return True
            if wait <= 0 or self._waiting >= self.waiters:
                return False
            self._waiting += 1
            try:
                if not self._changed.wait_for(lambda: self._open < self.limit, timeout=wait):
                    return False
                self._open += 1
                return True
            finally:
                self._waiting -= 1

    def give_back(self) -> None:
        """Return a slot taken with :meth:`take`."""
        with self._changed:
            self._open -= 1
            self._changed.notify()


SLOT_WAIT = 2.5
"""How long a stream waits for a slot: longer than a keep-alive interval, so a reloaded page gets its own back."""

BUSY_RETRY_MS = 10_000
"""When a page beyond the stream limit asks again (its browser's EventSource reconnects by itself)."""


def sse_stream(hub: Hub, channels: t.Iterable[str], *, slots: StreamSlots, heartbeat: float = 15.0,
               first: t.Iterable[Event] = ()) -> t.Iterator[str]:
    """Server-Sent Events text for ``channels``, until the hub closes or the client goes.

    The stream subscribes when it starts and opens with a ``live`` event, so a
    page that has seen it knows every later change reaches it. ``first`` is
    sent next (a page's state as of now). A comment line every ``heartbeat``
    seconds keeps proxies from closing an idle stream and lets the server
    notice a client that has gone. With no slot free in ``slots`` within
    :data:`SLOT_WAIT`, the stream is only a ``busy`` event and a later retry time. The subscription and the
    slot are both given back when the stream ends either way; they are taken
    inside the stream, so a response that is never sent holds neither.
    """
    if not slots.take(wait=SLOT_WAIT):
        yield f"retry: {BUSY_RETRY_MS}\nevent: busy\ndata: {{}}\n\n"
        return
    try:
        with hub.subscribe(channels) as subscription:
            if subscription.closed:
                return  # the server is stopping
            yield "retry: 2000\nevent: live\ndata: {}\n\n"
            for initial in first:
                yield _format(initial)
            last = time.monotonic()
            while not subscription.closed:
                event = subscription.get(timeout=min(heartbeat, 1.0))
                if event is not None:
                    yield _format(event)
                    last = time.monotonic()
                elif time.monotonic() - last >= heartbeat:
                    yield ": keep-alive\n\n"
                    last = time.monotonic()
    finally:
        slots.give_back()


def _format(event: Event) -> str:
    data = json.dumps({"channel": event.channel, **event.data}, separators=(",", ":"), default=str)
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n"
