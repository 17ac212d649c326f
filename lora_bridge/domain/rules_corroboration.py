"""Corroboration: a collar's poaching-risk or mortality alert weighed against what the bridge knows.

Four witnesses, each for, against or silent (weight 0), summed as log-odds onto a prior:
- positions: the animal's own fixes around the alert (a flight shows as speed; a dead animal does not move);
- behaviour: its activity summaries around the alert (running shares; resting shares);
- herd: collars within `herd_radius_m` at the time (a herd flees together; a herd resting together is asleep);
- night: the collar's own night (`collar_firmware.risk.is_night`, one definition with the collar).
The confidence is the logistic of the sum. Below `hold_below` the alert is kept but held at priority 0,
so nobody is woken for it; the evidence says which witness said what.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from collar_firmware.risk import is_night
from lora_bridge.domain import alerts, corroboration_reads
from lora_bridge.domain.corroboration_reads import AroundAlerts, Window
from lora_bridge.domain.open_alerts import OpenAlert
from lora_bridge.domain.rules import collar_setting
from lora_bridge.domain.rules_movement import exclude_outliers, project
from lora_bridge.domain.rules_profiles import RuleProfile
from lora_bridge.store.tables import ActivitySummary, Alert, Device, Position

CORROBORATED = alerts.ACTION_CORROBORATED  # the alert event of a new confidence (detail: confidence, held)
CORROBORATION_KEY = "corroboration"  # where the alert's evidence keeps the verdict

POACHING = corroboration_reads.POACHING
MORTALITY = "mortality"
CORROBORATED_TYPES = (POACHING, MORTALITY)
RUN_CLASSES = ("run", "running", "flight")
REST_CLASSES = ("rest", "resting", "lying", "still")


def window_of(alert: Alert | OpenAlert, profile: RuleProfile) -> Window:
    """The times around alert that its corroboration weighs: its profile's window either side."""
    window = timedelta(minutes=profile.corroboration.window_min)
    return alert.time - window, alert.time + window


def corroborate(session: Session, alert: Alert, device: Device, profile: RuleProfile,
                around: AroundAlerts | None = None) -> dict[str, Any]:
    """Weigh alert (poaching_risk or mortality) and write its confidence into the alert; returns the verdict.
    around: its batch's fixes and summaries (`corroboration_reads`), used when they cover its window."""
    p = profile.corroboration
    start, end = window_of(alert, profile)
    if around is not None and not around.covers(start, end):
        around = None
    held_fixes = None if around is None else around.fixes_within(start, end)
    held_summaries = None if around is None else around.summaries_within(start, end)
    own_fixes = _own_rows(session, Position, alert, start, end, held_fixes)
    kept = exclude_outliers([(row.time, row.lat, row.lon) for row in own_fixes], profile.speed).kept
    summaries = _own_rows(session, ActivitySummary, alert, start, end, held_summaries)
    where = _alert_place(alert, kept)
    factors = [
        _positions_factor(alert, kept, profile),
        _behaviour_factor(alert, summaries, profile),
        _herd_factor(session, alert, where, profile, around),
        _night_factor(alert, device, profile),
    ]
    logit = math.log(p.prior / (1 - p.prior)) + sum(f["weight"] for f in factors)
    confidence = 1 / (1 + math.exp(-logit))
    held = confidence < p.hold_below
    previous = (alert.evidence or {}).get(CORROBORATION_KEY, {})
    verdict = {
        "rule": "corroboration: positions, behaviour, herd and night weighed as log-odds on a prior",
        "confidence": round(confidence, 3),
        "prior": p.prior,
        "hold_below": p.hold_below,
        "held": held,
        # Held once and let go since: its "raised" at priority 0 woke nobody, the routes hear it again
        # (`notify.outbox`: EarthRanger's event is raised to the alert's priority).
        "released": not held and bool(previous.get("held") or previous.get("released")),
        "factors": factors,
        "fixes": len(kept),
        "summaries": len(summaries),
    }
    evidence = dict(alert.evidence or {})
    evidence[CORROBORATION_KEY] = verdict
    alert.evidence = evidence
    # Held: nobody is woken. Otherwise its type's priority, or more once escalated.
    alert.priority = alerts.PRIORITY_INFO if held else max(alert.priority, alerts.priority_for(alert.alert_type))
    if previous.get("confidence") != verdict["confidence"]:
        alerts.record_event(
            session, alert, alerts.SYSTEM_ACTOR, CORROBORATED, {"confidence": verdict["confidence"], "held": held}
        )
    return verdict


