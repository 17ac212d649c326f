"""The downlink outbox: worked outside the webhook request, one push per need, within fair use, and
nothing stuck after a crash or behind a hung network server."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import bridge_builders as b
import pytest
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from test_bridge_mqtt import wait_until

from collar_firmware import codec
from lora_bridge.adapters.webhook import create_app
from lora_bridge.network_server import allowed_route
from lora_bridge.server import serve_app_in_thread
from lora_bridge.service import open_bridge
from lora_bridge.settings import BridgeSettings
from lora_bridge.store.tables import Downlink, DownlinkRoute
from lora_bridge.store.utc import utc_now
from tembo.local_services import free_port


def test_a_collar_repeating_its_alert_gets_one_ack_while_that_ack_is_on_its_way(store_url, network):
    with b.pushing_to(network, store_url) as bridge:
        for f_cnt in (1, 2, 3):
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=2, time_s=b.T0_S + 60 * f_cnt), f_cnt=f_cnt))
            bridge.flush_downlinks()
        downlinks = bridge.downlinks()

    assert len(network.pushes) == 1
    assert [d.state for d in downlinks] == ["sent"]


def test_a_collar_still_repeating_long_after_its_ack_went_gets_it_again(store_url, network):
    with b.pushing_to(network, store_url, ack_resend_after_s=60) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=2), f_cnt=1))
        bridge.flush_downlinks()
        with bridge.db.write() as session:  # the ack went out two hours ago and the collar did not hear it
            session.get(Downlink, 1).sent_at = utc_now() - timedelta(hours=2)
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=2, time_s=b.T0_S + 7200), f_cnt=2))
        bridge.flush_downlinks()

    assert len(network.pushes) == 2


def test_a_newer_command_supersedes_a_waiting_one_of_the_same_kind(store_url, network):
    with b.pushing_to(network, store_url) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))
        bridge.queue_command("collar-01", "tracking", {"minutes": 60})
        bridge.queue_command("collar-01", "tracking", {"minutes": 120})
        bridge.flush_downlinks()
        states = [(d.command, d.state, d.superseded_by) for d in bridge.downlinks()]

    assert states == [("tracking", "superseded", 2), ("tracking", "sent", None)]
    (push,) = network.pushes
    assert codec.decode(32, push["payload"])["minutes"] == 120


def test_a_newer_command_replaces_the_older_one_still_queued_at_the_network(store_url, network):
    with b.pushing_to(network, store_url) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), f_cnt=2))
        bridge.queue_command("collar-01", "tracking", {"minutes": 60})
        bridge.flush_downlinks()  # the ack and the first command wait in the network's queue
        bridge.queue_command("collar-01", "tracking", {"minutes": 120})
        bridge.flush_downlinks()

    first, second, replace = network.operations
    assert (first["operation"], second["operation"], replace["operation"]) == ("push", "push", "replace")
    names = [codec.decode(32, item)["message"] for item in replace["payloads"]]
    assert names == ["ack_alert", "tracking"], "the ack stays queued; the old command is gone"
    assert codec.decode(32, replace["payloads"][1])["minutes"] == 120


def test_fair_use_holds_the_eleventh_downlink_of_the_day(store_url, network):
    with b.pushing_to(network, store_url, downlinks_per_device_per_day=10) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))
        for n in range(1, 12):  # eleven different settings changes in one day
            bridge.queue_command("collar-01", "settings", {"gnss_interval_s": 600 + 60 * n})
            bridge.flush_downlinks()
        held = [d for d in bridge.downlinks() if d.state == "queued"]
        with bridge.db.read() as session:
            not_before = session.get(Downlink, held[0].downlink_id).not_before

    assert len(network.pushes) == 10
    assert len(held) == 1 and not_before > utc_now() + timedelta(hours=23)


def test_a_push_interrupted_by_a_crash_goes_out_after_its_lease_expires(store_url, network):
    with b.pushing_to(network, store_url) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=3), f_cnt=1))
        with bridge.db.write() as session:  # a bridge took the lease and died before the push
            row = session.get(Downlink, 1)
            row.state, row.lease_until = "sending", utc_now() - timedelta(seconds=1)
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=3, time_s=b.T0_S + 600), f_cnt=2))
        bridge.flush_downlinks()
        downlinks = bridge.downlinks()

    assert [d.state for d in downlinks] == ["sent"], "the collar's repeat reuses the row and now gets its ack"
    assert len(network.pushes) == 1


def test_an_outbox_pass_with_nothing_interrupted_and_no_campaign_takes_no_write_lock(sqlite_url):
    # The outbox works in the webhook's process while the applier writes the store from its own: a pass
    # that has nothing to release or move on (the usual one) only reads, so the applier never waits.
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1))  # an ack waits, unroutable
        written = b.statements_of(bridge)

        bridge.deliver_updates()
        bridge.flush_downlinks()
        bridge.outbox.flush_multicast()

        assert written == []
        with bridge.db.write() as session:  # a bridge took the ack's lease and died mid-push
            row = session.get(Downlink, 1)
            row.state, row.lease_until = "sending", utc_now() - timedelta(seconds=1)
        written.clear()
        bridge.flush_downlinks()
        (downlink,) = bridge.downlinks()

    assert downlink.state == "queued" and any(s.startswith("UPDATE downlinks SET state") for s in written)


def test_without_anywhere_to_push_an_ack_waits_without_spending_its_attempts(store_url):
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1))
        for _ in range(7):
            assert bridge.flush_downlinks() == 0
        (downlink,) = bridge.downlinks()

    assert (downlink.state, downlink.attempts) == ("queued", 0)


def test_tts_downlink_headers_route_the_ack_without_a_configured_network_server(store_url, network, caplog):
    push = f"{network.url}/api/v3/as/applications/{b.APPLICATION_ID}/webhooks/tembo/devices/collar-01/down/push"
    headers = dict(b.HEADERS, **{"X-Downlink-Apikey": network.api_key, "X-Downlink-Push": push,
                               "X-Downlink-Replace": push.replace("/push", "/replace")})
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
        with caplog.at_level(logging.DEBUG):
            reply = client.post("/uplinks/tts", content=b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1),
                                headers=headers)
            assert bridge.flush_downlinks() == 1
        with bridge.db.read() as session:
            route = session.get(DownlinkRoute, "collar-01")
            shown = repr(route)

    assert reply.status_code == 200
    (pushed,) = network.pushes
    assert pushed["device_id"] == "collar-01" and pushed["f_port"] == 32
    assert network.api_key not in shown and "***" in shown
    assert all(network.api_key not in record.getMessage() for record in caplog.records)


def test_a_header_cannot_send_pushes_to_another_host_than_the_configured_network_server(store_url, network):
    elsewhere = "http://203.0.113.9/api/v3/as/applications/tembo-test/webhooks/x/devices/collar-01/down/push"
    headers = dict(b.HEADERS, **{"X-Downlink-Apikey": "stolen?", "X-Downlink-Push": elsewhere})
    with b.pushing_to(network, store_url) as bridge, TestClient(create_app(bridge)) as client:
        client.post("/uplinks/tts", content=b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1), headers=headers)
        bridge.flush_downlinks()

    (pushed,) = network.pushes
    assert pushed["device_id"] == "collar-01", "pushed to the configured network server instead"


@contextmanager
def a_listener_on_another_port() -> Iterator[b.StandInNetworkServer]:
    """A server on the network server's host (127.0.0.1) but another port, that takes any push carrying
    the configured key (b.StandInNetworkServer's): it records what it is given."""
    listener = b.StandInNetworkServer()
    with serve_app_in_thread(listener.app(), port=free_port()) as running:
        listener.url = running.url
        yield listener


def test_a_header_naming_another_port_of_the_network_servers_host_gets_neither_the_ack_nor_the_api_key(
        store_url, network):
    # Only TTS sends X-Downlink-Push, always beside its own X-Downlink-Apikey (integrations/webhooks/
    # scheduling-downlinks); a call naming a route without a key, on the server's host but another port
    # (or plain http), had made the bridge carry the configured key there.
    with a_listener_on_another_port() as listener:
        elsewhere = (f"{listener.url}/api/v3/as/applications/{b.APPLICATION_ID}/webhooks/x/devices/collar-01"
                     "/down/push")
        headers = dict(b.HEADERS, **{"X-Downlink-Push": elsewhere})
        with b.pushing_to(network, store_url) as bridge, TestClient(create_app(bridge)) as client:
            client.post("/uplinks/tts", content=b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1), headers=headers)
            bridge.flush_downlinks()

    assert listener.pushes == [], "the configured API key went to a port only a header named"
    (pushed,) = network.pushes
    assert pushed["device_id"] == "collar-01", "the ranger's ack went to the configured network server"


