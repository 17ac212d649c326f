"""A field technician reads every gateway that heard a collar's uplink, and the best signal of them, however
the copies of that uplink reached the bridge: together in one batch, or the later ones in later batches
(two MQTT workers sharing the collars), where a batch writes all its merges into stored rows at once."""

from __future__ import annotations

import json

import bridge_builders as b
import pytest
from sqlalchemy import event, select

from lora_bridge.group_commit import Submission
from lora_bridge.store import gateway_merges
from lora_bridge.store.tables import RawUplink


def up(body: bytes) -> Submission:
    return Submission("tts", "up", body, content_type="application/json")


def heard_by(collar: str, f_cnt: int, gateway: str, rssi_dbm: float, snr_db: float | None) -> bytes:
    """A collar's status uplink f_cnt as one gateway heard it, with that gateway's signal."""
    document = json.loads(b.tts_uplink(b.status(time_s=b.T0_S + 600 * f_cnt), device_id=collar, f_cnt=f_cnt,
                                       gateways=(gateway,)))
    (metadata,) = document["uplink_message"]["rx_metadata"]
    metadata["rssi"] = metadata["channel_rssi"] = rssi_dbm
    if snr_db is None:
        del metadata["snr"]
    else:
        metadata["snr"] = snr_db
    return json.dumps(document).encode()


def copies_of(collar: str, f_cnt: int) -> list[bytes]:
    """The copies three gateways delivered of one uplink (the first heard it worst); the first
    gateway's copy delivered twice."""
    return [heard_by(collar, f_cnt, "gw-north", -118, -3.0), heard_by(collar, f_cnt, "gw-south", -95, 4.5),
            heard_by(collar, f_cnt, "gw-east", -121, None), heard_by(collar, f_cnt, "gw-north", -118, -3.0)]


def kept_signal(bridge, collars: tuple[str, ...]) -> list[tuple]:
    """(collar, frame counter, gateways as stored, best RSSI, best SNR) of the first copies of the collars'
    first two uplinks."""
    with bridge.db.read() as session:
        rows = session.scalars(select(RawUplink).where(RawUplink.duplicate_of.is_(None),
                                                       RawUplink.device_id.in_(collars), RawUplink.f_cnt <= 2)
                               .order_by(RawUplink.device_id, RawUplink.f_cnt)).all()
        return [(r.device_id, r.f_cnt, r.gateways, r.best_rssi_dbm, r.best_snr_db) for r in rows]


def test_gateways_heard_in_later_batches_are_kept_as_when_every_copy_came_in_one_batch_in_one_update(store_url):
    postgres = store_url.startswith("postgresql")
    apart, together = ("collar-01", "collar-02", "collar-03"), ("collar-11", "collar-12", "collar-13")
    uplinks = [(n, f_cnt) for n in range(3) for f_cnt in (1, 2)]
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        bridge.ingest_batch([up(body) for n, f_cnt in uplinks for body in copies_of(together[n], f_cnt)])
        bridge.ingest_batch([up(copies_of(apart[n], f_cnt)[0]) for n, f_cnt in uplinks])
        run: list[int] = []  # of each UPDATE of raw rows, the statements the store ran
        event.listen(bridge.db.write_engine, "before_cursor_execute", lambda _c, _cur, statement, parameters, _x, many:
                     run.append(len(parameters) if many and postgres else 1)
                     if statement.startswith("UPDATE raw_uplinks") else None)
        # the later copies come with the collars' next uplinks, an alert among them (their rules read the store)
        later = bridge.ingest_batch([up(body) for n, f_cnt in uplinks for body in (
            *copies_of(apart[n], f_cnt)[1:],
            b.tts_uplink(b.alert(time_s=b.T0_S + 600 * (f_cnt + 2)) if f_cnt == 2 else b.status(time_s=b.T0_S + 600 * (f_cnt + 2)),
                         device_id=apart[n], f_cnt=f_cnt + 2))])
        kept_apart, kept_together = kept_signal(bridge, apart), kept_signal(bridge, together)

    assert [r.status for r in later] == ["duplicate", "duplicate", "duplicate", "processed"] * 6
    heard = [{"gateway_id": "gw-north", "rssi_dbm": -118.0, "snr_db": -3.0},
             {"gateway_id": "gw-south", "rssi_dbm": -95.0, "snr_db": 4.5},
             {"gateway_id": "gw-east", "rssi_dbm": -121.0, "snr_db": None}]
    assert [row[2:] for row in kept_apart] == [(heard, -95.0, 4.5)] * 6
    assert [row[1:] for row in kept_apart] == [row[1:] for row in kept_together]
    assert run == [1]  # six rows merged in one statement (PostgreSQL runs an executemany's rows one by one)


