"""Answers, ``enableWhen`` and calculated items: what is asked, given what has been answered.

Answers are kept as a mapping ``linkId -> [canonical strings]`` (a choice is
its code, a boolean ``true``/``false``, a date ``YYYY-MM-DD``), which is what a
kiosk draft stores as JSON and what a form posts. :func:`evaluate` works out
which items are enabled and the value of every calculated item; the two
depend on each other (PHQ-9 items 3-9 are enabled by the calculated PHQ-2
total), so it repeats until nothing changes.

Calculated items are evaluated with FHIRPath (``fhirpathpy``) against the
QuestionnaireResponse built so far, with ``%resource``, ``%questionnaire``
and the ``variable`` extensions in scope, as SDC describes.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import json
import re
import threading
import typing as t
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from decimal import InvalidOperation

import fhirpathpy

from server.questionnaires.model import Coding
from server.questionnaires.model import EnableWhen
from server.questionnaires.model import Item
from server.questionnaires.model import Questionnaire

Answers = dict[str, list[str]]
Value = bool | int | Decimal | str | dt.date | Coding

MAX_STRING = 200
MAX_TEXT = 2000
DATE_RE = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{1,2})\s*/\s*(\d{4})\s*$")


def typed(item: Item, raw: str) -> Value:
    """The typed value of a stored answer string for ``item``."""
    if item.type == "boolean":
        return raw == "true"
    if item.type == "integer":
        return int(raw)
    if item.type == "decimal":
        return Decimal(raw)
    if item.type == "date":
        return dt.date.fromisoformat(raw)
    if item.type == "choice":
        option = item.option(raw)
        return option.coding if option else Coding("", raw)
    return raw


@dataclass(frozen=True)
class Evaluation:
    """Which items are enabled and what the calculated items come to."""

    enabled: frozenset[str]
    calculated: dict[str, Decimal]

    def answered(self, questionnaire: Questionnaire, answers: Answers) -> Answers:
        """``answers`` without those to items that are not enabled (they are not part of the response)."""
        return {link_id: values for link_id, values in answers.items()
                if link_id in self.enabled and values and _exists(questionnaire, link_id)}


def _exists(questionnaire: Questionnaire, link_id: str) -> bool:
    try:
        questionnaire.item(link_id)
    except KeyError:
        return False
    return True


_EVALUATIONS: collections.OrderedDict[tuple[int, str], Evaluation] = collections.OrderedDict()
_EVALUATIONS_LOCK = threading.Lock()
EVALUATION_CACHE = 512


def evaluate(questionnaire: Questionnaire, answers: Answers) -> Evaluation:
    """Enabled items and calculated values for ``answers``, remembered for the last few hundred answer sets.

    One kiosk request asks this several times for the same answers (which page is next, is this page
    complete, which flags it raises), and FHIRPath evaluation is the costliest step of a request.
    Questionnaires live as long as the process, so their identity is a safe part of the key.
    """
    key = (id(questionnaire), json.dumps(answers, sort_keys=True))
    with _EVALUATIONS_LOCK:
        found = _EVALUATIONS.get(key)
        if found is not None:
            _EVALUATIONS.move_to_end(key)
            return found
    result = _evaluate(questionnaire, answers)
    with _EVALUATIONS_LOCK:
        _EVALUATIONS[key] = result
        while len(_EVALUATIONS) > EVALUATION_CACHE:
            _EVALUATIONS.popitem(last=False)
    return result


def _evaluate(questionnaire: Questionnaire, answers: Answers) -> Evaluation:
    """Enabled items and calculated values for ``answers`` (see the module docstring).

    Starts from "everything enabled" and narrows: a condition reads the answers
    of its question only while that question is itself enabled, and a
    calculated value only counts answers to enabled items.
    """
    calculated: dict[str, Decimal] = {}
    enabled = frozenset(item.link_id for item in questionnaire.walk())
    for _ in range(len(questionnaire.items) + 4):
        effective = {k: v for k, v in answers.items() if k in enabled}
        new_calculated = _calculate(questionnaire, effective, calculated, enabled)
        new_enabled = frozenset(_enabled(questionnaire, effective, new_calculated))
        if new_enabled == enabled and new_calculated == calculated:
            break
        enabled, calculated = new_enabled, new_calculated
    return Evaluation(enabled, calculated)


def _enabled(questionnaire: Questionnaire, answers: Answers, calculated: dict[str, Decimal]) -> set[str]:
    enabled: set[str] = set()

    def visit(item: Item) -> None:
        if item.enable_when:
            results = [_holds(questionnaire, c, answers, calculated) for c in item.enable_when]
            if not (any(results) if item.enable_behavior == "any" else all(results)):
                return
        enabled.add(item.link_id)
        for child in item.items:
            visit(child)

    for item in questionnaire.items:
        visit(item)
    return enabled


def _holds(questionnaire: Questionnaire, condition: EnableWhen, answers: Answers,
           calculated: dict[str, Decimal]) -> bool:
    item = questionnaire.item(condition.question)
    values: list[Value]
    if condition.question in calculated:
        values = [calculated[condition.question]]
    else:
        values = [typed(item, raw) for raw in answers.get(condition.question, [])]
    if condition.operator == "exists":
        return bool(values) == bool(condition.answer)
    if condition.operator == "!=":
        return not values or all(not _equal(v, condition.answer) for v in values)
    return any(_compare(v, condition.operator, condition.answer) for v in values)


def _equal(value: Value, expected: t.Any) -> bool:
    if isinstance(value, Coding) and isinstance(expected, Coding):
        return value.code == expected.code and (not expected.system or value.system == expected.system)
    if isinstance(value, dt.date) and isinstance(expected, str):
        return value.isoformat() == expected
    return bool(value == expected)


def _compare(value: Value, operator: str, expected: t.Any) -> bool:
    if operator == "=":
        return _equal(value, expected)
    try:
        left, right = _number(value), _number(expected)
        if isinstance(left, dt.date):
            right = dt.date.fromisoformat(str(expected))
        comparisons: dict[str, t.Callable[[t.Any, t.Any], bool]] = {
            ">": lambda a, b: bool(a > b), "<": lambda a, b: bool(a < b),
            ">=": lambda a, b: bool(a >= b), "<=": lambda a, b: bool(a <= b)}
        return comparisons[operator](left, right)
    except (TypeError, ValueError, InvalidOperation):
        return False


@functools.lru_cache(maxsize=1024)
def compiled(expression: str) -> t.Callable[[t.Any, dict[str, t.Any]], list[t.Any]]:
    """A FHIRPath expression parsed once (parsing costs far more than evaluating)."""
    return t.cast(t.Callable[[t.Any, dict[str, t.Any]], list[t.Any]], fhirpathpy.compile(expression))


def _number(value: t.Any) -> t.Any:
    return Decimal(value) if isinstance(value, int | Decimal) and not isinstance(value, bool) else value


def _calculate(questionnaire: Questionnaire, answers: Answers, previous: dict[str, Decimal],
               enabled: frozenset[str]) -> dict[str, Decimal]:
    from server.questionnaires.response import response_items

    resource = {"resourceType": "QuestionnaireResponse", "status": "in-progress",
                "item": response_items(questionnaire, answers, previous, enabled)}
    results: dict[str, Decimal] = {}
    for item in questionnaire.walk():
        if item.calculation is None or item.link_id not in enabled:
            continue
        context: dict[str, t.Any] = {"resource": resource, "questionnaire": questionnaire.source}
        for name, expression in (*questionnaire.variables, *item.calculation.variables):
            context[name] = compiled(expression)(resource, context)
        value = compiled(item.calculation.expression)(resource, context)
        if value and isinstance(value[0], int | float | Decimal) and not isinstance(value[0], bool):
            results[item.link_id] = Decimal(str(value[0]))
    return results


# Input from a form ----------------------------------------------------------------------------------

class InputError(ValueError):
    """An answer that cannot be accepted; ``code`` names the reason for a translated message."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def has_control_characters(text: str, *, allow_newlines: bool = False) -> bool:
    """Whether ``text`` holds control characters (which would reach HL7 and other systems)."""
    allowed = {"\n", "\r", "\t"} if allow_newlines else set()
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") and ch not in allowed for ch in text)


