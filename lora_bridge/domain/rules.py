"""Collar-health rules of the server; they raise alerts through the same model as the collars do.

- low_battery: a status reports battery_mv below the collar's own `low_battery_mv` (its reported
  setting, else the collar firmware's default: one threshold, the collar's). Closed by Tembo when a
  reading is back above it by the collar's hysteresis.
- offline: a collar silent for longer than its own schedule allows: `missed_reports` of its reported
  `status_interval_s` (else the firmware default) plus a grace; closed by Tembo when it is heard again
  (verdict true: it really was silent). A collar in stock (taken off, worn by nobody) is never offline,
  and one fitted out of stock is silent since its fitting at the earliest (`Device.left_stock_at`).
- battery_forecast: the trend of the last readings (least squares) reaches the collar's
  `critical_battery_mv` within `warn_days`; the evidence carries the predicted date.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import JSON, Float, String, and_, bindparam, cast, column, func, literal, select
from sqlalchemy.orm import Session, aliased

from collar_firmware import risk
from collar_firmware.config import BATTERY_CURVE
from collar_firmware.config import DEFAULTS as COLLAR_DEFAULTS
from lora_bridge.domain import alerts
from lora_bridge.domain.rules_profiles import BatteryProfile, OfflineProfile, RuleProfile
from lora_bridge.store import bulk
from lora_bridge.store.tables import Alert, Animal, BatteryReading, Device
from lora_bridge.store.utc import as_utc

log = logging.getLogger(__name__)

# The table the battery window's sums read (`bulk.read_columns`): readings are written only as queued rows.
_READINGS = frozenset({BatteryReading.__table__})

SECONDS_PER_DAY = 86_400

LOW_BATTERY = "low_battery"
OFFLINE = "offline"
BATTERY_FORECAST = "battery_forecast"
EMPTY_MV = BATTERY_CURVE[-1][0]  # the reference pack's 0 %
FORECAST_HORIZON_DAYS = 20 * 365  # past a collar's service life a battery date says nothing


def collar_setting(device: Device, name: str) -> int:
    """The collar's setting `name`: what it last reported (port 3), else the firmware default."""
    reported = device.reported_settings
    if reported:  # a collar that reported none (most of a herd) takes the default with no look
        value = reported.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return int(COLLAR_DEFAULTS[name])


def low_battery_threshold_mv(device: Device) -> int:
    """The low-battery level of this collar (its own setting; the firmware's default otherwise)."""
    return collar_setting(device, "low_battery_mv")


def expected_interval_s(device: Device) -> int:
    """How often this collar promises a status (its reported status_interval_s, else the default)."""
    return collar_setting(device, "status_interval_s")


def offline_after_s(device: Device, profile: OfflineProfile) -> int:
    """Silence after which this collar counts as offline."""
    return int(profile.missed_reports * expected_interval_s(device) + profile.grace_min * 60)


def check_battery(session: Session, device: Device, animal_id: int | None, time: datetime,
                  fitted_at: datetime | None = None) -> int | None:
    """Raise low_battery when the collar's last battery reading is under its own threshold; the alert id.
    fitted_at: when the animal wearing it was fitted with it (a low battery a ranger resolved before
    was another animal's, and does not keep this one's quiet)."""
    battery_mv = device.battery_mv
    if battery_mv is None:
        return None
    threshold_mv = low_battery_threshold_mv(device)
    if battery_mv >= threshold_mv:
        return None
    if alerts.open_alert(session, device.device_id, LOW_BATTERY) is None and _still_low_since_closed(
        session, device, LOW_BATTERY, fitted_at
    ):
        return None
    alert, _ = alerts.raise_alert(
        session,
        device_id=device.device_id,
        animal_id=animal_id,
        alert_type=LOW_BATTERY,
        source=alerts.SOURCE_SERVER,
        time=time,
        evidence={
            "rule": "battery reading below the collar's low_battery_mv",
            "battery_mv": battery_mv,
            "threshold_mv": threshold_mv,
        },
    )
    return alert.id


def _still_low_since_closed(session: Session, device: Device, alert_type: str, fitted_at: datetime | None) -> bool:
    """The collar's last alert of this type (low_battery, battery_forecast) since its wearer's fitting
    (fitted_at) was closed while the battery did not recover since (no reading above, by the collar's
    hysteresis, the collar's low level for low_battery or the last reading the forecast saw, as a new
    pack gives): the same condition."""
    closed = alerts.last_closed(session, device.device_id, alert_type, since=fitted_at)
    if closed is None:
        return False
    if alert_type == BATTERY_FORECAST:
        level = int((closed.evidence or {}).get("latest_mv") or low_battery_threshold_mv(device))
    else:
        level = low_battery_threshold_mv(device)
    recovered = session.scalars(
        select(BatteryReading.id).where(
            BatteryReading.device_id == device.device_id,
            BatteryReading.time > closed.last_time,
            BatteryReading.battery_mv >= level + risk.BATTERY_HYSTERESIS_MV,
        )
    ).first()
    return recovered is None


