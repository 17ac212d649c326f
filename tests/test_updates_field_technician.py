"""A field technician on a clean checkout: keys, releases and campaigns tried with broken inputs. Every
refusal names the file and the reason on one line (exit code 1, no traceback) and writes nothing."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
import zlib
from datetime import timedelta
from pathlib import Path

import bridge_builders as b
import pytest
from access_builders import CONSOLE
from fuota_network import GROUP, StandInTheThingsStack, serve
from signing_helpers import signed_empty_image
from test_update_campaigns import updates_page

from collar_firmware import blob as collar_blob
from collar_firmware import config as collar_config
from collar_firmware import update_image
from lora_bridge.store.utc import utc_now
from lora_bridge.updates import keys, release
from simulator import fuota
from tembo.cli import main

KEY, _KEYS_FOR = fuota.bench_keys()  # the release key this module's campaign images are signed with, which its collars hold


@pytest.fixture
def key_dir(tmp_path):
    """A technician's key (id 7) and a collar key file that holds it, as `tembo keys generate --install` makes them."""
    private = tmp_path / "keys" / "release-7.key"
    collar_keys = tmp_path / "collar_keys.bin"
    assert main(["keys", "generate", str(private), "--key-id", "7", "--install", "--collar-keys", str(collar_keys)]) == 0
    return private, collar_keys


def refused(capsys, argv: list[str]) -> str:
    """Run tembo with argv, check it refused (exit 1) on one line of stderr, and return that line."""
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_field_technician_with_a_damaged_public_key_file_is_told_which_file_and_why(key_dir, capsys):
    private, collar_keys = key_dir
    pub = keys.public_path(private)
    good = pub.read_text()
    capsys.readouterr()
    damaged = {
        good.replace(good.split()[2], "zz" * 32): "the public key is not hexadecimal",
        good.replace(" 7 ", " 999 "): "key id 999 is outside 0..255",
        good.replace(" 7 ", " ٧ "): "expected 'tembo-ed25519 <key id> <hex>'",
    }
    for text, reason in damaged.items():
        pub.write_text(text)
        for argv in (["keys", "show", str(private)], ["keys", "install", str(private), "--collar-keys", str(collar_keys)],
                     ["release", "model", str(release.DEFAULT_MODEL_PATH), "--key", str(private)]):
            assert f"{pub}: {reason}" in refused(capsys, argv)
    pub.unlink()
    assert f"{pub}: no such file" in refused(capsys, ["keys", "show", str(private)])
    assert keys.read_collar_keys(collar_keys).keys() == {7}, "nothing was installed from a damaged file"


def test_field_technician_releasing_from_a_broken_promoted_file_is_told_why(key_dir, tmp_path, capsys):
    private, collar_keys = key_dir
    out = tmp_path / "out"
    broken = {"{": "not JSON", "[1]": "not a JSON object",
              json.dumps({"format": "tembo-promoted-model/1"}): "names no blob and its SHA-256"}
    for text, reason in broken.items():
        promoted = tmp_path / "promoted.json"
        promoted.write_text(text)
        assert reason in refused(capsys, ["release", "model", "--promoted", str(promoted), "--key", str(private),
                                          "--collar-keys", str(collar_keys), "--out", str(out)])
    nothing = tmp_path / "var" / "models" / "promoted.json"
    assert "nothing is promoted there (a researcher promotes a model with `tembo models promote" in refused(
        capsys, ["release", "model", "--promoted", str(nothing), "--key", str(private), "--out", str(out)])
    assert not out.exists(), "nothing written"


@pytest.mark.parametrize("version", ["1. 2.0", "01.2.0", "1_0.2.0", "+1.2.0", "v1.2.0", "1.2.0-rc1", "1.2", "1.256.0"])
def test_field_technician_typing_a_version_that_is_not_plain_semver_is_refused_before_anything_is_built(
        key_dir, tmp_path, capsys, version):
    private, collar_keys = key_dir
    out = tmp_path / "fw"
    reason = refused(capsys, ["release", "firmware", "--version", version, "--key", str(private), "--collar-keys",
                              str(collar_keys), "--ship-keys", str(collar_keys), "--out", str(out)])
    assert reason.startswith("tembo release: version") and repr(version) in reason
    assert not out.exists()


def test_the_collar_and_the_bridge_read_one_text_per_version():
    assert update_image.version_raw("1.2.3") == 0x010203 and update_image.version_raw("0.0.0") == 0
    for text in ("1.02.3", " 1.2.3", "1.2.3 ", "1.2.-3", "1..3", "١.2.3"):
        with pytest.raises(ValueError, match="plain whole numbers"):
            update_image.version_raw(text)


def test_field_technician_giving_a_broken_or_foreign_base_manifest_is_refused(key_dir, tmp_path, capsys):
    private, collar_keys = key_dir
    base = tmp_path / "firmware-1.0.0.json"
    manifests = {
        "{": "not a firmware manifest (not JSON",
        json.dumps({"version": "1.0"}): "not a firmware manifest tembo release wrote",
        json.dumps({"kind": "firmware", "version": "1.0", "modules": {}}): "version must be major.minor.patch",
        json.dumps({"kind": "firmware", "version": "1.0.0", "hardware_id": "someone-elses-board", "modules": {}}):
            "the base 1.0.0 is built for 'someone-elses-board', this release for 'tembo-nrf52840-lr1110'",
        json.dumps({"kind": "firmware", "version": "1.2.0", "hardware_id": collar_config.HARDWARE_ID, "modules": {}}):
            "version 1.1.0 is not newer than the base 1.2.0",
    }
    for text, reason in manifests.items():
        base.write_text(text)
        assert reason in refused(capsys, ["release", "firmware", "--version", "1.1.0", "--base", str(base),
                                          "--key", str(private), "--collar-keys", str(collar_keys),
                                          "--ship-keys", str(collar_keys), "--out", str(tmp_path / "fw")])
    assert not (tmp_path / "fw").exists()


