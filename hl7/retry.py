"""Retry timing for outbound HL7: capped exponential backoff with jitter.

The policy is a frozen value and its delay is a pure function of the attempt
number and an injected random source, so the dispatcher's timing can be tested
without sleeping and two dispatchers can share one policy object.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

# 2**64 seconds is far beyond any cap; clamping the exponent keeps the float
# arithmetic finite for absurd attempt counts instead of raising OverflowError.
_MAX_EXPONENT = 64


class RandomSource(t.Protocol):
    """Anything with ``random() -> float`` in ``[0, 1)``, such as :class:`random.Random`."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a message again after a retryable outcome, and when to stop.

    The delay before retry ``n`` (``n`` = attempts made so far, starting at 1) is::

        min(cap, base * 2 ** (n - 1)) + U(0, jitter)

    Why this shape: a fixed interval (Mirth) hammers a receiver that is down and
    floods it when it comes back; doubling backs off quickly, the cap keeps a
    long outage from pushing the next try hours away, and the jitter spreads
    the messages of many patients that failed together so they do not all hit
    the receiver in the same second when it returns.

    Why a finite ``max_attempts``: an infinite retry hides a permanent problem
    (Mirth #4144, #6313). After the last attempt the message becomes a dead
    letter that staff can see, retry or discard.

    :param base: delay after the first failed attempt, in seconds.
    :param cap: upper bound of the exponential part, in seconds.
    :param jitter: upper bound of the uniform random addition, in seconds.
    :param max_attempts: attempts allowed in total, the first one included.
    """

    base: float = 2.0
    cap: float = 300.0
    jitter: float = 1.0
    max_attempts: int = 20

    def __post_init__(self) -> None:
        if not self.base > 0:
            raise ValueError("base must be positive")
        if not self.cap >= self.base:
            raise ValueError("cap must be at least base")
        if not self.jitter >= 0:
            raise ValueError("jitter must not be negative")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay(self, attempt: int, rng: RandomSource) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        :raises ValueError: if ``attempt`` is less than 1.
        """
        if attempt < 1:
            raise ValueError("attempt is 1-based")
        exponent = min(attempt - 1, _MAX_EXPONENT)
        return min(self.cap, self.base * 2.0**exponent) + rng.random() * self.jitter

    def exhausted(self, attempts: int) -> bool:
        """True when ``attempts`` attempts have used up the allowance."""
        return attempts >= self.max_attempts


DEFAULT_RETRY_POLICY = RetryPolicy()
"""2 s, 4 s, 8 s … capped at 5 minutes, plus up to 1 s of jitter.

Dead letter after 20 attempts, a little over an hour of trying.
"""
