"""GE Datex-Ohmeda S/5 computer interface ("AS3"), physiological database records.

The host asks once for displayed values with a transmission interval; the
monitor answers with one record and then pushes one every interval until told
to stop (interval 0) or until the cable goes. :class:`DatexDecoder` turns those
records into measurements and, as a :class:`~devices.protocols.base.Conversation`,
writes the request at connect time and again when the monitor has gone quiet
(an S/5 that was power-cycled forgets the request).

Wire (19200 8E1, RTS/CTS)::

    7E  stuffed(record + checksum)  7E

Inside a frame ``7E`` is sent as ``7D 5E`` and ``7D`` as ``7D 5D`` (escape
``7D`` + byte XOR 0x20). The checksum is sum8 of the unstuffed record. Every
frame carries its own opening and closing flag, so this decoder treats each
``7E`` as "close what is open, open a new frame" and ignores empty frames:
hunting after garbage can then never lock onto a closing flag as an opening
one (``devices.md`` §6.1).

Record (all integers little-endian)::

    header, 40 bytes
      0  r_len        int16   whole record length, header included
      2  r_nbr        uint8
      3  dri_level    uint8
      4  plug_id      uint16
      6  r_time       uint32  UNIX seconds, monitor clock
     10  reserved     4 bytes
     14  r_maintype   int16   0 = DRI_MT_PHDB (physiological data)
     16  sr_desc[8]   (int16 offset, uint8 type); type 0xFF ends the list
    data area starts at 40; sr_desc offsets are relative to it

    physiological subrecord (type 1 displayed, 2/3 trend), 278 bytes
      0  time         uint32
      4  class data   270 bytes, the basic class for the first subrecord
    274  marker, reserved, cl_drilvl_subt (uint16)

    basic class, groups of (status uint32, label uint16, values int16...)
      0  ECG   hr st1 st2 st3 imp_rr           status bit 7 noise, bit 8 artifact
     72  NIBP  sys dia mean hr                 pressures in 0.01 mmHg, hr in 1/min
     86  T1    temp                            0.01 degC
    118  SpO2  spo2 pr ir_amp svo2             spo2 in 0.01 %, pr in 1/min
    group status bit 0 = module exists, bit 1 = measurement active
    NIBP label bit 5 = measuring (cuff cycle under way), bit 7 = calibrating,
    bit 8 = the shown result is older than 60 s (bits 3/4/6: auto, STAT, stasis)

    request: header with r_len 49, maintype 0, sr_desc[0] = (0, 0) and
    sr_desc[1] = (0, 0xFF), then phdb_rcrd_type uint8 (1 = displayed values),
    tx_interval int16 seconds (0 stops), phdb_class_bf uint32 (0 = basic only),
    reserved int16.

Values at or below -32001 are the monitor's "no value" codes, never numbers:
-32767 invalid, -32766 not updated, -32765 discontinuity, -32764 under range,
-32763 over range, -32762 not calibrated.

Sources: the S/5 Computer Interface Specification as implemented by
VSCaptureWave (``Class1.cs``, ``Class2.cs``) and ``devices.md`` §1.5. No vendor
sample record is public (the specification is not published); the tests use
records built from the layout above.

Assumptions to verify on a monitor:

* ``r_len`` counts the header (true for the request, 40 + 9 = 49).
* The first displayed-values subrecord holds the basic class (VSCaptureWave
  reads subrecord *n* as class *n*; ``cl_drilvl_subt`` is not decoded).
* Exists/active are bits 0/1 of every group's status and ECG artifact/noise are
  bits 8/7 (a public Rust port of the spec lists them); the SpO2 group has no
  artifact bit, so the S/5 signals poor SpO2 only through its "no value" codes.
* An existing but inactive group (probe unplugged, sensor off) is reported as
  ``sensor_off``; a group whose module is absent produces no events at all.
* The NIBP group's state is in its label word, not its status (the same Rust
  port lists the label bits above). While a measurement is under way the NIBP
  values are reported ``in_progress`` without a number, so the station shows
  "Measuring…" instead of the previous patient's or the previous cycle's
  result; calibrating voids them; a result older than 60 s is reported
  ``old_result`` without a number. The monitor repeats its last NIBP result in
  every record with the record's own time, so the decoder reports a result
  once, when it first appears (a cuff cycle ended, or the values changed), and
  drops its repeats: a result measured before "Take vitals" is never reported
  again as if new. Right after connecting, a result under 60 s old is reported
  once, since the decoder cannot know when it was taken.
* The checksum byte is stuffed like any other byte when it equals ``7E``/``7D``.
* ``dri_level`` 0 in the request is accepted by all S/5 software levels.
* ``r_time`` counts the monitor's own wall clock, with no zone: VSCaptureWave
  prints it as is and leaves its conversion to local time commented out. So
  ``device_time`` is naive, and the station dates a reading by when it arrived
  (:func:`server.domain.vitals.believed_time`); read as UTC, a monitor set to a
  clinic's local time would date every reading hours early, before "Take vitals",
  and none would ever be offered.
* ECG heart rate is decoded for the artifact state only: the metric table has
  no ECG heart-rate key, so pulse comes from the NIBP and SpO2 groups.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass
from decimal import Decimal

from devices.protocols.base import DeviceState
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.protocols.framing import ARTIFACT
from devices.protocols.framing import IN_PROGRESS
from devices.protocols.framing import NO_DATA
from devices.protocols.framing import SENSOR_OFF
from devices.protocols.framing import FrameBuffer

FLAG = 0x7E
ESCAPE = 0x7D
ESCAPE_XOR = 0x20
_FLAG_BYTE = b"\x7e"
_ESCAPE_BYTE = b"\x7d"

HEADER = struct.Struct("<hBBHI4xh")
SR_DESC = struct.Struct("<hB")
HEADER_SIZE = 40
SR_DESC_COUNT = 8
SR_DESC_OFFSET = 16
PHDB_REQUEST = struct.Struct("<BhIh")
SUBRECORD_SIZE = 278
CLASS_OFFSET = 4
CLASS_SIZE = 270
MAX_RECORD = 1490
"""Largest record the interface sends (header + 1450 data bytes)."""

MAX_FRAME = 2 * (MAX_RECORD + 1) + 2
"""Wire bytes one frame may take when every byte is stuffed; the buffer bound."""

DRI_MT_PHDB = 0
DRI_PH_XMIT_REQ = 0
DRI_PH_DISPL = 1
DRI_PH_TRENDS = (2, 3)
DRI_EOL_SUBR_LIST = 0xFF
DRI_LEVEL = 0

DATA_INVALID_LIMIT = -32001
SPECIAL_VALUES: dict[int, str] = {
    -32767: "invalid",
    -32766: "not_updated",
    -32765: "discontinuity",
    -32764: "under_range",
    -32763: "over_range",
    -32762: "not_calibrated",
}

STATUS_EXISTS = 1 << 0
STATUS_ACTIVE = 1 << 1
ECG_NOISE = 1 << 7
ECG_ARTIFACT = 1 << 8

LABEL_OFFSET = 4
"""Offset of a group's label word, after its status dword."""

