"""Field technicians on ChirpStack deliver a signed update through the bridge and a ChirpStack v4
multicast group: set-up and clock sync to each collar's queue, fragments to the group's queue.

The network server is a stand-in on 127.0.0.1 that takes only what ChirpStack v4's API documents
in its Protobuf (tests/fuota_network.py: routes from the `google.api.http` options of
`DeviceService.Enqueue` and `MulticastGroupService.Enqueue` / `Get`, bodies parsed as the call's
request message with no unknown field, `fPort` above 0, the key as a Bearer header). ChirpStack
sends a multicast frame by the group's own Class C settings as soon as it holds it: the stand-in
puts it on the air when it was enqueued.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime

import bridge_builders as b
import httpx
import pytest
from chirpstack_api.api import multicast_group_pb2
from fuota_network import CHIRPSTACK_GROUP_ID, StandInChirpStack, serve, technicians_group
from fuota_twin import HEADERS, KEYS_FOR, Reserve, model_image, open_bridge, start_campaign
from google.protobuf import json_format

from collar_firmware import codec
from collar_firmware.scheduler import airtime_us
from lora_bridge.domain.fuota_delivery import SESSION_INDEX
from lora_bridge.network_server import MulticastFrame, NetworkServerClient
from lora_bridge.settings import BridgeSettings
from lora_bridge.updates.parity_order import counter_at
from lora_bridge.updates.planner import DOWNLINK_DUTY
from simulator import fuota


class ChirpStackReserve(Reserve):
    """The collars heard through ChirpStack's HTTP integration; its queues routed back to them."""

    def __init__(self, fleet, network: StandInChirpStack, seed: int) -> None:
        super().__init__(fleet, network, seed)
        self.by_eui = {b.dev_eui_of(c.device_id).lower(): c for c in fleet}
        self.now_at = 0

    def _advance(self, t_s: int) -> None:
        self.now_at = t_s
        super()._advance(t_s)

    def _post_uplink(self, device_id: str, message: tuple[int, bytes], f_cnt: int, received_at: datetime) -> None:
        body = b.chirpstack_uplink(message, device_id=device_id, f_cnt=f_cnt, received_at=received_at)
        assert self.client.post("/uplinks/chirpstack?event=up", content=body, headers=HEADERS).status_code == 200

    def _route(self) -> None:
        unicast, multicast = self.routed
        for push in self.network.unicast[unicast:]:
            self.by_eui[push["device"]].hal.radio.push_downlink(push["f_port"], push["payload"])
        for frame in self.network.multicast[multicast:]:  # ChirpStack sends what it holds at once
            frame["at"] = datetime.fromtimestamp(self.now_at, UTC)
            self.waiting.append(frame)
        self.routed = (len(self.network.unicast), len(self.network.multicast))


@pytest.fixture
def chirpstack(port):
    with serve(StandInChirpStack(technicians_group()), port) as stand_in:
        yield stand_in


def test_a_new_model_reaches_collars_on_chirpstack_through_its_multicast_group_queue(sqlite_url, chirpstack):
    image, version = model_image()
    fleet = fuota.build_fleet(3, 0.1, 12, KEYS_FOR)
    reserve = ChirpStackReserve(fleet, chirpstack, seed=5)
    with open_bridge(sqlite_url, chirpstack, CHIRPSTACK_GROUP_ID) as bridge:
        campaign = reserve.start(bridge, image, version)
        delivery = campaign["delivery"]
        reserve.through_delivery(campaign, window_step_s=5)  # the bridge's worker flushes every few seconds
        campaign = bridge.campaigns()[0]

    assert chirpstack.refused == [], "every request had the shape ChirpStack's proto documents"
    assert campaign["state"] == "done" and campaign["counts"] == {"updated": 3}, campaign["delivery"]
    assert all(c.collar.model.version == version for c in fleet)
    for c in fleet:  # set-up and clock sync through each collar's own queue
        eui = b.dev_eui_of(c.device_id).lower()
        mine = [codec.decode(p["f_port"], p["payload"], "down")["message"] for p in chirpstack.unicast
                if p["device"] == eui]
        assert mine[:2] == ["mc_class_c_session", "frag_session_setup"] and "app_time_ans" in mine
    frames = chirpstack.multicast
    assert {f["group"] for f in frames} == {CHIRPSTACK_GROUP_ID}
    counters = [codec.decode(201, f["payload"], "down")["index_and_n"] & 0x3FFF for f in frames if f["payload"][0] == 8]
    in_order = [counter_at(k, delivery["nb_frag"]) for k in range(1, len(counters) + 1)]
    assert counters[0] == 1 and counters == in_order and len(set(counters)) == len(counters)
    for before, after in zip(frames, frames[1:], strict=False):  # enqueued no faster than the duty cycle
        airtime_s = airtime_us(len(before["payload"]), delivery["sf"], 125) / 1e6
        assert (after["at"] - before["at"]).total_seconds() >= airtime_s / DOWNLINK_DUTY - 1e-3
        assert before["expires_at"] is not None and before["expires_at"] <= after["expires_at"]
    assert all(f["at"] <= f["expires_at"] for f in frames), "each frame reached ChirpStack before it expired"


