"""An alert's life after it is raised: auto-resolve when its condition clears, escalation when nobody
acknowledges it in time, and each type's precision from the rangers' verdicts.

- auto-resolve: Tembo closes the alert itself with the reason (event `auto_resolved`), and leaves the
  verdict empty: only a ranger says whether it was true (`resolve` takes a verdict on it later).
  Poaching-risk and mortality are never closed by Tembo.
- escalation: a `new` alert (priority > 0) not acknowledged `after_min[priority]` minutes after it was
  raised is escalated (event `escalated`, level 1, 2, ... up to `max_level`): its priority goes one
  step up EarthRanger's scale (100 → 200 → 300, never past 300), so routes with a higher
  `min_priority` (and those marked `escalation_only`) now get it and EarthRanger's event is raised
  too. The next escalation is due `after_min[new priority]` minutes after the last one was due. The
  event keeps the level, when it was due and the priority before and after. An alert already at the
  top of the scale (300) is still escalated when nobody answers (the escalation-only routes, e.g. the
  warden, are told), but its priority does not change: the event says `priority` and
  `top_of_scale`, with no "from -> to", and the log says it stayed.
- precision: per type, true / (true + false_alarm) over resolved alerts with a verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lora_bridge.domain import alerts
from lora_bridge.domain.rules_corroboration import CORROBORATED
from lora_bridge.domain.rules_cursors import alerts_of_free_collars
from lora_bridge.domain.rules_profiles import RuleProfile
from lora_bridge.store.tables import Alert, AlertEvent, Animal, Device

log = logging.getLogger(__name__)

NEVER_AUTO_RESOLVED = ("poaching_risk", "mortality", "tamper")
ESCALATED = alerts.ACTION_ESCALATED
AUTO_RESOLVED = alerts.ACTION_AUTO_RESOLVED


def auto_resolve(session: Session, alert: Alert, reason: str, at: datetime) -> bool:
    """Close an open alert because its condition cleared (reason: what cleared, in words without a time;
    at: when it cleared, kept as the step's `cleared_at` for the dashboard to say in its own words);
    False if kept, or if a ranger resolved it since the rules read it (read without its row lock: their
    resolution stands, `alerts.close_if_still_open`)."""
    if alert.state not in alerts.OPEN_STATES or alert.alert_type in NEVER_AUTO_RESOLVED:
        return False
    if not alerts.close_if_still_open(session, alert, alerts.SYSTEM_ACTOR):
        return False
    alerts.record_event(session, alert, alerts.SYSTEM_ACTOR, AUTO_RESOLVED, {"reason": reason, "cleared_at": at.isoformat()})
    log.info(
        "alert auto-resolved alert_id=%d device_id=%s cleared_at=%s: %s",
        alert.id,
        alert.device_id,
        at.isoformat(),
        reason,
        extra={"alert_id": alert.id, "device_id": alert.device_id, "reason": reason},
    )
    return True


def escalation_level(session: Session, alert_id: int) -> int:
    """How many times this alert was escalated."""
    return int(
        session.scalar(
            select(func.count()).select_from(AlertEvent).where(AlertEvent.alert_id == alert_id, AlertEvent.action == ESCALATED)
        )
        or 0
    )


@dataclass(frozen=True)
class Escalation:
    """One escalation: the alert, its new level, and its priority before and after."""

    alert_id: int
    level: int
    priority_from: int
    priority_to: int
    due_at: datetime

    @property
    def priority_changed(self) -> bool:
        """False for an alert escalated at the top of EarthRanger's scale (it stays at 300)."""
        return self.priority_to != self.priority_from

    def detail(self) -> dict[str, Any]:
        """What the alert's history and its notifications say about it."""
        if not self.priority_changed:
            return {"level": self.level, "priority": self.priority_to, "top_of_scale": True,
                    "due_at": self.due_at.isoformat()}
        return {
            "level": self.level,
            "priority_from": self.priority_from,
            "priority_to": self.priority_to,
            "due_at": self.due_at.isoformat(),
        }


def escalate(
    session: Session,
    now: datetime,
    profile_of: Callable[[Device, Animal | None], RuleProfile],
    wall_clock: bool = True,
) -> list[Escalation]:
    """Escalate every new alert left unacknowledged too long at now, raising its priority one step;
    what was escalated.

    On the wall clock an alert's waiting starts when the bridge learnt of it (a late-delivered alert
    is not escalated on arrival, one the collar dated ahead is not held back), or when corroboration
    let it go after holding it at priority 0; with a given clock (replay, the twin) at the alert's own
    time."""
    escalated: list[Escalation] = []
    # The collars' cursors first (the lock order of `rules_cursors`); a collar busy in an ingest batch
    # is escalated at the next round. Its alerts read after, as they are once it is free.
    # Under the alerts' row locks: one a ranger is acknowledging now is escalated only if the
    # acknowledgement fails, never recorded as escalated after it.
    waiting = alerts_of_free_collars(session, Alert.state == alerts.STATE_NEW, Alert.priority > alerts.PRIORITY_INFO,
                                     for_update=True)
    if not waiting:
        return escalated
    history: dict[int, list[dict[str, Any]]] = {}
    released: dict[int, datetime | None] = {}  # when an alert held at priority 0 was last let go
    for alert_id, action, detail, at in session.execute(
        select(AlertEvent.alert_id, AlertEvent.action, AlertEvent.detail, AlertEvent.at)
        .where(AlertEvent.alert_id.in_([a.id for a in waiting]), AlertEvent.action.in_((ESCALATED, CORROBORATED)))
        .order_by(AlertEvent.id)
    ):
        if action == ESCALATED:
            history.setdefault(alert_id, []).append(dict(detail or {}))
        elif (detail or {}).get("held"):
            released[alert_id] = None
        elif alert_id in released and released[alert_id] is None:
            released[alert_id] = at
    devices = {d.device_id: d for d in session.scalars(
        select(Device).where(Device.device_id.in_({a.device_id for a in waiting}))
    )}
    animals = {a.id: a for a in session.scalars(
        select(Animal).where(Animal.id.in_({a.animal_id for a in waiting if a.animal_id}))
    )}
    for alert in waiting:
        device = devices.get(alert.device_id)
        animal = animals.get(alert.animal_id) if alert.animal_id else None
        profile = profile_of(device, animal).escalation
        minutes = profile.after_min.get(alert.priority)
        before = history.get(alert.id, [])
        level = len(before)
        if minutes is None or level >= profile.max_level:
            continue
        # On the wall clock from when the bridge learnt of it, whatever the collar's clock says (a
        # collar dating its alert hours ahead, local time stamped as UTC, had held it back that long),
        # or from when corroboration let it go, if it was held: until then nobody had been told.
        since = max(alert.created_at, released.get(alert.id) or alert.created_at) if wall_clock else alert.time
        last_due = before[-1].get("due_at") if before else None
        if last_due:
            due = datetime.fromisoformat(last_due) + timedelta(minutes=minutes)
        else:  # the first escalation (or one recorded before escalations kept when they were due)
            due = since + timedelta(minutes=minutes * (level + 1))
        if now < due:
            continue
        step = Escalation(alert.id, level + 1, alert.priority, alerts.raised_priority(alert.priority), due)
        alert.priority = step.priority_to
        alerts.record_event(
            session, alert, alerts.SYSTEM_ACTOR, ESCALATED,
            {**step.detail(), "unacknowledged_min": round((due - since).total_seconds() / 60, 1)},
        )
        context = {"alert_id": alert.id, "device_id": alert.device_id, "level": step.level}
        if step.priority_changed:
            log.warning("alert escalated alert_id=%d device_id=%s level=%d priority %d -> %d", alert.id,
                        alert.device_id, step.level, step.priority_from, step.priority_to, extra=context)
        else:
            log.warning("alert escalated alert_id=%d device_id=%s level=%d, still unanswered at priority %d "
                        "(the top of the scale: escalation routes told, priority unchanged)", alert.id,
                        alert.device_id, step.level, step.priority_to, extra=context)
        escalated.append(step)
    return escalated


def precision_by_type(session: Session) -> dict[str, dict[str, Any]]:
    """Per alert type: resolved alerts by verdict, how many wait for one, and the precision
    true / (true + false_alarm) (None while nothing is judged). The one figure the dashboard and the
    twin's score both read."""
    rows = session.execute(
        select(Alert.alert_type, Alert.verdict, func.count())
        .where(Alert.state == alerts.STATE_RESOLVED)
        .group_by(Alert.alert_type, Alert.verdict)
    ).all()
    return precision_of(rows)


def precision_of(counts: Iterable[tuple[str, str | None, int]]) -> dict[str, dict[str, Any]]:
    """`precision_by_type` of resolved alerts counted as (alert type, verdict or None, how many)."""
    result: dict[str, dict[str, Any]] = {}
    for alert_type, verdict, count in counts:
        entry = result.setdefault(alert_type, {"true": 0, "false_alarm": 0, "unknown": 0})
        if verdict is None:
            entry["unjudged"] = entry.get("unjudged", 0) + int(count)
        else:
            entry[verdict] = int(count)
    for entry in result.values():
        judged = entry["true"] + entry["false_alarm"]
        entry["precision"] = entry["true"] / judged if judged else None
    return result