def test_without_a_configured_network_server_a_header_route_without_its_own_key_gets_no_configured_key(
        store_url):
    # An operator who set TEMBO_NETWORK_SERVER_API_KEY but no URL: the key is for her network server, and
    # no URL says where that is; a header naming a route without its own key must not be given it.
    with a_listener_on_another_port() as listener:
        push = f"{listener.url}/api/v3/as/applications/{b.APPLICATION_ID}/webhooks/x/devices/collar-01/down/push"
        headers = dict(b.HEADERS, **{"X-Downlink-Push": push})
        with b.fresh_bridge(store_url, outbox_worker=False, network_server_api_key=listener.api_key) as bridge, \
                TestClient(create_app(bridge)) as client:
            client.post("/uplinks/tts", content=b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1), headers=headers)
            bridge.flush_downlinks()

    assert listener.pushes == [], "the configured API key went to a host only a header named"


@pytest.mark.parametrize(("route", "own"), [
    ("https://eu1.cloud.thethings.network:443/api/v3/as/applications/a/webhooks/w/devices/d/down/push", True),
    ("https://EU1.cloud.thethings.network/api/v3/as/applications/a/webhooks/w/devices/d/down/push", True),
    ("http://eu1.cloud.thethings.network/api/v3/as/applications/a/webhooks/w/devices/d/down/push", False),
    ("https://eu1.cloud.thethings.network:8443/api/v3/as/applications/a/webhooks/w/devices/d/down/push", False),
    ("https://eu1.cloud.thethings.network:99999/api/v3/as/applications/a/devices/d/down/push", False),
])
def test_a_tts_route_is_the_configured_servers_only_on_its_scheme_host_and_port(route, own):
    # TTS names its routes from its public address (`https://eu1.cloud.thethings.network/api/v3/...`),
    # with or without the default port; only those are the configured server's, and get its key.
    settings = BridgeSettings(network_server_url="https://eu1.cloud.thethings.network")

    assert allowed_route(route, settings) is own