def test_a_released_version_is_never_replaced_by_other_bytes(key_dir, tmp_path, capsys):
    private, collar_keys = key_dir
    out = tmp_path / "releases"
    argv = ["release", "model", str(release.DEFAULT_MODEL_PATH), "--collar-keys", str(collar_keys), "--out", str(out)]
    assert main([*argv, "--key", str(private)]) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([*argv, "--key", str(private)]) == 0, "the same release written again changes nothing"
    other = tmp_path / "keys" / "release-8.key"
    assert main(["keys", "generate", str(other), "--key-id", "8", "--install", "--collar-keys", str(collar_keys)]) == 0
    capsys.readouterr()
    assert "exists and differs: a released version is never replaced" in refused(capsys, [*argv, "--key", str(other)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first, "the release collars may run is untouched"


def with_model_version(blob: bytes, version: int) -> bytes:
    """The unsigned part of a model blob with another model version (CRC fixed), as a researcher's tool could write it."""
    raw = bytearray(release.unsigned_part(blob))
    struct.pack_into("<I", raw, collar_blob.HEADER_SIZE + 3, version)
    body_len = struct.unpack_from("<I", raw, 8)[0]
    struct.pack_into("<I", raw, 12, zlib.crc32(bytes(raw[collar_blob.HEADER_SIZE:collar_blob.HEADER_SIZE + body_len])))
    return bytes(raw)


def test_a_model_version_collars_cannot_report_is_refused_instead_of_wrapping_around(key_dir, tmp_path):
    private, collar_keys = key_dir
    key = keys.load(private)
    shipped = release.DEFAULT_MODEL_PATH.read_bytes()
    made = release.release_model(with_model_version(shipped, 0xFFFF), key, tmp_path / "ok", collar_keys)
    assert update_image.parse_header(made.image_path.read_bytes()).version == 0xFFFF
    for version in (0x10002, 0):  # 65538 would travel as 0.0.2; 0 is older than anything a collar runs
        with pytest.raises(release.ReleaseError, match=f"model version {version} cannot travel"):
            release.release_model(with_model_version(shipped, version), key, tmp_path / "out", collar_keys)
    assert not (tmp_path / "out").exists()


def test_an_image_larger_than_the_collars_update_slot_is_refused_with_both_sizes(key_dir):
    key = keys.load(key_dir[0])
    too_big = bytes(update_image.MAX_PAYLOAD_BYTES + 1)
    with pytest.raises(release.ReleaseError, match=f"{len(too_big):,} bytes; a collar's update slot takes at most "
                                                   f"{update_image.MAX_PAYLOAD_BYTES:,}"):
        release.build_image(update_image.KIND_FIRMWARE, "1.1.0", collar_config.HARDWARE_ID, too_big, key)
    with pytest.raises(release.ReleaseError, match="hardware id 'x{33}' must be 1..32 bytes"):
        release.build_image(update_image.KIND_FIRMWARE, "1.1.0", "x" * 33, b"", key)


def test_field_technician_starting_a_campaign_has_the_image_read_once(sqlite_url, port, monkeypatch):
    key = KEY
    image = release.model_image(fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), key), key,
                                collar_config.HARDWARE_ID)
    reads = []
    parse = update_image.parse_header
    monkeypatch.setattr(update_image, "parse_header", lambda data: reads.append(len(data)) or parse(data))
    with serve(StandInTheThingsStack(), port) as network, b.fresh_bridge(
            sqlite_url, network_server_url=network.url, network_server_api_key=network.api_key, outbox_worker=False,
            fuota_multicast_group=GROUP, signed_by=(KEY,)) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
        campaign = bridge.start_campaign(image, user="tech", min_battery_mv=0, min_rssi_dbm=-140.0)
    assert campaign["delivery"]["state"] == "setup", "delivered over the network server"
    assert reads == [len(image)], "the header is read (and the payload hashed) once"


def shipped_model_image(key) -> bytes:
    """A retrained model (the shipped one, one version on) in a signed update image, as `tembo release model` makes it."""
    return release.model_image(fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), key), key,
                               collar_config.HARDWARE_ID)


@pytest.fixture
def api(sqlite_url):
    """A bridge's API that tracks campaigns, four collars that sent a status, a field technician's token."""
    from starlette.testclient import TestClient

    from lora_bridge.access.roles import FIELD_TECHNICIAN
    from lora_bridge.adapters.api import create_app

    with b.fresh_bridge(sqlite_url, signed_by=(KEY,)) as bridge, TestClient(create_app(bridge)) as client:
        for f_cnt, device_id in enumerate(["collar-01", "collar-02", "collar-03", "collar-04"], start=1):
            assert bridge.ingest_tts_uplink(b.tts_uplink(b.status(model_version=1), device_id=device_id,
                                                         f_cnt=f_cnt)).ok
        bridge.add_user("wanjiru", FIELD_TECHNICIAN, "a long field password", actor=CONSOLE)
        token = bridge.create_token("wanjiru", "laptop", actor=CONSOLE).secret
        client.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"})
        client.bridge = bridge
        yield client


@pytest.mark.parametrize("device_id", ["", ",", " , "])
def test_field_technicians_script_whose_collar_list_came_out_empty_starts_nothing_rather_than_the_whole_fleet(
        api, device_id):
    key = KEY
    answer = api.post("/api/updates/campaigns", content=shipped_model_image(key), params={"device_id": device_id})
    assert answer.status_code == 400 and "device_id names no collar" in answer.json()["error"]
    assert api.bridge.campaigns() == [], "nothing started"
    everyone = api.post("/api/updates/campaigns", content=shipped_model_image(key))
    assert everyone.status_code == 201 and len(everyone.json()["collars"]) == 4, "left out, it means every collar"


def test_a_canary_is_a_collar_the_gates_let_through_so_a_weak_collar_does_not_hold_the_fleet_back(sqlite_url):
    from lora_bridge.domain.campaigns import canary_order

    herd = [f"collar-{i:02d}" for i in range(5)]
    weak = sorted(herd, key=canary_order)[0]  # the one the stable order would pick first
    with b.fresh_bridge(sqlite_url) as bridge:
        for f_cnt, device_id in enumerate(herd, start=1):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(battery_mv=3200 if device_id == weak else 3900),
                                                  device_id=device_id, f_cnt=f_cnt))
        campaign = bridge.create_campaign(name="model 2", kind="model", version="0.0.2", image_sha256="ab" * 32,
                                          image_bytes=3844, user="tech", canary_pct=20)
        collars = {c["device_id"]: c for c in campaign["collars"]}
        (canary,) = [d for d, c in collars.items() if c["stage"] == "canary"]
        assert canary != weak and collars[canary]["state"] == "sending"
        assert (collars[weak]["stage"], collars[weak]["state"], collars[weak]["reason"]) == ("fleet", "waiting", None)
        bridge.record_update_ack(canary, "ok", utc_now())
        after = {c["device_id"]: c for c in bridge.campaign(campaign["id"])["collars"]}
    assert after[weak]["state"] == "gated" and after[weak]["reason"] == "battery"
    assert all(c["state"] == "sending" for d, c in after.items() if d not in (canary, weak)), "the fleet follows"


def test_field_technician_pressing_start_without_an_image_is_told_to_choose_one(sqlite_url, monkeypatch):
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
    app = updates_page(sqlite_url, monkeypatch)
    next(button for button in app.button if button.label == "Start").click().run()
    assert not app.exception and [e.value for e in app.error] == [
        "Choose the signed update image (the .tmbu file tembo release wrote) to start a campaign."]
    with b.fresh_bridge(sqlite_url) as bridge:
        assert bridge.campaigns() == []


