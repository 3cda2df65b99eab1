"""ER7 (pipe-and-hat) reading and writing without hl7apy.

Reading: :func:`parse_message` is a lenient, fast parser for the inbound hot
path (SIU, ADT, ACKs). HL7 ends segments with CR, but senders also use CRLF and
LF alone, and real field values carry LF, so a bare split on ``\\n`` would cut
a value in two. The rule (:func:`segment_lines`): CR or CRLF always ends a
segment; an LF alone ends one only where a segment name and the field
separator follow it (``\\nPID|``) or the message ends. An LF inside a value can
never be followed by ``|``, which a value cannot hold unescaped, so the rule is
unambiguous. Delimiters come from MSH-1/MSH-2, the charset from MSH-18, and
values are unescaped when accessed, so a message that is never fully read
costs little.

Writing: :func:`encode_segment` and :func:`encode_msh` turn typed field values
into ER7, sending every leaf through :func:`hl7.escape.escape_text`; builders use
nothing else, so no user text reaches the wire unescaped.

Positions are 1-based as in HL7 (``PID-5.1`` is ``value(5, 1)``); out-of-range
positions read as the empty string. The HL7 explicit null ``""`` is returned
as the two-character string ``'""'`` (see :data:`NULL`) so callers can tell
"clear this value" from "not sent".
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import typing as t
from collections.abc import Mapping
from dataclasses import dataclass

from hl7.escape import DEFAULT_DELIMITERS
from hl7.escape import CharsetError
from hl7.escape import Delimiters
from hl7.escape import EncodingError
from hl7.escape import escape_text
from hl7.escape import unescape_text

__all__ = [
    "CharsetError",
    "Component",
    "FieldValue",
    "Message",
    "NULL",
    "ParseError",
    "Repeated",
    "Repetition",
    "Segment",
    "codec_for",
    "encode_header",
    "encode_message",
    "encode_msh",
    "encode_segment",
    "format_date",
    "format_timestamp",
    "load_messages",
    "parse_header",
    "parse_message",
    "segment_lines",
]

NULL = '""'
"""The HL7 explicit null: the receiver should clear the stored value."""

_CHARSETS: dict[str, str] = {
    "": "ascii",
    "ASCII": "ascii",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
}


class ParseError(EncodingError):
    """The bytes are not an ER7 message we can read (no MSH, bad delimiters, unknown charset)."""


def codec_for(msh18: str) -> str:
    """Map an MSH-18 character set (HL7 table 0211) to a Python codec name.

    Blank means 7-bit ASCII (HL7 default). Only single-byte ISO 8859 sets and
    UTF-8 are supported: the ISO 2022 code-switching sets (``ISO IR87`` …) need
    MSH-20 handling no peer of ours uses.

    :raises ParseError: for a charset we cannot decode.
    """
    try:
        return _CHARSETS[msh18.strip().upper()]
    except KeyError:
        raise ParseError(f"unsupported MSH-18 character set {msh18!r}") from None


def _part(text: str, separator: str, index: int) -> str:
    """The ``index``-th (1-based) part of ``text`` split on ``separator``; ``""`` when there are fewer."""
    if separator not in text:
        return text if index == 1 else ""
    parts = text.split(separator, index)
    return parts[index - 1] if len(parts) >= index else ""


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment; ``fields[n]`` is field *n* (``fields[0]`` is the segment name).

    For MSH, ``fields[1]`` is the field separator and ``fields[2]`` the encoding
    characters, so MSH numbering matches every other segment.
    """

    fields: tuple[str, ...]
    delimiters: Delimiters
    charset: str

    @property
    def name(self) -> str:
        return self.fields[0]

    @property
    def field_count(self) -> int:
        """The number of fields present (trailing empty fields are not sent, so this varies)."""
        return len(self.fields) - 1

    def raw(self, field: int) -> str:
        """The field exactly as received, still escaped; ``""`` if absent."""
        if 0 < field < len(self.fields):
            return self.fields[field]
        return ""

    def _is_msh_header(self, field: int) -> bool:
        return field <= 2 and self.fields[0] == "MSH"

    def _repetitions(self, field: int) -> list[str]:
        raw = self.raw(field)
        if self._is_msh_header(field):
            return [raw]
        return raw.split(self.delimiters.repetition)

    def repetition_count(self, field: int) -> int:
        """Repetitions of a field; an empty field counts as one empty repetition."""
        return len(self._repetitions(field))

    def _components(self, field: int, repetition: int) -> list[str]:
        reps = self._repetitions(field)
        if not 0 < repetition <= len(reps):
            return [""]
        if self._is_msh_header(field):
            return [reps[0]]
        return reps[repetition - 1].split(self.delimiters.component)

    def component_count(self, field: int, repetition: int = 1) -> int:
        return len(self._components(field, repetition))

    def _subcomponents(self, field: int, component: int, repetition: int) -> list[str]:
        comps = self._components(field, repetition)
        if not 0 < component <= len(comps):
            return [""]
        if self._is_msh_header(field):
            return [comps[0]]
        return comps[component - 1].split(self.delimiters.subcomponent)

    def subcomponent_count(self, field: int, component: int = 1, repetition: int = 1) -> int:
        return len(self._subcomponents(field, component, repetition))

    def value(self, field: int, component: int = 1, subcomponent: int = 1, *, repetition: int = 1) -> str:
        """One leaf value, unescaped.

        Each level is split only as far as the wanted part: this runs for every
        field of every inbound message and every ACK.

        :raises CharsetError: if a ``\\X..\\`` escape holds bytes invalid in the message charset.
        """
        if not 0 < field < len(self.fields) or repetition < 1 or component < 1 or subcomponent < 1:
            return ""
        text = self.fields[field]
        if self._is_msh_header(field):
            return text if component == subcomponent == repetition == 1 else ""
        d = self.delimiters
        text = _part(text, d.repetition, repetition)
        text = _part(text, d.component, component)
        text = _part(text, d.subcomponent, subcomponent)
        return unescape_text(text, d, self.charset)

    def values(self, field: int, component: int = 1, subcomponent: int = 1) -> tuple[str, ...]:
        """The same leaf across every repetition of a field (PID-3 identifiers, PID-13 phones)."""
        return tuple(
            self.value(field, component, subcomponent, repetition=r)
            for r in range(1, self.repetition_count(field) + 1)
        )

    def field_value(self, field: int) -> FieldValue:
        """The whole field as a typed value, unescaped, ready for :func:`encode_segment`.

        Used to echo a field into another message (an ACK swapping MSH-3/4 and
        MSH-5/6) with our own delimiters, losing no structure.
        """
        raw = self.raw(field)
        if self._is_msh_header(field) or self.delimiters.plain(raw):
            return raw
        d = self.delimiters
        reps: list[Repetition] = []
        # Split each level once: every ACK echoes four MSH fields this way.
        for repetition in raw.split(d.repetition):
            comps: list[Component] = []
            for component in repetition.split(d.component):
                subs = tuple(unescape_text(s, d, self.charset) for s in component.split(d.subcomponent))
                comps.append(subs[0] if len(subs) == 1 else subs)
            reps.append(comps[0] if len(comps) == 1 and isinstance(comps[0], str) else tuple(comps))
        return reps[0] if len(reps) == 1 else Repeated(tuple(reps))


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed ER7 message: segments in order, with the delimiters and charset it declared."""

    segments: tuple[Segment, ...]
    delimiters: Delimiters
    charset: str

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @property
    def segment_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments)

    def all(self, name: str) -> tuple[Segment, ...]:
        """Every segment with this name, in message order."""
        return tuple(s for s in self.segments if s.name == name)

    def segment(self, name: str) -> Segment | None:
        """The first segment with this name, or ``None``."""
        for s in self.segments:
            if s.name == name:
                return s
        return None

    def value(self, name: str, field: int, component: int = 1, subcomponent: int = 1,
              *, repetition: int = 1) -> str:
        """A leaf of the first segment called ``name``; ``""`` if there is none."""
        s = self.segment(name)
        if s is None:
            return ""
        return s.value(field, component, subcomponent, repetition=repetition)


@functools.lru_cache(maxsize=16)
def _segment_end(separator: str) -> re.Pattern[str]:
    return re.compile(r"\r\n?|\n(?=[A-Z][A-Z0-9]{2}" + re.escape(separator) + r"|\Z)")


def segment_lines(text: str, separator: str = "|") -> list[str]:
    """The segments of ``text``, without their ends and without empty ones (see the module docstring).

    :param separator: the field separator (MSH-1): an LF followed by a segment
        name and this character ends a segment.
    """
    if "\n" not in text:
        return [line for line in text.split("\r") if line]
    # An LF before a blank line stays on the line before it; it ends that segment all the same.
    return [line for line in (part.rstrip("\n") for part in _segment_end(separator).split(text)) if line]


def _header(msh: str) -> tuple[Delimiters, str]:
    """Read the delimiters and MSH-18 from the MSH segment (text, or ASCII-decoded bytes)."""
    if not msh.startswith("MSH") or len(msh) < 8:
        raise ParseError("message does not start with an MSH segment")
    sep = msh[3]
    enc_end = msh.find(sep, 4)
    msh2 = msh[4:] if enc_end < 0 else msh[4:enc_end]
    try:
        delimiters = Delimiters.from_msh(sep, msh2)
    except EncodingError as exc:
        raise ParseError(f"bad MSH delimiters: {exc}") from None
    fields = msh.split(sep)
    msh18 = fields[17] if len(fields) > 17 else ""
    first = msh18.split(delimiters.repetition)[0].split(delimiters.component)[0]
    return delimiters, first


def parse_message(data: bytes | str) -> Message:
    """Parse one ER7 message whose segments end in CR, CRLF or LF (see :func:`segment_lines`).

    Bytes are decoded in the charset MSH-18 declares, strictly: a byte that is
    not valid there raises :class:`CharsetError` rather than being guessed at,
    because a mis-decoded name is worse than a rejected message (the sender gets
    an AE and can fix its MSH-18). Empty segments (a trailing CR, CR CR) are
    skipped.

    :raises ParseError: if there is no MSH, its delimiters are invalid, or MSH-18 is unknown.
    :raises CharsetError: for bytes invalid in the declared charset.
    """
    if isinstance(data, bytes):
        delimiters, msh18 = _header(data[:_line_end(data)].decode("ascii", "replace"))
        charset = codec_for(msh18)
        try:
            text = data.decode(charset)
        except UnicodeDecodeError as exc:
            declared = msh18 or "ASCII (MSH-18 blank)"
            raise CharsetError(
                f"byte 0x{data[exc.start]:02X} at offset {exc.start} is not valid in {declared}"
            ) from None
    else:
        delimiters, msh18 = _header(data[:_line_end(data)])
        charset = codec_for(msh18)
        text = data
    sep = delimiters.field
    segments = []
    for line in segment_lines(text, sep):
        parts = line.split(sep)
        if parts[0] == "MSH":
            parts.insert(1, sep)
        segments.append(Segment(tuple(parts), delimiters, charset))
    return Message(tuple(segments), delimiters, charset)


def parse_header(data: bytes) -> Message | None:
    """The MSH segment alone, for answering a message whose body cannot be read; ``None`` without one.

    Read as ASCII with unreadable bytes replaced, and as ASCII too when MSH-18
    names a charset we do not support, so that even such a message can get its AE.
    """
    line = data[:_line_end(data)].decode("ascii", "replace")
    try:
        return parse_message(line)
    except ParseError:
        pass
    try:
        delimiters, _ = _header(line)
    except ParseError:
        return None
    parts = line.split(delimiters.field)
    parts.insert(1, delimiters.field)
    return Message((Segment(tuple(parts), delimiters, "ascii"),), delimiters, "ascii")


def _line_end(data: t.AnyStr) -> int:
    """Where the first line ends (CR or LF): the end of MSH, whatever the sender ends segments with."""
    if isinstance(data, bytes):
        ends = (data.find(b"\r"), data.find(b"\n"))
    else:
        ends = (data.find("\r"), data.find("\n"))
    return min((i for i in ends if i >= 0), default=len(data))


_BATCH_ENVELOPE = (b"FHS", b"BHS", b"BTS", b"FTS")


def load_messages(data: bytes) -> list[bytes]:
    """Split the contents of an HL7 file into messages, each ending in CR.

    Segments may end in CR, CRLF or LF (see :func:`segment_lines`), blank lines
    are dropped, batch envelope segments (FHS, BHS, BTS, FTS) skipped, and a
    new message starts at every MSH.

    :raises ParseError: if anything other than a batch envelope precedes the first MSH.
    """
    text = data.decode("latin-1")  # one character per byte: splitting cannot shift a byte
    separator = text[3] if text.startswith(("MSH", "FHS", "BHS")) and len(text) > 3 else "|"
    messages: list[list[str]] = []
    for line in segment_lines(text, separator):
        if not line.strip() or line[:3].encode("latin-1") in _BATCH_ENVELOPE:
            continue
        if line.startswith("MSH"):
            messages.append([])
        elif not messages:
            raise ParseError(f"segment {line[:3]!r} before the first MSH")
        messages[-1].append(line)
    return [("\r".join(m) + "\r").encode("latin-1") for m in messages]


# Writing ---------------------------------------------------------------------------------------

Component = str | tuple[str, ...]
"""A component: plain text, or a tuple of subcomponents."""

Repetition = str | tuple[Component, ...]
"""One repetition of a field: plain text (a single component), or a tuple of components."""


@dataclass(frozen=True, slots=True)
class Repeated:
    """A repeating field (PID-3 identifiers, PID-13 phone numbers).

    A distinct type rather than a list so that "several components" and
    "several repetitions" can never be confused.
    """

    values: tuple[Repetition, ...]


FieldValue = Repetition | Repeated


def _encode_component(value: Component, d: Delimiters) -> str:
    if isinstance(value, str):
        return escape_text(value, d)
    return d.subcomponent.join([escape_text(s, d) for s in value]).rstrip(d.subcomponent)


def _encode_repetition(value: Repetition, d: Delimiters) -> str:
    if isinstance(value, str):
        return escape_text(value, d)
    return d.component.join([
        escape_text(c, d) if isinstance(c, str) else _encode_component(c, d) for c in value
    ]).rstrip(d.component)


def _encode_field(value: FieldValue, d: Delimiters) -> str:
    if isinstance(value, Repeated):
        return d.repetition.join([_encode_repetition(r, d) for r in value.values])
    return _encode_repetition(value, d)


def encode_segment(name: str, fields: Mapping[int, FieldValue],
                   delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Write one non-MSH segment from ``{field number: value}``, without its CR.

    Fields not in the mapping are empty; trailing empty fields, components and
    subcomponents are not written.
    """
    if not fields:
        return name
    cells = [""] * (max(fields) + 1)
    cells[0] = name
    for number, value in fields.items():
        if number < 1:
            raise ValueError(f"{name} field number must be >= 1, got {number}")
        cells[number] = _encode_field(value, delimiters)
    return delimiters.field.join(cells).rstrip(delimiters.field)


