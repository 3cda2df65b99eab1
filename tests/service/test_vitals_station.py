"""Taking vitals at a station: attach rules, typed values, checks, charting, conflicts and corrections."""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t
from decimal import Decimal

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from devices.normalise import normalise
from devices.protocols import datex
from devices.protocols.base import Measurement
from devices.simulators.datex import DatexSimulator
from hl7.er7 import parse_message
from server.domain.visit import VitalsNotCharted
from server.models import Observation
from server.models import OutboxMessage
from server.models import Visit
from server.services import Services
from server.services.context import Actor
from server.services.context import FrozenClock
from server.services.vitals import Draft
from server.services.vitals import IncomingReading
from server.services.vitals import VitalsConflict
from tests.conftest import csrf_token

AMA = Actor("staff", "1", role="assistant")
BEN = Actor("staff", "2", role="assistant")
SYSTEM = Actor("system", "test")


@pytest.fixture
def waiting_visit(services: Services, demo_visit: int) -> int:
    services.stations.configure([("ox-1", "nonin-df8", "/dev/ttyUSB0", "room1"),
                                 ("bp-1", "datex-as3", "/dev/ttyUSB1", "room1"),
                                 ("ox-2", "nonin-df8", "/dev/ttyUSB2", "room2")])
    services.visits.transition(demo_visit, "arrived", actor=SYSTEM)
    return demo_visit


def send(services: Services, clock: FrozenClock, metric: str, value: str | None, *, device: str = "ox-1",
         flags: tuple[str, ...] = (), seconds: float = 0, station: str = "room1") -> None:
    units = {"spo2": "%", "pulse_oximeter": "/min", "systolic": "mm[Hg]", "diastolic": "mm[Hg]",
             "mean_arterial": "mm[Hg]", "pulse_nibp": "/min", "weight": "kg", "height": "cm"}
    clock.advance(seconds=seconds)
    services.vitals.record([IncomingReading(f"{device}-{metric}-{clock.now().isoformat()}", device, station, metric,
                                            None if value is None else Decimal(value), units[metric], flags, None,
                                            clock.now())])


def send_frames(services: Services, clock: FrozenClock, decoder: t.Any, stream: bytes, device: str) -> None:
    """What a decoder makes of device bytes, stored as the gateway stores it (device clock left out)."""
    clock.advance(seconds=1)
    readings = [normalise(event, device_id=device, station="room1", host_time=clock.now(), host_monotonic=0.0)
                for event in decoder.feed(stream) if isinstance(event, Measurement)]
    services.vitals.record([IncomingReading.from_reading(dataclasses.replace(r, device_time=None),
                                                         f"{device}-{r.metric}-{clock.now().isoformat()}")
                            for r in readings])


def fields(**typed: tuple[str, str]) -> Draft:
    return Draft({key: (text, unit, "typed") for key, (text, unit) in typed.items()})


def oru(services: Services, control_id: str) -> t.Any:
    with services.uow.begin() as session:
        payload = session.scalar(select(OutboxMessage.payload).where(OutboxMessage.control_id == control_id))
    assert payload is not None
    return parse_message(payload)


def obx_values(message: t.Any) -> dict[str, tuple[str, str, str, str]]:
    """OBX-3.1 -> (OBX-5, OBX-6.1, OBX-11, OBX-17.1) of every metric row."""
    rows = {}
    for segment in message.all("OBX"):
        if segment.value(2) == "NM":
            rows[segment.value(3)] = (segment.value(5), segment.value(6), segment.value(11), segment.value(17))
    return rows


def test_readings_before_take_vitals_are_never_offered(services: Services, clock: FrozenClock,
                                                       waiting_visit: int) -> None:
    send(services, clock, "spo2", "91")
    session_id = services.vitals.take("room1", waiting_visit, actor=AMA)
    page = services.vitals.station_page("room1", actor=AMA)
    assert page.session is not None and page.session.id == session_id
    spo2 = page.session.rows[0]
    assert spo2.captured is None and spo2.current is None
    outcome = services.vitals.chart("room1", session_id, Draft(), actor=AMA)
    assert not outcome.charted and "nothing to send" in outcome.errors["_"]
    send(services, clock, "spo2", "97", seconds=1)
    page = services.vitals.station_page("room1", actor=AMA)
    assert page.session is not None and page.session.rows[0].captured is not None
    assert page.session.rows[0].captured.value == "97"


