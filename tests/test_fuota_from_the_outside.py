"""A field technician rolls an update out to a real fleet and meets what the field sends back: set-ups nobody
meant for a collar, answers for sessions it does not hold. What the collar reports in its status and what the
campaign pages show must stay the truth about the collar's last real update.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from fuota_network import GROUP, StandInTheThingsStack, serve, write_key_file
from fuota_twin import KEY as TWIN_KEY
from fuota_twin import KEYS_FOR as TWIN_KEYS_FOR  # the collars that trust the key model_image signs with
from fuota_twin import Reserve, model_image
from fuota_twin import open_bridge as open_plain_bridge
from starlette.responses import JSONResponse
from starlette.routing import Route
from test_collar_hostile_world import KEYS_FOR, live, new_model_image, setup_req
from test_fuota_multicast_setup import SecuredReserve, open_bridge, provisioned_fleet, tts  # noqa: F401

from collar_firmware import codec, config
from lora_bridge.updates import frag_v2
from ranger_dashboard.update_tables import delivery_line, network_group_line
from simulator import fuota


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


@contextmanager
def v2_campaign(sqlite_url, tts, tmp_path, monkeypatch, collars: int = 3, reserve_class=SecuredReserve):  # noqa: F811
    """Collars on TS004 v2.0.0 firmware, the technician's key file and a bridge that has started the retrained
    model's campaign: yields (bridge, reserve, campaign, model version)."""
    monkeypatch.setattr(config, "FW_VERSION", frag_v2.V2_SINCE)  # collars that announce TS004 v2.0.0
    image, version = model_image()
    fleet = provisioned_fleet(collars)
    key_file = write_key_file(tmp_path, [c.device_id for c in fleet])
    with open_bridge(sqlite_url, tts, key_file) as bridge:
        reserve = reserve_class(fleet, tts, 4, key_file)
        yield bridge, reserve, reserve.start(bridge, image, version), version


def into_the_window(reserve: Reserve, campaign: dict) -> int:
    """Run the reserve through the set-ups to a dozen fragments into the campaign's window; return when the window
    opened (Unix s)."""
    opens = int(campaign["delivery"]["window_opens"].timestamp())
    reserve.run_until(opens - 600, step_s=600)
    reserve.run_until(opens + 90)
    return opens


@contextmanager
def campaign_in_its_window(sqlite_url, network: StandInTheThingsStack):
    """Three collars, a bridge pushing to the stand-in network server and the retrained model's campaign a dozen
    fragments into its window: yields (bridge, reserve, campaign, model version, when the window opened)."""
    image, version = model_image()
    reserve = Reserve(fuota.build_fleet(3, 0.1, 11, TWIN_KEYS_FOR), network, seed=4)
    with open_plain_bridge(sqlite_url, network) as bridge:
        campaign = reserve.start(bridge, image, version)
        yield bridge, reserve, campaign, version, into_the_window(reserve, campaign)


class TwiceDeliveredSetUps(SecuredReserve):
    """The reserve whose network server hands each collar its fragmentation set-up twice: the bridge's push was
    taken but answered too late (a network server that hung), so the outbox pushed the same frame again."""

    def _route(self) -> None:
        unicast = self.routed[0]
        super()._route()
        for push in self.network.unicast[unicast:]:
            if push["f_port"] == 201 and push["payload"][0] == codec.tag_of("frag_session_setup"):
                self.by_name[push["device"]].hal.radio.push_downlink(push["f_port"], push["payload"])


def test_a_v2_set_up_heard_twice_leaves_the_collar_in_its_session_and_the_campaign_updates_it(
        sqlite_url, tts, tmp_path, monkeypatch):  # noqa: F811
    """The network server hands a collar its TS004 v2.0.0 set-up twice (it took the push, but answered too late or
    the bridge was killed before it marked the push sent, so the outbox pushed it again). The collar takes the first
    and, as TS004 v2.0.0 and LoRa Basics Modem do, answers the copy SessionCntReplay (its SessionCnt is not above
    the last taken) while it keeps the session of the first. The bridge must read that answer as the echo of a
    session the collar already took; it fails the collar ("set-up refused: SessionCntReplay"), the campaign stops
    at its canaries and its delivery ends, though every collar held its session."""
    with v2_campaign(sqlite_url, tts, tmp_path, monkeypatch, 2, TwiceDeliveredSetUps) as (bridge, reserve, campaign,
                                                                                        version):
        opens = campaign["delivery"]["window_opens"]
        reserve.run_until(int(opens.timestamp()) + 3 * 3600, step_s=600)
        campaign = bridge.campaigns()[0]
    fleet = reserve.fleet
    answers = [m["status"] & 0x3F for _d, m in reserve.heard if m["message"] == "frag_session_setup_ans"]
    assert sorted(answers) == [0] * len(fleet) + [0x10] * len(fleet), "the first taken, the copy a replay"
    assert campaign["counts"] == {"updated": len(fleet)}, campaign
    assert all(c.collar.model.version == version for c in fleet), "every collar kept its session and installed"


