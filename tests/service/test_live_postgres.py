"""Live events between processes through PostgreSQL LISTEN/NOTIFY (two hubs stand for two processes)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from server.live import RESYNC
from server.live import PostgresHub

pytestmark = pytest.mark.postgres


def test_an_event_published_in_one_process_reaches_a_subscriber_in_another(postgres_url: str) -> None:
    channel = f"frontdesk_t{uuid.uuid4().hex[:12]}"
    serving, ingesting = PostgresHub(postgres_url, channel), PostgresHub(postgres_url, channel)
    try:
        page = serving.subscribe(["station:room1"])
        assert serving.wait_listening(10)
        ingesting.publish("station:room1", "reading", {"metric": "spo2", "value": "97"})
        event = page.get(timeout=10)
        assert event is not None and event.kind == "reading" and event.data["value"] == "97"
        ingesting.publish("board", "visit", {"id": 1})
        assert page.get(timeout=0.5) is None
    finally:
        serving.close()
        ingesting.close()


def test_separate_channels_keep_instances_sharing_a_database_apart(postgres_url: str) -> None:
    mine, theirs = PostgresHub(postgres_url, "frontdesk_ta"), PostgresHub(postgres_url, "frontdesk_tb")
    try:
        page = mine.subscribe(["board"])
        assert mine.wait_listening(10)
        theirs.publish("board", "visit", {"id": 1})
        assert page.get(timeout=1) is None
    finally:
        mine.close()
        theirs.close()


def test_a_lost_listener_connection_reconnects_and_tells_pages_to_resync(postgres_url: str) -> None:
    channel = f"frontdesk_t{uuid.uuid4().hex[:12]}"
    hub = PostgresHub(postgres_url, channel)
    try:
        page = hub.subscribe(["board"])
        assert hub.wait_listening(10)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE query LIKE %s AND pid <> pg_backend_pid()", (f'LISTEN "{channel}"%',))
        event = page.get(timeout=15)
        assert event is not None and event.kind == RESYNC
        assert hub.wait_listening(10)
        hub.publish("board", "visit", {"id": 2})
        again = page.get(timeout=10)
        assert again is not None and again.data == {"id": 2}
    finally:
        hub.close()
