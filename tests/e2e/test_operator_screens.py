"""The operator's path in a real browser, continued (issue 12): Reveal and Copy in the search
across environments, narrow screens, exact times, and the keyboard journey from sign-in to a
password in the clipboard.

Chromium must be installed at /usr/bin/chromium; the tests are skipped otherwise.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from support import CHROMIUM, LAB_PASSWORD, Watcher, endpoint_body, new_page, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def both(lab):
    """An environment synced from SDDC Manager and the VCF Installer of the same lab: the
    management ESXi root accounts are held by both. One of them is given another password
    on the installer's side; returns (environment id, a shared host, the differing host)."""
    sim = lab.sim
    env_id = lab.create(
        "sfo-both",
        manager=endpoint_body(sim),
        installer=endpoint_body(
            sim, username=sim.installer_username, password=sim.installer_password
        ),
    )
    lab.wait_for(env_id, "success", "manager")
    started = lab.session.post(
        f"{lab.url}/api/v1/environments/{env_id}/sync",
        json={"source": "installer"},
        headers={"X-CSRFToken": lab.token},
    )
    assert started.status_code == 202, started.text
    lab.wait_for(env_id, "success", "installer")
    shared = lab.sql(
        "SELECT m.hostname, i.id FROM credentials m JOIN credentials i"
        " ON i.environment_id = m.environment_id AND i.hostname = m.hostname"
        " AND i.username = m.username AND i.credential_type = m.credential_type"
        " WHERE m.environment_id = ? AND m.source = 'manager' AND i.source = 'installer'"
        " AND m.username = 'root' AND m.password_mac = i.password_mac ORDER BY m.hostname",
        env_id,
    )
    assert len(shared) >= 2, shared
    lab.sql("UPDATE credentials SET password_mac = x'00' WHERE id = ?", shared[1][1])
    return env_id, shared[0][0], shared[1][0]


def _password(lab, env_id, hostname, source="manager") -> str:
    item = next(
        i
        for i in lab.get(
            f"/api/v1/environments/{env_id}/credentials",
            hostname=hostname,
            username="root",
            source=source,
        )["items"]
        if i["hostname"] == hostname and i["credential_type"] == "SSH"
    )
    response = lab.session.post(
        f"{lab.url}/api/v1/credentials/{item['id']}/reveal",
        json={"purpose": "reveal"},
        headers={"X-CSRFToken": lab.token},
    )
    return response.json()["password"]


def _search(page, text):
    # The page's modules have run once the environments are shown.
    expect(page.locator("#environments")).to_have_attribute("aria-busy", "false")
    page.fill("#global-search", text)
    expect(page.locator("#search-status")).to_contain_text("match")


def _result(page, hostname):
    """The search result row of `hostname` in the environment sfo-both."""
    return (
        page.locator("#search-results tbody tr")
        .filter(has=page.get_by_text("sfo-both", exact=True))
        .filter(has=page.locator(".col-host", has_text=hostname))
    )


def test_dashboard_search_reveals_and_copies_once_per_account(lab, admin_page, both):
    page, _ = admin_page
    env_id, shared, differing = both
    _search(page, shared)

    # The account both sources hold with one password is one row naming both sources.
    row = _result(page, shared).filter(has_text="root")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(4)).to_have_text("SDDC Manager, VCF Installer")

    # Reveal: the password of SDDC Manager, politely announced; focus and state as on the
    # environment page; a second Enter hides it.
    password = _password(lab, env_id, shared)
    reveal = row.get_by_role("button", name=re.compile("^Reveal password of "))
    expect(reveal).to_have_attribute("aria-pressed", "false")
    reveal.focus()
    page.keyboard.press("Enter")
    out = row.locator(".secret-out")
    expect(out).to_have_attribute("aria-live", "polite")
    expect(out.locator(".secret")).to_have_text(password)
    expect(out).to_contain_text("Hides in 30 s")
    expect(reveal).to_be_focused()
    expect(reveal).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Enter")
    expect(out.locator(".secret")).to_have_count(0)
    expect(reveal).to_have_attribute("aria-pressed", "false")

    # Copy: the password in the clipboard, focus stays, the toast says so.
    copy = row.get_by_role("button", name=re.compile("^Copy password of "))
    copy.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#toasts .toast").last).to_contain_text("Password copied")
    expect(copy).to_be_focused()
    assert page.evaluate("navigator.clipboard.readText()") == password

    # Both were audited, as on the environment page.
    audited = lab.sql(
        "SELECT action FROM audit_events WHERE target LIKE ? ORDER BY id DESC LIMIT 2",
        f"sfo-both / {shared} / root (SSH)",
    )
    assert sorted(a for (a,) in audited) == ["credential.copy", "credential.reveal"]

    # An account whose two copies differ: a row per source, each saying so.
    _search(page, differing)
    rows = _result(page, differing).filter(has_text="root")
    expect(rows).to_have_count(2)
    sources = sorted(rows.locator("td:nth-child(5)").all_inner_texts())
    assert sources == [
        "SDDC Manager\nAnother password in VCF Installer",
        "VCF Installer\nAnother password in SDDC Manager",
    ]


