"""Field technicians no longer need a group provisioned at the factory: the bridge sets up the fleet's
multicast group on every collar itself (TS005 McGroupSetupReq, the group key wrapped with each collar's
McKEKey from the technician's key file), records what each collar says it holds, and a collar whose
root key is not the one in the file never opens the group's frames: it is repaired by unicast.

The collars are the twin running the real firmware; their simulated LoRaWAN stack unwraps the group
key and checks every multicast frame's MIC with the session keys it derived (simulator/lorawan_frames.py,
written from the LoRaWAN and TS005 texts apart from the bridge's code). The network server is The
Things Stack stand-in of tests/fuota_network.py; the frames it multicasts are secured here with the
group's McAppSKey / McNwkSKey, as the network server holding the group's keys does.
"""

from __future__ import annotations

import os

import bridge_builders as b
import pytest
from fuota_network import GROUP, MC_ADDR_HEX, StandInTheThingsStack, gen_app_key, serve, write_key_file
from fuota_twin import KEY, KEYS_FOR, Reserve, model_image, start_campaign

from collar_firmware import codec
from lora_bridge.domain import fuota_delivery
from lora_bridge.updates import delivery, multicast_keys
from simulator import fuota
from simulator.lorawan_frames import secure_downlink


def provisioned_fleet(n: int) -> list[fuota.FleetCollar]:
    """n twin collars, each stack holding the AppKey the technician's key file gives it."""
    fleet = fuota.build_fleet(n, 0.0, 11, KEYS_FOR)
    for i, c in enumerate(fleet):
        c.hal.radio.provision(gen_app_key(i))
    return fleet


class SecuredReserve(Reserve):
    """The reserve of test_fuota_delivery, its multicast frames secured with the group's session keys
    and heard through each collar's stack (a frame its keys do not open is dropped there)."""

    def __init__(self, fleet, network, seed, key_file) -> None:
        super().__init__(fleet, network, seed)
        self.key_file = key_file
        self.f_cnt_mc = 0

    def group_keys(self) -> multicast_keys.GroupKeys:
        """The session keys of the group the bridge's campaign set up (from the technician's key file)."""
        campaign_id = self.bridge.campaigns()[0]["id"]
        return multicast_keys.load(self.key_file).group(int(MC_ADDR_HEX, 16), fuota_delivery.group_label(campaign_id))

    def _on_air(self, frame: dict) -> None:
        self.f_cnt_mc += 1
        keys = self.group_keys()
        phy = secure_downlink(keys.mc_addr, self.f_cnt_mc, frame["f_port"], frame["payload"],
                              keys.app_s_key, keys.nwk_s_key)
        for c in self.fleet:
            heard = c.hal.radio.hear_multicast(phy, self.f_cnt_mc)
            if heard is not None:
                c.hear(*heard)


@pytest.fixture
def tts(port):
    with serve(StandInTheThingsStack(), port) as stand_in:
        yield stand_in


def open_bridge(store_url, network, key_file, **extra):
    settings = {"collar_keys_file": str(key_file), "fuota_multicast_addr": MC_ADDR_HEX, **extra}
    return b.fresh_bridge(store_url, network_server_url=network.url, network_server_api_key=network.api_key,
                          outbox_worker=False, fuota_multicast_group=GROUP, signed_by=(KEY,), **settings)


