"""Edge Impulse data acquisition format (JSON or CBOR), import and export.

As Edge Impulse documents it: an object with `protected` (`ver` "v1", `alg` "HS256" or "none",
optional `iat`, when the file was made: not read, it is no time of the samples), `signature` (hex
HMAC-SHA256) and `payload` (`device_type` required, `device_name` optional, `interval_ms`, `sensors` as
[{"name", "units"}], `values` as one list per sample). The label is not in the payload. Studio's data
export (the "Edge Impulse exporter format")
keeps it in an `info.labels` JSON file, at the export's root or in its `training/` and `testing/`
folders: `files` lists each sample's `path` with `label` of `type` "label" (one `label`),
"multi-label" (`labels` with `startIndex` and `endIndex` in milliseconds) or "unlabeled". Tembo reads
it as Studio does, so a sample relabelled in Studio keeps its new label, whatever its file is called. A sample
is known by its content (`sample_id`), so one sample in two exports under two labels is trained on once, under
the later export's label (`models.sources.without_duplicates`).
Without one, the label comes from the file name as Studio's uploader reads it: the leading letters,
digits, spaces, `-` and `_` (`walk.01.json` and `walk (2).json` are both `walk`).

A signed file is checked when an HMAC key is given: the signature is HMAC-SHA256 over the file's
JSON with the signature field set to 64 zeros, the way Edge Impulse's examples sign. The check hashes
the file's own bytes with its signature zeroed, never a re-encoding of it: Edge Impulse's Node.js
example and data forwarder sign `JSON.stringify` (no spaces), its Python example `json.dumps`, and a
re-encoded file would differ from both in spacing, key order or number spelling. Without a key the
signatures are counted as not verified in the report.

A `.cbor` file is the same document in CBOR (RFC 8949), as Edge Impulse's uploader takes it; its signature is
checked the same way, over the file's own bytes with the signature's 64 characters set to zeros.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from models import cbor_reader
from models.csv_source import GAP_FACTOR, RATE_RANGE_HZ, csv_files, encoding, separator
from models.recordings import (
    DataError,
    Loaded,
    LoadReport,
    Recording,
    check_gravity,
    split_label_runs,
    unit_factor_mg,
)

EMPTY_SIGNATURE = "0" * 64
DEVICE_TYPE = "TEMBO_COLLAR"
AXIS_SENSORS = ("accX", "accY", "accZ")
LABELS_FILE = "info.labels"
EXPORT_FOLDERS = ("training", "testing")  # where Studio's data export puts the samples
STUDIO_LABEL = re.compile(r"^[a-zA-Z0-9\s\-_]+")  # the label Studio's uploader reads from a file name
UNLABELED = "Edge Impulse samples marked unlabeled in info.labels"
EXPORT_UNITS = "m/s2"
SUFFIXES = (".json", ".cbor")  # the data acquisition format's two encodings


def is_edge_impulse(path: str | Path) -> bool:
    """Return True for a .json or .cbor file, the forms of the data acquisition format."""
    return str(path).lower().endswith(SUFFIXES)


def is_edge_impulse_dir(path: str | Path) -> bool:
    """Return True for a folder of data acquisition JSON files or a Studio data export (info.labels)."""
    folder = Path(path)
    names = [q.name.lower() for q in folder.iterdir() if not q.name.startswith(".")]
    if LABELS_FILE in names or any((folder / f).is_dir() and any(map(is_edge_impulse, (folder / f).iterdir()))
                                   for f in EXPORT_FOLDERS):
        return True
    return bool(names) and all(n.endswith(SUFFIXES) for n in names)


def sign(document: dict, key: bytes) -> str:
    """Return the HS256 signature of a data acquisition document (signature field zeroed while signing)."""
    body = dict(document, signature=EMPTY_SIGNATURE)
    return hmac.new(key, json.dumps(body).encode(), hashlib.sha256).hexdigest()


def signed_bytes(raw: bytes, signature: str, cbor: bool = False) -> bytes | None:
    """Return a file's bytes with its top-level signature value set to 64 zeros (what the signer hashed),
    or None when the file does not hold that signature as a JSON string (or, cbor, as a CBOR text string
    after the key "signature")."""
    if cbor:  # text "signature" (0x69 + 9 bytes), then text of 64 bytes (0x78 0x40 + 64 bytes)
        field = re.compile(re.escape(b"\x69signature\x78\x40" + signature.encode()))
        match = field.search(raw)
        if match is None:
            return None
        return raw[:match.end() - len(signature)] + EMPTY_SIGNATURE.encode() + raw[match.end():]
    field = re.compile(rb'"signature"\s*:\s*"' + re.escape(signature.encode()) + rb'"')
    match = field.search(raw)
    if match is None:
        return None
    value_at = match.end() - 1 - len(signature.encode())
    return raw[:value_at] + EMPTY_SIGNATURE.encode() + raw[match.end() - 1:]


def verify(raw: bytes, signature: str, key: bytes, cbor: bool = False) -> bool:
    """Return True when signature is the HS256 signature of the file's bytes with the signature zeroed."""
    body = signed_bytes(raw, signature, cbor) if len(signature) == len(EMPTY_SIGNATURE) else None
    expected = hmac.new(key, body, hashlib.sha256).hexdigest() if body is not None else ""
    return hmac.compare_digest(expected, signature.lower())


