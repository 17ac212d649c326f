"""Collar-health rules of the server; they raise alerts through the same model as the collars do.

- low_battery: a status reports battery_mv below the collar's own `low_battery_mv` (its reported
  setting, else the collar firmware's default: one threshold, the collar's). Closed by Tembo when a
  reading is back above it by the collar's hysteresis.
- offline: a collar silent for longer than its own schedule allows: `missed_reports` of its reported
  `status_interval_s` (else the firmware default) plus a grace; closed by Tembo when it is heard again
  (verdict true: it really was silent).
- battery_forecast: the trend of the last readings (least squares) reaches the collar's
  `critical_battery_mv` within `warn_days`; the evidence carries the predicted date.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from collar_firmware import risk
from collar_firmware.config import BATTERY_CURVE
from collar_firmware.config import DEFAULTS as COLLAR_DEFAULTS
from lora_bridge.domain import alerts
from lora_bridge.domain.rules_profiles import BatteryProfile, OfflineProfile, RuleProfile
from lora_bridge.store import bulk
from lora_bridge.store.tables import Alert, Animal, BatteryReading, Device

log = logging.getLogger(__name__)

LOW_BATTERY = "low_battery"
OFFLINE = "offline"
BATTERY_FORECAST = "battery_forecast"
EMPTY_MV = BATTERY_CURVE[-1][0]  # the reference pack's 0 %
FORECAST_HORIZON_DAYS = 20 * 365  # past a collar's service life a battery date says nothing


def collar_setting(device: Device, name: str) -> int:
    """The collar's setting `name`: what it last reported (port 3), else the firmware default."""
    reported = (device.reported_settings or {}).get(name)
    if isinstance(reported, int) and not isinstance(reported, bool):
        return reported
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


def check_battery(session: Session, device: Device, animal_id: int | None, time: datetime) -> int | None:
    """Raise low_battery when the collar's last battery reading is under its own threshold; the alert id."""
    threshold_mv = low_battery_threshold_mv(device)
    if device.battery_mv is None or device.battery_mv >= threshold_mv:
        return None
    if alerts.open_alert(session, device.device_id, LOW_BATTERY) is None and _still_low_since_closed(
        session, device, LOW_BATTERY
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
            "battery_mv": device.battery_mv,
            "threshold_mv": threshold_mv,
        },
    )
    return alert.id


def _still_low_since_closed(session: Session, device: Device, alert_type: str) -> bool:
    """The collar's last alert of this type (low_battery, battery_forecast) was closed while the battery
    did not recover since (no reading above, by the collar's hysteresis, the collar's low level for
    low_battery or the last reading the forecast saw, as a new pack gives): the same condition."""
    closed = alerts.last_closed(session, device.device_id, alert_type)
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
    heard = session.scalars(select(Device).where(Device.last_seen.is_not(None), Device.last_seen < now)).all()
    if not heard:
        return raised
    animals: dict[str, Animal] = {}
    for animal in session.scalars(select(Animal).where(Animal.device_id.is_not(None)).order_by(Animal.id.desc())):
        animals[animal.device_id] = animal  # the oldest animal of a collar wins, as elsewhere
    already = set(
        session.scalars(
            select(Alert.device_id).where(Alert.alert_type == OFFLINE, Alert.open_key.is_not(None))
        )
    )
    silent = {
        d.device_id: d.last_seen
        for d in heard
        if d.device_id not in already
        and (now - d.last_seen).total_seconds() > offline_after_s(d, profile_of(d, animals.get(d.device_id)).offline)
    }
    if silent:  # a silence a ranger already closed (the collar not heard since) is not raised again
        for device_id, evidence in session.execute(
            select(Alert.device_id, Alert.evidence).where(
                Alert.alert_type == OFFLINE,
                Alert.state == alerts.STATE_RESOLVED,
                Alert.device_id.in_(silent),
                Alert.time >= min(silent.values()),
            )
        ):
            if (evidence or {}).get("last_seen") == silent[device_id].isoformat():
                already.add(device_id)
    with session.no_autoflush:
        for device in heard:
            animal = animals.get(device.device_id)
            limit_s = offline_after_s(device, profile_of(device, animal).offline)
            silent_s = int((now - device.last_seen).total_seconds())
            if silent_s <= limit_s or device.device_id in already:
                continue
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