def test_field_technician_is_offered_only_the_steps_a_campaign_allows(sqlite_url, monkeypatch):
    with b.fresh_bridge(sqlite_url) as bridge:
        for f_cnt, device_id in enumerate(["collar-01", "collar-02"], start=1):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=device_id, f_cnt=f_cnt))
        first = bridge.create_campaign(name="model 2", kind="model", version="0.0.2", image_sha256="ab" * 32,
                                       image_bytes=3844, user="tech", devices=["collar-01"])
        assert first["steps"] == ["pause", "abort"]
    app = updates_page(sqlite_url, monkeypatch)
    assert [button.label for button in app.button] == ["Pause", "Abort", "Start"]
    app.button[0].click().run()  # pause
    assert not app.error and [button.label for button in app.button] == ["Resume", "Abort", "Start"]
    app.button[1].click().run()  # abort
    assert not app.error and [button.label for button in app.button] == ["Start"], "an aborted campaign is over"
    with b.fresh_bridge(sqlite_url) as bridge:
        (campaign,) = bridge.campaigns()
    assert campaign["state"] == "aborted" and campaign["steps"] == []
    steps = [(h["event"], h["detail"].get("by")) for h in campaign["history"] if h["device_id"] is None]
    assert steps[-2:] == [("pause", "wanjiru"), ("abort", "wanjiru")]
    assert campaign["history"][-1]["device_id"] == "collar-01", "the abort ended its collar too"


@pytest.mark.postgres
def test_two_technicians_starting_campaigns_for_the_same_collars_at_once_get_one_campaign(request, tmp_path):
    """The Updates page and a script start a campaign for collar-01 at the same moment on PostgreSQL:
    the second start waits for the first to commit, then is refused; one campaign, not two."""
    import threading

    from conftest import empty_store
    from sqlalchemy import text

    from lora_bridge.domain import campaigns

    with empty_store("postgres", request, tmp_path / "unused.db") as url, b.fresh_bridge(url) as page, \
            b.fresh_bridge(url) as script:
        page.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
        outcome: list[object] = []

        def start_from_the_script() -> None:
            try:
                outcome.append(script.create_campaign(name="firmware", kind="firmware", version="1.3.0",
                                                      image_sha256="cd" * 32, image_bytes=90_000, user="script",
                                                      devices=["collar-01"]))
            except campaigns.CampaignError as refused:
                outcome.append(refused)

        with page.db.write() as session:  # the page's start, not yet committed
            campaigns.create(session, name="model 2", kind="model", version="0.0.2", image_sha256="ab" * 32,
                             image_bytes=3844, devices=["collar-01"], canary_pct=10, max_canary_failures_pct=20,
                             min_battery_mv=3400, min_rssi_dbm=-120.0, created_by="wanjiru")
            racer = threading.Thread(target=start_from_the_script)
            racer.start()
            with page.db.read() as watcher:  # the script's start is either waiting for the page's or done
                while racer.is_alive() and not watcher.scalar(text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
                        "(SELECT oid FROM pg_database WHERE datname = current_database())")):
                    watcher.rollback()
                    racer.join(0.05)
        racer.join()
        assert len(outcome) == 1 and isinstance(outcome[0], campaigns.CampaignError), outcome
        assert "collar-01 in #" in str(outcome[0]) and "one update at a time" in str(outcome[0])
        assert [c["name"] for c in page.campaigns()] == ["model 2"]


def test_field_technician_installing_a_new_key_under_an_id_the_collars_trust_is_stopped_unless_replacing(
        key_dir, tmp_path, capsys):
    """The fleet runs a firmware whose key file holds key 7. A new laptop, the docs' command again: a new
    key 7 would silently take the old one's place in the file, and every later release check would pass
    while every collar refused what it signs."""
    private, collar_keys = key_dir
    trusted = keys.read_collar_keys(collar_keys)
    laptop = tmp_path / "laptop" / "release-7.key"
    capsys.readouterr()
    reason = refused(capsys, ["keys", "generate", str(laptop), "--key-id", "7", "--install",
                              "--collar-keys", str(collar_keys)])
    assert "already holds another key under id 7" in reason and "--replace" in reason
    assert not laptop.exists(), "no key made that could not be installed"
    assert main(["keys", "generate", str(laptop), "--key-id", "7"]) == 0  # made apart, then installed by hand
    capsys.readouterr()  # what generate printed and logged, so the install's refusal is read alone
    assert "already holds another key under id 7" in refused(
        capsys, ["keys", "install", str(laptop), "--collar-keys", str(collar_keys)])
    assert keys.read_collar_keys(collar_keys) == trusted, "the collars' key is still the one in the file"
    assert main(["keys", "install", str(private), "--collar-keys", str(collar_keys)]) == 0, "the same key again: fine"
    assert main(["keys", "install", str(laptop), "--collar-keys", str(collar_keys), "--replace"]) == 0
    assert keys.read_collar_keys(collar_keys) == {7: keys.load(laptop).public_key}, "a new deployment replaces it"


def test_a_collar_gated_by_its_battery_is_released_when_a_later_status_shows_it_charged(sqlite_url):
    """A collar on a low battery when the campaign starts is gated; its solar panel charges it and its
    next status says so: the campaign sends it the update without anyone steering."""
    with b.fresh_bridge(sqlite_url) as bridge:
        for f_cnt, (device_id, battery) in enumerate([("collar-01", 3900), ("collar-02", 3300)], start=1):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(battery_mv=battery), device_id=device_id, f_cnt=f_cnt))
        bridge.process_pending()
        campaign = bridge.create_campaign(name="model 2", kind="model", version="0.0.2", image_sha256="ab" * 32,
                                          image_bytes=3844, user="tech", canary_pct=100)
        assert {c["device_id"]: c["state"] for c in campaign["collars"]} == {"collar-01": "sending",
                                                                             "collar-02": "gated"}
        charged = b.status(time_s=b.T0_S + 3600, battery_mv=3800)
        bridge.ingest_tts_uplink(b.tts_uplink(charged, device_id="collar-02", f_cnt=3,
                                              received_at=b.T0 + timedelta(seconds=3602)))
        bridge.process_pending()
        after = bridge.campaign(campaign["id"])
        assert {c["device_id"]: c["state"] for c in after["collars"]} == {"collar-01": "sending", "collar-02": "sending"}
        assert [h["event"] for h in after["history"] if h["device_id"] == "collar-02"] == ["gated", "sending"]


def test_a_waiting_collar_whose_status_shows_the_version_turns_current_without_anyone_steering(sqlite_url):
    """Another bridge's campaign reached a collar still waiting behind the canaries here: its status says it
    runs the model, and it is left out (current) instead of being sent an image it would refuse."""
    herd = ["collar-01", "collar-02", "collar-03"]
    with b.fresh_bridge(sqlite_url) as bridge:
        for f_cnt, device_id in enumerate(herd, start=1):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(model_version=1), device_id=device_id, f_cnt=f_cnt))
        bridge.process_pending()
        campaign = bridge.create_campaign(name="model 2", kind="model", version="0.0.2", image_sha256="ab" * 32,
                                          image_bytes=3844, user="tech", canary_pct=10)
        fleet = [c["device_id"] for c in campaign["collars"] if c["stage"] == "fleet"]
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 3600, model_version=2), device_id=fleet[0],
                                              f_cnt=9, received_at=b.T0 + timedelta(seconds=3602)))
        bridge.process_pending()
        after = {c["device_id"]: c for c in bridge.campaign(campaign["id"])["collars"]}
    assert (after[fleet[0]]["state"], after[fleet[0]]["reason"]) == ("current", "runs model 2")
    assert after[fleet[1]]["state"] == "waiting", "the others still wait for the canary"


