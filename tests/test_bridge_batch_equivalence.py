"""What a ranger, a researcher and an operator read does not depend on how the bridge was fed: the
bench herd applied one body at a time and through the durable intake's batches (the webhook answering
once a body is kept, the applier taking many at once) leaves the same rows in every table they read."""

from __future__ import annotations

import threading
import time
from typing import Any

import bridge_builders as b
import pytest
from conftest import empty_store
from sqlalchemy import select

from lora_bridge.bench import synthetic_bodies
from lora_bridge.group_commit import Submission
from lora_bridge.store.tables import Alert, Base

# Set from the clock of the machine at the moment of writing: never the same in two runs.
WALL_CLOCK = {"received_at", "processed_at", "created_at", "updated_at", "resolved_at", "evaluated_at", "at",
              "acknowledged_at", "sent_at", "next_try_at", "leased_until", "claimed_at"}
# Surrogate ids given in the order rows were inserted (a batch inserts its fixes collar by collar;
# a rule cursor names the last fix it judged by that id)
SURROGATE = {"id", "position_id"}
# Tables an applied uplink writes: collars, animals, raw bodies, fixes, behaviour, battery, alerts and
# their history, downlinks, dead letters, network events, rule cursors.
TABLES = ("devices", "animals", "raw_uplinks", "dead_letters", "positions", "activity_summaries", "battery_readings",
          "alerts", "alert_events", "downlinks", "network_events", "rule_cursors", "notifications")


def stored(bridge) -> dict[str, list[str]]:
    """Every row of TABLES without wall-clock times and surrogate ids; a reference to an alert names
    the alert by its collar, type and start (sorted, so the order of insertion does not count)."""
    with bridge.db.read() as session:
        alert_keys = {a.id: (a.device_id, a.alert_type, a.dedup_key, str(a.time)) for a in session.scalars(select(Alert))}
        dump: dict[str, list[str]] = {}
        for name in TABLES:
            table = Base.metadata.tables[name]
            columns = [c for c in table.columns if c.name not in WALL_CLOCK | SURROGATE]
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

    with empty_store(engine, request, tmp_path / "durable.db") as url, \
            b.fresh_bridge(url, webhook_ack="durable") as bridge:
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
