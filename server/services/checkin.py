"""Self check-in and check-out at the kiosk, one screen at a time.

The patient's path is a small state machine kept in the server-side kiosk
session (:class:`server.models.KioskSession`, ``step``)::

    identify ─▶ choose (twins) ─▶ appointment ─▶ details (─▶ change) ─▶ consent … ─▶ questions … ─▶ done
        │                              │                                              └▶ notice (PHQ-9 item 9)
        └▶ front_desk (no match, outside the window, locked out)   already (checked in before)
    identify ─▶ checkout ─▶ checked_out (next appointment, "Request a follow-up")

Every request is one transaction (:meth:`KioskSessions.turn`). A page asked
for out of order is answered with the current step, so Back and Forward can
never show a step the session is not at, and after a reset nothing at all.

Identification, and why it looks the way it does:

* Only today's appointments within the arrival window are searched. The last
  name is compared after removing case, accents, hyphens, apostrophes and
  spaces, through a keyed hash (HMAC) computed for every candidate on every
  attempt, so a hit and a miss do the same work and answer with the same
  redirect; the difference appears only on the next screen.
* Attempts are limited per kiosk session, per kiosk and per identity (the
  HMAC of name and birth date) over a sliding window. Over a limit the kiosk
  answers exactly as for "no match": a lock-out raises a staff flag and an
  audit row, and is never announced on screen. Attempts older than the
  window are deleted, so no pre-identification record outlives its use.
* The limits live in the same database as the schedule: if it is down,
  identification fails as a whole (fail closed) rather than without limits.

The check-in itself (visit ``arrived`` with its ADT^A04, the stored
QuestionnaireResponses, the questionnaire ORU^R01, the ticket) commits in one
transaction at the end; consents, requested changes and urgent flags are
written as soon as the patient gives them, so a patient who walks away mid-way
loses nothing they already signed or asked for.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import typing as t
import unicodedata
from dataclasses import dataclass
from dataclasses import field

from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.orm import joinedload

from hl7.model import QuestionnaireResult
from server.config import KioskConfig
from server.db import UnitOfWork
from server.domain.visit import VisitState
from server.live import Hub
from server.models import Appointment
from server.models import CheckinCode
from server.models import KioskSession
from server.models import LookupAttempt
from server.models import Patient
from server.models import QuestionnaireResponse
from server.models import Ticket
from server.models import Visit
from server.questionnaires import Library
from server.questionnaires.logic import Answers
from server.questionnaires.logic import InputError
from server.questionnaires.logic import evaluate
from server.questionnaires.logic import has_control_characters
from server.questionnaires.logic import page_enabled
from server.questionnaires.logic import parse_us_date
from server.questionnaires.logic import read_page
from server.questionnaires.model import Item
from server.questionnaires.model import Questionnaire
from server.questionnaires.response import build_response
from server.questionnaires.results import result_for
from server.questionnaires.scoring import score
from server.questionnaires.scoring import urgent_alerts
from server.services.audit import AuditTrail
from server.services.consents import Consent
from server.services.consents import Signature
from server.services.consents import record_signature_in
from server.services.context import Actor
from server.services.context import Clock
from server.services.flags import CHANGE_FIELDS
from server.services.flags import PendingChanges
from server.services.flags import StaffFlags
from server.services.kiosks import Credentials
from server.services.kiosks import KioskSessions
from server.services.kiosks import Turn
from server.services.messages import OutboundMessages
from server.services.visits import Visits

S = VisitState
WAITING_STATES = (S.ARRIVED.value, S.ROOMED.value, S.VITALS_TAKEN.value)
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CODE_RANDOM, CODE_CHECK = 8, 4
NAME_MAX = 64


def normalise_name(name: str) -> str:
    """A last name as compared: no accents, case, hyphens, apostrophes, spaces or other punctuation."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(ch for ch in decomposed.casefold() if ch.isalnum() and not unicodedata.combining(ch))


def normalise_code(typed: str) -> str:
    """A check-in code as typed or scanned: upper case, separators dropped, Crockford look-alikes mapped."""
    cleaned = re.sub(r"[\s\-]", "", typed.upper())
    return cleaned.translate(str.maketrans("OIL", "011"))


