"""Monitors and gateways that report vitals as IHE PCD-01 ORU^R01 over MLLP.

The same decoder serves a serial port and a TCP connection (``socket://``
URLs): both carry MLLP blocks, ``0B`` + message + ``1C 0D``. Every OBX row whose
OBX-3 is an MDC code we chart becomes a :class:`~devices.protocols.base.Measurement`.

``devices/`` may import only the standard library and pyserial, so this module
carries its own small deframer and ER7 reader rather than the project's
``hl7`` package; it reads only what a device row needs.

What it tolerates, because real senders do it (``hl7.md`` §1, §5):

* no device (MDS/VMD/CHAN) rows, any OBX-4 (``1.3.1.150456``, flattened, absent);
* NIBP coded ``MDC_PRESS_CUFF_SYS/DIA/MEAN`` (150301-150303) instead of
  ``MDC_PRESS_BLD_NONINV_*``;
* OBX-8 measurement status (``INV``, ``NAV``, ``BUSY``, ``QUES``, ``CAL``,
  ``TEST``, ``DEMO``): the row becomes flags and never a charted value;
* OBX-6 as MDC (``266016^MDC_DIM_MMHG^MDC``), UCUM or a few common plain
  spellings (``mmHg``, ``bpm``, ``degC``), or missing (the metric's unit, flagged
  ``unit_assumed``);
* a missing CR after ``1C``, CR LF segment ends in files, UTF-8 or ISO 8859-1
  text, non-default encoding characters, escaped text (``\\F\\ \\S\\ \\T\\ \\R\\
  \\E\\ \\Xhh\\``);
* the same message sent again after a lost ACK (same MSH-10): acknowledged
  again, decoded once.

Each message is acknowledged as it asks (:meth:`Hl7MonitorDecoder.poll` returns
the ACKs): in original mode (MSH-15 and MSH-16 empty) one ``AA``; in enhanced
mode an accept ACK ``CA`` unless MSH-15 is ``NE`` or ``ER``, then an
application ACK ``AA`` when MSH-16 is ``AL`` or ``SU``. Monitors that ask for
the application ACK pause until it comes (GE B40/B20: MSH-15 ``NE``, MSH-16
``AL``, "pauses to wait for an application level acknowledgment"), so one is
never left out. Frontdesk builds the ACKs with :func:`hl7.ack.build_ack`
(passed in as ``acknowledge``, since this package may not import ``hl7``);
without it a minimal ACK in the message's own delimiters is built here, whose
MSH-7 repeats the acknowledged message's (the decoder holds no clock).

Temperatures are charted for every MDC site: the site's own metric where we
have one (oral, rectal, axillary, tympanic), else body temperature flagged
with the site (``site_core``, ``site_skin``…); Mindray's ``188496^MDC_TEMP_AXIL``
is axillary. An OBX that reports a value under a code we do not chart is
counted (:class:`~devices.protocols.base.Unrecognised`), never dropped in
silence; rows without a value (the MDS/VMD/CHAN hierarchy) are structure, not
observations.

Sources: IHE PCD Technical Framework Vol. 2 (PCD-01 message profile) as
summarised in ``hl7.md`` §1 and §5. No vendor sample message from a device is
in our reference; the tests use messages written to that profile and to the
deviations listed above.
"""

from __future__ import annotations

import collections
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from decimal import InvalidOperation

from devices.nomenclature import METRICS
from devices.protocols.base import Event
from devices.protocols.base import FrameRejected
from devices.protocols.base import Measurement
from devices.protocols.base import Unrecognised
from devices.protocols.framing import NO_DATA
from devices.protocols.framing import BlockFramer

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\r"

MAX_FRAME = 65536
"""Largest MLLP block held in memory (python-hl7 and Mirth use the same bound)."""

RECENT_IDS = 64
"""MSH-10 values remembered to drop a resent message (a sender that missed our ACK)."""

EXTRA_CODES: dict[int, str] = {
    150301: "systolic",
    150302: "diastolic",
    150303: "mean_arterial",
    150344: "temperature",
    188496: "temperature_axillary",
    188428: "temperature_tympanic",
}
"""MDC codes real senders use for metrics the table knows under another code (188496
``MDC_TEMP_AXIL`` from Mindray beside the standard 188452 ``MDC_TEMP_AXILLA``; 188428 ``MDC_TEMP_EAR``)."""

TEMPERATURE_REFID = "MDC_TEMP_"
"""REFID prefix of every temperature site: a site without a metric of its own is body temperature
flagged ``site_<name>``."""

CODE_METRICS: dict[int, str] = {metric.mdc_code: key for key, metric in METRICS.items()} | EXTRA_CODES
"""OBX-3 MDC code -> metric key."""

