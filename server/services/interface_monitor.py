"""The interface monitor: what an interface analyst needs to see, in one place, in human words.

Outbound, the outbox's counts by state, the age of its oldest waiting message
(the outage alarm: transport failures never dead-letter), the last hour's
throughput and the dead letters with the receiver's error text. Inbound, every
message we received with what we answered, searchable by control id, message
type, patient MRN and day, each shown segment by segment with field names, so
"why did this patient's message not go in?" is answered by reading our ERR text
beside the field it names. Devices, with their counters.

Everything shown here may quote patient data (MRNs, the receiver's error text,
the messages themselves), so each list and each message viewed is audited.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy import select

from hl7.er7 import CharsetError
from hl7.er7 import Message
from hl7.er7 import ParseError
from hl7.er7 import Segment
from hl7.er7 import parse_message
from server.db import UnitOfWork
from server.models import InboundMessage
from server.models import OutboxMessage
from server.models import Patient
from server.services.audit import AuditTrail
from server.services.context import Actor
from server.services.context import Clock
from server.services.outbox import Outbox
from server.services.outbox import patient_of
from server.services.outbox import stalled
from server.services.stations import DeviceView
from server.services.stations import Stations

OUTBOX_STATE_TEXT = {
    "pending": "Waiting to be sent",
    "sending": "Being sent now",
    "sent": "Delivered",
    "dead": "Held: the records system refused it",
    "discarded": "Discarded by staff",
}

INBOUND_OUTCOME_TEXT = {
    "AA": "Accepted",
    "AE": "Not applied: the message has an error",
    "AR": "Not applied: refused (sender may resend)",
}

SEGMENT_NAMES = {
    "MSH": "Message header", "EVN": "Event", "PID": "Patient", "PD1": "Patient extra", "PV1": "Visit",
    "PV2": "Visit extra", "MRG": "Merged from", "SCH": "Schedule", "RGS": "Resource group",
    "AIS": "Service", "AIL": "Location", "AIP": "Provider", "AIG": "Resource", "IN1": "Insurance",
    "NK1": "Next of kin", "NTE": "Note", "OBR": "Order", "OBX": "Observation", "MSA": "Acknowledgement",
    "ERR": "Error", "ZKI": "Kiosk extension",
}

FIELD_NAMES: dict[str, dict[int, str]] = {
    "MSH": {3: "Sending application", 4: "Sending facility", 5: "Receiving application",
            6: "Receiving facility", 7: "Message time", 9: "Message type", 10: "Control id", 11: "Processing id",
            12: "Version", 15: "Accept ACK", 16: "Application ACK", 18: "Character set"},
    "EVN": {1: "Event type", 2: "Recorded", 6: "Occurred"},
    "PID": {3: "Patient identifiers (MRN)", 5: "Patient name", 7: "Date of birth", 8: "Sex", 11: "Address",
            13: "Home phone", 15: "Language", 18: "Account number"},
    "PV1": {2: "Patient class", 3: "Location", 7: "Attending provider", 19: "Visit number", 44: "Admit time",
            45: "Discharge time"},
    "MRG": {1: "Prior MRN"},
    "SCH": {1: "Placer appointment id", 2: "Filler appointment id", 7: "Reason", 8: "Appointment type",
            11: "Timing", 25: "Filler status"},
    "AIL": {3: "Location", 6: "Start"},
    "AIP": {3: "Provider", 6: "Start"},
    "AIS": {3: "Service", 4: "Start"},
    "IN1": {2: "Plan", 3: "Payer id", 4: "Payer name", 8: "Group number", 16: "Insured's name",
            36: "Member id"},
    "MSA": {1: "Code", 2: "Control id acknowledged", 3: "Text"},
    "ERR": {2: "Where", 3: "Error code", 4: "Severity", 8: "Message to the user"},
    "OBX": {2: "Value type", 3: "Observation", 5: "Value", 6: "Unit", 11: "Result status", 14: "Time"},
}


class InboundNotFound(LookupError):
    """No inbound message with this id."""


@dataclass(frozen=True)
class Overview:
    """The outbox and inbound at a glance."""

    counts: dict[str, int]
    oldest_pending_age: dt.timedelta | None
    stalled: bool
    sent_last_hour: int
    received_last_hour: int
    rejected_last_hour: int


@dataclass(frozen=True)
class DeadLetter:
    """A message the records system refused, with its answer, for retry or discard."""

    id: int
    control_id: str
    message_type: str
    mrn: str
    error: str
    attempts: int
    created_at: dt.datetime


@dataclass(frozen=True)
class InboundQuery:
    """What to find among received messages; empty fields match everything."""

    control_id: str = ""
    message_type: str = ""
    mrn: str = ""
    day: dt.date | None = None


@dataclass(frozen=True)
class InboundSummary:
    """One received message as the list shows it."""

    id: int
    received_at: dt.datetime
    control_id: str
    message_type: str
    sender: str
    outcome: str
    outcome_text: str
    error: str
    mrn: str

    @property
    def reprocessable(self) -> bool:
        return self.outcome in ("AE", "AR")


@dataclass(frozen=True)
class FieldView:
    """One valued field: ``PID-5``, its name when we know it, its text as sent."""

    position: str
    name: str
    value: str


@dataclass(frozen=True)
class SegmentView:
    name: str
    label: str
    fields: tuple[FieldView, ...]


@dataclass(frozen=True)
class InboundDetail:
    summary: InboundSummary
    peer: str
    message: tuple[SegmentView, ...]
    ack: tuple[SegmentView, ...]
    unreadable: str


def readable(raw: bytes) -> tuple[tuple[SegmentView, ...], str]:
    """A message segment by segment, valued fields only, each with its position and name.

    Returns the segments and, for bytes that cannot be read as HL7, why (then
    the text is shown as one pseudo-segment so nothing is hidden).
    """
    try:
        message = parse_message(raw)
    except (ParseError, CharsetError) as exc:
        text = raw.decode("utf-8", "replace").replace("\r", "\n")
        return (SegmentView("?", "Unreadable", (FieldView("", "Text", text),)),), str(exc)
    return tuple(_segment(segment) for segment in message.segments), ""


def _segment(segment: Segment) -> SegmentView:
    names = FIELD_NAMES.get(segment.name, {})
    start = 3 if segment.name == "MSH" else 1
    fields = tuple(FieldView(f"{segment.name}-{n}", names.get(n, ""), segment.raw(n))
                   for n in range(start, segment.field_count + 1) if segment.raw(n))
    return SegmentView(segment.name, SEGMENT_NAMES.get(segment.name, ""), fields)


def _mrn(message: Message | None) -> str:
    if message is None:
        return ""
    pid = message.segment("PID")
    return pid.value(3) if pid is not None else ""


class InterfaceMonitor:
    """Reads for the interface monitor page; actions go to :class:`Outbox` and :class:`Inbound`.

    :param zone: the clinic's time zone, which decides what a searched day is.
    :param backlog_alert: the age of the oldest waiting message past which the outbox is shown as stalled.
    """

    def __init__(self, *, uow: UnitOfWork, clock: Clock, audit: AuditTrail, outbox: Outbox, stations: Stations,
                 zone: dt.tzinfo, backlog_alert: dt.timedelta) -> None:
        self.uow = uow
        self.clock = clock
        self.audit = audit
        self.outbox = outbox
        self.stations = stations
        self.zone = zone
        self.backlog_alert = backlog_alert

    def overview(self) -> Overview:
        """Counts by state, the oldest waiting message's age, and the last hour's traffic (no patient data)."""
        stats = self.outbox.stats()
        age_seconds = t.cast(float | None, stats["oldest_pending_age_seconds"])
        age = dt.timedelta(seconds=age_seconds) if age_seconds is not None else None
        hour_ago = self.clock.now() - dt.timedelta(hours=1)
        with self.uow.begin() as session:
            sent = session.scalar(select(func.count()).select_from(OutboxMessage)
                                  .where(OutboxMessage.sent_at >= hour_ago)) or 0
            received = dict(session.execute(select(InboundMessage.outcome, func.count())
                                            .where(InboundMessage.received_at >= hour_ago)
                                            .group_by(InboundMessage.outcome)).all())
        return Overview(t.cast(dict[str, int], stats["counts"]), age,
                        stalled(stats, self.backlog_alert), int(sent),
                        int(sum(received.values())), int(received.get("AE", 0) + received.get("AR", 0)))

    def dead_letters(self, *, actor: Actor, limit: int = 200) -> list[DeadLetter]:
        """Messages the records system refused, oldest first, with the patient's MRN; audited."""
        with self.uow.begin() as session:
            rows = session.scalars(select(OutboxMessage).where(OutboxMessage.status == "dead")
                                   .order_by(OutboxMessage.id).limit(limit)).all()
            patient_ids = {pid for row in rows if (pid := patient_of(row.ordering_key)) is not None}
            mrns = dict(session.execute(select(Patient.id, Patient.mrn).where(Patient.id.in_(patient_ids))).all())
            letters = [DeadLetter(row.id, row.control_id, row.message_type,
                                  mrns.get(patient_of(row.ordering_key) or 0, ""), row.last_error, row.attempts,
                                  row.created_at) for row in rows]
            self.audit.record(session, actor, "outbox.viewed", resource_type="outbox_message",
                              detail=f"dead_letters={len(letters)}")
        return letters

    def search_inbound(self, query: InboundQuery, *, actor: Actor, limit: int = 100) -> list[InboundSummary]:
        """Received messages matching ``query``, newest first; audited.

        The MRN is inside each message, not in a column: with an MRN, the
        messages of the day searched (today when none is given) are read one by
        one, which a clinic's daily volume allows.
        """
        select_rows = select(InboundMessage).order_by(InboundMessage.id.desc())
        if query.control_id:
            select_rows = select_rows.where(InboundMessage.control_id == query.control_id)
        if query.message_type:
            select_rows = select_rows.where(func.upper(InboundMessage.message_type)
                                            .startswith(query.message_type.upper(), autoescape=True))
        day = query.day or (self.clock.now().astimezone(self.zone).date() if query.mrn else None)
        if day is not None:
            start = dt.datetime.combine(day, dt.time(), self.zone)
            select_rows = select_rows.where(InboundMessage.received_at >= start,
                                            InboundMessage.received_at < start + dt.timedelta(days=1))
        if not query.mrn:
            select_rows = select_rows.limit(limit)
        found: list[InboundSummary] = []
        with self.uow.begin() as session:
            for row in session.scalars(select_rows):
                summary = _summary(row)
                if query.mrn and summary.mrn.upper() != query.mrn.upper():
                    continue
                found.append(summary)
                if len(found) >= limit:
                    break
            self.audit.record(session, actor, "inbound.searched", resource_type="inbound_message",
                              detail=f"shown={len(found)}")
        return found

    def inbound(self, inbound_id: int, *, actor: Actor) -> InboundDetail:
        """One received message and our ACK, segment by segment; audited.

        :raises InboundNotFound: when there is no such message.
        """
        with self.uow.begin() as session:
            row = session.get(InboundMessage, inbound_id)
            if row is None:
                raise InboundNotFound(inbound_id)
            message, unreadable = readable(row.raw)
            ack, _ = readable(row.ack) if row.ack else ((), "")
            detail = InboundDetail(_summary(row), row.peer, message, ack, unreadable)
            self.audit.record(session, actor, "inbound.viewed", resource_type="inbound_message",
                              resource_id=inbound_id)
        return detail

    def devices(self) -> list[DeviceView]:
        """Every device with its state and counters (no patient data)."""
        return self.stations.devices()


def _summary(row: InboundMessage) -> InboundSummary:
    try:
        message: Message | None = parse_message(row.raw)
    except (ParseError, CharsetError):
        message = None
    return InboundSummary(row.id, row.received_at, row.control_id, row.message_type,
                          f"{row.sending_application}^{row.sending_facility}", row.outcome,
                          INBOUND_OUTCOME_TEXT.get(row.outcome, row.outcome), row.error, _mrn(message))
