"""FHIR R4 questionnaires: loading, ``enableWhen``, calculated items, scoring, QuestionnaireResponse.

Pure logic: no Flask, no database. The kiosk renders what :class:`Library`
holds; the check-in service scores and stores the answers. Everything is
loaded and checked once, at start (:func:`load_library`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from server.questionnaires.assignment import Rule
from server.questionnaires.assignment import age_on
from server.questionnaires.assignment import assigned
from server.questionnaires.assignment import load_rules
from server.questionnaires.loader import QuestionnaireError
from server.questionnaires.loader import load_folder
from server.questionnaires.model import Questionnaire

DEFAULT_FOLDER = Path(__file__).parent / "library"

__all__ = ["DEFAULT_FOLDER", "Library", "QuestionnaireError", "load_library"]


@dataclass(frozen=True)
class Library:
    """The questionnaires of one folder and the rules saying who gets which."""

    questionnaires: dict[str, Questionnaire]
    rules: tuple[Rule, ...]

    def for_visit(self, appointment_type: str, birth_date: dt.date | None, day: dt.date) -> list[str]:
        """The questionnaire ids for a visit of ``appointment_type`` on ``day``, in order."""
        return assigned(self.rules, appointment_type, age_on(birth_date, day))


def load_library(folder: Path | None = None) -> Library:
    """Load a questionnaire folder (the shipped one by default).

    :raises QuestionnaireError: naming the file and the problem.
    """
    folder = folder or DEFAULT_FOLDER
    questionnaires = load_folder(folder)
    return Library(questionnaires, load_rules(folder, questionnaires))
