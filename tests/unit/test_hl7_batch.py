"""HL7 batches: split into messages (any line end, each message in its own charset) and the response batch."""

from __future__ import annotations

import datetime as dt

import pytest

from hl7.batch import build_batch_ack
from hl7.batch import is_batch
from hl7.batch import split_batch
from hl7.er7 import ParseError
from hl7.er7 import parse_message

NOW = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)
LATIN1 = b"MSH|^~\\&|EPIC|MAIN|FD|CL|20261126||ADT^A28|M1|P|2.5||||||8859/1\nPID|1||1||Bront\xeb\n"
UTF8 = b"MSH|^~\\&|EPIC|MAIN|FD|CL|20261126||ADT^A28|M2|P|2.5||||||UNICODE UTF-8\r\nPID|1||2||Zo\xc3\xab\r\n"


def test_a_file_batch_splits_into_messages_each_read_in_its_own_charset() -> None:
    data = b"FHS|^~\\&|EPIC|MAIN|FD|CL|||||F1\nBHS|^~\\&|EPIC|MAIN|FD|CL|||||B1\n" + LATIN1 + UTF8 + b"BTS|2\nFTS|1\n"
    assert is_batch(data) and not is_batch(LATIN1)
    batch = split_batch(data)
    assert batch.file_header is not None and batch.batch_header is not None
    assert (batch.file_header.value(11), batch.batch_header.value(3), batch.batch_header.value(11)) == (
        "F1", "EPIC", "B1")
    names = [parse_message(m).value("PID", 5) for m in batch.messages]
    assert names == ["Brontë", "Zoë"]
    assert all(m.endswith(b"\r") and b"\n" not in m for m in batch.messages)


def test_the_response_batch_references_the_original_and_counts_its_acks() -> None:
    batch = split_batch(b"BHS|^~\\&|EPIC|MAIN|FD|CL|||||B1\r" + LATIN1.replace(b"\n", b"\r") + b"BTS|1\r")
    answer = build_batch_ack(batch, [b"MSH|x\rMSA|AA|M1\r"], control_id="R1", now=NOW)
    assert answer == (b"BHS|^~\\&|FD|CL|EPIC|MAIN|20261126093000+0000||||R1|B1\r"
                      b"MSH|x\rMSA|AA|M1\rBTS|1\r")


@pytest.mark.parametrize("data", [b"MSH|^~\\&|A\r", b"BHS|^~\\&|A\rPID|1\r", b"BHS|^~\r", b"FHS|\r"])
def test_a_batch_that_cannot_be_read_raises_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        split_batch(data)
