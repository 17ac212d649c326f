"""A field technician sends a firmware delta (`tembo release firmware --base`): only the changed modules
travel, and every collar ends up with the whole bundle of the new version or stays on the one it runs.

Until 4 December the collar rebuilt a delta's few modules into its inactive slot and booted it: the
self-test never looked at the slot, and the image did not say which version it was built against, so
on a real board every delta would have booted a slot missing most of its modules.
"""

from __future__ import annotations

import hashlib

import pytest

from collar_firmware import codec, config, update_image, update_install, update_slot
from collar_firmware.main import Collar
from lora_bridge.updates import keys, release
from simulator import fuota
from simulator.hal_sim import PowerCut

KEY, KEYS_FOR = fuota.bench_keys()
GOLDEN = release.golden_vector(release.DEFAULT_MODEL_PATH.read_bytes())
# the modules of the factory firmware (config.FW_VERSION), and of 1.1.0: main changed, fences added, geo dropped
FACTORY = {"main.mpy": bytes(range(256)) * 6, "update.mpy": bytes(range(255, -1, -1)) * 5,
           "risk.mpy": bytes(1200), "geo.mpy": b"\x4d" * 700}
NEXT = {"main.mpy": bytes(range(1, 256)) * 6, "update.mpy": FACTORY["update.mpy"], "risk.mpy": FACTORY["risk.mpy"],
        "fences.mpy": b"\x66" * 300}
CHANGED = {"main.mpy", "fences.mpy"}


def delta_image(base: str = config.FW_VERSION, version: str = "1.1.0", golden=GOLDEN) -> bytes:
    """The signed delta of NEXT against the factory firmware, as `tembo release firmware --base` makes it."""
    return release.build_image(update_image.KIND_FIRMWARE, version, config.HARDWARE_ID,
                               release.pack_delta(NEXT, CHANGED), KEY, golden, (base, release.pack_bundle(NEXT)))


def factory_collar(bundle: bytes | None = release.pack_bundle(FACTORY), loss: float = 0.0) -> fuota.FleetCollar:
    return fuota.build_fleet(1, loss, 7, KEYS_FOR, factory_bundle=bundle)[0]


def slot_bytes(flash, slot: int) -> bytes:
    bundle = update_slot.slot_bundle(flash, slot)
    return bytes(bundle.read(0, bundle.length))


def status_of(collar: fuota.FleetCollar) -> dict:
    return codec.decode(1, codec.encode("status", collar.collar.status_values(collar.hal.clock.now_s())))


def test_field_technician_sends_a_delta_and_the_collar_boots_the_whole_bundle_of_the_new_version():
    collar = factory_collar(loss=0.2)
    factory_slot = {k: v for k, v in collar.flash.records.items() if k.startswith("s0")}
    image = delta_image()
    assert len(image) < len(release.pack_bundle(NEXT)), "only the changed modules travel"
    result = fuota.run_campaign([collar], image, 1)
    assert result.results[collar.device_id] == "ok" and collar.acks[-1]["result"] == "ok"
    assert collar.collar.update.fw_version() == "1.1.0" and collar.collar.boots == 2
    assert slot_bytes(collar.flash, 1) == release.pack_bundle(NEXT), "the slot it booted holds every module of 1.1.0"
    assert {k: v for k, v in collar.flash.records.items() if k.startswith("s0")} == factory_slot, \
        "the slot it ran from was only read"


