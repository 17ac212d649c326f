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
Blank rows (and a spreadsheet's rows of bare separators) are left out and counted; text is UTF-8 or, after a
byte-order mark, UTF-16 (a spreadsheet's "Unicode Text"); other text is refused naming its row.

A file is read CHUNK_ROWS rows at a time, the axes as numbers and animal, bout and label as small codes, so a
night of a herd's 25 Hz logging (hundreds of MB) takes about the memory of what is kept, not of its text
(`scripts/csv_memory.py` prints the figure).
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
# Rows read at a time: a night of 25 Hz logging of a herd is tens of millions of rows, and only the numbers and
# a small code per text cell are kept of each chunk (the text of one chunk is some tens of MB at most).
CHUNK_ROWS = 100_000


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


def encoding(path: Path) -> str:
    """Return the text encoding to read a CSV with: UTF-16 when it starts with a UTF-16 byte-order mark (a
    spreadsheet's "Unicode Text" export), else UTF-8 (pandas drops a UTF-8 byte-order mark, as Excel's "CSV UTF-8"
    writes, from the first column's name, and reads UTF-8 in its own parser: "utf-8-sig" would decode in Python
    and cost memory)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            start = f.read(2)
    except OSError:
        return "utf-8"
    return "utf-16" if start in (b"\xff\xfe", b"\xfe\xff") else "utf-8"


def _not_utf8(path: Path) -> DataError:
    """Return the error naming the first row of a CSV that is not UTF-8 text."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    advice = "save it from the spreadsheet as \"CSV UTF-8\" (a Windows spreadsheet's plain \"CSV\" is in its own code page)"
    with opener(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                return DataError(str(path), f"not UTF-8 text (byte 0x{line[err.start]:02x}): {advice}", row=number)
    return DataError(str(path), f"not UTF-8 text: {advice}")


def separator(path: Path) -> str:
    """Return the field separator of a CSV from its header line: ",", or ";" (the CSV of spreadsheets in locales
    whose decimal mark is a comma) or a tab (loggers' .txt exports) when the header holds those and no comma."""

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding=encoding(path), errors="replace") as f:
            header = f.readline()
    except OSError:
        return ","
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    return "," if counts[","] else max(counts, key=counts.get) if max(counts.values()) else ","


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


class _Untyped(Exception):
    """A cell of an axis column that does not read as a finite number: read the file again as text to name it."""


class _Codes:
    """One text column (animal, bout, label) as int32 codes into its stripped values, first seen first, so a
    night of rows holds four bytes a row instead of a string each."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.parts: list[np.ndarray] = []

    def add(self, column) -> np.ndarray:
        """Append a chunk's column (read as text: "007" stays "007") and return its codes."""
        import pandas as pd

        chunk_codes, uniques = pd.factorize(column)
        names = [str(c).strip() for c in uniques]
        lookup = np.array([self.index.setdefault(n, len(self.index)) for n in names], dtype=np.int32)
        codes = lookup[chunk_codes]
        self.parts.append(codes)
        return codes

    def values(self) -> np.ndarray:
        """Return the stripped values, indexed by code."""
        return np.array(list(self.index), dtype=str)

    def codes(self) -> np.ndarray:
        """Return the codes of all rows read."""
        return np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.int32)


@dataclass
class _Fault:
    """The first bad cell of one column (1-based file row and its text) and how many bad cells it has."""

    row: int
    text: str
    count: int = 0


@dataclass
class _Table:
    """The columns Tembo keeps of one CSV, read chunk by chunk."""

    samples: np.ndarray  # (n, 3) milli-g
    times: np.ndarray | None
    labels: _Codes
    animal: _Codes | None
    bout: _Codes | None
    rows: int  # rows kept
    lines: np.ndarray  # the file row (1 = the header) of each row kept
    blank: int = 0  # rows left out as blank


def _blank_rows(chunk, columns: Columns, typed: bool) -> np.ndarray:
    """Return where a chunk's row has every wanted cell empty: a blank line, or a spreadsheet's row of bare
    separators (",,,,": Excel writes them for rows that were once formatted, often at the end)."""
    blank = np.ones(len(chunk), dtype=bool)
    for name in chunk.columns:
        cells = chunk[name]
        if typed and name in columns.axes():
            blank &= cells.isna().to_numpy()
        else:
            blank &= (cells.str.strip() == "").to_numpy()
    return blank


def _decimal_mark(path: Path, sep: str) -> str:
    """Return the decimal mark to read numbers with: "." where commas separate fields, else "," when the first
    data line holds a comma (a spreadsheet's "0,98"), else "." (a logger's tab-separated "0.98")."""
    if sep == ",":
        return "."
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding=encoding(path), errors="replace") as f:
            f.readline()
            return "," if "," in f.readline() else "."
    except OSError:
        return "."