def check_offline(
    session: Session, now: datetime, profile_of: Callable[[Device, Animal | None], RuleProfile]
) -> list[int]:
    """Raise offline for every collar silent longer than its own schedule allows at `now`; new alert ids.

    Three reads whatever the size of the fleet: the collars heard before now, their animals, and
    which of them already have an open offline alert."""
    raised: list[int] = []
    # A collar in stock is not offline: nobody wears it, and the workshop drawer is no alarm.
    heard = session.scalars(select(Device).where(Device.last_seen.is_not(None), Device.last_seen < now,
                                                 Device.taken_off_at.is_(None))).all()
    if not heard:
        return raised
    animals: dict[str, Animal] = {}
    for animal in session.scalars(select(Animal).where(Animal.device_id.is_not(None)).order_by(Animal.id.desc())):
        animals[animal.device_id] = animal  # the oldest animal of a collar wins, as elsewhere
    # A collar's open offline alert; one a previous wearer left open (`herd.fit_collar` gave it a key of
    # its own) is that animal's and does not stand for the animal wearing the collar now.
    already = {
        device_id
        for device_id, open_key in session.execute(
            select(Alert.device_id, Alert.open_key).where(Alert.alert_type == OFFLINE, Alert.open_key.is_not(None))
        )
        if open_key == alerts.dedup_key(device_id, OFFLINE)
    }
    silent = {
        d.device_id: d.last_seen
        for d in heard
        if d.device_id not in already
        and (now - silent_since(d)).total_seconds() > offline_after_s(d, profile_of(d, animals.get(d.device_id)).offline)
    }
    if silent:  # a silence a ranger already closed (the collar not heard since) is not raised again, unless
        # it was closed before the wearer's fitting: that was another animal's alert, not this one's.
        for device_id, evidence, closed_raised_at in session.execute(
            select(Alert.device_id, Alert.evidence, Alert.time).where(
                Alert.alert_type == OFFLINE,
                Alert.state == alerts.STATE_RESOLVED,
                Alert.device_id.in_(silent),
                Alert.time >= min(silent.values()),
            )
        ):
            wearer = animals.get(device_id)
            fitted_at = wearer.collar_fitted_at if wearer is not None else None
            if (evidence or {}).get("last_seen") == silent[device_id].isoformat() and (
                    fitted_at is None or as_utc(closed_raised_at) >= fitted_at):
                already.add(device_id)
    with session.no_autoflush:
        for device in heard:
            if device.device_id not in silent or device.device_id in already:
                continue
            animal = animals.get(device.device_id)
            limit_s = offline_after_s(device, profile_of(device, animal).offline)
            silent_s = int((now - device.last_seen).total_seconds())
            alert, _ = alerts.raise_alert(
                session,
                device_id=device.device_id,
                animal_id=animal.id if animal else None,
                alert_type=OFFLINE,
                source=alerts.SOURCE_SERVER,
                time=now,
                evidence={
                    "rule": "silent longer than missed_reports x the collar's status interval + grace",
                    "last_seen": device.last_seen.isoformat(),
                    "silent_s": silent_s,
                    "offline_after_s": limit_s,
                    "status_interval_s": expected_interval_s(device),
                    "battery_mv": device.battery_mv,
                },
            )
            raised.append(alert.id)
    return raised


def silent_since(device: Device) -> datetime:
    """Since when the offline rule counts the collar's silence: its last report, or its fitting out of stock
    when that came later (a collar switched off in the workshop drawer is not offline the moment it goes on)."""
    left_stock_at = as_utc(device.left_stock_at) if device.left_stock_at is not None else None
    return max(device.last_seen, left_stock_at) if left_stock_at is not None else device.last_seen


def close_offline(session: Session, device: Device, heard_at: datetime) -> list[int]:
    """The collar was heard again: resolve its open offline alerts raised before heard_at; their ids.
    One a previous wearer left open (the collar moved while silent, `herd.fit_collar`) is closed too:
    the collar was silent on her, not dead, and what it says now is that it lives."""
    closed: list[int] = []
    for alert in session.scalars(select(Alert).where(Alert.device_id == device.device_id, Alert.alert_type == OFFLINE,
                                                     Alert.open_key.is_not(None)).order_by(Alert.id)):
        if heard_at <= alert.time:
            continue
        # Read without its row lock (once per batch, not a round trip per uplink): a ranger's resolution
        # committed meanwhile stands, and the collar's being heard is no longer this alert's to record.
        if not alerts.close_if_still_open(session, alert, alerts.SYSTEM_ACTOR, verdict="true"):
            continue
        note = f"heard again at {heard_at.isoformat()}"
        alerts.record_event(session, alert, alerts.SYSTEM_ACTOR, alerts.ACTION_RESOLVED,
                            {"verdict": "true", "note": note})
        log.info("offline alert closed alert_id=%d device_id=%s animal_id=%s: %s", alert.id, device.device_id,
                 alert.animal_id, note, extra={"alert_id": alert.id, "device_id": device.device_id,
                                               "animal_id": alert.animal_id})
        closed.append(alert.id)
    return closed


