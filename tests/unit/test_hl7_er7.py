"""The lenient ER7 parser, the file loader and the segment writer, on fixture files and built text."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hl7.er7 import NULL
from hl7.er7 import CharsetError
from hl7.er7 import ParseError
from hl7.er7 import Repeated
from hl7.er7 import codec_for
from hl7.er7 import encode_message
from hl7.er7 import encode_msh
from hl7.er7 import encode_segment
from hl7.er7 import format_date
from hl7.er7 import format_timestamp
from hl7.er7 import load_messages
from hl7.er7 import parse_message
from hl7.escape import Delimiters

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hl7"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def only_message(name: str) -> bytes:
    (message,) = load_messages(fixture(name))
    return message


def test_lf_file_loads_as_one_message_with_all_segments() -> None:
    message = parse_message(only_message("adt_a04_lf.hl7"))
    assert message.segment_names == ("MSH", "EVN", "PID", "PV1", "ZKI")
    assert message.charset == "utf-8"
    pid = message.segment("PID")
    assert pid is not None
    assert pid.value(5, 1) == "Müller"
    assert pid.value(5, 2) == "Zoë"
    assert pid.values(3) == ("004711", "998877")
    assert pid.values(3, 4) == ("FAMCLINIC", "STATEHIE")
    assert pid.repetition_count(13) == 2
    assert pid.value(13, 12) == "+1 217 555 0100"
    assert pid.value(13, 4, repetition=2) == "zoe@example.org"
    assert pid.value(pid.field_count) == NULL
    assert message.value("ZKI", 3) == "lobby"


def test_lf_ends_a_segment_only_before_a_segment_name_and_field_separator() -> None:
    # On the wire an LF may belong to a value; "\nPID|" can only be a segment end, as "|" cannot be in a value.
    message = parse_message(b"MSH|^~\\&|A|B\nnote\nPID|1|two\nlines\r\nZKI|3\n")
    assert message.segment_names == ("MSH", "PID", "ZKI")
    assert message.value("MSH", 4) == "B\nnote"
    assert message.value("PID", 2) == "two\nlines"
    assert message.value("ZKI", 1) == "3"


@pytest.mark.parametrize("end", [b"\r", b"\n", b"\r\n"])
def test_every_line_end_reads_the_same_including_msh_18(end: bytes) -> None:
    lines = [b"MSH|^~\\&|A|B|||||ADT^A28|C1|P|2.5||||||UNICODE UTF-8", b"PID|1||M1||Zo\xc3\xab", b"PV1|1|O"]
    message = parse_message(end.join(lines) + end)
    assert message.segment_names == ("MSH", "PID", "PV1")
    assert (message.charset, message.value("PID", 5)) == ("utf-8", "Zoë")


def test_crlf_file() -> None:
    message = parse_message(only_message("siu_s12_crlf.hl7"))
    assert message.segment_names == ("MSH", "SCH", "PID", "AIP")
    assert message.value("PID", 5, 1) == "O^Brien"
    assert message.value("SCH", 25) == "Booked"
    assert message.value("SCH", 11, 4) == "20261126093000+0000"


def test_latin1_message_decodes_in_its_declared_charset() -> None:
    message = parse_message(fixture("adt_a08_latin1.hl7"))
    assert message.charset == "latin-1"
    assert message.value("PID", 5, 1) == "Brontë"
    assert message.value("PID", 5, 2) == "Chloé"
    assert message.value("PID", 11, 1) == "Rue de l'Église 3"
    assert message.value("PID", 11, 3) == "Genève"


def test_byte_invalid_in_declared_charset_raises_charset_error() -> None:
    with pytest.raises(CharsetError, match=r"0xE9 at offset \d+ is not valid in ASCII"):
        parse_message(fixture("ascii_high_byte.hl7"))


def test_latin1_bytes_declared_utf8_raise_charset_error() -> None:
    data = fixture("adt_a08_latin1.hl7").replace(b"8859/1", b"UNICODE UTF-8")
    with pytest.raises(CharsetError, match="UNICODE UTF-8"):
        parse_message(data)


def test_escapes_are_decoded_on_access_highlighting_dropped_and_unknown_ones_kept() -> None:
    message = parse_message(fixture("oru_escapes.hl7"))
    first, second = message.all("OBX")
    assert first.value(5) == "Fasting sample.\nLine two\r\nLine three; cost €5 | a^b \\ done"
    assert "\\E\\" in first.raw(5)
    assert second.value(5) == r"unknown \Zabc\ kept, \C2842\ too, \X0\ bad hex, tail\F"
    assert message.value("PID", 5, 1) == "Smith&Jones"
    assert message.value("PID", 5, 2) == "Ann"


def test_custom_delimiters_from_msh() -> None:
    message = parse_message(only_message("custom_delimiters_crlf.hl7"))
    assert message.delimiters == Delimiters("^", "~", "\\", "|", "&")
    assert message.value("MSH", 1) == "^"
    assert message.value("MSH", 2) == "~\\|&"
    assert message.value("MSH", 9, 2) == "A04"
    pid = message.segment("PID")
    assert pid is not None
    assert pid.values(3, 4) == ("FAC", "OTHER")
    assert pid.value(5, 2) == "John~Jr"


def test_batch_file_splits_into_messages_and_skips_envelope() -> None:
    messages = load_messages(fixture("batch_lf.hl7"))
    assert [parse_message(m).value("MSH", 10) for m in messages] == ["B1", "B2"]
    assert all(m.endswith(b"\r") and b"\n" not in m for m in messages)


def test_segment_before_first_msh_is_refused() -> None:
    with pytest.raises(ParseError, match="before the first MSH"):
        load_messages(b"PID|1\nMSH|^~\\&|A\n")


def test_msh_numbering_and_out_of_range_access() -> None:
    message = parse_message(b"MSH|^~\\&|APP|FAC|||20261126||ADT^A01|ID1|P|2.6\rPID|1||7^^^X^MR\r\r")
    msh = message.msh
    assert msh.value(1) == "|"
    assert msh.value(2) == "^~\\&"
    assert msh.value(3) == "APP"
    assert msh.value(10) == "ID1"
    assert msh.field_value(9) == ("ADT", "A01")
    assert message.segment_names == ("MSH", "PID")
    pid = message.all("PID")[0]
    assert pid.value(99) == ""
    assert pid.value(3, 9) == ""
    assert pid.value(3, 1, 5) == ""
    assert pid.value(3, repetition=4) == ""
    assert pid.component_count(3) == 5
    assert pid.subcomponent_count(3, 1) == 1
    assert message.segment("OBX") is None
    assert message.value("OBX", 5) == ""


def test_field_value_keeps_structure_for_re_encoding() -> None:
    message = parse_message("MSH|^~\\&|A\rZZZ|a&b^c\\T\\d~x||plain\r")
    zzz = message.segments[1]
    value = zzz.field_value(1)
    assert value == Repeated(((("a", "b"), "c&d"), "x"))
    assert zzz.field_value(3) == "plain"
    assert encode_segment("ZZZ", {1: value, 3: "plain"}) == "ZZZ|a&b^c\\T\\d~x||plain"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "does not start with an MSH"),
        (b"PID|1\r", "does not start with an MSH"),
        (b"MSH|^~\\", "does not start with an MSH"),
        (b"MSH|^^\\&|A\r", "bad MSH delimiters"),
        (b"MSH|^~\\&|A|B|C|D|E||ADT^A01|1|P|2.5||||||ISO IR87\r", "unsupported MSH-18"),
    ],
)
def test_unreadable_messages_raise_parse_error(data: bytes, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        parse_message(data)


@pytest.mark.parametrize(
    ("msh18", "codec"),
    [("", "ascii"), ("ASCII", "ascii"), ("UNICODE UTF-8", "utf-8"), ("8859/1", "latin-1"),
     (" unicode utf-8 ", "utf-8")],
)
def test_codec_for(msh18: str, codec: str) -> None:
    assert codec_for(msh18) == codec


def test_first_repetition_of_msh18_is_the_message_charset() -> None:
    message = parse_message(b"MSH|^~\\&|A|B|C|D|E||ADT^A01|1|P|2.5||||||8859/1~UNICODE UTF-8\rPID|1||\xe9\r")
    assert message.value("PID", 3) == "é"


def test_writer_trims_trailing_empties_and_escapes_every_leaf() -> None:
    segment = encode_segment("OBX", {1: "1", 3: ("a|b", "", ""), 5: (("x&y", ""), "z"), 7: "", 9: ""})
    assert segment == "OBX|1||a\\F\\b||x\\T\\y^z"
    assert encode_segment("NTE", {}) == "NTE"
    assert encode_segment("PID", {13: Repeated(("a~b", ("c", "d")))}) == "PID" + "|" * 13 + "a\\R\\b~c^d"


def test_writer_refuses_field_zero_and_msh_header_fields() -> None:
    with pytest.raises(ValueError):
        encode_segment("PID", {0: "x"})
    with pytest.raises(ValueError):
        encode_msh({2: "x"})


def test_encode_msh_and_message_round_trip() -> None:
    data = encode_message([
        encode_msh({3: ("APP", "0012A3FFFE4B5C6D", "EUI-64"), 9: ("ADT", "A04", "ADT_A01"), 10: "C1",
                    12: "2.6", 18: "UNICODE UTF-8"}),
        encode_segment("PID", {5: ("Zoë|", "")}),
    ])
    assert data.startswith(b"MSH|^~\\&|APP^0012A3FFFE4B5C6D^EUI-64||||||ADT^A04^ADT_A01|C1||2.6")
    assert data.endswith(b"\r")
    message = parse_message(data)
    assert message.value("MSH", 18) == "UNICODE UTF-8"
    assert message.value("MSH", 3, 3) == "EUI-64"
    assert message.value("PID", 5) == "Zoë|"
    assert encode_msh({}) == "MSH|^~\\&"


def test_timestamps() -> None:
    cet = dt.timezone(dt.timedelta(hours=1))
    assert format_timestamp(dt.datetime(2026, 11, 26, 9, 30, 12, 500, tzinfo=cet)) == "20261126093012+0100"
    assert format_timestamp(dt.datetime(2026, 11, 26, tzinfo=dt.UTC)) == "20261126000000+0000"
    assert format_date(dt.date(1980, 2, 14)) == "19800214"
    with pytest.raises(ValueError, match="aware"):
        format_timestamp(dt.datetime(2026, 11, 26))
