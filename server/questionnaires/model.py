"""The subset of a FHIR R4 Questionnaire the kiosk understands, as frozen values.

Files are validated against the R4 resource model first (see
:mod:`server.questionnaires.loader`); what reaches these classes is already
known to be a Questionnaire, and here it is reduced to what the kiosk renders
and scores: item types ``group display boolean choice integer decimal string
text date``, ``required``, ``repeats``, ``enableWhen`` with ``enableBehavior``,
``answerOption.valueCoding`` with an ordinal (``ordinalValue`` or R5
``itemWeight`` extension), ``minValue``/``maxValue``/``maxLength``, and
``calculatedExpression`` (computed on the server, never shown to patients).

Texts are :class:`Text` values holding every language the file carries
(FHIR ``translation`` extensions), so one file serves English and Spanish and
the structure, codes and linkIds are the same in both by construction.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from dataclasses import field
from decimal import Decimal

LOINC = "http://loinc.org"

ItemType = t.Literal["group", "display", "boolean", "choice", "integer", "decimal", "string", "text", "date"]
ITEM_TYPES: frozenset[str] = frozenset(t.get_args(ItemType))
INPUT_TYPES: frozenset[str] = ITEM_TYPES - {"group", "display"}


@dataclass(frozen=True, slots=True)
class Text:
    """A text in its base language plus translations keyed by language code (``es``)."""

    base: str
    translations: tuple[tuple[str, str], ...] = ()

    def get(self, language: str) -> str:
        """The text in ``language`` (or its primary subtag), else the base text."""
        primary = language.split("-")[0].lower()
        for code, value in self.translations:
            if code.lower() == language.lower() or code.split("-")[0].lower() == primary:
                return value
        return self.base

    def languages(self) -> set[str]:
        """The primary subtags of the translations present."""
        return {code.split("-")[0].lower() for code, _ in self.translations}


@dataclass(frozen=True, slots=True)
class Coding:
    """A code in a system (LOINC ``LA`` answers, LOINC item codes)."""

    system: str
    code: str
    display: Text = Text("")

    def key(self) -> str:
        """How an answer option is named in a form and stored in a draft: the code alone."""
        return self.code


@dataclass(frozen=True, slots=True)
class AnswerOption:
    """One choice; ``ordinal`` is its score (None for unscored choices such as PHQ-9 item 10)."""

    coding: Coding
    ordinal: Decimal | None = None


@dataclass(frozen=True, slots=True)
class EnableWhen:
    """One condition: ``question`` (a linkId) compared with ``answer`` by ``operator``."""

    question: str
    operator: str
    answer: bool | int | Decimal | str | Coding


@dataclass(frozen=True, slots=True)
class Calculation:
    """A ``calculatedExpression`` (FHIRPath) and the ``variable`` expressions in scope, in order."""

    expression: str
    variables: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Item:
    """One question, display text or group."""

    link_id: str
    type: str
    text: Text
    codes: tuple[Coding, ...] = ()
    prefix: str = ""
    required: bool = False
    repeats: bool = False
    read_only: bool = False
    hidden: bool = False
    enable_when: tuple[EnableWhen, ...] = ()
    enable_behavior: str = "all"
    options: tuple[AnswerOption, ...] = ()
    min_value: Decimal | None = None
    max_value: Decimal | None = None
    max_length: int | None = None
    calculation: Calculation | None = None
    items: tuple[Item, ...] = ()

    @property
    def asks(self) -> bool:
        """Whether the patient answers this item (not a group, display, calculated or hidden item)."""
        return self.type in INPUT_TYPES and self.calculation is None and not self.read_only and not self.hidden

    def code(self, system: str = LOINC) -> str:
        """The item's code in ``system`` (LOINC by default), or ``""``."""
        return next((c.code for c in self.codes if c.system == system), "")

    def option(self, key: str) -> AnswerOption | None:
        """The answer option named ``key`` in a form."""
        return next((o for o in self.options if o.coding.key() == key), None)

    def walk(self) -> t.Iterator[Item]:
        """This item and every item below it, in document order."""
        yield self
        for child in self.items:
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class Questionnaire:
    """A loaded questionnaire: identity, texts, codes and items, plus the raw JSON for FHIRPath."""

    key: str
    url: str
    version: str
    title: Text
    codes: tuple[Coding, ...]
    items: tuple[Item, ...]
    copyright: str = ""
    variables: tuple[tuple[str, str], ...] = ()
    source: dict[str, t.Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def canonical(self) -> str:
        """``url|version``, as QuestionnaireResponse.questionnaire expects."""
        return f"{self.url}|{self.version}" if self.version else self.url

    def code(self, system: str = LOINC) -> str:
        """The questionnaire's code (the LOINC panel) in ``system``, or ``""``."""
        return next((c.code for c in self.codes if c.system == system), "")

    def walk(self) -> t.Iterator[Item]:
        """Every item, in document order."""
        for item in self.items:
            yield from item.walk()

    def item(self, link_id: str) -> Item:
        """The item with ``link_id``.

        :raises KeyError: when there is none.
        """
        for item in self.walk():
            if item.link_id == link_id:
                return item
        raise KeyError(link_id)

    def pages(self) -> list[tuple[Item, ...]]:
        """The screens this questionnaire is asked on.

        Each top-level group is one screen; consecutive top-level questions
        share a screen, except that a question whose ``enableWhen`` depends on
        a question of the current screen starts the next one. That way a
        follow-up question ("What changed?") appears only after its answer is
        known, without any script in the page.
        """
        pages: list[list[Item]] = []
        for item in self.items:
            if not (item.asks or item.type in ("group", "display")):
                continue
            current = pages[-1] if pages else None
            on_page = {i.link_id for page_item in current or [] for i in page_item.walk()}
            depends = any(condition.question in on_page for condition in item.enable_when)
            if current is None or item.type == "group" or depends or current[0].type == "group":
                pages.append([item])
            else:
                current.append(item)
        return [tuple(page) for page in pages]
