"""The per-collar lock the rules and the fix writers share: the collar's row in `rule_cursors`.

The rules read "every fix of the collar with an id above its cursor" (`rule_cursors.position_id`). On
PostgreSQL two workers can write fixes of one collar at once; ids come from one sequence when each
insert runs, not when it commits, so without a lock a fix with a lower id can commit after the rules
already read a higher one and moved the cursor past it, and it would never be judged. So:

- a transaction that writes fixes takes the cursor rows of their collars first (`lock_cursors`, from
  `store.bulk` just before the fixes' insert, collars in one sorted order so writers never wait on
  each other in a circle) and holds them to its commit: a collar's fixes get their ids in the order
  their transactions commit;
- the rules take the collar's cursor row before reading its fixes (`lock_cursor`): they wait for any
  writer of that collar still running, then read everything it wrote.

One lock order, so no two transactions wait on each other in a circle: a collar's cursor row before
any other row of that collar (its device row, its alerts), and the cursors a transaction takes at once
in device_id order. An ingest batch takes the cursors of all its collars when it reads them
(`pipeline.read_batch`), before it writes anything of theirs; a body applied alone takes its collar's
the same way; the timer's rules over many collars' alerts (escalation, corroboration again) take only
the cursors nobody holds (`free_collars`, SKIP LOCKED: never waiting on one while holding others) and
leave the busy collars' alerts to the next round.

A transaction remembers the cursors it took outside any savepoint (`session.info`, forgotten at
its end) and does not take them again: the batch took its collars' once, and their rules and fixes
need not ask again. One taken inside a savepoint is not remembered (a rollback to the savepoint
releases it).

SQLite has one writer at a time: nothing to take there.

A batch's cursors are read once: on PostgreSQL with their lock (`lock_cursors` reads their columns as it
takes them), on SQLite with the collars (`pipeline.read_batch`, the times a column at once: `keep_read_columns`);
a collar a SQLite batch files as new has none stored, known without a read (`devices._named_or_new`). Kept in
`session.info` (`keep_read`),
they are what the rules of the batch's collars judge from (`take_read`), not read again; any cursor
written (`write_cursors`) drops them, so a read kept is never older than this transaction's last write.

The rules read and move a cursor as plain values (`Cursor`, read by `read_cursors` or with the collar's
row), never as a mapped object: the unit of work's bookkeeping of some fifty cursors a batch (loading,
attribute history, the flush's comparison of every changed column) cost more than the rules' judging of
a collar's new fix. The cursors moved are written back in one executemany (`write_cursors`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import String, bindparam, insert, select, type_coerce, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from lora_bridge.store import bulk, driver_reads, driver_rows
from lora_bridge.store.tables import Alert, Device, RuleCursor
from lora_bridge.store.transaction_info import held_until_transaction_end

# session.info key: the collars whose cursor rows this transaction holds, taken outside a savepoint.
HELD = held_until_transaction_end("tembo_cursors_held")
# session.info key: the cursors read with the batch's collars or their lock (`keep_read`), by collar.
READ = held_until_transaction_end("tembo_cursors_read")


def lock_cursors(session: Session, device_ids: Iterable[str]) -> None:
    """Take these collars' cursor rows (created when missing) for this transaction, in sorted order;
    their values, read as they are taken, kept for the rules (`keep_read`)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    held = session.info.get(HELD, ())
    collars = sorted(set(device_ids) - set(held))
    if not collars:
        return
    taken = _take(session, collars)
    missing = [collar for collar in collars if collar not in taken]
    if missing:  # a collar's first batch: its cursor row is made, then taken
        _create_missing(session, missing)
        taken.update(_take(session, missing))
    _remember(session, taken)
    if not session.in_nested_transaction():  # as held: a rollback to the savepoint would release them
        keep_read(session, taken)


def _take(session: Session, collars: list[str]) -> dict[str, Cursor]:
    """The cursors of these collars that are stored, taken (locked) and read in one statement."""
    rows = session.execute(
        select(*CURSOR_COLUMNS).where(RuleCursor.device_id.in_(collars))
        .order_by(RuleCursor.device_id).with_for_update()
    )
    return {row[0]: Cursor(row[0], True, row[1], row[2], row[3]) for row in rows}


def _remember(session: Session, collars: Iterable[str]) -> None:
    if not session.in_nested_transaction():
        session.info.setdefault(HELD, set()).update(collars)


def keep_read(session: Session, cursors: dict[str, Cursor]) -> None:
    """Keep these cursors as this transaction read them, for the rules of their collars (`take_read`):
    each current until a cursor is written (`write_cursors` drops them all)."""
    session.info.setdefault(READ, {}).update(cursors)


