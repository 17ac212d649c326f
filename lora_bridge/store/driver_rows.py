"""A batch's plain inserts on SQLite, its rows bound as SQLAlchemy would bind them, in fewer steps.

Every batch inserts its raw rows, and its fixes, activity summaries and battery readings, each table's rows
in one executemany (`store.bulk`). SQLAlchemy's execution of such an insert builds the statement's cache key
(some 300 Python calls a statement) and then each row's parameters, calling the column's bind processor for
every value, a None too (a raw row has twelve columns with one: about fifteen calls a row).

Here the insert is compiled once per dialect, statement and columns, and executed by
`Connection.exec_driver_sql` (its events fire, its errors are wrapped, its statement is counted as any
other), each row's values taken in the compiled order and bound as the compiled processors bind them:
a None as the processor binds a None (asked once, when the insert is compiled), a float for a Double column
and bytes for a LargeBinary column as they are (SQLite's driver stores them as the processors' float and
buffer), any other value through its processor. PostgreSQL's inserts go SQLAlchemy's way: its driver
takes named parameters and SQLAlchemy folds a batch's rows into multi-row statements there.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, LargeBinary
from sqlalchemy.engine import Dialect, processors
from sqlalchemy.sql.dml import Insert

# How a value of a column with a bind processor is bound (besides a None, bound as the processor binds it)
_THROUGH_PROCESSOR = 0
_FLOAT = 1  # `processors.to_float`: the value's float
_BYTES = 2  # a LargeBinary on SQLite: bytes as they are, anything else through the processor


@dataclass(frozen=True)
class DriverInsert:
    """An insert compiled for SQLite's driver: its SQL, the row's values in parameter order, and for each
    column with a bind processor (position, how it binds, the processor, what it binds a None as)."""

    sql: str
    values_of: Any  # row dict -> tuple of its values in the parameters' order
    steps: tuple[tuple[int, int, Any, Any], ...]

    def bound(self, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """rows' parameters as SQLAlchemy's bind processors would hand them to the driver."""
        values_of, steps = self.values_of, self.steps
        if not steps:
            return [values_of(row) for row in rows]
        bound = []
        for row in rows:
            values = list(values_of(row))
            for position, how, process, none_as in steps:
                value = values[position]
                if value is None:
                    values[position] = none_as
                elif how == _FLOAT:
                    values[position] = float(value)
                elif how == _THROUGH_PROCESSOR or type(value) is not bytes:
                    values[position] = process(value)
            bound.append(tuple(values))
        return bound


def insert_rows(connection: Connection, statement: Insert, rows: list[dict[str, Any]]) -> None:
    """Execute statement (an insert of plain values, built once by the caller) for rows, which all have the
    same keys: on SQLite through its driver's executemany (`DriverInsert`), elsewhere SQLAlchemy's way."""
    driver_insert = _driver_insert(connection.dialect, statement, tuple(rows[0])) if rows else None
    if driver_insert is None:
        connection.execute(statement, rows)
        return
    connection.exec_driver_sql(driver_insert.sql, driver_insert.bound(rows))


# Compiled inserts by dialect (an engine's: its JSON serializer, its types' processors), then by statement
# and columns; an entry goes with its engine's dialect. The statements are the callers' built-once inserts.
_COMPILED: WeakKeyDictionary[Dialect, dict[tuple[Insert, tuple[str, ...]], DriverInsert | None]] = WeakKeyDictionary()


def _driver_insert(dialect: Dialect, statement: Insert, keys: tuple[str, ...]) -> DriverInsert | None:
    """statement compiled for dialect with the columns keys (None: not an insert SQLite's driver takes
    as it is: another dialect, per-row defaults to compute, parameters not named by the columns)."""
    by_statement = _COMPILED.setdefault(dialect, {})
    try:
        return by_statement[(statement, keys)]
    except KeyError:
        pass
    driver_insert = _compiled(dialect, statement, keys) if dialect.name == "sqlite" else None
    by_statement[(statement, keys)] = driver_insert
    return driver_insert


def _compiled(dialect: Dialect, statement: Insert, keys: tuple[str, ...]) -> DriverInsert | None:
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
    names = compiled.positiontup
    if (not names or not dialect.positional or compiled.insert_prefetch or compiled.postfetch
            or compiled.returning or not set(names) <= set(keys)):
        return None
    table = statement.table
    steps = []
    for position, name in enumerate(names):
        # the processors SQLAlchemy's own execution of this compiled insert calls, by parameter
        process = compiled._bind_processors.get(name)
        if process is None:
            continue
        column = table.c.get(name)
        if column is None:
            return None
        if process is processors.to_float:
            how = _FLOAT
        elif isinstance(column.type, LargeBinary):
            how = _BYTES
        else:
            how = _THROUGH_PROCESSOR
        steps.append((position, how, process, process(None)))
    getter = itemgetter(*names)
    values_of = getter if len(names) > 1 else (lambda row: (getter(row),))
    return DriverInsert(compiled.string, values_of, tuple(steps))
