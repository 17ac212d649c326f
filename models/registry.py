"""The local model registry: every trained model with its blob, data fingerprint, settings, metrics,
budget, who trained it and when; and the one model promoted for roll-out.

Layout (docs/researchers.md; `tembo release model` reads `promoted.json`):

    <registry>/                      TEMBO_MODEL_REGISTRY, default var/models
      entries/<model_id>/entry.json  what the model is (see `register`)
      entries/<model_id>/model.bin   the collar blob (unsigned; release signs it)
      promoted.json                  the model marked for roll-out (see `promote`)

Model versions are unique in a registry and above the shipped model's, so the bridge can name an
activity message's shares from the class list of the model version it carries. Two researchers may
train into one registry at once, and a run may be interrupted anywhere:

    versions/<n>/                    a version handed out (`reserve_version`: an atomic mkdir, so two
                                     trainings never get the same one; an interrupted run only skips it)
    versions/<n>/registered/         the version's one registration (an atomic mkdir: a second is refused)
    staging/                         entries being written; one appears under entries/ by an atomic
                                     rename only once complete, so no reader sees half an entry
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from collar_firmware import blob as collar_blob
from collar_firmware import classifier
from models.atomic_file import fsync_folder, replace_file, write_new_file

DEFAULT_REGISTRY = Path("var") / "models"
ENTRIES = "entries"
VERSIONS = "versions"
STAGING = "staging"
REGISTERED = "registered"
PROMOTED = "promoted.json"
BLOB_NAME = "model.bin"
ENTRY_NAME = "entry.json"
PROMOTED_FORMAT = "tembo-promoted-model/1"


class RegistryError(ValueError):
    """A registry operation that cannot be done; the message says why."""


def registry_dir(path: str | Path | None = None) -> Path:
    """Return the registry folder: path, else TEMBO_MODEL_REGISTRY, else var/models."""
    return Path(path or os.environ.get("TEMBO_MODEL_REGISTRY") or DEFAULT_REGISTRY)


@dataclass(frozen=True)
class Entry:
    """One registered model."""

    model_id: str
    folder: Path
    record: dict

    @property
    def blob_path(self) -> Path:
        return self.folder / BLOB_NAME

    @property
    def model_version(self) -> int:
        return int(self.record["model_version"])


def _unique() -> str:
    """Return a name part no other writer uses at the same time (process id and a random token)."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def entries(registry: str | Path | None = None) -> list[Entry]:
    """Return every registered model, oldest version first."""
    root = registry_dir(registry) / ENTRIES
    found = []
    for entry_file in sorted(root.glob(f"*/{ENTRY_NAME}")) if root.exists() else []:
        try:
            record = json.loads(entry_file.read_text())
            found.append(Entry(record["model_id"], entry_file.parent, record))
            int(record["model_version"])
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise RegistryError(f"{entry_file}: not a readable registry entry ({type(err).__name__}: {err}); "
                                "restore it, or move its folder out of the registry") from None
    return sorted(found, key=lambda e: e.model_version)


def find(model_id: str, registry: str | Path | None = None) -> Entry:
    """Return the entry whose id (or unique id prefix, or model version) is model_id."""
    every = entries(registry)
    version = re.fullmatch(r"v?(\d+)", model_id)
    if version:  # "v2" or "2" is model version 2, never also v20, v21, ...
        matches = [e for e in every if e.model_version == int(version.group(1))]
    else:
        matches = [e for e in every if e.model_id == model_id or e.model_id.startswith(model_id)]
    if len(matches) != 1:
        known = ", ".join(e.model_id for e in entries(registry)) or "none"
        raise RegistryError(f"{'no' if not matches else 'more than one'} model matches {model_id!r}; known: {known}")
    return matches[0]


def unsigned(blob: bytes) -> bytes:
    """Return a blob as it was before `tembo release model` signed it (signed flag cleared, trailer dropped):
    the blob the registry holds."""
    if len(blob) < collar_blob.HEADER_SIZE or not blob[5] & collar_blob.FLAG_SIGNED:
        return blob
    body_len = int.from_bytes(blob[8:12], "little")
    header = bytearray(blob[: collar_blob.HEADER_SIZE])
    header[5] &= ~collar_blob.FLAG_SIGNED & 0xFF
    return bytes(header) + blob[collar_blob.HEADER_SIZE : collar_blob.HEADER_SIZE + body_len]


