"""An administrator ends the bridge's PostgreSQL connections (`pg_terminate_backend`) again and again while
collars report, some moments right after a batch and some after a rest: every uplink the network server was
told was taken is stored and applied once, and no valid uplink is answered 500."""

from __future__ import annotations

import threading

import bridge_process as bp
import postgres_faults as pf
import pytest

UPLINKS = 240


@pytest.mark.postgres
@pytest.mark.parametrize("ack", ["applied", "durable"])
def test_connections_ended_by_an_administrator_lose_nothing_and_answer_no_500(
        postgres_url, postgres_server, port, ack):
    load = bp.Load()
    stop = threading.Event()

    def end_connections() -> None:
        rest = False
        while not stop.wait(1.5 if rest else 0.2):
            pf.end_bridge_connections(postgres_server, postgres_url)
            rest = not rest

    with bp.bridge_process(postgres_url, port, webhook_ack=ack) as bridge:
        ender = threading.Thread(target=end_connections)
        ender.start()
        try:
            bp.post_all(bridge.url, range(UPLINKS), load, clients=4)
        finally:
            stop.set()
            ender.join()
        first_answers = dict(load.answers)
        figures = pf.figures_after_retries(bridge.url, postgres_url, load, UPLINKS)

    statuses = sorted(set(first_answers.values()))
    print(bp.report({**figures, "statuses": statuses}))
    assert (figures["acknowledged"], figures["lost"], figures["applied_twice"]) == (UPLINKS, 0, 0)
    assert [status for status in first_answers.values() if status >= 500 and status != 503] == []
