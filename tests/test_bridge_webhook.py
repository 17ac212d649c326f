"""The bridge's HTTP webhook, as a network server and a ranger's tools meet it."""

from __future__ import annotations

import json
from datetime import timedelta

import bridge_builders as b
import pytest
from starlette.testclient import TestClient

from lora_bridge.views import AlertView


def post_tts(client: TestClient, body: bytes, secret: str = b.SECRET):
    return client.post(
        "/uplinks/tts", content=body, headers={"X-Tembo-Secret": secret, "Content-Type": "application/json"}
    )


def test_ranger_sees_position_activity_and_alert_after_tts_uplinks(client, bridge):
    bridge.register_animal("collar-01", "Tembo Kubwa", sex="male")

    replies = [
        post_tts(client, b.tts_uplink(b.status(lat=-2.5, lon=37.5, battery_mv=3950), f_cnt=1)),
        post_tts(client, b.tts_uplink(b.activity(shares_pct=(10.0, 70.0, 15.0, 5.0)), f_cnt=2)),
        post_tts(client, b.tts_uplink(b.alert("poaching_risk", seq=3, lat=-2.51, lon=37.52), f_cnt=3)),
    ]

    assert [r.status_code for r in replies] == [200, 200, 200]
    assert [r.json()["message"] for r in replies] == ["status", "activity", "alert"]
    (animal,) = bridge.animals(viewer=b.RANGER)
    assert (animal.name, animal.device_id, animal.battery_mv, animal.fw_version) == (
        "Tembo Kubwa", "collar-01", 3950, "1.2.3"
    )
    assert animal.lat == pytest.approx(-2.5, abs=1e-5) and animal.lon == pytest.approx(37.5, abs=1e-5)
    assert animal.position_time == b.T0
    assert animal.last_seen.utcoffset() == timedelta(0)
    (position,) = bridge.latest_positions(viewer=b.RANGER)
    assert (position.animal_id, position.name, position.time) == (animal.animal_id, "Tembo Kubwa", b.T0)
    (summary,) = bridge.activity(animal.animal_id, viewer=b.RANGER)
    assert summary.shares_pct == {"rest": 10.0, "forage": 70.0, "walk": 15.0, "run": 5.0}
    assert summary.dominant == "forage" and summary.interval_min == 60
    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert isinstance(alert, AlertView)
    assert (alert.alert_type, alert.priority, alert.state, alert.source, alert.name) == (
        "poaching_risk", 300, "new", "collar", "Tembo Kubwa"
    )
    assert alert.lat == pytest.approx(-2.51, abs=1e-5)
    assert alert.evidence["positions"][0]["lat"] == pytest.approx(-2.5, abs=1e-5)
    assert alert.evidence["behaviour"]["dominant"] == "forage"


def test_uplink_heard_by_three_gateways_is_stored_once(client, bridge):
    body_of = {gw: b.tts_uplink(b.status(), f_cnt=9, gateways=(gw,)) for gw in ("gw-a", "gw-b", "gw-c")}

    statuses = [post_tts(client, body).json()["status"] for body in body_of.values()]

    assert statuses == ["processed", "duplicate", "duplicate"]
    counts = bridge.counts()
    assert (counts["uplinks_stored"], counts["duplicates"], counts["positions"]) == (1, 2, 1)


def test_same_frame_counter_with_other_payload_is_a_new_uplink(client, bridge):
    post_tts(client, b.tts_uplink(b.status(time_s=b.T0_S), f_cnt=5))

    reply = post_tts(client, b.tts_uplink(b.status(time_s=b.T0_S + 3600), f_cnt=5))

    assert reply.json()["status"] == "processed"
    assert bridge.counts()["positions"] == 2


def test_wrong_or_missing_secret_gets_401_and_nothing_is_stored(client, bridge):
    body = b.tts_uplink(b.status())

    wrong = post_tts(client, body, secret="guess")
    missing = client.post("/uplinks/tts", content=body)

    assert (wrong.status_code, missing.status_code) == (401, 401)
    assert bridge.counts()["uplinks_stored"] == 0


