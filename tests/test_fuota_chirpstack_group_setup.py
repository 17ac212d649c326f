"""Field technicians on ChirpStack start a delivery and the bridge makes the multicast group itself:
`MulticastGroupService.Create` with the group's McAddr and session keys, `AddDevice` for every collar,
`AddGateway` for the gateways that hear them; then it sets the group up on each collar (TS005).

The stand-in on 127.0.0.1 takes only what ChirpStack v4's API documents in the pinned chirpstack-api
(tests/fuota_network.py: `api/multicast_group.proto` served as JSON by its REST gateway, the values
as the proto's comments describe them), and each answer the bridge gets is tried broken too.
"""

from __future__ import annotations

import uuid

import bridge_builders as b
import httpx
import pytest
from chirpstack_api.api import multicast_group_pb2
from chirpstack_api.common import common_pb2
from fuota_network import MC_ADDR_HEX, StandInChirpStack, gen_app_key, serve, write_key_file
from fuota_twin import KEY, KEYS_FOR, model_image, start_campaign
from test_update_campaigns import collar_lines, updates_page

from collar_firmware import codec
from lora_bridge.domain import fuota_delivery
from lora_bridge.errors import DownlinkError
from lora_bridge.network_server import ChirpStackGroup, NetworkServerClient
from lora_bridge.settings import BridgeSettings
from lora_bridge.store.tables import FuotaSession
from lora_bridge.updates import multicast_keys
from simulator import fuota


def sent_down(p: dict) -> dict:
    """A downlink the bridge pushed, decoded: the collars here report firmware 1.2.3, which speaks TS004 v2.0.0, so
    their FragSessionSetupReq is v1.0.0's 11 bytes, then SessionCnt (2) and MIC (4) (lora_bridge/updates/frag_v2.py)."""
    payload = p["payload"]
    if p["f_port"] == 201 and payload[0] == 0x02 and len(payload) == 17:
        return {**codec.decode(201, payload[:11], "down"), "session_cnt": int.from_bytes(payload[11:13], "little")}
    return codec.decode(p["f_port"], payload, "down")


@pytest.fixture
def chirpstack(port):
    with serve(StandInChirpStack(), port) as stand_in:
        yield stand_in


def open_bridge(store_url, chirpstack, keys):
    return b.fresh_bridge(store_url, network_server_url=chirpstack.url, network_server_api_key=chirpstack.api_key,
                          outbox_worker=False, collar_keys_file=str(keys), fuota_multicast_addr=MC_ADDR_HEX,
                          signed_by=(KEY,))


def start_delivery(bridge, names: list[str]) -> dict:
    """Hear each collar once (each through a gateway of its own), start a campaign with a signed model
    and let the bridge make the ChirpStack group and push the set-ups; the campaign as created."""
    image, version = model_image()
    for i, name in enumerate(names):
        bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.status(), device_id=name, f_cnt=1,
                                                            gateways=(f"0016c001ff10a23{i}",)))
    campaign = start_campaign(bridge, image, version)
    bridge.deliver_updates()
    bridge.flush_downlinks()
    return campaign


def test_the_bridge_creates_the_chirpstack_group_with_its_collars_gateways_and_keys(sqlite_url, chirpstack, tmp_path):
    names = ["collar-07", "collar-08"]
    keys = write_key_file(tmp_path, names)
    with open_bridge(sqlite_url, chirpstack, keys) as bridge:
        campaign = start_delivery(bridge, names)

    assert chirpstack.refused == []
    ((group_id, made),) = chirpstack.groups.items()
    group = made["group"]
    expected = multicast_keys.load(keys).group(int(MC_ADDR_HEX, 16), fuota_delivery.group_label(campaign["id"]))
    assert (group.mc_addr, group.mc_app_s_key, group.mc_nwk_s_key) == (
        MC_ADDR_HEX, expected.app_s_key.hex(), expected.nwk_s_key.hex())
    assert group.application_id == "0b8e8ae8-1f21-4b5d-9d2a-ffcb57c1a0a1" and group.region == common_pb2.Region.EU868
    assert (group.frequency, group.dr, group.f_cnt) == (869_525_000, 12 - campaign["delivery"]["sf"], 0)
    assert group.class_c_scheduling_type == multicast_group_pb2.MulticastGroupSchedulingType.DELAY
    assert sorted(made["devices"]) == sorted(b.dev_eui_of(n).lower() for n in names)
    assert sorted(made["gateways"]) == ["0016c001ff10a230", "0016c001ff10a231"]
    # the delivery sends through the group ChirpStack made, and sets it up on each collar first
    with open_bridge(sqlite_url, chirpstack, keys) as bridge, bridge.db.read() as session:
        row = session.get(FuotaSession, campaign["id"])
        assert (row.group_id, row.mc_addr) == (group_id, int(MC_ADDR_HEX, 16))
    first = [sent_down(p)["message"] for p in chirpstack.unicast]
    assert first.count("mc_group_setup") == 2 and first.index("mc_group_setup") < first.index("mc_class_c_session")


