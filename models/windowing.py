"""From recordings to the collar's windows: resample to a rate the collar's accelerometer really has,
remap axes to the collar's orientation, cut windows of any whole number of seconds with overlap, and
compute the collar's features through their numpy twin.

A window never straddles two labels (recordings are cut where the label changes) nor two bouts, so
overlapping windows share a bout and an animal, and grouped folds never split them.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np

from collar_firmware import blob as collar_blob
from collar_firmware import config as collar_config
from collar_firmware.hal import lis2dw12
from models import features as twin
from models.recordings import DataError, Loaded, LoadReport, Recording, split_label_runs

log = logging.getLogger(__name__)

# The rates the collar can run at: the LIS2DW12's output data rates that are whole Hz (the model blob
# stores rate_hz as an integer) and that the blob format accepts.
COLLAR_RATES_HZ = tuple(
    mhz // 1000 for mhz, _code in lis2dw12.ODR_TABLE if mhz % 1000 == 0 and mhz // 1000 <= 400
)
DEFAULT_RATE_HZ = int(collar_config.DEFAULTS["accel_rate_hz"])
# The collar's accelerometer full scale: it reads at most +-range_g (the LIS2DW12 saturates there), so a
# logger's larger peaks are clipped as the collar would clip them, never learned as values it cannot read.
COLLAR_RANGES_G = (2, 4, 8, 16)
DEFAULT_RANGE_G = int(collar_config.DEFAULTS["accel_range_g"])
MAX_OVERLAP = 0.9  # the blob's overlap_pct tops out at 90
SAME_RATE = 1e-3  # rates closer than 0.1 % are one rate (time stamps logged to the microsecond or ms)


@dataclass(frozen=True)
class WindowSettings:
    """How recordings become collar windows."""

    window_s: int = 10
    overlap: float = 0.0  # share of a window that the next one repeats, 0 <= overlap <= 0.9
    rate_hz: int = 25  # the collar's accelerometer rate (one of COLLAR_RATES_HZ)
    axes: str = "x,y,z"  # the collar's x, y, z from the data's axes, e.g. "-y,x,z"
    range_g: int = DEFAULT_RANGE_G  # the collar's accelerometer full scale (one of COLLAR_RANGES_G)

    def check(self) -> None:
        """Raise DataError naming the bad setting."""
        if self.rate_hz not in COLLAR_RATES_HZ:
            raise DataError("--collar-rate", f"{self.rate_hz} Hz is not a rate of the collar's LIS2DW12; "
                            f"it offers {', '.join(map(str, COLLAR_RATES_HZ))} Hz")
        if int(self.window_s) != self.window_s or self.window_s < 1:
            raise DataError("--window", f"the collar's windows are whole seconds (>= 1), got {self.window_s}")
        if self.n_samples > collar_blob.MAX_WINDOW_SAMPLES:
            raise DataError("--window", f"{self.window_s} s at {self.rate_hz} Hz is {self.n_samples} samples; "
                            f"the collar holds at most {collar_blob.MAX_WINDOW_SAMPLES}")
        if self.range_g not in COLLAR_RANGES_G:
            raise DataError("--collar-range", f"{self.range_g} g is not a full scale of the collar's LIS2DW12; "
                            f"it offers {', '.join(map(str, COLLAR_RANGES_G))} g")
        if not 0 <= self.overlap <= MAX_OVERLAP:
            raise DataError("--overlap", f"overlap is a share of the window from 0 to {MAX_OVERLAP}, got {self.overlap}")
        axis_map(self.axes)

    @property
    def n_samples(self) -> int:
        return int(self.window_s) * int(self.rate_hz)

    @property
    def step(self) -> int:
        return max(1, int(round(self.n_samples * (1.0 - self.overlap))))

    @property
    def overlap_pct(self) -> int:
        return int(round(100 * self.overlap))


@dataclass(frozen=True)
class Windows:
    """Labelled windows through the collar's features, with the animal and bout of every window."""

    features: np.ndarray  # (m, N_FEATURES) collar feature values (integers)
    labels: np.ndarray  # (m,) class index into classes
    classes: tuple[str, ...]
    animals: np.ndarray  # (m,) str, "" when unknown
    bouts: np.ndarray  # (m,) str
    settings: WindowSettings
    report: LoadReport
    source_rate_hz: float

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def animals_known(self) -> bool:
        return bool(len(self.animals)) and bool(np.all(self.animals != ""))

    def label_names(self) -> np.ndarray:
        return np.asarray(self.classes)[self.labels]


