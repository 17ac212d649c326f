"""The batch path run once at an applier's start, on made-up collars' bodies, and rolled back.

A process's first batch paid what no later one does: SQLAlchemy compiles each statement the first
time the process runs it (some twenty for a batch: its reads, its inserts, the rules' reads and
updates), and the first fix of a UTM zone builds its projection. Measured in the applier process of
the bridge bench's headline run (`bench.webhook_run`), that first batch took 70 ms where the next ones
took 25-35 ms, and every body that came meanwhile waited behind it. The intake applier process (`lora_bridge.intake_applier`) runs
this before it says it is ready, so a bridge that starts and then hears its herd applies the first
uplinks as fast as the rest.

What it runs is what a batch runs (`Bridge.warm_up`: the bodies kept and applied, then the rules),
in one store transaction that is always rolled back: nothing of it is stored, no downlink is
reported, no ranger is told. Its log lines below WARNING are left out (a collar "first heard" and an
alert "raised" that never were would mislead an operator reading them). Should it fail (a store that
is locked, a bug), the applier starts all the same, and its first batch pays the one-time costs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from time import perf_counter
from typing import Any

from sqlalchemy.orm import Session

from lora_bridge.group_commit import Submission
from lora_bridge.store.database import Database
from lora_bridge.store.utc import utc_now
from lora_bridge.uplink_formats import tts_uplink_body

log = logging.getLogger(__name__)

# The made-up collars (two, so the batch's reads and inserts of several collars run as they do for a
# herd) and the alert each raises; their rows never outlive the warm-up's transaction.
SAMPLE_COLLARS = (("tembo-warm-up-1", "FFFFFFFFFFFFFFFE", "immobility"),
                  ("tembo-warm-up-2", "FFFFFFFFFFFFFFFD", "mortality"))
SAMPLE_APPLICATION_ID = "tembo-warm-up"


class _RolledBack(Exception):
    """Raised inside the warm-up's transaction so the store rolls it back."""


def hourly_messages(t_s: int, lat: float, lon: float, uptime_h: int) -> list[tuple[str, dict[str, Any]]]:
    """What a healthy collar sends each hour, as (codec message, values): a status with a fix and an
    activity summary (the warm-up's sample, and `tembo bench bridge`'s herd)."""
    return [
        ("status", {"time_s": t_s, "lat": lat, "lon": lon, "fix_age_s": 30, "battery_mv": 3900,
                    "temperature_c": 30.0, "fw_version": "1.0.0", "model_version": 1, "uptime_h": uptime_h,
                    "reset_cause": "power_on", "behaviour": "forage", "queue_depth": 0, "errors": 0}),
        ("activity", {"time_s": t_s, "interval_min": 60, "model_version": 1, "vedba_mean_mg": 80,
                      "vedba_max_mg": 600, "shares": [40.0, 40.0, 15.0, 5.0]}),
    ]


def sample_submissions(codec: Any, now: datetime) -> list[list[Submission]]:
    """Two batches of the made-up collars, an hour apart: each collar's status with a fix, activity
    summary (the message kinds a herd sends every hour) and a collar alert (raising it and queueing
    its ack), then the same an hour later, the alert heard again (an occurrence of the open alert).
    The second batch's rules judge collars they judged before, as nearly every batch of a running
    bridge does: their tracks, and the fixes before them, read for several collars at once."""
    batches: list[list[Submission]] = []
    for hour, heard in enumerate((now - timedelta(hours=1), now)):
        t_s = int((heard - timedelta(minutes=5)).timestamp())
        batch = []
        for n, (device_id, dev_eui, alert_type) in enumerate(SAMPLE_COLLARS):
            lat, lon = -2.5 + n / 1000, 37.5
            messages = [*hourly_messages(t_s, lat, lon, uptime_h=hour + 1),
                        ("alert", {"alert_type": alert_type, "seq": hour + 1, "time_s": t_s, "lat": lat, "lon": lon})]
            batch += [
                Submission("tts", "up", tts_uplink_body(device_id, dev_eui, SAMPLE_APPLICATION_ID, codec.port_of(name),
                                                        f_cnt, codec.encode(name, values), heard),
                           content_type="application/json")
                for f_cnt, (name, values) in enumerate(messages, start=1 + 3 * hour)
            ]
        batches.append(batch)
    return batches


def warm_up(db: Database, apply: Callable[[Session, list[Submission]], None], codec: Any) -> float:
    """apply(session, batch) for each batch of the sample in one write transaction of db that is rolled
    back; the seconds it took. Never raises: a failure is logged, and the first batch pays its one-time costs."""
    started = perf_counter()
    try:
        with _only_warnings(), db.write() as session:
            for batch in sample_submissions(codec, utc_now()):
                apply(session, batch)
            raise _RolledBack
    except _RolledBack:
        pass
    except Exception as error:  # noqa: BLE001 - a warm-up that fails costs only the first batch's speed
        log.warning("warm-up of the batch path failed (%s: %s); the first batch pays its one-time costs",
                    type(error).__name__, str(error)[:200])
    return perf_counter() - started


@contextmanager
def _only_warnings() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)