def test_a_composed_slot_equals_the_whole_bundle_tembo_release_builds_for_that_version(tmp_path):
    """Real releases: 1.0.0 whole, then 1.1.0 as a delta against it (one more release key) and, apart, 1.1.0
    whole: the collar that ran 1.0.0 and took the delta holds, byte for byte, the bundle of 1.1.0 whole."""
    key = keys.generate(tmp_path / "k.key", KEY.key_id)  # the id the collar's Trust holds, with this key's half
    held = tmp_path / "collar.bin"
    held.write_bytes(keys.COLLAR_KEYS_PATH.read_bytes())  # the key the shipped model is signed with, as collars hold
    keys.install_public(key.key_id, key.public_key, held)
    spare = keys.generate(tmp_path / "spare.key", 8)
    after = tmp_path / "after.bin"
    after.write_bytes(held.read_bytes())
    keys.install_public(8, spare.public_key, after)
    first = release.release_firmware(key, tmp_path / "r", config.FW_VERSION, collar_keys=held, ship_keys=held)
    delta = release.release_firmware(key, tmp_path / "r", "1.1.0", base=first.manifest_path, collar_keys=held,
                                     ship_keys=after)
    whole = release.release_firmware(key, tmp_path / "whole", "1.1.0", collar_keys=held, ship_keys=after)
    assert delta.manifest["delta_of"] == config.FW_VERSION and whole.manifest["delta_of"] is None
    factory = first.image_path.read_bytes()
    collar = fuota.build_fleet(1, 0.1, 3, lambda flash: _trust_with(flash, key),
                               factory_bundle=factory[update_image.parse_header(factory).size:])[0]
    assert fuota.run_campaign([collar], delta.image_path.read_bytes(), 2).results[collar.device_id] == "ok"
    image = whole.image_path.read_bytes()
    assert slot_bytes(collar.flash, 1) == image[update_image.parse_header(image).size:]
    assert hashlib.sha256(slot_bytes(collar.flash, 1)).hexdigest() == delta.manifest["bundle_sha256"]


def _trust_with(flash, key):
    from collar_firmware import trust

    shipped = trust.shipped()
    return trust.Trust({**shipped.keys, key.key_id: key.public_key}, None, flash, shipped.pinned)


@pytest.mark.parametrize("runs", ["another version", "no bundle of its base", "a base lacking a kept module"])
def test_a_delta_the_collar_cannot_compose_is_refused_as_wrong_base_and_it_runs_on(runs):
    if runs == "another version":
        collar, image = factory_collar(), delta_image(base="0.9.0")
    elif runs == "no bundle of its base":
        collar, image = factory_collar(bundle=None), delta_image()
    else:
        lacking = {k: v for k, v in FACTORY.items() if k != "risk.mpy"}
        collar, image = factory_collar(bundle=release.pack_bundle(lacking)), delta_image()
    result = fuota.run_campaign([collar], image, 1)
    assert result.results[collar.device_id] == "wrong_base" and collar.acks[-1]["result"] == "wrong_base"
    status = status_of(collar)
    assert (status["update_kind"], status["update_outcome"], status["update_reason"], status["update_version"]) \
        == ("firmware", "refused", "wrong_base", "1.1.0")
    assert collar.collar.update.fw_version() == config.FW_VERSION and collar.collar.boots == 1, "never rebooted"
    assert update_slot.slot_bundle(collar.flash, 1) is None, "the half-made slot is never named bootable"


def test_a_slot_damaged_before_its_trial_boot_is_not_confirmed_and_the_collar_rolls_back():
    collar = factory_collar()
    flash = collar.flash
    write = flash.write

    def decaying(key, data):  # a composed block rots between the install and the trial boot
        write(key, data)
        if key == update_install.KEY_TRIAL_HEADER:
            damaged = bytearray(flash.records["s1c3"])
            damaged[7] ^= 0x10
            flash.records["s1c3"] = bytes(damaged)

    flash.write = decaying
    result = fuota.run_campaign([collar], delta_image(), 1)
    assert result.results[collar.device_id] == "self_test_failed"
    assert collar.collar.boots == 2, "it booted the slot on trial, found it incomplete and went back"
    assert collar.collar.update.fw_version() == config.FW_VERSION


def power_cut_while_writing(collar: fuota.FleetCollar, key: str, image: bytes) -> None:
    """Deliver image to collar until the power fails half-way through writing flash record key."""
    flash = collar.flash
    write = flash.write

    def cut(written, data):
        if written == key:
            flash.records[written] = bytes(data)[:40]
            raise PowerCut("power cut while writing " + written)
        write(written, data)

    flash.write = cut
    try:
        with pytest.raises(PowerCut):
            fuota.run_campaign([collar], image, 1)
    finally:
        flash.write = write


