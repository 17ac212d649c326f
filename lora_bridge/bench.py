"""Figures of the bridge's ingest path, for `tembo bench bridge --json`.

A synthetic herd (status, activity and alert uplinks through the real codec, a quarter of them heard
by a second gateway) is posted to the bridge's webhook by a separate process over several concurrent
connections, once on a SQLite file and once on a PostgreSQL server started for the run; then the same
uplinks go through a Mosquitto broker to one, then two, bridge worker processes sharing a subscription
on PostgreSQL. Every figure is compared with a baseline measured in the same run:

    sqlite_uplinks_per_s / raw_insert_uplinks_per_s    the pipeline against the same store's bare
                                                       durable insert of the raw row (the ceiling),
                                                       committed in batches of `connections` rows
                                                       (raw_insert_method says how; the one-row-per-
                                                       commit rate is there too)
    sqlite_webhook_ack                                 when the webhook answers in the SQLite run (bench
                                                       option ack): "durable" (202 once the raw row is
                                                       committed, applied right after in batches) or
                                                       "applied"; sqlite_<other>_ack_* is the other mode
    mean_batch                                         bodies per transaction that applied them (group
                                                       commit, or the durable intake's applier)
    sqlite_writer_mean_batch                           bodies per commit that made them durable before
                                                       their answer (the durable intake's writer)
    cpu_ms_per_uplink                                  CPU time of the bridge per uplink: its process,
                                                       and with the durable intake's applier in a process
                                                       of its own (bench option applier, "process") that
                                                       process too (the load generator is another one)
    cpu_ms_per_uplink_by_process                       the same split: webhook (HTTP, writer, outbox, ...)
                                                       and applier (the applier process; 0 as a thread)
    sqlite_intake_applier                              where the SQLite runs applied the journal: "thread"
                                                       or "process"
    sqlite_applier_on_cpu_share,                       the headline run's applier process (its main
    sqlite_applier_waiting_for_cpu_share               thread, which applies the batches): the share of
                                                       the rate's time (first send to last commit) it was
                                                       on a core, and ready but waiting for one
                                                       (/proc/<pid>/schedstat); null as a thread
    postgres_uplinks_per_s, postgres_p99_ms            the webhook on PostgreSQL answering once applied
                                                       (ack "applied"); postgres_durable_ack_*: answering
                                                       once the raw row is committed, the applier where
                                                       the bridge's default puts it (`..._intake_applier`)
    sqlite_warm_*                                      the headline run again in the same process on a
                                                       fresh store: without the process's one-time costs
                                                       (imports, compiling each statement, the first UTM
                                                       zone look-up), what a long-running bridge spends
    statements_per_uplink, commits_per_uplink          SQL work per uplink in the webhook run (SQLite;
                                                       postgres_statements_per_uplink: PostgreSQL's),
    one_at_a_time_statements_per_uplink, ...           and through the service layer one by one
    store_bytes_per_collar_day                         store growth per collar-day, raw bodies kept, and
    compacted_store_bytes_per_collar_day               once they are past retention and compacted
    p50_ms, p99_ms                                     received -> alerts stored: from the load process
                                                       sending a body to the commit that applied it (with
                                                       ack "applied", that is its request's latency)
    sqlite_answers_per_s, sqlite_answer_p50_ms, ...    the answers alone: 2xx per second and send -> 2xx
                                                       (with ack "durable" the answer comes once the body
                                                       is durable, before it is applied)
    cpu_ms_per_uplink_by_thread                        cpu_ms_per_uplink split by the bridge's threads:
                                                       http (uvicorn's event loop), writer and applier
                                                       (the durable intake; applier: the applier process's
                                                       whole CPU when it is one), supervisor (reading the
                                                       applier process's reports), outbox, other
    lost                                               uplinks answered 2xx but not in the store (0)
    workers_speedup                                    two MQTT workers over one (PostgreSQL), the
                                                       collars shared between them (collar_shares);
                                                       their median rates over `mqtt_rounds` (3)
                                                       interleaved rounds of `mqtt_bodies` (the herd's
                                                       48 hours); `_each_round`: two over one within
                                                       each round; `_cpu_ceiling`: at most, every core
                                                       busy at the CPU per uplink of every part of the
                                                       two-worker runs (diagnostic, not the goal; none
                                                       when other programs took over 0.15 of the machine)
    mqtt_ack_wait_p50_ms, mqtt_ack_wait_p99_ms         one worker: a message's wait from its arrival to its
                                                       PUBACK (once durable) with every body published at
                                                       once (mostly the backlog's); `mqtt_half_rate_*`: the
                                                       same with the worker offered half the rate it reached
                                                       in its round (its batches' own), its mean batch and
                                                       the worker's full collections in the run
    mqtt_*cpu_ms_per_uplink*                           the workers' CPU time per uplink (all, each);
                                                       `_by_part`: PostgreSQL, Mosquitto, load generator;
                                                       `all_`: every part together
    mqtt_machine_busy_share_each_round                 how busy all cores were during each MQTT run;
    mqtt_other_work_share_each_round                   of it, other programs' work (none of the run's)
    mqtt_worker_on_cpu_share_each_round, ...           each worker's share of the run on a core, and
                                                       ready but waiting for one (`_waiting_for_`, its
                                                       threads summed: above 1, several at once);
                                                       PostgreSQL's (`mqtt_postgres_*`); the backends'
                                                       seconds waiting on a lock (`mqtt_backend_lock_wait_s`)
    mqtt_threads, mqtt_one_worker_by_threads           one worker's threads (and messages in flight,
                                                       `mqtt_threads`): rate, CPU per uplink and mean
                                                       batch with fewer, in the same rounds
    mqtt_counted_per_uplink                            one worker and two sharing the collars ("one",
                                                       "two"), once more each, counted rather than
                                                       timed: the workers' Python calls per uplink (all
                                                       their threads, cProfile each, from "ready" to the
                                                       end), their statements (an executemany once) and
                                                       commits on the store per uplink, the mean batch
                                                       and the bodies handed over (lost, applied twice)
    sqlite_history_*                                   the headline run on a store that holds the herd's
                                                       last `sqlite_history_days` days first (applied
                                                       before the run, not measured): a bridge that has
                                                       run for weeks (the battery trend's 14-day window)
    sparse_batch_cpu_ms_per_uplink, ...                a fleet whose collars fix every 6 h (each
                                                       judgement also reads the fixes before its track)
                                                       applied in the bench's process a delivery a batch
                                                       and one body at a time (the baseline): CPU and
                                                       statements per uplink of each, and the CPU ratio
                                                       `sparse_batch_over_one_at_a_time`
    sqlite_half_rate_p50_ms, sqlite_half_rate_p99_ms   received -> alerts stored with the same bodies
                                                       offered at a steady half of the rate reached
                                                       (`sqlite_half_rate_offered_per_s`), from when
                                                       each was due: the bridge below its limit
    sqlite_load_cpu_ms_per_body                        CPU the load process spent per body it posted
                                                       (it shares the machine's cores with the bridge)
    load_average_*                                     the machine's load average (1, 5, 15 min) as
                                                       the run goes: what the rates were measured under

    python -m lora_bridge.bench_load URL SECRET_HEADER SECRET FILE CONNECTIONS     (the load process)
    python -m lora_bridge.bench mqtt-worker DATABASE_URL BROKER_URL CLIENT_ID GROUP
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select

from lora_bridge.adapters.webhook import SECRET_HEADER, create_app
from lora_bridge.bench_waits import BackendWaits
from lora_bridge.decode import default_codec
from lora_bridge.group_commit import Submission
from lora_bridge.server import serve_app_in_thread
from lora_bridge.service import Bridge, open_bridge
from lora_bridge.settings import MQTT_THREADS
from lora_bridge.store.database import count_writes
from lora_bridge.store.tables import Device, RawUplink
from lora_bridge.store.utc import utc_now
from lora_bridge.thread_profile import ThreadProfiles
from lora_bridge.uplink_formats import tts_uplink_body
from lora_bridge.warm_up import hourly_messages

BENCH_SECRET = "bench-webhook-secret"
START_S = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
BENCH_APP = "bench"
DONE_STATUSES = ("processed", "recorded", "dead_letter", "kept")
# A file name here makes an MQTT bench worker count the Python calls of all its threads (cProfile each)
# while it is ready, and dump where they went to that file (pstats)
MQTT_WORKER_PROFILE_ENV = "TEMBO_MQTT_WORKER_PROFILE"


def synthetic_bodies(collars: int = 20, hours: int = 12, first_hour: int = 0) -> list[bytes]:
    """TTS uplink bodies of `collars` collars over `hours` hours from `first_hour` on (status + activity
    per hour, one alert each in the middle hour), in the order a network server delivers a herd's
    uplinks: hour by hour, the collars of each hour one after the other. Frame counters go on from
    those of the bodies of the hours before first_hour (`synthetic_bodies(collars, first_hour)`)."""
    codec = default_codec()
    bodies: list[bytes] = []
    f_cnts = [2 * first_hour + (1 if first_hour else 0)] * collars  # the earlier hours' frames, their alert
    for h in range(first_hour, first_hour + hours):
        for c in range(collars):
            device_id = f"bench-{c:03d}"
            t_s = START_S + 3600 * h
            messages = hourly_messages(t_s, -2.5 + c / 1000, 37.5 + h / 1000, uptime_h=h)
            if h == first_hour + hours // 2:
                messages.append(("alert", {"alert_type": "immobility", "seq": 1, "time_s": t_s,
                                           "lat": -2.5, "lon": 37.5}))
            for name, values in messages:
                f_cnts[c] += 1
                f_cnt = f_cnts[c]
                payload = codec.encode(name, values)
                dev_eui = f"70B3D57ED0{c:06X}"
                bodies.append(_tts_body(device_id, f_cnt, codec.port_of(name), payload, t_s, "gw-1", dev_eui))
                if f_cnt % 4 == 0:
                    bodies.append(_tts_body(device_id, f_cnt, codec.port_of(name), payload, t_s, "gw-2", dev_eui))
    return bodies


def _tts_body(device_id: str, f_cnt: int, port: int, payload: bytes, t_s: int, gateway: str = "gw-1",
              dev_eui: str | None = None) -> bytes:
    return tts_uplink_body(device_id, dev_eui, BENCH_APP, port, f_cnt, payload,
                           datetime.fromtimestamp(t_s + 2, UTC), gateway)


def _uplink_key(body: bytes) -> tuple[str, int]:
    """(DevEUI, frame counter): one uplink, whatever device name the bridge files it under."""
    document = json.loads(body)
    return document["end_device_ids"]["dev_eui"].upper(), document["uplink_message"]["f_cnt"]


# ---- baselines and counts on the store ---------------------------------------------------------


RAW_INSERT_METHOD = (
    "the raw row of every body (source, body, status, gateways, received_at) inserted through the "
    "bridge's write engine (SQLite WAL synchronous=FULL; PostgreSQL synchronous_commit on) from one "
    "thread, committed in transactions of `connections` rows: the largest batch the webhook's group "
    "commit can gather from that many clients, so the same durability per acknowledged body"
)


def raw_insert_rate(bridge: Bridge, bodies: list[bytes], per_commit: int = 1) -> float:
    """Bare durable inserts of the raw row per second: `per_commit` rows per transaction (one
    multi-row insert each), the bridge's engine — the ceiling of the ingest path on that store."""
    statement = insert(RawUplink)
    per_commit = max(1, per_commit)
    started = time.perf_counter()
    for first in range(0, len(bodies), per_commit):
        with bridge.db.write_engine.begin() as connection:
            connection.execute(statement, [
                {"source": "bench", "body": body, "status": "received", "gateways": [], "received_at": utc_now()}
                for body in bodies[first:first + per_commit]
            ])
    return len(bodies) / (time.perf_counter() - started)