class HungNetworkServer:
    """A network server that accepts connections and then does not answer until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def app(self) -> Starlette:
        async def push(request: Request) -> JSONResponse:
            import anyio

            self.calls += 1
            while not self.release.is_set():
                await anyio.sleep(0.05)
            return JSONResponse({})

        return Starlette(routes=[Route("/api/v3/as/applications/{app}/devices/{device}/down/push", push,
                                       methods=["POST"])])


@contextmanager
def a_backup_locking(sqlite_url: str, seconds: float | None) -> Iterator[Callable[[], None]]:
    """A backup beside the bridge: the callable it yields takes the store's write lock for seconds (None:
    until the callable's `release()`)."""
    backup = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0.1, check_same_thread=False)

    def lock() -> None:
        backup.execute("BEGIN IMMEDIATE")
        if seconds is not None:
            threading.Timer(seconds, backup.rollback).start()

    lock.release = backup.rollback  # type: ignore[attr-defined]

    try:
        yield lock
    finally:
        backup.close()


def test_operator_whose_store_is_locked_while_an_ack_is_pushed_sees_the_ack_go_out_once(sqlite_url, network):
    # A backup takes the store's write lock for a second while the network server takes the push:
    # the outcome could not be written, the downlink stayed `sending`, and once its lease expired it
    # went out again (the collar got its ack twice, a second downlink of its fair-use day spent).
    with b.pushing_to(network, sqlite_url, sqlite_busy_timeout_ms=100, downlink_lease_s=5) as bridge, \
            a_backup_locking(sqlite_url, 1.0) as lock_the_store_for_a_second:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=2), f_cnt=1))
        network.on_push = lock_the_store_for_a_second
        accepted = bridge.flush_downlinks()
        network.on_push = None
        time.sleep(5)  # the lease has run out
        again = bridge.flush_downlinks()
        (downlink,) = bridge.downlinks()

    assert (accepted, again, len(network.pushes)) == (1, 0, 1)
    assert (downlink.state, downlink.attempts) == ("sent", 1)


