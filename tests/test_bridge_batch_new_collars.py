"""A herd heard for the first time costs the store fewer statements a collar: each new collar is
inserted holding what its message says of it (not inserted, then updated), and it is looked for by
its DevEUI and its names in one statement, not three. On PostgreSQL, where a new collar is written at
once (foreign keys checked statement by statement), that was seven statements a collar; on SQLite the
batch's one read and one insert stay as they were."""

from __future__ import annotations

import bridge_builders as b
import pytest
from conftest import empty_store
from sqlalchemy import select

from lora_bridge.group_commit import Submission
from lora_bridge.store.tables import Animal, Device

HERD = [f"tembo-{n:02d}" for n in range(12)]


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_new_herd_is_filed_in_fewer_statements_a_collar(engine, request, tmp_path):
    delivery = [b.tts_uplink(b.status(), device_id=collar, f_cnt=1) for collar in HERD]
    with empty_store(engine, request, tmp_path / "tembo.db") as url, b.fresh_bridge(url) as bridge:
        said = b.statements_of(bridge)
        bridge.ingest_batch([Submission("tts", None, body) for body in delivery])
        with bridge.db.read() as session:
            collars = {d.device_id: (d.label, d.application_id, d.network, d.session, d.last_f_cnt)
                       for d in session.scalars(select(Device))}
            worn = {a.device_id: a.name for a in session.scalars(select(Animal))}

    # every collar filed under its name with what its message said, each worn by its placeholder animal
    assert collars == {collar: (collar, b.APPLICATION_ID, "tts", 0, 1) for collar in HERD}
    assert worn == {collar: collar for collar in HERD}
    by_name = sum(b.reads_by_one_value(s, "FROM devices WHERE devices.device_id") for s in said)
    by_eui = sum(b.reads_by_one_value(s, "FROM devices WHERE devices.dev_eui") for s in said)
    updates = sum(s.startswith("UPDATE devices") for s in said)
    inserts = sum(s.startswith("INSERT INTO devices") for s in said)
    if engine == "sqlite":  # the batch's read found none of them, and no other writer may file them meanwhile
        assert (by_eui, by_name, inserts, updates) == (0, 0, 1, 0)
    else:  # each looked for again (another worker may file it meanwhile), by its DevEUI and its names at once
        together = sum("WHERE devices.dev_eui = " in s and " OR devices.device_id IN " in s for s in said)
        assert (by_eui, together, by_name, inserts) == (len(HERD), len(HERD), 0, len(HERD))
        # what each one's status changed is written before the next collar's looks, not also at its insert
        assert updates == len(HERD)