NIBP_STATES: tuple[tuple[int, str], ...] = (
    (1 << 5, IN_PROGRESS),
    (1 << 7, "calibrating"),
    (1 << 8, "old_result"),
)
"""NIBP label bits that say its values are not a current result, and the flag each becomes."""

ECG_GROUP = 0
NIBP_GROUP = 72
NIBP_METRICS = frozenset({"systolic", "diastolic", "mean_arterial", "pulse_nibp"})
T1_GROUP = 86
SPO2_GROUP = 118
GROUP_VALUES = 6
"""Offset of the first value in a group, after status (4) and label (2)."""

DEFAULT_INTERVAL = 5
"""Seconds between pushed records; the interface's documented minimum for displayed values."""


@dataclass(frozen=True, slots=True)
class Field:
    """One int16 value of the basic class: where it is, what it means, its resolution."""

    metric: str
    group: int
    offset: int
    exponent: int
    unit: str


FIELDS: tuple[Field, ...] = (
    Field("systolic", NIBP_GROUP, GROUP_VALUES + 0, -2, "mm[Hg]"),
    Field("diastolic", NIBP_GROUP, GROUP_VALUES + 2, -2, "mm[Hg]"),
    Field("mean_arterial", NIBP_GROUP, GROUP_VALUES + 4, -2, "mm[Hg]"),
    Field("pulse_nibp", NIBP_GROUP, GROUP_VALUES + 6, 0, "/min"),
    Field("temperature", T1_GROUP, GROUP_VALUES + 0, -2, "Cel"),
    Field("spo2", SPO2_GROUP, GROUP_VALUES + 0, -2, "%"),
    Field("pulse_oximeter", SPO2_GROUP, GROUP_VALUES + 2, 0, "/min"),
)
"""The basic-class values this decoder reports, in record order; a table so a layout fix is one line."""


@dataclass(frozen=True, slots=True)
class PhdbRequest:
    """A host's physiological-data transmission request."""

    record_type: int
    interval: int
    class_bits: int


def stuff(payload: bytes) -> bytes:
    """Escape ``7D`` then ``7E`` (the order matters: escaping ``7E`` first would double-escape)."""
    return payload.replace(b"\x7d", b"\x7d\x5d").replace(b"\x7e", b"\x7d\x5e")