def test_operator_sees_an_ack_pushed_again_after_its_lease_ran_out_count_twice_in_fair_use(sqlite_url, network):
    # The network took the ack while a backup held the store's write lock past the push's lease: the
    # outcome was lost and the ack went out again. Two transmissions of one downlink row; the outbox
    # had counted the row once and pushed a settings change past the collar's day.
    with b.pushing_to(network, sqlite_url, sqlite_busy_timeout_ms=100, downlink_lease_s=1,
                      downlinks_per_device_per_day=2) as bridge, \
            a_backup_locking(sqlite_url, None) as lock_the_store_past_the_lease:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=2), f_cnt=1))
        network.on_push = lock_the_store_past_the_lease
        with pytest.raises(OperationalError):  # the store stayed locked for the whole lease
            bridge.flush_downlinks()
        network.on_push = None
        lock_the_store_past_the_lease.release()  # held past the lease however slow the machine
        time.sleep(1.0)  # the outbox gave up at most one pause (0.2 s) before the lease's end: it has run out
        bridge.flush_downlinks()
        bridge.queue_command("collar-01", "settings", {"gnss_interval_s": 900})
        bridge.flush_downlinks()
        states = [(d.command, d.state) for d in bridge.downlinks()]

    assert len(network.pushes) == 2
    assert states == [("ack_alert", "sent"), ("settings", "queued")]


def test_a_hung_network_server_does_not_hold_up_ingest(store_url, port):
    hung = HungNetworkServer()
    with serve_app_in_thread(hung.app(), port=port) as running:
        with b.fresh_bridge(store_url, network_server_url=running.url, network_server_api_key="k",
                            downlink_timeout_s=0.5) as bridge, TestClient(create_app(bridge)) as client:
            answers = [
                client.post("/uplinks/tts", headers=b.HEADERS, content=b.tts_uplink(
                    b.alert("mortality", seq=n % 8, time_s=b.T0_S + 600 * n), device_id=f"collar-{n:02d}", f_cnt=n))
                for n in range(1, 9)
            ]
            # every alert was answered while the network server still hangs: the webhook never waited on it
            assert not hung.release.is_set()
            assert [a.status_code for a in answers] == [200] * 8
            assert {a.json()["status"] for a in answers} == {"processed"}
            hung.release.set()
            bridge.wake_outbox()
            states = _wait_for(lambda: {d.state for d in bridge.downlinks()} == {"sent"}, bridge)

    assert states, "once the network server answers again the worker sends every ack"
    assert hung.calls >= 1


def _wait_for(condition, bridge, timeout_s: float = 30.0) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        bridge.wake_outbox()
        time.sleep(0.05)
    return condition()


def test_downlink_bodies_carry_our_correlation_id(store_url, network):
    with b.pushing_to(network, store_url) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1))
        bridge.flush_downlinks()

    (operation,) = network.operations
    body = operation["body"]["downlinks"][0]
    assert body["correlation_ids"] == ["tembo:downlink:1"]
    assert base64.b64decode(body["frm_payload"]) == network.pushes[0]["payload"]
    assert json.dumps(body)  # the body is JSON the network server reads


def _until(condition, timeout_s: float = 30.0) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)  # waits for the worker, not for a fixed time
    return condition()


@pytest.mark.parametrize("ack", ["applied", "durable"])
def test_an_ack_queued_by_an_uplink_is_pushed_when_its_batch_commits_not_at_the_next_poll(store_url, network, ack):
    # the worker's safety round is an hour away: only the wake of the commit that queued the ack can push it
    with b.fresh_bridge(store_url, network_server_url=network.url, network_server_api_key=network.api_key,
                        outbox_every_s=3600, webhook_ack=ack) as bridge, TestClient(create_app(bridge)) as client:
        worker = bridge.start_outbox_worker()
        assert _until(lambda: worker.full_flushes == 1), "the first round at start looks at everything"
        reply = client.post("/uplinks/tts", headers=b.HEADERS, content=b.tts_uplink(b.alert("mortality", seq=3), f_cnt=1))
        assert reply.status_code in (200, 202)
        assert _until(lambda: [(d.seq, d.state) for d in bridge.downlinks()] == [(3, "sent")])
        full_flushes = worker.full_flushes

    assert len(network.pushes) == 1
    assert full_flushes == 1, "pushed by the wake with its id, not by a scan of the queue"


def test_an_ack_queued_before_a_restart_is_pushed_by_the_next_run(store_url, network):
    with b.pushing_to(network, store_url) as before:
        before.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=4), f_cnt=1))
        assert [d.state for d in before.downlinks()] == ["queued"]  # stopped before any push
    with open_bridge(store_url, webhook_secret=b.SECRET, network_server_url=network.url,
                     network_server_api_key=network.api_key, outbox_every_s=3600) as after:
        worker = after.start_outbox_worker()
        assert _until(lambda: [d.state for d in after.downlinks()] == ["sent"])
        assert _until(lambda: worker.full_flushes >= 1)  # the round's count goes up once its flush returned
        full_flushes = worker.full_flushes

    assert len(network.pushes) == 1
    assert full_flushes == 1, "the round at start, not the hourly one"


