"""Philips IntelliVue MP/MX/X2 data export over the MIB/RS232 port.

The monitor says nothing until associated, then expects to be polled and
drops the association when the host goes quiet. :class:`IntelliVueDecoder` is
therefore both a decoder and a :class:`~devices.protocols.base.Conversation`:
:meth:`~IntelliVueDecoder.on_connect` returns the association request,
:meth:`~IntelliVueDecoder.poll` returns, at monotonic time ``now``, whatever is
due (the answer to the monitor's MDS Create event, numeric polls, keep-alives,
a new association request after a refusal, abort or silence).

Protocol states (:attr:`IntelliVueDecoder.state`)::

    unassociated --on_connect/poll--> associating --AARE--> associated
    associated --MDS Create event (answered)--> polling
    any --refuse / abort / release / silence--> unassociated (retry after ASSOCIATION_RETRY)

Wire (115200 8N1, no handshake; ``devices.md`` §1.6)::

    C0  escaped(header user-data FCS)  C1
    header   protocol_id 0x11, msg_type 0x01, length uint16 BE (user data bytes)
    FCS      RFC 1662 FCS-16 over header + user data, ones' complement, LSB first

``C0``, ``C1`` and ``7D`` inside a frame are sent as ``7D`` + byte XOR 0x20;
``7D C1`` aborts a frame. All integers of the user data are big-endian.

User data (Data Export Interface Programming Guide, as implemented by
VSCaptureMP ``Class3.cs``)::

    session   0x0D association request, 0x0E accepted, 0x0C refused,
              0x09 release request, 0x0A released, 0x19 abort;
              0xE1 0x00 = data export: SPpdu(session_id, p_context_id)
    ROapdus   ro_type (1 invoke, 2 result, 3 error, 5 linked result), length
    ROIV/RORS invoke_id, command_type (1 confirmed event report, 3 get,
              7 confirmed action), length
    event     managed_object(class, context, handle), event_time u32,
              event_type (0x0D06 = MDS Create), length, info
    action    managed_object, [scope u32 in requests], action_type
              (0x0C16 = poll MDIB data), length, then
    poll req  poll_number, polled_obj_type(partition, code), attr_group
    poll res  poll_number, rel_time u32, abs_time (8 BCD bytes: century, year,
              month, day, hour, minute, second, hundredths), polled_obj_type,
              attr_group, then count/length lists: context -> observation
              (handle) -> attribute (id, length, value)
    NuObsValue  physio_id, state, unit_code, FLOAT (exponent int8, mantissa int24)

Numerics come as ``NOM_ATTR_NU_VAL_OBS`` (0x0950) or, for NIBP, the compound
``NOM_ATTR_NU_CMPD_VAL_OBS`` (0x094B). Physiological ids and unit codes come
from the Philips list (Data Export Interface Programming Guide, doc 4535 642
59271, as tabulated by VSCaptureMP ``Class2.cs`` and OpenICE): each entry of
:data:`PHYSIO_IDS` and :data:`UNIT_CODES` cites its source. Philips ids are not
always the IEEE MDC term of the same name (NOM_TEMP_ORAL is 0xF108, MDC_TEMP_ORAL
0xE008; the NIBP pulse is 0xF0E5, MDC_PULS_RATE_NON_INV 0x482A), so the table
maps Philips ids to our metrics, never through MDC arithmetic. FLOAT NaN (mantissa 0x7FFFFF), NRes, +/-INF and a
measurement state of invalid, questionable, unavailable, calibrating, test or
demo never yield a value.

Vendor samples: No vendor sample of a poll reply is published; the FCS test
vectors (``mdpnp/mdpnp`` ``TestFCSOutputStream.java``) and the association
request (VSCaptureMP ``Class3.cs``) are the only byte-exact public references,
and the poll replies in the tests are built from the layouts above.

Assumptions to verify on a monitor:

* The keep-alive is an MDS poll (``polled_obj_type`` = MDS) every
  :data:`KEEP_ALIVE` seconds; numeric polls every :data:`POLL_PERIOD` also keep
  the link up. The monitor's own timeout was not confirmed (OpenICE uses 5 s).
* ``NOM_TEMP`` (generic "Temp") and ``NOM_TEMP_PRED`` are charted as body
  temperature at an unspecified site: at a vitals station the monitor's
  temperature is the patient's body temperature.
* The monitor's absolute time is its local wall clock with no offset, so
  ``device_time`` is naive.
* The association request is the published "poll profile" AARQ; extended polls
  (linked results, 0xF13B) and waveforms are not requested.
"""

