"""A field technician's reserve where half the collars still run firmware 1.0.0 gets its update to all.

Until 5 December (f9724fa) Tembo's collars read FragSessionSetupReq's FragSession byte with FragIndex in
bits 1..0 and McGroupBitMask in bits 5..2; from 1.0.1 they read it as TS004 lays it out (FragIndex 5..4,
McGroupBitMask 3..0). The collars in the field run 1.0.0: given TS004's byte for FragIndex 0 and group 0
(0x01) they open session 1 and drop every fragment of session 0. The bridge encodes each collar's set-up
for the firmware it reports (lora_bridge/updates/setup_layouts.py).

The collars of 1.0.0 here run the real firmware of today with the set-up reading of 1.0.0: the collar
codec and `update_install.setup` as they were at 1b6ed97 (the parent of f9724fa), read from the git
history at test time and run in their own module objects.
"""

from __future__ import annotations

import subprocess
import types
from datetime import timedelta
from pathlib import Path

import pytest
from fuota_network import StandInTheThingsStack, serve
from fuota_twin import KEYS_FOR, Reserve, model_image, one_collar_campaign, open_bridge
from sqlalchemy import update as sql_update

from collar_firmware import codec, config, update
from lora_bridge.domain.fuota_delivery import MC_GROUP_BIT_MASK
from lora_bridge.store.tables import Device
from lora_bridge.updates import delivery, setup_layouts
from lora_bridge.updates.fec import fragment
from simulator import fuota

BEFORE_TS004 = "1b6ed974583cac769a8caa7b4d8ac0aef9b5e93d"  # the last collar firmware reading the byte as 1.0.0 did
ROOT = Path(__file__).resolve().parents[1]
SETUP_TAG = codec.tag_of("frag_session_setup")
SETUP_PORT, FRAGMENT_PORT = codec.port_of("frag_session_setup"), codec.port_of("data_fragment")


@pytest.fixture
def network(port):
    with serve(StandInTheThingsStack(), port) as stand_in:
        yield stand_in


def firmware_1_0_0_module(name: str) -> types.ModuleType:
    """The collar module `name` as firmware 1.0.0 has it, from the project's history."""
    where = f"{BEFORE_TS004}:collar_firmware/{name}.py"
    shown = subprocess.run(["git", "show", where], cwd=ROOT, capture_output=True, text=True, check=False)
    if shown.returncode != 0:
        pytest.fail(f"firmware 1.0.0's {name}.py is read from the git history ({where}): {shown.stderr.strip()}")
    module = types.ModuleType(f"firmware_1_0_0_{name}")
    exec(compile(shown.stdout, where, "exec"), module.__dict__)  # noqa: S102 - the project's own history
    return module


def runs_firmware_1_0_0(collar: fuota.FleetCollar, old_codec: types.ModuleType,
                        old_install: types.ModuleType) -> None:
    """The collar reports 1.0.0 (its boot record's version) and reads FragSessionSetupReq as 1.0.0 did."""
    agent = collar.collar.update
    agent.boot.active_version = update.version_raw("1.0.0")
    handle = agent.handle

    def handle_as_1_0_0(port: int, payload: bytes, now: int, group: int | None = None) -> None:
        # 1.0.0 knew no McGroupBitMask and took one command a frame: every frame as if unicast, whatever its group
        if port == codec.port_of("frag_session_setup") and payload[:1] == bytes([SETUP_TAG]) \
                and agent.state in (update.IDLE, update.RECEIVING):
            old_install.setup(agent, old_codec.decode(port, payload, "down"), now)
            agent.heard_s = now  # 1.0.0 had no silent-session timer; today's must not end its session at once
        else:
            handle(port, payload, now)

    agent.handle = handle_as_1_0_0


def test_the_set_up_layout_follows_the_firmware_each_collar_reports():
    assert setup_layouts.layout_for(config.FW_VERSION) is setup_layouts.TS004, "today's firmware reads TS004"
    assert setup_layouts.layout_for("1.0.0") is setup_layouts.TEMBO_1_0
    assert setup_layouts.layout_for("2.3.0") is setup_layouts.TS004
    # TS004 FragSession for FragIndex 0 and group 0: 0x01; as 1.0.0 reads it: 0x04
    assert setup_layouts.TS004.frag_session(0, 1) == 0x01 and setup_layouts.TEMBO_1_0.frag_session(0, 1) == 0x04
    assert setup_layouts.TS004.frag_session(2, 0b0101) == 0x25, "LoRaMac-node: FragIndex 5..4, McGroupBitMask 3..0"
    for broken in (None, "", "1.0", "v1.0.0", "1.0.256"):  # not reported, or not a version: both firmwares' byte
        assert setup_layouts.layout_for(broken) is setup_layouts.EITHER
    with pytest.raises(ValueError):
        setup_layouts.TS004.frag_session(4, 1)
    with pytest.raises(ValueError):
        setup_layouts.TS004.frag_session(0, 16)


