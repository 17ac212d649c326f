"""The bridge on both of its stores (SQLite embedded, PostgreSQL + PostGIS at scale): concurrency,
schema migrations, spatial columns and the retention of raw bodies."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import bridge_builders as b
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, event, inspect, select, text

from lora_bridge import ingest
from lora_bridge.group_commit import Submission
from lora_bridge.store import migrate
from lora_bridge.store.tables import Base, RawUplink
from lora_bridge.store.utc import utc_now
from tembo.cli import main


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


def test_copies_of_one_uplink_taken_by_two_workers_at_once_are_one_uplink_with_every_gateway(store_url):
    uplinks = 16
    gateways = ("gw-a", "gw-b", "gw-c", "gw-d")
    with b.fresh_bridge(store_url, outbox_worker=False) as first, b.fresh_bridge(store_url, outbox_worker=False) as second:
        first.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S - 60), f_cnt=1))  # a collar both know
        barrier = threading.Barrier(len(gateways))
        errors: list[BaseException] = []

        def gateway(bridge, gw: str) -> None:
            try:
                for n in range(uplinks):
                    body = b.tts_uplink(b.status(time_s=b.T0_S + 60 * n), f_cnt=n + 2, gateways=(gw,))
                    barrier.wait(timeout=30)  # the copies of one uplink reach both workers together
                    bridge.ingest_tts_uplink(body)
            except BaseException as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)
                barrier.abort()

        threads = [threading.Thread(target=gateway, args=(bridge, gw))
                   for bridge, gw in zip((first, second, first, second), gateways, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with first.db.read() as session:
            firsts = session.scalars(select(RawUplink).where(RawUplink.duplicate_of.is_(None), RawUplink.f_cnt > 1)).all()
            heard_by = sorted(tuple(sorted(g["gateway_id"] for g in raw.gateways)) for raw in firsts)
        counts = first.counts()

    assert errors == []
    assert (counts["uplinks_stored"], counts["duplicates"], counts["positions"]) == (uplinks + 1, 3 * uplinks, uplinks + 1)
    assert heard_by == [gateways] * uplinks


@pytest.mark.postgres
def test_a_batch_on_postgres_claims_its_uplinks_without_a_savepoint_each_and_judges_its_collars_together(postgres_url):
    collars = ("collar-01", "collar-02")
    with b.fresh_bridge(postgres_url, outbox_worker=False) as bridge:
        bridge.ingest_batch([Submission("tts", None, b.tts_uplink(b.status(time_s=b.T0_S), device_id=c, f_cnt=1))
                             for c in collars])
        bodies = [b.tts_uplink(b.status(time_s=b.T0_S + 60 * n), device_id=c, f_cnt=n + 2)
                  for n in range(10) for c in collars]
        copy = b.tts_uplink(b.status(time_s=b.T0_S), device_id="collar-01", f_cnt=2, gateways=("gw-south",))
        savepoints: list[str] = []
        cursor_locks: list[str] = []

        def seen(_connection, _cursor, statement, *_args) -> None:
            if statement.startswith("SAVEPOINT"):
                savepoints.append(statement)
            if "FROM rule_cursors" in statement and "FOR UPDATE" in statement:
                cursor_locks.append(statement)

        event.listen(bridge.db.write_engine, "before_cursor_execute", seen)
        results = bridge.ingest_batch([Submission("tts", None, body) for body in [*bodies, copy]])
        event.remove(bridge.db.write_engine, "before_cursor_execute", seen)

    assert [r.status for r in results] == ["processed"] * len(bodies) + ["duplicate"]
    # The batch's collars are judged together in one savepoint (their cursors held since the batch
    # read them); the uplinks' keys were locked with the batch (`ingest.lock_keys`): claiming them
    # takes none.
    assert len(savepoints) == 1
    # Both collars' rule cursors taken once, when the batch read them (`rules_cursors`): not again
    # before their fixes are written, nor before their rules read.
    assert len(cursor_locks) == 1


@pytest.mark.postgres
def test_a_postgres_batch_with_more_keys_than_it_may_lock_claims_each_in_a_savepoint(postgres_url, monkeypatch):
    monkeypatch.setattr(ingest, "LOCK_KEYS_AT_MOST", 3)
    with b.fresh_bridge(postgres_url, outbox_worker=False) as bridge:
        bridge.ingest_batch([Submission("tts", None, b.tts_uplink(b.status(time_s=b.T0_S), f_cnt=1))])
        bodies = [b.tts_uplink(b.status(time_s=b.T0_S + 60 * n), f_cnt=n + 2) for n in range(5)]
        copy = b.tts_uplink(b.status(time_s=b.T0_S), f_cnt=2, gateways=("gw-south",))
        savepoints: list[str] = []

        def seen(_connection, _cursor, statement, *_args) -> None:
            if statement.startswith("SAVEPOINT"):
                savepoints.append(statement)

        event.listen(bridge.db.write_engine, "before_cursor_execute", seen)
        results = bridge.ingest_batch([Submission("tts", None, body) for body in [*bodies, copy]])
        event.remove(bridge.db.write_engine, "before_cursor_execute", seen)

    assert [r.status for r in results] == ["processed"] * len(bodies) + ["duplicate"]
    # No advisory locks taken: a savepoint for each key claimed, and the collar's rules in one more
    assert len(savepoints) == len(bodies) + 1


def test_migrated_store_has_exactly_the_tables_the_models_describe(store_url):
    engine = create_engine(store_url)
    try:
        assert migrate.upgrade(engine) == migrate.head_revision()
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"include_object": migrate.include_object, "compare_type": True}
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()

    assert differences == []


def test_every_uplink_keeps_no_index_up_to_date_twice(store_url):
    """No table of a migrated store holds two indexes (or an index and a key) on the same columns in
    the same order: each stored row would update both, and the store would keep its values twice."""
    engine = create_engine(store_url)
    try:
        migrate.upgrade(engine)
        schema = inspect(engine)
        twice = []
        for table in schema.get_table_names():
            seen: dict[tuple[str, ...], str] = {}
            primary = schema.get_pk_constraint(table)
            if primary["constrained_columns"]:
                seen[tuple(primary["constrained_columns"])] = primary.get("name") or "primary key"
            keyed = [(c["name"], c["column_names"]) for c in schema.get_unique_constraints(table)]
            indexed = [(i["name"], i["column_names"]) for i in schema.get_indexes(table)]
            for name, columns in keyed + indexed:
                if None in columns:  # an index on an expression
                    continue
                if tuple(columns) in seen and seen[tuple(columns)] != name:
                    twice.append((table, seen[tuple(columns)], name))
                seen.setdefault(tuple(columns), name)
    finally:
        engine.dispose()

    assert twice == []


def test_operator_migrates_a_store_from_the_command_line(store_url, capsys):
    assert main(["bridge", "migrate", "--database-url", store_url]) == 0
    assert main(["bridge", "migrate", "--database-url", store_url]) == 0

    first, again = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["to"] == again["to"] == again["from"] == migrate.head_revision()
    assert "@" not in first["database"] or ":***@" in first["database"]


def test_a_store_made_before_migrations_is_adopted_with_its_data(sqlite_url):
    engine = create_engine(sqlite_url)
    # How stores were made before migrations: the baseline's tables (today's models have grown since),
    # no alembic_version, the reserve's features in "geography".
    migrate.upgrade(engine, migrate.BASELINE_REVISION)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(text("ALTER TABLE geography_features RENAME TO geography"))
        connection.execute(
            text("INSERT INTO raw_uplinks (received_at, source, body, status, gateways) "
                 "VALUES ('2026-03-01 06:00:00', 'tts', x'7b7d', 'received', '[]')")
        )
    engine.dispose()

    with b.fresh_bridge(sqlite_url) as bridge:
        revision = migrate.current_revision(bridge.db.write_engine)
        counts = bridge.counts()
        kinds = {f["properties"]["kind"] for f in bridge.geography()["features"]}

    assert revision == migrate.head_revision()
    assert counts["uplinks_stored"] == 1
    assert kinds == set()


@pytest.mark.postgres
def test_postgis_finds_the_positions_inside_the_farmland(postgres_url):
    farmland = {"type": "Polygon", "coordinates": [[[37.49, -2.51], [37.51, -2.51], [37.51, -2.49],
                                                     [37.49, -2.49], [37.49, -2.51]]]}
    geojson = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": farmland, "properties": {"kind": "farmland", "name": "maize"}},
    ]}
    with b.fresh_bridge(postgres_url) as bridge:
        bridge.load_geography(geojson)
        for n, (lat, lon) in enumerate([(-2.5, 37.5), (-2.6, 37.5), (-2.495, 37.505)]):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 600 * n, lat=lat, lon=lon), f_cnt=n + 1))
        with bridge.db.read() as session:
            inside = session.execute(text(
                "SELECT p.time FROM positions p JOIN geography_features g ON ST_Within(p.geom, g.geom) "
                "WHERE g.kind = 'farmland' ORDER BY p.time"
            )).scalars().all()
            indexes = session.execute(text(
                "SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%USING gist%' ORDER BY indexname"
            )).scalars().all()

    assert inside == [b.T0, b.T0 + timedelta(seconds=1200)]
    assert indexes == ["ix_geography_features_geom", "ix_positions_geom"]


def test_raw_bodies_past_retention_are_compacted_and_the_ranger_keeps_every_fact(store_url):
    with b.fresh_bridge(store_url, raw_retention_days=30) as bridge:
        for n in range(3):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 600 * n, lat=-2.5 - n / 100), f_cnt=n + 1,
                                                  gateways=("gw-a", "gw-b")))
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 600 * n, lat=-2.5 - n / 100), f_cnt=n + 1,
                                                  gateways=("gw-c",)))
        bridge.ingest_tts_uplink(b.tts_uplink((1, b"\xff"), f_cnt=9))  # undecodable: a dead letter
        before = bridge.counts()
        too_early = bridge.compact_raw_bodies()
        report = bridge.compact_raw_bodies(now=utc_now() + timedelta(days=31))
        again = bridge.compact_raw_bodies(now=utc_now() + timedelta(days=31))
        after = bridge.counts()
        with bridge.db.read() as session:
            bodies = {raw.status: raw.body for raw in session.scalars(select(RawUplink))}
            gateways = sorted(len(raw.gateways) for raw in session.scalars(select(RawUplink)) if raw.status == "processed")
        dead = bridge.dead_letters()

    assert (too_early.bodies_cleared, too_early.duplicates_deleted) == (0, 0)
    assert (report.bodies_cleared, report.duplicates_deleted) == (3, 3)
    assert report.bytes_freed > 0
    assert (again.bodies_cleared, again.duplicates_deleted) == (0, 0)
    assert bodies["processed"] == b"" and bodies["dead_letter"] != b""
    assert gateways == [3, 3, 3]
    assert len(dead) == 1
    assert {k: after[k] for k in ("uplinks_stored", "positions", "animals", "dead_letter")} == {
        k: before[k] for k in ("uplinks_stored", "positions", "animals", "dead_letter")
    }
    assert after["duplicates"] == 0


def test_operator_compacts_the_store_from_the_command_line_and_sees_its_size(sqlite_url, capsys):
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))

    assert main(["bridge", "compact", "--database-url", sqlite_url, "--retention-days", "30"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["bodies_cleared"] == 0  # received just now: kept
    assert report["store_bytes"] >= report["used_bytes"] > 0


def test_a_new_collar_heard_by_several_workers_at_once_is_one_collar(store_url):
    with b.fresh_bridge(store_url, outbox_worker=False) as first, b.fresh_bridge(store_url, outbox_worker=False) as second:
        bodies = [b.tts_uplink(b.status(time_s=b.T0_S + 60 * n), device_id="collar-new", f_cnt=n + 1,
                               dev_eui="70B3D57ED00000AA") for n in range(12)]
        barrier = threading.Barrier(4)

        def worker(bridge, mine) -> None:
            barrier.wait(timeout=30)
            for body in mine:
                bridge.ingest_tts_uplink(body)

        threads = [threading.Thread(target=worker, args=(bridge, bodies[n::4]))
                   for n, bridge in enumerate((first, second, first, second))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        devices = [(d.device_id, d.dev_eui) for d in first.devices()]
        counts = first.counts()

    assert devices == [("collar-new", "70B3D57ED00000AA")]
    assert (counts["uplinks_stored"], counts["positions"]) == (12, 12)


@pytest.mark.parametrize("empty_url", ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)])
def test_an_upgraded_store_keeps_each_collars_downlink_route_and_gives_a_shared_one_to_its_tenants_collar(
        empty_url, request):
    store_url = request.getfixturevalue(empty_url)
    # Yesterday's store (0027): routes by application and TTS device id. KWS's ABP collar-1 and
    # SANParks' collar of that name (two tenants, application `tembo` both) shared one route, last
    # written by SANParks' webhook; collar-07 had a route of its own.
    engine = create_engine(store_url)
    kws = "https://kws.eu1.cloud.thethings.industries/api/v3/as/applications/tembo/webhooks/t/devices/collar-1/down/push"
    sanparks = kws.replace("kws.", "sanparks.")
    own = "https://eu1.cloud.thethings.network/api/v3/as/applications/park/webhooks/t/devices/collar-07/down/push"
    try:
        migrate.upgrade(engine, "0027_positions_collar_time")
        with engine.begin() as connection:
            for device_id, application, scope, name in (
                    ("collar-1", "tembo", "kws", "collar-1"), ("tembo@sanparks/collar-1", "tembo", "sanparks", "collar-1"),
                    ("collar-07", "park", "eu1.cloud.thethings.network", "collar-07")):
                connection.execute(text("INSERT INTO devices (device_id, application_id, network_scope, network, "
                                        "label, flags, reported_settings, session) VALUES (:d, :a, :s, 'tts', :n, "
                                        "'{}', '{}', 0)"), {"d": device_id, "a": application, "s": scope, "n": name})
            for application, name, push in (("tembo", "collar-1", sanparks), ("park", "collar-07", own)):
                connection.execute(text("INSERT INTO downlink_routes (application_id, tts_device_id, push_url, "
                                        "api_key, updated_at) VALUES (:a, :n, :p, 'NNSXS.K', :t)"),
                                   {"a": application, "n": name, "p": push, "t": utc_now()})
        assert migrate.upgrade(engine) == migrate.head_revision()
        with engine.connect() as connection:
            routes = dict(connection.execute(text("SELECT device_id, push_url FROM downlink_routes")).all())
    finally:
        engine.dispose()

    # The shared route goes to SANParks' collar (its host names the tenant), never to KWS's; KWS's
    # collar gets its own with its next message.
    assert routes == {"tembo@sanparks/collar-1": sanparks, "collar-07": own}