def test_the_multicast_request_is_chirpstacks_enqueue_request_and_a_refusal_keeps_the_frame(sqlite_url, chirpstack):
    image, version = model_image()
    with open_bridge(sqlite_url, chirpstack, CHIRPSTACK_GROUP_ID) as bridge:
        bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.status(), device_id="collar-07", f_cnt=1))
        campaign = start_campaign(bridge, image, version)
        opens = campaign["delivery"]["window_opens"]
        bridge.clock = lambda: opens
        bridge.deliver_updates()
        bridge.flush_downlinks()  # due now: the first fragment; the next are not due yet
        assert len(chirpstack.multicast) == 1
        api_key, chirpstack.api_key = chirpstack.api_key, "another-token"
        later = opens.timestamp() + 60
        bridge.clock = lambda: datetime.fromtimestamp(later, UTC)
        bridge.deliver_updates()
        bridge.flush_downlinks()
        assert len(chirpstack.multicast) == 1, "refused (401): nothing counted as sent"
        chirpstack.api_key = api_key
        bridge.clock = lambda: datetime.fromtimestamp(later + 2, UTC)  # the refusal moved its delivery 1 s on
        bridge.flush_downlinks()

    first, second = chirpstack.multicast
    assert codec.decode(201, first["payload"], "down")["index_and_n"] == SESSION_INDEX << 14 | 1
    assert codec.decode(201, second["payload"], "down")["index_and_n"] == SESSION_INDEX << 14 | 2, \
        "the refused frame went next"
    body = json_format.MessageToDict(multicast_group_pb2.EnqueueMulticastGroupQueueItemRequest(
        queue_item=multicast_group_pb2.MulticastGroupQueueItem(multicast_group_id=CHIRPSTACK_GROUP_ID, f_port=201,
                                                               data=first["payload"])))
    assert body["queueItem"]["data"] == base64.b64encode(first["payload"]).decode()


@pytest.mark.parametrize(("body", "why"), [
    ({"queueItem": {"multicastGroupId": CHIRPSTACK_GROUP_ID, "fPort": 201, "data": "CAEA", "confirmed": False}},
     "confirmed is no field of a multicast queue item"),
    ({"queueItem": {"multicastGroupId": CHIRPSTACK_GROUP_ID, "fPort": 0, "data": "CAEA"}}, "fPort 0"),
    ({"queueItem": {"multicastGroupId": CHIRPSTACK_GROUP_ID, "fPort": 201}}, "no data"),
    ({"queueItem": {"multicastGroupId": "another-group", "fPort": 201, "data": "CAEA"}}, "another group"),
    ({"queue_item": {"f_port": "two hundred", "data": "CAEA"}}, "fPort not a number"),
    ({"queueItem": {"fPort": 201, "data": "CAEA", "expiresAt": "tomorrow"}}, "expiresAt not RFC 3339"),
])
def test_the_stand_in_refuses_what_chirpstack_would(chirpstack, body, why):
    import httpx

    answer = httpx.post(f"{chirpstack.url}/api/multicast-groups/{CHIRPSTACK_GROUP_ID}/queue", json=body,
                        headers={"Grpc-Metadata-Authorization": f"Bearer {chirpstack.api_key}"})
    assert answer.status_code == 400, why
    assert chirpstack.multicast == []


def test_a_delivery_to_collars_on_two_network_servers_is_refused_with_its_reason(sqlite_url, chirpstack):
    image, version = model_image()
    with open_bridge(sqlite_url, chirpstack, CHIRPSTACK_GROUP_ID) as bridge:
        bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.status(), device_id="collar-07", f_cnt=1))
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
        with pytest.raises(ValueError, match="one network server"):
            start_campaign(bridge, image, version)
        assert bridge.campaigns() == [], "the campaign is not half made"


