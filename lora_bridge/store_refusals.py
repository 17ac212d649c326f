"""What the webhook met at the store, for `/healthz` and `/metrics`.

The store's probe (`Bridge.healthy`) reads SQLite, which a full disk or another program's write lock leaves
readable: `/healthz` had answered 200 while every uplink was answered 503, and `/metrics` still says
`tembo_store_up 1` then unless it asks here. An operator's alert on `/metrics` also needs to see the
refusals themselves: until 7 December nothing in it moved while the network server was answered 503 (no
body kept, `tembo_uplinks_stored` flat, as on a quiet night), so a refusing bridge looked like a herd gone
silent. The figures, read without the store (a scrape must answer while it refuses):
- `tembo_webhook_refused_total`: bodies answered 503 since the bridge started (nothing kept: sent again only
  by a network server that retries them), never counted as stored;
- `tembo_webhook_last_refused_timestamp_seconds`: when the last was (0: none yet);
- `tembo_webhook_refusing`: 1 from a body answered 503 until one is kept again (the rule of `/healthz`);
- `tembo_intake_backlog`: with `TEMBO_WEBHOOK_ACK=durable`, the bodies answered 202 and not applied yet.

The log says a run of refusals once (`refusal_runs.RefusalRun`), not once a refused body.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from lora_bridge.refusal_runs import RefusalRun

log = logging.getLogger(__name__)


@dataclass
class StoreRefusals:
    """The webhook's refusals for want of a store: error_id of the last body answered 503 since one was kept
    (None while bodies are kept), how many were answered 503 in all and when the last was (Unix seconds),
    and the run of them the log says (`RefusalRun`)."""

    error_id: str | None = None
    refused: int = 0
    last_refused_at: float = 0.0
    said: RefusalRun = field(default_factory=lambda: RefusalRun(log, "webhook answered 503"), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note_refused(self, error_id: str) -> bool:
        """A body was answered 503 under error_id: nothing kept. True when it begins a run of refusals (its
        line is logged in full; the run's others are summed up, `RefusalRun`)."""
        with self._lock:
            self.error_id = error_id
            self.refused += 1
            self.last_refused_at = time.time()
        return self.said.refused(error_id)

    def note_kept(self) -> None:
        """A body was kept: the store takes bodies again (a run of refusals, if one was on, ends). The webhook
        calls it only while `error_id` or `said.total` says there is one to end."""
        self.error_id = None
        if self.said.total:  # the webhook's every 2xx: no call into the run while none is on
            self.said.kept()


class RefusalsCollector:
    """Prometheus collector of refusals' figures (module docstring); backlog: the durable intake's bodies
    waiting to be applied, None without a durable intake."""

    def __init__(self, refusals: StoreRefusals, backlog: Callable[[], int | None]) -> None:
        self.refusals = refusals
        self.backlog = backlog

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        refusals = self.refusals
        yield CounterMetricFamily("tembo_webhook_refused", "Webhook bodies answered 503 (not kept: sent again only "
                                  "by a network server that retries them)", value=float(refusals.refused))
        yield GaugeMetricFamily("tembo_webhook_last_refused_timestamp_seconds",
                                "When the webhook last answered 503 (Unix seconds; 0: not since start)",
                                value=refusals.last_refused_at)
        yield GaugeMetricFamily("tembo_webhook_refusing", "1 from a body answered 503 until one is kept again",
                                value=0.0 if refusals.error_id is None else 1.0)
        waiting = self.backlog()
        if waiting is not None:
            yield GaugeMetricFamily("tembo_intake_backlog", "Bodies answered 202 and not applied yet",
                                    value=float(waiting))
