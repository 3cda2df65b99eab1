"""Scores and severity bands, computed on the server from one curated table of instruments.

The table below is the one place codes and bands are written down (public
files carry wrong ones: GAD-2 coded 55758-7, the GAD-7 panel used as an item,
AUDIT-C item 1 as 68517-2). An instrument is recognised by the Questionnaire's
code (its LOINC panel) and its items by their codes, not by linkId, so a
PHQ-9 written elsewhere (LHC-Forms style ``/44250-9`` linkIds) scores exactly
like ours. The score is the sum of the chosen answers' ordinal values.

Rules that matter clinically:

* A score is given only when every scored item is answered; a partial PHQ-9
  is never scored. When the PHQ-2 gate closed (items 1-2 total below 3, so
  items 3-9 were not asked), the result is the PHQ-2, not a PHQ-9.
* PHQ-9 item 9 answered above "Not at all" is an alert for staff at once
  (Simon et al. 2013); the patient never sees a score.
* AUDIT-C is positive from 4 for men and 3 for women.

STEADI "Stay Independent" has no LOINC panel in this table (the reference
gives none, and a code is never guessed): its panel, items and total carry
local codes, sent as such (coding system ``L``) in the questionnaire ORU,
with LOINC's Yes/No answer codes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from server.questionnaires.logic import Answers
from server.questionnaires.model import Questionnaire

PHQ9_ITEM9 = "44260-8"


@dataclass(frozen=True, slots=True)
class Band:
    """Totals from ``low`` to ``high`` (inclusive) mean ``label``."""

    low: int
    high: int
    label: str


@dataclass(frozen=True, slots=True)
class Instrument:
    """One scored instrument: its codes, its scored items (code, text) and its bands.

    ``system`` is the HL7 coding system of its panel, item and total codes:
    ``LN`` (LOINC), or ``L`` (local) for an instrument LOINC has no codes for.
    """

    key: str
    name: str
    panel: str
    panel_name: str
    total: str
    total_name: str
    items: tuple[tuple[str, str], ...]
    bands: tuple[Band, ...]
    system: str = "LN"
    bands_female: tuple[Band, ...] = ()

    def band(self, total: int, sex: str = "") -> str:
        """The band label for ``total`` (sex-specific bands when the instrument has them)."""
        bands = self.bands_female if sex == "F" and self.bands_female else self.bands
        return next(b.label for b in bands if b.low <= total <= b.high)


_PHQ_ITEMS = (
    ("44250-9", "Little interest or pleasure in doing things"),
    ("44255-8", "Feeling down, depressed, or hopeless"),
    ("44259-0", "Trouble falling or staying asleep, or sleeping too much"),
    ("44254-1", "Feeling tired or having little energy"),
    ("44251-7", "Poor appetite or overeating"),
    ("44258-2", "Feeling bad about yourself - or that you are a failure or have let yourself or your family down"),
    ("44252-5", "Trouble concentrating on things, such as reading the newspaper or watching television"),
    ("44253-3", "Moving or speaking so slowly that other people could have noticed. Or the opposite - being so "
                "fidgety or restless that you have been moving around a lot more than usual"),
    (PHQ9_ITEM9, "Thoughts that you would be better off dead, or of hurting yourself in some way"),
)

PHQ9 = Instrument(
    "phq-9", "PHQ-9", "44249-1", "PHQ-9 quick depression assessment panel",
    "44261-6", "Patient health questionnaire 9 item total score", _PHQ_ITEMS,
    (Band(0, 4, "none-minimal"), Band(5, 9, "mild"), Band(10, 14, "moderate"), Band(15, 19, "moderately severe"),
     Band(20, 27, "severe")))
PHQ2 = Instrument(
    "phq-2", "PHQ-2", "55757-9", "Patient Health Questionnaire 2 item (PHQ-2) [Reported]",
    "55758-7", "Patient Health Questionnaire-2 total score [Reported.PHQ]", _PHQ_ITEMS[:2],
    (Band(0, 2, "negative"), Band(3, 6, "positive")))
GAD7 = Instrument(
    "gad-7", "GAD-7", "69737-5", "Generalized anxiety disorder 7 item (GAD-7)",
    "70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]",
    (("69725-0", "Feeling nervous, anxious or on edge"),
     ("68509-9", "Not being able to stop or control worrying"),
     ("69733-4", "Worrying too much about different things"),
     ("69734-2", "Trouble relaxing"),
     ("69735-9", "Being so restless that it is hard to sit still"),
     ("69689-8", "Becoming easily annoyed or irritable"),
     ("69736-7", "Feeling afraid as if something awful might happen")),
    (Band(0, 4, "minimal"), Band(5, 9, "mild"), Band(10, 14, "moderate"), Band(15, 21, "severe")))
AUDITC = Instrument(
    "audit-c", "AUDIT-C", "72109-2", "Alcohol Use Disorder Identification Test - Consumption [AUDIT-C]",
    "75626-2", "Total score [AUDIT-C]",
    (("68518-0", "How often do you have a drink containing alcohol"),
     ("68519-8", "How many standard drinks containing alcohol do you have on a typical day"),
     ("68520-6", "How often do you have 6 or more drinks on 1 occasion")),
    (Band(0, 3, "negative"), Band(4, 12, "positive")),
    bands_female=(Band(0, 2, "negative"), Band(3, 12, "positive")))
STEADI = Instrument(
    "steadi", "STEADI Stay Independent", "steadi-stay-independent", "CDC STEADI Stay Independent brochure",
    "steadi-total", "Stay Independent total score",
    tuple((f"steadi-{n}", f"Stay Independent item {n}") for n in range(1, 13)),
    (Band(0, 3, "not at risk"), Band(4, 14, "may be at risk")), system="L")

INSTRUMENTS: tuple[Instrument, ...] = (PHQ9, PHQ2, GAD7, AUDITC, STEADI)
STEADI_SYSTEM = "urn:frontdesk:steadi"


def instrument_for(questionnaire: Questionnaire) -> Instrument | None:
    """The instrument a questionnaire is, by its code (LOINC panel, or the local STEADI code)."""
    codes = {c.code for c in questionnaire.codes}
    return next((i for i in INSTRUMENTS if i.panel in codes), None)


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One scored item as answered: its code and text, and the chosen answer's code, text and points."""

    code: str
    text: str
    answer_code: str
    answer_display: str
    points: int


