"""A durable bridge (`TEMBO_WEBHOOK_ACK=durable`) whose store applies nothing for a while (another
program holds it): the backlog of kept bodies fills, and the network server's further requests are
answered 503 within `webhook_answer_within_s`, so it retries, instead of waiting unanswered past The
Things Stack's 10 s."""

from __future__ import annotations

import sqlite3
import threading

import bridge_builders as b
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app
from lora_bridge.durable_intake import MAX_BACKLOG


def test_requests_behind_a_full_backlog_are_answered_503_while_the_store_applies_nothing(tmp_path):
    path = tmp_path / "reserve.db"
    with b.fresh_bridge(f"sqlite:///{path}", webhook_ack="durable", intake_applier="thread", outbox_worker=False,
                        sqlite_busy_timeout_ms=50, webhook_answer_within_s=0.5) as bridge:
        with TestClient(create_app(bridge)) as client:
            other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # another program holds the store: nothing is applied
            try:
                kept = [client.post("/uplinks/tts", content=b.tts_uplink(b.status(time_s=b.T0_S + n), f_cnt=n),
                                    headers=b.HEADERS).status_code for n in range(1, MAX_BACKLOG + 1)]
                behind: list[int] = []
                late = b.tts_uplink(b.status(time_s=b.T0_S + 9999), f_cnt=9999)
                poster = threading.Thread(target=lambda: behind.append(
                    client.post("/uplinks/tts", content=late, headers=b.HEADERS).status_code))
                poster.start()
                poster.join(timeout=30)  # it had waited for ever, unanswered
                answered_in_time = not poster.is_alive()
            finally:
                other.rollback()
                other.close()
            poster.join(timeout=30)
            again = client.post("/uplinks/tts", content=late, headers=b.HEADERS).status_code

    assert set(kept) == {202}
    assert answered_in_time and behind == [503]
    assert again == 202  # the network server's retry, once the store is back
