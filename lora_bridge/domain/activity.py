"""Activity summaries: how an animal spent each interval, by behaviour class."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from lora_bridge.store import bulk
from lora_bridge.store.tables import ActivitySummary

log = logging.getLogger(__name__)


def shares_by_class(shares: list[float], class_names: list[str]) -> dict[str, float]:
    """{class name: percent of the interval}; classes beyond the known names are named class_<i>.

    The codec already turns the wire's half-percent u8 into percent.
    """
    result: dict[str, float] = {}
    for index, share in enumerate(shares):
        name = class_names[index] if index < len(class_names) else f"class_{index}"
        result[name] = float(share)
    return result


LATEST_COLUMNS = ("time", "dominant", "shares_pct")


def read_latest_ahead(session: Session, device_ids: list[str]) -> None:
    """The stored newest activity summary of every collar of device_ids read now, together, for their
    `latest` (`bulk.read_newest_ahead`)."""
    bulk.read_newest_ahead(session, ActivitySummary, device_ids, LATEST_COLUMNS, 1)


def latest(session: Session, device_id: str) -> tuple[datetime, str | None, dict[str, float]] | None:
    """The collar's newest activity summary as (time, dominant, shares_pct), the summaries this unit of
    work queued included without writing them first (`bulk.newest_of_collar`)."""
    newest = bulk.newest_of_collar(session, ActivitySummary, device_id, LATEST_COLUMNS, 1)
    if not newest:
        return None
    time, dominant, shares_pct = newest[0]
    return time, dominant, dict(shares_pct or {})


def latest_worn_by(session: Session, device_id: str, animal_id: int,
                   until: datetime) -> tuple[datetime, str | None, dict[str, float]] | None:
    """As `latest`, of the collar's summaries filed under animal_id that started at or before until
    (a previous wearer's backlog alert: her behaviour, not the new wearer's)."""
    newest = bulk.newest_of_wearer(session, ActivitySummary, device_id, animal_id, until, LATEST_COLUMNS, 1)
    if not newest:
        return None
    time, dominant, shares_pct = newest[0]
    return time, dominant, dict(shares_pct or {})


# session.info key: the summaries a unit of work (a batch of uplinks) added, so its later uplinks need
# not flush them to see them.
SUMMARIES_ADDED = "tembo_summaries_added"


def add_activity(
    session: Session,
    *,
    device_id: str,
    animal_id: int | None,
    time: datetime,
    fields: dict[str, Any],
    class_names: list[str],
    raw_uplink_id: int | None,
) -> dict[str, Any] | None:
    """Store one activity summary unless this unit of work already has one of this collar for that
    interval start (one the store already holds is kept as it is); the queued row, or None.

    The row is written with the unit of work's other summaries in one statement (`store.bulk`),
    before anything reads the store again in that unit of work.
    """
    added = session.info.setdefault(SUMMARIES_ADDED, set())  # (device, time) added in this unit of work
    if (device_id, time) in added:
        return None
    added.add((device_id, time))
    shares = shares_by_class([float(s) for s in fields.get("shares") or []], class_names)
    # the class of the largest share (the first of equals): keyed by the dict's own look-up, not a lambda
    # called for every class of every summary
    dominant = max(shares, key=shares.__getitem__) if shares else None
    row = {
        "device_id": device_id,
        "animal_id": animal_id,
        "time": time,
        "interval_min": int(fields.get("interval_min") or 0),
        "model_version": fields.get("model_version"),
        "vedba_mean_mg": fields.get("vedba_mean_mg"),
        "vedba_max_mg": fields.get("vedba_max_mg"),
        "shares_pct": shares,
        "dominant": dominant,
        "raw_uplink_id": raw_uplink_id,
    }
    bulk.queue_row(session, ActivitySummary.__table__, row)
    return row


# ---- Class names per model version: a model's classes travel with it --------------------------------
# The collar reports the model version in every activity and status message; its shares and its
# behaviour index are in that model's class order. The bridge reads the class list from the model's
# blob: the one shipped with the firmware, and every blob in the researchers' model registry
# (`tembo models train` registers them under <registry>/entries/*/model.bin). An unknown version
# names its classes class_<i> (and logs it), never a fixed list that may be another model's.

REGISTRY_BLOBS = "entries/*/model.bin"
_catalogs: dict[str, tuple[float, dict[int, list[str]]]] = {}


def _blob_classes(data: bytes) -> tuple[int, list[str]] | None:
    from collar_firmware.blob import ModelError, parse

    try:
        parsed = parse(data)
    except ModelError:
        return None
    return int(parsed.model_version), [str(c) for c in parsed.classes]


# session.info key: the registry's catalog as a unit of work (a batch of uplinks) first looked at it.
CATALOGS_READ = "tembo_model_catalogs"


def model_classes_of_unit(session: Any, registry_dir: str | None) -> dict[int, list[str]]:
    """model_classes(registry_dir), looked at once per unit of work (not once per uplink: the registry
    is a folder of files, globbed and stat-ed each time); a model registered meanwhile is seen by the
    next unit of work."""
    read = session.info.setdefault(CATALOGS_READ, {})
    key = str(registry_dir)
    if key not in read:
        read[key] = model_classes(registry_dir)
    return read[key]


def model_classes(registry_dir: str | None) -> dict[int, list[str]]:
    """{model version: class names} of the shipped model and every registered blob (re-read when the registry changes)."""
    from pathlib import Path

    from collar_firmware.classifier import read_default_blob

    root = Path(registry_dir) if registry_dir else None
    blobs = sorted(root.glob(REGISTRY_BLOBS)) if root is not None and root.exists() else []
    stamp = max([p.stat().st_mtime for p in blobs], default=0.0) + len(blobs)
    key = str(root)
    cached = _catalogs.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    catalog: dict[int, list[str]] = {}
    for data in [read_default_blob()] + [p.read_bytes() for p in blobs]:
        found = _blob_classes(data)
        if found is not None:
            catalog[found[0]] = found[1]
    _catalogs[key] = (stamp, catalog)
    return catalog


def class_names_for(model_version: int | None, registry_dir: str | None, session: Any = None) -> list[str]:
    """Class names of a model version, in its class-index order; [] when the bridge does not know the version.
    With session: the registry as that unit of work saw it (`model_classes_of_unit`)."""
    catalog = model_classes_of_unit(session, registry_dir) if session is not None else model_classes(registry_dir)
    names = catalog.get(int(model_version)) if model_version is not None else None
    if names is None:
        log.warning("activity of an unknown model version: shares named class_<i>",
                    extra={"model_version": model_version, "registry": registry_dir})
        return []
    return names


def behaviour_name(model_version: int | None, index: int | None, registry_dir: str | None,
                   session: Any = None) -> str | None:
    """Name of a status message's behaviour index under its model version (None when unknown)."""
    if index is None:
        return None
    names = class_names_for(model_version, registry_dir, session)
    return names[index] if 0 <= index < len(names) else None


def status_behaviour(fields: dict[str, Any], codec: Any, registry_dir: str | None, session: Any = None) -> str | None:
    """The behaviour a status message reports, named by the class list of the model version it carries.

    The codec decodes the wire's index with its own enum list; the index is what the collar sent.
    """
    decoded = fields.get("behaviour")
    if decoded is None:
        return None
    wire = list(getattr(codec, "BEHAVIOURS", ()))
    text = str(decoded)
    if text in wire:
        index = wire.index(text)
    elif text.startswith("unknown_") and text[8:].isdigit():
        index = int(text[8:])
    else:
        return text
    return behaviour_name(fields.get("model_version"), index, registry_dir, session) or f"class_{index}"
