"""normalise(): unit conversion at the device's resolution, MDC codes, plausibility, no-reading events."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from devices.nomenclature import METRICS
from devices.normalise import NormaliseError
from devices.normalise import convert
from devices.normalise import normalise
from devices.protocols.base import Measurement
from devices.protocols.scales import TanitaDecoder
from devices.protocols.scales import encode_tanita
from devices.protocols.suretemp import CMD_TEMPERATURE_RECORD
from devices.protocols.suretemp import TYPE_GOOD_RESPONSE
from devices.protocols.suretemp import SureTempDecoder
from devices.protocols.suretemp import TemperatureRecord
from devices.protocols.suretemp import encode_packet
from devices.reading import Reading

HOST_TIME = dt.datetime(2026, 3, 1, 14, 0, 0, tzinfo=dt.UTC)


def reading(event: Measurement) -> Reading:
    return normalise(event, device_id="scale-1", station="room-2", host_time=HOST_TIME, host_monotonic=12.5)


@pytest.mark.parametrize(("value", "unit", "canonical", "expected"), [
    ("154.2", "[lb_av]", "kg", "69.94"),
    ("154", "[lb_av]", "kg", "69.9"),
    ("200.00", "[lb_av]", "kg", "90.718"),
    ("67.5", "[in_i]", "cm", "171.5"),
    ("309.65", "K", "Cel", "36.50"),
    ("307.37", "K", "Cel", "34.22"),
    ("98.6", "[degF]", "Cel", "37.00"),
    ("101.3", "[degF]", "Cel", "38.50"),
    ("16.0", "kPa", "mm[Hg]", "120"),
    ("1.75", "m", "cm", "175"),
    ("70200", "g", "kg", "70.200"),
    ("72", "{beats}/min", "/min", "72"),
    ("36.80", "Cel", "Cel", "36.80"),
])
def test_conversions_keep_the_device_resolution(value: str, unit: str, canonical: str, expected: str) -> None:
    result = convert(Decimal(value), unit, canonical)
    assert str(result) == expected


def test_weight_in_pounds_becomes_kilograms_with_its_mdc_code() -> None:
    got = reading(Measurement("weight", Decimal("154.2"), "[lb_av]"))
    assert got == Reading(device_id="scale-1", station="room-2", metric="weight", mdc_code=188736,
                          value=Decimal("69.94"), unit="kg", flags=frozenset(), device_time=None,
                          host_time=HOST_TIME, host_monotonic=12.5)


def test_mdc_code_comes_from_the_metric_table() -> None:
    for key, metric in METRICS.items():
        event = Measurement(key, None, metric.unit.ucum, frozenset({"no_data"}))
        assert reading(event).mdc_code == metric.mdc_code == metric.mdc_term[0] << 16 | metric.mdc_term[1]


def test_no_reading_keeps_its_flags_and_no_value() -> None:
    got = reading(Measurement("spo2", None, "%", frozenset({"sensor_off", "no_data"})))
    assert got.value is None and got.flags == {"sensor_off", "no_data"} and got.unit == "%"


@pytest.mark.parametrize(("metric", "value", "unit", "implausible"), [
    ("spo2", "49", "%", True),
    ("spo2", "50", "%", False),
    ("spo2", "100", "%", False),
    ("pulse_oximeter", "300", "/min", True),
    ("temperature_oral", "309.65", "K", False),
    ("temperature_oral", "300.15", "K", True),
    ("weight", "800", "[lb_av]", True),
    ("height", "10", "[in_i]", True),
])
def test_implausible_values_are_flagged_not_dropped(metric: str, value: str, unit: str, implausible: bool) -> None:
    got = reading(Measurement(metric, Decimal(value), unit, frozenset({"from_memory"})))
    assert got.value is not None
    assert got.flags == ({"from_memory", "implausible"} if implausible else {"from_memory"})


def test_device_time_and_host_time_are_both_kept() -> None:
    device_time = dt.datetime(2025, 6, 15, 14, 30, 5)
    local = dt.datetime(2026, 3, 1, 9, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    got = normalise(Measurement("spo2", Decimal(97), "%", device_time=device_time), device_id="ox",
                    station="s", host_time=local, host_monotonic=1.0)
    assert got.device_time == device_time
    assert got.host_time == HOST_TIME and got.host_time.tzinfo == dt.UTC


@pytest.mark.parametrize(("event", "message"), [
    (Measurement("pain", Decimal(3), "{score}"), "unknown metric"),
    (Measurement("weight", Decimal(70), "[stone_av]"), "no conversion"),
    (Measurement("weight", Decimal("NaN"), "kg"), "not a number"),
    (Measurement("weight", Decimal("Infinity"), "[lb_av]"), "not a number"),
])
def test_bad_measurements_raise_a_clear_error(event: Measurement, message: str) -> None:
    with pytest.raises(NormaliseError, match=message):
        reading(event)


def test_naive_host_time_is_refused() -> None:
    with pytest.raises(NormaliseError, match="timezone-aware"):
        normalise(Measurement("spo2", Decimal(97), "%"), device_id="ox", station="s",
                  host_time=dt.datetime(2026, 3, 1, 14, 0), host_monotonic=1.0)


def test_decoder_events_normalise_end_to_end() -> None:
    scale_events = TanitaDecoder().feed(encode_tanita([("MO", '"WB-3000"'), ("Wp", "154.2")]))
    thermometer_events = SureTempDecoder().feed(encode_packet(
        CMD_TEMPERATURE_RECORD, TYPE_GOOD_RESPONSE, TemperatureRecord(309.65, 309.0, 9, 0, 0, 6, 0, 1, 0).to_bytes()))
    events = [e for e in scale_events + thermometer_events if isinstance(e, Measurement)]
    assert [(r.metric, r.value, r.unit, r.mdc_code) for r in map(reading, events)] == [
        ("weight", Decimal("69.94"), "kg", 188736),
        ("temperature_oral", Decimal("36.50"), "Cel", 188424),
    ]


def test_baby_scale_grams_become_kilograms() -> None:
    events = TanitaDecoder().feed(b'{0,16,~0,1,MO,"BD-815",Wg,3972\r\n')
    assert [(r.metric, r.value, r.unit) for r in map(reading, measurements_of(events))] == [
        ("weight", Decimal("3.972"), "kg")]


def measurements_of(events: list[object]) -> list[Measurement]:
    return [e for e in events if isinstance(e, Measurement)]
