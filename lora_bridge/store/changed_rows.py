"""Stored rows a unit of work changed, written by Core executemany UPDATEs instead of the ORM's flush.

An ingest batch changes every collar it hears (`devices`: last seen, frame counter, status) and every
cursor its rules move (`rule_cursors`): some fifty rows a batch, each flushed by the unit of work,
whose bookkeeping per object (history, mapper steps, one statement a set of changed columns) cost
several times the UPDATE itself. A session that asks for it (`update_by_core`, the batch paths of
`lora_bridge.pipeline`) has the changed rows of those classes written at each flush, just before the
unit of work runs, as one executemany per table and set of changed columns, in primary-key order
(the unit of work's: two workers on PostgreSQL lock a batch's rows in one order). The objects stay in
the session as the flush would leave them: their changes committed to their state, and registered
with the transaction (a savepoint rolled back expires them, as it expires what the unit of work wrote).

Only plain column changes of stored objects go this way: a new object, a changed primary key or
relationship, an attribute not loaded, or a flush of named objects is left to the unit of work.
"""

from __future__ import annotations

from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table, bindparam, event, inspect, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.exc import StaleDataError

from lora_bridge.store import driver_rows

# session.info key: the mapped classes whose changed stored rows this session's flushes write by Core.
CORE_UPDATED = "tembo_core_updated"
# The bound name of the primary key in the UPDATE's WHERE (a column's name would be taken for a SET).
ROW_KEY = "tembo_row_key"


def update_by_core(session: Session, *classes: type) -> None:
    """Have the changed stored rows of classes (mapped, one-column primary key) written by Core
    executemany UPDATEs at this session's flushes (see the module docstring)."""
    session.info.setdefault(CORE_UPDATED, set()).update(classes)


@cache
def _mapping(cls: type) -> tuple[Table, str, dict[str, tuple[str, Any]]]:
    """(table, primary key attribute, {column attribute: (its column's key, its impl)}) of a mapped class."""
    mapper = inspect(cls)
    (key,) = (mapper.get_property_by_column(column).key for column in mapper.primary_key)
    columns = {prop.key: (prop.columns[0].key, mapper.class_manager[prop.key].impl) for prop in mapper.column_attrs
               if len(prop.columns) == 1 and prop.columns[0].table is mapper.local_table}
    return mapper.local_table, key, columns


@cache
def update_of(table: Table) -> Any:
    """UPDATE table SET <the columns of each row's parameters> WHERE <primary key> = :tembo_row_key."""
    (key,) = table.primary_key.columns
    return update(table).where(key == bindparam(ROW_KEY))


@cache
def _dependency_order(table: Table) -> int:
    """Where table comes in its metadata's dependency order (a table before those referring to it)."""
    return table.metadata.sorted_tables.index(table)


def _changes(state: Any, columns: dict[str, tuple[str, Any]], key: str) -> dict[str, Any] | None:
    """The columns of a stored object that differ from what it was loaded with, by column key; None
    when the unit of work must write it (a change of its key or of a relationship, an attribute not
    loaded)."""
    dict_ = state.dict
    values: dict[str, Any] = {}
    for name, old in state.committed_state.items():
        column = columns.get(name)
        if column is None or name == key or name not in dict_:
            return None
        new = dict_[name]
        if old is NO_VALUE or not column[1].is_equal(new, old):
            values[column[0]] = new
    return values


def write_changed_rows(session: Session, classes: set[type]) -> int:
    """Write the changed stored rows of classes now (see the module docstring); how many objects."""
    by_table: dict[Table, list[tuple[Any, dict[str, Any]]]] = {}
    written = []
    for obj in session.dirty:
        cls = type(obj)
        if cls not in classes:
            continue
        state = instance_state(obj)
        if state.key is None:
            continue
        table, key, columns = _mapping(cls)
        values = _changes(state, columns, key)
        if values is None:
            continue
        written.append(state)
        if values:  # set back to what it was loaded with: nothing to write, as the unit of work finds
            by_table.setdefault(table, []).append((state.key[1][0], values))
    if not written:
        return 0
    connection = session.connection()
    for table in sorted(by_table, key=_dependency_order):  # a collar's row before its cursor's, as the unit of work
        update_in_key_order(connection, table, by_table[table])
    for state in written:
        state._commit_all(state.dict, session.identity_map)
    session._register_altered(written)
    return len(written)


def update_in_key_order(connection: Connection, table: Table, rows: list[tuple[Any, dict[str, Any]]]) -> None:
    """Update rows ((primary key, {column: value}) of table) in primary-key order, consecutive rows changing
    the same columns in one executemany: the unit of work's statements, so two workers on PostgreSQL still
    lock rows in one order."""
    multi_rowcount = connection.dialect.supports_sane_multi_rowcount
    params = [{**values, ROW_KEY: row_key} for row_key, values in sorted(rows, key=itemgetter(0))]
    for count, result in driver_rows.execute_runs(connection, update_of(table), params):
        if multi_rowcount and result.rowcount not in (-1, count):
            raise StaleDataError(f"UPDATE of {table.name} matched {result.rowcount} of {count} rows")


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context: Any, objects: Any) -> None:
    classes = session.info.get(CORE_UPDATED)
    if classes and objects is None:
        write_changed_rows(session, classes)
