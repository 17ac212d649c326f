"""Field technicians roll out signed updates from a script: the bridge's API starts a campaign from
the image `tembo release` wrote (its kind and version read from it), shows which collar runs what
and how each campaign goes, and pauses, resumes and aborts it; an image every collar would refuse
is refused before anything is sent, and only roles that manage updates may start or steer one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import bridge_builders as b
import pytest
from access_builders import CONSOLE, PASSWORDS
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from collar_firmware import config as collar_config
from collar_firmware import update_image
from lora_bridge.adapters.api import MAX_IMAGE_BYTES, create_app
from lora_bridge.domain import campaigns
from lora_bridge.store.utc import utc_now
from lora_bridge.updates import keys, release
from simulator import fuota
from tembo.cli import main

HERD = [f"collar-{i:02d}" for i in range(6)]
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory):
    return keys.generate(tmp_path_factory.mktemp("keys") / "release.key", 7)


@pytest.fixture(scope="module")
def image(signing_key) -> bytes:
    """A model-only update as `tembo release model` makes it: a retrained model (the shipped one, one
    version on) in a signed image."""
    return release.model_image(retrained(signing_key), signing_key, collar_config.HARDWARE_ID)


def retrained(signing_key) -> bytes:
    return fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), signing_key)


@pytest.fixture
def api(sqlite_url, signing_key):
    """A bridge that tracks campaigns (no multicast group), six collars that sent a status and hold the test's
    release key (TEMBO_RELEASE_KEYS_FILE), a token per role."""
    with b.fresh_bridge(sqlite_url, signed_by=(signing_key,)) as bridge, TestClient(create_app(bridge)) as client:
        for f_cnt, device_id in enumerate(HERD, start=1):
            assert bridge.ingest_tts_uplink(b.tts_uplink(b.status(model_version=1), device_id=device_id,
                                                         f_cnt=f_cnt)).ok
        client.tokens = {}
        for username, (role, password) in PASSWORDS.items():
            bridge.add_user(username, role, password, actor=CONSOLE)
            client.tokens[role] = bridge.create_token(username, f"{role} updates", actor=CONSOLE).secret
        client.bridge = bridge
        yield client


def auth(api, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.tokens[role]}", **OCTETS}


def start(api, image: bytes, role: str = "field_technician", **params):
    return api.post("/api/updates/campaigns", content=image, headers=auth(api, role), params=params)


def test_field_technician_starts_a_campaign_by_posting_the_signed_image_and_follows_each_collar(api, image):
    header = update_image.parse_header(image)
    answer = start(api, image, name="dry season model", device_id="collar-01,collar-02", canary_pct=50)
    assert answer.status_code == 201, answer.text
    campaign = answer.json()
    assert (campaign["kind"], campaign["version"]) == ("model", update_image.version_text(header.version))
    assert campaign["name"] == "dry season model" and campaign["created_by"] == "tito"
    assert campaign["image_bytes"] == len(image)
    assert sorted(c["device_id"] for c in campaign["collars"]) == ["collar-01", "collar-02"]
    assert [c["stage"] for c in campaign["collars"]].count("canary") == 1
    listed = api.get("/api/updates/campaigns", headers=auth(api, "field_technician")).json()
    assert [c["id"] for c in listed] == [campaign["id"]]
    one = api.get(f"/api/updates/campaigns/{campaign['id']}", headers=auth(api, "admin")).json()
    assert one["collars"] == campaign["collars"] and one["history"][0]["event"] == "created"
    canary = next(c["device_id"] for c in one["collars"] if c["stage"] == "canary")
    api.bridge.record_update_ack(canary, "ok", utc_now())
    after = api.get(f"/api/updates/campaigns/{campaign['id']}", headers=auth(api, "admin")).json()
    assert {c["device_id"]: c["state"] for c in after["collars"]}[canary] == "updated"
    assert after["state"] == "rolling"


def test_a_campaign_without_a_name_is_named_after_what_its_image_is(api, image):
    version = update_image.version_text(update_image.parse_header(image).version)
    assert start(api, image, device_id="collar-03").json()["name"] == f"model {version}"


def test_technician_pauses_resumes_and_aborts_over_the_api_and_a_wrong_step_is_refused(api, image):
    campaign_id = start(api, image, device_id=HERD[:4], canary_pct=50).json()["id"]
    steer = f"/api/updates/campaigns/{campaign_id}"
    tech = auth(api, "field_technician")
    assert api.post(f"{steer}/pause", headers=tech).json()["state"] == "paused"
    refused = api.post(f"{steer}/pause", headers=tech)
    assert refused.status_code == 400 and "cannot pause a campaign that is paused" in refused.json()["error"]
    assert api.post(f"{steer}/resume", headers=tech).json()["state"] == "canary"
    assert api.post(f"{steer}/abort", headers=tech).json()["state"] == "aborted"
    history = api.get(steer, headers=tech).json()["history"]
    steps = [(e["event"], e["detail"].get("by")) for e in history if e["device_id"] is None]
    assert steps[-3:] == [("pause", "tito"), ("resume", "tito"), ("abort", "tito")]
    assert {e["event"] for e in history if e["device_id"] is not None} >= {"skipped"}, "its collars end too"
    for path in ("/api/updates/campaigns/999", "/api/updates/campaigns/999/abort", "/api/updates/campaigns/x"):
        method = api.post if path.endswith("abort") else api.get
        assert method(path, headers=tech).status_code == 404, path


def test_technician_gates_a_script_started_campaign_on_spreading_factor_and_rssi_in_tenths(api, image):
    for sf in ("6", "13", "SF9"):
        refused = start(api, image, max_spreading_factor=sf)
        assert refused.status_code == 400 and (
            f"max_spreading_factor is the highest spreading factor a collar may be on, 7..12 (SF7 to SF12), not '{sf}'"
            in refused.json()["error"]), refused.text
    assert start(api, image, min_rssi_dbm="-120 dBm").json()["error"] == "min_rssi_dbm='-120 dBm' is not a number"
    assert api.get("/api/updates/campaigns", headers=auth(api, "admin")).json() == [], "nothing started"
    answer = start(api, image, device_id=HERD[:2], canary_pct=100, max_spreading_factor=8, min_rssi_dbm="-100.5")
    assert answer.status_code == 201, answer.text
    campaign = answer.json()
    assert (campaign["max_spreading_factor"], campaign["min_rssi_dbm"]) == (8, -100.5)
    # the builder's collars are heard at SF9: above SF8 they wait
    assert {(c["state"], c["reason"]) for c in campaign["collars"]} == {("gated", "spreading factor")}


def test_technician_aims_a_campaign_at_one_species_over_the_api(api, image):
    for device_id in HERD[1:3]:
        api.bridge.register_animal(device_id, f"lion {device_id[-2:]}", "Panthera leo")
    none = start(api, image, species="Acinonyx jubatus")
    assert none.status_code == 400 and "no collar is worn by an animal of species 'Acinonyx jubatus'" in none.json()["error"]
    both = start(api, image, species="Panthera leo", device_id="collar-01")
    assert both.status_code == 400 and "not both" in both.json()["error"]
    answer = start(api, image, species="Panthera leo")
    assert answer.status_code == 201, answer.text
    assert sorted(c["device_id"] for c in answer.json()["collars"]) == HERD[1:3]
    assert answer.json()["target"]["species"] == "Panthera leo"
    versions = {v["device_id"]: v["species"] for v in api.get("/api/updates/versions",
                                                             headers=auth(api, "field_technician")).json()}
    assert versions["collar-01"] == "Panthera leo"


def test_only_roles_that_manage_updates_may_start_or_steer_and_the_others_may_not_read(api, image):
    campaign_id = start(api, image, role="admin", device_id="collar-04").json()["id"]
    for role in ("ranger", "researcher", "visitor"):
        assert start(api, image, role=role).status_code == 403, role
        assert api.post(f"/api/updates/campaigns/{campaign_id}/abort", headers=auth(api, role)).status_code == 403
        for path in ("/api/updates/campaigns", f"/api/updates/campaigns/{campaign_id}", "/api/updates/versions"):
            assert api.get(path, headers=auth(api, role)).status_code == 403, (role, path)
    assert api.post("/api/updates/campaigns", content=image, headers=OCTETS).status_code == 401
    assert [c["id"] for c in api.get("/api/updates/campaigns", headers=auth(api, "admin")).json()] == [campaign_id]


def test_an_image_every_collar_would_refuse_is_refused_with_its_reason_before_anything_is_sent(api, image,
                                                                                              signing_key):
    header = update_image.parse_header(image)
    damaged = bytearray(image)
    damaged[-1] ^= 0x01  # a flipped bit in the model after signing
    unsigned = image[: header.signed_len] + bytes(64) + image[header.size:]
    other_hardware = release.model_image(retrained(signing_key), signing_key, "another-board-v1")
    not_text = bytearray(image)
    not_text[10] = 0xFF  # the hardware id's first byte: no UTF-8 text starts so
    broken = {
        "empty": (b"", "empty"),
        "not an image": (b"PK\x03\x04 a zip, not an update", "not a Tembo update image"),
        "truncated": (image[:-40], "truncated"),
        "header cut": (image[:30], "header cut"),
        "bytes after its end": (image + b"\n", "bytes after its end"),
        "damaged": (bytes(damaged), "does not match the SHA-256"),
        "unsigned": (unsigned, "no signature"),
        "other hardware": (other_hardware, "another-board-v1"),
        "hardware id not text": (bytes(not_text), "hardware id is not text"),
        "too large": (bytes(MAX_IMAGE_BYTES + 1), "larger than a collar takes"),
    }
    for case, (body, reason) in broken.items():
        answer = start(api, body)
        assert answer.status_code == 400, (case, answer.text)
        assert reason in answer.json()["error"], (case, answer.json())
    for params, reason in (({"canary_pct": 150}, "canary_pct must be 0..100"),
                           ({"min_battery_mv": "full"}, "not a whole number"),
                           ({"device_id": "collar-99"}, "unknown collars")):
        answer = start(api, image, **params)
        assert answer.status_code == 400 and reason in answer.json()["error"], (params, answer.text)
    assert api.get("/api/updates/campaigns", headers=auth(api, "admin")).json() == []


def test_an_image_whose_header_was_changed_after_signing_is_refused_before_hours_of_airtime(
        api, image, signing_key, tmp_path):
    # The version, the hardware id, the golden vector and the key id sit in the signed header, which
    # the payload's SHA-256 does not cover: a version bumped by hand (to pass a collar's downgrade
    # check) was sent to the whole fleet, and every collar refused it once all its fragments were in.
    header = update_image.parse_header(image)
    bumped = bytearray(image)
    bumped[len(update_image.MAGIC) + 2] += 1  # the version's first byte (after the format and kind), after signing
    assert update_image.parse_header(bytes(bumped)).version != header.version
    other_key = keys.generate(tmp_path / "other.key", signing_key.key_id)  # another key under the same id
    resigned = release.model_image(retrained(other_key), other_key, collar_config.HARDWARE_ID)

    for body in (bytes(bumped), resigned):
        answer = start(api, body)
        assert answer.status_code == 400, answer.text
        assert f"does not verify with release key {signing_key.key_id}" in answer.json()["error"]
    assert api.get("/api/updates/campaigns", headers=auth(api, "admin")).json() == []
    assert start(api, image, device_id="collar-04").status_code == 201, "the image as tembo release signed it"


def test_an_image_signed_with_a_key_the_collars_do_not_hold_is_refused_naming_the_key_and_the_key_file(
        api, signing_key, tmp_path, monkeypatch):
    """Until 5 December the bridge checked a signature only when its key file held the image's key id: a header
    changed after signing under a key id it did not know (or an image signed by a stranger's key) was sent to
    the whole fleet, hours of airtime, and every collar refused it (a collar takes only its firmware's keys)."""
    fleet = Path(api.bridge.settings.release_keys_file)
    stranger = keys.generate(tmp_path / "release-42.key", 42)
    foreign = release.model_image(retrained(stranger), stranger, collar_config.HARDWARE_ID)
    tampered = bytearray(foreign)
    tampered[len(update_image.MAGIC) + 2] += 1  # a version bumped after signing, under that unknown key id
    for body in (foreign, bytes(tampered)):
        answer = start(api, body)
        assert answer.status_code == 400, answer.text
        assert (f"the image is signed with release key 42, which the collars' release key file {fleet} does not "
                f"hold (it holds {', '.join(map(str, sorted(keys.read_collar_keys(fleet))))})") in answer.json()["error"]
        assert "TEMBO_RELEASE_KEYS_FILE" in answer.json()["error"]
    assert api.get("/api/updates/campaigns", headers=auth(api, "admin")).json() == []

    keys.install_public(42, stranger.public_key, fleet)  # the fleet's firmware carries key 42 after all
    answer = start(api, bytes(tampered))
    assert answer.status_code == 400 and "does not verify with release key 42" in answer.json()["error"]
    assert start(api, foreign, device_id="collar-05").status_code == 201

    fleet.unlink()  # a bridge whose key file is gone sends nothing it cannot check
    answer = start(api, foreign, device_id="collar-04")
    assert answer.status_code == 400 and "the collars' release key file cannot be read" in answer.json()["error"]


def test_a_collar_already_in_a_campaign_is_not_given_a_second_one(api, image):
    first = start(api, image, device_id="collar-05").json()
    answer = start(api, image, device_id="collar-05")
    assert answer.status_code == 400 and f"collar-05 in #{first['id']}" in answer.json()["error"]


def test_technician_reads_which_collar_runs_which_firmware_and_model(api):
    versions = api.get("/api/updates/versions", headers=auth(api, "field_technician")).json()
    assert [v["device_id"] for v in versions] == HERD
    assert {(v["fw_version"], v["model_version"]) for v in versions} == {("1.2.3", 1)}
    assert all(v["battery_mv"] == 3900 and v["update"] is None for v in versions)


def test_the_schema_lists_the_update_routes_with_their_roles(api):
    paths = api.get("/api/openapi.json").json()["paths"]
    start_route = paths["/api/updates/campaigns"]["post"]
    assert sorted(start_route["x-tembo-roles"]) == ["admin", "field_technician"]
    assert "application/octet-stream" in start_route["requestBody"]["content"]
    abort = paths["/api/updates/campaigns/{campaign_id}/abort"]["post"]
    assert sorted(abort["x-tembo-roles"]) == ["admin", "field_technician"]



def test_technician_releases_a_retrained_model_and_starts_its_campaign_from_the_file_tembo_release_wrote(
        api, signing_key, tmp_path, capsys):
    private = tmp_path / "release-9.key"
    assert main(["keys", "generate", str(private), "--key-id", "9"]) == 0
    held = Path(api.bridge.settings.release_keys_file)  # the fleet's key file, as the bridge checks with it
    keys.install_public(9, keys.load(private).public_key, held)
    blob = tmp_path / "retrained.bin"
    blob.write_bytes(release.unsigned_part(retrained(signing_key)))  # a researcher's promoted model
    capsys.readouterr()
    assert main(["release", "model", str(blob), "--key", str(private), "--out", str(tmp_path / "out"),
                 "--collar-keys", str(held)]) == 0
    printed = json.loads(capsys.readouterr().out)
    image = Path(printed["image"]).read_bytes()
    manifest = json.loads(Path(printed["manifest"]).read_text())
    assert Path(printed["image"]).suffix == ".tmbu" and manifest["image"] == Path(printed["image"]).name
    assert manifest["image_bytes"] == len(image) and manifest["hardware_id"] == collar_config.HARDWARE_ID
    assert manifest["image_sha256"] == hashlib.sha256(image).hexdigest()
    answer = start(api, image, device_id="collar-00")
    assert answer.status_code == 201, answer.text
    campaign = answer.json()
    version = manifest["model_version"]
    assert (campaign["kind"], campaign["version"]) == ("model", f"0.{(version >> 8) & 0xFF}.{version & 0xFF}")
    assert start(api, Path(printed["blob"]).read_bytes()).json()["error"].endswith("not a Tembo update image"), \
        "the bare signed blob is not what a campaign sends"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def headers() -> st.SearchStrategy[bytes]:
    """Files that start as an image does: magic, format, a kind, a version, a hardware id of any
    bytes and length, then anything."""
    return st.builds(lambda kind, version, hw, rest: (update_image.MAGIC + bytes((update_image.FORMAT, kind)) + version
                                                      + bytes((len(hw),)) + hw + rest),
                     st.integers(0, 4), st.binary(min_size=3, max_size=3), st.binary(max_size=40),
                     st.binary(max_size=400))


@example(data=update_image.MAGIC + bytes((update_image.FORMAT, 2, 0, 0, 2, 2)) + b"\xff\xfe" + bytes(120))
@given(data=st.one_of(st.binary(max_size=400), headers()))
def test_any_file_handed_over_as_an_image_is_refused_with_a_reason_or_read(data):
    try:
        identity = campaigns.identify(data)
    except campaigns.CampaignError as refused:
        assert str(refused)
    else:
        assert identity.image_bytes == len(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_an_image_cut_anywhere_or_with_its_payload_changed_is_refused(image, data):
    header = update_image.parse_header(image)
    cut = data.draw(st.integers(0, len(image) - 1))
    with pytest.raises(campaigns.CampaignError):
        campaigns.identify(image[:cut])
    at = data.draw(st.integers(header.size, len(image) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = bytearray(image)
    changed[at] ^= flip
    with pytest.raises(campaigns.CampaignError, match="does not match the SHA-256"):
        campaigns.identify(bytes(changed))
