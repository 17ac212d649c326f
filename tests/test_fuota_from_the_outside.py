"""A field technician rolls an update out to a real fleet and meets what the field sends back: set-ups nobody
meant for a collar, answers for sessions it does not hold. What the collar reports in its status and what the
campaign pages show must stay the truth about the collar's last real update.
"""

from __future__ import annotations

from collar_firmware import codec
from simulator import fuota
from tests.test_collar_hostile_world import KEYS_FOR, live, new_model_image, setup_req


def test_a_stray_refused_set_up_leaves_the_status_saying_what_the_last_real_update_did():
    """A collar updated to model 2 hears a fragmentation set-up it cannot take (a replayed frame, another fleet's
    campaign): it refuses it and says why on port 31, but it held no session that the set-up ended, so the status
    it sends from then on still reports model 2 installed. Until this check the refusal replaced that result
    with "failed, too_large" of an unknown image, and the Updates page showed a failed update on a collar whose
    update had worked."""
    c = fuota.build_fleet(1, 0.0, 7, KEYS_FOR)[0]
    assert fuota.run_campaign([c], new_model_image(), 1).results[c.device_id] == "ok"
    live(c, 6 * 3600)
    before = c.collar.status_values(c.hal.clock.now_s())
    assert codec.UPDATE_OUTCOMES[before["update_outcome"]] == "installed" and codec.ACK_RESULTS[before["update_reason"]] == "ok"
    c.hear(201, setup_req(2000, 48, 0))
    sent = live(c, 120)
    acks = [codec.decode(port, payload) for port, payload in sent if port == codec.port_of("ack")]
    assert [(a["on_port"], a["result"]) for a in acks] == [(201, "too_large")], "the refusal is still said"
    after = c.collar.status_values(c.hal.clock.now_s())
    kept = ("update_kind", "update_version", "update_outcome", "update_reason")
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}, "the last real update's result stays"
    c.collar = type(c.collar)(c.hal, None, KEYS_FOR(c.flash))  # and after a reboot, read back from flash
    rebooted = c.collar.status_values(c.hal.clock.now_s())
    assert {k: rebooted[k] for k in kept} == {k: before[k] for k in kept}
