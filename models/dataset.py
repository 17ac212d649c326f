"""Labelled accelerometer windows for training and evaluating the collar's activity model.

A `Dataset` carries its sampling rate and window length with the data, and a group (animal) id
per window so models are compared leave-one-animal-out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import features as twin
from simulator import signals


@dataclass(frozen=True)
class Dataset:
    """Collar features of labelled windows: features (m, N_FEATURES), labels (m,) and groups (m,)."""

    features: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    classes: tuple[str, ...]
    window_s: int
    rate_hz: int

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> Dataset:
        """Return the windows where mask is True."""
        return Dataset(
            self.features[mask],
            self.labels[mask],
            self.groups[mask],
            self.classes,
            self.window_s,
            self.rate_hz,
        )


def from_windows(
    windows: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    classes: tuple[str, ...],
    window_s: int,
    rate_hz: int,
) -> Dataset:
    """Return a Dataset from raw (m, n, 3) milli-g windows through the numpy twin of the collar's features."""
    expected = window_s * rate_hz
    if windows.shape[1] != expected:
        raise ValueError(
            f"windows hold {windows.shape[1]} samples, {window_s} s at {rate_hz} Hz is {expected}"
        )
    return Dataset(
        twin.compute_features(windows, rate_hz),
        np.asarray(labels),
        np.asarray(groups),
        tuple(classes),
        window_s,
        rate_hz,
    )


def resample(samples: np.ndarray, source_rate_hz: float, rate_hz: int) -> np.ndarray:
    """Return (k, 3) samples taken at source_rate_hz linearly resampled to rate_hz (float64)."""
    samples = np.asarray(samples, dtype=np.float64)
    if source_rate_hz == rate_hz or len(samples) < 2:
        return samples
    duration_s = (len(samples) - 1) / source_rate_hz
    source_t = np.arange(len(samples)) / source_rate_hz
    target_t = np.arange(int(np.floor(duration_s * rate_hz + 1e-9)) + 1) / rate_hz
    return np.stack([np.interp(target_t, source_t, samples[:, axis]) for axis in range(3)], axis=1)


def from_csv(
    path,
    rate_hz: int,
    window_s: int,
    source_rate_hz: float | None = None,
    label_column: str = "behaviour",
    bout_column: str = "bout",
    group_column: str | None = None,
    axis_columns: tuple[str, str, str] = ("ax", "ay", "az"),
    to_mg: float = 1000.0,
) -> Dataset:
    """Return a Dataset from a labelled accelerometer CSV with one row per sample.

    Each bout (consecutive samples of one animal and activity) is resampled from source_rate_hz
    (the logger's rate, default rate_hz) to the collar's integer rate_hz, scaled by to_mg
    (1000 for g, 1000 / 9.80665 for m/s^2), rounded to integer milli-g like the collar's IMU and
    cut into non-overlapping windows of window_s * rate_hz samples, labelled by their most common
    label. Groups (animals) come from group_column, or the bout when there is none.
    """
    import pandas as pd

    frame = pd.read_csv(path)
    n = window_s * rate_hz
    classes = tuple(sorted(frame[label_column].astype(str).unique()))
    index = {c: i for i, c in enumerate(classes)}
    windows, labels, groups = [], [], []
    for bout, part in frame.groupby(bout_column, sort=False):
        raw = part[list(axis_columns)].to_numpy(dtype=np.float64)
        xyz = resample(raw, source_rate_hz or rate_hz, rate_hz)
        xyz = np.clip(np.rint(xyz * to_mg), -32768, 32767).astype(np.int16)
        codes = part[label_column].astype(str).map(index).to_numpy()
        for start in range(0, len(xyz) - n + 1, n):
            first = int(start * len(part) / len(xyz))
            last = max(first + 1, int((start + n) * len(part) / len(xyz)))
            windows.append(xyz[start : start + n])
            labels.append(int(np.bincount(codes[first:last]).argmax()))
            groups.append(part[group_column].iloc[0] if group_column else bout)
    if not windows:
        raise ValueError(f"no bout in {path} holds {n} samples ({window_s} s at {rate_hz} Hz)")
    group_ids = np.unique(np.asarray(groups).astype(str), return_inverse=True)[1]
    return from_windows(np.stack(windows), np.asarray(labels), group_ids, classes, window_s, rate_hz)


def simulated(
    n_per_class: int,
    seed: int,
    window_s: int = 10,
    rate_hz: int = 25,
    n_animals: int = 12,
    still_as_rest: float = 0.2,
    spliced: float = 0.15,
) -> Dataset:
    """Return simulated windows of the default classes from n_animals animals.

    A share `still_as_rest` of the rest windows is replaced by motionless ones (`still` and
    `dropped`), labelled rest: the classifier calls no movement rest, and the collar's risk rules
    decide whether it is a death or a dropped collar. A share `spliced` of the windows catch a
    change of behaviour: they end (at most 40 % of the window) in another behaviour, as windows
    in the field do; the label is the behaviour of the larger part.
    """
    rng = np.random.default_rng(seed)
    n = window_s * rate_hz
    profiles = [signals.random_profile(rng) for _ in range(n_animals)]
    windows, labels, groups = [], [], []
    for label, behaviour in enumerate(signals.BEHAVIOURS):
        for i in range(n_per_class):
            animal = i % n_animals
            kind = behaviour
            if behaviour == "rest" and rng.random() < still_as_rest:
                kind = "still" if rng.random() < 0.7 else "dropped"
            window = signals.accel_window(kind, n, rate_hz, rng, profile=profiles[animal])
            if rng.random() < spliced:
                other = signals.BEHAVIOURS[(label + int(rng.integers(1, len(signals.BEHAVIOURS)))) % len(signals.BEHAVIOURS)]
                cut = n - int(rng.integers(1, int(0.4 * n) + 1))
                window[cut:] = signals.accel_window(other, n, rate_hz, rng, profile=profiles[animal])[cut:]
            windows.append(window)
            labels.append(label)
            groups.append(animal)
    return from_windows(
        np.stack(windows), np.asarray(labels), np.asarray(groups), signals.BEHAVIOURS, window_s, rate_hz
    )