def stored_first_copy(bridge) -> int:
    """The raw row id of a collar's first uplink, heard by gw-north."""
    (result,) = bridge.ingest_batch([up(heard_by("collar-01", 1, "gw-north", -118, -3.0))])
    return result.raw_uplink_id


MERGED = {"gateways": [{"gateway_id": "gw-north", "rssi_dbm": -118.0, "snr_db": -3.0},
                       {"gateway_id": "gw-south", "rssi_dbm": -95.0, "snr_db": 4.5}],
          "best_rssi_dbm": -95.0, "best_snr_db": 4.5}


def test_a_merge_held_for_the_batch_is_read_back_in_it_and_outlives_a_savepoint_rolled_back(store_url):
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        raw_id = stored_first_copy(bridge)
        with bridge.db.write() as session:
            first = session.scalars(select(RawUplink).where(RawUplink.id == raw_id).with_for_update()).one()
            gateway_merges.set_merged(session, first, MERGED)
            assert not session.dirty  # held for the batch, not flushed by the next autoflush
            with pytest.raises(RuntimeError), session.begin_nested():
                raise RuntimeError("the rules of a collar failed")
            read_in_it = session.scalars(select(RawUplink.gateways).where(RawUplink.id == raw_id)).one()
        with bridge.db.read() as session:
            row = session.get(RawUplink, raw_id)
            kept = {"gateways": row.gateways, "best_rssi_dbm": row.best_rssi_dbm, "best_snr_db": row.best_snr_db}

    assert read_in_it == MERGED["gateways"]
    assert kept == MERGED


def test_a_merge_held_when_the_batch_fails_is_not_kept(store_url):
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        raw_id = stored_first_copy(bridge)
        with pytest.raises(RuntimeError), bridge.db.write() as session:
            first = session.scalars(select(RawUplink).where(RawUplink.id == raw_id).with_for_update()).one()
            gateway_merges.set_merged(session, first, MERGED)
            raise RuntimeError("the store went away")
        with bridge.db.read() as session:
            gateways = [g["gateway_id"] for g in session.get(RawUplink, raw_id).gateways]
        with bridge.db.write() as session:
            held = session.info.get(gateway_merges.HELD.key)

    assert gateways == ["gw-north"]
    assert held is None  # nothing of the failed batch waits to be written by the next


def test_a_merge_made_inside_a_savepoint_rolled_back_is_not_kept(store_url):
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        raw_id = stored_first_copy(bridge)
        with bridge.db.write() as session:
            first = session.scalars(select(RawUplink).where(RawUplink.id == raw_id).with_for_update()).one()
            with pytest.raises(RuntimeError), session.begin_nested():
                gateway_merges.set_merged(session, first, MERGED)
                raise RuntimeError("the rules of a collar failed")
            held = session.info.get(gateway_merges.HELD.key)
        with bridge.db.read() as session:
            gateways = [g["gateway_id"] for g in session.get(RawUplink, raw_id).gateways]

    assert held is None  # a change inside a savepoint goes through the ORM, rolled back with it
    assert gateways == ["gw-north"]
