"""A ranger's ack read within a batch sees the batch's own changes: a changed or deleted ack of the
collar the read is about is written first, while one of another collar leaves the read unflushed."""

from __future__ import annotations

import bridge_builders as b
from sqlalchemy import event

from lora_bridge.domain import downlinks
from lora_bridge.group_commit import Submission
from lora_bridge.store import unflushed
from lora_bridge.store.tables import Downlink

_ACK = {"seq": 1, "alert_type": "mortality"}


def test_an_ack_deleted_in_the_batch_leaves_the_read_and_another_collars_change_does_not_flush(store_url):
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        for n, collar in enumerate(("collar-01", "collar-02"), start=1):
            bridge.ingest_batch([Submission("tts", None, b.tts_uplink(b.status(b.T0_S), device_id=collar, f_cnt=n))])
        with bridge.db.write() as session:
            mine = downlinks.queue_command(session, bridge.codec, device_id="collar-01", command="ack_alert",
                                           values=_ACK)
            theirs = downlinks.queue_command(session, bridge.codec, device_id="collar-02", command="ack_alert",
                                             values=_ACK)
            mine_id, theirs_id, payload = mine.id, theirs.id, mine.payload
        flushes: list[int] = []
        with bridge.db.write() as session:
            event.listen(session, "before_flush", lambda *_: flushes.append(1))

            def acks() -> list[int]:
                found = unflushed.read_with_new(session, downlinks._same_bytes_read(),
                                                {"device_id": "collar-01", "payload": payload}, Downlink,
                                                lambda d: d.device_id == "collar-01" and d.payload == payload)
                return [d.id for d in found]

            session.get(Downlink, theirs_id).state = downlinks.STATE_FAILED  # another collar's ack, changed
            assert acks() == [mine_id] and flushes == []
            session.delete(session.get(Downlink, mine_id))
            assert acks() == [] and flushes  # flushed first: the store no longer holds it
