"""The server rules, run for one collar after each of its uplinks and for every collar on the timer.

A cursor per collar (`rule_cursors`) says up to which fix and status the rules have read, so an uplink
is evaluated once, and anything an uplink path missed (a crash between store and rules, a replay, an
MQTT worker) is caught up by the timer. Per collar, in order:
1. battery: keep the status reading, forecast the date of empty, close low_battery once recovered;
2. track: the new fixes with GPS outliers set apart (speed), each new segment against every fence
   (crossings, enter/exit), then immobility at the newest fix, closing alerts whose condition cleared;
3. corroboration of the collar's open poaching-risk and mortality alerts (confidence, held or not).
What changed comes back as alert steps (alert id, "raised" / "auto_resolved" / ...) for the outbox.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.domain import alerts, geofences, rules
from lora_bridge.domain.geofences import ENTER, EXIT, Crossing, FenceIndex
from lora_bridge.domain.rules_corroboration import CORROBORATED_TYPES, corroborate
from lora_bridge.domain.rules_lifecycle import auto_resolve
from lora_bridge.domain.rules_movement import Fix, exclude_outliers, immobility
from lora_bridge.domain.rules_profiles import RuleProfile, RulesConfig
from lora_bridge.store.tables import Alert, Animal, Device, Position, RuleCursor
from lora_bridge.store.utc import utc_now

log = logging.getLogger(__name__)

IMMOBILITY = "immobility"
GEOFENCE_EXIT = "geofence_exit"
GEOFENCE_ENTER = "geofence_enter"
GEOFENCE_FARMLAND = "geofence_farmland"
FARMLAND_KINDS = ("farmland",)
CONTEXT_FIXES = 4  # kept fixes before the new ones, so the first new segment and outliers can be judged
MAX_NEW_FIXES = 2000  # per evaluation; the timer reads on from the cursor


@dataclass
class Steps:
    """What one evaluation changed: (alert id, action) pairs for the outbox, in order."""

    items: list[tuple[int, str]] = field(default_factory=list)
    detail: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)  # per (alert id, action)
    fixes: list[tuple[str, datetime, float, float]] = field(default_factory=list)  # new plausible fixes
    open: dict[str, Alert] = field(default_factory=dict)  # the collar's open alerts by type, read once

    def add(self, alert_id: int | None, action: str) -> None:
        if alert_id is not None and (alert_id, action) not in self.items:
            self.items.append((alert_id, action))


class RulesRuntime:
    """Rule profiles and the projected fence index, shared by every evaluation of one bridge."""

    def __init__(self, config: RulesConfig) -> None:
        self.config = config
        self._fences: FenceIndex | None = None
        self._lock = threading.Lock()

    def fence_index(self, session: Session) -> FenceIndex:
        """The fence index, rebuilt when the stored fences changed."""
        version = geofences.fence_version(session)
        with self._lock:
            if self._fences is None or self._fences.version != version:
                self._fences = FenceIndex(geofences.all_fences(session))
                log.info("fence index built", extra={"fences": len(self._fences)})
            return self._fences

    def profile(self, device: Device | None, animal: Animal | None) -> RuleProfile:
        """The rule profile of the animal wearing device."""
        if animal is None:
            return self.config.profile_for(None, device.device_id if device else None)
        return self.config.profile_for(animal.species, animal.name, str(animal.id), animal.device_id)


def evaluate_device(session: Session, runtime: RulesRuntime, device_id: str) -> Steps:
    """Run every per-collar rule over what arrived since the collar's cursor; the alert steps."""
    steps = Steps()
    device = session.get(Device, device_id)
    if device is None:
        return steps
    animal = session.scalars(select(Animal).where(Animal.device_id == device_id)).first()
    animal_id = animal.id if animal else None
    profile = runtime.profile(device, animal)
    cursor = session.get(RuleCursor, device_id)
    if cursor is None:
        cursor = RuleCursor(device_id=device_id)
        session.add(cursor)
    steps.open = {
        alert.alert_type: alert
        for alert in session.scalars(select(Alert).where(Alert.device_id == device_id, Alert.open_key.is_not(None)))
    }
    with session.no_autoflush:
        _battery(session, device, animal_id, profile, cursor, steps)
        _track(session, runtime, device, animal_id, profile, cursor, steps)
        _corroborate(session, device, profile, steps)
    cursor.evaluated_at = utc_now()
    return steps


def _raise(session: Session, steps: Steps, **kwargs: Any) -> tuple[Alert, bool]:
    alert, is_new = alerts.raise_alert(session, **kwargs)
    steps.open[alert.alert_type] = alert
    return alert, is_new


def _close(session: Session, steps: Steps, alert: Alert, reason: str, at: datetime) -> bool:
    if not auto_resolve(session, alert, reason, at):
        return False
    steps.open.pop(alert.alert_type, None)
    session.flush()
    steps.add(alert.id, "auto_resolved")
    return True


