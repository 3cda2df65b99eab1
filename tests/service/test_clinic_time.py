"""The clinic's time zone: HL7 times without an offset, and which visits are "today"."""

from __future__ import annotations

import datetime as dt
import typing as t
from pathlib import Path

import pytest
from sqlalchemy import select

from server.config import Config
from server.db import make_engine
from server.models import Appointment
from server.services import Services
from server.services import build_services
from server.services.context import SYSTEM
from server.services.context import FrozenClock
from tests.conftest import Database
from tests.hl7_samples import siu

CHICAGO = "America/Chicago"


@pytest.fixture
def chicago(database: Database, tmp_path: Path) -> t.Iterator[tuple[Services, FrozenClock]]:
    config = Config.for_tests(db_url=database.url, db_schema=database.schema, instance_dir=tmp_path,
                              web={"timezone": CHICAGO})
    engine = make_engine(database.url, schema=database.schema or None)
    # 02:30 UTC on the 27th is still the evening of the 26th in Chicago.
    clock = FrozenClock(dt.datetime(2026, 11, 27, 2, 30, tzinfo=dt.UTC))
    yield build_services(config, engine, secret="x", clock=clock), clock
    engine.dispose()


def test_hl7_times_without_offset_are_clinic_time(chicago: tuple[Services, FrozenClock]) -> None:
    services, _ = chicago
    services.inbound.receive(siu("S12", "Z1", appt="1", start="202611261030"), "peer")
    services.inbound.receive(siu("S12", "Z2", appt="2", start="20261126103000+0000"), "peer")
    with services.uow.begin() as session:
        starts = dict(session.execute(select(Appointment.external_id, Appointment.start_at)).all())
    assert starts == {"F1": dt.datetime(2026, 11, 26, 16, 30, tzinfo=dt.UTC),
                      "F2": dt.datetime(2026, 11, 26, 10, 30, tzinfo=dt.UTC)}


def test_today_and_day_lists_follow_the_clinic_calendar(chicago: tuple[Services, FrozenClock]) -> None:
    services, _ = chicago
    assert services.visits.today() == dt.date(2026, 11, 26)
    services.inbound.receive(siu("S12", "Z3", appt="3", start="20261126210000"), "peer")
    services.inbound.receive(siu("S12", "Z4", appt="4", start="20261127080000"), "peer")
    evening = services.visits.for_day(dt.date(2026, 11, 26), actor=SYSTEM)
    assert [v.start_at for v in evening] == [dt.datetime(2026, 11, 26, 21, 0, tzinfo=services.visits.zone)]
    assert [v.start_at.hour for v in services.visits.for_day(dt.date(2026, 11, 27), actor=SYSTEM)] == [8]
