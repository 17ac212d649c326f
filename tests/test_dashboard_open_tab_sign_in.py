"""A sign-in that ends while its page stays open (a lost phone signed out by an admin, an account
removed or moved to another role) stops the page's self-refreshing panels at their next refresh, in
a real browser (Debian's chromium, driven by Playwright): the live map and the alert queue redraw
themselves without running the page's sign-in gate, and they kept handing out exact positions.
And a shared link opened before signing in opens its own page once signed in."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from browser_helpers import SEEDER, seeded_sqlite, sign_in
from playwright.sync_api import Browser, Page, expect, sync_playwright

from lora_bridge.service import open_bridge
from ranger_dashboard import markers, serving
from ranger_dashboard.headless_browser import CHROMIUM, CHROMIUM_ARGS
from tembo.local_services import free_port

WAIT_MS = 60_000
REFRESH_S = 2  # the panels' refresh: the sign-in form must come back at one of them


@dataclass(frozen=True)
class Dashboard:
    """The dashboard under test: its store, its base URL and a running Chromium."""

    url: str
    base_url: str
    browser: Browser


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Iterator[Dashboard]:
    """A ranger dashboard over the seeded reserve whose panels refresh every REFRESH_S, and Chromium."""
    folder = tmp_path_factory.mktemp("open-tab-sign-in")
    url = seeded_sqlite(f"sqlite:///{folder / 'tembo.db'}")
    with serving.running(free_port(), url, folder / "dashboard.log", refresh_s=REFRESH_S) as base_url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield Dashboard(url, base_url, browser)
        finally:
            browser.close()


def signed_in_on(dashboard: Dashboard, username: str, path: str, ready_id: str) -> Page:
    page = dashboard.browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    page.goto(dashboard.base_url)
    sign_in(page, username)
    page.wait_for_selector(f"#{markers.MAP_READY_ID}", state="attached", timeout=WAIT_MS)
    page.wait_for_selector("html[data-tembo-session='session']", state="attached", timeout=WAIT_MS)
    if path != "/":  # the session cookie brings the sign-in to the page opened next
        page.goto(dashboard.base_url + path)
        page.wait_for_selector(f"#{ready_id}", state="attached", timeout=WAIT_MS)
    return page


def sign_in_form_comes_back(page: Page) -> None:
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(f"#{markers.MAP_READY_ID}")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator(f"#{markers.ALERTS_READY_ID}")).to_have_count(0, timeout=WAIT_MS)


@pytest.mark.browser
def test_a_lost_phones_open_live_map_stops_at_its_next_refresh_once_an_admin_signs_it_out(dashboard):
    phone = signed_in_on(dashboard, "amina", "/", markers.MAP_READY_ID)
    with open_bridge(dashboard.url) as bridge:
        assert bridge.end_sessions("amina", actor=SEEDER) == 1
    sign_in_form_comes_back(phone)
    phone.context.close()


@pytest.mark.browser
def test_an_open_alert_queue_stops_once_its_account_is_moved_to_another_role(dashboard):
    page = signed_in_on(dashboard, "juma", "/alerts", markers.ALERTS_READY_ID)
    with open_bridge(dashboard.url) as bridge:
        bridge.set_role("juma", "researcher", actor=SEEDER)
    sign_in_form_comes_back(page)
    page.context.close()


@pytest.mark.browser
def test_a_ranger_who_opens_an_alerts_link_signed_out_finds_that_alert_once_she_signs_in(dashboard):
    with open_bridge(dashboard.url) as bridge:
        alert = next(a for a in bridge.open_alerts(viewer=SEEDER) if a.alert_type == "low_battery")
    page = dashboard.browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    page.goto(f"{dashboard.base_url}/alerts?alert={alert.alert_id}")
    sign_in(page, "amina")
    page.wait_for_selector(f"#{markers.ALERTS_READY_ID}", state="attached", timeout=WAIT_MS)
    expect(page).to_have_url(f"{dashboard.base_url}/alerts?alert={alert.alert_id}", timeout=WAIT_MS)
    expect(page.get_by_text("Low battery").first).to_be_visible(timeout=WAIT_MS)
    page.context.close()
