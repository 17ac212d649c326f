"""The newest fix, behaviour and collar report each animal had by a cutoff: what a role with a delay
sees as "latest"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Subquery

from lora_bridge.decode import decode_payload, message_time
from lora_bridge.domain.devices import STATUS_FIELDS, status_flag_names
from lora_bridge.ingest import STATUS_PROCESSED
from lora_bridge.store.tables import IS_AN_ANIMAL, ActivitySummary, Animal, Position, RawUplink
from lora_bridge.store.utc import as_utc
from lora_bridge.views import PositionView

STATUS_MESSAGE = "status"  # the codec's name of a collar's status (battery, temperature, versions)


@dataclass(frozen=True)
class CollarReport:
    """What an animal's collar had been heard to report by a cutoff: when it was last heard (and that
    uplink's counter and radio), and its newest status then (battery, temperature, versions, health
    and flags: `in_farmland`, `outside_park` say where the animal is; None without one)."""

    last_seen: datetime | None
    battery_mv: int | None = None
    temperature_c: float | None = None
    fw_version: str | None = None
    model_version: int | None = None
    last_f_cnt: int | None = None
    last_rssi_dbm: float | None = None
    last_snr_db: float | None = None
    uptime_h: int | None = None
    reset_cause: str | None = None
    queue_depth: int | None = None
    errors: int | None = None
    flags: dict[str, bool] = field(default_factory=dict)
    status_time: datetime | None = None  # the collar's time of that status (when it had none: its reception)


# What a collar's view (`DeviceView`) takes from its report for a role with a delay: every field it has.
REPORTED_DEVICE_FIELDS = tuple(item.name for item in fields(CollarReport) if item.name != "status_time")


def high_value_flags(session: Session) -> dict[str, bool]:
    """Animal id (as the views name it) -> whether it is flagged high-value."""
    return {str(key): bool(flag) for key, flag in session.execute(select(Animal.id, Animal.high_value)).all()}


def latest_fixes_by(session: Session, cutoffs: Mapping[datetime, Iterable[str]]) -> list[PositionView]:
    """For each cutoff, the newest fix at or before it of each of its animal ids; ordered by name. A collar
    in stock (`Animal.holds_collar_in_stock`) is no animal: its fixes are left out."""
    views: list[PositionView] = []
    for cutoff, animal_ids in cutoffs.items():
        keys = [int(a) for a in animal_ids]
        if not keys:
            continue
        newest = _newest_times(Position, keys, cutoff)
        rows = session.execute(
            select(Position, Animal)
            .join(newest, (Position.animal_id == newest.c.animal_id) & (Position.time == newest.c.time))
            .join(Animal, Animal.id == Position.animal_id)
            .where(IS_AN_ANIMAL)
        ).all()
        seen: set[int] = set()
        for position, animal in rows:
            if animal.id in seen:  # two collars' fixes at the same instant: one is enough
                continue
            seen.add(animal.id)
            views.append(
                PositionView(
                    animal_id=str(animal.id),
                    name=animal.name,
                    device_id=position.device_id,
                    time=position.time,
                    lat=position.lat,
                    lon=position.lon,
                    position_id=position.id,
                )
            )
    return sorted(views, key=lambda view: view.name)


def behaviour_by(session: Session, cutoffs: Mapping[datetime, Iterable[str]]) -> dict[str, str | None]:
    """For each cutoff, the dominant behaviour of the newest activity summary of each of its animal
    ids that ended by it (animal id -> behaviour; an animal without one is left out)."""
    found: dict[str, str | None] = {}
    for cutoff, animal_ids in cutoffs.items():
        running: dict[int, list[int]] = {}  # interval (min) -> animals whose newest summary runs past the cutoff
        for row in _newest_summaries(session, [int(a) for a in animal_ids], cutoff):
            if row.time + timedelta(minutes=row.interval_min) <= cutoff:
                found[str(row.animal_id)] = row.dominant
            else:
                running.setdefault(row.interval_min, []).append(row.animal_id)
        for interval_min, keys in running.items():  # the summary before it, started an interval earlier
            for row in _newest_summaries(session, keys, cutoff - timedelta(minutes=interval_min)):
                if row.time + timedelta(minutes=row.interval_min) <= cutoff:
                    found[str(row.animal_id)] = row.dominant
    return found


def _newest_summaries(session: Session, keys: list[int], bound: datetime) -> list[ActivitySummary]:
    """The newest activity summary of each animal of keys that started at or before bound."""
    if not keys:
        return []
    newest = _newest_times(ActivitySummary, keys, bound)
    rows = session.scalars(
        select(ActivitySummary).join(
            newest,
            (ActivitySummary.animal_id == newest.c.animal_id) & (ActivitySummary.time == newest.c.time),
        )
    ).all()
    return list({row.animal_id: row for row in rows}.values())  # two collars' summaries at one instant: one


def _newest_times(model: Any, keys: list[int], bound: datetime) -> Subquery:
    """(animal_id, time) of the newest row of model (a fix, an activity summary) of each animal of
    keys at or before bound."""
    return (
        select(model.animal_id, func.max(model.time).label("time"))
        .where(model.time <= bound, model.animal_id.in_(keys))
        .group_by(model.animal_id)
        .subquery()
    )


def collar_reports_by(session: Session, cutoffs: Mapping[datetime, Iterable[str]], codec: Any) -> dict[str, CollarReport]:
    """For each cutoff, what each of its animal ids' collar had been heard to report by it (animal id
    -> report): its newest uplink heard by then, and its newest status heard by then. A collar's last
    report, battery, temperature and flags are as telling as its fix: a role with a delay reads them
    as late as its fixes. Only what the collar said on this animal: an uplink heard before its fitting
    (`Animal.collar_fitted_at`), or a status dated before it (a previous wearer's backlog heard after
    the swap), was another animal's, and says nothing of when this one was last heard or where it is."""
    reports: dict[str, CollarReport] = {}
    for cutoff, animal_ids in cutoffs.items():
        rows = session.execute(
            select(Animal.id, Animal.device_id, Animal.collar_fitted_at, _newest_heard(cutoff),
                   _newest_heard(cutoff, RawUplink.message == STATUS_MESSAGE))
            .where(Animal.id.in_([int(a) for a in animal_ids]), Animal.device_id.is_not(None))
        ).all()
        uplinks = {
            row.id: row
            for row in session.execute(
                select(RawUplink.id, RawUplink.heard_at, RawUplink.f_cnt, RawUplink.best_rssi_dbm,
                       RawUplink.best_snr_db, RawUplink.f_port, RawUplink.payload)
                .where(RawUplink.id.in_({raw_id for row in rows for raw_id in row[3:] if raw_id is not None}))
            ).all()
        }
        for key, device_id, fitted_at, last_id, status_id in rows:
            last, status = uplinks.get(last_id), uplinks.get(status_id)
            said = _said(codec, status)
            if status is not None and fitted_at is not None and \
                    message_time(said, status.heard_at, heard_at=status.heard_at) < as_utc(fitted_at):
                # the previous wearer's backlog status, heard since the fitting: this animal's own is older
                status, said = _own_status(session, codec, device_id, as_utc(fitted_at), cutoff)
            version = said.get("fw_version")
            reports[str(key)] = CollarReport(
                last_seen=last.heard_at if last else None,
                last_f_cnt=last.f_cnt if last else None,
                last_rssi_dbm=last.best_rssi_dbm if last else None,
                last_snr_db=last.best_snr_db if last else None,
                fw_version=None if version is None else str(version),
                flags={name: bool(said[name]) for name in status_flag_names(codec) if name in said},
                status_time=message_time(said, status.heard_at, heard_at=status.heard_at) if status else None,
                **{name: said.get(name) for name in _STATUS_VALUES},
            )
    return reports