def test_a_reading_with_no_patient_selected_stays_unattached(services: Services, clock: FrozenClock,
                                                             waiting_visit: int) -> None:
    send(services, clock, "spo2", "97")
    with services.uow.begin() as session:
        [row] = session.scalars(select(Observation)).all()
        assert row.visit_id is None and row.patient_id is None and row.session_id is None


def test_send_to_chart_stores_queues_pcd01_and_moves_the_visit(services: Services, clock: FrozenClock,
                                                               waiting_visit: int) -> None:
    session_id = services.vitals.take("room1", waiting_visit, actor=AMA)
    send(services, clock, "spo2", "97", seconds=1)
    send(services, clock, "pulse_oximeter", "72")
    send(services, clock, "spo2", None, flags=("sensor_off", "no_data"), seconds=1)
    outcome = services.vitals.chart("room1", session_id, fields(weight=("154", "[lb_av]"), height=("170", "cm"),
                                                                pain=("3", "{score}")), actor=AMA)
    assert outcome.charted, outcome
    message = oru(services, outcome.control_id)
    values = obx_values(message)
    assert values["150456"] == ("97", "262688", "F", "AMEAS")
    assert values["149530"] == ("72", "264864", "F", "AMEAS")
    assert values["188736"] == ("69.9", "263875", "F", "MMEAS")
    assert values["188740"] == ("170", "263441", "F", "MMEAS")
    assert values["188752"] == ("24.2", "264096", "F", "ACALC")
    assert values["72514-3"] == ("3", "{score}", "F", "MMEAS")
    identities = {(s.value(18, 1), s.value(18, 2)) for s in message.all("OBX") if s.value(11) == "X"}
    assert ("ox-1", "nonin-df8") in identities and ("room1", "FRONTDESK") in identities
    with services.uow.begin() as session:
        visit = session.get(Visit, waiting_visit)
        assert visit is not None and visit.state == "vitals_taken"
        rows = session.scalars(select(Observation).where(Observation.visit_id == waiting_visit)).all()
        weight = next(r for r in rows if r.metric == "weight")
        assert (weight.method, weight.entered, weight.entered_by, weight.status) == \
            ("manual", "154 [lb_av]", "1", "final")
        spo2 = next(r for r in rows if r.metric == "spo2")
        assert spo2.device_id == "ox-1" and spo2.method == "device"


def test_voided_values_are_never_charted(services: Services, clock: FrozenClock, waiting_visit: int) -> None:
    session_id = services.vitals.take("room1", waiting_visit, actor=AMA)
    send(services, clock, "spo2", "88", flags=("sensor_off",), seconds=1)
    send(services, clock, "pulse_oximeter", "70", flags=("low_perfusion",))
    outcome = services.vitals.chart("room1", session_id, Draft(), actor=AMA)
    assert outcome.charted
    values = obx_values(oru(services, outcome.control_id))
    assert "150456" not in values and values["149530"][0] == "70"


def test_a_value_the_oximeter_keeps_through_motion_is_charted(services: Services, clock: FrozenClock,
                                                              waiting_visit: int) -> None:
    """Nonin's displayed values during artifact are its most reliable reading (OEM spec 6470-000-01)."""
    session_id = services.vitals.take("room1", waiting_visit, actor=AMA)
    send(services, clock, "spo2", "96", flags=("artifact",), seconds=1)
    outcome = services.vitals.chart("room1", session_id, Draft(), actor=AMA)
    assert outcome.charted
    assert obx_values(oru(services, outcome.control_id))["150456"][0] == "96"


