"""Property tests for the one escape path and the ER7 parser.

Invariants:
* any sendable text, escaped and placed in a field, reads back as exactly that
  text (our parser, and hl7apy followed by our unescape, since hl7apy does not
  unescape on parse) and never adds a segment, field, repetition, component or
  subcomponent. hl7apy 1.3.5 only knows one-letter escapes and re-escapes our
  ``\\X0D\\`` as ``\\E\\X0D\\E\\`` when it parses, so its values are compared for text
  without CR/LF and its structure for all text;
* unsendable text raises :class:`EscapeError` and nothing else;
* arbitrary bytes after an MSH header parse or raise an ``EncodingError``, and
  an ACK can be built for anything that parses.
"""

from __future__ import annotations

import datetime as dt
import itertools

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message as hl7apy_parse
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from hl7.ack import build_ack
from hl7.ack import parse_ack
from hl7.er7 import encode_message
from hl7.er7 import encode_msh
from hl7.er7 import encode_segment
from hl7.er7 import parse_message
from hl7.escape import DEFAULT_DELIMITERS
from hl7.escape import Delimiters
from hl7.escape import EncodingError
from hl7.escape import EscapeError
from hl7.escape import escape_text
from hl7.escape import sendable_text
from hl7.escape import unescape_text

UNSENDABLE = [chr(c) for c in range(0x20) if c not in (0x0A, 0x0D)]
SPECIAL = list("|^~\\&#\r\nXE0DFSTR.br") + ["\\X0D\\", "\\F\\", "\\E\\", "\\.br\\", "\\H\\"]

sendable_char = st.characters(blacklist_categories=("Cs",), blacklist_characters=UNSENDABLE)
sendable = st.lists(st.one_of(st.sampled_from(SPECIAL), sendable_char), max_size=40).map("".join)
delimiter_sets = st.permutations(list("|^~\\&#!$*@")).flatmap(
    lambda chars: st.sampled_from([
        Delimiters.from_msh(chars[0], "".join(chars[1:5])),
        Delimiters.from_msh(chars[0], "".join(chars[1:6])),
    ])
)
NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)


@given(sendable, delimiter_sets)
def test_escape_round_trips_and_hides_every_delimiter(text: str, delimiters: Delimiters) -> None:
    escaped = escape_text(text, delimiters)
    assert unescape_text(escaped, delimiters) == text
    structural = {delimiters.field, delimiters.component, delimiters.repetition, delimiters.subcomponent,
                  delimiters.truncation, "\r", "\n"} - {""}
    assert not structural & set(escaped)


@given(sendable, st.sampled_from(UNSENDABLE + ["\ud800", "\udfff"]), sendable)
def test_unsendable_text_raises_escape_error(before: str, bad: str, after: str) -> None:
    text = before + bad + after
    try:
        escape_text(text)
    except EscapeError:
        pass
    else:
        raise AssertionError(f"{text!r} was escaped")
    assert escape_text(sendable_text(text)) is not None


def message_with(texts: tuple[str, str, str], delimiters: Delimiters = DEFAULT_DELIMITERS) -> bytes:
    family, given_name, comment = texts
    return encode_message([
        encode_msh({3: "APP", 4: "FAC", 7: "20261126093012+0000", 9: ("ADT", "A04", "ADT_A01"), 10: "C1",
                    11: "P", 12: "2.6", 18: "UNICODE UTF-8"}, delimiters),
        encode_segment("EVN", {2: "20261126093012+0000"}, delimiters),
        encode_segment("PID", {3: ("1", "", "", "FAC", "MR"), 5: ((family, "x"), given_name), 7: "19800101"},
                       delimiters),
        encode_segment("PV1", {2: "O", 3: (comment, "", "", "FAC")}, delimiters),
    ])


def wrap(texts: tuple[str, str, str]) -> tuple[str, str, str]:
    """Never-empty values: trailing empty components are not written, which is not what is tested here."""
    first, second, third = texts
    return f"<{first}>", f"<{second}>", f"<{third}>"


@given(st.tuples(sendable, sendable, sendable).map(wrap), delimiter_sets)
def test_field_placement_with_our_parser(texts: tuple[str, str, str], delimiters: Delimiters) -> None:
    message = parse_message(message_with(texts, delimiters))
    assert message.segment_names == ("MSH", "EVN", "PID", "PV1")
    pid = message.all("PID")[0]
    pv1 = message.all("PV1")[0]
    assert (pid.field_count, pid.repetition_count(5), pid.component_count(5)) == (7, 1, 2)
    assert pid.subcomponent_count(5, 1) == 2
    assert pid.value(5, 1, 1) == texts[0]
    assert pid.value(5, 1, 2) == "x"
    assert pid.value(5, 2) == texts[1]
    assert pid.value(7) == "19800101"
    assert (pv1.field_count, pv1.component_count(3)) == (3, 4)
    assert pv1.value(3, 1) == texts[2]
    assert pv1.value(3, 4) == "FAC"


def hl7apy_shape(data: bytes) -> tuple[object, ...]:
    message = hl7apy_parse(data.decode("utf-8"), validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)
    pid = message.pid
    xpn = pid.pid_5[0]
    return (
        tuple(s.name for s in message.children),
        tuple(f.name for f in pid.children),
        len(pid.pid_5),
        len(xpn.children),
        len(xpn.xpn_1.children),
        len(message.pv1.pv1_3[0].children),
    )


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.tuples(sendable, sendable, sendable).map(wrap))
def test_field_placement_with_hl7apy(wrapped: tuple[str, str, str]) -> None:
    data = message_with(wrapped)
    assert hl7apy_shape(data) == hl7apy_shape(message_with(("<a>", "<b>", "<c>")))
    if any("\r" in t or "\n" in t for t in wrapped):
        return
    message = hl7apy_parse(data.decode("utf-8"), validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)
    xpn = message.pid.pid_5[0]
    assert unescape_text(xpn.xpn_1.children[0].to_er7()) == wrapped[0]
    assert unescape_text(xpn.xpn_2.to_er7()) == wrapped[1]
    assert unescape_text(message.pv1.pv1_3[0].pl_1.to_er7()) == wrapped[2]


HEADERS = [b"MSH|^~\\&|", b"MSH|^~\\&|A|B|C|D|20261126||ACK|1|P|2.6||||||8859/1\r",
           b"MSH|^~\\&|A|B|C|D|20261126||ADT^A04|1|P|2.6||||||UNICODE UTF-8\r"]


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(HEADERS), st.binary(max_size=200),
       st.lists(st.sampled_from([b"|", b"^", b"~", b"\\", b"&", b"\r", b"\\X", b"MSA|AE|", b"ERR|"]),
                max_size=20))
def test_parser_and_ack_never_fail_outside_the_error_family(header: bytes, noise: bytes,
                                                            tokens: list[bytes]) -> None:
    data = header + b"".join(itertools.chain.from_iterable(zip(tokens, [noise] * len(tokens), strict=True))) + noise
    try:
        message = parse_message(data)
    except EncodingError:
        return
    try:
        for segment in message.segments:
            for field in range(1, segment.field_count + 1):
                segment.field_value(field)
        reply = build_ack(message, "AE", control_id="A1", now=NOW)
    except EncodingError:
        return
    ack = parse_ack(reply)
    assert ack.code == "AE"
    assert ack.control_id == sendable_text(message.value("MSH", 10))
