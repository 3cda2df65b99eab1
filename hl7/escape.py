"""The one escaping path for HL7 v2 ER7 text, both directions.

Every value we write goes through :func:`escape_text`; every value we read goes
through :func:`unescape_text`. Keeping a single path is what makes injection
impossible: a patient named ``SMITH\\rOBX|1|NM|…`` must stay one name and never
become a segment.

Why not a library: hl7apy 1.3.5 writes CR/LF inside values raw (a forged OBX
segment after re-parsing) and passes user text that merely *looks* like an
escape (``\\F\\``) through unchanged; python-hl7 writes malformed hex escapes
(``\\X a\\``, odd digit counts, Latin-1 code points in UTF-8 messages). Our rule:

* the escape character becomes ``\\E\\`` and every delimiter its escape
  (``\\F\\ \\S\\ \\T\\ \\R\\``, and ``\\P\\`` for a v2.7 truncation character);
  ``str.translate`` does this in one pass, so the order question (escape
  character first) never arises;
* CR and LF become ``\\X0D\\`` and ``\\X0A\\`` (always two hex digits per byte);
* every other C0 control character and any lone surrogate is refused with
  :class:`EscapeError`: they cannot be carried safely (0x0B and 0x1C are MLLP
  framing bytes) and silently dropping them would alter what the patient typed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field

__all__ = [
    "CharsetError",
    "DEFAULT_DELIMITERS",
    "Delimiters",
    "EncodingError",
    "EscapeError",
    "escape_text",
    "find_unsendable",
    "sendable_text",
    "unescape_text",
]


class EncodingError(ValueError):
    """Base class of every encoding problem raised by ``hl7.escape`` and ``hl7.er7``."""


class EscapeError(EncodingError):
    """Text that cannot be represented in an HL7 v2 field (a control character, a lone surrogate)."""


class CharsetError(EncodingError):
    """Bytes that are not valid in the character set the message declares (MSH-18)."""


_SPECIAL_ASCII = frozenset("\r\n")

# C0 controls other than CR (0x0D) and LF (0x0A), and UTF-16 surrogates, which no charset can encode.
_FORBIDDEN = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The five (or six) characters that give ER7 its structure, as MSH-1 and MSH-2 declare them.

    Receivers must honour whatever a sender declares (``MSH^~\\|&`` exists in the wild),
    so nothing here assumes the defaults.
    """

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""
    # Derived once per delimiter set: escape_text runs for every leaf of every message.
    _table: dict[int, str] = dataclass_field(init=False, repr=False, compare=False)
    _special: re.Pattern[str] = dataclass_field(init=False, repr=False, compare=False)
    _named: dict[str, str] = dataclass_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        chars = [self.field, self.component, self.repetition, self.escape, self.subcomponent]
        if self.truncation:
            chars.append(self.truncation)
        for char in chars:
            if len(char) != 1 or char.isalnum() or char in _SPECIAL_ASCII or not char.isascii():
                raise EncodingError(f"invalid HL7 delimiter {char!r}")
        if len(set(chars)) != len(chars):
            raise EncodingError(f"HL7 delimiters are not distinct: {''.join(chars)!r}")
        object.__setattr__(self, "_table", _escape_table(self))
        object.__setattr__(self, "_special", re.compile(
            "[" + re.escape("".join(chars)) + "\r\n" + _FORBIDDEN.pattern[1:-1] + "]"
        ))
        object.__setattr__(self, "_named", _named_escapes(self))

    def plain(self, text: str) -> bool:
        """True when ``text`` holds no delimiter, escape, line break or control character: it reads, and is
        sent, as itself."""
        return self._special.search(text) is None

    @classmethod
    def from_msh(cls, msh1: str, msh2: str) -> Delimiters:
        """Build from the field separator (MSH-1) and the encoding characters (MSH-2).

        The same few delimiter sets arrive over and over, and a set is immutable,
        so each is built once and shared: deriving its tables cost as much as
        parsing the rest of a short message.

        :raises EncodingError: if MSH-2 is not 4 or 5 distinct, non-alphanumeric characters.
        """
        return _delimiters_from_msh(msh1, msh2)

    @property
    def encoding_characters(self) -> str:
        """The MSH-2 value: component, repetition, escape, subcomponent (and truncation) characters."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


@functools.lru_cache(maxsize=64)
def _delimiters_from_msh(msh1: str, msh2: str) -> Delimiters:
    if len(msh2) not in (4, 5):
        raise EncodingError(f"MSH-2 must hold 4 or 5 encoding characters, got {msh2!r}")
    return Delimiters(field=msh1, component=msh2[0], repetition=msh2[1], escape=msh2[2], subcomponent=msh2[3],
                      truncation=msh2[4] if len(msh2) == 5 else "")


def _escape_table(delimiters: Delimiters) -> dict[int, str]:
    e = delimiters.escape
    table = {
        ord(delimiters.escape): f"{e}E{e}",
        ord(delimiters.field): f"{e}F{e}",
        ord(delimiters.component): f"{e}S{e}",
        ord(delimiters.subcomponent): f"{e}T{e}",
        ord(delimiters.repetition): f"{e}R{e}",
        0x0D: f"{e}X0D{e}",
        0x0A: f"{e}X0A{e}",
    }
    if delimiters.truncation:
        table[ord(delimiters.truncation)] = f"{e}P{e}"
    return table


def _named_escapes(delimiters: Delimiters) -> dict[str, str]:
    named = {
        "F": delimiters.field,
        "S": delimiters.component,
        "T": delimiters.subcomponent,
        "R": delimiters.repetition,
        "E": delimiters.escape,
        "H": "",
        "N": "",
        ".br": "\n",
    }
    if delimiters.truncation:
        named["P"] = delimiters.truncation
    return named


DEFAULT_DELIMITERS = Delimiters()


def escape_text(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Escape one leaf value (a component or subcomponent) for ER7.

    :param text: the value as the user or the system holds it.
    :param delimiters: the message's delimiters (MSH-1, MSH-2).
    :returns: text safe to place between delimiters; it never contains a delimiter,
        CR or LF.
    :raises EscapeError: for C0 control characters other than CR/LF and for lone
        surrogates, naming the character and its position.
    """
    if delimiters.plain(text):
        return text
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        raise EscapeError(
            f"character U+{ord(bad.group()):04X} at position {bad.start()} cannot be sent in HL7 v2"
        )
    return text.translate(delimiters._table)