def test_only_the_reading_the_page_showed_is_charted(services: Services, clock: FrozenClock,
                                                     waiting_visit: int) -> None:
    """A reading that arrives while "Send to chart" is on its way is shown and asked about, never sent unseen."""
    session_id = services.vitals.take("room1", waiting_visit, actor=AMA)
    send(services, clock, "spo2", "96", seconds=1)
    page = services.vitals.station_page("room1", actor=AMA)
    assert page.session is not None and page.session.rows[0].captured is not None
    seen = page.session.rows[0].captured.reading_id
    send(services, clock, "spo2", "93", seconds=1)

    outcome = services.vitals.chart("room1", session_id, Draft(shown={"spo2": seen}), actor=AMA)
    assert not outcome.charted and "newer reading" in outcome.errors["spo2"]
    page = services.vitals.station_page("room1", actor=AMA)
    assert page.session is not None and page.session.rows[0].captured is not None
    newest = page.session.rows[0].captured
    assert newest.value == "93"

    outcome = services.vitals.chart("room1", session_id, Draft(shown={"spo2": newest.reading_id}), actor=AMA)
    assert outcome.charted
    assert obx_values(oru(services, outcome.control_id))["150456"][0] == "93"


def test_implausible_and_large_changes_need_a_confirming_click(services: Services, clock: FrozenClock,
                                                               waiting_visit: int) -> None:
    session_id = services.vitals.take("room1", waiting_visit, actor=AMA)
    outcome = services.vitals.chart("room1", session_id, fields(temperature=("113", "[degF]")), actor=AMA)
    assert not outcome.charted and "plausible" in outcome.warnings["temperature"][0]
    outcome = services.vitals.chart("room1", session_id, Draft(
        {"temperature": ("113", "[degF]", "typed")}, frozenset({"temperature"})), actor=AMA)
    assert outcome.charted
    values = obx_values(oru(services, outcome.control_id))
    assert values["150364"][:2] == ("45.0", "268192")
    # Next visit of the same patient: a weight far from the last charted one.
    services.visits.transition(waiting_visit, "checked_out", actor=SYSTEM)
    with services.uow.begin() as session:
        visit = session.get(Visit, waiting_visit)
        assert visit is not None
        visit.state = "arrived"
        session.execute(Observation.__table__.insert().values(
            visit_id=waiting_visit, patient_id=visit.patient_id, station_id="room1", metric="weight",
            code_system="MDC", code="188736", value="70.0", unit="kg", method="manual", flags=[],
            measured_at=clock.now() - dt.timedelta(days=30), recorded_at=clock.now(), status="final",
            entered_by="1", entered=""))
    session_id = services.vitals.take("room1", waiting_visit, actor=AMA)
    outcome = services.vitals.chart("room1", session_id, fields(weight=("90", "kg")), actor=AMA)
    assert "a change of 20.0 kg" in outcome.warnings["weight"][0]
    assert services.vitals.chart("room1", session_id, fields(weight=("72", "kg")), actor=AMA).charted


def test_unreadable_typed_values_are_asked_again(services: Services, waiting_visit: int) -> None:
    session_id = services.vitals.take("room1", waiting_visit, actor=AMA)
    outcome = services.vitals.chart("room1", session_id, fields(weight=("lots", "kg"), pain=("11", "{score}"),
                                                                height=("170", "furlong")), actor=AMA)
    assert set(outcome.errors) == {"weight", "pain", "height"}
    assert outcome.errors["pain"] == "Pain (0 to 10): enter a whole number from 0 to 10"


def test_two_tabs_chart_once(services: Services, clock: FrozenClock, waiting_visit: int) -> None:
    first = services.vitals.take("room1", waiting_visit, actor=AMA)
    assert services.vitals.take("room1", waiting_visit, actor=AMA) == first
    assert services.vitals.chart("room1", first, fields(weight=("70", "kg")), actor=AMA).charted
    with pytest.raises(VitalsConflict, match="already sent to the chart"):
        services.vitals.chart("room1", first, fields(weight=("70", "kg")), actor=AMA)
    with services.uow.begin() as session:
        assert len(session.scalars(select(OutboxMessage.id).where(OutboxMessage.message_type == "ORU^R01")).all()) == 1


