"""The durable intake's writer is woken once for the bodies that come while it idles, and an applier
process's bodies wake no one in the webhook's process: counted notifications, not timings."""

from __future__ import annotations

import threading
import time
from collections import Counter

import bridge_builders as b
import pytest
from bridge_process import uplink_body

from lora_bridge.group_commit import Submission


def wait_until(check, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


@pytest.mark.parametrize("applier", ["thread", "process"])
def test_bodies_handed_to_an_idle_writer_wake_it_once_and_are_all_answered(sqlite_url, applier, monkeypatch):
    """Three network-server bodies come before the idle writer takes the lock back: it is notified
    once (not once a body) and writes and answers all three in one batch; the writer's batch notifies
    the applier thread, and nobody when the applier is a process of its own."""
    from lora_bridge import durable_intake

    monkeypatch.setattr(durable_intake, "WRITER_IDLE_S", 3600.0)  # a writer not woken would wait this long
    with b.fresh_bridge(sqlite_url, webhook_ack="durable", intake_applier=applier) as bridge:
        intake = bridge.durable_intake()
        changed = intake._changed  # noqa: SLF001 - the condition whose notifications are counted
        notified: Counter[str] = Counter()
        notify_all = changed.notify_all

        def counted() -> None:
            notified[threading.current_thread().name] += 1
            notify_all()

        changed.notify_all = counted
        answered: list[Submission] = []
        wait_until(lambda: intake._writer_waiting)  # noqa: SLF001 - the writer idles
        with changed:  # the writer cannot take the lock back before all three are handed in
            for n in range(3):
                intake.submit(Submission("tts", None, uplink_body(n)), answered.extend)
        wait_until(lambda: len(answered) == 3)
        wait_until(lambda: intake.backlog() == 0)
        by_submitter = notified[threading.current_thread().name]
        by_writer = notified["tembo-intake-writer"]
        written = intake.batches_written

    assert [s.outcome().status for s in answered] == ["received"] * 3
    assert (by_submitter, written) == (1, 1)
    assert by_writer == (1 if applier == "thread" else 0)
