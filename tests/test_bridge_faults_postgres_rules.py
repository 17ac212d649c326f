"""PostgreSQL ends the bridge's connection (an administrator's `pg_terminate_backend`, a fail-over) while the
server rules judge a batch's collars: the uplinks are applied again on a new connection, the alert is raised
once, and the log does not tell the operator that each collar's rules failed."""

from __future__ import annotations

import logging

import bridge_builders as b
import pytest
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app
from lora_bridge.domain import rules_engine


@pytest.mark.postgres
def test_a_connection_ended_while_the_rules_judge_is_not_logged_as_the_rules_failing(
        postgres_url, monkeypatch, caplog):
    judge = rules_engine.evaluate_device
    ended: list[int] = []

    def judged_after_the_connection_ends(session, *args, **kwargs):
        if not ended:  # the first collar judged: the server ends this very connection under it
            ended.append(1)
            session.connection().exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
        return judge(session, *args, **kwargs)

    monkeypatch.setattr(rules_engine, "evaluate_device", judged_after_the_connection_ends)
    with b.fresh_bridge(postgres_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client, \
            caplog.at_level(logging.INFO):
        answer = client.post("/uplinks/tts", content=b.tts_uplink(b.alert("mortality"), f_cnt=5), headers=b.HEADERS)
        counts = bridge.counts()

    assert ended == [1]
    assert answer.status_code in (200, 202)
    assert (counts["uplinks_stored"], counts["alerts"]) == (1, 1)
    # It had been an ERROR with a traceback for each collar of the batch: "server rules failed".
    assert [record.getMessage() for record in caplog.records if "server rules failed" in record.getMessage()] == []
