"""Field technicians see every answer a collar packs into one FUOTA uplink recorded, each for what it says.

The LoRa Alliance packages let one uplink carry several answers one after another (TS005 v1.0.0 4: "A message
MAY carry more than one command ... Each command MUST be individually acknowledged by the end-device"; TS004
v1.0.0 3 alike; LoRa Basics Modem's fragmentation package sends up to five answers in one uplink). The uplinks
below are written byte by byte from the packages' layouts, never with Tembo's encoder:
  - TS004 (port 201): FragSessionSetupAns = 02 | StatusBitMask (FragIndex 7..6 | RFU | WrongDescriptor |
    FragIndexUnsupported | NotEnoughMemory | EncodingUnsupported); PackageVersionAns = 00 | 03 | 01;
    FragSessionStatusAns = 01 | Received&index (FragIndex 15..14 | NbFragReceived 13..0, little-endian) |
    MissingFrag | Status; FragSessionDeleteAns = 03 | RFU 7..3 | SessionDoesNotExist 2 | FragIndex 1..0.
  - TS005 (port 200): McGroupStatusAns = 01 | Status (RFU | NbTotalGroups 6..4 | AnsGroupMask 3..0), then
    McGroupID (1) and McAddr (4, little-endian) of every group in AnsGroupMask; McGroupSetupAns = 02 | IDerror 2 |
    McGroupID; McClassCSessionAns = 04 | Status (StartMissed 5 | McGroupUndefined 4 | FreqError 3 | DRError 2 |
    McGroupID), then TimeToStart (3) only when no error bit is set.
  - TS003 (port 202): AppTimeReq = 01 | DeviceTime (4, GPS s) | Param (RFU | AnsRequired 4 | TokenReq 3..0).
"""

from __future__ import annotations

import bridge_builders as b
import pytest
from fuota_network import StandInTheThingsStack, serve
from fuota_twin import model_image, open_bridge, start_campaign
from sqlalchemy import select

from collar_firmware import codec
from lora_bridge.decode import decode_payload
from lora_bridge.domain.fuota_delivery import SESSION_INDEX
from lora_bridge.fuota_answers import split_answers
from lora_bridge.store.tables import RawUplink

SETUP_OK = bytes([0x02, SESSION_INDEX << 6])
VERSION = bytes.fromhex("000301")
STATUS_5_RECEIVED_7_MISSING = bytes([0x01]) + (SESSION_INDEX << 14 | 5).to_bytes(2, "little") + bytes([7, 0])
GROUP_STATUS_TWO = bytes.fromhex("01" "23" "00" "00000000" "01" "04030201")  # groups 0 and 1 of 2, McAddr 0x01020304
CLASS_C_UNDEFINED = bytes.fromhex("04" "10")  # McGroupUndefined for group 0: no TimeToStart
CLASS_C_OK = bytes.fromhex("04" "00" "100e00")  # group 0, its window in 3,600 s
APP_TIME_REQ = bytes.fromhex("01" "1244ce56" "15")  # DeviceTime 1456358418, AnsRequired, TokenReq 5


@pytest.mark.parametrize(("port", "payload", "names"), [
    (201, SETUP_OK + VERSION + STATUS_5_RECEIVED_7_MISSING,
     ["frag_session_setup_ans", "frag_package_version_ans", "frag_session_status_ans"]),
    (201, bytes.fromhex("0306" "0301"), ["frag_session_delete_ans", "frag_session_delete_ans"]),
    (200, GROUP_STATUS_TWO + CLASS_C_UNDEFINED + CLASS_C_OK + bytes.fromhex("0205" "0301" "000201"),
     ["mc_group_status_ans", "mc_class_c_session_ans", "mc_class_c_session_ans", "mc_group_setup_ans",
      "mc_group_delete_ans", "mc_package_version_ans"]),
    (200, bytes.fromhex("0100") + CLASS_C_OK, ["mc_group_status_ans", "mc_class_c_session_ans"]),
    (202, APP_TIME_REQ + APP_TIME_REQ, ["app_time_req", "app_time_req"]),
    (201, SETUP_OK, ["frag_session_setup_ans"]),
])
def test_every_answer_of_a_fuota_uplink_is_read_in_order(port, payload, names):
    decoded = decode_payload(codec, port, payload)
    assert decoded.reason is None
    assert [a["message"] for a in decoded.answers] == names
    assert b"".join(split_answers(codec, port, payload)) == payload


