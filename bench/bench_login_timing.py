"""Sign-in timing: an unknown username must cost the same as a wrong password.

Measures the full HTTP sign-in (CSRF form, Argon2, throttling query, audit row)
through the Flask test client on SQLite, for three cases, 200 samples each,
interleaved so drift affects all alike: wrong password, unknown user, and the
baseline of the same unknown user with the dummy-hash verification skipped
(what a naive implementation does, and what makes account enumeration by timing
possible). Prints medians and p90 in milliseconds.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from pathlib import Path

from server import create_app
from server import migrate
from server.config import Config
from server.db import make_engine
from server.services.staff import StaffAccounts

SAMPLES = 200
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        migrate.upgrade(make_engine(url))
        config = Config.for_tests(db_url=url, instance_dir=Path(tmp),
                                  web={"login_max_failures_per_user": 10_000,
                                       "login_max_failures_per_address": 10_000})
        app = create_app(config)
        services = app.extensions["frontdesk"]
        services.staff.add_user("alice", "front_desk", "correct horse battery")
        client = app.test_client()
        token = CSRF.search(client.get("/staff/login").text).group(1)  # type: ignore[union-attr]

        def attempt(username: str) -> float:
            started = time.perf_counter()
            response = client.post("/staff/login", data={"csrf_token": token, "username": username,
                                                         "password": "wrong password"})
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200
            return elapsed

        original_verify = StaffAccounts._verify

        def naive_verify(self: StaffAccounts, password_hash: str, password: str) -> bool:
            if password_hash == self._dummy_hash:
                return False
            return original_verify(self, password_hash, password)

        wrong, unknown, naive = [], [], []
        for _ in range(SAMPLES):
            wrong.append(attempt("alice"))
            unknown.append(attempt("mallory"))
            StaffAccounts._verify = naive_verify  # type: ignore[method-assign]
            naive.append(attempt("mallory"))
            StaffAccounts._verify = original_verify  # type: ignore[method-assign]

    def summary(values: list[float]) -> str:
        return f"median {statistics.median(values):7.2f} ms   p90 {statistics.quantiles(values, n=10)[-1]:7.2f} ms"

    print(f"sign-in timing, {SAMPLES} samples each (Flask test client, SQLite, Argon2 defaults)")
    print(f"  wrong password          {summary(wrong)}")
    print(f"  unknown user (ours)     {summary(unknown)}")
    print(f"  unknown user (baseline: no dummy verification)  {summary(naive)}")
    gap = statistics.median(unknown) - statistics.median(wrong)
    naive_gap = statistics.median(naive) - statistics.median(wrong)
    print(f"  median gap unknown - wrong: ours {gap:+.2f} ms, baseline {naive_gap:+.2f} ms")


if __name__ == "__main__":
    main()
