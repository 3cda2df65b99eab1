"""What every service call carries: who acts, and what time it is."""

from __future__ import annotations

import datetime as dt
import typing as t
import uuid
from dataclasses import dataclass
from dataclasses import field


class Clock(t.Protocol):
    """A source of aware UTC time; injected so tests never sleep."""

    def now(self) -> dt.datetime:
        """The current time, aware, in UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        """The current time, aware, in UTC."""
        return dt.datetime.now(dt.UTC)


@dataclass
class FrozenClock:
    """A clock that moves only when told to (tests, replays)."""

    current: dt.datetime

    def now(self) -> dt.datetime:
        """The time last set."""
        return self.current

    def advance(self, **delta: float) -> None:
        """Move the clock forward by a :class:`datetime.timedelta` given as keywords."""
        self.current += dt.timedelta(**delta)


@dataclass(frozen=True)
class Actor:
    """Who is acting, for authorisation and the audit trail.

    ``actor_type`` is one of ``staff``, ``kiosk``, ``gateway``, ``peer`` (an HL7
    system) or ``system`` (the service itself, e.g. a CLI run by an operator);
    ``address`` is the network address the request came from.
    """

    actor_type: str
    actor_id: str
    role: str = ""
    address: str = ""
    correlation_id: str = field(default_factory=lambda: uuid.uuid4().hex)


SYSTEM = Actor("system", "frontdesk")
