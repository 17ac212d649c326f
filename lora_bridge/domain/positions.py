"""GNSS fixes from status, positions and alert messages."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from lora_bridge.decode import degrees
from lora_bridge.domain.rules_cursors import lock_cursors_of_fixes
from lora_bridge.store import bulk
from lora_bridge.store.tables import Position

MAX_FIXES_PER_MESSAGE = 5
# A status's fix_age_s saturates here: the fix is older than the counter can say, so its time is unknown.
FIX_AGE_UNKNOWN_S = 0xFFFF


def fixes_in_message(fields: dict[str, Any], time: datetime) -> list[tuple[datetime, float, float]]:
    """(time, lat, lon) of every valid fix a decoded message carries; time is the message time."""
    message = fields.get("message")
    if message == "positions":
        found = []
        for fix in list(fields.get("fixes") or [])[:MAX_FIXES_PER_MESSAGE]:
            if not isinstance(fix, dict):
                continue
            where = degrees(fix)
            dt_s = fix.get("dt_s", 0)
            if where is not None and isinstance(dt_s, int):
                found.append((time + timedelta(seconds=dt_s), where[0], where[1]))
        return found
    where = degrees(fields)
    if where is None:
        return []
    fix_time = time
    fix_age_s = fields.get("fix_age_s")
    if message == "status" and isinstance(fix_age_s, int):
        if fix_age_s >= FIX_AGE_UNKNOWN_S:
            return []
        fix_time = time - timedelta(seconds=fix_age_s)
    return [(fix_time, where[0], where[1])]


# A collar's fixes are inserted under its rules' lock, so their ids follow the order their transactions
# commit in and the rules never move past a fix still being written (PostgreSQL; see rules_cursors).
bulk.before_writing(Position.__table__, lock_cursors_of_fixes)

# session.info key: the fixes a unit of work (a batch of uplinks) added, so its later uplinks need not
# flush them to see them.
FIXES_ADDED = "tembo_fixes_added"


def add_position(
    session: Session,
    *,
    device_id: str,
    animal_id: int | None,
    time: datetime,
    lat: float,
    lon: float,
    message: str,
    raw_uplink_id: int | None,
) -> bool:
    """Store one fix unless this unit of work already has one of this collar at that time (a fix
    the store already holds at that time is kept as it is); True when the fix was queued.

    The row is written with the unit of work's other fixes in one statement (`store.bulk`), before
    anything reads the store again in that unit of work.
    """
    added = session.info.setdefault(FIXES_ADDED, set())  # (device, time) added in this unit of work
    if (device_id, time) in added:
        return False
    added.add((device_id, time))
    bulk.queue_row(session, Position.__table__, {
        "device_id": device_id,
        "animal_id": animal_id,
        "time": time,
        "lat": lat,
        "lon": lon,
        "message": message,
        "raw_uplink_id": raw_uplink_id,
    })
    return True


FIX_COLUMNS = ("time", "lat", "lon")


def recent_fixes(session: Session, device_id: str, limit: int) -> list[tuple[datetime, float, float]]:
    """The collar's last `limit` fixes, newest first, each (time, lat, lon), the fixes this unit of work
    queued included without writing them first (`bulk.newest_of_collar`: a batch's fixes stay one
    insert however many collar alerts in it ask for their evidence)."""
    return bulk.newest_of_collar(session, Position, device_id, FIX_COLUMNS, limit)


def fixes_worn_by(session: Session, device_id: str, animal_id: int, until: datetime,
                  limit: int) -> list[tuple[datetime, float, float]]:
    """The last `limit` fixes of the collar filed under animal_id at or before until, newest first
    (`bulk.newest_of_wearer`): the evidence of a previous wearer's backlog alert is hers alone."""
    return bulk.newest_of_wearer(session, Position, device_id, animal_id, until, FIX_COLUMNS, limit)


def read_recent_fixes_ahead(session: Session, device_ids: list[str], limit: int) -> None:
    """The stored last `limit` fixes of every collar of device_ids read now, together, for their
    `recent_fixes` (`bulk.read_newest_ahead`)."""
    bulk.read_newest_ahead(session, Position, device_ids, FIX_COLUMNS, limit)
