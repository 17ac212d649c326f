"""Field technicians deliver a signed update through the real bridge: its webhook hears the collars,
its outbox pushes set-up, clock sync and fragments to a network server, the collars (the twin,
running the real firmware) rebuild, verify and install it and say so.

The network server is a stand-in started on 127.0.0.1 that accepts only what The Things Stack's
documentation shows (tests/fuota_network.py: the downlink push, and `class_b_c` for a multicast group).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import bridge_builders as b
import pytest
from fuota_network import GROUP, StandInTheThingsStack, serve, tts_multicast_end_device
from fuota_twin import (
    HEADERS,
    KEY,
    KEYS_FOR,
    Reserve,
    model_image,
    one_collar_campaign,
    open_bridge,
    start_campaign,
)
from sqlalchemy import select, update
from starlette.testclient import TestClient
from test_update_campaigns import collar_lines, updates_page

from collar_firmware import codec
from collar_firmware.scheduler import airtime_us
from lora_bridge.adapters.webhook import create_app
from lora_bridge.domain.fuota_delivery import SESSION_INDEX
from lora_bridge.errors import DownlinkError
from lora_bridge.network_server import MulticastFrame, NetworkServerClient, RouteHint
from lora_bridge.settings import BridgeSettings
from lora_bridge.store.tables import Downlink, DownlinkTransmission, MulticastDownlink
from lora_bridge.store.utc import as_utc, utc_now
from lora_bridge.updates.parity_order import counter_at
from lora_bridge.updates.planner import DOWNLINK_DUTY
from simulator import fuota


@pytest.fixture
def network(port):
    with serve(StandInTheThingsStack(), port) as stand_in:
        yield stand_in


def test_a_new_model_reaches_every_collar_through_the_bridge_and_resumes_after_a_restart(sqlite_url, network):
    image, version = model_image()
    fleet = fuota.build_fleet(3, 0.1, 11, KEYS_FOR)
    fleet[2].loss = 0.35  # one collar in a valley hears much less than the bridge expects
    reserve = Reserve(fleet, network, seed=4)
    with open_bridge(sqlite_url, network) as bridge:
        campaign = reserve.start(bridge, image, version)  # after the collars' boot status: the bridge knows them
        delivery = campaign["delivery"]
        assert delivery["state"] == "setup" and delivery["nb_frag"] * delivery["frag_size"] >= len(image)
        opens = delivery["window_opens"]
        reserve.run_until(int(opens.timestamp()) - 600, step_s=600)  # set-up after the collars' uplinks
        reserve.run_until(int(opens.timestamp()) + 60)
        first_half = len(network.multicast)
    assert first_half > 0, "the window opened and fragments went to the group"

    with open_bridge(sqlite_url, network) as bridge:  # the bridge restarts in the middle of the window
        reserve.attach(bridge)
        reserve.run_until(reserve.now_s() + 3600)  # the rest of the window and the repair rounds
        reserve.run_until(reserve.now_s() + 5 * 3600, step_s=600)  # signature checks, installs, acks
        campaign = bridge.campaigns()[0]
        versions = {v["device_id"]: v for v in bridge.fleet_versions()}

    assert campaign["state"] == "done" and campaign["counts"] == {"updated": 3}, campaign["delivery"]
    assert all(c.collar.model.version == version for c in fleet)
    assert {v["update"]["outcome"] for v in versions.values()} == {"installed"}, "status says so too"

    # set-up and clock sync, unicast, within fair use
    for c in fleet:
        mine = [codec.decode(p["f_port"], p["payload"], "down")["message"] for p in network.unicast
                if p["device"] == c.device_id]
        assert mine[:2] == ["mc_class_c_session", "frag_session_setup"] and "app_time_ans" in mine
        assert len(mine) <= 10, "fair use: at most 10 downlinks a day"
        assert any(m["message"] == "app_time_req" for d, m in reserve.heard if d == c.device_id)
    # fragments to the group, through the gateway that hears the herd, spaced by the duty cycle
    frames = network.multicast
    assert {f["group"] for f in frames} == {GROUP} and {tuple(f["gateways"]) for f in frames} == {("gw-north",)}
    counters = [codec.decode(201, f["payload"], "down")["index_and_n"] & 0x3FFF for f in frames if f["payload"][0] == 8]
    in_order = [counter_at(k, delivery["nb_frag"]) for k in range(1, len(counters) + 1)]
    assert counters == in_order and len(set(counters)) == len(counters), "resumed in the send order, nothing twice"
    assert max(counters) > delivery["nb_frag"] and counters[0] == 1
    for before, after in zip(frames, frames[1:], strict=False):
        airtime_s = airtime_us(len(before["payload"]), delivery["sf"], 125) / 1e6
        assert (after["at"] - before["at"]).total_seconds() >= airtime_s / DOWNLINK_DUTY - 1e-3
    # every collar says what it still needs; the one that heard less asked for more: a repair round
    status_requests = [f for f in frames if f["payload"][0] == codec.tag_of("frag_session_status")]
    answers = [(d, m["missing"]) for d, m in reserve.heard if m["message"] == "frag_session_status_ans"]
    assert status_requests and {d for d, _ in answers} == {c.device_id for c in fleet}
    asked = [codec.decode(201, f["payload"], "down")["participants"] for f in status_requests]
    assert asked == [1] + [0] * (len(asked) - 1), "every collar answers the first request, then those missing"
    assert any(missing > 0 for d, missing in answers if d == fleet[2].device_id)
    assert campaign["delivery"]["rounds"] >= 1 and campaign["delivery"]["collars"][fleet[2].device_id]["loss"] > 0.2
    assert network.refused == [], "every push had the shape The Things Stack documents"


def test_a_collar_asking_the_time_gets_the_correction_to_the_networks_clock(sqlite_url, network):
    heard = b.T0 + timedelta(seconds=2)
    request = codec.encode_packet("app_time_req", {"device_time_gps_s": codec.gps_from_unix(int(heard.timestamp()) - 42),
                                                   "ans_required": 1, "token": 5})
    with open_bridge(sqlite_url, network) as bridge, TestClient(create_app(bridge)) as client:
        reply = client.post("/uplinks/tts", content=b.tts_uplink(request, f_cnt=3, received_at=heard), headers=HEADERS)
        bridge.process_pending()
        bridge.flush_downlinks()

    assert reply.status_code == 200
    (answer,) = network.unicast
    assert (answer["device"], answer["f_port"]) == ("collar-01", 202)
    assert codec.decode(202, answer["payload"], "down") == {"message": "app_time_ans", "port": 202,
                                                             "correction_s": 42, "rfu": 0, "token": 5}


def test_a_refused_or_unroutable_multicast_waits_and_goes_when_the_network_takes_it(sqlite_url, network):
    with open_bridge(sqlite_url, network) as bridge:
        _, opens = one_collar_campaign(bridge)
        bridge.clock = lambda: opens
        bridge.deliver_updates()
        network.refuse_next = 1
        bridge.flush_downlinks()
        assert network.multicast == [], "the network server refused: nothing counted as sent"
        bridge.flush_downlinks()
        first = list(network.multicast)

    assert first and codec.decode(201, first[0]["payload"], "down")["index_and_n"] == SESSION_INDEX << 14 | 1
    assert first[0]["at"] >= opens


def test_the_bridge_stops_multicasting_when_the_collars_close_their_class_c_window(sqlite_url, network):
    with open_bridge(sqlite_url, network) as bridge:
        _, opens = one_collar_campaign(bridge)
        bridge.clock = lambda: opens
        bridge.deliver_updates()
        bridge.flush_downlinks()
        (setup,) = [codec.decode(p["f_port"], p["payload"], "down") for p in network.unicast
                    if p["f_port"] == 200]
        closes = opens + timedelta(seconds=1 << setup["timeout_log2_s"])  # what the collars were told
        bridge.clock = lambda: closes
        bridge.deliver_updates()
        bridge.flush_downlinks()
        state = bridge.campaigns()[0]["delivery"]["state"]

    assert codec.unix_from_gps(setup["session_time_gps_s"]) == opens.timestamp()
    assert 1 << setup["timeout_log2_s"] >= 2 * 50 * 6.7, "room for the planned fragments and a repair"
    assert state in ("stragglers", "closed"), "no multicast into windows the collars closed"
    assert network.multicast and all(f["at"] < closes for f in network.multicast)


def test_a_campaign_image_that_does_not_match_its_hash_or_has_no_group_is_refused(sqlite_url, network):
    image, version = model_image()
    with open_bridge(sqlite_url, network) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
        with pytest.raises(ValueError, match="SHA-256"):
            bridge.create_campaign(name="x", kind="model", version="0.0.2", image_sha256="00" * 32,
                                   image_bytes=len(image), image=image, user="tech")
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), outbox_worker=False) as bridge, \
            pytest.raises(ValueError, match="MULTICAST_GROUP"):
        start_campaign(bridge, image, version)


def test_the_updates_page_shows_how_the_delivery_goes(sqlite_url, network, monkeypatch):
    with open_bridge(sqlite_url, network) as bridge:
        campaign, opens = one_collar_campaign(bridge)
        bridge.clock = lambda: opens
        bridge.deliver_updates()
    monkeypatch.setenv("TEMBO_DATABASE_URL", sqlite_url)
    app = updates_page(sqlite_url, monkeypatch)  # as a field technician sees it
    line = next(c.value for c in app.caption if c.value.startswith("Delivery:"))
    assert line.startswith("Delivery: window;") and "37 data fragments of 104 B" in line and "SF9" in line
    (shown,) = collar_lines(app, campaign["id"])
    assert shown.endswith("unicast because no McClassCSessionAns accepting the window before it opened"), \
        "the collar never answered its set-up: the technician sees why it gets the image by unicast"
    group = next(c.value for c in app.caption if c.value.startswith("Network multicast group"))
    assert group == f"Network multicast group {GROUP} (the technician's, set in the bridge); campaign still open"


def test_the_bridges_outbox_worker_delivers_on_its_own(sqlite_url, network):
    import time

    image, version = model_image()
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_every_s=0.2, fuota_multicast_group=GROUP) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
        campaign = start_campaign(bridge, image, version)
        bridge.clock = lambda: campaign["delivery"]["window_opens"]  # the window is open
        bridge.start_outbox_worker()
        deadline = time.monotonic() + 30
        while not network.multicast and time.monotonic() < deadline:
            time.sleep(0.05)  # waits for the worker's pushes, not for a fixed time
    assert network.multicast, "the worker queued and pushed the window's first fragments"
    assert [p["device"] for p in network.unicast[:2]] == ["collar-01", "collar-01"], "and the set-up before"


def test_a_garbled_fragment_status_is_kept_as_a_dead_letter_and_the_delivery_goes_on(sqlite_url, network):
    image, version = model_image()
    with open_bridge(sqlite_url, network) as bridge, TestClient(create_app(bridge)) as client:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
        campaign = start_campaign(bridge, image, version)
        garbled = (201, bytes([codec.tag_of("frag_session_status_ans"), 0x25]))  # cut after one byte
        reply = client.post("/uplinks/tts", content=b.tts_uplink(garbled, device_id="collar-01", f_cnt=2),
                            headers=HEADERS)
        bridge.process_pending()
        (letter,) = bridge.dead_letters()
        delivery = bridge.campaigns()[0]["delivery"]

    assert reply.status_code == 200, "stored first: the network server does not retry in vain"
    assert "frag_session_status_ans" in letter.reason
    assert delivery["collars"]["collar-01"]["missing"] is None and delivery["state"] == campaign["delivery"]["state"]


def test_a_late_set_up_answer_from_a_collar_already_failed_is_logged_and_ignored(sqlite_url, network, caplog):
    import logging

    image, version = model_image()
    with open_bridge(sqlite_url, network) as bridge:
        for name in ("collar-01", "collar-02"):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=name, f_cnt=1))
        campaign = start_campaign(bridge, image, version, max_canary_failures_pct=100)
        opens = campaign["delivery"]["window_opens"]
        bridge.deliver_updates(opens - timedelta(seconds=300))
        bridge.flush_downlinks()
        (setup,) = [codec.decode(p["f_port"], p["payload"], "down") for p in network.unicast
                    if p["device"] == "collar-01" and p["f_port"] == 200]
        closes = opens + timedelta(seconds=1 << setup["timeout_log2_s"])
        # collar-01 takes its window and session (TS005 / TS004 answers, status 0); collar-02 says nothing
        answers = [codec.encode_packet("mc_class_c_session_ans", {"status": 0, "time_to_start_s": [{"s": 300}]}),
                   codec.encode_packet("frag_session_setup_ans", {"status": SESSION_INDEX << 6})]
        for f_cnt, answer in enumerate(answers, start=2):
            bridge.ingest_tts_uplink(b.tts_uplink(answer, device_id="collar-01", f_cnt=f_cnt))
        bridge.process_pending()
        bridge.deliver_updates(opens)  # the window opens without collar-02
        bridge.deliver_updates(closes)  # the windows close: collar-02, with no session, fails
        failed = next(c for c in bridge.campaigns()[0]["collars"] if c["device_id"] == "collar-02")
        pushed = len(network.unicast)
        with caplog.at_level(logging.INFO, logger="lora_bridge.domain.fuota_delivery"):
            for f_cnt, answer in enumerate(answers, start=2):  # its answers arrive after all
                bridge.ingest_tts_uplink(b.tts_uplink(answer, device_id="collar-02", f_cnt=f_cnt))
            bridge.process_pending()
            for later in (closes + timedelta(seconds=60), closes + timedelta(hours=6)):
                bridge.deliver_updates(later)
                bridge.flush_downlinks()
        after = bridge.campaigns()[0]

    assert (failed["state"], failed["reason"]) == ("failed", "no answer to the set-up")
    still = next(c for c in after["collars"] if c["device_id"] == "collar-02")
    assert (still["state"], still["reason"]) == ("failed", "no answer to the set-up"), "not revived"
    assert after["state"] == campaign["state"] and after["delivery"]["state"] == "closed"
    assert after["delivery"]["collars"]["collar-02"]["unicast_sent"] == 0
    sent_after = [codec.decode(p["f_port"], p["payload"], "down")["message"] for p in network.unicast[pushed:]
                  if p["device"] == "collar-02"]
    assert "data_fragment" not in sent_after, "no unicast for a collar whose campaign step failed"
    ignored = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(ignored) == 2 and all("device_id=collar-02" in m and "failed" in m for m in ignored)


@pytest.mark.parametrize(("device", "says"), [
    (tts_multicast_end_device(data_rate=5), "RX2 DR5, not the plan's DR3 \\(SF9\\)"),
    (tts_multicast_end_device(data_rate=0), "RX2 DR0, not the plan's DR3"),  # TTS leaves DATA_RATE_0 out
    (tts_multicast_end_device(frequency_hz=868_100_000), "RX2 frequency 868100000 Hz, not 869525000"),
    (tts_multicast_end_device(class_c=False), "Class C not supported"),
    (tts_multicast_end_device(multicast=False), "not a multicast end device"),
    ({**tts_multicast_end_device(), "mac_state": None}, "no MAC state at the Network Server"),
    (None, "could not read the TTS multicast end device herd-multicast: .*404"),  # deleted meanwhile
    ({**tts_multicast_end_device(), "supports_class_c": "yes"}, "is not an end device: multicast and "),
    ({**tts_multicast_end_device(), "mac_state": {"current_parameters": {"rx2_frequency": "869.5 MHz"}}},
     "is not an end device: rx2_frequency '869.5 MHz' is not a uint64"),
    ({**tts_multicast_end_device(), "mac_state": {"current_parameters": {"rx2_data_rate_index": "SF9"}}},
     "is not an end device: rx2_data_rate_index 'SF9' is not a DataRateIndex"),
    # digits that are not ASCII: str.isdigit passes them and int() read them as 869525000 and DR3 (until 5 December)
    ({**tts_multicast_end_device(), "mac_state": {"current_parameters": {"rx2_frequency": "٨٦٩٥٢٥٠٠٠",
                                                                         "rx2_data_rate_index": "DATA_RATE_3"}}},
     "is not an end device: rx2_frequency '٨٦٩٥٢٥٠٠٠' is not a uint64"),
    ({**tts_multicast_end_device(), "mac_state": {"current_parameters": {"rx2_frequency": "869525000",
                                                                         "rx2_data_rate_index": "DATA_RATE_٣"}}},
     "is not an end device: rx2_data_rate_index 'DATA_RATE_٣' is not a DataRateIndex"),
    ({**tts_multicast_end_device(), "mac_state": {"current_parameters": {"rx2_frequency": "²"}}},
     "is not an end device: rx2_frequency '²' is not a uint64"),
    # beyond a uint64: no radio's frequency, and more than the Protobuf JSON mapping lets a uint64 hold
    ({**tts_multicast_end_device(), "mac_state": {"current_parameters": {"rx2_frequency": str(2**64 + 869525000)}}},
     f"is not an end device: rx2_frequency '{2**64 + 869525000}' is not a uint64"),
    ({**tts_multicast_end_device(), "mac_state": {"current_parameters": {"rx2_frequency": True}}},
     "is not an end device: rx2_frequency True is not a uint64"),
    ({**tts_multicast_end_device(), "mac_state": {"current_parameters": {"rx2_frequency": "869525000",
                                                                         "rx2_data_rate_index": 3.5}}},
     "is not an end device: rx2_data_rate_index 3.5 is not a DataRateIndex"),
])
def test_a_tts_multicast_device_that_does_not_send_as_the_plan_does_refuses_the_campaign(sqlite_url, network,
                                                                                        device, says):
    image, version = model_image()
    if device is None:
        network.devices.clear()
    else:
        network.devices[GROUP] = {key: value for key, value in device.items() if value is not None}
    with open_bridge(sqlite_url, network) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-07", f_cnt=1))
        with pytest.raises(ValueError, match=says):
            start_campaign(bridge, image, version)
        assert bridge.campaigns() == [], "nothing half made"
    assert network.unicast == [] and network.multicast == []


@pytest.mark.parametrize(("frequency", "data_rate"), [(869525000.0, "DATA_RATE_3"), ("869525000", 3.0),
                                                      (869525000, "3")])
def test_a_tts_multicast_device_whose_rx2_numbers_come_as_the_protobuf_json_mapping_allows_starts_the_campaign(
        sqlite_url, network, frequency, data_rate):
    """TTS writes the uint64 RX2 frequency as decimal text and the data rate by its enum name; the Protobuf JSON
    mapping its API follows also lets a number stand for either, with a zero fraction too (869525000.0, as a
    proxy that re-encodes JSON writes it). Until 5 December the bridge refused 869525000.0 as "not a uint64"."""
    image, version = model_image()
    network.devices[GROUP] = {**tts_multicast_end_device(), "mac_state": {"current_parameters": {
        "rx2_frequency": frequency, "rx2_data_rate_index": data_rate}}}
    with open_bridge(sqlite_url, network) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-07", f_cnt=1))
        campaign = start_campaign(bridge, image, version)
    assert campaign["delivery"]["network_group"]["id"] == GROUP


def test_a_tts_multicast_device_sending_as_the_plan_does_is_read_once_with_a_field_mask(sqlite_url, network):
    image, version = model_image()
    with open_bridge(sqlite_url, network) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-07", f_cnt=1))
        campaign = start_campaign(bridge, image, version)
    assert campaign["delivery"]["network_group"]["id"] == GROUP and not campaign["delivery"]["network_group"]["created"]
    assert network.reads == ["multicast,supports_class_c,mac_state.current_parameters.rx2_frequency,"
                             "mac_state.current_parameters.rx2_data_rate_index"]


def test_without_a_configured_server_group_frames_go_where_the_webhook_says_downlinks_go(network):
    push = f"{network.url}/api/v3/as/applications/{b.APPLICATION_ID}/webhooks/tembo/devices/collar-07/down/push"
    client = NetworkServerClient(BridgeSettings(webhook_secret=b.SECRET, network_server_url=None))
    frame = MulticastFrame(GROUP, b.APPLICATION_ID, ("gw-1",), 201, b"\x08\x01", datetime(2026, 3, 1, tzinfo=UTC))
    try:
        client.send_multicast(frame, RouteHint(push, network.api_key))
        with pytest.raises(DownlinkError, match="no X-Downlink-Push seen"):
            client.send_multicast(frame, None)
        with pytest.raises(DownlinkError, match="401"):
            client.send_multicast(frame, RouteHint(push, "NNSXS.ANOTHER-KEY"))
    finally:
        client.close()

    (sent,) = network.multicast
    assert (sent["group"], sent["f_port"], sent["payload"], sent["gateways"]) == (GROUP, 201, b"\x08\x01", ["gw-1"])


def test_without_a_configured_server_the_tts_device_is_read_where_the_webhook_says_downlinks_go(sqlite_url, network):
    image, version = model_image()
    push = f"{network.url}/api/v3/as/applications/{b.APPLICATION_ID}/webhooks/tembo/devices/collar-07/down/push"
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        bridge.remember_downlink_route(push, push.replace("/push", "/replace"), network.api_key,
                                       {"application_id": b.APPLICATION_ID, "device_id": "collar-07"},
                                       device_id="collar-07")
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-07", f_cnt=1))
        first = start_campaign(bridge, image, version)
        bridge.steer_campaign(first["id"], "abort", "tech")  # a collar follows one update at a time
        network.devices[GROUP] = tts_multicast_end_device(data_rate=5)
        with pytest.raises(ValueError, match="RX2 DR5, not the plan's DR3"):
            start_campaign(bridge, image, version)
    assert len(network.reads) == 2, "read at the webhook's host with the key it gave"


def test_a_canary_that_took_its_set_up_and_then_went_silent_fails_with_no_answer_and_stops_the_campaign(
        sqlite_url, network):
    image, version = model_image()
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_worker=False, fuota_multicast_group=GROUP, fuota_no_answer_factor=2) as bridge:
        for name in ("collar-01", "collar-02"):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=name, f_cnt=1))
        campaign = start_campaign(bridge, image, version, max_canary_failures_pct=40)
        opens = campaign["delivery"]["window_opens"]
        queued_at = opens - timedelta(seconds=300)
        bridge.deliver_updates(queued_at)
        bridge.flush_downlinks()
        (setup,) = [codec.decode(p["f_port"], p["payload"], "down") for p in network.unicast
                    if p["device"] == "collar-01" and p["f_port"] == 200]
        window_s = 1 << setup["timeout_log2_s"]
        closes = opens + timedelta(seconds=window_s)
        # both collars take their window and session; then collar-01 (its collar slipped off, say) is silent
        answers = [codec.encode_packet("mc_class_c_session_ans", {"status": 0, "time_to_start_s": [{"s": 300}]}),
                   codec.encode_packet("frag_session_setup_ans", {"status": SESSION_INDEX << 6})]
        for name in ("collar-01", "collar-02"):
            for f_cnt, answer in enumerate(answers, start=2):
                bridge.ingest_tts_uplink(b.tts_uplink(answer, device_id=name, f_cnt=f_cnt))
        bridge.process_pending()
        for now in (opens, closes):
            bridge.deliver_updates(now)
            bridge.flush_downlinks()
        bridge.record_update_ack("collar-02", "ok", utc_now())
        # twice the delivery's planned time (the set-up lead, two hours, and the class C window) after its set-up
        deadline = queued_at + timedelta(seconds=2 * (2 * 3600 + window_s))
        bridge.deliver_updates(deadline - timedelta(minutes=1))
        waiting = next(c for c in bridge.campaigns()[0]["collars"] if c["device_id"] == "collar-01")
        bridge.deliver_updates(deadline + timedelta(minutes=1))
        after = bridge.campaigns()[0]

    assert (waiting["state"], after["delivery"]["state"]) == ("sending", "closed"), "not before its time"
    silent = next(c for c in after["collars"] if c["device_id"] == "collar-01")
    assert (silent["stage"], silent["state"], silent["reason"]) == ("canary", "failed", "no answer")
    assert after["state"] == "stopped" and after["counts"] == {"failed": 1, "updated": 1}
    assert [(e["event"], e["detail"]) for e in after["history"] if e["device_id"] == "collar-01"][-1] == (
        "failed", {"result": "no answer"})


class TwoCollarDelivery:
    """A bridge delivering the model to collar-01 and collar-02 (both canaries, none allowed to stop the
    campaign), both of which accept their window and fragmentation session; the technician's clock is
    the bridge's (`at`)."""

    def __init__(self, bridge, network: StandInTheThingsStack, max_canary_failures_pct: int = 100) -> None:
        image, version = model_image()
        self.bridge, self.network, self.f_cnt = bridge, network, 0
        bridge.clock = lambda: b.T0 + timedelta(minutes=5)  # in the past: the network's times are taken as heard
        for name in ("collar-01", "collar-02"):
            self.uplink(name, b.status())
        campaign = start_campaign(bridge, image, version, max_canary_failures_pct=max_canary_failures_pct)
        self.id = campaign["id"]
        self.opens = campaign["delivery"]["window_opens"]
        self.queued_at = self.opens - timedelta(seconds=300)
        self.tick(self.queued_at)
        (setup,) = [codec.decode(p["f_port"], p["payload"], "down") for p in network.unicast
                    if p["device"] == "collar-01" and p["f_port"] == 200]
        self.window_s = 1 << setup["timeout_log2_s"]
        self.closes = self.opens + timedelta(seconds=self.window_s)
        self.planned_s = 2 * 3600 + self.window_s  # the set-up lead and the class C window
        for name in ("collar-01", "collar-02"):
            self.uplink(name, codec.encode_packet("mc_class_c_session_ans", {"status": 0, "time_to_start_s": [{"s": 300}]}))
            self.uplink(name, codec.encode_packet("frag_session_setup_ans", {"status": SESSION_INDEX << 6}))

    def uplink(self, name: str, message: tuple[int, bytes], at: datetime | None = None) -> None:
        self.f_cnt += 1
        self.bridge.ingest_tts_uplink(b.tts_uplink(message, device_id=name, f_cnt=self.f_cnt, received_at=at))
        self.bridge.process_pending()

    def tick(self, now: datetime) -> None:
        self.bridge.clock = lambda: now
        self.bridge.deliver_updates(now)
        self.bridge.flush_downlinks()

    def window_passes(self, updated: tuple[str, ...] = ()) -> None:
        """The class C window opens and closes on the bridge's clock; the collars named then say their
        update went well."""
        for now in (self.opens, self.closes):
            self.tick(now)
        for name in updated:
            self.bridge.record_update_ack(name, "ok", utc_now())

    def steer(self, action: str, now: datetime) -> None:
        self.bridge.clock = lambda: now
        self.bridge.steer_campaign(self.id, action, "tech")

    def collar(self, name: str) -> dict:
        return next(c for c in self.bridge.campaign(self.id)["collars"] if c["device_id"] == name)