def keep_read_columns(session: Session, dialect: Dialect, read: list[tuple[str, Any]]) -> None:
    """keep_read of cursors read as CURSOR_TEXT_COLUMNS with their collars on dialect (SQLite): (device_id,
    the columns) each, the columns all None for a collar with no cursor stored yet (as `cursor_of` makes
    it, without its call). The two times, read untyped, are read a column at once
    (`driver_reads.column_readers`: the same aware UTC times the ORM's processor gives value by value, a
    None kept), not through a processor call a value."""
    kept = {device_id: Cursor(device_id, False) for device_id, row in read if row[0] is None}
    stored = [(device_id, row) for device_id, row in read if row[0] is not None]
    if stored:
        read_position_times, read_status_times = driver_reads.column_readers(dialect, _CURSOR_TIMES)
        rows = [row for _, row in stored]
        position_times = read_position_times(list(map(_POSITION_TIME, rows)))  # map: no call a row
        status_times = read_status_times(list(map(_STATUS_TIME, rows)))
        kept.update({device_id: Cursor(device_id, True, row[1], position_time, status_time)
                     for (device_id, row), position_time, status_time
                     in zip(stored, position_times, status_times, strict=True)})
    keep_read(session, kept)


def kept_read_covers(session: Session, device_ids: list[str]) -> bool:
    """True when the cursor of every collar of device_ids is kept (`keep_read`)."""
    kept = session.info.get(READ)
    if not kept:
        return False
    for device_id in device_ids:  # a loop, not all() over a generator: each of a generator's items is a call
        if device_id not in kept:
            return False
    return True


def take_read(session: Session, device_ids: list[str]) -> dict[str, Cursor] | None:
    """The kept cursors of device_ids (`keep_read`), each taken once, so never judged from twice; None
    (and none taken) unless every one is kept."""
    if not kept_read_covers(session, device_ids):
        return None
    kept = session.info[READ]
    return {device_id: kept.pop(device_id) for device_id in device_ids}


def _create_missing(session: Session, collars: list[str]) -> None:
    from sqlalchemy.dialects.postgresql import insert

    known = select(Device.device_id).where(Device.device_id.in_(collars)).order_by(Device.device_id)
    session.execute(insert(RuleCursor).from_select(["device_id"], known).on_conflict_do_nothing())


def lock_cursor(session: Session, device_id: str) -> None:
    """Take one collar's cursor row before its rules read: two workers, or a worker and the timer,
    judging one collar at once would both read the old cursor, judge the same fixes and write back
    whichever cursor commits last; and a writer of its fixes still running is waited for. On
    PostgreSQL the second waits here and then reads the cursor (reloaded) the first wrote."""
    if session.get_bind().dialect.name != "postgresql" or device_id in session.info.get(HELD, ()):
        # Held already: taken by the batch before anything of it read a cursor (the rules read a
        # collar's only after its lock), so what the rules read next is current.
        return
    take = (select(RuleCursor).where(RuleCursor.device_id == device_id)
            .with_for_update().execution_options(populate_existing=True))
    found = session.scalars(take).first()
    if found is None:  # the collar's first judgement: its cursor row is made, then taken
        _create_missing(session, [device_id])
        found = session.scalars(take).first()
    if found is not None:
        _remember(session, [device_id])


def lock_cursors_of_fixes(session: Session, rows: list[dict]) -> None:
    """`store.bulk`'s hook before fixes (rows of `positions`) are inserted: their collars' locks."""
    lock_cursors(session, (row["device_id"] for row in rows))


def free_collars(session: Session, device_ids: Iterable[str]) -> set[str]:
    """Of these collars, the ones whose cursor rows this transaction could take without waiting (now
    held to its commit); a collar with no cursor row yet, or one another transaction holds, is left
    out. Everything on SQLite."""
    collars = sorted(set(device_ids))
    if session.get_bind().dialect.name != "postgresql" or not collars:
        return set(collars)
    return set(session.scalars(
        select(RuleCursor.device_id).where(RuleCursor.device_id.in_(collars))
        .order_by(RuleCursor.device_id).with_for_update(skip_locked=True)
    ))


def alerts_of_free_collars(session: Session, *where: Any, for_update: bool = False) -> list[Alert]:
    """The alerts matching `where`, of the collars whose cursors this transaction could take without
    waiting (`free_collars`: taken first, in the lock order), in id order. A collar busy in an ingest
    batch keeps its alerts for the next round of the timer. for_update: the alerts are read under
    their row locks, after the cursors (a ranger's step holding one is waited for, and an alert it
    took out of `where` is not returned: PostgreSQL reads the row again once the lock is free)."""
    free = free_collars(session, session.scalars(select(Alert.device_id).where(*where).distinct()))
    if not free:
        return []
    read = select(Alert).where(*where, Alert.device_id.in_(free)).order_by(Alert.id)
    return list(session.scalars(read.with_for_update() if for_update else read))


