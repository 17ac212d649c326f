"""A ranger opens the running dashboard in a real browser (Debian's chromium, driven by Playwright)
and sees the reserve, the herd and the alerts, with nothing fetched from outside the machine."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from browser_helpers import (
    ACCOUNTS,
    PHONE_AGENT,
    RESERVE,
    SMALL_PHONE,
    TEXT_CONTRASTS_JS,
    backup_holds_the_store,
    primary_button_contrasts,
    running_dashboard,
    seeded_sqlite,
    sign_in,
)
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from lora_bridge.access import Viewer
from lora_bridge.service import open_bridge
from ranger_dashboard import data, markers, navigation, palette, serving
from ranger_dashboard.headless_browser import CHROMIUM, CHROMIUM_ARGS
from ranger_dashboard.views import NOT_LIVE_HEADLINE
from tembo.local_services import free_port

RANGER = Viewer("ranger.amani", "ranger")

WAIT_MS = 60_000
RETRY_S = 4  # the backup stories' pages try again this often (launch.command's refresh_s)
DESK = {"width": 1400, "height": 1000}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One Chromium for the module's stories; each opens a browser context of its own (its own cookies,
    its own Streamlit session), as another ranger's browser would be."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def seeded_dashboard(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """The dashboard over a seeded store of its own, shared by the stories that only read it (no alert
    taken, no animal or fence changed): its base URL and the store's URL."""
    folder = tmp_path_factory.mktemp("seeded-dashboard")
    store = seeded_sqlite(f"sqlite:///{folder / 'tembo.db'}")
    with running_dashboard(free_port(), store, folder / "dashboard.log") as base_url:
        yield base_url, store


def colour_pixels(image: Image.Image, rgb: list[int], tolerance: int = 16) -> int:
    """How many pixels of `image` are within `tolerance` of `rgb` on every channel."""
    r0, g0, b0 = rgb[:3]
    return sum(
        count
        for count, (r, g, b) in image.convert("RGB").getcolors(image.width * image.height)
        if abs(r - r0) <= tolerance and abs(g - g0) <= tolerance and abs(b - b0) <= tolerance
    )


def colour_centre(image: Image.Image, rgb: list[int], tolerance: int = 16) -> tuple[int, int]:
    """The (x, y) centre of the pixels of `image` within `tolerance` of `rgb`."""
    r0, g0, b0 = rgb[:3]
    rgb_image = image.convert("RGB")
    xs, ys = [], []
    for y in range(rgb_image.height):
        for x in range(rgb_image.width):
            r, g, b = rgb_image.getpixel((x, y))
            if abs(r - r0) <= tolerance and abs(g - g0) <= tolerance and abs(b - b0) <= tolerance:
                xs.append(x)
                ys.append(y)
    return sum(xs) // len(xs), sum(ys) // len(ys)


def map_image(page: Page, wanted: dict[str, list[int]], timeout_s: float = WAIT_MS / 1000) -> Image.Image:
    """A screenshot of the deck map once every colour in `wanted` is drawn (or the last one), taken
    again after two more frames while it is not."""
    chart = page.locator("[data-testid='stDeckGlJsonChart']").first
    deadline = time.monotonic() + timeout_s
    while True:
        image = Image.open(io.BytesIO(chart.screenshot()))
        if all(colour_pixels(image, rgb) > 0 for rgb in wanted.values()) or time.monotonic() > deadline:
            return image
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def click_animal(page: Page, x: int, y: int, name: str) -> None:
    """Click the animal drawn at (x, y) of the map once the map picks it: its tooltip shows on hover
    first (a click before deck.gl can pick, on a loaded machine, selects nothing)."""
    chart = page.locator("[data-testid='stDeckGlJsonChart']").first
    tooltip = page.get_by_text(re.compile(rf"^{name} · ")).first
    deadline = time.monotonic() + WAIT_MS / 1000
    wiggle = 0
    while True:  # deck.gl picks on pointer moves: move again until it names the animal
        chart.hover(position={"x": x + wiggle, "y": y})
        try:
            tooltip.wait_for(timeout=2_000)
            break
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise
            wiggle = 1 - wiggle
    chart.click(position={"x": x + wiggle, "y": y})


