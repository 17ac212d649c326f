"""What the PostgreSQL backends of a bench run wait on, sampled (`tembo bench bridge`'s MQTT part).

Two workers no faster than one can be the code (a row, an advisory lock or a table that every batch
takes in turn: backends waiting on `Lock` events) or the machine (every core busy, backends mostly
running). A thread samples `pg_stat_activity` for the run's database every `every_s` and counts the
active backends' states: running (no wait event), waiting on a heavyweight lock (by lock type:
`transactionid` and `tuple` for rows, `advisory`, `relation` for a table), or on something else
(`LWLock`, `IO`, `IPC`, ...), with the statements seen waiting on a lock most often.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

from sqlalchemy import create_engine, text

log = logging.getLogger(__name__)

_SAMPLE = text(
    "SELECT state, wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
)


class BackendWaits:
    """Samples, in a thread, what the client backends of database_url's database are doing; start()
    and stop(), then figures()."""

    # Every 10 ms the sampler and its backend took ~0.5 ms of CPU per uplink of a one-worker run from
    # the two cores the workers share (docs/bridge-scale.md); 50 ms still gives ~250 samples a run.
    def __init__(self, database_url: str, every_s: float = 0.05) -> None:
        self._engine = create_engine(database_url, pool_size=1)
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-backend-waits", daemon=True)
        self.samples = 0
        self._sampled_s = 0.0  # from the first sample to the last
        self.states: Counter[str] = Counter()
        self.waiting_statements: Counter[str] = Counter()

    def start(self) -> BackendWaits:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._engine.dispose()

    def _run(self) -> None:
        try:
            with self._engine.connect() as connection:
                first = None
                while not self._stop.wait(self._every_s):
                    rows = connection.execute(_SAMPLE).all()
                    connection.rollback()  # each sample its own snapshot of pg_stat_activity
                    self.samples += 1
                    now = time.monotonic()
                    first = now if first is None else first
                    self._sampled_s = now - first
                    for state, wait_type, wait_event, query in rows:
                        if state != "active":
                            continue
                        kind = "running" if wait_type is None else (
                            f"lock:{wait_event}" if wait_type == "Lock" else f"other:{wait_type}")
                        self.states[kind] += 1
                        if wait_type == "Lock":
                            self.waiting_statements[" ".join(str(query).split())] += 1
        except Exception as error:  # noqa: BLE001 - a sampler that fails leaves the run's own figures alone
            log.warning("backend wait sampling stopped: %s", error)

    def figures(self) -> dict[str, Any]:
        """Active backend samples by state, the share of them waiting on a heavyweight lock, the time
        the backends spent waiting on one (backend-seconds: each such sample stands for the time between
        samples), and the statements most often seen waiting on one."""
        active = sum(self.states.values())
        locked = sum(n for kind, n in self.states.items() if kind.startswith("lock:"))
        every_s = self._sampled_s / (self.samples - 1) if self.samples > 1 else self._every_s
        return {
            "backend_samples": self.samples,
            "backend_active_by_state": dict(self.states.most_common()),
            "backend_lock_wait_share": round(locked / active, 3) if active else 0.0,
            "backend_lock_wait_s": round(locked * every_s, 3),
            "backend_lock_waits_top": [f"{n} {query}" for query, n in self.waiting_statements.most_common(3)],
        }
