"""A real browser for end-to-end tests: Debian's Chromium driven by Playwright, with axe-core.

Playwright's own browser download needs the internet, so tests drive the
system Chromium (``chromium`` on PATH, installed by ``make test``). axe-core
comes from the ``axe-playwright-python`` wheel, which ships ``axe.min.js``;
we inject that file ourselves so the rule tags are ours to choose.
"""

from __future__ import annotations

import shutil
import typing as t
from importlib import resources

from playwright.sync_api import Browser
from playwright.sync_api import Page
from playwright.sync_api import Playwright

# Without these, Chromium reaches out to Google services at start and on a
# closed network stalls on refused connections.
CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps",
)
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa")


def chromium_path() -> str | None:
    """The system Chromium, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright: Playwright, *, ignore_https_errors: bool = False) -> Browser:
    """Start headless Chromium from the system package."""
    path = chromium_path()
    if path is None:
        raise RuntimeError("chromium is not installed: run 'make test' (as root it installs the Debian package "
                           "'chromium'), or install it with 'apt-get install chromium'")
    args = list(CHROMIUM_ARGS)
    if ignore_https_errors:
        args.append("--ignore-certificate-errors")
    return playwright.chromium.launch(executable_path=path, headless=True, args=args)


def axe_source() -> str:
    """The axe-core script, as shipped inside the ``axe_playwright_python`` package."""
    return resources.files("axe_playwright_python").joinpath("axe.min.js").read_text(encoding="utf-8")


def axe_violations(page: Page, *, tags: t.Sequence[str] = WCAG_TAGS) -> list[dict[str, t.Any]]:
    """Run axe-core on the page as it is now and return its violations (empty when the page passes).

    The script is evaluated rather than added as a ``<script>`` tag, so the
    page's Content-Security-Policy (no inline or foreign script) stays in force.
    """
    page.evaluate(axe_source())
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        list(tags))
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "targets": [n["target"] for n in v["nodes"]][:5]} for v in result["violations"]]


def assert_accessible(page: Page, what: str) -> None:
    """Fail with axe-core's findings when the page has any WCAG 2.x A/AA violation."""
    violations = axe_violations(page)
    assert not violations, f"{what}: accessibility violations: {violations}"