MDC_UNITS: dict[str, str] = {
    **{str(metric.unit.mdc_code): metric.unit.ucum for metric in METRICS.values()},
    **{metric.unit.mdc_refid: metric.unit.ucum for metric in METRICS.values()},
    "265987": "kPa",
    "MDC_DIM_KILO_PA": "kPa",
    "266560": "[degF]",
    "MDC_DIM_FAHR": "[degF]",
}
"""OBX-6 MDC unit code or REFID -> UCUM."""

PLAIN_UNITS: dict[str, str] = {
    "mmhg": "mm[Hg]",
    "mm hg": "mm[Hg]",
    "bpm": "/min",
    "beats/min": "/min",
    "rpm": "/min",
    "br/min": "/min",
    "degc": "Cel",
    "°c": "Cel",
    "c": "Cel",
    "degf": "[degF]",
    "°f": "[degF]",
    "f": "[degF]",
    "percent": "%",
}
"""Non-UCUM unit spellings seen from gateways (lower case) -> UCUM."""

WITHHELD_STATUS: dict[str, frozenset[str]] = {
    "INV": frozenset({"invalid"}),
    "NAV": frozenset({"not_available"}),
    "BUSY": frozenset({"measuring"}),
    "QUES": frozenset({"questionable", "artifact"}),
    "CAL": frozenset({"calibrating"}),
    "TEST": frozenset({"test_data"}),
    "DEMO": frozenset({"demo_data"}),
}
"""OBX-8 measurement states whose value must not be charted."""

ABNORMAL_FLAGS: dict[str, str] = {
    "L": "low",
    "H": "high",
    "LL": "critical_low",
    "HH": "critical_high",
    "A": "abnormal",
}
"""OBX-8 interpretation codes kept as flags beside the value."""

SKIPPED_RESULT_STATUS = frozenset({"D", "W"})
"""OBX-11 deleted / wrong: the row is withdrawn by the sender."""

_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$")


class MllpFramer(BlockFramer):
    """Splits a byte stream into MLLP blocks; the buffer holds at most ``max_frame`` bytes.

    A start block inside a block drops the unfinished one; the CR after the
    end block is optional.
    """

    __slots__ = ()

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        super().__init__(START_BLOCK[0], END_BLOCK[0], max_frame, outside="bytes outside MLLP block",
                         oversize="oversize block", unterminated="unterminated block", trailer=CARRIAGE_RETURN)


def encode_block(message: str) -> bytes:
    """``message`` (segments already joined with CR) as one MLLP block in UTF-8."""
    return START_BLOCK + message.encode("utf-8") + END_BLOCK + CARRIAGE_RETURN


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The encoding characters of one message (MSH-1 and MSH-2)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


def unescape(text: str, delims: Delimiters) -> str:
    """Resolve ER7 escape sequences; formatting escapes (``\\H\\``, ``\\N\\``, ``\\.br\\``...) become nothing or CR.

    ``\\Xhh..\\`` is read as UTF-8 when it decodes as such, else as ISO 8859-1,
    the two charsets PCD-01 senders declare.
    """
    esc = delims.escape
    if not esc or esc not in text:
        return text
    named = {"F": delims.field, "S": delims.component, "T": delims.subcomponent,
             "R": delims.repetition, "E": esc, ".br": "\r", "H": "", "N": ""}
    out: list[str] = []
    pos = 0
    while True:
        start = text.find(esc, pos)
        end = text.find(esc, start + 1) if start >= 0 else -1
        if end < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:start])
        body = text[start + 1 : end]
        if body in named:
            out.append(named[body])
        elif body[:1] == "X" and len(body) % 2 == 1 and re.fullmatch(r"[0-9A-Fa-f]*", body[1:]):
            raw = bytes.fromhex(body[1:])
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(raw.decode("latin-1"))
        else:
            out.append(text[start : end + 1])
        pos = end + 1


def parse_time(text: str) -> dt.datetime | None:
    """An HL7 DTM as a datetime (aware when it carries an offset); ``None`` when absent or invalid."""
    match = _DTM.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    tz = None
    if offset:
        sign = -1 if offset[0] == "-" else 1
        tz = dt.timezone(sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
    try:
        return dt.datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                           int(second or 0), int((fraction or "0").ljust(6, "0")[:6]), tz)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Message:
    """What the decoder needs of one inbound message."""

    delims: Delimiters
    header: tuple[str, ...]
    segments: tuple[tuple[str, ...], ...]

    def msh(self, number: int) -> str:
        """MSH-``number`` as sent (still escaped); MSH-1 is the field separator itself."""
        if number == 1:
            return self.delims.field
        return self.header[number - 1] if number - 1 < len(self.header) else ""


