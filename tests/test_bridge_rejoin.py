"""A collar that rejoins minutes after joining (a brown-out, a watchdog reset) starts a new session
at the bridge: its frame counter restarts, and its new frames are its new session's.

The joins are The Things Stack's `join_accept` webhook messages (data-formats: `join_accept` with
its `session_key_id`, one per join, and `received_at`), each rejoin with its own session key id.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import bridge_builders as b
from starlette.testclient import TestClient

from lora_bridge.adapters.webhook import create_app
from lora_bridge.store.tables import Device

SESSION_KEYS = ("AXBSH1Pk6Z0G166RlH16CQ==", "AYfg2jl3sVfOHb7U2m7LVw==")  # what the Join Server names each session by


def join(at: datetime, session_key_id: str) -> bytes:
    """A TTS join-accept webhook body of collar-01 at `at` for the session session_key_id."""
    document = json.loads(b.tts_join(received_at=at))
    document["join_accept"]["session_key_id"] = session_key_id
    document["received_at"] = b.rfc3339(at)
    document["correlation_ids"] = [f"as:up:{session_key_id}"]
    return json.dumps(document).encode()


def test_ranger_sees_the_boot_status_of_a_collar_that_rejoined_five_minutes_after_joining(store_url):
    # The collar joins, sends its boot status (no fix yet: its stored position and clock), then browns
    # out, rejoins five minutes later and sends the very same boot status as frame 0 of its new session.
    boot_status = b.status(lat=-2.5)
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
        answers = [b.webhook_post(client, "/uplinks/tts", body)["status"] for body in (
            join(b.T0, SESSION_KEYS[0]),
            b.tts_uplink(boot_status, f_cnt=0, received_at=b.T0 + timedelta(seconds=10)),
            b.tts_uplink(b.status(lat=-2.6), f_cnt=1, received_at=b.T0 + timedelta(minutes=2)),
            join(b.T0 + timedelta(minutes=5), SESSION_KEYS[1]),
            b.tts_uplink(boot_status, f_cnt=0, received_at=b.T0 + timedelta(minutes=5, seconds=10)),
        )]
        (device,) = bridge.devices()
        with bridge.db.read() as session:
            sessions = session.get(Device, "collar-01").session

    assert answers == ["recorded", "processed", "processed", "recorded", "processed"], \
        "the boot status after the rejoin was dropped as a copy of the one before it"
    assert sessions == 2
    assert (device.uplinks_received, device.last_f_cnt) == (3, 0)
