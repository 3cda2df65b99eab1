from __future__ import annotations

import random

import pytest

from hl7.retry import RetryPolicy


class FixedRandom:
    """A random source that always returns the same value."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_delay_doubles_from_base() -> None:
    policy = RetryPolicy(base=1.0, cap=100.0, jitter=0.0)
    assert [policy.delay(n, FixedRandom(0.0)) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_delay_is_capped() -> None:
    policy = RetryPolicy(base=5.0, cap=100.0, jitter=0.0)
    assert [policy.delay(n, FixedRandom(0.0)) for n in range(1, 8)] == [5, 10, 20, 40, 80, 100, 100]


def test_jitter_is_added_on_top_of_the_cap() -> None:
    policy = RetryPolicy(base=1.0, cap=10.0, jitter=4.0)
    assert policy.delay(1, FixedRandom(0.5)) == 3.0
    assert policy.delay(30, FixedRandom(0.5)) == 12.0


def test_jitter_stays_within_bounds_for_a_real_random_source() -> None:
    policy = RetryPolicy(base=1.0, cap=8.0, jitter=2.0)
    rng = random.Random(1234)
    for attempt in range(1, 50):
        exponential = min(8.0, 2.0 ** (attempt - 1))
        assert exponential <= policy.delay(attempt, rng) < exponential + 2.0


def test_same_seed_gives_same_delays() -> None:
    policy = RetryPolicy()
    first = [policy.delay(n, random.Random(7)) for n in range(1, 10)]
    second = [policy.delay(n, random.Random(7)) for n in range(1, 10)]
    assert first == second


def test_huge_attempt_number_does_not_overflow() -> None:
    assert RetryPolicy(base=1.0, cap=60.0, jitter=0.0).delay(10_000, FixedRandom(0.0)) == 60.0


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError):
        RetryPolicy().delay(0, FixedRandom(0.0))


def test_exhausted_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, True, True]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": 0.0},
        {"base": 10.0, "cap": 5.0},
        {"jitter": -1.0},
        {"max_attempts": 0},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_frozen() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.base = 3.0  # type: ignore[misc]
