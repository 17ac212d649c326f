"""Field technicians roll out updates in stages: canaries first, gates on battery and link, a stop
when too many canaries fail, pause / resume / abort, and who runs what."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import bridge_builders as b
import pytest
from conftest import store_from

from lora_bridge.domain.campaigns import CampaignError, canary_order
from lora_bridge.store.utc import utc_now
from simulator import fuota

HERD = [f"collar-{i:02d}" for i in range(10)]
WEAK = sorted(HERD, key=canary_order)[-1]  # the last a canary share would pick: its battery is low
KEY, _KEYS_FOR = fuota.bench_keys()  # the release key this module's images are signed with, which its collars hold


def hear_the_herd(store_url: str) -> None:
    """Each collar of HERD heard once on the empty store at store_url (WEAK too low on battery to update)."""
    with b.fresh_bridge(store_url, signed_by=(KEY,)) as bridge:
        for i, device_id in enumerate(HERD):
            battery = 3200 if device_id == WEAK else 3900  # one collar too weak to update
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(battery_mv=battery), device_id=device_id, f_cnt=i + 1))


@pytest.fixture(scope="module")
def herd_sqlite_store(tmp_path_factory) -> Path:
    """A SQLite store that has heard the herd, made once for the module: each test starts on a copy."""
    path = tmp_path_factory.mktemp("herd-store") / "tembo.db"
    hear_the_herd(f"sqlite:///{path}")  # the bridge closed: its WAL checkpointed into the file
    return path


@pytest.fixture(scope="module")
def herd_postgres_template(postgres_server, postgres_store_template) -> Iterator[str]:
    """Name of a PostgreSQL database that has heard the herd, made once for the module: each test
    starts on a database cloned from it (~0.15 s, where hearing ten collars again takes ~1 s)."""
    url = postgres_server.create_database("tembo_herd", template=postgres_store_template)
    hear_the_herd(url)  # the bridge closed: no connection left to stop the cloning
    yield url.rsplit("/", 1)[-1]
    postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def herd_store(request, tmp_path) -> Iterator[str]:
    """A store of this test's own that has heard the herd: a copy of the module's SQLite store, then
    (second run) a PostgreSQL database cloned from the module's (dropped after the test)."""
    source = request.getfixturevalue("herd_sqlite_store" if request.param == "sqlite" else "herd_postgres_template")
    with store_from(request.param, request, tmp_path / "tembo.db", source) as url:
        yield url


@pytest.fixture
def bridge(herd_store):
    """A bridge whose store has heard each collar of the herd once."""
    with b.fresh_bridge(herd_store, signed_by=(KEY,)) as bridge:
        yield bridge


def start(bridge, **options):
    return bridge.create_campaign(name="model 2", kind="model", version="0.0.2", image_sha256="ab" * 32,
                                  image_bytes=3844, user="tech", **options)


def states(campaign):
    return {c["device_id"]: (c["stage"], c["state"]) for c in campaign["collars"]}


def test_canaries_go_first_and_the_fleet_follows_once_they_answer(bridge):
    campaign = start(bridge, canary_pct=20)
    canaries = [d for d, (stage, _) in states(campaign).items() if stage == "canary"]
    assert len(canaries) == 2 and campaign["state"] == "canary"
    assert all(state == "sending" for d, (stage, state) in states(campaign).items() if stage == "canary")
    assert all(state == "waiting" for d, (stage, state) in states(campaign).items() if stage == "fleet")
    for device_id in canaries:
        bridge.record_update_ack(device_id, "ok", utc_now())
    campaign = bridge.campaigns()[0]
    assert campaign["state"] == "rolling" and campaign["stage"] == "fleet"
    fleet = states(campaign)
    assert fleet[WEAK] == ("fleet", "gated")
    assert {state for d, (stage, state) in fleet.items() if stage == "fleet" and d != WEAK} == {"sending"}
    gated = next(c for c in campaign["collars"] if c["device_id"] == WEAK)
    assert gated["reason"] == "battery"
    for device_id in HERD:
        bridge.record_update_ack(device_id, "ok", utc_now())
    assert states(bridge.campaigns()[0])[WEAK] == ("fleet", "gated"), "an ack does not lift a gate"
    events = [e["event"] for e in bridge.campaigns()[0]["history"]]
    assert events[0] == "created" and "fleet_stage" in events


