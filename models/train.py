"""Train the collar's activity model and export it as a model blob.

`train_default(seed=0)` trains the shipped model on simulated elephant windows through the numpy
twin of the collar's features and writes `collar_firmware/default_model.bin`; the same seed gives
the same bytes. `train_on_csv` does the same for a researcher's own labelled accelerometer CSV.

    .venv/bin/python -m models.train --out collar_firmware/default_model.bin   # rewrite the shipped model
    .venv/bin/python -m models.train --csv bouts.csv --rate-hz 10 --window-s 3 \
        --source-rate-hz 10.54 --to-mg 101.97 --out stork.bin
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from models import blob_writer
from models.dataset import Dataset, from_csv, simulated

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
    seed: int = 0,
    csv_args: dict | None = None,
    **fit_args,
) -> TrainedModel:
    """Train on a researcher's labelled accelerometer CSV and return the model with its blob.

    csv_args go to `models.dataset.from_csv` (column names, units, the logger's own rate);
    fit_args to `fit` (n_trees, max_depth, kind, model_version, name).
    """
    data = from_csv(path, rate_hz=rate_hz, window_s=window_s, **(csv_args or {}))
    return fit(data, seed=seed, **fit_args)


def main(argv: list[str] | None = None) -> int:
    """Command line: rewrite the shipped model, or train on a CSV and write its blob."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", help="labelled accelerometer CSV, one row per sample (default: simulated)")
    parser.add_argument("--rate-hz", type=int, default=DEFAULT_RATE_HZ, help="the collar's sample rate")
    parser.add_argument("--window-s", type=int, default=DEFAULT_WINDOW_S)
    parser.add_argument("--source-rate-hz", type=float, help="the logger's sample rate, when not --rate-hz")
    parser.add_argument("--to-mg", type=float, default=1000.0, help="factor to milli-g (1000 for g)")
    parser.add_argument("--out", required=True,
                        help=f"where to write the blob (the shipped model is {DEFAULT_MODEL_PATH.name}: "
                             "rewrite it only on purpose, by naming it)")
    args = parser.parse_args(argv)
    if args.csv is None:
        train_default(seed=args.seed, path=args.out)
        return 0
    csv_args = {"source_rate_hz": args.source_rate_hz, "to_mg": args.to_mg}
    model = train_on_csv(args.csv, args.rate_hz, args.window_s, seed=args.seed, csv_args=csv_args)
    Path(args.out).write_bytes(model.blob)
    log.info(
        "wrote model blob %s (%d bytes, classes %s)", args.out, len(model.blob), ",".join(model.meta.classes)
    )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
