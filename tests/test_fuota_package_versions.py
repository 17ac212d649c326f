"""Field technicians update collars that the bridge asked which FUOTA packages they speak, and see the answers.

Frames written from the LoRa Alliance packages' layouts (TS004 / TS005 v1.0.0, as LoRaMac-node's LmhpFragmentation.c
and LmhpRemoteMcastSetup.c answer them): PackageVersionReq = CID 00 alone on the package's port; PackageVersionAns =
00 | PackageIdentifier | PackageVersion, the identifier 3 for TS004 fragmentation (port 201) and 2 for TS005
multicast set-up (port 200). `00 03 02`: TS004 v2.0.0; `00 03 01`: v1.0.0; `00 02 01`: TS005 v1.0.0.
"""

from __future__ import annotations

from datetime import timedelta

import bridge_builders as b
import pytest
from fuota_network import GROUP, StandInTheThingsStack, serve
from fuota_twin import KEY, KEYS_FOR, model_image, start_campaign
from test_fuota_multicast_setup import tts  # noqa: F401
from test_fuota_v2_delivery import V2_FIRMWARE, _deliver, _setups

from collar_firmware import config
from ranger_dashboard.update_tables import progress_frame
from simulator import fuota

WAIT_S = 600
REQ = bytes.fromhex("00")  # PackageVersionReq: its CID, no payload


@pytest.fixture
def network(port):
    with serve(StandInTheThingsStack(), port) as stand_in:
        yield stand_in


def _history(campaign: dict, device_id: str) -> list[tuple[str, dict]]:
    return [(e["event"], e["detail"]) for e in campaign["history"] if e["device_id"] == device_id]


def test_collars_are_asked_their_package_version_and_set_up_by_what_they_answer_or_failed_when_the_bridge_cannot_speak_it(
        sqlite_url, network):
    image, version = model_image()
    answers = {"collar-01": ["00 03 01", "00 03 01"],  # TS004 v1.0.0, heard twice
               "collar-02": ["00 09 01"],  # a package the bridge does not know on port 201
               "collar-03": ["00 03 00"],  # version 0
               "collar-04": ["00 03"]}  # cut short, then silent
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,), network_server_url=network.url,
                        network_server_api_key=network.api_key, outbox_worker=False, fuota_multicast_group=GROUP,
                        fuota_version_wait_s=WAIT_S) as bridge:
        for name in answers:
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=name, f_cnt=1))
        campaign = start_campaign(bridge, image, version, max_canary_failures_pct=100)
        asked_at = campaign["delivery"]["window_opens"] - timedelta(hours=1)
        bridge.deliver_updates(asked_at)
        bridge.flush_downlinks()
        asked = {p["device"]: (p["f_port"], p["payload"]) for p in network.unicast}
        before = len(bridge.dead_letters())
        for name, hexes in answers.items():
            for f_cnt, hex_ in enumerate(hexes, start=2):
                bridge.ingest_tts_uplink(b.tts_uplink((201, bytes.fromhex(hex_)), device_id=name, f_cnt=f_cnt))
        bridge.process_pending()
        bridge.deliver_updates(asked_at + timedelta(minutes=5))
        bridge.flush_downlinks()
        early = [p["device"] for p in network.unicast if p["f_port"] == 201 and p["payload"][0] == 0x02]
        bridge.deliver_updates(asked_at + timedelta(seconds=WAIT_S + 1))
        bridge.flush_downlinks()
        late = [p["device"] for p in network.unicast if p["f_port"] == 201 and p["payload"][0] == 0x02][len(early):]
        dead = bridge.dead_letters()[before:]
        campaign = bridge.campaign(campaign["id"])

    assert asked == {name: (201, REQ) for name in answers}, "PackageVersionReq first, TS004's port (no own group)"
    assert "frag_package_version_ans" in (dead[0].reason or "") and len(dead) == 1, "the short answer: a dead letter"
    assert (early, late) == (["collar-01"], ["collar-04"]), "set up once on its answer; the silent one after the wait"
    states = {c["device_id"]: (c["state"], c["reason"]) for c in campaign["collars"]}
    assert states["collar-02"] == ("failed", "it answered package 9 on port 201, not TS004 (package 3)")
    assert states["collar-03"] == ("failed", "it speaks TS004 version 0; the bridge speaks 1 and 2")
    assert states["collar-01"][0] == states["collar-04"][0] == "sending"
    (unanswered,) = [d for e, d in _history(campaign, "collar-04") if e == "collar_version_unanswered"]
    assert unanswered["firmware_says"] == "TS004 v2.0.0" and str(WAIT_S) in unanswered["why"], "firmware 1.2.3"
    shown = {d: c["packages"] for d, c in campaign["delivery"]["collars"].items()}
    assert {k: v for k, v in shown["collar-01"]["TS004"].items() if k != "heard_at"} == {
        "package_id": 3, "version": 1, "fw_version": "1.2.3", "problem": None}
    assert shown["collar-03"]["TS004"]["problem"] == "speaks TS004 version 0; the bridge speaks 1 and 2"
    assert shown["collar-04"] == {}, "nothing announced"
    packages = dict(zip(*(progress_frame(campaign)[k] for k in ("Collar", "Packages")), strict=True))
    assert packages == {"collar-01": "TS004 v1", "collar-04": "asked",
                        "collar-02": "TS004 v1 (answered package 9 on port 201, not TS004 (package 3))",
                        "collar-03": "TS004 v0 (speaks TS004 version 0; the bridge speaks 1 and 2)"}, "the Updates page"


