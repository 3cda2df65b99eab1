"""Every decoder against the vendors' own sample frames and lines, never against our simulators.

Each ``*.sample`` file under ``tests/fixtures/devices/`` is a frame or line
transcribed from a manual or a cited public capture, with the source, page and
date in its comments and the values the vendor says it means. The bytes are fed
whole and byte by byte; both must give exactly those values and no rejection.
A driver without any vendor sample must say so in its protocol module's
docstring, so the gap is written down where the layout is.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from devices import drivers
from devices.protocols.base import FrameRejected
from tests.dev_helpers import decode_split
from tests.dev_helpers import measurements
from tests.dev_helpers import read_sample
from tests.dev_helpers import vendor_samples

SAMPLES = vendor_samples()


def _values(events: list[object]) -> list[tuple[object, ...]]:
    """What a sample's expectations state: metric, value, unit and flags (device time is checked elsewhere)."""
    return [(m.metric, m.value, m.unit, m.flags) for m in measurements(events)]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: f"{path.parent.name}/{path.stem}")
@pytest.mark.parametrize("split", ["whole", "bytes"])
def test_vendor_sample_decodes_to_what_the_vendor_says(path: Path, split: str) -> None:
    sample = read_sample(path)
    assert sample.data, "a sample without bytes tests nothing"
    decoder = drivers.get(sample.driver).decoder(**sample.options)
    events = decode_split(decoder, sample.data, split)
    assert _values(events) == _values(sample.expected)
    assert sum(isinstance(event, FrameRejected) for event in events) == sample.rejected


def test_every_sample_names_its_source() -> None:
    for path in SAMPLES:
        comments = [line for line in path.read_text().splitlines() if line.startswith("#")]
        assert comments, f"{path.name} has no source comment"
        assert any(char.isdigit() for char in " ".join(comments)), f"{path.name} names no page or date"


@pytest.mark.parametrize("name", drivers.names())
def test_every_driver_has_a_vendor_sample_or_says_why_not(name: str) -> None:
    if any(read_sample(path).driver == name for path in SAMPLES):
        return
    decoder = drivers.get(name).decoder
    module = importlib.import_module(getattr(decoder, "func", decoder).__module__)
    docstring = " ".join((module.__doc__ or "").split()).lower()
    assert "no vendor sample" in docstring, f"{name}: no vendor sample and no note saying so"
