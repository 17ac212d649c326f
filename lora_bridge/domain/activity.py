"""Activity summaries: how an animal spent each interval, by behaviour class."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.store.tables import ActivitySummary


def shares_by_class(shares: list[float], class_names: list[str]) -> dict[str, float]:
    """{class name: percent of the interval}; classes beyond the known names are named class_<i>.

    The codec already turns the wire's half-percent u8 into percent.
    """
    result: dict[str, float] = {}
    for index, share in enumerate(shares):
        name = class_names[index] if index < len(class_names) else f"class_{index}"
        result[name] = float(share)
    return result


def latest(session: Session, device_id: str) -> ActivitySummary | None:
    """The collar's newest activity summary."""
    return session.scalars(
        select(ActivitySummary)
        .where(ActivitySummary.device_id == device_id)
        .order_by(ActivitySummary.time.desc())
        .limit(1)
    ).first()


def add_activity(
    session: Session,
    *,
    device_id: str,
    animal_id: int | None,
    time: datetime,
    fields: dict[str, Any],
    class_names: list[str],
    raw_uplink_id: int | None,
) -> ActivitySummary | None:
    """Store one activity summary unless this collar already sent one for that interval start."""
    existing = session.scalars(
        select(ActivitySummary.id).where(ActivitySummary.device_id == device_id, ActivitySummary.time == time)
    ).first()
    if existing is not None:
        return None
    shares = shares_by_class([float(s) for s in fields.get("shares") or []], class_names)
    dominant = max(shares, key=lambda name: shares[name]) if shares else None
    summary = ActivitySummary(
        device_id=device_id,
        animal_id=animal_id,
        time=time,
        interval_min=int(fields.get("interval_min") or 0),
        model_version=fields.get("model_version"),
        vedba_mean_mg=fields.get("vedba_mean_mg"),
        vedba_max_mg=fields.get("vedba_max_mg"),
        shares_pct=shares,
        dominant=dominant,
        raw_uplink_id=raw_uplink_id,
    )
    session.add(summary)
    return summary
