"""What an MQTT worker tells an operator's Prometheus scrape: messages in, acknowledged, kept, and how
long each waited for its PUBACK.

A worker sends a message's PUBACK only once its body is durable, in the order the messages came, and
hands the messages that came while its last batch was written in together: a larger batch writes
more at a time, and each of its messages waits for the whole of it. `AckWaits` keeps those waits
(from the message's arrival in the worker to its PUBACK) as a histogram for `/metrics`
(`tembo_mqtt_ack_wait_seconds`) and the latest ones for `tembo bench bridge` (`mqtt_ack_wait_*`).
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

# Upper bounds (seconds) of the histogram's buckets: a batch commits in milliseconds on a quiet store;
# seconds mean a store that stalls, and the broker's redelivery comes after its own timeout.
BOUNDS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The latest waits kept for percentiles (the bench's runs hand a worker a few thousand messages).
LATEST = 16_384


class AckWaits:
    """The waits of a worker's messages from arrival to PUBACK: counts by bucket, their sum, the latest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets = [0] * (len(BOUNDS_S) + 1)  # the last: above every bound
        self._sum_s = 0.0
        self._latest: deque[float] = deque(maxlen=LATEST)

    def observe(self, waits_s: Iterable[float]) -> None:
        """Count the waits of messages just acknowledged."""
        with self._lock:
            for wait in waits_s:
                self._buckets[bisect.bisect_left(BOUNDS_S, wait)] += 1
                self._sum_s += wait
                self._latest.append(wait)

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self._buckets)

    def latest_s(self) -> list[float]:
        """The latest waits (at most LATEST), oldest first."""
        with self._lock:
            return list(self._latest)

    def histogram(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative (upper bound, count) pairs, "+Inf" last, and the sum of all waits, as Prometheus has them."""
        with self._lock:
            counts, total = list(self._buckets), self._sum_s
        cumulative, running = [], 0
        for bound, count in zip([*map(str, BOUNDS_S), "+Inf"], counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return cumulative, total


class MqttCollector:
    """Prometheus collector of a bridge's MQTT workers, one label set a worker (its client id)."""

    def __init__(self, workers: list[Any]) -> None:
        self.workers = workers

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        label = ["client_id"]
        families = {
            "received": CounterMetricFamily("tembo_mqtt_messages_received", "MQTT messages the worker was handed",
                                            labels=label),
            "acknowledged": CounterMetricFamily("tembo_mqtt_messages_acknowledged",
                                                "MQTT messages acknowledged (PUBACK) once durable or kept", labels=label),
            "kept": CounterMetricFamily("tembo_mqtt_messages_kept",
                                        "MQTT messages kept as dead letters (then acknowledged)", labels=label),
            "ignored": CounterMetricFamily("tembo_mqtt_messages_ignored",
                                           "MQTT messages on topics the bridge does not ingest", labels=label),
            "retained_not_filed": CounterMetricFamily(
                "tembo_mqtt_retained_copies", "MQTT messages with the retain flag whose body the store held already"
                " (acknowledged without a raw copy)", labels=label),
        }
        connected = GaugeMetricFamily("tembo_mqtt_connected", "1 while the worker holds its broker session",
                                      labels=label)
        waits = HistogramMetricFamily("tembo_mqtt_ack_wait_seconds",
                                      "From a message's arrival in the worker to its PUBACK", labels=label)
        for worker in self.workers:
            for name, family in families.items():
                family.add_metric([worker.client_id], float(getattr(worker, name)))
            connected.add_metric([worker.client_id], 1.0 if worker.is_connected() else 0.0)
            buckets, total = worker.ack_waits.histogram()
            waits.add_metric([worker.client_id], buckets, total)
        yield from families.values()
        yield connected
        yield waits