def _files(paths: list[str | Path]) -> list[Path]:
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if is_edge_impulse(p))
            for sub in EXPORT_FOLDERS:
                found += sorted(p for p in (path / sub).iterdir() if is_edge_impulse(p)) if (path / sub).is_dir() else []
        elif path.exists():
            found.append(path)
        else:
            raise DataError(str(path), "no such file or folder")
    if not found:
        raise DataError(", ".join(map(str, paths)), "no Edge Impulse JSON or CBOR files found")
    return found


def label_from_name(path: Path) -> str:
    """Return the label Edge Impulse's uploader reads from a file name: its leading letters, digits, spaces,
    `-` and `_` (the part before the first dot when it starts otherwise)."""
    found = STUDIO_LABEL.match(path.name)
    label = found.group(0).strip() if found else ""
    return label or path.name.split(".", 1)[0]


def listed_samples(files: list[Path]) -> list[tuple[str, tuple[Path, Path], dict]]:
    """Return (the sample's `path` in info.labels, the sample file it means: its path from there or, failing that, its name beside
    it, the `label` entry) for every sample the info.labels files beside the samples or one folder up list
    (Studio's data export puts one at its root and may put one in each of training/ and testing/)."""
    listed_ones = []
    folders = {f.parent for f in files} | {f.parent.parent for f in files}
    for labels_file in sorted(folder / LABELS_FILE for folder in folders if (folder / LABELS_FILE).is_file()):
        try:
            listed = json.loads(labels_file.read_text()).get("files", [])
        except (OSError, ValueError, AttributeError) as err:
            raise DataError(str(labels_file), f"not an Edge Impulse info.labels file: {err}") from None
        for item in listed if isinstance(listed, list) else []:
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                candidates = (labels_file.parent / item["path"], labels_file.parent / Path(item["path"]).name)
                listed_ones.append((item["path"], candidates, {**(item.get("label") or {}), "_from": str(labels_file)}))
    return listed_ones


def studio_labels(files: list[Path]) -> dict[Path, dict]:
    """Return {sample file: its `label` entry} from the info.labels files beside the samples or one folder up."""
    found: dict[Path, dict] = {}
    for _path, candidates, spec in listed_samples(files):
        for candidate in candidates:
            found.setdefault(candidate.resolve(), spec)
    return found


def missing_samples(paths: list[str | Path], files: list[Path]) -> list[str]:
    """Return the samples an info.labels lists in the folders given (and their training/ and testing/) that are
    not there (an export unzipped in part), each as its path in info.labels, once."""
    have = {f.resolve() for f in files}
    folders = {(Path(p) / sub).resolve() for p in paths if Path(p).is_dir() for sub in ("", *EXPORT_FOLDERS)}
    missing: dict[Path, str] = {}
    for path, candidates, _spec in listed_samples(files):
        if not any(c.resolve() in have for c in candidates) and candidates[0].parent.resolve() in folders:
            missing.setdefault(candidates[0].resolve(), path)
    return list(missing.values())


def sample_id(animal: str | None, rate_hz: float, samples_mg: np.ndarray) -> str:
    """Return what identifies an Edge Impulse sample from one export to the next: its content (device, rate,
    values). Not its file name, which Studio's export starts with the label; not its signature or `iat`, made
    anew by each export; not info.labels' `name`, which "does not have to match the file name". Edge Impulse
    itself finds a sample already in a dataset by the hash of its data (the ingestion API's
    x-disallow-duplicates), and the label is no part of the data."""
    h = hashlib.sha256(np.ascontiguousarray(samples_mg, dtype=np.float64).tobytes())
    h.update(repr((animal, round(float(rate_hz), 6))).encode())
    return h.hexdigest()[:16]