from __future__ import annotations

import binascii
import datetime as dt
import struct
from decimal import Decimal

from devices.protocols.base import DeviceState
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.protocols.datex import unstuff
from devices.protocols.framing import NO_DATA
from devices.protocols.framing import BlockFramer

BOF = 0xC0
EOF = 0xC1
ESCAPE = 0x7D
ESCAPE_XOR = 0x20

PROTOCOL_ID = 0x11
MSG_TYPE = 0x01
FRAME_HEADER = struct.Struct(">BBH")
MAX_USER_DATA = 1480
"""The monitor's receive/transmit MTU announced in the association (0x05B0 = 1456) plus headroom."""

MAX_FRAME = 2 * (FRAME_HEADER.size + MAX_USER_DATA + 2)
"""Wire bytes one frame may take with every byte escaped; the buffer bound."""

CN_SPDU_SI = 0x0D
AC_SPDU_SI = 0x0E
RF_SPDU_SI = 0x0C
FN_SPDU_SI = 0x09
DN_SPDU_SI = 0x0A
AB_SPDU_SI = 0x19
DATA_SESSION = 0xE100
PRESENTATION_CONTEXT = 2

ROIV_APDU = 1
RORS_APDU = 2
ROER_APDU = 3
ROLRS_APDU = 5
CMD_CONFIRMED_EVENT_REPORT = 1
CMD_CONFIRMED_ACTION = 7

NOM_MOC_VMS_MDS = 0x0021
NOM_MOC_VMO_METRIC_NU = 0x0006
NOM_PART_OBJ = 1
NOM_NOTI_MDS_CREAT = 0x0D06
NOM_ACT_POLL_MDIB_DATA = 0x0C16
NOM_ATTR_NU_VAL_OBS = 0x0950
NOM_ATTR_NU_CMPD_VAL_OBS = 0x094B

SP_HEADER = struct.Struct(">HHHH")
"""SPpdu (session_id, p_context_id) followed by ROapdus (ro_type, length)."""
RO_HEADER = struct.Struct(">HHH")
"""invoke_id, command_type, length of ROIV and RORS apdus."""
MANAGED_OBJECT = struct.Struct(">HHH")
EVENT_ARGUMENT = struct.Struct(">HHHIHH")
ACTION_ARGUMENT = struct.Struct(">HHHIHH")
ACTION_RESULT = struct.Struct(">HHHHH")
POLL_REQUEST = struct.Struct(">HHHH")
POLL_REPLY_HEAD = struct.Struct(">HI8sHHH")
LIST_HEAD = struct.Struct(">HH")
CONTEXT_HEAD = struct.Struct(">HHH")
OBSERVATION_HEAD = struct.Struct(">HHH")
NU_OBS_VALUE = struct.Struct(">HHHI")

ASSOCIATION_REQUEST = bytes.fromhex(
    "0dec0508130100160102800014020002c1dc3180a0808001010000a280a003000001a480308002010106045201000130"
    "8006025101000000003080020102060c2a8648ce14020100000001013080060c2a8648ce140201000000020100000000"
    "000061803080020101a0806080a180060c2a8648ce14020100000003010000be802880060c2a8648ce14020100000001"
    "0102010281488000000040000000000000008000000020000000000000000001002c000100288000000000000fa00000"
    "05b0000005b0ffffffff600000000001000cf00100088e0000000000000000000000000000000000000000000000"
)
"""The AARQ with the poll profile (protocol version 0x80000000, cold start, MTU 1456, dynamic objects)."""

RELEASE_REQUEST = bytes.fromhex("0918c11661803080020101a080628080010000000000000000")