@pytest.mark.browser
def test_ranger_sees_reserve_herd_and_alerts_in_chromium_without_internet(seeded_dashboard, chromium, tmp_path):
    base_url, store = seeded_dashboard
    bridge = open_bridge(store)
    ids = {a.name: a.animal_id for a in bridge.animals(viewer=RANGER)}
    kito_id, amani_id = ids["Kito"], ids["Amani"]
    bridge.close()
    context = chromium.new_context(viewport=DESK)
    try:
        page = context.new_page()
        outside: list[str] = []
        page.on(
            "request",
            lambda request: (
                None
                if request.url.startswith((base_url, "data:", "blob:"))
                else outside.append(request.url)
            ),
        )
        page.goto(base_url)
        sign_in(page, "amina")
        page.wait_for_selector("[data-testid='stDeckGlJsonChart'] canvas", timeout=WAIT_MS)
        page.get_by_text("Zawadi", exact=True).first.wait_for(state="attached", timeout=WAIT_MS)

        wanted = {
            "boundary": palette.GEOGRAPHY_LINE["boundary"],
            "normal (Amani)": palette.STATE_COLOURS["normal"],
            "alert (Zawadi, Kito)": palette.STATE_COLOURS["alert"],
            "mortality ring (Kito)": palette.PRIORITY_COLOURS[300],
            "gateway": palette.GATEWAY_COLOUR,
        }
        image = map_image(page, wanted)
        image.save(tmp_path / "live_map.png")
        page.screenshot(path=str(tmp_path / "live_page.png"), full_page=True)
        missing = [name for name, rgb in wanted.items() if colour_pixels(image, rgb) == 0]
        assert not missing, f"not drawn on the map: {missing} (see {tmp_path / 'live_map.png'})"

        x, y = colour_centre(image, palette.STATE_COLOURS["normal"])
        click_animal(page, x, y, "Amani")
        page.wait_for_url(re.compile(rf"/animals\?(.*&)?animal={amani_id}(&|$)"), timeout=WAIT_MS)
        page.get_by_role("heading", name="Amani").first.wait_for(timeout=WAIT_MS)

        page.get_by_role("link", name="Alerts (2)").click()
        page.get_by_text("Possible mortality", exact=False).first.wait_for(timeout=WAIT_MS)
        page.screenshot(path=str(tmp_path / "alerts_page.png"), full_page=True)
        assert "/alerts" in page.url

        page.get_by_role("link", name="Show on the live map").click()
        page.wait_for_url(re.compile(rf"[?&]animal={kito_id}(&|$)"), timeout=WAIT_MS)
        page.wait_for_selector("[data-testid='stDeckGlJsonChart'] canvas", timeout=WAIT_MS)
        focused = map_image(
            page, {"focus ring": palette.LABEL_COLOUR, "Kito": palette.STATE_COLOURS["alert"]}
        )
        focused.save(tmp_path / "focused_map.png")
        assert colour_pixels(focused, palette.STATE_COLOURS["alert"]) > 0
        assert colour_pixels(focused, palette.STATE_COLOURS["normal"]) == 0  # Amani is out of view

        assert outside == [], f"the dashboard reached outside the machine: {outside}"
    finally:
        context.close()


PHONE = {"width": 390, "height": 844}