def _boxes(page, selector):
    return page.evaluate(
        """(selector) => Array.from(document.querySelectorAll(selector))
            .filter((node) => node.getClientRects().length > 0)
            .map((node) => { const r = node.getBoundingClientRect();
              return {x: r.x, y: r.y, w: r.width, h: r.height,
                      name: node.tagName + " " + (node.id || node.textContent.slice(0, 30))}; })""",
        selector,
    )


TOUCH_TARGETS = (
    "main button, main .button, main input:not([type=checkbox]):not([type=radio]),"
    " main select, main table a"
)


def _check_screen(page, width, row_selector):
    """The host and the actions of the first row are on screen, host names break only at
    dots, and every touch target is at least 32 px high."""
    first = page.locator(row_selector).first
    host = first.locator(".col-host")
    actions = first.locator("[data-action=reveal], [data-action=copy]")
    for scroll in (0, 10_000):
        page.evaluate(
            "(x) => document.querySelectorAll('.table-wrap').forEach((n) => n.scrollLeft = x)",
            scroll,
        )
        first.scroll_into_view_if_needed()
        for node in (host, *actions.all()):
            box = node.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (scroll, box)
        # Nothing of the page but the tables scrolls sideways.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    # Each label of a host name ("esx-01.", "sfo.", ...) stays on one line.
    split = page.evaluate(
        """() => Array.from(document.querySelectorAll('.col-host bdi.host span'))
            .filter((span) => span.getClientRects().length > 1).map((s) => s.textContent)"""
    )
    assert split == []
    small = [box for box in _boxes(page, TOUCH_TARGETS) if box["h"] < 32]
    assert small == [], small


@pytest.mark.parametrize("size", [(1024, 768), (390, 844)])
def test_narrow_screens_keep_host_and_actions_in_view(lab, admin_page, both, size):
    page, _ = admin_page
    width, height = size
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{lab.url}/environments/{lab.env_id}")
    expect(page.locator("#credentials-body tr")).to_have_count(50)
    page.click("#more-filters")
    _check_screen(page, width, "#credentials-body tr")

    page.goto(lab.url + "/")
    _search(page, both[1])
    expect(_result(page, both[1]).first).to_be_visible()
    _check_screen(page, width, "#search-results tbody tr")


def _exact(iso: str, zone: str) -> str:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
    return moment.strftime("%Y-%m-%d %H:%M")


def test_exact_times_are_text_in_the_operators_zone_or_utc(lab, browser):
    watcher = Watcher(lab.url)
    context, page = new_page(browser, lab, watcher, timezone_id="America/New_York")
    sign_in(page, lab, "admin", LAB_PASSWORD)
    item = lab.get(f"/api/v1/environments/{lab.env_id}/credentials", sort="hostname")["items"][0]
    page.goto(f"{lab.url}/environments/{lab.env_id}")
    row = page.locator(f'#credentials-body tr[data-id="{item["id"]}"]')
    when = row.locator("time.when")
    expect(when).to_have_attribute("datetime", item["last_changed_at"])
    # The exact time is on screen as text (no tooltip needed), in New York time.
    exact = when.locator(".exact")
    expect(exact).to_be_visible()
    local = _exact(item["last_changed_at"], "America/New_York")
    expect(exact).to_have_text(re.compile(rf"^{local} E[SD]T$"))
    assert when.get_attribute("title") is None
    sync_time = page.locator("#sources time.when .exact").first
    expect(sync_time).to_have_text(re.compile(r" E[SD]T$"))

    # "Show times in UTC": chosen on the preferences page with the keyboard, kept.
    page.get_by_role("link", name="Your account").click()
    page.get_by_role("link", name="Preferences").click()
    expect(page.locator("h1")).to_have_text("Preferences")
    utc = page.get_by_label("Show times in UTC")
    utc.focus()
    page.keyboard.press("Space")
    expect(utc).to_be_checked()
    page.keyboard.press("Enter")
    expect(page.locator(".flash")).to_have_text("Preferences saved.")
    expect(page.get_by_label("Show times in UTC")).to_be_checked()
    page.goto(f"{lab.url}/environments/{lab.env_id}")
    expect(exact).to_have_text(_exact(item["last_changed_at"], "UTC") + " UTC")

    page.goto(lab.url + "/preferences")
    page.get_by_label("In the time zone of this browser").check()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.locator(".flash")).to_have_text("Preferences saved.")
    watcher.check()
    context.close()


# Keys (other than the characters typed) from the sign-in page to a host's password in the
# clipboard: Tab to the password, Enter to sign in, then, in the search that has the focus,
# 3 Tabs (host, Reveal, Copy) and Enter. It was about 46 before issue 12.
JOURNEY_KEYS = 6


