"""The JSON API's wire schemas (Pydantic): each request body is validated by its model and each
response is checked against its model before it leaves, and the OpenAPI document is generated from
these same classes (:mod:`server.openapi`), so the document cannot drift from what the code does.

Patient data in responses is the minimum a caller needs (HIPAA's minimum-necessary rule): names and
birth dates, never addresses, phone numbers or insurance.
"""

from __future__ import annotations

import datetime as dt
import typing as t

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import SkipValidation
from pydantic.json_schema import SkipJsonSchema

from server.services.vitals import MAX_BATCH

Text = t.Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""A short printable identifier as gateways send them."""


class Model(BaseModel):
    """Base of every wire model: unknown fields are refused in responses we write and ignored in bodies."""

    model_config = ConfigDict(frozen=True)


class ApiError(Model):
    """Every error answer: one line saying what is wrong (``field: reason`` for a bad field)."""

    error: str


class Rejected(Model):
    """One refused item of a batch: its position and why."""

    index: int = Field(ge=0)
    error: str


class PerItem(Model):
    """A batch answer: how many items were stored, and each refused one with its position and reason."""

    accepted: int = Field(ge=0)
    rejected: list[Rejected]


class ReadingsStored(PerItem):
    """``POST /readings``'s answer: besides those taken, how many the server already held (a replay)."""

    duplicates: int = Field(ge=0, description="readings already held under their reading_id; nothing changed")


# Gateways ------------------------------------------------------------------------------------------


class ReadingIn(Model):
    """One reading from a station gateway (:func:`devices.uplink` sends these)."""

    reading_id: Text
    device_id: Text
    station: Text
    metric: t.Annotated[str, Field(min_length=1, max_length=32)]
    mdc_code: int = Field(description="the metric's IEEE 11073 MDC code")
    value: str | None = Field(max_length=32, description="decimal text as measured; null for no reading")
    unit: t.Annotated[str, Field(min_length=1, max_length=32, description="UCUM, the metric's canonical unit")]
    flags: list[t.Annotated[str, Field(max_length=32)]] = Field(default=[], max_length=16)
    device_time: str | None = Field(default=None, max_length=40,
                                    description="the device's clock as it reported it, ISO 8601, offset optional")
    host_time: str = Field(max_length=40, description="when the gateway received it, ISO 8601 with offset")


class ReadingBatch(Model):
    """``POST /readings``: each reading is checked on its own against :class:`ReadingIn`, so one bad
    reading never blocks the gateway's buffer behind it."""

    gateway: str | SkipJsonSchema[None] = Field(default=None, max_length=64)
    readings: list[SkipValidation[ReadingIn]] = Field(max_length=MAX_BATCH)


class DeviceStatusIn(Model):
    """One device's status from a station gateway."""

    device_id: Text
    driver: t.Annotated[str, Field(min_length=1, max_length=32)]
    port: t.Annotated[str, Field(min_length=1, max_length=256)]
    station: Text
    connected: bool = False
    stale: bool = False
    last_frame_time: str | None = Field(default=None, max_length=40)
    frames_accepted: int = Field(ge=0, description="frames (messages, records, packets) decoded")
    frames_rejected: int = Field(ge=0)
    readings: int = Field(default=0, ge=0, description="values those frames carried")
    unrecognised: int = Field(default=0, ge=0, description="observations in good frames that are not charted")
    reconnects: int = Field(ge=0)
    last_error: str | None = Field(default=None, max_length=500)
    flags: list[t.Annotated[str, Field(max_length=32)]] = Field(default=[], max_length=16)


class DeviceStatusBatch(Model):
    """``POST /devices/status``: each report is checked on its own against :class:`DeviceStatusIn`."""

    gateway: str | SkipJsonSchema[None] = Field(default=None, max_length=64)
    devices: list[SkipValidation[DeviceStatusIn]] = Field(max_length=64)


# Staff reads ---------------------------------------------------------------------------------------


class VisitsQuery(Model):
    """``GET /visits``: the clinic's day, today when omitted."""

    date: dt.date | SkipJsonSchema[None] = None


class VisitOut(Model):
    id: int
    patient_id: int
    state: str = Field(description="expected, arrived, roomed, vitals_taken, checked_out, cancelled or no_show")
    patient_name: str
    birth_date: dt.date | None
    start_at: dt.datetime | None
    provider_name: str
    location: str


class VisitList(Model):
    visits: list[VisitOut]


class PatientOut(Model):
    """The minimum necessary about a patient: who they are, not where they live or who pays."""

    id: int
    mrn: str
    family_name: str
    given_name: str
    birth_date: dt.date | None
    sex: str


class ObservationOut(Model):
    id: int
    metric: str
    value: str | None
    unit: str = Field(description="UCUM")
    method: str = Field(description="device, manual (typed by staff) or calculated")
    status: str = Field(description="preliminary (live), final (charted), corrected or entered_in_error")
    measured_at: dt.datetime
    device_id: str | None
    flags: list[str]


class ObservationList(Model):
    observations: list[ObservationOut]


class FlagsQuery(Model):
    all: t.Literal["0", "1"] = Field(default="0", description="1: acknowledged flags too")


class FlagOut(Model):
    id: int
    kind: str
    priority: str
    message: str
    patient_name: str | None
    visit_id: int | None
    kiosk_id: int | None
    created_at: dt.datetime
    acknowledged_at: dt.datetime | None


class FlagList(Model):
    flags: list[FlagOut]


class FieldChange(Model):
    field: str
    on_file: str
    requested: str


class ChangeOut(Model):
    id: int
    patient_name: str
    created_at: dt.datetime
    fields: list[FieldChange]


class ChangeList(Model):
    changes: list[ChangeOut]


class OutboxCounts(Model):
    pending: int
    sending: int
    sent: int
    dead: int
    discarded: int


class OutboxMessageOut(Model):
    id: int
    control_id: str
    message_type: str
    status: str
    attempts: int
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    last_error: str


class OutboxReport(Model):
    counts: OutboxCounts
    oldest_pending_age_seconds: float | None
    messages: list[OutboxMessageOut] = Field(description="messages needing attention")


class InboundQuery(Model):
    control_id: str | SkipJsonSchema[None] = Field(default=None, max_length=64)
    message_type: str | SkipJsonSchema[None] = Field(default=None, max_length=32, description="e.g. SIU^S12")
    date: dt.date | SkipJsonSchema[None] = Field(default=None, description="the clinic's day it arrived")


class InboundOut(Model):
    id: int
    control_id: str
    message_type: str
    sending_application: str
    outcome: str = Field(description="AA accepted, AE error, AR rejected")
    error: str
    received_at: dt.datetime


class InboundList(Model):
    messages: list[InboundOut]


class DeviceOut(Model):
    id: str
    driver: str
    port: str
    station: str | None
    state: str = Field(description="connected, stale, disconnected, or silent (its reader has not reported)")
    connected: bool
    stale: bool
    last_frame_time: dt.datetime | None
    last_seen: dt.datetime | None
    frames_accepted: int = Field(description="frames (messages, records, packets) decoded")
    frames_rejected: int
    readings: int = Field(description="values those frames carried")
    unrecognised: int = Field(description="observations in good frames that are not charted")
    last_error: str | None
    reconnects: int
    flags: list[str]
    reported_by: str


class DeviceList(Model):
    devices: list[DeviceOut]


class AlertOut(Model):
    id: int
    kind: str
    subject: str
    detail: str
    raised_at: dt.datetime


class AlertList(Model):
    alerts: list[AlertOut]
