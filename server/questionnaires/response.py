"""Building the FHIR R4 QuestionnaireResponse for what a patient answered.

The response mirrors the questionnaire's structure (groups nest their items),
holds only enabled items that have an answer, includes calculated values, and
names the questionnaire by its canonical ``url|version``. The finished
resource is validated against the R4 model before it is stored, so a response
that another FHIR system would refuse is never written.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from decimal import Decimal

from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse as FhirQuestionnaireResponse

from server.questionnaires.loader import EXT_ORDINAL
from server.questionnaires.model import Item
from server.questionnaires.model import Questionnaire

if t.TYPE_CHECKING:
    from server.questionnaires.logic import Answers


def _answer(item: Item, raw: str) -> dict[str, t.Any]:
    if item.type == "choice":
        option = item.option(raw)
        if option is None:
            return {"valueCoding": {"code": raw}}
        coding: dict[str, t.Any] = {"system": option.coding.system, "code": option.coding.code,
                                    "display": option.coding.display.base}
        if option.ordinal is not None:
            # The answer carries its score, so calculated totals need not walk the questionnaire (SDC allows it).
            coding["extension"] = [{"url": EXT_ORDINAL, "valueDecimal": float(option.ordinal)}]
        return {"valueCoding": coding}
    if item.type == "boolean":
        return {"valueBoolean": raw == "true"}
    if item.type == "integer":
        return {"valueInteger": int(raw)}
    if item.type == "decimal":
        return {"valueDecimal": float(Decimal(raw))}
    if item.type == "date":
        return {"valueDate": raw}
    return {"valueString": raw}


def _calculated(item: Item, value: Decimal) -> dict[str, t.Any]:
    if item.type == "decimal" or value != value.to_integral_value():
        return {"valueDecimal": float(value)}
    return {"valueInteger": int(value)}


def response_items(questionnaire: Questionnaire, answers: Answers, calculated: dict[str, Decimal],
                   enabled: t.Collection[str]) -> list[dict[str, t.Any]]:
    """The ``item`` array of a QuestionnaireResponse for these answers."""

    def build(item: Item) -> dict[str, t.Any] | None:
        if item.link_id not in enabled:
            return None
        entry: dict[str, t.Any] = {"linkId": item.link_id}
        if item.text.base:
            entry["text"] = item.text.base
        if item.type == "group":
            children = [child for child in (build(c) for c in item.items) if child]
            if not children:
                return None
            entry["item"] = children
            return entry
        if item.link_id in calculated:
            entry["answer"] = [_calculated(item, calculated[item.link_id])]
            return entry
        values = answers.get(item.link_id, [])
        if not values:
            return None
        entry["answer"] = [_answer(item, raw) for raw in values]
        return entry

    return [entry for entry in (build(item) for item in questionnaire.items) if entry]


def build_response(questionnaire: Questionnaire, answers: Answers, calculated: dict[str, Decimal],
                   enabled: t.Collection[str], *, status: str, subject: str, encounter: str, authored: dt.datetime,
                   language: str, response_id: str) -> dict[str, t.Any]:
    """A complete, validated QuestionnaireResponse.

    :param status: ``completed``, or ``stopped`` when the patient chose not to answer.
    :param subject: a reference such as ``Patient/12``.
    :param encounter: a reference such as ``Encounter/V00000031``.
    :raises ValueError: if the result is not valid R4 (a programming error).
    """
    resource: dict[str, t.Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": response_id,
        "language": language,
        "questionnaire": questionnaire.canonical,
        "status": status,
        "subject": {"reference": subject},
        "encounter": {"reference": encounter},
        "authored": authored.isoformat(),
    }
    items = response_items(questionnaire, answers, calculated, enabled)
    if items:
        resource["item"] = items
    FhirQuestionnaireResponse.model_validate(resource)
    return resource