def _read_chunks(path: Path, columns: Columns, sep: str, typed: bool):
    """Yield the file's wanted columns CHUNK_ROWS rows at a time: the axes as float64 when typed (any cell that
    does not parse raises _Untyped), else as text; animal, bout, label and time as text."""
    import pandas as pd

    texts = {c: str for c in (columns.animal, columns.bout, columns.label) if c}
    dtype = {**texts, **({c: "float64" for c in columns.axes()} if typed else {c: str for c in columns.axes()})}
    if columns.time:
        dtype[columns.time] = str
    wanted = list(dtype)
    # Blank lines are read as rows (of empty cells), not skipped: a row's number is then its line in the file,
    # as the researcher's editor shows it, and `_blank_rows` leaves them out counted.
    empty_axes = {c: [""] for c in columns.axes()} if typed else None
    try:
        reader = pd.read_csv(path, sep=sep, usecols=wanted, dtype=dtype, keep_default_na=False, na_values=empty_axes,
                             skipinitialspace=True, decimal=_decimal_mark(path, sep) if typed else ".",
                             skip_blank_lines=False, encoding=encoding(path), chunksize=CHUNK_ROWS)
        with reader:
            yield from reader
    except (ValueError, TypeError):
        if typed:  # pandas names no row of a cell it cannot read as a number
            raise _Untyped from None
        raise


def _read_table(path: Path, columns: Columns, sep: str, factor: float, typed: bool) -> _Table:
    """Return the file's columns, or raise DataError naming the first bad cell (axes, then label, time, animal)."""
    import pandas as pd

    source = str(path)
    faults: dict[str, _Fault] = {}
    labels, animal = _Codes(), _Codes() if columns.animal else None
    bout = _Codes() if columns.bout else None
    samples: list[np.ndarray] = []
    times: list[np.ndarray] = []
    time_mode: list[str] = []  # "seconds" or "iso", from the first chunk
    done = 0
    kept_lines: list[np.ndarray] = []
    blank_rows = 0

    def fault(column: str, bad: np.ndarray, text) -> None:
        if not bad.any():
            return
        i = _first_bad(bad)
        found = faults.setdefault(column, _Fault(int(lines[i]), str(text(i))))
        found.count += int(bad.sum())

    for chunk in _read_chunks(path, columns, sep, typed):
        blank = _blank_rows(chunk, columns, typed)
        lines = done + 2 + np.flatnonzero(~blank)  # file rows: the header is row 1
        done += len(chunk)
        if blank.any():
            blank_rows += int(blank.sum())
            chunk = chunk[~blank]
        kept_lines.append(lines)
        n = len(chunk)
        block = np.empty((n, 3), dtype=np.float64)
        for a, name in enumerate(columns.axes()):
            if typed:
                values = chunk[name].to_numpy(dtype=np.float64)
                if not np.isfinite(values).all():
                    raise _Untyped
            else:
                text = chunk[name].str.strip()
                if sep != ",":  # where commas do not separate fields, a number's comma is its decimal mark ("0,98")
                    text = text.str.replace(",", ".", regex=False)
                values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
                fault(name, ~np.isfinite(values), lambda i, cells=chunk[name]: cells.iloc[i])
            block[:, a] = values * factor
        samples.append(block)
        for kept, name in ((labels, columns.label), (animal, columns.animal)):
            if kept is not None:  # a label or an animal id spelt as a missing value (NA, N/A, ...) is missing
                codes, values = kept.add(chunk[name]), kept.values()
                fault(name, is_missing(values)[codes], lambda i, codes=codes, values=values: values[codes[i]])
        if bout is not None:
            bout.add(chunk[columns.bout])
        if columns.time:
            seconds, bad = _chunk_times(chunk[columns.time], sep, time_mode)
            fault(columns.time, bad, lambda i, cells=chunk[columns.time]: cells.iloc[i].strip())
            times.append(seconds)

    for name in (*columns.axes(), columns.label, columns.time, columns.animal):
        found = faults.get(name)
        if found is None:
            continue
        if name in columns.axes():
            raise DataError(source, f"{found.text!r} is not a number ({found.count} such rows)",
                            row=found.row, column=name)
        if name == columns.label:
            raise DataError(source, f"no label ({found.text!r}; {found.count} such rows): remove or label them",
                            row=found.row, column=name)
        if name == columns.time:
            raise DataError(source, f"{found.text!r} is neither seconds nor an ISO 8601 time",
                            row=found.row, column=name)
        raise DataError(source, f"no animal id ({found.text!r})", row=found.row, column=name)
    lines = np.concatenate(kept_lines) if kept_lines else np.zeros(0, dtype=np.int64)
    return _Table(np.concatenate(samples) if samples else np.zeros((0, 3)),
                  (np.concatenate(times) if times else np.zeros(0)) if columns.time else None,
                  labels, animal, bout, len(lines), lines, blank_rows)


