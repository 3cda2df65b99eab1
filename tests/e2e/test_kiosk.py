"""The patient kiosk in a real Chromium against ``frontdesk serve``, with the schedule loaded over HL7
(``import-hl7`` of SIU^S12) and a reference records system receiving what we send.

Every screen and dialog is scanned with axe-core (WCAG 2.0/2.1/2.2 A and AA) in English and Spanish and
in large-text mode, and measured (:mod:`tests.e2e.layout`): every target at least 44 x 44 px, nothing
scrolling sideways or cut off in portrait 1080 x 1920 and landscape 1920 x 1080, both also at 200 % zoom.
A check-in is also done with the keyboard alone, and one with JavaScript turned off.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sqlite3
import subprocess
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message as hl7apy_parse
from playwright.sync_api import Browser
from playwright.sync_api import Locator
from playwright.sync_api import Page
from playwright.sync_api import expect

from hl7.er7 import parse_message
from server.demo import siu_s12
from tests.browsers import assert_accessible
from tests.e2e.conftest import Served
from tests.e2e.conftest import serve
from tests.e2e.conftest import sign_in
from tests.e2e.layout import PORTRAIT
from tests.e2e.layout import assert_fits
from tests.e2e.layout import focus_problem
from tests.procs import FRONTDESK
from tests.procs import eventually
from tests.procs import free_port
from tests.procs import run

NOW = dt.datetime.now(dt.UTC)
# (MRN, last name, first name, born YYYYMMDD, minutes from now, provider id, provider name)
PATIENTS = (
    ("E2E01", "Nuñez-O'Hara", "Rosa", "19500214", 10, "D01", "Okafor"),     # 65+: STEADI too
    ("E2E02", "Lindqvist", "Maja", "19790101", 15, "D02", "Haddad"),
    ("E2E03", "Twin", "Ada", "19900505", 5, "D01", "Okafor"),
    ("E2E04", "Twin", "Bea", "19900505", 25, "D02", "Haddad"),
    ("E2E05", "Scanner", "Sam", "19700707", 20, "D01", "Okafor"),
    ("E2E06", "Idle", "Ida", "19850808", 10, "D02", "Haddad"),
    ("E2E07", "Leaving", "Leo", "19750303", 0, "D01", "Okafor"),
    ("E2E08", "Lobby", "Lou", "19880808", 10, "D01", "Okafor"),
    ("E2E09", "Keys", "Kim", "19920909", 10, "D02", "Haddad"),
    ("E2E10", "Draw", "Dee", "19930303", 10, "D01", "Okafor"),
    ("E2E11", "Plain", "Pat", "19940404", 10, "D01", "Okafor"),
)


def schedule_file(path: Path) -> Path:
    """Today's SIU^S12 messages for :data:`PATIENTS`, as a scheduler would send them."""
    path.write_bytes(b"".join(
        siu_s12(f"E2E-SIU-{n}", NOW, NOW + dt.timedelta(minutes=minutes), mrn, family, given, born, "F", "en",
                (provider_id, provider, ""), "EXAM1")
        for n, (mrn, family, given, born, minutes, provider_id, provider) in enumerate(PATIENTS, start=1)))
    return path