def test_a_campaign_stops_itself_when_too_many_canaries_fail(bridge):
    campaign = start(bridge, canary_pct=30, max_canary_failures_pct=20)
    canaries = [d for d, (stage, _) in states(campaign).items() if stage == "canary"]
    bridge.record_update_ack(canaries[0], "self_test_failed", utc_now())
    campaign = bridge.campaigns()[0]
    assert campaign["state"] == "stopped"
    assert all(state != "sending" for d, (stage, state) in states(campaign).items() if stage == "fleet")
    failed = next(c for c in campaign["collars"] if c["device_id"] == canaries[0])
    assert (failed["state"], failed["reason"]) == ("failed", "self_test_failed")


def test_a_technician_pauses_resumes_and_aborts(bridge):
    campaign = start(bridge, devices=HERD[:4], canary_pct=50)
    assert bridge.steer_campaign(campaign["id"], "pause", "tech")["state"] == "paused"
    with pytest.raises(CampaignError, match="cannot pause"):
        bridge.steer_campaign(campaign["id"], "pause", "tech")
    assert bridge.steer_campaign(campaign["id"], "resume", "tech")["state"] == "canary"
    assert bridge.steer_campaign(campaign["id"], "abort", "tech")["state"] == "aborted"
    steps = [e["event"] for e in bridge.campaigns()[0]["history"] if e["device_id"] is None]
    assert steps[-3:] == ["pause", "resume", "abort"]
    with pytest.raises(CampaignError, match="unknown collars"):
        start(bridge, devices=["collar-99"])


def status_of_update(version: str, outcome: str = "installed", reason: str = "ok") -> dict:
    """The last update a collar's status reports: its model version, outcome and reason."""
    return {"update_kind": "model", "update_outcome": outcome, "update_version": version, "update_reason": reason}


def collar_in(campaign, device_id):
    return next(c for c in campaign["collars"] if c["device_id"] == device_id)


def test_field_technician_who_aborts_a_campaign_sees_each_unfinished_collar_end_and_a_later_status_settle_it(bridge):
    """An abort used to leave its collars 'sending' and 'waiting' for ever, and nothing could settle them:
    a collar the delivery had reached may have taken the update, so it ends 'unknown' until its status
    names the image; a collar nothing was sent to is 'skipped'."""
    campaign = start(bridge, devices=HERD[:4], canary_pct=50)
    canaries = sorted(d for d, (stage, _) in states(campaign).items() if stage == "canary")
    fleet = sorted(d for d, (stage, _) in states(campaign).items() if stage == "fleet")
    aborted = bridge.steer_campaign(campaign["id"], "abort", "tech")
    assert {d: state for d, (_, state) in states(aborted).items()} == {
        **{d: "unknown" for d in canaries}, **{d: "skipped" for d in fleet}}
    assert {c["reason"] for c in aborted["collars"]} == {"campaign aborted"}
    assert [e["event"] for e in aborted["history"]].count("unknown") == len(canaries)

    # A port-31 ack names no image: it may answer another update, and settles nothing here.
    assert bridge.record_update_ack(canaries[0], "ok", utc_now()) == []
    assert collar_in(bridge.campaign(campaign["id"]), canaries[0])["state"] == "unknown"

    # Its next status says it runs the aborted campaign's model: that settles it, with its history.
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 3600, update=status_of_update("0.0.2")),
                                          device_id=canaries[0], f_cnt=40))
    bridge.process_pending()
    after = bridge.campaign(campaign["id"])
    assert (collar_in(after, canaries[0])["state"], collar_in(after, canaries[0])["reason"]) == ("updated", None)
    assert collar_in(after, canaries[1])["state"] == "unknown", "the other canary has said nothing"
    settled = [e for e in after["history"] if e["event"] == "updated"]
    assert [e["device_id"] for e in settled] == [canaries[0]]
    assert after["state"] == "aborted"


def test_field_technician_sees_a_status_about_an_aborted_update_leave_the_collars_new_campaign_alone(bridge):
    """A collar whose first campaign was aborted joins a newer one; its status still names the first image
    (it took that one before the abort): that settles the aborted campaign, never the newer one."""
    first = start(bridge, devices=HERD[:2], canary_pct=100)
    collar = HERD[0]
    bridge.steer_campaign(first["id"], "abort", "tech")
    second = bridge.create_campaign(name="model 3", kind="model", version="0.0.3", image_sha256="cd" * 32,
                                    image_bytes=3844, user="tech", devices=[collar], canary_pct=100)
    assert states(second)[collar] == ("canary", "sending")
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 3600, update=status_of_update("0.0.2")),
                                          device_id=collar, f_cnt=40))
    bridge.process_pending()
    assert collar_in(bridge.campaign(first["id"]), collar)["state"] == "updated"
    assert collar_in(bridge.campaign(second["id"]), collar)["state"] == "sending", "0.0.3 is not what it runs"


