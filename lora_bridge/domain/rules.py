"""Server-side alert rules; they raise alerts through the same model as the collars do.

- low_battery: a status reports battery_mv below the threshold (one open alert per collar).
- offline: a collar not heard for `offline_after_s`; closed by Tembo itself when the collar is heard
  again (verdict true: it really was silent).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.domain import alerts
from lora_bridge.store.tables import Animal, Device

log = logging.getLogger(__name__)

LOW_BATTERY = "low_battery"
OFFLINE = "offline"


def check_battery(session: Session, device: Device, animal_id: int | None, time: datetime, threshold_mv: int) -> int | None:
    """Raise low_battery when the collar's last battery reading is under threshold_mv; the alert id."""
    if device.battery_mv is None or device.battery_mv >= threshold_mv:
        return None
    alert, _ = alerts.raise_alert(
        session,
        device_id=device.device_id,
        animal_id=animal_id,
        alert_type=LOW_BATTERY,
        source=alerts.SOURCE_SERVER,
        time=time,
        evidence={"battery_mv": device.battery_mv, "threshold_mv": threshold_mv},
    )
    return alert.id


def check_offline(session: Session, now: datetime, offline_after_s: int) -> list[int]:
    """Raise offline for every collar silent longer than offline_after_s at `now`; the new alert ids."""
    cutoff = now - timedelta(seconds=offline_after_s)
    silent = session.scalars(
        select(Device).where(Device.last_seen.is_not(None), Device.last_seen < cutoff)
    ).all()
    raised: list[int] = []
    for device in silent:
        if alerts.open_alert(session, device.device_id, OFFLINE) is not None:
            continue
        animal_id = session.scalars(select(Animal.id).where(Animal.device_id == device.device_id)).first()
        silent_s = int((now - device.last_seen).total_seconds())
        alert, _ = alerts.raise_alert(
            session,
            device_id=device.device_id,
            animal_id=animal_id,
            alert_type=OFFLINE,
            source=alerts.SOURCE_SERVER,
            time=now,
            lat=None,
            lon=None,
            evidence={
                "last_seen": device.last_seen.isoformat(),
                "silent_s": silent_s,
                "offline_after_s": offline_after_s,
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
