"""Simulated clinic scales: Tanita, Rice Lake and Health o meter, one weighing every 10 seconds.

Each weighing is a new patient (weight 50 to 110 kg, height 150 to 195 cm)
weighed to the scale's resolution, in the unit the scale is set to: Tanita and
Health o meter metric, Rice Lake pounds (``metric`` overrides). A Tanita adds
its stray byte after each line. Records follow the layouts of
:mod:`devices.protocols.scales`, which cite the manuals.

Scenarios every scale knows: ``normal``; ``artifact`` (two weighings in three
read slightly negative: the scale zeroed with someone leaning on it);
``sensor-off`` (empty platform, weight 0); ``garbage`` (noise before one record
in three, one record in four cut short); ``unplug`` (normal; the runner drops
the line). Scenarios reproducing documented device behaviour:

* Tanita ``pounds``: lb mode, weight ``Wp`` and height ``Hf`` in feet-inches.
* Tanita ``bd-815u``: the baby scale's line, weight in grams and no ``CS``.
* Rice Lake ``net``: a tare (the wheelchair) is taken: the manual's 20-character Net line.
* Rice Lake ``bmi-mode``: the five-line BMI report instead of the print line.
* Health o meter ``overload``: every other weighing is ``W999.99``.

The scales take no commands.
"""

from __future__ import annotations

import random
from decimal import Decimal

from devices.protocols import scales
from devices.simulators._common import Pacer
from devices.simulators._common import check_scenario
from devices.simulators._common import noise
from devices.simulators.base import SCENARIOS as COMMON_SCENARIOS

WEIGHINGS_PER_SECOND = 0.1
LB_PER_KG = Decimal("2.2046226218")
CM_PER_IN = Decimal("2.54")
TANITA_STRAY = b"\x00"
DEFAULT_METRIC: dict[str, bool] = {"tanita": True, "ricelake": False, "healthometer": True}

SCENARIOS: dict[str, tuple[str, ...]] = {
    "tanita": (*COMMON_SCENARIOS, "pounds", "bd-815u"),
    "ricelake": (*COMMON_SCENARIOS, "net", "bmi-mode"),
    "healthometer": (*COMMON_SCENARIOS, "overload"),
}
"""What ``frontdesk simulate KIND --scenario`` accepts, per scale."""


class ScaleSimulator:
    """One scale of ``kind`` (``tanita``, ``ricelake`` or ``healthometer``)."""

    def __init__(self, kind: str, scenario: str, seed: int, metric: bool | None = None) -> None:
        if kind not in DEFAULT_METRIC:
            raise ValueError(f"unknown scale {kind!r}")
        self._kind = kind
        self._scenario = check_scenario(scenario, SCENARIOS[kind])
        if metric is None:
            metric = DEFAULT_METRIC[kind] and scenario != "pounds"
        self._metric = metric
        self._rng = random.Random(seed)
        self._pacer = Pacer(WEIGHINGS_PER_SECOND, max_burst=3)
        self._count = 0

    def output(self, now: float) -> bytes:
        """The records due by ``now``."""
        return b"".join(self._weighing() for _ in range(self._pacer.due(now)))

    def receive(self, data: bytes) -> bytes:
        """Nothing: these scales only print."""
        return b""

    def _weighing(self) -> bytes:
        index = self._count
        self._count += 1
        kg = Decimal(str(round(self._rng.uniform(50, 110), 1)))
        cm = Decimal(str(round(self._rng.uniform(150, 195), 1)))
        if self._scenario == "sensor-off":
            kg, cm = Decimal("0.0"), Decimal("0.0")
        elif self._scenario == "artifact" and index % 3:
            kg, cm = Decimal("-0.4"), Decimal("0.0")
        record = self._encode(index, kg, cm)
        if self._scenario != "garbage":
            return record
        if index % 4 == 3:
            record = record[: len(record) // 2]
        if index % 3:
            return record
        return noise(self._rng) + record

    def _encode(self, index: int, kg: Decimal, cm: Decimal) -> bytes:
        weight = kg if self._metric else (kg * LB_PER_KG).quantize(Decimal("0.1"))
        inches = (cm / CM_PER_IN).quantize(Decimal("0.1"))
        if self._kind == "ricelake":
            return self._ricelake(weight, inches)
        if self._kind == "healthometer":
            if self._scenario == "overload" and index % 2:
                weight = Decimal("999.99")
            return scales.encode_healthometer(weight, (cm if self._metric else inches) or None, self._metric,
                                              patient_id="0000000000")
        if self._scenario == "bd-815u":
            grams = int(kg * 1000) // 20  # a baby: the BD-815U weighs up to 20 kg
            return scales.encode_tanita([("{0", "16"), ("~0", "1"), ("MO", '"BD-815"'), ("Wg", str(grams))],
                                        checksum=False) + TANITA_STRAY
        bmi = (kg / (cm / 100) ** 2).quantize(Decimal("0.1")) if kg > 0 else Decimal("0.0")
        height = ("Hm", f"{cm:.1f}") if self._metric else ("Hf", _feet_inches(inches))
        fields = [("{0", "16"), ("~0", "1"), ("~1", "1"), ("~2", "1"), ("MO", '"WB-3000"'), height,
                  ("Wk" if self._metric else "Wp", f"{weight:.1f}"), ("MI", f"{bmi:.1f}")]
        return scales.encode_tanita(fields) + TANITA_STRAY

    def _ricelake(self, weight: Decimal, inches: Decimal) -> bytes:
        unit = "kg" if self._metric else "lb"
        if self._scenario == "bmi-mode" and weight > 0:
            kg = weight if self._metric else weight / LB_PER_KG
            bmi = (kg / (inches * CM_PER_IN / 100) ** 2).quantize(Decimal("0.1"))
            height, height_unit = (f"{inches * CM_PER_IN:.1f}", "CM") if self._metric else (_feet_inches(inches), "FT")
            return scales.encode_ricelake_bmi(weight, Decimal("0.0"), unit.upper(), height, height_unit, bmi)
        return scales.encode_ricelake(weight, unit, "Net" if self._scenario == "net" else "Gross")


def _feet_inches(inches: Decimal) -> str:
    """``inches`` the way the scales print a height in lb mode: ``5-07.5``."""
    feet, rest = divmod(inches, scales.INCHES_PER_FOOT)
    return f"{int(feet)}-{rest:04.1f}"
