"""A reference records system: receives HL7 over MLLP, de-duplicates, stores, acknowledges.

It stands in for the clinic's EHR in the demo and the tests, and it behaves the
way we ask real receivers to behave: a message is stored once per
(MSH-3, MSH-4, MSH-10) however many times it arrives, and a resend gets the
ACK stored with the first copy, so at-least-once delivery from the outbox
has exactly-once effect here.

It can also misbehave on purpose (:class:`ReplyMode`): answer AE or AR, never
answer, or answer late, so the dispatcher's retry and dead-letter paths can
be rehearsed against a real peer.

One line per message goes to the output (time, MSH-9, MSH-10, outcome). Names,
dates of birth and other content never do.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import typing as t
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hl7.ack import ErrorDetail
from hl7.ack import build_ack
from hl7.er7 import Message
from hl7.er7 import parse_message
from hl7.listener import MLLPListener
from hl7.listener import PeerInfo

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    sending_application TEXT NOT NULL,
    sending_facility TEXT NOT NULL,
    control_id TEXT NOT NULL,
    message_type TEXT NOT NULL,
    payload BLOB NOT NULL,
    ack BLOB NOT NULL,
    UNIQUE (sending_application, sending_facility, control_id)
)
"""


@dataclass(frozen=True, slots=True)
class ReplyMode:
    """How the records server answers.

    :param code: ``AA`` (store and accept), ``AE`` or ``AR`` (reject without
        storing), or ``None`` (store, never answer: an ACK lost on the way).
    :param delay: seconds to wait before answering (an ACK slower than the
        sender's timeout).
    """

    code: str | None = "AA"
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.code not in ("AA", "AE", "AR", None):
            raise ValueError(f"reply code must be AA, AE, AR or none, not {self.code!r}")
        if not self.delay >= 0:
            raise ValueError("delay must not be negative")

    @classmethod
    def parse(cls, text: str) -> ReplyMode:
        """Read the command-line form: ``AA``, ``AE``, ``AR``, ``none`` or ``slow=SECONDS``.

        :raises ValueError: for anything else.
        """
        spec = text.strip()
        if spec.lower() == "none":
            return cls(code=None)
        if spec.lower().startswith("slow="):
            try:
                delay = float(spec[5:])
            except ValueError:
                raise ValueError(f"slow needs a number of seconds, not {spec[5:]!r}") from None
            return cls(code="AA", delay=delay)
        return cls(code=spec.upper())


ACCEPT = ReplyMode()
"""Store and answer AA: how the records server behaves unless told otherwise."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One stored message, in arrival order."""

    sending_application: str
    sending_facility: str
    control_id: str
    message_type: str
    payload: bytes


@dataclass(slots=True)
class _Pending:
    """One message waiting for the next group commit, and its outcome once committed."""

    row: tuple[t.Any, ...]
    ack: bytes
    result: tuple[bool, bytes] | None = None
    error: BaseException | None = None


_INSERT = ("INSERT OR IGNORE INTO message (received_at, sending_application, sending_facility, control_id,"
           " message_type, payload, ack) VALUES (?, ?, ?, ?, ?, ?, ?)")
_FIND_ACK = "SELECT ack FROM message WHERE sending_application = ? AND sending_facility = ? AND control_id = ?"


class RecordStore:
    """The records server's own SQLite file, safe to use from listener threads.

    WAL with ``synchronous=FULL``: once the ACK has gone out, the message must
    survive a power cut, or the sender (which has marked it delivered) and this
    store disagree forever.

    Group commit: messages arriving on several connections at once are written
    in one transaction (one sync to disk) by whichever thread gets to commit
    first, while the others wait for that commit; each ACK still goes out only
    after its message is on disk. One sync per message would cap the store at
    the disk's sync rate whatever the number of connections.

    :param path: database file; created with its table if missing.
    """

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, message: StoredMessage, ack: bytes, received_at: dt.datetime) -> tuple[bool, bytes]:
        """Store ``message`` with its ACK unless its key is already stored; returns once it is on disk.

        :returns: ``(True, ack)`` for a new message; ``(False, first_ack)`` for a
            duplicate, with the ACK sent for the first copy.
        """
        entry = _Pending((received_at.isoformat(), message.sending_application, message.sending_facility,
                          message.control_id, message.message_type, message.payload, ack), ack)
        with self._queue_lock:
            self._pending.append(entry)
        with self._lock:
            if entry.result is None:
                with self._queue_lock:
                    group, self._pending = self._pending, []
                self._commit(group)
        if entry.error is not None:
            raise entry.error
        assert entry.result is not None
        return entry.result

    def _commit(self, group: list[_Pending]) -> None:
        """Write a group in one transaction; a repeat (even within the group) gets the first copy's ACK."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            results = []
            for entry in group:
                if self._db.execute(_INSERT, entry.row).rowcount == 1:
                    results.append((True, entry.ack))
                else:
                    results.append((False, bytes(self._db.execute(_FIND_ACK, entry.row[1:4]).fetchone()[0])))
            self._db.execute("COMMIT")
        except BaseException as exc:
            self._db.execute("ROLLBACK")
            for entry in group:
                entry.error = exc
            raise
        for entry, result in zip(group, results, strict=True):
            entry.result = result

    def messages(self) -> list[StoredMessage]:
        """Every stored message, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sending_application, sending_facility, control_id, message_type, payload"
                " FROM message ORDER BY id"
            ).fetchall()
        return [StoredMessage(a, f, c, m, bytes(p)) for a, f, c, m, p in rows]


