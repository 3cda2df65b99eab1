"""Sign-in under the throttle: what the counting costs, and whether one address serialises a clinic.

Three figures, each beside a baseline measured in the same run, on SQLite and
(when ``FRONTDESK_BENCH_DATABASE_URL`` names a server) PostgreSQL:

1. One correct sign-in through the service (count the attempt under row locks,
   Argon2 check outside any lock, give the count back, open the session, two
   audit rows chained at commit), median of 100, against the bare Argon2
   verification that every sign-in pays anyway (the floor).
2. 30 staff signing in at the same moment from **one** address (a clinic behind
   NAT, which shares the per-address counter row) against 30 from 30 different
   addresses (no shared row): wall time for all 30. The address row is locked
   only while counting, not during the Argon2 check, so the two should be close.
3. 30 concurrent wrong guesses at one account from one address: how many
   passwords were actually checked (the policy allows 5), against a
   count-then-insert design (count the failure rows, check the password,
   insert a failure row, in one transaction; what Frontdesk did before) run on
   the same database at the same moment.

Run: ``.venv/bin/python bench/bench_sign_in_throttle.py``
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import typing as t
from pathlib import Path

from _postgres import bench_schemas
from _postgres import bench_url
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import Column
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import func
from sqlalchemy import select

from server import migrate
from server.config import Config
from server.db import make_engine
from server.models import AuditEvent
from server.models import StaffUser
from server.services import Services
from server.services import build_services
from server.services.staff import SignInFailed

PASSWORD = "correct horse battery"
SAMPLES = 100
CROWD = 30


def services_for(url: str, instance: Path, schema: str = "") -> Services:
    engine = make_engine(url, schema=schema or None)
    migrate.upgrade(engine)
    config = Config.for_tests(db_url=url, db_schema=schema, instance_dir=instance)
    return build_services(config, engine, secret="b" * 64)


def together(work: t.Callable[[int], None], count: int) -> float:
    """Run ``work(0..count-1)`` on ``count`` threads released at once; wall time in ms."""
    gate = threading.Barrier(count + 1)

    def run(number: int) -> None:
        gate.wait()
        work(number)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return (time.perf_counter() - started) * 1000


def measure(label: str, services: Services) -> None:
    hasher = PasswordHasher()
    stored = hasher.hash(PASSWORD)
    for number in range(CROWD):
        services.staff.add_user(f"staff{number}", "front_desk", PASSWORD)

    ours, floor = [], []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        services.staff.sign_in("staff0", PASSWORD, "10.9.0.1")
        ours.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        hasher.verify(stored, PASSWORD)
        floor.append((time.perf_counter() - started) * 1000)
    print(f"{label}: one correct sign-in        median {statistics.median(ours):7.1f} ms   "
          f"baseline (bare Argon2 verify) {statistics.median(floor):7.1f} ms")

    shared = together(lambda n: services.staff.sign_in(f"staff{n}", PASSWORD, "10.9.0.2"), CROWD)
    spread = together(lambda n: services.staff.sign_in(f"staff{n}", PASSWORD, f"10.9.1.{n}"), CROWD)
    print(f"{label}: {CROWD} sign-ins at once, one address {shared:7.0f} ms   "
          f"baseline ({CROWD} addresses) {spread:7.0f} ms")

    def guess(number: int) -> None:
        try:
            services.staff.sign_in("staff1", f"wrong {number}", "10.9.0.3")
        except SignInFailed:
            pass

    together(guess, CROWD)
    with services.uow.begin() as session:
        user_id = session.scalar(select(StaffUser.id).where(StaffUser.username == "staff1"))
        checked = session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "auth.sign_in", AuditEvent.detail == "bad_credentials",
            AuditEvent.actor_id == str(user_id)))
    print(f"{label}: {CROWD} concurrent wrong guesses      {checked} passwords checked (policy 5)   "
          f"baseline (count, then insert) {naive_checks(services, stored)} checked")


def naive_checks(services: Services, stored: str) -> int:
    """The count-then-insert throttle under the same 30 concurrent guesses; returns passwords checked."""
    failures = Table("bench_naive_failure", MetaData(), Column("id", Integer, primary_key=True),
                     Column("username", String(64)))
    failures.create(services.uow.engine)
    hasher = PasswordHasher()
    checked = []

    def guess(number: int) -> None:
        with services.uow.begin() as session:
            count = session.scalar(select(func.count()).select_from(failures).where(failures.c.username == "x"))
            if (count or 0) >= 5:
                return
            checked.append(number)
            try:
                hasher.verify(stored, f"wrong {number}")
            except VerificationError:
                session.execute(failures.insert().values(username="x"))

    together(guess, CROWD)
    return len(checked)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        services = services_for(f"sqlite:///{Path(tmp) / 'bench.db'}", Path(tmp))
        measure("SQLite    ", services)
        services.uow.engine.dispose()
        url = bench_url()
        if not url:
            return
        with bench_schemas(url) as [schema]:
            services = services_for(url, Path(tmp), schema)
            measure("PostgreSQL", services)
            services.uow.engine.dispose()


if __name__ == "__main__":
    main()
