"""The operator's Prometheus scrape of a bridge that takes its messages by MQTT: each worker's messages in,
acknowledged and kept, whether it holds its broker session, and how long its messages waited for their
PUBACK (sent only once each body is durable, so a slow store or a large batch shows there first)."""

from __future__ import annotations

import time

import bridge_builders as b
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from test_bridge_mqtt import applied_once, publish_all, publisher, status_uplinks, wait_until
from test_bridge_mqtt_batches import NO_BROKER, HeldBatches, acknowledgements, deliver

from lora_bridge.adapters.api import add_collector, create_app
from lora_bridge.adapters.mqtt import MqttIngest
from lora_bridge.adapters.mqtt_metrics import BOUNDS_S, AckWaits, MqttCollector


def scrape(app, headers: dict[str, str]) -> dict[str, float]:
    """Each sample of the app's /metrics answer: its name and labels -> its value."""
    answer = TestClient(app).get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    return {
        f"{sample.name}{sorted(sample.labels.items())}": sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_each_message_waits_for_its_puback_at_least_as_long_as_its_batch_was_held_and_the_scrape_counts_it(
        sqlite_url):
    messages = status_uplinks([f"collar-w{n}" for n in range(5)], per_device=1)
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        app = create_app(bridge)
        batches = HeldBatches(bridge)
        worker = MqttIngest(bridge.ingest_network_message, NO_BROKER, keep=bridge.keep_failed,
                            client_id="bridge-metrics")
        add_collector(app, MqttCollector([worker]))
        sent = acknowledgements(worker, bridge, batches)
        deliver(worker, messages[:1])
        handed_first = time.monotonic()
        assert wait_until(lambda: batches.sizes == [1], 10)  # the first is being written, and held
        deliver(worker, messages[1:], first_mid=2)
        released = time.monotonic()
        batches.released.set()
        assert wait_until(lambda: worker.acknowledged == len(messages), 30)
        worker.stop()
        waits = worker.ack_waits.latest_s()
        technician = scrape(app, b.api_headers(bridge, "field_technician"))
        admin = scrape(app, b.api_headers(bridge, "admin"))

    assert [mid for mid, _, _ in sent] == [1, 2, 3, 4, 5]
    assert len(waits) == 5
    assert waits[0] >= released - handed_first  # from its arrival, through the whole held batch, to its PUBACK
    label = "[('client_id', 'bridge-metrics')]"
    for seen in (technician, admin):  # no figure here moves with an alert beyond the stored uplinks' count
        assert seen[f"tembo_mqtt_messages_received_total{label}"] == 5
        assert seen[f"tembo_mqtt_messages_acknowledged_total{label}"] == 5
        assert seen[f"tembo_mqtt_messages_kept_total{label}"] == 0
        assert seen[f"tembo_mqtt_connected{label}"] == 0  # the stand-in broker was never reached
        assert seen[f"tembo_mqtt_ack_wait_seconds_count{label}"] == 5
        assert seen[f"tembo_mqtt_ack_wait_seconds_sum{label}"] == pytest.approx(sum(waits))
        buckets = [seen[f"tembo_mqtt_ack_wait_seconds_bucket[('client_id', 'bridge-metrics'), ('le', '{le}')]"]
                   for le in [*map(str, BOUNDS_S), "+Inf"]]
        assert buckets == sorted(buckets) and buckets[-1] == 5


@pytest.mark.mqtt
def test_operator_scraping_a_running_bridge_sees_its_mqtt_worker_connected_and_every_message_acknowledged(
        mosquitto, tmp_path, monkeypatch):
    from lora_bridge.server import serve

    messages = status_uplinks(["collar-m1", "collar-m2"], per_device=2)
    monkeypatch.setenv("TEMBO_WEBHOOK_SECRET", b.SECRET)
    monkeypatch.setenv("TEMBO_DATABASE_URL", f"sqlite:///{tmp_path / 'reserve.db'}")
    monkeypatch.setenv("TEMBO_MQTT_URL", mosquitto.url)
    monkeypatch.setenv("TEMBO_MQTT_CLIENT_ID", "bridge-scraped")
    monkeypatch.delenv("TEMBO_CONFIG", raising=False)
    seen: list[dict[str, float]] = []

    def running(server) -> None:  # the bridge as `tembo bridge` runs it, its workers started; no listening
        app = server.config.app
        bridge = app.state.bridge
        with publisher(mosquitto, client_id="network-server-scraped") as client:
            publish_all(client, messages)
        label = "[('client_id', 'bridge-scraped')]"
        admin = b.api_headers(bridge, "admin")
        assert wait_until(lambda: applied_once(bridge)[0] == len(messages)
                          and scrape(app, admin)[f"tembo_mqtt_messages_acknowledged_total{label}"] == len(messages), 30)
        seen.append(scrape(app, admin))

    monkeypatch.setattr("uvicorn.Server.run", running)
    serve()

    (scraped,) = seen
    label = "[('client_id', 'bridge-scraped')]"
    assert scraped[f"tembo_mqtt_connected{label}"] == 1
    assert scraped[f"tembo_mqtt_messages_received_total{label}"] == len(messages)
    assert scraped[f"tembo_mqtt_ack_wait_seconds_count{label}"] == len(messages)


def test_ack_waits_fall_in_the_buckets_prometheus_reads_and_keep_the_latest_in_order():
    waits = AckWaits()
    waits.observe([0.0005, 0.001, 0.003, 0.2, 0.2, 45.0])
    buckets, total = waits.histogram()

    assert dict(buckets)["0.001"] == 2  # a bucket counts the waits up to its bound, that bound included
    assert dict(buckets)["0.005"] == 3
    assert dict(buckets)["0.25"] == 5
    assert dict(buckets)["30.0"] == 5 and dict(buckets)["+Inf"] == 6
    assert total == pytest.approx(45.4045)
    assert waits.count == 6
    assert waits.latest_s() == [0.0005, 0.001, 0.003, 0.2, 0.2, 45.0]  # the bench's percentiles read these