def _battery(
    session: Session, device: Device, animal_id: int | None, profile: RuleProfile, cursor: RuleCursor, steps: Steps
) -> None:
    if device.status_time is None or (cursor.status_time is not None and device.status_time <= cursor.status_time):
        return
    cursor.status_time = device.status_time
    if not rules.record_battery(session, device):
        return
    forecast = rules.check_battery_forecast(session, device, animal_id, device.status_time, profile.battery)
    if forecast is not None:
        steps.add(forecast, "raised")
        steps.open[rules.BATTERY_FORECAST] = session.get(Alert, forecast)
    low = steps.open.get(rules.LOW_BATTERY)
    if low is not None and rules.battery_recovered(device, profile.battery):
        _close(session, steps, low, f"battery back at {device.battery_mv} mV", device.status_time)
    forecast_alert = steps.open.get(rules.BATTERY_FORECAST)
    if forecast is None and forecast_alert is not None:
        trend = rules.battery_trend(session, device, device.status_time, profile.battery)
        if trend is not None:
            _close(session, steps, forecast_alert, f"trend now {trend['slope_mv_per_day']} mV/day", device.status_time)


def _track(
    session: Session,
    runtime: RulesRuntime,
    device: Device,
    animal_id: int | None,
    profile: RuleProfile,
    cursor: RuleCursor,
    steps: Steps,
) -> None:
    query = select(Position.time, Position.lat, Position.lon).where(Position.device_id == device.device_id)
    if cursor.position_time is not None:
        query = query.where(Position.time > cursor.position_time)
    new: list[Fix] = [tuple(row) for row in session.execute(query.order_by(Position.time).limit(MAX_NEW_FIXES))]
    if not new:
        return
    newest = new[-1][0]
    window_start = newest - timedelta(hours=2 * profile.immobility.duration_h)
    earlier: list[Fix] = [
        tuple(row)
        for row in session.execute(
            select(Position.time, Position.lat, Position.lon)
            .where(Position.device_id == device.device_id, Position.time < new[0][0], Position.time >= window_start)
            .order_by(Position.time.desc())
            .limit(max(CONTEXT_FIXES, 200))
        )
    ][::-1]
    if len(earlier) < CONTEXT_FIXES:
        earlier = [
            tuple(row)
            for row in session.execute(
                select(Position.time, Position.lat, Position.lon)
                .where(Position.device_id == device.device_id, Position.time < new[0][0])
                .order_by(Position.time.desc())
                .limit(CONTEXT_FIXES)
            )
        ][::-1]
    clean = exclude_outliers(earlier + new, profile.speed)
    # The newest fix of the last evaluation may have been set apart then (too fast) and be believed
    # now (the next fix agrees with it): the segment that ends at it was never judged.
    rehabilitated = set()
    if earlier:
        before = exclude_outliers(earlier, profile.speed)
        rehabilitated = {earlier[-1][0]} - {fix[0] for fix in before.kept}
    fences = runtime.fence_index(session)
    if len(fences):
        for start, end in zip(clean.kept, clean.kept[1:], strict=False):
            judged = cursor.position_time is not None and end[0] <= cursor.position_time
            if judged and end[0] not in rehabilitated:
                continue
            for crossing in fences.crossings(start, end):
                _on_crossing(session, fences, device, animal_id, crossing, clean.outliers, steps)
        _clear_geofence_alerts(session, fences, device, clean.kept[-1], steps)
    _immobility(session, device, animal_id, profile, [f for f in clean.kept if f[0] >= window_start], clean.outliers, steps)
    first_new = new[0][0]
    steps.fixes.extend((device.device_id, t, lat, lon) for t, lat, lon in clean.kept if t >= first_new)
    cursor.position_time = newest


def _alert_type_for(crossing: Crossing, alert_on: str) -> str | None:
    if crossing.direction == EXIT and alert_on in ("exit", "both"):
        return GEOFENCE_EXIT
    if crossing.direction == ENTER and alert_on in ("enter", "both"):
        return GEOFENCE_FARMLAND if crossing.fence_kind in FARMLAND_KINDS else GEOFENCE_ENTER
    return None


def _on_crossing(
    session: Session,
    fences: FenceIndex,
    device: Device,
    animal_id: int | None,
    crossing: Crossing,
    outliers: list[dict[str, Any]],
    steps: Steps,
) -> None:
    fence = fences.fence(crossing.fence_id)
    alert_type = _alert_type_for(crossing, fence.alert_on if fence else "both")
    log.info(
        "fence crossed device_id=%s fence=%s direction=%s",
        device.device_id,
        crossing.fence_name,
        crossing.direction,
        extra={"device_id": device.device_id, "fence_id": crossing.fence_id, "direction": crossing.direction},
    )
    if alert_type is None:
        return
    evidence = {
        "rule": "track segment intersected with the fence's lines in UTM; time interpolated along the segment",
        "fence_id": crossing.fence_id,
        "fence": crossing.fence_name,
        "fence_kind": crossing.fence_kind,
        "direction": crossing.direction,
        "crossed_at": crossing.time.isoformat(),
        "excluded_fixes": outliers[-5:],
    }
    alert, is_new = _raise(
        session,
        steps,
        device_id=device.device_id,
        animal_id=animal_id,
        alert_type=alert_type,
        source=alerts.SOURCE_SERVER,
        time=crossing.time,
        lat=crossing.lat,
        lon=crossing.lon,
        evidence=evidence,
    )
    fence_ids = sorted({*alert.evidence.get("fence_ids", []), crossing.fence_id})
    alert.evidence = {**alert.evidence, "fence_ids": fence_ids}
    steps.add(alert.id, "raised" if is_new else "repeated")


