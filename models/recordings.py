"""Labelled accelerometer recordings as researchers bring them, before windowing.

A `Recording` is one continuous stretch of samples of one animal (a bout, burst or segment) at one
sampling rate, in milli-g, with a label per sample. Loaders (`models.csv_source`,
`models.movebank_source`, `models.edge_impulse`, `models.simulated_source`) return a `Loaded`:
the recordings and a `LoadReport` that counts everything left out and why, so nothing is dropped
silently. Bad data raises `DataError`, whose message names the file, the row and the column.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

G_MG = 1000.0
STANDARD_GRAVITY_M_S2 = 9.80665

# Units a loader accepts and their factor to milli-g ("counts" needs a scale in g per count).
UNIT_TO_MG = {
    "g": G_MG,
    "mg": 1.0,
    "m/s2": G_MG / STANDARD_GRAVITY_M_S2,
    "m/s^2": G_MG / STANDARD_GRAVITY_M_S2,
    "m/s²": G_MG / STANDARD_GRAVITY_M_S2,
}
UNITS_HELP = "g, mg, m/s2, or counts:G_PER_COUNT (e.g. counts:0.000488 for the LIS2DW12 at 4 g)"
# How spreadsheets, R (write.csv writes NA), pandas and databases spell a missing value: a label or an animal id
# spelt so is missing, never a behaviour or an animal called "NA".
MISSING_MARKERS = frozenset({"", "na", "nan", "n/a", "#n/a", "<na>", "null", "none"})
# An accelerometer on an animal always feels gravity: a bout's mean acceleration reads about 1 g, whatever
# the animal does. Data whose bouts read far from it is in other units than those given (m/s2 read as g
# reads 9.8 g), and a model trained on it would see on the collar a world ten times calmer than it learned.
GRAVITY_RANGE_G = (0.4, 2.5)


class DataError(ValueError):
    """Labelled data that cannot be used as it is; the message names file, row and column."""

    def __init__(self, source: str, what: str, row: int | None = None, column: str | None = None):
        where = source
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {what}")
        self.source = source
        self.row = row
        self.column = column
        self.what = what


def unit_factor_mg(units: str, source: str = "--units") -> float:
    """Return the factor that turns values in `units` into milli-g; DataError for an unknown unit."""
    text = str(units).strip()
    if text.lower().startswith("counts"):
        _, _, scale = text.partition(":")
        try:
            g_per_count = float(scale)
        except ValueError:
            raise DataError(source, f"raw counts need a scale in g per count, got {text!r}; "
                            f"accepted units: {UNITS_HELP}") from None
        if not np.isfinite(g_per_count) or g_per_count <= 0:
            raise DataError(source, f"the scale of {text!r} must be a positive number of g per count")
        return g_per_count * G_MG
    key = text.lower() if text.lower() in UNIT_TO_MG else text
    if key not in UNIT_TO_MG:
        raise DataError(source, f"unknown unit {text!r}; accepted units: {UNITS_HELP}")
    return UNIT_TO_MG[key]


def check_gravity(recordings: list[Recording], source: str, factor_mg: float, units: str,
                  option: str = "--units") -> None:
    """Raise DataError when the median bout of one file does not feel about 1 g of gravity in the units given.

    factor_mg is the factor the values were scaled by (units -> milli-g); the message names the units
    under which the data would read 1 g, if one of g, mg and m/s2 does.
    """
    if not recordings:
        return
    reads_g = float(np.median([np.linalg.norm(r.samples_mg.mean(axis=0)) for r in recordings if len(r.samples_mg)])) / G_MG
    low, high = GRAVITY_RANGE_G
    if low <= reads_g <= high:
        return
    if str(units).strip().lower().startswith("counts"):  # a zero was subtracted: rescaling alone cannot tell
        hint = (f"check the tag's calibration ({option} counts:G_PER_COUNT and its zero, --zero), or give {option} "
                "g, mg or m/s2 when the values are already converted")
    else:
        fits = [name for name in ("g", "mg", "m/s2") if low <= reads_g * UNIT_TO_MG[name] / factor_mg <= high]
        hint = (f"read as {fits[0]} it would be {reads_g * UNIT_TO_MG[fits[0]] / factor_mg:.3g} g: give {option} "
                f"{fits[0]}" if fits else f"check {option} ({UNITS_HELP})")
    raise DataError(source, f"read as {units!r}, gravity comes out at {reads_g:.3g} g (the median bout's mean "
                    f"acceleration), where an animal's accelerometer feels about 1 g; {hint}")


def is_missing(values: np.ndarray) -> np.ndarray:
    """Return True where a stripped text value is a missing-value marker (MISSING_MARKERS, any case)."""
    return np.isin(np.char.lower(np.asarray(values, dtype=str)), list(MISSING_MARKERS))


@dataclass(frozen=True)
class Recording:
    """One continuous stretch of one animal's accelerometer at one rate: samples (n, 3) milli-g, labels (n,)."""

    animal: str | None  # None when the data names no animals
    bout: str
    rate_hz: float
    samples_mg: np.ndarray
    labels: np.ndarray  # str per sample
    source: str  # file (and first row) it came from, for messages
    start_s: float = 0.0  # time of the first sample, seconds since the epoch when the data has clock time
    # A sample of a labelling tool, whose label can change there while its data stays: the tool's identity of the
    # sample (Edge Impulse: its content, see models.edge_impulse.sample_id) and when the tool wrote this label out
    # (Edge Impulse: protected.iat). Two recordings of one sample_id are one sample: the latest label wins.
    sample_id: str | None = None
    labelled_at: float | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def digest(self) -> str:
        """Return a short SHA-256 of the samples, labels, rate and start time: the same recording loaded again
        has the same digest, so a model's registry entry knows which recordings it was trained on (and two
        bouts that only look alike, at other times, never share one)."""
        return self._hash(with_labels=True)

    def content_digest(self) -> str:
        """Return a short SHA-256 of the samples, rate and start time, not the labels: the data a model learnt
        from, which stays the data it has seen when a label is changed afterwards (a sample relabelled in Edge
        Impulse Studio)."""
        return self._hash(with_labels=False)

    def _hash(self, with_labels: bool) -> str:
        h = hashlib.sha256(np.ascontiguousarray(self.samples_mg, dtype=np.float64).tobytes())
        if with_labels:
            h.update("\x1f".join(map(str, self.labels)).encode())
        h.update(repr((round(float(self.rate_hz), 6), round(float(self.start_s), 6))).encode())
        return h.hexdigest()[:16]


