"""The operator stops the bridge (`systemctl stop`: SIGTERM) while uplinks arrive, to back up its store
or move it: every uplink the bridge acknowledged is in the store when it has stopped, its applier process
is gone, and it ends as a clean stop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from bridge_process import BridgeProcess, Load, lost_and_twice, post_all, report

pytestmark = pytest.mark.slow


def test_operator_who_stops_the_bridge_under_load_finds_every_acknowledged_uplink_in_the_store(store_url, port):
    # Durable answers with the applier in a process of its own: an answered body waits in the intake (a
    # SQLite store's journal beside it, a PostgreSQL store's raw rows `received`) until applied. SIGTERM
    # had ended the process where uvicorn stood, and the answered bodies stayed there: not in a copy of
    # the store file, not applied until a bridge ran on it again.
    load = Load()
    child = BridgeProcess(store_url, port, webhook_ack="durable", intake_applier="process").start()
    appliers = child.applier_pids()
    stop = threading.Event()
    posting = threading.Thread(target=post_all, args=(child.url, range(600), load), kwargs={"stop": stop})
    posting.start()
    while len(load.acknowledged()) < 80 and posting.is_alive():
        time.sleep(0.02)

    exit_code = child.terminate()
    stop.set()
    posting.join()
    figures = lost_and_twice(store_url, load.acknowledged())
    print(report({"exit_code": exit_code, **figures}))

    assert exit_code == 0
    assert figures["acknowledged"] >= 80
    assert (figures["lost"], figures["applied_twice"], figures["pending"]) == (0, 0, 0)
    assert not [pid for pid in appliers if Path(f"/proc/{pid}").exists()], "the applier outlived its bridge"