def _printable(text: str) -> str:
    """Keep a logged field on one line: an LF or other control character cannot forge a log entry."""
    if text.isprintable():
        return text or "-"
    return "".join(c if c.isprintable() else "?" for c in text)


def _message_type(message: Message) -> str:
    parts = [message.msh.value(9, c) for c in (1, 2, 3)]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _random_control_id() -> str:
    return uuid.uuid4().hex[:20].upper()


ReplyRule = Callable[[Message], ReplyMode]
"""Chooses the reply per message, for rehearsals that single out one patient."""


class RecordsServer:
    """The message handler of the reference records system; serve it with :class:`hl7.listener.MLLPListener`.

    :param store: where messages go.
    :param reply: one :class:`ReplyMode` for every message, or a rule choosing per message.
    :param emit: receives each output line (print to stdout in the CLI).
    :param clock: receive time, and MSH-7 of our ACKs.
    :param ack_ids: MSH-10 of our ACKs.
    """

    def __init__(
        self,
        store: RecordStore,
        *,
        reply: ReplyMode | ReplyRule = ACCEPT,
        emit: Callable[[str], None] = print,
        clock: Callable[[], dt.datetime] = _utc_now,
        ack_ids: Callable[[], str] = _random_control_id,
    ) -> None:
        self.store = store
        self.reply = reply
        self.emit = emit
        self.clock = clock
        self.ack_ids = ack_ids
        self._closing = threading.Event()
        self._emit_lock = threading.Lock()

    def close(self) -> None:
        """Cut short any deliberate delay so a listener can shut down promptly."""
        self._closing.set()

    def __call__(self, data: bytes, peer: PeerInfo) -> bytes | None:
        """Handle one message (the :data:`hl7.listener.Handler` signature)."""
        message = parse_message(data)
        mode = self.reply(message) if callable(self.reply) else self.reply
        if mode.delay:
            self._closing.wait(mode.delay)
        now = self.clock()
        msh = message.msh
        control_id = msh.value(10)
        ack: bytes | None
        if not control_id:
            outcome = "rejected AE (no MSH-10)"
            ack = self._ack(message, "AE", "MSH-10 message control id is required", now, code_0357="101")
        elif mode.code in ("AE", "AR"):
            outcome = f"rejected {mode.code}"
            ack = self._ack(message, mode.code, f"rehearsed {mode.code} from the reference records server", now)
        else:
            stored = StoredMessage(msh.value(3), msh.value(4), control_id, _message_type(message), data)
            new, ack = self.store.add(stored, self._ack(message, "AA", "", now), now)
            outcome = "stored" if new else "duplicate"
            if mode.code is None:
                outcome += " (no reply)"
                ack = None
        timestamp = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._emit_lock:
            self.emit(f"{timestamp} {_printable(_message_type(message))} {_printable(control_id)} {outcome}")
        return ack

    def _ack(self, message: Message, code: str, text: str, now: dt.datetime, *, code_0357: str = "207") -> bytes:
        errors = (ErrorDetail(text=text, code=code_0357),) if text else ()
        return build_ack(message, code, errors=errors, control_id=self.ack_ids(), now=now)


class RecordsSystem:
    """Store, handler and listener together: the whole reference records system in one object.

    The ``records-server`` command and the demo run it; tests stop and start it
    to simulate an outage, and :meth:`start` after :meth:`stop` binds the same
    port again, as a restarted receiver would.

    :param store_path: the SQLite file.
    :param reply: see :class:`RecordsServer`.
    :param emit: receives each output line.
    :param listener_options: passed to :class:`~hl7.listener.MLLPListener`
        (``host``, ``port``, ``ssl_context``, ``allowed_senders``, timeouts …).
    """

    def __init__(
        self,
        store_path: str | Path,
        *,
        reply: ReplyMode | ReplyRule = ACCEPT,
        emit: Callable[[str], None] = print,
        **listener_options: t.Any,
    ) -> None:
        self.store = RecordStore(store_path)
        self.records = RecordsServer(self.store, reply=reply, emit=emit)
        # 2576: the records system's port in the demo, next to our own listener's 2575.
        self._options = {"host": "127.0.0.1", "port": 2576, **listener_options}
        self._listener: MLLPListener | None = None

    @property
    def running(self) -> bool:
        return self._listener is not None

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens, or last listened; port 0 until the first :meth:`start` picks one."""
        return str(self._options["host"]), int(self._options["port"])

    def start(self) -> None:
        """Listen; the first start fixes the port (0 picks a free one) for later restarts."""
        if self._listener is not None:
            raise RuntimeError("records system already running")
        listener = MLLPListener(self.records, **self._options)
        listener.start()
        self._listener = listener
        self._options["host"], self._options["port"] = listener.address

    def stop(self) -> None:
        """Stop listening and drop connections; the store stays open for a later :meth:`start`."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def close(self) -> None:
        """Stop for good: cut short deliberate delays, stop listening, close the store."""
        self.records.close()
        self.stop()
        self.store.close()

    def __enter__(self) -> RecordsSystem:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