def test_every_set_up_byte_the_bridge_sends_opens_its_session_to_the_deliverys_group_on_either_firmware():
    """Today's collar drops a fragment heard on a multicast group its session's McGroupBitMask does not enable
    (TS004 v1.0.0: "SHALL be silently dropped"): the FragSession byte the bridge sends a collar on today's
    firmware, or one whose firmware it has not heard, must name the delivery's FragIndex and enable its group
    as TS004 reads it (FragIndex 5..4, McGroupBitMask 3..0), and name that FragIndex as 1.0.0 reads it (1..0)."""
    from lora_bridge.domain import fuota_delivery as fd

    for layout in (setup_layouts.TS004, setup_layouts.EITHER):
        byte = layout.frag_session(fd.SESSION_INDEX, fd.MC_GROUP_BIT_MASK)
        read = codec.decode(SETUP_PORT, bytes([SETUP_TAG, byte]) + bytes(9), "down")
        assert read["frag_index"] == fd.SESSION_INDEX and read["mc_group_bit_mask"] >> fd.MC_GROUP & 1, layout.name
    for layout in (setup_layouts.TEMBO_1_0, setup_layouts.EITHER):
        assert layout.frag_session(fd.SESSION_INDEX, fd.MC_GROUP_BIT_MASK) & 3 == fd.SESSION_INDEX, layout.name
    assert setup_layouts.EITHER.frag_session(0, fd.MC_GROUP_BIT_MASK) & 0x0F == 0b0100, \
        "FragIndex 0 could not: 1.0.0's FragIndex bits are TS004's group 0 and 1 bits"


@pytest.mark.parametrize("frag_index", range(4))
def test_a_set_up_answer_is_read_as_the_collars_firmware_writes_its_fragindex(frag_index):
    """TS004 FragSessionSetupAns StatusBitMask bits 7..6 are the FragIndex set up; firmware 1.0.0 wrote 0 there
    whatever it took; a collar whose firmware the bridge has not heard may be either."""
    today, refused = frag_index << 6, frag_index << 6 | 0x02  # no error bit; NotEnoughMemory
    for status in (today, refused):
        assert setup_layouts.answers_set_up(config.FW_VERSION, frag_index, status)
        assert setup_layouts.answers_set_up(None, frag_index, status)
    assert setup_layouts.answers_set_up("1.0.0", frag_index, 0x00) and setup_layouts.answers_set_up(None, frag_index, 0)
    assert setup_layouts.answers_set_up(config.FW_VERSION, frag_index, 0x00) == (frag_index == 0)
    assert setup_layouts.answers_set_up("1.0.0", frag_index, today) == (frag_index == 0)
    for other in set(range(4)) - {frag_index, 0}:
        assert not setup_layouts.answers_set_up(config.FW_VERSION, frag_index, other << 6)
        assert not setup_layouts.answers_set_up(None, frag_index, other << 6 | 0x04)


def test_firmware_1_0_0_reads_todays_ts004_set_up_as_another_session():
    """What made the reserve's collars unreachable: 1.0.0 takes FragIndex 1 from TS004's 0x01."""
    old_codec = firmware_1_0_0_module("codec")
    ts004 = codec.encode("frag_session_setup", {"frag_index": 0, "mc_group_bit_mask": 1, "nb_frag": 10,
                                                "frag_size": 50, "control": 0, "padding": 0, "descriptor": 1})
    assert old_codec.decode(201, ts004, "down")["session"] & 3 == 1
    as_1_0_0 = codec.encode("frag_session_setup", {**setup_layouts.setup_values("1.0.0", 0, 1), "nb_frag": 10,
                                                   "frag_size": 50, "control": 0, "padding": 0, "descriptor": 1})
    assert old_codec.decode(201, as_1_0_0, "down")["session"] == 0x04, "FragIndex 0, group 0 in bits 5..2"
    assert codec.decode(201, as_1_0_0, "down")["frag_index"] == 0, "today's firmware reads FragIndex 0 in it too"


