"""A field technician's campaign the bridge only tracks (another system delivers the image; the bridge follows which
collar runs what). A canary hears a stray fragmentation set-up after its release (another fleet's, a replayed frame)
and refuses it on port 31. That refusal answers no set-up of the campaign's image: it must not fail the canary and
stop the campaign, and the history must say it was heard and why it was not counted.
"""

from __future__ import annotations

import bridge_builders as b
import pytest
from test_collar_hostile_world import KEYS_FOR, live, setup_req
from test_update_campaigns import (  # noqa: F401 - the herd's stores and the bridge over them
    HERD,
    bridge,
    herd_postgres_template,
    herd_sqlite_store,
    herd_store,
    start,
    states,
)

from collar_firmware import codec
from collar_firmware.update_install import MAX_IMAGE_BYTES
from lora_bridge.domain import campaigns_tracked_refusals
from lora_bridge.store.utc import utc_now
from simulator import fuota


def refusal_ack(nb_frag: int, frag_size: int) -> dict:
    """The port-31 ack a collar running the real firmware sends for a stray set-up of nb_frag fragments of
    frag_size bytes, decoded."""
    c = fuota.build_fleet(1, 0.0, 7, KEYS_FOR)[0]
    c.hear(201, setup_req(nb_frag, frag_size, 0))
    acks = [codec.decode(port, payload) for port, payload in live(c, 120) if port == codec.port_of("ack")]
    assert len(acks) == 1 and acks[0]["on_port"] == 201
    return acks[0]


def hand_over(bridge, device_id: str, ack: dict, f_cnt: int) -> None:  # noqa: F811
    """The collar's ack heard by the bridge, dated now (after its release: the collar's clock agrees with the
    bridge's)."""
    dated = codec.encode_packet("ack", {**ack, "time_s": int(utc_now().timestamp())})
    bridge.ingest_tts_uplink(b.tts_uplink(dated, device_id=device_id, f_cnt=f_cnt))
    bridge.process_pending()


@pytest.mark.parametrize(("nb_frag", "frag_size", "result"), [(2000, 48, "too_large"), (0, 48, "malformed")])
def test_field_technician_sees_a_tracked_canary_that_refused_a_stray_set_up_still_sending_and_told_why(
        bridge, nb_frag, frag_size, result):  # noqa: F811
    """The canary's refusal, dated after its release, failed it and stopped the campaign (one canary of two,
    failures allowed 0 %). Now it stays "sending", the history says the refusal was not counted, and its real
    result settles it afterwards."""
    ack = refusal_ack(nb_frag, frag_size)
    assert ack["result"] == result
    campaign = start(bridge, devices=HERD[:4], canary_pct=50, max_canary_failures_pct=0)
    canary = next(d for d, (stage, _) in states(campaign).items() if stage == "canary")
    hand_over(bridge, canary, ack, 60)
    after = bridge.campaigns()[0]
    assert after["state"] == "canary" and states(after)[canary] == ("canary", "sending"), after["collars"]
    said = [e for e in after["history"] if e["event"] == campaigns_tracked_refusals.NOT_COUNTED]
    assert [(e["device_id"], e["detail"]["result"]) for e in said] == [(canary, result)], after["history"]
    hand_over(bridge, canary, {**ack, "cmd": codec.tag_of("data_fragment"), "result": "ok"}, 61)
    assert states(bridge.campaigns()[0])[canary] == ("canary", "updated")


def test_field_technician_tracking_an_image_larger_than_a_collar_takes_sees_its_refusal_fail_the_canary(
        bridge):  # noqa: F811
    """A tracked campaign whose image is larger than any collar takes: a set-up of it can only be refused as too
    large, so the canary's too_large refusal is the campaign's own outcome and fails it."""
    ack = refusal_ack(2000, 48)
    campaign = bridge.create_campaign(name="firmware too big", kind="model", version="0.0.2", image_sha256="ab" * 32,
                                      image_bytes=MAX_IMAGE_BYTES + 1, user="tech", devices=HERD[:4], canary_pct=50,
                                      max_canary_failures_pct=0)
    canary = next(d for d, (stage, _) in states(campaign).items() if stage == "canary")
    hand_over(bridge, canary, ack, 60)
    after = bridge.campaigns()[0]
    failed = next(c for c in after["collars"] if c["device_id"] == canary)
    assert (failed["state"], failed["reason"]) == ("failed", "too_large") and after["state"] == "stopped"