@pytest.mark.parametrize(
    ("body", "reason_part"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2, 3]", "not an object"),
        (b.tts_uplink(b.status()).replace(b'"frm_payload": "', b'"frm_payload": "!!'), "not base64"),
        (b.tts_uplink(b.status()).replace(b'"f_port": 1', b'"f_port": "one"'), "f_port"),
        (b"\xff\xfe\x00binary", "not JSON"),
    ],
)
def test_malformed_body_is_kept_as_dead_letter_with_reason_and_answered_2xx_so_tts_keeps_the_webhook(client, bridge, body, reason_part):
    post_tts(client, b.tts_uplink(b.status(), f_cnt=1))

    reply = post_tts(client, body)
    post_tts(client, b.tts_uplink(b.activity(), f_cnt=2))

    assert reply.status_code == 200 and reply.json()["status"] == "dead_letter" and reply.json()["stage"] == "parse"
    assert reason_part in reply.json()["reason"]
    (letter,) = bridge.dead_letters()
    assert letter.body == body and letter.stage == "parse" and reason_part in letter.reason
    counts = bridge.counts()
    assert (counts["uplinks_stored"], counts["positions"], counts["activity_summaries"]) == (3, 1, 1)


def test_undecodable_payload_is_kept_and_answered_200_so_the_network_does_not_retry(client, bridge):
    reply = post_tts(client, b.tts_uplink((10, b"\x21\x00"), f_cnt=4))

    assert reply.status_code == 200
    assert reply.json()["status"] == "dead_letter"
    (letter,) = bridge.dead_letters()
    assert letter.stage == "decode" and "alert: 2 bytes, expected 11" in letter.reason


def test_chirpstack_uplink_becomes_a_position(client, bridge):
    body = b.chirpstack_uplink(b.positions(fixes=((0, -2.4, 37.4), (900, -2.41, 37.41))), f_cnt=12)

    reply = client.post("/uplinks/chirpstack?event=up", content=body, headers={"X-Tembo-Secret": b.SECRET})

    assert reply.status_code == 200 and reply.json()["device_id"] == "collar-01"
    (track,) = bridge.tracks(viewer=b.RANGER).values()
    assert [p.time for p in track] == [b.T0, b.T0 + timedelta(seconds=900)]
    assert track[1].lat == pytest.approx(-2.41, abs=1e-5)


def test_healthz_answers_without_data(client, bridge):
    post_tts(client, b.tts_uplink(b.status(), f_cnt=1))

    assert client.get("/healthz").json() == {"status": "ok"}


def test_an_oversized_body_is_cut_kept_as_a_dead_letter_and_the_next_uplink_still_lands(client, bridge):
    from lora_bridge.adapters.webhook import MAX_BODY_BYTES

    huge = b'{"end_device_ids": {"device_id": "collar-01"}, "junk": "' + b"x" * (4 * MAX_BODY_BYTES) + b'"}'
    reply = post_tts(client, huge)

    assert reply.status_code == 200 and reply.json()["status"] == "dead_letter"
    (dead,) = bridge.dead_letters()
    assert len(dead.body) == MAX_BODY_BYTES and huge.startswith(dead.body)
    assert post_tts(client, b.tts_uplink(b.status(), f_cnt=1)).status_code == 200
    assert bridge.counts()["positions"] == 1


