"""The rules of a vitals check on plain values: typed entries and their units, BMI, checks, flags, clocks."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from server.domain import vitals as rules

NOW = dt.datetime(2026, 11, 26, 14, 0, tzinfo=dt.UTC)


def entry(key: str, text: str, unit: str) -> rules.Entry | None:
    return rules.parse_entry(rules.ROW_BY_KEY[key], text, unit)


@pytest.mark.parametrize(("key", "text", "unit", "value"), [
    ("temperature", "98.6", "[degF]", Decimal("37.00")),     # (98.6 - 32) x 5/9
    ("temperature", "37,2", "Cel", Decimal("37.2")),         # a decimal comma is read as a point
    ("weight", "154", "[lb_av]", Decimal("69.9")),           # 1 [lb_av] = 0.45359237 kg
    ("weight", "154.0", "[lb_av]", Decimal("69.85")),        # one more digit typed, one more kept
    ("height", "66", "[in_i]", Decimal("168")),              # 1 [in_i] = 2.54 cm
    ("height", "66.5", "[in_i]", Decimal("168.9")),
    ("pulse", "72", "/min", Decimal("72")),
    ("pain", "0", "{score}", Decimal("0")),
])
def test_typed_values_are_converted_with_exact_factors_to_the_canonical_unit(key: str, text: str, unit: str,
                                                                            value: Decimal) -> None:
    found = entry(key, text, unit)
    row = rules.ROW_BY_KEY[key]
    assert found is not None and row.typed is not None
    assert (found.value, found.unit, found.entered) == (value, row.typed.units[0], f"{text} {unit}")


@pytest.mark.parametrize(("key", "text", "unit", "message"), [
    ("weight", "seventy", "kg", "Weight: enter a number, like 72"),
    ("temperature", "hot", "[degF]", "Temperature: enter a number, like 98.6"),
    ("weight", "-3", "kg", "Weight: enter a number, like 72"),
    ("weight", "NaN", "kg", "Weight: enter a number, like 72"),
    ("weight", "70", "st", "Weight: choose a unit from the list"),
    ("pulse", "72.5", "/min", "Pulse: enter a whole number"),
    ("pain", "11", "{score}", "Pain (0 to 10): enter a whole number from 0 to 10"),
    ("weight", "1e400", "kg", "Weight: enter a number, like 72"),
])
def test_unreadable_entries_name_the_field_and_what_to_type(key: str, text: str, unit: str, message: str) -> None:
    with pytest.raises(rules.EntryError) as raised:
        entry(key, text, unit)
    assert str(raised.value) == message


def test_an_empty_field_and_a_device_only_row_give_nothing() -> None:
    assert entry("weight", "  ", "kg") is None
    assert entry("spo2", "97", "%") is None


@pytest.mark.parametrize(("weight", "height", "expected"), [
    ("70", "175", Decimal("22.9")),      # 22.857
    ("69.9", "170", Decimal("24.2")),    # 24.187
    ("81", "180", Decimal("25.0")),
    ("58.05", "150", Decimal("25.8")),   # 25.8 exactly: no rounding drift
])
def test_bmi_is_kilograms_per_square_metre_to_one_decimal(weight: str, height: str, expected: Decimal) -> None:
    assert rules.bmi(Decimal(weight), Decimal(height)) == expected


def test_bmi_rounds_half_up_and_needs_a_height() -> None:
    assert rules.bmi(Decimal("22.5"), Decimal("100")) == Decimal("22.5")
    assert rules.bmi(Decimal("2.25"), Decimal("100")) == Decimal("2.3")
    assert rules.bmi(Decimal("70"), Decimal("0")) is None


def test_a_value_outside_the_plausible_range_is_a_warning_not_a_refusal() -> None:
    [message] = rules.warnings("temperature", Decimal("45.0"), "Cel", None)
    assert message == "45.0 °C is outside the plausible range 32 to 43 °C."
    assert rules.warnings("temperature", Decimal("37.0"), "Cel", None) == []


def test_a_large_change_from_the_last_charted_value_is_a_warning() -> None:
    last = (Decimal("120"), NOW - dt.timedelta(days=30))
    [message] = rules.warnings("systolic", Decimal("170"), "mm[Hg]", last)
    assert message == "Last charted 120 mmHg on 10/27/2026: a change of 50 mmHg."
    assert rules.warnings("systolic", Decimal("150"), "mm[Hg]", last) == []


def test_weight_needs_both_five_kilograms_and_ten_percent_to_count_as_a_large_change() -> None:
    adult = (Decimal("120"), NOW)
    child = (Decimal("20"), NOW)
    assert rules.warnings("weight", Decimal("126"), "kg", adult) == []      # 6 kg, 5 %
    assert rules.warnings("weight", Decimal("26"), "kg", child) != []       # 6 kg, 30 %
    assert rules.warnings("weight", Decimal("23"), "kg", child) == []       # 3 kg, 15 %


@pytest.mark.parametrize("metric", rules.ROW_BY_KEY["temperature"].metrics)
def test_every_temperature_site_is_checked_for_a_large_change(metric: str) -> None:
    assert rules.warnings(metric, Decimal("39.5"), "Cel", (Decimal("36.8"), NOW)) != []


def test_informative_flags_keep_a_value_and_any_other_flag_voids_it() -> None:
    assert rules.usable(Decimal("97"), ("low_perfusion", "artifact"))
    assert not rules.usable(Decimal("97"), ("sensor_off",))
    assert not rules.usable(Decimal("97"), ("a_flag_no_one_documented",))
    assert not rules.usable(None, ())


@pytest.mark.parametrize("flag", ["in_progress", "measuring", "inflating", "predicting"])
def test_a_measurement_under_way_is_in_progress_and_never_chartable(flag: str) -> None:
    assert rules.in_progress((flag,))
    assert not rules.usable(Decimal("36.4"), (flag,))
    assert rules.flag_text(flag) == "Measuring…"


def test_device_time_is_believed_only_with_a_zone_and_not_from_the_future() -> None:
    host = NOW
    assert rules.believed_time(None, host) == (host, False)
    assert rules.believed_time(dt.datetime(2026, 11, 26, 13, 59), host) == (host, False)
    earlier = host - dt.timedelta(minutes=2)
    assert rules.believed_time(earlier, host) == (earlier, False)
    slightly_ahead = host + dt.timedelta(minutes=4)
    assert rules.believed_time(slightly_ahead, host) == (slightly_ahead, False)
    assert rules.believed_time(dt.datetime(2099, 1, 1, tzinfo=dt.UTC), host) == (host, True)


@pytest.mark.parametrize(("key", "shown"), [("spo2", "%"), ("perfusion_index", "%"), ("mean_arterial", "mmHg"),
                                             ("pulse", "/min"), ("bmi", "kg/m²")])
def test_a_row_without_a_reading_yet_shows_its_devices_unit(key: str, shown: str) -> None:
    assert rules.unit_text(rules.ROW_BY_KEY[key].unit) == shown
