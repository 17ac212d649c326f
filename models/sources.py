"""One entry to every kind of labelled data Tembo reads, chosen per path (or by `fmt`).

- a `.toml` file: a dataset file (models.csv_source.load_dataset_file)
- `.json` or `.cbor` files, folders of them or a Studio data export (info.labels): Edge Impulse data acquisition
  format
- a CSV with Movebank's `eobs:accelerations-raw` column: Movebank accelerometer bursts
- `simulated` or `simulated:SEED`: the digital twin's labelled output
- a CSV in Edge Impulse's format (`timestamp` in ms, accX, accY, accZ) when no --columns are given
- any other CSV (file or folder): long format with the given column names
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models import csv_source, edge_impulse, movebank_source, simulated_source
from models.recordings import DataError, Loaded, LoadReport

FORMATS = ("auto", "csv", "movebank", "edge-impulse", "simulated")


@dataclass(frozen=True)
class DataOptions:
    """How to read labelled data (command-line options)."""

    fmt: str = "auto"
    columns: str | None = None
    units: str | None = None
    rate_hz: float | None = None
    split_gaps: bool = False
    zero: float | None = None  # Movebank raw counts' zero
    hmac_key: bytes | None = None  # Edge Impulse signatures


def _kind(path: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if path == "simulated" or path.startswith("simulated:"):
        return "simulated"
    p = Path(path)
    if p.suffix.lower() == ".toml":
        return "toml"
    if p.is_dir():
        if edge_impulse.is_edge_impulse_dir(p):
            return "edge-impulse"
        first = next((q for q in sorted(p.iterdir()) if q.name.endswith(csv_source.CSV_SUFFIXES)), None)
        return "movebank" if first is not None and movebank_source.is_movebank(first) else "csv"
    if edge_impulse.is_edge_impulse(path):
        return "edge-impulse"
    if p.exists() and movebank_source.is_movebank(p):
        return "movebank"
    return "csv"


def _first_csv_is_edge_impulse(path: str) -> bool:
    """Return True when the path (or a folder's first CSV) is in Edge Impulse's CSV format."""
    p = Path(path)
    if p.is_dir():
        p = next((q for q in sorted(p.iterdir()) if q.name.endswith(csv_source.CSV_SUFFIXES)), None)
    return p is not None and p.is_file() and edge_impulse.is_edge_impulse_csv(p)


def load(paths: list[str], options: DataOptions | None = None) -> Loaded:
    """Return the recordings of every path, each read in its own format."""
    options = options or DataOptions()
    if options.fmt not in FORMATS:
        raise DataError("--format", f"unknown format {options.fmt!r}; known: {', '.join(FORMATS)}")
    if not paths:
        raise DataError("DATA", "give at least one file, folder, dataset TOML or 'simulated'")
    loaded = Loaded([], LoadReport())
    for path in paths:
        kind = _kind(str(path), options.fmt)
        if kind == "simulated":
            seed = int(str(path).partition(":")[2] or 0)
            loaded.extend(simulated_source.simulated_recordings(seed=seed))
        elif kind == "toml":
            loaded.extend(csv_source.load_dataset_file(path, {"units": options.units, "rate_hz": options.rate_hz}))
        elif kind == "edge-impulse" and not _first_csv_is_edge_impulse(str(path)):
            loaded.extend(edge_impulse.load_edge_impulse([path], options.hmac_key))
        elif kind == "movebank":
            columns = csv_source.Columns.parse(options.columns, csv_source.Columns(label=movebank_source.LABEL))
            loaded.extend(movebank_source.load_movebank([path], units=options.units or "counts:0.0027",
                                                        zero=options.zero, label_column=columns.label))
        elif kind == "edge-impulse" or (options.columns is None and _first_csv_is_edge_impulse(str(path))):
            loaded.extend(edge_impulse.load_edge_impulse_csv([path], units=options.units or edge_impulse.CSV_UNITS))
        else:
            columns = csv_source.Columns.parse(options.columns)
            loaded.extend(csv_source.load_csv([path], columns, units=options.units or "g",
                                              rate_hz=options.rate_hz, split_gaps=options.split_gaps))
    return without_duplicates(loaded)


DUPLICATE = ("recordings repeated (same animal, samples, labels and rate as one kept: a file given twice, duplicate "
             "records, one sample in two Edge Impulse exports)")


def without_duplicates(loaded: Loaded) -> Loaded:
    """Return loaded with each recording once: a copy would sit in training and test of bout-grouped folds
    (a duplicate Movebank record, a file named twice) and score what the model has already seen."""
    seen: set[tuple[str | None, str]] = set()
    kept = []
    repeated = 0
    for recording in loaded.recordings:
        key = (recording.animal, recording.digest())  # the animal (an Edge Impulse device_name) and the content
        if key in seen:
            loaded.report.leave_out(DUPLICATE, len(recording))
            repeated += 1
            continue
        seen.add(key)
        kept.append(recording)
    if repeated:
        loaded.report.notes.append(f"{repeated} recording(s) repeated another and were left out ({DUPLICATE})")
    return Loaded(kept, loaded.report)
