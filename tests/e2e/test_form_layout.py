"""Checkboxes and radio buttons sit on the line of their labels (Settings → Security, the
notification channel form, the break-glass schedule), in the real browser."""

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
    "path",
    [
        "/settings/security",
        "/settings/notifications/channels/new?kind=email",
        "/settings/break-glass",
    ],
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


def test_delete_environment_is_set_apart_from_save(lab, browser):
    watcher = Watcher(lab.url)
    context, page = new_page(browser, lab, watcher)
    try:
        sign_in(page, lab, "admin", LAB_PASSWORD)
        page.goto(f"{lab.url}/environments/{lab.env_id}/edit")
        save = page.locator("#save").bounding_box()
        zone = page.locator(".danger-zone").bounding_box()
        delete = page.locator("#delete-environment")
        # A separate card well below Save, and disabled until the name is typed.
        assert zone["y"] - (save["y"] + save["height"]) >= 48, (save, zone)
        assert delete.is_disabled()
        watcher.check()
    finally:
        context.close()
