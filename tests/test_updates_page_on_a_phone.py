"""A field technician steers an update campaign of 200 collars from a phone in the field (390 x 844, Debian's
chromium driven by Playwright): starts it from the Updates page, reads which collars failed and why, and pauses,
resumes and aborts it, with nothing cut off and nothing to scroll sideways for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import bridge_builders as b
import pytest
from browser_helpers import PHONE_AGENT, running_dashboard, seeded_sqlite, sign_in
from fuota_twin import KEY
from playwright.sync_api import Page, expect
from sqlalchemy import select
from test_dashboard_browser import chromium  # noqa: F401 (one Chromium for the module's stories)
from test_updates_field_technician import shipped_model_image

from lora_bridge.service import open_bridge
from lora_bridge.store.tables import CampaignCollar
from ranger_dashboard.update_tables import UPDATES_READY_ID
from tembo.local_services import free_port

PHONE = {"width": 390, "height": 844}
WAIT_MS = 60_000
COLLARS = 200
# what the bridge says of collars in each state, the longest a technician meets (campaigns, fuota_delivery)
REASONS = {
    "failed": ("set-up refused: NotEnoughMemory", "no result in 14 d", "self_test_failed",
               "FEC matrix full: 37 fragments missing", "the rebuilt image is not the one sent (TS004 v2.0.0 MICError)",
               "it answered package 9 on port 201, not TS004 (package 3)"),
    "skipped": ("gated 14 d: battery 3310 mV below 3400 mV",),
    "gated": ("RSSI -131 dBm below -120 dBm",),
    "unknown": ("campaign aborted",),
}
STATES = ("updated", "failed", "sending", "waiting", "gated", "skipped", "current", "unknown")


def collars_in_every_state(store_url: str, campaign_name: str) -> dict[str, str]:
    """The campaign's collars put through every state a campaign knows, with the bridge's reasons (as days of a
    roll-out would leave them): return each failed collar's reason."""
    failed = {}
    with open_bridge(store_url) as bridge:
        campaign = next(c for c in bridge.campaigns() if c["name"] == campaign_name)
        with bridge.db.write() as session:
            steps = session.scalars(select(CampaignCollar).where(CampaignCollar.campaign_id == campaign["id"])
                                    .order_by(CampaignCollar.device_id))
            for k, step in enumerate(steps):
                step.state = STATES[k % len(STATES)]
                reasons = REASONS.get(step.state)
                step.reason = reasons[k // len(STATES) % len(reasons)] if reasons else None
                if step.state == "failed":
                    failed[step.device_id] = step.reason
    return failed


def wait_for_state(page: Page, name: str, state: str) -> None:
    """Wait until the page, read whole, shows the campaign in state (its heading says so, its steps are drawn)."""
    page.wait_for_selector(f"#{UPDATES_READY_ID}[data-campaigns$=':{state}']", state="attached", timeout=WAIT_MS)
    expect(page.get_by_text(f"{name} — model").filter(has_text=f": {state} (")).to_be_visible(timeout=WAIT_MS)


@contextmanager
def updates_page_on_a_phone(chromium, base_url: str) -> Iterator[Page]:  # noqa: F811
    """The Updates page on a 390 x 844 phone, tito (a field technician) signed in; the browser context closed after."""
    context = chromium.new_context(viewport=PHONE, user_agent=PHONE_AGENT, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(base_url)
        sign_in(page, "tito")
        expect(page.get_by_role("textbox", name="Password")).to_have_count(0, timeout=WAIT_MS)
        page.goto(f"{base_url}/updates")
        yield page
    finally:
        context.close()


def nothing_runs_off_the_right_edge(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"


@pytest.mark.browser
def test_field_technician_on_a_phone_starts_reads_and_steers_a_campaign_of_200_collars(
        chromium, sqlite_url, tmp_path, monkeypatch):  # noqa: F811
    """On the Updates page of a 390 x 844 phone the technician starts the retrained model's campaign (its signed
    image picked from the phone), and once its collars have come through every state reads each failed collar and
    its whole reason (the per-collar grid cut them at its column's edge: "FEC matrix full: 37 f", and scrolled
    sideways), then pauses, resumes and aborts it."""
    store = seeded_sqlite(sqlite_url)
    with open_bridge(store) as bridge:
        for i in range(COLLARS):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=f"collar-{i:03d}", f_cnt=1))
        bridge.process_pending()
    monkeypatch.setenv("TEMBO_RELEASE_KEYS_FILE", b.release_keys_file(tmp_path, KEY))
    image = tmp_path / "model-retrained.tmbu"
    image.write_bytes(shipped_model_image(KEY))
    name = "retrained for the dry season"
    with running_dashboard(free_port(), store, tmp_path / "dashboard.log", role="field_technician") as base_url:
        with updates_page_on_a_phone(chromium, base_url) as page:
            page.get_by_role("textbox", name="Name").fill(name)
            page.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(str(image))
            expect(page.get_by_text(image.name)).to_be_visible(timeout=WAIT_MS)
            page.get_by_role("button", name="Start").click()
            wait_for_state(page, name, "canary")

            failed = collars_in_every_state(store, name)
            page.goto(f"{base_url}/updates")
            wait_for_state(page, name, "canary")
            lines = page.locator("[data-testid='stExpanderDetails'] [data-testid='stMarkdownContainer'] li")
            expect(lines).to_have_count(len(failed), timeout=WAIT_MS)  # the failed collars first
            shown = {line.locator("strong").inner_text(): line for line in lines.all()}
            assert set(shown) == set(failed)
            for device_id, reason in failed.items():
                line = shown[device_id]
                assert reason in line.inner_text(), f"{device_id}'s reason whole"
                box = line.bounding_box()
                assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"{device_id} on the screen"
                assert line.evaluate("e => e.scrollWidth <= e.clientWidth"), f"{device_id}'s line not cut off"
            nothing_runs_off_the_right_edge(page)

            for step, state in (("Pause", "paused"), ("Resume", "canary"), ("Abort", "aborted")):
                page.get_by_role("button", name=step).click()
                wait_for_state(page, name, state)
                nothing_runs_off_the_right_edge(page)
            expect(page.get_by_role("button", name="Resume")).to_have_count(0)
