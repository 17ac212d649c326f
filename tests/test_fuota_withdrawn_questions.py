"""Field technicians abort a campaign whose PackageVersionReq still waits in the outbox: the question is withdrawn.

PackageVersionReq (TS004 on port 201, TS005 on port 200) is the CID 00 alone (LoRaMac-node's LmhpFragmentation.c and
LmhpRemoteMcastSetup.c). Until 7 December a question still queued when its campaign ended went out all the same
(its answer was only stored): a downlink of the collar's few a day spent for an update nobody was sending.
"""

from __future__ import annotations

from datetime import timedelta

import bridge_builders as b
import pytest
from fuota_network import GROUP, StandInTheThingsStack, serve
from fuota_twin import KEY, model_image, start_campaign

from collar_firmware import codec
from tembo.local_services import free_port

WAIT_S = 600
REQ = bytes.fromhex("00")  # PackageVersionReq: its CID, no payload
TRACKING = {"minutes": 120}  # a ranger's command for collar-01, queued beside its question


@pytest.fixture(scope="module")
def aborted(tmp_path_factory):
    """Three collars asked their TS004 version, collar-03's question pushed, a ranger's command queued for collar-01,
    the campaign aborted, then a flush: (who was asked, what the network server got after the abort, the campaign)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('withdrawn') / 'bridge.db'}"
    with serve(StandInTheThingsStack(), free_port()) as network, b.fresh_bridge(
            url, signed_by=(KEY,), network_server_url=network.url, network_server_api_key=network.api_key,
            outbox_worker=False, fuota_multicast_group=GROUP, fuota_version_wait_s=WAIT_S) as bridge:
        image, version = model_image()
        for name in ("collar-01", "collar-02", "collar-03"):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=name, f_cnt=1))
        campaign = start_campaign(bridge, image, version)
        asked_at = campaign["delivery"]["window_opens"] - timedelta(hours=1)
        bridge.deliver_updates(asked_at)
        asked = {c: d["version_asked_at"] is not None for c, d in bridge.campaign(campaign["id"])["delivery"]["collars"].items()}
        (third,) = [d.downlink_id for d in bridge.downlinks() if d.device_id == "collar-03"]
        bridge.flush_downlinks(ids=[third])  # its question went out before the abort
        sent_before = len(network.unicast)
        bridge.queue_command("collar-01", "tracking", TRACKING)
        bridge.clock = lambda: asked_at + timedelta(minutes=1)
        bridge.steer_campaign(campaign["id"], "abort", "tech")
        bridge.deliver_updates(asked_at + timedelta(minutes=2))
        bridge.flush_downlinks()
        assert sent_before == 1
        yield asked, network.unicast[sent_before:], bridge.campaign(campaign["id"])


def test_technician_aborting_before_the_version_question_went_out_has_it_never_pushed(aborted):
    asked, pushed, _campaign = aborted
    assert asked == {"collar-01": True, "collar-02": True, "collar-03": True}, "every collar was asked before the abort"
    assert [(p["device"], p["f_port"]) for p in pushed if p["payload"] == REQ] == [], "no PackageVersionReq on air"


def test_the_collars_other_downlinks_go_out_untouched_by_the_abort(aborted):
    _asked, pushed, _campaign = aborted
    port, payload = codec.encode_packet("tracking", TRACKING)
    assert [(p["device"], p["f_port"], p["payload"]) for p in pushed] == [("collar-01", port, bytes(payload))]


def test_technician_sees_the_aborted_collars_skipped_and_no_question_waiting(aborted):
    _asked, _pushed, campaign = aborted
    states = {c["device_id"]: (c["state"], c["reason"]) for c in campaign["collars"]}
    assert states == {d: ("skipped", "campaign aborted before anything was sent to it")
                      for d in ("collar-01", "collar-02", "collar-03")}, "collar-03 heard its question, not the update"
    (ended,) = [e["detail"] for e in campaign["history"] if e["event"] == "delivery_ended"]
    assert (ended["frames_dropped"], ended["version_questions_withdrawn"]) == (2, 2)
    asked = {d: c["version_asked_at"] is not None for d, c in campaign["delivery"]["collars"].items()}
    assert asked == {"collar-01": False, "collar-02": False, "collar-03": True}, "the Updates page: no question waiting"


def test_technician_pausing_before_the_version_question_went_out_holds_it_until_the_resume(sqlite_url, port):
    """A pause holds what the outbox still has for the campaign's collars, its version questions with its set-ups."""
    with serve(StandInTheThingsStack(), port) as network, b.fresh_bridge(
            sqlite_url, signed_by=(KEY,), network_server_url=network.url, network_server_api_key=network.api_key,
            outbox_worker=False, fuota_multicast_group=GROUP, fuota_version_wait_s=WAIT_S) as bridge:
        image, version = model_image()
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
        campaign = start_campaign(bridge, image, version)
        asked_at = campaign["delivery"]["window_opens"] - timedelta(hours=1)
        bridge.deliver_updates(asked_at)
        bridge.clock = lambda: asked_at + timedelta(minutes=1)
        bridge.steer_campaign(campaign["id"], "pause", "tech")
        bridge.flush_downlinks()
        while_paused = list(network.unicast)
        bridge.steer_campaign(campaign["id"], "resume", "tech")
        bridge.flush_downlinks()
        after_resume = list(network.unicast)
    assert while_paused == []
    assert [(p["device"], p["f_port"], p["payload"]) for p in after_resume] == [("collar-01", 201, REQ)]