PHYSIO_IDS: dict[int, str] = {
    0x4BB8: "spo2",                   # NOM_PULS_OXIM_SAT_O2 = 19384 (a), OpenICE ObservedValue.java (b)
    0x4822: "pulse_oximeter",         # NOM_PLETH_PULS_RATE = 18466 (a, b); -> MDC_PULS_OXIM_PULS_RATE (c)
    0xF0E5: "pulse_nibp",             # NOM_PRESS_BLD_NONINV_PULS_RATE = 61669 (a, b); -> MDC_PULS_RATE_NON_INV (c)
    0x4A05: "systolic",               # NOM_PRESS_BLD_NONINV_SYS = 18949 (a, b)
    0x4A06: "diastolic",              # NOM_PRESS_BLD_NONINV_DIA = 18950 (a)
    0x4A07: "mean_arterial",          # NOM_PRESS_BLD_NONINV_MEAN = 18951 (a)
    0x4B48: "temperature",            # NOM_TEMP = 19272 (a): generic "Temp", site not given
    0xF140: "temperature",            # NOM_TEMP_PRED = 61760 (a): predictive, site not given
    0xF108: "temperature_oral",       # NOM_TEMP_ORAL = 61704 (a)
    0xF110: "temperature_oral",       # NOM_TEMP_ORAL_PRED = 61712 (a, b)
    0xF10C: "temperature_axillary",   # NOM_TEMP_AXIL = 61708 (a)
    0xF118: "temperature_axillary",   # NOM_TEMP_AXIL_PRED = 61720 (a, b)
    0xE004: "temperature_rectal",     # NOM_TEMP_RECT = 57348 (a, b)
    0xF114: "temperature_rectal",     # NOM_TEMP_RECT_PRED = 61716 (a, b)
    0x4B78: "temperature_tympanic",   # NOM_TEMP_TYMP = 19320 (a, b)
    0x500A: "respiration_rate",       # NOM_RESP_RATE = 20490 (a, b)
}
"""Physiological id (partition 2) -> metric key. Sources: (a) ``xeonfusion/VSCaptureMP`` ``Class2.cs``, enum
of Philips ids (decimal values as listed there); (b) ``mdpnp/mdpnp``
``devices/philips/src/main/java/org/mdpnp/devices/philips/intellivue/data/ObservedValue.java`` (hex); (c)
``mdpnp/mdpnp`` ``interop-lab/demo-devices/src/main/resources/org/mdpnp/devices/philips/intellivue/intellivue.map``.

Not charted on purpose: ``0x480A`` NOM_PULS_RATE (a, b) is a generic pulse the monitor may derive from ECG or
an arterial line, not the oximeter's; labelling it oximeter pulse put two conflicting "oximeter pulse" values
in one poll. ``0x4BB0`` NOM_PULS_OXIM_PERF_REL is the monitor's relative perfusion, dimensionless, not the
Masimo perfusion index in percent. Site-specific temperatures of other sites (core, skin, blood...) are not
body temperatures for a vitals station and are skipped."""

UNIT_CODES: dict[int, str] = {
    0x0220: "%",        # NOM_DIM_PERCENT = 544
    0x0AA0: "/min",     # NOM_DIM_BEAT_PER_MIN = 2720
    0x0AE0: "/min",     # NOM_DIM_RESP_PER_MIN = 2784
    0x0F20: "mm[Hg]",   # NOM_DIM_MMHG = 3872
    0x0F03: "kPa",      # NOM_DIM_KILO_PASCAL = 3843
    0x17A0: "Cel",      # NOM_DIM_DEGC = 6048
    0x1140: "[degF]",   # NOM_DIM_FAHR = 4416
}
"""Unit code (partition 4) -> UCUM; names and values from ``xeonfusion/VSCaptureMP`` ``Class2.cs``."""

FLOAT_SPECIALS: dict[int, str] = {
    0x7FFFFF: "no_data",
    0x800000: "not_resolved",
    0x7FFFFE: "over_range",
    0x800002: "under_range",
    0x800001: "no_data",
}
"""FLOAT mantissas that are codes, not numbers (NaN, NRes, +INF, -INF, reserved)."""

STATE_WITHHELD: dict[int, frozenset[str]] = {
    0x8000: frozenset({"invalid"}),
    0x4000: frozenset({"questionable", "artifact"}),
    0x2000: frozenset({"unavailable"}),
    0x1000: frozenset({"calibrating"}),
    0x0800: frozenset({"test_data"}),
    0x0400: frozenset({"demo_data"}),
}
"""MeasurementState bits whose value must not be charted."""