def _chunk_times(column, sep: str, mode: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return a chunk's times in seconds (numbers as given, ISO 8601 as seconds since the epoch) and where they
    do not parse; the first chunk decides whether the column is seconds or ISO 8601 (`mode`)."""
    import pandas as pd

    text = column.str.strip()
    if sep != ",":
        text = text.str.replace(",", ".", regex=False)
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    finite = np.isfinite(numbers)
    if not mode:
        mode.append("seconds" if finite.all() or finite.any() else "iso")
    if mode[0] == "seconds":  # a numeric column with a few broken cells: name those
        return numbers, ~finite
    stamps = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    seconds = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)
    return seconds, stamps.isna().to_numpy()


def _load_one(path: Path, columns: Columns, factor: float, rate_hz: float | None, split_gaps: bool,
              units: str = "g") -> Loaded:
    import pandas as pd

    source = str(path)
    try:
        sep = separator(path)
        header = list(pd.read_csv(path, sep=sep, nrows=0, skipinitialspace=True, encoding=encoding(path)).columns)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except (OSError, ValueError) as err:
        raise DataError(source, f"cannot read as CSV: {err}") from None
    wanted = [c for c in (columns.animal, columns.bout, columns.time, *columns.axes(), columns.label) if c]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(source, f"missing column(s) {missing}; the file has {header} "
                        "(name yours with --columns role=name,... or a dataset TOML)", row=1, column=missing[0])
    try:
        try:
            table = _read_table(path, columns, sep, factor, typed=True)
        except _Untyped:  # read again as text, to name the cell that is not a number
            table = _read_table(path, columns, sep, factor, typed=False)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except (OSError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(source, f"cannot read as CSV: {err}") from None
    report = LoadReport(files=[source], rows=table.rows)
    if table.blank:
        report.notes.append(f"{source}: {table.blank} blank row(s) (no value in any column read) left out")
    if table.rows == 0:
        report.notes.append(f"{source}: no rows")
        return Loaded([], report)
    rows = table.lines  # 1-based file rows, the header is row 1
    samples, times = table.samples, table.times
    label_values, labels = table.labels.values(), table.labels.codes()
    animal_values = table.animal.values() if table.animal else None
    animal = table.animal.codes() if table.animal else None
    bout_values = table.bout.values() if table.bout else None
    bout = table.bout.codes() if table.bout else None
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
    key = np.zeros(table.rows, dtype=bool)
    key[0] = True
    if animal is not None:
        key[1:] |= animal[1:] != animal[:-1]
    if bout is not None:
        key[1:] |= bout[1:] != bout[:-1]
    starts = np.flatnonzero(key)
    stops = np.r_[starts[1:], table.rows]

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
        who = None if animal_values is None else str(animal_values[animal[start]])
        name = bout_values[bout[start]] if bout_values is not None else f"rows {rows[start]}-{rows[stop - 1]}"
        recordings.append(Recording(
            animal=who,
            bout=f"{path.name}:{'' if who is None else who}:{name}",
            rate_hz=float(rate),
            samples_mg=samples[start:stop],
            labels=label_values[labels[start:stop]],
            source=f"{source}, row {rows[start]}",
            start_s=float(times[start]) if times is not None else 0.0,
        ))
    check_gravity(recordings, source, factor, units)
    return Loaded(recordings, report)


def _by_bout_then_time(animal: np.ndarray | None, bout: np.ndarray | None, times: np.ndarray) -> np.ndarray | None:
    """Return the row order that puts each (animal, bout) together in time order, first seen first, or None
    when every (animal, bout) already is one run of rows (animal and bout as codes, e.g. `_Codes.codes()`)."""
    parts = [p.astype(np.int64) for p in (animal, bout) if p is not None]
    keys = parts[0] if len(parts) == 1 else parts[0] * (int(parts[1].max()) + 1) + parts[1]
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