def queue_reading(session: Session, device_id: str, time: datetime, battery_mv: Any) -> None:
    """Keep the battery reading of one status (its own time) for the trend: queued with the unit of
    work's other rows and written with them in one statement (`store.bulk`); a reading the store
    already holds for that collar and time (a replayed body, a status the collar sent again) is left
    as it is. Every status's reading is kept, whatever the batch it came in."""
    if battery_mv is None:
        return
    bulk.queue_row(session, BatteryReading.__table__, reading_row(device_id, time, int(battery_mv)))


def reading_row(device_id: str, time: datetime, battery_mv: int) -> dict[str, Any]:
    """The `battery_readings` row of one reading: its time also as seconds since 1970 (UTC), which the
    trend's sums read."""
    # An aware time's timestamp is its instant whatever its zone (as_utc's astimezone adds nothing).
    epoch_s = (time if time.tzinfo is not None else time.replace(tzinfo=UTC)).timestamp()
    return {"device_id": device_id, "time": time, "battery_mv": battery_mv, "epoch_s": epoch_s}


@dataclass(frozen=True)
class ReadingSums:
    """What the least-squares line through a collar's battery readings of a window needs, summed by the
    store: x in days since `origin` (the earliest window's start of the read that summed it), y in mV."""

    origin: datetime
    count: int
    first_day: float  # x of the window's first reading and of its last
    last_day: float
    sum_x: float
    sum_y: float
    sum_xx: float
    sum_xy: float
    latest_mv: int | None  # the collar's latest reading

    def line(self) -> tuple[float, float]:
        """(slope in mV a day, mV at the origin) of the least-squares line (at least two times)."""
        n = self.count
        slope = (n * self.sum_xy - self.sum_x * self.sum_y) / (n * self.sum_xx - self.sum_x ** 2)
        return slope, (self.sum_y - slope * self.sum_x) / n


SUMS_AT_ONCE = 500  # collars whose reading sums one statement reads


@cache
def _sums_read(dialect: str) -> Any:
    """The reading sums of several collars, each from its own window's start on, in one statement of
    one form whatever their number: the windows go in as one JSON list ({"d": collar, "s": start in
    seconds since 1970}), read as a table (SQLite's json_each, PostgreSQL's json_to_recordset), each
    window a range of the (collar, seconds, millivolts) index; a row a collar. x counts days from
    `origin` (seconds since 1970), the earliest window's start."""
    windows_json = bindparam("windows", type_=String)
    if dialect == "sqlite":
        each = func.json_each(windows_json).table_valued("value").alias("windows")
        collar, start = func.json_extract(each.c.value, "$.d"), func.json_extract(each.c.value, "$.s")
    elif dialect == "postgresql":
        each = (func.json_to_recordset(cast(windows_json, JSON))
                .table_valued(column("d", String), column("s", Float))
                .render_derived(name="windows", with_types=True))
        collar, start = each.c.d, each.c.s
    else:
        raise NotImplementedError(f"no battery trend read for the {dialect} dialect")
    seconds = BatteryReading.epoch_s
    x = (seconds - bindparam("origin", type_=Float)) / literal(float(SECONDS_PER_DAY))
    y = BatteryReading.battery_mv
    newest = aliased(BatteryReading)
    latest = (select(newest.battery_mv).where(newest.device_id == BatteryReading.device_id)
              .order_by(newest.epoch_s.desc()).limit(1).scalar_subquery())
    return (
        select(BatteryReading.device_id, func.count(), func.min(seconds), func.max(seconds),
               func.sum(x), func.sum(y), func.sum(x * x), func.sum(x * y), latest)
        .select_from(each)
        .join(BatteryReading, and_(BatteryReading.device_id == collar, seconds >= start))
        .group_by(BatteryReading.device_id)
    )


