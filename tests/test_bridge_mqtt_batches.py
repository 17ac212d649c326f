"""An MQTT worker hands the messages that came together to its bridge as one batch, and acknowledges each
in the order they came, only once its body is durable: the same rows, dead letters and retries as one
message at a time. The broker's part is played by calling the worker's message callback, as paho does."""

from __future__ import annotations

import logging
import threading

import bridge_builders as b
import paho.mqtt.client as mqtt
from test_bridge_kept_failures import REFUSED_COLLAR, refuse_raw_rows_naming
from test_bridge_mqtt import applied_once, status_uplinks, wait_until

from lora_bridge.adapters.mqtt import MqttIngest, parse_broker_url
from lora_bridge.errors import StoreUnavailable

NO_BROKER = parse_broker_url("mqtt://127.0.0.1:1")


class HeldBatches:
    """Stands between the worker and its bridge's `write_batch_now`: records each batch's size, holds the
    first until released, and can answer the first batch as a store that cannot take it."""

    def __init__(self, bridge, store_down_once: bool = False) -> None:
        self.write = bridge.write_batch_now
        self.sizes: list[int] = []
        self.released = threading.Event()
        self.store_down_once = store_down_once
        bridge.write_batch_now = self.write_batch_now

    def write_batch_now(self, submissions) -> None:
        self.sizes.append(len(submissions))
        assert self.released.wait(30), "the first batch was never released"
        if self.store_down_once:
            self.store_down_once = False
            for submission in submissions:
                submission.error, submission.done = StoreUnavailable("database is locked"), True
            return
        self.write(submissions)


def acknowledgements(worker: MqttIngest, bridge, batches: HeldBatches) -> list[tuple[int, int, int]]:
    """Each PUBACK the worker sends, as (mid, bodies stored by then, batches written by then)."""
    sent: list[tuple[int, int, int]] = []
    worker.client.ack = lambda mid, qos: sent.append((mid, applied_once(bridge)[0], len(batches.sizes)))
    return sent


def deliver(worker: MqttIngest, messages: list[tuple[str, bytes]], first_mid: int = 1) -> None:
    """Hand messages to the worker as paho's network thread does, QoS 1, mids counted from first_mid."""
    for mid, (topic, body) in enumerate(messages, first_mid):
        message = mqtt.MQTTMessage(mid=mid, topic=topic.encode())
        message.payload, message.qos = body, 1
        worker.client.on_message(worker.client, None, message)


def all_handed_in(bridge, batches: HeldBatches, messages: list[tuple[str, bytes]]) -> tuple[MqttIngest, list, bool]:
    """A worker of bridge given messages, its first batch held until they are all delivered, then stopped
    once each is acknowledged: the worker, its PUBACKs (`acknowledgements`) and whether all left."""
    worker = MqttIngest(bridge.ingest_network_message, NO_BROKER, keep=bridge.keep_failed)
    sent = acknowledgements(worker, bridge, batches)
    deliver(worker, messages)
    batches.released.set()
    all_in = wait_until(lambda: worker.acknowledged == len(messages), 30)
    worker.stop()
    return worker, sent, all_in


def test_messages_that_come_while_a_batch_is_written_go_in_together_and_are_acknowledged_in_order_once_durable(
        sqlite_url):
    messages = status_uplinks([f"collar-t{n}" for n in range(6)], per_device=1)
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        batches = HeldBatches(bridge)
        worker = MqttIngest(bridge.ingest_network_message, NO_BROKER, keep=bridge.keep_failed)
        sent = acknowledgements(worker, bridge, batches)
        deliver(worker, messages[:1])
        assert wait_until(lambda: batches.sizes == [1], 10)  # the first is being written
        deliver(worker, messages[1:], first_mid=2)  # five come meanwhile
        batches.released.set()
        all_in = wait_until(lambda: worker.acknowledged == 6, 30)
        worker.stop()
        stored = applied_once(bridge)

    assert all_in and batches.sizes == [1, 5]
    assert [mid for mid, _, _ in sent] == [1, 2, 3, 4, 5, 6]
    assert all(stored_by_then >= mid for mid, stored_by_then, _ in sent), sent  # each durable before its PUBACK
    assert stored == (6, 6)


def test_messages_the_store_cannot_take_are_not_acknowledged_and_go_in_again_together_once_it_can(
        sqlite_url, caplog):
    messages = status_uplinks([f"collar-d{n}" for n in range(3)], per_device=1)
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge, \
            caplog.at_level(logging.WARNING, logger="lora_bridge.adapters.mqtt"):
        batches = HeldBatches(bridge, store_down_once=True)
        worker, sent, all_in = all_handed_in(bridge, batches, messages)
        stored = applied_once(bridge)

    assert all_in and stored == (3, 3)
    assert [(mid, batches_by_then) for mid, _, batches_by_then in sent] == [(1, 2), (2, 2), (3, 2)], \
        "no PUBACK before the batch that the store took"
    retried = [r for r in caplog.records if "retry in" in r.getMessage()]
    assert sorted(r.device for r in retried) == ["collar-d0", "collar-d1", "collar-d2"]
    assert {r.attempt for r in retried} == {1} and worker.kept == 0


def test_a_message_the_store_refuses_in_a_batch_is_kept_and_acknowledged_in_its_place(sqlite_url):
    collars = ["collar-a", REFUSED_COLLAR, "collar-b"]
    messages = status_uplinks(collars, per_device=1)
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        refuse_raw_rows_naming(bridge, REFUSED_COLLAR)
        batches = HeldBatches(bridge)
        worker, sent, all_in = all_handed_in(bridge, batches, messages)
        dead = bridge.dead_letters()
        stored = applied_once(bridge)

    assert all_in and [mid for mid, _, _ in sent] == [1, 2, 3]
    assert [(letter.stage, REFUSED_COLLAR in letter.reason) for letter in dead] == [("apply", True)]
    assert stored == (2, 2)


def test_a_worker_told_to_stop_first_writes_and_acknowledges_the_messages_it_holds(sqlite_url):
    messages = status_uplinks([f"collar-s{n}" for n in range(4)], per_device=1)
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        batches = HeldBatches(bridge)
        worker = MqttIngest(bridge.ingest_network_message, NO_BROKER, keep=bridge.keep_failed)
        acknowledgements(worker, bridge, batches)
        deliver(worker, messages[:1])
        assert wait_until(lambda: batches.sizes == [1], 10)
        deliver(worker, messages[1:], first_mid=2)
        stopping = threading.Thread(target=worker.stop)
        stopping.start()
        stopping.join(0.5)
        stopped_while_held = not stopping.is_alive()
        batches.released.set()
        stopping.join(30)
        acknowledged_at_stop = worker.acknowledged
        stored = applied_once(bridge)

    assert not stopped_while_held
    assert (acknowledged_at_stop, stored) == (4, (4, 4))
    assert batches.sizes == [1, 3]
