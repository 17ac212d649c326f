"""What an operator reads in the log while the store refuses every uplink: the first refusal in full, with its
reason and error_id, then a line summing the others up every so often, and one line when uplinks are kept
again; not one line per refused uplink, hundreds a second, hiding the one that says why."""

from __future__ import annotations

import logging
import re
import sqlite3

import bridge_builders as b
from bridge_process import uplink_body
from starlette.testclient import TestClient

from lora_bridge.adapters.webhook import create_app
from lora_bridge.refusal_runs import SUMMARY_EVERY_S, RefusalRun


class SteppedClock:
    """A monotonic clock a test moves on by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _post(client: TestClient, n: int) -> int:
    return client.post("/uplinks/tts", content=uplink_body(n),
                       headers={"X-Tembo-Secret": b.SECRET, "Content-Type": "application/json"}).status_code


def _lines(caplog, *starts: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(starts)]


def test_an_operator_reads_one_line_for_a_run_of_refused_uplinks_a_summary_and_one_when_they_are_kept_again(
        sqlite_url, caplog):
    clock = SteppedClock()
    with b.fresh_bridge(sqlite_url, sqlite_busy_timeout_ms=20) as bridge:
        app = create_app(bridge)
        app.state.refusals.said.clock = bridge.db.refused_bodies.clock = clock
        with TestClient(app) as client, caplog.at_level(logging.WARNING, logger="lora_bridge"):
            assert _post(client, 0) == 200
            other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=1.0)
            other.execute("BEGIN IMMEDIATE")  # a backup, or another program, holds the store past the busy timeout
            refused = [_post(client, n) for n in range(1, 31)]
            first_run = _lines(caplog, "webhook answered 503")
            clock.now += SUMMARY_EVERY_S
            refused.append(_post(client, 31))
            summed_up = _lines(caplog, "webhook answered 503")
            other.rollback()
            other.close()
            again = _post(client, 32)
            ended = _lines(caplog, "webhook answered 503")
            ingest_said = _lines(caplog, "store cannot take")
        refused_total = app.state.refusals.refused

    assert (refused, again, refused_total) == ([503] * 31, 200, 31)
    (first,) = first_run
    assert "error_id=" in first and "the store takes no write now" in first, "the first in full, with why"
    assert summed_up[1:] == [summed_up[1]] and "30 more in the last 60 s, 31 since the first" in summed_up[1]
    first_id = first.split("error_id=")[1].split()[0]
    assert ended[2:] == [f"webhook answered 503: bodies are kept again after 31 refused (the first error_id={first_id})"]
    assert [re.sub(r"error_id=\w+", "error_id=ID", line) for line in ingest_said] == [
        "store cannot take 1 bodies now error_id=ID OperationalError: database is locked: collar-01 f_cnt=1",
        "store cannot take bodies now: 30 more in the last 60 s, 31 since the first (error_id=ID); the last error_id=ID",
        "store cannot take bodies now: bodies are kept again after 31 refused (the first error_id=ID)",
    ], "the store's own line: once a run too, then summed up, and ended by the batch that kept the next body"


def test_a_batch_of_uplinks_kept_after_refusals_ends_the_store_s_run_in_one_line(sqlite_url, caplog):
    # The webhook's and MQTT's bodies are kept by batches (one transaction for many): the first batch kept
    # after the store refused says the run is over, once, however many bodies it holds.
    with b.fresh_bridge(sqlite_url) as bridge:
        for error_id in ("e1", "e2", "e3"):
            bridge.db.refused_bodies.refused(error_id)
        with caplog.at_level(logging.WARNING, logger="lora_bridge"):
            for batch in ((1, 2, 3), (4, 5)):
                bridge.ingest_batch([bridge.submission("tts", None, uplink_body(n)) for n in batch])
        ended = _lines(caplog, "store cannot take bodies now")

    assert ended == ["store cannot take bodies now: bodies are kept again after 3 refused (the first error_id=e1)"]


def test_a_run_of_refusals_no_one_said_the_end_of_is_over_after_a_quiet_spell():
    # The bodies stopped coming (nothing refused, nothing kept: a network server that gave up retrying): the
    # next outage, long after, is still said in full.
    clock, lines = SteppedClock(), []

    class Said(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("tembo-test-refusal-run")
    logger.addHandler(Said())
    run = RefusalRun(logger, "store cannot take bodies now", every_s=10.0, clock=clock)
    begun = [run.refused(f"e{i}") for i in range(5)]
    clock.now += 15.0  # within twice the interval: the same run, summed up
    begun.append(run.refused("e5"))
    clock.now += 20.0  # twice the interval without a refusal: the store came back and went again
    begun.append(run.refused("e6"))

    assert begun == [True, False, False, False, False, False, True]
    assert lines == ["store cannot take bodies now: 5 more in the last 15 s, 6 since the first (error_id=e0); "
                     "the last error_id=e5"]
