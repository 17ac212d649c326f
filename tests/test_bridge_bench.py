"""`tembo bench bridge`: the figures an operator reads, measured on a tiny herd."""

from __future__ import annotations

import threading
import time

import pytest

from lora_bridge.bench import bridge_figures, synthetic_bodies

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("applier", ["thread", "process"])
def test_bridge_bench_drives_the_webhook_from_another_process_and_loses_nothing(applier):
    figures = bridge_figures(collars=2, hours=4, connections=3, postgres=False, mqtt=False, applier=applier,
                             history_days=1, sparse_collars=3, sparse_rounds=3)

    assert figures["bodies"] == len(synthetic_bodies(2, 4))
    assert (figures["lost"], figures["applied_twice"], figures["non_2xx"]) == (0, 0, 0)
    assert figures["sqlite_over_raw_insert"] == round(
        figures["sqlite_uplinks_per_s"] / figures["raw_insert_uplinks_per_s"], 4
    )
    assert figures["p99_ms"] >= figures["p50_ms"] > 0
    # Bodies posted at once share a commit: with the durable ack a body's raw row and its application
    # are two commits, each shared with the bodies of its batch; one each when alone.
    assert figures["sqlite_webhook_ack"] == "durable"
    assert figures["mean_batch"] >= 1
    # the writer keeps what the clients sent meanwhile in one commit: never more bodies than connections
    assert 1 <= figures["sqlite_writer_mean_batch"] <= 3
    assert 0 < figures["commits_per_uplink"] <= 2
    assert figures["sqlite_applied_ack_lost"] == 0
    # the answers alone, timed where the load process reads them: the bridge answers each body before the
    # commit that applies it, but on a busy machine the load process may read an answer after the applier
    # (a process of its own) stored its alerts, so the two timings are not ordered against each other
    assert 0 < figures["sqlite_answer_p50_ms"] <= figures["sqlite_answer_p99_ms"]
    assert figures["sqlite_answers_per_s"] > 0 and figures["sqlite_uplinks_per_s"] > 0
    # the bridge's CPU split by its threads: HTTP, the intake's writer and applier, the outbox
    assert set(figures["cpu_ms_per_uplink_by_thread"]) == {"http", "writer", "applier", "supervisor", "outbox",
                                                           "other"}
    assert all(ms >= 0 for ms in figures["cpu_ms_per_uplink_by_thread"].values())
    # and by process: with the applier in a process of its own its CPU and its SQL are counted too
    assert figures["sqlite_intake_applier"] == applier
    by_process = figures["cpu_ms_per_uplink_by_process"]
    assert figures["cpu_ms_per_uplink"] == pytest.approx(by_process["webhook"] + by_process["applier"], abs=0.002)
    assert (by_process["applier"] > 0) == (applier == "process")
    # what bounds the rate: the applier process's time on a core and waiting for one (a thread: none)
    on_cpu, waiting = figures["sqlite_applier_on_cpu_share"], figures["sqlite_applier_waiting_for_cpu_share"]
    if applier == "process":
        assert on_cpu > 0 and waiting >= 0  # shares of the rate's time (first send to last commit)
    else:
        assert (on_cpu, waiting) == (None, None)
    # the headline run again in the same process (its one-time costs paid), counted in lost above
    assert figures["sqlite_warm_uplinks_per_s"] > 0 and figures["sqlite_warm_cpu_ms_per_uplink"] > 0
    # and offered at half the rate it reached, at a steady pace (counted in lost above too)
    assert figures["sqlite_half_rate_offered_per_s"] == pytest.approx(figures["sqlite_uplinks_per_s"] / 2, abs=0.1)
    assert 0 < figures["sqlite_half_rate_p50_ms"] <= figures["sqlite_half_rate_p99_ms"]
    assert figures["sqlite_load_cpu_ms_per_body"] > 0
    assert 1 <= figures["one_at_a_time_commits_per_uplink"] < 1.5
    # the applier's statements counted (its process's too): a batch's reads, its inserts, its rules
    assert figures["statements_per_uplink"] > 1
    assert "synchronous=FULL" in figures["raw_insert_method"]
    assert figures["raw_insert_one_per_commit_uplinks_per_s"] > 0
    assert figures["store_bytes_per_collar_day"] > 0
    # the same hours once the store holds a day of the herd's history (counted in lost above too)
    assert figures["sqlite_history_days"] == 1 and figures["sqlite_history_uplinks_per_s"] > 0
    assert 0 < figures["sqlite_history_p50_ms"] <= figures["sqlite_history_p99_ms"]
    # a fleet fixing every 6 h, a delivery a batch against one body at a time
    assert figures["sparse_fleet"] == {"collars": 3, "rounds": 3, "every_h": 6}
    assert 0 < figures["sparse_batch_statements_per_uplink"] < figures["sparse_one_at_a_time_statements_per_uplink"]
    assert figures["sparse_batch_cpu_ms_per_uplink"] > 0 and figures["sparse_one_at_a_time_cpu_ms_per_uplink"] > 0
    assert figures["sparse_batch_over_one_at_a_time"] == round(
        figures["sparse_batch_cpu_ms_per_uplink"] / figures["sparse_one_at_a_time_cpu_ms_per_uplink"], 4)