def _sample_labels(spec: dict | None, path: Path, n: int, interval_ms: float) -> np.ndarray | None:
    """Return the label of each of n samples from an info.labels entry (None: marked unlabeled), or from the
    file name when info.labels does not list the file."""
    if spec is None:
        return np.full(n, label_from_name(path))
    kind, source = spec.get("type"), f"{spec['_from']} for {path.name}"
    if kind == "unlabeled":
        return None
    if kind == "label" and isinstance(spec.get("label"), str) and spec["label"].strip():
        return np.full(n, spec["label"].strip())
    if kind == "multi-label" and isinstance(spec.get("labels"), list) and spec["labels"]:
        at_ms = np.arange(n) * float(interval_ms)
        labels = np.full(n, "", dtype=object)
        for part in spec["labels"]:
            try:
                inside = (at_ms >= float(part["startIndex"])) & (at_ms <= float(part["endIndex"]))
                labels[inside] = str(part["label"]).strip()
            except (KeyError, TypeError, ValueError):
                raise DataError(source, f"a multi-label part {part!r} needs label, startIndex and endIndex (ms)",
                                column="label.labels") from None
        if (labels == "").any():
            first = int(np.flatnonzero(labels == "")[0])
            raise DataError(source, f"sample {first} ({at_ms[first]:g} ms) is in no multi-label part",
                            column="label.labels")
        return labels.astype(str)
    raise DataError(source, f"label {spec!r} is not of type label, multi-label or unlabeled", column="label")


def load_edge_impulse(paths: list[str | Path], hmac_key: bytes | None = None) -> Loaded:
    """Return one recording per data acquisition file (label from info.labels or the file name, animal from
    device_name)."""
    loaded = Loaded([], LoadReport())
    unverified = 0
    files = _files(paths)
    listed = studio_labels(files)
    for path in files:
        recording, verified = _load_one(path, hmac_key, listed.get(path.resolve()))
        loaded.report.files.append(str(path))
        loaded.report.rows += len(recording.samples_mg)
        unverified += not verified
        if recording.labels is None:
            loaded.report.leave_out(UNLABELED, len(recording.samples_mg))
            loaded.withdrawn.append(replace(recording, labels=np.full(len(recording.samples_mg), "")))
            continue
        loaded.recordings.append(recording)
    if unverified:
        loaded.report.notes.append(f"{unverified} Edge Impulse file(s) with signatures not verified (no HMAC key "
                                   "given, or alg none)")
    missing = missing_samples(paths, files)
    if missing:
        loaded.report.notes.append(f"{len(missing)} sample(s) listed in info.labels are not in the export (e.g. "
                                   f"{', '.join(missing[:3])}): an export unzipped in part? Not trained on")
    return loaded