def test_a_power_cut_while_the_delta_is_composed_leaves_the_old_version_and_the_next_attempt_installs_it():
    collar = factory_collar()
    flash = collar.flash
    power_cut_while_writing(collar, "s1c5", delta_image())
    reborn = Collar(collar.hal, None, KEYS_FOR(flash))
    assert reborn.update.fw_version() == config.FW_VERSION and not reborn.update.trial_due
    assert slot_bytes(flash, 0) == release.pack_bundle(FACTORY)
    assert update_slot.slot_bundle(flash, 1) is None
    collar.collar = reborn
    assert fuota.run_campaign([collar], delta_image(), 2).results[collar.device_id] == "ok"
    assert slot_bytes(flash, 1) == release.pack_bundle(NEXT)


def test_a_collar_after_a_delta_takes_the_next_delta_against_the_version_it_now_runs():
    collar = factory_collar()
    assert fuota.run_campaign([collar], delta_image(), 1).results[collar.device_id] == "ok"
    third = dict(NEXT, **{"risk.mpy": b"\x01" * 900})
    image = release.build_image(update_image.KIND_FIRMWARE, "1.2.0", config.HARDWARE_ID,
                                release.pack_delta(third, {"risk.mpy"}), KEY, GOLDEN,
                                ("1.1.0", release.pack_bundle(third)))
    assert fuota.run_campaign([collar], image, 2).results[collar.device_id] == "ok"
    assert collar.collar.update.fw_version() == "1.2.0"
    assert slot_bytes(collar.flash, 0) == release.pack_bundle(third), "composed from slot 1 back into slot 0"


def test_a_collar_that_predates_deltas_refuses_one_instead_of_booting_a_few_modules():
    """Format 2 is what a delta is: a collar whose parser knows format 1 only calls it not an image."""
    image = bytearray(delta_image())
    assert image[4] == update_image.FORMAT_DELTA
    whole = release.build_image(update_image.KIND_FIRMWARE, "1.1.0", config.HARDWARE_ID,
                                release.pack_bundle(NEXT), KEY, GOLDEN)
    assert whole[4] == update_image.FORMAT == 1, "a whole image keeps the format today's collars take"


def test_a_collar_updated_by_the_firmware_before_slot_descriptors_confirms_the_new_one_and_then_takes_deltas():
    """The fleet runs a firmware whose install writes no slot descriptor: the whole image of this firmware,
    installed by it, is tried by this firmware's trial boot, which demands one. Without adopting the slot
    from the trial's signed header every collar would roll the first update back."""
    collar = factory_collar(bundle=None)  # the old firmware's flash: no descriptor anywhere
    flash = collar.flash
    write = flash.write

    def old_install(key, data):  # the old firmware wrote the image's fragments and the trial header only
        write(key, data)
        if key == update_install.KEY_TRIAL_HEADER:
            flash.records.pop("s1.bundle", None)

    flash.write = old_install
    whole = release.build_image(update_image.KIND_FIRMWARE, "1.1.0", config.HARDWARE_ID, release.pack_bundle(NEXT),
                                KEY, GOLDEN)
    assert fuota.run_campaign([collar], whole, 1).results[collar.device_id] == "ok"
    flash.write = write
    assert collar.collar.update.fw_version() == "1.1.0" and slot_bytes(flash, 1) == release.pack_bundle(NEXT)
    third = dict(NEXT, **{"risk.mpy": b"\x01" * 900})
    delta = release.build_image(update_image.KIND_FIRMWARE, "1.2.0", config.HARDWARE_ID,
                                release.pack_delta(third, {"risk.mpy"}), KEY, GOLDEN, ("1.1.0", release.pack_bundle(third)))
    assert fuota.run_campaign([collar], delta, 2).results[collar.device_id] == "ok"
    assert slot_bytes(flash, 0) == release.pack_bundle(third)


def test_a_signed_delta_that_composes_more_than_its_header_names_stops_writing_the_slot_and_is_refused():
    """The header signs the bundle's length: a delta whose records would compose more (a release tool's bug,
    signed all the same) stops writing the inactive slot's flash soon after that length, not at the end."""
    collar = factory_collar()
    many = dict(NEXT, **{f"z{i:02d}.mpy": bytes([i]) * 1000 for i in range(40)})
    image = release.build_image(update_image.KIND_FIRMWARE, "1.1.0", config.HARDWARE_ID,
                                release.pack_delta(many, set(many) - set(FACTORY)), KEY, GOLDEN,
                                (config.FW_VERSION, release.pack_bundle(NEXT)))
    assert fuota.run_campaign([collar], image, 1).results[collar.device_id] == "wrong_base"
    written = sum(len(v) for k, v in collar.flash.records.items() if k.startswith("s1c"))
    assert written <= len(release.pack_bundle(NEXT)) + 1000 + 2 * update_slot.COMPOSE_BLOCK
    assert collar.collar.update.fw_version() == config.FW_VERSION and collar.collar.boots == 1


