"""Field technicians update collars over the air: signed, fragmented, verified, tried, confirmed or undone."""

from __future__ import annotations

import struct

import pytest

from collar_firmware import config, update_image
from lora_bridge.updates import release
from simulator import fuota
from simulator.hal_sim import PowerCut

KEY, KEYS_FOR = fuota.bench_keys()
# a 6 KB firmware bundle of three modules (the twin runs the same code whatever it holds)
BUNDLE = release.pack_bundle({"main.mpy": bytes(range(256)) * 8, "update.mpy": bytes(range(255, -1, -1)) * 8,
                              "risk.mpy": bytes(2000)})


def model_update(version_bump: int = 1, key=KEY) -> tuple[bytes, int]:
    """Return (update image, model version) of the shipped model retrained as a newer version."""
    blob = fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), key)
    if version_bump != 1:
        raw = bytearray(release.unsigned_part(blob))
        version = struct.unpack_from("<I", raw, 19)[0] - 1 + version_bump
        struct.pack_into("<I", raw, 19, version)
        import zlib

        struct.pack_into("<I", raw, 12, zlib.crc32(bytes(raw[16:16 + struct.unpack_from("<I", raw, 8)[0]])))
        blob = release.sign_model(bytes(raw), key)
    return release.model_image(blob, key, config.HARDWARE_ID), fuota._version_of(blob)


def firmware_update(version: str = "1.1.0", hardware_id: str = config.HARDWARE_ID, key=KEY,
                    golden_class: int | None = None) -> bytes:
    """Return a signed firmware update image (golden vector from the shipped model)."""
    features, klass = release.golden_vector(release.DEFAULT_MODEL_PATH.read_bytes())
    return release.build_image(1, version, hardware_id, BUNDLE, key,
                               (features, klass if golden_class is None else golden_class))


def one_collar(loss: float = 0.0):
    return fuota.build_fleet(1, loss, 7, KEYS_FOR)


@pytest.mark.parametrize("loss", [0.1, 0.3])
def test_a_fleet_of_fifty_collars_takes_a_new_model_at_heavy_fragment_loss(loss):
    image, version = model_update()
    fleet = fuota.build_fleet(50, loss, 3, KEYS_FOR)
    result = fuota.run_campaign(fleet, image, 5, lambda c: c.collar.model.version == version)
    assert result.success == 1.0, result.results
    assert all(c.collar.status_values(c.hal.clock.now_s())["model_version"] == version for c in fleet)
    assert result.plan.parity > 0 and result.progress.sent >= result.plan.fragments


def test_a_collar_confirms_a_firmware_after_its_trial_boot_and_reports_it():
    fleet = one_collar(0.2)
    result = fuota.run_campaign(fleet, firmware_update(), 1)
    collar = fleet[0]
    assert result.results[collar.device_id] == "ok"
    assert collar.collar.boots == 2, "rebooted once into the new image"
    assert collar.collar.status_values(collar.hal.clock.now_s())["fw_version"] == "1.1.0"
    assert collar.acks[-1]["result"] == "ok" and collar.acks[-1]["on_port"] == 201
    assert len(collar.acks) == 1, "the self-test's radio check is the one acknowledgement, not sent twice"


def _refusal(image: bytes) -> tuple[str, object]:
    fleet = one_collar()
    result = fuota.run_campaign(fleet, image, 1)
    collar = fleet[0]
    assert collar.acks, "every outcome is acknowledged on port 31"
    return result.results[collar.device_id], collar


def test_a_tampered_image_is_refused_and_the_collar_runs_on():
    image = bytearray(firmware_update())
    image[-100] ^= 0x40
    reason, collar = _refusal(bytes(image))
    assert reason == "tampered" and collar.acks[-1]["result"] == "tampered"
    assert collar.collar.update.fw_version() == config.FW_VERSION


def test_an_image_signed_with_a_key_the_collar_does_not_hold_is_refused_as_unsigned():
    other, _ = fuota.bench_keys()
    from lora_bridge.updates.keys import SigningKey

    stranger = SigningKey(77, other.path, other.public_key, other._private)
    assert _refusal(firmware_update(key=stranger))[0] == "unsigned"


def test_a_wrong_key_under_a_trusted_key_id_fails_its_signature_check():
    other, _ = fuota.bench_keys()  # a fresh key that claims the trusted key id
    reason, collar = _refusal(firmware_update(key=other))
    assert reason == "tampered"
    assert collar.collar.trust.verifications == 1, "the signature was checked to the end, then refused"


def test_a_downgrade_is_refused():
    assert _refusal(firmware_update(version="1.0.0"))[0] == "downgrade"
    image, _ = model_update(version_bump=0)
    assert _refusal(image)[0] == "downgrade", "a model no newer than the one running"


def test_an_image_for_other_hardware_is_refused():
    assert _refusal(firmware_update(hardware_id="opencollar-edge-v1"))[0] == "wrong_hardware"


