"""HL7 v2 acknowledgements: build them (listener side), read them and decide (sender side).

:func:`classify` is pure so the dispatcher's delivery rules can be tested as a
table: it turns an :class:`Ack` into a :class:`Decision` and never touches a
socket, a clock or the outbox.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field

from hl7.er7 import CharsetError
from hl7.er7 import Component
from hl7.er7 import FieldValue
from hl7.er7 import Message
from hl7.er7 import ParseError
from hl7.er7 import Repeated
from hl7.er7 import Repetition
from hl7.er7 import Segment
from hl7.er7 import encode_message
from hl7.er7 import encode_msh
from hl7.er7 import encode_segment
from hl7.er7 import format_timestamp
from hl7.er7 import parse_message
from hl7.escape import sendable_text

__all__ = [
    "ACK_CODES",
    "DEFAULT_POLICY",
    "Ack",
    "AckPolicy",
    "Decision",
    "ErrorDetail",
    "Outcome",
    "build_ack",
    "classify",
    "parse_ack",
    "version_of",
]

ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})
"""Original-mode (A*) and enhanced-mode accept (C*) acknowledgment codes, HL7 table 0008."""

# HL7 table 0357, message error condition codes.
_ERROR_CONDITIONS: dict[str, str] = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "104": "Value too long",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}

_SEVERITIES = frozenset({"E", "W", "I", "F"})


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One ERR segment of an ACK we send.

    :param text: ERR-8 user message, for the sender's staff (escaped like every value).
    :param code: ERR-3, HL7 table 0357 (``207`` application internal error by default).
    :param severity: ERR-4: ``E`` error, ``W`` warning, ``I`` information, ``F`` fatal.
    :param segment: ERR-2.1 segment id, with ERR-2.2 ``sequence`` (1-based occurrence)
        and ERR-2.3 ``field``; leave empty when the error has no location.
    """

    text: str
    code: str = "207"
    severity: str = "E"
    segment: str = ""
    sequence: int | None = None
    field: int | None = None

    def __post_init__(self) -> None:
        if self.code not in _ERROR_CONDITIONS:
            raise ValueError(f"ERR-3 code {self.code!r} is not in HL7 table 0357")
        if self.severity not in _SEVERITIES:
            raise ValueError(f"ERR-4 severity {self.severity!r} is not one of E, W, I, F")


def _location(error: ErrorDetail) -> FieldValue:
    """ERR-2 ERL (v2.5 and later): segment, occurrence, field."""
    return (
        error.segment,
        "" if error.sequence is None else str(error.sequence),
        "" if error.field is None else str(error.field),
    )


def _condition(error: ErrorDetail) -> tuple[str, str, str]:
    """A table 0357 code as CE/CWE: code, text, coding system."""
    return (error.code, _ERROR_CONDITIONS[error.code], "HL70357")


def _legacy_location(error: ErrorDetail) -> Repetition:
    """One ERR-1 ELD (v2.3 to v2.4): segment, occurrence, field, and the 0357 code as subcomponents."""
    location = _location(error)
    assert isinstance(location, tuple)
    return (*location, _condition(error))


def _sendable_component(value: Component) -> Component:
    if isinstance(value, str):
        return sendable_text(value)
    return tuple(sendable_text(s) for s in value)


def _sendable_repetition(value: Repetition) -> Repetition:
    if isinstance(value, str):
        return sendable_text(value)
    return tuple(_sendable_component(c) for c in value)


def _echo(segment: Segment, field: int) -> FieldValue:
    """A field of the original, re-encodable whatever control characters the sender put in it."""
    value = segment.field_value(field)
    if isinstance(value, Repeated):
        return Repeated(tuple(_sendable_repetition(r) for r in value.values))
    return _sendable_repetition(value)


def version_of(text: str) -> tuple[int, ...]:
    """MSH-12 as a comparable tuple (``"2.3.1"`` → ``(2, 3, 1)``); blank or unreadable reads as 2.6."""
    try:
        return tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        return NEWEST_FORM


NEWEST_FORM = (2, 6)
"""The ACK form used for v2.5 and later, and for a version we cannot read."""