def test_the_technician_sees_which_collar_runs_which_firmware_and_model(bridge):
    versions = {v["device_id"]: v for v in bridge.fleet_versions()}
    assert set(versions) == set(HERD)
    assert versions["collar-00"]["fw_version"] and versions["collar-00"]["model_version"] is not None


def updates_page(sqlite_url, monkeypatch):
    """The dashboard's Updates page as a field technician sees it (streamlit AppTest)."""

    from streamlit.testing.v1 import AppTest

    import ranger_dashboard
    from lora_bridge.access.roles import FIELD_TECHNICIAN, Viewer
    from ranger_dashboard import roles

    monkeypatch.setenv("TEMBO_DATABASE_URL", sqlite_url)
    page = Path(ranger_dashboard.__file__).resolve().parent / "screens" / "updates.py"
    app = AppTest.from_file(str(page), default_timeout=60)
    app.session_state[roles.VIEWER_KEY] = Viewer("wanjiru", FIELD_TECHNICIAN)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def collar_lines(app, campaign_id: int) -> list[str]:  # noqa: ANN001
    """The lines the Updates page shows of every collar of the campaign (its "all" choice), as read: "collar-01 ·
    canary · sending", "collar-03 · fleet · skipped: runs firmware 1.2.2; ...", by collar."""
    picker = app.selectbox(key=f"collars-{campaign_id}")
    picker.select(next(o for o in picker.options if o.startswith("all"))).run()
    shown = next(m.value for m in app.markdown if m.value.startswith("- **"))
    return [line.removeprefix("- ").replace("**", "").replace("\\", "") for line in shown.splitlines()]


def test_the_updates_page_shows_who_runs_what_and_each_campaigns_progress(sqlite_url, monkeypatch):
    from lora_bridge.service import open_bridge

    bridge = open_bridge(sqlite_url)
    for i, device_id in enumerate(HERD[:3]):
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=device_id, f_cnt=i + 1))
    campaign = start(bridge, canary_pct=33)  # one canary of three
    bridge.close()
    monkeypatch.setenv("TEMBO_DATABASE_URL", sqlite_url)
    app = updates_page(sqlite_url, monkeypatch)  # as a field technician sees it
    assert app.title[0].value == "Updates"
    assert sorted(app.dataframe[0].value["Collar"]) == HERD[:3]
    assert set(app.dataframe[0].value["Firmware"]) == {"1.2.3"}
    assert app.expander[0].label.startswith(f"#{campaign['id']} model 2 — model 0.0.2: canary")
    assert sorted(line.split(" · ")[2] for line in collar_lines(app, campaign["id"])) == ["sending", "waiting", "waiting"]
    assert [button.label for button in app.button] == ["Pause", "Abort", "Start"], \
        "the technician steers the canary campaign (pause, abort) and may start another"


def test_a_refusal_reported_only_in_status_fails_the_collar_and_shows_on_the_updates_page(sqlite_url, monkeypatch):
    from lora_bridge.service import open_bridge

    bridge = open_bridge(sqlite_url)
    for i, device_id in enumerate(HERD[:2]):
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=device_id, f_cnt=i + 1))
    campaign = start(bridge, devices=HERD[:2], canary_pct=50)
    canary = next(d for d, (stage, _) in states(campaign).items() if stage == "canary")
    refused = {"update_kind": "model", "update_outcome": "refused", "update_version": "0.0.2",
               "update_reason": "tampered"}  # its port-31 ack was lost: the next status says it
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 3600, update=refused), device_id=canary, f_cnt=9))
    bridge.process_pending()
    after = next(c for c in bridge.campaigns()[0]["collars"] if c["device_id"] == canary)
    assert (after["state"], after["reason"]) == ("failed", "tampered")
    versions = {v["device_id"]: v for v in bridge.fleet_versions()}
    assert versions[canary]["update"]["outcome"] == "refused"
    bridge.close()
    monkeypatch.setenv("TEMBO_DATABASE_URL", sqlite_url)
    app = updates_page(sqlite_url, monkeypatch)  # as a field technician sees it
    shown = dict(zip(app.dataframe[0].value["Collar"], app.dataframe[0].value["Last update"], strict=True))
    assert shown[canary] == "model 0.0.2: refused (tampered)"


