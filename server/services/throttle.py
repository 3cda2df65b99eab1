"""Sign-in throttling that slows guessing without letting a guesser lock staff out (OWASP ASVS 6.3, 2.4).

Two counters, each one row under a row lock, so that concurrent attempts are
counted one at a time (on PostgreSQL 30 simultaneous guesses get exactly as
many password checks as the policy allows, not 10):

* **per (username, address) pair**: after ``login_max_failures_per_user``
  failures, each further try waits 1, 2, 4 … minutes after the last failure,
  capped at ``login_window_minutes``. It only locks that user *from that
  address*: a guesser elsewhere cannot lock a nurse out of her own workstation.
* **per address**: after ``login_max_failures_per_address`` failures (a
  password spray over many usernames), every try from that address waits 1, 2,
  4 … seconds after the last failure, capped at
  ``login_address_delay_cap_seconds``. Staff behind one NAT share it, so it is
  a short delay, never a lock.

An attempt made while waiting is refused *without* being counted and without
moving the last-failure time, so throttled tries never extend a lock (one try
every 45 seconds used to keep an account locked forever). Counts are forgotten
``login_window_minutes`` after the last failure.

Each attempt is counted against its pair *before* the password is checked (and
given back when it was right), which makes the pair's limit exact under
concurrency without holding a lock across the Argon2 check. The address counts
only failures, after the check: counting attempts in flight there would slow
a clinic whose staff sign in at the same moment from one address with the
right passwords (measured: some of 30 simultaneous correct sign-ins were
refused). The address limit is a brake, not a lock, so a few guesses in
flight past it (at most the server's thread count) cost nothing real.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from server.config import WebConfig
from server.models import LoginThrottle

PAIR, ADDRESS = "pair", "address"
PAIR_BASE_DELAY = dt.timedelta(minutes=1)
ADDRESS_BASE_DELAY = dt.timedelta(seconds=1)


def backoff(failures: int, free: int, base: dt.timedelta, cap: dt.timedelta) -> dt.timedelta:
    """How long to wait after the last failure: nothing for the first ``free`` failures, then doubling."""
    if failures < free:
        return dt.timedelta(0)
    delay: dt.timedelta = base * 2 ** min(failures - free, 30)
    return min(cap, delay)


@dataclass(frozen=True)
class Attempt:
    """One sign-in attempt as counted by :meth:`SignInThrottle.reserve`."""

    pair_key: str
    address_key: str
    throttled: bool
    pair_locked_now: bool


class SignInThrottle:
    """Counts sign-in attempts per (username, address) and per address; see the module docstring."""

    def __init__(self, *, policy: WebConfig, pepper: bytes) -> None:
        self.policy = policy
        self._pepper = pepper
        self._forget_after = dt.timedelta(minutes=policy.login_window_minutes)

    def username_key(self, username: str) -> str:
        """The keyed hash a username is stored under."""
        return self._key("user", username.strip().lower())

    def address_key(self, address: str) -> str:
        """The keyed hash an address is stored under."""
        return self._key("address", address)

    def reserve(self, session: Session, username: str, address: str, now: dt.datetime) -> Attempt:
        """Count an attempt against its pair, unless it must wait.

        Then call :meth:`give_back` when the password was right, or
        :meth:`record_failure` when it was wrong.
        """
        user_key = self.username_key(username)
        pair = self._locked_row(session, PAIR, self._key("pair", f"{user_key}\x00{address}"), user_key, now)
        by_address = self._locked_row(session, ADDRESS, self.address_key(address), "", now)
        pair_wait = self._wait(pair, self.policy.login_max_failures_per_user, PAIR_BASE_DELAY,
                               self._forget_after, now)
        address_wait = self._wait(by_address, self.policy.login_max_failures_per_address, ADDRESS_BASE_DELAY,
                                  dt.timedelta(seconds=self.policy.login_address_delay_cap_seconds), now)
        if pair_wait or address_wait:
            return Attempt(pair.key, by_address.key, True, False)
        pair.failures += 1
        pair.last_failure_at = now
        return Attempt(pair.key, by_address.key, False, pair.failures == self.policy.login_max_failures_per_user)

    def record_failure(self, session: Session, attempt: Attempt, now: dt.datetime) -> bool:
        """A counted attempt failed: count it against the address; ``True`` when that starts its slow-down."""
        row = self._locked_row(session, ADDRESS, attempt.address_key, "", now)
        row.failures += 1
        row.last_failure_at = now
        return row.failures == self.policy.login_max_failures_per_address

    def give_back(self, session: Session, attempt: Attempt) -> None:
        """The password was right: the pair starts afresh."""
        session.execute(delete(LoginThrottle).where(LoginThrottle.scope == PAIR,
                                                    LoginThrottle.key == attempt.pair_key))

    def unlock_user(self, session: Session, username: str) -> int:
        """Forget every failure counted against ``username``, from any address; returns how many keys."""
        result = session.execute(delete(LoginThrottle).where(LoginThrottle.scope == PAIR,
                                                             LoginThrottle.username_key == self.username_key(username)))
        return int(getattr(result, "rowcount", 0) or 0)

    def unlock_address(self, session: Session, address: str) -> int:
        """Forget the failures counted against an address; returns 1 if there were any."""
        result = session.execute(delete(LoginThrottle).where(LoginThrottle.scope == ADDRESS,
                                                             LoginThrottle.key == self.address_key(address)))
        return int(getattr(result, "rowcount", 0) or 0)

    def _key(self, kind: str, value: str) -> str:
        return hmac.new(self._pepper, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def _wait(self, row: LoginThrottle, free: int, base: dt.timedelta, cap: dt.timedelta,
              now: dt.datetime) -> bool:
        if row.last_failure_at is None:
            return False
        return now < row.last_failure_at + backoff(row.failures, free, base, cap)

    def _locked_row(self, session: Session, scope: str, key: str, username_key: str,
                    now: dt.datetime) -> LoginThrottle:
        """The counter row for ``key``, created if missing and locked until the transaction ends."""
        insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(insert(LoginThrottle).values(scope=scope, key=key, username_key=username_key, failures=0)
                        .on_conflict_do_nothing())
        row = session.scalars(select(LoginThrottle).where(LoginThrottle.scope == scope, LoginThrottle.key == key)
                              .with_for_update().execution_options(populate_existing=True)).one()
        if row.last_failure_at is not None and now - row.last_failure_at > self._forget_after:
            row.failures, row.last_failure_at = 0, None
        return row