@dataclass
class Site:
    """A running ``serve`` with today's schedule, and the records system it delivers to."""

    served: Served
    records: subprocess.Popen[str]
    records_port: int
    store: Path

    def kiosk_code(self, name: str) -> str:
        result = run(["kiosks", "add", name], self.served.env)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()[-1]

    def stored(self, message_type: str) -> list[bytes]:
        """The messages of one type the records system has stored, in arrival order."""
        with contextlib.closing(sqlite3.connect(self.store)) as db:
            return [bytes(row[0]) for row in db.execute(
                "SELECT payload FROM message WHERE message_type LIKE ? ORDER BY id", (message_type + "%",))]

    def received(self) -> str:
        """What the records system has printed so far (one line per message)."""
        return self.store.with_suffix(".log").read_text() if self.store.with_suffix(".log").exists() else ""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Site]:
    tmp = tmp_path_factory.mktemp("kiosk-site")
    records_port = free_port()
    store = tmp / "records.sqlite3"
    log = store.with_suffix(".log").open("w")
    records = subprocess.Popen([FRONTDESK, "records-server", "--listen",
                                f"127.0.0.1:{records_port}", "--store", str(store)],
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    served = serve(tmp, FRONTDESK_HL7_DESTINATION_HOST="127.0.0.1", FRONTDESK_HL7_DESTINATION_PORT=str(records_port))
    imported = run(["import-hl7", str(schedule_file(tmp / "schedule.hl7"))], served.env)
    loaded = f"{len(PATIENTS)} messages: AA={len(PATIENTS)}"
    assert imported.returncode == 0 and loaded in imported.stdout, imported.stdout
    served.add_user("desk", "front_desk")
    yield Site(served, records, records_port, store)
    served.stop()
    records.terminate()
    records.wait(timeout=10)
    log.close()


@pytest.fixture
def kiosk_page(browser: Browser) -> t.Iterator[Page]:
    context = browser.new_context(viewport=PORTRAIT, locale="en-US")
    tab = context.new_page()
    yield tab
    context.close()


def enrol(page: Page, site: Site, name: str, *, scripts: bool = True) -> None:
    page.goto(site.served.base + "/kiosk/")
    expect(page.get_by_label("Enrollment code")).to_be_visible()
    assert page.get_by_role("button").all_inner_texts() == ["Enroll"]     # nothing else on an unenrolled browser
    if scripts:                                                          # the checks run in the page's JavaScript
        check(page, "enrolment")
    page.get_by_label("Enrollment code").fill(site.kiosk_code(name))
    page.get_by_role("button", name="Enroll").click()
    expect(page.get_by_role("button", name="Check in", exact=True)).to_be_visible()


def check(page: Page, what: str) -> None:
    """axe-core and the layout checks on the page as it is now (once its stylesheet has loaded: a page
    just swapped in after a form post can be in the DOM before its CSS applies)."""
    page.wait_for_load_state("load")
    assert_accessible(page, what)
    assert_fits(page, what)


@contextlib.contextmanager
def large_text(page: Page) -> t.Iterator[None]:
    """The page in large-text mode, switched back afterwards."""
    page.locator("button[aria-pressed]").click()
    expect(page.locator("body.large")).to_have_count(1)
    yield
    page.locator("button[aria-pressed]").click()
    expect(page.locator("body.large")).to_have_count(0)


@contextlib.contextmanager
def other_language(page: Page) -> t.Iterator[str]:
    """The page in the other language (English <-> Spanish), switched back afterwards."""
    language = page.locator("html").get_attribute("lang")
    other = "en" if language == "es" else "es"
    page.locator("button[name='language']").click()
    expect(page.locator("html")).to_have_attribute("lang", other)
    yield other
    page.locator("button[name='language']").click()
    expect(page.locator("html")).to_have_attribute("lang", language or "en")


def scan(page: Page, what: str, *, large: bool = True, languages: bool = True) -> None:
    """:func:`check` the page as it is; then in large-text mode and in the other language when asked.

    Switching reloads the page from the server, so a page showing errors is scanned as it is only.
    """
    check(page, what)
    if large:
        with large_text(page):
            check(page, f"{what} (large text)")
    if languages:
        with other_language(page) as language:
            check(page, f"{what} ({language})")
            if large:
                with large_text(page):
                    check(page, f"{what} ({language}, large text)")


def identify(page: Page, last: str, born: str, *, button: str = "Continue") -> None:
    page.get_by_label("Last name").fill(last)
    page.get_by_label("Date of birth").fill(born)
    page.get_by_role("button", name=button, exact=True).click()


def answer_questionnaires(page: Page, scans: list[str] | None, *, item9: str | None = None, texts: dict[str, str],
                          large: bool = False, languages: bool = False, errors: bool = False) -> None:
    """Answer every questionnaire page like a patient: the first answer, except PHQ-9 item 1 (opens the gate).

    With ``scans``, each questionnaire's first page (and the follow-up notice) is scanned and its title
    added; also in large text and in the other language when asked. With ``errors``, the first page is
    sent once unanswered and its errors scanned.
    """
    for _ in range(20):
        if page.locator("body[data-step='notice']").count():
            if scans is not None:
                scans.append(page.locator("h1").inner_text())
                # Only one flow reaches the notice: with ``large``, it is scanned in both languages.
                scan(page, "notice", large=large, languages=large or languages)
            with page.expect_navigation():
                page.get_by_role("button", name=texts["continue"]).click()
            continue
        if not page.locator("body[data-step='questions']").count():
            return
        title = page.locator("h1").inner_text()
        if scans is not None and title not in scans:
            if errors and not scans:
                with page.expect_navigation():
                    page.get_by_role("button", name=texts["continue"], exact=True).click()
                expect(page.get_by_role("alert")).to_be_visible()
                scan(page, f"questionnaire {title} with errors", large=False, languages=False)
            scans.append(title)
            scan(page, f"questionnaire {title}", large=large, languages=languages)
        for fieldset in page.locator("fieldset.tiles").all():
            legend = fieldset.locator("legend").inner_text()
            labels = fieldset.locator("label")
            if texts["item1"] in legend:
                labels.nth(3).click()
            elif item9 and texts["item9"] in legend:
                labels.get_by_text(item9).click()
            else:
                labels.first.click()
        for box in page.locator("textarea").all():
            box.fill("Cough <script>alert(1)</script>")
        # Wait for the next page: reading the step of a page still loading would end the loop early.
        with page.expect_navigation():
            page.get_by_role("button", name=texts["continue"], exact=True).click()
    raise AssertionError("questionnaires did not end")


ENGLISH = {"continue": "Continue", "item1": "Little interest", "item9": "better off dead"}
SPANISH = {"continue": "Continuar", "item1": "Poco interés", "item9": "mejor muerto"}


def test_full_check_in_in_english_reaches_the_records_system(kiosk_page: Page, site: Site) -> None:
    page = kiosk_page
    enrol(page, site, "e2e-en")
    scan(page, "welcome")
    page.get_by_role("button", name="Check in", exact=True).click()
    scan(page, "identify")
    identify(page, "", "1950-02-14")
    expect(page.get_by_role("alert")).to_contain_text("There is a problem")
    scan(page, "identify with errors", large=False, languages=False)
    identify(page, "nunez ohara", "2/14/1950")
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Rosa")
    scan(page, "appointment")
    page.get_by_role("button", name="Yes, that's me").click()
    expect(page.get_by_text("Number ending in 0100")).to_be_visible()
    scan(page, "details")
    page.get_by_role("button", name="Change", exact=True).click()
    scan(page, "change details")
    page.get_by_label("Phone number").fill("not a phone")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("alert")).to_be_visible()
    scan(page, "change details with errors", large=False, languages=False)
    page.get_by_label("Phone number").fill("555-010-0777")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_contain_text("Staff will check your changes")
    page.get_by_role("button", name="Yes, this is correct").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Consent to treatment")
    scan(page, "consent")
    page.get_by_role("button", name="I agree and sign").click()
    expect(page.get_by_role("alert")).to_be_visible()                    # no name typed
    scan(page, "consent with errors", large=False, languages=False)
    page.get_by_label("To sign, type your full name").fill("Rosa Nuñez-O'Hara")
    page.get_by_role("button", name="I agree and sign").click()
    page.get_by_label("To sign, type your full name").fill("Rosa Nuñez-O'Hara")
    page.get_by_role("button", name="I agree and sign").click()
    scans: list[str] = []
    answer_questionnaires(page, scans, texts=ENGLISH, large=True, languages=True, errors=True)
    assert {"Mood questions (PHQ-9)", "Worry questions (GAD-7)", "Staying steady on your feet"} <= set(scans)
    expect(page.get_by_role("heading", level=1)).to_have_text("You're checked in")
    scan(page, "checked in")
    eventually(lambda: "ADT^A04" in site.received() and "ORU^R01" in site.received(), what="A04 and ORU delivered")
    (oru,) = [m for m in site.stored("ORU^R01") if parse_message(m).value("PID", 3) == "E2E01"]
    hl7apy_parse(oru.decode(), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True).validate()
    message = parse_message(oru)
    assert [obr.raw(4).split("^")[0] for obr in message.all("OBR")] == [
        "intake", "44249-1", "69737-5", "72109-2", "steadi-stay-independent"]
    observations = {obx.value(3): obx.value(5) for obx in message.all("OBX")}
    assert observations["8661-1"] == "Cough <script>alert(1)</script>"     # the reason for the visit, as typed
    assert {"44261-6", "70274-6", "75626-2", "steadi-total"} <= set(observations)


