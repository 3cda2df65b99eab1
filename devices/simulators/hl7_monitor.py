"""A simulated monitor (or gateway) pushing IHE PCD-01 ORU^R01 messages over MLLP.

It sends one message every :data:`PERIOD` seconds and alternates between the
two shapes seen in the field: the full IHE layout (MDS/VMD/CHAN device rows,
containment OBX-4, MDC units) and a terse gateway style (no device rows,
OBX-4 ``1.3.1.<code>``, NIBP as ``MDC_PRESS_CUFF_*``, UCUM units, OBX-17
``^APERIODIC``), so every run exercises the decoder's tolerance. ACKs written by
the host are collected in :attr:`Hl7MonitorSimulator.acknowledged`.
"""

from __future__ import annotations

import datetime as dt
import random

from devices.protocols.hl7_monitor import MllpFramer
from devices.protocols.hl7_monitor import encode_block
from devices.protocols.hl7_monitor import parse_message
from devices.simulators._common import check_scenario
from devices.simulators._common import cuff_pressures
from devices.simulators._common import garbled

PERIOD = 5.0
CLOCK_START = dt.datetime(2026, 11, 26, 9, 0, 0, tzinfo=dt.UTC)
"""Monitor clock at simulator time 0; fixed so streams are reproducible."""

DEVICE_ID = "0012A3FFFE4B5C6D"


def _ts(when: dt.datetime) -> str:
    return when.strftime("%Y%m%d%H%M%S") + "+0000"


class Hl7MonitorSimulator:
    """One monitor reporting SpO2, pulse, NIBP and temperature.

    :param scenario: one of :data:`devices.simulators.base.SCENARIOS`.
    :param seed: seeds the measurement noise and the garbage, so a run replays.
    """

    def __init__(self, scenario: str = "normal", seed: int = 0) -> None:
        self.scenario = check_scenario(scenario)
        self._rng = random.Random(seed)
        self._framer = MllpFramer()
        self._next_due = 0.0
        self._sent = 0
        self.acknowledged: list[tuple[str, str]] = []

    def output(self, now: float) -> bytes:
        """The message due by ``now``, if any; after a stall, one message and a fresh schedule."""
        if now < self._next_due:
            return b""
        self._next_due = max(self._next_due + PERIOD, now)
        self._sent += 1
        block = encode_block(self.message(CLOCK_START + dt.timedelta(seconds=int(now))))
        if self.scenario != "garbage":
            return block
        return garbled(self._rng, self._sent, block, lambda: block[: len(block) // 2], 48)

    def receive(self, data: bytes) -> bytes:
        """Record the (MSA-1, MSA-2) of each ACK; a monitor does not answer an ACK."""
        for item in self._framer.feed(data):
            if not isinstance(item, bytes):
                continue
            message = parse_message(item)
            if isinstance(message, str):
                continue
            for fields in message.segments:
                if fields[0] == "MSA" and len(fields) > 2:
                    self.acknowledged.append((fields[1], fields[2]))
        return b""

    def message(self, when: dt.datetime) -> str:
        """One ORU^R01 for the current scenario, segments joined with CR."""
        rng = self._rng
        systolic, diastolic, mean = cuff_pressures(rng, 121, 78)
        pulse = round(rng.gauss(74, 2))
        spo2 = str(min(100, round(rng.gauss(97.5, 0.8))))
        temperature = f"{rng.gauss(36.8, 0.1):.1f}"
        full = self._sent % 2 == 1
        stamp = _ts(when)
        control = f"MON{self._sent:06d}"
        status = temperature_status = ""
        result = temperature_result = "R"
        spo2_value, pulse_value, temperature_value = spo2, str(pulse + rng.choice((-1, 0, 1))), temperature
        if self.scenario == "artifact":
            status = "QUES"
        elif self.scenario == "sensor-off":
            status = temperature_status = "NAV"
            result = temperature_result = "X"
            spo2_value = pulse_value = temperature_value = ""
        segments = [
            f"MSH|^~\\&|MONITOR^{DEVICE_ID}^EUI-64|WARD|FRONTDESK|CLINIC|{stamp}||ORU^R01^ORU_R01|{control}|P|2.6"
            f"|||AL|NE||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
            "PID|||004711^^^CLINIC^MR||Müller^Zoë^^^^^L",
            f"OBR|1|{control}^MONITOR|{DEVICE_ID}{stamp[:14]}^MONITOR^{DEVICE_ID}^EUI-64"
            f"|182777000^monitoring of patient^SCT|||{stamp}",
        ]
        rows: list[tuple[str, str, str, str, str, str]] = []
        if full:
            rows += [
                ("", "69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC", "1.0.0.0", "", "", "X"),
                ("", "69642^MDC_DEV_ANALY_SAT_O2_VMD^MDC", "1.1.0.0", "", "", "X"),
                ("", "69643^MDC_DEV_ANALY_SAT_O2_CHAN^MDC", "1.1.1.0", "", "", "X"),
            ]
        percent = "262688^MDC_DIM_PERCENT^MDC" if full else "%^%^UCUM"
        per_minute = "264864^MDC_DIM_BEAT_PER_MIN^MDC" if full else "/min^/min^UCUM"
        mmhg = "266016^MDC_DIM_MMHG^MDC" if full else "mm[Hg]^mm[Hg]^UCUM"
        celsius = "268192^MDC_DIM_DEGC^MDC" if full else "Cel^Cel^UCUM"
        position = "1.1.1.{n}" if full else "1.3.1.{code}"
        rows += [
            ("NM", "150456^MDC_PULS_OXIM_SAT_O2^MDC", position.format(n=1, code=150456), spo2_value, percent,
             result + "|" + status),
            ("NM", "149530^MDC_PULS_OXIM_PULS_RATE^MDC", position.format(n=2, code=149530), pulse_value,
             per_minute, result + "|" + status),
        ]
        pressure_codes = (
            ("150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "150022^MDC_PRESS_BLD_NONINV_DIA^MDC",
             "150023^MDC_PRESS_BLD_NONINV_MEAN^MDC")
            if full
            else ("150301^MDC_PRESS_CUFF_SYS^MDC", "150302^MDC_PRESS_CUFF_DIA^MDC",
                  "150303^MDC_PRESS_CUFF_MEAN^MDC")
        )
        for n, (code, pressure) in enumerate(zip(pressure_codes, (systolic, diastolic, mean), strict=True), 1):
            rows.append(("NM", code, f"1.2.1.{n}" if full else f"1.3.1.{code.split('^')[0]}", str(pressure), mmhg,
                         "R|"))
        rows.append(("NM", "150344^MDC_TEMP^MDC", "1.3.1.1" if full else "1.3.1.150344", temperature_value,
                     celsius, temperature_result + "|" + temperature_status))
        for index, (kind, code, level, value, unit, result_status) in enumerate(rows, 1):
            final, _, abnormal = result_status.partition("|")
            method = "AMEAS^auto-measurement^MDC" if full else "^APERIODIC"
            tail = f"|||{stamp}|||{method}" if kind else ""
            segments.append(f"OBX|{index}|{kind}|{code}|{level}|{value}|{unit}||{abnormal}|||{final}{tail}")
        return "\r".join(segments) + "\r"