def reading_sums(session: Session, windows: dict[str, datetime]) -> dict[str, ReadingSums]:
    """{collar: the sums of its readings from its window's start on} for the collars of windows
    ({collar: window start}); a collar with no reading there is left out. One row a collar, however
    many readings its window holds (two weeks of hourly statuses: 336)."""
    found: dict[str, ReadingSums] = {}
    dialect = session.get_bind().dialect.name
    collars = list(windows)
    for first in range(0, len(collars), SUMS_AT_ONCE):
        chunk = {device_id: as_utc(windows[device_id]) for device_id in collars[first:first + SUMS_AT_ONCE]}
        origin = min(chunk.values())
        origin_s = origin.timestamp()
        listed = json.dumps([{"d": device_id, "s": start.timestamp()} for device_id, start in chunk.items()])
        rows = bulk.read_columns(session, _sums_read(dialect), {"windows": listed, "origin": origin_s}, _READINGS)
        for device_id, count, first_s, last_s, sum_x, sum_y, sum_xx, sum_xy, latest in rows:
            if not count:
                continue
            found[device_id] = ReadingSums(
                origin, int(count), (first_s - origin_s) / SECONDS_PER_DAY, (last_s - origin_s) / SECONDS_PER_DAY,
                float(sum_x), float(sum_y), float(sum_xx), float(sum_xy), None if latest is None else int(latest))
    return found


def battery_trend(session: Session, device: Device, now: datetime, profile: BatteryProfile,
                  sums: ReadingSums | None = None) -> dict[str, Any] | None:
    """Slope (mV/day) of the readings of the last window_days and the dates it reaches the collar's
    low, critical and empty levels; None when there are too few readings or too short a span.
    sums: the sums of the collar's readings from the window's start on (`reading_sums`), when the
    caller read them already (else they are read here)."""
    since = now - timedelta(days=profile.window_days)
    if sums is None:
        sums = reading_sums(session, {device.device_id: since}).get(device.device_id)
    if sums is None or sums.count < profile.min_readings:
        return None
    if sums.last_day - sums.first_day < profile.min_span_days:
        return None
    slope, intercept = sums.line()
    trend: dict[str, Any] = {
        "rule": "least-squares line through the battery readings of the window",
        "readings": sums.count,
        "window_days": profile.window_days,
        "slope_mv_per_day": round(float(slope), 2),
        "latest_mv": sums.latest_mv,
    }
    for label, level in (
        ("low", low_battery_threshold_mv(device)),
        ("critical", collar_setting(device, "critical_battery_mv")),
        ("empty", EMPTY_MV),
    ):
        trend[f"{label}_mv"] = level
        trend[f"{label}_on"] = None
        if slope < 0:
            at_day = float((level - intercept) / slope)  # days since the window's start
            # A nearly flat line reaches the level centuries away (or, for a pack already below it, left
            # it centuries ago): no date rather than a timedelta overflow.
            if -FORECAST_HORIZON_DAYS <= at_day - sums.first_day <= FORECAST_HORIZON_DAYS:
                # to the second: the store's day counts carry a few microseconds of rounding
                on = sums.origin + timedelta(seconds=round(at_day * SECONDS_PER_DAY))
                trend[f"{label}_on"] = on.replace(microsecond=0).isoformat()
    return trend


def check_battery_forecast(
    session: Session,
    device: Device,
    animal_id: int | None,
    now: datetime,
    profile: BatteryProfile,
    trend: dict[str, Any] | None = None,
    open_now: Alert | None | object = alerts.NOT_READ,
    fitted_at: datetime | None = None,
) -> int | None:
    """Raise battery_forecast when the trend (read here unless given) reaches the collar's critical
    level within warn_days. open_now: the collar's open battery_forecast (or None) when the caller
    holds it already (else it is read here). fitted_at: the wearer's fitting (`check_battery`)."""
    trend = trend if trend is not None else battery_trend(session, device, now, profile)
    if trend is None or trend["critical_on"] is None:
        return None
    critical_on = datetime.fromisoformat(trend["critical_on"])
    if critical_on - now > timedelta(days=profile.warn_days):
        return None
    if open_now is alerts.NOT_READ:
        open_now = alerts.open_alert(session, device.device_id, BATTERY_FORECAST)
    if open_now is None and _still_low_since_closed(session, device, BATTERY_FORECAST, fitted_at):
        return None
    alert, _ = alerts.raise_alert(
        session,
        device_id=device.device_id,
        animal_id=animal_id,
        alert_type=BATTERY_FORECAST,
        source=alerts.SOURCE_SERVER,
        time=now,
        evidence={**trend, "warn_days": profile.warn_days},
        open_now=open_now,
    )
    return alert.id


def battery_recovered(device: Device, profile: BatteryProfile) -> bool:
    """The last reading is back above the collar's low level by its hysteresis."""
    return device.battery_mv is not None and device.battery_mv >= low_battery_threshold_mv(device) + profile.recover_mv