def test_the_fields_of_each_answer_are_those_the_packages_lay_out():
    group_status, undefined, window = decode_payload(codec, 200, GROUP_STATUS_TWO + CLASS_C_UNDEFINED
                                                     + CLASS_C_OK).answers
    assert (group_status["nb_total_groups"], group_status["ans_group_mask"]) == (2, 0b0011)
    assert group_status["groups"] == [{"group": 0, "mc_addr": 0}, {"group": 1, "mc_addr": 0x01020304}]
    assert (undefined["status"], undefined["time_to_start_s"]) == (0x10, [])
    assert (window["status"], window["time_to_start_s"]) == (0, [3600])


@pytest.mark.parametrize(("port", "payload", "why"), [
    (201, SETUP_OK + STATUS_5_RECEIVED_7_MISSING[:-1], "a FragSessionStatusAns one byte short after a good answer"),
    (201, SETUP_OK + bytes([0x7F]), "an unknown answer id after a good answer"),
    (201, SETUP_OK + bytes([0x02]), "a FragSessionSetupAns without its status"),
    (200, GROUP_STATUS_TWO[:-1] + CLASS_C_OK, "a McGroupStatusAns naming two groups and carrying one and a bit"),
    (200, bytes.fromhex("01"), "a McGroupStatusAns without its status"),
    (200, CLASS_C_OK[:-1], "a McClassCSessionAns without error bits cut inside TimeToStart"),
    (200, CLASS_C_UNDEFINED + bytes.fromhex("100e00"), "TimeToStart after an error bit: three bytes of nothing"),
    (202, APP_TIME_REQ + APP_TIME_REQ[:-1], "a second AppTimeReq one byte short"),
    (202, b"", "nothing at all"),
])
def test_a_fuota_uplink_broken_anywhere_is_refused_whole(port, payload, why):
    decoded = decode_payload(codec, port, payload)
    assert decoded.fields is None and decoded.answers == (), why
    assert f"port {port}" in (decoded.reason or ""), why


@pytest.fixture
def network(port):
    with serve(StandInTheThingsStack(), port) as stand_in:
        yield stand_in


def test_field_technician_sees_each_answer_of_one_uplink_move_the_delivery(sqlite_url, network):
    """collar-01 answers its set-up, its package version and its status in one port-201 uplink; collar-02 its
    groups and a refused Class C window in one port-200 uplink. Each is recorded as if it had come alone; a third
    uplink, broken after a good answer, is a dead letter and moves nothing."""
    image, version = model_image()
    with open_bridge(sqlite_url, network) as bridge:
        for f_cnt, name in enumerate(("collar-01", "collar-02"), start=1):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=name, f_cnt=f_cnt))
        start_campaign(bridge, image, version)
        bridge.ingest_tts_uplink(b.tts_uplink((201, SETUP_OK + VERSION + STATUS_5_RECEIVED_7_MISSING),
                                              device_id="collar-01", f_cnt=5))
        bridge.ingest_tts_uplink(b.tts_uplink((200, GROUP_STATUS_TWO + CLASS_C_UNDEFINED), device_id="collar-02",
                                              f_cnt=5))
        bridge.ingest_tts_uplink(b.tts_uplink((201, SETUP_OK + STATUS_5_RECEIVED_7_MISSING[:-1]),
                                              device_id="collar-02", f_cnt=6))
        bridge.process_pending()
        collars = bridge.campaigns()[0]["delivery"]["collars"]
        groups = {g["group"]: g for g in bridge.multicast_groups("collar-02")}
        letters = bridge.dead_letters()
        with bridge.db.read() as session:
            kept = list(session.execute(select(RawUplink.f_port, RawUplink.status, RawUplink.message)
                                        .where(RawUplink.f_port.in_((200, 201))).order_by(RawUplink.id)))

    assert [tuple(k) for k in kept] == [(201, "processed", "frag_session_setup_ans+2"),
                                        (200, "processed", "mc_group_status_ans+1"), (201, "dead_letter", None)]
    assert (collars["collar-01"]["setup_answered"], collars["collar-01"]["missing"]) == (True, 7)
    assert (groups[0]["state"], groups[1]["state"], groups[1]["mc_addr"]) == ("defined", "defined", "01020304")
    assert "Class C window" in (collars["collar-02"]["unicast_reason"] or "")
    assert collars["collar-02"]["setup_answered"] is not True, "the broken uplink's set-up answer was not applied"
    (letter,) = letters
    assert "frag_session_status_ans" in letter.reason or "cut short" in letter.reason
