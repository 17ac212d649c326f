"""The server rules, run for one collar after each of its uplinks (or once per collar after a batch of
uplinks) and for every collar on the timer.

A cursor per collar (`rule_cursors`) says which fixes and status the rules have judged: every fix up to
the highest fix id judged, and the newest status time. So an uplink is evaluated once, anything an
uplink path missed (a crash between store and rules, a replay, an MQTT worker) is caught up by the
timer, and a fix back-filled from the collar's flash after a coverage gap (a higher id, an older time)
is still judged. Per collar, in order:
1. battery: at the latest status, forecast the date of empty, close low_battery once recovered;
2. track: the fixes around what is new, with GPS outliers set apart (speed). The track as judged
   before and the track with the new fixes differ in a few segments (a new fix at the end adds one; a
   back-filled fix splits one in two); only those are intersected with the fences, and a crossing that
   the old segments had too (same fence, same way) is the one already raised, not a new one. Then
   immobility at the newest fix, closing alerts whose condition cleared;
3. corroboration of the collar's open poaching-risk and mortality alerts (confidence, held or not).
What changed comes back as alert steps (alert id, "raised" / "auto_resolved" / ...) for the outbox.

Cost: one read of the collar, its animal, its cursor and the fences' fingerprint; one of its open
alerts; one of its recent track; one write of the cursor (more only when something is raised or
closed, or a new status asks for the battery readings of the trend's window). The readings themselves
are kept as each status is applied (`rules.queue_reading`), so none depends on the batch it came in.
The fence index and the rule profiles are built once per process and rebuilt when the fences change.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, union
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.identity import IdentityMap

from lora_bridge.domain import alerts, devices, geofences, herd, open_alerts, rules, rules_visits
from lora_bridge.domain.batch_metres import BatchMetres
from lora_bridge.domain.corroboration_reads import AroundAlerts, read_around
from lora_bridge.domain.geofences import ENTER, EXIT, Crossing, FenceIndex
from lora_bridge.domain.open_alerts import OpenAlert
from lora_bridge.domain.rules_corroboration import (
    CORROBORATED_TYPES,
    POACHING,
    REST_CLASSES,
    corroborate,
    window_of,
)
from lora_bridge.domain.rules_crossings import (
    CONFIRMATION_KEY,
    CONFIRMED,
    LONE_FIX,
    NO_FIX_PAST,
    PENDING,
    TRACK_CHECK_KEY,
    CrossingJudge,
    JudgedCrossing,
    judged_on,
    neighbourhood,
)
from lora_bridge.domain.rules_cursors import (
    CURSOR_COLUMNS,
    Cursor,
    alerts_of_free_collars,
    cursor_of,
    kept_read_covers,
    lock_cursor,
    read_cursors,
    take_read,
    write_cursors,
)
from lora_bridge.domain.rules_cursors import HELD as CURSORS_HELD
from lora_bridge.domain.rules_lifecycle import auto_resolve
from lora_bridge.domain.rules_movement import (
    CleanTrack,
    Fix,
    exclude_outliers,
    exclude_outliers_of_both,
    immobility,
    project,
)
from lora_bridge.domain.rules_profiles import FenceProfile, RuleProfile, RulesConfig
from lora_bridge.errors import is_transient_store_error, log_failure
from lora_bridge.store import bulk, parts
from lora_bridge.store.tables import (
    ActivitySummary,
    Alert,
    Animal,
    Device,
    Position,
    RuleCursor,
)
from lora_bridge.store.utc import utc_now

log = logging.getLogger(__name__)
# A track row's time (id, time, lat, lon), its sort key (in C: every collar's fixes are sorted so).
_ROW_TIME = itemgetter(1)
# Of a row (device_id, id, time, lat, lon) of several collars' fixes: its collar, its collar and time.
_COLLAR = itemgetter(0)
_COLLAR_AND_TIME = itemgetter(0, 2)

# The table the track reads read (`bulk.read_columns`): fixes are written only as queued rows.
_POSITIONS = frozenset({Position.__table__})

IMMOBILITY = "immobility"
GEOFENCE_EXIT = rules_visits.GEOFENCE_EXIT
GEOFENCE_ENTER = rules_visits.GEOFENCE_ENTER
GEOFENCE_FARMLAND = rules_visits.GEOFENCE_FARMLAND
FARMLAND_KINDS = rules_visits.FARMLAND_KINDS
CONTEXT_FIXES = 6  # judged fixes before the new ones, so the first new segments, their confirmation and outliers can be judged
MAX_NEW_FIXES = 2000  # per evaluation; the timer reads on from the cursor
MAX_READ = MAX_NEW_FIXES + 500  # one read of new and recent fixes; past this the rules read the long way


@dataclass
class Steps:
    """What one evaluation changed: (alert id, action) pairs for the outbox, in order."""

    items: list[tuple[int, str]] = field(default_factory=list)
    detail: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)  # per (alert id, action)
    fixes: list[tuple[str, datetime, float, float]] = field(default_factory=list)  # new plausible fixes
    # the collar's open alerts by type, read once (a batch's as rows until a rule changes one: `mapped`)
    open: dict[str, OpenAlert] = field(default_factory=dict)
    # Every open alert of the collar, a previous wearer's too (read once; her backlog is judged on hers)
    all_open: list[OpenAlert] = field(default_factory=list)
    # Judging a previous wearer's backlog: when the collar came off her (her alerts' open key, `herd.open_key_of`)
    worn_until: datetime | None = None

    def add(self, alert_id: int | None, action: str) -> None:
        if alert_id is not None and (alert_id, action) not in self.items:
            self.items.append((alert_id, action))

    def mapped(self, session: Session, alert: OpenAlert | None) -> Alert | None:
        """alert as the mapped object a rule changes (`open_alerts.mapped`), put in place of its row here."""
        if alert is None or isinstance(alert, Alert):
            return alert
        changed = open_alerts.mapped(session, alert)
        if self.open.get(changed.alert_type) is alert:
            self.open[changed.alert_type] = changed
        self.all_open[:] = [changed if each is alert else each for each in self.all_open]
        return changed


class RulesRuntime:
    """Rule profiles and the projected fence index, shared by every evaluation of one bridge."""

    def __init__(self, config: RulesConfig) -> None:
        # The rules file version judged by and the profiles built from it, swapped together (`use`).
        self._version: tuple[RulesConfig, dict[tuple[str | None, ...], RuleProfile]] = (config, {})
        self._fences: FenceIndex | None = None
        self._lock = threading.Lock()
        self.fence_builds = 0

    def fence_index(self, session: Session, version: tuple[int, int, str] | None = None) -> FenceIndex:
        """The fence index, rebuilt when the stored fences changed (version: their fingerprint, if
        already read; else it is read here)."""
        version = version if version is not None else geofences.fence_version(session)
        with self._lock:
            if self._fences is None or self._fences.version != version:
                self._fences = FenceIndex(geofences.all_fences(session))
                self.fence_builds += 1
                log.info("fence index built", extra={"fences": len(self._fences)})
            return self._fences

    def use(self, config: RulesConfig) -> None:
        """Judge by config from now on (the rules file changed): the profiles built are built again."""
        self._version = (config, {})

    @property
    def config(self) -> RulesConfig:
        """The rule profiles judged by now."""
        return self._version[0]

    def profile(self, device: Device | None, animal: Animal | None) -> RuleProfile:
        """The rule profile of the animal wearing device: built once per rules file version for the
        overrides it takes (its species' table, its own), so every animal of no table of its own shares one."""
        config, profiles = self._version  # one version's pair, whatever `use` does meanwhile
        tables = config.animals
        # an animal's names are read only when the rules file has tables of animals' own (few files do)
        if animal is None:
            species, names = None, (device.device_id if device else None,) if tables else ()
        else:
            species, names = animal.species, (animal.name, str(animal.id), animal.device_id) if tables else ()
        # what `RulesConfig.profile_for` merges: the species' table (when it has one), the first name with one
        named = None
        for name in names:  # a loop, not next() over a generator: each of a generator's items is a call
            if name and name in tables:
                named = name
                break
        key = (species if species and species in config.species else None, named)
        profile = profiles.get(key)
        if profile is None:
            profile = config.profile_for(key[0], key[1])
            profiles[key] = profile
        return profile


# session.info key: what evaluate_devices read at once for the collars it is judging (`_CollarsRead`)
COLLARS_READ = "tembo_rules_collars_read"
READ_AT_ONCE = 500  # collars whose rows and open alerts evaluate_devices reads in one go


@dataclass
class _CollarsRead:
    """The collars, animals, cursors and open alerts of several collars and the fences' fingerprint,
    read in three statements for evaluate_devices (what evaluate_device reads for one collar)."""

    asked: frozenset[str]
    rows: dict[str, tuple[Device, Animal | None, Cursor]]
    # each collar's rule profile, looked up once for the batch
    profiles: dict[str, RuleProfile]
    fence_version: tuple[int, int, str]
    open_alerts: dict[str, list[OpenAlert]]  # by collar, as rows (`open_alerts`)
    # the sums of the stored battery readings of the trend's window of each collar with a new status
    readings: dict[str, rules.ReadingSums]
    # the usual track reads of most of these collars, done in one statement (`_read_tracks`)
    tracks: _TracksRead | None = None
    # every fix of the collars none of whose fixes was judged yet (a new collar), by collar in time
    # order, read in one statement (`_read_first_tracks`)
    first_tracks: dict[str, list[tuple[int, datetime, float, float]]] | None = None
    # the fixes of both reads projected to metres, a transform a zone (`batch_metres`)
    metres: BatchMetres | None = None
    # every fix and activity summary around the collars' open poaching-risk and mortality alerts,
    # read at the first of them weighed (`corroboration_reads`)
    around_alerts: AroundAlerts | None = None


@cache
def _collars_reads(size: int) -> dict[str, Any]:
    """The statements of `_read_collars`, built once per count bucket of the collars (`bulk.in_list`):
    every batch runs them, building a statement costs more than its cached compilation, and an
    expanding parameter renders the IN list again at every execution."""
    return {
        "collars": (
            select(Device, Animal, *CURSOR_COLUMNS)
            .outerjoin(Animal, Animal.device_id == Device.device_id)
            .outerjoin(RuleCursor, RuleCursor.device_id == Device.device_id)
            .where(bulk.in_list(Device.device_id, "device", size))
        ),
        "open_alerts": (
            select(*Alert.__table__.columns)
            .where(bulk.in_list(Alert.device_id, "device", size), Alert.open_key.is_not(None))
            .order_by(Alert.id)
        ),
    }


def _read_collars(session: Session, runtime: RulesRuntime, device_ids: list[str]) -> _CollarsRead:
    size = bulk.in_list_size(len(device_ids))
    reads = _collars_reads(size)
    theirs = bulk.in_list_values("device", list(device_ids), size)
    held = _collars_held(session, device_ids)
    if held is not None:  # only their cursors are read, unless the batch read them already
        cursors = take_read(session, device_ids)
        if cursors is None:
            cursors = read_cursors(session, device_ids)
        rows = {device_id: (device, animal, cursors.get(device_id) or Cursor(device_id, False))
                for device_id, (device, animal) in held.items()}
    else:
        rows = {
            row[0].device_id: (row[0], row[1], cursor_of(row[0].device_id, row[2:]))
            for row in session.execute(reads["collars"], theirs)
        }
    profiles = {device_id: runtime.profile(device, animal) for device_id, (device, animal, _) in rows.items()}
    fence_version = geofences.fence_version(session)
    read = _CollarsRead(frozenset(device_ids), rows, profiles, fence_version,
                        open_alerts.read_open(session, reads["open_alerts"], theirs),
                        _read_readings(session, profiles, rows))
    read.tracks = _read_tracks(session, profiles, rows)
    read.first_tracks = _read_first_tracks(session, rows)
    read.metres = BatchMetres.of(_fixes_read(read))
    return read


def _fixes_read(read: _CollarsRead) -> Iterator[list[tuple[int, datetime, float, float]]]:
    """The fixes read for the collars' tracks (their usual reads, contexts and first tracks), a list a read."""
    if read.tracks is not None:
        yield from read.tracks.rows.values()
        yield from (fixes for _, fixes in read.tracks.contexts.values())
    if read.first_tracks is not None:
        yield from read.first_tracks.values()


def _collars_held(session: Session, device_ids: list[str]) -> dict[str, tuple[Device, Animal]] | None:
    """The collars of device_ids and the animals wearing them as this unit of work holds them already
    (an ingest batch read them, or made them, before applying their uplinks: `pipeline.read_batch`,
    `devices.ensure_animal`), stored and current; None when it does not hold every one so (they are
    read from the store then)."""
    animals = session.info.get(devices.ANIMALS_BY_DEVICE)
    if not animals:
        return None
    held: dict[str, tuple[Device, Animal]] = {}
    identity_map = session.identity_map
    for device_id in device_ids:
        # the identity key as `orm.util.identity_key(Device, device_id)` builds it, (class, primary key,
        # identity token), without its mapper look-up: a batch's every collar is looked for so
        device = identity_map.get((Device, (device_id,), None))
        animal = animals.get(device_id)
        if (device is None or animal is None or animal.device_id != device_id
                or not _stored_and_current(identity_map, device) or not _stored_and_current(identity_map, animal)):
            return None
        held[device_id] = (device, animal)
    return held


def _stored_and_current(identity_map: IdentityMap, obj: Any) -> bool:
    """obj is a stored row of this session (in its identity_map) with nothing of it expired (a rolled-back
    savepoint expires what it touched). The identity map holds exactly this session's persistent objects
    (a deleted one leaves it at the flush): one call, where `state.persistent` takes three."""
    state = instance_state(obj)  # what `inspect(obj)` gives a mapped object, without its registry walk
    return identity_map.contains_state(state) and not state.expired_attributes


ContextKey = tuple[datetime, int, int]  # a context read's bounds: (before, highest id, how many)
Shape = tuple[int, frozenset[int], ContextKey | None]  # `_shape` of a track's rows


@dataclass(frozen=True)
class _TracksRead:
    """The fixes of several collars that their usual track reads ask for, read in one statement: every
    fix of theirs from `since` on, and every one newer than id `newer_than`; by collar, in time order.
    A collar whose own lookback and cursor lie within both bounds finds its usual read's answer here.
    And the context reads (`_CONTEXT_READ`) those tracks go on to ask for, read in one more statement:
    by collar, its read's bounds and the fixes found (in time order)."""

    since: datetime
    newer_than: int
    rows: dict[str, list[tuple[int, datetime, float, float]]]
    contexts: dict[str, tuple[ContextKey, list[tuple[int, datetime, float, float]]]] = field(default_factory=dict)
    # What each collar's usual read answered, as `_read_track` shapes it, worked out once when the
    # contexts were: by collar, ((since, cursor id) asked, the track's rows, their `_shape` or None)
    shaped: dict[str, tuple[tuple[datetime, int], list[tuple[int, datetime, float, float]] | None, Shape | None]] = (
        field(default_factory=dict))

    def track_of(self, device_id: str, since: datetime, newer_than: int) -> list[tuple[int, datetime, float, float]] | None:
        """What `_usual_track_read` answers for one collar (its fixes from since on, or newer than
        newer_than, in time order, at most MAX_READ); None when this read does not cover it."""
        fixes = self.rows.get(device_id)
        if fixes is None or since < self.since or newer_than < self.newer_than:
            return None
        return [r for r in fixes if r[1] >= since or r[0] > newer_than][:MAX_READ]


TRACKS_AT_ONCE_ROWS = 20_000  # past this many fixes the collars of a batch read their tracks one by one


@cache
def _tracks_read(size: int) -> Any:
    """The usual track read of several collars at once, built once per count bucket of the collars
    (`bulk.in_list`, both ranges binding the same values): the two index ranges of `_usual_track_read`
    for each collar, with the batch's widest bounds."""
    columns = (Position.device_id, Position.id, Position.time, Position.lat, Position.lon)
    theirs = bulk.in_list(Position.device_id, "device", size)
    both = union(
        select(*columns).where(theirs, Position.time >= bindparam("since")),
        select(*columns).where(theirs, Position.id > bindparam("newer_than")),
    ).subquery("tracks")
    return select(*both.c).limit(bindparam("most"))


def _read_tracks(
    session: Session, profiles: dict[str, RuleProfile], rows: dict[str, tuple[Device, Animal | None, Cursor]]
) -> _TracksRead | None:
    """The usual track reads (`_read_track`) of the collars judged together, in one statement instead
    of one each. Taken: the collars with a cursor by fix id whose lookback starts within a lookback
    of the latest one's (so no collar makes the others read far back); None when fewer than two, or
    when their fixes exceed TRACKS_AT_ONCE_ROWS (each collar reads its own then)."""
    bounds: dict[str, tuple[datetime, int, timedelta]] = {}
    for device_id, (_, _, cursor) in rows.items():
        if cursor.position_id is None or cursor.position_time is None:
            continue
        lookback = _lookback(profiles[device_id])
        bounds[device_id] = (cursor.position_time - lookback, cursor.position_id, lookback)
    if len(bounds) < 2:
        return None
    # list comprehensions, not generators: a generator's every item is a call of its own (a batch's collars)
    latest = max([since for since, _, _ in bounds.values()])
    span = max([lookback for _, _, lookback in bounds.values()])
    taken = {device_id: b for device_id, b in bounds.items() if b[0] >= latest - span}
    if len(taken) < 2:
        return None
    since = min([b[0] for b in taken.values()])
    newer_than = min([b[1] for b in taken.values()])
    size = bulk.in_list_size(len(taken))
    found = bulk.read_column_tuples(session, _tracks_read(size), {
        **bulk.in_list_values("device", list(taken), size),
        "since": since, "newer_than": newer_than, "most": TRACKS_AT_ONCE_ROWS + 1,
    }, _POSITIONS)
    by_collar = _fixes_by_collar(found, taken)
    if by_collar is None:
        return None
    read = _TracksRead(since, newer_than, by_collar)
    # The context each of these tracks will ask for (`_read_track`), read now for all of them at once
    wanted: dict[str, ContextKey] = {}
    for device_id, (collar_since, cursor_id, _) in taken.items():
        new = _Newer(cursor_id, None)
        rows, new_rows = _rows_of_usual_read(read.track_of(device_id, collar_since, cursor_id) or [], new,
                                             collar_since)
        shape = _shape(rows, new_rows) if rows else None
        read.shaped[device_id] = ((collar_since, cursor_id), rows, shape)
        if shape is not None and shape[2] is not None:
            wanted[device_id] = shape[2]
    read.contexts.update(_read_contexts(session, wanted))
    return read


# `_CONTEXT_READ` of several collars in one statement (`store.parts`), built once
_CONTEXTS_READ = parts.union_of_parts(
    lambda i: select(Position.device_id, Position.id, Position.time, Position.lat, Position.lon)
    .where(Position.device_id == bindparam(f"device_{i}"), Position.time < bindparam(f"before_{i}"),
           Position.id <= bindparam(f"highest_{i}"))
    .order_by(Position.time.desc())
    .limit(bindparam(f"most_{i}")),
    "context",
)


def _read_contexts(
    session: Session, wanted: dict[str, ContextKey]
) -> dict[str, tuple[ContextKey, list[tuple[int, datetime, float, float]]]]:
    """The context reads of several collars (device_id -> its read's bounds) together (`store.parts`):
    by collar, the bounds and the fixes found, in time order. A collar's first hours, or a collar
    with a fix every few hours, asks for one at every evaluation."""
    if not wanted:
        return {}
    asked = [{"device": device_id, "before": before, "highest": highest, "most": most}
             for device_id, (before, highest, most) in wanted.items()]
    padding = {"device": "", "before": asked[0]["before"], "highest": 0, "most": 0}
    fixes: dict[str, list[tuple[int, datetime, float, float]]] = {device_id: [] for device_id in wanted}
    reader = bulk.connection_to_read(session, _POSITIONS)
    for device_id, fix_id, time, lat, lon in parts.read_in_parts(reader, _CONTEXTS_READ, asked, padding):
        fixes[device_id].append((fix_id, time, lat, lon))
    return {device_id: (key, sorted(fixes[device_id], key=_ROW_TIME)) for device_id, key in wanted.items()}


def _fixes_by_collar(found: list[Any], device_ids: Iterable[str]) -> dict[str, list[tuple[int, datetime, float, float]]] | None:
    """Fixes read for several collars, each row (device_id, id, time, lat, lon), by collar in time
    order (every collar of device_ids, with none when it has none); None when the read was cut at
    TRACKS_AT_ONCE_ROWS (each collar reads its own then)."""
    if len(found) > TRACKS_AT_ONCE_ROWS:
        return None
    by_collar: dict[str, list[tuple[int, datetime, float, float]]] = {device_id: [] for device_id in device_ids}
    # sorted by collar and time in C, then a list a collar (not an append a fix): (device_id, time) is
    # unique, so each collar's fixes come in time order, as sorting them alone would give them
    for device_id, rows in groupby(sorted(found, key=_COLLAR_AND_TIME), key=_COLLAR):
        by_collar[device_id] = [(r[1], r[2], r[3], r[4]) for r in rows]
    return by_collar


def _never_judged(cursor: Cursor) -> bool:
    """True when none of the collar's fixes has been judged (a new collar, or one with no fix yet)."""
    return cursor.position_id is None and cursor.position_time is None


@cache
def _first_tracks_read(size: int) -> Any:
    """`_read_first_tracks`' statement, built once per count bucket of the collars (`bulk.in_list`)."""
    return (
        select(Position.device_id, Position.id, Position.time, Position.lat, Position.lon)
        .where(bulk.in_list(Position.device_id, "device", size))
        .limit(bindparam("most"))
    )


def _read_first_tracks(
    session: Session, rows: dict[str, tuple[Device, Animal | None, Cursor]]
) -> dict[str, list[tuple[int, datetime, float, float]]] | None:
    """Every fix of the collars judged together none of whose fixes was judged yet, in one statement:
    a new herd's first batch read each collar's the long way, three statements a collar. None when
    there are none, or more fixes than TRACKS_AT_ONCE_ROWS (each collar reads its own then)."""
    fresh = [device_id for device_id, (_, _, cursor) in rows.items() if _never_judged(cursor)]
    if not fresh:
        return None
    size = bulk.in_list_size(len(fresh))
    found = bulk.read_column_tuples(session, _first_tracks_read(size),
                              {**bulk.in_list_values("device", fresh, size), "most": TRACKS_AT_ONCE_ROWS + 1},
                              _POSITIONS)
    return _fixes_by_collar(found, fresh)


def _lookback(profile: RuleProfile) -> timedelta:
    """How far back of its cursor a collar's track is read: twice the immobility rule's duration."""
    return timedelta(hours=2 * profile.immobility.duration_h)


def _read_readings(
    session: Session, profiles: dict[str, RuleProfile], rows: dict[str, tuple[Device, Animal | None, Cursor]]
) -> dict[str, rules.ReadingSums]:
    """What `rules.battery_trend` reads for each collar whose status is new (the sums of its readings
    from its window's start on), in one statement for all of them: a row a collar, not a row a reading."""
    since: dict[str, datetime] = {}
    for device_id, (device, _, cursor) in rows.items():
        status_time = device.status_time
        if status_time is None or device.battery_mv is None:
            continue
        if cursor.status_time is not None and status_time <= cursor.status_time:
            continue
        since[device_id] = status_time - timedelta(days=profiles[device_id].battery.window_days)
    return rules.reading_sums(session, since) if since else {}


def evaluate_device(session: Session, runtime: RulesRuntime, device_id: str,
                    moved: list[Cursor] | None = None) -> Steps:
    """Run every per-collar rule over what arrived since the collar's cursor; the alert steps. The
    cursor moved is written here, or put in moved for the caller to write with others (`write_cursors`)."""
    steps = Steps()
    read: _CollarsRead | None = session.info.get(COLLARS_READ)
    if read is not None and device_id in read.asked:  # read with the other collars of a batch
        # its cursor is held already: evaluate_devices reads collars together only on SQLite (one
        # writer) or when this transaction took all their cursors (lock_cursor would do nothing)
        found = read.rows.get(device_id)
        if found is None:
            return steps
        device, animal, cursor = found[0], found[1], found[2].copy()  # the read one stays as read
        fence_version = read.fence_version
        profile = read.profiles[device_id]
    else:
        lock_cursor(session, device_id)
        cursor_columns = len(CURSOR_COLUMNS)
        row = session.execute(
            select(Device, Animal, *CURSOR_COLUMNS, *geofences.fence_version_columns())
            .outerjoin(Animal, Animal.device_id == Device.device_id)
            .outerjoin(RuleCursor, RuleCursor.device_id == Device.device_id)
            .where(Device.device_id == device_id)
            .limit(1)
        ).first()
        if row is None:
            return steps
        device, animal, cursor = row[0], row[1], cursor_of(device_id, row[2:2 + cursor_columns])
        fence_version = geofences.fence_version_from(*row[2 + cursor_columns:])
        read = None
        profile = runtime.profile(device, animal)
    if session.autoflush:
        with session.no_autoflush:
            _judge_collar(session, runtime, read, fence_version, device_id, device, animal, profile, cursor, steps)
    else:  # the batch's collars are judged under one no_autoflush (`_judged_together`)
        _judge_collar(session, runtime, read, fence_version, device_id, device, animal, profile, cursor, steps)
    cursor.evaluated_at = utc_now()
    if moved is None:
        write_cursors(session, [cursor])
    else:
        moved.append(cursor)
    return steps


def _judge_collar(
    session: Session, runtime: RulesRuntime, read: _CollarsRead | None, fence_version: tuple[int, int, str],
    device_id: str, device: Device, animal: Animal | None, profile: RuleProfile, cursor: Cursor, steps: Steps,
) -> None:
    """evaluate_device's rules over one collar read (read: with the batch's others, or None), with the
    session's autoflush off: its open alerts, then its battery, track and corroboration."""
    open_alerts = read.open_alerts.get(device_id, []) if read is not None else session.scalars(
        select(Alert).where(Alert.device_id == device_id, Alert.open_key.is_not(None))
    )
    # The collar's open alert of each type: one a previous wearer left open (`herd.fit_collar` gave
    # it a key of its own) stays that animal's, for a ranger to resolve; it is not this wearer's.
    steps.all_open = list(open_alerts)
    steps.open = {alert.alert_type: alert for alert in steps.all_open
                  if alert.open_key == alerts.dedup_key(device_id, alert.alert_type)}
    _battery(session, device, animal, profile, cursor, steps)
    _track(session, runtime, fence_version, device, animal, profile, cursor, steps)
    _corroborate(session, read, device, profile, steps)


def evaluate_devices(session: Session, runtime: RulesRuntime, device_ids: list[str]) -> dict[str, Steps]:
    """evaluate_device for each collar of a batch, in one unit of work; a collar whose rules fail is
    logged and skipped (its savepoint rolled back), the others are still judged.

    On SQLite (whose write transaction excludes every other writer, so nothing changes them meanwhile)
    up to READ_AT_ONCE collars are taken together: their rows, cursors and open alerts and the fences'
    fingerprint read in three statements, not two per collar, and all of them judged inside one
    savepoint; only when a collar's rules fail is that rolled back and each collar judged again in a
    savepoint of its own (each collar read in its turn, after its cursor is locked:
    `rules_cursors.lock_cursor`). On PostgreSQL collars are taken together when this transaction holds
    all their cursors already (an ingest batch took them before anything else of theirs,
    `rules_cursors.HELD`), else one by one.

    A lone collar is read and judged so too when its batch read its cursor (`rules_cursors.keep_read`):
    then its open alerts are all it reads before its track, where its own read would take its collar's
    row again with the cursor; else its own reads are fewer, and it is judged one by one."""
    done: dict[str, Steps] = {}
    collars = list(dict.fromkeys(device_ids))
    sqlite = session.get_bind().dialect.name == "sqlite"
    for first in range(0, len(collars), READ_AT_ONCE):
        chunk = collars[first:first + READ_AT_ONCE]
        together = (sqlite or set(chunk) <= session.info.get(CURSORS_HELD, set())) and (
            len(chunk) > 1 or kept_read_covers(session, chunk))
        if together:
            session.info[COLLARS_READ] = _read_collars(session, runtime, chunk)
        try:
            if not (together and _judged_together(session, runtime, chunk, done)):
                _judged_one_by_one(session, runtime, chunk, done)
        finally:
            session.info.pop(COLLARS_READ, None)
    return done


def _judged_together(session: Session, runtime: RulesRuntime, collars: list[str], done: dict[str, Steps]) -> bool:
    """Every collar of collars judged inside one savepoint, into done; False (and nothing of it kept)
    when the rules of any of them failed."""
    judged: dict[str, Steps] = {}
    moved: list[Cursor] = []
    try:
        # one no_autoflush for every collar (each evaluation's own is skipped): nothing between them flushes
        with session.begin_nested(), session.no_autoflush:
            for device_id in collars:
                judged[device_id] = evaluate_device(session, runtime, device_id, moved)
            write_cursors(session, moved)  # every cursor moved, in one statement
    except Exception as error:  # noqa: BLE001 - judged again collar by collar, where it is logged
        if is_transient_store_error(error):
            raise  # the connection or the store is gone: the batch is applied again, not judged on here
        log.info("server rules of %d collars rolled back together (%s); judged again collar by collar",
                 len(collars), type(error).__name__)
        return False
    done.update(judged)
    return True


def _judged_one_by_one(session: Session, runtime: RulesRuntime, collars: list[str], done: dict[str, Steps]) -> None:
    for device_id in collars:
        try:
            with session.begin_nested():
                done[device_id] = evaluate_device(session, runtime, device_id)
        except Exception as error:
            if is_transient_store_error(error):
                raise  # not these rules' fault: the batch is applied again when the store answers
            log_failure(log, error, "server rules failed device_id=%s", device_id, context={"device_id": device_id})


def _raise(session: Session, steps: Steps, **kwargs: Any) -> tuple[Alert, bool]:
    # The collar's open alert of the type is in steps.open (read with the collar, kept up to date by
    # _raise and _close): raise_alert need not read it again.
    key = herd.open_key_of(kwargs["device_id"], kwargs["alert_type"], steps.worn_until)
    open_now = steps.mapped(session, steps.open.get(kwargs["alert_type"]))
    alert, is_new = alerts.raise_alert(session, open_now=open_now, key=key, **kwargs)
    steps.open[alert.alert_type] = alert
    return alert, is_new


def _close(session: Session, steps: Steps, open_alert: OpenAlert, reason: str, at: datetime) -> bool:
    alert = steps.mapped(session, open_alert)
    if not auto_resolve(session, alert, reason, at):
        if alert.state not in alerts.OPEN_STATES:  # a ranger resolved it meanwhile: no longer the open one
            steps.open.pop(alert.alert_type, None)
        return False
    steps.open.pop(alert.alert_type, None)
    session.flush()
    steps.add(alert.id, "auto_resolved")
    return True


def _battery(
    session: Session, device: Device, animal: Animal | None, profile: RuleProfile, cursor: Cursor, steps: Steps
) -> None:
    """Judge the collar's latest status once: the trend through the window's readings (every status's,
    kept as each was applied: `rules.queue_reading`), the forecast, low battery's recovery. The trend
    is the collar's pack, whoever wears it; a forecast a ranger resolved before the wearer's fitting was
    another animal's and keeps none of this one's quiet."""
    status_time = device.status_time  # read once: nothing below changes it
    if status_time is None or ((judged := cursor.status_time) is not None and status_time <= judged):
        return
    cursor.status_time = status_time
    if device.battery_mv is None or (animal is not None and animal.holds_collar_in_stock):
        return  # a collar in stock forecasts nothing to rangers: its battery is on the fleet page
    animal_id = animal.id if animal else None  # read only when judged: each mapped read is a call
    read: _CollarsRead | None = session.info.get(COLLARS_READ)
    readings = read.readings.get(device.device_id) if read is not None else None
    trend = rules.battery_trend(session, device, status_time, profile.battery, readings)
    forecast = rules.check_battery_forecast(
        session, device, animal_id, status_time, profile.battery, trend=trend,
        open_now=steps.mapped(session, steps.open.get(rules.BATTERY_FORECAST)),
        fitted_at=animal.collar_fitted_at if animal else None,
    ) if trend is not None else None
    if forecast is not None:
        steps.add(forecast, "raised")
        steps.open[rules.BATTERY_FORECAST] = session.get(Alert, forecast)
    low = steps.open.get(rules.LOW_BATTERY)
    if low is not None and rules.battery_recovered(device, profile.battery):
        _close(session, steps, low, f"battery back at {device.battery_mv} mV", status_time)
    forecast_alert = steps.open.get(rules.BATTERY_FORECAST)
    if forecast is None and forecast_alert is not None and trend is not None:
        _close(session, steps, forecast_alert, f"trend now {trend['slope_mv_per_day']} mV/day", status_time)


@dataclass(frozen=True)
class _Track:
    """The fixes the rules read for one evaluation: each (id, time, lat, lon), in time order, and
    which of them are new (not judged before)."""

    rows: list[tuple[int, datetime, float, float]]
    new_ids: frozenset[int]
    highest_id: int


_USUAL_TRACK_READS: dict[bool, Any] = {}


def _usual_track_read(by_id: bool) -> Any:
    """The usual track read, built once: the collar's fixes of the lookback (`since` on) and those newer
    than its cursor (by id, or by time for a cursor from before fix ids were kept), in time order.

    Two index ranges joined by a UNION (the collar's time index, and its id index for the new ones)
    rather than one OR, which SQLite answers by walking every fix the collar ever sent: the read costs
    what the lookback holds, not the collar's whole history."""
    statement = _USUAL_TRACK_READS.get(by_id)
    if statement is None:
        columns = (Position.id, Position.time, Position.lat, Position.lon)
        mine = Position.device_id == bindparam("device_id")
        newer = Position.id > bindparam("newer_than") if by_id else Position.time > bindparam("newer_than")
        both = union(
            select(*columns).where(mine, Position.time >= bindparam("since")),
            select(*columns).where(mine, newer),
        ).subquery("track")
        statement = select(both.c.id, both.c.time, both.c.lat, both.c.lon).order_by(both.c.time).limit(MAX_READ)
        _USUAL_TRACK_READS[by_id] = statement
    return statement


# The judged fixes just before a track's first (the context its first new segments are judged in), built
# once: every collar with fewer than CONTEXT_FIXES fixes in its lookback reads them (a collar's first hours,
# a sparse one), and building the statement cost more than the read.
_CONTEXT_READ = (
    select(Position.id, Position.time, Position.lat, Position.lon)
    .where(Position.device_id == bindparam("device_id"), Position.time < bindparam("before"),
           Position.id <= bindparam("highest"))
    .order_by(Position.time.desc())
    .limit(bindparam("most"))
)


def _read_track(session: Session, device_id: str, cursor: Cursor, lookback: timedelta) -> _Track | None:
    """The collar's new fixes and the judged ones around them; None when nothing is new.

    Usually one query: every fix newer than the cursor's id, and the judged fixes of the lookback
    before the cursor's time. A back-fill older than that, too many new fixes at once, or too little
    context before the first new fix take a few more."""
    cursor_id, cursor_time = cursor.position_id, cursor.position_time

    is_new = _Newer(cursor_id, cursor_time)

    # what evaluate_devices read for the collars judged together, this one among them (or None)
    batch: _CollarsRead | None = session.info.get(COLLARS_READ)
    tracks = batch.tracks if batch is not None else None
    rows: list[tuple[int, datetime, float, float]] | None = None
    new_rows: list[tuple[int, datetime, float, float]] | None = None  # the new ones of rows, when known
    shape: Shape | None = None
    if _never_judged(cursor):  # every fix is new, and none came before them: read with the batch's others
        first = batch.first_tracks.get(device_id) if batch is not None and batch.first_tracks is not None else None
        if first is not None and len(first) < MAX_NEW_FIXES:
            new_ids = frozenset(r[0] for r in first)
            return _Track(rows=first, new_ids=new_ids, highest_id=max(new_ids)) if first else None
    if cursor_time is not None:
        since = cursor_time - lookback
        by_id = cursor_id is not None
        shaped = tracks.shaped.get(device_id) if by_id and tracks is not None else None
        if shaped is not None and shaped[0] == (since, cursor_id):  # shaped with the batch's reads
            rows, shape = shaped[1], shaped[2]
        else:
            found = tracks.track_of(device_id, since, cursor_id) if by_id and tracks is not None else None
            if found is None:
                found = [
                    tuple(r)
                    for r in session.execute(_usual_track_read(by_id), {
                        "device_id": device_id, "since": since, "newer_than": cursor_id if by_id else cursor_time,
                    })
                ]
            rows, new_rows = _rows_of_usual_read(found, is_new, since)
        if rows == []:
            return None
    # The statements of the long way and of the context are built only when needed (the usual read
    # above is built once for all evaluations): building a where clause costs more than the read.
    if rows is None:  # the long way: the new fixes by id (so a cut at MAX_NEW_FIXES loses nothing), then around them
        # the columns named here only: each mapped column read off its class is a call of the ORM's
        columns = (Position.id, Position.time, Position.lat, Position.lon)
        if cursor_id is not None:
            newer = Position.id > cursor_id
        elif cursor_time is not None:  # a cursor from before fix ids were kept
            newer = Position.time > cursor_time
        else:
            newer = None
        mine = Position.device_id == device_id
        query = select(*columns).where(mine)
        if newer is not None:
            query = query.where(newer)
        new = [tuple(r) for r in session.execute(query.order_by(Position.id).limit(MAX_NEW_FIXES))]
        if not new:
            return None
        new_rows = None  # those of the usual read were of its rows, not of these
        top = max(r[0] for r in new)
        first = min(r[1] for r in new)
        newest = max([r[1] for r in new] + ([cursor.position_time] if cursor.position_time else []))
        start = min(first, newest - lookback)
        rows = [
            tuple(r)
            for r in session.execute(
                select(*columns).where(mine, Position.id <= top, Position.time >= start).order_by(Position.time)
            )
        ]
    if shape is None:
        shape = _shape(rows, new_rows if new_rows is not None else is_new.of(rows))
    highest, new_ids, context = shape
    if context is not None:
        done = tracks.contexts.get(device_id) if tracks is not None else None
        if done is not None and done[0] == context:
            earlier = done[1]
        else:
            before, highest_id, most = context
            earlier = [
                tuple(r)
                for r in session.execute(_CONTEXT_READ, {
                    "device_id": device_id, "before": before, "highest": highest_id, "most": most,
                })
            ][::-1]
        rows = earlier + rows
    return _Track(rows=rows, new_ids=new_ids, highest_id=highest)


@dataclass(frozen=True)
class _Newer:
    """Which fixes of a track are new (not judged before): those newer than the cursor's fix id, else (a
    cursor from before fix ids were kept) than its time; every fix when it has neither."""

    cursor_id: int | None
    cursor_time: datetime | None

    def of(self, rows: list[tuple[int, datetime, float, float]]) -> list[tuple[int, datetime, float, float]]:
        """The new ones of rows, in their order (one comprehension: not a call per row)."""
        if self.cursor_id is not None:
            cursor_id = self.cursor_id
            return [r for r in rows if r[0] > cursor_id]
        if self.cursor_time is None:
            return list(rows)
        cursor_time = self.cursor_time
        return [r for r in rows if r[1] > cursor_time]


def _rows_of_usual_read(
    found: list[tuple[int, datetime, float, float]], is_new: _Newer, since: datetime
) -> tuple[list[tuple[int, datetime, float, float]] | None, list[tuple[int, datetime, float, float]]]:
    """The track a usual read found: its rows; [] when nothing is new; None when the read cannot hold
    the track whole (too many fixes, or a back-fill older than the lookback: the long way reads it).
    With the new ones of found (`_Newer.of`), which `_shape` of those rows takes as they are."""
    new = is_new.of(found)
    if not new:
        return [], new
    return (found if len(found) < MAX_READ and min(new, key=_ROW_TIME)[1] >= since else None), new


def _shape(rows: list[tuple[int, datetime, float, float]], new: list[tuple[int, datetime, float, float]]) -> Shape:
    """Of a track's rows (new: the new ones of them, `_Newer.of`): the highest fix id, the new fixes'
    ids, and the context read the track still needs (its bounds: before its first row, up to its
    highest id, as many judged fixes as it lacks before its first new one of CONTEXT_FIXES), None
    when it holds them."""
    # list comprehensions, not generators: a generator's every item is a call of its own
    highest = max([r[0] for r in rows])
    new_ids = frozenset([r[0] for r in new])
    first_new = min(new, key=_ROW_TIME)[1]  # a fix id is a fix's: new are the rows of new_ids
    before = len([r for r in rows if r[1] < first_new])
    return highest, new_ids, ((rows[0][1], highest, CONTEXT_FIXES - before) if before < CONTEXT_FIXES else None)


def _pairs(fixes: list[Fix]) -> list[tuple[Fix, Fix]]:
    return list(zip(fixes, fixes[1:], strict=False))


def _track(
    session: Session,
    runtime: RulesRuntime,
    fence_version: tuple[int, int, str],
    device: Device,
    animal: Animal | None,
    profile: RuleProfile,
    cursor: Cursor,
    steps: Steps,
) -> None:
    """Judge the collar's track (fences, immobility) on the fixes of the animal wearing it now: only
    those since its fitting (`Animal.collar_fitted_at`). A track never spans two wearers: no stillness,
    crossing or speed is judged between the last fix on one animal and the first on the next. A
    previous wearer's backlog heard after the fitting (`herd.wearer_at` files it under that animal) is
    judged for her fences alone (`_judge_backlog`). A collar worn by nobody (taken off with no other
    fitted, `Device.taken_off_at`: lying in the workshop, its stillness is no animal's) is not judged, nor
    is a spell it lay in stock heard after it was fitted again (`herd.in_stock`).
    The cursor moves past it all, here only, once the track is judged (a judgement that fails leaves it
    where it was). No read more for a collar never moved: the animal is read with the collar."""
    fitted_at = animal.collar_fitted_at if animal else None
    lookback = _lookback(profile)
    device_id = device.device_id  # each mapped attribute read is a call of the ORM's: read once here
    track = _read_track(session, device_id, cursor, lookback)
    if track is None:
        return
    newest = max(track.rows[-1][1], cursor.position_time or track.rows[-1][1])
    worn = _worn_since(track.rows, fitted_at)
    if animal is not None and len(worn) < len(track.rows):
        _judge_backlog(session, runtime, fence_version, device, animal, track, steps)
    # Else nothing new of this wearer's (a previous one's backlog), or nobody wears the collar.
    if device.taken_off_at is None and not track.new_ids.isdisjoint([r[0] for r in worn]):
        _judge_worn(session, runtime, fence_version, device, animal, profile, worn, track.new_ids, newest - lookback,
                    steps, device_id, fitted_at)
    cursor.position_id = max(track.highest_id, cursor.position_id or 0)
    cursor.position_time = newest


def _judge_worn(
    session: Session, runtime: RulesRuntime, fence_version: tuple[int, int, str], device: Device,
    animal: Animal | None, profile: RuleProfile, worn: list[tuple[int, datetime, float, float]],
    new_ids: frozenset[int], window_start: datetime, steps: Steps, device_id: str, fitted_at: datetime | None,
) -> None:
    """Judge the fixes of a track its wearer wore (`worn`; those of new_ids not judged before): the fences
    (`_judge_fences`), immobility over the fixes since window_start; the new clean fixes go to steps.
    device_id and fitted_at: the collar's and its wearer's fitting (`Animal.collar_fitted_at`), as read."""
    animal_id = animal.id if animal else None
    new_times = {t for i, t, _, _ in worn if i in new_ids}
    fences = runtime.fence_index(session, fence_version)
    clean = _judge_fences(session, fences, device, animal_id, profile, worn, new_ids, steps, fitted_at)
    _immobility(session, device, animal_id, profile, [f for f in clean.kept if f[0] >= window_start], clean, steps,
                fitted_at)
    steps.fixes.extend([(device_id, t, lat, lon) for t, lat, lon in clean.kept if t in new_times])


def _judge_fences(
    session: Session,
    fences: FenceIndex,
    device: Device,
    animal_id: int | None,
    profile: RuleProfile,
    worn: list[tuple[int, datetime, float, float]],
    new_ids: frozenset[int],
    steps: Steps,
    fitted_at: datetime | None,
    until: datetime | None = None,
) -> CleanTrack:
    """Judge one wearer's fixes of the track (worn, in time order; new_ids: those not judged before)
    against the fences: crossings raised or refined, geofence alerts closed once back, the collar's own
    fence alerts checked. fitted_at / until: the wearer's time with the collar (until: a previous
    wearer's). The track cleaned of its GPS outliers."""
    everything: list[Fix] = [(t, lat, lon) for _, t, lat, lon in worn]
    batch: _CollarsRead | None = session.info.get(COLLARS_READ)
    metres = batch.metres if batch is not None else None
    if not len(fences):  # a reserve with no fence: the track cleaned, nothing crossed
        return exclude_outliers(everything, profile.speed, metres)
    # the track as judged too: only the fences need it
    judged: list[Fix] = [(t, lat, lon) for i, t, lat, lon in worn if i not in new_ids]
    clean, before = exclude_outliers_of_both(everything, judged, profile.speed, metres)
    if not clean.kept:
        return clean
    # Only the segments that differ between the track as judged and the track now can cross
    # anything new: a new fix at the end adds one; a back-filled one splits one in two.
    # A crossing is believed once fixes after it confirm it (rules_crossings), so a segment's verdict
    # can change while the fixes after it arrive: its neighbours are judged again with it.
    old_segments, new_segments = _pairs(before.kept), _pairs(clean.kept)
    old_set, new_set = set(old_segments), set(new_segments)
    reach = profile.fences.confirm_fixes + 1
    keys = neighbourhood(new_segments, new_set - old_set, reach) | neighbourhood(old_segments, old_set - new_set, reach)
    judge = CrossingJudge(fences, profile.fences)
    now_judged = judged_on(judge, clean.kept, keys)
    was_judged = judged_on(judge, before.kept, keys)
    confirmed_now = {j.crossing: j for j in now_judged if j.verdict == CONFIRMED}
    added = list(confirmed_now)
    removed = [j.crossing for j in was_judged if j.verdict == CONFIRMED]
    fresh, again, disputed = match_crossings(added, removed)
    for crossing in fresh:
        _on_crossing(session, fences, device, animal_id, confirmed_now[crossing], clean.outliers, steps,
                     profile.fences, fitted_at, until)
    for old, new in again:
        _refine_crossing(session, old, new, steps)
    for old in disputed:  # an alert raised for it was closed when the animal came back: the ranger judges it
        log.info(
            "back-filled fixes show no crossing device_id=%s fence=%s at=%s",
            device.device_id, old.fence_name, old.time.isoformat(),
            extra={"device_id": device.device_id, "fence_id": old.fence_id},
        )
    was = {(j.crossing, j.verdict) for j in was_judged}
    for j in now_judged:
        if j.verdict in (LONE_FIX, NO_FIX_PAST) and (j.crossing, j.verdict) not in was:
            log.info(
                "fence crossing not confirmed device_id=%s fence=%s direction=%s at=%s: %s",
                device.device_id, j.crossing.fence_name, j.crossing.direction, j.crossing.time.isoformat(),
                j.evidence.get("decided"),
                extra={"device_id": device.device_id, "fence_id": j.crossing.fence_id, "evidence": j.evidence},
            )
    _clear_geofence_alerts(session, judge, device, clean.kept, steps)
    _check_collar_fence_alerts(session, judge, clean.kept, steps)
    return clean


def _send_unknown_wear(
    session: Session, runtime: RulesRuntime, device: Device, animal: Animal, behind: list[tuple[int, datetime, float, float]],
    waiting: list[tuple[int, datetime, float, float]], new_ids: frozenset[int], steps: Steps,
) -> list[tuple[int, datetime, float, float]]:
    """The fixes of behind in the span of waiting's first in which the register knows no fitting of the
    collar (`herd.unknown_wear`: a collar fixing before the fitting logged, or a clock set wrong): filed
    under animal, the wearer now (`herd.wearer_at`), so their new plausible fixes go out under her (none of
    a collar in stock), but judged for no fence, as nobody is known to have worn the collar then. The fixes
    of waiting left to judge."""
    since, until = herd.unknown_wear(session, device.device_id, animal, waiting[0][1])
    span = [r for r in behind if (since is None or r[1] >= since) and r[1] < until]
    if not animal.holds_collar_in_stock:
        clean = exclude_outliers([(t, lat, lon) for _, t, lat, lon in span], runtime.profile(device, animal).speed)
        new_times = {r[1] for r in span if r[0] in new_ids}
        steps.fixes.extend((device.device_id, t, lat, lon) for t, lat, lon in clean.kept if t in new_times)
    taken = {r[0] for r in span} | {waiting[0][0]}  # the first at the least: the loop always moves on
    return [r for r in waiting if r[0] not in taken]


def _judge_backlog(
    session: Session,
    runtime: RulesRuntime,
    fence_version: tuple[int, int, str],
    device: Device,
    animal: Animal,
    track: _Track,
    steps: Steps,
) -> None:
    """Judge the new fixes of track dated before animal's fitting (a previous wearer's backlog, heard
    after the collar was moved, or before a take-off and heard after it) for the animal that wore the
    collar then, on her own fixes of the track only, against the fences; her new plausible fixes go to
    steps (never a spell in stock's: `herd.in_stock`). Her crossings are raised for her under her own open key
    (`herd.open_key_of`), apart from the alerts of the animal wearing the collar now, and grow or close
    only hers. Her stillness is not judged (the track read holds too little of her time to time it). Fixes
    dated where the register knows no fitting of the collar go out under the animal wearing it now, judged
    for no fence (`_send_unknown_wear`); until 6 December they went nowhere, and EarthRanger's track lacked
    what the store filed under her."""
    behind = [r for r in track.rows if animal.collar_fitted_at is not None and r[1] < animal.collar_fitted_at]
    waiting = [r for r in behind if r[0] in track.new_ids]
    if not waiting:  # only judged fixes of hers around the new ones of the animal wearing the collar now
        return
    fences = runtime.fence_index(session, fence_version)
    while waiting:
        wearing = herd.wearing_at(session, device.device_id, animal, waiting[0][1])
        if wearing.until is None:  # dated before every fitting the register knows of the collar at that time
            waiting = _send_unknown_wear(session, runtime, device, animal, behind, waiting, track.new_ids, steps)
            continue
        hers = [r for r in behind if r[1] < wearing.until and (wearing.since is None or r[1] >= wearing.since)]
        if herd.in_stock(wearing):  # the collar lay in stock then: no animal's fences to judge
            taken = {r[0] for r in hers}
            waiting = [r for r in waiting if r[0] not in taken]
            if not taken:
                return
            continue
        her_steps = Steps(worn_until=wearing.until)
        her_steps.open = {alert.alert_type: alert for alert in steps.all_open
                          if alert.open_key == herd.open_key_of(device.device_id, alert.alert_type, wearing.until)}
        clean = _judge_fences(session, fences, device, wearing.animal.id, runtime.profile(device, wearing.animal),
                              hers, track.new_ids, her_steps, wearing.since, wearing.until)
        # Her new plausible fixes go out too (EarthRanger files each under the animal that wore the collar then).
        new_times = {r[1] for r in hers if r[0] in track.new_ids}
        steps.fixes.extend([(device.device_id, t, lat, lon) for t, lat, lon in clean.kept if t in new_times])
        for item in her_steps.items:
            steps.add(*item)
        steps.detail.update(her_steps.detail)
        steps.all_open.extend(alert for alert in her_steps.open.values() if alert not in steps.all_open)
        log.info("backlog of a previous wearer judged device_id=%s animal_id=%s fixes=%d", device.device_id,
                 wearing.animal.id, len(hers), extra={"device_id": device.device_id, "animal_id": wearing.animal.id})
        taken = {r[0] for r in hers}
        waiting = [r for r in waiting if r[0] not in taken]
        if not taken:
            return


def _worn_since(
    rows: list[tuple[int, datetime, float, float]], fitted_at: datetime | None
) -> list[tuple[int, datetime, float, float]]:
    """The fixes of rows (in time order) taken since fitted_at, when the collar's wearer was fitted
    with it: rows themselves for a collar never moved (fitted_at None, or before them all)."""
    if fitted_at is None or not rows or rows[0][1] >= fitted_at:
        return rows
    return [r for r in rows if r[1] >= fitted_at]


def match_crossings(
    added: list[Crossing], removed: list[Crossing]
) -> tuple[list[Crossing], list[tuple[Crossing, Crossing]], list[Crossing]]:
    """Crossings of the changed segments against those of the segments they replace: (fresh ones to
    raise, (old, new) pairs of the same crossing found again more precisely, old ones no longer found).
    Two crossings are the same when they cross the same fence the same way; the nearest in time pairs."""
    left = list(removed)
    fresh: list[Crossing] = []
    again: list[tuple[Crossing, Crossing]] = []
    for crossing in added:
        same = [c for c in left if (c.fence_id, c.direction) == (crossing.fence_id, crossing.direction)]
        if not same:
            fresh.append(crossing)
            continue
        match = min(same, key=lambda c: abs((c.time - crossing.time).total_seconds()))
        left.remove(match)
        again.append((match, crossing))
    return fresh, again, left


def _crossing_alert(steps: Steps, crossing: Crossing) -> OpenAlert | None:
    """The open server alert raised for exactly this crossing (same fence, same interpolated time)."""
    for alert_type in (GEOFENCE_EXIT, GEOFENCE_ENTER, GEOFENCE_FARMLAND):
        alert = steps.open.get(alert_type)
        if alert is None or alert.source != alerts.SOURCE_SERVER:
            continue
        evidence = alert.evidence or {}
        if evidence.get("fence_id") == crossing.fence_id and evidence.get("crossed_at") == crossing.time.isoformat():
            return alert
    return None


def _refine_crossing(session: Session, old: Crossing, new: Crossing, steps: Steps) -> None:
    """A back-filled fix places a crossing already raised more precisely: the alert takes the new time
    and place (the old ones stay in its history)."""
    if old.time == new.time:
        return
    alert = steps.mapped(session, _crossing_alert(steps, old))
    if alert is None:
        return
    alert.evidence = {
        **alert.evidence,
        "crossed_at": new.time.isoformat(),
        "refined_from": {"crossed_at": old.time.isoformat(), "lat": old.lat, "lon": old.lon},
    }
    if alert.time == old.time:
        alert.time = new.time
        alert.lat, alert.lon = new.lat, new.lon
    if alert.last_time == old.time:
        alert.last_time = new.time
    alerts.record_event(
        session, alert, alerts.SYSTEM_ACTOR, alerts.ACTION_CROSSING_REFINED,
        {"from": old.time.isoformat(), "to": new.time.isoformat(), "fence": new.fence_name},
    )
    log.info(
        "crossing refined by back-filled fixes alert_id=%d device_id=%s",
        alert.id, alert.device_id, extra={"alert_id": alert.id, "device_id": alert.device_id},
    )


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
    judged: JudgedCrossing,
    outliers: list[dict[str, Any]],
    steps: Steps,
    profile: FenceProfile,
    fitted_at: datetime | None,
    until: datetime | None = None,
) -> None:
    crossing = judged.crossing
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
    if alert_type not in steps.open:
        resolved = rules_visits.resolved_alert_of_visit(
            session, fences, profile, device.device_id, alert_type, crossing.time, since=fitted_at, until=until
        )
        if resolved is not None:  # the ranger already resolved this visit's alert (the collar's or ours)
            rules_visits.add_to_resolved(session, resolved, time=crossing.time, source=alerts.SOURCE_SERVER,
                                         actor=alerts.SYSTEM_ACTOR, lat=crossing.lat, lon=crossing.lon,
                                         evidence={CONFIRMATION_KEY: judged.evidence})
            return
    evidence = {
        "rule": (
            "track segment intersected with the fence's lines in UTM; time interpolated along the segment; "
            "believed once confirmed by the fixes after it (a second fix past the line, or one far past it)"
        ),
        CONFIRMATION_KEY: judged.evidence,
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


def _clear_geofence_alerts(session: Session, judge: CrossingJudge, device: Device, kept: list[Fix], steps: Steps) -> None:
    """Close a server geofence alert once the animal is back on the side it left, confirmed the way a
    crossing is: the newest confirm_fixes fixes back (after the alert), or the newest one far past the line."""
    latest = kept[-1]
    need, far_enough = judge.profile.confirm_fixes, judge.profile.confirm_distance_m
    for alert_type in (GEOFENCE_EXIT, GEOFENCE_ENTER, GEOFENCE_FARMLAND):
        alert = steps.open.get(alert_type)
        if alert is None or alert.source != alerts.SOURCE_SERVER or latest[0] <= alert.last_time:
            continue
        fence_ids = list(alert.evidence.get("fence_ids", []))
        if not fence_ids:
            continue
        want_inside = alert_type == GEOFENCE_EXIT
        recent = [f for f in kept[-need:] if f[0] > alert.last_time]
        if not all(_back_on_side(judge, fid, recent, want_inside, need, far_enough) for fid in fence_ids):
            continue
        where = "back inside the fence" if want_inside else "out of the fence again"
        _close(session, steps, alert, where, latest[0])


COLLAR_FENCE_ALERTS = {GEOFENCE_EXIT: EXIT, GEOFENCE_FARMLAND: ENTER}  # a collar's fence alert: the crossing it saw
CHECK_BEFORE = timedelta(hours=2)  # the crossing a collar's fence alert is about lies this far before it at most


def _check_collar_fence_alerts(session: Session, judge: CrossingJudge, kept: list[Fix], steps: Steps) -> None:
    """Judge a collar's own open fence alert by the track the way a server crossing is judged: the crossing
    before it confirmed (kept as `evidence.track_check`), or one fix past the line and the next back (held
    at priority 0: in the list, nobody woken, never escalated; the ranger still gives the verdict)."""
    for alert_type, direction in COLLAR_FENCE_ALERTS.items():
        alert = steps.open.get(alert_type)
        if alert is None or alert.source != alerts.SOURCE_COLLAR:
            continue
        if (alert.evidence or {}).get(TRACK_CHECK_KEY, {}).get("verdict") in (CONFIRMED, LONE_FIX):
            continue  # decided once
        found: list[JudgedCrossing] = []
        for i in range(len(kept) - 1):
            if not alert.time - CHECK_BEFORE <= kept[i + 1][0] <= alert.time:
                continue
            for judged in judge.judge(kept, i):
                fence = judge.fences.fence(judged.crossing.fence_id)
                if fence is None or judged.crossing.direction != direction:
                    continue
                if (fence.kind in FARMLAND_KINDS) != (alert_type == GEOFENCE_FARMLAND):
                    continue
                if alert_type == GEOFENCE_EXIT and fence.alert_on not in ("exit", "both"):
                    continue
                found.append(judged)
        verdicts = {j.verdict: j for j in found}
        judged = verdicts.get(CONFIRMED) or verdicts.get(PENDING) or verdicts.get(LONE_FIX)
        if judged is None or judged.verdict == PENDING:
            continue
        held = judged.verdict == LONE_FIX
        alert = steps.mapped(session, alert)
        alert.evidence = {
            **alert.evidence,
            TRACK_CHECK_KEY: {
                "verdict": judged.verdict,
                "held": held,
                "fence": judged.crossing.fence_name,
                "crossed_at": judged.crossing.time.isoformat(),
                **judged.evidence,
            },
        }
        if held:
            alert.priority = alerts.PRIORITY_INFO
        alerts.record_event(session, alert, alerts.SYSTEM_ACTOR, alerts.ACTION_TRACK_CHECKED, {"verdict": judged.verdict, "held": held})
        log.info(
            "collar fence alert checked by the track alert_id=%s device_id=%s verdict=%s",
            alert.id, alert.device_id, judged.verdict, extra={"alert_id": alert.id, "device_id": alert.device_id},
        )


def _back_on_side(judge: CrossingJudge, fence_id: int, recent: list[Fix], inside: bool, need: int, far_enough: float) -> bool:
    """The newest fixes show the animal back on the `inside` side of the fence: the newest one far past
    the line, or the last `need` of them all on that side."""
    if not recent:
        return False
    newest_inside, newest_metres = judge.place(fence_id, recent[-1])
    if newest_inside != inside:
        return False
    if newest_metres >= far_enough:
        return True
    return len(recent) >= need and all(judge.place(fence_id, f)[0] == inside for f in recent)


def _immobility(
    session: Session,
    device: Device,
    animal_id: int | None,
    profile: RuleProfile,
    fixes: list[Fix],
    clean: CleanTrack,
    steps: Steps,
    fitted_at: datetime | None = None,
) -> None:
    """Raise, grow or close the collar's immobility alert on fixes (the kept fixes of clean, the track
    cleaned of its outliers, within the lookback; all since the wearer's fitting, fitted_at)."""
    result = immobility(fixes, profile.immobility, clean.metres)
    open_alert = steps.open.get(IMMOBILITY)
    if result.immobile:
        evidence = result.evidence(profile.immobility)
        evidence["excluded_fixes"] = clean.outliers[-5:]
        if open_alert is not None and open_alert.evidence.get("still_since") == evidence["still_since"]:
            grown = {**open_alert.evidence, **evidence}  # the same stillness, growing
            if grown != open_alert.evidence:  # the unit of work writes an equal value as nothing changed
                steps.mapped(session, open_alert).evidence = grown
            return
        if open_alert is None and _still_where_closed(session, device, profile, fitted_at):
            return
        activity = _activity_while_still(session, device.device_id, result.still_since, fixes[-1][0])
        evidence["activity"] = activity
        if _active_in_place(activity, result.still_s, profile):
            log.info(
                "still but active device_id=%s since=%s: active %.0f %% of %d summarised minutes, no immobility",
                device.device_id, evidence["still_since"], 100 * activity["active_share"], activity["minutes"],
                extra={"device_id": device.device_id, "evidence": evidence},
            )
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
            _close(session, steps, open_alert, "moving again", fixes[-1][0])


def _activity_while_still(session: Session, device_id: str, since: datetime | None, until: datetime) -> dict[str, Any]:
    """What the collar's activity summaries of the still spell say: the minutes they cover and the
    share of them the animal was active (any class but rest), time-weighted."""
    minutes = active = 0.0
    if since is not None:
        for interval_min, shares in session.execute(
            select(ActivitySummary.interval_min, ActivitySummary.shares_pct).where(
                ActivitySummary.device_id == device_id, ActivitySummary.time > since, ActivitySummary.time <= until
            )
        ):
            total = sum(float(v) for v in (shares or {}).values())
            if not total or not interval_min or not any(str(k).lower() in REST_CLASSES for k in shares):
                continue  # nothing summarised, or a model without a rest class: it cannot tell
            resting = sum(float(v) for k, v in shares.items() if str(k).lower() in REST_CLASSES)
            minutes += interval_min
            active += interval_min * (1.0 - resting / total)
    return {"minutes": int(minutes), "active_share": round(active / minutes, 3) if minutes else None}


def _active_in_place(activity: dict[str, Any], still_s: float, profile: RuleProfile) -> bool:
    """The summaries cover enough of the spell and show the animal active more than the profile allows."""
    p = profile.immobility
    covered = activity["minutes"] * 60 >= p.activity_cover_min * still_s
    return bool(covered and activity["active_share"] is not None and activity["active_share"] > p.max_active_share)


def _still_where_closed(session: Session, device: Device, profile: RuleProfile, fitted_at: datetime | None) -> bool:
    """The collar's last immobility alert was closed (a ranger went to look) and the animal has not
    left that spot since: no `confirm_fixes` plausible fixes in a row after the alert farther than twice
    the radius from its centre. One raised before the wearer's fitting (fitted_at) was another animal's.
    The same stillness, not a new one. (Read only when a stillness is found with no alert open.)"""
    closed = alerts.last_closed(session, device.device_id, IMMOBILITY, since=fitted_at)
    if closed is None or closed.lat is None or closed.lon is None:
        return False
    since = [
        tuple(row)
        for row in session.execute(
            select(Position.time, Position.lat, Position.lon)
            .where(Position.device_id == device.device_id, Position.time > closed.last_time)
            .order_by(Position.time)
            .limit(MAX_NEW_FIXES)
        )
    ]
    kept = exclude_outliers([(closed.last_time, closed.lat, closed.lon), *since], profile.speed).kept
    xy, _ = project(kept)
    away = [math.hypot(x - xy[0][0], y - xy[0][1]) > 2 * profile.immobility.radius_m for x, y in xy[1:]]
    # Left only when fixes in a row say so (the fences' confirm_fixes): one bad fix a few hundred metres
    # off, slow enough to pass the speed test between sparse fixes, is not a carcass getting up.
    run = max(1, profile.fences.confirm_fixes)
    return not any(all(away[i:i + run]) for i in range(len(away) - run + 1))


def _corroborate(session: Session, read: _CollarsRead | None, device: Device, profile: RuleProfile,
                 steps: Steps) -> None:
    for alert_type in CORROBORATED_TYPES:
        alert = steps.mapped(session, steps.open.get(alert_type))
        if alert is not None:
            corroborate(session, alert, device, profile, None if read is None else _around_alerts(session, read))


def _around_alerts(session: Session, read: _CollarsRead) -> AroundAlerts:
    """The fixes and activity summaries around the open poaching-risk and mortality alerts of read's
    collars, read together at the first of them weighed (`corroboration_reads`)."""
    if read.around_alerts is None:
        weighed = [(alert.alert_type, window_of(alert, read.profiles[device_id]))
                   for device_id, collar_alerts in read.open_alerts.items() if device_id in read.profiles
                   for alert in collar_alerts if alert.alert_type in CORROBORATED_TYPES]
        read.around_alerts = read_around(session, (window for _, window in weighed),
                                         poaching=any(alert_type == POACHING for alert_type, _ in weighed))
    return read.around_alerts


# The fixed lists of the timer's read of the alerts to weigh again, rendered once with its statement.
_CORROBORATED_TEXTS = bulk.fixed_texts(CORROBORATED_TYPES)
_OPEN_STATE_TEXTS = bulk.fixed_texts(alerts.OPEN_STATES)


def refresh_corroboration(session: Session, runtime: RulesRuntime, now: datetime) -> int:
    """Weigh again every open poaching-risk / mortality alert still inside its window (herd mates'
    data arrives after the alert); how many were weighed."""
    weighed = 0
    # The collars' cursors first (`rules_cursors`' lock order); a collar busy in an ingest batch is
    # weighed there (its rules corroborate its open alerts) or at the next round.
    for alert in alerts_of_free_collars(
        session, Alert.alert_type.in_(_CORROBORATED_TEXTS), Alert.state.in_(_OPEN_STATE_TEXTS)
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
    """Collars with fixes or a status the rules have not judged (or no cursor yet): a fix with a
    higher id than the cursor's, whatever its time (a back-fill), or a newer status."""
    unjudged = or_(
        RuleCursor.device_id.is_(None),
        and_(RuleCursor.position_id.is_not(None), Position.id > RuleCursor.position_id),
        and_(
            RuleCursor.position_id.is_(None),
            or_(RuleCursor.position_time.is_(None), Position.time > RuleCursor.position_time),
        ),
    )
    latest = (
        select(Position.device_id)
        .outerjoin(RuleCursor, RuleCursor.device_id == Position.device_id)
        .where(unjudged)
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