def test_a_collars_update_ack_heard_by_the_bridge_moves_its_campaign(bridge):
    from collar_firmware import codec

    campaign = start(bridge, devices=HERD[:2], canary_pct=50)
    canary = next(d for d, (stage, _) in states(campaign).items() if stage == "canary")
    taken_s = int((utc_now() + timedelta(hours=3)).timestamp())  # the collar took the update after its release
    ack = codec.encode_packet("ack", {"time_s": taken_s, "on_port": 201, "cmd": 8, "result": "tampered"})
    bridge.ingest_tts_uplink(b.tts_uplink(ack, device_id=canary, f_cnt=50))
    bridge.process_pending()
    after = next(c for c in bridge.campaigns()[0]["collars"] if c["device_id"] == canary)
    assert (after["state"], after["reason"]) == ("failed", "tampered")


def test_field_technician_sees_a_late_ack_of_an_older_update_leave_a_tracked_campaigns_collar_sending(bridge):
    """In a campaign the bridge only tracks there is no session to tell which update an ack answers; the ack's
    own time does: one dated days before the collar was released to this campaign (from its queue, after
    days out of range) is an older update's, and used to settle this campaign's collar."""
    from collar_firmware import codec

    campaign = start(bridge, devices=HERD[:2], canary_pct=50)
    canary = next(d for d, (stage, _) in states(campaign).items() if stage == "canary")
    days_ago_s = int((utc_now() - timedelta(days=3)).timestamp())
    old_ack = codec.encode_packet("ack", {"time_s": days_ago_s, "on_port": 201, "cmd": 8, "result": "ok"})
    bridge.ingest_tts_uplink(b.tts_uplink(old_ack, device_id=canary, f_cnt=50))
    bridge.process_pending()
    after = next(c for c in bridge.campaigns()[0]["collars"] if c["device_id"] == canary)
    assert after["state"] == "sending", "the older update's ack settled nothing"



def test_field_technician_sees_an_ack_handed_to_the_bridge_dated_and_taken_as_one_heard_over_the_air(bridge):
    """The service's entry for a collar's ack (`Bridge.record_update_ack`) takes the ack's own time and does
    what an ack heard over the air does: until 4 December it took no time, so an older update's ack, days
    old, settled this tracked campaign's collar as updated (and it left a delivery's collar incomplete)."""
    campaign = start(bridge, devices=HERD[:2], canary_pct=50)
    canary = next(d for d, (stage, _) in states(campaign).items() if stage == "canary")
    assert bridge.record_update_ack(canary, "ok", utc_now() - timedelta(days=3)) == []
    after = next(c for c in bridge.campaigns()[0]["collars"] if c["device_id"] == canary)
    assert after["state"] == "sending", "the older update's ack settled nothing"
    assert bridge.record_update_ack(canary, "ok", utc_now()) == [campaign["id"]]
    after = next(c for c in bridge.campaigns()[0]["collars"] if c["device_id"] == canary)
    assert after["state"] == "updated"

def test_collars_that_already_run_the_version_are_left_out_and_every_canary_takes_the_update(bridge):
    wanted = b.SHIPPED_MODEL_VERSION + 1
    ahead = sorted(HERD, key=canary_order)[:3]  # the collars a canary share would pick first
    for i, device_id in enumerate(ahead):  # a newer model reached them (a campaign of another bridge)
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 600, model_version=wanted + i),
                                              device_id=device_id, f_cnt=50 + i))
    campaign = bridge.create_campaign(name="model", kind="model", version=f"0.0.{wanted}", image_sha256="ab" * 32,
                                      image_bytes=3844, user="tech", canary_pct=20)
    by_collar = {c["device_id"]: c for c in campaign["collars"]}
    assert {d: (by_collar[d]["state"], by_collar[d]["reason"]) for d in ahead} == {
        ahead[0]: ("current", f"runs model {wanted}"), ahead[1]: ("current", f"runs model {wanted + 1}"),
        ahead[2]: ("current", f"runs model {wanted + 2}")}
    canaries = [d for d, (stage, _) in states(campaign).items() if stage == "canary"]
    assert len(canaries) == 2 and not set(canaries) & set(ahead), "2 of the 7 that need it, none that runs it"
    assert campaign["history"][0]["detail"]["current"] == 3
    for device_id in canaries:
        bridge.record_update_ack(device_id, "ok", utc_now())
    for device_id in HERD:
        if device_id not in ahead and device_id != WEAK:
            bridge.record_update_ack(device_id, "ok", utc_now())
    campaign = bridge.campaigns()[0]
    assert campaign["counts"] == {"current": 3, "updated": 6, "gated": 1}
    assert campaign["state"] == "rolling", "the gated collar is still to come"