def test_a_v2_collar_reset_by_its_watchdog_in_the_window_is_set_up_again_not_refused_as_a_replay(
        sqlite_url, tts, tmp_path, monkeypatch):  # noqa: F811
    """A collar on TS004 v2.0.0 is reset by its watchdog while the window's fragments are on the air: its session is
    gone (its last SessionCnt stays in flash), it answers SessionDoesNotExist, and the bridge sets it up again by
    unicast. A v2.0.0 set-up with the campaign's SessionCnt again would be refused as a replay and fail the collar;
    the bridge sets it up in v2.0.0 again with a greater SessionCnt, which the collar takes, and it goes on as a
    straggler (tests/test_fuota_v2_reset.py: until 7 December it was set up in v1.0.0, without its key ring)."""
    with v2_campaign(sqlite_url, tts, tmp_path, monkeypatch) as (bridge, reserve, campaign, _version):
        into_the_window(reserve, campaign)
        fleet = reserve.fleet
        reset = fleet[2]
        assert reset.collar.update.receiving()
        reserve.watchdog_reset(reset.device_id)
        reserve.run_until(reserve.now_s() + 6 * 3600, step_s=120)
        after = bridge.campaign(campaign["id"])
    setups = [p["payload"] for p in tts.unicast if p["device"] == reset.device_id and p["f_port"] == 201
              and p["payload"][0] == codec.tag_of("frag_session_setup")]
    assert [len(p) for p in setups] == [17, 17], "v2.0.0's set-up for the window, and again after the reset"
    answers = [m["status"] & 0x3F for d, m in reserve.heard if d == reset.device_id
               and m["message"] == "frag_session_setup_ans"]
    assert answers == [0, 0], "both taken: no replay refused"
    states = {c["device_id"]: c["state"] for c in after["collars"]}
    assert states == {fleet[0].device_id: "updated", fleet[1].device_id: "updated", reset.device_id: "sending"}
    assert reset.collar.update.receiving(), "its new session gathers the unicast fragments"


def test_a_v2_fleet_paused_in_the_window_and_resumed_into_a_new_one_is_updated_not_refused_as_a_replay(
        sqlite_url, tts, tmp_path, monkeypatch):  # noqa: F811
    """The technician pauses a campaign of TS004 v2.0.0 collars in the middle of its window and resumes it the next
    morning: the resume opens a new window. Whatever the collars are sent for it must be taken: a v2.0.0 set-up
    of the campaign's SessionCnt again would be refused as a replay and fail every collar."""
    with v2_campaign(sqlite_url, tts, tmp_path, monkeypatch) as (bridge, reserve, campaign, version):
        opens = into_the_window(reserve, campaign)
        bridge.steer_campaign(campaign["id"], "pause", "tech")
        reserve.run_until(opens + 6 * 3600, step_s=300)  # overnight: the collars' windows close
        bridge.steer_campaign(campaign["id"], "resume", "tech")
        reserve.run_until(reserve.now_s() + 6 * 3600, step_s=120)
        after = bridge.campaign(campaign["id"])
    refused = [(d, m["status"]) for d, m in reserve.heard if m["message"] == "frag_session_setup_ans"
               and m["status"] & 0x3F]
    assert refused == [], "no set-up refused"
    assert after["state"] == "done" and after["counts"] == {"updated": 3}, after["collars"]
    assert all(c.collar.model.version == version for c in reserve.fleet)


class GroupPushRefused(StandInTheThingsStack):
    """The Things Stack with the technician's multicast end device deleted: every push to the group is refused
    404 "entity not found", while the collars' own downlinks still go."""

    def app(self):  # noqa: ANN201 - Starlette's app, as the stand-in's
        app = super().app()
        push = app.routes[0].endpoint

        async def refusing(request):  # noqa: ANN001, ANN202
            if request.path_params["device"] == GROUP:
                return JSONResponse({"code": 5, "message": "entity not found"}, status_code=404)
            return await push(request)

        app.routes[0] = Route(app.routes[0].path, refusing, methods=["POST"])
        return app


