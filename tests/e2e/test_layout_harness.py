"""The layout checks themselves (tests/e2e/layout.py): they must find what they look for."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.e2e.layout import assert_fits
from tests.e2e.layout import focus_problem
from tests.e2e.layout import overflow
from tests.e2e.layout import small_targets

BAD_PAGE = """<!doctype html><html lang="en"><head><title>Bad</title></head><body style="margin:0">
<a href="#x" id="tiny-link">x</a>
<input type="radio" id="r" name="r"><label for="r" style="font-size:10px">one</label>
<button id="flat" style="height:30px;width:200px">Flat</button>
<div id="wide" style="width:1500px">too wide</div>
<div id="cut" style="width:100px;overflow:hidden;white-space:nowrap">a line far longer than its box allows</div>
<button id="plain" style="outline:none;min-height:60px">No ring</button>
</body></html>"""

GOOD_PAGE = """<!doctype html><html lang="en"><head><title>Good</title>
<style>button { min-height: 48px; min-width: 48px; } :focus-visible { outline: 4px solid #fd0; }</style></head>
<body><main><h1>Good</h1><button>Fine</button></main></body></html>"""


def test_small_targets_links_radios_and_their_labels_are_found(page: Page) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    page.set_content(BAD_PAGE)
    found = {t["what"].split(" ")[0] for t in small_targets(page)}
    assert {"a#tiny-link", "input#r", "label", "button#flat"} <= found
    assert "button#plain" not in found


def test_sideways_scrolling_and_cut_off_content_are_found(page: Page) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    page.set_content(BAD_PAGE)
    problems = " ".join(overflow(page))
    assert "scrolls sideways" in problems and "div#wide reaches outside" in problems
    assert "div#cut cuts off its content" in problems


def test_a_focus_without_a_ring_is_found(page: Page) -> None:
    page.set_content(BAD_PAGE)
    page.locator("#plain").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")                                        # focused by keyboard: :focus-visible
    assert "not drawn" in focus_problem(page)


def test_a_plain_good_page_fits_everywhere(page: Page) -> None:
    page.set_content(GOOD_PAGE)
    assert_fits(page, "good page")
    page.keyboard.press("Tab")
    assert focus_problem(page) == ""
    page.set_content(BAD_PAGE)
    with pytest.raises(AssertionError, match="reaches outside"):
        assert_fits(page, "bad page")