def test_the_herd_s_hours_after_its_history_go_on_from_its_frame_counters_and_its_clock():
    import json

    history, after = synthetic_bodies(2, 24), synthetic_bodies(2, 4, first_hour=24)

    def frames(bodies):
        return [(json.loads(body)["end_device_ids"]["device_id"], json.loads(body)["uplink_message"]["f_cnt"],
                 json.loads(body)["received_at"]) for body in bodies]

    last = {device: (f_cnt, at) for device, f_cnt, at in frames(history)}
    first = {}
    for device, f_cnt, at in frames(after):
        first.setdefault(device, (f_cnt, at))
    assert {device: f_cnt for device, (f_cnt, _) in first.items()} == {
        device: f_cnt + 1 for device, (f_cnt, _) in last.items()}
    assert all(first[device][1] > last[device][1] for device in last)


@pytest.mark.postgres
def test_the_bench_sees_a_backend_waiting_on_a_row_another_worker_holds(postgres_url):
    from sqlalchemy import create_engine, text

    from lora_bridge.bench_waits import BackendWaits

    engine = create_engine(postgres_url)
    with engine.begin() as setup:
        setup.execute(text("CREATE TABLE collars (id int PRIMARY KEY, seen int)"))
        setup.execute(text("INSERT INTO collars VALUES (1, 0)"))
    waits = BackendWaits(postgres_url, every_s=0.01).start()
    holder, waiter = engine.connect(), engine.connect()
    try:
        holder.execute(text("UPDATE collars SET seen = 1 WHERE id = 1"))  # the row held, not committed
        waiter.execute(text("SET lock_timeout = '120s'"))  # a bound, never reached: the holder lets go below
        waiting = threading.Thread(target=waiter.execute, args=(text("UPDATE collars SET seen = 2 WHERE id = 1"),))
        waiting.start()
        # the row held until the sampler has seen the other backend wait for it a dozen times, however
        # slowly a loaded machine lets the sampler run
        deadline = time.monotonic() + 60
        while waits.states.get("lock:transactionid", 0) < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        holder.rollback()
        waiting.join()
    finally:
        waits.stop()
        holder.close()
        waiter.close()
        engine.dispose()

    figures = waits.figures()
    assert figures["backend_samples"] > 10
    assert figures["backend_active_by_state"].get("lock:transactionid", 0) > 5
    assert figures["backend_lock_wait_share"] > 0.5
    assert figures["backend_lock_wait_s"] > 0
    assert "UPDATE collars SET seen = 2 WHERE id = 1" in figures["backend_lock_waits_top"][0]


@pytest.mark.mqtt
@pytest.mark.postgres
def test_the_mqtt_bench_counts_every_uplink_once_and_says_what_the_workers_backends_did(mosquitto, postgres_server,
                                                                                        postgres_url):
    from lora_bridge.bench import _postmaster_pid, mqtt_run

    bodies = synthetic_bodies(2, 3)
    run = mqtt_run(postgres_url, mosquitto, bodies, 2, "bench-test", postgres_pid=_postmaster_pid(postgres_server))

    assert (run["lost"], run["applied_twice"]) == (0, 0)
    assert run["uplinks_per_s"] > 0 and len(run["cpu_ms_per_uplink_per_worker"]) == 2
    assert run["backend_samples"] > 0
    assert 0.0 <= run["backend_lock_wait_share"] <= 1.0
    # each worker's time on a core and waiting for one, PostgreSQL's, read from the kernel's schedstat
    assert len(run["worker_on_cpu_share"]) == 2 and all(share > 0 for share in run["worker_on_cpu_share"])
    assert all(share >= 0 for share in run["worker_waiting_for_cpu_share"])
    assert run["postgres_on_cpu_share"] > 0
    assert run["other_work_share"] <= run["machine_busy_share"]


