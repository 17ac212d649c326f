"""Read-side queries of the bridge: the store's rows turned into the views of lora_bridge.views."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from lora_bridge.domain.alerts import (
    ACTION_ASSIGNED,
    ACTION_RESOLVED,
    OPEN_STATES,
    STATE_RESOLVED,
    as_it_stood,
)
from lora_bridge.store.tables import (
    IS_AN_ANIMAL,
    ActivitySummary,
    Alert,
    AlertEvent,
    Animal,
    DeadLetter,
    Device,
    Downlink,
    Position,
    RawUplink,
)
from lora_bridge.store.utc import as_utc
from lora_bridge.views import (
    ActivityView,
    AlertEventView,
    AlertView,
    AnimalView,
    DeadLetterView,
    DeviceView,
    DownlinkView,
    PositionView,
)

# The dead letters one read of the HTTP API answers when it names no limit: a broken formatter at the network
# server can leave hundreds of thousands, each with its body, and one list of them all did not fit in memory.
DEAD_LETTERS_PAGE = 1000
# The store's keys are 64-bit signed integers: a number past them names no animal (SQLite refused to
# compare one, an OverflowError that the API answered 500).
_KEYS = range(-(2**63), 2**63)


def animal_key(animal_id: str | int) -> int | None:
    """The store key of a public animal id ("7" or 7), or None when it names nothing."""
    try:
        key = int(animal_id)
    except (TypeError, ValueError):
        return None
    return key if key in _KEYS else None


def newest_position_id(device_id: Any, until: datetime | None = None, animal_id: Any = None) -> Any:
    """A correlated scalar subquery: the id of the newest fix of collar `device_id` (a column), at
    or before `until` when given, filed under `animal_id` (a column) when given: a collar moved from
    one animal to another (`herd.fit_collar`) leaves its older fixes to the animal that wore it.

    Answered from the (device_id, time) index, one short index probe per collar, instead of
    grouping every stored position.
    """
    newest = aliased(Position)
    query = select(newest.id).where(newest.device_id == device_id)
    if animal_id is not None:
        query = query.where(newest.animal_id == animal_id)
    if until is not None:
        query = query.where(newest.time <= until)
    return query.order_by(newest.time.desc()).limit(1).scalar_subquery()


def latest_fix_per_animal(session: Session) -> dict[int, tuple[datetime, float, float]]:
    """Each collared animal's newest fix of the collar it wears as (time, lat, lon), by animal id (a
    collar fitted to it after another animal wore it: only the fixes since, which are its own). A collar
    in stock is no animal's (`Animal.holds_collar_in_stock`)."""
    rows = session.execute(
        select(Animal.id, Position.time, Position.lat, Position.lon).join(
            Position, Position.id == newest_position_id(Animal.device_id, animal_id=Animal.id)
        ).where(IS_AN_ANIMAL)
    ).all()
    return {key: (time, lat, lon) for key, time, lat, lon in rows}


