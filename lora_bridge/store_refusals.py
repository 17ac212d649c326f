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

The log says a run of refusals the same way (`RefusalRun`): the first refused body in full, with its reason
and error_id; then, while bodies are still refused, one line every SUMMARY_EVERY_S with how many were
refused since; and one line when a body is kept again. Until 7 December each refused body had its line,
hundreds a second under a herd, and they hid the one error that said why the store was gone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)

# While bodies are refused, a line sums them up at most this often (seconds).
SUMMARY_EVERY_S = 60.0


class RefusalRun:
    """The log lines of one kind of refusal (module docstring): `refused` says whether a refusal is the first
    of a run (its caller logs it in full) and sums the others up every every_s seconds of clock (injectable:
    a test steps it); `kept` ends the run with one line. A refusal twice every_s after the last begins a run too:
    a path that keeps bodies without telling `kept` (the batch's one transaction keeps them elsewhere) does
    not leave the next outage's first line unsaid. Thread-safe."""

    def __init__(self, logger: logging.Logger, what: str, every_s: float = SUMMARY_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.what, self.every_s, self.clock = logger, what, every_s, clock
        self.total = 0  # refused since the run began (0: no run)
        self._since = 0  # refused since the run's last line
        self._first_id: str | None = None
        self._last_id: str | None = None
        self._said_at = 0.0
        self._last_at = float("-inf")
        self._lock = threading.Lock()

    def refused(self, error_id: str) -> bool:
        """Count a refusal under error_id; True when it begins a run (the caller logs it in full)."""
        with self._lock:
            now = self.clock()
            if now - self._last_at >= 2 * self.every_s:
                self.total = 0  # a run no refusal came in for so long: over
            self.total += 1
            self._last_id, self._last_at = error_id, now
            if self.total == 1:
                self._first_id, self._since, self._said_at = error_id, 0, now
                return True
            self._since += 1
            if now - self._said_at < self.every_s:
                return False
            since, waited, self._since, self._said_at = self._since, now - self._said_at, 0, now
            total, first, last = self.total, self._first_id, self._last_id
        self.logger.warning("%s: %d more in the last %.0f s, %d since the first (error_id=%s); the last error_id=%s",
                            self.what, since, waited, total, first, last,
                            extra={"refused": total, "error_id": last, "first_error_id": first})
        return False

    def kept(self) -> None:
        """A body was kept: a run of refusals, if one was on, ends with one line."""
        if not self.total:  # the common case, read without the lock
            return
        with self._lock:
            total, first, self.total, self._since = self.total, self._first_id, 0, 0
        if total:
            self.logger.warning("%s: bodies are kept again after %d refused (the first error_id=%s)", self.what,
                                total, first, extra={"refused": total, "first_error_id": first})


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
        """A body was kept: the store takes bodies again."""
        self.error_id = None
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