def test_collars_on_v2_firmware_answer_what_their_radio_speaks_and_get_that_set_up_without_a_refusal(
        sqlite_url, tts, tmp_path, monkeypatch):  # noqa: F811
    """The real firmware answers PackageVersionReq: 2 with its radio's crypto engine, 1 on the board's LR1110
    without one; the bridge sets each up in what it said (no v2.0.0 set-up refused first), after TS005's too."""
    monkeypatch.setattr(config, "FW_VERSION", V2_FIRMWARE)
    fleet, campaign, version = _deliver(sqlite_url, tts, tmp_path, frozenset({0}), fuota_version_wait_s=WAIT_S)
    bare, engine = fleet

    for c in fleet:
        first = [(p["f_port"], p["payload"]) for p in tts.unicast if p["device"] == c.device_id][:2]
        assert sorted(first) == [(200, REQ), (201, REQ)], "PackageVersionReq of TS005 and TS004 before any set-up"
        assert c.collar.model.version == version
    assert [len(s) for s in _setups(tts, bare.device_id)] == [11], "v1.0.0's set-up alone: it answered 1"
    assert [len(s) for s in _setups(tts, engine.device_id)] == [17], "v2.0.0's: it answered 2"
    packages = {d: {n: (p["package_id"], p["version"]) for n, p in c["packages"].items()}
                for d, c in campaign["delivery"]["collars"].items()}
    assert packages == {bare.device_id: {"TS005": (2, 1), "TS004": (3, 1)},
                        engine.device_id: {"TS005": (2, 1), "TS004": (3, 2)}}
    assert not [e for c in fleet for e, _ in _history(campaign, c.device_id) if e == "collar_setup_v1"]


def test_the_simulated_fleet_is_set_up_by_what_each_collar_answers_as_the_bridge_decides():
    """The twin's campaign asks each real-firmware collar (simulator/fuota.py `ask_version`) and sets it up by the
    bridge's rule (frag_v2.set_up_in_v2): the collar whose radio has no crypto engine said 1, the other 2."""
    image, version = model_image()
    fleet = fuota.build_fleet(2, 0.0, 11, KEYS_FOR, without_crypto=frozenset({0}), root_keys=True)
    result = fuota.run_campaign(fleet, image, 1, lambda c: c.collar.model.version == version, ask_version=True)

    assert [(c.package_answer, c.frag_version) for c in fleet] == [((3, 1), 1), ((3, 2), 2)]
    assert set(result.results.values()) == {"ok"}
