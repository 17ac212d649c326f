"""Two bridges read the reserve's broker through one shared subscription into one PostgreSQL database, and
an administrator ends their connections again and again while collars report: every uplink is stored and
applied once, none is left with the broker, none is kept as a fault of its data."""

from __future__ import annotations

import threading

import bridge_builders as b
import postgres_faults as pf
import pytest
from sqlalchemy import func, select
from test_bridge_mqtt import publisher, tts_topic, wait_until

from lora_bridge.adapters.mqtt import MqttIngest, parse_broker_url
from lora_bridge.store.tables import RawUplink

UPLINKS = 200


def _applied(bridge) -> dict[tuple[str, int], int]:  # noqa: ANN001
    """How many times each collar's frame was applied (processed, not a copy)."""
    query = (select(RawUplink.device_id, RawUplink.f_cnt, func.count())
             .where(RawUplink.status == "processed", RawUplink.duplicate_of.is_(None))
             .group_by(RawUplink.device_id, RawUplink.f_cnt))
    with bridge.db.read() as session:
        return {(device, int(f_cnt)): int(count) for device, f_cnt, count in session.execute(query)}


@pytest.mark.postgres
@pytest.mark.mqtt
def test_two_shared_workers_whose_connections_are_ended_apply_each_uplink_once(
        mqtt_broker, postgres_url, postgres_server):
    stop = threading.Event()

    broker = parse_broker_url(mqtt_broker.url)
    with b.fresh_bridge(postgres_url) as first, b.fresh_bridge(postgres_url) as second, \
            MqttIngest(first.ingest_network_message, broker, client_id="bridge-a", share_group="tembo",
                       keep=first.keep_failed) as worker_a, \
            MqttIngest(second.ingest_network_message, broker, client_id="bridge-b", share_group="tembo",
                       keep=second.keep_failed) as worker_b:
        ended = 0

        def end_connections() -> None:
            nonlocal ended
            rest = False
            while not stop.wait(1.5 if rest else 0.2):
                pf.end_bridge_connections(postgres_server, postgres_url)
                ended, rest = ended + 1, not rest

        ender = threading.Thread(target=end_connections)
        ender.start()
        try:
            with publisher(mqtt_broker) as client:
                for n in range(UPLINKS):
                    device = f"collar-{n % 20:02d}"
                    body = b.tts_uplink(b.status(time_s=b.T0_S + 60 * n), device_id=device, f_cnt=n // 20 + 1)
                    client.publish(tts_topic(device), body, qos=1).wait_for_publish(timeout=30)
                    stop.wait(0.03)  # collars' pace: the connections are ended a few times meanwhile
        finally:
            stop.set()
            ender.join()
        settled = wait_until(lambda: len(_applied(first)) == UPLINKS, 90)
        applied, letters = _applied(first), first.dead_letters()
        taken = (worker_a.acknowledged, worker_b.acknowledged)

    print({"ended": ended, "acknowledged": taken, "applied": len(applied)})
    assert ended >= 4 and min(taken) > 0, "both workers took uplinks while their connections were ended"
    assert settled, f"{len(applied)} of {UPLINKS} applied"
    assert sorted(set(applied.values())) == [1]
    assert letters == []
