"""The audit trail's hash chain: how a row is linked to the one before it, and how the chain is checked.

Each ``audit_event`` row carries ``seq`` (1, 2, 3 … without gaps, in commit
order) and ``chain_hash = SHA-256(previous chain_hash ‖ "\\n" ‖ canonical row)``,
starting from :data:`GENESIS`. The canonical row is a JSON array of ``seq`` and
every recorded field, so changing any field, a ``seq``, or the order of rows
breaks the chain from that row on, and deleting a row leaves a gap. The head
(last ``seq`` and hash) is kept in ``audit_chain_head``, so rows cut from the
end are missed too; an operator who keeps the head printed by
``frontdesk audit verify`` somewhere else can also tell if the whole chain was
rewritten.

Pure functions only: the service layer and the migration that chained the rows
written before this existed both use them, so they cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import typing as t
from dataclasses import dataclass

GENESIS = "0" * 64
FIELDS = ("at", "actor_type", "actor_id", "action", "outcome", "patient_id", "resource_type", "resource_id",
          "address", "correlation_id", "detail")


def canonical(seq: int, values: t.Mapping[str, t.Any]) -> bytes:
    """The bytes a row's hash covers: ``seq`` and :data:`FIELDS` in order, times as UTC with microseconds."""
    row: list[t.Any] = [seq]
    for name in FIELDS:
        value = values[name]
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC).isoformat(timespec="microseconds")
        row.append(value)
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def link(previous: str, seq: int, values: t.Mapping[str, t.Any]) -> str:
    """The ``chain_hash`` of the row numbered ``seq`` whose predecessor's hash is ``previous``."""
    return hashlib.sha256(previous.encode("ascii") + b"\n" + canonical(seq, values)).hexdigest()


@dataclass(frozen=True)
class Finding:
    """The first place the chain does not hold, in words for an operator."""

    seq: int
    row_id: int | None
    problem: str

    def __str__(self) -> str:
        where = f"audit row {self.seq}" + (f" (id {self.row_id})" if self.row_id is not None else "")
        return f"{where}: {self.problem}"


def first_break(rows: t.Iterable[t.Mapping[str, t.Any]], head_seq: int,
                head_hash: str) -> tuple[Finding | None, int]:
    """Walk rows in ``seq`` order and return the first break (or ``None``) and how many rows were checked.

    :param rows: each stored row (``id``, ``seq``, ``chain_hash`` and :data:`FIELDS`), ordered by ``seq``.
    :param head_seq: the last ``seq`` the chain head records.
    :param head_hash: the hash the chain head records.
    """
    previous, expected, last_id, checked = GENESIS, 1, 0, 0
    for row in rows:
        seq, row_id = row["seq"], row["id"]
        if seq is None:
            return Finding(expected, row_id, "is not in the chain (no sequence number)"), checked
        if seq > expected:
            return Finding(expected, None, f"is missing (deleted): the next row found is {seq}"), checked
        if seq < expected:
            return Finding(seq, row_id, "appears twice"), checked
        if row_id <= last_id:
            return Finding(seq, row_id, "is out of order (reordered)"), checked
        if link(previous, seq, row) != row["chain_hash"]:
            return Finding(seq, row_id, "was altered: its hash does not match its contents and predecessor"), checked
        previous, expected, last_id, checked = row["chain_hash"], expected + 1, row_id, checked + 1
    if head_seq != expected - 1:
        if head_seq > expected - 1:
            return Finding(expected, None, f"is missing (deleted): the chain head says {head_seq} rows"), checked
        return Finding(head_seq + 1, None, "is beyond the chain head (the head was altered)"), checked
    if head_hash != previous:
        return Finding(head_seq, None, "does not match the chain head's hash (the head was altered)"), checked
    return None, checked
