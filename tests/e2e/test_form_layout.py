"""Checkboxes and radio buttons sit on the line of their labels (Settings → Security, the
notification channel form), in the real browser."""

from __future__ import annotations

import pytest
from support import CHROMIUM, LAB_PASSWORD, Watcher, new_page, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")

# For each input with a label: the vertical overlap of the two boxes, in pixels.
_OVERLAPS = """() => Array.from(document.querySelectorAll(
    'input[type=checkbox], input[type=radio]')).filter(i => i.id && i.offsetParent).map(i => {
  const label = document.querySelector(`label[for="${i.id}"]`);
  if (!label) return null;
  const a = i.getBoundingClientRect(), b = label.getBoundingClientRect();
  return [i.id, Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top), b.left - a.right];
}).filter(Boolean)"""


@pytest.mark.parametrize(
    "path", ["/settings/security", "/settings/notifications/channels/new?kind=email"]
)
def test_boxes_sit_beside_their_labels(lab, browser, path):
    watcher = Watcher(lab.url)
    context, page = new_page(browser, lab, watcher)
    try:
        sign_in(page, lab, "admin", LAB_PASSWORD)
        page.goto(lab.url + path)
        found = page.evaluate(_OVERLAPS)
        assert found, "no labelled checkbox or radio button on the page"
        for name, overlap, gap in found:
            assert overlap > 5, f"{name}: its label is on another line"
            assert 0 <= gap < 24, f"{name}: its label is {gap:.0f} px away"
        watcher.check()
    finally:
        context.close()
