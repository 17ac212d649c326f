"""A durable bridge (`TEMBO_WEBHOOK_ACK=durable`) whose store applies nothing for a while (another
program holds it): the backlog of kept bodies fills, and the network server's further requests are
answered 503 within `webhook_answer_within_s`, so it retries, instead of waiting unanswered past The
Things Stack's 10 s."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bridge_builders as b
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app
from lora_bridge.durable_intake import MAX_BACKLOG


@contextmanager
def store_held_by_another_program(tmp_path: Path) -> Iterator[tuple[Any, TestClient, Callable[[], None]]]:
    """A durable bridge (applier a thread) serving the webhook while another program holds its store's
    write lock, so nothing is applied: (bridge, client, let the store go)."""
    path = tmp_path / "reserve.db"
    with b.fresh_bridge(f"sqlite:///{path}", webhook_ack="durable", intake_applier="thread", outbox_worker=False,
                        sqlite_busy_timeout_ms=50, webhook_answer_within_s=0.5) as bridge:
        with TestClient(create_app(bridge)) as client:
            other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")

            held = [True]

            def let_go() -> None:
                if held:  # once
                    held.clear()
                    other.rollback()
                    other.close()

            try:
                yield bridge, client, let_go
            finally:
                let_go()


def post_status(client: TestClient, n: int) -> int:
    return client.post("/uplinks/tts", content=b.tts_uplink(b.status(time_s=b.T0_S + n), f_cnt=n),
                       headers=b.HEADERS).status_code


def test_requests_behind_a_full_backlog_are_answered_503_while_the_store_applies_nothing(tmp_path):
    with store_held_by_another_program(tmp_path) as (bridge, client, let_go):
        try:
            kept = [post_status(client, n) for n in range(1, MAX_BACKLOG + 1)]
            behind: list[int] = []
            poster = threading.Thread(target=lambda: behind.append(post_status(client, 9999)))
            poster.start()
            poster.join(timeout=30)  # it had waited for ever, unanswered
            answered_in_time = not poster.is_alive()
        finally:
            let_go()
        poster.join(timeout=30)
        # the network server's retry comes a while later: by then the store applied the backlog
        deadline = time.monotonic() + 60
        while bridge.durable_intake().backlog() >= MAX_BACKLOG and time.monotonic() < deadline:
            time.sleep(0.02)
        again = post_status(client, 9999)

    assert set(kept) == {202}
    assert answered_in_time and behind == [503]
    assert again == 202  # the network server's retry, once the store is back


def test_bodies_the_locked_store_sent_back_count_once_in_the_backlog_while_they_wait_to_be_tried_again(
        tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="lora_bridge.durable_intake")
    with store_held_by_another_program(tmp_path) as (bridge, client, _let_go):
        codes = [post_status(client, n) for n in range(1, 6)]
        deadline = time.monotonic() + 30
        while "not taken by the store now" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        sent_back = "not taken by the store now" in caplog.text
        # the applier took them, the store sent them back: they wait RETRY_S for their next try,
        # counted as the network server's further requests meet them all that while
        seen: set[int] = set()
        looked_until = time.monotonic() + 0.3
        while time.monotonic() < looked_until:
            seen.add(bridge.durable_intake().backlog())
            time.sleep(0.005)
    assert codes == [202] * 5
    assert sent_back
    assert seen == {5}  # never the 5 kept and the same 5 again as being applied
