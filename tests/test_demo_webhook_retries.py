"""The demo's network server sends a refused uplink again as The Things Stack does with its webhook's Retries
ticked (docs: integrations/webhooks/retries): 7 tries in all, 4 minutes, 8 minutes, then 15 minutes apart
(15 % jitter), in the herd's time; then it is given up. Before, the demo posted each uplink once and its
closing line told the user the refused ones would come again."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lora_bridge.server import serve_app_in_thread
from simulator.webhook_retries import JITTER, RETRY_AFTER_S, TRIES, WebhookRetries
from tembo.demo import Pipeline, _post_all
from tembo.local_services import free_port

T0_S = datetime(2026, 3, 1, tzinfo=UTC).timestamp()


class RefusingWebhook:
    """A bridge's webhook that answers 503 while `refusing`, and notes every body posted with its answer."""

    def __init__(self, refusing: int) -> None:
        self.refusing = refusing  # the first this many posts are refused
        self.posted: list[tuple[str, int]] = []

    def app(self) -> Starlette:
        async def uplink(request: Request) -> JSONResponse:
            name = json.loads(await request.body())["name"]
            status = 503 if len(self.posted) < self.refusing else 200
            self.posted.append((name, status))
            return JSONResponse({}, status_code=status)

        return Starlette(routes=[Route("/uplinks/tts", uplink, methods=["POST"])])


def _uplink(name: str, minutes: float) -> dict:
    at = datetime.fromtimestamp(T0_S + 60 * minutes, UTC)
    return {"name": name, "received_at": at.isoformat().replace("+00:00", "Z")}


def _posted_through(webhook: RefusingWebhook, uplinks: list[dict]) -> int:
    with serve_app_in_thread(webhook.app(), port=free_port()) as running:
        return _post_all(Pipeline(fleet=None, bridge=None, webhook=running, network=None, secret="s"), iter(uplinks))


def test_an_uplink_the_bridge_refused_comes_again_in_the_herds_time_and_is_kept():
    webhook = RefusingWebhook(refusing=1)  # the store held for a moment: the first uplink is answered 503
    posted = _posted_through(webhook, [_uplink("a", 0), _uplink("b", 3), _uplink("c", 5), _uplink("d", 30)])

    assert posted == 4
    # not before 4 minutes (less 15 %) of the herd's time: after b (3 min), with c (5 min)
    assert webhook.posted == [("a", 503), ("b", 200), ("a", 200), ("c", 200), ("d", 200)]


def test_an_uplink_refused_seven_times_is_given_up_as_the_things_stack_gives_it_up(caplog):
    webhook = RefusingWebhook(refusing=100)  # the store gone: every try refused
    with caplog.at_level(logging.WARNING, logger="tembo.demo"):
        _posted_through(webhook, [_uplink("a", 0), _uplink("b", 1)])

    names = [name for name, _ in webhook.posted]
    assert (names.count("a"), names.count("b"), len(names)) == (TRIES, TRIES, 2 * TRIES) == (7, 7, 14)
    said = [r.getMessage() for r in caplog.records]
    assert said[0].startswith("webhook answered 503 for device None at its last try (7): given up")
    assert said[1:] == ["the demo's network server tried 12 refused uplinks again; 2 were given up after 7 tries "
                        "(lost, as The Things Stack loses them); 0 still waited for their next try"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_waits_between_tries_follow_the_things_stacks_schedule_within_its_jitter(seed):
    retries = WebhookRetries(seed)
    at_s, waits = 0.0, []
    for tries in range(1, TRIES + 1):
        if not retries.failed({"n": 1}, tries, at_s):
            break
        due_s = retries.next_due_s()
        waits.append(due_s - at_s)
        ((_, next_try),) = retries.due(due_s)
        assert next_try == tries + 1
        at_s = due_s

    assert len(waits) == len(RETRY_AFTER_S) and retries.given_up == 1
    for wait, planned in zip(waits, RETRY_AFTER_S, strict=True):
        assert planned * (1 - JITTER) <= wait <= planned * (1 + JITTER)
    assert WebhookRetries(seed).failed({}, 1, 0.0) and retries.retried == TRIES - 1
