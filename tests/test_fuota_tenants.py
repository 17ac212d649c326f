"""A field technician's update reaches the collars of their own reserve only, when two reserves are
tenants of The Things Stack Cloud that named their application alike.

Each tenant is a stand-in The Things Stack on its own host (tests/fuota_network.py): TTS Cloud gives
every tenant its own host (`{tenant}.eu1.cloud.thethings.industries`) and its webhooks their own
Downlink API key, sent with every uplink as `X-Downlink-Apikey` beside `X-Downlink-Push` /
`X-Downlink-Replace` (thethingsindustries.com/docs/integrations/webhooks/scheduling-downlinks/); the
uplink names its tenant in `uplink_message.network_ids.tenant_id` (ApplicationUplink.network_ids). A multicast group
is an end device of the tenant's application (docs/devices/configuring-devices/multicast/), pushed
with `class_b_c` gateways and an absolute time (…/class-c/).
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import timedelta

import bridge_builders as b
import pytest
from fuota_network import GROUP, StandInTheThingsStack, serve
from fuota_twin import KEY, model_image, start_campaign
from sqlalchemy import select
from starlette.testclient import TestClient

from lora_bridge.adapters.webhook import create_app
from lora_bridge.store.tables import MulticastDownlink
from tembo.local_services import free_port

APPLICATION = b.APPLICATION_ID  # both reserves call their application the same
KWS = ("kws", "kws-collar-1", "kws-collar-2")
SANPARKS = ("sanparks", "aardvark-collar")  # its route is stored first: the one an application-wide look-up met


def tenant_uplink(network: StandInTheThingsStack, tenant: str, device: str, f_cnt: int,
                  message: tuple[int, bytes] | None = None) -> tuple[bytes, dict]:
    """An uplink (a status unless message) of a tenant's collar as that tenant's webhook posts it, with its
    downlink headers."""
    body = json.loads(b.tts_uplink(message or b.status(), device_id=device, f_cnt=f_cnt))
    body["uplink_message"]["network_ids"] = {"net_id": "000013", "tenant_id": tenant, "cluster_id": "eu1",
                           "cluster_address": "eu1.cloud.thethings.industries"}
    push = f"{network.url}/api/v3/as/applications/{APPLICATION}/webhooks/tembo/devices/{device}/down/push"
    headers = dict(b.HEADERS, **{"X-Downlink-Apikey": network.api_key, "X-Downlink-Push": push,
                               "X-Downlink-Replace": push.replace("/push", "/replace")})
    return json.dumps(body).encode(), headers


@pytest.fixture
def reserves(port):
    """KWS's and SANParks' The Things Stack tenants, each with its own key."""
    kws, sanparks = StandInTheThingsStack(), StandInTheThingsStack()
    kws.api_key, sanparks.api_key = "NNSXS.KWS-KEY", "NNSXS.SANPARKS-KEY"
    with ExitStack() as running:
        running.enter_context(serve(kws, port))
        running.enter_context(serve(sanparks, free_port()))
        yield kws, sanparks


def hear_both(bridge, kws: StandInTheThingsStack, sanparks: StandInTheThingsStack) -> None:
    """SANParks' collar is heard first, then KWS's two, each through its tenant's webhook."""
    with TestClient(create_app(bridge)) as client:
        for network, (tenant, *devices) in ((sanparks, SANPARKS), (kws, KWS)):
            for device in devices:
                body, headers = tenant_uplink(network, tenant, device, 1)
                assert client.post("/uplinks/tts", content=body, headers=headers).status_code == 200
    bridge.process_pending()


def campaign_for(bridge, devices: list[str]) -> dict:
    image, version = model_image()
    return start_campaign(bridge, image, version, devices=devices)


def open_window(bridge, campaign: dict) -> None:
    """Move the bridge's clock to the campaign's window and let it queue and push its first frames."""
    opens = campaign["delivery"]["window_opens"]
    bridge.clock = lambda: opens
    bridge.deliver_updates()
    bridge.flush_downlinks()


def test_kws_technicians_update_frames_go_to_kws_with_kws_key_never_to_the_other_reserve(sqlite_url, reserves):
    kws, sanparks = reserves
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        hear_both(bridge, kws, sanparks)
        open_window(bridge, campaign_for(bridge, list(KWS[1:])))

    assert kws.reads, "KWS's multicast end device was read at KWS's host"
    assert kws.multicast and {frame["group"] for frame in kws.multicast} == {GROUP}
    assert sanparks.reads == [] and sanparks.multicast == [], \
        "KWS's group was read or pushed at SANParks' server, with SANParks' API key"


def test_a_campaign_over_two_reserves_collars_is_refused_with_the_reason(sqlite_url, reserves):
    kws, sanparks = reserves
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        hear_both(bridge, kws, sanparks)
        with pytest.raises(ValueError, match=r"2 network tenants \(kws, sanparks\)"):
            campaign_for(bridge, [KWS[1], SANPARKS[1]])
        assert bridge.campaigns() == [], "nothing kept of the refused campaign"

    assert kws.multicast == [] and sanparks.multicast == []