def test_field_technician_sees_a_collar_that_keeps_answering_but_never_rebuilds_the_image_fail_in_bounded_time(
        sqlite_url, network):
    """Until 4 December only silent collars timed out: a collar heard every few hours (its status, its
    fragment status answers) that never got its image held its campaign open for ever."""
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_worker=False, fuota_multicast_group=GROUP, fuota_no_answer_factor=1) as bridge:
        run = TwoCollarDelivery(bridge, network)
        run.window_passes(updated=("collar-02",))
        # collar-01, behind a hill, hears almost nothing: it answers each status request and sends its own status
        now, ended_at = run.closes, None
        while now < run.closes + timedelta(days=10) and ended_at is None:
            now += timedelta(hours=6)
            run.uplink("collar-01", b.status(), at=now)
            run.uplink("collar-01", codec.encode_packet("frag_session_status_ans",
                                                        {"received_and_index": SESSION_INDEX << 14 | 3, "missing": 31, "status": 0}), at=now)
            run.tick(now)
            if bridge.campaign(run.id)["state"] == "done":
                ended_at = now
        after = bridge.campaign(run.id)
        queued = bridge.downlinks("queued")
        deletes = [d.state for d in bridge.downlinks() if d.device_id == "collar-01" and d.command == "frag_session_delete"]

    stuck = next(c for c in after["collars"] if c["device_id"] == "collar-01")
    assert ended_at is not None, "the campaign ends"
    assert stuck["state"] == "failed" and stuck["reason"].startswith("no result in ") \
        and stuck["reason"].endswith(": 31 fragments missing"), stuck["reason"]
    # its planned time, and a week of unicast within fair use, not less
    assert ended_at - run.queued_at > timedelta(seconds=run.planned_s, days=7)
    assert ended_at - run.queued_at <= timedelta(seconds=run.planned_s, days=7, hours=6)
    assert after["counts"] == {"failed": 1, "updated": 1}
    (failed,) = [e for e in after["history"] if e["device_id"] == "collar-01" and e["event"] == "failed"]
    assert "still missed 31 fragments when it last answered" in failed["detail"]["detail"]
    # nothing more of the image goes to it; it is told to let its session go (TS004): queued, or already
    # pushed when its fair-use day had room
    assert [d.command for d in queued if d.device_id == "collar-01" and d.command != "frag_session_delete"] == []
    assert deletes in (["queued"], ["sent"]), deletes


