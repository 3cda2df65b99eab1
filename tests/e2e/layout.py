"""Layout checks measured in the browser: touch target sizes, sideways scrolling, clipped content, focus.

These complement axe-core, which checks WCAG 2.2's 24 x 24 px minimum target size but not the 44 x 44 px
the kiosk is designed to, and does not look at reflow (1.4.10) or at 200 % zoom (1.4.4).
"""

from __future__ import annotations

from playwright.sync_api import Page

PORTRAIT = {"width": 1080, "height": 1920}
LANDSCAPE = {"width": 1920, "height": 1080}
# 200 % browser zoom on those screens: the same pixels, half as many CSS pixels each way.
SIZES = {"portrait": PORTRAIT, "landscape": LANDSCAPE,
         "portrait at 200 %": {"width": 540, "height": 960}, "landscape at 200 %": {"width": 960, "height": 540}}
TARGET_PX = 44

_SMALL_TARGETS = """
min => {
  const shown = el => {
    if (el.closest('dialog:not([open]), [hidden], .visually-hidden')) return false;
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    return style.display !== 'none' && style.visibility !== 'hidden' && (box.width > 0 || box.height > 0);
  };
  const controls = [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea, '
                                                 + 'summary, [role=button], [tabindex]:not([tabindex="-1"])')];
  // A radio button's or checkbox's label is where a finger lands: it is a target too.
  const labels = [...document.querySelectorAll('label')]
    .filter(l => l.control && ['radio', 'checkbox'].includes(l.control.type));
  return [...controls, ...labels].filter(shown).map(el => {
    const box = el.getBoundingClientRect();
    const text = (el.innerText || el.value || el.getAttribute('aria-label') || '').trim().slice(0, 40);
    return {what: `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} "${text}"`,
            width: Math.round(box.width * 10) / 10, height: Math.round(box.height * 10) / 10};
  }).filter(t => t.width < min || t.height < min);
}
"""

_OVERFLOW = """
() => {
  const problems = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth) {
    problems.push(`the page scrolls sideways (${root.scrollWidth} > ${root.clientWidth} px)`);
  }
  const name = el => {
    const own = typeof el.className === 'string' ? el.className.trim() : '';
    const classes = own ? '.' + own.replace(/ +/g, '.') : '';
    return `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${classes}`;
  };
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('dialog:not([open]), [hidden], .visually-hidden, script, head')) continue;
    const style = getComputedStyle(el);
    if (style.display === 'none') continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (box.left < -1 || box.right > innerWidth + 1) {
      problems.push(`${name(el)} reaches outside the screen (${Math.round(box.left)}..${Math.round(box.right)} px)`);
    }
    if (['hidden', 'clip'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`${name(el)} cuts off its content`);
    }
  }
  return problems;
}
"""

_FOCUS_SHOWN = """
() => {
  const el = document.activeElement;
  if (!el || el === document.body) return 'nothing has focus';
  if (!el.matches(':focus-visible')) return `${el.tagName} has focus but no visible focus`;
  // A radio button or checkbox shows its focus on its label (the visible tile).
  const shown = (el.type === 'radio' || el.type === 'checkbox') && el.labels.length ? el.labels[0] : el;
  const style = getComputedStyle(shown);
  return style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 3 ? '' : `${el.tagName} focus is not drawn`;
}
"""


def small_targets(page: Page) -> list[dict[str, object]]:
    """Controls, links and radio/checkbox labels shown on the page that are smaller than 44 x 44 CSS px."""
    found: list[dict[str, object]] = page.evaluate(_SMALL_TARGETS, TARGET_PX)
    return found


def overflow(page: Page) -> list[str]:
    """Sideways scrolling, elements reaching outside the screen, and content cut off by its box."""
    found: list[str] = page.evaluate(_OVERFLOW)
    return found


def focus_problem(page: Page) -> str:
    """Why the focused element does not show a visible focus indicator ("" when it does)."""
    problem: str = page.evaluate(_FOCUS_SHOWN)
    return problem


def assert_fits(page: Page, what: str) -> None:
    """At every kiosk size (portrait, landscape, and both at 200 % zoom): no sideways scrolling, nothing
    cut off, every target at least 44 x 44 px. Leaves the page at the portrait size."""
    problems = []
    try:
        for size_name, size in SIZES.items():
            page.set_viewport_size(size)
            problems += [f"{size_name}: {p}" for p in overflow(page)]
            problems += [f"{size_name}: target {t['what']} is {t['width']} x {t['height']} px"
                         for t in small_targets(page)]
    finally:
        page.set_viewport_size(PORTRAIT)
    assert not problems, f"{what}: {problems[:8]}"
