"""What of a finished questionnaire goes to the records system, as an HL7 ORU^R01 result.

Every questionnaire a patient completes is sent, not only the scored ones:

* an instrument (PHQ-9, GAD-7, AUDIT-C, STEADI) as its scored items with their
  answer codes and the server's total and band (:mod:`server.questionnaires.scoring`);
* any other questionnaire (the general intake) as its answers, with no total:
  choices as coded answers, typed text as ``TX``.

Codes are LOINC (``LN``) wherever LOINC has the code, in the questionnaire
file or the instrument table; a question or panel LOINC has no code for is
sent with its own code as a local one (``L``) rather than with an invented
LOINC. HL7 text is written only by the builder, through its escape path.
"""

from __future__ import annotations

import datetime as dt

from hl7.model import QuestionnaireItem
from hl7.model import QuestionnaireResult
from server.questionnaires.logic import Answers
from server.questionnaires.model import LOINC
from server.questionnaires.model import Item
from server.questionnaires.model import Questionnaire
from server.questionnaires.scoring import Score

YES_NO_SYSTEM = "HL70136"  # HL7 table 0136, Yes/no indicator


def _system(system: str) -> str:
    return "LN" if system == LOINC else "L"


def _item_code(item: Item) -> tuple[str, str]:
    """An item's code and HL7 coding system: its LOINC code, else its first code, else its linkId (local)."""
    loinc = item.code()
    if loinc:
        return loinc, "LN"
    return (item.codes[0].code if item.codes else item.link_id.strip("/")), "L"


def _answered_item(item: Item, values: list[str]) -> QuestionnaireItem:
    code, system = _item_code(item)
    if item.type == "choice" and len(values) == 1 and (option := item.option(values[0])) is not None:
        coding = option.coding
        return QuestionnaireItem(code, item.text.base, coding.code, coding.display.base, system,
                                 answer_system=_system(coding.system))
    if item.type == "boolean":
        yes = values[0] == "true"
        return QuestionnaireItem(code, item.text.base, "Y" if yes else "N", "Yes" if yes else "No", system,
                                 answer_system=YES_NO_SYSTEM)
    if item.type == "choice":
        shown = [(o.coding.display.base or o.coding.code) if (o := item.option(v)) else v for v in values]
        return QuestionnaireItem(code, item.text.base, "", "; ".join(shown), system, "TX")
    return QuestionnaireItem(code, item.text.base, "", "; ".join(values), system, "TX")


def result_for(questionnaire: Questionnaire, answered: Answers, scored: Score | None, *, result_id: str,
               completed_at: dt.datetime) -> QuestionnaireResult | None:
    """The result to send for a completed questionnaire, or ``None`` when nothing was answered.

    :param answered: the answers to enabled items only (``Evaluation.answered``).
    :param scored: the instrument's score, when the questionnaire is one and was scored.
    """
    if scored is not None:
        instrument = scored.instrument
        items = tuple(QuestionnaireItem(i.code, i.text, i.answer_code, i.answer_display, instrument.system)
                      for i in scored.items)
        return QuestionnaireResult(result_id, instrument.panel, instrument.panel_name, items, instrument.total,
                                   instrument.total_name, scored.total, scored.severity, completed_at,
                                   panel_system=instrument.system, total_system=instrument.system)
    asked = [item for item in questionnaire.walk() if item.asks and answered.get(item.link_id)]
    if not asked:
        return None
    loinc_panel = questionnaire.code()
    panel, panel_system = (loinc_panel, "LN") if loinc_panel else (
        questionnaire.codes[0].code if questionnaire.codes else questionnaire.key, "L")
    return QuestionnaireResult(result_id, panel, questionnaire.title.base or questionnaire.key,
                               tuple(_answered_item(item, answered[item.link_id]) for item in asked),
                               "", "", None, "", completed_at, panel_system=panel_system)