def test_field_technician_who_paused_a_campaign_overnight_does_not_see_its_collars_fail_on_resume(store_url, network):
    """Until 4 December the time a campaign spent paused counted toward a collar's silence limit, so a
    collar that had a few quiet hours before the pause failed with "no answer" at the first tick after
    the resume."""
    with b.fresh_bridge(store_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_worker=False, fuota_multicast_group=GROUP, fuota_no_answer_factor=2) as bridge:
        run = TwoCollarDelivery(bridge, network, max_canary_failures_pct=40)
        run.window_passes(updated=("collar-02",))
        limit = timedelta(seconds=2 * run.planned_s)  # collar-01 is quiet from its set-up on
        paused_at = run.queued_at + limit / 2
        run.steer("pause", paused_at)
        resumed_at = paused_at + timedelta(days=2)
        run.steer("resume", resumed_at)
        run.tick(resumed_at + timedelta(minutes=1))
        after_resume = run.collar("collar-01")
        run.tick(resumed_at + limit / 2 - timedelta(minutes=5))
        before_its_time = run.collar("collar-01")
        run.tick(resumed_at + limit / 2 + timedelta(minutes=5))
        after = bridge.campaign(run.id)

    assert (after_resume["state"], before_its_time["state"]) == ("sending", "sending"), "the pause is not its silence"
    silent = next(c for c in after["collars"] if c["device_id"] == "collar-01")
    assert (silent["state"], silent["reason"]) == ("failed", "no answer"), "once it has been quiet long enough"
    assert after["state"] == "stopped"