def test_keyboard_journey_from_sign_in_to_the_clipboard(lab, browser):
    watcher = Watcher(lab.url)
    context, page = new_page(browser, lab, watcher)
    host = next(
        item["hostname"]
        for item in lab.get(
            f"/api/v1/environments/{lab.env_id}/credentials", resource_type="ESXI", username="root"
        )["items"]
    )
    password = _password(lab, lab.env_id, host)
    keys = typed = 0

    def press(key):
        nonlocal keys
        page.keyboard.press(key)
        keys += 1

    def type_text(text):
        nonlocal typed
        page.keyboard.type(text)
        typed += len(text)

    page.goto(lab.url + "/login")
    expect(page.locator("#username")).to_be_focused()
    type_text("admin")
    press("Tab")
    type_text(LAB_PASSWORD)
    press("Enter")
    search = page.locator("#global-search")
    expect(search).to_be_focused()
    type_text(host)
    expect(page.locator("#search-status")).to_contain_text("match")
    copy = page.locator("#search-results tbody tr").first.locator("[data-action=copy]")
    while keys < JOURNEY_KEYS + 2 and not copy.evaluate("(n) => n === document.activeElement"):
        press("Tab")
    expect(copy).to_be_focused()
    press("Enter")
    expect(page.locator("#toasts .toast").last).to_contain_text("Password copied")
    assert page.evaluate("navigator.clipboard.readText()") == password
    print(f"keyboard journey: {keys} keys and {typed} typed characters")
    assert keys <= JOURNEY_KEYS
    watcher.check()
    context.close()


@pytest.mark.parametrize("size", [(1366, 768), (1280, 800)])
def test_a_laptop_screen_keeps_the_bar_on_one_line_and_the_first_row_in_view(lab, admin_page, size):
    page, _ = admin_page
    width, height = size
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{lab.url}/environments/{lab.env_id}")
    first = page.locator("#credentials-body tr").first
    expect(first.locator("input.select-row")).to_be_visible()
    first.locator("input.select-row").check()  # the actions bar shows too
    expect(page.locator("#actions-bar")).to_be_visible()
    # The top bar is one line: every link and button of it on the same row.
    tops = {round(box["y"] + box["h"] / 2) for box in _boxes(page, ".topbar a, .topbar button")}
    assert max(tops) - min(tops) <= 4, tops
    # The first row, its checkbox and its Reveal are on screen without scrolling.
    row = first.bounding_box()
    assert row["y"] + row["height"] <= height, row
    for node in (first.locator("input.select-row"), first.locator("[data-action=reveal]")):
        box = node.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_a_phone_shows_every_item_of_the_navigation(lab, admin_page):
    page, _ = admin_page
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(lab.url + "/")
    links = _boxes(page, ".topbar nav a, .topbar .who a, .topbar .who button")
    names = [box["name"] for box in links]
    assert any("Settings" in name for name in names), names
    for box in links:
        assert box["x"] >= 0 and box["x"] + box["w"] <= 390, box


def test_a_revealed_password_has_a_readable_view_for_typing(lab, admin_page):
    page, _ = admin_page
    page.goto(f"{lab.url}/environments/{lab.env_id}")
    first = page.locator("#credentials-body tr").first
    first.locator("[data-action=reveal]").click()
    password = first.locator(".secret").inner_text()
    assert password
    first.locator(".readable-open").click()
    dialog = page.locator("#readable-dialog")
    expect(dialog).to_be_visible()
    groups = dialog.locator(".ch-group")
    expect(groups).to_have_count((len(password) + 3) // 4)
    shown = page.evaluate(
        """() => Array.from(document.querySelectorAll('#readable-password .ch-group'))
            .map((g) => Array.from(g.children).filter((c) => !c.classList.contains('ch-position'))
              .map((c) => [c.textContent, c.className]))"""
    )
    kinds = {"ch-upper": str.isupper, "ch-lower": str.islower, "ch-digit": str.isdigit}
    flat = [pair for group in shown for pair in group]
    assert "".join(" " if text == "\u2423" else text for text, _ in flat) == password
    for text, kind in flat:
        if kind in kinds:
            assert kinds[kind](text) and text.isascii(), (text, kind)
        else:
            assert kind in ("ch-symbol", "ch-space") and not text.isalnum(), (text, kind)
    positions = dialog.locator(".ch-position").all_inner_texts()
    assert positions[:3] == ["1", "5", "9"][: len(positions)]
    # Never in an attribute, and gone when the view closes.
    in_attributes = page.evaluate(
        """(secret) => Array.from(document.querySelectorAll('*')).some((node) =>
            Array.from(node.attributes).some((a) => a.value.includes(secret)))""",
        password,
    )
    assert not in_attributes
    page.keyboard.press("Escape")
    expect(dialog).not_to_be_visible()
    expect(dialog.locator("#readable-password")).to_be_empty()
    expect(first.locator(".readable-open")).to_be_focused()
