"""A ranger opens the running dashboard in a real browser (Debian's chromium, driven by Playwright)
and sees the reserve, the herd and the alerts, with nothing fetched from outside the machine."""

from __future__ import annotations

import io
import re
import time

import pytest
from browser_helpers import running_dashboard, seed
from PIL import Image
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from lora_bridge.service import open_bridge
from ranger_dashboard import palette

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
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


def map_image(page: Page, wanted: dict[str, list[int]], timeout_s: float = 30.0) -> Image.Image:
    """A screenshot of the deck map once every colour in `wanted` is drawn (or the last one)."""
    chart = page.locator("[data-testid='stDeckGlJsonChart']").first
    deadline = time.monotonic() + timeout_s
    while True:
        image = Image.open(io.BytesIO(chart.screenshot()))
        if all(colour_pixels(image, rgb) > 0 for rgb in wanted.values()) or time.monotonic() > deadline:
            return image
        page.wait_for_timeout(500)


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
    ids = {a.name: a.animal_id for a in bridge.animals()}
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