def test_the_ack_of_the_message_that_brings_the_tts_route_goes_out_without_waiting_for_a_safety_round(
        store_url, network):
    # TTS sends X-Downlink-Push / -Replace / -Apikey with every webhook call (integrations/webhooks/
    # scheduling-downlinks); the first alert after the bridge starts is also the call that brings them.
    push = f"{network.url}/api/v3/as/applications/{b.APPLICATION_ID}/webhooks/tembo/devices/collar-01/down/push"
    headers = dict(b.HEADERS, **{"X-Downlink-Apikey": network.api_key, "X-Downlink-Push": push,
                               "X-Downlink-Replace": push.replace("/push", "/replace")})
    with b.fresh_bridge(store_url, outbox_every_s=3600.0) as bridge, TestClient(create_app(bridge)) as client:
        worker = bridge.start_outbox_worker()
        assert wait_until(lambda: worker.full_flushes >= 1)  # its first round is done: only a wake moves it now
        reply = client.post("/uplinks/tts", content=b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1), headers=headers)
        pushed = wait_until(lambda: len(network.pushes) == 1, timeout_s=30)

    assert reply.status_code == 200
    assert pushed, "the ack waited for the hourly safety round"
    assert network.pushes[0]["f_port"] == 32


def test_a_tts_route_whose_key_is_refused_holds_back_only_its_own_applications_downlinks(store_url, network):
    # Two TTS applications, each webhook with its own Downlink API key (integrations/webhooks/
    # scheduling-downlinks); north's key was revoked: its pushes get 401, south's must still go.
    def alert_from(application: str, device: str, key: str) -> tuple[bytes, dict[str, str]]:
        body = json.loads(b.tts_uplink(b.alert("mortality", seq=1), device_id=device, f_cnt=1))
        body["end_device_ids"]["application_ids"]["application_id"] = application
        push = f"{network.url}/api/v3/as/applications/{application}/webhooks/tembo/devices/{device}/down/push"
        headers = dict(b.HEADERS, **{"X-Downlink-Apikey": key, "X-Downlink-Push": push,
                                   "X-Downlink-Replace": push.replace("/push", "/replace")})
        return json.dumps(body).encode(), headers

    with b.fresh_bridge(store_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
        for application, device, key in (("north", "collar-n", "NNSXS.REVOKED"), ("south", "collar-s", network.api_key)):
            body, headers = alert_from(application, device, key)
            assert client.post("/uplinks/tts", content=body, headers=headers).status_code == 200
        accepted = bridge.flush_downlinks()
        states = {d.device_id: d.state for d in bridge.downlinks()}

    assert accepted == 1
    assert [(p["application_id"], p["device_id"]) for p in network.pushes] == [("south", "collar-s")]
    assert states == {"collar-n": "queued", "collar-s": "sent"}


@pytest.mark.parametrize("ack", ["applied", "durable"])
def test_a_tenants_ack_goes_to_its_own_collar_when_another_tenant_has_the_same_application_and_device(
        store_url, network, ack):
    # Two The Things Stack Cloud tenants, KWS and SANParks, both call their application `tembo` and an
    # ABP collar in it `collar-1` (network_ids.tenant_id tells them apart). Each tenant's webhook sends
    # its own X-Downlink-* headers: its tenant's host (`{tenant}.eu1.cloud.thethings.industries`, here
    # two stand-ins) and its tenant's API key. A durable bridge answers (and keeps the route) before it
    # applies either body.
    from test_bridge_collar_identity import abp_uplink

    def tenant_call(tenant: str, server: b.StandInNetworkServer, f_cnt: int, port_payload: tuple[int, bytes]):
        body = json.loads(abp_uplink("tembo", f_cnt, -2.5, tenant_id=tenant))
        body["uplink_message"]["f_port"], payload = port_payload
        body["uplink_message"]["frm_payload"] = base64.b64encode(payload).decode()
        push = f"{server.url}/api/v3/as/applications/tembo/webhooks/tembo/devices/collar-1/down/push"
        headers = dict(b.HEADERS, **{"X-Downlink-Apikey": server.api_key, "X-Downlink-Push": push,
                                   "X-Downlink-Replace": push.replace("/push", "/replace")})
        return json.dumps(body).encode(), headers

    sanparks = b.StandInNetworkServer(api_key="NNSXS.SANPARKS-KEY")
    network.api_key = "NNSXS.KWS-KEY"
    with serve_app_in_thread(sanparks.app(), port=free_port()) as running:
        sanparks.url = running.url
        durable = {"webhook_ack": "durable", "intake_applier": "thread"} if ack == "durable" else {}
        with b.fresh_bridge(store_url, outbox_worker=False, **durable) as bridge, \
                TestClient(create_app(bridge)) as client:
            # KWS's collar-1 raises a mortality alert; then SANParks' collar-1 reports its status.
            body, headers = tenant_call("kws", network, 10, b.alert("mortality", seq=1))
            kws_alert = client.post("/uplinks/tts", content=body, headers=headers)
            body, headers = tenant_call("sanparks", sanparks, 3, b.status(lat=-24.0))
            client.post("/uplinks/tts", content=body, headers=headers)
            if ack == "durable":
                wait_until(lambda: bridge.durable_intake().backlog() == 0)
            assert bridge.flush_downlinks() == 1

    assert kws_alert.json()["device_id"] == "collar-1"
    assert [(p["device_id"], p["f_port"]) for p in network.pushes] == [("collar-1", 32)], \
        "the KWS ranger's ack went to the other tenant's collar"
    assert sanparks.pushes == []


def test_a_rangers_ack_goes_to_the_collars_new_network_server_when_its_old_one_retries_an_older_message(
        store_url, network):
    # A KWS collar moved from the eu1 cluster (`network`) to au1 (a second stand-in, its own key); each
    # cluster's webhook sends its own X-Downlink-* headers. After the collar's first message through
    # au1, eu1 retries a webhook call the bridge had not taken (integrations/webhooks: failed calls are
    # retried): the collar's mortality alert, heard before it moved. Its ack must go where the collar
    # now listens.
    def through(server: b.StandInNetworkServer, message: tuple[int, bytes], f_cnt: int, minutes: int):
        body = b.tts_uplink(message, f_cnt=f_cnt, received_at=b.T0 + timedelta(minutes=minutes))
        push = f"{server.url}/api/v3/as/applications/{b.APPLICATION_ID}/webhooks/tembo/devices/collar-01/down/push"
        headers = dict(b.HEADERS, **{"X-Downlink-Apikey": server.api_key, "X-Downlink-Push": push,
                                   "X-Downlink-Replace": push.replace("/push", "/replace")})
        return body, headers

    au1 = b.StandInNetworkServer(api_key="NNSXS.AU1-KEY")
    network.api_key = "NNSXS.EU1-KEY"
    with serve_app_in_thread(au1.app(), port=free_port()) as running:
        au1.url = running.url
        with b.fresh_bridge(store_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
            for server, message, f_cnt, minutes in ((network, b.status(), 4, 0), (au1, b.status(lat=-2.6), 1, 30),
                                                    (network, b.alert("mortality", seq=1), 3, -5)):
                body, headers = through(server, message, f_cnt, minutes)
                assert client.post("/uplinks/tts", content=body, headers=headers).status_code == 200
            assert bridge.flush_downlinks() == 1

    assert [(p["device_id"], p["f_port"]) for p in au1.pushes] == [("collar-01", 32)]
    assert network.pushes == [], "the ack went to the cluster the collar left"


def test_kws_acks_go_out_while_more_than_a_page_of_sanparks_downlinks_wait_at_its_refusing_server(store_url, network):
    # SANParks revoked the key its webhook sends: every push to it is refused (401), so its downlinks stay
    # queued, oldest first. Behind them a KWS ack whose first push was interrupted (the bridge restarted
    # mid-push) waits for a full flush. The flush reads the queue a page at a time (here 2 a page, the
    # bridge's default is 100): SANParks' page must not hide KWS's ack.
    def alert_through(server: b.StandInNetworkServer, device: str, seq: int, key: str) -> tuple[bytes, dict]:
        body = b.tts_uplink(b.alert("mortality", seq=seq), device_id=device, f_cnt=seq)
        push = f"{server.url}/api/v3/as/applications/{b.APPLICATION_ID}/webhooks/tembo/devices/{device}/down/push"
        return body, dict(b.HEADERS, **{"X-Downlink-Apikey": key, "X-Downlink-Push": push,
                                        "X-Downlink-Replace": push.replace("/push", "/replace")})

    sanparks = b.StandInNetworkServer(api_key="NNSXS.SANPARKS-NEW-KEY")
    network.api_key = "NNSXS.KWS-KEY"
    with serve_app_in_thread(sanparks.app(), port=free_port()) as running:
        sanparks.url = running.url
        with b.fresh_bridge(store_url, outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
            calls = [alert_through(sanparks, f"sp-collar-{n}", 1, "NNSXS.SANPARKS-REVOKED") for n in range(3)]
            calls.append(alert_through(network, "kws-collar", 1, network.api_key))
            for body, headers in calls:
                assert client.post("/uplinks/tts", content=body, headers=headers).status_code == 200
            with bridge.db.write() as session:  # KWS's ack was being pushed when the bridge stopped
                (ack,) = session.query(Downlink).filter(Downlink.device_id == "kws-collar").all()
                ack.state, ack.lease_until = "sending", utc_now() - timedelta(seconds=1)
            accepted = bridge.flush_downlinks(limit=2)
            states = {d.device_id: d.state for d in bridge.downlinks()}

    assert accepted == 1 and [(p["device_id"], p["f_port"]) for p in network.pushes] == [("kws-collar", 32)], \
        "KWS's ack was hidden behind a page of SANParks' refused downlinks"
    assert sanparks.pushes == [] and states["sp-collar-0"] == "queued"


@pytest.mark.parametrize("spelling", ["as configured", "host in capitals"])
def test_a_network_server_that_is_down_is_tried_once_a_flush_however_its_collars_routes_spell_it(
        store_url, network, spelling):
    # The Things Stack is down (503). collar-01 was heard without webhook headers (MQTT): its acks go to
    # the configured server. collar-02's webhook sent X-Downlink-* headers naming that same server (scheme,
    # host and port), as written in the header or with the host in other letters. One server that refused
    # in a flush is not asked again in it, whichever way a collar's route spells it.
    configured = network.url.replace("127.0.0.1", "localhost")
    route_server = configured if spelling == "as configured" else configured.replace("localhost", "LocalHost")
    push = f"{route_server}/api/v3/as/applications/{b.APPLICATION_ID}/webhooks/tembo/devices/collar-02/down/push"
    headers = dict(b.HEADERS, **{"X-Downlink-Apikey": network.api_key, "X-Downlink-Push": push,
                               "X-Downlink-Replace": push.replace("/push", "/replace")})
    network.refuse = True
    with b.fresh_bridge(store_url, network_server_url=configured, network_server_api_key=network.api_key,
                        outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), device_id="collar-01", f_cnt=1))
        reply = client.post("/uplinks/tts", headers=headers,
                            content=b.tts_uplink(b.alert("mortality", seq=1), device_id="collar-02", f_cnt=1))
        accepted = bridge.flush_downlinks()
        tried = {d.device_id: (d.state, d.attempts) for d in bridge.downlinks()}

    assert reply.status_code == 200 and accepted == 0
    assert tried == {"collar-01": ("queued", 1), "collar-02": ("queued", 0)}, \
        "the server that refused collar-01's ack was asked again for collar-02's under another spelling"


def test_a_collar_deleted_at_the_things_stack_does_not_hold_back_the_other_collars_acks(store_url, network):
    # A technician deleted collar-gone from the TTS application (retired); its last alert's ack is answered
    # 404 NOT_FOUND (`device_not_found`). The server itself works: collar-01's ack, queued after it, goes
    # in the same flush, and the deleted collar's downlink keeps the answer.
    network.deleted = {"collar-gone"}
    with b.pushing_to(network, store_url) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), device_id="collar-gone", f_cnt=1))
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), device_id="collar-01", f_cnt=1))
        accepted = bridge.flush_downlinks()
        downlinks = {d.device_id: d for d in bridge.downlinks()}

    assert accepted == 1 and [p["device_id"] for p in network.pushes] == ["collar-01"], \
        "one deleted collar held back the acks of every other collar of its server"
    gone = downlinks["collar-gone"]
    assert (gone.state, gone.attempts) == ("queued", 1) and "404" in gone.last_error