def test_field_technician_sees_a_collar_whose_link_degraded_before_its_set_up_held_back_and_the_window_not_slowed(
        sqlite_url, network):
    """Until 4 December the spreading factor gate was checked when a collar was released and on its status
    while it waited: a released collar whose network moved it to SF11 before its set-up left was set up
    for a window at SF9 it would hardly hear, and a collar gated at SF12 slowed the plan's window to SF12."""
    from test_update_campaigns import at_spreading_factor

    image, version = model_image()
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        heard = b.T0 + timedelta(minutes=1)
        for f_cnt, (name, sf) in enumerate([("collar-01", 9), ("collar-02", 9), ("collar-03", 12)], start=1):
            bridge.ingest_tts_uplink(at_spreading_factor(
                b.tts_uplink(b.status(), device_id=name, f_cnt=f_cnt, received_at=heard), sf))
        bridge.process_pending()
        campaign = start_campaign(bridge, image, version, max_spreading_factor=9)
        opens = campaign["delivery"]["window_opens"]
        # collar-02 walks into a valley: its next uplinks come at SF11, before its set-up goes
        bridge.ingest_tts_uplink(at_spreading_factor(
            b.tts_uplink(b.status(), device_id="collar-02", f_cnt=10, received_at=heard + timedelta(hours=1)), 11))
        bridge.process_pending()
        bridge.deliver_updates(opens - timedelta(minutes=100))
        bridge.flush_downlinks()
        held = {c["device_id"]: (c["state"], c["reason"]) for c in bridge.campaign(campaign["id"])["collars"]}
        set_up = {p["device"] for p in network.unicast if p["f_port"] == 200}
        bridge.ingest_tts_uplink(at_spreading_factor(  # out of the valley, heard at SF9 again
            b.tts_uplink(b.status(), device_id="collar-02", f_cnt=11, received_at=heard + timedelta(hours=2)), 9))
        bridge.process_pending()
        bridge.deliver_updates(opens - timedelta(minutes=50))
        bridge.flush_downlinks()
        later = {p["device"] for p in network.unicast if p["f_port"] == 200}

    assert campaign["delivery"]["sf"] == 9, "the window is planned for the collars the gate lets through"
    assert held == {"collar-01": ("sending", None), "collar-02": ("gated", "spreading factor"),
                    "collar-03": ("gated", "spreading factor")}
    assert set_up == {"collar-01"}, "no set-up for a window it would hardly hear"
    assert later == {"collar-01", "collar-02"}, "set up once it is heard within the gate again"


def test_field_technician_pausing_in_the_middle_of_the_window_resumes_into_a_new_window_and_every_collar_updates(
        sqlite_url, network):
    """Until 4 December a pause that outlasted the collars' Class C window left them with part of the image,
    and the resume sent the rest to each collar by unicast, ten frames a day under fair use (days for a
    model, weeks for a firmware), while the history said nothing of what the pause did."""
    image, version = model_image()
    fleet = fuota.build_fleet(3, 0.1, 11, KEYS_FOR)
    reserve = Reserve(fleet, network, seed=4)
    with open_bridge(sqlite_url, network) as bridge:
        campaign = reserve.start(bridge, image, version)
        opens = campaign["delivery"]["window_opens"]
        reserve.run_until(int(opens.timestamp()) - 600, step_s=600)
        reserve.run_until(int(opens.timestamp()) + 90)  # a dozen fragments on the air
        paused = bridge.steer_campaign(campaign["id"], "pause", "tech")
        reserve.run_until(int(opens.timestamp()) + 6 * 3600, step_s=300)  # overnight: the collars' windows close
        resumed = bridge.steer_campaign(campaign["id"], "resume", "tech")
        reserve.run_until(reserve.now_s() + 6 * 3600, step_s=120)
        after = bridge.campaign(campaign["id"])

    (pause,) = [e["detail"] for e in after["history"] if e["event"] == "delivery_paused"]
    assert pause["delivery_state"] == "window" and 0 < pause["fragments_sent"] < pause["fragments_planned"]
    (resume,) = [e["detail"] for e in after["history"] if e["event"] == "delivery_resumed"]
    assert resume["collars"] == 3 and resume["from_fragment"] == pause["fragments_sent"] + 1
    assert resumed["delivery"]["state"] == "setup" and resumed["delivery"]["window_opens"].isoformat() == \
        resume["new_window"], "a new window, after the set-up lead"
    assert paused["state"] == "paused" and after["state"] == "done" and after["counts"] == {"updated": 3}
    unicast_fragments = [p for p in network.unicast if p["payload"][0] == codec.tag_of("data_fragment")
                         and p["f_port"] == codec.port_of("data_fragment")]
    assert unicast_fragments == [], "the rest went in the new window, not ten frames a day"
    assert all(c.collar.update.last_result == "ok" for c in fleet)


def test_field_technician_overriding_a_canary_stop_gets_the_fleet_set_up_not_failed(sqlite_url, network):
    """Until 4 December Resume on a campaign its canaries stopped opened the fleet stage and the bridge failed
    every fleet collar at once ("the delivery ended when the campaign stopped"): the override did nothing
    but mark the fleet failed."""
    image, version = model_image()
    herd = ["collar-01", "collar-02", "collar-03"]
    with open_bridge(sqlite_url, network) as bridge:
        for f_cnt, name in enumerate(herd, start=1):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=name, f_cnt=f_cnt))
        campaign = start_campaign(bridge, image, version, canary_pct=30, max_canary_failures_pct=0)
        (canary,) = [c["device_id"] for c in campaign["collars"] if c["stage"] == "canary"]
        fleet = sorted(set(herd) - {canary})
        opens = campaign["delivery"]["window_opens"]
        bridge.deliver_updates(opens - timedelta(minutes=110))
        bridge.flush_downlinks()
        bridge.ingest_tts_uplink(b.tts_uplink(codec.encode_packet("frag_session_setup_ans", {"status": SESSION_INDEX << 6}),
                                              device_id=canary, f_cnt=10))
        bridge.process_pending()  # the canary took its session (an ack before that is an older update's)
        bridge.record_update_ack(canary, "self_test_failed", utc_now())  # the technician knows why, and goes on
        bridge.deliver_updates(opens - timedelta(minutes=100))  # the stop ends the delivery
        stopped = bridge.campaign(campaign["id"])
        bridge.clock = lambda: opens - timedelta(minutes=90)
        bridge.steer_campaign(campaign["id"], "resume", "tech")
        bridge.deliver_updates(opens - timedelta(minutes=89))
        bridge.flush_downlinks()
        after = bridge.campaign(campaign["id"])

    assert stopped["state"] == "stopped" and stopped["delivery"]["ended_at"] is not None
    assert after["state"] == "rolling" and {c["device_id"]: c["state"] for c in after["collars"]} == {
        canary: "failed", **{name: "sending" for name in fleet}}
    assert after["delivery"]["state"] == "setup" and after["delivery"]["ended_at"] is None
    assert {p["device"] for p in network.unicast if p["f_port"] == codec.port_of("frag_session_setup")} >= set(fleet), \
        "the fleet is set up in a window of its own"