@pytest.mark.mqtt
@pytest.mark.postgres
def test_the_mqtt_bench_counts_the_workers_python_calls_and_statements_per_uplink(mosquitto, postgres_url, tmp_path):
    import pstats

    from lora_bridge.bench import mqtt_run

    bodies = synthetic_bodies(2, 3)
    run = mqtt_run(postgres_url, mosquitto, bodies, 1, "bench-counted", profile_to=tmp_path)

    assert (run["lost"], run["applied_twice"]) == (0, 0)
    # every body is read, stored and applied in the worker's threads: hundreds of Python calls each, at
    # least one statement a batch and a commit a batch
    assert run["python_calls_per_uplink"] > 100
    assert run["statements_per_uplink"] > 0 and run["commits_per_uplink"] > 0
    # and where they went, from the worker's threads (its MQTT client's, its hand-in threads)
    profiled = pstats.Stats(str(tmp_path / "bench-counted-0.pstats"))
    called = {name for _file, _line, name in profiled.stats}
    assert {"_on_message", "_hand_in_all", "_write_batch"} <= called


@pytest.mark.mqtt
@pytest.mark.postgres
def test_the_mqtt_bench_paces_its_publisher_and_counts_every_message_s_wait_for_its_puback(mosquitto, postgres_url):
    from lora_bridge.bench import mqtt_run

    bodies = synthetic_bodies(2, 3)
    run = mqtt_run(postgres_url, mosquitto, bodies, 1, "bench-paced", rate=200.0)

    assert (run["lost"], run["applied_twice"]) == (0, 0)
    # offered evenly at 200 a second, the run cannot end before its last body was published
    assert run["elapsed_s"] >= (len(bodies) - 1) / 200.0
    assert 0 < run["ack_wait_p50_ms"] <= run["ack_wait_p99_ms"]


@pytest.mark.mqtt
@pytest.mark.postgres
def test_the_mqtt_bench_s_worker_leaves_its_start_up_heap_to_the_collector_as_tembo_bridge_does(mosquitto,
                                                                                                 postgres_url):
    """A worker process that kept its start-up heap in the collector's passes had a full collection walk
    it all (88-172 ms, the GIL held) mid-batch or in its MQTT client's thread: the PUBACK tail at half load
    was the bench's, not `tembo bridge`'s, which freezes that heap (`server.serve`)."""
    from lora_bridge.bench import mqtt_run

    bodies = synthetic_bodies(2, 3)
    run = mqtt_run(postgres_url, mosquitto, bodies, 1, "bench-frozen", rate=200.0)

    assert (run["lost"], run["applied_twice"]) == (0, 0)
    # the imported libraries and the opened bridge: well over a hundred thousand objects
    assert len(run["start_up_objects_frozen"]) == 1 and run["start_up_objects_frozen"][0] > 100_000


def test_the_bench_says_what_two_workers_could_reach_on_its_cores_only_when_it_had_them():
    from lora_bridge.bench import speedup_cpu_ceiling

    def run(rate: float, other: float) -> dict:
        # the CPU of every part per uplink: workers 0.9, PostgreSQL 0.25, broker 0.03, publisher 0.07 ms
        return {"uplinks_per_s": rate, "other_work_share": other, "cpu_ms_per_uplink": 0.9,
                "postgres_cpu_ms_per_uplink": 0.25, "broker_cpu_ms_per_uplink": 0.03,
                "load_generator_cpu_ms_per_uplink": 0.07}

    quiet = speedup_cpu_ceiling([run(1000.0, 0.05)], [run(1400.0, 0.06)], cores=2)
    shared = speedup_cpu_ceiling([run(300.0, 0.8)], [run(350.0, 0.05)], cores=2)

    assert quiet == 1.6  # two cores at 1.25 ms an uplink: 1,600 a second, over one worker's 1,000
    assert shared is None  # other programs held the machine in the one-worker run