def statement_counts(bodies: list[bytes], folder: Path) -> dict[str, float]:
    """SQL statements and commits per uplink through the service layer, one body at a time (a batch
    of one each: deterministic, unlike time and unlike the webhook's batches)."""
    with open_bridge(f"sqlite:///{folder / 'counted.db'}", webhook_secret=BENCH_SECRET) as bridge:
        counts = count_writes(bridge.db)
        for body in bodies:
            bridge.ingest_tts_uplink(body)
    return {
        "one_at_a_time_statements_per_uplink": round(counts["statements"] / len(bodies), 2),
        "one_at_a_time_commits_per_uplink": round(counts["commits"] / len(bodies), 2),
    }


# A collar fixing every 6 h: the rules' lookback (twice the 12 h immobility rule) never holds
# `rules_engine.CONTEXT_FIXES` fixes, so every judgement of its track also reads the fixes before it.
SPARSE_EVERY_H = 6


def sparse_deliveries(collars: int, rounds: int, every_h: int = SPARSE_EVERY_H) -> list[list[bytes]]:
    """A fleet whose collars send a status with a fix every `every_h` hours, a round (one delivery)
    at a time: the collars' TTS uplink bodies of each round."""
    codec = default_codec()
    deliveries = []
    for n in range(rounds):
        t_s = START_S + 3600 * every_h * n
        bodies = []
        for c in range(collars):
            name, values = hourly_messages(t_s, -2.5 + c / 100 + n / 1000, 37.5, uptime_h=every_h * n)[0]
            bodies.append(_tts_body(f"sparse-{c:03d}", n + 1, codec.port_of(name), codec.encode(name, values), t_s,
                                    dev_eui=f"70B3D57ED1{c:06X}"))
        deliveries.append(bodies)
    return deliveries


def sparse_fleet_figures(folder: Path, collars: int, rounds: int) -> dict[str, Any]:
    """The fleet of `sparse_deliveries` applied in this process on a fresh store a round a batch (as the
    durable intake's applier takes a delivery), and on another one body at a time (the in-run
    baseline): the CPU time and the SQL statements per uplink of each, from the second round on (the
    first files new collars), and the CPU ratio."""
    deliveries = sparse_deliveries(collars, rounds)
    figures: dict[str, Any] = {"sparse_fleet": {"collars": collars, "rounds": rounds, "every_h": SPARSE_EVERY_H}}
    for name, batched in (("batch", True), ("one_at_a_time", False)):
        with open_bridge(f"sqlite:///{folder / f'sparse-{name}.db'}", webhook_secret=BENCH_SECRET,
                         outbox_worker=False) as bridge:
            bridge.warm_up()
            cpu_s, counted, counts = 0.0, 0, {"statements": 0}
            for n, bodies in enumerate(deliveries):
                if n == 1:  # from the second round on: the first files the new collars
                    counts = count_writes(bridge.db)
                started = time.process_time()
                for batch in ([bodies] if batched else [[body] for body in bodies]):
                    bridge.ingest_batch([Submission("tts", None, body) for body in batch])
                if n:
                    cpu_s += time.process_time() - started
                    counted += len(bodies)
        figures[f"sparse_{name}_cpu_ms_per_uplink"] = round(1000 * cpu_s / max(counted, 1), 3)
        figures[f"sparse_{name}_statements_per_uplink"] = round(counts["statements"] / max(counted, 1), 2)
    figures["sparse_batch_over_one_at_a_time"] = round(
        figures["sparse_batch_cpu_ms_per_uplink"] / figures["sparse_one_at_a_time_cpu_ms_per_uplink"], 4)
    return figures


_APPLIED = (RawUplink.duplicate_of.is_(None), RawUplink.status.in_(DONE_STATUSES), RawUplink.source != "bench")


HISTORY_BATCH = 256  # bodies a transaction when a store is given its herd's history before a run
# One worker's MQTT threads measured beside the default (`mqtt_one_worker_by_threads`)
FEWER_MQTT_THREADS = (32, 64)