@pytest.mark.parametrize("frag_index", range(4))
def test_a_collar_whose_firmware_the_bridge_has_not_heard_rebuilds_its_session_on_1_0_0_and_on_todays(frag_index):
    """The bridge sets up a collar that has not reported its firmware with one FragSession byte: a collar
    on 1.0.0 and one on today's firmware both open the session of that FragIndex, drop the fragments of
    another session sent beside it, rebuild the model and install it."""
    image, version = model_image()
    on_1_0_0, on_todays = fleet = fuota.build_fleet(2, 0.0, 31, KEYS_FOR)
    runs_firmware_1_0_0(on_1_0_0, firmware_1_0_0_module("codec"), firmware_1_0_0_module("update_install"))
    frags = fragment(image, 50)
    setup = codec.encode("frag_session_setup", {
        **setup_layouts.setup_values(None, frag_index, MC_GROUP_BIT_MASK), "nb_frag": frags.nb_frag,
        "frag_size": frags.frag_size, "control": delivery.BLOCK_ACK_DELAY, "padding": frags.padding,
        "descriptor": 1})
    another = (frag_index + 1) % 4
    for collar in fleet:
        collar.hear(SETUP_PORT, setup)
        for n in range(1, frags.nb_frag + 1):
            collar.hear(FRAGMENT_PORT, codec.encode("data_fragment", {"index_and_n": another << 14 | n,
                                                                      "data": [0xA5] * frags.frag_size}))
            collar.hear(FRAGMENT_PORT, codec.encode("data_fragment", {"index_and_n": frag_index << 14 | n,
                                                                      "data": list(frags.fragment(n))}))
        clock, until = collar.hal.clock, collar.hal.clock.now_s() + 3 * 3600
        while clock.now_s() < until:  # the collar lives: it answers, checks and installs (its uplinks kept)
            clock.sleep_until(min(collar.collar.step(), until))

    assert on_1_0_0.collar.update.frag_index == on_todays.collar.update.frag_index == frag_index
    assert [c.collar.model.version for c in fleet] == [version, version], "both rebuilt and installed the model"
    answers = {c.device_id: [codec.decode(port, payload)["status"] for _s, port, payload, _c, _h in c.hal.radio.uplinks
                             if port == SETUP_PORT and payload[0] == codec.tag_of("frag_session_setup_ans")]
               for c in fleet}
    # today's answer names the FragIndex it took; 1.0.0's answer has none (status 0 whatever it took)
    assert answers == {on_1_0_0.device_id: [0], on_todays.device_id: [frag_index << 6]}


def test_field_technician_reads_why_a_collar_of_firmware_unknown_to_the_bridge_got_the_set_up_both_read(
        sqlite_url, network):
    """The bridge's guard for a collar it holds no firmware version of (every status names one, so a
    store row without it is the case): its set-up is the byte both firmwares read, and the campaign's
    history says why."""
    with open_bridge(sqlite_url, network) as bridge:
        campaign, opens = one_collar_campaign(bridge)
        with bridge.db.write() as session:
            session.execute(sql_update(Device).where(Device.device_id == "collar-01").values(fw_version=None))
        bridge.deliver_updates(opens - timedelta(seconds=300))
        bridge.flush_downlinks()
        history = bridge.campaign(campaign["id"])["history"]

    (set_up,) = [p["payload"] for p in network.unicast
                 if p["f_port"] == SETUP_PORT and p["payload"][0] == SETUP_TAG]
    assert set_up[1] == 0x15, "FragIndex 1 in bits 5..4 and 1..0, group 0's bit in bit 2 (TS004's group 0: bit 0)"
    (said,) = [e["detail"] for e in history if e["event"] == "collar_setup_layout"]
    assert said["fw_version"] is None and "FragIndex in bits 5..4 and 1..0" in said["layout"]
    assert "1.0.0" in said["why"] and "1.0.1" in said["why"]


