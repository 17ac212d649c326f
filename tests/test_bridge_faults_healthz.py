"""An operator's monitor (or a load balancer) asks `/healthz` whether the bridge takes uplinks: it must
say 503 while the webhook answers the network server 503 (a full disk, a store locked by another program),
and 200 again once a body is kept."""

from __future__ import annotations

import sqlite3

import bridge_builders as b
import httpx
import pytest
from bridge_process import Load, bridge_process, disk_limit_with_room, post_all, uplink_body

pytestmark = pytest.mark.slow


def _health(url: str) -> int:
    return httpx.get(f"{url}/healthz", timeout=10.0).status_code


def test_a_store_whose_disk_is_full_is_reported_unhealthy_while_the_webhook_answers_503(sqlite_url, port):
    limit = disk_limit_with_room(sqlite_url)
    load = Load()
    with bridge_process(sqlite_url, port, file_size_limit=limit) as full:
        post_all(full.url, range(90), load, clients=2)  # the store fills after about 20 of them
        health_while_full = _health(full.url)
        last_answer = load.answers[max(load.answers)]

    assert load.not_acknowledged(), "the file-size limit was reached part way"
    assert last_answer == 503
    assert health_while_full == 503


def test_a_store_locked_by_another_program_is_reported_unhealthy_until_a_body_is_kept_again(sqlite_url, port):
    with bridge_process(sqlite_url, port) as child:
        headers = {"X-Tembo-Secret": b.SECRET, "Content-Type": "application/json"}
        other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=1.0)
        other.execute("BEGIN IMMEDIATE")  # a backup or a second program writing, for longer than the busy timeout
        refused = httpx.post(f"{child.url}/uplinks/tts", content=uplink_body(1), headers=headers, timeout=30.0)
        health_while_locked = _health(child.url)
        other.rollback()
        other.close()
        kept = httpx.post(f"{child.url}/uplinks/tts", content=uplink_body(1), headers=headers, timeout=30.0)
        health_after = _health(child.url)

    assert refused.status_code == 503
    assert health_while_locked == 503
    assert kept.status_code == 200
    assert health_after == 200
