"""The outbox's pass over the pushes waiting for word of their delivery, as a herd grows: a ranger's
acks and commands of every collar are weighed for going unconfirmed in one read of the store, the same
few statements for one collar's pushes as for a herd's, on SQLite and PostgreSQL."""

from __future__ import annotations

import bridge_builders as b
import pytest
from sqlalchemy import event, update

from lora_bridge.cut_off_pushes import cut_off_reason
from lora_bridge.store.tables import Downlink


@pytest.fixture
def bridge(store_url, network):
    with b.pushing_to(network, store_url) as bridge:
        yield bridge


def statements_of(bridge, work) -> list[str]:
    """The SQL statements the bridge's store runs, on its read and write engines, while work() runs."""
    said: list[str] = []

    def keep(_conn, _cursor, statement: str, *_args) -> None:
        said.append(statement)

    engines = {id(e): e for e in (bridge.db.read_engine, bridge.db.write_engine)}.values()
    for engine in engines:
        event.listen(engine, "before_cursor_execute", keep)
    try:
        work()
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", keep)
    return said


def collar_waits_on_an_ack_and_a_cut_off_command(bridge, device_id: str) -> None:
    """device_id's alert is acked (pushed), then a ranger's tracking command is pushed and its answer cut
    off; the collar then sends two status uplinks: neither push is due yet (the command waits one uplink
    more for the ack pushed before it, `cut_off_pushes.uplinks_to_wait`)."""
    bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), device_id=device_id, f_cnt=1))
    bridge.flush_downlinks()
    bridge.queue_command(device_id, "tracking", {"minutes": 60})
    bridge.flush_downlinks()
    with bridge.db.write() as session:
        session.execute(update(Downlink).where(Downlink.device_id == device_id, Downlink.command == "tracking")
                        .values(last_error=cut_off_reason("the server's answer did not end in 5 s")))
    for f_cnt in (2, 3):
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 600 * f_cnt), device_id=device_id,
                                              f_cnt=f_cnt))


def test_the_outbox_weighs_a_herd_s_waiting_pushes_in_as_many_statements_as_one_collar_s(bridge, network):
    collar_waits_on_an_ack_and_a_cut_off_command(bridge, "tr-01")
    one_collar = statements_of(bridge, bridge.flush_downlinks)
    for n in range(2, 7):
        collar_waits_on_an_ack_and_a_cut_off_command(bridge, f"tr-{n:02d}")
    six_collars = statements_of(bridge, bridge.flush_downlinks)

    assert [(d.command, d.state) for d in bridge.downlinks()] == [("ack_alert", "sent"), ("tracking", "sent")] * 6
    assert len(network.pushes) == 12, "nothing due: nothing pushed again"
    assert len(six_collars) == len(one_collar), f"12 waiting pushes cost no more statements than 2 ({len(one_collar)})"
    counted = [s for s in six_collars if "count(raw_uplinks.id)" in s]
    assert len(counted) == 1, "the collars' uplinks since each push, counted in one statement"


def test_a_cut_off_command_goes_unconfirmed_after_the_uplink_that_would_have_carried_its_ack(bridge, network):
    # Beside the ack pushed before it (still waiting: it would go first), the cut-off command needs the
    # collar's third uplink; the ack, pushed normally, waits as long.
    collar_waits_on_an_ack_and_a_cut_off_command(bridge, "tr-01")
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 2400), device_id="tr-01", f_cnt=4))
    bridge.flush_downlinks()

    states = sorted((d.command, d.state) for d in bridge.downlinks())
    assert states == [("ack_alert", "sent"), ("ack_alert", "unconfirmed"), ("tracking", "unconfirmed")]