def _own_rows(session: Session, model: Any, alert: Alert, start: datetime, end: datetime,
              held: list[Any] | None) -> list[Any]:
    """The rows of model (`Position` or `ActivitySummary`) of the alert's collar from start to end, in time
    order: from held (the batch's rows of every collar in that window) when given, else read."""
    if held is not None:
        return [row for row in held if row.device_id == alert.device_id]
    return list(session.scalars(
        select(model)
        .where(model.device_id == alert.device_id, model.time >= start, model.time <= end)
        .order_by(model.time)
    ))


def _alert_place(alert: Alert, kept: list[tuple[datetime, float, float]]) -> tuple[float, float] | None:
    if alert.lat is not None and alert.lon is not None:
        return (alert.lat, alert.lon)
    if kept:
        nearest = min(kept, key=lambda f: abs((f[0] - alert.time).total_seconds()))
        return (nearest[1], nearest[2])
    return None


def _factor(name: str, weight: float, reason: str) -> dict[str, Any]:
    return {"witness": name, "weight": round(weight, 3), "reason": reason}


def _positions_factor(alert: Alert, kept: list, profile: RuleProfile) -> dict[str, Any]:
    p = profile.corroboration
    before = [f for f in kept if f[0] <= alert.time]
    after = [f for f in kept if f[0] > alert.time]
    if alert.alert_type == POACHING:
        if len(kept) < 2:
            return _factor("positions", 0.0, "fewer than two fixes around the alert")
        xy, _ = project(kept)
        speeds = [
            float(np.hypot(*(xy[i + 1] - xy[i]))) / max((kept[i + 1][0] - kept[i][0]).total_seconds(), 1.0) * 3.6
            for i in range(len(kept) - 1)
        ]
        fastest = max(speeds)
        if fastest >= p.flight_speed_kmh:
            return _factor("positions", p.weight_positions, f"moved at {fastest:.1f} km/h around the alert (flight)")
        if before and after:
            return _factor("positions", -p.weight_positions, f"at most {fastest:.1f} km/h before and after: no flight")
        return _factor("positions", 0.0, f"at most {fastest:.1f} km/h, but no fix on both sides yet")
    radius = profile.immobility.radius_m
    if not after or alert.lat is None:
        return _factor("positions", 0.0, "no fix after the alert yet")
    xy, _ = project([(alert.time, alert.lat, alert.lon), *after])
    farthest = float(np.max(np.hypot(xy[1:, 0] - xy[0, 0], xy[1:, 1] - xy[0, 1])))
    if farthest <= radius:
        return _factor("positions", p.weight_positions, f"{len(after)} fixes after, all within {radius:.0f} m")
    if farthest > 2 * radius:
        return _factor("positions", -p.weight_positions, f"moved {farthest:.0f} m after the alert: alive")
    return _factor("positions", 0.0, f"moved {farthest:.0f} m after the alert (within twice the radius)")


def _share(summary: Any, names: tuple[str, ...]) -> float:
    shares = summary.shares_pct or {}
    return float(sum(v for k, v in shares.items() if str(k).lower() in names))


def _behaviour_factor(alert: Alert, summaries: list[Any], profile: RuleProfile) -> dict[str, Any]:
    p = profile.corroboration
    if not summaries:
        return _factor("behaviour", 0.0, "no activity summary around the alert")
    if alert.alert_type == POACHING:
        running = max(_share(s, RUN_CLASSES) for s in summaries)
        if running >= p.run_share_pct:
            return _factor("behaviour", p.weight_behaviour, f"ran {running:.0f} % of an interval")
        if running < p.run_share_pct / 4:
            return _factor("behaviour", -p.weight_behaviour, f"ran at most {running:.0f} % of any interval")
        return _factor("behaviour", 0.0, f"ran at most {running:.0f} %")
    after = [s for s in summaries if s.time >= alert.time - timedelta(minutes=s.interval_min)]
    if not after:
        return _factor("behaviour", 0.0, "no activity summary since the alert")
    resting = min(_share(s, REST_CLASSES) for s in after)
    if resting >= p.still_share_pct:
        return _factor("behaviour", p.weight_behaviour, f"resting {resting:.0f} % or more of every interval since")
    if resting < 100 - 3 * (100 - p.still_share_pct):
        return _factor("behaviour", -p.weight_behaviour, f"active: resting only {resting:.0f} % of an interval")
    return _factor("behaviour", 0.0, f"resting at least {resting:.0f} %")