def apply_history(database_url: str, bodies: list[bytes]) -> None:
    """Give the store at database_url a herd's history: bodies applied in batches in this process
    (not measured), as a bridge that has run for a while holds them: fixes, battery readings,
    summaries, raw rows, rule cursors and alerts."""
    with open_bridge(database_url, webhook_secret=BENCH_SECRET) as bridge:
        for first in range(0, len(bodies), HISTORY_BATCH):
            results = bridge.ingest_batch([Submission("tts", None, body) for body in bodies[first:first + HISTORY_BATCH]])
            if any(r.status not in ("processed", "duplicate") for r in results):
                raise RuntimeError("a body of the herd's history was not applied")


def _stored_rows(bridge: Bridge) -> list[tuple[str, int]]:
    """(DevEUI, frame counter) of every uplink the store applied, one row per first copy."""
    with bridge.db.read() as session:
        rows = session.execute(
            select(Device.dev_eui, RawUplink.f_cnt).join(Device, Device.device_id == RawUplink.device_id).where(*_APPLIED)
        ).all()
    return [(dev_eui.upper(), int(f_cnt)) for dev_eui, f_cnt in rows if dev_eui is not None and f_cnt is not None]


_APPLIED_COUNT = select(func.count()).select_from(RawUplink).where(*_APPLIED)


def _applied_count(connection: Connection) -> int:
    """How many first copies the store applied: a look while waiting, before `_stored_rows`, on one
    connection the waiter holds (its transaction ended after each look, so the next sees later
    commits). A session a look cost this process about three times the CPU, taken from the workers
    on a machine of two cores."""
    try:
        return int(connection.execute(_APPLIED_COUNT).scalar() or 0)
    finally:
        connection.rollback()


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


# ---- the webhook, driven from another process ----------------------------------------------


def webhook_run(database_url: str, bodies: list[bytes], connections: int, folder: Path,
                ack: str = "applied", applier: str | None = None, rate: float | None = None) -> dict[str, Any]:
    """Serve the webhook on database_url, post bodies from a separate process; rate, latency, lost.

    ack: the bridge's `webhook_ack`. With "applied" a body's latency is its request's (the answer
    comes once its alerts are stored); with "durable" the answer comes once its raw row is durable,
    so a body's latency runs from the load process sending it to the commit of the batch that
    applied it (rules and alerts stored), and the rate from the first send to the last such commit.
    rate: bodies per second offered at a steady pace (latency from when each was due), else as fast
    as the answers come."""
    bodies_file = folder / f"bodies-{time.monotonic_ns()}.jsonl"
    bodies_file.write_bytes(b"\n".join(bodies))
    applied_at: dict[int, float] = {}
    applier_sched: tuple[int, int] | None = None  # the applier's main thread: ns on a core, ns waiting for one
    options = {"intake_applier": applier} if applier else {}
    with open_bridge(database_url, webhook_secret=BENCH_SECRET, webhook_ack=ack, **options) as bridge:
        work = count_writes(bridge.db)
        applier_pid = None
        if ack == "durable":
            bridge.durable_intake().on_applied(
                lambda keys, committed_at: applied_at.update((key, committed_at) for key in keys)
            )
            applier_pid = bridge.durable_intake().applier_pid()
        with serve_app_in_thread(create_app(bridge)) as server:
            cpu_started = time.process_time()  # this process: the bridge; the load is another one
            applier_started = process_tree_cpu_s(applier_pid)  # the applier's process, when it is one
            applier_sched_started = main_thread_schedstat(applier_pid)
            threads_started = thread_cpu_s()
            done = subprocess.run(
                [sys.executable, "-m", "lora_bridge.bench_load", server.url, SECRET_HEADER, BENCH_SECRET,
                 str(bodies_file), str(connections)] + ([f"{rate:.3f}"] if rate else []),
                check=True, capture_output=True, timeout=3600,
            )
            driven = json.loads(done.stdout)
            answered_s = driven["elapsed_s"]
            answer_latencies = list(driven["latencies_ms"])  # send -> 2xx, whatever the mode
            if ack == "durable":
                _wait_applied(driven, applied_at)
            cpu_s = time.process_time() - cpu_started
            by_thread = cpu_by_part(threads_started, thread_cpu_s())
            applier_cpu_s = 0.0
            if applier_pid is not None:
                if bridge.durable_intake().applier_pid() != applier_pid:
                    raise RuntimeError("the intake applier process was started again during the run: its CPU is not known")
                applier_cpu_s = process_tree_cpu_s(applier_pid) - applier_started
                by_thread["applier"] += applier_cpu_s
                applier_sched = _sched_spent(applier_sched_started, main_thread_schedstat(applier_pid))
        if ack == "durable":
            _latencies_to_applied(driven, applied_at)
        acked = {_uplink_key(bodies[i]) for i, code in enumerate(driven["statuses"]) if 200 <= code < 300}
        rows = _stored_rows(bridge)
        stored = set(rows)
        size = bridge.store_size()
        # The same store once its raw bodies are past retention and compacted.
        bridge.compact_raw_bodies(now=utc_now() + timedelta(days=bridge.settings.raw_retention_days + 1))
        compacted = bridge.store_size()
    latencies = driven["latencies_ms"]
    batches = bridge.ingest_batches()
    written = batches["batches"]
    if ack == "durable":  # the applier's batches: bodies applied per transaction with the rules
        intake = bridge.durable_intake()
        batches = {**batches, "bodies": intake.applied, "batches": intake.batches_applied}
        written = intake.batches_written
        for name, count in intake.applier_work.items():  # an applier process's statements and commits
            work[name] += count
    return {
        "uplinks_per_s": len(bodies) / driven["elapsed_s"],
        "mean_batch": round(batches["bodies"] / max(1, batches["batches"]), 2),
        # bodies per commit that made them durable before the answer (the durable intake's writer; the
        # group commit's batches with the applied answer)
        "writer_mean_batch": round(len(bodies) / max(1, written), 2),
        "cpu_ms_per_uplink": round(1000 * (cpu_s + applier_cpu_s) / len(bodies), 3),
        "cpu_ms_per_uplink_by_process": {"webhook": round(1000 * cpu_s / len(bodies), 3),
                                         "applier": round(1000 * applier_cpu_s / len(bodies), 3)},
        "intake_applier": "process" if applier_pid is not None else "thread",
        # the applier process's main thread (which applies the batches) over the rate's time (first send
        # to last commit; it has nothing to do before): the share of it on a core, and the share it was
        # ready to run and waited for one (None: a thread)
        "applier_on_cpu_share": _share(applier_sched, 0, driven["elapsed_s"]),
        "applier_waiting_for_cpu_share": _share(applier_sched, 1, driven["elapsed_s"]),
        # the load process's own CPU per body: it shares the machine's cores with the bridge it measures
        "load_cpu_ms_per_body": round(1000 * driven["cpu_s"] / len(bodies), 3),
        "batches_fell_back": batches["fell_back"],
        "statements_per_uplink": round(work["statements"] / len(bodies), 2),
        "commits_per_uplink": round(work["commits"] / len(bodies), 3),
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "answers_per_s": len(bodies) / answered_s,
        "answer_p50_ms": _percentile(answer_latencies, 0.50),
        "answer_p99_ms": _percentile(answer_latencies, 0.99),
        "cpu_ms_per_uplink_by_thread": {part: round(1000 * seconds / len(bodies), 3)
                                        for part, seconds in by_thread.items()},
        "lost": len(acked - stored),
        "applied_twice": len(rows) - len(stored),
        "non_2xx": sum(1 for code in driven["statuses"] if not 200 <= code < 300),
        "store_bytes": size["used_bytes"],
        "compacted_store_bytes": compacted["used_bytes"],
    }


# The bridge's threads by name, and the part of the work each does.
THREAD_PARTS = {
    "tembo-uvicorn": "http",  # uvicorn's event loop: HTTP parsing, Starlette, the handler, the answer
    "tembo-intake-writer": "writer",  # the durable intake: reading and checking each body, the journal, settling
    "tembo-intake-applier": "applier",  # the durable intake: raw rows, decoding, domain rows, rules
    "tembo-outbox": "outbox",
    "tembo-intake-supervisor": "supervisor",  # the applier process's reports, when it is one
}