@pytest.mark.parametrize(("call", "status"), [("Create", 500), ("AddDevice", 400), ("AddGateway", 503),
                                               ("bad key", 401), ("no id", 200)])
def test_a_group_chirpstack_refuses_leaves_no_campaign_and_no_half_made_group(sqlite_url, chirpstack, tmp_path,
                                                                              call, status):
    image, version = model_image()
    keys = write_key_file(tmp_path, ["collar-07"])
    with open_bridge(sqlite_url, chirpstack, keys) as bridge:
        bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.status(), device_id="collar-07", f_cnt=1))
        if call == "bad key":
            chirpstack.api_key = "another-token"
        elif call == "no id":
            chirpstack.create_answer = {"multicastGroup": {}}
        else:
            chirpstack.fail[{"AddDevice": "devices", "AddGateway": "gateways"}.get(call, call)] = status
        with pytest.raises(ValueError, match="ChirpStack did not create the multicast group"):
            start_campaign(bridge, image, version)
        assert bridge.campaigns() == []
    if call in ("AddDevice", "AddGateway"):
        assert chirpstack.groups == {}, "the half-made group was deleted again"


def test_the_bridge_makes_groups_on_chirpstack_only_and_needs_its_key_file(sqlite_url, chirpstack, tmp_path):
    image, version = model_image()
    keys = write_key_file(tmp_path, ["collar-01"])
    with open_bridge(sqlite_url, chirpstack, keys) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
        with pytest.raises(ValueError, match="ChirpStack only"):
            start_campaign(bridge, image, version)
    with b.fresh_bridge(sqlite_url, network_server_url=chirpstack.url, network_server_api_key=chirpstack.api_key,
                        outbox_worker=False, fuota_multicast_addr=MC_ADDR_HEX, signed_by=(KEY,)) as bridge:
        bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.status(), device_id="collar-07", f_cnt=1))
        with pytest.raises(ValueError, match="TEMBO_COLLAR_KEYS_FILE"):
            start_campaign(bridge, image, version)
    assert chirpstack.groups == {}


def group(**changes) -> ChirpStackGroup:
    keys = multicast_keys.GroupKeys(int(MC_ADDR_HEX, 16), bytes(16), bytes(range(16)), bytes(range(16, 32)))
    values = {"name": "tembo-campaign-1", "application_id": "0b8e8ae8-1f21-4b5d-9d2a-ffcb57c1a0a1", "keys": keys,
              "dr": 3, "frequency_hz": 869_525_000, "dev_euis": ["70b3d57ed0000001"],
              "gateway_ids": ["0016c001ff10a235"]}
    return ChirpStackGroup(**{**values, **changes})


@pytest.mark.parametrize(("changes", "says"), [
    ({"application_id": ""}, "application id"),
    ({"dev_euis": []}, "DevEUIs"),
    ({"gateway_ids": []}, "gateway"),
    ({"application_id": "tembo"}, "400"),  # not a UUID: ChirpStack refuses
    ({"dev_euis": ["70b3"]}, "400"),
])
def test_broken_group_inputs_are_refused_before_or_by_chirpstack(chirpstack, changes, says):
    settings = BridgeSettings(network_server_url=chirpstack.url, network_server_api_key=chirpstack.api_key)
    client = NetworkServerClient(settings, httpx.Client(timeout=5))
    with pytest.raises(DownlinkError, match=says):
        client.create_chirpstack_multicast_group(group(**changes))
    client.close()
    assert chirpstack.groups == {}
    assert "000102030405060708090a0b0c0d0e0f" not in repr(group()), "keys never in a repr"


def test_no_network_server_no_group():
    client = NetworkServerClient(BridgeSettings(), httpx.Client(timeout=1))
    with pytest.raises(DownlinkError, match="TEMBO_NETWORK_SERVER_URL"):
        client.create_chirpstack_multicast_group(group())
    client.close()