def test_the_bridge_sets_up_the_group_itself_and_a_collar_with_another_key_never_opens_it(sqlite_url, tts, tmp_path):
    image, version = model_image()
    fleet = provisioned_fleet(3)
    fleet[2].hal.radio.provision(gen_app_key(7))  # re-flashed with another key than the file says
    key_file = write_key_file(tmp_path, [c.device_id for c in fleet])
    with open_bridge(sqlite_url, tts, key_file) as bridge:
        reserve = SecuredReserve(fleet, tts, 4, key_file)
        campaign = reserve.start(bridge, image, version)
        opens = campaign["delivery"]["window_opens"]
        reserve.run_until(int(opens.timestamp()) - 600, step_s=600)
        groups_before = {c.device_id: bridge.multicast_groups(c.device_id) for c in fleet}
        reserve.run_until(int(opens.timestamp()) + 3600)
        for c in fleet:
            bridge.request_multicast_status(c.device_id)
        reserve.run_until(reserve.now_s() + 3 * 3600, step_s=600)
        groups_after = {c.device_id: bridge.multicast_groups(c.device_id) for c in fleet}
        campaign = bridge.campaigns()[0]

    # set-up first, unicast: the wrapped key on the air is each collar's own, never the group key
    keys = multicast_keys.load(key_file).group(int(MC_ADDR_HEX, 16), fuota_delivery.group_label(campaign["id"]))
    for i, c in enumerate(fleet):
        mine = [codec.decode(p["f_port"], p["payload"], "down") for p in tts.unicast if p["device"] == c.device_id]
        assert [m["message"] for m in mine[:3]] == ["mc_group_setup", "mc_class_c_session", "frag_session_setup"]
        setup = mine[0]
        wrapped = multicast_keys.wrap_mc_key(multicast_keys.mc_ke_key(multicast_keys.mc_root_key(gen_app_key(i))),
                                             keys.mc_key)
        assert multicast_keys.key_words(wrapped) == {k: setup[k] for k in multicast_keys.key_words(wrapped)}
        assert (setup["group"], setup["mc_addr"]) == (0, int(MC_ADDR_HEX, 16))
        frag_setup = next(p["payload"] for p in tts.unicast if p["device"] == c.device_id
                          and p["f_port"] == 201 and p["payload"][0] == 0x02)
        assert frag_setup[1] == 0x11, "TS004 FragSession: RFU 2 | FragIndex 1 | McGroupBitMask: group 0 only"
        assert keys.mc_key not in b"".join(p["payload"] for p in tts.unicast)
        assert len(mine) <= 10, "fair use"
    # what each collar says it holds: the group at the delivery's address (status answers included)
    for c in fleet:
        assert groups_before[c.device_id][0]["state"] == "defined", "McGroupSetupAns without IDerror"
        assert groups_after[c.device_id] == [
            {"group": 0, "state": "defined", "mc_addr": MC_ADDR_HEX, "campaign_id": campaign["id"],
             "updated_at": groups_after[c.device_id][0]["updated_at"]},
            *[{"group": g, "state": "absent", "mc_addr": None, "campaign_id": None,
               "updated_at": groups_after[c.device_id][g]["updated_at"]} for g in (1, 2, 3)]]
    # the collars with the file's key heard the fragments; the re-flashed one dropped every frame
    assert fleet[0].hal.radio.dropped_multicast == fleet[1].hal.radio.dropped_multicast == 0
    assert fleet[2].hal.radio.dropped_multicast > 0
    assert fleet[0].collar.model.version == fleet[1].collar.model.version == version
    delivery = campaign["delivery"]["collars"]
    assert delivery[fleet[2].device_id]["missing"] and delivery[fleet[2].device_id]["unicast_sent"] > 0, \
        "the collar that opened nothing is repaired by unicast"
    assert tts.refused == []


def test_a_delivery_refuses_collars_missing_from_the_key_file_and_a_bad_file(sqlite_url, tts, tmp_path):
    image, version = model_image()
    fleet = fuota.build_fleet(2, 0.0, 11, KEYS_FOR)
    key_file = write_key_file(tmp_path, [fleet[0].device_id])  # the second collar was never entered
    with open_bridge(sqlite_url, tts, key_file) as bridge:
        for c in fleet:
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=c.device_id, f_cnt=1))
        with pytest.raises(ValueError, match=f"no root key .* for {fleet[1].device_id}"):
            start_campaign(bridge, image, version)
        assert bridge.campaigns() == [], "nothing half made"
    os.chmod(key_file, 0o644)
    with open_bridge(sqlite_url, tts, key_file) as bridge:
        with pytest.raises(ValueError, match="chmod 600"):
            start_campaign(bridge, image, version)
    with open_bridge(sqlite_url, tts, tmp_path / "absent.toml") as bridge:
        with pytest.raises(ValueError, match="no such collar key file"):
            start_campaign(bridge, image, version)