def test_a_rate_limited_ack_waits_as_the_things_stack_asks_and_is_never_failed_for_it(store_url, network):
    # The Things Stack rate-limits downlink queue operations per application (3.35.2: ResourceExhausted,
    # 429, with X-Rate-Limit-Retry). A burst of alerts meets it: the ack waits the seconds TTS names, spends
    # no attempt, and however many 429s it meets it is not given up as failed.
    network.rate_limited, network.retry_after_s = 2 * 5, 120
    with b.pushing_to(network, store_url) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1))
        assert bridge.flush_downlinks() == 0
        (held,) = bridge.downlinks()
        assert bridge.flush_downlinks() == 0, "pushed again before the time TTS named"
        for _ in range(2 * 5 - 1):  # the time passes; TTS still refuses, nine more times
            with bridge.db.write() as session:
                session.get(Downlink, held.downlink_id).not_before = utc_now() - timedelta(seconds=1)
            assert bridge.flush_downlinks() == 0
        with bridge.db.write() as session:
            session.get(Downlink, held.downlink_id).not_before = utc_now() - timedelta(seconds=1)
        accepted = bridge.flush_downlinks()
        (sent,) = bridge.downlinks()

    assert (held.state, held.attempts) == ("queued", 0) and "429" in held.last_error
    assert accepted == 1 and (sent.state, sent.attempts) == ("sent", 1)
    assert len(network.pushes) == 1


