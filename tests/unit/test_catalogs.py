"""The translation catalogs compile cleanly: every message translated, plural forms as the language has them."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

CATALOGS = sorted((Path(__file__).parents[2] / "server" / "translations").glob("*/LC_MESSAGES/messages.po"))


@pytest.mark.parametrize("path", CATALOGS, ids=lambda p: p.parts[-3])
def test_catalog_is_complete_and_consistent(path: Path) -> None:
    with path.open("rb") as handle:
        catalog = read_po(handle)
    language = path.parts[-3]
    # Babel's own plural rule for the language, so `make catalog` (pybabel update) keeps the header as it is.
    assert catalog.num_plurals == get_plural(language).num_plurals
    problems = [(message.id, [str(e) for e in errors]) for message, errors in catalog.check()]
    assert problems == []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"untranslated: {message.id!r}"
        if isinstance(message.id, tuple):
            assert len(strings) == catalog.num_plurals, message.id


def test_there_is_a_spanish_catalog() -> None:
    assert [p.parts[-3] for p in CATALOGS] == ["es"]