def test_field_technician_updates_a_reserve_half_on_firmware_1_0_0_half_on_todays(sqlite_url, network):
    image, version = model_image()
    old_codec, old_install = firmware_1_0_0_module("codec"), firmware_1_0_0_module("update_install")
    fleet = fuota.build_fleet(4, 0.05, 21, KEYS_FOR)
    old, new = fleet[:2], fleet[2:]
    for c in old:
        runs_firmware_1_0_0(c, old_codec, old_install)
    reserve = Reserve(fleet, network, seed=7)
    with open_bridge(sqlite_url, network) as bridge:
        campaign = reserve.start(bridge, image, version)
        reported = {v["device_id"]: v["fw_version"] for v in bridge.fleet_versions()}
        reserve.through_delivery(campaign)
        after = bridge.campaign(campaign["id"])

    assert reported == {**{c.device_id: "1.0.0" for c in old}, **{c.device_id: config.FW_VERSION for c in new}}
    assert after["state"] == "done" and after["counts"] == {"updated": 4}, after["delivery"]
    assert all(c.collar.model.version == version for c in fleet), "every collar installed the model"
    # each collar's set-up laid out as its firmware reads it; one group carried the fragments to all
    frag_session = {p["device"]: p["payload"][1] for p in network.unicast
                    if p["f_port"] == codec.port_of("frag_session_setup") and p["payload"][0] == SETUP_TAG}
    assert frag_session == {**{c.device_id: 0x05 for c in old}, **{c.device_id: 0x11 for c in new}}, \
        "FragIndex 1: in bits 1..0 with group 0's bit in bit 2 for 1.0.0, in bits 5..4 with group 0 in bit 0 for TS004"
    assert all(after["delivery"]["collars"][c.device_id]["unicast_reason"] is None for c in fleet), "all in the group"
    # the technician reads why the older collars got another set-up
    said = {e["device_id"]: e["detail"] for e in after["history"] if e["event"] == "collar_setup_layout"}
    assert set(said) == {c.device_id for c in old}
    assert all(d["fw_version"] == "1.0.0" and "FragIndex in bits 1..0" in d["layout"] and "1.0.0" in d["why"]
               for d in said.values())


@pytest.mark.parametrize("frag_index", range(4))
def test_field_technician_updates_a_reserve_on_1_0_0_and_todays_firmware_whatever_fragindex_the_delivery_uses(
        sqlite_url, network, monkeypatch, frag_index):
    """The delivery's session may have any FragIndex 0..3: its set-up, fragments (Index&N bits 15..14) and status
    requests (bits 2..1) carry it, and each collar's answers are read as its firmware writes them. Firmware
    1.0.0 answers FragSessionSetupAns with bits 7..6 at 0 whatever it took: until 6 December the bridge read
    that as another session's answer for any FragIndex but 0, and left the collar out of the window."""
    from lora_bridge.domain import fuota_delivery

    monkeypatch.setattr(fuota_delivery, "SESSION_INDEX", frag_index)
    image, version = model_image()
    old, new = fleet = fuota.build_fleet(2, 0.0, 23, KEYS_FOR)
    runs_firmware_1_0_0(old, firmware_1_0_0_module("codec"), firmware_1_0_0_module("update_install"))
    reserve = Reserve(fleet, network, seed=3)
    with open_bridge(sqlite_url, network) as bridge:
        campaign = reserve.start(bridge, image, version)
        reserve.through_delivery(campaign)
        after = bridge.campaign(campaign["id"])

    assert after["state"] == "done" and after["counts"] == {"updated": 2}, after["delivery"]
    assert all(after["delivery"]["collars"][c.device_id]["unicast_reason"] is None for c in fleet), "all in the group"
    assert [c.collar.update.frag_index for c in fleet] == [frag_index, frag_index]
    frag_session = {p["device"]: p["payload"][1] for p in network.unicast
                    if p["f_port"] == SETUP_PORT and p["payload"][0] == SETUP_TAG}
    assert frag_session == {old.device_id: 1 << 2 | frag_index, new.device_id: frag_index << 4 | 1}
    fragments = [f["payload"] for f in network.multicast if f["payload"][0] == codec.tag_of("data_fragment")]
    assert fragments and {f[2] >> 6 for f in fragments} == {frag_index}, "Index&N's FragIndex, little-endian"
    status_requests = [f["payload"] for f in network.multicast if f["payload"][0] == codec.tag_of("frag_session_status")]
    assert status_requests and {r[1] >> 1 & 3 for r in status_requests} == {frag_index}
    answers = {d: m["status"] for d, m in reserve.heard if m["message"] == "frag_session_setup_ans"}
    assert answers == {old.device_id: 0, new.device_id: frag_index << 6}