def thread_cpu_s() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of each live thread of this process: {native id: (name, seconds)}."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for thread in threading.enumerate():
        if thread.native_id is None:
            continue
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        found[thread.native_id] = (thread.name, (int(fields[11]) + int(fields[12])) / tick)
    return found


def cpu_by_part(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each part spent between two `thread_cpu_s` readings (threads of no named part:
    `other`, e.g. the thread pool of the group commit; a thread that ended in between is not seen)."""
    parts = {part: 0.0 for part in (*THREAD_PARTS.values(), "other")}
    for native_id, (name, seconds) in after.items():
        part = THREAD_PARTS.get(name, "other")
        parts[part] += seconds - before.get(native_id, (name, 0.0))[1]
    return parts


def _wait_applied(driven: dict[str, Any], applied_at: dict[int, float], timeout_s: float = 600.0) -> None:
    """Wait until every body answered `202 received` is applied (its batch committed)."""
    waiting = {raw_id for raw_id, code in zip(driven["raw_ids"], driven["statuses"], strict=True)
               if code == 202 and raw_id is not None}
    deadline = time.monotonic() + timeout_s
    while not waiting <= applied_at.keys() and time.monotonic() < deadline:
        time.sleep(0.005)


def _latencies_to_applied(driven: dict[str, Any], applied_at: dict[int, float]) -> None:
    """Each body's latency from its send to the commit that applied it (a body answered otherwise:
    its request's); the run's elapsed time to the last such commit."""
    ends = []
    for i, (raw_id, code) in enumerate(zip(driven["raw_ids"], driven["statuses"], strict=True)):
        if code == 202 and raw_id in applied_at:
            driven["latencies_ms"][i] = 1000 * (applied_at[raw_id] - driven["sent_wall"][i])
            ends.append(applied_at[raw_id])
    if ends:
        driven["elapsed_s"] = max(driven["elapsed_s"], max(ends) - driven["started_wall"])


# ---- MQTT workers ------------------------------------------------------------------------------


def main_thread_schedstat(pid: int | None) -> tuple[int, int] | None:
    """(nanoseconds on a core, nanoseconds ready and waiting for one) of pid's main thread so far, from
    /proc/<pid>/schedstat; None when pid is None or gone, or the kernel keeps no such figures."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/schedstat") as stat:
            on_cpu, waiting, *_ = stat.read().split()
    except (OSError, ValueError):
        return None
    return int(on_cpu), int(waiting)


def _sched_spent(started: tuple[int, int] | None, ended: tuple[int, int] | None) -> tuple[int, int] | None:
    """The nanoseconds a thread spent on a core and waiting for one between two schedstat reads."""
    if started is None or ended is None:
        return None
    return ended[0] - started[0], ended[1] - started[1]


def _share(spent: tuple[int, int] | None, which: int, wall_s: float) -> float | None:
    """spent[which] (ns) as a share of wall_s; None when not known."""
    if spent is None or wall_s <= 0:
        return None
    return round(spent[which] / 1e9 / wall_s, 3)


def process_schedstat(pid: int | None, children: bool = False) -> tuple[int, int] | None:
    """(nanoseconds on a core, nanoseconds ready and waiting for one) of every thread of pid so far, from
    /proc/<pid>/task/*/schedstat; with children, of its live child processes' threads too (a PostgreSQL
    postmaster's backends). None when pid is None or gone. Threads that end in between are not seen."""
    if pid is None:
        return None
    pids = [pid]
    if children:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != pid:
                try:
                    with open(f"/proc/{entry}/stat") as stat:
                        text = stat.read()
                except OSError:
                    continue
                if int(text[text.rindex(")") + 2:].split()[1]) == pid:
                    pids.append(int(entry))
    on_cpu = waiting = 0
    found = False
    for of in pids:
        try:
            tasks = os.listdir(f"/proc/{of}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{of}/task/{task}/schedstat") as stat:
                    ran, waited, *_ = stat.read().split()
            except (OSError, ValueError):
                continue
            on_cpu, waiting, found = on_cpu + int(ran), waiting + int(waited), True
    return (on_cpu, waiting) if found else None


