"""The vitals code table, recomputed, and what the builders emit from it.

Public code contains wrong MDC codes (266112 for degrees Celsius, 188740 as a
temperature, 150020 as systolic), so every code is recomputed here as
``partition * 65536 + term`` and checked against the unit it must be sent with.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from devices.nomenclature import METRICS
from devices.nomenclature import UNITS_MDC_TERMS
from devices.nomenclature import Metric
from hl7.builders import build_oru_vitals
from hl7.er7 import parse_message
from hl7.model import CodingProfile
from hl7.model import Destination
from hl7.model import Device
from hl7.model import Method
from hl7.model import PatientInfo
from hl7.model import Sender
from hl7.model import VisitInfo
from hl7.model import VitalSign
from hl7.model import VitalsReport
from hl7.profile import check_pcd01

NOW = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)

# devices.md §5 and hl7.md §1: (metric key) -> (MDC unit code, UCUM, LOINC)
EXPECTED = {
    "spo2": (262688, "%", "59408-5"),
    "pulse_oximeter": (264864, "/min", "8867-4"),
    "pulse_nibp": (264864, "/min", "8867-4"),
    "systolic": (266016, "mm[Hg]", "8480-6"),
    "diastolic": (266016, "mm[Hg]", "8462-4"),
    "mean_arterial": (266016, "mm[Hg]", "8478-0"),
    "temperature": (268192, "Cel", "8310-5"),
    "temperature_oral": (268192, "Cel", "8310-5"),
    "temperature_rectal": (268192, "Cel", "8310-5"),
    "temperature_axillary": (268192, "Cel", "8310-5"),
    "temperature_tympanic": (268192, "Cel", "8310-5"),
    "perfusion_index": (262688, "%", "61006-3"),
    "respiration_rate": (264928, "/min", "9279-1"),
    "weight": (263875, "kg", "29463-7"),
    "height": (263441, "cm", "8302-2"),
    "bmi": (264096, "kg/m2", "39156-5"),
}

# Device-row codes (hl7.md §1): object code, then +1 MDS, +2 VMD, +3 channel.
DEVICE_ROWS = {
    "MDC_DEV_ANALY_SAT_O2": ((1, 4104), 69642, 69643),
    "MDC_DEV_PRESS_BLD_NONINV": ((1, 5148), 70686, 70687),
    "MDC_DEV_METER_TEMP": ((1, 4364), 69902, 69903),
}


def mdc(partition: int, term: int) -> int:
    return partition * 65536 + term


def test_table_covers_every_expected_metric() -> None:
    assert set(METRICS) == set(EXPECTED)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_measurement_code_recomputes(key: str) -> None:
    metric = METRICS[key]
    partition, term = metric.mdc_term
    assert partition == 2, "measurements live in partition 2 (SCADA)"
    assert metric.mdc_code == mdc(partition, term)
    assert metric.mdc_refid.startswith("MDC_")


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_unit_code_recomputes_and_matches_the_metric(key: str) -> None:
    metric = METRICS[key]
    unit_code, ucum, loinc = EXPECTED[key]
    partition, term = UNITS_MDC_TERMS[metric.unit.mdc_refid]
    assert partition == 4, "units live in partition 4 (dimensions)"
    assert metric.unit.mdc_code == mdc(partition, term) == unit_code
    assert metric.unit.ucum == ucum
    assert metric.loinc == loinc


def test_known_wrong_codes_are_absent() -> None:
    codes = {m.mdc_code: m.key for m in METRICS.values()}
    assert 266112 not in {m.unit.mdc_code for m in METRICS.values()}
    assert codes[188740] == "height"
    assert 150020 not in codes
    assert METRICS["systolic"].mdc_code == 150021


@pytest.mark.parametrize("name", sorted(DEVICE_ROWS))
def test_device_row_codes_follow_the_plus_rule(name: str) -> None:
    (partition, term), vmd, chan = DEVICE_ROWS[name]
    assert (mdc(partition, term) + 2, mdc(partition, term) + 3) == (vmd, chan)


@pytest.mark.parametrize(("key", "partition", "term", "code"), [
    ("perfusion_index", 2, 19376, 150448),  # MDC_PULS_OXIM_PERF_REL
    ("temperature_rectal", 2, 57348, 188420),  # MDC_TEMP_RECT
    ("temperature_axillary", 2, 57380, 188452),  # MDC_TEMP_AXILLA
    ("temperature_tympanic", 2, 19320, 150392),  # MDC_TEMP_TYMP
])
def test_codes_added_for_device_fixes(key: str, partition: int, term: int, code: int) -> None:
    assert METRICS[key].mdc_term == (partition, term)
    assert METRICS[key].mdc_code == partition << 16 | term == code


def test_multi_parameter_mds_code() -> None:
    assert mdc(1, 4429) == 69965


def vital_for(metric: Metric) -> VitalSign:
    return VitalSign(
        metric.mdc_code, metric.mdc_refid, metric.unit.mdc_code, metric.unit.mdc_refid, metric.unit.ucum,
        metric.loinc, metric.loinc_name, Decimal("1.0"), NOW, Method.MANUAL,
    )


@pytest.mark.parametrize("coding", list(CodingProfile))
def test_builder_emits_each_table_entry_unchanged(coding: CodingProfile) -> None:
    report = VitalsReport(
        PatientInfo("1", "FAC", "Doe"), VisitInfo(),
        Device(69965, "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", eui64="0012A3FFFE4B5C6D"), "R1",
        tuple(vital_for(m) for m in METRICS.values()),
    )
    data = build_oru_vitals(Sender("APP", "FAC"), Destination("EHR", "FAC", coding), report,
                            control_id="C", now=NOW)
    assert check_pcd01(data) == []
    rows = [r for r in parse_message(data).all("OBX") if r.value(2) == "NM"]
    assert len(rows) == len(METRICS)
    mdc_at, unit_mdc_at, ucum_at = (1, 1, 4) if coding is CodingProfile.MDC else (4, 4, 1)
    for row, metric in zip(rows, METRICS.values(), strict=True):
        assert row.value(3, mdc_at) == str(metric.mdc_code)
        assert row.value(3, mdc_at + 1) == metric.mdc_refid
        assert row.value(6, unit_mdc_at) == str(metric.unit.mdc_code)
        assert row.value(6, unit_mdc_at + 1) == metric.unit.mdc_refid
        assert row.value(6, ucum_at) == metric.unit.ucum
        if coding is CodingProfile.LOINC:
            assert row.value(3, 1) == metric.loinc
            assert row.value(3, 2) == metric.loinc_name
