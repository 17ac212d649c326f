"""`tembo bench models --json`: the researcher workflow measured on real data, against its in-run baseline.

On the white stork bouts in ../shared/data (when present; a generated set otherwise, and the figures
say which): the collar model's macro-F1 and an unconstrained 300-tree random forest's on the same
windows and folds (`ratio` = collar / forest), the collar blob's bytes, MicroPython fuel per window and the
heap of loading it under MicroPython (`load_heap_bytes`, against `heap_bound_bytes`);
and how fast the collar model trains on a synthetic set of one million windows.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from models import dataset
from models.csv_source import Columns, load_csv
from models.simulated_source import simulated_recordings
from models.windowing import WindowSettings
from models.workflow import MAX_TREE_SAMPLES, TrainOptions, make_model, train

REPO = Path(__file__).resolve().parent.parent
STORK_FILE = "whitestork_acc_bouts.csv.gz"
STORK_RATE_HZ = 10.54  # the data's README: 40 samples x 3 axes per bout at 10.54 Hz
STORK_COLUMNS = Columns(x="ax", y="ay", z="az", label="behaviour", bout="bout")
MILLION = 1_000_000


def shared_data() -> Path | None:
    """Return ../shared/data beside the repository (or beside its worktree folder) when it exists."""
    for root in (REPO.parent, REPO.parent.parent):
        candidate = root / "shared" / "data"
        if (candidate / STORK_FILE).exists():
            return candidate
    return None


def million_windows_per_s(params: dict, seed: int = 0, n: int = MILLION, n_jobs: int = 2) -> dict:
    """Return how fast the collar model (quantise, fit, blob) trains on n synthetic windows of collar features.

    The windows are simulated 10 s windows' features resampled with small integer jitter, so the
    trees face a realistic spread of values at a size no logger export here reaches. As in `train`,
    above MAX_TREE_SAMPLES windows each forest tree bootstraps that many of them, and boosted trees are
    fitted on that many drawn at random.
    """
    base = dataset.simulated(400, seed=seed)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(base), n)
    features = base.features[pick] + rng.integers(-3, 4, size=(n, base.features.shape[1]))
    labels = np.asarray(base.classes)[base.labels[pick]]
    started = time.perf_counter()
    params = {**params, "max_samples": MAX_TREE_SAMPLES if n > MAX_TREE_SAMPLES else None}
    if params.get("kind") == "boosted":
        n_jobs = 1  # HistGradientBoosting's OpenMP threads spin when the cores are shared; one is faster here
    model = make_model(params, seed, n_jobs=n_jobs).fit(features, labels)
    blob = model.to_blob(base.window_s, base.rate_hz)
    seconds = time.perf_counter() - started
    return {"train_windows": n, "train_seconds": round(seconds, 1), "train_windows_per_s": round(n / seconds),
            "train_cores": n_jobs, "million_blob_bytes": len(blob)}


def run(seed: int = 0, windows: int = MILLION) -> dict:
    """Return the figures of `tembo bench models`."""
    data_dir = shared_data()
    if data_dir is not None:
        loaded = load_csv([data_dir / STORK_FILE], STORK_COLUMNS, units="m/s2", rate_hz=STORK_RATE_HZ)
        settings = WindowSettings(window_s=3, rate_hz=25)
        dataset_name = f"white stork bouts ({data_dir / STORK_FILE})"
    else:
        loaded = simulated_recordings(n_animals=6, bouts_per_behaviour=3, bout_s=30, seed=seed)
        settings = WindowSettings(window_s=10, rate_hz=25)
        dataset_name = "generated: the digital twin's labelled animals (../shared/data not found)"
    with tempfile.TemporaryDirectory() as tmp:
        result = train(loaded, TrainOptions(settings=settings, seed=seed, learning_curve=False), Path(tmp) / "run",
                       register=False)
    speed = million_windows_per_s(result["chosen"], seed=seed, n=windows)
    return {
        "dataset": dataset_name,
        "cv": result["cv"],
        "folds": result["folds"],
        "windows": result["windows"],
        "window": f"{settings.window_s} s at {settings.rate_hz} Hz",
        "macro_f1": result["macro_f1"],
        "baseline_macro_f1": result["baseline_macro_f1"],
        "baseline": "300-tree random forest, same windows and folds",
        "ratio": result["ratio"],
        "blob_bytes": result["blob_bytes"],
        "blob_budget_bytes": result["limits"]["blob_bytes"],
        "fuel_per_window": result["fuel_per_window"],
        "load_heap_bytes": result["budget"]["load_heap_bytes"],
        "resident_heap_bytes": result["budget"]["resident_heap_bytes"],
        "heap_bound_bytes": result["limits"]["heap_bytes"],
        "kind": result["kind"],
        "fold_kinds": [c["kind"] for c in result["fold_choices"]],
        "chosen": result["chosen"],
        "search": [{k: v for k, v in c.items()} for c in result["search"]],
        **speed,
    }