def test_a_garbled_group_status_answer_is_kept_and_changes_nothing(sqlite_url, tts, tmp_path):
    fleet = fuota.build_fleet(1, 0.0, 11, KEYS_FOR)
    key_file = write_key_file(tmp_path, [c.device_id for c in fleet])
    # McGroupStatusAns written from TS005: CID 01, NbTotalGroups 1 | AnsGroupMask 0b0010, group 1 at 0x0A0B0C0D
    good = bytes.fromhex("01" "11" "01" "0d0c0b0a")
    with open_bridge(sqlite_url, tts, key_file) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink((200, good), device_id="collar-000", f_cnt=1))
        bridge.ingest_tts_uplink(b.tts_uplink((200, good + b"\x01"), device_id="collar-000", f_cnt=2))  # a torn item
        bridge.ingest_tts_uplink(b.tts_uplink((200, bytes.fromhex("01")), device_id="collar-000", f_cnt=3))
        bridge.process_pending()
        groups = bridge.multicast_groups("collar-000")
        dead = bridge.dead_letters()
    assert [(g["group"], g["state"], g["mc_addr"]) for g in groups] == [
        (0, "absent", None), (1, "defined", "0a0b0c0d"), (2, "absent", None), (3, "absent", None)]
    assert len(dead) == 2, "the torn answers are kept for inspection"


def test_a_technician_on_the_things_stack_gets_the_groups_session_keys_once_on_the_terminal(tmp_path, capsys):
    import json

    from tembo import cli

    fleet = fuota.build_fleet(1, 0.0, 11, KEYS_FOR)
    key_file = write_key_file(tmp_path, [c.device_id for c in fleet])
    assert cli.main(["keys", "multicast", "--campaign", "3", "--keys-file", str(key_file),
                     "--mc-addr", MC_ADDR_HEX]) == 0
    shown = json.loads(capsys.readouterr().out)
    group = multicast_keys.load(key_file).group(int(MC_ADDR_HEX, 16), fuota_delivery.group_label(3))
    assert (shown["dev_addr"], shown["app_s_key"], shown["nwk_s_key"]) == (
        MC_ADDR_HEX.upper(), group.app_s_key.hex().upper(), group.nwk_s_key.hex().upper())
    assert f"--session.dev-addr {MC_ADDR_HEX.upper()}" in shown["ttn_lw_cli"]
    assert "--multicast --supports-class-c" in shown["ttn_lw_cli"]
    os.chmod(key_file, 0o604)
    assert cli.main(["keys", "multicast", "--campaign", "3", "--keys-file", str(key_file),
                     "--mc-addr", MC_ADDR_HEX]) == 1
    assert "chmod 600" in capsys.readouterr().err
    for bad in ("1ff0a42", "zz000000", ""):
        assert cli.main(["keys", "multicast", "--campaign", "3", "--keys-file", str(key_file), "--mc-addr", bad]) == 2


def test_technician_typing_an_odd_multicast_address_or_campaign_gets_no_keys_for_a_group_the_bridge_would_not_use(
        tmp_path, capsys):
    from pydantic import ValidationError

    from lora_bridge.settings import BridgeSettings
    from tembo import cli

    key_file = write_key_file(tmp_path, [c.device_id for c in fuota.build_fleet(1, 0.0, 11, KEYS_FOR)])
    for odd in ("0x0a0b0c", "0a0b_0c0", " a0b0c0d", "+a0b0c0d"):  # int(x, 16) takes each of them
        with pytest.raises(ValidationError):
            BridgeSettings(fuota_multicast_addr=odd)
        assert cli.main(["keys", "multicast", "--campaign", "3", "--keys-file", str(key_file), "--mc-addr", odd]) == 2
        assert capsys.readouterr().out == "", f"no keys printed for {odd!r}"
    for campaign in ("0", "-3"):
        assert cli.main(["keys", "multicast", "--campaign", campaign, "--keys-file", str(key_file),
                         "--mc-addr", MC_ADDR_HEX]) == 2
        assert "a campaign's id" in capsys.readouterr().err
    # the folder the key file sits in, named instead of the file: until 5 December "no such collar key file"
    assert cli.main(["keys", "multicast", "--campaign", "3", "--keys-file", str(key_file.parent),
                     "--mc-addr", MC_ADDR_HEX]) == 1
    said = capsys.readouterr()
    assert said.out == "" and f"{key_file.parent} is a folder, not the collar key file" in said.err