def unstuff(raw: bytes) -> bytes | None:
    """Undo :func:`stuff`; ``None`` when an escape has no byte to act on."""
    if _ESCAPE_BYTE not in raw:
        return raw
    parts = raw.split(_ESCAPE_BYTE)
    out = bytearray(parts[0])
    for part in parts[1:]:
        if not part:
            return None
        out.append(part[0] ^ ESCAPE_XOR)
        out += part[1:]
    return bytes(out)


def encode_frame(record: bytes) -> bytes:
    """Frame ``record`` for the wire: flag, stuffed record and sum8, flag."""
    return _FLAG_BYTE + stuff(record + bytes((sum(record) & 0xFF,))) + _FLAG_BYTE


def build_header(length: int, time: int, subrecords: list[tuple[int, int]]) -> bytes:
    """A 40-byte record header for a PHDB record with the given (offset, type) subrecords."""
    descs = [*subrecords, (0, DRI_EOL_SUBR_LIST)]
    descs += [(0, 0)] * (SR_DESC_COUNT - len(descs))
    return HEADER.pack(length, 0, DRI_LEVEL, 0, time, DRI_MT_PHDB) + b"".join(
        SR_DESC.pack(offset, kind) for offset, kind in descs
    )


def build_request(interval: int, record_type: int = DRI_PH_DISPL) -> bytes:
    """The framed request for ``record_type`` records every ``interval`` seconds (0 stops them)."""
    body = PHDB_REQUEST.pack(record_type, interval, 0, 0)
    header = build_header(HEADER_SIZE + len(body), 0, [(0, DRI_PH_XMIT_REQ)])
    return encode_frame(header + body)


def subrecords(record: bytes) -> list[tuple[int, int]] | str:
    """The (offset, type) list of a checksum-valid record, or the reason its header is unusable."""
    if len(record) < HEADER_SIZE:
        return "short record"
    r_len, _, _, _, _, maintype = HEADER.unpack_from(record)
    if r_len != len(record):
        return "length mismatch"
    if maintype != DRI_MT_PHDB:
        return []
    found: list[tuple[int, int]] = []
    for index in range(SR_DESC_COUNT):
        offset, kind = SR_DESC.unpack_from(record, SR_DESC_OFFSET + index * SR_DESC.size)
        if kind == DRI_EOL_SUBR_LIST:
            return found
        if offset < 0 or HEADER_SIZE + offset > len(record):
            return "subrecord outside record"
        found.append((offset, kind))
    return found


def parse_request(record: bytes) -> PhdbRequest | None:
    """The transmission request in ``record``, if it is one (the simulator's side of the dialogue)."""
    descs = subrecords(record)
    if isinstance(descs, str) or not descs or descs[0][1] != DRI_PH_XMIT_REQ:
        return None
    start = HEADER_SIZE + descs[0][0]
    if start + PHDB_REQUEST.size > len(record):
        return None
    record_type, interval, class_bits, _ = PHDB_REQUEST.unpack_from(record, start)
    return PhdbRequest(record_type, interval, class_bits)


