"""What a ranger, a researcher and an operator read does not depend on how the bridge was fed: the
bench herd applied one body at a time and through the durable intake's batches (the webhook answering
once a body is kept, the applier taking many at once) leaves the same rows in every table they read."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import bridge_builders as b
import pytest
from conftest import empty_store
from sqlalchemy import select

from lora_bridge import pipeline
from lora_bridge.bench import synthetic_bodies
from lora_bridge.domain import rules_engine
from lora_bridge.group_commit import Submission
from lora_bridge.store.tables import Alert, Base, Downlink
from lora_bridge.store.utc import utc_now

# Set from the clock of the machine at the moment of writing: never the same in two runs.
WALL_CLOCK = {"received_at", "processed_at", "created_at", "updated_at", "resolved_at", "evaluated_at", "at",
              "acknowledged_at", "sent_at", "next_try_at", "leased_until", "claimed_at"}
# Surrogate ids given in the order rows were inserted (a batch inserts its fixes collar by collar;
# a rule cursor names the last fix it judged by that id)
SURROGATE = {"id", "position_id"}
# Tables an applied uplink writes: collars, animals, raw bodies, fixes, behaviour, battery, alerts and
# their history, downlinks, dead letters, network events, rule cursors.
# With bodies of several new collars in one batch, applied collar by collar, the ids of animals and
# raw rows follow the batch's order, not the arrival's
BY_ARRIVAL = frozenset(SURROGATE | {"animal_id", "raw_uplink_id", "duplicate_of"})
TABLES = ("devices", "animals", "raw_uplinks", "dead_letters", "positions", "activity_summaries", "battery_readings",
          "alerts", "alert_events", "downlinks", "network_events", "rule_cursors", "notifications")


def stored(bridge, surrogate: frozenset[str] = frozenset(SURROGATE)) -> dict[str, list[str]]:
    """Every row of TABLES without wall-clock times and surrogate ids; a reference to an alert names
    the alert by its collar, type and start (sorted, so the order of insertion does not count)."""
    with bridge.db.read() as session:
        alert_keys = {a.id: (a.device_id, a.alert_type, a.dedup_key, str(a.time)) for a in session.scalars(select(Alert))}
        dump: dict[str, list[str]] = {}
        for name in TABLES:
            table = Base.metadata.tables[name]
            columns = [c for c in table.columns if c.name not in WALL_CLOCK | surrogate]
            rows = []
            for row in session.execute(select(*columns)).mappings():
                values: dict[str, Any] = dict(row)
                if "alert_id" in values:
                    values["alert_id"] = alert_keys.get(values["alert_id"])
                rows.append(repr(sorted(values.items())))
            dump[name] = sorted(rows)
    return dump


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_bench_herd_stores_the_same_rows_one_body_at_a_time_and_through_the_durable_intakes_batches(
        engine, request, tmp_path):
    bodies = synthetic_bodies(collars=20, hours=12)

    with empty_store(engine, request, tmp_path / "one.db") as url, b.fresh_bridge(url) as bridge:
        for body in bodies:
            bridge.ingest_batch([Submission("tts", None, body)])
        one_at_a_time = stored(bridge)

    # On PostgreSQL the applier a thread: an applier process warms up with a batch it rolls back, which
    # moves PostgreSQL's sequences, so every id these rows hold would differ from the other store's by
    # as much (the applier process on PostgreSQL: tests/test_bridge_durable_ack.py).
    applier = "thread" if engine == "postgres" else "auto"
    with empty_store(engine, request, tmp_path / "durable.db") as url, \
            b.fresh_bridge(url, webhook_ack="durable", intake_applier=applier) as bridge:
        intake = bridge.durable_intake()
        answered: list[Submission] = []
        done = threading.Event()

        def settled(submissions: list[Submission]) -> None:
            answered.extend(submissions)
            if len(answered) == len(bodies):
                done.set()

        for body in bodies:  # all at once, as a busy network server posts them: large batches
            intake.submit(Submission("tts", None, body), settled)
        assert done.wait(60)
        deadline = time.monotonic() + 60
        while intake.applied < len(bodies) and time.monotonic() < deadline:
            time.sleep(0.01)
        batches = intake.batches_applied
        in_batches = stored(bridge)

    assert {s.outcome().status for s in answered} == {"received"}
    assert batches < len(bodies) / 4  # the applier did take many bodies at once
    assert sum(len(rows) for rows in one_at_a_time.values()) > 2 * len(bodies)
    for name in TABLES:
        assert in_batches[name] == one_at_a_time[name], name


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_collars_first_heard_in_one_batch_are_filed_as_one_body_at_a_time_files_them_names_colliding_or_not(
        engine, request, tmp_path):
    # An operator's reserve: collar-01 is known; in one delivery a new collar arrives under a name
    # that collar-01 holds already (filed under its DevEUI), another new collar is renamed between its
    # two uplinks, a third comes first with a name and then under another collar's old name, and a
    # new collar's first uplink is heard twice.
    known = b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1)
    later = b.T0 + timedelta(minutes=10)
    delivery = [
        b.tts_uplink(b.status(time_s=b.T0_S + 600), device_id="collar-01", f_cnt=1, dev_eui="70B3D57ED0000A01",
                     received_at=later),
        b.tts_uplink(b.status(time_s=b.T0_S + 600), device_id="kubwa", f_cnt=1, received_at=later),
        b.tts_uplink(b.status(time_s=b.T0_S + 660), device_id="kubwa-renamed", f_cnt=2,
                     dev_eui=b.dev_eui_of("kubwa"), received_at=later + timedelta(minutes=1)),
        b.tts_uplink(b.status(time_s=b.T0_S + 600), device_id="ndogo", f_cnt=1, received_at=later),
        b.tts_uplink(b.status(time_s=b.T0_S + 700), device_id="kubwa", f_cnt=2, dev_eui=b.dev_eui_of("ndogo"),
                     received_at=later + timedelta(minutes=2)),
        b.tts_uplink(b.alert("poaching_risk", seq=1, lat=-2.51, lon=37.52), device_id="mpya", f_cnt=1,
                     gateways=("gw-a",), received_at=later),
        b.tts_uplink(b.alert("poaching_risk", seq=1, lat=-2.51, lon=37.52), device_id="mpya", f_cnt=1,
                     gateways=("gw-b",), received_at=later),
    ]

    dumps = []
    for name, batches in (("one", [[body] for body in delivery]), ("batch", [delivery])):
        with empty_store(engine, request, tmp_path / f"{name}.db") as url, b.fresh_bridge(url) as bridge:
            bridge.ingest_batch([Submission("tts", None, known)])
            for batch in batches:
                bridge.ingest_batch([Submission("tts", None, body) for body in batch])
            dumps.append(stored(bridge, BY_ARRIVAL))
            devices = {d.device_id: d.dev_eui for d in bridge.devices(viewer=b.RANGER)}

    one_at_a_time, in_one_batch = dumps
    assert devices == {"collar-01": b.dev_eui_of("collar-01"), "70B3D57ED0000A01": "70B3D57ED0000A01",
                       "kubwa": b.dev_eui_of("kubwa"), "ndogo": b.dev_eui_of("ndogo"), "mpya": b.dev_eui_of("mpya")}
    for name in TABLES:
        assert in_one_batch[name] == one_at_a_time[name], name


def sparse_herd(rounds: int = 12, every_h: int = 6) -> list[list[bytes]]:
    """A herd whose collars fix every few hours, each round's uplinks one delivery: so few fixes fall in
    a track's lookback that every judgement also reads the judged fixes before it (its context). A
    collar standing still (immobility), one walking with a GPS jump (an outlier), one resting then
    walking off, one walking."""
    deliveries = []
    for n in range(rounds):
        t_s, heard = b.T0_S + 3600 * every_h * n, b.T0 + timedelta(hours=every_h * n, seconds=2)
        walked = 0.01 * n  # about a kilometre a round
        fixes = {
            "still": (-2.5, 37.5),
            "jumpy": (-2.6 + walked + (0.5 if n == 5 else 0.0), 37.6),
            "rests-then-walks": (-2.7 + (walked if n > 4 else 0.0), 37.7),
            "walker": (-2.8, 37.8 + walked),
        }
        deliveries.append([
            b.tts_uplink(b.status(time_s=t_s, lat=lat, lon=lon), device_id=collar, f_cnt=n + 1, received_at=heard)
            for collar, (lat, lon) in fixes.items()
        ])
    return deliveries


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_sparse_herd_judged_a_delivery_at_a_time_reads_its_context_together_and_judges_as_one_by_one(
        engine, request, tmp_path, monkeypatch):
    deliveries = sparse_herd()
    dumps, own_reads, shared_reads = [], {}, {}
    tracks: dict[str, list[tuple[str, Any]]] = {}  # the fixes each judgement read, its context included
    read_track = rules_engine._read_track

    def keep_track(session, device_id, *args):
        track = read_track(session, device_id, *args)
        tracks[name].append((device_id, track and [(r[1], r[2], r[3]) for r in track.rows]))
        return track

    monkeypatch.setattr(rules_engine, "_read_track", keep_track)
    for name, batched in (("one", False), ("batch", True)):
        tracks[name] = []
        with empty_store(engine, request, tmp_path / f"{name}.db") as url, b.fresh_bridge(url) as bridge:
            said = b.statements_of(bridge)
            own_reads[name], shared_reads[name] = [], []
            for delivery in deliveries:
                said.clear()
                for batch in ([delivery] if batched else [[body] for body in delivery]):
                    bridge.ingest_batch([Submission("tts", None, body) for body in batch])
                own_reads[name].append(sum("positions.time < " in s and "context_" not in s for s in said))
                shared_reads[name].append(sum("context_0" in s for s in said))
            dumps.append(stored(bridge, BY_ARRIVAL))
            alerts = {(a.device_id, a.alert_type) for a in bridge.alerts(viewer=b.RANGER)}

    one_at_a_time, by_delivery = dumps
    assert ("still", "immobility") in alerts and ("walker", "immobility") not in alerts
    # One by one, each collar's judgement reads the fixes before its track alone while its lookback
    # holds fewer than CONTEXT_FIXES; a delivery of the herd reads them all in one statement (its first
    # needs none: every fix of a new collar is read with the others').
    needing = [n for n, reads in enumerate(own_reads["one"]) if reads]
    assert len(needing) > 3 and all(own_reads["one"][n] == 4 for n in needing)
    assert own_reads["batch"] == [0] * len(deliveries)
    assert shared_reads["batch"] == [1 if n in needing and n > 0 else 0 for n in range(len(deliveries))]
    assert sorted(tracks["batch"], key=repr) == sorted(tracks["one"], key=repr)
    for name in TABLES:
        assert by_delivery[name] == one_at_a_time[name], name


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_herd_alerting_in_one_delivery_reads_ahead_once_and_files_its_alerts_as_reading_each_alone(
        engine, request, tmp_path, monkeypatch):
    # What a herd's collar alerts read (their collars' alerts, last fixes, latest behaviour) is read once
    # for the delivery before it is applied (`read_ahead_for_collar_alerts`); the delivery leaves the
    # rows it leaves with each alert reading for itself: a new alert and its repeat in the same
    # delivery, a repeat of an open alert, a repeat of an alert a ranger has resolved (an occurrence,
    # not a new alert), a new alert after a resolved one.
    t1 = b.T0_S + 3600
    earlier = [
        b.tts_uplink(b.status(b.T0_S), device_id=c, f_cnt=1) for c in ("kubwa", "ndogo", "mzee", "dada")
    ] + [
        b.tts_uplink(b.activity(b.T0_S), device_id="kubwa", f_cnt=2),
        b.tts_uplink(b.alert("poaching_risk", seq=1, time_s=b.T0_S + 60), device_id="ndogo", f_cnt=2),
        b.tts_uplink(b.alert("mortality", seq=1, time_s=b.T0_S + 60), device_id="mzee", f_cnt=2),
        b.tts_uplink(b.alert("tamper", seq=1, time_s=b.T0_S + 60), device_id="dada", f_cnt=2),
    ]
    delivery = [
        b.tts_uplink(b.status(t1, lat=-2.6), device_id="kubwa", f_cnt=3),
        b.tts_uplink(b.alert("mortality", seq=2, time_s=t1 + 60), device_id="kubwa", f_cnt=4),
        b.tts_uplink(b.alert("mortality", seq=2, time_s=t1 + 60), device_id="kubwa", f_cnt=5),
        b.tts_uplink(b.alert("poaching_risk", seq=2, time_s=t1), device_id="ndogo", f_cnt=3),
        b.tts_uplink(b.alert("poaching_risk", seq=1, time_s=b.T0_S + 60), device_id="ndogo", f_cnt=4),
        b.tts_uplink(b.alert("mortality", seq=1, time_s=b.T0_S + 60), device_id="mzee", f_cnt=3),
        b.tts_uplink(b.alert("tamper", seq=2, time_s=t1), device_id="dada", f_cnt=3),
        b.tts_uplink(b.alert("tamper", seq=1, time_s=b.T0_S + 60), device_id="dada", f_cnt=4),
    ]
    read_ahead = pipeline.read_ahead_for_collar_alerts
    # ndogo's first ack went on air a minute ago (on its way: its repeat queues none), dada's failed
    sent_at = utc_now() - timedelta(minutes=1)
    dumps, said = [], []
    for name, ahead in (("alone", lambda *_args: None), ("ahead", read_ahead)):
        monkeypatch.setattr(pipeline, "read_ahead_for_collar_alerts", ahead)
        with empty_store(engine, request, tmp_path / f"{name}.db") as url, b.fresh_bridge(url) as bridge:
            for body in earlier:
                bridge.ingest_batch([Submission("tts", None, body)])
            for alert in bridge.alerts(viewer=b.RANGER):
                if alert.device_id in ("mzee", "dada"):
                    bridge.resolve_alert(alert.alert_id, b.RANGER, "true")
            with bridge.db.write() as session:
                for ack in session.scalars(select(Downlink).where(Downlink.device_id.in_(("ndogo", "dada")))):
                    ack.state, ack.sent_at = ("sent", sent_at) if ack.device_id == "ndogo" else ("failed", sent_at)
            seen = b.statements_of(bridge)
            bridge.ingest_batch([Submission("tts", None, body) for body in delivery])
            said.append(seen)
            dumps.append(stored(bridge))
            alerts = {(a.device_id, a.alert_type, a.state): a.occurrences for a in bridge.alerts(viewer=b.RANGER)}

    each_alone, read_once = dumps
    assert alerts[("kubwa", "mortality", "new")] == 2
    assert alerts[("ndogo", "poaching_risk", "new")] == 3
    assert alerts[("mzee", "mortality", "resolved")] == 2
    assert ("dada", "tamper", "resolved") in alerts and ("dada", "tamper", "new") in alerts
    alone, ahead = said
    assert sum(b.reads_by_one_value(s, "FROM alerts WHERE alerts.device_id") for s in alone) == 7
    assert not [s for s in ahead if b.reads_by_one_value(s, "FROM alerts WHERE alerts.device_id")]
    assert sum(b.reads_by_a_list(s, "FROM alerts WHERE alerts.device_id") and "alerts.source = " in s for s in ahead) == 1
    assert not [s for s in ahead if s.startswith(("SELECT positions.time", "SELECT activity_summaries.time"))]
    # their acks' downlinks of the same bytes: read once for the delivery, on both engines
    assert sum(b.reads_by_one_value(s, "FROM downlinks WHERE downlinks.device_id") for s in alone) == 7
    assert sum(b.reads_by_one_value(s, "FROM downlinks WHERE downlinks.device_id") for s in ahead) == 0
    assert sum(b.reads_by_a_list(s, "FROM downlinks WHERE downlinks.device_id") for s in ahead) == 1
    for name in TABLES:
        assert read_once[name] == each_alone[name], name


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_herd_batch_judges_its_collars_and_their_cursors_as_it_read_them(
        engine, request, tmp_path, monkeypatch):
    """The collars, the animals wearing them and their rule cursors that a batch read (or made) before
    applying their uplinks are the ones its rules judge: the rules read none of them again (a collar the
    batch filed as new has no cursor stored, known without a read), and every table holds what it holds
    when they read the collars again."""
    herd = synthetic_bodies(collars=6, hours=8)
    herd += [b.tts_uplink(b.alert("mortality", seq=1, time_s=b.T0_S + 7 * 3600), device_id=f"bench-00{n}", f_cnt=900)
             for n in range(2)]
    batches = [herd[i:i + 24] for i in range(0, len(herd), 24)]

    dumps, joined_reads, cursor_reads = [], [], []
    for read_again in (False, True):
        if read_again:
            monkeypatch.setattr(rules_engine, "_collars_held", lambda _session, _ids: None)
        name = "again" if read_again else "held"
        with empty_store(engine, request, tmp_path / f"{name}.db") as url, b.fresh_bridge(url) as bridge:
            said = b.statements_of(bridge)
            for batch in batches:
                results = bridge.ingest_batch([Submission("tts", None, body) for body in batch])
                assert {r.status for r in results} <= {"processed", "duplicate"}  # a copy from a second gateway
            dumps.append(stored(bridge))
        # the rules' own read of collars, animals and cursors (the batch's read of its collars asks by DevEUI too)
        joined_reads.append(sum(s.startswith("SELECT devices.") and "JOIN animals" in s and "JOIN rule_cursors" in s
                                and "devices.dev_eui IN" not in s for s in said))
        # the cursors read whole: with the batch's collars on SQLite, with their locks (FOR UPDATE, before
        # anything of theirs is written) on PostgreSQL; never again by the rules
        cursor_reads.append((
            sum(s.startswith("SELECT devices.") and "devices.dev_eui IN" in s and "JOIN rule_cursors" in s for s in said),
            sum(s.startswith("SELECT rule_cursors.device_id, rule_cursors.position_id") and "FOR UPDATE" in s
                for s in said),
            sum(s.startswith("SELECT rule_cursors.device_id, rule_cursors.position_id") and "FOR UPDATE" not in s
                for s in said)))

    assert joined_reads == [0, len(batches)]
    with_the_batch, locks, read_alone = cursor_reads[0]
    if engine == "sqlite":
        # read with the collars; never alone: a collar a batch files as new (the first batch's six, the last
        # batch's two mortality alerts sent under DevEUIs of their own) has none stored, known without a read
        assert (with_the_batch, locks, read_alone) == (len(batches), 0, 0)
    else:  # read with their locks; a new collar's taken (and read) when its first fixes are written
        assert (with_the_batch, read_alone) == (0, 0) and locks >= len(batches)
    held, read_again = dumps
    assert len(held["alerts"]) >= 2 and held["rule_cursors"]
    for name in TABLES:
        assert held[name] == read_again[name], name