def parse_us_date(text: str) -> dt.date:
    """A date typed as MM/DD/YYYY (one-digit month and day allowed), or eight digits MMDDYYYY.

    :raises InputError: ``date`` for anything else or an impossible date.
    """
    digits = text.strip()
    if digits.isdigit() and len(digits) == 8:
        digits = f"{digits[:2]}/{digits[2:4]}/{digits[4:]}"
    match = DATE_RE.match(digits)
    if not match:
        raise InputError("date")
    month, day, year = (int(part) for part in match.groups())
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise InputError("date") from None


def parse_answer(item: Item, raw: str) -> str:
    """Check one posted value for ``item`` and return its canonical stored form.

    :raises InputError: with the reason (``choice``, ``number``, ``integer``,
        ``min``, ``max``, ``date``, ``too_long``, ``control``).
    """
    if item.type == "choice":
        if item.option(raw) is None:
            raise InputError("choice")
        return raw
    if item.type == "boolean":
        if raw not in ("true", "false"):
            raise InputError("choice")
        return raw
    if item.type in ("integer", "decimal"):
        text = raw.strip()
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise InputError("number") from None
        if not number.is_finite() or len(text) > 16:
            raise InputError("number")
        if item.type == "integer" and number != number.to_integral_value():
            raise InputError("integer")
        if item.min_value is not None and number < item.min_value:
            raise InputError("min")
        if item.max_value is not None and number > item.max_value:
            raise InputError("max")
        return str(int(number)) if item.type == "integer" else str(number)
    if item.type == "date":
        return parse_us_date(raw).isoformat()
    text = raw.strip()
    limit = item.max_length or (MAX_TEXT if item.type == "text" else MAX_STRING)
    if len(text) > limit:
        raise InputError("too_long")
    if has_control_characters(text, allow_newlines=item.type == "text"):
        raise InputError("control")
    return text