class DatexFramer:
    """Splits the byte stream into checksum-valid records; the buffer holds at most ``max_frame`` bytes.

    Raw (still stuffed) bytes are collected with ``bytes.find`` between flags
    and unstuffed once per frame, which keeps decoding O(bytes) with no
    per-byte Python loop.
    """

    __slots__ = ("_frame", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._frame = FrameBuffer(max_frame, "oversize frame")

    @property
    def buffered(self) -> int:
        """Bytes held for the frame in progress."""
        return len(self._frame)

    def feed(self, data: bytes) -> list[bytes | FrameRejected]:
        """Return the records (checksum removed) and rejections completed by ``data``."""
        out: list[bytes | FrameRejected] = []
        frame = self._frame
        start = 0
        while True:
            end = data.find(_FLAG_BYTE, start)
            frame.take(data[start:] if end < 0 else data[start:end], out)
            if end < 0:
                return out
            raw = frame.close(out)
            if raw is not None:
                _check(raw, out)
            start = end + 1


def _check(raw: bytes, out: list[bytes | FrameRejected]) -> None:
    """Unstuff one frame and append its record, or why it was rejected, to ``out``."""
    frame = unstuff(raw)
    if frame is None:
        out.append(FrameRejected("bad escape", len(raw)))
    elif len(frame) < 2:
        out.append(FrameRejected("short frame", len(raw)))
    elif sum(frame[:-1]) & 0xFF != frame[-1]:
        out.append(FrameRejected("checksum", len(raw)))
    else:
        out.append(frame[:-1])


def _value(raw: int, field: Field, flags: frozenset[str], device_time: dt.datetime | None) -> Measurement:
    if raw <= DATA_INVALID_LIMIT:
        code = SPECIAL_VALUES.get(raw, "invalid")
        return Measurement(field.metric, None, field.unit, flags | {NO_DATA, code}, device_time)
    if flags:
        return Measurement(field.metric, None, field.unit, flags | {NO_DATA}, device_time)
    return Measurement(field.metric, Decimal(raw).scaleb(field.exponent), field.unit, flags, device_time)


def decode_basic(data: bytes, device_time: dt.datetime | None) -> list[Event]:
    """Events of one basic-class block (270 bytes) in record order."""
    out: list[Event] = []
    ecg_status = struct.unpack_from("<I", data, ECG_GROUP)[0]
    if ecg_status & STATUS_EXISTS and ecg_status & (ECG_ARTIFACT | ECG_NOISE):
        out.append(DeviceState(frozenset({ARTIFACT}), "ECG artifact or noise", device_time))
    nibp_label = struct.unpack_from("<H", data, NIBP_GROUP + LABEL_OFFSET)[0]
    nibp_flags = frozenset(flag for bit, flag in NIBP_STATES if nibp_label & bit)
    for field in FIELDS:
        status = struct.unpack_from("<I", data, field.group)[0]
        if not status & STATUS_EXISTS:
            continue
        flags = frozenset() if status & STATUS_ACTIVE else frozenset({SENSOR_OFF})
        if field.group == NIBP_GROUP:
            flags |= nibp_flags
        raw = struct.unpack_from("<h", data, field.group + field.offset)[0]
        out.append(_value(raw, field, flags, device_time))
    return out


class DatexDecoder:
    """Sans-I/O decoder and conversation for the S/5 computer interface.

    :param interval: seconds between pushed records, sent in the request.
    :param silence: seconds without a good record after which :meth:`poll`
        repeats the request; three intervals, so one lost record does not
        trigger it but a monitor restart is recovered quickly.
    """

    def __init__(self, interval: int = DEFAULT_INTERVAL, silence: float | None = None) -> None:
        self._framer = DatexFramer()
        self.max_frame = self._framer.max_frame
        self.frames = 0
        self.interval = interval
        self.silence = 3.0 * interval if silence is None else silence
        self._heard = False
        self._last_heard: float | None = None
        self._nibp_result: tuple[Decimal | None, ...] | None = None
        self._nibp_cycled = False

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data`` and return the events it completed, in stream order."""
        out: list[Event] = []
        for item in self._framer.feed(data):
            if isinstance(item, FrameRejected):
                out.append(item)
            else:
                self.frames += 1
                self._record(item, out)
        return out

    @property
    def buffered(self) -> int:
        """Bytes held for the frame in progress (never more than ``max_frame``)."""
        return self._framer.buffered

    def on_connect(self) -> bytes:
        """The displayed-values request; the monitor pushes nothing until it receives one."""
        return build_request(self.interval)

    def poll(self, now: float) -> bytes:
        """Repeat the request when no good record arrived for ``silence`` seconds."""
        if self._heard or self._last_heard is None:
            self._heard = False
            self._last_heard = now
            return b""
        if now - self._last_heard >= self.silence:
            self._last_heard = now
            return self.on_connect()
        return b""

    def _record(self, record: bytes, out: list[Event]) -> None:
        descs = subrecords(record)
        if isinstance(descs, str):
            out.append(FrameRejected(descs, len(record)))
            return
        self._heard = True
        r_time = HEADER.unpack_from(record)[4]
        device_time = dt.datetime.fromtimestamp(r_time, dt.UTC).replace(tzinfo=None) if r_time else None
        for offset, kind in descs:
            if kind != DRI_PH_DISPL and kind not in DRI_PH_TRENDS:
                continue
            start = HEADER_SIZE + offset + CLASS_OFFSET
            if start + CLASS_SIZE > len(record):
                out.append(FrameRejected("subrecord outside record", len(record)))
                return
            out.extend(self._new_nibp_only(decode_basic(record[start : start + CLASS_SIZE], device_time)))
            return

    def _new_nibp_only(self, events: list[Event]) -> list[Event]:
        """Drop the repeats of an NIBP result already reported (see the module docstring).

        A result counts as new after a cuff cycle (an ``in_progress`` record) or
        when its values differ from the last one reported.
        """
        nibp = [e for e in events if isinstance(e, Measurement) and e.metric in NIBP_METRICS]
        if any(IN_PROGRESS in e.flags for e in nibp):
            self._nibp_cycled = True
            return events
        result = tuple(e.value for e in nibp)
        if not nibp or all(value is None for value in result):
            return events
        if result == self._nibp_result and not self._nibp_cycled:
            return [e for e in events if not (isinstance(e, Measurement) and e.metric in NIBP_METRICS)]
        self._nibp_result, self._nibp_cycled = result, False
        return events