def test_full_check_in_in_spanish_with_every_screen_scanned(kiosk_page: Page, site: Site) -> None:
    page = kiosk_page
    enrol(page, site, "e2e-es")
    page.get_by_role("button", name="Español").click()
    expect(page.locator("html")).to_have_attribute("lang", "es")
    scan(page, "bienvenida")
    page.get_by_role("button", name="Registrarse", exact=True).click()
    page.get_by_label("Apellido").fill("Lindqvist")
    page.get_by_label("Fecha de nacimiento").fill("31/01/1979")
    page.get_by_role("button", name="Continuar", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("Hay un problema")
    scan(page, "identificación con errores", large=False, languages=False)
    page.get_by_label("Apellido").fill("Lindqvist")
    page.get_by_label("Fecha de nacimiento").fill("01/01/1979")
    page.get_by_role("button", name="Continuar", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hola, Maja")
    scan(page, "cita")
    page.get_by_role("button", name="Sí, soy yo").click()
    scan(page, "datos")
    page.get_by_role("button", name="Sí, es correcto").click()
    scan(page, "consentimiento")
    page.get_by_role("button", name="Acepto y firmo").click()
    expect(page.get_by_role("alert")).to_be_visible()
    scan(page, "consentimiento con errores", large=False, languages=False)
    for _ in range(2):
        page.get_by_label("Para firmar, escriba su nombre completo").fill("Maja Lindqvist")
        page.get_by_role("button", name="Acepto y firmo").click()
    scans: list[str] = []
    answer_questionnaires(page, scans, item9="Varios días", texts=SPANISH, large=True, errors=True)
    assert {"Preguntas sobre el estado de ánimo (PHQ-9)", "Preguntas sobre la preocupación (GAD-7)"} <= set(scans)
    assert "Gracias por sus respuestas" in scans                          # the item-9 follow-up notice, no score
    expect(page.get_by_role("heading", level=1)).to_have_text("Ya está registrado(a)")
    expect(page.locator("html")).to_have_attribute("lang", "es")
    scan(page, "registrado")


def test_idle_timeout_wipes_the_session_and_back_shows_nothing(kiosk_page: Page, site: Site) -> None:
    page = kiosk_page
    enrol(page, site, "e2e-idle")
    page.clock.install()
    page.goto(site.served.base + "/kiosk/")
    page.get_by_role("button", name="Check in", exact=True).click()
    identify(page, "Idle", "08/08/1985")
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Ida")
    page.get_by_role("button", name="Yes, that's me").click()
    expect(page.get_by_text("Number ending in 0100")).to_be_visible()
    page.clock.run_for(90_000)
    dialog = page.get_by_role("dialog", name="Are you still there?")
    expect(dialog).to_be_visible()
    expect(page.locator("#timeout-live")).to_contain_text("30 seconds left.")
    check(page, "timeout warning")
    dialog.get_by_role("button", name="I need more time").click()
    expect(dialog).to_be_hidden()
    page.clock.run_for(90_000)
    expect(dialog).to_be_visible()
    page.clock.run_for(31_000)
    expect(page.get_by_role("button", name="Check in", exact=True)).to_be_visible()
    page.go_back()
    expect(page.get_by_role("button", name="Check in", exact=True)).to_be_visible()
    content = page.content()
    assert "Ida" not in content and "0100" not in content and "Okafor" not in content


def test_timeout_dialog_is_accessible_in_both_languages_and_large_text(kiosk_page: Page, site: Site) -> None:
    page = kiosk_page
    enrol(page, site, "e2e-dialog")
    page.clock.install()
    page.goto(site.served.base + "/kiosk/")
    page.get_by_role("button", name="Check in", exact=True).click()
    expect(page.get_by_label("Last name")).to_be_visible()
    for language, large in (("en", False), ("en", True), ("es", True), ("es", False)):
        if page.locator("html").get_attribute("lang") != language:
            page.locator("button[name='language']").click()
            expect(page.locator("html")).to_have_attribute("lang", language)
        if bool(page.locator("body.large").count()) != large:
            page.locator("button[aria-pressed]").click()
            expect(page.locator("body.large")).to_have_count(int(large))
        page.clock.run_for(90_000)
        dialog = page.get_by_role("dialog", name="¿Sigue ahí?" if language == "es" else "Are you still there?")
        expect(dialog).to_be_visible()
        check(page, f"timeout dialog, {language}{', large text' if large else ''}")
        page.keyboard.press("Enter")                                     # "I need more time" has the focus
        expect(dialog).to_be_hidden()


def test_twins_pick_their_appointment_by_time_and_clinician(kiosk_page: Page, site: Site) -> None:
    page = kiosk_page
    enrol(page, site, "e2e-twins")
    page.get_by_role("button", name="Check in", exact=True).click()
    identify(page, "Twin", "05/05/1990")
    expect(page.get_by_role("heading", name="Which appointment is yours?")).to_be_visible()
    content = page.content()
    assert "Ada" not in content and "Bea" not in content
    scan(page, "choose twin")
    page.get_by_label(re.compile("Haddad")).check()
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Bea")


def test_no_match_then_lockout_look_the_same_and_staff_see_the_flag(kiosk_page: Page, site: Site,
                                                                    browser: Browser) -> None:
    page = kiosk_page
    enrol(page, site, "e2e-lock")
    page.get_by_role("button", name="Check in", exact=True).click()
    for attempt in range(6):
        identify(page, "Nobody", "01/01/1950" if attempt < 5 else "01/01/1951")
        expect(page.get_by_role("heading", level=1)).to_have_text("Please see the front desk")
        if attempt == 0:
            scan(page, "see the front desk")
        page.get_by_role("button", name="Try again").click()
    identify(page, "Scanner", "07/07/1970")                     # a real patient, but this kiosk is locked
    expect(page.get_by_role("heading", level=1)).to_have_text("Please see the front desk")
    staff = browser.new_page()
    sign_in(staff, site.served.base, "desk")
    staff.goto(site.served.base + "/staff/kiosk/")
    expect(staff.get_by_text("Kiosk identification locked after repeated failures").first).to_be_visible()
    assert_accessible(staff, "staff kiosk page")
    staff.close()


def test_letter_code_typed_by_a_barcode_scanner(kiosk_page: Page, site: Site) -> None:
    result = run(["checkin-code", "AE2E05"], site.served.env)
    assert result.returncode == 0, result.stderr
    code = result.stdout.split()[-1]
    page = kiosk_page
    enrol(page, site, "e2e-scan")
    expect(page.get_by_label("Appointment code")).to_be_focused()
    page.keyboard.type(code.replace("-", ""), delay=5)          # a USB scanner is a fast keyboard ending in Enter
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Sam")


def test_check_out_with_a_follow_up_request(kiosk_page: Page, site: Site) -> None:
    page = kiosk_page
    staff = kiosk_page.context.browser.new_page()  # type: ignore[union-attr]
    sign_in(staff, site.served.base, "desk")
    row = staff.get_by_role("row").filter(has_text="Leaving")
    row.get_by_role("button", name="Mark arrived").click()
    expect(staff.get_by_role("alert")).to_have_text("Done: the visit is marked as arrived.")
    staff.close()
    enrol(page, site, "e2e-out")
    page.get_by_role("button", name="Check out", exact=True).click()
    identify(page, "Leaving", "03/03/1975")
    expect(page.get_by_role("button", name="Check out now")).to_be_visible()
    scan(page, "check out")
    page.get_by_role("button", name="Check out now").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You're checked out")
    scan(page, "checked out")
    page.get_by_role("button", name="Request a follow-up").click()
    expect(page.get_by_role("status")).to_contain_text("We will contact you")
    eventually(lambda: "ADT^A03" in site.received(), what="A03 delivered")


def test_lobby_updates_without_reload(kiosk_page: Page, site: Site, browser: Browser) -> None:
    lobby = kiosk_page
    enrol(lobby, site, "e2e-lobby-screen")
    lobby.goto(site.served.base + "/kiosk/lobby")
    check(lobby, "lobby")
    before = int(lobby.locator("#waiting").inner_text())
    context = browser.new_context(viewport=PORTRAIT)
    patient = context.new_page()
    enrol(patient, site, "e2e-lobby-kiosk")
    patient.get_by_role("button", name="Check in", exact=True).click()
    identify(patient, "Lobby", "08/08/1988")
    patient.get_by_role("button", name="Yes, that's me").click()
    patient.get_by_role("button", name="Yes, this is correct").click()
    for _ in range(2):
        patient.get_by_label("To sign, type your full name").fill("Lou Lobby")
        patient.get_by_role("button", name="I agree and sign").click()
    answer_questionnaires(patient, [], texts=ENGLISH)
    expect(patient.get_by_role("heading", level=1)).to_have_text("You're checked in")
    context.close()
    expect(lobby.locator("#waiting")).to_have_text(str(before + 1))
    assert "Lobby" not in lobby.content()


def tab_to(page: Page, target: Locator, *, limit: int = 60) -> None:
    """Press Tab until ``target`` has the focus, checking that every element reached shows its focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement === document.body"):
            continue
        assert focus_problem(page) == "", focus_problem(page)
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"Tab never reached {target}")


def press(page: Page, button: Locator) -> None:
    """Tab to a button and press Enter, waiting for the page it leads to."""
    tab_to(page, button)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_check_in_with_the_keyboard_alone(kiosk_page: Page, site: Site) -> None:
    page = kiosk_page
    enrol(page, site, "e2e-keys")
    press(page, page.get_by_role("button", name="Check in", exact=True))
    tab_to(page, page.get_by_label("Last name"))
    page.keyboard.type("Keys")
    tab_to(page, page.get_by_label("Date of birth"))
    page.keyboard.type("09/09/1992")
    press(page, page.get_by_role("button", name="Continue", exact=True))
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Kim")
    press(page, page.get_by_role("button", name="Yes, that's me"))
    press(page, page.get_by_role("button", name="Yes, this is correct"))
    for _ in range(2):
        tab_to(page, page.get_by_label("To sign, type your full name"))
        page.keyboard.type("Kim Keys")
        press(page, page.get_by_role("button", name="I agree and sign"))
    for _ in range(20):
        if not page.locator("body[data-step='questions']").count():
            break
        for fieldset in page.locator("fieldset.tiles").all():
            tab_to(page, fieldset.locator("input").first)
            if ENGLISH["item1"] in fieldset.locator("legend").inner_text():
                for _ in range(3):
                    page.keyboard.press("ArrowDown")                    # arrows move through a radio group
            else:
                page.keyboard.press("Space")
        for box in page.locator("textarea").all():
            tab_to(page, box)
            page.keyboard.type("Headache")
        press(page, page.get_by_role("button", name="Continue", exact=True))
    expect(page.get_by_role("heading", level=1)).to_have_text("You're checked in")
    press(page, page.get_by_role("button", name="Finish"))
    press(page, page.get_by_role("button", name="Check in", exact=True))     # again: nothing changes
    identify(page, "Keys", "09/09/1992")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are already checked in")
    scan(page, "already checked in")


def test_signature_drawn_with_a_finger_or_typed_instead(kiosk_page: Page, site: Site) -> None:
    page = kiosk_page
    enrol(page, site, "e2e-draw")
    page.get_by_role("button", name="Check in", exact=True).click()
    identify(page, "Draw", "03/03/1993")
    page.get_by_role("button", name="Yes, that's me").click()
    page.get_by_role("button", name="Yes, this is correct").click()
    pad = page.locator("canvas.pad")
    expect(pad).to_be_visible()
    box = pad.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 40, box["y"] + box["height"] / 2)
    page.mouse.down()
    for step in range(1, 12):
        page.mouse.move(box["x"] + 40 + step * 30, box["y"] + box["height"] / 2 + (15 if step % 2 else -15))
    page.mouse.up()
    assert page.locator("input[name='drawing']").input_value().startswith("M")
    check(page, "consent with a drawn signature")
    with large_text(page):
        check(page, "consent signature pad (large text)")
    pad = page.locator("canvas.pad")                                    # the page was reloaded: draw again
    box = pad.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 40, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + 300, box["y"] + 120, steps=8)
    page.mouse.up()
    page.get_by_role("button", name="I agree and sign").click()
    expect(page.get_by_text("Form 2 of 2")).to_be_visible()
    # The alternative that needs no dragging: the typed name, on the same form as the pad.
    page.get_by_label("To sign, type your full name").fill("Dee Draw")
    page.get_by_role("button", name="I agree and sign").click()
    expect(page.locator("body[data-step='questions']")).to_have_count(1)


def test_check_in_without_javascript(browser: Browser, site: Site) -> None:
    context = browser.new_context(viewport=PORTRAIT, java_script_enabled=False)
    page = context.new_page()
    try:
        enrol(page, site, "e2e-plain", scripts=False)
        page.get_by_role("button", name="Check in", exact=True).click()
        identify(page, "Plain", "04/04/1994")
        page.get_by_role("button", name="Yes, that's me").click()
        page.get_by_role("button", name="Yes, this is correct").click()
        expect(page.locator("canvas.pad")).to_be_hidden()               # the pad needs a script; the name does not
        for _ in range(2):
            page.get_by_label("To sign, type your full name").fill("Pat Plain")
            page.get_by_role("button", name="I agree and sign").click()
        answer_questionnaires(page, None, texts=ENGLISH)
        expect(page.get_by_role("heading", level=1)).to_have_text("You're checked in")
        page.get_by_role("button", name="Finish").click()
        expect(page.get_by_role("button", name="Check in", exact=True)).to_be_visible()
    finally:
        context.close()
