"""Log lines are written on their own thread: a reader that stops reading costs lines, never the caller."""

from __future__ import annotations

import io
import json
import logging
import threading

from server.logs import BackgroundHandler
from server.logs import JsonFormatter


class StuckReader(io.StringIO):
    """A stream whose writes wait until the reader comes back (a full pipe, a paused terminal)."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.back = threading.Event()

    def write(self, text: str) -> int:
        self.writing.set()
        self.back.wait()
        return super().write(text)


def record(index: int) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "frontdesk.test", "levelno": logging.INFO, "levelname": "INFO",
                                  "msg": "test.event", "count": index})


def test_a_stuck_reader_never_holds_up_the_caller_and_dropped_lines_are_counted() -> None:
    stream = StuckReader()
    handler = BackgroundHandler(stream, limit=3)
    handler.setFormatter(JsonFormatter())
    handler.handle(record(0))
    assert stream.writing.wait(5)
    for index in range(1, 10):
        handler.handle(record(index))  # the writer is stuck on line 0: 1-3 wait, 4-9 are dropped
    stream.back.set()
    handler.flush()
    handler.handle(record(10))
    handler.flush()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["event"], line["count"]) for line in lines] == [
        ("test.event", 0), ("test.event", 1), ("test.event", 2), ("test.event", 3), ("log.dropped", 6),
        ("test.event", 10)]
    assert lines[4]["level"] == "warning"


def test_flush_writes_every_waiting_line() -> None:
    stream = io.StringIO()
    handler = BackgroundHandler(stream)
    handler.setFormatter(JsonFormatter())
    for index in range(200):
        handler.handle(record(index))
    handler.flush()
    assert [json.loads(line)["count"] for line in stream.getvalue().splitlines()] == list(range(200))