def test_field_technician_sees_a_collar_whose_result_came_after_its_time_limit_counted_as_updated(sqlite_url, network):
    """A collar failed by the delivery's time limits whose result then arrives (its ack or status was late,
    not missing) runs the update: until 4 December the campaign kept it failed, as only a collar still
    being sent the image took a result."""
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_worker=False, fuota_multicast_group=GROUP, fuota_no_answer_factor=1) as bridge:
        run = TwoCollarDelivery(bridge, network)
        run.window_passes()
        run.uplink("collar-01", codec.encode_packet("frag_session_status_ans",
                                                    {"received_and_index": SESSION_INDEX << 14 | 40, "missing": 0, "status": 0}), at=run.closes)
        bridge.record_update_ack("collar-02", "ok", utc_now())
        late = run.queued_at + timedelta(seconds=run.planned_s, minutes=10)
        run.tick(late)
        timed_out = run.collar("collar-01")
        version = bridge.campaign(run.id)["version"]
        installed = {"update_kind": "model", "update_outcome": "installed", "update_version": version,
                     "update_reason": "ok"}
        run.uplink("collar-01", b.status(time_s=int(late.timestamp()) + 60, update=installed),
                   at=late + timedelta(minutes=1))
        after = bridge.campaign(run.id)

    assert timed_out["state"] == "failed" and timed_out["reason"].endswith(": image rebuilt, no ack")
    assert after["state"] == "done" and after["counts"] == {"updated": 2}
    (late_result,) = [e for e in after["history"] if e["device_id"] == "collar-01" and e["event"] == "updated"]
    assert late_result["detail"] == {"result": "ok", "late_after": timed_out["reason"]}


def test_field_technician_pausing_a_campaign_stops_the_unicast_fragments_the_outbox_still_holds(store_url, network):
    """Until 4 December a pause stopped the bridge from planning more, but the set-ups and stragglers'
    fragments already in the outbox kept going out, for days under fair use."""
    with b.fresh_bridge(store_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        run = TwoCollarDelivery(bridge, network)
        run.window_passes()
        run.uplink("collar-01", codec.encode_packet("frag_session_status_ans",  # a straggler after the window
                                                    {"received_and_index": SESSION_INDEX << 14 | 30, "missing": 6, "status": 0}), at=run.closes)
        bridge.deliver_updates(run.closes + timedelta(minutes=1))  # its unicast parity is queued ...
        run.steer("pause", run.closes + timedelta(minutes=2))  # ... and the technician pauses before it goes
        bridge.flush_downlinks()
        fragments = [p for p in network.unicast if p["device"] == "collar-01"
                     and p["f_port"] == codec.port_of("data_fragment") and p["payload"][0] == codec.tag_of("data_fragment")]
        while_paused = len(fragments)
        run.steer("resume", run.closes + timedelta(hours=8))
        bridge.flush_downlinks()
        after_resume = len([p for p in network.unicast if p["device"] == "collar-01"
                            and p["f_port"] == codec.port_of("data_fragment")
                            and p["payload"][0] == codec.tag_of("data_fragment")])
        history = bridge.campaign(run.id)["history"]

    assert while_paused == 0, "nothing goes to the collars of a paused campaign"
    (paused,) = [e["detail"] for e in history if e["event"] == "delivery_paused"]
    assert after_resume > 0 and paused["frames_held"] >= after_resume


def test_a_canary_whose_link_degraded_before_its_set_up_is_replaced_so_the_fleet_does_not_wait_on_it(
        sqlite_url, network):
    """A canary held back by its gates before its set-up would hold the whole fleet back while telling nothing
    of the image: another collar the gates let through takes its place."""
    from test_update_campaigns import at_spreading_factor

    image, version = model_image()
    herd = ["collar-01", "collar-02", "collar-03", "collar-04"]
    with open_bridge(sqlite_url, network) as bridge:
        heard = b.T0 + timedelta(minutes=1)
        for f_cnt, name in enumerate(herd, start=1):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=name, f_cnt=f_cnt, received_at=heard))
        campaign = start_campaign(bridge, image, version, canary_pct=25, max_spreading_factor=9)
        (first,) = [c["device_id"] for c in campaign["collars"] if c["stage"] == "canary"]
        bridge.ingest_tts_uplink(at_spreading_factor(
            b.tts_uplink(b.status(), device_id=first, f_cnt=10, received_at=heard + timedelta(hours=1)), 11))
        opens = campaign["delivery"]["window_opens"]
        for minutes in (110, 100):
            bridge.deliver_updates(opens - timedelta(minutes=minutes))
            bridge.flush_downlinks()
        after = bridge.campaign(campaign["id"])

    stages = {c["device_id"]: (c["stage"], c["state"]) for c in after["collars"]}
    (second,) = [d for d, (stage, _state) in stages.items() if stage == "canary"]
    assert second != first and stages[second] == ("canary", "sending")
    assert stages[first] == ("fleet", "gated")
    assert {d for d in herd if stages[d] == ("fleet", "waiting")} == set(herd) - {first, second}
    set_up = {p["device"] for p in network.unicast if p["f_port"] == codec.port_of("frag_session_setup")}
    assert set_up == {second}
    assert ("canary_replaced", second, {"instead_of": first}) in [
        (e["event"], e["device_id"], e["detail"]) for e in after["history"]]


def test_field_technician_pausing_before_the_set_ups_left_resumes_with_one_window_per_collar(sqlite_url, network):
    """A pause that held the set-ups and outlasted their window: the resume sends the collars the new window
    only, not the old one as well (which they would answer StartMissed, and be left out of the group)."""
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        image, version = model_image()
        bridge.clock = lambda: b.T0 + timedelta(minutes=5)
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
        campaign = start_campaign(bridge, image, version)
        opens = campaign["delivery"]["window_opens"]
        bridge.deliver_updates(opens - timedelta(minutes=110))  # the set-up is queued ...
        bridge.clock = lambda: opens - timedelta(minutes=109)
        bridge.steer_campaign(campaign["id"], "pause", "tech")  # ... and held by the pause
        bridge.clock = lambda: opens + timedelta(days=1)
        resumed = bridge.steer_campaign(campaign["id"], "resume", "tech")
        bridge.flush_downlinks()

    windows = [codec.decode(p["f_port"], p["payload"], "down") for p in network.unicast
               if p["f_port"] == codec.port_of("mc_class_c_session")
               and p["payload"][0] == codec.tag_of("mc_class_c_session")]
    new_window = resumed["delivery"]["window_opens"]
    assert [codec.unix_from_gps(w["session_time_gps_s"]) for w in windows] == [int(new_window.timestamp())]


def test_field_technician_sees_on_the_updates_page_what_a_pause_in_the_window_means(sqlite_url, network, monkeypatch):
    from test_update_campaigns import updates_page

    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        run = TwoCollarDelivery(bridge, network)
        run.tick(run.opens)
        run.tick(run.opens + timedelta(seconds=50))
        run.steer("pause", run.opens + timedelta(seconds=55))
        sent = bridge.campaign(run.id)["delivery"]["next_fragment"] - 1

    app = updates_page(sqlite_url, monkeypatch)
    (warning,) = [w.value for w in app.warning]
    closes = f"{run.closes:%Y-%m-%d %H:%M}"
    assert warning.startswith("Paused: nothing goes to the collars until Resume (0 frames held in the outbox); "
                              f"{sent} of ") and f"window open until {closes} UTC" in warning
    assert f"Resume goes on from fragment {sent + 1}, in a new window once that one has closed" in warning


def test_a_campaign_that_ends_leaves_alone_what_a_newer_campaign_queued_for_one_of_its_collars(store_url, network):
    """collar-02 refused the first campaign's image and the technician started a second campaign for it while
    the first went on for collar-01. Until 4 December the first campaign's end dropped every delivery frame
    queued for its collars, the second campaign's set-up for collar-02 among them."""
    with b.fresh_bridge(store_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        run = TwoCollarDelivery(bridge, network)
        bridge.record_update_ack("collar-02", "tampered", utc_now())
        image, version = model_image()
        second = start_campaign(bridge, image, version, name="model again for collar-02", devices=["collar-02"])
        bridge.deliver_updates(run.queued_at + timedelta(minutes=1))  # the second campaign's set-up is queued
        bridge.record_update_ack("collar-01", "ok", utc_now())  # the first campaign is done ...
        bridge.deliver_updates(run.queued_at + timedelta(minutes=2))  # ... and its delivery ends
        bridge.flush_downlinks()
        first = bridge.campaign(run.id)

    sessions = [codec.decode(p["f_port"], p["payload"], "down") for p in network.unicast if p["device"] == "collar-02"
                and p["f_port"] == codec.port_of("frag_session_setup")
                and p["payload"][0] == codec.tag_of("frag_session_setup")]
    assert first["state"] == "done"
    assert second["id"] in [s["descriptor"] for s in sessions], "the second campaign's set-up went out"


def test_field_technician_sees_a_late_ack_of_an_older_update_leave_the_new_campaign_and_its_delivery_going(
        sqlite_url, network):
    """A port-31 ack names no update. A collar out of range for days sends, once heard again, the ack of its
    last update from its queue; the bridge had started a new campaign for it meanwhile. That ack used to
    settle the new campaign's collar (updated) and mark its delivery complete, so nothing more was sent
    and the collar never got the new model. Until the collar opens the new session, an ack is not its."""
    image, version = model_image()
    with open_bridge(sqlite_url, network) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
        campaign = start_campaign(bridge, image, version)
        old_ack = codec.encode_packet("ack", {"time_s": b.T0_S + 60, "on_port": 201, "cmd": 8, "result": "ok"})
        bridge.ingest_tts_uplink(b.tts_uplink(old_ack, device_id="collar-01", f_cnt=2))
        bridge.process_pending()
        before_session = bridge.campaigns()[0]
        answer = codec.encode_packet("frag_session_setup_ans", {"status": SESSION_INDEX << 6})
        bridge.ingest_tts_uplink(b.tts_uplink(answer, device_id="collar-01", f_cnt=3))
        new_ack = codec.encode_packet("ack", {"time_s": b.T0_S + 9000, "on_port": 201, "cmd": 8, "result": "ok"})
        bridge.ingest_tts_uplink(b.tts_uplink(new_ack, device_id="collar-01", f_cnt=4))
        bridge.process_pending()
        after = bridge.campaigns()[0]
    assert campaign["collars"][0]["state"] == "sending"
    assert before_session["collars"][0]["state"] == "sending", "the older update's ack settled nothing"
    assert before_session["delivery"]["collars"]["collar-01"]["complete"] is False, "its delivery goes on"
    assert after["collars"][0]["state"] == "updated" and after["state"] == "done", "its own ack, once in the session"


def two_collars_set_up(bridge) -> tuple[dict, datetime]:
    """collar-01 and collar-02 known by their status, a model campaign for both started and their
    set-ups queued: (the campaign, when its window opens)."""
    image, version = model_image()
    for f_cnt, name in enumerate(("collar-01", "collar-02"), start=1):
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=name, f_cnt=f_cnt))
    campaign = start_campaign(bridge, image, version)
    opens = campaign["delivery"]["window_opens"]
    bridge.deliver_updates(opens - timedelta(minutes=110))
    return campaign, opens


