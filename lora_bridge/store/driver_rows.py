"""A batch's plain inserts and updates on SQLite, its rows bound as SQLAlchemy would bind them, in fewer steps.

Every batch inserts its raw rows, and its fixes, activity summaries and battery readings, each table's rows
in one executemany (`store.bulk`), and updates its collars' rows and its rules' cursors so
(`store.changed_rows`, `domain.rules_cursors`). SQLAlchemy's execution of such a statement builds each
row's parameters, calling the column's bind processor for every value, a None too (a raw row has twelve
columns with one: about fifteen calls a row).

Here the statement is compiled once per dialect, statement and columns, and executed by
`Connection.exec_driver_sql` (its events fire, its errors are wrapped, its statement is counted as any
other), each row's values taken in the compiled order and bound as the compiled processors bind them:
a None as the processor binds a None (asked once, when the statement is compiled), a float for a Double column
and bytes for a LargeBinary column as they are (SQLite's driver stores them as the processors' float and
buffer), a UTC time of a `UTCDateTime` column formatted here as its processor formats it (the raw rows,
fixes, summaries, readings, collars and cursors of a batch bind some six times an uplink), a dict or list of
a JSON column handed straight to the serializer its processor hands it to (a raw row's gateways, a summary's
shares, a collar's flags: the processor's own steps cost two calls a value), True or False of a Boolean
column as the 1 or 0 its processor binds, any other value through its processor. PostgreSQL's go SQLAlchemy's way: its driver takes
named parameters and SQLAlchemy folds a batch's inserted rows into multi-row statements there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import JSON, Boolean, Connection, LargeBinary
from sqlalchemy.engine import Dialect, processors
from sqlalchemy.sql.dml import Insert, Update

from lora_bridge.store.utc import SQLITE_TEXT, UTCDateTime

# How a value of a column with a bind processor is bound (besides a None, bound as the processor binds it)
_THROUGH_PROCESSOR = 0
_FLOAT = 1  # `processors.to_float`: the value's float
_BYTES = 2  # a LargeBinary on SQLite: bytes as they are, anything else through the processor
_UTC_TEXT = 3  # a UTCDateTime on SQLite: a naive or UTC datetime as its text, anything else through the processor
# a JSON column on SQLite: a dict or a list as the dialect's JSON serializer writes it (what the processor
# does with one), anything else (a None, `JSON.NULL`, a `null()`) through the processor
_JSON_DOCUMENT = 4
# a Boolean on SQLite (no native boolean): True or False as the 1 or 0 its processor binds (a raw row's
# `backfilled`, once a body), anything else through the processor (which refuses what is not a boolean)
_BOOL_AS_INT = 5


@dataclass(frozen=True)
class DriverStatement:
    """An insert or update compiled for SQLite's driver: its SQL, the row's values in parameter order,
    and for each column with a bind processor (position, how it binds, the processor, what it binds a
    None as)."""

    sql: str
    values_of: Any  # row dict -> tuple of its values in the parameters' order
    steps: tuple[tuple[int, int, Any, Any], ...]
    # the dialect's JSON serializer, for the steps `_JSON_DOCUMENT` (None when the statement has none)
    serialize: Any = None

    def bound(self, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """rows' parameters as SQLAlchemy's bind processors would hand them to the driver."""
        values_of, steps, serialize = self.values_of, self.steps, self.serialize
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
                elif how == _BYTES and type(value) is bytes:
                    continue
                elif how == _UTC_TEXT and type(value) is datetime and (value.tzinfo is UTC or value.tzinfo is None):
                    # what `UTCDateTime`'s SQLite processor binds such a time as, without its call
                    values[position] = SQLITE_TEXT % (value.year, value.month, value.day, value.hour, value.minute,
                                                      value.second, value.microsecond)
                elif how == _JSON_DOCUMENT and (type(value) is dict or type(value) is list):
                    values[position] = serialize(value)  # what the processor returns for one, without its steps
                elif how == _BOOL_AS_INT and type(value) is bool:
                    values[position] = 1 if value else 0  # the processor's `int(value)`, without its two steps
                else:
                    values[position] = process(value)
            bound.append(tuple(values))
        return bound


def execute_many(connection: Connection, statement: Insert | Update, rows: list[dict[str, Any]]) -> Any:
    """Execute statement (an insert or update of plain values, built once by the caller) for rows, which
    all have the same keys: on SQLite through its driver's executemany (`DriverStatement`), elsewhere
    SQLAlchemy's way; its result (the rows it matched: `rowcount`)."""
    compiled = _compiled(connection.dialect, statement, tuple(rows[0])) if rows else None
    if compiled is None:
        return connection.execute(statement, rows)
    return connection.exec_driver_sql(compiled.sql, compiled.bound(rows))