def read_page(questionnaire: Questionnaire, page: t.Sequence[Item], form: Mapping[str, list[str]],
              answers: Answers) -> tuple[Answers, dict[str, str]]:
    """Take a screen's posted values into ``answers``; returns the new answers and errors by linkId.

    Items that are not enabled once this screen's answers are in are not
    required, and any value posted for them is dropped. An error leaves every
    well-formed answer of the screen in place, so the page can be shown again
    with the patient's choices kept.
    """
    updated = {k: list(v) for k, v in answers.items()}
    errors: dict[str, str] = {}
    asked = [item for top in page for item in top.walk() if item.asks]
    for item in asked:
        values = [v for v in form.get(item.link_id, []) if v.strip()]
        if not item.repeats:
            values = values[:1]
        try:
            updated[item.link_id] = [parse_answer(item, v) for v in values]
        except InputError as exc:
            errors[item.link_id] = exc.code
            updated.pop(item.link_id, None)
    evaluation = evaluate(questionnaire, updated)
    for item in asked:
        if item.link_id not in evaluation.enabled:
            updated.pop(item.link_id, None)
            errors.pop(item.link_id, None)
        elif item.required and not updated.get(item.link_id) and item.link_id not in errors:
            errors[item.link_id] = "required"
    return updated, errors


def page_enabled(page: t.Sequence[Item], evaluation: Evaluation) -> bool:
    """Whether any question of a screen is enabled (a screen with none is skipped)."""
    return any(item.link_id in evaluation.enabled for top in page for item in top.walk() if item.asks)