@pytest.mark.browser
@pytest.mark.parametrize("screen", ["desk", "phone"])
def test_ranger_acknowledges_an_alert_in_chromium_and_the_store_has_it(sqlite_url, port, tmp_path, screen, chromium):
    bridge = open_bridge(seeded_sqlite(sqlite_url))
    mortality = bridge.open_alerts(viewer=RANGER)[0]
    bridge.close()
    with running_dashboard(port, sqlite_url, tmp_path / "dashboard.log") as base_url:
        if screen == "phone":
            context = chromium.new_context(viewport=PHONE, user_agent=PHONE_AGENT, is_mobile=True, has_touch=True)
        else:
            context = chromium.new_context(viewport=DESK)
        try:
            page = context.new_page()
            page.goto(base_url)
            sign_in(page, "amina")
            page.wait_for_selector("[data-testid='stDeckGlJsonChart'] canvas", timeout=WAIT_MS)
            page.wait_for_selector(
                "#tembo-map-ready[data-animals='3']", state="attached", timeout=WAIT_MS
            )
            page.screenshot(path=str(tmp_path / f"{screen}_map.png"))
            chart = page.locator("[data-testid='stDeckGlJsonChart']").first.bounding_box()
            first_metric = page.locator("[data-testid='stMetric']").first.bounding_box()
            # On a desk the numbers stand beside the map; on a phone they follow it.
            assert chart["y"] <= first_metric["y"], "the map comes before the numbers"
            if screen == "phone":
                assert chart["y"] + chart["height"] / 2 < PHONE["height"], (
                    "the map is on the first screen"
                )
                assert page.locator("[data-testid='stAppDeployButton']").count() == 0

            # A sign-in lives in the browser's Streamlit session: go to the alerts by the menu.
            if screen == "phone":
                page.locator("[data-testid='stExpandSidebarButton']").click()
            page.locator("[data-testid='stSidebarNavLink'][href$='/alerts']").click()
            if screen == "phone":  # the open sidebar covers the page on a phone: close it
                collapse = page.locator("[data-testid='stSidebarCollapseButton'] button")
                if collapse.is_visible():
                    collapse.click()
            card = page.locator(f".st-key-alert-card-{mortality.alert_id}")
            acknowledge = card.get_by_role("button", name="Acknowledge")
            expect(acknowledge).to_be_enabled(timeout=WAIT_MS)
            card_box, button_box = card.bounding_box(), acknowledge.bounding_box()
            assert card_box["y"] <= button_box["y"] <= card_box["y"] + card_box["height"], (
                "the button sits in the alert"
            )
            page.screenshot(path=str(tmp_path / f"{screen}_alerts.png"), full_page=True)
            acknowledge.click()
            page.get_by_text("Alert acknowledged by amina.").wait_for(timeout=WAIT_MS)
            stored = open_bridge(sqlite_url)
            try:
                alert = stored.alert(mortality.alert_id, viewer=RANGER)
            finally:
                stored.close()
            assert (alert.state, alert.acknowledged_by) == ("acknowledged", "amina")
        finally:
            context.close()


@contextmanager
def page_of_amina_during_backups(chromium: Browser, sqlite_url: str, port: int, tmp_path: Path,
                                 monkeypatch) -> Iterator[Page]:
    """Amina signed in at a desk on the dashboard over the seeded store, whose waits for a busy store
    are short (500 ms) and whose pages try again every RETRY_S (the operator's `refresh_s`, 15 s by
    default: a test would wait up to that long for the page to turn live by itself), for tests in which
    a backup (`backup_holds_the_store`) takes it."""
    monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "500")
    with running_dashboard(port, sqlite_url, tmp_path / "dashboard.log", refresh_s=RETRY_S) as base_url:
        context = chromium.new_context(viewport=DESK)
        try:
            page = context.new_page()
            page.goto(base_url)
            sign_in(page, "amina")
            yield page
        finally:
            context.close()


def not_live_notice(page: Page) -> str:
    """The whole "Not live" notice the page shows, once it shows one."""
    notice = page.get_by_text(NOT_LIVE_HEADLINE).first
    notice.wait_for(timeout=WAIT_MS)
    assert page.get_by_text(data.STORE_BUSY_MESSAGE).count() == 0
    return notice.locator("xpath=ancestor::*[@data-testid='stAlertContainer'][1]").inner_text()