def test_a_collar_refusing_the_group_or_deleting_it_is_recorded_per_group(sqlite_url, tts, tmp_path):
    fleet = fuota.build_fleet(1, 0.0, 11, KEYS_FOR)
    key_file = write_key_file(tmp_path, [c.device_id for c in fleet])
    # from TS005: McGroupSetupAns = CID 02 | IDerror (bit 2) | McGroupID; McGroupDeleteAns = CID 03 | ...
    answers = [("02" "01", 1, "defined"), ("02" "06", 2, "refused"), ("03" "01", 1, "absent"),
               ("03" "07", 3, "absent")]
    with open_bridge(sqlite_url, tts, key_file) as bridge:
        seen = []
        for f_cnt, (frame, group, _state) in enumerate(answers, start=1):
            bridge.ingest_tts_uplink(b.tts_uplink((200, bytes.fromhex(frame)), device_id="collar-000", f_cnt=f_cnt))
            bridge.process_pending()
            seen.append({g["group"]: g["state"] for g in bridge.multicast_groups("collar-000")}[group])
        bridge.request_multicast_status("collar-000")
        bridge.flush_downlinks()
    assert seen == [state for _f, _g, state in answers]
    assert [codec.decode(p["f_port"], p["payload"], "down") for p in tts.unicast] == [
        {"message": "mc_group_status", "port": 200, "req_group_mask": 0x0F}]
    assert tts.unicast[0]["payload"] == bytes.fromhex("010f"), "McGroupStatusReq asking for every group"


