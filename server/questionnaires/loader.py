"""Reading Questionnaire files: FHIR R4 validation first, then our subset, all at start.

A file that is not a valid R4 Questionnaire, or that uses something the kiosk
cannot ask (an ``attachment`` item, an ``answerValueSet`` needing expansion, an
``enableWhen`` naming an unknown item, a FHIRPath expression that does not
compile), raises :class:`QuestionnaireError` naming the file and the problem.
``serve`` loads every file before it listens, so a bad file stops it at start
with one line, never at a patient's turn.

Texts in other languages come from FHIR ``translation`` extensions on
``_text``, ``_title`` and ``valueCoding._display`` (one file per instrument,
every language inside it).
"""

from __future__ import annotations

import json
import re
import typing as t
from decimal import Decimal
from decimal import InvalidOperation
from pathlib import Path

from fhir.resources.R4B.questionnaire import Questionnaire as FhirQuestionnaire
from pydantic import ValidationError

from server.questionnaires.logic import compiled
from server.questionnaires.model import ITEM_TYPES
from server.questionnaires.model import AnswerOption
from server.questionnaires.model import Calculation
from server.questionnaires.model import Coding
from server.questionnaires.model import EnableWhen
from server.questionnaires.model import Item
from server.questionnaires.model import Questionnaire
from server.questionnaires.model import Text

EXT_TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
EXT_ORDINAL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
EXT_ITEM_WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
EXT_MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
EXT_MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
EXT_HIDDEN = "http://hl7.org/fhir/StructureDefinition/questionnaire-hidden"
EXT_VARIABLE = "http://hl7.org/fhir/StructureDefinition/variable"
EXT_CALCULATED = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression"
EXT_CALCULATED_OLD = "http://hl7.org/fhir/StructureDefinition/questionnaire-calculatedExpression"
OPERATORS = frozenset({"exists", "=", "!=", ">", "<", ">=", "<="})
MAX_DEPTH = 6
STATUSES = ("draft", "active", "retired", "unknown")


