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

import numpy as np

from models import csv_source, edge_impulse, movebank_source, simulated_source
from models.recordings import DataError, Loaded, LoadReport, Recording

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
    origins: list[int] = []  # the DATA path (one Edge Impulse export) each recording came from
    withdrawn_origins: list[int] = []  # and each sample marked unlabeled
    for number, path in enumerate(paths):
        origins += [number - 1] * (len(loaded.recordings) - len(origins))  # the path before this one
        withdrawn_origins += [number - 1] * (len(loaded.withdrawn) - len(withdrawn_origins))
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
    origins += [len(paths) - 1] * (len(loaded.recordings) - len(origins))
    withdrawn_origins += [len(paths) - 1] * (len(loaded.withdrawn) - len(withdrawn_origins))
    return without_duplicates(loaded, origins, withdrawn_origins)


DUPLICATE = ("recordings repeated (same animal, samples, labels and rate as one kept: a file given twice, duplicate "
             "records, one sample in two Edge Impulse exports)")
RELABELLED = ("earlier labels of samples relabelled since (an Edge Impulse sample in two exports under two labels: "
              "the latest export's label kept)")
RELABEL_EXAMPLES = 3  # relabelled samples named in the note


def _label_text(labels) -> str:
    """Return a sample's labels as a researcher reads them: `walk`, or `idle+walk` for a multi-label sample."""
    return "+".join(dict.fromkeys(map(str, labels)))


def _is_later(new: Recording, old: Recording, new_origin: int = 0, old_origin: int = 0) -> bool:
    """Return True when new holds the later label of one sample: the later `labelled_at` (an Edge Impulse export's
    iat) when both have one and they differ, else the one given later (origins: the DATA paths they came from)."""
    if new.labelled_at is not None and old.labelled_at is not None and new.labelled_at != old.labelled_at:
        return new.labelled_at > old.labelled_at
    return new_origin >= old_origin


def without_duplicates(loaded: Loaded, origins: list[int] | None = None,
                       withdrawn_origins: list[int] | None = None) -> Loaded:
    """Return loaded with each recording once: a copy would sit in training and test of bout-grouped folds
    (a duplicate Movebank record, a file named twice) and score what the model has already seen. A labelling
    tool's sample met under two labels in two exports (origins: the export of each recording; relabelled in Edge
    Impulse Studio between them) is kept once, under its latest label, and the report says how many samples were
    relabelled; marked unlabeled in the later export (loaded.withdrawn, from withdrawn_origins), it is not trained
    on. Two samples of one content under two labels in one export are two samples, both kept."""
    origins = origins if origins is not None else [0] * len(loaded.recordings)
    withdrawn_origins = withdrawn_origins if withdrawn_origins is not None else [0] * len(loaded.withdrawn)
    seen: set[tuple[str | None, str]] = set()
    samples: dict[str, int] = {}  # sample_id -> its place in kept
    came_from: list[int] = []  # the origin of each kept recording
    kept: list[Recording] = []
    repeated = 0
    relabelled: dict[str, str] = {}  # sample_id -> the label it was first met under and lost
    for recording, origin in zip(loaded.recordings, origins, strict=True):
        key = (recording.animal, recording.digest())  # the animal (an Edge Impulse device_name) and the content
        at = samples.get(recording.sample_id) if recording.sample_id is not None else None
        if at is not None and (np.array_equal(kept[at].labels, recording.labels) or came_from[at] != origin):
            old = kept[at]
            if np.array_equal(old.labels, recording.labels):  # the same sample under the same label: the first kept
                loaded.report.leave_out(DUPLICATE, len(recording))
                repeated += 1
                continue
            earlier = old if _is_later(recording, old) else recording
            loaded.report.leave_out(RELABELLED, len(earlier))
            relabelled.setdefault(recording.sample_id, _label_text(earlier.labels))
            kept[at], came_from[at] = (recording, origin) if earlier is old else (old, came_from[at])
            continue
        if key in seen:
            loaded.report.leave_out(DUPLICATE, len(recording))
            repeated += 1
            continue
        seen.add(key)
        if recording.sample_id is not None:
            samples.setdefault(recording.sample_id, len(kept))
        kept.append(recording)
        came_from.append(origin)
    now = {i: (Path(kept[at].source).name, _label_text(kept[at].labels)) for i, at in samples.items()}
    gone: set[int] = set()
    for sample, origin in zip(loaded.withdrawn, withdrawn_origins, strict=True):
        at = samples.get(sample.sample_id)
        if at is None or at in gone or came_from[at] == origin or not _is_later(sample, kept[at], origin,
                                                                                  came_from[at]):
            continue
        loaded.report.leave_out(RELABELLED, len(kept[at]))
        relabelled.setdefault(sample.sample_id, _label_text(kept[at].labels))
        now[sample.sample_id] = (Path(sample.source).name, "unlabeled")
        gone.add(at)
    kept = [recording for at, recording in enumerate(kept) if at not in gone]
    if repeated:
        loaded.report.notes.append(f"{repeated} recording(s) repeated another and were left out ({DUPLICATE})")
    if relabelled:
        examples = "; ".join(f"{now[i][0]}: {was} -> {now[i][1]}" for i, was in list(relabelled.items())[:RELABEL_EXAMPLES])
        more = f"; and {len(relabelled) - RELABEL_EXAMPLES} more" if len(relabelled) > RELABEL_EXAMPLES else ""
        loaded.report.notes.append(f"{len(relabelled)} sample(s) relabelled since an earlier Edge Impulse export, "
                                   f"trained on under their latest label only ({examples}{more})")
    return Loaded(kept, loaded.report)
