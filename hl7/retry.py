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

    Why ``max_attempts`` counts only the receiver's own rejections (``AR``,
    ``CE``): a message the receiver keeps refusing will not go in by waiting,
    and an endless retry hides that (Mirth #4144, #6313), so after the last
    allowed rejection it becomes a dead letter that staff can see, retry or
    discard. A transport failure (refused, timed out, TLS) says nothing about
    the message: counting it would turn every queued message into a dead letter
    during an outage or after a certificate expired, each holding its patient.
    Those are retried at the capped delay for as long as it takes, and the
    backlog's age is what alerts (see :mod:`server.services.outbox`).

    :param base: delay after the first failed attempt, in seconds.
    :param cap: upper bound of the exponential part, in seconds.
    :param jitter: upper bound of the uniform random addition, in seconds.
    :param max_attempts: receiver rejections (``AR``/``CE``) allowed before the message is a dead letter.
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

    def exhausted(self, rejections: int) -> bool:
        """True when ``rejections`` receiver rejections have used up the allowance."""
        return rejections >= self.max_attempts


DEFAULT_RETRY_POLICY = RetryPolicy()
"""2 s, 4 s, 8 s … capped at 5 minutes, plus up to 1 s of jitter.

Dead letter after the receiver rejected the message 20 times; transport failures never dead-letter.
"""
