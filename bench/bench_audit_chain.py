"""What the audit hash chain costs a transaction, and how long ``frontdesk audit verify`` takes.

Ours: 2,000 transactions, each recording one audit event through
:class:`server.services.audit.AuditTrail` (held on the session, chained at
commit under the chain head's row lock). Baseline, same run, same database:
2,000 transactions inserting the same row with the same prepared statement but
no chain (what the trail did before). Both single-threaded, then with 4
writers at once (the head lock is what the writers share). Then the time to
verify the whole chain. SQLite always; PostgreSQL when
``FRONTDESK_BENCH_DATABASE_URL`` names a server.

Run: ``.venv/bin/python bench/bench_audit_chain.py``
"""

from __future__ import annotations

import tempfile
import threading
import time
import typing as t
from pathlib import Path

from _postgres import bench_schemas
from _postgres import bench_url

from server import migrate
from server.config import Config
from server.db import make_engine
from server.services import Services
from server.services import build_services
from server.services.audit import INSERT_AUDIT_EVENT
from server.services.context import Actor

EVENTS = 2000
WRITERS = 4
ACTOR = Actor("staff", "7", role="front_desk", address="10.0.0.7")


def chained(services: Services, count: int) -> None:
    for number in range(count):
        with services.uow.begin() as session:
            services.audit.record(session, ACTOR, "visit.read", patient_id=number, resource_type="visit",
                                  resource_id=number)


def unchained(services: Services, count: int) -> None:
    for number in range(count):
        with services.uow.begin() as session:
            session.execute(INSERT_AUDIT_EVENT, {
                "at": services.clock.now(), "actor_type": ACTOR.actor_type, "actor_id": ACTOR.actor_id,
                "action": "visit.read", "outcome": "success", "patient_id": number, "resource_type": "visit",
                "resource_id": str(number), "address": ACTOR.address, "correlation_id": ACTOR.correlation_id,
                "detail": ""})


def rate(work: t.Callable[[Services, int], None], services: Services, writers: int) -> float:
    """Transactions per second for ``work`` split over ``writers`` threads."""
    share = EVENTS // writers
    threads = [threading.Thread(target=work, args=(services, share)) for _ in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return share * writers / (time.perf_counter() - started)


def measure(label: str, services: Services) -> None:
    for writers in (1, WRITERS):
        ours = rate(chained, services, writers)
        base = rate(unchained, services, writers)
        print(f"{label}: {writers} writer{'s' if writers > 1 else ' '}  chained {ours:7.0f} tx/s   "
              f"baseline (no chain) {base:7.0f} tx/s   ({ours / base:.2f}x)")


def verify_time(services: Services) -> None:
    chained(services, EVENTS * 5)
    started = time.perf_counter()
    result = services.audit_verifier.verify()
    elapsed = time.perf_counter() - started
    assert result.finding is None, result.finding
    print(f"          audit verify: {result.checked} rows in {elapsed * 1000:.0f} ms "
          f"({result.checked / elapsed:,.0f} rows/s)")


def services_for(url: str, instance: Path, schema: str = "") -> Services:
    engine = make_engine(url, schema=schema or None)
    migrate.upgrade(engine)
    return build_services(Config.for_tests(db_url=url, db_schema=schema, instance_dir=instance), engine,
                          secret="b" * 64)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        measure("SQLite    ", services_for(f"sqlite:///{Path(tmp) / 'a.db'}", Path(tmp)))
        verify_time(services_for(f"sqlite:///{Path(tmp) / 'b.db'}", Path(tmp)))
        url = bench_url()
        if not url:
            return
        with bench_schemas(url, 2) as schemas:
            measure("PostgreSQL", services_for(url, Path(tmp), schemas[0]))
            verify_time(services_for(url, Path(tmp), schemas[1]))


if __name__ == "__main__":
    main()
