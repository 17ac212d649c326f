"""`tembo bench bridge-cpu`: the bridge's CPU per uplink on its two sides, from a small herd."""

from __future__ import annotations

import pytest

from lora_bridge import cpu_bench
from lora_bridge.bench import synthetic_bodies
from tembo.benches import BENCHES

pytestmark = pytest.mark.slow


def test_an_operator_measures_the_cpu_each_uplink_costs_the_applier_the_webhook_and_the_load():
    """Every body of a small herd is applied (the applier's side) and answered 202 (the webhook's side and
    the bench's load, else the bench raises), and each side's CPU per uplink and its Python calls come
    out positive."""
    assert BENCHES["bridge-cpu"] == "lora_bridge.cpu_bench:run"
    figures = cpu_bench.run(collars=2, hours=3, batch=4, connections=2, rounds=1)
    assert figures["uplinks"] == len(synthetic_bodies(2, 3))
    assert figures["applier_cpu_ms_per_uplink"] > 0 and figures["intake_cpu_ms_per_uplink"] > 0
    assert figures["applier_python_calls_per_uplink"] > 100 and figures["intake_handler_python_calls_per_uplink"] > 10
    assert figures["intake_writer_python_calls_per_uplink"] > 10
    # a small batch's own statements (its write lock, its start's reads, its inserts, its rules) and calls
    assert figures["applier_statements_per_small_batch"] > 5 and figures["applier_python_calls_per_small_batch"] > 500
    assert figures["intake_applier_process_cpu_ms_per_uplink"] >= 0
    # the kernel's share of each applier's CPU, never more than the whole
    assert 0 <= figures["applier_system_cpu_ms_per_uplink"] <= figures["applier_cpu_ms_per_uplink"]
    assert 0 <= figures["intake_applier_process_system_cpu_ms_per_uplink"] <= figures["intake_applier_process_cpu_ms_per_uplink"]
    # the applier process's batches and its applying thread's calls (counted in the child, written as it ended)
    assert 1 <= figures["intake_applier_process_mean_batch"] <= figures["uplinks"]
    assert 1 <= figures["intake_applier_process_profiled_mean_batch"] <= figures["uplinks"]
    assert figures["intake_applier_process_python_calls_per_uplink"] > 100
    assert set(figures["intake_cpu_ms_per_uplink_by_thread"]) >= {"http", "writer", "outbox"}
    # the applier process's CPU by thread, told apart by the names its threads give the kernel
    by_thread = figures["intake_applier_process_cpu_ms_per_uplink_by_thread"]
    assert set(by_thread) >= {"applying", "release", "parent_pipe"} and by_thread["applying"] > 0
    # the load process's own share (every body answered 202 by the stand-in webhook, else it raises)
    assert figures["load_cpu_ms_per_request"] > 0 and figures["load_python_calls_per_request"] > 10


def test_a_run_whose_rules_failed_gives_no_figures(tmp_path, monkeypatch):
    """A rule that raises is logged and its collar judged again alone, every body still applied: the run's
    CPU and calls would be those of the failure's path (a draft rule's error had counted 4,433 calls an
    uplink), so the bench refuses to give them."""
    from lora_bridge.domain import rules_engine

    judged = rules_engine.evaluate_device

    def failing(session, runtime, device_id, *args, **kwargs):
        if device_id.endswith("01"):
            raise TypeError("a draft rule's mistake")
        return judged(session, runtime, device_id, *args, **kwargs)

    bodies = synthetic_bodies(2, 3)
    cpu_bench.applier_cpu_s(f"sqlite:///{tmp_path / 'before.db'}", bodies, 4)  # the rules as they are: figures
    monkeypatch.setattr(rules_engine, "evaluate_device", failing)
    with pytest.raises(RuntimeError, match="rule evaluations failed during the run"):
        cpu_bench.applier_cpu_s(f"sqlite:///{tmp_path / 'after.db'}", bodies, 4)


def test_the_applier_rounds_collect_garbage_as_the_applier_process_does_and_leave_the_collector_as_found():
    """The applier process collects and freezes its heap once ready and paces its young collections
    (`intake_applier.run_child`): the bench's rounds do the same, so their CPU is the process's and a
    collection's place among the counted batches does not hang on what the bench did before; the bench's
    own collector is as it was afterwards."""
    import gc

    from lora_bridge.collector_pace import YOUNG_OBJECTS

    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    kept = [[index] for index in range(1_000)]  # objects alive before the round, frozen within it
    with cpu_bench.as_the_applier_process_collects():
        assert gc.get_threshold()[0] == YOUNG_OBJECTS
        assert gc.get_freeze_count() >= frozen + len(kept) and gc.get_count()[0] < 100
    assert gc.get_threshold() == threshold
    # let go of what it froze, unless the process had frozen a heap of its own (that stays frozen)
    assert gc.get_freeze_count() == 0 if frozen == 0 else gc.get_freeze_count() >= frozen

def test_the_figures_name_the_code_they_measured():
    """The shared virtualenv installs the package editable, so a run may import another tree's code than
    the one its engineer meant: the figures carry that code's folder and a digest of its sources."""
    import lora_bridge

    code = cpu_bench.measured_code()
    assert code["path"] == str(cpu_bench.Path(lora_bridge.__file__).parent.parent)
    assert len(code["digest"]) == 16 and code == cpu_bench.measured_code()