def test_field_technician_aborting_a_delivery_has_the_collars_in_its_session_told_to_delete_it(sqlite_url, network):
    """A collar that took the fragmentation session waits for fragments; once the technician aborts, the bridge
    sends it TS004 FragSessionDeleteReq (port 201, CID 3, FragIndex 0) so it stops waiting; a collar that never
    took the session is not asked. Until 4 December only the multicast group was taken down."""
    with open_bridge(sqlite_url, network) as bridge:
        campaign, opens = two_collars_set_up(bridge)
        bridge.flush_downlinks()
        answer = codec.encode_packet("frag_session_setup_ans", {"status": SESSION_INDEX << 6})
        bridge.ingest_tts_uplink(b.tts_uplink(answer, device_id="collar-01", f_cnt=5))
        bridge.process_pending()
        bridge.clock = lambda: opens - timedelta(minutes=100)
        bridge.steer_campaign(campaign["id"], "abort", "tech")
        bridge.deliver_updates(opens - timedelta(minutes=99))
        bridge.flush_downlinks()
        ended = bridge.campaign(campaign["id"])
        deleted = codec.encode_packet("frag_session_delete_ans", {"frag_index": SESSION_INDEX, "session_does_not_exist": 0})
        bridge.ingest_tts_uplink(b.tts_uplink(deleted, device_id="collar-01", f_cnt=6))
        bridge.process_pending()
        assert bridge.dead_letters() == [], "its FragSessionDeleteAns is understood"
    deletes = [p["device"] for p in network.unicast if p["f_port"] == 201 and p["payload"] == bytes([0x03, SESSION_INDEX])]
    assert deletes == ["collar-01"]
    assert [e["detail"]["sessions_deleted"] for e in ended["history"] if e["event"] == "delivery_ended"] == [1]


def test_field_technician_aborting_before_anything_went_on_air_sees_those_collars_skipped_not_unknown(sqlite_url, network):
    """An abort makes a released collar "unknown" (it may have taken the update or not). Once the delivery
    ends, a collar no frame of it was ever pushed to is "skipped": it runs what it ran, and says why. A
    collar whose set-up went on air stays "unknown" until a status settles it."""
    with open_bridge(sqlite_url, network) as bridge:
        campaign, opens = two_collars_set_up(bridge)  # both collars' set-ups queued
        with bridge.db.write() as session:  # collar-02's frames held back (a fair-use day spent, say)
            session.execute(update(Downlink).where(Downlink.device_id == "collar-02")
                            .values(not_before=datetime(2100, 1, 1, tzinfo=UTC)))
        bridge.flush_downlinks()
        bridge.clock = lambda: opens - timedelta(minutes=100)
        bridge.steer_campaign(campaign["id"], "abort", "tech")
        aborted = {c["device_id"]: c["state"] for c in bridge.campaign(campaign["id"])["collars"]}
        bridge.deliver_updates(opens - timedelta(minutes=99))
        ended = bridge.campaign(campaign["id"])
    pushed_to = {p["device"] for p in network.unicast}
    assert "collar-01" in pushed_to and "collar-02" not in pushed_to
    assert aborted == {"collar-01": "unknown", "collar-02": "unknown"}
    states = {c["device_id"]: (c["state"], c["reason"]) for c in ended["collars"]}
    assert states["collar-01"] == ("unknown", "campaign aborted")
    assert states["collar-02"] == ("skipped", "campaign aborted before anything was sent to it")
    told = [e for e in ended["history"] if e["event"] == "skipped"]
    assert [(e["device_id"], e["detail"]["reason"]) for e in told] == [
        ("collar-02", "campaign aborted before anything was sent to it")]


def test_field_technician_sees_a_collar_that_rejoined_before_the_window_set_up_again_and_updated_in_the_window(
        sqlite_url, network):
    """A collar that took its set-up and then browned out (its fragmentation session and Class C window
    lived in RAM) rejoins the network before the window opens. Until 5 December the bridge still counted it
    in the group: it heard none of the window's fragments, and its campaign waited hours for it. TS004 /
    TS005 set-ups are per session: the bridge sets it up again, it updates with the others, and its history
    says it rejoined."""
    image, version = model_image()
    fleet = fuota.build_fleet(3, 0.1, 11, KEYS_FOR)
    reserve = Reserve(fleet, network, seed=4)
    with open_bridge(sqlite_url, network) as bridge:
        campaign = reserve.start(bridge, image, version)
        opens = int(campaign["delivery"]["window_opens"].timestamp())
        reserve.run_until(opens - 5400, step_s=300)  # every collar took its set-up
        rebooted = fleet[1]
        assert rebooted.collar.update.receiving(), "it had its fragmentation session"
        pushed_before = len(network.unicast)
        radio = rebooted.hal.radio
        radio.provision_root_key(bytes(range(16)))
        reserve.brown_out(rebooted.device_id)
        assert not rebooted.collar.update.receiving(), "the firmware kept no session across the reset"
        assert rebooted.hal.radio is not radio and hasattr(rebooted.hal.radio, "derive_key"), \
            "the same LR1110 with its crypto engine, not the default modem"
        rebooted.hal.radio.derive_key("app_key", "data_block_int_key", b"\x30" + bytes(15))  # its root key kept
        reserve.run_until(opens - 600, step_s=300)
        reserve.run_until(opens + 3600)
        reserve.run_until(reserve.now_s() + 5 * 3600, step_s=600)
        after = bridge.campaign(campaign["id"])

    again = [codec.decode(p["f_port"], p["payload"], "down")["message"]
             for p in network.unicast[pushed_before:] if p["device"] == rebooted.device_id
             and p["f_port"] in (codec.port_of("mc_class_c_session"), codec.port_of("frag_session_setup"))]
    assert again[:2] == ["mc_class_c_session", "frag_session_setup"], "set up again after its rejoin"
    assert after["state"] == "done" and after["counts"] == {"updated": 3}, after["delivery"]
    assert all(c.collar.model.version == version for c in fleet)
    (rejoined,) = [e for e in after["history"] if e["event"] == "collar_rejoined"]
    assert rejoined["device_id"] == rebooted.device_id and rejoined["detail"]["delivery_state"] == "setup"
    assert after["delivery"]["collars"][rebooted.device_id]["unicast_reason"] is None, "it was in the window"


def test_field_technician_sees_a_collar_that_rejoined_in_the_window_set_up_again_and_served_by_unicast(
        sqlite_url, network):
    """A collar that browns out while the window's fragments are on the air loses its fragmentation session
    and its Class C window; the network reports its rejoin. Until 5 December the bridge kept counting it in
    the group: it heard none of the fragments and waited, failed hours later for "no result". Now the bridge
    sets up a new fragmentation session by unicast (no new window: the others' window goes on), serves it as
    a straggler, and its state and history say why."""
    image, version = model_image()
    fleet = fuota.build_fleet(3, 0.1, 11, KEYS_FOR)
    reserve = Reserve(fleet, network, seed=4)
    with open_bridge(sqlite_url, network) as bridge:
        campaign = reserve.start(bridge, image, version)
        delivery = campaign["delivery"]
        opens = int(delivery["window_opens"].timestamp())
        reserve.run_until(opens - 600, step_s=300)
        reserve.run_until(opens + 90)  # a dozen fragments on the air
        rebooted = fleet[2]
        pushed_before = len(network.unicast)
        reserve.brown_out(rebooted.device_id)
        during = bridge.campaign(campaign["id"])
        reserve.run_until(reserve.now_s() + 6 * 3600, step_s=120)  # the window, installs, acks
        reserve.run_until(reserve.now_s() + 2 * 86400, step_s=1800)  # unicast, within fair use
        after = bridge.campaign(campaign["id"])

    reason = during["delivery"]["collars"][rebooted.device_id]["unicast_reason"]
    assert reason.startswith("rejoined the network"), "the technician sees why it left the group"
    (rejoined,) = [e for e in after["history"] if e["event"] == "collar_rejoined"]
    assert rejoined["device_id"] == rebooted.device_id and rejoined["detail"]["delivery_state"] == "window"
    again = [codec.decode(p["f_port"], p["payload"], "down")["message"]
             for p in network.unicast[pushed_before:] if p["device"] == rebooted.device_id
             and p["f_port"] in (codec.port_of("mc_class_c_session"), codec.port_of("frag_session_setup"))]
    assert again[0] == "frag_session_setup" and "mc_class_c_session" not in again, "a new session, by unicast"
    assert "data_fragment" in again, "served as a straggler"
    states = {c["device_id"]: c["state"] for c in after["collars"]}
    assert states == {fleet[0].device_id: "updated", fleet[1].device_id: "updated", rebooted.device_id: "sending"}
    assert after["delivery"]["collars"][rebooted.device_id]["setup_answered"]
    update = rebooted.collar.update
    assert update.receiving() and update.still_needed() < delivery["nb_frag"], "it takes the unicast fragments"


