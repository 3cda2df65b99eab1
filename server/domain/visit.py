"""The visit state machine: the one place that says which state may follow which.

The straight line is ``expected → arrived → roomed → vitals_taken →
checked_out``; the other edges are ``arrived → expected``, ``arrived →
checked_out``, ``roomed → checked_out``, ``expected → cancelled``, ``arrived →
cancelled``, ``expected → no_show`` and ``no_show → arrived``.

Why these edges beyond the straight line:

* ``arrived → expected`` undoes a mistaken check-in (reported as ADT^A11), the
  visit goes back to waiting for the patient rather than being destroyed.
* ``arrived``/``roomed → checked_out``: a patient may leave without vitals
  (walk-out, telehealth follow-up); the front desk still closes the visit.
* ``no_show → arrived``: the scheduler marks no-shows by the clock, and patients
  who come late are still seen.
* ``checked_out`` and ``cancelled`` are final: corrections after that are made in
  the records system, not by reopening the visit here.
"""

from __future__ import annotations

import enum


class VisitState(enum.StrEnum):
    """Where a patient's visit stands today."""

    EXPECTED = "expected"
    ARRIVED = "arrived"
    ROOMED = "roomed"
    VITALS_TAKEN = "vitals_taken"
    CHECKED_OUT = "checked_out"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"


S = VisitState

TRANSITIONS: dict[VisitState, frozenset[VisitState]] = {
    S.EXPECTED: frozenset({S.ARRIVED, S.CANCELLED, S.NO_SHOW}),
    S.ARRIVED: frozenset({S.ROOMED, S.EXPECTED, S.CHECKED_OUT, S.CANCELLED}),
    S.ROOMED: frozenset({S.VITALS_TAKEN, S.CHECKED_OUT}),
    S.VITALS_TAKEN: frozenset({S.CHECKED_OUT}),
    S.NO_SHOW: frozenset({S.ARRIVED}),
    S.CHECKED_OUT: frozenset(),
    S.CANCELLED: frozenset(),
}


class IllegalTransition(ValueError):
    """A state change the visit rules do not allow."""

    def __init__(self, current: VisitState, target: VisitState) -> None:
        super().__init__(f"a visit cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


class VitalsNotCharted(IllegalTransition):
    """``vitals_taken`` asked for a visit that has no charted vitals."""

    def __init__(self) -> None:
        ValueError.__init__(self, "Vitals are recorded by sending them to the chart from a station page "
                                  "(Stations, then \"Take vitals\"); this visit has none yet.")
        self.current = VisitState.ROOMED
        self.target = VisitState.VITALS_TAKEN


def next_state(current: str | VisitState, target: str | VisitState) -> VisitState:
    """Check that ``current → target`` is allowed and return ``target``.

    :raises IllegalTransition: when it is not (including a change to the same state).
    :raises ValueError: for a name that is not a state at all.
    """
    current, target = VisitState(current), VisitState(target)
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return target