def test_field_technician_sees_when_the_bridge_only_tracks_a_campaign_and_sends_nothing(sqlite_url, monkeypatch):
    """A campaign started on a bridge without a multicast group shows its collars 'sending': the page says
    that nothing goes on the air for it, and what would make the bridge deliver."""
    with b.fresh_bridge(sqlite_url, signed_by=(KEY,)) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
        key = KEY
        campaign = bridge.start_campaign(shipped_model_image(key), user="wanjiru")
    assert campaign["delivery"] is None and campaign["collars"][0]["state"] == "sending"
    app = updates_page(sqlite_url, monkeypatch)
    (said,) = [c.value for c in app.caption if c.value.startswith("Tracked only: the bridge sends nothing")]
    assert "TEMBO_FUOTA_MULTICAST_GROUP" in said


def test_a_campaign_name_longer_than_the_store_keeps_is_refused_with_a_reason_not_an_error(store_url):
    """On PostgreSQL a 200-character name made the start fail with a database error (the API answered 500)."""
    from lora_bridge.domain.campaigns import NAME_MAX, CampaignError

    with b.fresh_bridge(store_url, signed_by=(KEY,)) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
        key = KEY
        with pytest.raises(CampaignError, match=f"at most {NAME_MAX} characters, this one has 200"):
            bridge.start_campaign(shipped_model_image(key), user="wanjiru", name="dry season " + "x" * 189)
        assert bridge.campaigns() == []
        kept = bridge.start_campaign(shipped_model_image(key), user="wanjiru", name="d" * NAME_MAX)
        assert kept["name"] == "d" * NAME_MAX


def test_field_technician_resuming_a_campaign_its_canaries_stopped_lets_the_fleet_go_on(sqlite_url):
    """The one canary failed (a collar with a cracked antenna, say) and the campaign stopped itself; the
    technician judges it and resumes: the fleet is released instead of the campaign stopping again at once."""
    herd = [f"collar-{i:02d}" for i in range(4)]
    with b.fresh_bridge(sqlite_url) as bridge:
        for f_cnt, device_id in enumerate(herd, start=1):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=device_id, f_cnt=f_cnt))
        campaign = bridge.create_campaign(name="model 2", kind="model", version="0.0.2", image_sha256="ab" * 32,
                                          image_bytes=3844, user="tech", canary_pct=25)
        (canary,) = [c["device_id"] for c in campaign["collars"] if c["stage"] == "canary"]
        bridge.record_update_ack(canary, "self_test_failed", utc_now())
        assert bridge.campaign(campaign["id"])["state"] == "stopped"
        resumed = bridge.steer_campaign(campaign["id"], "resume", "wanjiru")
        assert (resumed["state"], resumed["stage"]) == ("rolling", "fleet")
        assert {c["device_id"]: c["state"] for c in resumed["collars"]} == {
            d: "failed" if d == canary else "sending" for d in herd}
        events = [(h["event"], h["detail"]) for h in resumed["history"] if h["device_id"] is None]
        assert events[-3:] == [("stopped", {"failed_canaries": 1, "canaries": 1}), ("resume", {"by": "wanjiru"}),
                               ("fleet_stage", {"by": "wanjiru", "overriding_canary_stop": True})]
        for device_id in herd:
            if device_id != canary:
                bridge.record_update_ack(device_id, "ok", utc_now())
        assert bridge.campaign(campaign["id"])["state"] == "done"


def test_field_technician_releasing_a_firmware_with_nothing_changed_since_its_base_is_refused_not_sent_empty(
        key_dir, tmp_path, capsys, api):
    """Until 4 December the delta of an unchanged tree was an empty payload, signed and written: collars would
    have confirmed an update that installs nothing."""
    private, _ = key_dir
    collar_keys = tmp_path / "firmware_keys.bin"  # the shipped model's key beside 7, as a deployment's file holds
    collar_keys.write_bytes(keys.COLLAR_KEYS_PATH.read_bytes())
    assert main(["keys", "install", str(private), "--collar-keys", str(collar_keys)]) == 0
    out = tmp_path / "releases"
    argv = ["release", "firmware", "--key", str(private), "--collar-keys", str(collar_keys),
            "--ship-keys", str(collar_keys), "--out", str(out)]
    assert main([*argv, "--version", "1.1.0"]) == 0
    capsys.readouterr()
    written = sorted(p.name for p in out.iterdir())
    assert "nothing changed since the base 1.1.0" in refused(
        capsys, [*argv, "--version", "1.1.1", "--base", str(out / "firmware-1.1.0.json")])
    assert sorted(p.name for p in out.iterdir()) == written, "no firmware-1.1.1 written"

    empty = signed_empty_image((out / "firmware-1.1.0.tmbu").read_bytes(), keys.load(private))
    answer = api.post("/api/updates/campaigns", content=empty)  # an empty image made some other way
    assert answer.status_code == 400 and "the image carries no payload" in answer.json()["error"]
    assert api.bridge.campaigns() == [], "nothing started"


def test_field_technician_whose_key_cannot_be_installed_is_refused_before_a_key_is_made(tmp_path, capsys):
    """Until 4 December `tembo keys generate --install` made the private key and then failed to install it (a
    full key file, a folder that does not exist): the technician held a key no collar trusts, and the same
    command again said the key exists."""
    full = tmp_path / "collar_keys.bin"
    for key_id in range(1, 5):
        assert main(["keys", "generate", str(tmp_path / f"release-{key_id}.key"), "--key-id", str(key_id), "--install",
                     "--collar-keys", str(full)]) == 0
    capsys.readouterr()
    fifth = tmp_path / "release-5.key"
    assert "holds 4 keys already, as many as a collar holds (4)" in refused(
        capsys, ["keys", "generate", str(fifth), "--key-id", "5", "--install", "--collar-keys", str(full)])
    nowhere = tmp_path / "no-such-folder" / "collar_keys.bin"
    assert "cannot be written" in refused(
        capsys, ["keys", "generate", str(fifth), "--key-id", "5", "--install", "--collar-keys", str(nowhere)])
    assert not fifth.exists() and not keys.public_path(fifth).exists(), "no key that no collar holds"
    assert keys.read_collar_keys(full).keys() == {1, 2, 3, 4}