def test_field_technician_whose_network_server_refuses_every_group_frame_is_told_so_not_shown_them_sent(
        sqlite_url, port):
    """The multicast end device was deleted in The Things Stack: every fragment pushed to the group is refused 404.
    An hour into the window the Updates page says "30 frames sent", the collars are "sending" without a reason,
    and the history holds nothing but the set-ups: the technician cannot tell that not one fragment went on air
    (the collars then get the image by unicast, ten frames a day, for weeks). The page must say the group's
    frames were refused, with the network server's answer (HTTP 404)."""
    with serve(GroupPushRefused(), port) as network:
        image, version = model_image()
        reserve = Reserve(fuota.build_fleet(3, 0.1, 11, TWIN_KEYS_FOR), network, seed=4)
        with open_plain_bridge(sqlite_url, network) as bridge:
            campaign = reserve.start(bridge, image, version)
            opens = int(campaign["delivery"]["window_opens"].timestamp())
            reserve.run_until(opens - 600, step_s=600)
            reserve.run_until(opens + 3600, step_s=60)
            campaign = bridge.campaign(campaign["id"])
    assert network.multicast == [], "not one frame of the group reached the network server"
    shown = " ".join([delivery_line(campaign["delivery"]), network_group_line(campaign["delivery"])]
                     + [str(e) for e in campaign["history"]])
    assert "404" in shown and "30 frames sent" not in shown, "the page says the group's frames were refused, and how"
    said = [e for e in campaign["history"] if e["event"] == "group_push_refused"]
    assert len(said) == 1 and said[0]["detail"]["http_status"] == 404, "said once in the history, not once a frame"
    assert "entity not found" in said[0]["detail"]["network_server_answered"], "the server's own answer"


def test_field_technician_releasing_a_delta_against_a_manifest_changed_after_its_release_is_refused(tmp_path):
    """A delta is built from the base manifest's module digests. A manifest changed after its release (here it
    claims the collars hold the new key file already, and another module of other bytes) made a 1,938-byte delta
    that left the collars' old key file in place: every collar refused it as wrong_base after the whole transfer.
    The base's own image beside the manifest says what the collars hold: the release is refused before it is built,
    naming the module, and a manifest that agrees with its image still gives the delta."""
    import hashlib
    import json

    from lora_bridge.updates import keys, release

    key = keys.generate(tmp_path / "k.key", 7)
    held, after = tmp_path / "collar.bin", tmp_path / "after.bin"
    held.write_bytes(keys.COLLAR_KEYS_PATH.read_bytes())
    keys.install_public(key.key_id, key.public_key, held)
    after.write_bytes(held.read_bytes())
    keys.install_public(8, keys.generate(tmp_path / "spare.key", 8).public_key, after)
    first = release.release_firmware(key, tmp_path / "r", config.FW_VERSION, collar_keys=held, ship_keys=held)
    manifest = json.loads(first.manifest_path.read_text())
    manifest["modules"]["release_keys.bin"]["sha256"] = hashlib.sha256(after.read_bytes()).hexdigest()
    manifest["modules"]["geo.mpy"]["sha256"] = "0" * 64
    edited = first.manifest_path.with_name("edited.json")
    edited.write_text(json.dumps(manifest))
    with pytest.raises(release.ReleaseError, match="module 'geo.mpy' is not the one firmware-.*2 of .* differ"):
        release.release_firmware(key, tmp_path / "d", "1.1.0", base=edited, collar_keys=held, ship_keys=after)
    assert not (tmp_path / "d").exists(), "nothing written"
    delta = release.release_firmware(key, tmp_path / "d", "1.1.0", base=first.manifest_path, collar_keys=held,
                                     ship_keys=after)
    assert delta.manifest["delta_of"] == config.FW_VERSION


def test_a_bridge_killed_between_a_set_up_push_and_its_record_resumes_the_window_and_updates_every_collar(
        sqlite_url, port):
    """The bridge is killed (-9) after the network server took collar-000's set-up and before the bridge wrote that
    down; it comes back a dozen fragments into the window. The push is made again (the outbox cannot know it went),
    so the collar hears its set-up twice: as TS004 has it, the copy starts its session over, and what it missed since
    comes in the repair rounds and by unicast. The window goes on from the fragment it had reached (no counter sent twice,
    none skipped), and every collar is updated."""
    from sqlalchemy import update

    from lora_bridge.domain.fuota_delivery import SESSION_INDEX
    from lora_bridge.store.tables import Downlink
    from lora_bridge.updates.parity_order import counter_at

    with serve(StandInTheThingsStack(), port) as network:
        with campaign_in_its_window(sqlite_url, network) as (bridge, reserve, campaign, version, _opens):
            fleet = reserve.fleet
            with bridge.db.write() as session:  # what the kill leaves: the set-up `sending`, its lease never set
                session.execute(update(Downlink).where(Downlink.device_id == fleet[0].device_id,
                                                       Downlink.command == "frag_session_setup")
                                .values(state="sending", lease_until=None))
        with open_plain_bridge(sqlite_url, network) as bridge:
            reserve.attach(bridge)
            reserve.run_until(reserve.now_s() + 6 * 3600, step_s=300)
            after = bridge.campaign(campaign["id"])
    setups = [p for p in network.unicast if p["device"] == fleet[0].device_id and p["f_port"] == 201
              and p["payload"][0] == codec.tag_of("frag_session_setup")]
    assert len(setups) == 2 and setups[0]["payload"] == setups[1]["payload"], "pushed again after the kill"
    counters = [codec.decode(201, f["payload"], "down")["index_and_n"] & 0x3FFF for f in network.multicast
                if f["payload"][0] == codec.tag_of("data_fragment")]
    assert counters == [counter_at(k, after["delivery"]["nb_frag"]) for k in range(1, len(counters) + 1)]
    answers = [m["status"] for d, m in reserve.heard if d == fleet[0].device_id
               and m["message"] == "frag_session_setup_ans"]
    assert answers == [SESSION_INDEX << 6] * 2, "both copies taken: the second started its session over"
    assert after["state"] == "done" and after["counts"] == {"updated": 3}, after["collars"]
    assert all(c.collar.model.version == version for c in fleet)