# 1.1.0 of a firmware whose kept modules make a bundle of several wake-ups' composition: a delta of one module
LARGE_FACTORY = {**FACTORY, "classifier.mpy": bytes(range(7, 256)) * 160, "codec.mpy": b"\x0c" * 30000}
LARGE_NEXT = {**LARGE_FACTORY, "main.mpy": NEXT["main.mpy"]}


def large_delta_image() -> bytes:
    return release.build_image(update_image.KIND_FIRMWARE, "1.1.0", config.HARDWARE_ID,
                               release.pack_delta(LARGE_NEXT, {"main.mpy"}), KEY, GOLDEN,
                               (config.FW_VERSION, release.pack_bundle(LARGE_NEXT)))


def composed_per_wake_up(collar: fuota.FleetCollar, slot: int = 1) -> list[int]:
    """Count the bytes of composed bundle ("s<slot>c" records) the collar writes in each of its wake-ups
    from now on (a wake-up that writes none is not listed)."""
    per_wake: list[int] = []
    step, write = collar.collar.step, collar.flash.write

    def counting_step():
        per_wake.append(0)
        return step()

    def counting_write(key, data):
        write(key, data)
        if key.startswith(f"s{slot}c") and per_wake:
            per_wake[-1] += len(data)

    collar.collar.step = counting_step
    collar.flash.write = counting_write
    return per_wake


def test_field_technician_sees_a_large_delta_composed_over_several_wake_ups_each_a_bounded_share():
    """Composing costs about 1,080 fuel a byte (docs/updates.md): a whole bundle in one wake-up held the
    collar's loop for seconds. Each wake-up now composes at most BYTES_PER_STEP bytes."""
    collar = factory_collar(bundle=release.pack_bundle(LARGE_FACTORY))
    bundle_len = len(release.pack_bundle(LARGE_NEXT))
    assert bundle_len > 3 * update_install.BYTES_PER_STEP
    per_wake = composed_per_wake_up(collar)
    result = fuota.run_campaign([collar], large_delta_image(), 1)
    assert result.results[collar.device_id] == "ok" and collar.collar.update.fw_version() == "1.1.0"
    composing = [n for n in per_wake if n]
    assert sum(composing) == bundle_len
    assert max(composing) <= update_install.BYTES_PER_STEP, "no wake-up composes more than its share"
    assert len(composing) >= 4
    assert slot_bytes(collar.flash, 1) == release.pack_bundle(LARGE_NEXT)


def test_field_technician_sees_a_collar_whose_power_failed_mid_compose_finish_the_install_after_reboot():
    """The power goes while the collar composes a verified delta, wake-ups into it: it comes back on the
    version it ran, then composes again from the start (the delta's fragments and its checked header are in
    flash) and installs it, without the bridge sending the delta again."""
    collar = factory_collar(bundle=release.pack_bundle(LARGE_FACTORY))
    flash = collar.flash
    block = 3 * update_install.BYTES_PER_STEP // update_slot.COMPOSE_BLOCK  # a few wake-ups in
    power_cut_while_writing(collar, f"s1c{block}", large_delta_image())
    collar.collar = Collar(collar.hal, None, KEYS_FOR(flash))
    assert collar.collar.update.fw_version() == config.FW_VERSION and collar.collar.boots == 1
    assert update_slot.slot_bundle(flash, 1) is None, "the half-composed slot is never named bootable"
    collar.live_until(collar.hal.clock.now_s() + 3600)
    assert [a["result"] for a in collar.acks] == ["ok"]
    assert collar.collar.update.fw_version() == "1.1.0"
    assert slot_bytes(flash, 1) == release.pack_bundle(LARGE_NEXT)
    assert slot_bytes(flash, 0) == release.pack_bundle(LARGE_FACTORY), "the slot it ran from was only read"


