"""The herd register on a phone at night, in a real browser (Debian's chromium through Playwright): a
ranger reads which collar each elephant wears and finds no form to change it; an admin moves Zawadi's
collar to Kito, told first that it must be asked for, then what was done (in sight though she had
scrolled back up to the form); every word stands out from the night page and nothing runs off the small
screen."""

from __future__ import annotations

import re

import pytest
from browser_helpers import (
    PHONE_AGENT,
    SMALL_PHONE,
    TEXT_CONTRASTS_JS,
    running_dashboard,
    seeded_sqlite,
    sign_in,
)
from playwright.sync_api import Page, expect, sync_playwright

from lora_bridge.access import Viewer
from lora_bridge.service import open_bridge
from ranger_dashboard import markers
from ranger_dashboard.headless_browser import CHROMIUM, CHROMIUM_ARGS

WAIT_MS = 60_000
ADMIN = Viewer("ada", "admin")


def herd_page_on_a_phone(browser, base_url: str, username: str, animal_id: str) -> Page:
    """`username` signed in on a 360 x 740 phone, on the register with animal_id chosen (a shared link)."""
    context = browser.new_context(viewport=SMALL_PHONE, user_agent=PHONE_AGENT, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(base_url)
    sign_in(page, username)
    page.wait_for_selector(f"#{markers.MAP_READY_ID}", state="attached", timeout=WAIT_MS)
    page.goto(f"{base_url}/herd?animal={animal_id}")
    page.wait_for_selector(f"#{markers.HERD_READY_ID}[data-animal='{animal_id}']", state="attached", timeout=WAIT_MS)
    return page


def readable_at_night_on_the_small_screen(page: Page, wanted: str) -> None:
    """The page is dark, `wanted` is among its words, every word stands out from what it is written on
    (WCAG AA, 4.5:1), and nothing runs off the right edge."""
    body = page.evaluate("() => getComputedStyle(document.querySelector('.stApp')).backgroundColor")
    assert sum(int(v) for v in re.findall(r"\d+", body)[:3]) < 3 * 60, f"a dark page, not {body}"
    contrasts = page.evaluate(TEXT_CONTRASTS_JS, page.locator("[data-testid='stMain']").element_handle())
    assert any(wanted in text for _, text, _, _ in contrasts), f"{wanted!r} not read on the page"
    faint = [c for c in contrasts if c[0] < 4.5]
    assert not faint, f"text too faint to read at night: {faint[:8]}"
    width = page.evaluate("() => document.scrollingElement.scrollWidth")
    assert width <= SMALL_PHONE["width"], f"the page runs {width - SMALL_PHONE['width']} px off the screen"


@pytest.mark.browser
def test_admin_moves_a_collar_to_another_elephant_on_a_small_phone_at_night_and_a_ranger_reads_it(
    sqlite_url, port, tmp_path
):
    with open_bridge(seeded_sqlite(sqlite_url)) as bridge:
        ids = {a.name: a.animal_id for a in bridge.animals(viewer=ADMIN)}
    with running_dashboard(port, sqlite_url, tmp_path / "dashboard.log") as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # Amina, a ranger, reads Kito's collar and its history; the register has no form for her.
            ranger = herd_page_on_a_phone(browser, base_url, "amina", ids["Kito"])
            expect(ranger.locator(f"#{markers.HERD_READY_ID}")).to_have_attribute("data-editable", "false", timeout=WAIT_MS)
            expect(ranger.get_by_text(re.compile(r"collar collar-003 since registered"))).to_be_visible(timeout=WAIT_MS)
            expect(ranger.get_by_role("button", name="Fit collar")).to_have_count(0, timeout=WAIT_MS)
            expect(ranger.get_by_role("button", name="Save")).to_have_count(0, timeout=WAIT_MS)
            readable_at_night_on_the_small_screen(ranger, "Who each animal is and which collar it wears")
            ranger.screenshot(path=str(tmp_path / "ranger_herd.png"), full_page=True)
            ranger.context.close()

            # Ada, an admin, fits Zawadi's collar to Kito: told to say so first, then what was done.
            admin = herd_page_on_a_phone(browser, base_url, "ada", ids["Kito"])
            collar = admin.get_by_role("textbox", name="Collar")
            collar.fill("collar-002")
            collar.press("Enter")
            admin.get_by_role("button", name="Fit collar").click()
            refused = admin.get_by_text(re.compile(r"collar collar-002 is worn by Zawadi\. Tick"))
            expect(refused).to_be_visible(timeout=WAIT_MS)
            readable_at_night_on_the_small_screen(admin, "Collar not fitted to Kito")
            admin.screenshot(path=str(tmp_path / "admin_refused.png"), full_page=True)
            # She scrolls back up to the form: Fit collar at the screen's foot, the refusal out of sight below it.
            admin.get_by_role("button", name="Fit collar").evaluate("(button) => button.scrollIntoView({block: 'end'})")
            expect(refused).not_to_be_in_viewport()

            admin.get_by_test_id("stCheckbox").get_by_text("Take it from the animal wearing it").click()
            expect(admin.get_by_role("checkbox", name="Take it from the animal wearing it")).to_be_checked(timeout=WAIT_MS)
            admin.get_by_role("button", name="Fit collar").click()
            done = admin.get_by_text(re.compile(r"^Kito wears collar collar-002 since .* taken from Zawadi"))
            expect(done).to_be_visible(timeout=WAIT_MS)
            expect(admin.get_by_text("Kito wears collar collar-002 since")).to_be_in_viewport(timeout=WAIT_MS)
            readable_at_night_on_the_small_screen(admin, "Kito wears collar collar-002 since")
            # The form starts afresh for the next collar: nothing left to fit by a second tap.
            expect(collar).to_have_value("", timeout=WAIT_MS)
            expect(admin.get_by_role("checkbox", name="Take it from the animal wearing it")).not_to_be_checked()
            admin.screenshot(path=str(tmp_path / "admin_moved.png"), full_page=True)
        finally:
            browser.close()
    with open_bridge(sqlite_url) as bridge:
        herd = {a.name: a.device_id for a in bridge.animals(viewer=ADMIN)}
    assert (herd["Kito"], herd["Zawadi"]) == ("collar-002", None)