def test_a_campaign_for_a_version_every_targeted_collar_runs_is_refused_before_anything_is_sent(bridge):
    with pytest.raises(CampaignError, match="already runs firmware 1.2.3 or newer"):
        bridge.create_campaign(name="same firmware", kind="firmware", version="1.2.3", image_sha256="ab" * 32,
                               image_bytes=90_000, user="tech")
    with pytest.raises(CampaignError, match="already runs firmware 1.1.0 or newer"):
        bridge.create_campaign(name="older firmware", kind="firmware", version="1.1.0", image_sha256="ab" * 32,
                               image_bytes=90_000, user="tech")
    with pytest.raises(CampaignError, match="major.minor.patch"):
        bridge.create_campaign(name="typo", kind="firmware", version="1.3", image_sha256="ab" * 32,
                               image_bytes=90_000, user="tech")
    assert bridge.campaigns() == []
    campaign = bridge.create_campaign(name="newer firmware", kind="firmware", version="1.3.0", image_sha256="ab" * 32,
                                      image_bytes=90_000, user="tech")
    assert "current" not in campaign["counts"]


def test_an_update_image_says_what_it_is_and_a_technician_cannot_name_it_otherwise(bridge):
    import hashlib

    from collar_firmware import config
    from lora_bridge.updates import release

    key = KEY
    blob = fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), key)
    image = release.model_image(blob, key, config.HARDWARE_ID)
    identity = bridge.update_image_identity(image)
    version = f"0.0.{fuota._version_of(blob)}"
    assert (identity.kind, identity.version, identity.hardware_id, identity.key_id) == (
        "model", version, config.HARDWARE_ID, key.key_id)

    def start_with(image: bytes, kind: str, version: str) -> dict:
        return bridge.create_campaign(name="m", kind=kind, version=version, image=image, user="tech",
                                      image_sha256=hashlib.sha256(image).hexdigest(), image_bytes=len(image))

    with pytest.raises(CampaignError, match=f"the image is model {version}, not firmware 1.3.0"):
        start_with(image, "firmware", "1.3.0")
    with pytest.raises(CampaignError, match=f"the image is model {version}, not model 0.0.99"):
        start_with(image, "model", "0.0.99")
    other = release.model_image(blob, key, "tembo-other-board")
    with pytest.raises(CampaignError, match="built for 'tembo-other-board'"):
        bridge.update_image_identity(other)
    for broken in (b"", image[:9], b"NOPE" + image[4:], image[:40]):
        with pytest.raises(CampaignError, match="the file cannot be sent to collars: (not a Tembo update image"
                                                "|image of . bytes has no header|header cut after)"):
            bridge.update_image_identity(broken)
    assert bridge.campaigns() == []


def test_a_technician_starts_a_campaign_from_the_updates_page_by_uploading_the_signed_image(sqlite_url, monkeypatch,
                                                                                            tmp_path):
    from collar_firmware import config
    from lora_bridge.service import open_bridge
    from lora_bridge.updates import release

    key, _keys_for = fuota.bench_keys()
    monkeypatch.setenv("TEMBO_RELEASE_KEYS_FILE", b.release_keys_file(tmp_path, key))  # what the collars hold
    blob = fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), key)
    image = release.model_image(blob, key, config.HARDWARE_ID)
    bridge = open_bridge(sqlite_url)
    for i, device_id in enumerate(HERD[:3]):
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=device_id, f_cnt=i + 1))
    bridge.close()
    app = updates_page(sqlite_url, monkeypatch)
    assert not [w for w in (*app.text_input, *app.selectbox) if "Version" in w.label], "nothing typed by hand"
    app.text_input[0].input("retrained model")
    app.file_uploader[0].upload("model.tmbu", b"not an image at all")
    app.button[0].click().run()
    assert [e.value for e in app.error] == [
        "the file cannot be sent to collars: not a Tembo update image"], "a wrong file is refused, said why"
    app.file_uploader[0].clear()
    app.file_uploader[0].upload("model.tmbu", image)
    app.button[0].click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    with open_bridge(sqlite_url) as bridge:
        (campaign,) = bridge.campaigns()
    assert (campaign["name"], campaign["kind"], campaign["version"], campaign["created_by"]) == (
        "retrained model", "model", f"0.0.{fuota._version_of(blob)}", "wanjiru")
    assert campaign["image_bytes"] == len(image) and campaign.get("delivery") is None, "no group: tracked only"