def test_the_collars_in_the_twin_take_the_group_chirpstack_was_given(sqlite_url, chirpstack, tmp_path):
    """The session keys given to ChirpStack and the wrapped key each collar got derive the same group."""
    image, version = model_image()
    fleet = fuota.build_fleet(1, 0.0, 12, KEYS_FOR)
    keys = write_key_file(tmp_path, [fleet[0].device_id])
    fleet[0].hal.radio.provision(gen_app_key(0))
    with open_bridge(sqlite_url, chirpstack, keys) as bridge:
        bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.status(), device_id=fleet[0].device_id, f_cnt=1))
        start_campaign(bridge, image, version)
        bridge.deliver_updates()
        bridge.flush_downlinks()
    setup = next(p for p in chirpstack.unicast if p["payload"][0] == codec.tag_of("mc_group_setup"))
    fleet[0].hear(setup["f_port"], setup["payload"])
    fleet[0].collar.step()
    ((made,),) = [[g["group"] for g in chirpstack.groups.values()]]
    radio = fleet[0].hal.radio
    app_s, nwk_s = radio.group_session_keys[0]
    assert (app_s.hex(), nwk_s.hex()) == (made.mc_app_s_key, made.mc_nwk_s_key)


def test_an_ended_campaigns_group_is_deleted_at_chirpstack_and_on_the_collars_even_when_chirpstack_refuses_first(
        sqlite_url, chirpstack, tmp_path):
    from datetime import timedelta

    names = ["collar-07", "collar-08"]
    keys = write_key_file(tmp_path, names)
    with open_bridge(sqlite_url, chirpstack, keys) as bridge:
        campaign = start_delivery(bridge, names)
        ((group_id, _made),) = chirpstack.groups.items()
        bridge.steer_campaign(campaign["id"], "abort", "tech")
        chirpstack.fail["Delete"] = 503
        now = bridge.clock()
        bridge.deliver_updates(now)  # ChirpStack refuses: recorded, the campaign's close goes on
        bridge.flush_downlinks()
        refused = bridge.campaigns()[0]
        chirpstack.groups["00000000-0000-4000-8000-000000000000"] = {}  # another technician's group stays
        bridge.deliver_updates(now + timedelta(seconds=30))  # not yet due again
        still = list(chirpstack.groups)
        bridge.deliver_updates(now + timedelta(seconds=61))
        bridge.deliver_updates(now + timedelta(seconds=3600))  # deleted once, never again
        ended = bridge.campaigns()[0]

    network = refused["delivery"]["network_group"]
    assert refused["state"] == "aborted" and refused["delivery"]["state"] == "closed"
    assert (network["id"], network["created"], network["deleted_at"]) == (group_id, True, None)
    assert network["delete_attempts"] == 1 and "503" in network["delete_error"]
    assert group_id in still
    network = ended["delivery"]["network_group"]
    assert network["deleted_at"] is not None and network["delete_error"] is None and network["delete_attempts"] == 2
    assert chirpstack.deleted == [group_id] and group_id not in chirpstack.groups
    assert list(chirpstack.groups) == ["00000000-0000-4000-8000-000000000000"]
    # each collar was told to delete the group (TS005 McGroupDeleteReq, group 0), after its set-up
    told = [(p["device"], sent_down(p)) for p in chirpstack.unicast]
    deletes = [(d, m["group"]) for d, m in told if m["message"] == "mc_group_delete"]
    assert sorted(deletes) == sorted((b.dev_eui_of(n).lower(), 0) for n in names)
    assert chirpstack.refused == []