@dataclass
class Screen:
    """What a kiosk page shows: the session's step and settings, and the data of that step.

    ``data`` holds the identified patient's own details only on steps after
    identification; ``errors`` maps a field to a reason code the page translates.
    """

    step: str
    language: str = "en"
    large_text: bool = False
    idle_seconds: int = 90
    mode: str = "checkin"
    has_session: bool = False
    data: dict[str, t.Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, t.Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChangeRequest:
    """Contact and insurance values typed on the "Change" screen (empty: keep what is on file)."""

    values: dict[str, str]


PHONE_RE = re.compile(r"^\+?[0-9 ().\-]{7,20}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")
DRAWING_RE = re.compile(r"^[ML0-9 .,\-]{1,20000}$")
FIELD_LIMITS = {"address_line1": 128, "address_line2": 128, "city": 64, "state": 32, "postal_code": 16,
                "phone": 20, "email": 254, "payer_name": 128, "member_id": 32}


class CheckIn:
    """The kiosk's flow; see the module docstring."""

    def __init__(self, *, kiosks: KioskSessions, uow: UnitOfWork, clock: Clock, audit: AuditTrail, visits: Visits,
                 messages: OutboundMessages, flags: StaffFlags, changes: PendingChanges, library: Library,
                 consents: tuple[Consent, ...], settings: KioskConfig, pepper: str, live: Hub) -> None:
        self.kiosks = kiosks
        self.uow = uow
        self.clock = clock
        self.audit = audit
        self.visits = visits
        self.messages = messages
        self.flags = flags
        self.changes = changes
        self.library = library
        self.consents = consents
        self.settings = settings
        self.live = live
        self._pepper = pepper.encode("utf-8")

    # Pages ------------------------------------------------------------------------------------------

    def screen(self, credentials: Credentials, page: str) -> Screen:
        """The screen for ``page``, or the session's current step when the page is not it."""
        with self.kiosks.turn(credentials) as turn:
            return self._screen(turn, page)

    def _screen(self, turn: Turn, page: str, errors: dict[str, str] | None = None,
                values: dict[str, t.Any] | None = None) -> Screen:
        row = turn.kiosk_session
        if row is None:
            return Screen("welcome", idle_seconds=self.settings.idle_seconds)
        row.idle_seconds = (self.settings.questionnaire_idle_seconds if row.step == "questions"
                            else self.settings.idle_seconds)
        screen = Screen(row.step, row.language, row.large_text, row.idle_seconds, row.mode, True,
                        errors=errors or {}, values=values or {})
        if page == row.step:
            loader = getattr(self, f"_data_{row.step}", None)
            if loader is not None:
                screen.data = loader(turn, row)
        return screen

    def start(self, credentials: Credentials, mode: str) -> str:
        """"Check in" or "Check out" on the welcome screen: a new session; returns its cookie token."""
        with self.kiosks.turn(credentials) as turn:
            return self.kiosks.start_in(turn, "checkout" if mode == "checkout" else "checkin")

    # Identification ---------------------------------------------------------------------------------

    def identify(self, credentials: Credentials, last_name: str, birth_date: str) -> Screen | None:
        """Identify by last name and date of birth; ``None`` means "go to the current step".

        Malformed input re-asks without counting as an attempt; a well-formed
        one is an attempt whether it matches or not.
        """
        errors: dict[str, str] = {}
        name = last_name.strip()
        if not name:
            errors["last_name"] = "required"
        elif len(name) > NAME_MAX:
            errors["last_name"] = "too_long"
        elif has_control_characters(name) or not normalise_name(name):
            errors["last_name"] = "name"
        born: dt.date | None = None
        try:
            born = parse_us_date(birth_date)
            if not dt.date(1890, 1, 1) <= born <= self.clock.now().date():
                raise InputError("date")
        except InputError:
            errors["birth_date"] = "required" if not birth_date.strip() else "date"
        with self.kiosks.turn(credentials) as turn:
            row = turn.kiosk_session
            if row is None or row.step != "identify":
                return None
            if errors or born is None:
                return self._screen(turn, "identify", errors, {"last_name": name, "birth_date": birth_date[:20]})
            key = self._key(f"{normalise_name(name)}|{born.isoformat()}")
            candidates = self._candidates(turn, row.mode)
            matches = [c for c in candidates
                       if hmac.compare_digest(self._key(f"{normalise_name(c[2].family_name)}|"
                                                        f"{c[2].birth_date.isoformat() if c[2].birth_date else ''}"),
                                              key)]
            self._settle(turn, row, key, matches)
        return None

    def identify_code(self, credentials: Credentials, typed: str) -> Screen | None:
        """Identify by the code on a reminder letter (typed, or typed by a barcode scanner)."""
        with self.kiosks.turn(credentials) as turn:
            row = turn.kiosk_session
            if row is None or row.step != "identify":
                return None
            return self._identify_code_in(turn, row, typed)

    def start_with_code(self, credentials: Credentials, typed: str) -> tuple[str, Screen | None]:
        """A code scanned on the welcome screen: start a check-in and identify with it at once."""
        with self.kiosks.turn(credentials) as turn:
            token = self.kiosks.start_in(turn, "checkin")
            assert turn.kiosk_session is not None
            return token, self._identify_code_in(turn, turn.kiosk_session, typed)

    def _identify_code_in(self, turn: Turn, row: KioskSession, typed: str) -> Screen | None:
        code = normalise_code(typed)
        if len(code) != CODE_RANDOM + CODE_CHECK or any(ch not in CODE_ALPHABET for ch in code):
            return self._screen(turn, "identify", {"code": "code"}, {"code": typed[:40]})
        key = self._key(f"code|{code}")
        candidates = self._candidates(turn, row.mode)
        found = None
        if hmac.compare_digest(self._check(code[:CODE_RANDOM]), code[CODE_RANDOM:]):
            found = turn.session.scalar(select(CheckinCode).where(
                CheckinCode.code_hash == hashlib.sha256(code.encode()).hexdigest(),
                CheckinCode.expires_at > turn.now))
        matches = [c for c in candidates if found is not None and c[0].id == found.appointment_id]
        if found is not None and matches:
            row.draft = {**row.draft, "code_id": found.id}
        self._settle(turn, row, key, matches)
        return None

    def _key(self, identity: str) -> str:
        return hmac.new(self._pepper, identity.encode("utf-8"), hashlib.sha256).hexdigest()

    def _check(self, random_part: str) -> str:
        digest = hmac.new(self._pepper, f"checkin-code|{random_part}".encode(), hashlib.sha256).digest()
        number = int.from_bytes(digest[:4], "big")
        return "".join(CODE_ALPHABET[(number >> (5 * i)) & 31] for i in range(CODE_CHECK))

    def _candidates(self, turn: Turn, mode: str) -> list[tuple[Appointment, Visit, Patient]]:
        """Appointments a patient could be checking in (or out) for right now, with visit and patient."""
        zone = self.visits.zone
        today = turn.now.astimezone(zone).date()
        day_start = dt.datetime.combine(today, dt.time(), tzinfo=zone)
        day_end = day_start + dt.timedelta(days=1)
        query = (select(Appointment, Visit, Patient).join(Visit, Visit.appointment_id == Appointment.id)
                 .join(Patient, Patient.id == Visit.patient_id)
                 .where(Appointment.start_at >= day_start, Appointment.start_at < day_end))
        if mode == "checkout":
            query = query.where(Visit.state.in_(WAITING_STATES))
        else:
            earliest = turn.now - dt.timedelta(minutes=self.settings.arrival_window_after_minutes)
            latest = turn.now + dt.timedelta(minutes=self.settings.arrival_window_before_minutes)
            query = query.where(Appointment.start_at >= earliest, Appointment.start_at <= latest,
                                Visit.state != S.CANCELLED.value)
        return [(a, v, p) for a, v, p in turn.session.execute(query.order_by(Appointment.start_at)).all()]

    def _settle(self, turn: Turn, row: KioskSession, key: str,
                matches: list[tuple[Appointment, Visit, Patient]]) -> None:
        """Count the attempt against the limits, then move to the next step (see the module docstring)."""
        window_start = turn.now - dt.timedelta(minutes=self.settings.lookup_window_minutes)
        session = turn.session
        session.execute(delete(LookupAttempt).where(LookupAttempt.at < window_start))
        kiosk_failures = session.scalar(select(func.count()).select_from(LookupAttempt).where(
            LookupAttempt.kiosk_id == turn.device.id, LookupAttempt.matched.is_(False))) or 0
        identity_attempts = session.scalar(select(func.count()).select_from(LookupAttempt).where(
            LookupAttempt.identity_key == key)) or 0
        locked = (row.failures >= self.settings.lookup_max_failures
                  or kiosk_failures >= self.settings.lookup_max_failures_per_kiosk
                  or identity_attempts >= self.settings.lookup_max_per_identity)
        matched = bool(matches) and not locked
        session.add(LookupAttempt(kiosk_id=turn.device.id, identity_key=key, matched=matched, at=turn.now))
        patient_ids = {p.id for _, _, p in matches}
        self.audit.record(session, turn.actor, "kiosk.identify", outcome="success" if matched else "failure",
                          patient_id=next(iter(patient_ids)) if matched and len(patient_ids) == 1 else None,
                          resource_type="kiosk_session", resource_id=row.id,
                          detail="locked" if locked else f"matches={len(matches)}")
        if not matched:
            row.failures += 1
            now_locked = (locked or row.failures >= self.settings.lookup_max_failures
                          or kiosk_failures + 1 >= self.settings.lookup_max_failures_per_kiosk
                          or identity_attempts + 1 >= self.settings.lookup_max_per_identity)
            if now_locked and not row.draft.get("lockout_flagged"):
                self.flags.raise_in(session, "identification_lockout", actor=turn.actor, kiosk_id=turn.device.id,
                                    detail=f"kiosk_session={row.id}")
                self.audit.record(session, turn.actor, "kiosk.lockout", outcome="failure",
                                  resource_type="kiosk", resource_id=turn.device.id)
                row.draft = {**row.draft, "lockout_flagged": True}
            row.step = "front_desk"
            return
        if len(matches) > 1:
            row.draft = {**row.draft, "candidates": [a.id for a, _, _ in matches]}
            row.step = "choose"
            return
        self._identified(row, *matches[0])

    def _identified(self, row: KioskSession, appointment: Appointment, visit: Visit, patient: Patient) -> None:
        row.draft = {key: value for key, value in row.draft.items() if key in ("lockout_flagged", "code_id")}
        row.draft["appointment_id"] = appointment.id
        row.patient_id, row.visit_id = patient.id, visit.id
        if row.mode == "checkout":
            row.step = "checkout" if visit.state in WAITING_STATES else "front_desk"
        elif visit.state in (S.EXPECTED.value, S.NO_SHOW.value):
            row.step = "appointment"
        else:
            row.step = "already" if visit.state in WAITING_STATES else "front_desk"
        if row.step in ("already", "front_desk"):
            row.patient_id = row.visit_id = None

    def _data_choose(self, turn: Turn, row: KioskSession) -> dict[str, t.Any]:
        rows = turn.session.execute(select(Appointment, Patient).join(Patient)
                                    .where(Appointment.id.in_(row.draft.get("candidates", [])))
                                    .order_by(Appointment.start_at)).all()
        slots = [(a.start_at, a.provider_name) for a, _ in rows]
        return {"choices": [{"id": a.id, "time": self._local(a.start_at), "provider": a.provider_name,
                             # An initial only where time and clinician alone cannot tell two people apart.
                             "initial": p.given_name[:1].upper() if slots.count((a.start_at, a.provider_name)) > 1
                             else ""} for a, p in rows]}

    def choose(self, credentials: Credentials, appointment_id: str) -> Screen | None:
        """Pick one of several matching appointments (twins) by time and clinician."""
        with self.kiosks.turn(credentials) as turn:
            row = turn.kiosk_session
            if row is None or row.step != "choose":
                return None
            if not appointment_id.isdigit() or int(appointment_id) not in row.draft.get("candidates", []):
                return self._screen(turn, "choose", {"choice": "required"})
            found = turn.session.execute(
                select(Appointment, Visit, Patient).join(Visit, Visit.appointment_id == Appointment.id)
                .join(Patient, Patient.id == Visit.patient_id).where(Appointment.id == int(appointment_id))).one()
            self._identified(row, *found)
            self.audit.record(turn.session, turn.actor, "kiosk.identify", patient_id=row.patient_id,
                              resource_type="kiosk_session", resource_id=row.id, detail="chosen")
        return None

    # After identification ------------------------------------------------------------------------------

    def _visit(self, turn: Turn, row: KioskSession) -> Visit:
        visit = turn.session.scalar(select(Visit).where(Visit.id == row.visit_id)
                                    .options(joinedload(Visit.patient), joinedload(Visit.appointment)))
        assert visit is not None and visit.patient_id == row.patient_id
        return visit

    def _local(self, moment: dt.datetime) -> dt.datetime:
        return moment.astimezone(self.visits.zone)

    def _data_appointment(self, turn: Turn, row: KioskSession) -> dict[str, t.Any]:
        visit = self._visit(turn, row)
        appointment = visit.appointment
        assert appointment is not None
        self.audit.record(turn.session, turn.actor, "visit.viewed", patient_id=visit.patient_id,
                          resource_type="visit", resource_id=visit.id)
        return {"given_name": visit.patient.given_name, "time": self._local(appointment.start_at),
                "provider": appointment.provider_name, "location": appointment.location}

    _data_checkout = _data_appointment

    def confirm_appointment(self, credentials: Credentials, confirmed: bool) -> None:
        """"Yes, that's me" (go on) or "No" (see the front desk, forgetting the match)."""
        with self.kiosks.turn(credentials) as turn:
            row = turn.kiosk_session
            if row is None or row.step != "appointment":
                return
            if not confirmed:
                row.patient_id = row.visit_id = None
                row.step = "front_desk"
                return
            visit = self._visit(turn, row)
            appointment = visit.appointment
            today = turn.now.astimezone(self.visits.zone).date()
            queue = self.library.for_visit(appointment.appointment_type if appointment else "",
                                           visit.patient.birth_date, today)
            row.draft = {**row.draft, "queue": queue, "qi": 0, "pi": 0, "answers": {}, "declined": [],
                         "consent": 0}
            row.step = "details"

    def _data_details(self, turn: Turn, row: KioskSession) -> dict[str, t.Any]:
        visit = self._visit(turn, row)
        patient = visit.patient
        self.audit.record(turn.session, turn.actor, "patient.viewed", patient_id=patient.id,
                          resource_type="patient", resource_id=patient.id)
        plan = patient.insurance[0] if patient.insurance else None
        return {
            "address": [line for line in (patient.address_line1, patient.address_line2,
                                          " ".join(p for p in (patient.city, patient.state, patient.postal_code) if p))
                        if line],
            "phone_last4": _last4(patient.phone),
            "email": _mask_email(patient.email),
            "payer": plan.payer_name if plan else "",
            "member_last4": _last4(plan.member_id) if plan else "",
            "requested": bool(row.draft.get("change_requested")),
        }

    def confirm_details(self, credentials: Credentials, change: bool) -> None:
        """"Yes, this is correct" (go on) or "Change" (the change form)."""
        ticket = None
        with self.kiosks.turn(credentials) as turn:
            row = turn.kiosk_session
            if row is None or row.step != "details":
                return
            if change:
                row.step = "change"
            elif self.consents:
                row.step = "consent"
            else:
                ticket = self._to_questions(turn, row)
        if ticket is not None:
            self.live.publish("lobby", "checkin", {"ticket": ticket})

    def request_change(self, credentials: Credentials, request: ChangeRequest | None) -> Screen | None:
        """Store the changes a patient typed as a pending update for staff (``None``: cancel)."""
        values = {} if request is None else {k: v.strip() for k, v in request.values.items()
                                             if k in CHANGE_FIELDS and v.strip()}
        errors = {} if request is None else _change_errors(values)
        with self.kiosks.turn(credentials) as turn:
            row = turn.kiosk_session
            if row is None or row.step != "change":
                return None
            if request is not None and not values:
                errors = {"form": "nothing"}
            if errors:
                return self._screen(turn, "change", errors, values)
            if values:
                assert row.patient_id is not None
                self.changes.request_in(turn.session, row.patient_id, row.visit_id, values, actor=turn.actor)
                row.draft = {**row.draft, "change_requested": True}
            row.step = "details"
        return None

    # Consents ---------------------------------------------------------------------------------------------

    def _data_consent(self, turn: Turn, row: KioskSession) -> dict[str, t.Any]:
        index = int(row.draft.get("consent", 0))
        title, body = self.consents[index].text(row.language)
        return {"title": title, "paragraphs": [p for p in body.splitlines() if p.strip()],
                "number": index + 1, "count": len(self.consents), "version": self.consents[index].version}

    def sign(self, credentials: Credentials, signature: Signature) -> Screen | None:
        """Sign the current consent by typed name or drawing, or ask to talk to staff first."""
        errors: dict[str, str] = {}
        ticket = None
        if signature.method == "typed":
            name = signature.name.strip()
            if not name:
                errors["signer_name"] = "required"
            elif len(name) > 128:
                errors["signer_name"] = "too_long"
            elif has_control_characters(name):
                errors["signer_name"] = "control"
            signature = Signature("typed", name)
        elif signature.method == "drawn":
            if not DRAWING_RE.match(signature.drawing) or "L" not in signature.drawing:
                errors["drawing"] = "required"
        elif signature.method != "declined":
            errors["signer_name"] = "required"
        with self.kiosks.turn(credentials) as turn:
            row = turn.kiosk_session
            if row is None or row.step != "consent":
                return None
            if errors:
                return self._screen(turn, "consent", errors, {"signer_name": signature.name[:128]})
            assert row.patient_id is not None and row.visit_id is not None
            index = int(row.draft.get("consent", 0))
            record_signature_in(turn.session, self.audit, self.clock, self.consents[index], signature,
                                visit_id=row.visit_id, patient_id=row.patient_id, language=row.language,
                                kiosk_id=turn.device.id, actor=turn.actor)
            if signature.method == "declined":
                self.flags.raise_in(turn.session, "consent_question", actor=turn.actor, patient_id=row.patient_id,
                                    visit_id=row.visit_id, kiosk_id=turn.device.id,
                                    detail=f"consent={self.consents[index].consent_id}")
            row.draft = {**row.draft, "consent": index + 1}
            ticket = self._to_questions(turn, row) if index + 1 >= len(self.consents) else None
        if ticket is not None:
            self.live.publish("lobby", "checkin", {"ticket": ticket})
        return None

    # Questionnaires ----------------------------------------------------------------------------------------

    def _position(self, row: KioskSession) -> tuple[Questionnaire, int, list[tuple[Item, ...]]] | None:
        """The questionnaire and page to show now, skipping pages whose questions are all disabled."""
        queue = row.draft.get("queue", [])
        qi, pi = int(row.draft.get("qi", 0)), int(row.draft.get("pi", 0))
        while qi < len(queue):
            questionnaire = self.library.questionnaires[queue[qi]]
            pages = questionnaire.pages()
            answers = row.draft.get("answers", {}).get(questionnaire.key, {})
            if queue[qi] not in row.draft.get("declined", []):
                evaluation = evaluate(questionnaire, answers)
                while pi < len(pages) and not page_enabled(pages[pi], evaluation):
                    pi += 1
                if pi < len(pages):
                    row.draft = {**row.draft, "qi": qi, "pi": pi}
                    return questionnaire, pi, pages
            qi, pi = qi + 1, 0
        row.draft = {**row.draft, "qi": qi, "pi": 0}
        return None

    def _data_questions(self, turn: Turn, row: KioskSession) -> dict[str, t.Any]:
        position = self._position(row)
        if position is None:
            return {}
        questionnaire, pi, pages = position
        answers = row.draft.get("answers", {}).get(questionnaire.key, {})
        # A screen is shown when any of its questions is enabled; the ones that are not ("Which new
        # allergies?" after "No") stay off it.
        enabled = evaluate(questionnaire, answers).enabled
        page = tuple(item for item in pages[pi] if item.link_id in enabled)
        return {"questionnaire": questionnaire, "page": page, "answers": answers,
                "page_number": pi + 1, "page_count": len(pages),
                "number": int(row.draft.get("qi", 0)) + 1, "count": len(row.draft.get("queue", []))}

    def answer(self, credentials: Credentials, form: t.Mapping[str, list[str]], *, decline: bool = False) -> \
            Screen | None:
        """Take one questionnaire page (or "I'd rather not answer" for the whole questionnaire)."""
        published: int | None = None
        with self.kiosks.turn(credentials) as turn:
            row = turn.kiosk_session
            if row is None or row.step != "questions":
                return None
            position = self._position(row)
            if position is None:
                published = self._complete(turn, row)
                return None
            questionnaire, pi, pages = position
            all_answers = dict(row.draft.get("answers", {}))
            if decline:
                row.draft = {**row.draft, "declined": [*row.draft.get("declined", []), questionnaire.key],
                             "qi": int(row.draft["qi"]) + 1, "pi": 0}
            else:
                answers, errors = read_page(questionnaire, pages[pi], form, all_answers.get(questionnaire.key, {}))
                if errors:
                    screen = self._screen(turn, "questions", errors)
                    screen.data["answers"] = {**screen.data.get("answers", {}), **_posted(pages[pi], form)}
                    return screen
                all_answers[questionnaire.key] = answers
                row.draft = {**row.draft, "answers": all_answers, "pi": pi + 1}
                if "phq9_item9" in urgent_alerts(questionnaire, answers) and not row.draft.get("alerted"):
                    self.flags.raise_in(turn.session, "phq9_item9", actor=turn.actor, patient_id=row.patient_id,
                                        visit_id=row.visit_id, kiosk_id=turn.device.id)
                    row.draft = {**row.draft, "alerted": True}
                    row.step = "notice"
                    return None
            if self._position(row) is None:
                published = self._complete(turn, row)
        if published is not None:
            self.live.publish("lobby", "checkin", {"ticket": published})
        return None

    def continue_after_notice(self, credentials: Credentials) -> None:
        """Leave the follow-up notice shown after PHQ-9 item 9, to the next questions or the end."""
        published = None
        with self.kiosks.turn(credentials) as turn:
            row = turn.kiosk_session
            if row is None or row.step != "notice":
                return
            row.step = "questions"
            if self._position(row) is None:
                published = self._complete(turn, row)
        if published is not None:
            self.live.publish("lobby", "checkin", {"ticket": published})

    def _to_questions(self, turn: Turn, row: KioskSession) -> int | None:
        """Go on to the questionnaires, or check in at once when there are none; returns a ticket to announce."""
        row.step = "questions"
        return self._complete(turn, row) if self._position(row) is None else None

    # Completing ------------------------------------------------------------------------------------------

    def _complete(self, turn: Turn, row: KioskSession) -> int | None:
        """Check the patient in (see the module docstring); returns the ticket number to announce."""
        session = turn.session
        visit = session.get(Visit, row.visit_id, with_for_update=True)
        assert visit is not None
        if visit.state not in (S.EXPECTED.value, S.NO_SHOW.value):
            row.step, row.patient_id, row.visit_id, row.draft = "already", None, None, {}
            return None
        self.visits.transition_in(session, visit, S.ARRIVED.value, actor=turn.actor)
        patient = visit.patient
        results: list[QuestionnaireResult] = []
        for key in row.draft.get("queue", []):
            questionnaire = self.library.questionnaires[key]
            declined = key in row.draft.get("declined", [])
            answers: Answers = row.draft.get("answers", {}).get(key, {})
            evaluation = evaluate(questionnaire, answers)
            answered = evaluation.answered(questionnaire, answers)
            result = None if declined else score(questionnaire, answered, completed_at=turn.now, sex=patient.sex)
            stored = QuestionnaireResponse(
                visit_id=visit.id, patient_id=patient.id, questionnaire=key, version=questionnaire.version,
                language=row.language, answers={}, score=result.total if result else None,
                severity=result.severity if result else ("declined" if declined else None), completed_at=turn.now)
            session.add(stored)
            session.flush()
            stored.answers = build_response(
                questionnaire, answered, evaluation.calculated, evaluation.enabled,
                status="stopped" if declined else "completed", subject=f"Patient/{patient.id}",
                encounter=f"Encounter/{visit.visit_number}", authored=turn.now, language=row.language,
                response_id=f"qr-{stored.id}")
            self.audit.record(session, turn.actor, "questionnaire.stored", patient_id=patient.id,
                              resource_type="questionnaire_response", resource_id=stored.id,
                              detail=f"questionnaire={key} status={'stopped' if declined else 'completed'}")
            sent = None if declined else result_for(questionnaire, answered, result, result_id=f"QR{stored.id}",
                                                     completed_at=turn.now)
            if sent is not None:
                results.append(sent)
        if results:
            self.messages.questionnaire_results(session, visit, results)
        if row.draft.get("code_id"):
            code = session.get(CheckinCode, row.draft["code_id"])
            if code is not None and code.used_at is None:
                code.used_at = turn.now
        number, wait = self._ticket(turn, visit.id)
        self.audit.record(session, turn.actor, "kiosk.checked_in", patient_id=patient.id, resource_type="visit",
                          resource_id=visit.id, detail=f"ticket={number}")
        row.step, row.patient_id, row.visit_id = "done", None, None
        row.draft = {"ticket": number, "wait": wait}
        return number

    def _ticket(self, turn: Turn, visit_id: int) -> tuple[int, int]:
        """The next ticket number of the day and the estimated wait in minutes for it."""
        session = turn.session
        today = turn.now.astimezone(self.visits.zone).date()
        if session.get_bind().dialect.name == "postgresql":
            # Two kiosks finishing at once must not draw the same number.
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": 9_000_000 + today.toordinal()})
        number = (session.scalar(select(func.max(Ticket.number)).where(Ticket.day == today)) or 0) + 1
        session.add(Ticket(visit_id=visit_id, day=today, number=number, issued_at=turn.now,
                           kiosk_id=turn.device.id))
        ahead = session.scalar(select(func.count()).select_from(Ticket).join(Visit, Visit.id == Ticket.visit_id)
                               .where(Ticket.day == today, Visit.state == S.ARRIVED.value,
                                      Visit.id != visit_id)) or 0
        return number, self._estimate(ahead)

    def _estimate(self, ahead: int) -> int:
        """Minutes to wait with ``ahead`` people waiting, rounded up to 5 (at least 5)."""
        minutes = ahead * self.settings.minutes_per_patient
        return max(5, -(-minutes // 5) * 5)

    def _data_done(self, turn: Turn, row: KioskSession) -> dict[str, t.Any]:
        return {"ticket": row.draft.get("ticket"), "wait": row.draft.get("wait"),
                "done_seconds": self.settings.done_seconds}

    def _data_already(self, turn: Turn, row: KioskSession) -> dict[str, t.Any]:
        return {"done_seconds": self.settings.done_seconds}

    def try_again(self, credentials: Credentials) -> None:
        """From "please see the front desk" back to identification, in the same session (limits still count)."""
        with self.kiosks.turn(credentials) as turn:
            row = turn.kiosk_session
            if row is not None and row.step == "front_desk":
                row.step = "identify"

    # Check-out ---------------------------------------------------------------------------------------------

    def check_out(self, credentials: Credentials) -> None:
        """Check the identified patient out: visit ``checked_out`` with its ADT^A03."""
        with self.kiosks.turn(credentials) as turn:
            row = turn.kiosk_session
            if row is None or row.step != "checkout":
                return
            visit = turn.session.get(Visit, row.visit_id, with_for_update=True)
            assert visit is not None
            if visit.state not in WAITING_STATES:
                row.step = "front_desk"
                return
            self.visits.transition_in(turn.session, visit, S.CHECKED_OUT.value, actor=turn.actor)
            upcoming = turn.session.scalar(select(Appointment).where(
                Appointment.patient_id == visit.patient_id, Appointment.start_at > turn.now,
                Appointment.id != visit.appointment_id, Appointment.status != "cancelled")
                .order_by(Appointment.start_at).limit(1))
            row.draft = {**row.draft, "next": {"start": upcoming.start_at.isoformat(),
                                               "provider": upcoming.provider_name} if upcoming else None}
            row.step = "checked_out"

    def _data_checked_out(self, turn: Turn, row: KioskSession) -> dict[str, t.Any]:
        upcoming = row.draft.get("next")
        return {"next_time": self._local(dt.datetime.fromisoformat(upcoming["start"])) if upcoming else None,
                "next_provider": upcoming["provider"] if upcoming else "",
                "follow_up": bool(row.draft.get("follow_up")), "done_seconds": self.settings.done_seconds}

    def request_follow_up(self, credentials: Credentials) -> None:
        """"Request a follow-up" after check-out: a flag for staff to call the patient."""
        with self.kiosks.turn(credentials) as turn:
            row = turn.kiosk_session
            if row is None or row.step != "checked_out" or row.draft.get("follow_up"):
                return
            self.flags.raise_in(turn.session, "follow_up_request", actor=turn.actor, patient_id=row.patient_id,
                                visit_id=row.visit_id, kiosk_id=turn.device.id)
            row.draft = {**row.draft, "follow_up": True}

    # Codes on reminder letters -------------------------------------------------------------------------------

    def issue_code(self, source: str, external_id: str, *, actor: Actor) -> tuple[str, dt.datetime]:
        """A check-in code for one appointment, valid until the end of its day; returns it and its expiry.

        :raises LookupError: when no such appointment exists.
        """
        random_part = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_RANDOM))
        code = random_part + self._check(random_part)
        with self.uow.begin() as session:
            appointment = session.scalar(select(Appointment).where(Appointment.source == source,
                                                                   Appointment.external_id == external_id))
            if appointment is None:
                raise LookupError(f"no appointment {external_id!r} from {source!r}")
            day = appointment.start_at.astimezone(self.visits.zone).date()
            expires = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=self.visits.zone)
            row = CheckinCode(appointment_id=appointment.id, code_hash=hashlib.sha256(code.encode()).hexdigest(),
                              created_at=self.clock.now(), expires_at=expires)
            session.add(row)
            session.flush()
            self.audit.record(session, actor, "checkin_code.issued", patient_id=appointment.patient_id,
                              resource_type="appointment", resource_id=appointment.id)
        return f"{code[:4]}-{code[4:8]}-{code[8:]}", expires

    # Lobby -----------------------------------------------------------------------------------------------

    def lobby(self, credentials: Credentials) -> dict[str, t.Any]:
        """What the lobby screen shows: numbers called (with the room), how many wait, the estimated wait.

        Never names, birth dates or reasons for the visit.
        """
        with self.kiosks.turn(credentials, activity=False) as turn:
            today = turn.now.astimezone(self.visits.zone).date()
            called = turn.session.execute(
                select(Ticket.number, Appointment.location).join(Visit, Visit.id == Ticket.visit_id)
                .join(Appointment, Appointment.id == Visit.appointment_id)
                .where(Ticket.day == today, Visit.state.in_((S.ROOMED.value, S.VITALS_TAKEN.value)))
                .order_by(Visit.updated_at.desc()).limit(6)).all()
            waiting = turn.session.scalar(select(func.count()).select_from(Ticket).join(Visit)
                                          .where(Ticket.day == today, Visit.state == S.ARRIVED.value)) or 0
            return {"called": [{"ticket": n, "room": room} for n, room in called], "waiting": waiting,
                    "wait": self._estimate(waiting)}


def _last4(value: str) -> str:
    digits = re.sub(r"\W", "", value)
    return digits[-4:] if digits else ""


def _mask_email(email: str) -> str:
    local, at, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}" if at else ""


def _change_errors(values: dict[str, str]) -> dict[str, str]:
    errors = {}
    for name, value in values.items():
        if len(value) > FIELD_LIMITS[name]:
            errors[name] = "too_long"
        elif has_control_characters(value):
            errors[name] = "control"
    if "phone" in values and "phone" not in errors and not PHONE_RE.match(values["phone"]):
        errors["phone"] = "phone"
    if "email" in values and "email" not in errors and not EMAIL_RE.match(values["email"]):
        errors["email"] = "email"
    return errors


def _posted(page: t.Sequence[Item], form: t.Mapping[str, list[str]]) -> Answers:
    """What was posted for a page, to show it again with an error (never stored as it is)."""
    return {item.link_id: [v[:2000] for v in form.get(item.link_id, [])]
            for top in page for item in top.walk() if item.asks}