def _said(codec: Any, status: Any) -> dict[str, Any]:
    """What a status uplink's payload says (empty for none)."""
    if status is None or not status.payload or status.f_port is None:
        return {}
    return decode_payload(codec, status.f_port, status.payload).fields or {}


OWN_STATUSES_READ = 20  # statuses heard since a fitting looked through for the animal's own, newest first


def _own_status(session: Session, codec: Any, device_id: str, fitted_at: datetime,
                cutoff: datetime) -> tuple[Any, dict[str, Any]]:
    """The newest status of collar device_id heard from fitted_at to cutoff and dated since fitted_at
    (not a previous wearer's backlog), and what it says; (None, {}) when none of the newest
    OWN_STATUSES_READ is. Read only when the newest one heard was such a backlog."""
    for status in session.execute(
        select(RawUplink.id, RawUplink.heard_at, RawUplink.f_port, RawUplink.payload)
        .where(RawUplink.device_id == device_id, RawUplink.heard_at >= fitted_at, RawUplink.heard_at <= cutoff,
               RawUplink.status == STATUS_PROCESSED, RawUplink.message == STATUS_MESSAGE)
        .order_by(RawUplink.heard_at.desc())
        .limit(OWN_STATUSES_READ)
    ).all():
        said = _said(codec, status)
        if message_time(said, status.heard_at, heard_at=status.heard_at) >= fitted_at:
            return status, said
    return None, {}


def _newest_heard(cutoff: datetime, *where: Any) -> Any:
    """The id of the animal's collar's newest uplink (that also meets `where`) heard by cutoff and since
    the animal's fitting, as a subquery of a select over animals (one seek in the index of uplinks by
    collar and time)."""
    return (
        select(RawUplink.id)
        .where(RawUplink.device_id == Animal.device_id, RawUplink.heard_at <= cutoff,
               or_(Animal.collar_fitted_at.is_(None), RawUplink.heard_at >= Animal.collar_fitted_at),
               RawUplink.status == STATUS_PROCESSED, *where)
        .order_by(RawUplink.heard_at.desc())
        .limit(1)
        .scalar_subquery()
    )


# What a status says that a report carries as it is (the firmware version becomes text; the behaviour
# a role with a delay reads from the activity summaries, `behaviour_by`).
_STATUS_VALUES = tuple(name for name in STATUS_FIELDS if name not in ("fw_version", "behaviour"))
