"""A questionnaire or consent file the kiosk cannot use stops ``frontdesk serve`` at start, in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from server.questionnaires import DEFAULT_FOLDER
from tests.procs import clean_env
from tests.procs import free_port
from tests.procs import run


def serve_with(tmp_path: Path, **settings: str) -> tuple[int, str]:
    env = clean_env(tmp_path / "instance", FRONTDESK_WEB_PORT=str(free_port()),
                    FRONTDESK_HL7_LISTEN_PORT=str(free_port()), **settings)
    assert run(["db", "upgrade"], env).returncode == 0
    result = run(["serve"], env)
    return result.returncode, result.stderr


def test_a_questionnaire_that_is_not_fhir_r4_stops_serve_naming_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "questionnaires"
    shutil.copytree(DEFAULT_FOLDER, folder)
    raw = json.loads((folder / "gad-7.json").read_text())
    raw["item"][0]["item"][0]["type"] = "attachment"
    (folder / "gad-7.json").write_text(json.dumps(raw))
    status, stderr = serve_with(tmp_path, FRONTDESK_KIOSK_QUESTIONNAIRES_DIR=str(folder))
    assert status == 2
    assert stderr.strip().splitlines() == [
        "frontdesk: error: questionnaire gad-7.json: item '69725-0': type 'attachment' is not supported "
        "(supported: boolean, choice, date, decimal, display, group, integer, string, text)"]


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("broken.json", "{", "questionnaire broken.json: not valid JSON"),
    ("status.json", json.dumps({"resourceType": "Questionnaire", "status": "maybe", "item": []}),
     "questionnaire status.json: not valid FHIR R4: status"),
    ("items.json", json.dumps({"resourceType": "Questionnaire", "status": "active", "item": "none"}),
     "questionnaire items.json: not valid FHIR R4: item"),
])
def test_other_bad_questionnaire_files(tmp_path: Path, name: str, text: str, expected: str) -> None:
    folder = tmp_path / "questionnaires"
    folder.mkdir()
    (folder / name).write_text(text)
    status, stderr = serve_with(tmp_path, FRONTDESK_KIOSK_QUESTIONNAIRES_DIR=str(folder))
    assert status == 2 and len(stderr.strip().splitlines()) == 1 and expected in stderr


def test_a_consent_without_english_text_stops_serve(tmp_path: Path) -> None:
    folder = tmp_path / "consents"
    folder.mkdir()
    (folder / "01.toml").write_text('id = "x"\nversion = "1"\n[text.es]\ntitle = "T"\nbody = "B"\n')
    status, stderr = serve_with(tmp_path, FRONTDESK_KIOSK_CONSENTS_DIR=str(folder))
    assert status == 2 and stderr.strip() == "frontdesk: error: consent 01.toml: needs an English text ([text.en])"
