"""A ranger watches a large herd in a real browser (Debian's chromium through Playwright): the live
map names the animals that need a look, and any other animal by its tooltip, on a desk and a phone."""

from __future__ import annotations

import io
import re
import time

import pytest
from browser_helpers import add_accounts, sign_in
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from lora_bridge.access import Viewer
from lora_bridge.service import open_bridge
from ranger_dashboard import bench, draw_probe, palette, serving, track_routes
from ranger_dashboard.headless_browser import CHROMIUM, CHROMIUM_ARGS
from ranger_dashboard.map_layers import NAME_EVERY_ANIMAL_UP_TO

RANGER = Viewer("ranger.amani", "ranger")
HERD = NAME_EVERY_ANIMAL_UP_TO + 20  # large enough that only the animals needing a look are named
WAIT_MS = 120_000
MAP = "[data-testid='stDeckGlJsonChart']"
PHONE = {"width": 390, "height": 844}
PHONE_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


def near(pixel: tuple[int, ...], rgb: list[int], tolerance: int = 16) -> bool:
    return all(abs(c - w) <= tolerance for c, w in zip(pixel[:3], rgb[:3], strict=True))


def map_showing(page, rgbs: list[list[int]]) -> Image.Image:
    """A screenshot of the live map once it shows every colour of `rgbs`, taken again after two
    more frames while it does not."""
    chart = page.locator(MAP).first
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        image = Image.open(io.BytesIO(chart.screenshot())).convert("RGB")
        colours = [colour for _, colour in image.getcolors(image.width * image.height)]
        if all(any(near(c, rgb) for c in colours) for rgb in rgbs):
            return image
        assert time.monotonic() < deadline, f"the map never showed {rgbs}"
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def lone_dot(image: Image.Image, rgb: list[int], clear_px: int = 12) -> tuple[int, int]:
    """The centre of the right-most dot of colour `rgb` with no other dot or label within `clear_px`
    of it (the one whose tooltip would run past the map's right edge, were it drawn to the right)."""
    width, height = image.size
    pixels = image.load()
    for x in range(width - clear_px - 1, clear_px - 1, -1):
        for y in range(clear_px, height - clear_px):
            if not near(pixels[x, y], rgb):
                continue
            around = [
                pixels[x + dx, y + dy]
                for dx in range(-clear_px, clear_px + 1)
                for dy in range(-clear_px, clear_px + 1)
                if abs(dx) + abs(dy) > 8
            ]
            if not any(near(p, rgb) or near(p, palette.LABEL_COLOUR, 40) for p in around):
                return x + 2, y + 2
    raise AssertionError("no animal stands alone on the map")


def tile_zoom(url: str) -> int:
    return int(url.split("/map/names/", 1)[1].split("/", 1)[0])


def tile_names(response) -> set[str]:
    return {feature["properties"]["name"] for feature in response.json()["features"]}


def zoom_in_until(page, box: dict, wanted):
    """Scroll the mouse wheel over the map's centre, a notch at a time, until the browser has fetched
    a name tile that `wanted` accepts; that tile's response."""
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        try:
            with page.expect_response(lambda r: "/map/names/" in r.url and r.ok and wanted(r), timeout=5_000) as found:
                page.mouse.wheel(0, -240)
            return found.value
        except PlaywrightTimeout:
            assert time.monotonic() < deadline, "zooming in never brought names of ordinary animals"


