"""A body kept while the store refuses none costs the webhook no call into its refusals; the first body kept
after a refusal ends it, and `/healthz` answers 200 again, as before."""

from __future__ import annotations

import sqlite3

import bridge_builders as b
from starlette.testclient import TestClient
from test_bridge_refusal_log import _post

from lora_bridge.adapters.webhook import create_app


class CountedKept:
    """Stands in for a webhook's `StoreRefusals.note_kept`: counts each call, then makes it."""

    def __init__(self, refusals) -> None:  # noqa: ANN001
        self.note_kept = refusals.note_kept
        self.calls = 0
        refusals.note_kept = self

    def __call__(self) -> None:
        self.calls += 1
        self.note_kept()


def test_bodies_kept_with_no_refusal_to_end_do_not_call_into_the_refusals_and_the_first_after_one_ends_it(sqlite_url):
    with b.fresh_bridge(sqlite_url, sqlite_busy_timeout_ms=20) as bridge:
        app = create_app(bridge)
        kept = CountedKept(app.state.refusals)
        with TestClient(app) as client:
            quiet = [_post(client, n) for n in range(3)]
            calls_while_quiet = kept.calls
            other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=1.0)
            other.execute("BEGIN IMMEDIATE")  # another program holds the store past the busy timeout
            refused = _post(client, 3)
            healthz_refusing = client.get("/healthz").status_code
            other.rollback()
            other.close()
            again = [_post(client, n) for n in range(4, 7)]
            healthz_again = client.get("/healthz").status_code

    assert (quiet, refused, again) == ([200] * 3, 503, [200] * 3)
    assert calls_while_quiet == 0
    assert kept.calls == 1  # the first body kept after the refusal ends it; the two after have none to end
    assert (healthz_refusing, healthz_again) == (503, 200)