def test_a_campaign_stored_with_a_hand_typed_version_still_moves_on_its_collars_acks(bridge):
    from sqlalchemy import update

    from lora_bridge.store.tables import UpdateCampaign

    campaign = start(bridge, devices=HERD[:2], canary_pct=100)
    with bridge.db.write() as session:  # as the Updates page let a technician type it before
        session.execute(update(UpdateCampaign).values(version="model two"))
    for device_id in HERD[:2]:
        bridge.record_update_ack(device_id, "ok", utc_now())
    after = bridge.campaigns()[0]
    assert after["id"] == campaign["id"] and after["counts"] == {"updated": 2} and after["state"] == "done"


def test_a_collar_follows_one_update_at_a_time(bridge):
    first = start(bridge, devices=HERD[:4], canary_pct=50)
    with pytest.raises(CampaignError, match=r"collar-02, collar-03 in #\d+ 'model 2' \(canary\)"):
        bridge.create_campaign(name="firmware", kind="firmware", version="1.3.0", image_sha256="cd" * 32,
                               image_bytes=90_000, user="tech", devices=HERD[2:6])
    with pytest.raises(CampaignError, match="one update at a time"):  # every collar: the four among them
        bridge.create_campaign(name="firmware", kind="firmware", version="1.3.0", image_sha256="cd" * 32,
                               image_bytes=90_000, user="tech")
    apart = bridge.create_campaign(name="firmware", kind="firmware", version="1.3.0", image_sha256="cd" * 32,
                                   image_bytes=90_000, user="tech", devices=HERD[4:6])
    assert apart["state"] == "canary", "collars of no other campaign go ahead"
    bridge.steer_campaign(first["id"], "pause", "tech")
    with pytest.raises(CampaignError, match=r"\(paused\)"):
        start(bridge, devices=HERD[:1])
    bridge.steer_campaign(first["id"], "abort", "tech")
    again = bridge.create_campaign(name="model again", kind="model", version="0.0.9", image_sha256="ef" * 32,
                                   image_bytes=3844, user="tech", devices=HERD[:4])
    assert again["counts"].get("sending", 0) + again["counts"].get("waiting", 0) == 4


def at_spreading_factor(body: bytes, sf: int) -> bytes:
    """The same TTS uplink body, heard at another spreading factor."""
    document = json.loads(body)
    document["uplink_message"]["settings"]["data_rate"]["lora"]["spreading_factor"] = sf
    return json.dumps(document).encode()


def test_a_collar_last_heard_on_a_slow_spreading_factor_waits_until_it_is_heard_on_a_faster_one(bridge):
    far = HERD[3]  # a collar at the edge of the gateways' reach: its network moved it to SF12
    later = b.T0 + timedelta(minutes=10)
    bridge.ingest_tts_uplink(at_spreading_factor(
        b.tts_uplink(b.status(time_s=b.T0_S + 600), device_id=far, f_cnt=40, received_at=later), 12))
    bridge.process_pending()
    campaign = start(bridge, devices=HERD[:5], canary_pct=100, max_spreading_factor=10)
    by_collar = {c["device_id"]: c for c in campaign["collars"]}
    assert (by_collar[far]["state"], by_collar[far]["reason"]) == ("gated", "spreading factor")
    assert {by_collar[d]["state"] for d in HERD[:5] if d != far} == {"sending"}, "SF9 is within SF10"
    assert campaign["max_spreading_factor"] == 10
    bridge.ingest_tts_uplink(at_spreading_factor(b.tts_uplink(b.status(time_s=b.T0_S + 1200), device_id=far,
                                                              f_cnt=41, received_at=later + timedelta(minutes=10)), 8))
    bridge.process_pending()
    after = next(c for c in bridge.campaigns()[0]["collars"] if c["device_id"] == far)
    assert (after["state"], after["reason"]) == ("sending", None), "heard at SF8 now: the gate lifts"


def test_a_spreading_factor_gate_outside_sf7_to_sf12_is_refused_and_nothing_starts(bridge):
    for sf in (6, 13):
        with pytest.raises(CampaignError, match=f"must be 7..12 \\(SF7 to SF12\\), not {sf}"):
            start(bridge, max_spreading_factor=sf)
    assert bridge.campaigns() == []
    assert start(bridge, max_spreading_factor=7)["max_spreading_factor"] == 7


