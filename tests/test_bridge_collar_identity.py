"""Which collar sent a message: its DevEUI; for a device without one (a The Things Stack ABP device of
LoRaWAN 1.0.x, whose DevEUI is optional), its name within its application and tenant. A TTS device id
is unique only within its application (docs: concepts/architecture/id-eui-constraints), so two
reserves' applications may both hold an ABP `collar-1`; they had been filed as one collar, whose
frame counters then jumped between the two (a false session reset, uplinks counted lost) and whose
map showed one animal wandering between two parks."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import bridge_builders as b
import network_fixtures as nf

from lora_bridge.adapters.mqtt import route

# The Things Stack data-formats uplink (nf.TTS_DATA_FORMATS) of an ABP device: end_device_ids without
# dev_eui and join_eui (an ABP device registered without a DevEUI has neither), and the uplink's
# `network_ids` as the API reference's ApplicationUplink documents it (net_id, tenant_id, cluster_id,
# cluster_address: nf.TTS_API_APPLICATION_UP).
NETWORK_IDS = {"net_id": "000013", "tenant_id": "kws", "cluster_id": "eu1", "cluster_address": "eu1.cloud.thethings.industries"}


def abp_uplink(application_id: str, f_cnt: int, lat: float, *, tenant_id: str | None = "kws",
               device_id: str = "collar-1") -> bytes:
    """A documented TTS uplink of ABP device device_id in application_id: a status fix at lat."""
    body = nf.TTS["uplink_message"].copy()
    body["end_device_ids"] = {"device_id": device_id, "application_ids": {"application_id": application_id},
                              "dev_addr": "260B0001"}
    message = body["uplink_message"]
    message["f_cnt"] = f_cnt
    message["frm_payload"] = base64.b64encode(b.status(lat=lat)[1]).decode()
    message["network_ids"] = {**NETWORK_IDS, "tenant_id": tenant_id} if tenant_id else {
        k: v for k, v in NETWORK_IDS.items() if k != "tenant_id"}
    heard = b.rfc3339(b.T0 + timedelta(minutes=f_cnt))
    body["received_at"] = message["received_at"] = heard
    body["correlation_ids"] = [f"as:up:{application_id}:{f_cnt}"]
    return json.dumps(body).encode()


def collars(bridge) -> dict[str, tuple]:
    """device_id -> (label, frames received, frames lost, last FCnt) of every collar."""
    return {d.device_id: (d.label, d.uplinks_received, d.uplinks_lost, d.last_f_cnt) for d in bridge.devices()}


def latitudes(bridge) -> dict[str, float]:
    """device_id -> the latitude of the collar's latest fix on the ranger's map."""
    return {fix.device_id: round(fix.lat, 2) for fix in bridge.positions_at(viewer=b.RANGER)}


def test_two_abp_collars_with_the_same_name_in_two_applications_stay_two_collars(client, bridge):
    # The northern park's collar-1 is at FCnt 100, the southern park's (another application) at 3.
    north = [abp_uplink("park-north", f_cnt, -2.5) for f_cnt in (100, 101)]
    south = [abp_uplink("park-south", f_cnt, -3.5) for f_cnt in (3, 4)]

    replies = [client.post("/uplinks/tts", content=body, headers=b.HEADERS) for body in (north[0], south[0],
                                                                                          north[1], south[1])]

    assert [(r.status_code, r.json()["status"]) for r in replies] == [(200, "processed")] * 4
    assert [r.json()["device_id"] for r in replies] == ["collar-1", "park-south/collar-1"] * 2
    # Each its own frame counter: no session started by the other's lower FCnt, no frame lost.
    assert collars(bridge) == {"collar-1": ("collar-1", 2, 0, 101), "park-south/collar-1": ("collar-1", 2, 0, 4)}
    assert {d.device_id: d.frame_loss_pct for d in bridge.devices()} == {"collar-1": 0.0, "park-south/collar-1": 0.0}
    assert latitudes(bridge) == {"collar-1": -2.5, "park-south/collar-1": -3.5}


def test_the_same_application_id_in_two_tenants_holds_two_collars(bridge):
    # Two TTS Cloud tenants both call their application `tembo`: the MQTT topics say
    # `v3/tembo@kws/...` and `v3/tembo@sanparks/...` (integrations/mqtt: {application id}@{tenant id});
    # the uplinks' network_ids name the tenant too.
    for tenant, f_cnt, lat in (("kws", 50, -2.5), ("sanparks", 7, -24.0), ("kws", 51, -2.5), ("sanparks", 8, -24.0)):
        routed = route(f"v3/tembo@{tenant}/devices/collar-1/up")
        body = abp_uplink("tembo", f_cnt, lat, tenant_id=tenant)
        result = bridge.ingest_network_message(routed.network, routed.event, body, path_ids=routed.path_ids)
        assert result.status == "processed"

    assert collars(bridge) == {"collar-1": ("collar-1", 2, 0, 51), "tembo@sanparks/collar-1": ("collar-1", 2, 0, 8)}
    assert latitudes(bridge) == {"collar-1": -2.5, "tembo@sanparks/collar-1": -24.0}


def test_a_tenant_named_only_by_the_mqtt_topic_still_tells_the_collars_apart(bridge):
    # A TTS body whose uplink carries no network_ids (an older stack): the topic's `@tenant` says it.
    for tenant, f_cnt in (("kws", 50), ("sanparks", 7)):
        routed = route(f"v3/tembo@{tenant}/devices/collar-1/up")
        bridge.ingest_network_message(routed.network, routed.event, abp_uplink("tembo", f_cnt, -2.5, tenant_id=None),
                                      path_ids=routed.path_ids)

    assert set(collars(bridge)) == {"collar-1", "tembo@sanparks/collar-1"}


def test_a_field_masked_body_of_the_second_abp_collar_is_filed_under_it(client, bridge):
    # A webhook whose field mask leaves out end_device_ids: the path variables name the application
    # and device (integrations/webhooks/path-variables), and they name the southern collar.
    client.post("/uplinks/tts", content=abp_uplink("park-north", 100, -2.5), headers=b.HEADERS)
    client.post("/uplinks/tts", content=abp_uplink("park-south", 3, -3.5), headers=b.HEADERS)
    masked = json.loads(abp_uplink("park-south", 4, -3.5))
    del masked["end_device_ids"]

    reply = client.post("/uplinks/tts/park-south/collar-1", content=json.dumps(masked), headers=b.HEADERS)

    assert (reply.json()["status"], reply.json()["device_id"]) == ("processed", "park-south/collar-1")
    assert collars(bridge)["park-south/collar-1"] == ("collar-1", 2, 0, 4)


def test_an_abp_collar_named_like_an_otaa_collar_of_another_application_is_not_given_its_deveui(client, bridge):
    # The northern park's collar-1 joined over the air (DevEUI given); the southern park's is ABP.
    otaa = json.loads(abp_uplink("park-north", 100, -2.5))
    otaa["end_device_ids"]["dev_eui"] = "70B3D57ED0000C01"

    client.post("/uplinks/tts", content=json.dumps(otaa), headers=b.HEADERS)
    client.post("/uplinks/tts", content=abp_uplink("park-south", 3, -3.5), headers=b.HEADERS)

    assert {d.device_id: d.dev_eui for d in bridge.devices()} == {"collar-1": "70B3D57ED0000C01",
                                                                  "park-south/collar-1": None}
    assert latitudes(bridge) == {"collar-1": -2.5, "park-south/collar-1": -3.5}


def test_a_collar_heard_before_it_had_a_scope_is_still_itself(bridge):
    # A collar stored before the bridge kept tenants (no network_scope) and an uplink that names one:
    # the same collar, which then remembers its tenant.
    first = json.loads(abp_uplink("park-north", 100, -2.5))
    del first["uplink_message"]["network_ids"]
    bridge.ingest_network_message("tts", None, json.dumps(first).encode())
    bridge.ingest_network_message("tts", None, abp_uplink("park-north", 101, -2.5))

    assert collars(bridge) == {"collar-1": ("collar-1", 2, 0, 101)}


def test_a_delivery_report_of_the_second_abp_collar_is_recorded_for_it(client, bridge):
    # TTS data-formats `downlink_failed`: its end_device_ids name the device and application only.
    client.post("/uplinks/tts", content=abp_uplink("park-north", 100, -2.5), headers=b.HEADERS)
    client.post("/uplinks/tts", content=abp_uplink("park-south", 3, -3.5), headers=b.HEADERS)
    failed = nf.TTS["downlink_failed"].copy()
    failed["end_device_ids"] = {"device_id": "collar-1", "application_ids": {"application_id": "park-south"}}

    reply = client.post("/uplinks/tts", content=json.dumps(failed), headers=b.HEADERS)

    assert (reply.json()["status"], reply.json()["device_id"]) == ("recorded", "park-south/collar-1")
    (event,) = bridge.network_events(kind="downlink_failed", viewer=b.RANGER)
    assert event["device_id"] == "park-south/collar-1"
