"""The bridge on both of its stores (SQLite embedded, PostgreSQL + PostGIS at scale): concurrency,
schema migrations, spatial columns and the retention of raw bodies."""

from __future__ import annotations

import threading

import bridge_builders as b
from sqlalchemy import select

from lora_bridge.store.tables import RawUplink


def test_uplinks_heard_by_three_gateways_at_once_keep_all_three_gateways(store_url):
    uplinks = 24
    gateways = ("gw-a", "gw-b", "gw-c")
    with b.fresh_bridge(store_url) as bridge:
        barrier = threading.Barrier(len(gateways))
        errors: list[BaseException] = []

        def gateway(gw: str) -> None:
            try:
                for n in range(uplinks):
                    body = b.tts_uplink(b.status(time_s=b.T0_S + 60 * n), f_cnt=n + 1, gateways=(gw,))
                    barrier.wait(timeout=30)  # the three copies of one uplink arrive together
                    bridge.ingest_tts_uplink(body)
            except BaseException as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)
                barrier.abort()

        threads = [threading.Thread(target=gateway, args=(gw,)) for gw in gateways]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        with bridge.db.read() as session:
            firsts = session.scalars(select(RawUplink).where(RawUplink.duplicate_of.is_(None))).all()
            heard_by = sorted(tuple(sorted(g["gateway_id"] for g in raw.gateways)) for raw in firsts)
        counts = bridge.counts()

    assert errors == []
    assert (counts["uplinks_stored"], counts["duplicates"], counts["positions"]) == (uplinks, 2 * uplinks, uplinks)
    assert heard_by == [gateways] * uplinks