def find_unsendable(text: str) -> str | None:
    """The first character :func:`escape_text` would refuse, or ``None`` when all of ``text`` can be sent."""
    bad = _FORBIDDEN.search(text)
    return None if bad is None else bad.group()


def sendable_text(text: str) -> str:
    """Replace every character :func:`escape_text` refuses with U+FFFD.

    Only for echoing text we did not author, such as a sender's MSH-3 in our ACK:
    refusing to acknowledge because the sender's own header holds a control
    character would leave it retrying forever.
    """
    return _FORBIDDEN.sub("\ufffd", text)


def _decode_hex(digits: str, charset: str) -> str | None:
    if not digits or len(digits) % 2:
        return None
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        return None
    try:
        return raw.decode(charset)
    except UnicodeDecodeError as exc:
        raise CharsetError(f"escape \\X{digits}\\ holds bytes that are not valid {charset}") from exc


_LAYOUT_COMMANDS = (".in", ".ti", ".sk", ".ce", ".fi", ".nf")


def _formatting(sequence: str) -> str | None:
    """A formatted-text command (``.sp2``, ``.in+4`` …) as plain text, or ``None`` if it is not one."""
    if sequence.startswith(".sp"):
        return "\n"
    if sequence.startswith(_LAYOUT_COMMANDS):
        return ""
    return None


def unescape_text(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS, charset: str = "utf-8") -> str:
    """Undo ER7 escaping of one leaf value.

    Handles ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` (and ``\\P\\`` when MSH-2 declares a
    truncation character), ``\\Xhh…\\`` as bytes decoded in the message charset, and
    the formatting commands: ``\\.br\\`` and ``\\.sp…\\`` become a line feed, while
    highlighting (``\\H\\`` on, ``\\N\\`` off) and the other layout commands
    (``\\.in…\\``, ``\\.ti…\\``, ``\\.sk…\\``, ``\\.ce\\``, ``\\.fi\\``, ``\\.nf\\``) are
    dropped: they say how to show the text, not what it is, and kept as literal
    text they would come back out as ``\\E\\H\\E\\``. Anything else (``\\Zxx\\``,
    ``\\Cxxyy\\``, malformed hex, an unterminated escape) is kept verbatim: it is a
    local extension or a sender's mistake, and keeping it loses nothing.

    :param charset: Python codec name of the message charset (see ``hl7.er7.codec_for``).
    :raises CharsetError: if a hex escape decodes to bytes invalid in ``charset``.
    """
    e = delimiters.escape
    start = text.find(e)
    if start < 0:
        return text
    named = delimiters._named
    out: list[str] = []
    pos = 0
    while start >= 0:
        end = text.find(e, start + 1)
        if end < 0:
            break
        sequence = text[start + 1 : end]
        replacement = named.get(sequence)
        if replacement is None and sequence[:1] == "X":
            replacement = _decode_hex(sequence[1:], charset)
        elif replacement is None and sequence[:1] == ".":
            replacement = _formatting(sequence)
        if replacement is None:
            # Unknown: keep the opening escape character and rescan from the next one,
            # so that "\H\\F\" still decodes its "\F\".
            out.append(text[pos:end])
            pos = end
            start = end
            continue
        out.append(text[pos:start])
        out.append(replacement)
        pos = end + 1
        start = text.find(e, pos)
    out.append(text[pos:])
    return "".join(out)