def test_a_second_assistant_cannot_take_a_visit_or_station_in_use(services: Services, waiting_visit: int) -> None:
    services.vitals.take("room1", waiting_visit, actor=AMA)
    with pytest.raises(VitalsConflict, match="Another assistant is taking vitals"):
        services.vitals.take("room2", waiting_visit, actor=BEN)
    page = services.vitals.station_page("room1", actor=BEN)
    assert page.session is None and page.waiting[0].busy.startswith("Another assistant")


def test_take_again_offers_only_later_readings(services: Services, clock: FrozenClock, waiting_visit: int) -> None:
    session_id = services.vitals.take("room1", waiting_visit, actor=AMA)
    send(services, clock, "systolic", "180", device="bp-1", seconds=1)
    services.vitals.restart_rows("room1", session_id, ["systolic"], actor=AMA)
    page = services.vitals.station_page("room1", actor=AMA)
    assert page.session is not None
    systolic = next(r for r in page.session.rows if r.row.key == "systolic")
    assert systolic.captured is None and systolic.current is None
    send(services, clock, "systolic", "128", device="bp-1", seconds=1)
    outcome = services.vitals.chart("room1", session_id, Draft(), actor=AMA)
    assert obx_values(oru(services, outcome.control_id))["150021"][0] == "128"


def test_a_correction_is_sent_as_obx_11_c_and_keeps_history(services: Services, clock: FrozenClock,
                                                            waiting_visit: int) -> None:
    session_id = services.vitals.take("room1", waiting_visit, actor=AMA)
    first = services.vitals.chart("room1", session_id, fields(weight=("70", "kg"), height=("175", "cm")), actor=AMA)
    with services.uow.begin() as session:
        weight_id = session.scalar(select(Observation.id).where(Observation.metric == "weight"))
    assert weight_id is not None
    outcome = services.vitals.correct("room1", weight_id, "165", "[lb_av]", confirmed=False, actor=AMA)
    assert outcome.charted
    message = oru(services, outcome.control_id)
    assert obx_values(message) == {"188736": ("74.8", "263875", "C", "MMEAS"),
                                   "188752": ("24.4", "264096", "C", "ACALC")}
    assert message.value("OBR", 3) == oru(services, first.control_id).value("OBR", 3)
    with services.uow.begin() as session:
        statuses = sorted((o.metric, o.value, o.status) for o in session.scalars(
            select(Observation).where(Observation.metric.in_(("weight", "bmi")))))
    assert statuses == [("bmi", "22.9", "corrected"), ("bmi", "24.4", "final"),
                        ("weight", "70", "corrected"), ("weight", "74.8", "final")]


def test_vitals_taken_cannot_be_set_without_charted_vitals(client: FlaskClient, staff: t.Any, services: Services,
                                                           waiting_visit: int) -> None:
    services.visits.transition(waiting_visit, "roomed", actor=SYSTEM)
    staff.create("ama", "assistant")
    staff.sign_in("ama")
    page = client.get("/staff/")
    # The board offers no such button, and its endpoint refuses the state to every role: "Send to chart" sets it.
    response = client.post(f"/staff/visits/{waiting_visit}/state",
                           data={"csrf_token": csrf_token(page.text), "target": "vitals_taken"})
    assert response.status_code == 403
    with pytest.raises(VitalsNotCharted, match="this visit has none yet"):
        services.visits.transition(waiting_visit, "vitals_taken", actor=SYSTEM)
    with services.uow.begin() as session:
        visit = session.get(Visit, waiting_visit)
        assert visit is not None and visit.state == "roomed"


