"""A field technician reads the Updates page's "which collar runs what" and a campaign's history on a phone in the
field (390 x 844, Debian's chromium driven by Playwright). Both were grids that scrolled sideways inside themselves
(six columns; a history's details hold whole sentences and a network server's answers): now each collar and each
event is a line that wraps, read whole without scrolling sideways, and a desk still gets the grids.
"""

from __future__ import annotations

import bridge_builders as b
import pytest
from browser_helpers import running_dashboard, seeded_sqlite
from playwright.sync_api import Page, expect
from test_dashboard_browser import chromium  # noqa: F401 (one Chromium for the module's stories)
from test_updates_page_on_a_phone import PHONE, WAIT_MS, updates_page_on_a_phone

from lora_bridge.service import open_bridge
from lora_bridge.store.tables import UpdateCampaign
from ranger_dashboard.update_tables import UPDATES_READY_ID
from tembo.local_services import free_port

COLLARS = 40
DESK = {"width": 1280, "height": 900}
# a detail as long as the bridge writes them (fuota_delivery's group_push_refused, campaigns_tracked_refusals)
ANSWER = 'network server answered 404: \'{"code":5,"message":"entity not found","details":[{"@type":"tts.ttnpb.v3"}]}\''


def fleet_with_a_campaign(store_url: str) -> tuple[str, int]:
    """COLLARS more collars heard, a campaign of the retrained model over the fleet whose history holds a long
    answer; return the campaign's name and how many collars the fleet has."""
    name = "retrained for the dry season"
    with open_bridge(store_url) as bridge:
        for i in range(COLLARS):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=f"collar-{i:03d}", f_cnt=1))
        bridge.process_pending()
        campaign = bridge.create_campaign(name=name, kind="model", version="0.0.2", image_sha256="ab" * 32,
                                          image_bytes=3844, user="tito", canary_pct=10)
        from lora_bridge.domain import campaigns

        with bridge.db.write() as session:
            campaigns.record_event(session, session.get(UpdateCampaign, campaign["id"]), "group_push_refused",
                                   None, status=404, answer=ANSWER)
        return name, len(bridge.fleet_versions())


def readable_without_scrolling_sideways(page: Page) -> None:
    """Nothing on the page, nor inside any visible element of it, is wider than the screen it is shown in."""
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
    wide = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stDataFrame"] *, .stMarkdown *')]
        .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0
                && getComputedStyle(e).overflowX !== 'visible')
        .map(e => e.className || e.tagName)""")
    assert wide == [], f"elements that scroll sideways inside themselves: {wide[:5]}"


@pytest.mark.browser
def test_field_technician_on_a_phone_reads_who_runs_what_and_the_history_as_lines_not_sideways_grids(
        chromium, sqlite_url, tmp_path):  # noqa: F811
    """At 390 px: every collar's firmware, model and last update on a line of its own, the history's refused push
    with the network server's whole answer, no grid shown and nothing scrolling sideways; at 1280 px the grids."""
    store = seeded_sqlite(sqlite_url)
    name, collars = fleet_with_a_campaign(store)
    with running_dashboard(free_port(), store, tmp_path / "dashboard.log", role="field_technician") as base_url:
        with updates_page_on_a_phone(chromium, base_url) as page:
            page.wait_for_selector(f"#{UPDATES_READY_ID}[data-campaigns$=':canary']", state="attached",
                                   timeout=WAIT_MS)
            expect(page.get_by_text(f"{name} — model")).to_be_visible(timeout=WAIT_MS)
            fleet = page.locator("[class*='st-key-lines-versions'] li")
            expect(fleet).to_have_count(collars, timeout=WAIT_MS)
            ours = fleet.filter(has_text="collar-000").inner_text()
            assert ours.startswith("collar-000 · firmware") and " · model " in ours, ours
            refused = page.locator("[class*='st-key-lines-history'] p").filter(has_text="group push refused")
            expect(refused).to_have_count(1, timeout=WAIT_MS)
            assert '"message":"entity not found"' in refused.inner_text(), "the network server's answer whole"
            for line in (fleet.first, fleet.last, refused):
                box = line.bounding_box()
                assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], "the line on the screen"
            expect(page.locator("[data-testid='stDataFrame']").first).to_be_hidden()
            readable_without_scrolling_sideways(page)

            page.set_viewport_size(DESK)  # the same page on a desk: the grids, not the lines
            expect(page.locator("[class*='st-key-grid-versions'] [data-testid='stDataFrame']")).to_be_visible(
                timeout=WAIT_MS)
            expect(page.locator("[class*='st-key-lines-versions']")).to_be_hidden()
