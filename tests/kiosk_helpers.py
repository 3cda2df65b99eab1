"""Setting up a kiosk test: today's schedule and an enrolled kiosk, driven through the check-in service."""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass

from sqlalchemy import select

from server.models import Visit
from server.services import Services
from server.services.context import SYSTEM
from server.services.kiosks import Credentials
from server.services.patients import AppointmentRecord
from server.services.patients import InsuranceRecord
from server.services.patients import PatientRecord


def schedule(services: Services, mrn: str, family: str, given: str, born: dt.date, start: dt.datetime, *,
             provider: str = "Dr. Okafor", sex: str = "F", appointment_id: str | None = None) -> int:
    """One patient with one appointment; returns the visit id."""
    with services.uow.begin() as session:
        patient_id = services.patients.upsert_in(session, PatientRecord(
            mrn=mrn, mrn_authority="TEST", family_name=family, given_name=given, birth_date=born, sex=sex,
            phone="555-010-0199", email=f"{mrn.lower()}@example.org", address_line1="1 Main St", city="Springfield",
            insurance=(InsuranceRecord("Acme Health", "XJ99887766"),)), actor=SYSTEM)
        appointment = services.patients.schedule_in(session, patient_id, AppointmentRecord(
            source="TEST", external_id=appointment_id or f"A-{mrn}", start_at=start, provider_name=provider,
            location="EXAM1", appointment_type="FU"), actor=SYSTEM)
        return int(session.scalar(select(Visit.id).where(Visit.appointment_id == appointment)))


@dataclass
class Kiosk:
    """An enrolled kiosk browser: its device secret and the current session cookie."""

    services: Services
    device: str
    session: str | None = None

    @property
    def creds(self) -> Credentials:
        return Credentials(self.device, self.session, "10.1.1.1")

    def start(self, mode: str = "checkin") -> None:
        self.session = self.services.checkin.start(self.creds, mode)

    def step(self) -> str:
        return self.services.checkin.screen(self.creds, "").step

    def identify(self, last: str, born: str) -> t.Any:
        return self.services.checkin.identify(self.creds, last, born)

    def to_questions(self, last: str, born: str) -> None:
        """Identify, confirm, accept the details and sign every consent."""
        self.start()
        self.identify(last, born)
        assert self.step() == "appointment", self.step()
        self.services.checkin.confirm_appointment(self.creds, True)
        self.services.checkin.confirm_details(self.creds, False)
        from server.services.consents import Signature

        while self.step() == "consent":
            self.services.checkin.sign(self.creds, Signature("typed", "A. Patient"))

    def answer_all(self, choose: t.Callable[[str, list[str]], str] = lambda _link, options: options[0]) -> None:
        """Answer every questionnaire page, picking with ``choose(link_id, option codes)``."""
        for _ in range(40):
            step = self.step()
            if step == "notice":
                self.services.checkin.continue_after_notice(self.creds)
                continue
            if step != "questions":
                return
            screen = self.services.checkin.screen(self.creds, "questions")
            form: dict[str, list[str]] = {}
            for top in screen.data["page"]:
                for item in top.walk():
                    if not item.asks:
                        continue
                    if item.type == "choice":
                        form[item.link_id] = [choose(item.link_id, [o.coding.code for o in item.options])]
                    elif item.type == "boolean":
                        form[item.link_id] = ["false"]
                    else:
                        form[item.link_id] = ["Cough"]
            result = self.services.checkin.answer(self.creds, form)
            assert result is None, result.errors if result else None
        raise AssertionError("questionnaires did not end")


def enrolled_kiosk(services: Services, name: str = "lobby-1") -> Kiosk:
    """Register a kiosk as ``frontdesk kiosks add`` does and enrol it with the printed code."""
    code = services.devices.add("kiosk", name)
    secret = services.kiosks.enroll(code, "10.1.1.1")
    assert secret is not None
    return Kiosk(services, secret)
