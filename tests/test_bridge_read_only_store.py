"""The reserve's PostgreSQL turns read-only under a running bridge (a fail-over to a standby, an
administrator's `default_transaction_read_only`): the network server is answered 503 so it sends the
uplink again, nothing is kept as a fault of the data, and the bridge takes the uplink once the store
takes writes again, by itself."""

from __future__ import annotations

import bridge_builders as b
import pytest
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app


def _read_only(postgres_server, url: str, on: bool) -> None:
    """Make the database of url read-only (or writable again) for every new session, and end the old ones."""
    name = url.rsplit("/", 1)[-1]
    postgres_server.psql(f"ALTER DATABASE {name} SET default_transaction_read_only = {'on' if on else 'off'}")
    postgres_server.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")


@pytest.mark.postgres
def test_a_store_turned_read_only_answers_503_and_takes_the_uplink_again_once_writable(postgres_url, postgres_server):
    body = b.tts_uplink(b.alert("mortality"), f_cnt=5)
    with b.fresh_bridge(postgres_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
        _read_only(postgres_server, postgres_url, True)
        refused = client.post("/uplinks/tts", content=body, headers=b.HEADERS)
        health_read_only = client.get("/healthz")
        _read_only(postgres_server, postgres_url, False)
        again = client.post("/uplinks/tts", content=body, headers=b.HEADERS)
        health_writable = client.get("/healthz")
        counts = bridge.counts()
        letters = bridge.dead_letters()

    # It had been a 500 with a traceback, the body taken for a fault of the data.
    assert (refused.status_code, refused.headers.get("Retry-After") is not None) == (503, True)
    assert (again.status_code, again.json()["status"]) == (200, "processed")
    # A load balancer's probe had been told "ok" while every uplink was refused.
    assert (health_read_only.status_code, health_writable.status_code) == (503, 200)
    assert (counts["uplinks_stored"], counts["alerts"], letters) == (1, 1, [])