def execute_runs(connection: Connection, statement: Insert | Update,
                 rows: list[dict[str, Any]]) -> Iterator[tuple[int, Any]]:
    """Execute statement for rows in their order, one `execute_many` a run of consecutive rows with the
    same keys (a batch's held history rows, its changed collars and cursors: most share their keys);
    (how many rows, its result) for each run, as it is executed."""
    for _keys, run in groupby(rows, key=dict.keys):
        same = list(run)
        yield len(same), execute_many(connection, statement, same)


# Compiled statements by dialect (an engine's: its JSON serializer, its types' processors), then by
# statement and parameters; an entry goes with its engine's dialect. The statements are the callers' built once.
_COMPILED: WeakKeyDictionary[Dialect, dict[tuple[Any, tuple[str, ...]], DriverStatement | None]] = WeakKeyDictionary()


def _compiled(dialect: Dialect, statement: Insert | Update, keys: tuple[str, ...]) -> DriverStatement | None:
    """statement compiled for dialect with the parameters keys (None: not a statement SQLite's driver
    takes as it is: another dialect, per-row defaults to compute, parameters not named by the keys)."""
    by_statement = _COMPILED.setdefault(dialect, {})
    try:
        return by_statement[(statement, keys)]
    except KeyError:
        pass
    compiled = _driver_statement(dialect, statement, keys) if dialect.name == "sqlite" else None
    by_statement[(statement, keys)] = compiled
    return compiled


def _driver_statement(dialect: Dialect, statement: Insert | Update, keys: tuple[str, ...]) -> DriverStatement | None:
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
    names = compiled.positiontup
    if (not names or not dialect.positional or compiled.insert_prefetch or compiled.update_prefetch
            or compiled.postfetch or compiled.returning or compiled.literal_execute_params
            or compiled.post_compile_params or not set(names) <= set(keys)):
        return None
    steps = []
    serialize = None
    for position, name in enumerate(names):
        # the processors SQLAlchemy's own execution of this compiled insert calls, by parameter
        process = compiled._bind_processors.get(name)
        if process is None:
            continue
        if process is processors.to_float:
            how = _FLOAT
        elif isinstance(compiled.binds[name].type, LargeBinary):
            how = _BYTES
        elif isinstance(compiled.binds[name].type, UTCDateTime):
            how = _UTC_TEXT
        elif _json_serializer_of(dialect, compiled.binds[name].type) is not None:
            how = _JSON_DOCUMENT
            serialize = _json_serializer_of(dialect, compiled.binds[name].type)
        elif isinstance(compiled.binds[name].type, Boolean) and not dialect.supports_native_boolean:
            how = _BOOL_AS_INT
        else:
            how = _THROUGH_PROCESSOR
        steps.append((position, how, process, process(None)))
    getter = itemgetter(*names)
    values_of = getter if len(names) > 1 else (lambda row: (getter(row),))
    return DriverStatement(compiled.string, values_of, tuple(steps), serialize)


def _json_serializer_of(dialect: Dialect, column_type: Any) -> Any:
    """The serializer a JSON column's bind processor hands a document to on dialect, when it hands it
    nothing else first or after (the dialect's JSON serializer, no text processing of its result: SQLite's);
    None for any other column or dialect."""
    if (not isinstance(column_type, JSON) or dialect._json_serializer is None  # noqa: SLF001 - as the processor reads it
            or column_type._str_impl.bind_processor(dialect) is not None):  # noqa: SLF001
        return None
    return dialect._json_serializer  # noqa: SLF001