def test_field_technician_whose_key_file_is_encrypted_with_a_password_is_told_so_not_shown_a_traceback(
        key_dir, tmp_path, capsys):
    from cryptography.hazmat.primitives import serialization

    private, collar_keys = key_dir
    encrypted = tmp_path / "keys" / "release-7-encrypted.key"
    pem = keys.load(private)._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.BestAvailableEncryption(b"field password"))
    encrypted.write_bytes(pem)
    encrypted.chmod(0o600)
    keys.public_path(encrypted).write_text(keys.public_path(private).read_text())
    capsys.readouterr()
    for argv in (["keys", "install", str(encrypted), "--collar-keys", str(collar_keys)],
                 ["release", "model", str(release.DEFAULT_MODEL_PATH), "--key", str(encrypted),
                  "--collar-keys", str(collar_keys), "--out", str(tmp_path / "out")]):
        assert f"{encrypted}: encrypted with a password" in refused(capsys, argv)
    assert not (tmp_path / "out").exists()


def test_field_technician_whose_base_manifest_lost_a_modules_digest_is_refused_on_one_line(key_dir, tmp_path, capsys):
    private, collar_keys = key_dir
    base = tmp_path / "firmware-1.0.0.json"
    for entry in ("3b02f2d8e45c70e92a0da080c38", None, {"size": 5559}):
        base.write_text(json.dumps({"kind": "firmware", "version": "1.0.0", "hardware_id": collar_config.HARDWARE_ID,
                                    "modules": {"blob.mpy": entry, "main.mpy": {"size": 1, "sha256": "00"}}}))
        assert f"{base}: module 'blob.mpy' has no size and SHA-256" in refused(
            capsys, ["release", "firmware", "--version", "1.1.0", "--base", str(base), "--key", str(private),
                     "--collar-keys", str(collar_keys), "--ship-keys", str(collar_keys), "--out", str(tmp_path / "fw")])
    assert not (tmp_path / "fw").exists()


def test_field_technician_whose_hardware_id_variable_came_out_empty_is_refused_not_given_the_default(
        key_dir, tmp_path, capsys):
    private, collar_keys = key_dir
    out = tmp_path / "out"
    assert "hardware id '' must be 1..32 bytes" in refused(capsys, [
        "release", "model", str(release.DEFAULT_MODEL_PATH), "--key", str(private), "--collar-keys", str(collar_keys),
        "--hardware-id", "", "--out", str(out)])
    assert not out.exists()


def test_field_technician_who_mistypes_the_collar_key_file_is_told_it_does_not_exist_not_that_collars_hold_no_key(
        key_dir, tmp_path, capsys):
    private, collar_keys = key_dir
    typo = tmp_path / "colar_keys.bin"
    capsys.readouterr()
    for argv in (["keys", "show", "--collar-keys", str(typo)],
                 ["release", "model", str(release.DEFAULT_MODEL_PATH), "--key", str(private), "--collar-keys", str(typo),
                  "--out", str(tmp_path / "out")],
                 ["release", "firmware", "--version", "1.1.0", "--key", str(private), "--collar-keys", str(collar_keys),
                  "--ship-keys", str(typo), "--out", str(tmp_path / "out")]):
        assert f"{typo}: no such collar key file" in refused(capsys, argv)
    assert not typo.exists() and not (tmp_path / "out").exists()


def test_field_technician_generating_a_key_inside_the_checkout_is_stopped_before_a_private_key_lands_there(
        tmp_path, capsys, monkeypatch):
    assert (keys.SOURCE_TREE / "collar_firmware" / "trust.py").exists(), "the checkout the firmware is built from"
    checkout = tmp_path / "tembo"  # a stand-in, so that a failing check leaves no key in the real one
    (checkout / "collar_firmware").mkdir(parents=True)
    monkeypatch.setattr(keys, "SOURCE_TREE", checkout.resolve())
    monkeypatch.chdir(checkout)  # the technician's shell in the checkout, as when building firmware
    for path in (str(checkout / "release-1.key"), "release-1.key", "collar_firmware/release-1.key"):
        assert "inside the Tembo checkout" in refused(capsys, ["keys", "generate", path, "--key-id", "1"])
    assert not list(checkout.rglob("*.key*"))
    assert main(["keys", "generate", str(tmp_path / "release-1.key"), "--key-id", "1"]) == 0, "beside it is fine"


def test_field_technician_releasing_a_collar_module_mpy_cross_refuses_is_told_which_and_why(
        key_dir, tmp_path, capsys, monkeypatch):
    private, collar_keys = key_dir
    tree = tmp_path / "collar_firmware"  # a checkout whose collar code has a module MicroPython cannot compile
    tree.mkdir()
    (tree / "blob.py").write_text("X = 1\n")
    (tree / "tracks.py").write_text("def f(x):\n    match x:\n        case 1:\n            return 2\n")
    monkeypatch.setattr(collar_blob, "__file__", str(tree / "blob.py"))
    argv = ["release", "firmware", "--version", "1.1.0", "--key", str(private), "--collar-keys", str(collar_keys),
            "--ship-keys", str(collar_keys), "--out", str(tmp_path / "out")]
    reason = refused(capsys, argv)
    assert "mpy-cross cannot compile the collar module tracks.py" in reason and "line 2" in reason, reason
    monkeypatch.setattr(release, "mpy_cross", lambda: str(tmp_path / "no-such-mpy-cross"))
    assert "no-such-mpy-cross not found" in refused(capsys, argv)
    assert not (tmp_path / "out").exists()


def test_field_technician_pointing_out_at_a_file_is_told_it_is_not_a_folder(key_dir, tmp_path, capsys):
    private, collar_keys = key_dir
    notes = tmp_path / "notes.txt"
    notes.write_text("field notes, not a folder\n")
    for out in (notes, notes / "releases"):
        assert f"{out}: the release's folder (--out) is, or lies under, a file" in refused(capsys, [
            "release", "model", str(release.DEFAULT_MODEL_PATH), "--key", str(private), "--collar-keys",
            str(collar_keys), "--out", str(out)])
    assert notes.read_text() == "field notes, not a folder\n"


def test_field_technician_installing_the_shipped_model_is_checked_against_the_key_file_they_named(
        key_dir, tmp_path, capsys):
    private, _ = key_dir
    other = tmp_path / "other-fleet.bin"  # the key file the technician names holds another key, not 7
    keys.install_public(2, keys.generate(tmp_path / "release-2.key", 2).public_key, other)
    shipped = release.DEFAULT_MODEL_PATH.read_bytes()
    capsys.readouterr()
    reason = refused(capsys, ["release", "model", str(release.DEFAULT_MODEL_PATH), "--key", str(private),
                              "--collar-keys", str(other), "--install-default"])
    assert f"key 7 is not in the collars' key file {other}" in reason, reason
    assert release.DEFAULT_MODEL_PATH.read_bytes() == shipped


