"""Train the collar's activity model and export it as a model blob.

`train_default(seed=0)` trains the shipped model on simulated elephant windows through the numpy
twin of the collar's features and writes `collar_firmware/default_model.bin`; the same seed gives
the same bytes. `train_on_csv` does the same for a researcher's own labelled accelerometer CSV.

    .venv/bin/python -m models.train            # rewrite collar_firmware/default_model.bin
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from models import blob_writer
from models.dataset import Dataset, from_windows, simulated

log = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "collar_firmware" / "default_model.bin"
DEFAULT_WINDOW_S = 10
DEFAULT_RATE_HZ = 25
DEFAULT_TREES = 8
DEFAULT_DEPTH = 6
DEFAULT_TRAIN_PER_CLASS = 600
DEFAULT_MODEL_VERSION = 1


@dataclass(frozen=True)
class TrainedModel:
    """A fitted ensemble with the quantisation and metadata the collar needs, and its blob."""

    ensemble: RandomForestClassifier | ExtraTreesClassifier
    meta: blob_writer.ModelMeta
    blob: bytes

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Return class indices for collar features (m, N_FEATURES), quantised as on the collar."""
        return self.ensemble.predict(blob_writer.quantize(features, self.meta.scales))


def fit(
    data: Dataset,
    seed: int = 0,
    n_trees: int = DEFAULT_TREES,
    max_depth: int = DEFAULT_DEPTH,
    kind: str = "random_forest",
    model_version: int = DEFAULT_MODEL_VERSION,
    name: str = "",
) -> TrainedModel:
    """Fit a small tree ensemble on quantised collar features and return it with its blob."""
    if kind not in ("random_forest", "extra_trees"):
        raise ValueError(f"kind must be random_forest or extra_trees, got {kind!r}")
    scales = blob_writer.choose_scales(data.features)
    quantised = blob_writer.quantize(data.features, scales)
    cls = RandomForestClassifier if kind == "random_forest" else ExtraTreesClassifier
    ensemble = cls(n_estimators=n_trees, max_depth=max_depth, random_state=seed, n_jobs=1)
    ensemble.fit(quantised, data.labels)
    meta = blob_writer.ModelMeta(
        classes=data.classes,
        window_s=data.window_s,
        rate_hz=data.rate_hz,
        scales=scales,
        model_version=model_version,
        name=name or f"tembo {kind} {n_trees}x{max_depth} seed {seed}",
    )
    return TrainedModel(ensemble, meta, blob_writer.blob_from_sklearn(ensemble, meta))


def accuracy(model: TrainedModel, data: Dataset) -> float:
    """Return the share of windows of data that model classifies right."""
    return float(np.mean(model.predict(data.features) == data.labels))


def train_default(seed: int = 0, path: Path | str | None = DEFAULT_MODEL_PATH) -> bytes:
    """Train the shipped model on simulated windows (deterministic for a seed); write it to path; return the blob."""
    data = simulated(DEFAULT_TRAIN_PER_CLASS, seed=seed, window_s=DEFAULT_WINDOW_S, rate_hz=DEFAULT_RATE_HZ)
    model = fit(data, seed=seed, name=f"tembo default, simulated elephants, seed {seed}")
    if path is not None:
        Path(path).write_bytes(model.blob)
        log.info("wrote model blob %s (%d bytes, %d classes)", path, len(model.blob), len(data.classes))
    return model.blob


def train_on_csv(
    path: Path | str,
    rate_hz: int,
    window_s: int,
    label_column: str = "behaviour",
    bout_column: str = "bout",
    group_column: str | None = None,
    axis_columns: tuple[str, str, str] = ("ax", "ay", "az"),
    to_mg: float = 1000.0,
    seed: int = 0,
    **fit_args,
) -> TrainedModel:
    """Train on a labelled accelerometer CSV (one row per sample) and return the model with its blob.

    Each bout (consecutive samples of one label) is cut into non-overlapping windows of
    window_s * rate_hz samples; axis values are multiplied by to_mg (1000 for values in g) and
    rounded to integer milli-g like the collar's IMU. Groups (animals) come from group_column,
    or the bout when there is none.
    """
    import pandas as pd

    frame = pd.read_csv(path)
    n = window_s * rate_hz
    classes = tuple(sorted(frame[label_column].astype(str).unique()))
    index = {c: i for i, c in enumerate(classes)}
    windows, labels, groups = [], [], []
    for bout, part in frame.groupby(bout_column, sort=False):
        xyz = np.rint(part[list(axis_columns)].to_numpy(dtype=np.float64) * to_mg)
        xyz = np.clip(xyz, -32768, 32767).astype(np.int16)
        for start in range(0, len(part) - n + 1, n):
            windows.append(xyz[start : start + n])
            labels.append(index[str(part[label_column].iloc[start])])
            groups.append(part[group_column].iloc[start] if group_column else bout)
    if not windows:
        raise ValueError(f"no bout in {path} holds {n} samples ({window_s} s at {rate_hz} Hz)")
    group_ids = np.unique(np.asarray(groups).astype(str), return_inverse=True)[1]
    data = from_windows(np.stack(windows), np.asarray(labels), group_ids, classes, window_s, rate_hz)
    return fit(data, seed=seed, **fit_args)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    train_default()