@pytest.mark.browser
@pytest.mark.parametrize("screen", ["desk", "phone"])
def test_ranger_reads_a_large_herd_by_names_of_alerting_animals_and_tooltips(sqlite_url, port, tmp_path, screen):
    with open_bridge(sqlite_url) as bridge:
        bench.fill_store(bridge, animals=HERD, days=1, activity_days=0, batch=250)
        add_accounts(bridge)
        alerting = sorted(a.name for a in bridge.open_alerts(viewer=RANGER))
    assert len(alerting) == HERD // bench.ALERT_EVERY + 1  # a collar alert on one animal in 25
    with serving.running(port, sqlite_url, tmp_path / "dashboard.log", clock="data") as base_url:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                if screen == "phone":
                    context = browser.new_context(viewport=PHONE, user_agent=PHONE_AGENT, is_mobile=True, has_touch=True)
                else:
                    context = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = context.new_page()
                name_tiles_seen: list = []  # the map's name tiles as the browser fetched them
                page.on("response", lambda r: name_tiles_seen.append(r) if "/map/names/" in r.url else None)
                draw_probe.install(page, HERD)  # the dashboard bench's clock of the map's frames
                page.goto(base_url)
                with page.expect_response(lambda r: track_routes.TRACKS_PATH in r.url, timeout=WAIT_MS) as tracks:
                    sign_in(page, "amina")
                    page.wait_for_selector(f"#tembo-map-ready[data-animals='{HERD}']", state="attached", timeout=WAIT_MS)
                    drawn_at = draw_probe.wait_drawn(page, WAIT_MS)
                # The tracks came after the first frame, from the tracks route with the sign-in's cookie:
                # every segment drawn, one track per animal.
                assert tracks.value.status == 200
                segments = tracks.value.json()
                assert len({s["animal_id"] for s in segments}) == HERD
                assert draw_probe.wait_lines(page, len(segments), WAIT_MS) >= drawn_at
                page.wait_for_selector(f"{MAP} canvas", state="attached", timeout=WAIT_MS)
                image = map_showing(
                    page, [palette.STATE_COLOURS["normal"], palette.STATE_COLOURS["alert"], palette.LABEL_COLOUR]
                )
                # The probe saw the frame with every dot before this screenshot showed it, and the
                # names after it: the dots were drawn by deck.gl's dot layer, the names as text.
                named_at = draw_probe.wait_named(page, WAIT_MS)
                assert drawn_at <= named_at <= time.time()
                assert draw_probe.marked_at(page) is not None and draw_probe.canvas_at(page) <= drawn_at
                seen = draw_probe.record(page)
                assert seen["frames"] >= 2 and seen["draws"]["scatterplot-layer-vertex-shader"] >= 1
                image.save(tmp_path / f"{screen}_herd.png")
                box = page.locator(MAP).first.bounding_box()
                viewport = page.viewport_size
                assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], "the map fits the screen"

                # A normal animal carries no label at this view: hovering it names it, in a tooltip
                # read whole although the animal is the right-most one on the map.
                x, y = lone_dot(image, palette.STATE_COLOURS["normal"])
                tooltip = page.get_by_text(re.compile(rf"^Elephant \d{{3}} · {palette.STATE_LABELS['normal']} · "))
                deadline = time.monotonic() + WAIT_MS / 1000
                wiggle = 0
                while True:  # deck.gl picks on pointer moves: move again until it names the animal
                    page.locator(MAP).first.hover(position={"x": x + wiggle, "y": y})
                    try:
                        tooltip.first.wait_for(timeout=2_000)
                        break
                    except PlaywrightTimeout:
                        assert time.monotonic() < deadline, f"no tooltip over the animal at {(x, y)}"
                        wiggle = 1 - wiggle
                page.screenshot(path=str(tmp_path / f"{screen}_hover.png"))
                tip = tooltip.first.bounding_box()
                assert box["x"] <= tip["x"] and tip["x"] + tip["width"] <= box["x"] + box["width"], (tip, box)

                # The names at this view came as tiles: those of the animals that need a look only.
                first_zoom = min(tile_zoom(r.url) for r in name_tiles_seen)
                shown = {name for r in name_tiles_seen for name in tile_names(r)}
                assert shown and shown <= set(alerting)
                if screen == "desk":
                    # Zooming in on the herd names the ordinary animals there, where they fit.
                    closer = zoom_in_until(page, box, lambda r: tile_zoom(r.url) >= first_zoom + 2 and tile_names(r) - set(alerting))
                    assert all(r.status == 200 for r in name_tiles_seen)
                    assert tile_names(closer) - set(alerting)
                    map_showing(page, [palette.STATE_COLOURS["normal"], palette.LABEL_COLOUR]).save(tmp_path / "zoomed.png")
            finally:
                browser.close()


@pytest.mark.browser
def test_ranger_on_a_slow_link_gets_the_tracks_and_names_the_moment_the_sign_in_cookie_arrives(sqlite_url, port, tmp_path):
    """The sign-in's cookie comes by a request of the page's own (`session_cookie.handoff_script`) while
    the same run draws the map, whose tracks and name tiles are fetched with that cookie. When the
    cookie's answer came late (a loaded phone, a slow link) the tracks were refused (401) and the map
    stayed without them until the next refresh. Here the answer is held back for two seconds."""
    with open_bridge(sqlite_url) as bridge:
        bench.fill_store(bridge, animals=30, days=1, activity_days=0, batch=250)
        add_accounts(bridge)
    with serving.running(port, sqlite_url, tmp_path / "dashboard.log", clock="data") as base_url:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                map_answers: list = []
                page.on("response", lambda r: map_answers.append(r) if "/map/" in r.url else None)

                def late_cookie(route):
                    time.sleep(2.0)  # the browser goes on meanwhile: only this answer waits
                    route.continue_()

                page.route("**/auth/session", late_cookie)
                page.goto(base_url)
                with page.expect_response(lambda r: track_routes.TRACKS_PATH in r.url, timeout=WAIT_MS) as tracks:
                    sign_in(page, "amina")
                    page.wait_for_selector("#tembo-map-ready[data-animals='30']", state="attached", timeout=WAIT_MS)
                assert tracks.value.status == 200
                page.wait_for_function("document.documentElement.dataset.temboSession === 'session'", timeout=WAIT_MS)
                assert map_answers and {r.status for r in map_answers} == {200}
            finally:
                browser.close()
