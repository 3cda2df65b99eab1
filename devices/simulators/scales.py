"""Simulated clinic scales: Tanita, Rice Lake and Health o meter, one weighing every 10 seconds.

Each weighing is a new patient (weight 50 to 110 kg, height 150 to 195 cm)
weighed to the scale's resolution, in the unit the scale is set to: Tanita and
Health o meter metric, Rice Lake pounds (``units`` overrides). A Tanita adds its
stray byte after each line.

Scenarios: ``normal``; ``artifact`` (two weighings in three read slightly
negative: the scale zeroed with someone leaning on it); ``sensor-off`` (empty
platform, weight 0); ``garbage`` (noise before one record in three, one record
in four cut short); ``unplug`` (normal; the runner drops the line). The scales
take no commands.
"""

from __future__ import annotations

import random
from decimal import Decimal

from devices.protocols import scales
from devices.simulators._common import Pacer
from devices.simulators._common import check_scenario
from devices.simulators._common import noise

WEIGHINGS_PER_SECOND = 0.1
LB_PER_KG = Decimal("2.2046226218")
CM_PER_IN = Decimal("2.54")
TANITA_STRAY = b"\x00"
DEFAULT_METRIC: dict[str, bool] = {"tanita": True, "ricelake": False, "healthometer": True}


class ScaleSimulator:
    """One scale of ``kind`` (``tanita``, ``ricelake`` or ``healthometer``)."""

    def __init__(self, kind: str, scenario: str, seed: int, metric: bool | None = None) -> None:
        if kind not in DEFAULT_METRIC:
            raise ValueError(f"unknown scale {kind!r}")
        self._kind = kind
        self._scenario = check_scenario(scenario)
        self._metric = DEFAULT_METRIC[kind] if metric is None else metric
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
        record = self._encode(kg, cm)
        if self._scenario != "garbage":
            return record
        if index % 4 == 3:
            record = record[: len(record) // 2]
        if index % 3:
            return record
        return noise(self._rng) + record

    def _encode(self, kg: Decimal, cm: Decimal) -> bytes:
        weight = kg if self._metric else (kg * LB_PER_KG).quantize(Decimal("0.1"))
        height = cm if self._metric else (cm / CM_PER_IN).quantize(Decimal("0.1"))
        if self._kind == "ricelake":
            return scales.encode_ricelake(weight, "kg" if self._metric else "lb", "Gross")
        if self._kind == "healthometer":
            return scales.encode_healthometer(weight, height or None, self._metric, patient_id="0000000000")
        bmi = (kg / (cm / 100) ** 2).quantize(Decimal("0.1")) if kg > 0 else Decimal("0.0")
        fields = [("{0", "16"), ("~0", "1"), ("~1", "1"), ("~2", "1"), ("MO", '"WB-3000"'),
                  ("Hm" if self._metric else "Hf", f"{height:.1f}"),
                  ("Wk" if self._metric else "Wp", f"{weight:.1f}"), ("MI", f"{bmi:.1f}")]
        return scales.encode_tanita(fields) + TANITA_STRAY
