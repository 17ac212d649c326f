"""A ranger's sign-in survives a reload of the page and ends with sign-out, in a real browser (Debian's
chromium, driven by Playwright) against the dashboard as `tembo dashboard` starts it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from browser_helpers import ACCOUNTS, SEEDER, add_accounts, running_dashboard, sign_in
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import update

from lora_bridge.access.accounts import digest
from lora_bridge.service import open_bridge
from lora_bridge.store.tables import SignInSession
from ranger_dashboard.headless_browser import CHROMIUM, CHROMIUM_ARGS
from ranger_dashboard.session_cookie import COOKIE_NAME, cookie_name
from tembo.local_services import free_port

WAIT_MS = 60_000


def signed_in_as(page: Page, username: str) -> None:
    expect(page.get_by_text(f"Signed in as {username}").first).to_be_visible(timeout=WAIT_MS)


def at_sign_in_form(page: Page) -> None:
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Signed in as")).to_have_count(0, timeout=WAIT_MS)


def session_cookie(page: Page) -> dict | None:
    return next((c for c in page.context.cookies() if c["name"].startswith(COOKIE_NAME)), None)


@dataclass(frozen=True)
class Dashboard:
    """The dashboard under test: its store, its base URL and port, and a running Chromium."""

    url: str
    base_url: str
    port: int
    browser: Browser


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Iterator[Dashboard]:
    """One ranger dashboard over a store with the seeded accounts, and Chromium, for this module."""
    folder = tmp_path_factory.mktemp("sign-in-persistence")
    url = f"sqlite:///{folder / 'tembo.db'}"
    with open_bridge(url) as bridge:
        add_accounts(bridge)
    port = free_port()
    with running_dashboard(port, url, folder / "dashboard.log") as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield Dashboard(url, base_url, port, browser)
        finally:
            browser.close()


def sessions_of(url: str, username: str, include_ended: bool = False) -> list:
    with open_bridge(url) as bridge:
        return [s for s in bridge.sessions(viewer=SEEDER, include_ended=include_ended) if s.username == username]


@pytest.mark.browser
def test_ranger_stays_signed_in_across_reloads_until_she_signs_out(dashboard):
    base_url, port, browser = dashboard.base_url, dashboard.port, dashboard.browser
    page = browser.new_context().new_page()
    page.goto(base_url)
    sign_in(page, "amina")
    signed_in_as(page, "amina")
    # The browser has fetched its cookie once the page says so.
    page.wait_for_selector("html[data-tembo-session='session']", state="attached", timeout=WAIT_MS)
    cookie = session_cookie(page)
    assert cookie is not None and cookie["name"] == cookie_name(f"127.0.0.1:{port}")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    assert cookie["expires"] > 0, "a cookie that lasts as long as the session, not the tab"
    assert page.evaluate("document.cookie").find(COOKIE_NAME) == -1, "page scripts cannot read it"
    live = sessions_of(dashboard.url, "amina")
    assert [(s.username, s.role, s.client) for s in live] == [("amina", "ranger", "localhost")]
    assert not cookie["value"].endswith(live[0].username)  # the secret, not a name

    page.reload()
    signed_in_as(page, "amina")
    page.goto(base_url + "/alerts")
    signed_in_as(page, "amina")

    # A second tab of the same browser is signed in too.
    other = page.context.new_page()
    other.goto(base_url)
    signed_in_as(other, "amina")
    other.close()

    # Signed out and straight back in, in the same tab: the new sign-in is the one kept.
    page.get_by_role("button", name="Sign out").click()
    at_sign_in_form(page)
    page.wait_for_selector("html[data-tembo-session='sign-out']", state="attached", timeout=WAIT_MS)
    assert session_cookie(page) is None
    sign_in(page, "amina")
    signed_in_as(page, "amina")
    page.wait_for_selector("html[data-tembo-session='session']", state="attached", timeout=WAIT_MS)
    page.reload()
    signed_in_as(page, "amina")
    assert len(sessions_of(dashboard.url, "amina")) == 1

    page.get_by_role("button", name="Sign out").click()
    at_sign_in_form(page)
    page.wait_for_selector("html[data-tembo-session='sign-out']", state="attached", timeout=WAIT_MS)
    page.reload()
    at_sign_in_form(page)
    assert sessions_of(dashboard.url, "amina") == []
    ended = sessions_of(dashboard.url, "amina", include_ended=True)
    assert [s.end_reason for s in ended] == ["signed_out", "signed_out"]
    page.context.close()


@pytest.mark.browser
def test_a_cookie_of_a_changed_removed_or_expired_sign_in_is_refused_on_reload(dashboard):
    base_url, port, browser = dashboard.base_url, dashboard.port, dashboard.browser
    page = browser.new_context().new_page()
    page.goto(base_url)
    sign_in(page, "juma")
    signed_in_as(page, "juma")
    page.wait_for_selector("html[data-tembo-session='session']", state="attached", timeout=WAIT_MS)
    kept = session_cookie(page)

    # An admin moves juma to another role: his sign-in ends, and a reload shows the form.
    with open_bridge(dashboard.url) as bridge:
        bridge.set_role("juma", "researcher", actor=SEEDER)
    page.reload()
    at_sign_in_form(page)

    # Signed in again, then removed: the cookie is refused as well.
    with open_bridge(dashboard.url) as bridge:
        bridge.set_role("juma", "ranger", actor=SEEDER)
    sign_in(page, "juma")
    signed_in_as(page, "juma")
    page.wait_for_selector("html[data-tembo-session='session']", state="attached", timeout=WAIT_MS)
    with open_bridge(dashboard.url) as bridge:
        bridge.remove_user("juma", actor=SEEDER)
    page.reload()
    at_sign_in_form(page)

    # A cookie of an ended session, planted again in a fresh browser, opens nothing.
    fresh = browser.new_context()
    fresh.add_cookies([{**kept, "expires": -1}])
    planted = fresh.new_page()
    planted.goto(base_url)
    at_sign_in_form(planted)
    planted.wait_for_selector("html[data-tembo-session='sign-out']", state="attached", timeout=WAIT_MS)
    assert session_cookie(planted) is None, "the browser is told to drop a cookie that opens nothing"
    fresh.close()

    # An expired session is refused too (its expiry moved into the past in the store).
    with open_bridge(dashboard.url) as bridge:
        _, short = bridge.sign_in("ada", ACCOUNTS["ada"][1])  # an admin may use a ranger dashboard
        with bridge.db.write() as session:
            session.execute(
                update(SignInSession)
                .where(SignInSession.token_hash == digest(short))
                .values(expires_at=bridge.clock() - timedelta(seconds=1))
            )
    expired = browser.new_context()
    expired.add_cookies([{"name": cookie_name(f"127.0.0.1:{port}"), "value": short, "url": base_url}])
    expired_page = expired.new_page()
    expired_page.goto(base_url)
    at_sign_in_form(expired_page)
    expired.close()
    page.context.close()