def test_an_image_whose_hardware_id_is_not_text_is_refused_as_tampered_and_the_collar_runs_on():
    image = bytearray(firmware_update())
    image[10] = 0xFF  # the hardware id's first byte: no UTF-8 text starts so (the parser used to raise)
    reason, collar = _refusal(bytes(image))
    assert reason == "tampered" and collar.acks[-1]["result"] == "tampered"
    assert collar.collar.update.fw_version() == config.FW_VERSION


def test_a_truncated_transfer_is_refused_when_the_window_closes():
    image = firmware_update()
    fleet = one_collar()
    collar = fleet[0]
    plan_frag = 112
    frags = fuota.fragment(image, plan_frag)
    for port, payload in fuota._setup_frames(frags, collar.hal.clock.now_s()):
        collar.hear(port, payload)
    for n in range(1, frags.nb_frag // 2):
        collar.hear(201, fuota._fragment_frame(frags, n))
    collar.collar.update.session_over(collar.hal.clock.now_s())
    collar.live_until(collar.hal.clock.now_s() + 600)
    assert collar.acks[-1]["result"] == "truncated"
    assert collar.collar.update.fw_version() == config.FW_VERSION


def test_a_self_test_failure_rolls_the_firmware_back():
    _, klass = release.golden_vector(release.DEFAULT_MODEL_PATH.read_bytes())
    reason, collar = _refusal(firmware_update(golden_class=(klass + 1) % 4))
    assert reason == "self_test_failed"
    assert collar.collar.boots == 2, "it booted the new image on trial, then went back"
    assert collar.collar.update.fw_version() == config.FW_VERSION


@pytest.mark.parametrize("cut_after", [5, 40])
def test_a_power_cut_while_writing_the_update_leaves_the_old_version_running(cut_after):
    from collar_firmware.main import Collar

    image = firmware_update()
    collar = one_collar()[0]
    frags = fuota.fragment(image, 112)
    for port, payload in fuota._setup_frames(frags, collar.hal.clock.now_s()):
        collar.hear(port, payload)
    collar.flash.arm_power_cut(cut_after, 17)
    with pytest.raises(PowerCut):
        for n in range(1, frags.nb_frag + 1):
            collar.collar.update.handle(201, fuota._fragment_frame(frags, n), collar.hal.clock.now_s())
    # the power comes back: a fresh collar on the same flash
    reborn = Collar(collar.hal, None, KEYS_FOR(collar.flash))
    assert reborn.update.fw_version() == config.FW_VERSION
    assert reborn.model.version == 1 and not reborn.model_fallback, "the signed shipped model runs"


def test_a_power_cut_while_writing_the_boot_record_keeps_a_bootable_signed_version():
    from collar_firmware.main import Collar

    collar = one_collar()[0]
    boot = collar.collar.update.boot
    boot.trial_slot, boot.trial_version = 1, update_image.version_raw("1.1.0")
    collar.flash.arm_power_cut(0, 9)
    with pytest.raises(PowerCut):
        boot.save(collar.flash)
    reborn = Collar(collar.hal, None, KEYS_FOR(collar.flash))
    assert reborn.update.fw_version() == config.FW_VERSION and not reborn.update.trial_due


def test_a_rolled_back_firmware_is_reported_in_every_status_even_after_a_reboot():
    from collar_firmware import codec
    from collar_firmware.main import Collar

    _, klass = release.golden_vector(release.DEFAULT_MODEL_PATH.read_bytes())
    reason, collar = _refusal(firmware_update(golden_class=(klass + 1) % 4))
    now = collar.hal.clock.now_s()
    expected = {"update_kind": "firmware", "update_outcome": "rolled_back", "update_version": "1.1.0",
                "update_reason": "self_test_failed"}
    status = codec.decode(1, codec.encode("status", collar.collar.status_values(now)))
    assert {k: status[k] for k in expected} == expected and status["fw_version"] == config.FW_VERSION
    rebooted = Collar(collar.hal, None, KEYS_FOR(collar.flash))  # the result lives in flash, not in RAM
    status = codec.decode(1, codec.encode("status", rebooted.status_values(now)))
    assert {k: status[k] for k in expected} == expected


def test_a_refused_model_names_its_version_and_reason_in_status():
    from collar_firmware import codec

    image = bytearray(model_update()[0])
    image[-50] ^= 0x01
    reason, collar = _refusal(bytes(image))
    status = codec.decode(1, codec.encode("status", collar.collar.status_values(collar.hal.clock.now_s())))
    assert reason == "tampered"
    assert (status["update_kind"], status["update_outcome"], status["update_reason"]) == ("model", "refused", "tampered")
    assert status["update_version"] == update_image.version_text(model_update()[1])


def test_an_image_kind_is_reported_in_status_by_its_index_in_the_codec_table():
    """update.py reports an image's kind as its number without loading update_image: the two agree."""
    from collar_firmware import codec

    assert codec.UPDATE_KINDS[update_image.KIND_FIRMWARE] == "firmware"
    assert codec.UPDATE_KINDS[update_image.KIND_MODEL] == "model"


@pytest.mark.parametrize("ran_before", ["shipped model", "an installed model"])
def test_a_model_that_fails_its_self_test_is_neither_run_nor_kept_as_good_after_the_rollback(ran_before):
    """Its trial load made the new blob the collar's last good copy; the rollback used to leave it there, so a
    collar that ran its shipped model came back on the model that had just failed (and said rolled back)."""
    from collar_firmware.main import Collar

    collar = one_collar()[0]
    if ran_before == "an installed model":
        image, _ = model_update(version_bump=1)
        assert fuota.run_campaign([collar], image, 1).results[collar.device_id] == "ok"
    before = (collar.collar.model.version, collar.collar.model.source)
    features, klass = release.golden_vector(release.DEFAULT_MODEL_PATH.read_bytes())
    good_image, version = model_update(version_bump=2)
    blob = good_image[update_image.parse_header(good_image).size:]
    failing = release.build_image(2, f"0.0.{version}", config.HARDWARE_ID, blob, KEY, (features, (klass + 1) % 4))
    assert fuota.run_campaign([collar], failing, 1).results[collar.device_id] == "self_test_failed"
    assert (collar.collar.model.version, collar.collar.model.source) == before
    assert not collar.collar.model_fallback
    reborn = Collar(collar.hal, None, KEYS_FOR(collar.flash))  # and after a reboot
    assert (reborn.model.version, reborn.model_fallback) == (before[0], False)


def a_retrained_model(version: int, klass: int) -> bytes:
    """A signed model (same window, rate and classes as the shipped one) that puts every window in klass."""
    import numpy as np

    from collar_firmware import features
    from models import blob_writer

    value = np.zeros((1, 4))
    value[0, klass] = 1.0
    tree = blob_writer.TreeArrays(left=np.array([-1]), right=np.array([-1]), feature=np.array([-2]),
                                  threshold_q=np.array([0]), value=value)
    meta = blob_writer.ModelMeta(classes=("rest", "forage", "walk", "run"), window_s=10, rate_hz=25,
                                 scales=(0,) * features.N_FEATURES, model_version=version, name="retrained")
    return release.sign_model(blob_writer.write_blob([tree], meta), KEY)


def test_a_collar_that_took_a_model_update_still_takes_a_firmware_whose_self_test_runs_the_shipped_model():
    _, klass = release.golden_vector(release.DEFAULT_MODEL_PATH.read_bytes())
    other = (klass + 1) % 4  # the retrained model puts the firmware's golden vector in another class
    fleet = one_collar()
    model = release.model_image(a_retrained_model(2, other), KEY, config.HARDWARE_ID)
    assert fuota.run_campaign(fleet, model, 1, lambda c: c.collar.model.version == 2).results["collar-000"] == "ok"
    collar = fleet[0]
    assert fuota.run_campaign(fleet, firmware_update("1.1.0"), 2).results["collar-000"] == "ok"
    assert collar.collar.update.fw_version() == "1.1.0" and collar.collar.model.version == 2, "its model runs on"
    # the check still bites: a golden class the shipped model does not give fails, whatever model runs
    reason = fuota.run_campaign(fleet, firmware_update("1.2.0", golden_class=other), 3).results["collar-000"]
    assert reason == "self_test_failed" and collar.collar.update.fw_version() == "1.1.0"


def test_a_set_up_heard_while_a_whole_model_is_checked_is_refused_and_that_model_still_installs():
    """A second campaign's FragSessionSetupReq reaches a collar whose image is whole and being checked (a share
    a wake-up). Until 5 December the collar took the new session and silently dropped the checked image: no
    outcome, nothing for the technician. TS004 FragSessionSetupAns: FragIndex 7..6, NotEnoughMemory bit 1."""
    image, version = model_update()
    collar = one_collar()[0]
    frags = fuota.fragment(image, 112)
    for port, payload in fuota._setup_frames(frags, collar.hal.clock.now_s()):
        collar.hear(port, payload)
    for n in range(1, frags.nb_frag + 1):
        collar.hear(201, fuota._fragment_frame(frags, n))
    assert not collar.collar.update.receiving() and collar.collar.update.busy(), "whole, its check not yet done"
    collar.hal.radio.uplinks.clear()
    collar.hear(201, bytes.fromhex("02" "11" "2300" "70" "00" "4c" "00000000"))  # FragIndex 1, group 0: 35 x 112 B
    clock = collar.hal.clock
    end = clock.now_s() + 3600
    while collar.collar.update.busy() and clock.now_s() < end:
        clock.sleep_until(min(collar.collar.step(), end))
    answers = [p.hex() for _t, port, p, _c, _h in collar.hal.radio.uplinks if port == 201 and p[0] == 2]
    assert answers == ["0200", "0242"], "the first set-up taken; the second (FragIndex 1) NotEnoughMemory"
    collar.live_until(clock.now_s() + 600)
    assert collar.acks[-1]["result"] == "ok", "the checked model ran to its own outcome, acknowledged"
    assert collar.collar.model.version == version