def last_gateway_per_device(
    session: Session, device_ids: list[str] | None = None, heard_until: datetime | None = None
) -> dict[str, str]:
    """The gateway that heard each collar's newest uplink best (the strongest RSSI of its copies);
    only the collars of `device_ids` when given, and the newest uplink heard by `heard_until` when
    given (what a role with a delay may see: a gateway places the collar within its range).
    Only uplinks (they have a frame counter): a network event of the collar (a ChirpStack status, a
    delivery report) came through no gateway, and had hidden the collar's gateway from fleet health
    and from the gateways a firmware update's multicast goes through."""
    newest = aliased(RawUplink)
    heard = [] if heard_until is None else [newest.heard_at <= heard_until]
    newest_id = (
        select(newest.id)
        .where(newest.device_id == Device.device_id, newest.duplicate_of.is_(None), newest.f_cnt.is_not(None), *heard)
        .order_by(newest.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    query = select(Device.device_id, RawUplink.gateways).join(RawUplink, RawUplink.id == newest_id)
    if device_ids is not None:
        query = query.where(Device.device_id.in_(device_ids))
    rows = session.execute(query).all()
    found = {}
    for device_id, gateways in rows:
        heard = [g for g in gateways or [] if isinstance(g, dict) and g.get("gateway_id")]
        if heard:
            best = max(heard, key=lambda g: g.get("rssi_dbm") if g.get("rssi_dbm") is not None else -1e9)
            found[device_id] = str(best["gateway_id"])
    return found


# DevEUI -> device_id of the collars of a set of DevEUIs: a Core statement built once (the durable
# intake's writer names the collars of every batch it keeps, a few bodies each, in its answers).
_DEVICE_IDS_BY_EUI = (
    select(Device.__table__.c.dev_eui, Device.__table__.c.device_id)
    .where(Device.__table__.c.dev_eui.in_(bindparam("dev_euis", expanding=True)))
    .order_by(Device.__table__.c.device_id)
)


# The collars filed under a set of names, with what tells collars of one name apart (`devices.same_collar`).
_COLLARS_BY_NAME = select(
    Device.__table__.c.device_id, Device.__table__.c.dev_eui, Device.__table__.c.application_id,
    Device.__table__.c.network_scope,
).where(Device.__table__.c.device_id.in_(bindparam("names", expanding=True)))


def collars_named(connection: Connection | Session, names: set[str]) -> dict[str, Any]:
    """name -> the collar filed under it (a row with device_id, dev_eui, application_id and
    network_scope), for the names some collar holds."""
    if not names:
        return {}
    return {row.device_id: row for row in connection.execute(_COLLARS_BY_NAME, {"names": sorted(names)})}


def device_ids_by_eui(connection: Connection | Session, dev_euis: set[str]) -> dict[str, str]:
    """DevEUI -> the device_id the bridge files that collar under, for the collars it knows (the
    first by device_id, as `devices.resolve_device` picks)."""
    if not dev_euis:
        return {}
    found: dict[str, str] = {}
    for dev_eui, device_id in connection.execute(_DEVICE_IDS_BY_EUI, {"dev_euis": sorted(dev_euis)}):
        found.setdefault(dev_eui, device_id)
    return found


def animal_views(session: Session) -> list[AnimalView]:
    """Every animal with its collar's latest state, ordered by name. The record a collar in stock is
    filed under (`Animal.holds_collar_in_stock`) is no animal: left out (`herd.collars_in_stock` lists
    the collar, `device_views` its health)."""
    fixes = latest_fix_per_animal(session)
    open_counts = dict(
        session.execute(
            select(Alert.animal_id, func.count()).where(Alert.state.in_(OPEN_STATES)).group_by(Alert.animal_id)
        ).all()
    )
    rows = session.execute(
        select(Animal, Device).outerjoin(Device, Animal.device_id == Device.device_id)
        .where(IS_AN_ANIMAL).order_by(Animal.name)
    ).all()
    views = []
    for animal, device in rows:
        fix = fixes.get(animal.id)
        views.append(
            AnimalView(
                animal_id=str(animal.id),
                name=animal.name,
                species=animal.species,
                device_id=animal.device_id,
                last_seen=_heard_on(device, animal),
                lat=fix[1] if fix else None,
                lon=fix[2] if fix else None,
                battery_mv=device.battery_mv if device else None,
                behaviour=device.behaviour if device else None,
                fw_version=device.fw_version if device else None,
                model_version=device.model_version if device else None,
                sex=animal.sex,
                position_time=fix[0] if fix else None,
                temperature_c=device.temperature_c if device else None,
                open_alerts=int(open_counts.get(animal.id, 0)),
                collar_fitted_at=animal.collar_fitted_at,
            )
        )
    return views


def _heard_on(device: Device | None, animal: Animal) -> datetime | None:
    """When the collar was last heard on animal: its last_seen, unless that was before the animal's
    fitting (the collar last heard on the animal that wore it before)."""
    if device is None or device.last_seen is None:
        return None
    fitted_at = animal.collar_fitted_at
    return device.last_seen if fitted_at is None or device.last_seen >= fitted_at else None


@dataclass(frozen=True)
class FrameCounts:
    """A collar's uplinks by their frame counters: received, lost (missing from the counters of each
    session, less those its flash queue sent again later; None before any), the loss in percent, and
    the back-filled ones."""

    received: int = 0
    lost: int | None = None
    loss_pct: float | None = None
    backfilled: int = 0

    @classmethod
    def of(cls, received: int, missing: int, backfilled: int) -> FrameCounts:
        """The counts from uplinks received, frames missing from their counters and back-filled ones."""
        lost = max(0, missing - backfilled) if received else None
        loss = round(100.0 * lost / (received + lost), 1) if lost is not None and received + lost else None
        return cls(received, lost, loss, backfilled)


def frame_counts(session: Session, device_ids: list[str] | None = None, heard_until: datetime | None = None
                 ) -> dict[str, FrameCounts]:
    """Device id -> its FrameCounts (only `device_ids` when given; only the uplinks heard by
    `heard_until` when given: what a role with a delay may count), per session (a join restarts the counter)."""
    wanted = [] if device_ids is None else [RawUplink.device_id.in_(device_ids)]
    if heard_until is not None:
        wanted.append(RawUplink.heard_at <= heard_until)
    per_session = session.execute(
        select(
            RawUplink.device_id,
            func.count(func.distinct(RawUplink.f_cnt)),
            func.min(RawUplink.f_cnt),
            func.max(RawUplink.f_cnt),
            func.count(),
            func.sum(case((RawUplink.backfilled.is_(True), 1), else_=0)),
        )
        .where(RawUplink.device_id.is_not(None), RawUplink.duplicate_of.is_(None), RawUplink.f_cnt.is_not(None), *wanted)
        .group_by(RawUplink.device_id, RawUplink.session)
    ).all()
    frames: dict[str, list[int]] = {}
    for device_id, distinct, first, last, received, backfilled in per_session:
        totals = frames.setdefault(device_id, [0, 0, 0])  # received, missing, back-filled
        totals[0] += int(received)
        totals[1] += max(0, int(last) - int(first) + 1 - int(distinct))
        totals[2] += int(backfilled or 0)
    return {device_id: FrameCounts.of(*totals) for device_id, totals in frames.items()}


def device_views(session: Session, device_ids: list[str] | None = None) -> list[DeviceView]:
    """Every collar's health (only `device_ids` when given): radio, battery, versions, errors and
    frame loss from FCnt gaps (`frame_counts`). A collar in stock names no animal (the record of its time
    in stock, `Animal.holds_collar_in_stock`, is none): it says it is in stock, and since when."""
    frames = frame_counts(session, device_ids)
    devices = select(Device, Animal).outerjoin(Animal, Animal.device_id == Device.device_id)
    if device_ids is not None:
        devices = devices.where(Device.device_id.in_(device_ids))
    rows = session.execute(devices.order_by(Device.device_id)).all()
    views = []
    for device, animal in rows:
        counts = frames.get(device.device_id, FrameCounts())
        if animal is not None and animal.holds_collar_in_stock:
            animal = None
        views.append(
            DeviceView(
                device_id=device.device_id,
                animal_id=str(animal.id) if animal else None,
                name=animal.name if animal else None,
                dev_eui=device.dev_eui,
                network=device.network,
                last_seen=device.last_seen,
                last_f_cnt=device.last_f_cnt,
                last_rssi_dbm=device.last_rssi_dbm,
                last_snr_db=device.last_snr_db,
                battery_mv=device.battery_mv,
                temperature_c=device.temperature_c,
                fw_version=device.fw_version,
                model_version=device.model_version,
                uptime_h=device.uptime_h,
                reset_cause=device.reset_cause,
                queue_depth=device.queue_depth,
                errors=device.errors,
                flags=dict(device.flags or {}),
                reported_settings=dict(device.reported_settings or {}),
                uplinks_received=counts.received,
                frame_loss_pct=counts.loss_pct,
                uplinks_lost=counts.lost,
                uplinks_backfilled=counts.backfilled,
                label=device.label,
                in_stock=device.taken_off_at is not None,
                taken_off_at=as_utc(device.taken_off_at) if device.taken_off_at is not None else None,
            )
        )
    return views


def collar_holders(session: Session, device_ids: Iterable[str]) -> dict[str, str]:
    """Device id -> the id of the record each collar's messages are filed under now: its animal's, or for a
    collar in stock the record of its time there (whose cutoff a role with a delay reads it by)."""
    return {device_id: str(key) for key, device_id in session.execute(
        select(Animal.id, Animal.device_id).where(Animal.device_id.in_(list(device_ids))))}


def latest_position_views(
    session: Session, until: datetime | None = None, animal_keys: list[int] | None = None
) -> list[PositionView]:
    """The newest fix (at or before `until` when given) of every animal that has one (only
    `animal_keys` when given), by name (plain rows, no ORM objects); a collar in stock is no animal."""
    query = select(
        Animal.id, Animal.name, Animal.device_id, Position.time, Position.lat, Position.lon, Position.id
    ).join(Position, Position.id == newest_position_id(Animal.device_id, until, Animal.id)).where(
        IS_AN_ANIMAL)
    if animal_keys is not None:
        query = query.where(Animal.id.in_(animal_keys))
    rows = session.execute(query.order_by(Animal.name, Animal.id)).all()
    return [
        PositionView(animal_id=str(key), name=name, device_id=device_id, time=time, lat=lat, lon=lon,
                     position_id=position_id)
        for key, name, device_id, time, lat, lon, position_id in rows
    ]


def evenly_spaced(count: int, keep: int) -> list[int]:
    """`keep` indices of a sequence of `count` items, evenly spread, first and last always kept."""
    if keep >= count:
        return list(range(count))
    if keep <= 1:
        return [count - 1]
    return sorted({round(i * (count - 1) / (keep - 1)) for i in range(keep)})


def track_views(
    session: Session,
    since: datetime | None,
    animal_ids: list[str] | None,
    max_points: int | None = None,
    until: datetime | None = None,
) -> dict[str, list[PositionView]]:
    """Positions per animal id, oldest first, from since on (all when since is None) up to until. The
    fixes of a collar in stock (filed under `Animal.holds_collar_in_stock`) are no animal's track.

    Read as plain rows (no ORM objects). With `max_points`, a longer track keeps that many fixes
    evenly spread over it, its first and newest fix always among them, so a map of a large herd
    stays small while each track keeps its shape and its current end.
    """
    if max_points is not None and max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    query = select(
        Position.animal_id, Animal.name, Position.device_id, Position.time, Position.lat, Position.lon, Position.id
    ).join(Animal, Position.animal_id == Animal.id).where(IS_AN_ANIMAL)
    if since is not None:
        query = query.where(Position.time >= since)
    if until is not None:
        query = query.where(Position.time <= until)
    if animal_ids is not None:
        keys = [key for key in (animal_key(a) for a in animal_ids) if key is not None]
        query = query.where(Position.animal_id.in_(keys))
    # The whole herd since a time: read along the time index (the fixes of that window only, in
    # time order, which each animal's list keeps); one animal: along the animal's index.
    order = (Position.time,) if animal_ids is None and since is not None else (Position.animal_id, Position.time)
    rows: dict[int, list[Any]] = {}
    for row in session.execute(query.order_by(*order)):
        rows.setdefault(row[0], []).append(row)
    tracks: dict[str, list[PositionView]] = {}
    for key, fixes in rows.items():
        if max_points is not None and len(fixes) > max_points:
            fixes = [fixes[i] for i in evenly_spaced(len(fixes), max_points)]
        animal_id = str(key)
        tracks[animal_id] = [
            PositionView(animal_id=animal_id, name=name, device_id=device_id, time=time, lat=lat, lon=lon,
                         position_id=position_id)
            for _, name, device_id, time, lat, lon, position_id in fixes
        ]
    return tracks


def alert_view(
    alert: Alert, animal: Animal | None, assigned_to: str | None = None, note: str | None = None
) -> AlertView:
    """One alert row as a view (with whom it is assigned to and the resolving ranger's note)."""
    return AlertView(
        alert_id=alert.id,
        animal_id=str(animal.id) if animal else None,
        name=animal.name if animal else None,
        device_id=alert.device_id,
        alert_type=alert.alert_type,
        priority=alert.priority,
        state=alert.state,
        time=alert.time,
        lat=alert.lat,
        lon=alert.lon,
        source=alert.source,
        verdict=alert.verdict,
        last_time=alert.last_time,
        occurrences=alert.occurrences,
        evidence=dict(alert.evidence or {}),
        acknowledged_by=alert.acknowledged_by,
        acknowledged_at=alert.acknowledged_at,
        resolved_by=alert.resolved_by,
        resolved_at=alert.resolved_at,
        assigned_to=assigned_to,
        note=note,
    )


def assignments_and_notes(session: Session, alert_ids: list[int]) -> dict[int, tuple[str | None, str | None]]:
    """Per alert id: (who it is assigned to now, the note given when it was resolved), from its events."""
    found: dict[int, tuple[str | None, str | None]] = {}
    for chunk_start in range(0, len(alert_ids), 500):
        chunk = alert_ids[chunk_start : chunk_start + 500]
        rows = session.execute(
            select(AlertEvent.alert_id, AlertEvent.action, AlertEvent.detail)
            .where(AlertEvent.alert_id.in_(chunk), AlertEvent.action.in_((ACTION_ASSIGNED, ACTION_RESOLVED)))
            .order_by(AlertEvent.id)
        ).all()
        for alert_id, action, detail in rows:
            assigned, note = found.get(alert_id, (None, None))
            detail = detail or {}
            if action == ACTION_ASSIGNED:
                assigned = detail.get("to") or None
            elif detail.get("note"):
                note = str(detail["note"])
            found[alert_id] = (assigned, note)
    return found


def alert_views(
    session: Session, states: tuple[str, ...] | None, limit: int | None = None, resolved_after: datetime | None = None
) -> list[AlertView]:
    """Alerts, highest priority first, then newest first; only those in states when given, and those
    resolved after `resolved_after` when given (they were open then)."""
    query = select(Alert, Animal).outerjoin(Animal, Alert.animal_id == Animal.id)
    if states is not None and resolved_after is not None:
        query = query.where(or_(Alert.state.in_(states), Alert.resolved_at > resolved_after))
    elif states is not None:
        query = query.where(Alert.state.in_(states))
    query = query.order_by(Alert.priority.desc(), Alert.last_time.desc(), Alert.id.desc())
    if limit is not None:
        query = query.limit(limit)
    rows = session.execute(query).all()
    extras = assignments_and_notes(session, [alert.id for alert, _ in rows])
    return [alert_view(alert, animal, *extras.get(alert.id, (None, None))) for alert, animal in rows]


def alerts_awaiting_verdict(session: Session, limit: int | None = None) -> list[AlertView]:
    """Resolved alerts with no verdict (closed by Tembo when their condition cleared), oldest first."""
    query = (
        select(Alert, Animal)
        .outerjoin(Animal, Alert.animal_id == Animal.id)
        .where(Alert.state == STATE_RESOLVED, Alert.verdict.is_(None))
        .order_by(Alert.time, Alert.id)
    )
    if limit is not None:
        query = query.limit(limit)
    rows = session.execute(query).all()
    extras = assignments_and_notes(session, [alert.id for alert, _ in rows])
    return [alert_view(alert, animal, *extras.get(alert.id, (None, None))) for alert, animal in rows]


def alert_views_at(session: Session, as_of: datetime, open_at: datetime | None = None) -> list[AlertView]:
    """The alerts open at `as_of` as they stood then: raised by then and not resolved by then, new or
    acknowledged as they were then, assigned to whom they were then; highest priority first, then
    newest first. With `open_at` (before `as_of`), those still open at `open_at` too, resolved as
    they stood at `as_of`."""
    still_open = as_of if open_at is None else min(open_at, as_of)
    rows = session.execute(
        select(Alert, Animal)
        .outerjoin(Animal, Alert.animal_id == Animal.id)
        .where(Alert.time <= as_of, or_(Alert.resolved_at.is_(None), Alert.resolved_at > still_open))
        .order_by(Alert.priority.desc(), Alert.time.desc(), Alert.id.desc())
    ).all()
    assigned: dict[int, str | None] = {}
    ids = [alert.id for alert, _ in rows]
    for chunk_start in range(0, len(ids), 500):
        for alert_id, detail in session.execute(
            select(AlertEvent.alert_id, AlertEvent.detail)
            .where(
                AlertEvent.alert_id.in_(ids[chunk_start : chunk_start + 500]),
                AlertEvent.action == ACTION_ASSIGNED,
                AlertEvent.at <= as_of,
            )
            .order_by(AlertEvent.id)
        ).all():
            assigned[alert_id] = (detail or {}).get("to") or None
    return [as_it_stood(alert_view(alert, animal, assigned.get(alert.id)), as_of) for alert, animal in rows]


def alert_steps(session: Session, alert_ids: list[int], actions: tuple[str, ...]) -> dict[int, list[AlertEventView]]:
    """Per alert id, the steps of its history that are one of `actions`, oldest first."""
    found: dict[int, list[AlertEventView]] = {}
    for chunk_start in range(0, len(alert_ids), 500):
        rows = session.scalars(
            select(AlertEvent)
            .where(AlertEvent.alert_id.in_(alert_ids[chunk_start : chunk_start + 500]), AlertEvent.action.in_(actions))
            .order_by(AlertEvent.id)
        ).all()
        for row in rows:
            found.setdefault(row.alert_id, []).append(
                AlertEventView(alert_id=row.alert_id, at=row.at, actor=row.actor, action=row.action,
                               detail=dict(row.detail or {}))
            )
    return found


def alert_event_views(session: Session, alert_id: int) -> list[AlertEventView]:
    """An alert's history, oldest first."""
    rows = session.scalars(
        select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
    ).all()
    return [
        AlertEventView(alert_id=row.alert_id, at=row.at, actor=row.actor, action=row.action, detail=dict(row.detail))
        for row in rows
    ]


def activity_views(
    session: Session, animal_key_: int, since: datetime | None, until: datetime | None = None
) -> list[ActivityView]:
    """An animal's activity summaries from `since` up to `until` (each when given), oldest first:
    read through the (animal_id, time) index, only the window's rows."""
    query = select(ActivitySummary).where(ActivitySummary.animal_id == animal_key_)
    if since is not None:
        query = query.where(ActivitySummary.time >= since)
    if until is not None:
        query = query.where(ActivitySummary.time <= until)
    return [
        ActivityView(
            animal_id=str(row.animal_id),
            device_id=row.device_id,
            time=row.time,
            interval_min=row.interval_min,
            model_version=row.model_version,
            vedba_mean_mg=row.vedba_mean_mg,
            vedba_max_mg=row.vedba_max_mg,
            shares_pct=dict(row.shares_pct),
            dominant=row.dominant,
        )
        for row in session.scalars(query.order_by(ActivitySummary.time))
    ]


def dead_letter_views(session: Session, include_replayed: bool, limit: int | None = None,
                      after_id: int | None = None) -> list[DeadLetterView]:
    """Dead letters, oldest first; only the ones still waiting for a fix unless include_replayed; at most
    limit of them, those after the letter after_id when given (a page, `DEAD_LETTERS_PAGE`)."""
    query = select(DeadLetter)
    if not include_replayed:
        query = query.where(DeadLetter.replayed_at.is_(None))
    if after_id is not None:
        query = query.where(DeadLetter.id > after_id)
    letters = session.scalars(query.order_by(DeadLetter.id).limit(limit)).all()
    raw_ids = [row.raw_uplink_id for row in letters if row.raw_uplink_id is not None]
    copies = dict(session.execute(
        select(RawUplink.duplicate_of, func.count()).where(RawUplink.duplicate_of.in_(raw_ids))
        .group_by(RawUplink.duplicate_of)
    ).all()) if raw_ids else {}
    return [
        DeadLetterView(
            dead_letter_id=row.id,
            raw_uplink_id=row.raw_uplink_id,
            source=row.source,
            stage=row.stage,
            reason=row.reason,
            created_at=row.created_at,
            replayed_at=row.replayed_at,
            replay_result=row.replay_result,
            body=row.body,
            tries=1 + copies.get(row.raw_uplink_id, 0),
        )
        for row in letters
    ]


def downlink_view(row: Downlink) -> DownlinkView:
    """One downlink row as a view."""
    return DownlinkView(
        downlink_id=row.id,
        device_id=row.device_id,
        f_port=row.f_port,
        command=row.command,
        seq=row.seq,
        state=row.state,
        payload_hex=row.payload.hex(),
        alert_id=row.alert_id,
        created_at=row.created_at,
        sent_at=row.sent_at,
        attempts=row.attempts,
        last_error=row.last_error,
        network_state=row.network_state,
        superseded_by=row.superseded_by,
    )


def downlink_views(session: Session, state: str | None) -> list[DownlinkView]:
    """Downlinks, oldest first, optionally only in one state."""
    query = select(Downlink)
    if state is not None:
        query = query.where(Downlink.state == state)
    return [downlink_view(row) for row in session.scalars(query.order_by(Downlink.id))]