@pytest.mark.parametrize(("said", "waits_s"), [
    ("120", 120.0),  # delay-seconds (RFC 9110 10.2.3)
    ("Sat, 05 Dec 2026 12:02:00 GMT", 120.0),  # an HTTP-date, two minutes after the answer
    ("Sat, 05 Dec 2026 11:00:00 GMT", 0.0),  # a date already past: no wait
    ("999999999999999999999", 86400.0),  # at most a day
    ("-5", None), ("soon", None), ("", None), ("１２０", None), ("Sat, 05 Dec 2026 12:02:00", None),
])
def test_a_retry_after_is_read_as_http_writes_it_and_a_broken_one_is_ignored(said, waits_s):
    from lora_bridge.network_server import retry_after_s

    answered = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert retry_after_s(said, now=answered) == waits_s


def _tts_queue_invalidated(pushes: list[dict]) -> bytes:
    """The Things Stack's `downlink_queue_invalidated` (Data Formats; tests/network_fixtures.py) for collar-01,
    naming the downlinks `pushes` as the network echoes them: port, bytes, correlation ids."""
    import network_fixtures as nf

    report = nf.TTS["downlink_queue_invalidated"].copy()
    report["end_device_ids"].update(device_id="collar-01", application_ids={"application_id": b.APPLICATION_ID},
                                    dev_eui=b.dev_eui_of("collar-01"))
    template = report["downlink_queue_invalidated"]["downlinks"][0]
    report["downlink_queue_invalidated"]["downlinks"] = [
        dict(template, f_port=push["f_port"], frm_payload=base64.b64encode(push["payload"]).decode(),
             correlation_ids=list(push["correlation_ids"]))
        for push in pushes
    ]
    return json.dumps(report).encode()