def encode_header(name: str, fields: Mapping[int, FieldValue], delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Write a header segment (MSH, FHS, BHS) from ``{field number: value}`` for fields 3 and up.

    Field 1 (the field separator) and field 2 (the encoding characters) come from ``delimiters``.
    """
    if any(number < 3 for number in fields):
        raise ValueError(f"{name}-1 and {name}-2 are written from the delimiters")
    shifted = {number - 1: value for number, value in fields.items()}
    body = encode_segment(name, shifted, delimiters)
    return name + delimiters.field + delimiters.encoding_characters + body[4:]


def encode_msh(fields: Mapping[int, FieldValue], delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Write MSH from ``{field number: value}`` for fields 3 and up; MSH-1/2 come from ``delimiters``."""
    return encode_header("MSH", fields, delimiters)


def encode_message(segments: list[str], charset: str = "utf-8") -> bytes:
    """Join encoded segments with CR (each one ends in CR) and encode them.

    :param charset: Python codec name of the MSH-18 the segments declare (see :func:`codec_for`).
    :raises CharsetError: naming the segment, field and character that ``charset`` cannot carry.
    """
    text = "\r".join(segments) + "\r"
    try:
        return text.encode(charset)
    except UnicodeEncodeError as exc:
        raise CharsetError(f"{_locate(text, exc.start)}: character {text[exc.start]!r} cannot be sent in "
                           f"{charset}") from None


def _locate(text: str, offset: int) -> str:
    """``PID-5`` for a character offset in encoded ER7 text (field separator assumed ``|``)."""
    start = text.rfind("\r", 0, offset) + 1
    segment = text[start:offset]
    name = segment[:3]
    field = segment.count(segment[3]) if len(segment) > 3 else 0
    return f"{name}-{field + 1 if name == 'MSH' else field}"


def format_timestamp(moment: dt.datetime) -> str:
    """DTM with seconds and UTC offset (``YYYYMMDDHHMMSS+ZZZZ``), as PCD-01 requires for MSH-7.

    :raises ValueError: for a naive datetime: an HL7 time without an offset is ambiguous.
    """
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("HL7 timestamps need an aware datetime (with tzinfo)")
    return moment.strftime("%Y%m%d%H%M%S%z")


def format_date(day: dt.date) -> str:
    """DT ``YYYYMMDD`` (PID-7 date of birth)."""
    return day.strftime("%Y%m%d")