@dataclass
class LoadReport:
    """What a loader read and what it left out (reason -> samples), shown in every report."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    left_out: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def leave_out(self, reason: str, samples: int) -> None:
        """Count samples left out for a reason (never dropped silently)."""
        if samples > 0:
            self.left_out[reason] += int(samples)

    def merge(self, other: LoadReport) -> None:
        """Add another loader's counts to these."""
        self.files += other.files
        self.rows += other.rows
        self.left_out.update(other.left_out)
        self.notes += other.notes

    def as_dict(self) -> dict:
        """Return the report as JSON-able figures."""
        return {"files": list(self.files), "rows": self.rows,
                "left_out_samples": dict(self.left_out), "notes": list(self.notes)}


@dataclass
class Loaded:
    """Recordings from one or more sources and the report of what was left out."""

    recordings: list[Recording]
    report: LoadReport
    # Samples a labelling tool marks unlabeled (Edge Impulse's info.labels): never trained on (counted as left out
    # in the report), but one withdraws the label an earlier export gave the same sample (sample_id).
    withdrawn: list[Recording] = field(default_factory=list)

    def extend(self, other: Loaded) -> None:
        """Append another source's recordings, withdrawn samples and report."""
        self.recordings += other.recordings
        self.withdrawn += other.withdrawn
        self.report.merge(other.report)

    @property
    def animals_known(self) -> bool:
        """True when every recording names its animal."""
        return bool(self.recordings) and all(r.animal is not None for r in self.recordings)

    def label_counts(self) -> Counter:
        """Return samples per label over all recordings."""
        counts: Counter = Counter()
        for r in self.recordings:
            values, n = np.unique(r.labels, return_counts=True)
            counts.update(dict(zip(values.tolist(), n.tolist(), strict=True)))
        return counts


def split_label_runs(recording: Recording) -> list[Recording]:
    """Return the recording cut where its label changes, so no window straddles two behaviours."""
    labels = recording.labels
    if len(labels) == 0:
        return []
    cuts = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    if len(cuts) == 0:
        return [recording]
    pieces = []
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(labels)], strict=True):
        pieces.append(Recording(recording.animal, f"{recording.bout}#{start}", recording.rate_hz,
                                recording.samples_mg[start:stop], labels[start:stop],
                                _row_moved(recording.source, int(start)),
                                recording.start_s + start / recording.rate_hz))
    return pieces


def _row_moved(source: str, offset: int) -> str:
    """Return a "FILE, row N" source moved on by offset rows (other sources unchanged)."""
    head, sep, row = source.rpartition(", row ")
    return f"{head}{sep}{int(row) + offset}" if sep and row.isdigit() else source