def axis_map(spec: str) -> tuple[tuple[int, int], ...]:
    """Return ((source axis, sign), ...) for the collar's x, y, z from a spec such as "-y,x,z"."""
    parts = [p.strip().lower() for p in str(spec).split(",")]
    out = []
    for part in parts:
        sign = -1 if part.startswith("-") else 1
        name = part.lstrip("+-")
        if name not in ("x", "y", "z"):
            break
        out.append(("xyz".index(name), sign))
    if len(out) != 3 or len(parts) != 3 or len({a for a, _ in out}) != 3:
        raise DataError("--axes", f"{spec!r} must name each of x, y, z once, e.g. '-y,x,z'")
    return tuple(out)


def remap_axes(samples: np.ndarray, spec: str) -> np.ndarray:
    """Return samples (n, 3) with the collar's axes taken from the data's axes as spec says."""
    mapping = axis_map(spec)
    return np.stack([sign * samples[:, a] for a, sign in mapping], axis=1)


def resample(samples: np.ndarray, source_rate_hz: float, rate_hz: int) -> np.ndarray:
    """Return (k, 3) samples at source_rate_hz resampled to rate_hz (float64).

    Slower to faster: linear interpolation. Faster to slower: a moving average over one output
    interval first (so the collar's band features do not see aliased fast motion), then interpolation.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if abs(source_rate_hz - rate_hz) <= SAME_RATE * rate_hz or len(samples) < 2:
        return samples  # the same rate, up to the rounding of logged time stamps
    if source_rate_hz > rate_hz:
        width = int(round(source_rate_hz / rate_hz))
        if width > 1:
            kernel = np.ones(width) / width
            padded = np.pad(samples, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
            samples = np.stack([np.convolve(padded[:, a], kernel, mode="valid") for a in range(3)], axis=1)
    duration_s = (len(samples) - 1) / source_rate_hz
    source_t = np.arange(len(samples)) / source_rate_hz
    target_t = np.arange(int(np.floor(duration_s * rate_hz + 1e-9)) + 1) / rate_hz
    return np.stack([np.interp(target_t, source_t, samples[:, a]) for a in range(3)], axis=1)


def to_collar_samples(recording: Recording, settings: WindowSettings) -> np.ndarray:
    """Return the recording as the collar would sample it: (k, 3) int16 milli-g at settings.rate_hz, within
    its accelerometer's +-range_g."""
    return _resampled(recording, settings.rate_hz, settings.axes, settings.range_g)


def _resampled(recording: Recording, rate_hz: float, axes: str, range_g: int | None = None) -> np.ndarray:
    """Return (k, 3) int16 milli-g at rate_hz; with range_g, clipped to what an accelerometer of that full
    scale reads (-range_g to range_g less one milli-g, as the collar's driver and the simulator do)."""
    xyz = resample(remap_axes(recording.samples_mg, axes), recording.rate_hz, rate_hz)
    low, high = (-32768, 32767) if range_g is None else (-1000 * range_g, 1000 * range_g - 1)
    return np.clip(np.rint(xyz), low, high).astype(np.int16)


@dataclass(frozen=True)
class RawWindows:
    """Labelled raw windows (m, n, 3) int16 milli-g, before features."""

    samples: np.ndarray
    labels: np.ndarray  # str
    animals: np.ndarray  # str, "" when unknown
    bouts: np.ndarray
    report: LoadReport
    source_rate_hz: float