class QuestionnaireError(ValueError):
    """A questionnaire file the kiosk cannot use; ``str()`` names the file and the problem in one line."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{Path(path).name}: {problem}")
        self.path = str(path)
        self.problem = problem


def load_file(path: Path) -> Questionnaire:
    """Read, validate and convert one Questionnaire JSON file.

    :raises QuestionnaireError: for any problem, with the file named.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionnaireError(path, f"cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise QuestionnaireError(path, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return load(raw, path)


def load(raw: t.Any, path: str | Path = "<questionnaire>") -> Questionnaire:
    """Validate ``raw`` (parsed JSON) as an R4 Questionnaire and convert it to our subset.

    :raises QuestionnaireError: when it is not valid R4 or not within the subset.
    """
    if not isinstance(raw, dict) or raw.get("resourceType") != "Questionnaire":
        raise QuestionnaireError(path, "not a FHIR Questionnaire (resourceType must be 'Questionnaire')")
    try:
        FhirQuestionnaire.model_validate(_for_validation(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise QuestionnaireError(path, f"not valid FHIR R4: {where}: {first['msg']}") from None
    # The R4 model checks structure and types, not required code bindings; the one on status is checked here.
    if raw.get("status") not in STATUSES:
        raise QuestionnaireError(path, f"not valid FHIR R4: status: must be one of {', '.join(STATUSES)}")
    if not raw.get("item"):
        raise QuestionnaireError(path, "has no items")
    builder = _Builder(path)
    items = tuple(builder.item(entry, depth=1) for entry in raw["item"])
    key = re.sub(r"[^a-z0-9]+", "-", str(raw.get("id") or raw.get("name") or Path(path).stem).lower()).strip("-")
    questionnaire = Questionnaire(
        key=key,
        url=str(raw.get("url") or f"urn:frontdesk:questionnaire:{key}"),
        version=str(raw.get("version") or ""),
        title=_text(raw.get("title") or raw.get("name") or key, raw.get("_title")),
        codes=tuple(_coding(c) for c in raw.get("code", [])),
        items=items,
        copyright=str(raw.get("copyright") or ""),
        variables=builder.variables(raw),
        source=raw,
    )
    builder.check_references(questionnaire)
    return questionnaire


def _for_validation(node: t.Any) -> t.Any:
    """A copy of ``raw`` with FHIRPath variable names made valid R4 ``id`` values.

    R4 types ``Expression.name`` as ``id`` (no underscores), yet SDC's own
    examples and LHC-Forms name variables ``q1_value``; R5 relaxed it to
    ``code``. Underscores are accepted here so such files load; everything else
    is validated as R4 says.
    """
    if isinstance(node, list):
        return [_for_validation(entry) for entry in node]
    if not isinstance(node, dict):
        return node
    copy = {key: _for_validation(value) for key, value in node.items()}
    expression = copy.get("valueExpression")
    if isinstance(expression, dict) and isinstance(expression.get("name"), str):
        copy["valueExpression"] = {**expression, "name": expression["name"].replace("_", "-")}
    return copy


def load_folder(folder: Path) -> dict[str, Questionnaire]:
    """Every ``*.json`` Questionnaire in ``folder``, keyed by :attr:`Questionnaire.key`.

    :raises QuestionnaireError: for the first bad file, or two files with one key.
    """
    if not folder.is_dir():
        raise QuestionnaireError(folder, "questionnaire folder does not exist")
    loaded: dict[str, Questionnaire] = {}
    for path in sorted(folder.glob("*.json")):
        questionnaire = load_file(path)
        if questionnaire.key in loaded:
            raise QuestionnaireError(path, f"id {questionnaire.key!r} is used by another file too")
        loaded[questionnaire.key] = questionnaire
    return loaded


def _text(base: t.Any, extension_holder: t.Any) -> Text:
    translations: list[tuple[str, str]] = []
    for ext in (extension_holder or {}).get("extension", []) if isinstance(extension_holder, dict) else []:
        if ext.get("url") != EXT_TRANSLATION:
            continue
        parts = {part.get("url"): part for part in ext.get("extension", [])}
        language = parts.get("lang", {}).get("valueCode")
        content = parts.get("content", {}).get("valueString")
        if language and content:
            translations.append((str(language), str(content)))
    return Text(str(base or ""), tuple(translations))


def _coding(raw: dict[str, t.Any]) -> Coding:
    return Coding(str(raw.get("system") or ""), str(raw.get("code") or ""),
                  _text(raw.get("display") or raw.get("code") or "", raw.get("_display")))


def _extensions(raw: dict[str, t.Any], url: str) -> list[dict[str, t.Any]]:
    return [ext for ext in raw.get("extension", []) if ext.get("url") == url]


def _decimal_extension(raw: dict[str, t.Any], *urls: str) -> Decimal | None:
    for url in urls:
        for ext in _extensions(raw, url):
            for key in ("valueDecimal", "valueInteger"):
                if key in ext:
                    return Decimal(str(ext[key]))
    return None


class _Builder:
    """Converts items one by one, remembering what later checks need."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self.link_ids: list[str] = []
        self.expressions: list[tuple[str, str]] = []

    def fail(self, link_id: str, problem: str) -> t.NoReturn:
        raise QuestionnaireError(self.path, f"item {link_id!r}: {problem}")

    def variables(self, raw: dict[str, t.Any]) -> tuple[tuple[str, str], ...]:
        found = []
        for ext in _extensions(raw, EXT_VARIABLE):
            expression = ext.get("valueExpression", {})
            if expression.get("language", "text/fhirpath") != "text/fhirpath":
                self.fail(str(raw.get("linkId", "<root>")), "only FHIRPath variables are supported")
            found.append((str(expression.get("name", "")), str(expression.get("expression", ""))))
            self.expressions.append((str(raw.get("linkId", "<root>")), found[-1][1]))
        return tuple(found)

    def item(self, raw: dict[str, t.Any], depth: int) -> Item:
        link_id = str(raw["linkId"])
        kind = str(raw["type"])
        if depth > MAX_DEPTH:
            self.fail(link_id, f"nested deeper than {MAX_DEPTH} levels")
        if link_id in self.link_ids:
            self.fail(link_id, "linkId is used twice")
        self.link_ids.append(link_id)
        if kind not in ITEM_TYPES:
            self.fail(link_id, f"type {kind!r} is not supported (supported: {', '.join(sorted(ITEM_TYPES))})")
        if raw.get("answerValueSet"):
            self.fail(link_id, "answerValueSet is not supported: list the choices as answerOption")
        options = []
        for option in raw.get("answerOption", []):
            if "valueCoding" not in option:
                self.fail(link_id, "answerOption must be valueCoding")
            ordinal = _decimal_extension(option, EXT_ORDINAL, EXT_ITEM_WEIGHT)
            if ordinal is None:
                ordinal = _decimal_extension(option["valueCoding"], EXT_ORDINAL, EXT_ITEM_WEIGHT)
            options.append(AnswerOption(_coding(option["valueCoding"]), ordinal))
        if kind == "choice" and not options:
            self.fail(link_id, "a choice item needs answerOption entries")
        if len({o.coding.key() for o in options}) != len(options):
            self.fail(link_id, "two answer options share a code")
        calculation = self.calculation(raw, link_id)
        children = tuple(self.item(child, depth + 1) for child in raw.get("item", []))
        if kind == "group" and not children:
            self.fail(link_id, "a group needs items")
        return Item(
            link_id=link_id, type=kind, text=_text(raw.get("text", ""), raw.get("_text")),
            codes=tuple(_coding(c) for c in raw.get("code", [])), prefix=str(raw.get("prefix", "")),
            required=bool(raw.get("required", False)), repeats=bool(raw.get("repeats", False)),
            read_only=bool(raw.get("readOnly", False)),
            hidden=any(ext.get("valueBoolean") for ext in _extensions(raw, EXT_HIDDEN)),
            enable_when=tuple(self.condition(c, link_id) for c in raw.get("enableWhen", [])),
            enable_behavior=str(raw.get("enableBehavior", "all")), options=tuple(options),
            min_value=_decimal_extension(raw, EXT_MIN_VALUE), max_value=_decimal_extension(raw, EXT_MAX_VALUE),
            max_length=int(raw["maxLength"]) if "maxLength" in raw else None,
            calculation=calculation, items=children,
        )

    def calculation(self, raw: dict[str, t.Any], link_id: str) -> Calculation | None:
        found = _extensions(raw, EXT_CALCULATED) or _extensions(raw, EXT_CALCULATED_OLD)
        variables = self.variables(raw)
        if not found:
            return None
        expression = found[0].get("valueExpression", {})
        if expression.get("language", "text/fhirpath") != "text/fhirpath":
            self.fail(link_id, "only FHIRPath calculatedExpression is supported")
        self.expressions.append((link_id, str(expression.get("expression", ""))))
        return Calculation(str(expression.get("expression", "")), variables)

    def condition(self, raw: dict[str, t.Any], link_id: str) -> EnableWhen:
        operator = str(raw["operator"])
        if operator not in OPERATORS:
            self.fail(link_id, f"enableWhen operator {operator!r} is not supported")
        answers = [key for key in raw if key.startswith("answer") and not key.startswith("answer_")]
        if len(answers) != 1:
            self.fail(link_id, "enableWhen needs exactly one answer[x]")
        key = answers[0]
        value = raw[key]
        answer: bool | int | Decimal | str | Coding
        if key == "answerCoding":
            answer = _coding(value)
        elif key == "answerBoolean":
            answer = bool(value)
        elif key == "answerInteger":
            answer = int(value)
        elif key == "answerDecimal":
            try:
                answer = Decimal(str(value))
            except InvalidOperation:
                self.fail(link_id, "enableWhen answerDecimal is not a number")
        elif key in ("answerString", "answerDate"):
            answer = str(value)
        else:
            self.fail(link_id, f"enableWhen {key} is not supported")
        return EnableWhen(str(raw["question"]), operator, answer)

    def check_references(self, questionnaire: Questionnaire) -> None:
        known = set(self.link_ids)
        for item in questionnaire.walk():
            for condition in item.enable_when:
                if condition.question not in known:
                    self.fail(item.link_id, f"enableWhen refers to unknown item {condition.question!r}")
            if item.enable_behavior not in ("all", "any"):
                self.fail(item.link_id, "enableBehavior must be 'all' or 'any'")
        # fhirpathpy reports many syntax errors only when an expression runs, so each one is run once
        # against an empty response, with every variable in scope.
        empty = {"resourceType": "QuestionnaireResponse", "status": "in-progress"}
        scope: dict[str, t.Any] = {"resource": empty, "questionnaire": questionnaire.source}
        for item in questionnaire.walk():
            scope.update({name: [] for name, _ in item.calculation.variables} if item.calculation else {})
        scope.update({name: [] for name, _ in questionnaire.variables})
        for link_id, expression in self.expressions:
            try:
                compiled(expression)(empty, dict(scope))
            except Exception as exc:  # fhirpathpy raises plain Exception (and KeyError) for bad expressions
                self.fail(link_id, f"FHIRPath expression does not compile ({str(exc).splitlines()[0][:120]})")