def _load_one(path: Path, hmac_key: bytes | None, label_spec: dict | None = None) -> tuple[Recording, bool]:
    source = str(path)
    cbor = path.suffix.lower() == ".cbor"
    try:
        raw = path.read_bytes()
        document = cbor_reader.decode(raw) if cbor else json.loads(raw)
    except (OSError, ValueError) as err:
        raise DataError(source, f"not {'CBOR' if cbor else 'JSON'}: {err}") from None
    if not isinstance(document, dict):
        raise DataError(source, "not an Edge Impulse data acquisition file (a JSON object)")
    for key in ("protected", "signature", "payload"):
        if key not in document:
            raise DataError(source, f"missing {key!r}: not an Edge Impulse data acquisition file", column=key)
    protected, payload = document["protected"], document["payload"]
    if not isinstance(payload, dict):
        raise DataError(source, "payload must be a JSON object", column="payload")
    if not isinstance(protected, dict) or protected.get("ver") != "v1":
        raise DataError(source, "protected.ver must be 'v1'", column="protected.ver")
    alg = protected.get("alg")
    if alg not in ("HS256", "none"):
        raise DataError(source, f"protected.alg {alg!r} is neither 'HS256' nor 'none'", column="protected.alg")
    verified = False
    if alg == "HS256" and hmac_key is not None:
        if not verify(raw, str(document["signature"]), hmac_key, cbor):
            raise DataError(source, "signature does not match the HMAC key", column="signature")
        verified = True
    for key in ("device_type", "interval_ms", "sensors", "values"):
        if key not in payload:
            raise DataError(source, f"payload has no {key!r}", column=f"payload.{key}")
    interval_ms = payload["interval_ms"]
    if not isinstance(interval_ms, int | float) or isinstance(interval_ms, bool) or interval_ms <= 0:
        raise DataError(source, f"interval_ms {interval_ms!r} must be a positive number", column="payload.interval_ms")
    low, high = RATE_RANGE_HZ
    if not low <= 1000.0 / interval_ms <= high:
        raise DataError(source, f"interval_ms {interval_ms!r} is {1000.0 / interval_ms:.4g} Hz, not a rate an "
                        f"accelerometer logs behaviour at ({low:g}-{high:g} Hz): interval_ms is milliseconds "
                        "between samples", column="payload.interval_ms")
    sensors = payload["sensors"]
    names = [s.get("name") if isinstance(s, dict) else None for s in sensors] if isinstance(sensors, list) else []
    axes = [names.index(n) for n in AXIS_SENSORS if n in names]
    if len(axes) != 3:
        raise DataError(source, f"sensors {names} must include {', '.join(AXIS_SENSORS)}", column="payload.sensors")
    units = {sensors[i].get("units") for i in axes}
    if len(units) != 1:
        raise DataError(source, f"the three axes have different units {sorted(map(str, units))}",
                        column="payload.sensors")
    unit = str(units.pop())
    factor = unit_factor_mg(unit, source)
    values = payload["values"]
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(source, "values must be one list of numbers per sample", column="payload.values") from None
    if array.ndim != 2 or array.shape[1] != len(sensors):
        raise DataError(source, f"values must hold {len(sensors)} numbers per sample", column="payload.values")
    bad = ~np.isfinite(array[:, axes]).all(axis=1)
    if bad.any():
        raise DataError(source, "a value is not a finite number", row=int(np.flatnonzero(bad)[0]),
                        column="payload.values")
    labels = _sample_labels(label_spec, path, len(array), float(interval_ms))
    animal = payload.get("device_name") or None
    # No start time: the format holds none for its samples. `protected.iat` is when the file was made (signed),
    # and Studio's export signs each sample anew, so two exports of one project give one sample two iats: as its
    # start it would keep both copies of the sample. The sample is its content (sample_id); iat says which of two
    # exports of it is the later one, whose label wins.
    iat = protected.get("iat")
    labelled_at = float(iat) if isinstance(iat, int | float) and not isinstance(iat, bool) else None
    rate_hz, samples = 1000.0 / float(interval_ms), array[:, axes] * factor
    recording = Recording(animal, path.name, rate_hz, samples, labels, source,
                          sample_id=sample_id(animal, rate_hz, samples), labelled_at=labelled_at)
    check_gravity([recording], source, factor, unit, option="the sensors' units")
    return recording, verified


CSV_TIME = "timestamp"  # Edge Impulse's CSV format: the first column, milliseconds
CSV_LABEL = "label"  # optional: a label per row; else the file name's, as for JSON
CSV_UNITS = "m/s2"  # the CSV names no units: Edge Impulse's accelerometers (and its data forwarder) give m/s2


def is_edge_impulse_csv(path: str | Path) -> bool:
    """Return True for a CSV in Edge Impulse's format: first column `timestamp` (ms), then accX, accY, accZ."""
    import pandas as pd

    path = Path(path)
    try:
        header = [str(c).strip() for c in pd.read_csv(path, sep=separator(path), encoding=encoding(path),
                                                       nrows=0).columns]
    except (OSError, ValueError):
        return False
    return bool(header) and header[0] == CSV_TIME and all(a in header for a in AXIS_SENSORS)


def load_edge_impulse_csv(paths: list[str | Path], units: str = CSV_UNITS) -> Loaded:
    """Return one recording per CSV in Edge Impulse's format (`timestamp` in milliseconds, accX, accY, accZ,
    optionally `label`), labelled by its label column or else by its file name as Studio's uploader reads it."""
    factor = unit_factor_mg(units)
    loaded = Loaded([], LoadReport())
    for path in csv_files(paths):
        recording = _load_csv_one(path, factor)
        check_gravity([recording], str(path), factor, units)
        loaded.recordings.append(recording)
        loaded.report.files.append(str(path))
        loaded.report.rows += len(recording)
    return loaded