def _post_then_hang_up(app, path: str, first_part: bytes, headers: list[tuple[bytes, bytes]]) -> list[dict]:
    """Drive the ASGI app as a sender that hangs up after the first part of its body."""
    import asyncio

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080),
    }
    arriving = [
        {"type": "http.request", "body": first_part, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return arriving.pop(0) if arriving else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


@pytest.mark.parametrize("ack", ["applied", "durable"])
def test_a_network_server_hanging_up_mid_body_stores_nothing_breaks_nothing_and_its_retry_lands(
    store_url, ack, caplog
):
    from lora_bridge.adapters.api import create_app as create_bridge_app

    body = b.tts_uplink(b.status(), f_cnt=7)
    with b.fresh_bridge(store_url, webhook_ack=ack) as bridge:
        app = create_bridge_app(bridge)
        headers = [(b"x-tembo-secret", b.SECRET.encode()), (b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]

        with caplog.at_level("INFO", logger="lora_bridge.adapters.webhook"):
            sent = _post_then_hang_up(app, "/uplinks/tts", body[: len(body) // 2], headers)

        assert sent[0]["status"] == 499  # never reaches the sender; nothing was acknowledged
        assert "nothing stored" in caplog.text
        assert bridge.counts()["uplinks_stored"] == 0 and bridge.dead_letters() == []
        with TestClient(app) as client:
            assert post_tts(client, body).status_code == {"applied": 200, "durable": 202}[ack]
        if ack == "durable":
            bridge.durable_intake().stop()  # what it kept is applied before it stops
        assert bridge.counts()["positions"] == 1


def test_one_collar_sending_broken_bodies_never_gets_the_application_webhook_disabled(client, bridge):
    # The Things Stack counts every non-2xx answer as a failed try of the whole webhook and, past the
    # deployment's unhealthy-attempts threshold, stops calling it (lorawan-stack PR #4913): every
    # collar's uplinks would stop. A broken body is kept as a dead letter, so it is answered 2xx.
    broken = [
        b"not json at all",
        json.dumps({"end_device_ids": {"device_id": "collar-99", "dev_eui": "70B3"}, "uplink_message": {}}).encode(),
        b"",
    ]
    tts_answers = [post_tts(client, body).status_code for body in broken * 10]
    chirpstack_answers = [
        client.post("/uplinks/chirpstack?event=up", content=body, headers=b.HEADERS).status_code for body in broken
    ]
    other_collar = post_tts(client, b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))

    assert set(tts_answers) == set(chirpstack_answers) == {200}
    assert other_collar.status_code == 200 and other_collar.json()["status"] == "processed"
    assert {letter.stage for letter in bridge.dead_letters()} == {"parse"}
    assert post_tts(client, b.tts_uplink(b.status(), f_cnt=2), secret="wrong").status_code == 401


def test_a_bridge_failing_on_an_uplink_answers_500_and_tells_its_server_alike_on_every_tts_route(bridge, monkeypatch):
    """The base URL is answered before Starlette's router (`WebhookApp`): a bug met there gives the sender
    Starlette's own 500 and reaches the server's log, as on the routes the router serves; a wrong secret
    is the API's 401 on both."""
    from lora_bridge.adapters.api import create_app as create_bridge_app

    def broken(*args, **kwargs):
        raise RuntimeError("a bug while reading the uplink")

    monkeypatch.setattr(bridge, "submission", broken)
    body = b.tts_uplink(b.status())
    app = create_bridge_app(bridge)
    headers = {"X-Tembo-Secret": b.SECRET, "Content-Type": "application/json"}
    with TestClient(app, raise_server_exceptions=False) as client:
        answers = [client.post(path, content=body, headers=headers) for path in ("/uplinks/tts", "/uplinks/tts/uplink")]
        refused = [client.post(path, content=body, headers={"X-Tembo-Secret": "guess"})
                   for path in ("/uplinks/tts", "/uplinks/tts/uplink")]
    assert [(a.status_code, a.text, a.headers["content-type"]) for a in answers] == [
        (500, "Internal Server Error", "text/plain; charset=utf-8")] * 2
    assert [(r.status_code, r.json()) for r in refused] == [(401, refused[1].json())] * 2
    with TestClient(app) as client, pytest.raises(RuntimeError, match="a bug while reading"):
        client.post("/uplinks/tts", content=body, headers=headers)


def _post_arriving_late(app, body_parts: list[bytes] | None, path: str = "/uplinks/tts") -> list[dict]:
    """Drive the ASGI app as a sender whose body comes a moment after its headers, in body_parts (None:
    never, the sender holding its connection open)."""
    import asyncio

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"x-tembo-secret", b.SECRET.encode()), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080),
    }
    arriving = [{"type": "http.request", "body": part, "more_body": i < len(body_parts) - 1}
                for i, part in enumerate(body_parts or [])]
    sent: list[dict] = []

    async def receive() -> dict:
        await asyncio.sleep(0.01)  # the event loop runs other requests meanwhile
        if body_parts is None or not arriving:
            await asyncio.Event().wait()
        return arriving.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_an_uplink_whose_body_comes_after_its_headers_lands_and_one_that_never_comes_gets_408(sqlite_url):
    from lora_bridge.adapters.api import create_app as create_bridge_app

    body = b.tts_uplink(b.status(), f_cnt=5)
    with b.fresh_bridge(sqlite_url, webhook_answer_within_s=1) as bridge:
        app = create_bridge_app(bridge)

        landed = _post_arriving_late(app, [body[:40], body[40:]])
        silent = _post_arriving_late(app, None)

        assert landed[0]["status"] == 200 and json.loads(landed[1]["body"])["status"] == "processed"
        assert silent[0]["status"] == 408 and (b"connection", b"close") in silent[0]["headers"]
        assert json.loads(silent[1]["body"])["status"] == "timeout"
        assert bridge.counts()["positions"] == 1 and bridge.dead_letters() == []
