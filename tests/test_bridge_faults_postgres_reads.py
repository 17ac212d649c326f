"""An administrator ends the bridge's PostgreSQL connections (`pg_terminate_backend`, a fail-over) a moment
after a ranger's last read: the ranger's next look at the collars and animals is answered from the store as
before, not refused as if the store were unavailable."""

from __future__ import annotations

import bridge_builders as b
import postgres_faults as pf
import pytest
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app


@pytest.mark.postgres
@pytest.mark.parametrize("route", ["/api/devices", "/api/animals"])
def test_a_rangers_read_right_after_the_connections_were_ended_is_answered(postgres_url, postgres_server, route):
    with b.fresh_bridge(postgres_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
        taken = client.post("/uplinks/tts", content=b.tts_uplink(b.status(), f_cnt=1), headers=b.HEADERS)
        headers = b.api_headers(bridge, "field_technician")
        before = client.get(route, headers=headers)
        pf.end_bridge_connections(postgres_server, postgres_url)
        after = client.get(route, headers=headers)

    assert taken.status_code == 200
    # It had been a 503 "the store is unavailable now": the connection used a moment before was not
    # asked whether it was still alive.
    assert (before.status_code, after.status_code) == (200, 200)
    assert _without_read_time(after.json()) == _without_read_time(before.json())


def _without_read_time(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """rows without the time each was read at (`as_of`)."""
    return [{key: value for key, value in row.items() if key != "as_of"} for row in rows]