def _load_csv_one(path: Path, factor: float) -> Recording:
    import pandas as pd

    source = str(path)
    try:
        table = pd.read_csv(path, sep=separator(path), encoding=encoding(path), dtype=str, keep_default_na=False,
                            skipinitialspace=True)
    except (OSError, ValueError) as err:
        raise DataError(source, f"cannot read as CSV: {err}") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in (CSV_TIME, *AXIS_SENSORS) if c not in table.columns]
    if missing:
        raise DataError(source, f"missing column(s) {missing} of Edge Impulse's CSV format; the file has "
                        f"{list(table.columns)}", row=1, column=missing[0])
    if table.empty:
        raise DataError(source, "no samples")
    decimal_comma = separator(path) != ","
    numbers = {}
    for column in (CSV_TIME, *AXIS_SENSORS):
        text = table[column].str.strip()
        if decimal_comma:
            text = text.str.replace(",", ".", regex=False)
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(source, f"{table[column].iloc[i]!r} is not a number", row=i + 2, column=column)
        numbers[column] = values
    steps = np.diff(numbers[CSV_TIME])
    if (steps <= 0).any():
        i = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise DataError(source, "timestamp does not increase", row=i + 2, column=CSV_TIME)
    step_ms = float(np.median(steps)) if len(steps) else float("nan")
    low, high = RATE_RANGE_HZ
    if not low <= 1000.0 / step_ms <= high:
        raise DataError(source, f"timestamps {step_ms:g} apart are {1000.0 / step_ms:.4g} Hz as milliseconds, not a "
                        f"rate an accelerometer logs behaviour at ({low:g}-{high:g} Hz)", row=2, column=CSV_TIME)
    gaps = np.flatnonzero(steps > GAP_FACTOR * step_ms)
    if len(gaps):
        raise DataError(source, f"gap of {steps[gaps[0]]:g} ms (samples every {step_ms:g} ms): one sample is one "
                        "stretch of steady sampling", row=int(gaps[0]) + 3, column=CSV_TIME)
    if CSV_LABEL in table.columns:
        labels = table[CSV_LABEL].str.strip().to_numpy(dtype=str)
        missing = np.flatnonzero(labels == "")
        if len(missing):
            raise DataError(source, "no label", row=int(missing[0]) + 2, column=CSV_LABEL)
    else:
        labels = np.full(len(table), label_from_name(path))
    samples = np.column_stack([numbers[a] for a in AXIS_SENSORS]) * factor
    return Recording(None, path.name, 1000.0 / step_ms, samples, labels, f"{source}, row 2",
                     sample_id=sample_id(None, 1000.0 / step_ms, samples))


def export_edge_impulse(loaded: Loaded, out_dir: str | Path, hmac_key: bytes | None = None,
                        device_type: str = DEVICE_TYPE) -> list[Path]:
    """Write one data acquisition file per label run (`LABEL.ANIMAL_BOUT.json`, m/s2, `_2`, `_3`, ... added to a
    name another run of this export already has) and an info.labels naming each file's label exactly, so
    Studio's uploader and Tembo read every label as it is, whatever characters its file-name rule would drop;
    return the JSON paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_g = 1.0 / unit_factor_mg(EXPORT_UNITS)
    written: list[Path] = []
    used: set[Path] = set()
    listed: list[dict] = []
    for recording in loaded.recordings:
        for run in split_label_runs(recording):
            label = str(run.labels[0])
            payload = {"device_type": device_type, "interval_ms": round(1000.0 / run.rate_hz, 6),
                       "sensors": [{"name": n, "units": EXPORT_UNITS} for n in AXIS_SENSORS],
                       "values": np.round(run.samples_mg * per_g, 5).tolist()}
            if run.animal:
                payload = {"device_name": run.animal, **payload}
            document = {"protected": {"ver": "v1", "alg": "HS256" if hmac_key else "none", "iat": int(time.time())},
                        "signature": EMPTY_SIGNATURE, "payload": payload}
            if hmac_key:
                document["signature"] = sign(document, hmac_key)
            stem = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{run.animal or 'animal'}_{run.bout}")
            prefix = re.sub(r"[^A-Za-z0-9 _-]+", "_", label)  # the label where Studio's file-name rule reads it
            path = out / f"{prefix}.{stem}.json"
            copies = 1
            while path in used:  # files of the same name in other folders, or names equal once made safe
                copies += 1
                path = out / f"{prefix}.{stem}_{copies}.json"
            used.add(path)
            path.write_text(json.dumps(document))
            written.append(path)
            listed.append({"path": path.name, "name": path.stem, "category": "training",
                           "label": {"type": "label", "label": label}})
    (out / LABELS_FILE).write_text(json.dumps({"version": 1, "files": listed}, indent=1))
    return written
