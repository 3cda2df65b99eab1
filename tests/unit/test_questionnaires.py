"""The questionnaire engine: the curated codes, loading, enableWhen, scoring at every band boundary,
an LHC-Forms-style PHQ-9 written elsewhere, and the QuestionnaireResponse it produces."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from server.questionnaires import load_library
from server.questionnaires.loader import QuestionnaireError
from server.questionnaires.loader import load
from server.questionnaires.loader import load_file
from server.questionnaires.logic import Answers
from server.questionnaires.logic import evaluate
from server.questionnaires.logic import page_enabled
from server.questionnaires.logic import parse_us_date
from server.questionnaires.logic import read_page
from server.questionnaires.model import Questionnaire
from server.questionnaires.response import build_response
from server.questionnaires.scoring import AUDITC
from server.questionnaires.scoring import GAD7
from server.questionnaires.scoring import PHQ2
from server.questionnaires.scoring import PHQ9
from server.questionnaires.scoring import STEADI
from server.questionnaires.scoring import Instrument
from server.questionnaires.scoring import score
from server.questionnaires.scoring import urgent_alerts

LIBRARY = load_library()
LHC_PHQ9 = Path(__file__).parent.parent / "fixtures" / "questionnaires" / "phq9_lhc_style.json"
NOW = dt.datetime(2026, 11, 26, 14, 0, tzinfo=dt.UTC)


def test_curated_codes_are_the_published_ones() -> None:
    assert (PHQ9.panel, PHQ9.total) == ("44249-1", "44261-6")
    assert [c for c, _ in PHQ9.items] == ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2",
                                          "44252-5", "44253-3", "44260-8"]
    assert (PHQ2.panel, PHQ2.total) == ("55757-9", "55758-7")
    assert (GAD7.panel, GAD7.total) == ("69737-5", "70274-6")
    assert [c for c, _ in GAD7.items] == ["69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8",
                                          "69736-7"]
    assert (AUDITC.panel, AUDITC.total) == ("72109-2", "75626-2")
    assert [c for c, _ in AUDITC.items] == ["68518-0", "68519-8", "68520-6"]  # not 68517-2


def test_shipped_files_carry_a_spanish_text_for_everything_a_patient_reads() -> None:
    for questionnaire in LIBRARY.questionnaires.values():
        assert "es" in questionnaire.title.languages(), questionnaire.key
        for item in questionnaire.walk():
            if item.asks or item.type in ("group", "display"):
                assert "es" in item.text.languages(), (questionnaire.key, item.link_id)
            for option in item.options:
                assert "es" in option.coding.display.languages(), (questionnaire.key, item.link_id)


def test_assignment_by_age() -> None:
    day = dt.date(2026, 11, 26)
    assert LIBRARY.for_visit("FU", dt.date(2010, 1, 1), day) == ["intake"]
    assert LIBRARY.for_visit("FU", dt.date(1980, 1, 1), day) == ["intake", "phq-9", "gad-7", "audit-c"]
    assert LIBRARY.for_visit("FU", dt.date(1961, 11, 26), day)[-1] == "steadi"      # 65 today
    assert "steadi" not in LIBRARY.for_visit("FU", dt.date(1961, 11, 27), day)       # 65 tomorrow


def answers_for(questionnaire: Questionnaire, instrument: Instrument, total: int) -> Answers:
    """Answers to ``instrument``'s items adding up to ``total``, highest points first."""
    answers: Answers = {}
    remaining = total
    for item in questionnaire.walk():
        code = item.code() or next((c.code for c in item.codes), "")
        if code not in dict(instrument.items):
            continue
        options = sorted((o for o in item.options if o.ordinal is not None), key=lambda o: o.ordinal or 0)
        best = max((o for o in options if int(o.ordinal or 0) <= remaining), key=lambda o: o.ordinal or 0)
        answers[item.link_id] = [best.coding.code]
        remaining -= int(best.ordinal or 0)
    assert remaining == 0, f"cannot reach {total}"
    return answers


@pytest.mark.parametrize(("total", "band"), [(3, "none-minimal"), (4, "none-minimal"), (5, "mild"), (9, "mild"),
                                             (10, "moderate"), (14, "moderate"), (15, "moderately severe"),
                                             (19, "moderately severe"), (20, "severe"), (27, "severe")])
def test_phq9_bands(total: int, band: str) -> None:
    """Every PHQ-9 band edge (a complete PHQ-9 totals 3 or more: below that the PHQ-2 gate stays closed)."""
    phq9 = LIBRARY.questionnaires["phq-9"]
    answers = answers_for(phq9, PHQ9, total)
    assert page_enabled(phq9.pages()[1], evaluate(phq9, answers))
    result = score(phq9, answers, completed_at=NOW)
    assert result is not None and result.instrument is PHQ9
    assert (result.total, result.severity) == (total, band)