def test_a_collar_refusing_the_group_is_left_out_of_the_window_and_updated_by_unicast(sqlite_url, tts, tmp_path):
    image, version = model_image()
    fleet = provisioned_fleet(3)
    fleet[2].hal.radio.refuse_groups = True  # its stack refuses every multicast group: McGroupSetupAns IDerror
    key_file = write_key_file(tmp_path, [c.device_id for c in fleet])
    with open_bridge(sqlite_url, tts, key_file, downlinks_per_device_per_day=100) as bridge:  # a day is slow to run
        reserve = SecuredReserve(fleet, tts, 4, key_file)
        campaign = reserve.start(bridge, image, version)
        opens = int(campaign["delivery"]["window_opens"].timestamp())
        reserve.run_until(opens + 1800)
        during = bridge.campaigns()[0]["delivery"]
        groups = bridge.multicast_groups(fleet[2].device_id)
        status_requests = sum(1 for f in tts.multicast
                              if codec.decode(f["f_port"], f["payload"], "down")["message"] == "frag_session_status")
        reserve.run_until(reserve.now_s() + 12 * 3600, step_s=1800)  # unicast: after the collar's uplinks
        campaign = bridge.campaigns()[0]
        groups_after = {c.device_id: bridge.multicast_groups(c.device_id)[0]["state"] for c in fleet}

    refused = fleet[2].device_id
    assert groups[0]["state"] == "refused", "its McGroupSetupAns said IDerror"
    assert during["collars"][refused]["unicast_reason"] == "refused the multicast group (McGroupSetupAns IDerror)"
    assert during["collars"][refused]["missing"] == during["nb_frag"], "it hears none of the group's frames"
    assert all(during["collars"][c.device_id]["unicast_reason"] is None for c in fleet[:2])
    # the group's accounting counts only its members: no loss, so no repair round and one status request
    assert during["rounds"] == 0 and status_requests == 1
    assert fleet[0].collar.model.version == fleet[1].collar.model.version == version
    assert fleet[2].collar.model.version == version, "the refusing collar got the model by unicast"
    fragments = [p for p in tts.unicast if p["device"] == refused
                 and codec.decode(p["f_port"], p["payload"], "down")["message"] == "data_fragment"]
    assert fragments and campaign["delivery"]["collars"][refused]["unicast_sent"] == len(fragments)
    assert len(fragments) <= delivery.needed(during["nb_frag"], fuota_delivery.PRIOR_LOSS), \
        "its own loss sizes its unicast, not the group's frames it could not hear"
    states = {c["device_id"]: c["state"] for c in campaign["collars"]}
    assert states == {c.device_id: "updated" for c in fleet}
    # the campaign is done: the collars that took the group were told to delete it (TS005 McGroupDeleteReq)
    # and said so; the one that refused it was not asked
    assert campaign["state"] == "done" and campaign["delivery"]["ended_at"] is not None
    deletes = {p["device"] for p in tts.unicast if codec.decode(p["f_port"], p["payload"], "down")["message"]
               == "mc_group_delete"}
    assert deletes == {fleet[0].device_id, fleet[1].device_id}
    assert groups_after == {fleet[0].device_id: "absent", fleet[1].device_id: "absent", refused: "refused"}
    assert fleet[0].hal.radio.multicast_groups == fleet[1].hal.radio.multicast_groups == {}
    assert "delivery_ended" in [e["event"] for e in campaign["history"]]
    assert tts.refused == []


def test_field_technician_sees_the_group_of_a_collar_that_rejoined_counted_lost_and_set_up_again(sqlite_url, tts, tmp_path):
    """A collar's modem keeps the group's keys in RAM: a brown-out and rejoin before the window loses them.
    Until 5 December the bridge still showed the group as defined and never sent McGroupSetupReq again: the
    collar dropped every group frame. Now the group shows absent from the rejoin, it is set up again, and
    the collar updates in the window with the others."""
    image, version = model_image()
    fleet = provisioned_fleet(3)
    key_file = write_key_file(tmp_path, [c.device_id for c in fleet])
    with open_bridge(sqlite_url, tts, key_file) as bridge:
        reserve = SecuredReserve(fleet, tts, 4, key_file)
        campaign = reserve.start(bridge, image, version)
        opens = int(campaign["delivery"]["window_opens"].timestamp())
        reserve.run_until(opens - 5400, step_s=300)
        rebooted = fleet[1]
        held = bridge.multicast_groups(rebooted.device_id)[0]["state"]
        pushed_before = len(tts.unicast)
        reserve.brown_out(rebooted.device_id)  # the modem keeps the factory's key-encryption key, not the group
        assert rebooted.hal.radio.multicast_groups == {} and hasattr(rebooted.hal.radio, "derive_key")
        lost = bridge.multicast_groups(rebooted.device_id)[0]["state"]
        reserve.run_until(opens - 600, step_s=300)
        again = bridge.multicast_groups(rebooted.device_id)[0]["state"]
        reserve.run_until(opens + 3600)
        reserve.run_until(reserve.now_s() + 5 * 3600, step_s=600)
        after = bridge.campaign(campaign["id"])

    assert (held, lost, again) == ("defined", "absent", "defined")
    set_up = [codec.decode(p["f_port"], p["payload"], "down")["message"] for p in tts.unicast[pushed_before:]
              if p["device"] == rebooted.device_id and p["f_port"] in (200, 201)]
    assert set_up[:3] == ["mc_group_setup", "mc_class_c_session", "frag_session_setup"]
    assert rebooted.hal.radio.dropped_multicast == 0 and rebooted.collar.model.version == version
    assert after["state"] == "done" and after["counts"] == {"updated": 3}