def test_field_technician_naming_a_blob_and_a_promoted_file_is_asked_which_not_given_the_promoted_one(
        key_dir, tmp_path, capsys):
    private, collar_keys = key_dir
    blob = tmp_path / "retrained.bin"
    blob.write_bytes(release.DEFAULT_MODEL_PATH.read_bytes())
    promoted = tmp_path / "promoted.json"
    promoted.write_text(json.dumps({"format": "tembo-promoted-model/1", "blob": str(release.DEFAULT_MODEL_PATH),
                                    "blob_sha256": hashlib.sha256(release.DEFAULT_MODEL_PATH.read_bytes()).hexdigest()}))
    assert "not both" in refused(capsys, ["release", "model", str(blob), "--promoted", str(promoted), "--key",
                                          str(private), "--collar-keys", str(collar_keys), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_field_technician_generating_a_key_under_a_file_is_told_which_file_is_in_the_way(tmp_path, capsys):
    """Until 5 December `tembo keys generate notes.txt/release-1.key` said only "[Errno 17] File exists", and
    `--install --collar-keys notes.txt/keys.bin` made the private key, then failed to install it ("Not a
    directory"): a key no collar holds."""
    notes = tmp_path / "notes.txt"
    notes.write_text("field notes, not a folder\n")
    private = notes / "keys" / "release-1.key"
    reason = refused(capsys, ["keys", "generate", str(private), "--key-id", "1"])
    assert f"{notes} is a file, not a folder: the private key {private} cannot be written" in reason, reason
    beside = tmp_path / "release-2.key"
    collar_keys = notes / "collar_keys.bin"
    reason = refused(capsys, ["keys", "generate", str(beside), "--key-id", "2", "--install", "--collar-keys",
                              str(collar_keys)])
    assert f"{notes} is a file, not a folder: the collar key file {collar_keys}" in reason, reason
    assert not beside.exists() and not keys.public_path(beside).exists(), "no key that no collar holds"
    assert main(["keys", "generate", str(beside), "--key-id", "2"]) == 0
    capsys.readouterr()
    reason = refused(capsys, ["keys", "install", str(beside), "--collar-keys", str(collar_keys)])
    assert f"{notes} is a file, not a folder: the collar key file {collar_keys}" in reason, reason
    assert notes.read_text() == "field notes, not a folder\n"


def whole_release(out: Path, made: dict) -> None:
    """out holds exactly the model release `made` (what `tembo release model` printed), every file as its manifest says."""
    manifest = json.loads(Path(made["manifest"]).read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(made[k]).name for k in ("blob", "image", "manifest"))
    assert hashlib.sha256(Path(made["image"]).read_bytes()).hexdigest() == manifest["image_sha256"]
    assert hashlib.sha256(Path(made["blob"]).read_bytes()).hexdigest() == manifest["sha256"]


def test_technician_never_uploads_a_release_missing_its_manifest_after_an_interruption(
        key_dir, tmp_path, capsys, monkeypatch):
    """Until 5 December `write_release` wrote the blob, the image and the manifest one by one under their
    names: a full disk or Ctrl-C half way left an image without its manifest (or a manifest naming files that
    were not there) in the folder a technician uploads from."""
    private, collar_keys = key_dir
    out = tmp_path / "releases"
    argv = ["release", "model", str(release.DEFAULT_MODEL_PATH), "--key", str(private), "--collar-keys",
            str(collar_keys), "--out", str(out)]
    real_fsync, real_link = os.fsync, os.link
    synced = []

    def disk_fills_up(fd: int) -> None:
        synced.append(fd)
        if len(synced) == 2:  # the blob is written, the image fills the disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_fills_up)
    capsys.readouterr()
    reason = refused(capsys, argv)
    assert f"the release could not be written into {out} (No space left on device)" in reason, reason
    assert not out.exists(), "nothing of it left"

    monkeypatch.setattr(os, "fsync", real_fsync)
    linked = []

    def ctrl_c_before_the_manifest(src, dst) -> None:
        if str(dst).endswith(".json"):
            raise KeyboardInterrupt
        real_link(src, dst)
        linked.append(Path(dst).name)

    monkeypatch.setattr(os, "link", ctrl_c_before_the_manifest)
    assert main(argv) == 130
    assert sorted(Path(name).suffix for name in linked) == [".bin", ".tmbu"], "it came after the blob and the image"
    assert not out.exists(), "neither the blob nor the image is left without its manifest"

    monkeypatch.setattr(os, "link", real_link)
    capsys.readouterr()
    assert main(argv) == 0, "the same command again writes the whole release"
    whole_release(out, json.loads(capsys.readouterr().out))


def test_a_release_killed_while_its_files_were_put_in_place_is_cleared_by_the_next_release(
        key_dir, tmp_path, capsys):
    """A power cut (here kill -9) after the image was put in place and before the manifest: the next release
    of that version takes the image away, even one signed by another key, instead of stopping at it."""
    private, collar_keys = key_dir
    out = tmp_path / "releases"
    argv = ["release", "model", str(release.DEFAULT_MODEL_PATH), "--collar-keys", str(collar_keys), "--out", str(out)]
    killed_at_the_manifest = (
        "import os, signal\n"
        "real = os.link\n"
        "def link(src, dst):\n"
        "    if str(dst).endswith('.json'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(src, dst)\n"
        "os.link = link\n"
        "from tembo.cli import main\n"
        f"main({[*argv, '--key', str(private)]!r})\n")
    root = Path(release.__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", killed_at_the_manifest], cwd=tmp_path, capture_output=True,
                         env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert run.returncode == -9, run.stderr
    left = {p.name for p in out.iterdir()}
    assert {"model-1.bin", "model-1.tmbu"} <= left and "model-1.json" not in left, left

    other = tmp_path / "keys" / "release-8.key"
    assert main(["keys", "generate", str(other), "--key-id", "8", "--install", "--collar-keys", str(collar_keys)]) == 0
    capsys.readouterr()
    assert main([*argv, "--key", str(other)]) == 0
    made = json.loads(capsys.readouterr().out)
    whole_release(out, made)
    assert made["key_id"] == 8


def test_technician_is_warned_that_a_model_signed_with_a_key_the_next_firmware_retires_stops_loading_after_it(
        key_dir, tmp_path, capsys):
    """A hand-over from key 7 to key 8: the model signed with 7 for today's fleet, then the firmware whose key
    file holds 8 (and the repository's key 1, which signs the shipped model). Until 5 December both were
    written without a word, and the collars that took the firmware ran its shipped model from then on."""
    private, now = key_dir
    after = tmp_path / "after.bin"
    shipped_key_id, shipped_public = next(iter(keys.read_collar_keys(keys.COLLAR_KEYS_PATH).items()))
    keys.install_public(shipped_key_id, shipped_public, now)  # today's fleet holds 1 and 7 ...
    keys.install_public(shipped_key_id, shipped_public, after)  # ... the next firmware 1 and 8
    new = tmp_path / "keys" / "release-8.key"
    assert main(["keys", "generate", str(new), "--key-id", "8", "--install", "--collar-keys", str(after)]) == 0
    capsys.readouterr()

    out = tmp_path / "releases"
    assert main(["release", "model", str(release.DEFAULT_MODEL_PATH), "--key", str(private), "--collar-keys", str(now),
                 "--ship-keys", str(after), "--out", str(out)]) == 0
    said = capsys.readouterr()
    model_version = json.loads(said.out)["model_version"]
    assert said.err.startswith(f"tembo release: warning: key 7 signs model {model_version}, but the firmware built "
                               f"with {after} (key(s) {shipped_key_id}, 8) does not hold it: collars that take that "
                               "firmware stop loading this model and run the firmware's shipped model"), said.err

    assert main(["release", "firmware", "--version", "1.9.0", "--key", str(private), "--collar-keys", str(now),
                 "--ship-keys", str(after), "--retire-key", "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert json.loads(said.out)["keys_retired"] == [7]
    assert (f"tembo release: warning: collars that take firmware 1.9.0 no longer hold key(s) 7 (its key file {after} "
            f"holds {shipped_key_id}, 8): a model update signed with a retired key stops loading on them") in said.err

    assert main(["release", "model", str(release.DEFAULT_MODEL_PATH), "--key", str(new), "--collar-keys", str(after),
                 "--ship-keys", str(after), "--out", str(tmp_path / "after-hand-over")]) == 0
    assert capsys.readouterr().err == "", "a model signed with a key the firmware keeps: no warning"
    typo = tmp_path / "afetr.bin"
    assert f"{typo}: no such collar key file" in refused(capsys, [
        "release", "model", str(release.DEFAULT_MODEL_PATH), "--key", str(new), "--collar-keys", str(after),
        "--ship-keys", str(typo), "--out", str(tmp_path / "typo")])
    assert not (tmp_path / "typo").exists(), "a mistyped --ship-keys is not a firmware holding no key"


def test_field_technician_sees_a_collar_whose_model_update_stopped_loading_after_a_key_hand_over(sqlite_url):
    """The collar refuses a stored model whose key its firmware no longer holds and runs its shipped model;
    its status says so (model_fallback), and the versions the Updates page and the API show say so too:
    until 5 December the bridge showed only the shipped model's version, as if nothing was wrong."""
    from collar_helpers import CollarWorld
    from signing_helpers import collar_trust, sign_blob

    from collar_firmware import codec, trust
    from ranger_dashboard.update_tables import versions_frame
    from simulator.hal_sim import SimFlash

    flash = SimFlash()
    world = CollarWorld(flash=flash, keys=collar_trust(flash))  # the firmware that holds the test key (9)
    world.flash.write("model", sign_blob((Path(__file__).parent / "vectors" / "golden_model.bin").read_bytes()))
    world.collar.reload_model()
    world.run_for(2 * 3600)
    assert world.collar.model.version == 7 and world.collar.status_values(world.now_s)["model_fallback"] == 0

    shipped = trust.shipped()
    world.keys = trust.Trust(shipped.keys, None, flash, shipped.pinned)  # a firmware whose key file lacks 9
    world.reboot()
    world.run_for(2 * 3600)
    status = world.collar.status_values(world.now_s)
    assert (world.collar.model.version, status["model_fallback"]) == (1, 1), "the shipped model runs, and it says so"

    with b.fresh_bridge(sqlite_url) as bridge:
        heard = (codec.port_of("status"), codec.encode("status", status))
        assert bridge.ingest_tts_uplink(b.tts_uplink(heard, device_id="collar-01", f_cnt=1)).ok
        (collar,) = bridge.fleet_versions()
    assert (collar["model_version"], collar["model_fallback"]) == (1, True)
    assert versions_frame([collar])["Model"][0] == "1 (fallback: its model update was refused)"


def test_field_technician_whose_out_variable_came_out_empty_is_refused_not_given_the_current_folder(
        key_dir, tmp_path, capsys, monkeypatch):
    """Until 5 December `tembo release model ... --out "$OUT"` with OUT unset wrote the release into the current
    folder: run from the checkout, beside its README, where `git add` picks it up."""
    private, collar_keys = key_dir
    here = tmp_path / "checkout"
    here.mkdir()
    monkeypatch.chdir(here)
    capsys.readouterr()
    for out in ("", "  "):
        for argv in (["release", "model", str(release.DEFAULT_MODEL_PATH)], ["release", "firmware", "--version", "1.1.0",
                                                                              "--ship-keys", str(collar_keys)]):
            reason = refused(capsys, [*argv, "--key", str(private), "--collar-keys", str(collar_keys), "--out", out])
            assert reason == "tembo release: --out is empty: name the folder the release goes into (default releases)"
    assert list(here.iterdir()) == [], "nothing written into the current folder"


def test_field_technician_naming_the_key_folder_instead_of_the_key_file_is_told_so_not_to_chmod_it(
        key_dir, tmp_path, capsys):
    """Until 5 December `--key ~/.tembo` (the folder) was answered "mode 755 lets others read it; chmod 600 it",
    `keys generate ~/.tembo` "exists: a release key is never overwritten", and `--collar-keys` a folder a traceback's
    "Is a directory"."""
    private, collar_keys = key_dir
    folder = private.parent
    capsys.readouterr()
    assert refused(capsys, ["keys", "generate", str(folder), "--key-id", "4"]) == (
        f"tembo keys: {folder} is a folder: name the key file to make in it (e.g. {folder / 'release-4.key'})")
    not_a_key = f"{folder} is a folder, not a private key file: name the key file in it"
    assert not_a_key in refused(capsys, ["keys", "install", str(folder), "--collar-keys", str(collar_keys)])
    assert not_a_key in refused(capsys, ["release", "model", str(release.DEFAULT_MODEL_PATH), "--key", str(folder),
                                         "--collar-keys", str(collar_keys), "--out", str(tmp_path / "out")])
    not_a_key_file = f"{folder} is a folder, not a collar key file"
    for argv in (["keys", "show", "--collar-keys", str(folder)],
                 ["keys", "install", str(private), "--collar-keys", str(folder)],
                 ["release", "model", str(release.DEFAULT_MODEL_PATH), "--key", str(private), "--collar-keys",
                  str(folder), "--out", str(tmp_path / "out")]):
        assert not_a_key_file in refused(capsys, argv), argv
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["release-7.key", "release-7.key.pub"], "nothing made"


def test_field_technician_starting_a_firmware_that_retires_keys_sees_it_in_the_campaigns_history(
        key_dir, tmp_path, capsys, api):
    """A hand-over firmware drops keys the collars hold: model updates those keys signed stop loading on the
    collars that take it. Until 5 December the campaign started without a word of it."""
    private, _ = key_dir
    now = Path(api.bridge.settings.release_keys_file)  # what the fleet holds, as the bridge checks images with it
    assert main(["keys", "install", str(private), "--collar-keys", str(now)]) == 0
    after = tmp_path / "after.bin"
    after.write_bytes(keys.COLLAR_KEYS_PATH.read_bytes())  # the key that signs the shipped model, and 8
    assert main(["keys", "generate", str(tmp_path / "keys" / "release-8.key"), "--key-id", "8", "--install",
                 "--collar-keys", str(after)]) == 0
    out = tmp_path / "releases"
    common = ["release", "firmware", "--key", str(private), "--collar-keys", str(now), "--out", str(out)]
    assert main([*common, "--version", "1.9.0", "--ship-keys", str(after), "--retire-key"]) == 0
    assert main([*common, "--version", "1.9.1", "--ship-keys", str(now)]) == 0
    capsys.readouterr()

    answer = api.post("/api/updates/campaigns", content=(out / "firmware-1.9.0.tmbu").read_bytes(),
                      params={"device_id": "collar-01"})
    assert answer.status_code == 201, answer.text
    (said,) = [e["detail"] for e in answer.json()["history"] if e["event"] == "keys_retired"]
    retired = sorted(set(keys.read_collar_keys(now)) - set(keys.read_collar_keys(after)))
    assert said["keys"] == retired and 7 in retired
    assert said["warning"].startswith(f"collars that take this firmware no longer hold release key(s) "
                                      f"{', '.join(map(str, retired))}: a model update those keys signed stops loading")
    kept = api.post("/api/updates/campaigns", content=(out / "firmware-1.9.1.tmbu").read_bytes(),
                    params={"device_id": "collar-02"})
    assert kept.status_code == 201 and not [e for e in kept.json()["history"] if e["event"] == "keys_retired"]


def test_field_technician_whose_disk_fills_up_while_generating_a_key_can_run_the_same_command_again(
        tmp_path, capsys, monkeypatch):
    """Until 5 December a full disk (or Ctrl-C) after the private key file was created left it empty or without
    its .pub: the same command again said it "exists: a release key is never overwritten", and every release
    said the key file is not a PEM key or lacks its .pub."""
    private = tmp_path / "keys" / "release-3.key"
    argv = ["keys", "generate", str(private), "--key-id", "3"]
    real_fsync = os.fsync

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    assert "No space left on device" in refused(capsys, argv)
    assert not private.exists() and not keys.public_path(private).exists()

    monkeypatch.setattr(os, "fsync", real_fsync)
    real_replace = os.replace

    def ctrl_c_at_the_pub(source, target) -> None:  # the .pub is written whole, then renamed into place
        if str(target).endswith(".pub"):
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", ctrl_c_at_the_pub)
    assert main(argv) == 130
    assert not private.exists() and not keys.public_path(private).exists()
    assert not list(private.parent.iterdir()), "no half-written .pub is left beside it either"

    monkeypatch.setattr(os, "replace", real_replace)
    capsys.readouterr()
    assert main(argv) == 0
    assert keys.load(private).key_id == 3


def test_field_technician_whose_disk_fills_up_while_installing_a_key_keeps_the_key_file_the_collars_hold(
        key_dir, tmp_path, capsys, monkeypatch):
    """Until 5 December `tembo keys install` rewrote the collar key file in place: a full disk half way left it cut
    short, and every release after refused it ("a keys file holds up to 4 records")."""
    _, collar_keys = key_dir
    before = collar_keys.read_bytes()
    other = tmp_path / "release-8.key"
    assert main(["keys", "generate", str(other), "--key-id", "8"]) == 0
    capsys.readouterr()

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    assert "No space left on device" in refused(capsys, ["keys", "install", str(other), "--collar-keys",
                                                         str(collar_keys)])
    assert collar_keys.read_bytes() == before, "the key file the collars hold, as it was"
    assert sorted(p.name for p in collar_keys.parent.iterdir() if p.name.startswith(".")) == [], "no leftover"


def test_field_technician_whose_laptop_dies_before_the_rename_keeps_the_key_file_the_collars_hold(key_dir, tmp_path):
    """A power cut while `tembo keys install` writes the collar key file (here: the process dies just before the
    new file is renamed over the old one) leaves the file the collars hold byte for byte as it was, and the same
    command run again installs the key."""
    _, collar_keys = key_dir
    before = collar_keys.read_bytes()
    other = tmp_path / "release-8.key"
    assert main(["keys", "generate", str(other), "--key-id", "8"]) == 0
    dies_at_the_rename = (
        "import os, sys\n"
        "from tembo.cli import main\n"
        "os.replace = lambda *args: os._exit(9)\n"
        "sys.exit(main(sys.argv[1:]))\n")
    argv = ["keys", "install", str(other), "--collar-keys", str(collar_keys)]
    died = subprocess.run([sys.executable, "-c", dies_at_the_rename, *argv], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}, check=False)
    assert died.returncode == 9, died.stderr
    assert collar_keys.read_bytes() == before, "the key file the collars hold, as it was"
    assert main(argv) == 0
    assert sorted(keys.read_collar_keys(collar_keys)) == [7, 8]


def test_field_technician_who_keeps_the_collar_key_file_0600_still_has_it_0600_after_installing_a_key(
        key_dir, tmp_path):
    """The collar key file is replaced whole on every install; the new file takes the old one's mode, so a
    technician who closed it to other users of the build machine does not find it readable again."""
    _, collar_keys = key_dir
    collar_keys.chmod(0o600)
    other = tmp_path / "release-8.key"
    assert main(["keys", "generate", str(other), "--key-id", "8"]) == 0
    assert main(["keys", "install", str(other), "--collar-keys", str(collar_keys)]) == 0
    assert sorted(keys.read_collar_keys(collar_keys)) == [7, 8]
    assert stat.S_IMODE(collar_keys.stat().st_mode) == 0o600


def test_field_technicians_new_release_key_and_its_public_half_are_on_disk_by_name_when_the_command_returns(
    tmp_path, monkeypatch
):
    """A power cut just after `tembo keys generate` said it was done must not leave the laptop without
    the key (or its .pub, which says its id): both files are fsynced, and then their folder, where
    their names live (a file's own fsync does not cover its name)."""
    happened: list[tuple[str, str]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        happened.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    key = keys.generate(tmp_path / "keys" / "release-3.key", 3)
    monkeypatch.undo()
    public = keys.public_path(key.path)
    synced = [target for kind, target in happened if kind == "fsync"]
    assert str(key.path) in synced, "the key's bytes are on disk"
    assert any(Path(target).name.lstrip(".").startswith(public.name) for target in synced), "and its .pub's"
    assert synced[-1] == str(key.path.parent), "then the folder holding both names"
    assert stat.S_IMODE(public.stat().st_mode) == keys.PUBLIC_MODE
    assert public.read_text().split()[:2] == [keys.PUB_PREFIX, "3"]
