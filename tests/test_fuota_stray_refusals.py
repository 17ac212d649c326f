"""A field technician's campaign is under way when a collar hears a fragmentation set-up that is not the campaign's
(a replayed frame, another fleet's campaign on the same network) and refuses it. The refusal is the collar's answer
to that frame, not news of the campaign's update: the campaign's collar and its delivery must go on as if it had not
been heard, and the campaign's history says it was.
"""

from __future__ import annotations

from fuota_network import StandInTheThingsStack, serve
from test_fuota_from_the_outside import campaign_in_its_window

from collar_firmware import codec
from collar_firmware.update import RECEIVING


def another_campaigns_set_up(network: StandInTheThingsStack, device_id: str, nb_frag: int) -> bytes:
    """A fragmentation set-up of another campaign for the collar (another bridge's, or a replayed frame): the one the
    network server carried for this campaign, under the same FragIndex, of nb_frag fragments and another Descriptor."""
    ours = next(p["payload"] for p in network.unicast if p["device"] == device_id and p["f_port"] == 201
                and p["payload"][0] == codec.tag_of("frag_session_setup"))
    values = codec.decode(201, ours, "down")
    return codec.encode("frag_session_setup", {**values, "nb_frag": nb_frag, "descriptor": 0x5EED})


def test_field_technician_sees_a_collar_whose_session_a_stray_set_up_ended_set_up_again_not_failed_too_large(
        sqlite_url, port):
    """collar-000 is receiving the campaign's model a dozen fragments into the window when a set-up of another campaign
    (2,000 fragments, the same FragIndex) reaches it: it cannot take it, so, as TS004 has a set-up of the same index
    do, its session ends; it answers NotEnoughMemory and says "too_large" on port 31. Neither is about the campaign's
    image. The campaign failed collar-000 with "too_large" (a technician reads: the model is too large for it) and its
    delivery counted it done; it must instead find the session gone and set the collar up again, as after a reset."""
    with serve(StandInTheThingsStack(), port) as network:
        with campaign_in_its_window(sqlite_url, network) as (bridge, reserve, campaign, _version, _opens):
            collar = reserve.fleet[0]
            assert collar.collar.update.state == RECEIVING
            collar.hear(codec.port_of("frag_session_setup"), another_campaigns_set_up(network, collar.device_id, 2000))
            assert collar.collar.update.state != RECEIVING, "the stray set-up ended its session"
            reserve.run_until(reserve.now_s() + 6 * 3600, step_s=120)
            after = bridge.campaign(campaign["id"])
    said = [m["result"] for d, m in reserve.heard if d == collar.device_id and m["message"] == "ack"
            and m["on_port"] == codec.port_of("data_fragment")]
    assert said == ["too_large"], "the collar said its refusal on port 31"
    states = {c["device_id"]: (c["state"], c["reason"]) for c in after["collars"]}
    assert states[collar.device_id] == ("sending", None), "not failed by another campaign's set-up"
    assert after["counts"] == {"updated": 2, "sending": 1}, after["collars"]
    events = [e["event"] for e in after["history"] if e["device_id"] == collar.device_id]
    assert "stray_setup_refused" in events and "collar_lost_session" in events, events
    assert collar.collar.update.receiving(), "set up again, its new session gathers the unicast fragments"
