"""The one escape path: exact escape sequences, refused characters, unescaping of inbound text."""

from __future__ import annotations

import pytest

from hl7.escape import DEFAULT_DELIMITERS
from hl7.escape import CharsetError
from hl7.escape import Delimiters
from hl7.escape import EncodingError
from hl7.escape import EscapeError
from hl7.escape import escape_text
from hl7.escape import sendable_text
from hl7.escape import unescape_text

# MSH^~\|& : the field separator is ^, the escape character is |.
SWAPPED = Delimiters.from_msh("^", "~\\|&")


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain", "plain"),
        ("a|b", r"a\F\b"),
        ("O^Brien", r"O\S\Brien"),
        ("Smith & Jones", r"Smith \T\ Jones"),
        ("one~two", r"one\R\two"),
        ("C:\\dir", r"C:\E\dir"),
        ("line\rbreak", r"line\X0D\break"),
        ("line\nbreak", r"line\X0A\break"),
        ("crlf\r\n.", r"crlf\X0D\\X0A\."),
        ("Zoë €", "Zoë €"),
    ],
)
def test_escape_sequences(text: str, escaped: str) -> None:
    assert escape_text(text) == escaped
    assert unescape_text(escaped) == text


def test_text_that_looks_like_an_escape_stays_text() -> None:
    # hl7apy passes "\F\" typed by a user through, so it decodes as "|"; ours must not.
    assert escape_text(r"\F\ and \X0D\ ") == r"\E\F\E\ and \E\X0D\E\ "
    assert unescape_text(escape_text(r"\F\ and \X0D\ ")) == r"\F\ and \X0D\ "


def test_injected_segment_cannot_survive_escaping() -> None:
    forged = "SMITH\rOBX|1|NM|8867-4^Heart rate^LN||999|/min"
    escaped = escape_text(forged)
    assert not set(escaped) & set("\r\n|^~&")
    assert unescape_text(escaped) == forged


@pytest.mark.parametrize("char", ["\x00", "\x09", "\x0b", "\x1c", "\x1f", "\ud800"])
def test_unsendable_characters_are_refused_with_their_position(char: str) -> None:
    with pytest.raises(EscapeError, match=f"U\\+{ord(char):04X} at position 3"):
        escape_text("abc" + char)


def test_sendable_text_replaces_what_escape_refuses() -> None:
    assert sendable_text("a\x0bb\tc\rd") == "a\ufffdb\ufffdc\rd"
    assert escape_text(sendable_text("a\x1cb")) == "a\ufffdb"


def test_custom_delimiters_are_honoured_both_ways() -> None:
    text = "Doe^John|x~y\\z&w"
    escaped = escape_text(text, SWAPPED)
    assert escaped == r"Doe|F|John|E|x|S|y|R|z|T|w"
    assert unescape_text(escaped, SWAPPED) == text


def test_truncation_character_is_escaped_when_declared() -> None:
    v27 = Delimiters.from_msh("|", "^~\\&#")
    assert v27.encoding_characters == "^~\\&#"
    assert escape_text("room #4", v27) == r"room \P\4"
    assert unescape_text(r"room \P\4", v27) == "room #4"
    assert escape_text("room #4") == "room #4"


@pytest.mark.parametrize(
    ("escaped", "charset", "text"),
    [
        (r"\XE282AC\ 5", "utf-8", "€ 5"),
        (r"\XEB\ ", "latin-1", "ë "),
        (r"a\.br\b", "utf-8", "a\nb"),
        (r"\X0D0A\ ", "ascii", "\r\n "),
        (r"\x0d\ ", "utf-8", r"\x0d\ "),
        (r"\H\bold\N\ ", "utf-8", "bold "),
        (r"a\.sp2\b\.in+4\c\.ce\ ", "utf-8", "a\nbc "),
        (r"\.zz\ ", "utf-8", r"\.zz\ "),
        (r"\Zlocal\ ", "utf-8", r"\Zlocal\ "),
        (r"\C2842\ ", "utf-8", r"\C2842\ "),
        (r"\X0\ odd", "utf-8", r"\X0\ odd"),
        (r"\XGG\ ", "utf-8", r"\XGG\ "),
        (r"\X\ empty", "utf-8", r"\X\ empty"),
        (r"tail\F", "utf-8", r"tail\F"),
        (r"\H\\F\ ", "utf-8", "| "),
        ("\\\\", "utf-8", "\\\\"),
    ],
)
def test_unescape(escaped: str, charset: str, text: str) -> None:
    assert unescape_text(escaped, DEFAULT_DELIMITERS, charset) == text


@pytest.mark.parametrize(("escaped", "charset"), [(r"\XE9\ ", "utf-8"), (r"\XE9\ ", "ascii")])
def test_hex_escape_invalid_in_charset_raises(escaped: str, charset: str) -> None:
    with pytest.raises(CharsetError, match=charset):
        unescape_text(escaped, DEFAULT_DELIMITERS, charset)


@pytest.mark.parametrize(
    ("msh1", "msh2"),
    [("|", "^~\\"), ("|", "^~\\&#!"), ("|", "^^\\&"), ("|", "^~\\|"), ("|", "A~\\&"), ("\r", "^~\\&"),
     ("||", "^~\\&"), ("|", "^~\\é")],
)
def test_invalid_delimiters_are_refused(msh1: str, msh2: str) -> None:
    with pytest.raises(EncodingError):
        Delimiters.from_msh(msh1, msh2)


def test_default_delimiters() -> None:
    assert DEFAULT_DELIMITERS.field == "|"
    assert DEFAULT_DELIMITERS.encoding_characters == "^~\\&"