def test_a_delivery_whose_collar_moved_to_another_network_server_keeps_why_its_frames_were_not_pushed(
        sqlite_url, reserves, caplog):
    kws, sanparks = reserves
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        hear_both(bridge, kws, sanparks)
        campaign = campaign_for(bridge, list(KWS[1:]))
        # Before the window opens kws-collar-2 is moved to another network server (another cluster: its
        # uplinks now come through that server's webhook, with that server's host and key): the group's
        # frames can no longer reach every collar of one session.
        with TestClient(create_app(bridge)) as client:
            body, headers = tenant_uplink(sanparks, "kws", KWS[2], 2)
            assert client.post("/uplinks/tts", content=body, headers=headers).status_code == 200
        bridge.process_pending()
        open_window(bridge, campaign)
        with bridge.db.read() as session:
            frames = session.scalars(select(MulticastDownlink)).all()
            kept = {(frame.state, frame.last_error) for frame in frames}

    assert frames and kws.multicast == [] and sanparks.multicast == []
    ((state, reason),) = kept
    assert state == "failed" and "2 network servers" in reason
    assert any("not pushed" in r.getMessage() and "2 network servers" in r.getMessage() for r in caplog.records)


def test_kws_update_frames_still_go_while_the_other_reserves_server_refuses_its_key(sqlite_url, reserves):
    # SANParks revoked the API key its webhook still sends: the ack of its collar's mortality alert is
    # refused (401) at every flush. KWS's server takes pushes, so KWS's window must go on.
    kws, sanparks = reserves
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        hear_both(bridge, kws, sanparks)
        campaign = campaign_for(bridge, list(KWS[1:]))
        with TestClient(create_app(bridge)) as client:
            body, headers = tenant_uplink(sanparks, SANPARKS[0], SANPARKS[1], 2, b.alert("mortality", seq=1))
            assert client.post("/uplinks/tts", content=body, headers=headers).status_code == 200
        bridge.process_pending()
        sanparks.api_key = "NNSXS.SANPARKS-NEW-KEY"
        open_window(bridge, campaign)
        states = {d.device_id: d.state for d in bridge.downlinks() if d.device_id == SANPARKS[1]}

    assert kws.multicast, "KWS's window frames were held back by SANParks' refused key"
    assert sanparks.multicast == [] and states == {SANPARKS[1]: "queued"}


def test_with_a_configured_server_a_header_to_another_host_does_not_split_the_campaign(sqlite_url, reserves):
    # KWS's bridge is configured with KWS's server (TEMBO_NETWORK_SERVER_URL): a header naming another
    # host (SANParks' stand-in by the name `localhost`) is never pushed to, so it neither refuses KWS's
    # campaign nor routes its frames.
    kws, sanparks = reserves
    sanparks.url = sanparks.url.replace("127.0.0.1", "localhost")
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), outbox_worker=False, fuota_multicast_group=GROUP,
                        network_server_url=kws.url, network_server_api_key=kws.api_key) as bridge:
        hear_both(bridge, kws, sanparks)
        with TestClient(create_app(bridge)) as client:
            body, headers = tenant_uplink(sanparks, KWS[0], KWS[2], 2)
            assert client.post("/uplinks/tts", content=body, headers=headers).status_code == 200
        bridge.process_pending()
        open_window(bridge, campaign_for(bridge, list(KWS[1:])))

    assert kws.multicast and sanparks.multicast == [] and sanparks.reads == []


def test_kws_collars_whose_routes_spell_kws_server_two_ways_still_get_one_campaign(sqlite_url, reserves):
    # KWS's two collars brought their routes from two webhook calls that spell KWS's server apart (its
    # host's case): one server all the same (scheme, host and port), so the campaign is not refused as
    # split between two network servers, and its frames go to KWS.
    kws, sanparks = reserves
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        with TestClient(create_app(bridge)) as client:
            for device, spelt in ((KWS[1], "localhost"), (KWS[2], "LOCALHOST")):
                body, headers = tenant_uplink(kws, "kws", device, 1)
                for name in ("X-Downlink-Push", "X-Downlink-Replace"):
                    headers[name] = headers[name].replace("127.0.0.1", spelt)
                assert client.post("/uplinks/tts", content=body, headers=headers).status_code == 200
        bridge.process_pending()
        open_window(bridge, campaign_for(bridge, list(KWS[1:])))

    assert kws.multicast and sanparks.multicast == []


def test_an_outbox_pass_over_a_window_reads_its_collars_routes_once_not_once_a_frame(sqlite_url, reserves):
    # A delivery's window is hundreds of frames for many collars; each outbox pass pushes every frame that
    # is due. Which server and key the group's frames go to (the route of the delivery's own collars)
    # is the same for all of them in one pass: it is read from the store once a pass, not once a frame.
    from sqlalchemy import event

    kws, sanparks = reserves
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        hear_both(bridge, kws, sanparks)
        campaign = campaign_for(bridge, list(KWS[1:]))
        opens = campaign["delivery"]["window_opens"]
        bridge.clock = lambda: opens
        bridge.deliver_updates()
        bridge.flush_downlinks()  # the set-ups and the window's first frames
        bridge.clock = lambda: opens + timedelta(minutes=10)
        bridge.deliver_updates()  # the next frames of the window
        statements: list[str] = []

        def seen(_conn, _cursor, statement, *_args) -> None:
            statements.append(statement)

        engines = {bridge.db.write_engine, bridge.db.read_engine}
        for engine in engines:
            event.listen(engine, "before_cursor_execute", seen)
        try:
            before = len(kws.multicast)
            bridge.outbox.flush_multicast()
            pushed = len(kws.multicast) - before
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", seen)

    route_reads = [s for s in statements if "downlink_routes" in s]
    assert pushed >= 3, "the pass had too few frames to tell"
    assert len(route_reads) == 1, f"{len(route_reads)} reads of the collars' routes for {pushed} frames in one pass"
