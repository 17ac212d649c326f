"""What the network servers (and whoever can post to the bridge as one) send at the edges of their languages,
as an operator or a ranger meets it: copies of one uplink naming ever more gateways, a flood of garbage
kept as dead letters, a topic that names another collar than its body, a downlink URL in no usual form, and
a ChirpStack call naming two events at once."""

from __future__ import annotations

import json
import logging

import bridge_builders as b
from sqlalchemy import select

from lora_bridge.group_commit import Submission
from lora_bridge.store.gateway_merges import GATEWAYS_KEPT
from lora_bridge.store.tables import RawUplink


def up(body: bytes) -> Submission:
    return Submission("tts", "up", body, content_type="application/json")


def first_copy(bridge, device_id: str, f_cnt: int) -> tuple[list[dict], float, float]:
    """(gateways, best RSSI, best SNR) of the first copy of device_id's uplink f_cnt, as stored."""
    with bridge.db.read() as session:
        row = session.scalars(select(RawUplink).where(RawUplink.device_id == device_id, RawUplink.f_cnt == f_cnt,
                                                      RawUplink.duplicate_of.is_(None))).one()
        return row.gateways, row.best_rssi_dbm, row.best_snr_db


def test_operators_store_keeps_a_handful_of_gateways_however_many_copies_a_hostile_sender_posts(store_url, caplog):
    # Forty copies of one uplink, each naming 30 gateways of long names never heard before (and the first
    # gateway again): the first copy's row had taken every one of them, 748 KB of gateways for one uplink.
    # A real uplink is heard by a handful: the row keeps the strongest GATEWAYS_KEPT, and says how many not.
    status = b.status(time_s=b.T0_S + 600)
    copies = [b.tts_uplink(status, device_id="collar-01", f_cnt=1,
                           gateways=("gw-north",) + tuple(f"gw-{n:02d}-{i:02d}-" + "x" * 200 for i in range(30)))
              for n in range(40)]
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge, caplog.at_level(logging.INFO):
        bridge.ingest_batch([up(copies[0])])
        for body in copies[1:]:
            bridge.ingest_batch([up(body)])
        gateways, best_rssi_dbm, best_snr_db = first_copy(bridge, "collar-01", 1)

    ids = [g["gateway_id"] for g in gateways]
    assert len(ids) == GATEWAYS_KEPT and len(set(ids)) == GATEWAYS_KEPT
    assert ids[0] == "gw-north", "the strongest gateway (the first of every copy, -100 dBm) stays"
    assert (best_rssi_dbm, best_snr_db) == (-100, 7.5)
    assert len(json.dumps(gateways)) < 8_000
    left_out = [r for r in caplog.records if "gateways left out" in r.getMessage()]
    assert left_out and all(r.device_id == "collar-01" for r in left_out)
    assert left_out[0].gateways_left_out == 31 - GATEWAYS_KEPT, "the first copy named 31 gateways"


def test_a_copy_naming_gateways_the_row_holds_adds_nothing(sqlite_url):
    # The same uplink delivered again (a webhook retried, the MQTT copy of it) names the gateways the row
    # holds, one of them twice in its own metadata: the row keeps each gateway once.
    status = b.status(time_s=b.T0_S + 600)
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        bridge.ingest_batch([up(b.tts_uplink(status, device_id="collar-02", f_cnt=1, gateways=("gw-a", "gw-b")))])
        bridge.ingest_batch([up(b.tts_uplink(status, device_id="collar-02", f_cnt=1,
                                             gateways=("gw-b", "gw-c", "gw-c", "gw-a")))])
        gateways, _, _ = first_copy(bridge, "collar-02", 1)

    assert [g["gateway_id"] for g in gateways] == ["gw-a", "gw-b", "gw-c"]