_MESSAGE_STRUCTURE_SINCE = (2, 3, 1)  # MSH-9.3 exists from v2.3.1 on
_ERR_FIELDS_SINCE = (2, 5)  # ERR-2/3/4/8; before, ERR-1 ELD and MSA-3/MSA-6 carry the error
_MSA3_LENGTH = 80  # MSA-3 ST length in v2.3 to v2.4


def build_ack(message: Message | bytes, code: str, *, errors: Sequence[ErrorDetail] = (),
              control_id: str, now: dt.datetime) -> bytes:
    """Acknowledge ``message`` with MSA-1 ``code``: MSH, MSA and the errors, in the sender's version.

    Sender and receiver are swapped (MSH-3/4 ↔ MSH-5/6), MSA-2 echoes the
    original MSH-10, and MSH-11/12 echo the original processing id and version,
    so the sender can correlate and parse the reply in its own terms. The ACK
    takes the form of the version the sender declared in MSH-12, because older
    receivers validate against their version and reject later forms:

    * v2.3: MSH-9 ``ACK^<trigger>`` (the message structure component does not exist yet);
    * v2.3.1 and v2.4: MSH-9 ``ACK^<trigger>^ACK``;
    * before v2.5: the error text in MSA-3, its table 0357 code in MSA-6, and the
      locations in ERR-1 (ELD: segment, occurrence, field, code), one repetition per error;
    * v2.5 and later: one ERR per error with ERR-2 location, ERR-3 code, ERR-4
      severity and ERR-8 text (MSA-3 is deprecated there).

    The ACK declares the original's MSH-18 and is encoded in that charset. Echoed
    fields are re-encoded with our delimiters, so an original with unusual
    delimiters cannot leak them into our reply; characters that cannot be sent
    at all are echoed as U+FFFD (or ``?`` where the charset has no U+FFFD), and
    so are they in error texts, which often quote the offending input.

    :param control_id: MSH-10 of the ACK itself (injected for deterministic tests).
    :param now: MSH-7, an aware datetime.
    :raises ValueError: for an unknown ``code``.
    :raises ParseError: if ``message`` is bytes that do not parse.
    """
    if code not in ACK_CODES:
        raise ValueError(f"acknowledgment code {code!r} is not one of {sorted(ACK_CODES)}")
    original = parse_message(message) if isinstance(message, bytes) else message
    msh = original.msh
    version = version_of(msh.value(12))
    trigger = sendable_text(msh.value(9, 2))
    header: dict[int, FieldValue] = {
        3: _echo(msh, 5),
        4: _echo(msh, 6),
        5: _echo(msh, 3),
        6: _echo(msh, 4),
        7: format_timestamp(now),
        9: ("ACK", trigger, "ACK") if version >= _MESSAGE_STRUCTURE_SINCE else ("ACK", trigger),
        10: control_id,
        11: _echo(msh, 11) or "P",
        12: _echo(msh, 12) or ".".join(map(str, NEWEST_FORM)),
    }
    if msh.value(18):
        header[18] = sendable_text(msh.value(18))
    msa: dict[int, FieldValue] = {1: code, 2: sendable_text(msh.value(10))}
    segments = [encode_msh(header)]
    if version < _ERR_FIELDS_SINCE:
        if errors:
            msa[3] = sendable_text("; ".join(e.text for e in errors))[:_MSA3_LENGTH]
            msa[6] = _condition(errors[0])
            segments += [encode_segment("MSA", msa),
                         encode_segment("ERR", {1: Repeated(tuple(_legacy_location(e) for e in errors))})]
        else:
            segments.append(encode_segment("MSA", msa))
        return _encode(segments, original.charset)
    segments.append(encode_segment("MSA", msa))
    for error in errors:
        segments.append(encode_segment("ERR", {
            2: _location(error),
            3: _condition(error),
            4: error.severity,
            8: sendable_text(error.text),
        }))
    return _encode(segments, original.charset)


def _encode(segments: list[str], charset: str) -> bytes:
    """Encode an ACK in the original's charset; what the charset cannot carry becomes ``?``.

    An ACK must always go out: refusing it because an echoed error text holds a
    character the sender's charset lacks would leave the sender retrying forever.
    """
    try:
        return encode_message(segments, charset)
    except CharsetError:
        return ("\r".join(segments) + "\r").encode(charset, errors="replace")


