"""A publisher that sets the retain flag on uplinks (a misconfigured network-server integration or a
bridge between brokers) leaves a retained message on each collar's topic. The broker sends every retained
message again on each subscription: a bridge worker subscribes again on every connection, and must not
file the whole set of old uplinks again each time (as raw copies that grow the store)."""

from __future__ import annotations

import bridge_builders as b
import pytest
from sqlalchemy import func, select
from test_bridge_mqtt import publisher, tts_topic, wait_until

from lora_bridge.adapters.mqtt import MqttIngest, parse_broker_url
from lora_bridge.store.tables import RawUplink

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

RETAINED = 200  # one retained uplink on each of 200 collars' topics


def _raw_rows(bridge) -> int:  # noqa: ANN001
    with bridge.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(RawUplink)) or 0)


def test_retained_uplinks_are_not_filed_again_each_time_the_worker_reconnects(mqtt_broker, sqlite_url):
    messages = [(tts_topic(f"collar-{n:03d}"), b.tts_uplink(b.status(time_s=b.T0_S + n), device_id=f"collar-{n:03d}",
                                                            f_cnt=1)) for n in range(RETAINED)]
    with publisher(mqtt_broker) as client:
        infos = [client.publish(topic, body, qos=1, retain=True) for topic, body in messages]
        for info in infos:
            info.wait_for_publish(timeout=30)
    with b.fresh_bridge(sqlite_url) as bridge:
        worker = MqttIngest(bridge.ingest_network_message, parse_broker_url(mqtt_broker.url), client_id="bridge-1")
        with worker:
            assert wait_until(lambda: worker.acknowledged >= RETAINED, 60)
            first = _raw_rows(bridge)
            for restart in range(2):  # two broker restarts: the worker connects and subscribes again
                mqtt_broker.restart()
                assert wait_until(lambda: worker.wait_connected(1), 60)
                # A fresh uplink after the subscription: the broker sends retained messages at the
                # subscription, so once this one is filed any retained copy would have been too.
                fresh = b.tts_uplink(b.status(time_s=b.T0_S + 1000 + restart), device_id="collar-new", f_cnt=restart + 1)
                with publisher(mqtt_broker) as client:
                    client.publish(tts_topic("collar-new"), fresh, qos=1).wait_for_publish(timeout=30)
                assert wait_until(lambda n=restart: _raw_rows(bridge) >= first + n + 1, 60)
        rows = _raw_rows(bridge)

    assert first == RETAINED
    assert rows == RETAINED + 2
