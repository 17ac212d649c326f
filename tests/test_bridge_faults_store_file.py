"""An operator's SQLite store file deleted (a clean-up script, a mistaken `rm`) or replaced (a backup
copied over it) under a running bridge. SQLite keeps writing to the file it opened, which no path names
any more: every uplink answered after it would be gone at the next start. Each test counts the uplinks
answered 2xx that the store does not hold applied (lost, must be 0) and those applied twice (must be 0)."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from bridge_process import Load, bridge_process, lost_and_twice, post_all, report, retry_until_acknowledged
from test_bridge_mqtt import wait_until

pytestmark = pytest.mark.slow

BEFORE = range(0, 20)
AFTER = range(20, 40)


def _store_files(path: Path) -> list[Path]:
    return [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm", "-intake", "-intake-wal", "-intake-shm")]


@pytest.mark.parametrize("ack", ["applied", "durable"])
def test_a_store_file_deleted_under_the_bridge_answers_503_and_healthz_says_so_instead_of_acknowledging_into_nothing(
        tmp_path, port, ack):
    path = tmp_path / "tembo.db"
    url = f"sqlite:///{path}"
    before, after = Load(), Load()
    with bridge_process(url, port, webhook_ack=ack) as child:
        post_all(child.url, BEFORE, before)
        assert before.acknowledged() == set(BEFORE)
        assert wait_until(lambda: lost_and_twice(url, BEFORE)["pending"] == 0, 30)
        for file in _store_files(path):
            file.unlink(missing_ok=True)
        post_all(child.url, AFTER, after)
        acknowledged_while_gone = len(after.acknowledged())
        health = httpx.get(f"{child.url}/healthz", timeout=10.0)
    # The operator puts the store back (here: a fresh one) and starts the bridge again; the network
    # server retries what was not acknowledged.
    with bridge_process(url, port, webhook_ack=ack) as again:
        retry_until_acknowledged(again.url, after, AFTER)
        assert wait_until(lambda: lost_and_twice(url, AFTER)["pending"] == 0, 30)
    figures = lost_and_twice(url, after.acknowledged())
    print(report({"acknowledged_while_the_file_was_gone": acknowledged_while_gone, **figures}))

    assert acknowledged_while_gone == 0
    assert health.status_code == 503
    assert figures["acknowledged"] == len(AFTER)
    assert (figures["lost"], figures["applied_twice"]) == (0, 0)


def test_a_store_file_replaced_by_a_copy_under_the_bridge_answers_503_until_the_bridge_opens_the_copy(tmp_path, port):
    path = tmp_path / "tembo.db"
    url = f"sqlite:///{path}"
    before, after = Load(), Load()
    with bridge_process(url, port) as child:
        post_all(child.url, BEFORE, before)
        copy = tmp_path / "copy.db"
        shutil.copyfile(path, copy)  # the WAL is checkpointed by nobody here: the copy may lack the newest
        copy.replace(path)
        for file in _store_files(path)[1:3]:
            file.unlink(missing_ok=True)
        post_all(child.url, AFTER, after)
        health = httpx.get(f"{child.url}/healthz", timeout=10.0)
    with bridge_process(url, port) as again:
        retry_until_acknowledged(again.url, after, AFTER)
    figures = lost_and_twice(url, after.acknowledged())
    print(report(figures))

    assert health.status_code == 503
    assert after.not_acknowledged() == set()
    assert (figures["lost"], figures["applied_twice"]) == (0, 0)