def test_an_rssi_gate_in_tenths_of_a_db_is_kept_as_typed(bridge):
    # the builder's collars are heard at -100 dBm by their best gateway
    held = start(bridge, devices=HERD[:2], canary_pct=100, min_rssi_dbm=-99.5)
    assert held["min_rssi_dbm"] == -99.5
    assert {(c["state"], c["reason"]) for c in held["collars"]} == {("gated", "link")}
    bridge.steer_campaign(held["id"], "abort", "tech")
    let_through = start(bridge, devices=HERD[:2], canary_pct=100, min_rssi_dbm=-100.5)
    assert {c["state"] for c in let_through["collars"]} == {"sending"}


def test_a_technician_updates_the_collars_of_one_species_by_naming_it(bridge):
    rhinos = HERD[2:5]
    for device_id in rhinos:
        bridge.register_animal(device_id, f"rhino {device_id[-2:]}", "Diceros bicornis")
    campaign = start(bridge, species=" diceros bicornis", canary_pct=100)
    assert sorted(c["device_id"] for c in campaign["collars"]) == rhinos
    assert campaign["target"] == {"species": "diceros bicornis", "devices": rhinos}
    versions = {v["device_id"]: v["species"] for v in bridge.fleet_versions()}
    assert {versions[d] for d in rhinos} == {"Diceros bicornis"}
    with pytest.raises(CampaignError, match="no collar is worn by an animal of species 'Panthera leo'"):
        start(bridge, species="Panthera leo")
    with pytest.raises(CampaignError, match="a list of collars or a species, not both"):
        start(bridge, species="Diceros bicornis", devices=HERD[:1])
    assert len(bridge.campaigns()) == 1, "a group that matches no collar starts nothing"


def test_a_technician_starts_a_species_campaign_gated_on_spreading_factor_from_the_updates_page(sqlite_url,
                                                                                                 monkeypatch, tmp_path):
    from collar_firmware import config
    from lora_bridge.service import open_bridge
    from lora_bridge.updates import release

    key, _keys_for = fuota.bench_keys()
    monkeypatch.setenv("TEMBO_RELEASE_KEYS_FILE", b.release_keys_file(tmp_path, key))  # what the collars hold
    image = release.model_image(fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), key), key,
                                config.HARDWARE_ID)
    with open_bridge(sqlite_url) as bridge:
        for i, device_id in enumerate(HERD[:4]):
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id=device_id, f_cnt=i + 1))
        for device_id in HERD[:2]:
            bridge.register_animal(device_id, f"rhino {device_id[-2:]}", "Diceros bicornis")
    app = updates_page(sqlite_url, monkeypatch)
    (species,) = [s for s in app.selectbox if s.label.startswith("Species")]
    assert species.options == ["(every species)", "Diceros bicornis", "Loxodonta africana"]
    species.select("Diceros bicornis")
    (canaries,) = [s for s in app.slider if s.label == "Canaries (%)"]
    canaries.set_value(100)  # both collars first: each shows its gate
    (sf,) = [s for s in app.slider if "spreading factor" in s.label]
    sf.set_value(8)
    (rssi,) = [n for n in app.number_input if "RSSI" in n.label]
    rssi.set_value(-100.5)
    app.file_uploader[0].upload("model.tmbu", image)
    app.button[0].click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    with open_bridge(sqlite_url) as bridge:
        (campaign,) = bridge.campaigns()
    assert campaign["target"] == {"species": "Diceros bicornis", "devices": HERD[:2]}
    assert (campaign["max_spreading_factor"], campaign["min_rssi_dbm"]) == (8, -100.5)
    assert {(c["state"], c["reason"]) for c in campaign["collars"]} == {("gated", "spreading factor")}, "heard at SF9"
    assert any("spreading factor ≤ SF8; species Diceros bicornis" in c.value for c in app.caption)


def _delta(base: str, version: str) -> bytes:
    """A signed firmware delta of `version` against `base`, as `tembo release firmware --base` makes it."""
    from collar_firmware import config
    from lora_bridge.updates import release

    key = KEY
    files = {"main.mpy": b"\x01" * 400, "risk.mpy": b"\x02" * 300}
    return release.build_image(1, version, config.HARDWARE_ID, release.pack_delta(files, {"main.mpy"}), key,
                               ([], 0), (base, release.pack_bundle(files)))