@dataclass(frozen=True, slots=True)
class Ack:
    """What a receiver answered: MSA-1, MSA-2 and every error text it gave.

    ``errors`` collects MSA-3 (deprecated but still sent) and, per ERR segment,
    ERR-8, else the ERR-3 text, else the v2.3 ERR-1 code text, so the dead-letter
    reason is whatever the receiver managed to say.
    """

    code: str
    control_id: str
    errors: tuple[str, ...] = ()


def _err_text(err: Segment) -> str:
    for candidate in (err.value(8), err.value(3, 2), err.value(3, 1), err.value(1, 4, 2), err.value(1, 4, 1)):
        if candidate:
            return candidate
    return ""


def parse_ack(data: bytes) -> Ack:
    """Read an ACK.

    :raises ParseError: if the bytes are not a message or hold no MSA segment with
        MSA-1; an unknown MSA-1 code is kept and left to :func:`classify`.
    :raises CharsetError: for bytes invalid in the ACK's declared charset.
    """
    message = parse_message(data)
    msa = message.segment("MSA")
    if msa is None:
        raise ParseError("acknowledgment has no MSA segment")
    code = msa.value(1).strip().upper()
    if not code:
        raise ParseError("acknowledgment has an empty MSA-1")
    texts = [msa.value(3)] + [_err_text(err) for err in message.all("ERR")]
    return Ack(code=code, control_id=msa.value(2), errors=tuple(t for t in texts if t))


class Outcome(enum.StrEnum):
    """What the dispatcher does with an outbox row after an ACK."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    PROTOCOL_ERROR = "protocol_error"


_DEFAULT_OUTCOMES: Mapping[str, Outcome] = types.MappingProxyType({
    "AA": Outcome.DELIVERED,
    "CA": Outcome.DELIVERED,
    "AR": Outcome.RETRY,
    "CE": Outcome.RETRY,
    "AE": Outcome.DEAD_LETTER,
    "CR": Outcome.DEAD_LETTER,
})


@dataclass(frozen=True, slots=True)
class AckPolicy:
    """Per-receiver meaning of acknowledgment codes.

    The default follows HL7: AR and CE describe conditions on the receiver's side
    that go away (resend later, unchanged, same MSH-10); AE and CR say the message
    itself is wrong, so resending it can only fail again and would hide the problem.
    Some receivers misuse codes (AR for a content error, AE while a database is
    down), hence ``overrides``, e.g. ``{"AE": Outcome.RETRY}``.
    """

    overrides: Mapping[str, Outcome] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.overrides) - ACK_CODES
        if unknown:
            raise ValueError(f"not acknowledgment codes: {sorted(unknown)}")
        if Outcome.PROTOCOL_ERROR in self.overrides.values():
            raise ValueError("protocol_error is reserved for mismatched or unknown ACKs")
        object.__setattr__(self, "overrides", types.MappingProxyType(dict(self.overrides)))

    def outcome(self, code: str) -> Outcome | None:
        return self.overrides.get(code, _DEFAULT_OUTCOMES.get(code))


DEFAULT_POLICY = AckPolicy()


@dataclass(frozen=True, slots=True)
class Decision:
    """The classifier's verdict and a human-readable reason for logs and the dead-letter page."""

    outcome: Outcome
    reason: str


def classify(ack: Ack, expected_control_id: str, policy: AckPolicy = DEFAULT_POLICY) -> Decision:
    """Decide what an ACK means for the message whose MSH-10 is ``expected_control_id``.

    An MSA-2 that is not ours is a protocol error, never a delivery: some peers
    answer a second message with the previous message's ACK, and taking that as
    success would lose the message. The dispatcher ignores such an ACK,
    reconnects and marks nothing delivered.
    """
    if ack.control_id != expected_control_id:
        return Decision(
            Outcome.PROTOCOL_ERROR,
            f"MSA-2 {ack.control_id!r} does not match MSH-10 {expected_control_id!r}",
        )
    outcome = policy.outcome(ack.code)
    if outcome is None:
        return Decision(Outcome.PROTOCOL_ERROR, f"unknown acknowledgment code {ack.code!r}")
    detail = "; ".join(ack.errors)
    reason = f"{ack.code}: {detail}" if detail else ack.code
    return Decision(outcome, reason)
