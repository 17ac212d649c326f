"""A collar in the trial boot of a firmware (the new image under self-test) answers no fragmentation
session set-up: its fragments would go over the slot it is trying (collar_firmware/update.py). Until
6 December a new campaign set such a collar up at once; the set-up was lost, the collar was left out of
the window for "no FragSessionSetupAns" and never set up again, and failed days later for "no result".
Now it waits, gated, for the trial's confirm or rollback, which its next status carries, and is set up
then.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import bridge_builders as b
import pytest
from fuota_network import StandInTheThingsStack, serve
from fuota_twin import KEY, model_image, open_bridge, start_campaign

from collar_firmware import codec
from collar_firmware import config as collar_config
from lora_bridge.domain.fuota_delivery import SESSION_INDEX
from lora_bridge.updates import release

FIRMWARE = "1.1.0"


@pytest.fixture
def network(port):
    with serve(StandInTheThingsStack(), port) as stand_in:
        yield stand_in


class OneCollar:
    """collar-01 heard by the bridge through its webhook's ingest, the bridge's clock the technician's."""

    def __init__(self, bridge, network: StandInTheThingsStack) -> None:
        self.bridge, self.network, self.f_cnt = bridge, network, 0

    def uplink(self, message: tuple[int, bytes]) -> None:
        self.f_cnt += 1
        self.bridge.ingest_tts_uplink(b.tts_uplink(message, device_id="collar-01", f_cnt=self.f_cnt))
        self.bridge.process_pending()

    def tick(self, now: datetime) -> None:
        self.bridge.clock = lambda: now
        self.bridge.deliver_updates(now)
        self.bridge.flush_downlinks()

    def set_ups(self) -> int:
        return sum(1 for p in self.network.unicast if p["device"] == "collar-01"
                   and p["f_port"] == codec.port_of("frag_session_setup")
                   and p["payload"][0] == codec.tag_of("frag_session_setup"))

    def state(self, campaign_id: int) -> dict:
        return next(c for c in self.bridge.campaign(campaign_id)["collars"] if c["device_id"] == "collar-01")


def test_field_technician_sees_a_collar_on_trial_wait_for_its_report_then_get_the_next_update(sqlite_url, network):
    firmware = release.build_image(1, FIRMWARE, collar_config.HARDWARE_ID,
                                   release.pack_bundle({"main.mpy": b"\x01" * 400}), KEY)
    image, version = model_image()
    with open_bridge(sqlite_url, network) as bridge:
        collar = OneCollar(bridge, network)
        bridge.clock = lambda: b.T0 + timedelta(minutes=5)
        collar.uplink(b.status(fw_version="1.0.1"))
        first = bridge.start_campaign(firmware, user="tech", canary_pct=100, min_battery_mv=0, min_rssi_dbm=-140.0)
        opens = first["delivery"]["window_opens"]
        collar.tick(opens - timedelta(seconds=300))
        collar.uplink(codec.encode_packet("mc_class_c_session_ans", {"status": 0, "time_to_start_s": [{"s": 300}]}))
        collar.uplink(codec.encode_packet("frag_session_setup_ans", {"status": SESSION_INDEX << 6}))
        collar.tick(opens + timedelta(seconds=600))
        nb_frag = bridge.campaign(first["id"])["delivery"]["nb_frag"]
        collar.uplink(codec.encode_packet("frag_session_status_ans", {"received_and_index": SESSION_INDEX << 14 | nb_frag, "missing": 0}))
        # the image is whole on the collar, which installs it and boots it on trial; the technician aborts
        bridge.clock = lambda: opens + timedelta(seconds=900)
        bridge.steer_campaign(first["id"], "abort", "tech")
        assert collar.state(first["id"])["state"] == "unknown"

        second = start_campaign(bridge, image, version)  # the retrained model, while the trial runs
        collar.tick(opens + timedelta(hours=1))
        collar.tick(opens + timedelta(hours=2))
        waiting = collar.state(second["id"])
        set_ups_before = collar.set_ups()
        # the trial ends: rolled back (the self-test failed), as the collar's next status says
        collar.uplink(b.status(time_s=b.T0_S + 7200, fw_version="1.0.1", update={
            "update_kind": "firmware", "update_outcome": "rolled_back", "update_version": FIRMWARE,
            "update_reason": "self_test_failed"}))
        collar.tick(opens + timedelta(hours=3))
        after = collar.state(second["id"])
        history = bridge.campaign(second["id"])["history"]

    assert set_ups_before == 1, "only the firmware's set-up: none sent into the trial"
    assert (waiting["state"], waiting["reason"]) == ("gated", f"firmware {FIRMWARE} on trial: waits for its report")
    assert after["state"] == "sending" and collar.set_ups() == 2, "set up once the trial reported"
    assert any(e["event"] == "gated" and e["device_id"] == "collar-01" and "on trial" in e["detail"]["reason"]
               for e in history), "the history says why it waited"