def cut_windows(loaded: Loaded, rate_hz: float, n_samples: int, step: int, axes: str = "x,y,z",
                range_g: int | None = None) -> RawWindows:
    """Return windows of n_samples every step samples at rate_hz (clipped to +-range_g when given, the
    collar's full scale); DataError when a label cannot make a window."""
    report = LoadReport()
    report.merge(loaded.report)
    if not loaded.recordings:
        raise DataError(", ".join(report.files) or "data", "no labelled samples to train on")
    rates = sorted({round(r.rate_hz, 3) for r in loaded.recordings})
    if len(rates) > 1 and max(rates) > (1 + 0.02) * min(rates):
        first = {round(r.rate_hz, 3): r.source for r in loaded.recordings}
        raise DataError(first[rates[-1]], f"recordings at {rates[0]} Hz and {rates[-1]} Hz (mixed rates); "
                        "train on one rate at a time")
    n, step = int(n_samples), int(step)
    where: dict[str, str] = {}
    samples_per_label: Counter = Counter()
    windows, labels, animals, bouts = [], [], [], []
    clipped = 0
    for recording in loaded.recordings:
        for run in split_label_runs(recording):
            label = str(run.labels[0])
            where.setdefault(label, run.source)
            samples_per_label[label] += len(run)
            xyz = _resampled(run, rate_hz, axes, range_g)
            if range_g is not None:
                clipped += int(np.count_nonzero((xyz <= -1000 * range_g) | (xyz >= 1000 * range_g - 1)))
            cut = twin.windows_from_stream(xyz, n, step)
            used = 0 if len(cut) == 0 else (len(cut) - 1) * step + n
            report.leave_out("tail of a label run shorter than a window (resampled samples)", len(xyz) - used)
            if len(cut) == 0:
                continue
            windows.append(cut)
            labels += [label] * len(cut)
            animals += [run.animal or ""] * len(cut)
            bouts += [recording.bout] * len(cut)
    spellings: dict[str, str] = {}
    for label in samples_per_label:
        other = spellings.setdefault(label.casefold(), label)
        if other != label:
            raise DataError(where[label], f"labels {other!r} and {label!r} differ only in case; they would train as "
                            "two behaviours: spell each behaviour one way", column="label")
    animal_spellings: dict[str, tuple[str, str]] = {}
    for recording in loaded.recordings:
        if recording.animal:
            other, _ = animal_spellings.setdefault(recording.animal.casefold(), (recording.animal, recording.source))
            if other != recording.animal:
                raise DataError(recording.source, f"animal ids {other!r} and {recording.animal!r} differ only in case: "
                                "one animal under two ids would sit in training and test of one leave-one-animal-out "
                                "fold; spell each animal one way", column="animal")
    if clipped:
        report.notes.append(f"{clipped} axis value(s) at or beyond the collar's +-{range_g} g full scale, read as "
                            "its accelerometer would (clipped)")
    made = Counter(labels)
    empty = [label for label in samples_per_label if made[label] == 0]
    if empty:
        label = empty[0]
        raise DataError(where[label], f"label {label!r} has only {samples_per_label[label]} sample(s) in runs too "
                        f"short for one window ({n} samples at {rate_hz:g} Hz); relabel or remove those rows, "
                        "or use a shorter --window", column="label")
    return RawWindows(np.concatenate(windows), np.asarray(labels, dtype=str), np.asarray(animals, dtype=str),
                      np.asarray(bouts, dtype=str), report, float(rates[0]))


def make_windows(loaded: Loaded, settings: WindowSettings, classes: tuple[str, ...] | None = None) -> Windows:
    """Return the collar windows and features of loaded recordings; DataError when a label cannot make a window.

    classes fixes the class order (a model's); by default the labels sorted by name.
    """
    settings.check()
    raw = cut_windows(loaded, settings.rate_hz, settings.n_samples, settings.step, settings.axes, settings.range_g)
    made = set(raw.labels.tolist())
    if classes is None:
        classes = tuple(sorted(made))
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(made - set(index))
    if unknown:
        raise DataError("data", f"label {unknown[0]!r} is not a class of the model ({', '.join(classes)})")
    features = np.asarray(twin.compute_features(raw.samples, settings.rate_hz), dtype=np.float64)
    log.info("windows made", extra={"windows": len(raw.samples), "classes": len(classes)})
    return Windows(
        features=features,
        labels=np.asarray([index[label] for label in raw.labels], dtype=np.int64),
        classes=tuple(classes),
        animals=raw.animals,
        bouts=raw.bouts,
        settings=settings,
        report=raw.report,
        source_rate_hz=raw.source_rate_hz,
    )
