"""A herd heard at once costs the store one round trip for the ids of its new rows, not one a row: the
ids of a delivery's new alerts and their acks, and of a new herd's placeholder animals, are taken
together on PostgreSQL, leaving the rows the same delivery leaves taking each id as its row is made."""

from __future__ import annotations

import bridge_builders as b
import pytest
from conftest import empty_store
from test_bridge_batch_equivalence import TABLES, stored

from lora_bridge import pipeline
from lora_bridge.domain import messages
from lora_bridge.group_commit import Submission
from lora_bridge.store import ids

HERD = [f"tembo-{n:02d}" for n in range(12)]


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_herd_alerting_in_one_delivery_takes_its_alerts_and_acks_ids_in_one_round_trip(
        engine, request, tmp_path, monkeypatch):
    # Twelve known collars raise a poaching alert each in one delivery (the last twice, its repeat
    # adding an occurrence): twelve alerts and twelve acks, their ids taken in one statement on
    # PostgreSQL (on SQLite counted from the table's largest id, read once), the rows those of the same
    # delivery taking each id when its row is made.
    earlier = [b.tts_uplink(b.status(), device_id=collar, f_cnt=1) for collar in HERD]
    delivery = [b.tts_uplink(b.alert("poaching_risk", seq=1, time_s=b.T0_S + 60), device_id=collar, f_cnt=2)
                for collar in HERD]
    delivery.append(b.tts_uplink(b.alert("poaching_risk", seq=1, time_s=b.T0_S + 60), device_id=HERD[-1], f_cnt=3))
    dumps, said = [], []
    for name, expect in (("each", lambda *_args: None), ("together", ids.expect_ids)):
        monkeypatch.setattr(messages, "expect_ids", expect)
        with empty_store(engine, request, tmp_path / f"{name}.db") as url, b.fresh_bridge(url) as bridge:
            bridge.ingest_batch([Submission("tts", None, body) for body in earlier])
            seen = b.statements_of(bridge)
            bridge.ingest_batch([Submission("tts", None, body) for body in delivery])
            said.append([s for s in seen if "nextval" in s and "raw_uplinks" not in s])
            dumps.append(stored(bridge))
            alerts = {(a.device_id, a.alert_type): a.occurrences for a in bridge.alerts(viewer=b.RANGER)}
            acks = {(d.device_id, d.command) for d in bridge.downlinks(viewer=b.RANGER)}

    assert alerts == {**{(collar, "poaching_risk"): 1 for collar in HERD}, (HERD[-1], "poaching_risk"): 2}
    assert acks == {(collar, "ack_alert") for collar in HERD}
    one_at_a_time, together = said
    assert (len(one_at_a_time), len(together)) == ((0, 0) if engine == "sqlite" else (24, 1))
    for name in TABLES:
        assert dumps[1][name] == dumps[0][name], name


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_new_herd_heard_in_one_delivery_takes_its_animals_ids_in_one_round_trip(engine, request, tmp_path,
                                                                                  monkeypatch):
    # A fresh store's first delivery: twelve collars never heard, each with a status, the last also with
    # an alert: twelve placeholder animals, the new collar's alert and its ack, whose ids are taken in
    # one statement on PostgreSQL, not fourteen, the rows those of the same delivery taking each id as
    # its row is made.
    delivery = [b.tts_uplink(b.status(), device_id=collar, f_cnt=1) for collar in HERD]
    delivery.append(b.tts_uplink(b.alert("mortality", seq=1, time_s=b.T0_S + 60), device_id=HERD[-1], f_cnt=2))
    dumps, said, inserts = [], [], []
    for name, expect in (("each", lambda *_args: None), ("together", ids.expect_ids)):
        monkeypatch.setattr(pipeline, "expect_ids", expect)
        monkeypatch.setattr(messages, "expect_ids", expect)
        with empty_store(engine, request, tmp_path / f"{name}.db") as url, b.fresh_bridge(url) as bridge:
            seen = b.statements_of(bridge)
            bridge.ingest_batch([Submission("tts", None, body) for body in delivery])
            said.append([s for s in seen if "nextval" in s and "raw_uplinks" not in s])
            inserts.append([s for s in seen if s.startswith("INSERT INTO animals")])
            dumps.append(stored(bridge))
            collars = {d.device_id for d in bridge.devices(viewer=b.RANGER)}
            alerts = [(a.device_id, a.alert_type) for a in bridge.alerts(viewer=b.RANGER)]

    assert collars == set(HERD)
    assert alerts == [(HERD[-1], "mortality")]
    one_at_a_time, together = said
    assert (len(one_at_a_time), len(together)) == ((0, 0) if engine == "sqlite" else (14, 1))
    # on SQLite (foreign keys checked at the commit) the animals go in together, in one statement
    assert len(inserts[1]) == (1 if engine == "sqlite" else len(HERD))
    for name in TABLES:
        assert dumps[1][name] == dumps[0][name], name