def test_field_technician_sees_a_collar_reset_by_its_watchdog_in_the_window_set_up_again_not_counted_updated(
        sqlite_url, network):
    """A collar's watchdog resets its processor while the window's fragments are on the air: its fragmentation
    session (held in RAM) is gone, but its modem stays joined, so the network reports nothing. Until
    5 December the collar answered the status request about a session it no longer held with "0 missing",
    which the bridge took for the whole image: the collar was counted complete and never got the update.
    Now it answers SessionDoesNotExist (TS004), the bridge sets up a new session by unicast and serves it
    as a straggler, and the campaign's history says why."""
    image, version = model_image()
    fleet = fuota.build_fleet(3, 0.1, 11, KEYS_FOR)
    reserve = Reserve(fleet, network, seed=4)
    with open_bridge(sqlite_url, network) as bridge:
        campaign = reserve.start(bridge, image, version)
        opens = int(campaign["delivery"]["window_opens"].timestamp())
        reserve.run_until(opens - 600, step_s=300)
        reserve.run_until(opens + 90)  # a dozen fragments on the air
        reset = fleet[2]
        assert reset.collar.update.receiving()
        pushed_before = len(network.unicast)
        reserve.watchdog_reset(reset.device_id)
        assert reset.hal.radio.class_c is None, "the modem left the window the collar no longer follows"
        reserve.run_until(reserve.now_s() + 6 * 3600, step_s=120)  # the window, installs, acks
        during = bridge.campaign(campaign["id"])
        reserve.run_until(reserve.now_s() + 2 * 86400, step_s=1800)  # unicast, within fair use
        after = bridge.campaign(campaign["id"])

    answers = [m for d, m in reserve.heard if d == reset.device_id and m["message"] == "frag_session_status_ans"]
    assert answers and answers[0]["session_does_not_exist"] == 1 and answers[0]["missing"] == 0
    reason = during["delivery"]["collars"][reset.device_id]["unicast_reason"]
    assert reason.startswith("its fragmentation session was lost"), reason
    (lost,) = [e for e in after["history"] if e["event"] == "collar_lost_session"]
    assert lost["device_id"] == reset.device_id
    again = [codec.decode(p["f_port"], p["payload"], "down")["message"]
             for p in network.unicast[pushed_before:] if p["device"] == reset.device_id
             and p["f_port"] in (codec.port_of("mc_class_c_session"), codec.port_of("frag_session_setup"))]
    assert again[0] == "frag_session_setup" and "data_fragment" in again, "a new session by unicast, then parity"
    assert reset.collar.update.receiving(), "its new session gathers the unicast fragments"
    assert after["delivery"]["collars"][reset.device_id]["complete"] is False, "not counted as holding the image"
    states = {c["device_id"]: c["state"] for c in after["collars"]}
    assert states == {fleet[0].device_id: "updated", fleet[1].device_id: "updated", reset.device_id: "sending"}


def test_field_technician_sees_a_straggler_get_its_fragments_by_unicast_every_day_as_fair_use_allows(
        sqlite_url, network):
    """collar-01 missed most of the window. Served by unicast, it gets what fair use allows each day
    (`downlinks_per_device_per_day`, 10, counted on the bridge's clock: here the technician's simulated
    week): until 5 December the day was the wall clock's, the set-ups of the window had spent half of
    it, and the straggler got 5 fragments in 6 simulated days."""
    fragment_port = codec.port_of("data_fragment")
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        run = TwoCollarDelivery(bridge, network)
        run.window_passes(updated=("collar-02",))

        def to_straggler(port: int | None = None) -> int:
            return sum(1 for p in network.unicast if p["device"] == "collar-01" and port in (None, p["f_port"]))

        fragments_a_day, downlinks_a_day, now = [], [], run.closes
        for _day in range(6):  # it is heard every 6 h, saying each time it still misses 31 fragments
            fragments, pushed = to_straggler(fragment_port), to_straggler()
            for _ in range(4):
                now += timedelta(hours=6)
                run.uplink("collar-01", codec.encode_packet("frag_session_status_ans",
                                                            {"received_and_index": SESSION_INDEX << 14 | 3, "missing": 31, "status": 0}),
                           at=now)
                run.tick(now)
            fragments_a_day.append(to_straggler(fragment_port) - fragments)
            downlinks_a_day.append(to_straggler() - pushed)

    per_day = bridge.settings.downlinks_per_device_per_day
    assert all(n <= per_day for n in downlinks_a_day), downlinks_a_day  # within fair use, every day
    assert fragments_a_day == [per_day] * 6, fragments_a_day


def test_a_straggler_whose_fair_use_day_is_spent_has_the_rest_of_its_batch_held_at_once(sqlite_url, network):
    """collar-01 missed the window and its unicast batch is longer than what is left of its fair-use day.
    The flush that spends the day pushes what fits and holds the rest of its queue, every frame to the
    time the day's oldest push ages out, its day reckoned once more, not once again for each frame held
    (until 7 December each held frame cost a write transaction of its own, flush after flush: a straggler's
    week of unicast made the outbox crawl)."""
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        run = TwoCollarDelivery(bridge, network)
        run.window_passes(updated=("collar-02",))
        now = run.closes + timedelta(hours=1)
        run.uplink("collar-01", codec.encode_packet("frag_session_status_ans",
                                                    {"received_and_index": SESSION_INDEX << 14 | 3, "missing": 31, "status": 0}),
                   at=now)
        bridge.clock = lambda: now
        bridge.deliver_updates(now)
        pushed_before = sum(1 for p in network.unicast if p["device"] == "collar-01")
        said = b.statements_of(bridge)
        bridge.flush_downlinks()
        pushed = sum(1 for p in network.unicast if p["device"] == "collar-01") - pushed_before
        queued = [d.downlink_id for d in bridge.downlinks("queued") if d.device_id == "collar-01"]
        with bridge.db.read() as session:
            held = {as_utc(session.get(Downlink, i).not_before) for i in queued}
            day = [as_utc(t.at) for t in session.scalars(select(DownlinkTransmission)
                                                        .where(DownlinkTransmission.device_id == "collar-01"))]

    per_day = bridge.settings.downlinks_per_device_per_day
    assert pushed > 0 and len(day) == per_day, "the day's room went, and no more"
    assert len(queued) > 1 and held == {min(day) + timedelta(days=1)}, "the rest waits for the day's oldest push"
    reckoned = [s for s in said if s.startswith("SELECT count(*)") and "FROM downlink_transmissions" in s]
    assert len(reckoned) == pushed + 1, "the day reckoned for each push and once to hold the rest"


def test_a_straggler_that_lost_part_of_its_unicast_fragments_is_asked_what_it_misses_and_gets_more(
        sqlite_url, network):
    """collar-01 answers only when asked (TS004 FragSessionStatusReq): after a batch of unicast fragments
    it is asked, by unicast, what it still misses, and its answer brings the next batch. Until 5
    December nobody asked it: a straggler that lost some of its one batch never got more."""
    status_port = codec.port_of("frag_session_status")
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        run = TwoCollarDelivery(bridge, network)
        run.window_passes(updated=("collar-02",))

        def to_straggler() -> list[str]:
            return [codec.decode(p["f_port"], p["payload"], "down")["message"] for p in network.unicast
                    if p["device"] == "collar-01" and p["f_port"] == status_port]

        now, batches = run.closes, []
        for missing in (6, 2):  # it lost part of the first batch, and says so when asked
            now += timedelta(hours=6)
            run.uplink("collar-01", codec.encode_packet("frag_session_status_ans",
                                                        {"received_and_index": SESSION_INDEX << 14 | 20, "missing": missing, "status": 0}),
                       at=now)
            before = len(to_straggler())
            for _ in range(4 * 3):  # the batch goes within fair use, over days if it must
                run.tick(now)
                if "frag_session_status" in to_straggler()[before:]:
                    break
                now += timedelta(hours=6)
            batches.append(to_straggler()[before:])

    for batch in batches:
        assert "frag_session_status" in batch, "the straggler was not asked what it still misses"
        assert batch[-1] == "frag_session_status" and set(batch[:-1]) == {"data_fragment"}, batch


def test_field_technician_sees_a_collar_that_refused_its_session_while_busy_failed_with_the_reason(sqlite_url, network):
    """A collar still checking an earlier image answers its FragSessionSetupReq NotEnoughMemory (TS004 status
    bit 1, its FragIndex above). Until 5 December the bridge only marked it unanswered and, at the window's
    close, failed it as "no answer to the set-up"."""
    image, version = model_image()
    with open_bridge(sqlite_url, network) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
        campaign = start_campaign(bridge, image, version, canary_pct=0, max_canary_failures_pct=0)
        opens = campaign["delivery"]["window_opens"]
        bridge.deliver_updates(opens - timedelta(minutes=110))
        bridge.flush_downlinks()
        bridge.ingest_tts_uplink(b.tts_uplink(codec.encode_packet("frag_session_setup_ans", {"status": SESSION_INDEX << 6 | 0x02}),
                                              device_id="collar-01", f_cnt=10))
        bridge.process_pending()
        after = bridge.campaign(campaign["id"])

    (collar,) = after["collars"]
    assert collar["state"] == "failed"
    assert collar["reason"] == "set-up refused: NotEnoughMemory"


