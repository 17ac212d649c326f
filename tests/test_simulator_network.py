"""The twin's LoRaWAN network: who hears a collar, what is lost or repeated, and the JSON the bridge gets."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collar_firmware import codec
from simulator.network import Network, PathLossModel, Uplink, airtime_s
from simulator.reserve import demo_reserve

T0 = 1772323200  # 2026-03-01 00:00 UTC
RESERVE = demo_reserve()
HQ = RESERVE.gateway("tembo-gw-hq")


def _alert_uplink(f_cnt: int = 7, km_east: float = 0.5, sf: int = 7) -> Uplink:
    lon, lat = RESERVE.frame.to_lonlat(km_east * 1000.0, -2000.0)  # east of the HQ mast
    payload = codec.encode("alert", {"alert_type": "mortality", "seq": 3, "time_s": T0, "lat": lat, "lon": lon})
    return Uplink("tembo-collar-01", "70B3D57ED0060001", codec.port_of("alert"), f_cnt, payload,
                  T0 + 5.0, lat, lon, spreading_factor=sf)


def _quiet_network(**kwargs) -> Network:
    kwargs.setdefault("loss_probability", 0.0)
    kwargs.setdefault("duplicate_probability", 0.0)
    return Network(RESERVE, seed=1, **kwargs)


def test_airtime_follows_semtech_an1200_13_on_the_whole_phy_frame():
    assert airtime_s(10, 7) == pytest.approx(0.061696)
    assert airtime_s(24, 12) == pytest.approx(1.974272)
    assert airtime_s(51, 12) == pytest.approx(2.793472)


def test_tts_uplink_has_the_documented_fields_and_its_payload_decodes_with_the_codec():
    network = _quiet_network()
    uplink = _alert_uplink()
    [delivery] = network.deliver(uplink)
    message = json.loads(json.dumps(network.tts_uplink(delivery)))
    ids = message["end_device_ids"]
    assert ids["device_id"] == "tembo-collar-01" and ids["dev_eui"] == "70B3D57ED0060001"
    assert ids["application_ids"] == {"application_id": "tembo-demo"}
    assert message["received_at"].endswith("Z") and message["received_at"].startswith("2026-03-01T00:00:0")
    up = message["uplink_message"]
    assert (up["f_port"], up["f_cnt"]) == (10, 7)
    assert codec.decode(up["f_port"], base64.b64decode(up["frm_payload"]))["alert_type"] == "mortality"
    assert up["settings"]["data_rate"]["lora"] == {"bandwidth": 125000, "spreading_factor": 7, "coding_rate": "4/5"}
    assert up["settings"]["frequency"] in {"868100000", "868300000", "868500000", "867100000", "867300000",
                                           "867500000", "867700000", "867900000"}
    assert up["consumed_airtime"] == "0.061696s"  # 11 B alert + 13 B overhead: 48 symbols at SF7/125 kHz
    assert up["received_at"] == message["received_at"]
    gateways = {m["gateway_ids"]["gateway_id"] for m in up["rx_metadata"]}
    assert "tembo-gw-hq" in gateways
    for meta in up["rx_metadata"]:
        assert set(meta) >= {"gateway_ids", "rssi", "snr", "timestamp", "location"}
        assert -140 < meta["rssi"] < -30 and isinstance(meta["timestamp"], int)
        assert set(meta["location"]) >= {"latitude", "longitude"}


def test_chirpstack_uplink_has_the_documented_fields_and_its_data_decodes_with_the_codec():
    network = _quiet_network()
    [delivery] = network.deliver(_alert_uplink(f_cnt=8))
    event = json.loads(json.dumps(network.chirpstack_uplink(delivery)))
    assert set(event) >= {"deduplicationId", "time", "deviceInfo", "fCnt", "fPort", "data", "rxInfo", "txInfo"}
    info = event["deviceInfo"]
    assert info["devEui"] == "70b3d57ed0060001" and info["deviceName"] == "tembo-collar-01"
    assert info["applicationName"] == "Tembo demo herd" and len(info["applicationId"]) == 36
    assert (event["fPort"], event["fCnt"]) == (10, 8)
    assert codec.decode(event["fPort"], base64.b64decode(event["data"]))["seq"] == 3
    assert event["txInfo"]["modulation"]["lora"] == {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}
    assert event["dr"] == 5
    assert all(len(rx["gatewayId"]) == 16 and "rssi" in rx and "snr" in rx for rx in event["rxInfo"])


def test_fields_at_their_default_value_are_left_out_as_the_network_servers_do():
    network = _quiet_network()
    [delivery] = network.deliver(_alert_uplink(f_cnt=0))
    tts, chirp = network.tts_uplink(delivery), network.chirpstack_uplink(delivery)
    assert "f_cnt" not in tts["uplink_message"] and "confirmed" not in tts["uplink_message"]
    assert "fCnt" not in chirp and "confirmed" not in chirp
    assert tts["uplink_message"]["f_port"] == 10 and chirp["adr"] is True


def test_a_collar_near_several_gateways_is_heard_by_all_of_them_in_one_message():
    network = _quiet_network()
    deliveries = network.deliver(_alert_uplink(km_east=-3.0, sf=12))  # between HQ, southwest and north
    assert len(deliveries) == 1
    assert len(deliveries[0].receptions) >= 2
    best = deliveries[0].best
    assert best.snr_db == max(r.snr_db for r in deliveries[0].receptions)


def test_without_deduplication_each_gateway_copy_arrives_with_the_same_frame_counter():
    network = _quiet_network(deduplicate=False)
    deliveries = network.deliver(_alert_uplink(km_east=-3.0, sf=12))
    assert len(deliveries) >= 2
    assert {d.uplink.f_cnt for d in deliveries} == {7}
    assert len({d.receptions[0].gateway.gateway_id for d in deliveries}) == len(deliveries)


def test_a_repeated_delivery_carries_the_same_device_counter_and_payload():
    network = _quiet_network(duplicate_probability=1.0)
    first, again = network.deliver(_alert_uplink())
    a, b = network.tts_uplink(first), network.tts_uplink(again)
    assert a["uplink_message"]["frm_payload"] == b["uplink_message"]["frm_payload"]
    assert a["uplink_message"]["f_cnt"] == b["uplink_message"]["f_cnt"]
    assert b["received_at"] > a["received_at"]


def test_a_collar_far_beyond_every_gateway_is_not_heard():
    far = Uplink("tembo-collar-01", "70B3D57ED0060001", 10, 1, b"\x00" * 11, T0, lat=2.5, lon=39.5)
    assert _quiet_network().deliver(far) == []


def test_random_loss_drops_about_the_configured_share():
    network = Network(RESERVE, seed=3, loss_probability=0.3, duplicate_probability=0.0,
                      path_loss=PathLossModel(shadowing_sigma_db=0.0))
    # Right under the HQ mast at SF7 only HQ hears the collar, so each frame lives or dies with one copy.
    lon, lat = HQ.lon, HQ.lat
    heard = sum(bool(network.deliver(Uplink("d", "70B3D57ED0060001", 2, i, b"\x01" * 20, T0 + 60 * i, lat, lon,
                                            spreading_factor=7)))
                for i in range(1000))
    assert 0.55 < heard / 1000 < 0.95


def test_reception_weakens_with_distance():
    network = _quiet_network(path_loss=PathLossModel(shadowing_sigma_db=0.0))
    near = network.deliver(_alert_uplink(km_east=0.3, sf=12))[0]
    far = network.deliver(_alert_uplink(km_east=6.0, sf=12))[0]
    rssi = {r.gateway.gateway_id: r.rssi_dbm for r in near.receptions}
    rssi_far = {r.gateway.gateway_id: r.rssi_dbm for r in far.receptions}
    assert rssi["tembo-gw-hq"] > rssi_far["tembo-gw-hq"] + 15


def test_same_seed_gives_byte_identical_json():
    def run() -> str:
        network = Network(RESERVE, seed=42)
        out = [network.tts_uplink(d) for i in range(50) for d in network.deliver(_alert_uplink(f_cnt=i, km_east=4.0))]
        return json.dumps(out)

    assert run() == run()


def test_network_refuses_probabilities_outside_zero_to_one():
    with pytest.raises(ValueError, match="loss_probability"):
        Network(RESERVE, loss_probability=1.5)


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(min_size=0, max_size=51), f_cnt=st.integers(0, 2**32 - 1), port=st.integers(1, 223),
       sf=st.sampled_from([7, 8, 9, 10, 11, 12]))
def test_any_frame_survives_the_trip_through_tts_and_chirpstack_json(payload, f_cnt, port, sf):
    network = Network(RESERVE, seed=0, loss_probability=0.0, duplicate_probability=0.0,
                      path_loss=PathLossModel(shadowing_sigma_db=0.0))
    uplink = Uplink("tembo-collar-01", "70B3D57ED0060001", port, f_cnt, payload, T0, HQ.lat, HQ.lon,
                    spreading_factor=sf)
    [delivery] = network.deliver(uplink)
    tts = json.loads(json.dumps(network.tts_uplink(delivery)))["uplink_message"]
    chirp = json.loads(json.dumps(network.chirpstack_uplink(delivery)))
    assert base64.b64decode(tts.get("frm_payload", "")) == payload == base64.b64decode(chirp.get("data", ""))
    assert (tts.get("f_cnt", 0), tts["f_port"]) == (f_cnt, port) == (chirp.get("fCnt", 0), chirp["fPort"])
    assert float(tts["consumed_airtime"].removesuffix("s")) == pytest.approx(airtime_s(len(payload), sf), abs=1e-6)


@given(sf=st.sampled_from([7, 8, 9, 10, 11, 12]), size=st.integers(0, 50))
def test_airtime_never_shrinks_with_more_bytes_or_a_slower_data_rate(sf, size):
    assert airtime_s(size + 1, sf) >= airtime_s(size, sf)
    if sf < 12:
        assert airtime_s(size, sf + 1) > airtime_s(size, sf)
