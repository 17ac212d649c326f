"""An operator looking at a bridge process's threads from outside (`top -H`, /proc) sees them by name."""

from __future__ import annotations

import os
import threading

from lora_bridge.os_thread_names import name_os_thread, on_cpu_s_by_thread_name


def test_a_named_thread_is_shown_by_its_name_and_its_time_on_a_cpu_is_counted_under_it():
    named = threading.Event()
    done = threading.Event()

    def work() -> None:
        name_os_thread("tembo-test-thread-long-name")
        sum(range(200_000))  # some time on a CPU
        named.set()
        done.wait(10)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        assert named.wait(10)
        with open(f"/proc/self/task/{thread.native_id}/comm") as comm:
            shown = comm.read().strip()
        by_name = on_cpu_s_by_thread_name(os.getpid())
    finally:
        done.set()
        thread.join(10)

    assert shown == "tembo-test-thre"  # the kernel keeps 15 bytes
    assert by_name[shown] > 0


def test_a_process_that_is_gone_has_no_threads_to_count():
    assert on_cpu_s_by_thread_name(2**22 + 1) == {}