@dataclass(slots=True)
class Cursor:
    """A collar's row of `rule_cursors` as the rules read and move it: the highest fix id and the newest
    fix time judged, the newest status time judged; stored: the row exists. evaluated_at (when the rules
    last ran) is only written: set by each evaluation, never read."""

    device_id: str
    stored: bool
    position_id: int | None = None
    position_time: datetime | None = None
    status_time: datetime | None = None
    evaluated_at: datetime | None = None

    def copy(self) -> Cursor:
        """A cursor of the same values to move (an evaluation rolled back leaves this one as read)."""
        return Cursor(self.device_id, self.stored, self.position_id, self.position_time, self.status_time)


# The columns a cursor is read with, in `Cursor`'s order (after stored): the collar's row of them.
CURSOR_COLUMNS = (RuleCursor.device_id, RuleCursor.position_id, RuleCursor.position_time, RuleCursor.status_time)
# The same columns as a batch reads them with its collars on SQLite (`pipeline.read_batch`): the two times
# untyped, SQLite's texts the ORM leaves as they are (its processor a value, a call each, left out), read a
# column at once by `keep_read_columns`.
_CURSOR_TIMES = (RuleCursor.position_time.type, RuleCursor.status_time.type)
_POSITION_TIME, _STATUS_TIME = itemgetter(2), itemgetter(3)  # of a row of CURSOR_TEXT_COLUMNS, in C
CURSOR_TEXT_COLUMNS = (RuleCursor.device_id, RuleCursor.position_id,
                       type_coerce(RuleCursor.position_time, String).label("cursor_position_time"),
                       type_coerce(RuleCursor.status_time, String).label("cursor_status_time"))
_CURSORS = frozenset({RuleCursor.__table__})
# The bound name of the collar in the cursors' UPDATE (a column's name would be taken for a SET).
_COLLAR = "tembo_cursor_collar"
_COLLAR_OF = attrgetter("device_id")  # a cursor's sort key, in C


def cursor_of(device_id: str, row: Any) -> Cursor:
    """The cursor of device_id from its CURSOR_COLUMNS (row[0] None: no row stored yet, a fresh cursor)."""
    if row[0] is None:
        return Cursor(device_id, False)
    return Cursor(device_id, True, row[1], row[2], row[3])


@cache
def _cursors_read(size: int) -> Any:
    """`read_cursors`' statement, built once per count bucket of the collars (`bulk.in_list`): every
    batch runs it, and an expanding parameter renders its IN list again at every execution."""
    return select(*CURSOR_COLUMNS).where(bulk.in_list(RuleCursor.device_id, "device", size))


def read_cursors(session: Session, device_ids: list[str]) -> dict[str, Cursor]:
    """The stored cursors of these collars by collar (a collar with none is left out), as plain values:
    each row made a Cursor at once (every row read is a stored one), not through `cursor_of`, a call
    less a collar a batch; on SQLite read at the driver, the two time columns each in one step
    (`bulk.read_column_tuples`)."""
    size = bulk.in_list_size(len(device_ids))
    rows = bulk.read_column_tuples(session, _cursors_read(size),
                                   bulk.in_list_values("device", list(device_ids), size), _CURSORS)
    return {row[0]: Cursor(row[0], True, row[1], row[2], row[3]) for row in rows}


# the UPDATE of a stored cursor by its collar and the INSERT of a new one, built once
_CURSOR_UPDATE = update(RuleCursor.__table__).where(RuleCursor.__table__.c.device_id == bindparam(_COLLAR))
_CURSOR_INSERT = insert(RuleCursor.__table__)


def write_cursors(session: Session, cursors: list[Cursor]) -> None:
    """Write the cursors the rules moved: one executemany UPDATE of the stored ones (in collar order, the
    lock order), one INSERT of the new ones; each then counts as stored."""
    if not cursors:
        return
    session.info.pop(READ, None)  # a cursor kept as read may be one of these: no longer current
    stored = sorted([c for c in cursors if c.stored], key=_COLLAR_OF)
    new = [c for c in cursors if not c.stored]
    connection = session.connection()
    if stored:
        driver_rows.execute_many(connection, _CURSOR_UPDATE, [
            {_COLLAR: c.device_id, "position_id": c.position_id, "position_time": c.position_time,
             "status_time": c.status_time, "evaluated_at": c.evaluated_at} for c in stored])
    if new:
        driver_rows.execute_many(connection, _CURSOR_INSERT, [
            {"device_id": c.device_id, "position_id": c.position_id, "position_time": c.position_time,
             "status_time": c.status_time, "evaluated_at": c.evaluated_at} for c in new])
        for cursor in new:
            cursor.stored = True
