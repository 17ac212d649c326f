"""A publisher that sets the retain flag on uplinks (a misconfigured network-server integration or a
bridge between brokers) leaves a retained message on each collar's topic. The broker hands it to a
worker again, the flag set, at every subscription it takes as new (a session it lost) and with every
redelivery of one whose PUBACK it had not read when it stopped. The store keeps each collar's uplink
once: a retained body it holds already is acknowledged without a raw copy, whatever the broker does."""

from __future__ import annotations

import bridge_builders as b
import pytest
from sqlalchemy import func, select
from test_bridge_mqtt import publisher, tts_topic, wait_until

from lora_bridge.adapters.mqtt import MqttIngest, parse_broker_url
from lora_bridge.adapters.mqtt_metrics import MqttCollector
from lora_bridge.store.tables import RawUplink

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

RETAINED = 200  # one retained uplink on each of 200 collars' topics
FRESH = "collar-new"  # the collar whose uplinks come without the retain flag


def _rows_by_status(bridge, fresh: bool | None = None) -> dict[str, int]:  # noqa: ANN001
    """Raw rows by status: of every collar, of FRESH (fresh True) or of the collars whose uplinks were
    retained (fresh False). A fresh uplink whose PUBACK the broker had not read when it stopped comes again
    (DUP) and is kept as a copy, as every message without the retain flag is."""
    query = select(RawUplink.status, func.count()).group_by(RawUplink.status)
    if fresh is not None:
        query = query.where((RawUplink.device_id == FRESH) if fresh else (RawUplink.device_id != FRESH))
    with bridge.db.read() as session:
        return {status: int(count) for status, count in session.execute(query)}


def _raw_rows(bridge) -> int:  # noqa: ANN001
    return sum(_rows_by_status(bridge).values())


def _publish_retained(broker) -> None:  # noqa: ANN001
    """Each of RETAINED collars' last uplink, left retained on its topic before any worker subscribed."""
    messages = [(tts_topic(f"collar-{n:03d}"), b.tts_uplink(b.status(time_s=b.T0_S + n), device_id=f"collar-{n:03d}",
                                                            f_cnt=1)) for n in range(RETAINED)]
    with publisher(broker) as client:
        infos = [client.publish(topic, body, qos=1, retain=True) for topic, body in messages]
        for info in infos:
            info.wait_for_publish(timeout=30)


def _publish_fresh(broker, device: str, f_cnt: int, retain: bool = False) -> None:  # noqa: ANN001
    body = b.tts_uplink(b.status(time_s=b.T0_S + 1000 + f_cnt), device_id=device, f_cnt=f_cnt)
    with publisher(broker) as client:
        client.publish(tts_topic(device), body, qos=1, retain=retain).wait_for_publish(timeout=30)


def _worker(bridge, broker, client_id: str, share_group: str | None = None) -> MqttIngest:  # noqa: ANN001
    return MqttIngest(bridge.ingest_network_message, parse_broker_url(broker.url), client_id=client_id,
                      share_group=share_group, keep=bridge.keep_failed)


def _scraped_retained_copies(worker: MqttIngest) -> float:
    family = next(f for f in MqttCollector([worker]).collect() if f.name == "tembo_mqtt_retained_copies")
    return family.samples[0].value


def test_retained_uplinks_are_filed_once_through_broker_restarts_and_a_session_the_broker_lost(
        mqtt_broker, store_url):
    _publish_retained(mqtt_broker)
    with b.fresh_bridge(store_url) as bridge:
        with _worker(bridge, mqtt_broker, "bridge-1") as worker:
            assert wait_until(lambda: worker.acknowledged >= RETAINED, 60)
            first = _raw_rows(bridge)
            for restart in range(2):  # the broker restarted: the worker connects and subscribes again
                mqtt_broker.restart()
                assert wait_until(lambda: worker.wait_connected(1), 60)
                _publish_fresh(mqtt_broker, FRESH, restart + 1)
                assert wait_until(lambda n=restart: _rows_by_status(bridge).get("processed", 0) >= first + n + 1, 60)
        # A session the broker does not hold (a broker killed between two autosaves loses it): every retained
        # uplink comes again, as to a new subscriber.
        with _worker(bridge, mqtt_broker, "bridge-1-new-session") as again:
            assert wait_until(lambda: again.acknowledged >= RETAINED, 60)
            not_filed = again.retained_not_filed
            scraped = _scraped_retained_copies(again)
        retained_rows, fresh_rows = _rows_by_status(bridge, fresh=False), _rows_by_status(bridge, fresh=True)

    assert first == RETAINED  # each collar's last uplink retained before any worker subscribed: filed once
    assert not_filed == RETAINED
    assert scraped == RETAINED
    assert retained_rows == {"processed": RETAINED}  # no raw copy, and nothing applied twice
    assert fresh_rows["processed"] == 2


def test_two_shared_workers_file_each_retained_uplink_once(mqtt_broker, store_url):
    _publish_retained(mqtt_broker)
    with b.fresh_bridge(store_url) as bridge:
        with _worker(bridge, mqtt_broker, "bridge-a", share_group="tembo") as first_worker:
            assert wait_until(lambda: first_worker.acknowledged >= RETAINED, 60)
            # Mosquitto hands every retained message to each member that subscribes to the shared group.
            with _worker(bridge, mqtt_broker, "bridge-b", share_group="tembo") as second_worker:
                assert wait_until(lambda: second_worker.acknowledged >= RETAINED, 60)
                mqtt_broker.restart()
                assert wait_until(lambda: first_worker.wait_connected(1) and second_worker.wait_connected(1), 60)
                for f_cnt in range(1, 11):
                    _publish_fresh(mqtt_broker, FRESH, f_cnt)
                assert wait_until(lambda: _rows_by_status(bridge).get("processed", 0) >= RETAINED + 10, 60)
                not_filed = second_worker.retained_not_filed
        retained_rows, fresh_rows = _rows_by_status(bridge, fresh=False), _rows_by_status(bridge, fresh=True)

    # each of its subscriptions (the first, then again after the restart) brought every retained uplink
    assert not_filed >= RETAINED
    assert retained_rows == {"processed": RETAINED}
    assert fresh_rows["processed"] == 10


def test_an_uplink_delivered_twice_without_the_retain_flag_is_still_kept_as_a_copy(mqtt_broker, sqlite_url):
    with b.fresh_bridge(sqlite_url) as bridge:
        with _worker(bridge, mqtt_broker, "bridge-1") as worker:
            # retained by its publisher while the worker is subscribed: it comes without the flag (MQTT 5)
            _publish_fresh(mqtt_broker, "collar-twice", 7, retain=True)
            _publish_fresh(mqtt_broker, "collar-twice", 7)
            assert wait_until(lambda: worker.acknowledged >= 2, 60)
            not_filed = worker.retained_not_filed
        rows = _rows_by_status(bridge)

    assert not_filed == 0
    assert rows == {"processed": 1, "duplicate": 1}  # the network server's copy kept, as every copy is
