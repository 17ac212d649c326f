"""Long-format labelled accelerometer CSV (one row per sample), with the researcher's own column names.

    columns = Columns.parse("animal=tag,bout=burst,time=t,x=acc_x,y=acc_y,z=acc_z,label=behaviour")
    loaded = load_csv(["storks/"], columns, units="m/s2")

Columns may also come from a small TOML dataset file (`load_dataset_file`):

    [dataset]
    files = ["recordings/"]          # files or folders, relative to the TOML file
    units = "m/s2"                   # g, mg, m/s2, counts:G_PER_COUNT
    rate_hz = 10.54                  # optional: checked against the time column when both are given
    split_gaps = false               # optional: a gap inside a bout splits it instead of stopping
    [columns]
    animal = "tag"                   # optional
    bout = "burst"                   # optional
    time = "t"                       # seconds, or ISO 8601 date-times; optional when rate_hz is given
    x = "acc_x"
    y = "acc_y"
    z = "acc_z"
    label = "behaviour"

Rows of one (animal, bout) that interleave with others' (logs merged by time) are put together in time
order. The sampling rate is detected per bout from the time column and checked: bouts at different rates
(mixed rates), a gap inside a bout, a time that goes backwards, a value that is not a number or a
missing label (empty, NA, N/A, NULL, ... as `recordings.MISSING_MARKERS` lists) stop the load with a `DataError` naming the file, the row (1 = the header) and the column.
"""

from __future__ import annotations

import gzip
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from models.recordings import (
    DataError,
    Loaded,
    LoadReport,
    Recording,
    check_gravity,
    is_missing,
    unit_factor_mg,
)

RATE_TOLERANCE = 0.02  # bouts whose rates differ by more than 2 % are mixed rates
GAP_FACTOR = 1.5  # a step longer than 1.5 sample intervals is a gap
CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")
# Rates an animal-borne accelerometer logs behaviour at. Outside them the time column is not in seconds: a
# logger's milliseconds read as seconds give 0.025 Hz for 40 Hz data (and a thousandfold resampling to
# the collar's rate), a spreadsheet's date serial in days gives hundreds of kHz.
RATE_RANGE_HZ = (1.0, 5000.0)


@dataclass(frozen=True)
class Columns:
    """The names of the CSV's columns; animal, bout and time are optional (None)."""

    x: str = "x"
    y: str = "y"
    z: str = "z"
    label: str = "label"
    animal: str | None = None
    bout: str | None = None
    time: str | None = None

    @classmethod
    def parse(cls, text: str | None, base: Columns | None = None) -> Columns:
        """Return columns from "role=name,role=name" (roles: animal bout time x y z label)."""
        columns = base or cls()
        if not text:
            return columns
        roles = {f.name for f in fields(cls)}
        given = {}
        for item in text.split(","):
            role, sep, name = item.partition("=")
            role = role.strip()
            if not sep or role not in roles or not name.strip():
                raise DataError("--columns", f"{item!r} is not ROLE=NAME with ROLE one of {', '.join(sorted(roles))}")
            given[role] = name.strip()
        return replace(columns, **given)

    def axes(self) -> list[str]:
        """Return the x, y, z column names."""
        return [self.x, self.y, self.z]


