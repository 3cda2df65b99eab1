"""Turning domain changes into outbound HL7 messages (built by :mod:`hl7.builders`).

This is the only place that maps our models onto the builders' value objects,
so what we tell the records system about a patient or visit is decided once.
Messages are enqueued in the caller's transaction: if the change rolls back,
no message about it exists.

A message the destination's charset cannot carry (a name in Chinese script for
an ISO 8859-1 receiver) must not stop the change it reports: check-in goes
ahead, and the message is written as a dead letter whose reason names the
field, so staff see it at once and it holds only that patient's later
messages. Its payload is the same message in UTF-8, declared as such in
MSH-18, which is what a staff retry sends.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t

from sqlalchemy.orm import Session

from hl7 import builders
from hl7.er7 import CharsetError
from hl7.model import CHARSET_NAMES
from hl7.model import Address
from hl7.model import Charset
from hl7.model import CodingProfile
from hl7.model import Destination
from hl7.model import Device
from hl7.model import InsuranceInfo
from hl7.model import PatientInfo
from hl7.model import QuestionnaireResult
from hl7.model import Sender
from hl7.model import Telephone
from hl7.model import VisitInfo
from hl7.model import VitalSign
from hl7.model import VitalsReport
from server.config import HL7Config
from server.domain.visit import VisitState
from server.models import Insurance
from server.models import Patient
from server.models import Visit
from server.services.context import Clock
from server.services.outbox import Outbox
from server.services.outbox import new_control_id
from server.services.outbox import patient_key

S = VisitState

# Which visit transitions the records system hears about, and as what.
VISIT_EVENTS: dict[tuple[VisitState, VisitState], str] = {
    (S.EXPECTED, S.ARRIVED): "A04",
    (S.NO_SHOW, S.ARRIVED): "A04",
    (S.ARRIVED, S.EXPECTED): "A11",
    (S.ARRIVED, S.CANCELLED): "A11",
    (S.ARRIVED, S.CHECKED_OUT): "A03",
    (S.ROOMED, S.CHECKED_OUT): "A03",
    (S.VITALS_TAKEN, S.CHECKED_OUT): "A03",
}

_ADT_BUILDERS = {"A04": builders.build_adt_a04, "A03": builders.build_adt_a03, "A11": builders.build_adt_a11}


def telephone(patient: Patient) -> Telephone | None:
    """The patient's phone, with its XTN components only while they still match the number as written.

    The components come from the records system; a number typed in later
    (by the patient or staff) changes ``phone`` alone, and sending the old
    components beside it would give the receiver two different numbers.
    """
    if not patient.phone:
        return None
    parts = (patient.phone_country_code, patient.phone_area_code, patient.phone_local_number,
             patient.phone_extension)
    digits = "".join(c for c in patient.phone if c.isdigit())
    written = "".join(c for c in "".join(parts[1:3]) if c.isdigit())
    if written and written in digits:
        return Telephone(patient.phone, *parts)
    return Telephone(patient.phone)


def patient_info(patient: Patient) -> PatientInfo:
    """PID content for a patient; a value we do not have is left out rather than guessed."""
    address = Address(street=patient.address_line1, other=patient.address_line2, city=patient.city,
                      state=patient.state, postal_code=patient.postal_code, country=patient.country)
    phone = telephone(patient)
    return PatientInfo(
        mrn=patient.mrn, assigning_authority=patient.mrn_authority, family=patient.family_name,
        given=patient.given_name, middle=patient.middle_name, birth_date=patient.birth_date,
        sex=patient.sex if patient.sex in ("F", "M", "O", "U", "A", "N") else "",
        address=address if any((patient.address_line1, patient.city, patient.postal_code)) else None,
        phones=(phone,) if phone else (), email=patient.email,
        language=patient.preferred_language,
    )


def insurance_info(plan: Insurance) -> InsuranceInfo:
    """IN1 content for one coverage; the payer id stands in for the plan id when no plan is named."""
    family, _, given = plan.subscriber_name.partition(",")
    return InsuranceInfo(plan_id=plan.plan_name or plan.payer_id or plan.payer_name, company_id=plan.payer_id,
                         company_name=plan.payer_name, member_id=plan.member_id, group_number=plan.group_number,
                         insured_family=family.strip(), insured_given=given.strip())


def visit_info(visit: Visit) -> VisitInfo:
    """PV1 content for a visit: arrival and departure come from its transitions, the names the records
    system knows it by from its appointment."""
    arrival = next((t.at for t in reversed(visit.transitions) if t.to_state == S.ARRIVED.value), None)
    departure = next((t.at for t in reversed(visit.transitions) if t.to_state == S.CHECKED_OUT.value), None)
    visit_only = VisitInfo(visit_number=visit.visit_number, arrival=arrival, departure=departure)
    appointment = visit.appointment
    if appointment is None:
        return visit_only
    named = bool(appointment.provider_family or appointment.provider_given)
    return dataclasses.replace(
        visit_only,
        location=appointment.location,
        provider_id=appointment.provider_id,
        provider_family=appointment.provider_family if named else appointment.provider_name,
        provider_given=appointment.provider_given,
        provider_authority=appointment.provider_authority,
        records_visit_number=appointment.visit_number,
        records_visit_authority=appointment.visit_authority,
        placer_appointment=(appointment.placer_id, appointment.placer_authority),
        filler_appointment=(appointment.filler_id, appointment.filler_authority),
    )


class OutboundMessages:
    """Builds and enqueues the messages the records system expects for our changes."""

    def __init__(self, *, settings: HL7Config, outbox: Outbox, clock: Clock) -> None:
        self.outbox = outbox
        self.clock = clock
        self.sender = Sender(application=settings.sending_application, facility=settings.sending_facility)
        self.destination = Destination(application=settings.receiving_application,
                                       facility=settings.receiving_facility,
                                       coding=CodingProfile(settings.vitals_coding),
                                       charset=CHARSET_NAMES[settings.destination_charset])

    def visit_changed(self, session: Session, visit: Visit, before: VisitState, after: VisitState) -> str | None:
        """Enqueue the ADT a transition calls for, if any; returns its MSH-10."""
        event = VISIT_EVENTS.get((before, after))
        if event is None:
            return None
        control_id = new_control_id()
        now: dt.datetime = self.clock.now()
        patient, visit_ = patient_info(visit.patient), visit_info(visit)
        dead_reason = ""
        try:
            payload = _ADT_BUILDERS[event](self.sender, self.destination, patient, visit_, control_id=control_id,
                                           now=now)
        except CharsetError as exc:
            dead_reason = f"not sent: {exc} (the destination reads {self.destination.charset.value or 'ASCII'})"
            utf8 = dataclasses.replace(self.destination, charset=Charset.UTF8)
            payload = _ADT_BUILDERS[event](self.sender, utf8, patient, visit_, control_id=control_id, now=now)
        self.outbox.enqueue(session, payload, control_id=control_id, message_type=f"ADT^{event}",
                            ordering_key=patient_key(visit.patient_id), dead_reason=dead_reason)
        return control_id

    def vitals(self, session: Session, visit: Visit, station_id: str, report_id: str,
               vitals: t.Sequence[VitalSign], *, correction: bool = False) -> str:
        """Enqueue the IHE PCD-01 ORU^R01 of charted vitals (or of their correction); returns its MSH-10.

        The station is the reporter (PCD-01 Device Observation Reporter): typed
        values are reported under it as manual entries, device values under
        their own device with OBX-18.
        """
        control_id = new_control_id()
        reporter = Device(69965, "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", serial=station_id, model=self.sender.application)
        report = VitalsReport(patient=patient_info(visit.patient), visit=visit_info(visit), reporter=reporter,
                              report_id=report_id, vitals=tuple(vitals), correction=correction)
        payload = builders.build_oru_vitals(self.sender, self.destination, report, control_id=control_id,
                                            now=self.clock.now())
        self.outbox.enqueue(session, payload, control_id=control_id, message_type="ORU^R01",
                            ordering_key=patient_key(visit.patient_id))
        return control_id

    def patient_updated(self, session: Session, patient: Patient, visit: Visit | None) -> str:
        """Enqueue ADT^A08 with the patient's current details and insurance; returns its MSH-10."""
        control_id = new_control_id()
        payload = builders.build_adt_a08(self.sender, self.destination, patient_info(patient),
                                         visit_info(visit) if visit is not None else VisitInfo(),
                                         insurance=[insurance_info(plan) for plan in patient.insurance],
                                         control_id=control_id, now=self.clock.now())
        self.outbox.enqueue(session, payload, control_id=control_id, message_type="ADT^A08",
                            ordering_key=patient_key(patient.id))
        return control_id

    def questionnaire_results(self, session: Session, visit: Visit,
                              results: list[QuestionnaireResult]) -> str:
        """Enqueue one ORU^R01 carrying the visit's scored questionnaires (LOINC); returns its MSH-10."""
        control_id = new_control_id()
        payload = builders.build_oru_questionnaire(self.sender, self.destination, patient_info(visit.patient),
                                                   visit_info(visit), results, control_id=control_id,
                                                   now=self.clock.now())
        self.outbox.enqueue(session, payload, control_id=control_id, message_type="ORU^R01",
                            ordering_key=patient_key(visit.patient_id))
        return control_id