STATE_INFO: dict[int, str] = {
    0x0040: "early_indication",
    0x0020: "measuring",
    0x0002: "alarm",
}
"""MeasurementState bits reported as flags beside a usable value."""

POLL_PERIOD = 1.0
KEEP_ALIVE = 4.0
ASSOCIATION_TIMEOUT = 5.0
ASSOCIATION_RETRY = 5.0
LINK_TIMEOUT = 10.0
"""Seconds without any good frame after which the association is presumed lost."""

UNASSOCIATED = "unassociated"
ASSOCIATING = "associating"
ASSOCIATED = "associated"
POLLING = "polling"


class Malformed(Exception):
    """A checksum-valid message whose inner lengths or counts do not add up."""


_BIT_REVERSED = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))


def _reverse16(value: int) -> int:
    return _BIT_REVERSED[value & 0xFF] << 8 | _BIT_REVERSED[value >> 8]


def fcs16(data: bytes, fcs: int = 0xFFFF) -> int:
    """RFC 1662 FCS-16 of ``data`` (before the ones' complement).

    The FCS is the bit-reflected CRC-CCITT. Computing the unreflected CRC with
    :func:`binascii.crc_hqx` over bit-reversed bytes and reflecting the result
    gives the same value in C instead of a Python loop per byte, which is what
    keeps decoding far above the 115200-baud line rate.
    """
    return _reverse16(binascii.crc_hqx(data.translate(_BIT_REVERSED), _reverse16(fcs)))


def escape(data: bytes) -> bytes:
    """Escape ``7D`` first, then the frame delimiters."""
    return data.replace(b"\x7d", b"\x7d\x5d").replace(b"\xc0", b"\x7d\xe0").replace(b"\xc1", b"\x7d\xe1")


def frame_bytes(payload: bytes) -> bytes:
    """``payload`` (header included) escaped between BOF and EOF with its FCS."""
    fcs = fcs16(payload) ^ 0xFFFF
    return b"\xc0" + escape(payload + fcs.to_bytes(2, "little")) + b"\xc1"


def encode_frame(user_data: bytes) -> bytes:
    """``user_data`` wrapped in the RS232 frame header and framed for the wire."""
    return frame_bytes(FRAME_HEADER.pack(PROTOCOL_ID, MSG_TYPE, len(user_data)) + user_data)


def data_message(ro_type: int, invoke_id: int, command: int, body: bytes) -> bytes:
    """A data-export message: SPpdu, ROapdus and ROIV/RORS header around ``body``."""
    apdu = RO_HEADER.pack(invoke_id, command, len(body)) + body
    return SP_HEADER.pack(DATA_SESSION, PRESENTATION_CONTEXT, ro_type, len(apdu)) + apdu


def poll_request(invoke_id: int, poll_number: int, object_code: int) -> bytes:
    """A framed poll of all objects of class ``object_code`` (numerics, or the MDS as keep-alive)."""
    request = POLL_REQUEST.pack(poll_number, NOM_PART_OBJ, object_code, 0)
    body = ACTION_ARGUMENT.pack(NOM_MOC_VMS_MDS, 0, 0, 0, NOM_ACT_POLL_MDIB_DATA, len(request)) + request
    return encode_frame(data_message(ROIV_APDU, invoke_id, CMD_CONFIRMED_ACTION, body))


def session_message(kind: int, body: bytes) -> bytes:
    """A session-layer message (association, release, abort): kind, length indicator, body.

    The length indicator is one byte below 255, else ``FF`` and two bytes.
    """
    if len(body) < 0xFF:
        return bytes((kind, len(body))) + body
    return bytes((kind, 0xFF)) + len(body).to_bytes(2, "big") + body


def encode_float(value: Decimal) -> int:
    """The 32-bit FLOAT of ``value`` (exponent in the high byte, 24-bit mantissa)."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"{value} is not a finite number")
    mantissa = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    return ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF)


def decode_float(raw: int) -> Decimal | str:
    """A FLOAT's value, or the name of its special code."""
    mantissa = raw & 0xFFFFFF
    special = FLOAT_SPECIALS.get(mantissa)
    if special is not None:
        return special
    exponent = (raw >> 24) & 0xFF
    if exponent > 127:
        exponent -= 256
    if mantissa & 0x800000:
        mantissa -= 0x1000000
    if exponent > 0:
        return Decimal(mantissa * 10**exponent)
    return Decimal(mantissa).scaleb(exponent)