def close_offline(session: Session, device: Device, heard_at: datetime) -> int | None:
    """The collar was heard again: resolve its open offline alert; the alert id."""
    alert = alerts.open_alert(session, device.device_id, OFFLINE)
    if alert is None or heard_at <= alert.time:
        return None
    alerts.resolve(session, alert.id, alerts.SYSTEM_ACTOR, "true", note=f"heard again at {heard_at.isoformat()}")
    return alert.id


def queue_reading(session: Session, device_id: str, time: datetime, battery_mv: Any) -> None:
    """Keep the battery reading of one status (its own time) for the trend: queued with the unit of
    work's other rows and written with them in one statement (`store.bulk`); a reading the store
    already holds for that collar and time (a replayed body, a status the collar sent again) is left
    as it is. Every status's reading is kept, whatever the batch it came in."""
    if battery_mv is None:
        return
    bulk.queue_row(session, BatteryReading.__table__,
                   {"device_id": device_id, "time": time, "battery_mv": int(battery_mv)})


def battery_trend(session: Session, device: Device, now: datetime, profile: BatteryProfile,
                  readings: list[tuple[datetime, int]] | None = None) -> dict[str, Any] | None:
    """Slope (mV/day) of the readings of the last window_days and the dates it reaches the collar's
    low, critical and empty levels; None when there are too few readings or too short a span.
    readings: the collar's stored (time, mV) readings from the window's start on, in time order, when
    the caller read them already (else they are read here)."""
    since = now - timedelta(days=profile.window_days)
    rows = readings if readings is not None else session.execute(
        select(BatteryReading.time, BatteryReading.battery_mv)
        .where(BatteryReading.device_id == device.device_id, BatteryReading.time >= since)
        .order_by(BatteryReading.time)
    ).all()
    if len(rows) < profile.min_readings:
        return None
    t0 = rows[0][0]
    days = np.array([(t - t0).total_seconds() / 86400 for t, _ in rows])
    if days[-1] < profile.min_span_days:
        return None
    mv = np.array([v for _, v in rows], dtype=float)
    slope, intercept = np.polyfit(days, mv, 1)
    trend: dict[str, Any] = {
        "rule": "least-squares line through the battery readings of the window",
        "readings": len(rows),
        "window_days": profile.window_days,
        "slope_mv_per_day": round(float(slope), 2),
        "latest_mv": int(mv[-1]),
    }
    for label, level in (
        ("low", low_battery_threshold_mv(device)),
        ("critical", collar_setting(device, "critical_battery_mv")),
        ("empty", EMPTY_MV),
    ):
        trend[f"{label}_mv"] = level
        trend[f"{label}_on"] = None
        if slope < 0:
            at_day = float((level - intercept) / slope)
            # A nearly flat line reaches the level centuries away (or, for a pack already below it, left
            # it centuries ago): no date rather than a timedelta overflow.
            if -FORECAST_HORIZON_DAYS <= at_day <= FORECAST_HORIZON_DAYS:
                trend[f"{label}_on"] = (t0 + timedelta(days=at_day)).isoformat()
    return trend


def check_battery_forecast(
    session: Session,
    device: Device,
    animal_id: int | None,
    now: datetime,
    profile: BatteryProfile,
    trend: dict[str, Any] | None = None,
    open_now: Alert | None | object = alerts.NOT_READ,
) -> int | None:
    """Raise battery_forecast when the trend (read here unless given) reaches the collar's critical
    level within warn_days. open_now: the collar's open battery_forecast (or None) when the caller
    holds it already (else it is read here)."""
    trend = trend if trend is not None else battery_trend(session, device, now, profile)
    if trend is None or trend["critical_on"] is None:
        return None
    critical_on = datetime.fromisoformat(trend["critical_on"])
    if critical_on - now > timedelta(days=profile.warn_days):
        return None
    if open_now is alerts.NOT_READ:
        open_now = alerts.open_alert(session, device.device_id, BATTERY_FORECAST)
    if open_now is None and _still_low_since_closed(session, device, BATTERY_FORECAST):
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
