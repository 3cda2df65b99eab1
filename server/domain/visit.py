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
from dataclasses import dataclass


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

STATE_TEXT: dict[VisitState, str] = {
    S.EXPECTED: "Expected",
    S.ARRIVED: "Arrived",
    S.ROOMED: "In a room",
    S.VITALS_TAKEN: "Vitals taken",
    S.CHECKED_OUT: "Checked out",
    S.CANCELLED: "Cancelled",
    S.NO_SHOW: "Did not come",
}
"""What staff read for each state (never the stored name)."""

TRANSITIONS: dict[VisitState, frozenset[VisitState]] = {
    S.EXPECTED: frozenset({S.ARRIVED, S.CANCELLED, S.NO_SHOW}),
    S.ARRIVED: frozenset({S.ROOMED, S.EXPECTED, S.CHECKED_OUT, S.CANCELLED}),
    S.ROOMED: frozenset({S.VITALS_TAKEN, S.CHECKED_OUT}),
    S.VITALS_TAKEN: frozenset({S.CHECKED_OUT}),
    S.NO_SHOW: frozenset({S.ARRIVED}),
    S.CHECKED_OUT: frozenset(),
    S.CANCELLED: frozenset(),
}


def _refusal(current: VisitState, target: VisitState) -> str:
    if current is target:
        return f"This visit is already {STATE_TEXT[current].lower()}; nothing was changed."
    if not TRANSITIONS[current]:
        return f"This visit is {STATE_TEXT[current].lower()}, so it can no longer be changed here."
    return (f"This visit is {STATE_TEXT[current].lower()} now, so it cannot become "
            f"{STATE_TEXT[target].lower()}; nothing was changed.")


class IllegalTransition(ValueError):
    """A state change the visit rules do not allow."""

    def __init__(self, current: VisitState, target: VisitState) -> None:
        super().__init__(_refusal(current, target))
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


@dataclass(frozen=True)
class VisitAction:
    """A button on the board: the state it moves a visit to, from which states, and who may press it."""

    target: VisitState
    sources: frozenset[VisitState]
    label: str
    done: str
    roles: tuple[str, ...]


ACTIONS: tuple[VisitAction, ...] = (
    VisitAction(S.ARRIVED, frozenset({S.EXPECTED, S.NO_SHOW}), "Mark arrived", "marked as arrived", ("front_desk",)),
    VisitAction(S.ROOMED, frozenset({S.ARRIVED}), "Room", "put in a room", ("front_desk", "assistant")),
    VisitAction(S.EXPECTED, frozenset({S.ARRIVED}), "Cancel check-in", "back to expected (check-in cancelled)",
                ("front_desk",)),
    VisitAction(S.CHECKED_OUT, frozenset({S.ARRIVED, S.ROOMED, S.VITALS_TAKEN}), "Check out", "checked out",
                ("front_desk",)),
    VisitAction(S.NO_SHOW, frozenset({S.EXPECTED}), "Did not come", "marked as not come", ("front_desk",)),
    VisitAction(S.CANCELLED, frozenset({S.EXPECTED, S.ARRIVED}), "Cancel visit", "cancelled", ("front_desk",)),
)
"""What the board offers. ``vitals_taken`` is absent: "Send to chart" on a station page sets it.

Every action is a legal edge of :data:`TRANSITIONS` (a unit test holds the two together); the roles say
who may press it, and an administrator may press any.
"""


def may_set(role: str, target: str | VisitState) -> bool:
    """Whether ``role`` may move a visit to ``target`` from the board at all (from some state)."""
    return any(a.target == target and (role == "admin" or role in a.roles) for a in ACTIONS)


def actions_for(state: str | VisitState, role: str) -> list[VisitAction]:
    """The board's actions for a visit in ``state`` that ``role`` may take: exactly the legal ones."""
    state = VisitState(state)
    return [a for a in ACTIONS if state in a.sources and (role == "admin" or role in a.roles)]