def csv_files(paths: list[str | Path]) -> list[Path]:
    """Return the CSV files of the given files and folders (a folder's CSVs sorted by name)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.name.endswith(CSV_SUFFIXES))
        elif path.exists():
            found.append(path)
        else:
            raise DataError(str(path), "no such file or folder")
    if not found:
        raise DataError(", ".join(map(str, paths)), "no CSV files found")
    return found


def load_csv(
    paths: list[str | Path],
    columns: Columns,
    units: str = "g",
    rate_hz: float | None = None,
    split_gaps: bool = False,
) -> Loaded:
    """Return the recordings of long-format CSV files (files or folders) with the given column names."""
    factor = unit_factor_mg(units)
    loaded = Loaded([], LoadReport())
    for path in csv_files(paths):
        loaded.extend(_load_one(path, columns, factor, rate_hz, split_gaps, units))
    return loaded


def load_dataset_file(path: str | Path, overrides: dict | None = None) -> Loaded:
    """Return the recordings a TOML dataset file describes (see the module docstring)."""
    path = Path(path)
    try:
        spec = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise DataError(str(path), f"cannot read the dataset file: {err}") from None
    dataset = spec.get("dataset", {})
    if not dataset.get("files"):
        raise DataError(str(path), "[dataset] needs files = [...]")
    unknown = set(spec.get("columns", {})) - {f.name for f in fields(Columns)}
    if unknown:
        raise DataError(str(path), f"[columns] has unknown roles {sorted(unknown)}")
    columns = Columns(**spec.get("columns", {}))
    options = {"units": dataset.get("units", "g"), "rate_hz": dataset.get("rate_hz"),
               "split_gaps": bool(dataset.get("split_gaps", False))}
    options.update({k: v for k, v in (overrides or {}).items() if v is not None})
    files = [path.parent / f for f in dataset["files"]]
    return load_csv(files, columns, **options)


def separator(path: Path) -> str:
    """Return the field separator of a CSV from its header line: ",", or ";" (the CSV of spreadsheets in locales
    whose decimal mark is a comma) or a tab (loggers' .txt exports) when the header holds those and no comma."""

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", errors="replace") as f:
            header = f.readline()
    except OSError:
        return ","
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    return "," if counts[","] else max(counts, key=counts.get) if max(counts.values()) else ","


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _load_one(path: Path, columns: Columns, factor: float, rate_hz: float | None, split_gaps: bool,
              units: str = "g") -> Loaded:
    import pandas as pd

    source = str(path)
    try:
        sep = separator(path)
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, sep=sep)
        if sep != ",":  # where commas do not separate fields, a number's comma is its decimal mark ("0,98")
            for name in {*columns.axes(), columns.time} & set(frame.columns):
                frame[name] = frame[name].str.replace(",", ".", regex=False)
    except (OSError, ValueError) as err:
        raise DataError(source, f"cannot read as CSV: {err}") from None
    wanted = [c for c in (columns.animal, columns.bout, columns.time, *columns.axes(), columns.label) if c]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(source, f"missing column(s) {missing}; the file has {list(frame.columns)} "
                        "(name yours with --columns role=name,... or a dataset TOML)", row=1, column=missing[0])
    report = LoadReport(files=[source], rows=len(frame))
    if len(frame) == 0:
        report.notes.append(f"{source}: no rows")
        return Loaded([], report)
    rows = np.arange(len(frame)) + 2  # 1-based file rows, the header is row 1

    samples = np.empty((len(frame), 3), dtype=np.float64)
    for a, name in enumerate(columns.axes()):
        values = pd.to_numeric(frame[name].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            i = _first_bad(bad)
            raise DataError(source, f"{frame[name].iloc[i]!r} is not a number "
                            f"({int(bad.sum())} such rows)", row=int(rows[i]), column=name)
        samples[:, a] = values * factor
    labels = frame[columns.label].str.strip().to_numpy(dtype=str)
    empty = is_missing(labels)
    if empty.any():
        i = _first_bad(empty)
        raise DataError(source, f"no label ({str(labels[i])!r}; {int(empty.sum())} such rows): remove or label them",
                        row=int(rows[i]), column=columns.label)

    times = _times(frame, columns.time, source, rows) if columns.time else None
    animal = frame[columns.animal].str.strip().to_numpy(dtype=str) if columns.animal else None
    if animal is not None and is_missing(animal).any():
        i = _first_bad(is_missing(animal))
        raise DataError(source, f"no animal id ({str(animal[i])!r})", row=int(rows[i]), column=columns.animal)
    bout = frame[columns.bout].str.strip().to_numpy(dtype=str) if columns.bout else None
    if times is not None and (animal is not None or bout is not None):
        # Rows of several animals (or bouts) logged at once and merged by time interleave: each animal's
        # bout is then put together in time order, instead of being cut into single rows.
        order = _by_bout_then_time(animal, bout, times)
        if order is not None:
            samples, labels, times, rows = samples[order], labels[order], times[order], rows[order]
            animal = animal[order] if animal is not None else None
            bout = bout[order] if bout is not None else None
            report.notes.append(f"{source}: rows of several animals or bouts interleave; each bout was put "
                                "together in time order")

    # A bout is a run of rows with the same animal and bout id (in file order).
    key = np.zeros(len(frame), dtype=bool)
    key[0] = True
    if animal is not None:
        key[1:] |= animal[1:] != animal[:-1]
    if bout is not None:
        key[1:] |= bout[1:] != bout[:-1]
    starts = np.flatnonzero(key)
    stops = np.r_[starts[1:], len(frame)]

    if times is None and rate_hz is None:
        raise DataError(source, "no time column: name it (--columns time=NAME) or give the sampling rate (--rate HZ)")
    pieces = []
    for start, stop in zip(starts, stops, strict=True):
        pieces += _split_bout(start, stop, times, rows, source, columns, split_gaps, report)
    rates = _bout_rates(pieces, times, rate_hz, rows, source, columns, report)

    recordings = []
    for (start, stop), rate in zip(pieces, rates, strict=True):
        if rate is None:
            continue
        name = bout[start] if bout is not None else f"rows {rows[start]}-{rows[stop - 1]}"
        recordings.append(Recording(
            animal=None if animal is None else str(animal[start]),
            bout=f"{path.name}:{'' if animal is None else animal[start]}:{name}",
            rate_hz=float(rate),
            samples_mg=samples[start:stop],
            labels=labels[start:stop],
            source=f"{source}, row {rows[start]}",
            start_s=float(times[start]) if times is not None else 0.0,
        ))
    check_gravity(recordings, source, factor, units)
    return Loaded(recordings, report)


def _times(frame, column: str, source: str, rows: np.ndarray) -> np.ndarray:
    """Return the time column in seconds (numbers as given, ISO 8601 as seconds since the epoch)."""
    import pandas as pd

    text = frame[column].str.strip()
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    if np.isfinite(numbers).all():
        return numbers
    stamps = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    bad = stamps.isna().to_numpy()
    if bad.any() and np.isfinite(numbers).any():
        bad = ~np.isfinite(numbers)  # a numeric column with a few broken cells: name those
    if bad.any():
        i = _first_bad(bad)
        raise DataError(source, f"{text.iloc[i]!r} is neither seconds nor an ISO 8601 time",
                        row=int(rows[i]), column=column)
    return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)