def _clear_geofence_alerts(session: Session, fences: FenceIndex, device: Device, latest: Fix, steps: Steps) -> None:
    inside = set(fences.containing(latest[1], latest[2]))
    for alert_type in (GEOFENCE_EXIT, GEOFENCE_ENTER, GEOFENCE_FARMLAND):
        alert = steps.open.get(alert_type)
        if alert is None or alert.source != alerts.SOURCE_SERVER or latest[0] <= alert.last_time:
            continue
        fence_ids = set(alert.evidence.get("fence_ids", []))
        if not fence_ids:
            continue
        if alert_type == GEOFENCE_EXIT and fence_ids <= inside:
            reason = f"back inside the fence at {latest[0].isoformat()}"
        elif alert_type != GEOFENCE_EXIT and not (fence_ids & inside):
            reason = f"out of the fence again at {latest[0].isoformat()}"
        else:
            continue
        _close(session, steps, alert, reason, latest[0])


def _immobility(
    session: Session,
    device: Device,
    animal_id: int | None,
    profile: RuleProfile,
    fixes: list[Fix],
    outliers: list[dict[str, Any]],
    steps: Steps,
) -> None:
    result = immobility(fixes, profile.immobility)
    open_alert = steps.open.get(IMMOBILITY)
    if result.immobile:
        evidence = result.evidence(profile.immobility)
        evidence["excluded_fixes"] = outliers[-5:]
        if open_alert is not None and open_alert.evidence.get("still_since") == evidence["still_since"]:
            open_alert.evidence = {**open_alert.evidence, **evidence}  # the same stillness, growing
            return
        alert, is_new = _raise(
            session,
            steps,
            device_id=device.device_id,
            animal_id=animal_id,
            alert_type=IMMOBILITY,
            source=alerts.SOURCE_SERVER,
            time=fixes[-1][0],
            lat=result.centre_lat,
            lon=result.centre_lon,
            evidence=evidence,
        )
        if is_new:
            steps.add(alert.id, "raised")
        return
    if open_alert is not None and fixes and fixes[-1][0] > open_alert.last_time:
        moved = result.still_since is None or (
            open_alert.evidence.get("still_since") not in (None, result.still_since.isoformat())
        )
        if moved:
            _close(session, steps, open_alert, f"moving again at {fixes[-1][0].isoformat()}", fixes[-1][0])


def _corroborate(session: Session, device: Device, profile: RuleProfile, steps: Steps) -> None:
    for alert_type in CORROBORATED_TYPES:
        alert = steps.open.get(alert_type)
        if alert is not None:
            corroborate(session, alert, device, profile)


def refresh_corroboration(session: Session, runtime: RulesRuntime, now: datetime) -> int:
    """Weigh again every open poaching-risk / mortality alert still inside its window (herd mates'
    data arrives after the alert); how many were weighed."""
    weighed = 0
    for alert in session.scalars(
        select(Alert).where(Alert.alert_type.in_(CORROBORATED_TYPES), Alert.state.in_(alerts.OPEN_STATES))
    ):
        device = session.get(Device, alert.device_id)
        animal = session.get(Animal, alert.animal_id) if alert.animal_id else None
        profile = runtime.profile(device, animal)
        if now - alert.time > timedelta(minutes=2 * profile.corroboration.window_min):
            continue
        corroborate(session, alert, device, profile)
        weighed += 1
    return weighed


def devices_behind(session: Session) -> list[str]:
    """Collars with fixes or a status newer than their rule cursor (or no cursor yet)."""
    latest = (
        select(Position.device_id)
        .outerjoin(RuleCursor, RuleCursor.device_id == Position.device_id)
        .where((RuleCursor.position_time.is_(None)) | (Position.time > RuleCursor.position_time))
        .distinct()
    )
    behind = set(session.scalars(latest))
    status = (
        select(Device.device_id)
        .outerjoin(RuleCursor, RuleCursor.device_id == Device.device_id)
        .where(
            Device.status_time.is_not(None),
            (RuleCursor.status_time.is_(None)) | (Device.status_time > RuleCursor.status_time),
        )
    )
    behind.update(session.scalars(status))
    return sorted(behind)
