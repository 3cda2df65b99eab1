"""The interface monitor in a real Chromium: an analyst finds why a patient's message did not go in.

A schedule file with one message missing the patient's family name is fed
through ``frontdesk import-hl7``; an ADT for another patient is held after the
records system refused it (seeded as a dead letter, as the outbox would store
it). The administrator then finds both from ``/staff/interfaces`` in a few
clicks, reads our error beside the field it names, sends the held message
again and tries the rejected one again. Every page passes axe.
"""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest
from playwright.sync_api import Page
from playwright.sync_api import expect
from sqlalchemy import select

from server import create_app
from server.config import Config
from server.models import Patient
from server.services import Services
from server.services.outbox import patient_key
from tests.browsers import assert_accessible
from tests.e2e.conftest import Served
from tests.e2e.conftest import serve
from tests.e2e.conftest import sign_in
from tests.procs import run

SCHEDULE = Path(__file__).resolve().parents[1] / "fixtures" / "inbound" / "siu_one_bad_lf.hl7"
HELD_ADT = b"MSH|^~\\&|FRONTDESK|CLINIC|EHR|CLINIC|20261126080000||ADT^A04|HELD1|P|2.5.1\r"
REFUSAL = "AE: Unknown location EXAM9 for this clinic"


@pytest.fixture
def monitored(tmp_path: Path) -> t.Iterator[Served]:
    """``frontdesk serve`` with a day's schedule received (one message rejected) and one held ADT."""
    server = serve(tmp_path, "[web]\nmfa_roles = []\n")
    try:
        imported = run(["import-hl7", str(SCHEDULE)], server.env)
        assert imported.returncode == 1 and "AE" in imported.stdout, imported.stdout
        config = Config.for_tests(db_url=f"sqlite:///{server.instance / 'frontdesk.db'}", instance_dir=server.instance)
        services = t.cast(Services, create_app(config).extensions["frontdesk"])
        with services.uow.begin() as session:
            patient_id = session.scalars(select(Patient.id).where(Patient.mrn == "MR77006")).one()
            services.outbox.enqueue(session, HELD_ADT, control_id="HELD1", message_type="ADT^A04",
                                    ordering_key=patient_key(patient_id), dead_reason=REFUSAL)
        server.add_user("ana", "admin")
        yield server
    finally:
        server.stop()


def test_an_analyst_finds_why_a_message_did_not_go_in_and_acts_on_it(page: Page, monitored: Served) -> None:
    sign_in(page, monitored.base, "ana")
    page.get_by_role("navigation", name="Staff").get_by_role("link", name="Interfaces").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Interfaces")
    held = page.get_by_role("row").filter(has_text="HELD1")
    expect(held).to_contain_text("MR77006")
    expect(held).to_contain_text(REFUSAL)
    expect(page.get_by_role("row").filter(has_text="IMP-BAD-0002")).to_contain_text("Not applied")
    assert_accessible(page, "interface monitor")

    page.get_by_label("Patient MRN").fill("MR77007")
    page.get_by_role("button", name="Find messages").click()
    expect(page.get_by_role("table").filter(has_text="1 found")).to_be_visible()
    assert "MR77007" not in page.url
    assert_accessible(page, "interface monitor with search results")

    page.get_by_role("link", name="IMP-BAD-0002").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Message IMP-BAD-0002")
    reason = page.get_by_role("status").filter(has_text="Why it was not applied")
    expect(reason).to_contain_text("PID-5")
    expect(page.get_by_role("row").filter(has_text="PID-3")).to_contain_text("MR77007")
    expect(page.get_by_role("table", name="MSA · Acknowledgement (our answer)")).to_contain_text("AE")
    assert_accessible(page, "received message")
    page.get_by_role("button", name="Apply it again message IMP-BAD-0002").click()
    expect(page.get_by_role("alert")).to_contain_text("still cannot be applied")
    assert_accessible(page, "received message after a failed reprocess")

    page.get_by_role("link", name="Back to interfaces").click()
    page.get_by_label("Action", exact=True).select_option("retry")
    page.get_by_label("Which messages").select_option("mrn")
    page.get_by_label("MRN or error text").fill("MR77006")
    page.get_by_role("button", name="Apply to these messages").click()
    expect(page.get_by_role("alert")).to_have_text("1 message will be sent again now.")
    expect(page.get_by_text("No message is held.")).to_be_visible()
    assert_accessible(page, "interface monitor after a bulk retry")


def test_the_interface_monitor_is_for_administrators_only(page: Page, monitored: Served) -> None:
    monitored.add_user("fatima", "front_desk")
    sign_in(page, monitored.base, "fatima")
    expect(page.get_by_role("navigation", name="Staff").get_by_role("link", name="Interfaces")).to_have_count(0)
    response = page.goto(monitored.base + "/staff/interfaces/")
    assert response is not None and response.status == 403
    response = page.goto(monitored.base + "/staff/interfaces/inbound/999999999")
    assert response is not None and response.status == 403


def test_an_unknown_message_is_not_found(page: Page, monitored: Served) -> None:
    sign_in(page, monitored.base, "ana")
    for path in ("/staff/interfaces/inbound/999999", "/staff/interfaces/inbound/99999999999999999999"):
        response = page.goto(monitored.base + path)
        assert response is not None and response.status == 404, path