def test_a_technician_sees_why_a_collar_got_unicast_when_the_campaign_closed_and_its_network_group(
        sqlite_url, chirpstack, tmp_path, monkeypatch):
    from datetime import timedelta

    names = ["collar-07", "collar-08"]
    keys = write_key_file(tmp_path, names)
    with open_bridge(sqlite_url, chirpstack, keys) as bridge:
        campaign = start_delivery(bridge, names)
        # TS005 McGroupSetupAns: CID 02 | IDerror (bit 2) | McGroupID 0: collar-08 refuses the group
        bridge.ingest_chirpstack_uplink(b.chirpstack_uplink((200, bytes.fromhex("0204")), device_id="collar-08",
                                                            f_cnt=2))
        bridge.process_pending()
        ((group_id, _made),) = chirpstack.groups.items()
        bridge.steer_campaign(campaign["id"], "abort", "tech")
        chirpstack.fail["Delete"] = 503
        ended = bridge.clock()
        bridge.deliver_updates(ended)  # the campaign closes; ChirpStack refuses the group's deletion once
        error = bridge.campaigns()[0]["delivery"]["network_group"]["delete_error"]
    monkeypatch.setenv("TEMBO_DATABASE_URL", sqlite_url)
    app = updates_page(sqlite_url, monkeypatch)  # as a field technician sees it
    because = {line.split(" · ")[0]: line.partition("unicast because ")[2] for line in collar_lines(app, campaign["id"])}
    assert because == {"collar-07": "", "collar-08": "refused the multicast group (McGroupSetupAns IDerror)"}
    line = next(c.value for c in app.caption if c.value.startswith("Network multicast group"))
    assert line == (f"Network multicast group {group_id} (made by the bridge for this campaign); campaign ended "
                    f"{ended:%Y-%m-%d %H:%M} UTC, group NOT yet deleted at the network server after 1 try: {error}")
    assert "503" in error

    with open_bridge(sqlite_url, chirpstack, keys) as bridge:
        bridge.deliver_updates(ended + timedelta(seconds=61))  # the bridge tries again: deleted
    app.run()
    line = next(c.value for c in app.caption if c.value.startswith("Network multicast group"))
    assert line.endswith(f"group deleted at the network server {ended + timedelta(seconds=61):%Y-%m-%d %H:%M} UTC")
    assert chirpstack.deleted == [group_id]


def test_a_group_chirpstack_no_longer_has_counts_as_deleted_and_a_broken_id_is_refused(chirpstack):
    settings = BridgeSettings(network_server_url=chirpstack.url, network_server_api_key=chirpstack.api_key)
    client = NetworkServerClient(settings, httpx.Client(timeout=5))
    client.delete_chirpstack_multicast_group(str(uuid.uuid4()))  # 404: already gone
    with pytest.raises(DownlinkError, match="400"):
        client.delete_chirpstack_multicast_group("not-a-uuid")
    chirpstack.api_key = "another-token"
    with pytest.raises(DownlinkError, match="401"):
        client.delete_chirpstack_multicast_group(str(uuid.uuid4()))
    client.close()
    assert chirpstack.deleted == []


def test_each_call_to_chirpstacks_groups_is_logged_as_what_it_did(chirpstack, caplog):
    import logging

    settings = BridgeSettings(network_server_url=chirpstack.url, network_server_api_key=chirpstack.api_key)
    client = NetworkServerClient(settings, httpx.Client(timeout=5))
    with caplog.at_level(logging.INFO, logger="lora_bridge.network_server"):
        group_id = client.create_chirpstack_multicast_group(group())
        client.chirpstack_multicast_group(group_id)
        client.delete_chirpstack_multicast_group(group_id)
        client.delete_chirpstack_multicast_group(group_id)  # 404: ChirpStack no longer has it
    client.close()
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "lora_bridge.network_server"]
    assert said == [
        ("INFO", "ChirpStack multicast group tembo-campaign-1 created"),
        ("INFO", f"collar 70b3d57ed0000001 added to ChirpStack multicast group {group_id}"),
        ("INFO", f"gateway 0016c001ff10a235 added to ChirpStack multicast group {group_id}"),
        ("INFO", f"ChirpStack multicast group tembo-campaign-1 ready id={group_id} collars=1 gateways=1"),
        ("INFO", f"ChirpStack multicast group {group_id} read"),
        ("INFO", f"ChirpStack multicast group {group_id} deleted"),
        ("WARNING", f"ChirpStack multicast group {group_id} was already gone (network server answered 404)"),
    ]


def test_a_campaign_aborted_before_its_set_up_left_does_not_delete_the_collars_factory_group(sqlite_url, chirpstack,
                                                                                             tmp_path):
    image, version = model_image()
    keys = write_key_file(tmp_path, ["collar-07"])
    with open_bridge(sqlite_url, chirpstack, keys) as bridge:
        bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.status(), device_id="collar-07", f_cnt=1))
        campaign = start_campaign(bridge, image, version)
        bridge.deliver_updates()  # the set-up is queued, not yet pushed
        bridge.steer_campaign(campaign["id"], "abort", "tech")
        bridge.deliver_updates()
        bridge.flush_downlinks()
    sent = [sent_down(p)["message"] for p in chirpstack.unicast]
    assert sent == ["mc_group_status"], "the dropped set-up is not followed by a delete of group 0"
    assert chirpstack.groups == {} and len(chirpstack.deleted) == 1
