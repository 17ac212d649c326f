"""A collar's uplink counts on /api/devices, read by a role with a delay: as late as its last report.

A researcher sees when a collar was last heard 6 h late (24 h for a high-value animal): a count of
uplinks received (or lost) that rose the minute the collar was heard again told it, between two
reads, that the animal was alive and within a gateway's range now."""

from __future__ import annotations

from datetime import timedelta

import bridge_builders as b
import pytest
from access_builders import CONSOLE, NOW, PASSWORDS, live_bridge
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app


@pytest.fixture
def api(sqlite_url):
    """A client of the API over the live herd, with a token per role."""
    with live_bridge(sqlite_url) as bridge, TestClient(create_app(bridge)) as client:
        client.headers_of = {
            role: {"Authorization": f"Bearer {bridge.create_token(username, 'tests', actor=CONSOLE).secret}"}
            for username, (role, _) in PASSWORDS.items()
        }
        client.bridge = bridge
        yield client


def amanis_collar(api, role: str) -> dict:
    answer = api.get("/api/devices", headers=api.headers_of[role])
    assert answer.status_code == 200
    return next(device for device in answer.json() if device["name"] == "Amani")


def test_researcher_does_not_learn_from_a_collars_uplink_count_that_it_was_heard_just_now(api):
    counted = ("uplinks_received", "uplinks_lost", "frame_loss_pct", "uplinks_backfilled")
    before = {role: amanis_collar(api, role) for role in ("ranger", "researcher", "field_technician")}

    heard = NOW - timedelta(minutes=2)  # a status two minutes ago, after frames the network lost
    status = b.status(time_s=int(heard.timestamp()), lat=0.0, lon=0.0)
    assert api.bridge.ingest_tts_uplink(b.tts_uplink(status, device_id="collar-01", f_cnt=90, received_at=heard,
                                                     dev_eui="70B3D57ED0000001")).ok

    ranger = amanis_collar(api, "ranger")
    assert ranger["uplinks_received"] == before["ranger"]["uplinks_received"] + 1 and ranger["uplinks_lost"] > 0
    for role in ("researcher", "field_technician"):
        seen = amanis_collar(api, role)
        assert {key: seen[key] for key in counted} == {key: before[role][key] for key in counted}, role
        assert seen["last_seen"] == before[role]["last_seen"]
        # nor the collar alert heard just now (nor, for the researcher, the fixes of the last 6 h)
        assert seen["uplinks_received"] < before["ranger"]["uplinks_received"], role