def test_a_straggler_whose_parity_waits_in_the_network_queue_gets_no_second_batch_when_another_collar_answers(
        sqlite_url, network):
    """collar-01 says it misses 6 fragments and gets its unicast parity; the network server takes it into
    its queue (class A: each waits for one of the collar's uplinks) and reports none of it sent yet. Then
    collar-02 answers too. Until 5 December the bridge counted only what its own outbox still held, so
    collar-01's batch waiting at the network was queued a second time, spending its fair-use days on
    parity it did not need."""
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        run = TwoCollarDelivery(bridge, network)
        run.window_passes()

        def unicast_sent() -> dict[str, int]:
            collars = bridge.campaign(run.id)["delivery"]["collars"]
            return {name: collars[name]["unicast_sent"] for name in ("collar-01", "collar-02")}

        first = run.closes + timedelta(hours=1)
        run.uplink("collar-01", codec.encode_packet("frag_session_status_ans",
                                                    {"received_and_index": SESSION_INDEX << 14 | 20, "missing": 6, "status": 0}), at=first)
        run.tick(first)
        batch = unicast_sent()
        pushed = sum(1 for p in network.unicast if p["device"] == "collar-01")
        later = first + timedelta(hours=1)
        run.uplink("collar-02", codec.encode_packet("frag_session_status_ans",
                                                    {"received_and_index": SESSION_INDEX << 14 | 20, "missing": 6, "status": 0}), at=later)
        run.tick(later)
        after = unicast_sent()

    assert batch["collar-01"] > 0 and pushed > 0, "collar-01 got its parity"
    assert after["collar-02"] > 0, "collar-02 got its own"
    assert after["collar-01"] == batch["collar-01"], "collar-01's batch, still in the network's queue, not queued again"


def test_a_straggler_that_falls_silent_is_failed_and_leaves_no_fragment_shown_on_its_way(sqlite_url, network):
    """collar-01 missed the window and is served by unicast; after its first day of fragments it falls
    silent (its collar slipped off). Its step is failed in time, and the fragments and status requests
    the network server took and never reported on are no longer shown `sent` to it for ever: they are
    dropped with the reason, which says they may still be in the network server's queue."""
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key,
                        outbox_worker=False, fuota_multicast_group=GROUP) as bridge:
        run = TwoCollarDelivery(bridge, network)
        run.window_passes(updated=("collar-02",))
        now = run.closes
        for _ in range(4):  # its first day: it says each time it still misses 31 fragments
            now += timedelta(hours=6)
            run.uplink("collar-01", codec.encode_packet("frag_session_status_ans",
                                                        {"received_and_index": SESSION_INDEX << 14 | 3, "missing": 31, "status": 0}),
                       at=now)
            run.tick(now)
        pushed = [d for d in bridge.downlinks() if d.device_id == "collar-01" and d.state == "sent"
                  and d.command in ("data_fragment", "frag_session_status")]
        for _ in range(40):  # then nothing from it, day after day
            now += timedelta(hours=6)
            run.tick(now)
        straggler = next(c for c in bridge.campaigns()[0]["collars"] if c["device_id"] == "collar-01")
        after = {d.downlink_id: d for d in bridge.downlinks()}

    assert pushed, "its fragments went to the network server"
    assert straggler["state"] == "failed"
    left = [after[d.downlink_id] for d in pushed]
    assert {d.state for d in left} == {"superseded"}
    assert all(f"its update step ended ({straggler['reason']})" in d.last_error
               and "network server's queue" in d.last_error for d in left)


@pytest.mark.parametrize("frag_index", range(4))
def test_the_bridge_takes_only_the_answers_about_its_deliverys_fragindex(sqlite_url, network, monkeypatch, frag_index):
    """Answers written from TS004 v1.0.0's layouts: FragSessionSetupAns = StatusBitMask (FragIndex 7..6 | ... |
    NotEnoughMemory 1 | ...), FragSessionStatusAns = Received&index (FragIndex 15..14 | NbFragReceived,
    little-endian) | MissingFrag | Status, FragSessionDeleteAns = RFU 7..3 | SessionDoesNotExist 2 | FragIndex
    1..0, PackageVersionAns = 3 | 1. A collar's answers about another FragIndex leave its delivery as it was;
    those about the delivery's own move it; every one is understood, none is a dead letter."""
    from lora_bridge.domain import fuota_delivery

    monkeypatch.setattr(fuota_delivery, "SESSION_INDEX", frag_index)
    others = [i for i in range(4) if i != frag_index]

    def hear(bridge, payloads: list[bytes]) -> dict:
        for payload in payloads:
            hear.f_cnt += 1
            bridge.ingest_tts_uplink(b.tts_uplink((201, payload), device_id="collar-01", f_cnt=hear.f_cnt))
        bridge.process_pending()
        return bridge.campaigns()[0]["delivery"]["collars"]["collar-01"]

    hear.f_cnt = 10
    with open_bridge(sqlite_url, network) as bridge:
        two_collars_set_up(bridge)
        bridge.flush_downlinks()
        (setup,) = [p["payload"] for p in network.unicast if p["device"] == "collar-01" and p["f_port"] == 201]
        assert setup[:2] == bytes([0x02, frag_index << 4 | 0b0001]), "FragIndex 5..4, group 0 may carry it"
        before = hear(bridge, [bytes([0x02, i << 6]) for i in others] + [bytes([0x02, i << 6 | 0x02]) for i in others])
        taken = hear(bridge, [bytes([0x02, frag_index << 6])])
        asked_others = hear(bridge, [b"\x01" + (i << 14 | 5).to_bytes(2, "little") + b"\x07\x00" for i in others]
                            + [b"\x01" + (i << 14).to_bytes(2, "little") + b"\x00\x04" for i in others])
        counted = hear(bridge, [b"\x01" + (frag_index << 14 | 5).to_bytes(2, "little") + b"\x07\x00"])
        hear(bridge, [b"\x00\x03\x01"] + [bytes([0x03, i]) for i in range(4)] + [bytes([0x03, 0x04 | frag_index])])
        letters = bridge.dead_letters()
        state = bridge.campaigns()[0]

    assert (before["setup_answered"], before["missing"]) == (False, None), "answers about other sessions"
    assert taken["setup_answered"] is True
    assert (asked_others["setup_answered"], asked_others["missing"]) == (True, None), "not its session, not lost"
    assert counted["missing"] == 7
    assert letters == [] and next(c for c in state["collars"] if c["device_id"] == "collar-01")["state"] != "failed"


def test_a_collar_refusing_its_session_under_the_deliverys_fragindex_is_failed_with_the_bits_it_gave(
        sqlite_url, network, monkeypatch):
    """TS004 FragSessionSetupAns bit 2 (FragIndex unsupported) under the delivery's FragIndex: the collar took
    no session and fails with that reason; the same refusal under another FragIndex is not about it."""
    from lora_bridge.domain import fuota_delivery

    monkeypatch.setattr(fuota_delivery, "SESSION_INDEX", 3)
    with open_bridge(sqlite_url, network) as bridge:
        two_collars_set_up(bridge)
        for f_cnt, (device, payload) in enumerate([("collar-01", b"\x02\x84"), ("collar-02", b"\x02\xc4")], start=10):
            bridge.ingest_tts_uplink(b.tts_uplink((201, payload), device_id=device, f_cnt=f_cnt))
        bridge.process_pending()
        collars = {c["device_id"]: c for c in bridge.campaigns()[0]["collars"]}

    assert collars["collar-01"]["state"] != "failed", "a refusal of FragIndex 2 is not about session 3"
    assert (collars["collar-02"]["state"], collars["collar-02"]["reason"]) == \
        ("failed", "set-up refused: FragSessionIndexNotSupported")


def test_a_group_frame_whose_push_answer_never_came_is_not_pushed_to_the_collars_twice(sqlite_url, network):
    # The network server takes a multicast frame of the delivery whole, then never answers: the frame may be
    # on its way to the group already. Pushed again, the collars would hear it twice, at the cost of the
    # duty cycle's airtime that the next fragments need; a fragment that did not go is what parity and the
    # repair rounds are for.
    with open_bridge(sqlite_url, network, downlink_timeout_s=0.5) as bridge:
        _, opens = one_collar_campaign(bridge)
        bridge.clock = lambda: opens
        bridge.deliver_updates()
        network.hold_group_answer_next = 1
        try:
            bridge.flush_downlinks()
        finally:
            network.let_go.set()
        taken_before_the_answer = len(network.multicast)
        bridge.flush_downlinks()
        frames = [(frame["payload"], frame["at"]) for frame in network.multicast]
        with bridge.db.read() as session:
            held = session.execute(select(MulticastDownlink.state, MulticastDownlink.last_error)
                                   .order_by(MulticastDownlink.id).limit(1)).one()

    assert taken_before_the_answer == 1, "the server took the first frame and hung: the flush went no further"
    assert len(frames) > 1 and len(frames) == len(set(frames)), "the rest went on, none of them twice"
    assert held.state == "sent" and "answer cut off" in (held.last_error or ""), "recorded as pushed, and why"
