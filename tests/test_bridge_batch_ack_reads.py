"""A herd's collar alerts heard at once read the downlinks their acks look for once for the batch, on
PostgreSQL as on SQLite (`downlinks.read_acks_ahead`), and the outbox reads where those acks go (the
collars' routes) with the acks themselves, not once a collar: the same acks, rows and pushes."""

from __future__ import annotations

import bridge_builders as b
import pytest
from conftest import empty_store
from sqlalchemy import event
from test_bridge_batch_equivalence import TABLES, stored

from lora_bridge.domain import downlinks
from lora_bridge.group_commit import Submission

HERD = [f"tembo-{n:02d}" for n in range(12)]


def _alerts(f_cnt: int, collars: list[str]) -> list[Submission]:
    return [Submission("tts", None, b.tts_uplink(b.alert("poaching_risk", seq=1, time_s=b.T0_S + 60),
                                                 device_id=collar, f_cnt=f_cnt)) for collar in collars]


def _ack_reads(said: list[str]) -> int:
    """The statements that read a collar's downlinks of some bytes (an ack's look, alone or the batch's)."""
    return sum(statement.startswith("SELECT downlinks.") and "downlinks.payload" in statement.split(" WHERE ")[-1]
               for statement in said)


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_herd_alerting_at_once_reads_its_acks_once_for_the_batch(engine, request, tmp_path, monkeypatch):
    # Two collars alerted before (their acks wait, unpushed); then the whole herd alerts in one delivery,
    # the first two repeating the same alert: ten new acks, the two waiting ones not queued again.
    dumps, reads, acks = [], [], []
    for name, ahead in (("each", lambda *_args: None), ("together", downlinks.read_acks_ahead)):
        monkeypatch.setattr(downlinks, "read_acks_ahead", ahead)
        with empty_store(engine, request, tmp_path / f"{name}.db") as url, b.fresh_bridge(url) as bridge:
            bridge.ingest_batch([Submission("tts", None, b.tts_uplink(b.status(), device_id=collar, f_cnt=1))
                                 for collar in HERD])
            bridge.ingest_batch(_alerts(2, HERD[:2]))
            said = b.statements_of(bridge)
            bridge.ingest_batch(_alerts(3, HERD))
            reads.append(_ack_reads(said))
            dumps.append(stored(bridge))
            acks.append(sorted((d.device_id, d.command, d.payload_hex) for d in bridge.downlinks(viewer=b.RANGER)))

    each, together = acks
    assert together == each
    assert [device_id for device_id, _, _ in each] == HERD
    assert reads == [len(HERD), 1]
    for name in TABLES:
        assert dumps[1][name] == dumps[0][name], name


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_outbox_reads_a_herds_ack_routes_with_the_acks(engine, request, tmp_path, network):
    # The herd's twelve acks go out in one flush: which still wait, their collars and their routes are read
    # in one statement; each push's claim then reads its own collar's route, as before.
    with empty_store(engine, request, tmp_path / "tembo.db") as url, b.pushing_to(network, url) as bridge:
        bridge.ingest_batch([Submission("tts", None, b.tts_uplink(b.status(), device_id=collar, f_cnt=1))
                             for collar in HERD])
        bridge.ingest_batch(_alerts(2, HERD))
        said = b.statements_of(bridge)
        if bridge.db.read_engine is not bridge.db.write_engine:
            event.listen(bridge.db.read_engine, "before_cursor_execute",
                         lambda _c, _cur, statement, *_a: said.append(" ".join(statement.split())))
        pushed = bridge.flush_downlinks()

    assert pushed == len(HERD)
    assert sorted(push["device_id"] for push in network.pushes) == HERD
    route_reads = [statement for statement in said if "downlink_routes" in statement]
    with_the_acks = [statement for statement in route_reads if "JOIN downlink_routes" in statement]
    assert (len(with_the_acks), len(route_reads)) == (1, 1 + len(HERD))
