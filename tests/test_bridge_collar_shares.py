"""Bridge workers sharing the collars (lora_bridge.collar_shares): one owner per collar, hand-over
through the store, a dead worker's share taken by the one left, and the rule cursor taken in turn."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import bridge_builders as b
import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.engine import make_url
from test_bridge_mqtt import applied_once, status_uplinks, wait_until
from test_bridge_silent_store import NETWORK_SERVER_PATIENCE_S, ended_in_time, postgres_host

from lora_bridge.collar_shares import CollarShare, owner_of
from lora_bridge.domain import rules_engine
from lora_bridge.errors import StoreUnavailable
from lora_bridge.store.tables import BridgeWorker, CollarHandover, RawUplink, RuleCursor
from lora_bridge.store.utc import utc_now


def test_each_collar_has_one_owner_and_a_worker_joining_takes_only_its_own_share():
    collars = [f"70b3d57ed0{n:06x}" for n in range(400)]
    two = {key: owner_of(key, ["g/bridge-1", "g/bridge-2"]) for key in collars}
    three = {key: owner_of(key, ["g/bridge-1", "g/bridge-2", "g/bridge-3"]) for key in collars}

    moved = [key for key in collars if two[key] != three[key]]
    assert owner_of("collar-07", ["g/bridge-2", "g/bridge-1"]) == owner_of("collar-07", ["g/bridge-1", "g/bridge-2"])
    assert 120 <= sum(1 for key in collars if two[key] == "g/bridge-1") <= 280  # about half each
    assert all(three[key] == "g/bridge-3" for key in moved)  # only what the newcomer takes moves
    assert 80 <= len(moved) <= 190  # about a third
    assert owner_of("collar-07", []) is None


def test_a_worker_tells_a_collars_owner_as_the_hash_does_before_and_after_the_members_change(sqlite_url):
    collars = [f"collar-{n:02d}" for n in range(40)]
    with b.fresh_bridge(sqlite_url) as bridge:
        share = CollarShare(bridge, "g/bridge-1")
        share.members = ("g/bridge-1", "g/bridge-2")
        two = [share.owner(key) for key in collars]
        share.members = ("g/bridge-1", "g/bridge-2", "g/bridge-3")
        three = [share.owner(key) for key in collars]

    assert two == [owner_of(key, ["g/bridge-1", "g/bridge-2"]) for key in collars]
    assert three == [owner_of(key, ["g/bridge-1", "g/bridge-2", "g/bridge-3"]) for key in collars]
    assert set(two) == {"g/bridge-1", "g/bridge-2"} and "g/bridge-3" in three


def _key_owned_by(share: CollarShare, keys: list[str]) -> str:
    return next(key for key in keys if owner_of(key, share.members) == share.worker_id)


def _sharing(first_bridge, second_bridge) -> tuple[CollarShare, CollarShare]:
    """Two workers sharing the collars, each knowing the other (leases taken, members read)."""
    first = CollarShare(first_bridge, "g/bridge-1")
    second = CollarShare(second_bridge, "g/bridge-2")
    for share in (first, second, first):
        share.renew()
    return first, second


def _hand_statuses(first: CollarShare, owner: CollarShare, f_cnts: tuple[int, ...], dev_eui: str) -> str:
    """Status uplinks of a collar `owner` owns, received by `first` (so handed over); the collar."""
    collar = _key_owned_by(owner, [f"collar-{n:02d}" for n in range(20)])
    for f_cnt in f_cnts:
        first.ingest("tts", "up", b.tts_uplink(b.status(time_s=b.T0_S + 600 * f_cnt), device_id=collar,
                                               f_cnt=f_cnt, dev_eui=dev_eui),
                     path_ids={"application_id": "tembo", "device_id": collar})
    return collar


def _statuses(bridge) -> dict[str, int]:
    with bridge.db.read() as session:
        rows = session.execute(select(RawUplink.status, func.count()).group_by(RawUplink.status)).all()
        handovers = session.scalar(select(func.count()).select_from(CollarHandover))
    return {**{status: int(n) for status, n in rows}, "handovers": int(handovers or 0)}


def test_a_body_for_another_workers_collar_is_handed_over_and_applied_once_by_its_owner(store_url):
    collars = [f"collar-{n:02d}" for n in range(20)]
    with b.fresh_bridge(store_url) as first_bridge, b.fresh_bridge(store_url) as second_bridge:
        first = CollarShare(first_bridge, "g/bridge-1")
        second = CollarShare(second_bridge, "g/bridge-2")
        for share in (first, second, first):
            share.renew()
        collar = _key_owned_by(second, collars)
        body = b.tts_uplink(b.status(lat=-2.41), device_id=collar, f_cnt=1, dev_eui="70B3D57ED0000F01")

        handed = first.ingest("tts", "up", body, path_ids={"application_id": "tembo", "device_id": collar})
        waiting = _statuses(first_bridge)
        assert second.take_once() == 1
        assert second.take_once() == 0
        # the idle owner applied it in a batch of its own, as the bench counts it
        apart = {k: v for k, v in second_bridge.ingest_batches().items() if k.startswith("apart_")}
        # The same body delivered again (the broker's redelivery after a lost PUBACK) is a duplicate.
        again = second.ingest("tts", "up", body, path_ids={"application_id": "tembo", "device_id": collar})

    assert (handed.status, first.handed_over) == ("received", 1)
    assert waiting == {"handovers": 1}  # the body waits in its hand-over; its owner writes its raw row once
    assert apart == {"apart_batches": 1, "apart_bodies": 1}
    assert again.status == "duplicate"
    assert applied_once(first_bridge) == (1, 1)
    assert _statuses(first_bridge) == {"processed": 1, "duplicate": 1, "handovers": 0}


def test_an_owner_busy_ingesting_applies_the_bodies_handed_to_it_in_its_own_batch_with_one_rules_pass(store_url, monkeypatch):
    collars = [f"collar-{n:02d}" for n in range(20)]
    with b.fresh_bridge(store_url) as first_bridge, b.fresh_bridge(store_url) as second_bridge:
        first = CollarShare(first_bridge, "g/bridge-1")
        second = CollarShare(second_bridge, "g/bridge-2")
        for share in (first, second, first):
            share.renew()
        second_bridge.take_handovers = second.take  # what `start()` sets, without its thread
        collar = _key_owned_by(second, collars)
        ids = {"application_id": "tembo", "device_id": collar}
        early = b.tts_uplink(b.status(lat=-2.41), device_id=collar, f_cnt=1, dev_eui="70B3D57ED0000F02")
        later = b.tts_uplink(b.status(time_s=b.T0_S + 600, lat=-2.42), device_id=collar, f_cnt=2, dev_eui="70B3D57ED0000F02")
        judged: list[list[str]] = []
        evaluate = rules_engine.evaluate_devices

        def counting(session, runtime, device_ids):
            judged.append(sorted(set(device_ids)))
            return evaluate(session, runtime, device_ids)

        handed = first.ingest("tts", "up", early, path_ids=ids)
        monkeypatch.setattr(rules_engine, "evaluate_devices", counting)
        said: list[str] = []
        event.listen(second_bridge.db.write_engine, "before_cursor_execute",
                     lambda _c, _cur, statement, *_a: said.append(" ".join(statement.split())))
        own = second.ingest("tts", "up", later, path_ids=ids)  # an ingest batch of the owner
        monkeypatch.undo()
        left_to_take = second.take_once()
        apart = second_bridge.ingest_batches()["apart_bodies"]

    assert (handed.status, own.status, second.taken, left_to_take) == ("received", "processed", 1, 0)
    assert apart == 0  # none applied in a batch of its own
    assert len(judged) == 1 and len(judged[0]) == 1  # the collar judged once, over both bodies
    # the handed body and the owner's own kept together: their raw rows in one statement
    assert sum(s.startswith("INSERT INTO raw_uplinks") for s in said) == 1
    assert applied_once(first_bridge) == (2, 2)
    assert _statuses(first_bridge) == {"processed": 2, "handovers": 0}


def _own_and_handed(first: CollarShare, second: CollarShare, dev_euis: tuple[str, str]) -> list:
    """A body of a collar first owns and one of a collar second owns, as first submits them."""
    collars = [f"collar-{n:02d}" for n in range(20)]
    bodies = []
    for owner, dev_eui in zip((first, second), dev_euis, strict=True):
        collar = _key_owned_by(owner, collars)
        body = b.tts_uplink(b.status(), device_id=collar, f_cnt=1, dev_eui=dev_eui)
        bodies.append(first.mark(first.bridge.submission("tts", "up", body,
                                                         path_ids={"application_id": "tembo", "device_id": collar})))
    return bodies


def test_a_worker_keeps_bodies_for_other_owners_in_the_transaction_that_applies_its_own(store_url):
    with b.fresh_bridge(store_url) as first_bridge, b.fresh_bridge(store_url) as second_bridge:
        first, second = _sharing(first_bridge, second_bridge)
        own, handed = _own_and_handed(first, second, ("70B3D57ED0000F06", "70B3D57ED0000F07"))
        commits: list[int] = []
        event.listen(first_bridge.db.write_engine, "commit", lambda _connection: commits.append(1))
        first_bridge.write_batch_now([own, handed])  # one batch, as the group commit forms it under load
        waiting = _statuses(first_bridge)
        taken = second.take_once()

    assert (own.outcome().status, handed.outcome().status) == ("processed", "received")
    assert len(commits) == 1  # the hand-over is durable with the batch: one commit, not one each
    assert (first.handed_over, taken) == (1, 1)
    assert waiting == {"processed": 1, "handovers": 1}
    assert applied_once(first_bridge) == (2, 2)
    assert _statuses(first_bridge) == {"processed": 2, "handovers": 0}


def test_a_batch_that_fails_still_hands_its_bodies_over_and_applies_its_own_one_by_one(store_url, monkeypatch):
    with b.fresh_bridge(store_url) as first_bridge, b.fresh_bridge(store_url) as second_bridge:
        first, second = _sharing(first_bridge, second_bridge)
        own, handed = _own_and_handed(first, second, ("70B3D57ED0000F08", "70B3D57ED0000F09"))
        rules_of_batch = first_bridge._rules_of_batch
        failed: list[int] = []

        def failing_once(session, results):  # a bug in the batch's last step, once
            if not failed:
                failed.append(1)
                raise RuntimeError("rules failed for the whole batch")
            return rules_of_batch(session, results)

        monkeypatch.setattr(first_bridge, "_rules_of_batch", failing_once)
        first_bridge.write_batch_now([own, handed])
        monkeypatch.undo()
        taken = second.take_once()

    assert (own.outcome().status, handed.outcome().status) == ("processed", "received")
    assert first_bridge.ingest_batches()["fell_back"] == 1
    assert (first.handed_over, taken) == (1, 1)
    assert applied_once(first_bridge) == (2, 2)
    assert _statuses(first_bridge) == {"processed": 2, "handovers": 0}


def test_a_body_for_another_owner_still_waiting_when_its_worker_stops_sharing_is_applied_by_that_worker(store_url):
    with b.fresh_bridge(store_url) as first_bridge, b.fresh_bridge(store_url) as second_bridge:
        first, second = _sharing(first_bridge, second_bridge)
        own, handed = _own_and_handed(first, second, ("70B3D57ED0000F0B", "70B3D57ED0000F0C"))
        first.stop()  # the worker stops sharing (its MQTT client stopping) before the batch is written
        first_bridge.write_batch_now([own, handed])

    assert (own.outcome().status, handed.outcome().status) == ("processed", "processed")
    assert (first.handed_over, first_bridge.hand_over) == (0, None)
    assert applied_once(first_bridge) == (2, 2)
    assert _statuses(first_bridge) == {"processed": 2, "handovers": 0}


@pytest.mark.postgres
def test_an_owner_told_of_its_hand_overs_reads_none_while_no_body_is_handed_to_it(postgres_url):
    collars = [f"collar-{n:02d}" for n in range(20)]
    with b.fresh_bridge(postgres_url) as first_bridge, b.fresh_bridge(postgres_url) as second_bridge:
        first = CollarShare(first_bridge, "g/bridge-1", lease_s=600).start()
        second = CollarShare(second_bridge, "g/bridge-2", lease_s=600).start()
        try:
            assert wait_until(lambda: first.members == second.members == ("g/bridge-1", "g/bridge-2"), 30)
            own = _key_owned_by(second, collars)
            ids = {"application_id": "tembo", "device_id": own}

            def status(f_cnt: int) -> bytes:
                return b.tts_uplink(b.status(time_s=b.T0_S + 600 * f_cnt), device_id=own, f_cnt=f_cnt,
                                    dev_eui="70B3D57ED0000F0A")

            second.ingest("tts", "up", status(1), path_ids=ids)  # its first batch looks, as after any start
            said: list[str] = []
            event.listen(second_bridge.db.write_engine, "before_cursor_execute",
                         lambda _c, _cur, statement, *_a: said.append(" ".join(statement.split())))
            own_results = [second.ingest("tts", "up", status(f_cnt), path_ids=ids) for f_cnt in range(2, 7)]
            looked_while_none_handed = [s for s in said if "collar_handovers" in s]
            handed = first.ingest("tts", "up", status(7), path_ids=ids)  # named in first's notification
            applied = wait_until(lambda: applied_once(first_bridge) == (7, 7), 60)
        finally:
            second.stop()
            first.stop()

    assert [r.status for r in own_results] == ["processed"] * 5
    assert looked_while_none_handed == []
    assert handed.status == "received" and applied
    assert _statuses(first_bridge) == {"processed": 7, "handovers": 0}



@pytest.mark.postgres
def test_a_worker_sharing_the_collars_started_while_the_postgresql_host_drops_packets_is_told_instead_of_hanging(
        postgres_url):
    # The reserve's PostgreSQL host stops answering (test_bridge_silent_store) as an MQTT worker sharing
    # the collars starts: its LISTEN connection had waited on the host for minutes (psycopg's own limit),
    # and the worker's start with it, instead of the store's connect timeout.
    upstream = make_url(postgres_url)
    with postgres_host(upstream.port) as host:
        through_host = upstream.set(port=host.port).render_as_string(hide_password=False)
        with b.fresh_bridge(through_host, outbox_worker=False, database_connect_timeout_s=2) as bridge:
            host.go_dark()
            ended, told = ended_in_time(lambda: CollarShare(bridge, "g/bridge-1").start().stop(),
                                        NETWORK_SERVER_PATIENCE_S * 3)
            host.close()  # a start still waiting is let go before the bridge closes

    assert ended, "the worker's start waited on a host that never answers"
    assert isinstance(told, StoreUnavailable), "told the store takes no write now, and tried again later"

def test_bodies_handed_to_a_worker_that_died_are_applied_by_the_worker_left(store_url):
    with b.fresh_bridge(store_url) as first_bridge, b.fresh_bridge(store_url) as second_bridge:
        first, second = _sharing(first_bridge, second_bridge)
        _hand_statuses(first, second, (1, 2, 3), "70B3D57ED0000F02")
        assert first.take_once() == 0  # addressed to a live worker: not taken from it
        # bridge-2 dies: its lease runs out and it never renews it.
        with first_bridge.db.write() as session:
            session.execute(update(BridgeWorker).where(BridgeWorker.worker_id == "g/bridge-2")
                            .values(expires_at=utc_now() - timedelta(seconds=1)))
        assert first.renew() == ("g/bridge-1",)
        taken = first.take_once()

    assert taken == 3
    assert applied_once(first_bridge) == (3, 3)
    assert _statuses(first_bridge) == {"processed": 3, "handovers": 0}


def test_an_owner_writes_a_handed_body_once_in_its_final_state(store_url):
    with b.fresh_bridge(store_url) as first_bridge, b.fresh_bridge(store_url) as second_bridge:
        first, second = _sharing(first_bridge, second_bridge)
        _hand_statuses(first, second, (1, 2), "70B3D57ED0000F04")
        said: list[str] = []
        event.listen(second_bridge.db.write_engine, "before_cursor_execute",
                     lambda _c, _cur, statement, *_a: said.append(" ".join(statement.split())))
        taken = second.take_once()

    assert taken == 2
    assert sum(s.startswith("INSERT INTO raw_uplinks") for s in said) == 1  # both rows, one statement
    assert not [s for s in said if s.startswith("UPDATE raw_uplinks")]
    assert applied_once(first_bridge) == (2, 2)
    assert _statuses(first_bridge) == {"processed": 2, "handovers": 0}


def test_bodies_handed_to_workers_that_are_all_gone_are_applied_by_a_bridge_sharing_no_collars(store_url):
    with b.fresh_bridge(store_url) as first_bridge, b.fresh_bridge(store_url) as second_bridge:
        first, second = _sharing(first_bridge, second_bridge)
        _hand_statuses(first, second, (1, 2, 3), "70B3D57ED0000F05")
        first_bridge.process_pending()  # bridge-2 holds its lease: its hand-overs are left to it
        kept_for_owner = _statuses(first_bridge)
        # Both workers are gone (their leases run out); the operator runs one bridge that shares nothing.
        with first_bridge.db.write() as session:
            session.execute(update(BridgeWorker).values(expires_at=utc_now() - timedelta(seconds=1)))
        report = first_bridge.process_pending()

    assert kept_for_owner == {"handovers": 3}
    assert report.processed == 3
    assert applied_once(first_bridge) == (3, 3)
    assert _statuses(first_bridge) == {"processed": 3, "handovers": 0}


@pytest.mark.postgres
def test_two_workers_judging_one_collar_at_once_take_its_rule_cursor_in_turn(postgres_url, caplog):
    with b.fresh_bridge(postgres_url) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-rc", f_cnt=1, dev_eui="70B3D57ED0000F03"))
        with bridge.db.write() as session:
            session.execute(RuleCursor.__table__.delete())  # as before the collar's first evaluation
        outcome: list[list[int]] = []
        with caplog.at_level(logging.ERROR), bridge.db.write() as session:
            rules_engine.evaluate_devices(session, bridge.rules_runtime, ["collar-rc"])
            other = threading.Thread(target=lambda: outcome.append(bridge.evaluate_rules("collar-rc")))
            other.start()
            other.join(1.0)
            waited = other.is_alive()  # the cursor is this transaction's until it commits
        other.join(60)
        with bridge.db.read() as session:
            cursors = session.scalar(select(func.count()).select_from(RuleCursor))

    assert waited
    assert outcome == [[]]
    assert cursors == 1
    assert not [r for r in caplog.records if "server rules failed" in r.getMessage()]


@pytest.mark.postgres
def test_a_worker_starting_while_another_starts_is_known_to_both_before_any_renewal(postgres_url, monkeypatch):
    # Leases of ten minutes: a renewal (every third of one) would come long after the wait below,
    # so only the members' notification can tell the first worker that the second joined.
    with b.fresh_bridge(postgres_url) as first_bridge, b.fresh_bridge(postgres_url) as second_bridge:
        first = CollarShare(first_bridge, "g/bridge-1", lease_s=600)
        second = CollarShare(second_bridge, "g/bridge-2", lease_s=600)
        listen = CollarShare._listen

        def second_joins_first(share: CollarShare):
            if share is first:  # the second worker takes its lease while the first is still starting
                second.start()
            return listen(share)

        monkeypatch.setattr(CollarShare, "_listen", second_joins_first)
        first.start()
        try:
            agreed_at_start = wait_until(lambda: first.members == second.members == ("g/bridge-1", "g/bridge-2"), 30)
        finally:
            second.stop()
            first.stop()

    assert agreed_at_start


@pytest.mark.postgres
def test_a_worker_busy_ingesting_learns_at_once_that_another_joined(postgres_url, monkeypatch):
    with b.fresh_bridge(postgres_url) as first_bridge, b.fresh_bridge(postgres_url) as second_bridge:
        first = CollarShare(first_bridge, "g/bridge-1", lease_s=600).start()
        monkeypatch.setattr(first_bridge, "ingesting", lambda within_s: True)  # under load, batch after batch
        second = CollarShare(second_bridge, "g/bridge-2", lease_s=600).start()
        try:
            both_known = wait_until(lambda: first.members == ("g/bridge-1", "g/bridge-2"), 30)
        finally:
            second.stop()
            first.stop()

    assert both_known


def _start_worker(database_url: str, broker_url: str, client_id: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "lora_bridge.bench", "mqtt-worker", database_url, broker_url, client_id, "kill-test"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    assert process.stdout.readline().strip() == b"ready"
    return process


@pytest.mark.mqtt
@pytest.mark.postgres
@pytest.mark.slow
def test_killing_one_of_two_workers_under_load_loses_nothing_and_applies_nothing_twice(mosquitto, postgres_url):
    devices = [f"collar-{i:02d}" for i in range(12)]
    messages = status_uplinks(devices, per_device=15)
    with b.fresh_bridge(postgres_url) as reader:
        workers = [_start_worker(postgres_url, mosquitto.url, f"kill-{n}") for n in range(2)]
        try:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="network-kill", protocol=mqtt.MQTTv5)
            client.username_pw_set(mosquitto.username, mosquitto.password)
            client.connect(mosquitto.host, mosquitto.port)
            client.loop_start()
            infos = [client.publish(topic, body, qos=1) for topic, body in messages]
            # Under load: kill -9 one worker once some of the uplinks are applied, then restart it (same
            # MQTT session) as a supervisor would.
            assert wait_until(lambda: applied_once(reader)[0] >= len(messages) // 5, 120)
            os.kill(workers[0].pid, signal.SIGKILL)
            workers[0].wait(30)
            for info in infos:
                info.wait_for_publish(timeout=60)
            client.disconnect()
            client.loop_stop()
            workers[0] = _start_worker(postgres_url, mosquitto.url, "kill-0")
            wait_until(lambda: applied_once(reader) == (len(messages), len(messages)), 180)
        finally:
            for worker in workers:
                worker.stdin.close()
            said = [json.loads(w.stdout.readline() or b"{}") for w in workers]
            for worker in workers:
                worker.wait(60)
        stored, positions = applied_once(reader)
        statuses = _statuses(reader)

    assert (len(messages) - stored, positions - stored) == (0, 0)  # lost, applied twice
    assert statuses["handovers"] == 0 and "received" not in statuses
    assert sum(s.get("handed_over", 0) for s in said) > 0  # the collars were shared, not all local


def test_the_timer_finding_no_bodies_waiting_leaves_the_sqlite_write_lock_to_the_applier(tmp_path):
    with b.fresh_bridge(f"sqlite:///{tmp_path / 'tembo.db'}") as bridge:
        said: list[str] = []
        event.listen(bridge.db.write_engine, "before_cursor_execute",
                     lambda _c, _cur, statement, *_a: said.append(statement.strip().upper()))
        report = bridge.process_pending(older_than_s=30)

    assert report.attempted == 0
    assert not [s for s in said if s.startswith("BEGIN IMMEDIATE")]