def test_every_command_the_things_stack_dropped_at_a_new_session_goes_again_without_waiting_for_a_safety_round(
        store_url, network):
    # A technician sent collar-01 a settings change and a reboot; both sit in The Things Stack's
    # queue when the collar starts a new session and TTS drops them (downlink_queue_invalidated, naming
    # both). Each goes again at once in the new session, not only the first with the other an hour later.
    with b.fresh_bridge(store_url, network_server_url=network.url, network_server_api_key=network.api_key,
                        outbox_every_s=3600) as bridge, TestClient(create_app(bridge)) as client:
        worker = bridge.start_outbox_worker()
        assert _until(lambda: worker.full_flushes == 1), "the first round at start looks at everything"
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))
        bridge.queue_command("collar-01", "settings", {"gnss_interval_s": 1800})
        bridge.queue_command("collar-01", "reboot", {})
        assert _until(lambda: len(network.pushes) == 2 and [d.state for d in bridge.downlinks()] == ["sent", "sent"])
        dropped = list(network.pushes)
        reply = client.post("/uplinks/tts", headers=b.HEADERS, content=_tts_queue_invalidated(dropped))
        assert reply.status_code in (200, 202)
        again = _until(lambda: len(network.pushes) == 4 and [d.state for d in bridge.downlinks()] == ["sent", "sent"],
                       timeout_s=20)
        full_flushes = worker.full_flushes

    assert again, "a command the network dropped waited for the hourly safety round"
    assert sorted(p["payload"] for p in network.pushes[2:]) == sorted(p["payload"] for p in dropped)
    assert full_flushes == 1, "pushed again by the wake with their ids, not by a scan of the queue"
