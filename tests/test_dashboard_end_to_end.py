"""End to end: a simulated herd's collars (the real firmware in the digital twin) send The Things
Stack webhooks over HTTP to the bridge, and the ranger dashboard shows what the bridge stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from browser_helpers import names_on_map, signed_in_app
from streamlit.testing.v1 import AppTest

import ranger_dashboard
from lora_bridge.access import Viewer
from lora_bridge.adapters.webhook import SECRET_HEADER, create_app
from lora_bridge.server import serve_app_in_thread
from lora_bridge.service import open_bridge
from ranger_dashboard import views
from simulator.fleet import Fleet
from simulator.reserve import demo_reserve

APP = Path(ranger_dashboard.__file__).resolve().parent / "app.py"
START = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def herd_store(tmp_path_factory) -> tuple[str, list[dict]]:
    """Three collars, six simulated hours, delivered through the HTTP webhook; the store's URL and
    the herd's manifest."""
    url = f"sqlite:///{tmp_path_factory.mktemp('herd') / 'tembo.db'}"
    fleet = Fleet(n_collars=3, seed=1, start=START, days=0.25)
    bridge = open_bridge(url, webhook_secret="end-to-end-webhook-secret")
    bridge.load_geography(demo_reserve().geojson())
    for member in fleet.manifest():
        bridge.register_animal(
            member["device_id"], member["name"], species=member["species"], sex=member.get("sex")
        )
    secret = bridge.settings.webhook_secret.get_secret_value()
    with serve_app_in_thread(create_app(bridge)) as webhook, httpx.Client(base_url=webhook.url, timeout=30) as client:
        for uplink in fleet.uplinks():
            reply = client.post("/uplinks/tts", content=json.dumps(uplink), headers={SECRET_HEADER: secret})
            assert reply.status_code < 300, reply.text
    bridge.close()
    return url, fleet.manifest()


def test_ranger_sees_the_simulated_herd_on_the_live_map(herd_store, monkeypatch):
    url, manifest = herd_store
    monkeypatch.setenv("TEMBO_DATABASE_URL", url)
    monkeypatch.setenv("TEMBO_DASHBOARD_CLOCK", "data")
    app = signed_in_app(AppTest.from_file(str(APP), default_timeout=60), url).run()
    assert not app.exception, [e.value for e in app.exception]
    spec = json.loads(app.get("deck_gl_json_chart")[0].proto.json)
    animals = next(item for item in spec["layers"] if item["id"] == "animals")["data"]
    assert sorted(p["name"] for p in animals) == sorted(m["name"] for m in manifest)
    # Names are drawn where they fit (two animals a few hundred metres apart share one label's room),
    # every animal is named on hover.
    names = names_on_map(url, Viewer("amina", "ranger"), spec)
    assert names and names <= {m["name"] for m in manifest}
    assert all(p["tooltip"].startswith(p["name"]) for p in animals)
    assert {"reserve-boundary", "farmland", "roads", "waterholes", "gateways"} <= {
        i["id"] for i in spec["layers"]
    }
    assert next(m.value for m in app.metric if m.label == "Heard in the last 6 h") == "3"


def test_ranger_sees_what_each_collar_reported_about_itself(herd_store, monkeypatch):
    url, manifest = herd_store
    monkeypatch.setenv("TEMBO_DATABASE_URL", url)
    app = signed_in_app(AppTest.from_file(str(APP), default_timeout=60), url).run()
    app.switch_page("screens/animals.py").run()
    assert not app.exception, [e.value for e in app.exception]
    table = app.dataframe[-1].value  # the herd, under the animal
    assert sorted(table[views.COL_COLLAR]) == sorted(m["device_id"] for m in manifest)
    assert all(table[views.COL_FIRMWARE] != "")
    assert all(table[views.COL_BATTERY].str.endswith(" V"))
    assert len(app.get("vega_lite_chart")) == 3  # speed, daily budget, VeDBA
