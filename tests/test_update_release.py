"""Technicians sign releases with their own key; the planner keeps updates within the law and fair use."""

from __future__ import annotations

import json
import stat

import pytest

from collar_firmware import trust
from lora_bridge.updates import keys, planner, release
from tembo.cli import main


def firmware_key_file(path):
    """A firmware's key file as a deployment keeps it: the repository's (whose key signs the shipped model,
    which collars running the firmware must load: release.shipped_model_loads), to which tests add keys."""
    path.write_bytes(keys.COLLAR_KEYS_PATH.read_bytes())
    return path


def test_a_technician_generates_a_key_only_they_can_read_and_collars_learn_its_public_half(tmp_path, capsys):
    private = tmp_path / "keys" / "release-5.key"
    collar_keys = tmp_path / "release_keys.bin"
    assert main(["keys", "generate", str(private), "--key-id", "5", "--install", "--collar-keys", str(collar_keys)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert "PRIVATE" not in json.dumps(shown) and private.read_bytes() not in capsys.readouterr().out.encode()
    assert trust.parse_keys(collar_keys.read_bytes()) == {5: bytes.fromhex(shown["public_key"])}
    assert main(["keys", "generate", str(private), "--key-id", "5"]) == 1, "a release key is never overwritten"
    assert "***" in repr(keys.load(private)) and private.read_text() not in repr(keys.load(private))


def test_a_key_file_others_can_read_is_refused(tmp_path):
    private = tmp_path / "k.key"
    keys.generate(private, 3)
    private.chmod(0o644)
    with pytest.raises(keys.KeyFileError, match="chmod 600"):
        keys.load(private)


def test_a_model_release_is_signed_so_the_collar_verifies_it(tmp_path):
    key = keys.generate(tmp_path / "k.key", 4)
    collar_keys = tmp_path / "collar.bin"
    keys.install_public(4, key.public_key, collar_keys)
    made = release.release_model(release.DEFAULT_MODEL_PATH.read_bytes(), key, tmp_path / "out", collar_keys)
    assert made.manifest["key_id"] == 4 and made.blob_path.read_bytes()[-64:] != bytes(64)
    release.check_model(made.blob_path.read_bytes(), {4: key.public_key})
    with pytest.raises(release.ReleaseError, match="would refuse"):
        release.check_model(made.blob_path.read_bytes(), {4: bytes(31) + b"\x01"})


def test_a_firmware_release_is_the_same_bytes_wherever_the_technicians_checkout_lies():
    # mpy-cross embeds a module's source name: given the absolute path, every module carried the folder
    # of the checkout it was built in (the technician's home, a CI runner's temporary folder), so one
    # version built in two places differed, and a long path pushed the image past the collar's slot.
    from pathlib import Path

    from collar_firmware import blob

    checkout = str(Path(blob.__file__).resolve().parent.parent).encode()
    modules = release.compiled_modules(release.MPY_ARCH, release.MPY_OPT)
    assert modules and [name for name, mpy in modules.items() if checkout in mpy] == []
    assert b"update_install.py" in modules["update_install.py"], "each names its own file, for tracebacks"


def test_a_firmware_release_compiles_the_collar_for_the_nrf52840_and_a_delta_is_smaller(tmp_path):
    key = keys.generate(tmp_path / "k.key", 6)
    held = firmware_key_file(tmp_path / "collar.bin")
    keys.install_public(6, key.public_key, held)
    first = release.release_firmware(key, tmp_path, "1.1.0", "tembo-nrf52840-lr1110", collar_keys=held,
                                     ship_keys=held)
    assert first.manifest["arch"] == "armv7emsp" and "main.mpy" in first.manifest["modules"]
    assert first.manifest["payload_bytes"] == first.manifest["bundle_bytes"]
    with pytest.raises(release.ReleaseError, match="nothing changed since the base 1.1.0"):
        release.release_firmware(key, tmp_path, "1.1.1", "tembo-nrf52840-lr1110", base=first.manifest_path,
                                 collar_keys=held, ship_keys=held)
    spare = keys.generate(tmp_path / "spare.key", 8)  # 1.1.1 carries one more release key: one module changed
    after = tmp_path / "after.bin"
    after.write_bytes(held.read_bytes())
    keys.install_public(8, spare.public_key, after)
    second = release.release_firmware(key, tmp_path, "1.1.1", "tembo-nrf52840-lr1110", base=first.manifest_path,
                                      collar_keys=held, ship_keys=after)
    # the key file's record, and every other module named as kept from 1.1.0
    assert second.manifest["delta_of"] == "1.1.0" and 0 < second.manifest["payload_bytes"] < 1024
    with pytest.raises(release.ReleaseError, match="not newer"):
        release.release_firmware(key, tmp_path, "1.0.9", "tembo-nrf52840-lr1110", base=first.manifest_path,
                                 collar_keys=held, ship_keys=held)


def test_a_technician_signing_with_a_key_the_collars_do_not_hold_is_stopped_before_anything_is_written(
        tmp_path, capsys):
    private = tmp_path / "release-7.key"
    assert main(["keys", "generate", str(private), "--key-id", "7"]) == 0  # not installed in the collars' file
    capsys.readouterr()
    for kind in (["firmware", "--version", "1.2.0"], ["model", str(release.DEFAULT_MODEL_PATH)]):
        out = tmp_path / kind[0]
        assert main(["release", *kind, "--key", str(private), "--out", str(out)]) == 1
        assert "key 7 is not in the collars' key file" in capsys.readouterr().err
        assert not out.exists(), "nothing a collar would refuse is written"
    held = tmp_path / "collar.bin"
    keys.install_public(7, keys.load(private).public_key, held)
    assert main(["release", "model", str(release.DEFAULT_MODEL_PATH), "--key", str(private),
                 "--out", str(tmp_path / "model"), "--collar-keys", str(held)]) == 0


bundle_files = release.bundle_files  # the files a firmware image carries


def test_a_firmware_that_would_leave_collars_without_the_signing_key_is_stopped_unless_handed_over(tmp_path, capsys):
    old = keys.generate(tmp_path / "release-6.key", 6)
    new = keys.generate(tmp_path / "release-8.key", 8)
    held_now = tmp_path / "held-now.bin"  # what the collars in the field hold
    keys.install_public(6, old.public_key, held_now)
    after = firmware_key_file(tmp_path / "shipped.bin")  # what the new firmware carries: key 8, not 6
    keys.install_public(8, new.public_key, after)
    model_key = trust.parse_keys(keys.COLLAR_KEYS_PATH.read_bytes())
    with pytest.raises(release.ReleaseError, match="does not hold key 6: collars that install it would refuse"):
        release.release_firmware(old, tmp_path / "a", "1.2.0", collar_keys=held_now, ship_keys=after)
    assert not (tmp_path / "a").exists()
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(release.ReleaseError, match="no release keys"):
        release.release_firmware(old, tmp_path / "b", "1.2.0", collar_keys=held_now, ship_keys=empty, retire_key=True)
    handed_over = release.release_firmware(old, tmp_path / "c", "1.2.0", collar_keys=held_now, ship_keys=after,
                                           retire_key=True)  # the last release key 6 signs: collars move to key 8
    assert handed_over.manifest["collar_keys_after"] == sorted({*model_key, 8}) and handed_over.manifest["key_id"] == 6
    assert handed_over.manifest["hardware_id"] == release.HARDWARE_ID
    shipped = bundle_files(handed_over.image_path.read_bytes())
    assert trust.parse_keys(shipped[trust.KEYS_FILE]) == {**model_key, 8: new.public_key}
    assert "main.mpy" in shipped and len(shipped) == len(handed_over.manifest["modules"])
    # From the command line: the technician adds key 6 to the firmware's file and signs without handing over.
    assert main(["keys", "install", str(tmp_path / "release-6.key"), "--collar-keys", str(after)]) == 0
    assert json.loads(capsys.readouterr().out)["installed_in"] == str(after)
    assert main(["release", "firmware", "--version", "1.2.1", "--key", str(tmp_path / "release-6.key"),
                 "--collar-keys", str(held_now), "--ship-keys", str(after), "--out", str(tmp_path / "d")]) == 0
    assert json.loads(capsys.readouterr().out)["collar_keys_after"] == sorted({*model_key, 6, 8})


def test_the_planner_keeps_a_ten_percent_loss_update_within_thirty_percent_of_the_minimum():
    herd = [planner.CollarLink(f"c{i}", 9, 0.1) for i in range(50)]
    plan = planner.make_plan(40 * 1024, herd)
    assert plan.ratio_to_minimum <= 1.3
    assert plan.spacing_s == pytest.approx(plan.fragment_airtime_s / planner.DOWNLINK_DUTY)
    slow = [planner.CollarLink("far", 12, 0.1)]
    with pytest.raises(planner.PlanRefused, match="duty cycle"):
        planner.make_plan(40 * 1024, slow, deadline_s=3600)


def test_an_interrupted_session_resumes_where_it_stopped():
    plan = planner.make_plan(4096, [planner.CollarLink("c", 9, 0.1)])
    progress = planner.Progress(plan)
    first = list(progress.take(10))
    resumed = list(progress.take(plan.fragments))
    assert first == list(range(1, 11)) and resumed[0] == 11 and progress.finished()
    assert progress.sent == plan.fragments


def test_a_promoted_model_is_released_only_as_it_was_promoted(tmp_path):
    import hashlib

    blob = tmp_path / "model.bin"
    blob.write_bytes(release.unsigned_part(release.DEFAULT_MODEL_PATH.read_bytes()))
    promoted = tmp_path / "promoted.json"
    promoted.write_text(json.dumps({"format": "tembo-promoted-model/1", "blob": str(blob),
                                    "blob_sha256": hashlib.sha256(blob.read_bytes()).hexdigest()}))
    assert release.promoted_blob(promoted) == blob.read_bytes()
    blob.write_bytes(blob.read_bytes() + b"x")
    with pytest.raises(release.ReleaseError, match="changed since"):
        release.promoted_blob(promoted)


def test_field_technician_releasing_against_a_base_that_predates_deltas_gets_a_whole_image_and_the_reason(tmp_path):
    """The fleet's firmware before 4 December cannot compose a delta (it refuses the format): a delta against
    it would be sent to every collar and refused by each after the whole transfer."""
    key = keys.generate(tmp_path / "k.key", 6)
    held = firmware_key_file(tmp_path / "collar.bin")
    keys.install_public(6, key.public_key, held)
    first = release.release_firmware(key, tmp_path, "1.1.0", collar_keys=held, ship_keys=held)
    older = json.loads(first.manifest_path.read_text())
    del older["modules"][release.COMPOSER_MODULE]  # what a manifest of that firmware lists
    older["version"] = "1.0.5"
    base = tmp_path / "firmware-1.0.5.json"
    base.write_text(json.dumps(older))
    spare = keys.generate(tmp_path / "spare.key", 8)
    after = tmp_path / "after.bin"
    after.write_bytes(held.read_bytes())
    keys.install_public(8, spare.public_key, after)
    made = release.release_firmware(key, tmp_path / "out", "1.1.1", base=base, collar_keys=held, ship_keys=after)
    assert made.manifest["delta_of"] is None and made.manifest["payload_bytes"] == made.manifest["bundle_bytes"]
    assert made.manifest["whole_because"] == ("the base 1.0.5 predates deltas (no update_slot.mpy): its collars "
                                              "refuse a delta, so this release is whole")


def test_field_technician_handing_over_to_a_key_file_without_the_shipped_models_key_is_stopped_before_writing(
        tmp_path, capsys):
    """The shipped model is signed with the repository's key 1; a firmware whose key file lacks it boots a
    model no collar can load (a collar that never took a model update runs it, and the trial tries it), so
    every collar would roll the firmware back after the whole transfer."""
    old = keys.generate(tmp_path / "release-6.key", 6)
    new = keys.generate(tmp_path / "release-8.key", 8)
    held_now = firmware_key_file(tmp_path / "held-now.bin")
    keys.install_public(6, old.public_key, held_now)
    after = tmp_path / "shipped.bin"  # key 8 alone: the shipped model was not signed again with it
    keys.install_public(8, new.public_key, after)
    assert main(["release", "firmware", "--version", "1.2.0", "--key", str(tmp_path / "release-6.key"),
                 "--collar-keys", str(held_now), "--ship-keys", str(after), "--retire-key",
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"shipped model (default_model.bin) would not load with its key file {after}" in err
    assert "signature does not verify (key 1)" in err and "--install-default" in err
    assert not (tmp_path / "out").exists()


def test_field_technician_numbering_a_firmware_0_0_0_is_refused_before_anything_is_built(tmp_path):
    """An image's header reads version 0 as none (a delta's base 0 is a whole image): no collar runs 0.0.0."""
    key = keys.generate(tmp_path / "k.key", 6)
    held = firmware_key_file(tmp_path / "collar.bin")
    keys.install_public(6, key.public_key, held)
    with pytest.raises(release.ReleaseError, match="0.0.0 is no version a collar can run"):
        release.release_firmware(key, tmp_path / "out", "0.0.0", collar_keys=held, ship_keys=held)
    assert not (tmp_path / "out").exists()


def test_field_technician_whose_checkout_lost_the_shipped_model_is_told_which_file_not_shown_a_traceback(
        tmp_path, monkeypatch):
    key = keys.generate(tmp_path / "k.key", 6)
    held = firmware_key_file(tmp_path / "collar.bin")
    keys.install_public(6, key.public_key, held)
    monkeypatch.setattr(release, "compile_modules", lambda: {"main.mpy": b"M\x06"})  # the modules, no model beside
    with pytest.raises(release.ReleaseError, match="default_model.bin is missing"):
        release.release_firmware(key, tmp_path / "out", "1.3.0", collar_keys=held, ship_keys=held)
    assert not (tmp_path / "out").exists()
