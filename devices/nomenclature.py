"""Vital-sign metrics with their MDC, UCUM and LOINC codes and plausible ranges.

This is the single code table of the project: the device layer normalises
readings with it and the server hands its entries to the HL7 builders, so a code
is written down exactly once. MDC codes are ``partition * 65536 + term``
(ISO/IEEE 11073-10101; partition 2 = measurements, 4 = dimensions); the
``(partition, term)`` pairs are kept beside each code so a test can recompute it.

Sources of the terms: ``signove/antidote`` ``src/dim/nomenclature.h`` and the
IEEE 11073-10101 tables as listed in ``devices.md`` §5 (temperatures by site:
MDC_TEMP_RECT 57348, MDC_TEMP_AXILLA 57380 (IEEE 11073-10408), MDC_TEMP_TYMP
19320; MDC_PULS_OXIM_PERF_REL 19376, the term Philips also uses for its
NOM_PULS_OXIM_PERF_REL, ``xeonfusion/VSCaptureMP`` ``Class2.cs``). LOINC
61006-3 is "Perfusion index Tissue by Pulse oximetry"; every temperature site
shares the body-temperature LOINC 8310-5, as the vital-signs profile does.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit as MDC (code, REFID) and UCUM."""

    mdc_code: int
    mdc_refid: str
    ucum: str


@dataclass(frozen=True, slots=True)
class Metric:
    """One kind of vital sign.

    ``plausible`` is the range outside which a value is flagged ``implausible``
    for the assistant to look at; it is never used to drop a value.
    """

    key: str
    label: str
    mdc_code: int
    mdc_refid: str
    mdc_term: tuple[int, int]
    loinc: str
    loinc_name: str
    unit: Unit
    plausible: tuple[Decimal, Decimal]


PERCENT = Unit(262688, "MDC_DIM_PERCENT", "%")
BEAT_PER_MIN = Unit(264864, "MDC_DIM_BEAT_PER_MIN", "/min")
MMHG = Unit(266016, "MDC_DIM_MMHG", "mm[Hg]")
DEGC = Unit(268192, "MDC_DIM_DEGC", "Cel")
KG = Unit(263875, "MDC_DIM_KILO_G", "kg")
CM = Unit(263441, "MDC_DIM_CENTI_M", "cm")
RESP_PER_MIN = Unit(264928, "MDC_DIM_RESP_PER_MIN", "/min")
KG_PER_M2 = Unit(264096, "MDC_DIM_KG_PER_M_SQ", "kg/m2")

UNITS_MDC_TERMS: dict[str, tuple[int, int]] = {
    "MDC_DIM_PERCENT": (4, 544),
    "MDC_DIM_BEAT_PER_MIN": (4, 2720),
    "MDC_DIM_MMHG": (4, 3872),
    "MDC_DIM_DEGC": (4, 6048),
    "MDC_DIM_KILO_G": (4, 1731),
    "MDC_DIM_CENTI_M": (4, 1297),
    "MDC_DIM_RESP_PER_MIN": (4, 2784),
    "MDC_DIM_KG_PER_M_SQ": (4, 1952),
}


def _metric(key: str, label: str, code: int, refid: str, term: tuple[int, int], loinc: str,
            loinc_name: str, unit: Unit, low: str, high: str) -> Metric:
    return Metric(key, label, code, refid, term, loinc, loinc_name, unit, (Decimal(low), Decimal(high)))


METRICS: dict[str, Metric] = {
    m.key: m
    for m in (
        _metric("spo2", "SpO2", 150456, "MDC_PULS_OXIM_SAT_O2", (2, 19384), "59408-5",
                "Oxygen saturation in Arterial blood by Pulse oximetry", PERCENT, "50", "100"),
        _metric("pulse_oximeter", "Pulse", 149530, "MDC_PULS_OXIM_PULS_RATE", (2, 18458), "8867-4",
                "Heart rate", BEAT_PER_MIN, "25", "250"),
        _metric("pulse_nibp", "Pulse", 149546, "MDC_PULS_RATE_NON_INV", (2, 18474), "8867-4",
                "Heart rate", BEAT_PER_MIN, "25", "250"),
        _metric("systolic", "Systolic", 150021, "MDC_PRESS_BLD_NONINV_SYS", (2, 18949), "8480-6",
                "Systolic blood pressure", MMHG, "50", "260"),
        _metric("diastolic", "Diastolic", 150022, "MDC_PRESS_BLD_NONINV_DIA", (2, 18950), "8462-4",
                "Diastolic blood pressure", MMHG, "20", "160"),
        _metric("mean_arterial", "Mean arterial pressure", 150023, "MDC_PRESS_BLD_NONINV_MEAN",
                (2, 18951), "8478-0", "Mean blood pressure", MMHG, "30", "200"),
        _metric("temperature", "Temperature", 150364, "MDC_TEMP_BODY", (2, 19292), "8310-5",
                "Body temperature", DEGC, "32", "43"),
        _metric("temperature_oral", "Temperature", 188424, "MDC_TEMP_ORAL", (2, 57352), "8310-5",
                "Body temperature", DEGC, "32", "43"),
        _metric("temperature_rectal", "Temperature", 188420, "MDC_TEMP_RECT", (2, 57348), "8310-5",
                "Body temperature", DEGC, "32", "43"),
        _metric("temperature_axillary", "Temperature", 188452, "MDC_TEMP_AXILLA", (2, 57380), "8310-5",
                "Body temperature", DEGC, "32", "43"),
        _metric("temperature_tympanic", "Temperature", 150392, "MDC_TEMP_TYMP", (2, 19320), "8310-5",
                "Body temperature", DEGC, "32", "43"),
        _metric("perfusion_index", "Perfusion index", 150448, "MDC_PULS_OXIM_PERF_REL", (2, 19376), "61006-3",
                "Perfusion index Tissue by Pulse oximetry", PERCENT, "0.02", "20"),
        _metric("respiration_rate", "Respiration rate", 151562, "MDC_RESP_RATE", (2, 20490), "9279-1",
                "Respiratory rate", RESP_PER_MIN, "4", "60"),
        _metric("weight", "Weight", 188736, "MDC_MASS_BODY_ACTUAL", (2, 57664), "29463-7",
                "Body weight", KG, "0.5", "350"),
        _metric("height", "Height", 188740, "MDC_LEN_BODY_ACTUAL", (2, 57668), "8302-2",
                "Body height", CM, "30", "250"),
        _metric("bmi", "BMI", 188752, "MDC_RATIO_MASS_BODY_LEN_SQ", (2, 57680), "39156-5",
                "Body mass index (BMI) [Ratio]", KG_PER_M2, "8", "100"),
    )
}
