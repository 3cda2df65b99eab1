"""A checker for the IHE PCD-01 rules hl7apy does not know.

hl7apy STRICT validation covers structure, cardinality and datatype formats;
it accepts an OBX-2 of ``XX``, a missing MSH-21 or two OBX rows with the same
OBX-4. Those are exactly the mistakes that make a Device Observation Consumer
file a value under the wrong parameter, so we check them ourselves, on every
ORU we build (in the tests) and optionally on what we receive.
"""

from __future__ import annotations

import re

from hl7.er7 import Message
from hl7.er7 import Segment
from hl7.er7 import parse_message

__all__ = ["PCD01_OID", "check_pcd01"]

PCD01_OID = "1.3.6.1.4.1.19376.1.6.1.1.1"

_DTM_WITH_OFFSET = re.compile(r"\d{14}(\.\d{1,4})?[+-]\d{4}")
_CONTAINMENT = re.compile(r"\d+\.\d+\.\d+\.\d+")
_VALUE_TYPES = frozenset({"NM", "SN", "ST", "CWE"})
_RESULT_STATUS = frozenset({"R", "F", "X"})
_OBSERVATION_METHODS = frozenset({"AMEAS", "MMEAS", "ASET", "MSET", "ACALC", "MCALC", "UNSPEC"})


def _check_msh(msh: Segment) -> list[str]:
    problems = []
    oids = [msh.value(21, 3, repetition=r) for r in range(1, msh.repetition_count(21) + 1)]
    if PCD01_OID not in oids:
        problems.append(f"MSH-21 must name the PCD-01 profile by OID {PCD01_OID} in EI-3")
    msh9 = tuple(msh.value(9, c) for c in (1, 2, 3))
    if msh9 != ("ORU", "R01", "ORU_R01"):
        problems.append(f"MSH-9 must be ORU^R01^ORU_R01, got {msh.raw(9)!r}")
    if not _DTM_WITH_OFFSET.fullmatch(msh.value(7)):
        problems.append(f"MSH-7 must be YYYYMMDDHHMMSS[.S][+/-ZZZZ] with offset, got {msh.value(7)!r}")
    if not msh.value(10):
        problems.append("MSH-10 message control id is required")
    if msh.value(11) not in ("P", "D"):
        problems.append(f"MSH-11 must be P or D, got {msh.value(11)!r}")
    if msh.value(12) != "2.6":
        problems.append(f"MSH-12 must be 2.6, got {msh.value(12)!r}")
    if (msh.value(15), msh.value(16)) != ("AL", "NE"):
        problems.append(f"MSH-15/16 must be AL/NE, got {msh.value(15)!r}/{msh.value(16)!r}")
    return problems


def _check_time(label: str, value: str) -> list[str]:
    if value and not _DTM_WITH_OFFSET.fullmatch(value):
        return [f"{label} must carry seconds and a UTC offset, got {value!r}"]
    return []


def _check_obr(obr: Segment, label: str) -> list[str]:
    problems = []
    if not obr.value(1):
        problems.append(f"{label}: OBR-1 set id is required")
    if not obr.value(3):
        problems.append(f"{label}: OBR-3 filler order number is required")
    if not obr.value(4):
        problems.append(f"{label}: OBR-4 universal service identifier is required")
    problems += _check_time(f"{label}: OBR-7", obr.value(7))
    return problems


def _mdc_codes(obx: Segment) -> list[str]:
    """MDC codes in OBX-3, primary (components 1-3) or alternate (4-6) triplet."""
    return [obx.value(3, first) for first in (1, 4) if obx.value(3, first + 2) == "MDC"]


def _check_obx(obx: Segment, label: str) -> list[str]:
    problems = []
    status = obx.value(11)
    value_type = obx.value(2)
    if not status:
        problems.append(f"{label}: OBX-11 result status is required")
    elif status not in _RESULT_STATUS:
        problems.append(f"{label}: OBX-11 {status!r} is not R, F or X")
    if status != "X" and value_type not in _VALUE_TYPES:
        problems.append(f"{label}: OBX-2 value type {value_type!r} is not allowed when OBX-11 is not X")
    codes = _mdc_codes(obx)
    if not codes:
        problems.append(f"{label}: OBX-3 must carry an MDC code (code^REFID^MDC)")
    elif not all(code.isdigit() for code in codes):
        problems.append(f"{label}: OBX-3 MDC code must be numeric (partition * 65536 + term)")
    if not _CONTAINMENT.fullmatch(obx.value(4)):
        problems.append(f"{label}: OBX-4 must be <MDS>.<VMD>.<CHAN>.<METRIC>, got {obx.value(4)!r}")
    if value_type == "NM":
        if not obx.value(5):
            problems.append(f"{label}: OBX-5 is empty for a numeric result")
        if not obx.value(6):
            problems.append(f"{label}: OBX-6 units are required for a numeric result")
    method = obx.value(17)
    if method and method not in _OBSERVATION_METHODS:
        problems.append(f"{label}: OBX-17 {method!r} is not one of {sorted(_OBSERVATION_METHODS)}")
    problems += _check_time(f"{label}: OBX-14", obx.value(14))
    return problems


def check_pcd01(message: Message | bytes) -> list[str]:
    """List every PCD-01 rule (IHE PCD TF-2 App. B, as summarised in our HL7 reference) the message breaks.

    The LOINC-first variant for records systems passes when MDC sits in the
    OBX-3 alternate triplet. An empty list means conformant as far as these
    rules go; it is not a full conformance test.
    """
    parsed = parse_message(message) if isinstance(message, bytes) else message
    problems = _check_msh(parsed.msh)
    obr_count = 0
    positions: set[str] = set()
    obx_count = 0
    for segment in parsed.segments[1:]:
        if segment.name == "OBR":
            obr_count += 1
            positions = set()
            problems += _check_obr(segment, f"OBR {obr_count}")
        elif segment.name == "OBX":
            obx_count += 1
            label = f"OBX {obx_count}"
            if obr_count == 0:
                problems.append(f"{label} comes before any OBR")
            if segment.value(1) != str(obx_count):
                problems.append(f"{label}: OBX-1 must number OBX rows 1, 2, … got {segment.value(1)!r}")
            position = segment.value(4)
            if position in positions:
                problems.append(f"{label}: OBX-4 {position!r} repeats under OBR {obr_count}")
            positions.add(position)
            problems += _check_obx(segment, label)
    if obr_count == 0:
        problems.append("no OBR segment")
    return problems
