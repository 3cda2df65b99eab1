"""The accessibility scan itself: it must find the faults it is there to find, or every page test is hollow."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.browsers import axe_violations

BAD_PAGE = """<!doctype html><html><head></head><body>
<input type="text">
<p style="color:#bbb;background:#fff">pale text</p>
<button style="width:10px;height:10px;padding:0;border:0"></button>
</body></html>"""


def test_scan_reports_unlabelled_fields_low_contrast_and_missing_language(page: Page) -> None:
    page.set_content(BAD_PAGE)
    found = {violation["id"] for violation in axe_violations(page)}
    assert {"label", "color-contrast", "html-has-lang", "document-title", "button-name"} <= found


def test_scan_passes_a_plain_good_page(page: Page) -> None:
    page.set_content('<!doctype html><html lang="en"><head><title>Fine</title></head><body><main>'
                     '<h1>Fine</h1><label for="n">Name</label><input id="n"></main></body></html>')
    assert axe_violations(page) == []