@pytest.mark.browser
def test_ranger_keeps_the_herd_she_last_saw_marked_stale_while_a_backup_holds_the_store(
    sqlite_url, port, tmp_path, monkeypatch, chromium
):
    # Amina follows a mortality alert on the live map at night. A backup takes the store's write lock
    # while she reloads the page: the map had vanished behind "store busy". She keeps the herd she last
    # saw (same animals, same alert ring), told it is not live, when it was read and when the page
    # tries again; once the backup ends the map is live again by itself.
    seeded_sqlite(sqlite_url)
    live = "#tembo-map-ready[data-animals='3'][data-stale='live']"
    stale = "#tembo-map-ready[data-animals='3']:not([data-stale='live'])"
    with page_of_amina_during_backups(chromium, sqlite_url, port, tmp_path, monkeypatch) as page:
        rings = page.wait_for_selector(live, state="attached", timeout=WAIT_MS).get_attribute("data-alerts")
        first = map_image(page, {"mortality ring (Kito)": palette.PRIORITY_COLOURS[300]})

        with backup_holds_the_store(sqlite_url):
            page.reload()
            marker = page.wait_for_selector(stale, state="attached", timeout=WAIT_MS)
            assert marker.get_attribute("data-alerts") == rings, "the alert rings she saw"
            page.wait_for_selector("[data-testid='stDeckGlJsonChart'] canvas", timeout=WAIT_MS)
            told = not_live_notice(page)
            assert re.search(r"last read, at \d\d:\d\d:\d\d UTC", told), told
            assert f"tries again every {RETRY_S} s" in told, told
            wanted = {
                "normal (Amani)": palette.STATE_COLOURS["normal"],
                "alert (Zawadi, Kito)": palette.STATE_COLOURS["alert"],
                "mortality ring (Kito)": palette.PRIORITY_COLOURS[300],
            }
            image = map_image(page, wanted)
            image.save(tmp_path / "stale_map.png")
            missing = [name for name, rgb in wanted.items() if colour_pixels(image, rgb) == 0]
            assert not missing, f"not drawn while the store is busy: {missing}"
            (x0, y0), (x1, y1) = (colour_centre(i, palette.PRIORITY_COLOURS[300]) for i in (first, image))
            assert abs(x1 - x0) <= 3 and abs(y1 - y0) <= 3, "the ring where she saw it (its name aside)"

        page.wait_for_selector(live, state="attached", timeout=WAIT_MS)  # the panel's own refresh
        expect(page.get_by_text(NOT_LIVE_HEADLINE)).to_have_count(0, timeout=WAIT_MS)


@pytest.mark.browser
def test_ranger_keeps_her_open_alerts_with_their_buttons_off_while_a_backup_holds_the_store(
    sqlite_url, port, tmp_path, monkeypatch, chromium
):
    # Amina works a mortality alert at night on the Alerts page. A backup takes the store's write lock
    # while she reloads: the queue had vanished behind "store busy". She keeps the alerts she last saw,
    # told they are not live, when they were read and when the page tries again; Acknowledge cannot be
    # pressed while they are not live (she could act on an alert someone else already took). Once the
    # backup ends the queue is live by itself and she can act.
    with open_bridge(seeded_sqlite(sqlite_url)) as bridge:
        mortality = bridge.open_alerts(viewer=RANGER)[0]
    live = f"#{markers.ALERTS_READY_ID}[data-alerts='2'][data-stale='live']"
    stale = f"#{markers.ALERTS_READY_ID}[data-alerts='2']:not([data-stale='live'])"
    with page_of_amina_during_backups(chromium, sqlite_url, port, tmp_path, monkeypatch) as page:
        page.locator("[data-testid='stSidebarNavLink'][href$='/alerts']").click()
        page.wait_for_selector(live, state="attached", timeout=WAIT_MS)
        acknowledge = page.locator(f".st-key-alert-card-{mortality.alert_id}").get_by_role(
            "button", name="Acknowledge")
        expect(acknowledge).to_be_enabled(timeout=WAIT_MS)

        with backup_holds_the_store(sqlite_url):
            page.reload()
            page.wait_for_selector(stale, state="attached", timeout=WAIT_MS)
            told = not_live_notice(page)
            assert re.search(r"open alerts last read, at \d\d:\d\d:\d\d UTC", told), told
            assert f"tries again every {RETRY_S} s" in told, told
            expect(page.get_by_text("Possible mortality").first).to_be_visible(timeout=WAIT_MS)
            expect(acknowledge).to_be_disabled(timeout=WAIT_MS)
            page.screenshot(path=str(tmp_path / "stale_alerts.png"), full_page=True)

        page.wait_for_selector(live, state="attached", timeout=WAIT_MS)  # the queue's own refresh
        expect(page.get_by_text(NOT_LIVE_HEADLINE)).to_have_count(0, timeout=WAIT_MS)
        expect(acknowledge).to_be_enabled(timeout=WAIT_MS)


