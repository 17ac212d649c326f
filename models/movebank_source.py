"""Movebank accelerometer bursts (e-obs tags): one CSV row per burst.

Columns as Movebank names them: `eobs:accelerations-raw` (the burst's samples as space-separated
numbers, axes interleaved in the order `eobs:acceleration-axes` gives, e.g. "XYZ"),
`eobs:acceleration-sampling-frequency-per-axis` (Hz), `timestamp` (UTC, the burst's first sample),
`individual-local-identifier` (the animal) and `event-id`. Annotated bursts carry their label in
`behavioural-classification` (another column may be named with --columns label=NAME). The same attributes as
Movebank's API and R's move2 spell them (`eobs_accelerations_raw`) or R's move (`eobs.accelerations.raw`) are read
alike.

e-obs raw values are unsigned counts around a zero of 2048; give the tag's calibration as units
`counts:G_PER_COUNT` (and `zero`), or units g / m/s2 when the study stores converted values.
Rows of other sensors (no burst: blank, or `NA` as R's write.csv writes a study read with R), bursts without a label, rows Movebank marks as outliers
(`visible` false) and, in a file that names its animals, bursts of no animal (Movebank leaves
`individual-local-identifier` blank before and after a tag's deployment: a tag on a desk, not an
animal) and blank rows are left out and counted (rows keep their line numbers); a burst with other axes than X, Y and Z, a number or a timestamp that does
not parse stops the load naming file, row and column. A study's whole download is read a chunk of rows at a
time and only the columns above, so it loads in about the memory of its annotated bursts.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from models.csv_source import csv_files, encoding, separator
from models.recordings import (
    DataError,
    Loaded,
    LoadReport,
    Recording,
    check_gravity,
    is_missing,
    unit_factor_mg,
)

RAW = "eobs:accelerations-raw"
AXES = "eobs:acceleration-axes"
RATE = "eobs:acceleration-sampling-frequency-per-axis"
ANIMAL = "individual-local-identifier"
EVENT = "event-id"
TIME = "timestamp"
LABEL = "behavioural-classification"
VISIBLE = "visible"
EOBS_ZERO = 2048
CHUNK_BURSTS = 10_000  # rows read at a time (a burst's text is a few kB at most)


ATTRIBUTES = (RAW, AXES, RATE, LABEL, VISIBLE, ANIMAL, EVENT, TIME)


def _key(name: str) -> str:
    """Return an attribute name without case and punctuation: Movebank's CSV writes `eobs:accelerations-raw`,
    its API and R's move2 `eobs_accelerations_raw`, R's move `eobs.accelerations.raw`."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def attribute_columns(header: list[str], label_column: str = LABEL) -> dict[str, str]:
    """Return {Movebank attribute (or the label column): the file's column of it}, by name as Movebank's CSV
    spells it, else as its API and R spell it."""
    by_key: dict[str, str] = {}
    for name in header:
        by_key.setdefault(_key(name), name)
    found = {}
    for attribute in dict.fromkeys((*ATTRIBUTES, label_column)):
        if attribute in header:
            found[attribute] = attribute
        elif _key(attribute) in by_key:
            found[attribute] = by_key[_key(attribute)]
    return found


def is_movebank(path: str | Path) -> bool:
    """Return True when a CSV's header holds Movebank's e-obs burst columns."""
    import pandas as pd

    path = Path(path)
    try:
        header = list(pd.read_csv(path, nrows=0, sep=separator(path), encoding=encoding(path)).columns)
    except (OSError, ValueError):
        return False
    return RAW in attribute_columns(header)


def load_movebank(paths: list[str | Path], units: str = "counts:0.0027", zero: float | None = None,
                  label_column: str = LABEL) -> Loaded:
    """Return one recording per annotated burst of Movebank accelerometer CSVs."""
    factor = unit_factor_mg(units)
    offset = (EOBS_ZERO if units.strip().lower().startswith("counts") else 0.0) if zero is None else zero
    loaded = Loaded([], LoadReport())
    for path in csv_files(paths):
        part = _load_one(path, factor, offset, label_column)
        check_gravity(part.recordings, str(path), factor, units)
        loaded.extend(part)
    return loaded


