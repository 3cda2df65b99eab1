"""The visit state machine: every pair of states is either allowed or refused, as the table says."""

from __future__ import annotations

import itertools

import pytest

from server.domain.visit import ACTIONS
from server.domain.visit import STATE_TEXT
from server.domain.visit import TRANSITIONS
from server.domain.visit import IllegalTransition
from server.domain.visit import VisitState
from server.domain.visit import actions_for
from server.domain.visit import next_state

S = VisitState

LEGAL = {
    (S.EXPECTED, S.ARRIVED), (S.EXPECTED, S.CANCELLED), (S.EXPECTED, S.NO_SHOW),
    (S.ARRIVED, S.ROOMED), (S.ARRIVED, S.EXPECTED), (S.ARRIVED, S.CHECKED_OUT), (S.ARRIVED, S.CANCELLED),
    (S.ROOMED, S.VITALS_TAKEN), (S.ROOMED, S.CHECKED_OUT),
    (S.VITALS_TAKEN, S.CHECKED_OUT),
    (S.NO_SHOW, S.ARRIVED),
}
ALL_PAIRS = list(itertools.product(VisitState, VisitState))


def test_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(VisitState)


@pytest.mark.parametrize(("current", "target"), sorted(LEGAL))
def test_legal_transition_returns_target(current: VisitState, target: VisitState) -> None:
    assert next_state(current, target) is target
    assert next_state(current.value, target.value) is target


@pytest.mark.parametrize(("current", "target"), [p for p in ALL_PAIRS if p not in LEGAL])
def test_illegal_transition_raises(current: VisitState, target: VisitState) -> None:
    with pytest.raises(IllegalTransition) as caught:
        next_state(current, target)
    assert caught.value.current is current
    assert caught.value.target is target
    text = str(caught.value)
    assert "_" not in text and STATE_TEXT[current].lower() in text


def test_final_states_have_no_way_out() -> None:
    assert TRANSITIONS[S.CHECKED_OUT] == frozenset()
    assert TRANSITIONS[S.CANCELLED] == frozenset()


def test_unknown_state_name_is_refused() -> None:
    with pytest.raises(ValueError):
        next_state("expected", "teleported")


def test_every_board_action_is_a_legal_edge() -> None:
    for action in ACTIONS:
        for source in action.sources:
            assert (source, action.target) in LEGAL


@pytest.mark.parametrize("role", ["front_desk", "assistant", "admin"])
@pytest.mark.parametrize("state", list(VisitState))
def test_board_offers_only_legal_changes_the_role_may_make(state: VisitState, role: str) -> None:
    for action in actions_for(state, role):
        assert (state, action.target) in LEGAL
        assert role == "admin" or role in action.roles


def test_finished_visits_offer_nothing_and_assistants_only_room() -> None:
    for state in (S.CHECKED_OUT, S.CANCELLED):
        assert actions_for(state, "admin") == []
    assert [a.label for a in actions_for(S.ARRIVED, "assistant")] == ["Room"]
    assert actions_for(S.EXPECTED, "assistant") == []
