"""One collar herd to one ranger map: the simulated collars' real firmware, The Things Stack webhooks
over HTTP, the bridge's store and service layer, and the dashboard (Streamlit AppTest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from browser_helpers import names_on_map, signed_in_app
from streamlit.testing.v1 import AppTest

import ranger_dashboard
from lora_bridge.access import Viewer
from lora_bridge.service import open_bridge
from tembo import demo

RANGER = Viewer("ranger.amani", "ranger")

APP = Path(ranger_dashboard.__file__).resolve().parent / "app.py"


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> tuple[str, dict]:
    """A store filled by the headless demo pipeline (4 collars, one simulated day); its URL and counts."""
    url = f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'tembo.db'}"
    figures = demo.run_headless(collars=4, days=1, seed=3, database_url=url)
    return url, figures


def test_every_delivered_uplink_is_stored_and_decoded(demo_store):
    _, figures = demo_store
    assert figures["uplinks_sent"] >= figures["uplinks_delivered"] > 0
    assert figures["uplinks_stored"] == figures["uplinks_delivered"]
    assert figures["dead_letter"] == 0
    assert figures["animals"] == 4
    assert figures["positions"] >= 4 * 20, "hourly positions from every collar"
    assert figures["activity_summaries"] >= 4 * 80, "15-minute activity summaries from every collar"


def test_bridge_service_knows_every_animal_where_and_what_it_does(demo_store):
    url, _ = demo_store
    with open_bridge(url) as bridge:
        animals = bridge.animals(viewer=RANGER)
        positions = bridge.latest_positions(viewer=RANGER)
        tracks = bridge.tracks(viewer=RANGER)
    assert len(animals) == 4
    assert all(a.lat is not None and a.behaviour and a.fw_version and a.model_version for a in animals)
    assert {p.name for p in positions} == {a.name for a in animals}
    assert all(len(track) >= 12 for track in tracks.values()), "hourly fixes, batched; a lost uplink loses a batch"


def test_ranger_sees_the_herd_on_the_live_map(demo_store, monkeypatch):
    url, _ = demo_store
    monkeypatch.setenv("TEMBO_DATABASE_URL", url)
    app = signed_in_app(AppTest.from_file(str(APP), default_timeout=60), url)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    with open_bridge(url) as bridge:
        names = sorted(a.name for a in bridge.animals(viewer=RANGER))
    deck = json.loads(app.get("deck_gl_json_chart")[0].proto.json)
    assert sorted(names_on_map(url, Viewer("amina", "ranger"), deck)) == names
    assert {"reserve-boundary", "tracks"} <= {layer["id"] for layer in deck["layers"]}


def test_same_seed_gives_the_same_numbers(tmp_path):
    first = demo.run_headless(collars=2, days=0.25, seed=11, database_url=f"sqlite:///{tmp_path / 'a.db'}")
    second = demo.run_headless(collars=2, days=0.25, seed=11, database_url=f"sqlite:///{tmp_path / 'b.db'}")
    assert first == second
    assert first["uplinks_stored"] > 0


@pytest.mark.slow
def test_headless_demo_prints_one_json_object_of_counts():
    done = subprocess.run([sys.executable, "-m", "tembo.cli", "demo", "--headless", "--collars", "2",
                           "--days", "0.25", "--seed", "5"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert set(figures) == {"uplinks_sent", "uplinks_delivered", "uplinks_stored", "dead_letter", "animals",
                            "positions", "activity_summaries", "alerts"}
    assert figures["animals"] == 2
