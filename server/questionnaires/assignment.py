"""Which questionnaires a visit gets: rules by appointment type and age, from ``assignments.toml``.

The file sits in the questionnaire folder beside the Questionnaire JSON files::

    [[rule]]
    questionnaires = ["phq-9", "gad-7"]
    appointment_types = ["FU", "NEW"]   # empty or absent: every type
    min_age = 18                        # optional, inclusive
    max_age = 64                        # optional, inclusive

Every matching rule contributes its questionnaires, in file order, each once.
A rule naming a questionnaire that is not in the folder stops the start, like
a bad Questionnaire file.
"""

from __future__ import annotations

import datetime as dt
import tomllib
import typing as t
from dataclasses import dataclass
from pathlib import Path

from server.questionnaires.loader import QuestionnaireError

ASSIGNMENTS_FILE = "assignments.toml"


@dataclass(frozen=True, slots=True)
class Rule:
    """Give ``questionnaires`` to visits of ``appointment_types`` (any when empty) within an age range."""

    questionnaires: tuple[str, ...]
    appointment_types: tuple[str, ...] = ()
    min_age: int | None = None
    max_age: int | None = None

    def applies(self, appointment_type: str, age: int | None) -> bool:
        """Whether a visit of this type, for a patient of this age, gets this rule's questionnaires.

        A rule with an age limit does not apply when the age is unknown.
        """
        if self.appointment_types and appointment_type.strip().upper() not in self.appointment_types:
            return False
        if self.min_age is not None and (age is None or age < self.min_age):
            return False
        return not (self.max_age is not None and (age is None or age > self.max_age))


def age_on(birth_date: dt.date | None, day: dt.date) -> int | None:
    """Age in whole years on ``day``."""
    if birth_date is None:
        return None
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def load_rules(folder: Path, known: t.Collection[str]) -> tuple[Rule, ...]:
    """Read ``assignments.toml`` from ``folder`` (none: no questionnaires are given).

    :raises QuestionnaireError: for a malformed file or an unknown questionnaire id.
    """
    path = folder / ASSIGNMENTS_FILE
    if not path.exists():
        return ()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise QuestionnaireError(path, f"cannot be read as TOML ({exc})") from None
    rules = []
    for index, entry in enumerate(raw.get("rule", []), start=1):
        try:
            rule = Rule(
                questionnaires=tuple(str(q).lower() for q in entry["questionnaires"]),
                appointment_types=tuple(str(a).strip().upper() for a in entry.get("appointment_types", [])),
                min_age=int(entry["min_age"]) if "min_age" in entry else None,
                max_age=int(entry["max_age"]) if "max_age" in entry else None,
            )
        except (KeyError, TypeError, ValueError):
            raise QuestionnaireError(path, f"rule {index}: needs a list 'questionnaires' and whole-number ages") \
                from None
        for key in rule.questionnaires:
            if key not in known:
                raise QuestionnaireError(path, f"rule {index}: no questionnaire with id {key!r} in the folder")
        rules.append(rule)
    return tuple(rules)


def assigned(rules: t.Iterable[Rule], appointment_type: str, age: int | None) -> list[str]:
    """The questionnaire ids a visit gets, in order, each once."""
    chosen: list[str] = []
    for rule in rules:
        if rule.applies(appointment_type, age):
            chosen.extend(key for key in rule.questionnaires if key not in chosen)
    return chosen
