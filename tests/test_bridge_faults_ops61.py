"""The bridge under faults and operations, as a ranger and an operator meet them: a push to the network server
whose answer was cut off, what the log says when the network server refuses a push, `/metrics` while the store
refuses, and stopping the bridge (or the demo) after its store file was deleted."""

from __future__ import annotations

import threading

import bridge_builders as b
from starlette.testclient import TestClient
from test_bridge_outside_audit import TricklingServer

from lora_bridge.adapters.webhook import create_app
from lora_bridge.server import serve_app_in_thread
from tembo.local_services import free_port


def _headers_through(server_url: str, device: str, key: str) -> dict[str, str]:
    """The webhook headers The Things Stack sends with device's uplinks: its downlinks go to server_url."""
    push = f"{server_url}/api/v3/as/applications/{b.APPLICATION_ID}/webhooks/tembo/devices/{device}/down/push"
    return dict(b.HEADERS, **{"X-Downlink-Apikey": key, "X-Downlink-Push": push,
                              "X-Downlink-Replace": push.replace("/push", "/replace")})


def _status(f_cnt: int) -> bytes:
    return b.tts_uplink(b.status(time_s=b.T0_S + 600 * f_cnt), device_id="tr-01", f_cnt=f_cnt)


def _cut_off_push_then(store_url: str, network, second_uplink: bytes, queue=None) -> dict:
    """Collar tr-01's mortality alert comes through a route whose server cuts off the answer to the ack's
    push (and, as it turns out, dropped it); the collar's next uplinks come by a working route: its first,
    then second_uplink, then one more. What the working server was pushed after each of them, and the
    downlinks' states at the end. queue(bridge): a ranger's command queued after the alert's ack."""
    trickling = TricklingServer()
    give_up = threading.Timer(20.0, trickling.release.set)  # an unbounded push fails the test, not hangs it
    give_up.start()
    pushed: list[list[str]] = []
    states: list[list[tuple[str, str]]] = []
    try:
        with serve_app_in_thread(trickling.app(), port=free_port()) as running:
            with b.fresh_bridge(store_url, outbox_worker=False, downlink_timeout_s=0.5) as bridge, \
                    TestClient(create_app(bridge)) as client:
                alert = b.tts_uplink(b.alert("poaching_risk", seq=1), device_id="tr-01", f_cnt=1)
                assert client.post("/uplinks/tts", content=alert,
                                   headers=_headers_through(running.url, "tr-01", "NNSXS.CUT")).status_code == 200
                bridge.flush_downlinks()
                if queue is not None:  # pushed in the next flush, to the same server, its answer cut off too
                    queue(bridge)
                    bridge.flush_downlinks()
                trickling.release.set()
                working = _headers_through(network.url, "tr-01", network.api_key)
                for body in (_status(2), second_uplink, _status(4)):
                    assert client.post("/uplinks/tts", content=body, headers=working).status_code == 200
                    bridge.flush_downlinks()
                    pushed.append([p["device_id"] for p in network.pushes])
                    states.append(sorted((d.command, d.state) for d in bridge.downlinks()))
    finally:
        trickling.release.set()
        give_up.cancel()
    return {"cut_off_pushes": trickling.calls, "pushed": pushed, "states": states}


def test_a_rangers_ack_whose_push_never_reached_the_network_goes_again_after_the_collars_second_uplink(
        store_url, network):
    # The first uplink since the push would have carried it in its receive windows, the second the collar's
    # port-31 ack: with neither, it never reached the collar, and it goes at once, not after a third uplink.
    seen = _cut_off_push_then(store_url, network, _status(3))

    assert seen["cut_off_pushes"] == 1
    assert seen["pushed"] == [[], ["tr-01"], ["tr-01"]], "not after the first uplink; after the second, once"
    assert seen["states"][-1] == [("ack_alert", "sent"), ("ack_alert", "unconfirmed")]


def test_a_cut_off_ack_the_collar_did_hear_is_not_sent_to_it_twice(store_url, network):
    # The cut-off push had reached the network after all: the collar heard it after its first uplink and
    # acks it in its second. Nothing goes again.
    seen = _cut_off_push_then(store_url, network, b.tts_uplink(b.ack("ack_alert"), device_id="tr-01", f_cnt=3))

    assert seen["pushed"] == [[], [], []]
    assert seen["states"][-1] == [("ack_alert", "acknowledged")]


def test_a_rangers_tracking_command_behind_a_cut_off_ack_is_given_its_own_uplink_before_it_is_given_up(
        store_url, network):
    # A ranger asks for tracking right after the alert; both pushes are cut off. At the network the ack
    # would go first (after the collar's first uplink), the command after its second, acked in its third:
    # the command is given up on (shown unconfirmed, the ranger's to send again) only after the third.
    def tracking(bridge) -> None:
        bridge.queue_command("tr-01", "tracking", {"minutes": 60})

    seen = _cut_off_push_then(store_url, network, _status(3), queue=tracking)

    assert seen["cut_off_pushes"] == 2
    assert seen["pushed"] == [[], ["tr-01"], ["tr-01"]], "the ack goes again after the second uplink"
    assert [dict(step)["tracking"] for step in seen["states"]] == ["sent", "sent", "unconfirmed"]

