"""A herd heard for the first time on SQLite: its new collars are held back from the unit of work and written
by one plain insert when the batch needs them (`bulk.defer_add`), as their placeholder animals are, not by
the ORM's flush (about 140 Python calls a row there, in the bench's run); each stored as its messages left it."""

from __future__ import annotations

import bridge_builders as b
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from lora_bridge.group_commit import Submission
from lora_bridge.store.tables import Animal, Device

HERD = [f"tembo-{n:02d}" for n in range(12)]


def test_a_new_herds_collars_are_filed_without_the_orms_flush(tmp_path):
    delivery = [body for n, collar in enumerate(HERD)
                for body in (b.tts_uplink(b.status(lat=-2.5 + n / 100), device_id=collar, f_cnt=1),
                             b.tts_uplink(b.activity(), device_id=collar, f_cnt=2))]
    flushed_collars: list[str] = []

    def count_flushed(session, _context, _instances) -> None:
        flushed_collars.extend(obj.device_id for obj in session.new if isinstance(obj, Device))

    with b.fresh_bridge(f"sqlite:///{tmp_path / 'tembo.db'}", outbox_worker=False) as bridge:
        said = b.statements_of(bridge)
        event.listen(Session, "before_flush", count_flushed)
        try:
            bridge.ingest_batch([Submission("tts", None, body) for body in delivery])
        finally:
            event.remove(Session, "before_flush", count_flushed)
        with bridge.db.read() as session:
            collars = {d.device_id: (d.label, d.application_id, d.network, d.session, d.last_f_cnt,
                                     d.last_seen is not None, d.status_time is not None)
                       for d in session.scalars(select(Device))}
            worn = {a.device_id: a.name for a in session.scalars(select(Animal))}

    assert flushed_collars == []
    assert sum(s.startswith("INSERT INTO devices") for s in said) == 1
    # every collar filed under its name with what its messages said (its last frame, its status), worn by its placeholder
    assert collars == {collar: (collar, b.APPLICATION_ID, "tts", 0, 2, True, True) for collar in HERD}
    assert worn == {collar: collar for collar in HERD}
