"""A ranger's sign-in in a real browser (Debian's chromium through Playwright): it survives a reload
and ends with signing out."""

from __future__ import annotations

import pytest
from browser_helpers import running_dashboard, seed, sign_in
from playwright.sync_api import sync_playwright

from lora_bridge.service import open_bridge

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
MAP = "[data-testid='stDeckGlJsonChart'] canvas"


@pytest.mark.browser
def test_a_rangers_sign_in_survives_a_reload_and_ends_with_signing_out(sqlite_url, port, tmp_path):
    with open_bridge(sqlite_url) as bridge:
        seed(bridge)
    with running_dashboard(port, sqlite_url, tmp_path / "dashboard.log") as base_url:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(base_url)
                page.get_by_role("button", name="Sign in").wait_for(timeout=WAIT_MS)
                assert page.locator(MAP).count() == 0
                sign_in(page, "amina")
                page.wait_for_selector(MAP, timeout=WAIT_MS)

                page.reload()
                page.wait_for_selector(MAP, timeout=WAIT_MS)
                page.get_by_text("Signed in as", exact=False).first.wait_for(timeout=WAIT_MS)
                assert page.get_by_role("button", name="Sign in").count() == 0

                page.get_by_role("button", name="Sign out").click()
                page.get_by_role("button", name="Sign in").wait_for(timeout=WAIT_MS)
                page.reload()
                page.get_by_role("button", name="Sign in").wait_for(timeout=WAIT_MS)
                assert page.locator(MAP).count() == 0
            finally:
                browser.close()