def parse_message(raw: bytes) -> Message | str:
    """Split one MLLP payload into segments and fields, or say why it is not HL7."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = [line.lstrip("\n") for line in text.split("\r")]
    lines = [line for line in lines if line.strip()]
    if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
        return "not an HL7 message"
    field = lines[0][3]
    encoding = lines[0][4:].split(field, 1)[0]
    if field.isalnum() or len(encoding) < 4 or len(set(encoding[:4] + field)) < 5:
        return "bad MSH encoding characters"
    delims = Delimiters(field, encoding[0], encoding[1], encoding[2], encoding[3])
    header = tuple(lines[0].split(field))
    segments = tuple(tuple(line.split(field)) for line in lines[1:])
    return Message(delims, header, segments)


def _field(fields: tuple[str, ...], number: int) -> str:
    return fields[number] if number < len(fields) else ""


def _unit(units: str, delims: Delimiters) -> str | None:
    """OBX-6 as UCUM: an MDC code or REFID, a UCUM code, or a known plain spelling."""
    parts = units.split(delims.component)
    code = unescape(parts[0], delims).strip()
    system = parts[2].strip().upper() if len(parts) > 2 else ""
    refid = parts[1].strip() if len(parts) > 1 else ""
    if system == "MDC" or code.isdigit():
        return MDC_UNITS.get(code) or MDC_UNITS.get(refid)
    if system == "UCUM":
        return code
    return PLAIN_UNITS.get(code.lower(), code if code in {"%", "/min", "mm[Hg]", "Cel", "kPa", "[degF]"} else None)


def _metric(identifier: str, delims: Delimiters) -> tuple[str | None, frozenset[str]]:
    """OBX-3 -> metric and any flags it implies, from the MDC triplet or the alternate one."""
    parts = identifier.split(delims.component)
    for code_at, system_at in ((0, 2), (3, 5)):
        code = parts[code_at].strip() if code_at < len(parts) else ""
        refid = parts[code_at + 1].strip().upper() if code_at + 1 < len(parts) else ""
        system = parts[system_at].strip().upper() if system_at < len(parts) else ""
        if system not in ("MDC", ""):
            continue
        metric = CODE_METRICS.get(int(code)) if code.isdigit() else None
        if metric is not None:
            return metric, frozenset()
        if refid.startswith(TEMPERATURE_REFID) and len(refid) > len(TEMPERATURE_REFID):
            return "temperature", frozenset({"site_" + refid[len(TEMPERATURE_REFID):].lower()})
    return None, frozenset()


def _number(value_type: str, text: str, delims: Delimiters) -> tuple[Decimal | None, frozenset[str]]:
    """OBX-5 as a number; ``SN`` comparators other than ``=`` are ranges, not values."""
    if value_type == "SN":
        parts = text.split(delims.component)
        comparator = parts[0].strip()
        if comparator in (">", ">="):
            return None, frozenset({NO_DATA, "over_range"})
        if comparator in ("<", "<="):
            return None, frozenset({NO_DATA, "under_range"})
        if comparator not in ("", "=") or (len(parts) > 2 and parts[2].strip()):
            return None, frozenset({NO_DATA, "unparseable"})
        text = parts[1] if len(parts) > 1 else ""
    try:
        number = Decimal(unescape(text, delims).strip())
    except InvalidOperation:
        return None, frozenset({NO_DATA, "unparseable"})
    if not number.is_finite():
        return None, frozenset({NO_DATA, "unparseable"})
    return number, frozenset()


def observations(message: Message) -> list[Event]:
    """One Measurement per OBX row that reports a charted metric, in message order."""
    delims = message.delims
    out: list[Event] = []
    default_time: dt.datetime | None = None
    for fields in message.segments:
        name = fields[0].strip()
        if name == "OBR":
            default_time = parse_time(_field(fields, 7))
            continue
        if name != "OBX":
            continue
        metric, implied = _metric(_field(fields, 3), delims)
        status = _field(fields, 11).strip().upper()
        if status in SKIPPED_RESULT_STATUS:
            continue
        if metric is None:
            if _field(fields, 5).strip():
                out.append(Unrecognised(f"OBX-3 {unescape(_field(fields, 3), delims)[:60]}"))
            continue
        flags: set[str] = set(implied)
        withheld = status == "X"
        for code in _field(fields, 8).split(delims.repetition):
            code = code.split(delims.component)[0].strip().upper()
            if code in WITHHELD_STATUS:
                flags |= WITHHELD_STATUS[code]
                withheld = True
            elif code in ABNORMAL_FLAGS:
                flags.add(ABNORMAL_FLAGS[code])
        unit = _unit(_field(fields, 6), delims) if _field(fields, 6).strip() else None
        if unit is None and _field(fields, 6).strip():
            flags.add("unknown_unit")
            withheld = True
        elif unit is None:
            unit = METRICS[metric].unit.ucum
            flags.add("unit_assumed")
        text = _field(fields, 5).split(delims.repetition)[0]
        value: Decimal | None = None
        if text.strip():
            value, parse_flags = _number(_field(fields, 2).strip().upper(), text, delims)
            flags |= parse_flags
        if withheld or value is None:
            flags.add(NO_DATA)
            value = None
        device_time = parse_time(_field(fields, 14)) or default_time
        out.append(Measurement(metric, value, unit or "", frozenset(flags), device_time))
    return out


AckBuilder = Callable[[bytes, str], bytes]
"""Builds the ACK message (no MLLP framing) with MSA-1 ``code`` for one raw message."""


def acknowledgement_codes(message: Message) -> tuple[str, ...]:
    """The ACK codes ``message`` asks for, in the order they are sent (see the module docstring).

    Enhanced mode: MSH-15 ``AL`` (or empty) and ``SU`` want the accept ACK on
    success, ``ER`` only on an error, ``NE`` never; MSH-16 likewise for the
    application ACK.
    """
    accept, application = message.msh(15).strip().upper(), message.msh(16).strip().upper()
    if not accept and not application:
        return ("AA",)
    codes: list[str] = []
    if accept in ("", "AL", "SU"):
        codes.append("CA")
    if application in ("AL", "SU"):
        codes.append("AA")
    return tuple(codes)


def acknowledgement(message: Message, code: str) -> bytes:
    """A minimal ACK with MSA-1 ``code`` in ``message``'s own delimiters, unframed (used without a builder)."""
    d = message.delims
    encoding = d.component + d.repetition + d.escape + d.subcomponent
    control = message.msh(10)
    msh = d.field.join(("MSH", encoding, message.msh(5), message.msh(6), message.msh(3), message.msh(4),
                        message.msh(7), "", d.component.join(("ACK", "R01", "ACK")), f"ACK{control}"[:199],
                        message.msh(11), message.msh(12)))
    msa = d.field.join(("MSA", code, control))
    return (msh + "\r" + msa + "\r").encode("utf-8")