def _load_one(path: Path, factor: float, offset: float, label_column: str) -> Loaded:
    import pandas as pd

    source = str(path)
    sep, text_encoding = separator(path), encoding(path)
    try:
        header = list(pd.read_csv(path, nrows=0, sep=sep, encoding=text_encoding).columns)
    except (OSError, ValueError) as err:
        raise DataError(source, f"cannot read as CSV: {err}") from None
    names = attribute_columns(header, label_column)
    missing = [c for c in (RAW, AXES, RATE, label_column) if c not in names]
    if missing:
        raise DataError(source, f"missing Movebank column(s) {missing}", row=1, column=missing[0])
    # Only the columns read, CHUNK_BURSTS rows at a time: a study's download holds every burst of every tag
    # (most not annotated) beside columns Tembo does not read.
    report = LoadReport(files=[source])
    recordings = []
    blank = 0
    try:
        # Blank lines are read as rows and left out here, so a row's number stays its line in the file.
        # A study saved again by a spreadsheet whose decimal mark is a comma has ";" between fields and "10,54" Hz.
        with pd.read_csv(path, dtype=str, keep_default_na=False, usecols=list(set(names.values())),
                         sep=sep, encoding=text_encoding,
                         skip_blank_lines=False, chunksize=CHUNK_BURSTS) as reader:
            for chunk in reader:
                cells = {attribute: chunk[name].tolist() for attribute, name in names.items()}
                if sep != ",":  # there a number's comma is its decimal mark
                    cells[RATE] = [v.replace(",", ".") for v in cells[RATE]]
                for i in range(len(chunk)):  # one row per burst: a loop over bursts, not samples
                    values = {attribute: cells[attribute][i] for attribute in names}
                    if not any(v.strip() for v in values.values()):
                        blank += 1
                        continue
                    recording = _burst(values, names, report.rows + i + 2, path, factor, offset, label_column,
                                       report)
                    if recording is not None:
                        recordings.append(recording)
                report.rows += len(chunk)
    except DataError:
        raise
    except (OSError, ValueError) as err:  # a broken line (pandas names it) after report.rows good ones
        raise DataError(source, f"cannot read as CSV: {err}") from None
    if blank:
        report.notes.append(f"{source}: {blank} blank row(s) left out")
    if any(r.animal is None for r in recordings) and any(r.animal for r in recordings):
        # Before and after deployment Movebank names no individual: the tag was on no animal. Kept, they
        # would also cost the whole file its leave-one-animal-out evaluation.
        report.leave_out("bursts of no animal (individual-local-identifier blank: before or after deployment)",
                         sum(len(r) for r in recordings if r.animal is None))
        recordings = [r for r in recordings if r.animal is not None]
    return Loaded(recordings, report)


def _burst(values: dict[str, str], names: dict[str, str], file_row: int, path: Path, factor: float, offset: float,
           label_column: str, report: LoadReport) -> Recording | None:
    """Return the recording of one row's burst (values by Movebank attribute, names: the file's column of each),
    or None when it is left out (counted in report)."""
    source = str(path)
    raw = values[RAW].strip()
    if is_missing(raw):  # blank in Movebank's download, NA once the study has passed through R's write.csv
        report.leave_out("Movebank rows without an accelerometer burst (other sensors)", 1)
        return None
    if values.get(VISIBLE, "").strip().lower() == "false":
        report.leave_out("bursts Movebank marks as outliers (visible false)", len(raw.split()) // 3)
        return None
    axes = values[AXES].strip().upper()
    if axes != "XYZ":
        raise DataError(source, f"burst axes {axes!r}: the collar needs X, Y and Z", row=file_row, column=names[AXES])
    try:
        numbers = np.array(raw.split(), dtype=np.float64)
    except ValueError:
        raise DataError(source, "burst values are not numbers separated by spaces",
                        row=file_row, column=names[RAW]) from None
    if len(numbers) % 3:
        raise DataError(source, f"{len(numbers)} values do not split into X, Y, Z samples",
                        row=file_row, column=names[RAW])
    try:
        rate = float(values[RATE])
    except ValueError:
        rate = float("nan")
    if not np.isfinite(rate) or rate <= 0:
        raise DataError(source, f"sampling frequency {values[RATE]!r} is not a positive number",
                        row=file_row, column=names[RATE])
    label = values[label_column].strip()
    if is_missing(label):
        report.leave_out("bursts without a label (not annotated)", len(numbers) // 3)
        return None
    samples = (numbers.reshape(-1, 3) - offset) * factor
    animal = values.get(ANIMAL, "").strip()
    event = values[EVENT].strip() if EVENT in values else str(file_row)
    return Recording(None if is_missing(animal) else animal, f"{path.name}:{event}", rate, samples,
                     np.full(len(samples), label), f"{source}, row {file_row}",
                     _seconds(values[TIME], source, file_row, names[TIME]) if TIME in values else 0.0)


def _seconds(text: str, source: str, file_row: int, column: str) -> float:
    """Return a burst's timestamp (Movebank's `yyyy-MM-dd HH:mm:ss.SSS`, UTC) as seconds since the epoch, or raise
    DataError naming the row and column: a burst put at 1970 would sort first in the animal's day and carry a
    wrong time into the recording's digest."""
    import pandas as pd

    stamp = pd.to_datetime(text.strip(), utc=True, errors="coerce")
    if pd.isna(stamp):
        raise DataError(source, f"timestamp {text!r} is not a date and time (Movebank writes "
                        "yyyy-MM-dd HH:mm:ss.SSS, UTC)", row=file_row, column=column)
    return float(stamp.timestamp())