class _CountingSha256:
    """hashlib as update_slot sees it, counting the bundle bytes each wake-up hashes (composed or checked)."""

    def __init__(self, per_wake: list[int]) -> None:
        self.per_wake = per_wake

    def sha256(self):
        per_wake, digest = self.per_wake, hashlib.sha256()

        class Counting:
            def update(self, data):
                if per_wake:
                    per_wake[-1] += len(data)
                digest.update(data)

            def digest(self):
                return digest.digest()

        return Counting()


def test_field_technician_sees_the_trial_boot_check_a_large_bundle_a_bounded_share_a_wake_up(monkeypatch):
    """The first wake-up of a firmware on trial read and hashed its whole slot (a 95 KB bundle: seconds of
    the nRF52840 in one wake-up, as composing was): the check now reads BYTES_PER_STEP a wake-up,
    then the self-test confirms."""
    collar = factory_collar(bundle=release.pack_bundle(LARGE_FACTORY))
    hashed = composed_per_wake_up(collar, slot=9)  # a wake-up counter only: no slot 9 is written
    monkeypatch.setattr(update_slot, "hashlib", _CountingSha256(hashed))
    result = fuota.run_campaign([collar], large_delta_image(), 1)
    assert result.results[collar.device_id] == "ok" and collar.collar.update.fw_version() == "1.1.0"
    bundle_len = len(release.pack_bundle(LARGE_NEXT))
    hashing = [n for n in hashed if n]
    assert sum(hashing) == 2 * bundle_len, "composed once, checked once"
    assert max(hashing) <= update_install.BYTES_PER_STEP, "no wake-up composes or checks more than its share"


def test_field_technician_sees_a_collar_whose_power_failed_while_its_trial_slot_was_checked_confirm_it_after_reboot():
    """The trial's check now spans wake-ups: a power cut in the middle leaves the boot record naming the slot
    on trial, and the collar checks it again from the start and confirms it."""
    collar = factory_collar(bundle=release.pack_bundle(LARGE_FACTORY))
    flash = collar.flash
    read = flash.read
    reads = []

    def failing(key):
        if key.startswith("s1c") and flash.records.get("trial.hdr") and collar.collar.boots == 2:
            reads.append(key)
            if len(reads) == 200:  # wake-ups into the check of the slot it booted on trial
                raise PowerCut("power cut while reading " + key)
        return read(key)

    flash.read = failing
    with pytest.raises(PowerCut):
        fuota.run_campaign([collar], large_delta_image(), 1)
    flash.read = read
    collar.acks.clear()
    collar.collar = Collar(collar.hal, None, KEYS_FOR(flash))
    assert collar.collar.update.trial_due, "the boot record still names the slot on trial"
    collar.live_until(collar.hal.clock.now_s() + 3600)
    assert [a["result"] for a in collar.acks] == ["ok"] and collar.collar.update.fw_version() == "1.1.0"


def test_field_technician_sees_a_whole_firmware_image_hashed_a_bounded_share_a_wake_up(monkeypatch):
    """The payload SHA-256 of a rebuilt image ran in one call: in the frame handler of the fragment that
    completed it (a whole 95 KB firmware, the first update to this one, is seconds of the nRF52840 while
    the Class C window is open). The wake-ups after it now hash BYTES_PER_STEP each."""
    collar = factory_collar(bundle=None)
    hashed: list[int] = []
    step, hear = collar.collar.step, collar.hear

    def counting_step():
        hashed.append(0)
        return step()

    def counting_hear(port, payload, group=None):
        hashed.append(0)
        hear(port, payload, group)

    collar.collar.step = counting_step
    collar.hear = counting_hear
    monkeypatch.setattr(update_install, "hashlib", _CountingSha256(hashed))
    whole = release.pack_bundle(LARGE_NEXT)
    image = release.build_image(update_image.KIND_FIRMWARE, "1.1.0", config.HARDWARE_ID, whole, KEY, GOLDEN)
    result = fuota.run_campaign([collar], image, 1)
    assert result.results[collar.device_id] == "ok" and collar.collar.update.fw_version() == "1.1.0"
    hashing = [n for n in hashed if n]
    assert sum(hashing) == len(whole), "the payload hashed once"
    assert max(hashing) <= update_install.BYTES_PER_STEP, "no frame or wake-up hashes more than its share"
