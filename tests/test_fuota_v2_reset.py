"""A field technician's campaign goes to collars on TS004 v2.0.0 (the image's MIC under each collar's own key, a
SessionCnt that grows from set-up to set-up). One collar is reset in the window and must be set up again: in the
version the collar announced, with its key ring, as its first set-up was, not in v1.0.0 without one.
"""

from __future__ import annotations

from fuota_network import gen_app_key, write_key_file
from fuota_twin import KEYS_FOR, model_image
from test_fuota_from_the_outside import into_the_window, v2_campaign
from test_fuota_multicast_setup import SecuredReserve, open_bridge, tts  # noqa: F401

from collar_firmware import codec, config
from lora_bridge.updates import frag_v2
from simulator import fuota


def test_a_v2_collar_reset_in_the_window_is_set_up_again_in_v2_with_its_key_ring_and_a_greater_session_count(
        sqlite_url, tts, tmp_path, monkeypatch):  # noqa: F811
    """collar-002 announced TS004 v2.0.0 and took the campaign's v2.0.0 set-up; its watchdog resets it a dozen
    fragments into the window, its session gone (its last SessionCnt kept in flash). The bridge set it up again in
    v1.0.0, without its key ring: no MIC over the image it rebuilds, no report that its block arrived, a session of
    a version the collar did not ask for. Set up again it must be in v2.0.0, with a SessionCnt above the one it took
    (else it refuses the set-up as a replay) and the image's MIC under that count: it takes it, gathers the rest by
    unicast, says its block's MIC held and installs the model."""
    with v2_campaign(sqlite_url, tts, tmp_path, monkeypatch) as (bridge, reserve, campaign, version):
        into_the_window(reserve, campaign)
        reset = reserve.fleet[2]
        assert reset.collar.update.receiving()
        reserve.watchdog_reset(reset.device_id)
        reserve.run_until(reserve.now_s() + 6 * 3600, step_s=120)
        assert reset.collar.update.receiving() and reset.collar.update.frag_version == 2, "its new session is v2.0.0's"
        reserve.run_until(reserve.now_s() + 5 * 86400, step_s=1800)  # a straggler: unicast, a few frames a day
        after = bridge.campaign(campaign["id"])
    setups = [p["payload"] for p in tts.unicast if p["device"] == reset.device_id and p["f_port"] == 201
              and p["payload"][0] == codec.tag_of("frag_session_setup")]
    v2_size = codec.command_size(201, codec.tag_of("frag_session_setup"), "down", 2)
    assert [len(p) for p in setups] == [v2_size, v2_size], "v2.0.0's set-up for the window, and again after the reset"
    first, again = (codec.decode(201, p, "down", 2) for p in setups)
    assert again["session_cnt"] > first["session_cnt"], "a SessionCnt the collar has not taken"
    assert again["descriptor"] == first["descriptor"] == campaign["id"]
    answers = [m["status"] & 0x3F for d, m in reserve.heard if d == reset.device_id
               and m["message"] == "frag_session_setup_ans"]
    assert answers == [0, 0], "both taken: no replay refused, no MIC or key refused"
    block = [m["mic_error"] for d, m in reserve.heard if d == reset.device_id
             and m["message"] == "frag_data_block_received"]
    assert block == [0], "it rebuilt the image and said the MIC under its new SessionCnt held"
    assert reset.collar.model.version == version
    assert after["state"] == "done" and after["counts"] == {"updated": 3}, after["collars"]


def test_a_collar_that_refused_v2_for_want_of_a_crypto_engine_is_set_up_again_in_v1_after_a_reset(
        sqlite_url, tts, tmp_path, monkeypatch):  # noqa: F811
    """collar-000 announces TS004 v2.0.0 on the board's radio, whose crypto engine is not wired: it refused the
    campaign's v2.0.0 set-up (EncodingUnsupported) and took v1.0.0's. Reset in the window, it is set up again as it
    said it can be, in v1.0.0, not offered v2.0.0 once more to refuse it again (a downlink of its few a day)."""
    monkeypatch.setattr(config, "FW_VERSION", frag_v2.V2_SINCE)
    image, version = model_image()
    fleet = fuota.build_fleet(2, 0.0, 11, KEYS_FOR, without_crypto=frozenset({0}))
    for i, c in enumerate(fleet):
        c.hal.radio.provision(gen_app_key(i))
    key_file = write_key_file(tmp_path, [c.device_id for c in fleet])
    bare = fleet[0]
    with open_bridge(sqlite_url, tts, key_file) as bridge:
        reserve = SecuredReserve(fleet, tts, 4, key_file)
        campaign = reserve.start(bridge, image, version)
        into_the_window(reserve, campaign)
        assert bare.collar.update.receiving()
        reserve.watchdog_reset(bare.device_id)
        reserve.run_until(reserve.now_s() + 6 * 3600, step_s=120)
        after = bridge.campaign(campaign["id"])
    v1_size = codec.command_size(201, codec.tag_of("frag_session_setup"), "down", 1)
    v2_size = codec.command_size(201, codec.tag_of("frag_session_setup"), "down", 2)
    setups = [p["payload"] for p in tts.unicast if p["device"] == bare.device_id and p["f_port"] == 201
              and p["payload"][0] == codec.tag_of("frag_session_setup")]
    assert [len(p) for p in setups] == [v2_size, v1_size, v1_size], "v2.0.0 refused, v1.0.0 taken, and again"
    answers = [m["status"] & 0x3F for d, m in reserve.heard if d == bare.device_id
               and m["message"] == "frag_session_setup_ans"]
    assert answers == [1, 0, 0], "EncodingUnsupported once, then both v1.0.0 set-ups taken"
    assert bare.collar.update.receiving()
    assert {c["device_id"]: c["state"] for c in after["collars"]}[bare.device_id] == "sending"