@pytest.mark.parametrize(("total", "band"), [(0, "negative"), (2, "negative")])
def test_phq2_gate_closed_gives_a_phq2_result(total: int, band: str) -> None:
    phq9 = LIBRARY.questionnaires["phq-9"]
    answers = answers_for(phq9, PHQ2, total)
    evaluation = evaluate(phq9, answers)
    assert not page_enabled(phq9.pages()[1], evaluation)
    result = score(phq9, answers, completed_at=NOW)
    assert result is not None and result.instrument is PHQ2 and (result.total, result.severity) == (total, band)


def test_phq2_gate_opens_at_three_and_a_partial_phq9_is_never_scored() -> None:
    phq9 = LIBRARY.questionnaires["phq-9"]
    answers: Answers = {"44250-9": ["LA6570-1"], "44255-8": ["LA6569-3"]}
    evaluation = evaluate(phq9, answers)
    assert page_enabled(phq9.pages()[1], evaluation)
    assert evaluation.calculated["55758-7"] == 3
    assert score(phq9, answers, completed_at=NOW) is None
    answers["44259-0"] = ["LA6568-5"]
    assert score(phq9, answers, completed_at=NOW) is None


@pytest.mark.parametrize(("total", "band"), [(0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"),
                                             (10, "moderate"), (14, "moderate"), (15, "severe"), (21, "severe")])
def test_gad7_bands(total: int, band: str) -> None:
    gad7 = LIBRARY.questionnaires["gad-7"]
    result = score(gad7, answers_for(gad7, GAD7, total), completed_at=NOW)
    assert result is not None and (result.total, result.severity) == (total, band)


@pytest.mark.parametrize(("sex", "total", "band"), [("M", 3, "negative"), ("M", 4, "positive"), ("F", 2, "negative"),
                                                    ("F", 3, "positive"), ("U", 3, "negative"), ("M", 12, "positive")])
def test_auditc_bands_by_sex(sex: str, total: int, band: str) -> None:
    audit = LIBRARY.questionnaires["audit-c"]
    result = score(audit, answers_for(audit, AUDITC, total), completed_at=NOW, sex=sex)
    assert result is not None and (result.total, result.severity) == (total, band)


@pytest.mark.parametrize(("total", "band"), [(0, "not at risk"), (3, "not at risk"), (4, "may be at risk"),
                                             (14, "may be at risk")])
def test_steadi_bands(total: int, band: str) -> None:
    steadi = LIBRARY.questionnaires["steadi"]
    result = score(steadi, answers_for(steadi, STEADI, total), completed_at=NOW)
    assert result is not None and (result.total, result.severity) == (total, band)


def test_item9_above_zero_is_an_urgent_alert() -> None:
    phq9 = LIBRARY.questionnaires["phq-9"]
    answers = answers_for(phq9, PHQ9, 10)
    answers["44260-8"] = ["LA6568-5"]
    assert urgent_alerts(phq9, answers) == []
    answers["44260-8"] = ["LA6569-3"]
    assert urgent_alerts(phq9, answers) == ["phq9_item9"]
    assert urgent_alerts(LIBRARY.questionnaires["gad-7"], answers) == []


def test_intake_follow_up_questions_appear_only_after_yes() -> None:
    intake = LIBRARY.questionnaires["intake"]
    pages = intake.pages()
    assert [[i.link_id for i in page] for page in pages] == [
        ["reason", "allergies-changed"], ["allergies", "medications-changed"], ["medications"]]
    answers, errors = read_page(intake, pages[0], {"reason": ["Cough"], "allergies-changed": ["LA32-8"]}, {})
    assert errors == {}
    evaluation = evaluate(intake, answers)
    assert "allergies" not in evaluation.enabled and page_enabled(pages[1], evaluation)
    answers, errors = read_page(intake, pages[1], {"allergies": ["ignored"], "medications-changed": ["LA33-6"]},
                                answers)
    assert errors == {} and "allergies" not in answers
    assert "medications" in evaluate(intake, answers).enabled


def test_enable_when_operators_and_behaviour() -> None:
    raw = {"resourceType": "Questionnaire", "status": "active", "item": [
        {"linkId": "n", "type": "integer", "text": "N"},
        {"linkId": "b", "type": "boolean", "text": "B"},
        {"linkId": "any", "type": "string", "text": "any", "enableBehavior": "any", "enableWhen": [
            {"question": "n", "operator": ">", "answerInteger": 5},
            {"question": "b", "operator": "=", "answerBoolean": True}]},
        {"linkId": "all", "type": "string", "text": "all", "enableBehavior": "all", "enableWhen": [
            {"question": "n", "operator": "<=", "answerInteger": 5},
            {"question": "b", "operator": "exists", "answerBoolean": True}]},
        {"linkId": "not", "type": "string", "text": "not", "enableWhen": [
            {"question": "n", "operator": "!=", "answerInteger": 1}]},
    ]}
    questionnaire = load(raw)
    assert evaluate(questionnaire, {}).enabled == {"n", "b", "not"}
    assert evaluate(questionnaire, {"n": ["6"]}).enabled == {"n", "b", "any", "not"}
    assert evaluate(questionnaire, {"n": ["5"], "b": ["false"]}).enabled == {"n", "b", "all", "not"}
    assert evaluate(questionnaire, {"n": ["1"], "b": ["true"]}).enabled == {"n", "b", "any", "all"}


def test_lhc_forms_style_phq9_loads_renders_as_choices_and_scores_the_same() -> None:
    lhc = load_file(LHC_PHQ9)
    ours = LIBRARY.questionnaires["phq-9"]
    pages = lhc.pages()
    assert len(pages) == 1 and all(item.type == "choice" and item.options for item in pages[0])
    assert "/44261-6" not in {item.link_id for item in pages[0]}          # the calculated total is never shown
    ours_answers = answers_for(ours, PHQ9, 13)
    lhc_answers = {f"/{code}": value for code, value in ours_answers.items() if code[0].isdigit()}
    ours_score, lhc_score = score(ours, ours_answers, completed_at=NOW), score(lhc, lhc_answers, completed_at=NOW)
    assert ours_score is not None and lhc_score is not None
    assert (lhc_score.instrument, lhc_score.total, lhc_score.severity) == (PHQ9, 13, "moderate")
    assert [(i.code, i.answer_code) for i in lhc_score.items] == [(i.code, i.answer_code) for i in ours_score.items]
    assert evaluate(lhc, lhc_answers).calculated["/44261-6"] == 13
    lhc_answers["/44260-8"] = ["LA6570-1"]
    assert urgent_alerts(lhc, lhc_answers) == ["phq9_item9"]
    del lhc_answers["/44260-8"]                      # item 9 is optional in that file, but a partial PHQ-9 …
    assert score(lhc, lhc_answers, completed_at=NOW) is None  # … is never scored


def test_questionnaire_response_is_valid_r4() -> None:
    phq9 = LIBRARY.questionnaires["phq-9"]
    answers = answers_for(phq9, PHQ9, 12)
    evaluation = evaluate(phq9, answers)
    resource = build_response(phq9, evaluation.answered(phq9, answers), evaluation.calculated, evaluation.enabled,
                              status="completed", subject="Patient/1", encounter="Encounter/V1", authored=NOW,
                              language="es", response_id="qr-1")
    QuestionnaireResponse.model_validate(resource)
    assert resource["questionnaire"] == "urn:frontdesk:questionnaire:phq-9|2026.1"
    text = json.dumps(resource)
    assert '"linkId": "44261-6"' in text and '"valueInteger": 12' in text


def test_form_input_is_checked() -> None:
    intake = LIBRARY.questionnaires["intake"]
    page = intake.pages()[0]
    _, errors = read_page(intake, page, {"reason": [""], "allergies-changed": ["maybe"]}, {})
    assert errors == {"reason": "required", "allergies-changed": "choice"}
    _, errors = read_page(intake, page, {"reason": ["x\x07y"], "allergies-changed": ["LA32-8"]}, {})
    assert errors == {"reason": "control"}
    _, errors = read_page(intake, page, {"reason": ["x" * 501], "allergies-changed": ["LA32-8"]}, {})
    assert errors == {"reason": "too_long"}
    answers, errors = read_page(intake, page, {"reason": ["<script>alert(1)</script>\nsecond line"],
                                               "allergies-changed": ["LA32-8"]}, {})
    assert errors == {} and answers["reason"] == ["<script>alert(1)</script>\nsecond line"]
    assert parse_us_date("3/9/1984") == parse_us_date("03091984") == dt.date(1984, 3, 9)


def broken(change: dict[str, object]) -> dict[str, object]:
    raw = copy.deepcopy(json.loads((Path(__file__).parents[2] / "server/questionnaires/library/gad-7.json")
                                   .read_text()))
    raw["item"][0]["item"][0].update(change)
    return raw


@pytest.mark.parametrize(("change", "message"), [
    ({"type": "attachment"}, "type 'attachment' is not supported"),
    ({"type": "no-such-type"}, "type 'no-such-type' is not supported"),
    ({"linkId": 7}, "not valid FHIR R4: item.0.item.0.linkId"),
    ({"enableWhen": [{"question": "nowhere", "operator": "=", "answerBoolean": True}]}, "unknown item 'nowhere'"),
    ({"answerOption": [{"valueString": "a"}]}, "answerOption must be valueCoding"),
    ({"answerValueSet": "http://example.org/vs"}, "answerValueSet is not supported"),
    ({"extension": [{"url": "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression",
                     "valueExpression": {"language": "text/fhirpath", "expression": "item.where("}}]},
     "does not compile"),
])
def test_files_outside_the_subset_are_refused_with_the_reason(change: dict[str, object], message: str) -> None:
    with pytest.raises(QuestionnaireError, match=message):
        load(broken(change), "gad-7.json")


def test_a_file_that_is_not_json_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "mood.json"
    bad.write_text("{ not json")
    with pytest.raises(QuestionnaireError, match=r"^mood.json: not valid JSON"):
        load_file(bad)