def test_field_technician_pausing_then_resuming_after_a_bridge_restart_sees_every_collar_updated(sqlite_url, port):
    """The technician pauses a campaign in the middle of its window; the bridge is restarted overnight (an upgrade,
    a power cut); the next morning the technician resumes it on the new process. The pause holds across the restart
    (nothing goes to the collars meanwhile) and the resume opens a new window that updates every collar."""
    with serve(StandInTheThingsStack(), port) as network:
        with campaign_in_its_window(sqlite_url, network) as (bridge, reserve, campaign, version, opens):
            fleet = reserve.fleet
            bridge.steer_campaign(campaign["id"], "pause", "tech")
        pushed = (len(network.unicast), len(network.multicast))
        with open_plain_bridge(sqlite_url, network) as bridge:
            reserve.attach(bridge)
            reserve.run_until(opens + 6 * 3600, step_s=300)  # overnight, paused, on the restarted bridge
            held = (len(network.unicast), len(network.multicast))
            resumed = bridge.steer_campaign(campaign["id"], "resume", "tech")
            reserve.run_until(reserve.now_s() + 6 * 3600, step_s=120)
            after = bridge.campaign(campaign["id"])
    assert held[1] == pushed[1], "no group frame while paused, across the restart"
    assert not [p for p in network.unicast[pushed[0]:held[0]] if p["f_port"] in (200, 201)], "no FUOTA unicast either"
    assert resumed["delivery"]["state"] == "setup", "a new window"
    assert after["state"] == "done" and after["counts"] == {"updated": 3}, after["collars"]
    assert all(c.collar.model.version == version for c in fleet)


def test_field_technician_sees_a_canary_that_installed_after_the_stop_counted_updated_not_sending(sqlite_url, port):
    """Three canaries take firmware 1.1.0. collar-001's accelerometer is dead: its trial's self-test fails, it rolls
    back to 1.0.1 and the canary gate stops the campaign, as it should. collar-002 had the image too and installed
    it a little later: its ack and every status since say "firmware 1.1.0: installed", and the Updates page's
    fleet table says so, but the campaign keeps it "sending" (stopped: 1 failed, 1 sending, 1 updated), and a
    technician reading it looks for a collar still being sent the image."""
    from lora_bridge.updates import release

    files = release.compile_modules()
    firmware = release.build_image(1, "1.1.0", config.HARDWARE_ID, release.pack_bundle({"main.mpy": files["main.mpy"]}),
                                   TWIN_KEY, release.golden_vector(files["default_model.bin"]))
    with serve(StandInTheThingsStack(), port) as network:
        fleet = fuota.build_fleet(3, 0.1, 11, TWIN_KEYS_FOR)
        fleet[1].hal.imu.read_fifo = lambda buf: 0  # its accelerometer died: the trial's self-test fails
        reserve = Reserve(fleet, network, seed=4)
        with open_plain_bridge(sqlite_url, network) as bridge:
            reserve.attach(bridge)
            reserve.run_until(reserve.now_s() + 60)
            campaign = bridge.start_campaign(firmware, user="tech", canary_pct=100, min_battery_mv=0,
                                             min_rssi_dbm=-140.0)
            reserve.through_delivery(campaign)
            reserve.run_until(reserve.now_s() + 86400, step_s=1800)
            after = bridge.campaign(campaign["id"])
            versions = {v["device_id"]: v for v in bridge.fleet_versions()}
    assert [c.collar.update.fw_version() for c in fleet] == ["1.1.0", "1.0.1", "1.1.0"], "one rolled back"
    assert after["state"] == "stopped", "the canary gate stopped the rollout"
    states = {c["device_id"]: (c["state"], c["reason"]) for c in after["collars"]}
    assert states[fleet[1].device_id] == ("failed", "self_test_failed")
    assert versions[fleet[2].device_id]["update"]["outcome"] == "installed"
    assert states[fleet[2].device_id] == ("updated", None), "what its status says"