def test_a_campaign_over_collars_of_two_chirpstack_tenants_is_refused_with_its_reason(sqlite_url, chirpstack):
    # One ChirpStack serving two reserves as tenants (UplinkEvent deviceInfo.tenantId, a UUID): a
    # multicast group belongs to one tenant's application and holds only that application's devices.
    image, version = model_image()
    tenants = {"collar-07": "5bd5b2e4-0b7e-4a0c-9b7a-6a3c1d1e2f01", "collar-08": "c1f3a9d2-7e4b-4f7a-8c2d-3b9e0a6f5d02"}
    with open_bridge(sqlite_url, chirpstack, CHIRPSTACK_GROUP_ID) as bridge:
        for device, tenant in tenants.items():
            body = json.loads(b.chirpstack_uplink(b.status(), device_id=device, f_cnt=1))
            body["deviceInfo"]["tenantId"] = tenant
            bridge.ingest_chirpstack_uplink(json.dumps(body).encode())
        with pytest.raises(ValueError, match="2 network tenants"):
            start_campaign(bridge, image, version)
        assert bridge.campaigns() == [], "the campaign is not half made"
    assert chirpstack.multicast == []


@pytest.mark.parametrize(("change", "says"), [
    ({"dr": 5}, "DR5, not the plan's DR3 \\(SF9\\)"),
    ({"frequency": 868_100_000}, "frequency 868100000 Hz, not 869525000"),
    ({"group_type": multicast_group_pb2.MulticastGroupType.CLASS_B}, "type CLASS_B, not CLASS_C"),
    ({}, "could not read the ChirpStack multicast group .*404"),  # deleted in ChirpStack meanwhile
])
def test_a_technicians_group_that_does_not_send_as_the_plan_does_refuses_the_campaign(sqlite_url, chirpstack,
                                                                                     change, says):
    image, version = model_image()
    for field, value in change.items():
        setattr(chirpstack.group, field, value)
    if not change:
        chirpstack.groups.clear()
    with open_bridge(sqlite_url, chirpstack, CHIRPSTACK_GROUP_ID) as bridge:
        bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.status(), device_id="collar-07", f_cnt=1))
        with pytest.raises(ValueError, match=says):
            start_campaign(bridge, image, version)
        assert bridge.campaigns() == [], "nothing half made"
    assert chirpstack.unicast == [] and chirpstack.multicast == []


def multicast_frame_answered(f_cnt: object, caplog) -> tuple[list[str], list[str]]:
    """Send one multicast frame to a ChirpStack that queues it and answers `{"fCnt": f_cnt}`; return the paths
    posted to and the warnings the bridge logged."""
    posted = []

    def chirpstack(request: httpx.Request) -> httpx.Response:
        posted.append(request.url.path)
        return httpx.Response(200, json={"fCnt": f_cnt})

    settings = BridgeSettings(network_server_url="http://chirpstack.invalid", network_server_api_key="key")
    client = NetworkServerClient(settings, httpx.Client(transport=httpx.MockTransport(chirpstack)))
    frame = MulticastFrame(CHIRPSTACK_GROUP_ID, None, (), 201, b"\x08\x01", datetime(2026, 3, 1, tzinfo=UTC),
                           network="chirpstack")
    with caplog.at_level(logging.WARNING, logger="lora_bridge.network_server"):
        client.send_multicast(frame)  # queued: no error
    client.close()
    return posted, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("f_cnt", ["²", "٣", "-1", "", {"n": 3}, True, 17.5, "4294967296", " 17"])
def test_a_chirpstack_answer_whose_frame_counter_is_not_ascii_digits_does_not_make_the_bridge_send_a_fragment_twice(
        f_cnt, caplog):
    """ChirpStack queues the frame, then answers with its fCnt. Until 5 December '²' passed `isdigit` and
    `int()` then raised after the frame was queued: the outbox left it "sending", and once its lease ran out
    pushed the same fragment again, airtime spent twice."""
    posted, warned = multicast_frame_answered(f_cnt, caplog)
    assert posted == [f"/api/multicast-groups/{CHIRPSTACK_GROUP_ID}/queue"], "queued once"
    assert warned == [
        f"ChirpStack group {CHIRPSTACK_GROUP_ID} queued the frame and answered fCnt {f_cnt!r}, not a frame counter: "
        "ignored"]


@pytest.mark.parametrize("f_cnt", [17, "17", 17.0, "0"])
def test_a_chirpstack_answer_whose_frame_counter_is_a_whole_number_raises_no_warning_for_the_technician(f_cnt,
                                                                                                     caplog):
    """ChirpStack's JSON gateway writes the uint32 fCnt as a number; the Protobuf JSON mapping lets any writer put
    it as decimal text or as a number with a zero fraction (17.0, as a proxy that re-encodes JSON writes it). All
    are a frame counter, read by the bridge's one reading of a network server's whole numbers: the technician
    watching the log is not told ChirpStack answered something that is not one."""
    posted, warned = multicast_frame_answered(f_cnt, caplog)
    assert posted == [f"/api/multicast-groups/{CHIRPSTACK_GROUP_ID}/queue"] and warned == []