def test_station_page_flow_through_the_browser_forms(client: FlaskClient, staff: t.Any, services: Services,
                                                     clock: FrozenClock, waiting_visit: int) -> None:
    staff.create("ama", "assistant")
    staff.sign_in("ama")
    page = client.get("/staff/stations/room1")
    assert page.status_code == 200 and "Tester, Sentinel" in page.text and "Take vitals" in page.text
    response = client.post("/staff/stations/room1/take", data={"csrf_token": csrf_token(page.text),
                                                                "visit_id": str(waiting_visit)})
    assert response.status_code == 302
    send(services, clock, "spo2", "96", seconds=1)
    page = client.get("/staff/stations/room1")
    assert 'value="96"' in page.text and "Vitals for Tester, Sentinel" in page.text
    session_id = services.vitals.station_page("room1", actor=Actor("staff", "1")).session
    assert session_id is not None
    form = {"csrf_token": csrf_token(page.text), "action": "chart", "spo2": "96", "spo2_source": "device",
            "weight": "500", "weight_unit": "kg", "weight_source": "typed"}
    again = client.post(f"/staff/stations/room1/sessions/{session_id.id}", data=form)
    assert again.status_code == 422 and "value is right" in again.text and 'value="500"' in again.text
    done = client.post(f"/staff/stations/room1/sessions/{session_id.id}", data={**form, "confirm": "weight"},
                       follow_redirects=True)
    assert "Sent to chart." in done.text and "Queued" in done.text
    assert client.get("/staff/stations/").status_code == 200


def test_front_desk_cannot_open_a_station(client: FlaskClient, staff: t.Any, waiting_visit: int) -> None:
    staff.create("fred", "front_desk")
    staff.sign_in("fred")
    assert client.get("/staff/stations/room1").status_code == 403


def test_blood_pressure_and_temperature_in_progress_show_as_measuring_and_are_not_offered(
        client: FlaskClient, staff: t.Any, services: Services, clock: FrozenClock, waiting_visit: int) -> None:
    staff.create("ama", "assistant")
    staff.sign_in("ama")
    session_id = services.vitals.take("room1", waiting_visit, actor=AMA)
    record = bytearray(DatexSimulator("normal", 7).record())
    basic = datex.HEADER_SIZE + datex.CLASS_OFFSET
    record[basic + datex.T1_GROUP : basic + datex.T1_GROUP + 4] = bytes(4)  # no temperature module on this monitor
    label = basic + datex.NIBP_GROUP + datex.LABEL_OFFSET
    record[label : label + 2] = b"\x20\x00"  # NIBP "measuring": the cuff is inflating
    decoder = datex.DatexDecoder()
    send_frames(services, clock, decoder, datex.encode_frame(bytes(record)), "bp-1")
    services.vitals.record([IncomingReading("t-1", "thermo-1", "room1", "temperature_oral", Decimal("36.40"), "Cel",
                                            ("in_progress",), None, clock.now())])
    page = services.vitals.station_page("room1", actor=AMA)
    assert page.session is not None and page.session.id == session_id
    rows = {row.row.key: row for row in page.session.rows}
    for key in ("systolic", "diastolic", "temperature"):
        assert rows[key].current is not None and rows[key].current.in_progress, key
        assert rows[key].captured is None, key
    html = client.get("/staff/stations/room1").text
    assert html.count("Measuring…") >= 3 and 'value="36.40"' not in html

    record[label : label + 2] = b"\x00\x00"  # the result
    send_frames(services, clock, decoder, datex.encode_frame(bytes(record)), "bp-1")
    services.vitals.record([IncomingReading("t-2", "thermo-1", "room1", "temperature_oral", Decimal("36.50"), "Cel",
                                            (), None, clock.now())])
    page = services.vitals.station_page("room1", actor=AMA)
    assert page.session is not None
    rows = {row.row.key: row for row in page.session.rows}
    assert rows["systolic"].captured is not None and rows["systolic"].captured.value == "124.00"
    assert rows["temperature"].captured is not None and rows["temperature"].captured.value == "36.50"
    assert "Measuring…" not in client.get("/staff/stations/room1").text
