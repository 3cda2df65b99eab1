"""Build and serialise an IHE PCD-01 ORU^R01 with 14 OBX rows: our builder against hl7apy.

Run: ``.venv/bin/python bench/bench_hl7_build.py``. One core, one process. The
target is >= 2,000 messages/s; the baseline builds the same message through
hl7apy's object API and ``to_er7()`` in the same run (fewer iterations: it is
slow). The baseline is generous to hl7apy: TOLERANT validation (its fastest
mode) and plain-string assignment, which does not even escape CR/LF.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from decimal import Decimal

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message as Hl7apyMessage

from hl7.builders import build_oru_vitals
from hl7.er7 import parse_message
from hl7.model import Channel
from hl7.model import Destination
from hl7.model import Device
from hl7.model import Method
from hl7.model import PatientInfo
from hl7.model import Sender
from hl7.model import VisitInfo
from hl7.model import VitalSign
from hl7.model import VitalsReport

NOW = dt.datetime(2026, 11, 26, 9, 30, 12, tzinfo=dt.UTC)
SENDER = Sender("KIOSK_VITALS", "FAMCLINIC", "0012A3FFFE4B5C6D", "EUI-64")
DESTINATION = Destination("EHR", "FAMCLINIC")
STATION = Device(69965, "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", eui64="0012A3FFFE4B5C6D")
SPO2 = Channel(69642, "MDC_DEV_ANALY_SAT_O2_VMD", 69643, "MDC_DEV_ANALY_SAT_O2_CHAN")
NIBP = Channel(70686, "MDC_DEV_PRESS_BLD_NONINV_VMD", 70687, "MDC_DEV_PRESS_BLD_NONINV_CHAN")
TEMP = Channel(69902, "MDC_DEV_METER_TEMP_VMD", 69903, "MDC_DEV_METER_TEMP_CHAN")

# (code, refid, unit code, unit refid, ucum, loinc, value, method, channel)
METRICS = [
    (150456, "MDC_PULS_OXIM_SAT_O2", 262688, "MDC_DIM_PERCENT", "%", "59408-5", "97", Method.DEVICE, SPO2),
    (149530, "MDC_PULS_OXIM_PULS_RATE", 264864, "MDC_DIM_BEAT_PER_MIN", "/min", "8867-4", "72", Method.DEVICE,
     SPO2),
    (150021, "MDC_PRESS_BLD_NONINV_SYS", 266016, "MDC_DIM_MMHG", "mm[Hg]", "8480-6", "128", Method.MANUAL, NIBP),
    (150022, "MDC_PRESS_BLD_NONINV_DIA", 266016, "MDC_DIM_MMHG", "mm[Hg]", "8462-4", "82", Method.MANUAL, NIBP),
    (150023, "MDC_PRESS_BLD_NONINV_MEAN", 266016, "MDC_DIM_MMHG", "mm[Hg]", "8478-0", "97", Method.MANUAL, NIBP),
    (149546, "MDC_PULS_RATE_NON_INV", 264864, "MDC_DIM_BEAT_PER_MIN", "/min", "8867-4", "74", Method.MANUAL, NIBP),
    (188424, "MDC_TEMP_ORAL", 268192, "MDC_DIM_DEGC", "Cel", "8310-5", "36.80", Method.MANUAL, TEMP),
]

REPORT = VitalsReport(
    PatientInfo("004711", "FAMCLINIC", "Müller", "Zoë", birth_date=dt.date(1980, 2, 14), sex="F"),
    VisitInfo("V0008812", "EXAM2"),
    STATION,
    "KV-0001",
    tuple(
        VitalSign(code, refid, unit, unit_refid, ucum, loinc, "", Decimal(value), NOW, method, None, channel)
        for code, refid, unit, unit_refid, ucum, loinc, value, method, channel in METRICS
    ),
)


def ours() -> bytes:
    return build_oru_vitals(SENDER, DESTINATION, REPORT, control_id="KV20261126093012-0001", now=NOW)


def hl7apy_baseline() -> bytes:
    """The same message through hl7apy's object API (no device grouping logic: rows are given)."""
    m = Hl7apyMessage("ORU_R01", version="2.6", validation_level=VALIDATION_LEVEL.TOLERANT)
    m.msh.msh_3 = "KIOSK_VITALS^0012A3FFFE4B5C6D^EUI-64"
    m.msh.msh_4 = "FAMCLINIC"
    m.msh.msh_5 = "EHR"
    m.msh.msh_6 = "FAMCLINIC"
    m.msh.msh_7 = "20261126093012+0000"
    m.msh.msh_9 = "ORU^R01^ORU_R01"
    m.msh.msh_10 = "KV20261126093012-0001"
    m.msh.msh_11 = "P"
    m.msh.msh_15 = "AL"
    m.msh.msh_16 = "NE"
    m.msh.msh_18 = "UNICODE UTF-8"
    m.msh.msh_21 = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
    result = m.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    patient.pid.pid_3 = "004711^^^FAMCLINIC^MR"
    patient.pid.pid_5 = "Müller^Zoë^^^^^L"
    patient.pid.pid_7 = "19800214"
    patient.pid.pid_8 = "F"
    visit = patient.add_group("ORU_R01_VISIT")
    visit.pv1.pv1_2 = "O"
    visit.pv1.pv1_3 = "EXAM2^^^FAMCLINIC"
    visit.pv1.pv1_19 = "V0008812^^^FAMCLINIC^VN"
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    order.obr.obr_1 = "1"
    order.obr.obr_2 = "KV-0001^KIOSK_VITALS"
    order.obr.obr_3 = "KV-0001^KIOSK_VITALS^0012A3FFFE4B5C6D^EUI-64"
    order.obr.obr_4 = "182777000^monitoring of patient^SCT"
    order.obr.obr_7 = "20261126093012+0000"
    rows: list[dict[str, str]] = [{"3": "69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC", "4": "1.0.0.0",
                                   "18": "0012A3FFFE4B5C6D^^0012A3FFFE4B5C6D^EUI-64"}]
    vmd = 0
    last_channel = None
    metric = 0
    for code, refid, unit, unit_refid, ucum, _loinc, value, method, channel in METRICS:
        if channel is not last_channel:
            vmd += 1
            metric = 0
            last_channel = channel
            rows.append({"3": f"{channel.vmd_code}^{channel.vmd_refid}^MDC", "4": f"1.{vmd}.0.0"})
            rows.append({"3": f"{channel.chan_code}^{channel.chan_refid}^MDC", "4": f"1.{vmd}.1.0"})
        metric += 1
        rows.append({"2": "NM", "3": f"{code}^{refid}^MDC", "4": f"1.{vmd}.1.{metric}", "5": value,
                     "6": f"{unit}^{unit_refid}^MDC^{ucum}^{ucum}^UCUM", "11": "F", "14": "20261126093012+0000",
                     "17": f"{method.value}^measurement^MDC"})
    for number, row in enumerate(rows, start=1):
        obx = order.add_group("ORU_R01_OBSERVATION").obx
        obx.obx_1 = str(number)
        obx.obx_11 = row.get("11", "X")
        for field, text in row.items():
            if field != "11":
                setattr(obx, f"obx_{field}", text)
    return str(m.to_er7()).encode("utf-8")


def rate(build: Callable[[], bytes], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        build()
    return count / (time.perf_counter() - start)


def main() -> None:
    for name, build in (("ours", ours), ("hl7apy", hl7apy_baseline)):
        obx = len(parse_message(build().replace(b"\n", b"\r")).all("OBX"))
        assert obx == 14, f"{name} built {obx} OBX rows"
    rate(ours, 200)
    ours_rate = rate(ours, 20_000)
    baseline_rate = rate(hl7apy_baseline, 60)
    print("PCD-01 ORU^R01, 14 OBX, build + serialise, one core")
    print(f"  ours (hl7.builders):         {ours_rate:10,.0f} msg/s  {1000 / ours_rate:8.3f} ms/msg")
    print(f"  baseline (hl7apy to_er7):    {baseline_rate:10,.0f} msg/s  {1000 / baseline_rate:8.3f} ms/msg")
    print(f"  speed-up: {ours_rate / baseline_rate:,.0f}x   target >= 2,000 msg/s: "
          f"{'met' if ours_rate >= 2000 else 'NOT met'}")


if __name__ == "__main__":
    main()