def _herd_factor(
    session: Session, alert: Alert, where: tuple[float, float] | None, profile: RuleProfile,
    around: AroundAlerts | None,
) -> dict[str, Any]:
    p = profile.corroboration
    if where is None:
        return _factor("herd", 0.0, "no position for the alert")
    window = timedelta(minutes=p.window_min)
    if around is not None:
        rows = [row for row in around.fixes_within(alert.time - window, alert.time + window)
                if row.device_id != alert.device_id]
    else:
        rows = session.execute(
            select(Position.device_id, Position.time, Position.lat, Position.lon).where(
                Position.device_id != alert.device_id,
                Position.time >= alert.time - window,
                Position.time <= alert.time + window,
            )
        ).all()
    if not rows:
        return _factor("herd", 0.0, "no other collar heard around the alert")
    xy, _ = project([(alert.time, where[0], where[1]), *[(r.time, r.lat, r.lon) for r in rows]])
    distance = np.hypot(xy[1:, 0] - xy[0, 0], xy[1:, 1] - xy[0, 1])
    mates = sorted({rows[i].device_id for i in range(len(rows)) if distance[i] <= p.herd_radius_m})
    if not mates:
        return _factor("herd", 0.0, f"no other collar within {p.herd_radius_m:.0f} m")
    if around is not None:
        near = set(mates)
        summaries = [row for row in around.summaries_within(alert.time - window, alert.time + window)
                     if row.device_id in near]
    else:
        summaries = list(
            session.scalars(
                select(ActivitySummary).where(
                    ActivitySummary.device_id.in_(mates),
                    ActivitySummary.time >= alert.time - window,
                    ActivitySummary.time <= alert.time + window,
                )
            )
        )
    if alert.alert_type == POACHING:
        ran = sorted({s.device_id for s in summaries if _share(s, RUN_CLASSES) >= p.run_share_pct})
        alarmed = sorted(_alarmed(session, alert, mates, window, around))
        fled = sorted(set(ran) | set(alarmed))
        if fled:
            return _factor("herd", p.weight_herd, f"{len(fled)} of {len(mates)} herd mates ran too ({', '.join(fled)})")
        if summaries:
            return _factor("herd", -p.weight_herd / 2, f"{len(mates)} herd mates nearby stayed calm")
        return _factor("herd", 0.0, f"{len(mates)} herd mates nearby, behaviour unknown")
    resting = sorted({s.device_id for s in summaries if _share(s, REST_CLASSES) >= p.still_share_pct})
    if resting and len(resting) == len({s.device_id for s in summaries}):
        return _factor("herd", -p.weight_herd, f"the herd nearby rests too ({', '.join(resting)}): sleep, not death")
    if summaries:
        return _factor("herd", p.weight_herd / 2, "herd mates nearby are active while this animal is still")
    return _factor("herd", 0.0, f"{len(mates)} herd mates nearby, behaviour unknown")


def _alarmed(session: Session, alert: Alert, mates: list[str], window: timedelta,
             around: AroundAlerts | None) -> set[str]:
    """The mates with a poaching-risk alert of their own within window of alert."""
    held = None if around is None else around.poaching_within(alert.time - window, alert.time + window)
    if held is not None:
        near = set(mates)
        return {row.device_id for row in held if row.device_id in near}
    return set(session.scalars(
        select(Alert.device_id).where(
            Alert.device_id.in_(mates),
            Alert.alert_type == POACHING,
            Alert.time >= alert.time - window,
            Alert.time <= alert.time + window,
        )
    ))


def _night_factor(alert: Alert, device: Device, profile: RuleProfile) -> dict[str, Any]:
    if alert.alert_type != POACHING:
        return _factor("night", 0.0, "time of day does not bear on mortality")
    offset = collar_setting(device, "utc_offset_min")
    if is_night(int(alert.time.timestamp()), offset):
        return _factor("night", profile.corroboration.weight_night, "at night (the collar's night)")
    return _factor("night", 0.0, "by day")