def _by_bout_then_time(animal: np.ndarray | None, bout: np.ndarray | None, times: np.ndarray) -> np.ndarray | None:
    """Return the row order that puts each (animal, bout) together in time order, first seen first, or None
    when every (animal, bout) already is one run of rows."""
    parts = [p for p in (animal, bout) if p is not None]
    keys = parts[0] if len(parts) == 1 else np.char.add(np.char.add(parts[0], "\x1f"), parts[1])
    _, first, codes = np.unique(keys, return_index=True, return_inverse=True)
    runs = 1 + int(np.count_nonzero(keys[1:] != keys[:-1]))
    if runs == len(first):
        return None
    rank = np.argsort(np.argsort(first))  # keys numbered in the order the file first shows them
    return np.lexsort((np.arange(len(keys)), times, rank[codes]))


def _split_bout(start, stop, times, rows, source, columns, split_gaps, report) -> list[tuple[int, int]]:
    """Return [start, stop) row ranges of one bout, cut at gaps when split_gaps (else a gap is an error)."""
    if times is None or stop - start < 2:
        return [(start, stop)]
    dt = np.diff(times[start:stop])
    back = dt <= 0
    if back.any():
        i = start + 1 + _first_bad(back)
        coarse = np.mean(dt == 0) > 0.5 and np.all(np.isclose(times[start:stop] % 1, 0))
        hint = ("; the time column gives whole seconds to several samples: leave it out (no time= in --columns) "
                "and give the sampling rate with --rate" if coarse else "")
        raise DataError(source, f"time does not increase inside a bout ({times[i - 1]!r} then {times[i]!r}){hint}",
                        row=int(rows[i]), column=columns.time)
    step = float(np.median(dt))
    gaps = np.flatnonzero(dt > GAP_FACTOR * step)
    if len(gaps) and not split_gaps:
        i = start + 1 + int(gaps[0])
        raise DataError(source, f"gap of {dt[gaps[0]]:.3g} s inside a bout (samples every {step:.3g} s); "
                        "give each bout its own id, or let gaps split bouts (--split-gaps)",
                        row=int(rows[i]), column=columns.time)
    if len(gaps):
        report.notes.append(f"{source}: {len(gaps)} gap(s) split bouts")
    cuts = [start, *(start + 1 + g for g in gaps.tolist()), stop]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _bout_rates(pieces, times, rate_hz, rows, source, columns, report) -> list[float | None]:
    """Return the rate of every bout (None: too short to tell, left out); refuse mixed or contradicted rates."""
    low, high = RATE_RANGE_HZ
    if rate_hz is not None and not low <= rate_hz <= high:
        raise DataError("--rate", f"{rate_hz:g} Hz is not a rate an accelerometer logs behaviour at "
                        f"({low:g}-{high:g} Hz); give the data's sampling rate in Hz")
    if times is None:
        return [float(rate_hz)] * len(pieces)
    rates: list[float | None] = []
    for start, stop in pieces:
        if stop - start < 2:
            report.leave_out("bout of a single sample (no rate)", stop - start)
            rates.append(None)
            continue
        rates.append(1.0 / float(np.median(np.diff(times[start:stop]))))
    known = [(r, p) for r, p in zip(rates, pieces, strict=True) if r is not None]
    if not known:
        return rates
    for rate, (start, _stop) in known:
        if not low <= rate <= high:
            raise DataError(source, f"the time column steps {1 / rate:.6g} between samples, which as seconds is "
                            f"{rate:.4g} Hz, not a rate an accelerometer logs behaviour at ({low:g}-{high:g} Hz): "
                            "give times in seconds or ISO 8601 date-times (milliseconds divided by 1000, a "
                            "spreadsheet's day serial as a date-time), or leave the time column out and give --rate",
                            row=int(rows[start]), column=columns.time)
    reference = float(rate_hz) if rate_hz else known[0][0]
    for rate, (start, _stop) in known:
        if abs(rate - reference) > RATE_TOLERANCE * reference:
            what = (f"the time column says {rate:.4g} Hz but the rate given is {reference:.4g} Hz" if rate_hz
                    else f"this bout is sampled at {rate:.4g} Hz, the first at {reference:.4g} Hz (mixed rates); "
                    "load each rate on its own")
            raise DataError(source, what, row=int(rows[start]), column=columns.time)
    return [reference if r is not None else None for r in rates]