def test_field_technician_sends_a_delta_only_to_collars_running_its_base_and_sees_why_the_others_are_skipped(bridge):
    behind = sorted(HERD, key=canary_order)[:3]  # the collars a canary share would pick first
    for i, device_id in enumerate(behind):  # still on 1.2.2: they hold no 1.2.3 to compose the delta with
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 600, fw_version="1.2.2"),
                                              device_id=device_id, f_cnt=60 + i))
    campaign = bridge.start_campaign(_delta("1.2.3", "1.3.0"), user="tech", canary_pct=20)
    assert (campaign["kind"], campaign["version"], campaign["base_version"]) == ("firmware", "1.3.0", "1.2.3")
    by_collar = {c["device_id"]: c for c in campaign["collars"]}
    assert {d: (by_collar[d]["state"], by_collar[d]["reason"]) for d in behind} == {
        d: ("skipped", "runs firmware 1.2.2; delta needs 1.2.3") for d in behind}
    canaries = [d for d, (stage, _) in states(campaign).items() if stage == "canary"]
    assert len(canaries) == 2 and not set(canaries) & set(behind), "canaries are collars that can take it"
    for device_id in canaries + HERD:
        if device_id not in behind and device_id != WEAK:
            bridge.record_update_ack(device_id, "ok", utc_now())
    assert bridge.campaigns()[0]["counts"] == {"skipped": 3, "updated": 6, "gated": 1}


def test_a_delta_against_a_version_no_targeted_collar_runs_is_refused_before_anything_is_sent(bridge):
    with pytest.raises(CampaignError, match=r"a delta against 1.0.0, and no collar targeted runs 1.0.0.*whole image"):
        bridge.start_campaign(_delta("1.0.0", "1.3.0"), user="tech")
    assert bridge.campaigns() == []


def test_field_technician_sees_a_campaign_end_when_a_collar_stays_gated_or_a_tracked_one_never_answers(bridge):
    """Until 4 December a collar whose battery never recovered kept its campaign rolling for ever, and so did a
    collar of a campaign the bridge only tracks (no delivery, so no delivery time limits) that never reported."""
    campaign = start(bridge, canary_pct=10)
    (canary,) = [d for d, (stage, _) in states(campaign).items() if stage == "canary"]
    bridge.record_update_ack(canary, "ok", utc_now())
    silent = sorted(d for d in HERD if d not in (canary, WEAK))[0]
    for device_id in HERD:
        if device_id not in (canary, WEAK, silent):
            bridge.record_update_ack(device_id, "ok", utc_now())
    bridge.deliver_updates(utc_now() + timedelta(days=13))
    assert bridge.campaigns()[0]["state"] == "rolling", "not before its time"
    bridge.deliver_updates(utc_now() + timedelta(days=14, minutes=5))
    ended = bridge.campaigns()[0]
    by_collar = {c["device_id"]: (c["state"], c["reason"]) for c in ended["collars"]}
    assert by_collar[WEAK] == ("skipped", "gated 14 d: battery"), "it never got the update: no failure of the image"
    assert by_collar[silent] == ("failed", "no result in 14 d")
    assert ended["state"] == "done" and ended["counts"] == {"updated": 8, "skipped": 1, "failed": 1}
    bridge.record_update_ack(silent, "ok", utc_now())  # its result came after all: what it runs counts
    assert {c["device_id"]: c["state"] for c in bridge.campaigns()[0]["collars"]}[silent] == "updated"


def test_field_technician_sees_on_the_updates_page_that_a_campaign_is_a_delta_and_why_collars_are_skipped(
        sqlite_url, monkeypatch, tmp_path):
    from lora_bridge.service import open_bridge

    bridge = open_bridge(sqlite_url, release_keys_file=b.release_keys_file(tmp_path, KEY))
    for i, device_id in enumerate(HERD[:3]):
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(fw_version="1.2.2" if i == 2 else "1.2.3"),
                                              device_id=device_id, f_cnt=i + 1))
    campaign = bridge.start_campaign(_delta("1.2.3", "1.3.0"), user="tech", canary_pct=100)
    bridge.close()
    monkeypatch.setenv("TEMBO_DATABASE_URL", sqlite_url)
    app = updates_page(sqlite_url, monkeypatch)  # as a field technician sees it
    assert app.expander[0].label.startswith(f"#{campaign['id']} firmware 1.3.0 — firmware 1.3.0 (delta against 1.2.3): ")
    lines = collar_lines(app, campaign["id"])
    assert sorted(line.split(" · ")[2].split(":")[0] for line in lines) == ["sending", "sending", "skipped"]
    assert any(line.endswith("skipped: runs firmware 1.2.2; delta needs 1.2.3") for line in lines), lines
