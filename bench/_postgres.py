"""A throwaway PostgreSQL schema for the benchmarks that also run on PostgreSQL.

``FRONTDESK_BENCH_DATABASE_URL`` names the server; without it those parts are
skipped. Imported by the bench scripts, which run with ``bench/`` first on
``sys.path``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg

PG_ENV = "FRONTDESK_BENCH_DATABASE_URL"


@contextlib.contextmanager
def bench_schemas(url: str, count: int = 1) -> Iterator[list[str]]:
    """Create ``count`` empty schemas and drop them, with all they hold, afterwards."""
    schemas = [f"bench_{uuid.uuid4().hex[:12]}" for _ in range(count)]
    with psycopg.connect(url, autocommit=True) as connection:
        for schema in schemas:
            connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schemas
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            for schema in schemas:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def bench_url() -> str:
    """The PostgreSQL server to run on, or "" to skip (and say so)."""
    url = os.environ.get(PG_ENV, "")
    if not url:
        print(f"PostgreSQL skipped: set {PG_ENV} to run it")
    return url