def entry_of_blob(blob: bytes, registry: str | Path | None = None) -> Entry | None:
    """Return the registered entry of this blob, signed for release or not, or None."""
    digest = hashlib.sha256(unsigned(blob)).hexdigest()
    return next((e for e in entries(registry) if e.record.get("blob_sha256") == digest), None)


def shipped_version() -> int:
    """Return the model version of the model shipped with the firmware."""
    return collar_blob.parse(classifier.read_default_blob()).model_version


def _handed_out(registry: str | Path | None) -> list[int]:
    root = registry_dir(registry) / VERSIONS
    return [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.exists() else []


def _entry_versions(registry: str | Path | None) -> list[int]:
    """Return the versions of the entries' folders (v<version>-<sha>), read from their names so that an entry
    whose entry.json was damaged still holds its version."""
    root = registry_dir(registry) / ENTRIES
    named = (re.match(r"v(\d+)-", p.name) for p in root.iterdir()) if root.exists() else ()
    return [int(m.group(1)) for m in named if m]


def next_version(registry: str | Path | None = None) -> int:
    """Return a model version no registered, handed-out or shipped model has (nothing is reserved)."""
    versions = _entry_versions(registry) + _handed_out(registry) + [shipped_version()]
    return max(versions) + 1


def reserve_version(registry: str | Path | None = None) -> int:
    """Return a model version handed out to this caller alone, even with other trainings running at once."""
    root = registry_dir(registry) / VERSIONS
    root.mkdir(parents=True, exist_ok=True)
    version = next_version(registry)
    while True:
        try:
            (root / str(version)).mkdir()
            return version
        except FileExistsError:
            version += 1


def register(blob: bytes, record: dict, registry: str | Path | None = None, extra_files: dict | None = None) -> Entry:
    """Store a blob with its record (dataset, settings, metrics, budget); add who and when; return the entry.

    The blob's own model_version and classes are the record's (the collar reads them from the blob).
    """
    parsed = collar_blob.parse(blob)
    root = registry_dir(registry)
    already = RegistryError(f"model version {parsed.model_version} is already registered")
    if parsed.model_version in _entry_versions(registry):
        raise already
    claim = root / VERSIONS / str(parsed.model_version)
    claim.mkdir(parents=True, exist_ok=True)
    try:
        (claim / REGISTERED).mkdir()  # atomic: of two registrations of one version at once, one wins
    except FileExistsError:
        raise already from None
    digest = hashlib.sha256(blob).hexdigest()
    model_id = f"v{parsed.model_version}-{digest[:10]}"
    folder = root / ENTRIES / model_id
    (root / STAGING).mkdir(parents=True, exist_ok=True)
    (root / ENTRIES).mkdir(parents=True, exist_ok=True)
    staged = root / STAGING / f"{model_id}.{_unique()}"
    try:
        staged.mkdir()
        _write_entry(staged, blob, parsed, digest, model_id, record, extra_files)
        os.rename(staged, folder)  # the entry appears whole, or not at all
        fsync_folder(folder.parent)  # and its name survives a power cut once register returns
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        (claim / REGISTERED).rmdir()  # the version may be registered again
        raise
    return Entry(model_id, folder, json.loads((folder / ENTRY_NAME).read_text()))


def _write_entry(folder: Path, blob: bytes, parsed, digest: str, model_id: str, record: dict,
                 extra_files: dict | None) -> None:
    """Write an entry's blob, extra files and entry.json into folder (fsynced)."""
    write_new_file(folder / BLOB_NAME, blob)
    for name, source in (extra_files or {}).items():
        if Path(source).exists():
            shutil.copyfile(source, folder / name)
    full = {
        "model_id": model_id,
        "model_version": parsed.model_version,
        "classes": list(parsed.classes),
        "window_s": parsed.window_s,
        "rate_hz": parsed.rate_hz,
        "overlap_pct": parsed.overlap_pct,
        "blob": BLOB_NAME,
        "blob_sha256": digest,
        "blob_bytes": len(blob),
        "created_by": getpass.getuser(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **record,
    }
    replace_file(folder / ENTRY_NAME, json.dumps(full, indent=1).encode())


def promote(model_id: str, registry: str | Path | None = None, note: str = "") -> dict:
    """Mark a registered model for roll-out: write promoted.json (read by `tembo release model`); return it."""
    entry = find(model_id, registry)
    blob = entry.blob_path.read_bytes()
    parsed = collar_blob.parse(blob)  # a blob the collar would refuse is never promoted
    if hashlib.sha256(blob).hexdigest() != entry.record["blob_sha256"]:
        raise RegistryError(f"{entry.blob_path} changed since it was registered")
    fuel = entry.record.get("budget", {}).get("fuel_per_window")
    if not isinstance(fuel, int) or isinstance(fuel, bool) or fuel <= 0:
        raise RegistryError(f"{entry.model_id} has no fuel per window measured in its entry (it was registered without "
                            "being trained by tembo models train): whether collars can run it between two windows "
                            "is unknown. Train it with tembo models train, which measures it, and promote that model")
    over = over_collar_budget(entry, blob)
    if over:
        raise RegistryError(f"{entry.model_id} does not fit the collar's budget ({'; '.join(over)}): collars could "
                            "not hold or run it. Train within it (without raising --budget-bytes, --budget-heap or "
                            "--budget-fuel above their defaults) and promote that model")
    promoted = {
        "format": PROMOTED_FORMAT,
        "model_id": entry.model_id,
        "model_version": parsed.model_version,
        "blob": str(entry.blob_path.resolve()),
        "blob_sha256": entry.record["blob_sha256"],
        "blob_bytes": len(blob),
        "classes": list(parsed.classes),
        "window_s": parsed.window_s,
        "rate_hz": parsed.rate_hz,
        "macro_f1": entry.record.get("metrics", {}).get("macro_f1"),
        "cv": entry.record.get("metrics", {}).get("cv"),
        "promoted_by": getpass.getuser(),
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": note,
    }
    replace_file(registry_dir(registry) / PROMOTED, json.dumps(promoted, indent=1).encode())
    return promoted


def over_collar_budget(entry: Entry, blob: bytes) -> list[str]:
    """Return what of a registered model exceeds the collar's own budget (blob bytes from the blob, heap measured
    by loading the blob under MicroPython, once per blob in a process: `budget.measure_heap`, fuel per window as
    measured when it was trained), whatever budget the researcher trained it under."""
    from models import budget as collar_budget

    costs = {**collar_budget.static_costs(blob), **collar_budget.measure_heap(blob)}
    fuel = entry.record.get("budget", {}).get("fuel_per_window")
    return collar_budget.check({**costs, "fuel_per_window": fuel or 0}, collar_budget.Limits())


def promoted(registry: str | Path | None = None) -> dict | None:
    """Return the promoted.json record, or None when nothing is promoted."""
    path = registry_dir(registry) / PROMOTED
    return json.loads(path.read_text()) if path.exists() else None


def _scored_alike(first: Entry, other: Entry) -> bool:
    """True when two models' figures come from the same recordings and the same kind of folds: only then
    does a higher macro-F1 say which model is better."""
    data_a, data_b = first.record.get("dataset", {}), other.record.get("dataset", {})
    if data_a.get("recording_digests") and data_b.get("recording_digests"):
        same_data = data_a["recording_digests"] == data_b["recording_digests"]
    else:
        same_data = data_a.get("fingerprint") is not None and data_a.get("fingerprint") == data_b.get("fingerprint")
    return same_data and first.record.get("metrics", {}).get("cv") == other.record.get("metrics", {}).get("cv")


def not_comparable(rows: list[dict]) -> str | None:
    """Return a warning when compared models were not scored alike (rows from `compare`), else None."""
    apart = [row["model_id"] for row in rows[1:] if not row["scored_alike_first"]]
    if not apart:
        return None
    return (f"{', '.join(apart)} not scored on the same recordings with the same folds as {rows[0]['model_id']}: "
            "their macro-F1 do not say which model is better; train them on the same data to compare")


def compare(model_ids: list[str], registry: str | Path | None = None) -> list[dict]:
    """Return the headline figures of several models side by side; `scored_alike_first` says whether a model's
    figures come from the first model's recordings and kind of folds (only then are they comparable)."""
    rows = []
    first = None
    for model_id in model_ids:
        e = find(model_id, registry)
        first = first or e
        metrics = e.record.get("metrics", {})
        rows.append({
            "model_id": e.model_id, "model_version": e.model_version, "classes": e.record["classes"],
            "cv": metrics.get("cv"), "macro_f1": metrics.get("macro_f1"),
            "baseline_macro_f1": metrics.get("baseline_macro_f1"), "windows": metrics.get("windows"),
            "blob_bytes": e.record["blob_bytes"], "fuel_per_window": e.record.get("budget", {}).get("fuel_per_window"),
            "dataset_fingerprint": e.record.get("dataset", {}).get("fingerprint"),
            "created_by": e.record["created_by"], "created_at": e.record["created_at"],
            "scored_alike_first": _scored_alike(first, e),
        })
    return rows
