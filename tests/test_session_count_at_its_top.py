"""A field technician's collar has taken TS004 v2.0.0's last SessionCnt (65,535: a u16 on the wire). TS004 v2.0.0 lets
a collar take a set-up only when its SessionCnt is greater than the last it took (FragSessionSetupAns bit 4,
SessionCnt replay) and says nothing of wrapping; LoRa Basics Modem refuses any count not above the last and any from
2**16 up. Tembo does not wrap either (a wrapped count would let a recorded old set-up be taken again): the collar
refuses every v2.0.0 set-up from then on, and the bridge sets it up in v1.0.0 instead, its history saying why, so the
collar still gets a signed image it checks itself.
"""

from __future__ import annotations

import struct

import pytest
from test_collar_update_micropython import (
    FRAG_SIZE,
    KEY,
    ROOT_KEY,
    GuestCollar,
    on_201,
    spec_block_mic,
    spec_fragment,
    spec_setup,
    spec_setup_v2,
)
from test_fuota_from_the_outside import into_the_window, v2_campaign
from test_fuota_multicast_setup import tts  # noqa: F401

from collar_firmware import codec, config, records
from collar_firmware.update_install import KEYS_SESSION_CNT
from lora_bridge import fuota_session_counts
from lora_bridge.updates import release
from lora_bridge.updates.fec import fragment
from simulator import fuota

SETUP_TAG = codec.tag_of("frag_session_setup")


@pytest.mark.micropython
def test_a_collar_under_micropython_at_the_last_session_count_refuses_v2_set_ups_and_takes_a_v1_one():
    """Under the real MicroPython: the collar takes SessionCnt 65,535; a v2.0.0 set-up with 65,535 again, or with a
    count wrapped to 0 or 1, is answered SessionCntReplay (02 50); a v1.0.0 set-up of the same image is taken (02 40)
    and the signed model installs from it."""
    collar = GuestCollar()
    try:
        blob = fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), KEY)
        image = release.model_image(blob, KEY, config.HARDWARE_ID)
        frags = fragment(image, FRAG_SIZE)
        collar.run(f"run.hal.radio.provision_root_key({ROOT_KEY!r})")
        top = fuota_session_counts.LAST_COUNT
        collar.hear([(201, spec_setup_v2(1, frags, top, spec_block_mic(1, top, image)))])
        collar.live(60)
        for count in (top, 0, 1):
            collar.hear([(201, spec_setup_v2(1, frags, count, spec_block_mic(1, count, image)))])
            collar.live(60)
        collar.hear([(201, spec_setup(1, frags))] + [(201, spec_fragment(1, n, frags))
                                                      for n in range(1, frags.nb_frag + 1)])
        collar.live(6 * 3600)
        installed = collar.value("run.collar.model.version")
        answers = [a for a in on_201(collar) if a.startswith("02")]
    finally:
        collar.close()
    assert answers == ["0240", "0250", "0250", "0250", "0240"], "65,535 taken, never wrapped, then v1.0.0 taken"
    assert installed == str(fuota._version_of(blob))


def _setups_to(tts, device_id: str) -> list[tuple[int, int | None]]:  # noqa: F811
    """(TS004 version, SessionCnt or None) of each set-up the network server was handed for the collar, in order."""
    out = []
    for p in tts.unicast:
        if p["device"] == device_id and p["f_port"] == 201 and p["payload"][0] == SETUP_TAG:
            v2 = len(p["payload"]) >= codec.command_size(201, SETUP_TAG, "down", 2)
            out.append((2, codec.decode(201, p["payload"], "down", 2)["session_cnt"]) if v2 else (1, None))
    return out


def test_field_technician_sees_a_collar_at_the_last_session_count_set_up_in_v1_and_updated(
        sqlite_url, tts, tmp_path, monkeypatch):  # noqa: F811
    """collar-001's flash holds SessionCnt 65,535. The bridge's set-ups, their step doubling, reach 65,535 and are
    refused as replays; then it sent 65,535 again for ever, each refused, and the collar was failed "no result" after
    days. Now the next set-up is TS004 v1.0.0's, the history says the count is spent, and the collar installs."""
    with v2_campaign(sqlite_url, tts, tmp_path, monkeypatch) as (bridge, reserve, campaign, version):
        top = reserve.fleet[1]
        top.hal.storage.write(KEYS_SESSION_CNT[0], records.sealed(struct.pack("<H", fuota_session_counts.LAST_COUNT)))
        into_the_window(reserve, campaign)
        reserve.run_until(reserve.now_s() + 14 * 86400, step_s=1800)
        after = bridge.campaign(campaign["id"])
    setups = _setups_to(tts, top.device_id)
    first = campaign["id"] % fuota_session_counts.COUNT_SPAN
    refused = [(2, first + (1 << (j + 1)) - 2) for j in range(16)]  # 1, 3, 7, ..., 65,535
    assert setups == refused + [(1, None)], setups
    spent = [e for e in after["history"] if e["event"] == fuota_session_counts.SPENT_EVENT]
    assert [e["device_id"] for e in spent] == [top.device_id], after["history"]
    assert top.collar.model.version == version
    assert after["counts"] == {"updated": 3}, after["collars"]