class Hl7MonitorDecoder:
    """Sans-I/O decoder for PCD-01 ORU^R01 over MLLP; its :meth:`poll` returns the ACKs due.

    :param acknowledge: builds each ACK (Frontdesk passes :func:`hl7.ack.build_ack`); a builder that
        fails leaves the minimal ACK in its place, because a monitor waiting for an ACK stops sending.
    """

    def __init__(self, acknowledge: AckBuilder | None = None) -> None:
        self._framer = MllpFramer()
        self.max_frame = self._framer.max_frame
        self.frames = 0
        self._acknowledge = acknowledge
        self._acks = bytearray()
        self._recent: collections.deque[str] = collections.deque(maxlen=RECENT_IDS)

    def _ack(self, raw: bytes, message: Message) -> None:
        for code in acknowledgement_codes(message):
            ack = b""
            if self._acknowledge is not None:
                try:
                    ack = self._acknowledge(raw, code)
                except Exception:
                    ack = b""
            self._acks += START_BLOCK + (ack or acknowledgement(message, code)) + END_BLOCK + CARRIAGE_RETURN

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data`` and return the events it completed, in stream order."""
        out: list[Event] = []
        for item in self._framer.feed(data):
            if isinstance(item, FrameRejected):
                out.append(item)
                continue
            message = parse_message(item)
            if isinstance(message, str):
                out.append(FrameRejected(message, len(item)))
                continue
            self.frames += 1
            self._ack(item, message)
            control = message.msh(10)
            if control and control in self._recent:
                continue
            if control:
                self._recent.append(control)
            kind = message.msh(9).split(message.delims.component)
            if kind[:2] != ["ORU", "R01"]:
                out.append(FrameRejected(f"unsupported message type {message.msh(9)[:20]}", len(item)))
                continue
            out.extend(observations(message))
        return out

    @property
    def buffered(self) -> int:
        """Bytes held for the frame in progress (never more than ``max_frame``)."""
        return self._framer.buffered

    def on_connect(self) -> bytes:
        """Nothing: the sender speaks first."""
        return b""

    def poll(self, now: float) -> bytes:
        """The ACKs for the messages decoded so far (``now`` is unused: ACKs are due at once)."""
        acks = bytes(self._acks)
        self._acks.clear()
        return acks