@pytest.mark.browser
def test_the_animal_page_kept_during_a_backup_turns_live_by_itself_once_the_backup_ends(
    sqlite_url, port, tmp_path, monkeypatch, chromium
):
    # Amina has an animal's page open when a backup takes the store and she reloads: she keeps the page
    # she saw, marked not live; the page (which does not refresh itself when live) tries again by itself
    # and is live once the backup ends, without her reloading.
    seeded_sqlite(sqlite_url)
    live = f"#{markers.ANIMAL_READY_ID}[data-stale='live']"
    stale = f"#{markers.ANIMAL_READY_ID}:not([data-stale='live'])"
    with page_of_amina_during_backups(chromium, sqlite_url, port, tmp_path, monkeypatch) as page:
        page.locator("[data-testid='stSidebarNavLink'][href$='/animals']").click()
        shown = page.wait_for_selector(live, state="attached", timeout=WAIT_MS).get_attribute("data-animal")

        with backup_holds_the_store(sqlite_url):
            page.reload()
            marker = page.wait_for_selector(stale, state="attached", timeout=WAIT_MS)
            assert marker.get_attribute("data-animal") == shown, "the animal she was shown"
            not_live_notice(page)

        page.wait_for_selector(live, state="attached", timeout=WAIT_MS)  # no reload: the page's own retry
        expect(page.get_by_text(NOT_LIVE_HEADLINE)).to_have_count(0, timeout=WAIT_MS)


def _outside(url: str) -> bool:
    """True for a request that would leave the machine (anything but this host, data: and blob:)."""
    parts = urlsplit(url)
    return parts.scheme not in ("data", "blob") and parts.hostname not in ("127.0.0.1", "localhost")


@pytest.mark.browser
def test_control_room_without_internet_fetches_nothing_from_outside_on_any_page_an_admin_opens(
    seeded_dashboard, chromium, tmp_path
):
    # The control room has no internet. Every page an admin may open (the most pages of any role) is
    # loaded in Chromium with every request of the browser context recorded, the map's tiles, fonts,
    # scripts and workers included: none may go anywhere but this machine (each is refused on the way,
    # as the control room's missing uplink would). And at night every primary button on them ("Sign in",
    # "Import", "Save") reads at WCAG AA's 4.5:1, as the rest of their words do.
    base_url, store = seeded_dashboard
    bridge = open_bridge(store)
    admin = bridge.viewer_for_session(bridge.sign_in("ada", ACCOUNTS["ada"][1])[1])
    bridge.close()
    ready = {
        "live": f"#{markers.MAP_READY_ID}[data-animals='3']",
        "alerts": f"#{markers.ALERTS_READY_ID}",
        "animals": f"#{markers.ANIMAL_READY_ID}",
        "herd": f"#{markers.HERD_READY_ID}[data-editable='true']",  # its forms drawn, Save among them
        "geofences": "[data-testid='stMain'] button:has-text('Import')",  # its fence file form drawn
    }
    paths = navigation.page_paths_for(admin)
    assert {"live", "alerts", "animals", "audit"} <= set(paths)
    context = chromium.new_context(viewport=DESK)
    try:
        outside: list[str] = []
        context.on("request", lambda request: outside.append(request.url) if _outside(request.url) else None)
        context.route(lambda url: _outside(url), lambda route: route.abort("internetdisconnected"))
        page = context.new_page()
        page.goto(base_url)
        page.get_by_role("button", name="Sign in").wait_for(timeout=WAIT_MS)
        buttons = {"login": primary_button_contrasts(page)}
        sign_in(page, "ada")
        page.wait_for_selector(ready["live"], state="attached", timeout=WAIT_MS)  # signed in
        for path in paths:
            page.goto(f"{base_url}/{'' if path == 'live' else path}")
            if path in ready:
                page.wait_for_selector(ready[path], state="attached", timeout=WAIT_MS)
            else:
                page.locator("[data-testid='stMain'] h1").first.wait_for(timeout=WAIT_MS)
            for chart in page.locator("[data-testid='stDeckGlJsonChart']").all():
                chart.locator("canvas").first.wait_for(timeout=WAIT_MS)
            page.screenshot(path=str(tmp_path / f"offline_{path}.png"), full_page=True)
            buttons[path] = primary_button_contrasts(page)
        assert outside == [], f"the dashboard reached outside the machine: {sorted(set(outside))}"
        read = {text for found in buttons.values() for _, text, _, _ in found}
        assert {"Sign in", "Import", "Save"} <= read, f"primary buttons read: {sorted(read)}"
        faint = {path: [c for c in found if c[0] < 4.5] for path, found in buttons.items()}
        assert not any(faint.values()), f"primary buttons too faint to read at night: {faint}"
    finally:
        context.close()