@dataclass(frozen=True, slots=True)
class Score:
    """A computed result: which instrument it is (PHQ-2 when the PHQ-9 gate closed), total and band."""

    instrument: Instrument
    total: int
    severity: str
    items: tuple[ScoredItem, ...]
    completed_at: dt.datetime


def _answered_items(questionnaire: Questionnaire, answers: Answers) -> dict[str, ScoredItem]:
    """Scored answers by item code, found through each item's code (or a linkId that is the code)."""
    found: dict[str, ScoredItem] = {}
    for item in questionnaire.walk():
        if item.type != "choice":
            continue
        code = item.code() or next((c.code for c in item.codes), "") or item.link_id.strip("/")
        values = answers.get(item.link_id, [])
        option = item.option(values[0]) if values else None
        if option is None or option.ordinal is None:
            continue
        found[code] = ScoredItem(code, item.text.base, option.coding.code, option.coding.display.base,
                                 int(option.ordinal))
    return found


def score(questionnaire: Questionnaire, answers: Answers, *, completed_at: dt.datetime,
          sex: str = "") -> Score | None:
    """The score of a finished questionnaire, or ``None`` when it is not an instrument or is incomplete.

    :param sex: the patient's administrative sex (``F``, ``M`` …), for AUDIT-C's bands.
    """
    instrument = instrument_for(questionnaire)
    if instrument is None:
        return None
    found = _answered_items(questionnaire, answers)
    candidates = (instrument, PHQ2) if instrument is PHQ9 else (instrument,)
    for candidate in candidates:
        items = [found.get(code) for code, _ in candidate.items]
        if all(items):
            chosen = tuple(i for i in items if i is not None)
            if candidate is PHQ2 and any(code in found for code, _ in PHQ9.items[2:]):
                return None
            total = sum(i.points for i in chosen)
            if candidate is PHQ2 and total >= 3:
                return None
            return Score(candidate, total, candidate.band(total, sex), chosen, completed_at)
    return None


def urgent_alerts(questionnaire: Questionnaire, answers: Answers) -> list[str]:
    """Alerts staff must see before the clinician does: ``phq9_item9`` when item 9 is above 0."""
    if instrument_for(questionnaire) is not PHQ9:
        return []
    item9 = _answered_items(questionnaire, answers).get(PHQ9_ITEM9)
    return ["phq9_item9"] if item9 is not None and item9.points > 0 else []

