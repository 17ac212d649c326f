"""A server geofence alert's evidence, read over the API by roles without exact positions.

The fences are everyone's to read (`/api/geofences`): a fix's distance past a fence line, to the
metre, puts it on a line across the role's 1-5 km cell, finer than the grid it may see."""

from __future__ import annotations

import json

import bridge_builders as b
import pytest
import rules_builders as rb


@pytest.fixture
def bridge_store(sqlite_url):  # the evidence is read the same on both stores
    return sqlite_url


def test_researcher_cannot_read_from_a_park_exit_alert_how_far_past_the_fence_the_animal_was(client, bridge):
    bridge.register_animal("collar-01", "Naserian")
    rb.park_and_farm(bridge)
    # An hour between fixes, the second 900 m past the park fence: the exit is raised at once.
    rb.ingest_track(bridge, [(0, 309_000, 9_702_000), (60, 310_900, 9_702_000)])
    (alert,) = client.get("/api/alerts", headers=b.api_headers(bridge, "ranger")).json()
    assert alert["evidence"]["confirmation"]["decided"].startswith("a fix 900 m past the line")

    for role in ("researcher", "field_technician", "visitor"):
        answer = client.get(f"/api/alerts/{alert['alert_id']}", headers=b.api_headers(bridge, role))
        assert answer.status_code == 200
        shown = answer.json()
        assert shown["alert_type"] == "geofence_exit" and shown["evidence"]["fence"] == "Park"
        text = json.dumps(shown)
        assert "metres_past_line" not in text and "900 m" not in text, role
