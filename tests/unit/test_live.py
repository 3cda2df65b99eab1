"""The in-process live hub and the Server-Sent Events text it becomes."""

from __future__ import annotations

import threading

from server.live import QUEUE_LIMIT
from server.live import RESYNC
from server.live import Event
from server.live import LocalHub
from server.live import StreamSlots
from server.live import sse_stream


def test_an_event_reaches_the_subscribers_of_its_channel_only() -> None:
    hub = LocalHub()
    station = hub.subscribe(["station:room1"])
    board = hub.subscribe(["board"])
    hub.publish("station:room1", "reading", {"metric": "spo2", "value": "97"})
    event = station.get(timeout=1)
    assert event is not None and (event.kind, event.data) == ("reading", {"metric": "spo2", "value": "97"})
    assert board.get(timeout=0.01) is None


def test_events_keep_their_order_and_increasing_ids() -> None:
    hub = LocalHub()
    subscription = hub.subscribe(["board"])
    for n in range(5):
        hub.publish("board", "visit", {"n": n})
    events = [subscription.get(timeout=1) for _ in range(5)]
    assert [e.data["n"] for e in events if e] == [0, 1, 2, 3, 4]
    assert [e.seq for e in events if e] == sorted(e.seq for e in events if e)


def test_a_reader_that_falls_behind_is_told_to_resync_instead_of_missing_events_silently() -> None:
    hub = LocalHub()
    subscription = hub.subscribe(["board"])
    for n in range(QUEUE_LIMIT + 10):
        hub.publish("board", "visit", {"n": n})
    first = subscription.get(timeout=1)
    assert first is not None and first.kind == RESYNC
    hub.publish("board", "visit", {"n": "after"})
    after = subscription.get(timeout=1)
    assert after is not None and after.data == {"n": "after"}


def test_closing_the_hub_wakes_a_blocked_reader() -> None:
    hub = LocalHub()
    subscription = hub.subscribe(["board"])
    got: list[Event | None] = []
    reader = threading.Thread(target=lambda: got.append(subscription.get(timeout=30)))
    reader.start()
    hub.close()
    reader.join(timeout=5)
    assert not reader.is_alive() and got == [None] and subscription.closed


def test_a_closed_subscription_receives_nothing_more() -> None:
    hub = LocalHub()
    subscription = hub.subscribe(["board"])
    subscription.close()
    hub.publish("board", "visit", {})
    assert subscription.get(timeout=0.01) is None


def test_sse_text_carries_id_event_and_json_data_then_ends_when_the_hub_closes() -> None:
    hub = LocalHub()
    slots = StreamSlots(1)
    stream = sse_stream(hub, ["station:room1"], slots=slots, heartbeat=60,
                        first=[Event("station:room1", "state", {"devices": 2}, 0)])
    assert next(stream) == "retry: 2000\nevent: live\ndata: {}\n\n"
    assert next(stream) == 'id: 0\nevent: state\ndata: {"channel":"station:room1","devices":2}\n\n'
    hub.publish("station:room1", "reading", {"value": "97"})
    assert next(stream).startswith("id: 1\nevent: reading\ndata: ")
    hub.close()
    assert list(stream) == []
    assert slots.take(), "the ended stream gave its slot back"


def test_sse_sends_a_keep_alive_comment_when_nothing_happens() -> None:
    hub = LocalHub()
    slots = StreamSlots(1)
    stream = sse_stream(hub, ["board"], slots=slots, heartbeat=0.05)
    next(stream)
    assert next(stream) == ": keep-alive\n\n"
    stream.close()
    assert slots.take(), "a stream closed by its client gave its slot back"


def test_a_stream_beyond_the_limit_is_told_busy_and_holds_nothing() -> None:
    hub = LocalHub()
    slots = StreamSlots(1, waiters=0)
    first = sse_stream(hub, ["board"], slots=slots, heartbeat=60)
    assert "event: live" in next(first)
    refused = list(sse_stream(hub, ["board"], slots=slots, heartbeat=60))
    assert refused == ["retry: 10000\nevent: busy\ndata: {}\n\n"]
    first.close()
    again = sse_stream(hub, ["board"], slots=slots, heartbeat=60)
    assert "event: live" in next(again)
    again.close()


def test_a_response_that_is_never_sent_takes_no_slot() -> None:
    slots = StreamSlots(1)
    sse_stream(LocalHub(), ["board"], slots=slots).close()
    assert slots.take()


def test_the_stream_limit_leaves_request_threads_free() -> None:
    assert [StreamSlots.for_threads(n).limit for n in (4, 8, 32, 64)] == [1, 4, 24, 48]
    assert [StreamSlots.for_threads(n).waiters for n in (4, 8, 32, 64)] == [1, 1, 2, 4]


def test_a_stream_waits_briefly_for_a_slot_given_back_meanwhile() -> None:
    slots = StreamSlots(1, waiters=1)
    assert slots.take()
    threading.Timer(0.1, slots.give_back).start()
    assert slots.take(wait=5)
    assert not slots.take(wait=0.05)


def test_only_so_many_streams_wait_at_once() -> None:
    slots = StreamSlots(1, waiters=1)
    assert slots.take()
    waiting = threading.Thread(target=slots.take, kwargs={"wait": 0.5})
    waiting.start()
    while slots._waiting == 0:
        threading.Event().wait(0.01)
    assert not slots.take(wait=5), "a second waiter is refused at once"
    waiting.join()


def test_a_closed_hub_gives_only_closed_subscriptions_and_empty_streams() -> None:
    hub = LocalHub()
    hub.close()
    assert hub.subscribe(["board"]).closed
    slots = StreamSlots(1)
    assert list(sse_stream(hub, ["board"], slots=slots)) == []
    assert slots.take()
