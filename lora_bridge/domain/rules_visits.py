"""One fence alert per visit, whoever saw it first: the collar's own fence alert and the bridge's crossing
rule describe the same visit to a field (or the same walk out of the park), and so does a step back over
the line and in again.

While the visit's alert is open, a second report of it is an occurrence of that alert (`alerts.raise_alert`
keys on collar and type). Once the ranger has resolved it, a later report of the *same* visit (the collar's
alert reaching the bridge after the bridge's own crossing was resolved, or the other way round, or the
animal stepping back over the line for a few minutes) must not wake the ranger again: it is recorded as an
occurrence of the resolved alert. A visit is over once the animal was back on its own side of the line
(outside every farmland fence; inside the park) for `FenceProfile.rejoin_min` or longer, seen by
`confirm_fixes` fixes in a row there, as a crossing is confirmed. Then the next report is a new alert.

A collar's report of a *new* visit within VISIT_MAX of a resolved one (the animal back in the field it was
chased out of, or a bad fix deep in it while the animal grazes beside it: the collar enters a field on one
fix past its margin) is not raised on the collar's word alone: it is recorded on the resolved alert
(`reentry`, awaiting the track) and the bridge's own crossing rule raises the new visit's alert once its
fixes confirm the entry (a second fix past the line: one fix later), while one fix in and the next back out
raises nothing. This holds only where the bridge's fences put the collar's report on the far side too
(else the bridge could never confirm it, and the collar's alert is raised as sent).

All of it on plain (time, lat, lon) fixes and a FenceIndex, so a test can check it by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.domain import alerts
from lora_bridge.domain.geofences import FenceIndex
from lora_bridge.domain.rules_movement import Fix
from lora_bridge.domain.rules_profiles import FenceProfile
from lora_bridge.store.tables import Alert, Position

log = logging.getLogger(__name__)

GEOFENCE_EXIT = "geofence_exit"
GEOFENCE_ENTER = "geofence_enter"
GEOFENCE_FARMLAND = "geofence_farmland"
VISIT_TYPES = (GEOFENCE_EXIT, GEOFENCE_ENTER, GEOFENCE_FARMLAND)
FARMLAND_KINDS = ("farmland",)
# A resolved alert whose last report is older than this is not the visit of a new report, whatever the
# fixes between (a collar silent for half a day says nothing of where the animal was).
VISIT_MAX = timedelta(hours=12)


def away_test(fences: FenceIndex, alert_type: str) -> Callable[[float, float], bool]:
    """A test of (lat, lon): True where the animal is on the far side a fence alert of alert_type is about
    (in a farmland fence, in another fence alerting on entry, out of a fence alerting on exit)."""
    if alert_type == GEOFENCE_EXIT:
        watched = {f.id for f in fences.fences if f.alert_on in ("exit", "both")}
        return lambda lat, lon: bool(watched - set(fences.containing(lat, lon)))
    farmland = alert_type == GEOFENCE_FARMLAND
    watched = {f.id for f in fences.fences
               if f.alert_on in ("enter", "both") and (f.kind in FARMLAND_KINDS) == farmland}
    return lambda lat, lon: bool(watched & set(fences.containing(lat, lon)))


def visit_ended(fixes: list[Fix], away: Callable[[float, float], bool], until: datetime, profile: FenceProfile) -> bool:
    """Whether the fixes (time order) show the animal back on its own side long enough to end a visit:
    `confirm_fixes` or more fixes in a row there spanning `rejoin_min` or more (from the first of them to
    the next fix away, or to `until` when none came)."""
    rejoin = timedelta(minutes=profile.rejoin_min)
    home_since: datetime | None = None
    home_fixes = 0
    for t, lat, lon in fixes:
        if away(lat, lon):
            if home_since is not None and home_fixes >= profile.confirm_fixes and t - home_since >= rejoin:
                return True
            home_since, home_fixes = None, 0
        else:
            home_since = home_since or t
            home_fixes += 1
    return home_since is not None and home_fixes >= profile.confirm_fixes and until - home_since >= rejoin


def resolved_alert_of_visit(
    session: Session, fences: FenceIndex, profile: FenceProfile, device_id: str, alert_type: str, time: datetime,
    since: datetime | None = None, until: datetime | None = None,
) -> Alert | None:
    """The resolved fence alert of this collar and type whose visit a report at `time` belongs to (the
    animal not back on its own side for rejoin_min between the two), or None: the report is a new alert.
    since: the wearer's fitting; an alert before it was another animal's visit; until: when the collar
    came off the wearer (a previous wearer's backlog): an alert since was the next animal's."""
    closed, same_visit = last_visit(session, fences, profile, device_id, alert_type, time, since, until)
    return closed if same_visit else None


def last_visit(
    session: Session, fences: FenceIndex, profile: FenceProfile, device_id: str, alert_type: str, time: datetime,
    since: datetime | None = None, until: datetime | None = None,
) -> tuple[Alert | None, bool]:
    """The collar's last resolved fence alert of this type within VISIT_MAX of a report at `time`, and
    whether the report belongs to its visit: (None, False) when there is none (or no fences to judge by),
    (alert, True) for the same visit, (alert, False) for a new visit after it."""
    if alert_type not in VISIT_TYPES or not len(fences):
        return None, False
    closed = alerts.last_closed(session, device_id, alert_type, since, until)
    if closed is None or time - closed.last_time > VISIT_MAX or closed.time - time > VISIT_MAX:
        return None, False
    start, end = min(closed.time, time), max(closed.time, time)
    fixes = [
        (t, lat, lon)
        for t, lat, lon in session.execute(
            select(Position.time, Position.lat, Position.lon)
            .where(Position.device_id == device_id, Position.time >= start, Position.time <= end)
            .order_by(Position.time)
        )
    ]
    if visit_ended(fixes, away_test(fences, alert_type), end, profile):
        return closed, False
    return closed, True


def collar_report_of(
    session: Session, fences: FenceIndex, profile: FenceProfile, device_id: str, alert_type: str, time: datetime,
    where: tuple[float, float] | None, since: datetime | None = None, until: datetime | None = None,
) -> tuple[Alert | None, bool]:
    """Where a collar's fence report at `time` and `where` goes: (resolved alert, False) when it is of that
    alert's visit; (resolved alert, True) when it is a new visit after it (within VISIT_MAX) that the
    bridge's own fences can confirm (`where` on the far side of them): it waits for the bridge's crossing
    rule; (None, False): raise it as sent. since, until: the wearer's time with the collar (`last_visit`)."""
    closed, same_visit = last_visit(session, fences, profile, device_id, alert_type, time, since, until)
    if closed is None:
        return None, False
    if same_visit:
        return closed, False
    if where is not None and away_test(fences, alert_type)(*where):
        return closed, True
    return None, False


def add_to_resolved(
    session: Session, alert: Alert, *, time: datetime, source: str, actor: str,
    lat: float | None = None, lon: float | None = None, evidence: dict[str, Any] | None = None,
    reentry: bool = False,
) -> None:
    """Record a report of a visit whose alert the ranger already resolved: an occurrence in its history,
    the alert left resolved (nobody is woken again). reentry: the report is of a new visit after it, left
    to the bridge's crossing rule to confirm (see the module's text)."""
    alert.occurrences += 1
    entry: dict[str, Any] = {"time": time.isoformat(), "lat": lat, "lon": lon, "source": source}
    if evidence and "seq" in evidence:
        entry["seq"] = evidence["seq"]
    if evidence and "raw_uplink_id" in evidence:
        entry["raw_uplink_id"] = evidence["raw_uplink_id"]
    if reentry:
        entry["reentry"] = "awaiting the bridge's track"
    known = alerts.known_later(time, evidence)  # the bridge's crossing: known once its fixes confirmed it
    alert.evidence = alerts.with_occurrence(alert.evidence, {**entry, **known})
    detail: dict[str, Any] = {"time": time.isoformat(), "source": source, "while": alert.state,
                              "same_visit": not reentry, **known}
    if reentry:
        detail["reentry"] = ("a new visit by the collar's word only: raised by the bridge's crossing rule once "
                             "its fixes confirm the entry")
        if lat is not None and lon is not None:
            detail["lat"], detail["lon"] = lat, lon
    alerts.record_event(session, alert, actor, alerts.ACTION_REPEATED, detail)
    log.info(
        "fence alert of a visit already resolved alert_id=%d device_id=%s type=%s source=%s%s",
        alert.id, alert.device_id, alert.alert_type, source,
        " (re-entry awaiting the track)" if reentry else "",
        extra={"alert_id": alert.id, "device_id": alert.device_id, "alert_type": alert.alert_type},
    )
