"""Engines and the unit of work.

SQLite is the embedded default (one clinic, one machine); PostgreSQL serves
clinics with several kiosks and processes. Both get the same models and
migrations; what differs is set up here.

SQLite: ``journal_mode=WAL``, ``synchronous=FULL`` because with NORMAL a
committed WAL transaction may roll back after a power loss (not acceptable for
patient data), ``foreign_keys=ON`` and a busy timeout. Python's ``sqlite3``
module opens transactions lazily and not before a SELECT, which breaks
SQLAlchemy's transaction semantics; we turn that off and emit ``BEGIN
IMMEDIATE`` ourselves for every transaction, reads included. That takes the
write lock up front, so transactions run one at a time and wait for each other
instead of failing on a lock upgrade; they are short, and one clinic's load
never needs more concurrency than that.
"""

from __future__ import annotations

import contextlib
import threading
import typing as t

from sqlalchemy import ColumnElement
from sqlalchemy import Engine
from sqlalchemy import any_
from sqlalchemy import bindparam
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 10_000
MAX_KEPT_CONNECTIONS = 64
"""PostgreSQL connections a process keeps open at most; requests beyond them connect for themselves."""


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or opened; the message is fit for an operator."""


def normalise_url(url: str) -> str:
    """Map plain ``postgresql://`` URLs to the psycopg 3 driver."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, echo: bool = False, schema: str | None = None, connections: int = 5) -> Engine:
    """Create an engine with the per-backend settings described in the module docstring.

    Bound parameters are kept out of error messages: they are patient data, and
    a database error's text ends up in tracebacks and terminals.

    :param schema: PostgreSQL only: the schema to work in (``search_path``), which
        is how test runs isolate themselves on a shared server.
    :param connections: PostgreSQL only: how many connections to keep open, one per
        request served at once. Fewer would make requests beyond them open and close a
        connection of their own each time (a new server process: tens of ms).
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, hide_parameters=True,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    connect_args: dict[str, t.Any] = {"connect_timeout": 5}
    if schema:
        connect_args["options"] = f"-c search_path={schema}"
    kept = min(connections, MAX_KEPT_CONNECTIONS)
    engine = create_engine(url, echo=echo, hide_parameters=True, pool_pre_ping=True, connect_args=connect_args,
                           pool_size=kept, max_overflow=max(connections - kept, 0))
    event.listen(engine, "connect", _postgresql_on_connect)
    return engine


def _postgresql_on_connect(dbapi_connection: t.Any, _record: t.Any) -> None:
    """Plan each statement for its own parameters.

    The driver prepares a statement it has run a few times, and the server then
    settles on one generic plan, made while the tables were small: after a
    backlog arrives that plan scans whole tables where an index finds the rows
    (a look-up of 32 patients: 7 ms instead of 1). Set with ``SET`` rather than
    a startup option, which connection poolers such as PgBouncer refuse.
    """
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_custom_plan")
    dbapi_connection.autocommit = autocommit


def one_of(column: ColumnElement[t.Any], name: str, dialect: str) -> ColumnElement[bool]:
    """``column`` equal to one of the values of the list bound as ``name``, for the backend named ``dialect``.

    PostgreSQL gets ``= ANY(:name)`` with one array parameter: one statement
    whatever the list's length, where ``IN (…)`` is a different statement, to
    parse, prepare and plan, for each length (a group's look-up of 32 patients:
    1.1 ms with ``ANY``, 2.2–3.9 ms with ``IN``). SQLite has no arrays and gets
    ``IN`` with an expanding parameter.
    """
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def _sqlite_on_connect(dbapi_connection: t.Any, _record: t.Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                   f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_on_begin(connection: t.Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class UnitOfWork:
    """Hands out sessions whose transaction a service owns from start to end.

    ``with uow.begin() as session:`` commits when the block ends normally and
    rolls back when it raises, so a domain change, its outbox message and its
    audit row are written together or not at all.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._factory = sessionmaker(engine, expire_on_commit=False)
        # SQLite runs one transaction at a time (BEGIN IMMEDIATE). Threads of this process queue on a
        # lock instead, which hands over the moment the holder commits; SQLite's own busy handler
        # polls with sleeps of up to 100 ms, which under load becomes the whole tail latency.
        self._turn = threading.RLock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()

    @contextlib.contextmanager
    def begin(self) -> t.Iterator[Session]:
        """A session inside one transaction."""
        with self._turn, self._factory() as session, session.begin():
            yield session
