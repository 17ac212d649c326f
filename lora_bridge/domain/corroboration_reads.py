"""What a batch's poaching-risk and mortality alerts are weighed against, read once for the batch.

`rules_corroboration.corroborate` weighs an alert against the fixes and activity summaries of its own
collar and of its herd mates within its window. Read alert by alert that is four statements an alert (a
herd alerting at once: 24 alerts, 96 round trips); a batch's alerts lie in a few windows, so every fix and
summary of those windows is read here in two statements (and the collars' poaching-risk alerts of those
windows in a third, when the batch has one to weigh), and each alert takes its part of them. An alert
whose window those do not cover (one a rule raised after the read) is read for by itself, as before.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from lora_bridge.store.tables import ActivitySummary, Alert, Position

log = logging.getLogger(__name__)

Window = tuple[datetime, datetime]  # from, to, both included
POACHING = "poaching_risk"  # the alerts a herd mate's poaching-risk alert is weighed with


def merged(windows: Iterable[Window]) -> list[Window]:
    """windows as the fewest disjoint windows covering the same times, in time order."""
    together: list[Window] = []
    for start, end in sorted(windows):
        if together and start <= together[-1][1]:
            together[-1] = (together[-1][0], max(together[-1][1], end))
        else:
            together.append((start, end))
    return together


@dataclass(frozen=True)
class AroundAlerts:
    """Every collar's fixes and activity summaries within windows, each list in time order."""

    windows: list[Window]
    fixes: list[Any]  # rows of device_id, time, lat, lon
    fix_times: list[datetime]
    summaries: list[Any]  # rows of device_id, time, interval_min, shares_pct
    summary_times: list[datetime]
    # rows of device_id, time of the poaching-risk alerts; None when not read (no such alert to weigh)
    poaching: list[Any] | None = None
    poaching_times: list[datetime] | None = None

    def covers(self, start: datetime, end: datetime) -> bool:
        """The reads hold every fix and summary from start to end."""
        return any(first <= start and end <= last for first, last in self.windows)

    def fixes_within(self, start: datetime, end: datetime) -> list[Any]:
        """The fixes of every collar from start to end, in time order."""
        return self.fixes[bisect_left(self.fix_times, start):bisect_right(self.fix_times, end)]

    def summaries_within(self, start: datetime, end: datetime) -> list[Any]:
        """The activity summaries of every collar from start to end, in time order."""
        return self.summaries[bisect_left(self.summary_times, start):bisect_right(self.summary_times, end)]

    def poaching_within(self, start: datetime, end: datetime) -> list[Any] | None:
        """The poaching-risk alerts of every collar from start to end; None when they were not read."""
        if self.poaching is None or self.poaching_times is None:
            return None
        return self.poaching[bisect_left(self.poaching_times, start):bisect_right(self.poaching_times, end)]


def read_around(session: Session, windows: Iterable[Window], poaching: bool) -> AroundAlerts:
    """Every fix and activity summary within windows, and every poaching-risk alert when poaching, in one
    statement each (none when windows is empty)."""
    together = merged(windows)
    if not together:
        return AroundAlerts([], [], [], [], [])
    fixes = session.execute(
        select(Position.device_id, Position.time, Position.lat, Position.lon)
        .where(_within(Position.time, together))
        .order_by(Position.time)
    ).all()
    summaries = session.execute(
        select(ActivitySummary.device_id, ActivitySummary.time, ActivitySummary.interval_min,
               ActivitySummary.shares_pct)
        .where(_within(ActivitySummary.time, together))
        .order_by(ActivitySummary.time)
    ).all()
    alarms = session.execute(
        select(Alert.device_id, Alert.time)
        .where(Alert.alert_type == POACHING, _within(Alert.time, together))
        .order_by(Alert.time)
    ).all() if poaching else None
    log.debug("read around alerts windows=%d fixes=%d summaries=%d poaching=%s", len(together), len(fixes),
              len(summaries), None if alarms is None else len(alarms))
    return AroundAlerts(together, fixes, [row.time for row in fixes], summaries, [row.time for row in summaries],
                        alarms, None if alarms is None else [row.time for row in alarms])


def _within(column: Any, windows: list[Window]) -> Any:
    return or_(*(and_(column >= start, column <= end) for start, end in windows))