def encode_time(when: dt.datetime) -> bytes:
    """An absolute time as the monitor's eight BCD bytes."""
    parts = (when.year // 100, when.year % 100, when.month, when.day, when.hour, when.minute,
             when.second, when.microsecond // 10000)
    return bytes((p // 10) << 4 | p % 10 for p in parts)


def decode_time(raw: bytes) -> dt.datetime | None:
    """The monitor's BCD absolute time, ``None`` when unset (``FF``) or not a date."""
    digits = []
    for byte in raw:
        high, low = byte >> 4, byte & 0x0F
        if high > 9 or low > 9:
            return None
        digits.append(high * 10 + low)
    century, year, month, day, hour, minute, second, hundredths = digits
    try:
        return dt.datetime(century * 100 + year, month, day, hour, minute, second, hundredths * 10000)
    except ValueError:
        return None


def numeric(value: bytes, device_time: dt.datetime | None) -> Measurement | None:
    """The measurement of one NuObsValue, ``None`` for a physiological id we do not chart."""
    physio_id, state, unit_code, raw = NU_OBS_VALUE.unpack(value)
    metric = PHYSIO_IDS.get(physio_id)
    if metric is None:
        return None
    flags: set[str] = set()
    withheld = False
    for bit, names in STATE_WITHHELD.items():
        if state & bit:
            flags |= names
            withheld = True
    flags.update(name for bit, name in STATE_INFO.items() if state & bit)
    unit = UNIT_CODES.get(unit_code)
    if unit is None:
        flags.add("unknown_unit")
        withheld = True
    decoded = decode_float(raw)
    number = decoded if isinstance(decoded, Decimal) else None
    if isinstance(decoded, str):
        flags.add(decoded)
    if withheld or number is None:
        flags.add(NO_DATA)
        number = None
    return Measurement(metric, number, unit or "", frozenset(flags), device_time)


def _items(data: bytes, pos: int, head: struct.Struct) -> tuple[list[tuple[int, int, int]], int]:
    """Walk a count/length list of records that start with ``head``; ``(id, count, start)`` each."""
    count, length = LIST_HEAD.unpack_from(data, pos)
    pos += LIST_HEAD.size
    end = pos + length
    if end > len(data):
        raise Malformed("list longer than message")
    found = []
    for _ in range(count):
        ident, inner_count, inner_length = head.unpack_from(data, pos)
        found.append((ident, inner_count, pos + head.size))
        pos += head.size + inner_length
        if pos > end:
            raise Malformed("list entry past list end")
    return found, end


def poll_reply_events(body: bytes) -> list[Event]:
    """Measurements of a PollMdibDataReply, in the order the monitor listed them."""
    _, _, abs_time, _, _, _ = POLL_REPLY_HEAD.unpack_from(body)
    device_time = decode_time(abs_time)
    out: list[Event] = []
    contexts, _ = _items(body, POLL_REPLY_HEAD.size, CONTEXT_HEAD)
    for _, _, start in contexts:
        observations, _ = _items(body, start - LIST_HEAD.size, OBSERVATION_HEAD)
        for _, _, attrs_start in observations:
            pos = attrs_start - LIST_HEAD.size
            count, length = LIST_HEAD.unpack_from(body, pos)
            pos += LIST_HEAD.size
            end = pos + length
            if end > len(body):
                raise Malformed("attribute list longer than message")
            for _ in range(count):
                attribute, size = LIST_HEAD.unpack_from(body, pos)
                value = body[pos + 4 : pos + 4 + size]
                pos += 4 + size
                if pos > end:
                    raise Malformed("attribute past list end")
                out.extend(_attribute(attribute, value, device_time))
    return out


def _attribute(attribute: int, value: bytes, device_time: dt.datetime | None) -> list[Event]:
    values: list[bytes] = []
    if attribute == NOM_ATTR_NU_VAL_OBS:
        values.append(value)
    elif attribute == NOM_ATTR_NU_CMPD_VAL_OBS:
        count, length = LIST_HEAD.unpack_from(value)
        if length != count * NU_OBS_VALUE.size or LIST_HEAD.size + length > len(value):
            raise Malformed("compound value length")
        size = NU_OBS_VALUE.size
        values.extend(value[4 + i * size : 4 + (i + 1) * size] for i in range(count))
    out: list[Event] = []
    for item in values:
        if len(item) != NU_OBS_VALUE.size:
            raise Malformed("observed value length")
        measurement = numeric(item, device_time)
        if measurement is not None:
            out.append(measurement)
    return out


class IntelliVueFramer(BlockFramer):
    """Splits the byte stream into FCS-valid payloads (frame header included, FCS removed).

    The frame buffer never holds more than ``max_frame`` bytes; a ``BOF``
    inside a frame drops the unfinished one as truncated.
    """

    __slots__ = ()

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        super().__init__(BOF, EOF, max_frame, outside="bytes outside frame", oversize="oversize frame",
                         unterminated="truncated frame")

    def _block(self, raw: bytes, out: list[bytes | FrameRejected]) -> None:
        if raw[-1] == ESCAPE:
            out.append(FrameRejected("aborted frame", len(raw)))
            return
        frame = unstuff(raw)
        if frame is None or len(frame) < 3:
            out.append(FrameRejected("short frame", len(raw)))
        elif fcs16(frame[:-2]) ^ 0xFFFF != int.from_bytes(frame[-2:], "little"):
            out.append(FrameRejected("checksum", len(raw)))
        else:
            out.append(frame[:-2])


def user_data(payload: bytes) -> bytes | str:
    """The user data of an FCS-valid payload, or why its frame header is wrong."""
    if len(payload) < FRAME_HEADER.size:
        return "short frame"
    protocol, kind, length = FRAME_HEADER.unpack_from(payload)
    if protocol != PROTOCOL_ID or kind != MSG_TYPE:
        return "not a data export frame"
    if length != len(payload) - FRAME_HEADER.size:
        return "length mismatch"
    return payload[FRAME_HEADER.size :]


def split_data_message(message: bytes) -> tuple[int, int, int, bytes]:
    """``(ro_type, invoke_id, command_type, body)`` of a data-export message.

    Linked results carry two more bytes (state, count) before their header;
    errors carry an error value where the others carry a command.
    """
    session, _, ro_type, length = SP_HEADER.unpack_from(message)
    if session != DATA_SESSION or SP_HEADER.size + length != len(message):
        raise Malformed("data export header")
    pos = SP_HEADER.size + (2 if ro_type == ROLRS_APDU else 0)
    invoke_id, command, body_length = RO_HEADER.unpack_from(message, pos)
    body = message[pos + RO_HEADER.size :]
    if body_length != len(body):
        raise Malformed("remote operation length")
    return ro_type, invoke_id, command, body


class IntelliVueDecoder:
    """Sans-I/O decoder and conversation for the IntelliVue MIB/RS232 data export."""

    def __init__(self) -> None:
        self._framer = IntelliVueFramer()
        self.max_frame = self._framer.max_frame
        self.frames = 0
        self.state = UNASSOCIATED
        self._outbox = bytearray()
        self._invoke_id = 0
        self._poll_number = 0
        self._heard = False
        self._last_heard: float | None = None
        self._deadline: float | None = None
        self._retry_after = 0.0
        self._next_poll: float | None = None
        self._next_keep_alive: float | None = None

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data`` and return the events it completed, in stream order."""
        out: list[Event] = []
        for item in self._framer.feed(data):
            if isinstance(item, FrameRejected):
                out.append(item)
                continue
            self.frames += 1
            message = user_data(item)
            if isinstance(message, str):
                out.append(FrameRejected(message, len(item)))
                continue
            try:
                self._message(message, out)
            except (Malformed, struct.error):
                out.append(FrameRejected("malformed message", len(item)))
        return out

    @property
    def buffered(self) -> int:
        """Bytes held for the frame in progress (never more than ``max_frame``)."""
        return self._framer.buffered

    def on_connect(self) -> bytes:
        """The association request; the monitor sends nothing before it."""
        self.state = ASSOCIATING
        self._outbox.clear()
        self._deadline = None
        self._last_heard = None
        return encode_frame(ASSOCIATION_REQUEST)

    def release(self) -> bytes:
        """The release request, for a polite disconnect (the monitor answers 0x0A)."""
        self.state = UNASSOCIATED
        return encode_frame(RELEASE_REQUEST)

    def poll(self, now: float) -> bytes:
        """Answers, polls, keep-alives and association retries due at monotonic ``now``."""
        out = bytes(self._outbox)
        self._outbox.clear()
        if self._heard or self._last_heard is None:
            self._heard = False
            self._last_heard = now
        if self.state == POLLING and now - self._last_heard >= LINK_TIMEOUT:
            self.state = UNASSOCIATED
            self._deadline = now
        if self.state in (UNASSOCIATED, ASSOCIATING, ASSOCIATED):
            if self._deadline is None:
                wait = self._retry_after if self.state == UNASSOCIATED else ASSOCIATION_TIMEOUT
                self._deadline = now + wait
            if now >= self._deadline:
                out += self.on_connect()
                self._deadline = now + ASSOCIATION_TIMEOUT
            return out
        if self._next_poll is None or now >= self._next_poll:
            self._poll_number = (self._poll_number + 1) & 0xFFFF
            out += poll_request(self._next_invoke(), self._poll_number, NOM_MOC_VMO_METRIC_NU)
            self._next_poll = now + POLL_PERIOD
        if self._next_keep_alive is None:
            self._next_keep_alive = now + KEEP_ALIVE
        elif now >= self._next_keep_alive:
            out += poll_request(self._next_invoke(), self._poll_number, NOM_MOC_VMS_MDS)
            self._next_keep_alive = now + KEEP_ALIVE
        return out

    def _next_invoke(self) -> int:
        self._invoke_id = (self._invoke_id + 1) & 0xFFFF
        return self._invoke_id

    def _lost(self, flag: str, out: list[Event]) -> None:
        """After a refusal, abort or release, wait before asking again rather than hammer the monitor."""
        self.state = UNASSOCIATED
        self._deadline = None
        self._retry_after = ASSOCIATION_RETRY
        out.append(DeviceState(frozenset({flag})))

    def _message(self, message: bytes, out: list[Event]) -> None:
        if not message:
            raise Malformed("empty message")
        self._heard = True
        kind = message[0]
        if kind == DATA_SESSION >> 8:
            self._data(message, out)
        elif kind == AC_SPDU_SI:
            self.state = ASSOCIATED
            self._deadline = None
            out.append(DeviceState(frozenset({"associated"})))
        elif kind == RF_SPDU_SI:
            self._lost("association_refused", out)
        elif kind == AB_SPDU_SI:
            self._lost("association_aborted", out)
        elif kind in (FN_SPDU_SI, DN_SPDU_SI):
            self._lost("association_released", out)
        else:
            raise Malformed(f"session type 0x{kind:02X}")

    def _data(self, message: bytes, out: list[Event]) -> None:
        ro_type, invoke_id, command, body = split_data_message(message)
        if ro_type == ROER_APDU:
            out.append(DeviceState(frozenset({"remote_error"}), f"error value {command}"))
        elif ro_type == ROIV_APDU and command == CMD_CONFIRMED_EVENT_REPORT:
            self._event_report(invoke_id, body)
        elif ro_type in (RORS_APDU, ROLRS_APDU) and command == CMD_CONFIRMED_ACTION:
            _, _, _, action, length = ACTION_RESULT.unpack_from(body)
            if action == NOM_ACT_POLL_MDIB_DATA and ACTION_RESULT.size + length == len(body):
                out.extend(poll_reply_events(body[ACTION_RESULT.size :]))
            elif action == NOM_ACT_POLL_MDIB_DATA:
                raise Malformed("action result length")

    def _event_report(self, invoke_id: int, body: bytes) -> None:
        """Answer every confirmed event report; the MDS Create one also starts polling."""
        obj_class, context, handle, event_time, event_type, _ = EVENT_ARGUMENT.unpack_from(body)
        managed_object = MANAGED_OBJECT.pack(obj_class, context, handle)
        result = managed_object + struct.pack(">IHH", event_time, event_type, 0)
        self._outbox += encode_frame(data_message(RORS_APDU, invoke_id, CMD_CONFIRMED_EVENT_REPORT, result))
        if event_type == NOM_NOTI_MDS_CREAT and self.state in (ASSOCIATED, POLLING):
            self.state = POLLING
            self._next_poll = None
            self._next_keep_alive = None