def process_tree_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) of pid, of its children it has reaped, and of its live children: a
    PostgreSQL server's postmaster and its backends (a backend that exits is reaped by the
    postmaster and counted there). 0.0 when pid is None or gone."""
    if pid is None:
        return 0.0

    def fields(of: int | str) -> list[str]:
        with open(f"/proc/{of}/stat") as stat:
            text = stat.read()
        return text[text.rindex(")") + 2:].split()  # after "pid (comm) "; state is fields[0]

    tick = os.sysconf("SC_CLK_TCK")
    try:
        own = fields(pid)
    except OSError:
        return 0.0
    total = sum(int(x) for x in own[11:15])  # utime, stime, cutime, cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid:
            try:
                child = fields(entry)
            except OSError:
                continue
            if int(child[1]) == pid:
                total += int(child[11]) + int(child[12])
    return total / tick


def machine_cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine since boot, all cores, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(x) for x in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def _postmaster_pid(server: Any) -> int | None:
    try:
        return int((server.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def mqtt_run(database_url: str, broker: Any, bodies: list[bytes], workers: int, group: str,
             collar_shares: bool = True, postgres_pid: int | None = None, threads: int | None = None,
             profile_to: Path | None = None, rate: float | None = None) -> dict[str, Any]:
    """Publish bodies to the broker for `workers` worker processes sharing a subscription (and the
    collars, unless collar_shares is False: then each applies whatever the broker hands it); rate, lost.
    threads: each worker's `mqtt_threads` (None: the default). profile_to: a folder where each worker
    dumps its threads' profile (`{client id}.pstats`); the run then gives the workers' Python calls
    (`python_calls_per_uplink`), and its rates are those of profiled workers. rate: bodies a second the
    publisher offers, evenly spaced (None: all at once, as fast as the broker takes them); the waits of
    messages for their PUBACK (`ack_wait_p50_ms`, `ack_wait_p99_ms`) are then the workers' own, not a backlog's."""
    import paho.mqtt.client as mqtt

    environment = {**os.environ, **({"TEMBO_MQTT_THREADS": str(threads)} if threads else {})}

    def worker_environment(client_id: str) -> dict[str, str]:
        if profile_to is None:
            return environment
        return {**environment, MQTT_WORKER_PROFILE_ENV: str(profile_to / f"{client_id}.pstats")}

    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "lora_bridge.bench", "mqtt-worker", database_url, broker.url,
             f"{group}-{n}", group] + ([] if collar_shares else ["no-collar-shares"]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=worker_environment(f"{group}-{n}"),
        )
        for n in range(workers)
    ]
    try:
        for process in processes:
            if process.stdout.readline().strip() != b"ready":
                raise RuntimeError("an MQTT bench worker did not start")
        with open_bridge(database_url, webhook_secret=BENCH_SECRET) as reader, ExitStack() as held:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{group}-publisher", protocol=mqtt.MQTTv5)
            client.username_pw_set(broker.username, broker.password)
            client.connect(broker.host, broker.port)
            client.loop_start()
            keys = [_uplink_key(body) for body in bodies]
            expected = set(keys)
            topics = [f"v3/{BENCH_APP}@bench/devices/{device_id}/up" for device_id, _ in keys]
            waiter = held.enter_context(reader.db.read_engine.connect())
            broker_pid = broker.process.pid if getattr(broker, "process", None) is not None else None
            waits = BackendWaits(database_url).start() if database_url.startswith("postgresql") else None
            cpu_before = (process_tree_cpu_s(postgres_pid), process_tree_cpu_s(broker_pid), time.process_time(),
                          machine_cpu_jiffies())
            sched_before = ([process_schedstat(process.pid) for process in processes],
                            process_schedstat(postgres_pid, children=True))
            started = time.perf_counter()
            infos = []
            for n, (topic, body) in enumerate(zip(topics, bodies, strict=True)):
                if rate is not None and (due := started + n / rate - time.perf_counter()) > 0:
                    time.sleep(due)
                infos.append(client.publish(topic, body, qos=1))
            for info in infos:
                info.wait_for_publish(timeout=60)
            deadline = time.monotonic() + 300
            rows: list[tuple[str, int]] = []
            while time.monotonic() < deadline:
                # Counted until enough are in, then read: reading every row at each look cost this process
                # and PostgreSQL ~1 ms of CPU per uplink, taken from the workers on a machine of 2 cores.
                if _applied_count(waiter) >= len(expected):
                    rows = _stored_rows(reader)
                    if set(rows) >= expected:
                        break
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            busy, total = machine_cpu_jiffies()
            cpu_after = (process_tree_cpu_s(postgres_pid), process_tree_cpu_s(broker_pid), time.process_time())
            sched_after = ([process_schedstat(process.pid) for process in processes],
                           process_schedstat(postgres_pid, children=True))
            if waits is not None:
                waits.stop()
            client.disconnect()
            client.loop_stop()
    finally:
        for process in processes:
            process.stdin.close()
        batched = {"batches": 0, "bodies": 0, "fell_back": 0, "handed_over": 0, "taken": 0, "apart_batches": 0,
                   "apart_bodies": 0, "cpu_s": 0.0, "python_calls": 0, "statements": 0, "commits": 0,
                   "ack_waits_s": [], "start_up_objects_frozen": [], "full_collections": 0, "full_collections_s": 0.0}
        cpu_per_worker: list[float] = []
        for process in processes:
            try:
                said = process.stdout.readline()
                process.wait(timeout=60)
                for name, value in (json.loads(said) if said.strip() else {}).items():
                    batched[name] += value
                    if name == "cpu_s":
                        cpu_per_worker.append(value)
            except subprocess.TimeoutExpired:
                process.kill()
    return {"uplinks_per_s": len(bodies) / elapsed, "lost": len(expected - set(rows)),
            "applied_twice": len(rows) - len(set(rows)),
            "mean_batch": round(batched["bodies"] / max(1, batched["batches"]), 2),
            # each message's wait from its arrival in a worker to its PUBACK (sent once its body is durable)
            "ack_wait_p50_ms": round(1000 * _percentile(batched["ack_waits_s"], 0.5), 2),
            "ack_wait_p99_ms": round(1000 * _percentile(batched["ack_waits_s"], 0.99), 2),
            # each worker's start-up heap left out of the collector's passes (as `tembo bridge` does), and
            # the full collections the workers made in the run, with their time in all (each holds the GIL)
            "start_up_objects_frozen": batched["start_up_objects_frozen"],
            "full_collections": batched["full_collections"],
            "full_collections_ms": round(1000 * batched["full_collections_s"], 1),
            "batches_fell_back": batched["fell_back"],
            "handed_over": batched["handed_over"],
            # hand-overs a worker's share applied apart from its ingest batches (idle 50 ms): each such
            # batch a commit and its collars' rules of its own
            "taken": batched["taken"], "apart_batches": batched["apart_batches"],
            "apart_bodies": batched["apart_bodies"],
            # CPU time of all workers per uplink, and each worker's CPU time per uplink of the run
            "cpu_ms_per_uplink": round(1000 * batched["cpu_s"] / len(bodies), 3),
            "cpu_ms_per_uplink_per_worker": [round(1000 * c / len(bodies), 3) for c in cpu_per_worker],
            # the workers' Python calls per uplink, all their threads, and their statements (an executemany
            # counts once) and commits on the store (profiled runs only: else 0)
            "python_calls_per_uplink": round(batched["python_calls"] / len(bodies), 1),
            "statements_per_uplink": round(batched["statements"] / len(bodies), 3),
            "commits_per_uplink": round(batched["commits"] / len(bodies), 4),
            # the other parts, over the same span: PostgreSQL (server and backends), Mosquitto, this
            # process (publisher and the reader that watches the rows arrive), and how busy the whole
            # machine was (1.0: every core busy, whoever's work it was)
            "postgres_cpu_ms_per_uplink": round(1000 * (cpu_after[0] - cpu_before[0]) / len(bodies), 3),
            "broker_cpu_ms_per_uplink": round(1000 * (cpu_after[1] - cpu_before[1]) / len(bodies), 3),
            "load_generator_cpu_ms_per_uplink": round(1000 * (cpu_after[2] - cpu_before[2]) / len(bodies), 3),
            "machine_busy_share": round((busy - cpu_before[3][0]) / max(1, total - cpu_before[3][1]), 3),
            # of it, the cores' share that none of the run's parts took (other programs on the machine):
            # near 0, the run had the machine to itself
            "other_work_share": round(
                (busy - cpu_before[3][0]) / max(1, total - cpu_before[3][1])
                - (batched["cpu_s"] + sum(after - before for after, before in zip(cpu_after, cpu_before[:3], strict=True)))
                / elapsed / (os.cpu_count() or 1), 3),
            # each worker process (all its threads) over the run's time: the cores' worth it ran, and the
            # cores' worth it was ready but waited for a core (the machine's other work, the other worker);
            # the same for PostgreSQL's server and backends
            **{f"{name}_{what}": [_share(spent, which, elapsed) for spent in (
                [_sched_spent(a, b) for a, b in zip(sched_before[0], sched_after[0], strict=True)])]
               for name, what, which in (("worker", "on_cpu_share", 0), ("worker", "waiting_for_cpu_share", 1))},
            **{f"postgres_{what}": _share(_sched_spent(sched_before[1], sched_after[1]), which, elapsed)
               for what, which in (("on_cpu_share", 0), ("waiting_for_cpu_share", 1))},
            # what the workers' PostgreSQL backends were doing, sampled (running, or waiting on a lock)
            **(waits.figures() if waits is not None else {}),
            "elapsed_s": round(elapsed, 3)}


def mqtt_worker(database_url: str, broker_url: str, client_id: str, group: str, *options: str) -> None:
    """One bridge worker process: MQTT in, the store at database_url; runs until stdin closes.
    Option `no-collar-shares`: apply every message the broker hands this worker, whatever its collar."""
    from lora_bridge.adapters.mqtt import MqttIngest, parse_broker_url
    from lora_bridge.collar_shares import CollarShare
    from lora_bridge.collector_pace import FullCollections
    from lora_bridge.start_up_heap import freeze_start_up_heap

    profile_to = os.environ.get(MQTT_WORKER_PROFILE_ENV)
    profiles = ThreadProfiles().start() if profile_to else None
    with open_bridge(database_url, webhook_secret=BENCH_SECRET) as bridge:
        bridge.process_pending()  # bodies a killed worker stored and did not apply, as `tembo bridge` does
        bridge.warm_up()  # as `tembo bridge` does before its MQTT workers start (`server.serve`)
        # as `tembo bridge` does once they started: else a full collection walks the whole start-up heap
        # mid-batch (88-172 ms, every thread stalled), the tail of the PUBACK waits at half load
        frozen = freeze_start_up_heap()
        share = CollarShare(bridge, f"{group}/{client_id}")
        worker = MqttIngest(bridge.ingest_network_message, parse_broker_url(broker_url), share_group=group,
                            client_id=client_id, topics=("v3/+/devices/+/up",), threads=bridge.settings.mqtt_threads,
                            share=None if "no-collar-shares" in options else share, keep=bridge.keep_failed)
        with worker:
            print("ready", flush=True)
            collections = FullCollections().start()
            cpu_started = time.process_time()
            calls_started = profiles.calls() if profiles is not None else 0
            writes = count_writes(bridge.db) if profiles is not None else {}
            sys.stdin.read()
            cpu_s = time.process_time() - cpu_started
            collections.stop()
            calls = profiles.calls() - calls_started if profiles is not None else 0
        said = {**bridge.ingest_batches(), "handed_over": share.handed_over, "taken": share.taken, "cpu_s": cpu_s,
                "ack_waits_s": worker.ack_waits.latest_s(), "start_up_objects_frozen": [frozen],
                "full_collections": collections.count, "full_collections_s": collections.seconds}
        if profiles is not None:
            profiles.stop()
            profiles.stats().dump_stats(profile_to)
            said.update(python_calls=calls, **writes)
        print(json.dumps(said), flush=True)


# ---- the figures ---------------------------------------------------------------------------------


def bridge_figures(collars: int = 40, hours: int = 12, connections: int = 8, postgres: bool = True,
                   mqtt: bool = True, mqtt_rounds: int = 3, ack: str = "durable",
                   applier: str | None = None, history_days: int = 14, sparse_collars: int = 64,
                   sparse_rounds: int = 12, mqtt_hours: int = 48) -> dict[str, Any]:
    """Every figure of the module docstring, measured in one run on fresh stores in a temporary folder.
    ack: the webhook's `webhook_ack` for the SQLite figures; the other mode is measured too
    (`sqlite_<other>_ack_*`), on its own fresh store, right after. applier: the `intake_applier` of the
    SQLite durable runs ("thread" or "process"; None: the bridge's default). history_days: the headline
    run again on a store that holds that many days of the herd's history first (`sqlite_history_*`;
    0: not measured). sparse_collars, sparse_rounds: the fleet fixing every few hours of
    `sparse_fleet_figures` (`sparse_*`; 0 collars: not measured). mqtt_hours: the herd's hours each
    MQTT run publishes (`mqtt_bodies`): at 1,000 uplinks/s twelve hours are gone in about a second,
    and the workers' first batches (new collars, their first reads) would weigh in the rate."""
    bodies = synthetic_bodies(collars, hours)
    figures: dict[str, Any] = {"bodies": len(bodies), "connections": connections,
                               "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="tembo-bench-") as name:
        folder = Path(name)
        folder.chmod(0o755)  # PostgreSQL runs as its own user and keeps its data folder in here
        with open_bridge(f"sqlite:///{folder / 'raw.db'}", webhook_secret=BENCH_SECRET) as bridge:
            figures["raw_insert_uplinks_per_s"] = round(raw_insert_rate(bridge, bodies, connections), 1)
            figures["raw_insert_one_per_commit_uplinks_per_s"] = round(raw_insert_rate(bridge, bodies), 1)
        figures["raw_insert_method"] = RAW_INSERT_METHOD
        sqlite = webhook_run(f"sqlite:///{folder / 'webhook.db'}", bodies, connections, folder, ack=ack,
                             applier=applier)
        other_ack = "applied" if ack == "durable" else "durable"
        other = webhook_run(f"sqlite:///{folder / 'webhook-other.db'}", bodies, connections, folder, ack=other_ack,
                            applier=applier)
        warm = webhook_run(f"sqlite:///{folder / 'webhook-warm.db'}", bodies, connections, folder, ack=ack,
                           applier=applier)
        # The same bodies offered at half the rate the bridge just reached: what the time to alerts
        # is when the bridge is not the bottleneck (a reserve's server is not run at its limit).
        half = webhook_run(f"sqlite:///{folder / 'webhook-half.db'}", bodies, connections, folder, ack=ack,
                           applier=applier, rate=sqlite["uplinks_per_s"] / 2)
        figures["sqlite_webhook_ack"] = ack
        figures["sqlite_uplinks_per_s"] = round(sqlite["uplinks_per_s"], 1)
        figures.update(_run_figures(f"sqlite_{other_ack}_ack_", other, "uplinks_per_s", "p50_ms", "p99_ms",
                                    "cpu_ms_per_uplink", "mean_batch", "lost"))
        # the answer alone (send -> 2xx) and the rate of answers: what the network server waits on
        figures["sqlite_answers_per_s"] = round(sqlite["answers_per_s"], 1)
        figures["sqlite_answer_p50_ms"] = round(sqlite["answer_p50_ms"], 2)
        figures["sqlite_answer_p99_ms"] = round(sqlite["answer_p99_ms"], 2)
        figures["cpu_ms_per_uplink_by_thread"] = sqlite["cpu_ms_per_uplink_by_thread"]
        figures["cpu_ms_per_uplink_by_process"] = sqlite["cpu_ms_per_uplink_by_process"]
        figures["sqlite_warm_cpu_ms_per_uplink_by_process"] = warm["cpu_ms_per_uplink_by_process"]
        figures["sqlite_intake_applier"] = sqlite["intake_applier"]
        # what bounds the rate: the applier's share of the run on a core, and waiting for one
        figures["sqlite_applier_on_cpu_share"] = sqlite["applier_on_cpu_share"]
        figures["sqlite_applier_waiting_for_cpu_share"] = sqlite["applier_waiting_for_cpu_share"]
        figures["sqlite_load_cpu_ms_per_body"] = sqlite["load_cpu_ms_per_body"]
        figures["sqlite_warm_cpu_ms_per_uplink_by_thread"] = warm["cpu_ms_per_uplink_by_thread"]
        figures["p50_ms"] = round(sqlite["p50_ms"], 2)
        figures["p99_ms"] = round(sqlite["p99_ms"], 2)
        figures["sqlite_warm_uplinks_per_s"] = round(warm["uplinks_per_s"], 1)
        figures["sqlite_warm_cpu_ms_per_uplink"] = warm["cpu_ms_per_uplink"]
        figures["sqlite_warm_p99_ms"] = round(warm["p99_ms"], 2)
        figures["sqlite_half_rate_offered_per_s"] = round(sqlite["uplinks_per_s"] / 2, 1)
        figures["sqlite_half_rate_p50_ms"] = round(half["p50_ms"], 2)
        figures["sqlite_half_rate_p99_ms"] = round(half["p99_ms"], 2)
        figures["sqlite_half_rate_mean_batch"] = half["mean_batch"]
        runs: tuple[dict[str, Any], ...] = (sqlite, other, warm, half)
        if history_days > 0:
            # The same hours of the herd after `history_days` days of its history: what a bridge that
            # has run for weeks pays (the battery trend's window, the tracks' lookback, a longer store).
            history_url = f"sqlite:///{folder / 'webhook-history.db'}"
            apply_history(history_url, synthetic_bodies(collars, 24 * history_days))
            aged = webhook_run(history_url, synthetic_bodies(collars, hours, first_hour=24 * history_days),
                               connections, folder, ack=ack, applier=applier)
            figures["sqlite_history_days"] = history_days
            figures["sqlite_history_uplinks_per_s"] = round(aged["uplinks_per_s"], 1)
            figures["sqlite_history_p50_ms"] = round(aged["p50_ms"], 2)
            figures["sqlite_history_p99_ms"] = round(aged["p99_ms"], 2)
            figures["sqlite_history_cpu_ms_per_uplink_by_process"] = aged["cpu_ms_per_uplink_by_process"]
            runs += (aged,)
        figures["lost"] = sum(run["lost"] for run in runs)
        figures["applied_twice"] = sum(run["applied_twice"] for run in runs)
        figures["non_2xx"] = sum(run["non_2xx"] for run in runs)
        figures["sqlite_over_raw_insert"] = round(figures["sqlite_uplinks_per_s"] / figures["raw_insert_uplinks_per_s"], 4)
        figures["mean_batch"] = sqlite["mean_batch"]
        figures["sqlite_writer_mean_batch"] = sqlite["writer_mean_batch"]
        # CPU the bridge process spent per uplink (HTTP, parsing, store, rules): what a busy machine
        # does not inflate the way it inflates elapsed time; 1000 / it is the rate of one free core.
        figures["cpu_ms_per_uplink"] = sqlite["cpu_ms_per_uplink"]
        figures["batches_fell_back"] = sqlite["batches_fell_back"]
        figures["statements_per_uplink"] = sqlite["statements_per_uplink"]
        figures["commits_per_uplink"] = sqlite["commits_per_uplink"]
        figures.update(statement_counts(bodies, folder))
        if sparse_collars and sparse_rounds > 1:
            figures.update(sparse_fleet_figures(folder, sparse_collars, sparse_rounds))
        collar_days = collars * hours / 24
        figures["store_bytes_per_collar_day"] = round(sqlite["store_bytes"] / collar_days)
        figures["compacted_store_bytes_per_collar_day"] = round(sqlite["compacted_store_bytes"] / collar_days)
        figures["load_average_after_sqlite"] = [round(x, 2) for x in os.getloadavg()]
        if postgres:
            mqtt_bodies = synthetic_bodies(collars, mqtt_hours) if mqtt else []
            figures.update(_postgres_figures(folder, bodies, connections, mqtt_bodies, mqtt_rounds))
            figures["lost"] += figures.get("postgres_lost", 0) + figures.get("mqtt_lost", 0)
    return figures


def _run_figures(prefix: str, run: dict[str, Any], *names: str) -> dict[str, Any]:
    """A webhook run's figures `names` under prefix: rates to a tenth, times to a hundredth of a ms."""
    def shown(name: str) -> Any:
        if name.endswith("_per_s"):
            return round(run[name], 1)
        return round(run[name], 2) if name.endswith("_ms") else run[name]

    return {f"{prefix}{name}": shown(name) for name in names}


def _postgres_figures(folder: Path, bodies: list[bytes], connections: int, mqtt_bodies: list[bytes],
                      mqtt_rounds: int = 1) -> dict[str, Any]:
    from tembo.local_services import PostgresServer

    figures: dict[str, Any] = {}
    with PostgresServer.started(folder / "postgres", durable=True) as server:
        with open_bridge(server.create_database("raw"), webhook_secret=BENCH_SECRET) as bridge:
            figures["postgres_raw_insert_uplinks_per_s"] = round(raw_insert_rate(bridge, bodies, connections), 1)
        run = webhook_run(server.create_database("webhook"), bodies, connections, folder)
        figures["postgres_uplinks_per_s"] = round(run["uplinks_per_s"], 1)
        figures["postgres_p99_ms"] = round(run["p99_ms"], 2)
        figures["postgres_mean_batch"] = run["mean_batch"]
        figures["postgres_cpu_ms_per_uplink"] = run["cpu_ms_per_uplink"]
        figures["postgres_statements_per_uplink"] = run["statements_per_uplink"]
        figures["postgres_lost"] = run["lost"]
        figures["postgres_applied_twice"] = run["applied_twice"]
        figures["load_average_after_postgres"] = [round(x, 2) for x in os.getloadavg()]
        figures["postgres_over_raw_insert"] = round(
            figures["postgres_uplinks_per_s"] / figures["postgres_raw_insert_uplinks_per_s"], 4
        )
        # The webhook answering once the body is kept, as the SQLite runs do: the raw rows committed
        # by the webhook's process, applied in batches by the durable intake's applier (a process of
        # its own on a machine of two cores, the default)
        durable = webhook_run(server.create_database("webhook_durable"), bodies, connections, folder, ack="durable")
        figures.update(_run_figures("postgres_durable_ack_", durable, "uplinks_per_s", "p50_ms", "p99_ms",
                                    "mean_batch", "intake_applier", "cpu_ms_per_uplink_by_process"))
        figures["postgres_lost"] += durable["lost"]
        figures["postgres_applied_twice"] += durable["applied_twice"]
        if mqtt_bodies:
            figures.update(_mqtt_figures(folder, server, mqtt_bodies, mqtt_rounds))
    return figures


# The share of the machine other programs may take in the MQTT runs for `workers_speedup_cpu_ceiling`
OTHER_WORK_AT_MOST = 0.15


def _all_cpu_ms_per_uplink(run: dict[str, Any]) -> float:
    """An MQTT run's CPU per uplink of every part: the workers, PostgreSQL, the broker, the publisher."""
    return (run["cpu_ms_per_uplink"] + run["postgres_cpu_ms_per_uplink"] + run["broker_cpu_ms_per_uplink"]
            + run["load_generator_cpu_ms_per_uplink"])


def speedup_cpu_ceiling(one_runs: list[dict[str, Any]], two_runs: list[dict[str, Any]], cores: int) -> float | None:
    """The most two workers could do over one on `cores` cores: every core busy at the median CPU per
    uplink of every part of the two-worker runs, over the one-worker runs' median rate. None when other
    programs took more than OTHER_WORK_AT_MOST of the machine in any of those runs."""
    from statistics import median

    if max(run["other_work_share"] for run in (*one_runs, *two_runs)) > OTHER_WORK_AT_MOST:
        return None
    one = median(run["uplinks_per_s"] for run in one_runs)
    return round(1000 * cores / median(_all_cpu_ms_per_uplink(run) for run in two_runs) / one, 2)


def _mqtt_figures(folder: Path, server: Any, bodies: list[bytes], rounds: int) -> dict[str, Any]:
    """One worker, two workers sharing the collars, and two without (each applying whatever the broker
    hands it), interleaved `rounds` times so the machine's load drifts over all three alike; medians."""
    from statistics import median

    from tembo.local_services import MosquittoServer

    runs: dict[str, list[dict[str, Any]]] = {"one": [], "two": [], "mixed": []}
    fewer_threads: dict[int, list[dict[str, Any]]] = {threads: [] for threads in FEWER_MQTT_THREADS}
    half_rate: list[dict[str, Any]] = []  # one worker offered half the rate its round's run reached
    postgres_pid = _postmaster_pid(server)
    with MosquittoServer.started(folder / "mosquitto") as broker:
        for r in range(max(1, rounds)):
            for threads, kind_runs in fewer_threads.items():
                kind_runs.append(mqtt_run(server.create_database(f"mqtt1t{threads}r{r}"), broker, bodies, 1,
                                          f"bench1t{threads}r{r}", postgres_pid=postgres_pid, threads=threads))
            runs["one"].append(mqtt_run(server.create_database(f"mqtt1r{r}"), broker, bodies, 1, f"bench1r{r}",
                                        postgres_pid=postgres_pid))
            half_rate.append(mqtt_run(server.create_database(f"mqtt1hr{r}"), broker, bodies, 1, f"bench1hr{r}",
                                      postgres_pid=postgres_pid, rate=runs["one"][-1]["uplinks_per_s"] / 2))
            runs["two"].append(mqtt_run(server.create_database(f"mqtt2r{r}"), broker, bodies, 2, f"bench2r{r}",
                                        postgres_pid=postgres_pid))
            runs["mixed"].append(mqtt_run(server.create_database(f"mqtt2rr{r}"), broker, bodies, 2, f"bench2rr{r}",
                                          collar_shares=False, postgres_pid=postgres_pid))
        counted = mqtt_counted_figures(folder, server, broker, bodies)

    def median_of(kind_runs: list[dict[str, Any]], name: str) -> float:
        return round(median(run[name] for run in kind_runs), 3)

    def med(kind: str, name: str) -> float:
        return median_of(runs[kind], name)

    one, two, mixed = med("one", "uplinks_per_s"), med("two", "uplinks_per_s"), med("mixed", "uplinks_per_s")
    # every run's lost and applied twice count, the fewer-thread runs' too
    everything = [run for kind_runs in (*runs.values(), *fewer_threads.values(), half_rate) for run in kind_runs]
    return {
        "mqtt_rounds": max(1, rounds),
        "mqtt_bodies": len(bodies),
        "mqtt_uplinks_per_s": round(one, 1),
        "mqtt_two_workers_uplinks_per_s": round(two, 1),
        # a message's wait from its arrival in the worker to its PUBACK: with every body published at once
        # (mostly the backlog's), and with one worker offered half the rate it reached (its batches' own)
        "mqtt_ack_wait_p50_ms": med("one", "ack_wait_p50_ms"),
        "mqtt_ack_wait_p99_ms": med("one", "ack_wait_p99_ms"),
        "mqtt_half_rate_offered_per_s": round(median(run["uplinks_per_s"] / 2 for run in runs["one"]), 1),
        "mqtt_half_rate_ack_wait_p50_ms": median_of(half_rate, "ack_wait_p50_ms"),
        "mqtt_half_rate_ack_wait_p99_ms": median_of(half_rate, "ack_wait_p99_ms"),
        "mqtt_half_rate_mean_batch": median_of(half_rate, "mean_batch"),
        "mqtt_half_rate_full_collections": median_of(half_rate, "full_collections"),
        "workers_speedup": round(two / one, 2),
        "mqtt_two_workers_no_collar_shares_uplinks_per_s": round(mixed, 1),
        "workers_speedup_no_collar_shares": round(mixed / one, 2),
        # what two workers could reach at most on this machine's cores: every core busy with their work,
        # PostgreSQL's, the broker's and the publisher's, at the CPU per uplink they spent (medians), over
        # one worker's rate. workers_speedup well under it: the code or waits hold them back; near it:
        # the cores do (the publisher and the broker share them here; a network server would not).
        # None when other programs took more than OTHER_WORK_AT_MOST of the machine in a one- or
        # two-worker run: one worker's rate then says nothing of what the cores allow
        "workers_speedup_cpu_ceiling": speedup_cpu_ceiling(runs["one"], runs["two"], os.cpu_count() or 1),
        "mqtt_uplinks_per_s_each_round": {kind: [round(run["uplinks_per_s"], 1) for run in kind_runs]
                                          for kind, kind_runs in runs.items()},
        # two over one within each round (the rounds interleave, so a round's pair shares the machine's
        # load of the moment): the spread of workers_speedup
        "workers_speedup_each_round": [round(two_run["uplinks_per_s"] / one_run["uplinks_per_s"], 2)
                                       for one_run, two_run in zip(runs["one"], runs["two"], strict=True)],
        "mqtt_lost": sum(run["lost"] for run in everything),
        "mqtt_applied_twice": sum(run["applied_twice"] for run in everything),
        "mqtt_mean_batch": med("one", "mean_batch"),
        "mqtt_two_workers_mean_batch": med("two", "mean_batch"),
        "mqtt_two_workers_no_collar_shares_mean_batch": med("mixed", "mean_batch"),
        # batches that went the two-step way (a claim or a collar row raced with the other worker)
        "mqtt_two_workers_batches_fell_back": sum(run["batches_fell_back"] for run in runs["two"]),
        "mqtt_two_workers_no_collar_shares_batches_fell_back": sum(run["batches_fell_back"] for run in runs["mixed"]),
        # bodies a worker received for the other worker's collars and handed over through the store
        "mqtt_two_workers_handed_over": sum(run["handed_over"] for run in runs["two"]),
        # of them, those applied in batches of their own (the owner idle), and those batches
        "mqtt_two_workers_taken_apart": sum(run["apart_bodies"] for run in runs["two"]),
        "mqtt_two_workers_batches_apart": sum(run["apart_batches"] for run in runs["two"]),
        # CPU time of the worker processes per uplink (all workers; each worker's, over all uplinks)
        "mqtt_cpu_ms_per_uplink": med("one", "cpu_ms_per_uplink"),
        "mqtt_two_workers_cpu_ms_per_uplink": med("two", "cpu_ms_per_uplink"),
        "mqtt_two_workers_no_collar_shares_cpu_ms_per_uplink": med("mixed", "cpu_ms_per_uplink"),
        "mqtt_two_workers_cpu_ms_per_uplink_per_worker": [run["cpu_ms_per_uplink_per_worker"] for run in runs["two"]],
        "mqtt_two_workers_no_collar_shares_cpu_ms_per_uplink_per_worker": [
            run["cpu_ms_per_uplink_per_worker"] for run in runs["mixed"]],
        # every part's CPU per uplink (workers + PostgreSQL + Mosquitto + the load generator), medians:
        # what the machine spends per uplink in each configuration, whatever its other load
        **{f"{prefix}all_cpu_ms_per_uplink": round(median(_all_cpu_ms_per_uplink(run) for run in runs[kind]), 3)
           for kind, prefix in (("one", "mqtt_"), ("two", "mqtt_two_workers_"),
                                ("mixed", "mqtt_two_workers_no_collar_shares_"))},
        "mqtt_cpu_ms_per_uplink_by_part": {kind: {part: med(kind, f"{part}_cpu_ms_per_uplink")
                                                  for part in ("postgres", "broker", "load_generator")}
                                           for kind in runs},
        # how busy the whole machine (every core, anyone's work) was during each run: near 1.0, the
        # rates are bounded by CPU, not by waits the second worker could overlap
        "mqtt_machine_busy_share_each_round": {kind: [run["machine_busy_share"] for run in kind_runs]
                                               for kind, kind_runs in runs.items()},
        # of it, what other programs took (the cores' share none of the run's parts used): the ceiling
        # above and the speedup hold for this machine only when it is near 0
        "mqtt_other_work_share_each_round": {kind: [run["other_work_share"] for run in kind_runs]
                                             for kind, kind_runs in runs.items()},
        # the workers' backends, sampled every 10 ms: the share of active samples waiting on a
        # heavyweight lock (a row, an advisory lock, a table: contention of the code), by state, and the
        # statements seen waiting most (each run)
        "mqtt_backend_lock_wait_share_each_round": {kind: [run.get("backend_lock_wait_share") for run in kind_runs]
                                                    for kind, kind_runs in runs.items()},
        # backend-seconds spent waiting on such a lock (each lock sample stands for the time between
        # samples), each run
        "mqtt_backend_lock_wait_s_each_round": {kind: [run.get("backend_lock_wait_s") for run in kind_runs]
                                                for kind, kind_runs in runs.items()},
        # each worker process's share of the run's time on a core, and ready but waiting for one (all
        # its threads, summed: several threads ready at once make the waiting share pass 1;
        # /proc/<pid>/task/*/schedstat); PostgreSQL's server and backends alike: a worker both little on
        # a core and little waiting for one waits on something else (its store, the broker)
        "mqtt_worker_on_cpu_share_each_round": {kind: [run["worker_on_cpu_share"] for run in kind_runs]
                                                for kind, kind_runs in runs.items()},
        "mqtt_worker_waiting_for_cpu_share_each_round": {
            kind: [run["worker_waiting_for_cpu_share"] for run in kind_runs] for kind, kind_runs in runs.items()},
        "mqtt_postgres_on_cpu_share_each_round": {kind: [run["postgres_on_cpu_share"] for run in kind_runs]
                                                  for kind, kind_runs in runs.items()},
        "mqtt_postgres_waiting_for_cpu_share_each_round": {
            kind: [run["postgres_waiting_for_cpu_share"] for run in kind_runs] for kind, kind_runs in runs.items()},
        "mqtt_backend_active_by_state": {kind: [run.get("backend_active_by_state") for run in kind_runs]
                                         for kind, kind_runs in runs.items()},
        "mqtt_backend_lock_waits_top": {kind: [run.get("backend_lock_waits_top") for run in kind_runs]
                                        for kind, kind_runs in runs.items()},
        # One worker with fewer threads (fewer messages in flight): smaller batches, more CPU per uplink
        "mqtt_threads": MQTT_THREADS,
        "mqtt_one_worker_by_threads": {
            str(threads): {name: median_of(kind_runs, name)
                           for name in ("uplinks_per_s", "cpu_ms_per_uplink", "postgres_cpu_ms_per_uplink", "mean_batch")}
            for threads, kind_runs in fewer_threads.items()},
        **counted,
        "cpu_count": os.cpu_count(),
        "load_average_after_mqtt": [round(x, 2) for x in os.getloadavg()],
    }


def mqtt_counted_figures(folder: Path, server: Any, broker: Any, bodies: list[bytes]) -> dict[str, Any]:
    """One worker, then two sharing the collars, each profiled (its rates not taken): what they do per
    uplink, counted rather than timed (`mqtt_counted_per_uplink`)."""
    profiles = folder / "mqtt-profiles"
    profiles.mkdir(exist_ok=True)
    counted: dict[str, dict[str, Any]] = {}
    for kind, workers in (("one", 1), ("two", 2)):
        run = mqtt_run(server.create_database(f"mqttcounted{workers}"), broker, bodies, workers,
                       f"benchcounted{workers}", profile_to=profiles)
        counted[kind] = {name: run[name] for name in ("python_calls_per_uplink", "statements_per_uplink",
                                                      "commits_per_uplink", "mean_batch", "handed_over", "lost", "applied_twice")}
    return {"mqtt_counted_per_uplink": counted}


def _main(argv: list[str]) -> int:
    if argv[:1] == ["mqtt-worker"] and len(argv) in (5, 6):
        mqtt_worker(*argv[1:])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