@contextmanager
def alerts_on_a_small_phone(chromium: Browser, base_url: str) -> Iterator[Page]:
    """Amina's Alerts page on a 360 x 740 phone, signed in on the dashboard at base_url (over the seeded
    store)."""
    context = chromium.new_context(viewport=SMALL_PHONE, user_agent=PHONE_AGENT, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(base_url)
        sign_in(page, "amina")
        page.wait_for_selector(f"#{markers.MAP_READY_ID}", state="attached", timeout=WAIT_MS)
        page.goto(f"{base_url}/alerts")
        page.wait_for_selector(f"#{markers.ALERTS_READY_ID}", state="attached", timeout=WAIT_MS)
        yield page
    finally:
        context.close()


@pytest.mark.browser
def test_ranger_reads_the_alerts_at_night_on_a_small_phone(seeded_dashboard, chromium, tmp_path):
    # At night in the bush on a 360 x 740 phone: the page is dark (no white glare), every word of the
    # alerts stands out from what it is written on (WCAG AA, 4.5:1), nothing runs off the right edge,
    # and the most urgent alert's card with its Acknowledge button is on the first screen.
    base_url, store = seeded_dashboard
    with open_bridge(store) as bridge:
        mortality = bridge.open_alerts(viewer=RANGER)[0]
    with alerts_on_a_small_phone(chromium, base_url) as page:
        card = page.locator(f".st-key-alert-card-{mortality.alert_id}")
        acknowledge = card.get_by_role("button", name="Acknowledge")
        expect(acknowledge).to_be_enabled(timeout=WAIT_MS)
        page.screenshot(path=str(tmp_path / "night_phone_alerts.png"))
        page.screenshot(path=str(tmp_path / "night_phone_alerts_full.png"), full_page=True)

        body = page.evaluate("() => getComputedStyle(document.querySelector('.stApp')).backgroundColor")
        assert sum(int(v) for v in re.findall(r"\d+", body)[:3]) < 3 * 60, f"a dark page, not {body}"
        contrasts = page.evaluate(TEXT_CONTRASTS_JS, page.locator("[data-testid='stMain']").element_handle())
        assert any("mortality" in text.lower() for _, text, _, _ in contrasts), "the alert was read"
        faint = [c for c in contrasts if c[0] < 4.5]
        assert not faint, f"text too faint to read at night: {faint[:8]}"
        width = page.evaluate("() => document.scrollingElement.scrollWidth")
        assert width <= SMALL_PHONE["width"], f"the page runs {width - SMALL_PHONE['width']} px off the screen"
        card_box, button_box = card.bounding_box(), acknowledge.bounding_box()
        assert card_box["x"] >= 0 and card_box["x"] + card_box["width"] <= SMALL_PHONE["width"]
        assert button_box["y"] + button_box["height"] <= SMALL_PHONE["height"], "Acknowledge on the first screen"

        # She opens the resolve form and gives her verdict: the Resolve button reads at 4.5:1 too.
        card.get_by_role("button", name="Resolve…").click()
        card.get_by_text("True alert", exact=True).click()
        resolve = card.get_by_role("button", name="Resolve", exact=True)
        expect(resolve).to_be_enabled(timeout=WAIT_MS)
        contrasts = primary_button_contrasts(page)
        assert any(text == "Resolve" for _, text, _, _ in contrasts), f"Resolve not read: {contrasts}"
        faint = [c for c in contrasts if c[0] < 4.5]
        assert not faint, f"a primary button too faint to read at night: {faint}"


# Where a name and the age after it are drawn in the first element under `root` holding both:
# [name's left, name's right, name's top, age's left, age's top] (the age: the number of '· 15 d ago').
NAME_AND_AGE_BOXES_JS = """
([root, name]) => {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent, at = text.indexOf(name);
    const age = /· (\\d+) (min|h|d) ago/.exec(text);
    if (at < 0 || !age) continue;
    const box = (start, end) => { const r = document.createRange(); r.setStart(node, start); r.setEnd(node, end);
                                  return r.getBoundingClientRect(); };
    const named = box(at, at + name.length), number = box(age.index + 2, age.index + 2 + age[1].length);
    return [named.left, named.right, named.top, number.left, number.top];
  }
  return null;
}
"""
ARABIC_NAME = "نجمة"  # Najma, "star"


@pytest.mark.browser
def test_ranger_reads_the_age_of_an_alert_on_an_animal_with_an_arabic_name_after_its_name_on_a_small_phone(
    sqlite_url, port, tmp_path, chromium
):
    # A reserve names its elephants in Arabic. On Amina's 360 px phone the mortality card of Najma read
    # "Possible mortality · 15 · نجمة d ago": the browser laid the age out with the right-to-left name,
    # so the number stood before it. The name is set apart from the words around it: the age follows it.
    with open_bridge(seeded_sqlite(sqlite_url)) as bridge:
        bridge.register_animal("collar-003", ARABIC_NAME)  # Kito, whose collar raised the mortality alert
        mortality = bridge.open_alerts(viewer=RANGER)[0]
    assert mortality.name == ARABIC_NAME
    with running_dashboard(port, sqlite_url, tmp_path / "dashboard.log") as base_url, \
            alerts_on_a_small_phone(chromium, base_url) as page:
        card = page.locator(f".st-key-alert-card-{mortality.alert_id}")
        card.get_by_role("button", name="Acknowledge").wait_for(timeout=WAIT_MS)
        page.screenshot(path=str(tmp_path / "arabic_name_alerts.png"))
        boxes = page.evaluate(NAME_AND_AGE_BOXES_JS, [card.element_handle(), ARABIC_NAME])
    assert boxes is not None, "the card names the animal and says how long ago"
    name_left, name_right, name_top, age_left, age_top = boxes
    same_line = abs(age_top - name_top) < 4
    assert (same_line and age_left >= name_right) or age_top > name_top, (
        f"the age is drawn before the name: name {name_left:.0f}-{name_right:.0f}, age at {age_left:.0f}"
    )


@pytest.mark.browser
def test_visitor_kiosk_hands_the_browser_no_exact_position_in_its_page_data_or_map_routes(sqlite_url, port, tmp_path,
                                                                                          chromium):
    # A poacher at the visitor centre's screen opens the browser's developer tools: nothing the kiosk
    # sent (the page, its websocket messages with the map's JSON and tooltips, the names and tracks
    # routes) holds any exact fix of the herd, nor the exact place of the mortality alert.
    bridge = open_bridge(seeded_sqlite(sqlite_url))
    exact = {
        value
        for track in bridge.tracks(viewer=RANGER).values()
        for fix in track
        for value in (round(fix.lat, 5), round(fix.lon, 5))
    }
    bridge.close()
    reserve = {round(float(v), 5) for f in RESERVE["features"] for v in re.findall(r"-?\d+\.\d+", str(f["geometry"]))}
    forbidden = sorted(exact - reserve)
    assert len(forbidden) > 10
    received: list[str] = []
    with serving.running(port, sqlite_url, tmp_path / "dashboard.log", role="visitor") as base_url:
        context = chromium.new_context(viewport=DESK)
        try:
            page = context.new_page()

            def keep_frame(payload: str | bytes) -> None:
                received.append(payload.decode("latin-1") if isinstance(payload, bytes) else payload)

            page.on("websocket", lambda socket: socket.on("framereceived", keep_frame))
            with page.expect_response(lambda r: "/map/tracks.json" in r.url, timeout=WAIT_MS) as tracks:
                with page.expect_response(lambda r: "/map/names/" in r.url, timeout=WAIT_MS) as names:
                    page.goto(base_url)
                    page.wait_for_selector(f"#{markers.MAP_READY_ID}[data-animals='3']", state="attached",
                                           timeout=WAIT_MS)
            received += [tracks.value.text(), names.value.text(), page.content()]
        finally:
            context.close()
    everything = "\n".join(received)
    assert '"lat":' in everything, "the map's JSON was among what the kiosk sent"
    leaked = [v for v in forbidden if re.search(rf"(?<![\d.]){re.escape(repr(v))}(?!\d)", everything)]
    assert not leaked, f"exact coordinates handed to the visitor kiosk: {leaked}"
