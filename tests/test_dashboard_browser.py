"""A ranger opens the running dashboard in a real browser (Debian's chromium, driven by Playwright)
and sees the reserve, the herd and the alerts, with nothing fetched from outside the machine."""

from __future__ import annotations

import io
import re
import time

import pytest
from browser_helpers import running_dashboard, seed, sign_in
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from lora_bridge.access import Viewer
from lora_bridge.service import open_bridge
from ranger_dashboard import palette
from ranger_dashboard.headless_browser import CHROMIUM, CHROMIUM_ARGS

RANGER = Viewer("ranger.amani", "ranger")

WAIT_MS = 60_000


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
def test_ranger_sees_reserve_herd_and_alerts_in_chromium_without_internet(sqlite_url, port, tmp_path):
    bridge = open_bridge(sqlite_url)
    seed(bridge)
    ids = {a.name: a.animal_id for a in bridge.animals(viewer=RANGER)}
    kito_id, amani_id = ids["Kito"], ids["Amani"]
    bridge.close()
    with running_dashboard(port, sqlite_url, tmp_path / "dashboard.log") as base_url:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
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
                browser.close()


PHONE = {"width": 390, "height": 844}
PHONE_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


@pytest.mark.browser
@pytest.mark.parametrize("screen", ["desk", "phone"])
def test_ranger_acknowledges_an_alert_in_chromium_and_the_store_has_it(sqlite_url, port, tmp_path, screen):
    bridge = open_bridge(sqlite_url)
    seed(bridge)
    mortality = bridge.open_alerts(viewer=RANGER)[0]
    bridge.close()
    with running_dashboard(port, sqlite_url, tmp_path / "dashboard.log") as base_url:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                if screen == "phone":
                    context = browser.new_context(
                        viewport=PHONE, user_agent=PHONE_AGENT, is_mobile=True, has_touch=True
                    )
                else:
                    context = browser.new_context(viewport={"width": 1400, "height": 1000})
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
                browser.close()
