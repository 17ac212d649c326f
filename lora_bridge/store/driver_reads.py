"""A read every batch runs several times, executed on SQLite's driver, bound and read as SQLAlchemy would.

The rules read each batch's collars' context fixes, and a batch's collar alerts their collars' newest
rows, in statements of eight parts (`store.parts`): each execution through SQLAlchemy's own (its
parameters processed by name, its result's rows made and processed) cost about 175 Python calls, where
the driver's execution of the same compiled text costs about 100.

Here such a statement is compiled once per dialect, and executed by `Connection.exec_driver_sql` (its
events fire, its errors are wrapped, its statement is counted as any other) with its parameters in the
compiled order, each through the bind processor SQLAlchemy's execution calls for it, and each column of
its rows through the result processor SQLAlchemy's execution calls for it (a fix's time: the same
aware UTC datetime). SQLite only: PostgreSQL's reads go SQLAlchemy's way (its driver takes named
parameters and returns typed values).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect


@dataclass(frozen=True)
class DriverRead:
    """A select compiled for SQLite's driver: its SQL, its parameters' values in the compiled order (from
    a dict of them by name), the values of those the statement holds itself (an OFFSET's 0), and the
    (position, processor) of each parameter and of each result column that has a processor."""

    sql: str
    values_of: Any  # parameters by name -> their values in the compiled order
    own: dict[str, Any]
    binds: tuple[tuple[int, Any], ...]
    results: tuple[tuple[int, Any, bool, Any], ...]  # (position, processor, whether it reads a None as None, column reader)

    def rows(self, connection: Connection, params: dict[str, Any]) -> list[Any]:
        """The rows the statement reads for params (by name), each a sequence of its columns' values as
        SQLAlchemy's execution of the statement gives them."""
        bound = list(self.values_of({**self.own, **params}) if self.own else self.values_of(params))
        for position, process in self.binds:
            bound[position] = process(bound[position])
        found = connection.exec_driver_sql(self.sql, tuple(bound)).all()
        return processed(found, self.results)


def processed(rows: list[Any], results: tuple[tuple[int, Any, bool, Any], ...]) -> list[Any]:
    """rows (sequences of values as the driver returns them) with each column of results (position,
    processor, whether it reads a None as None, the column's reader or None) through its reader, or
    value by value through its processor."""
    if not results or not rows:
        return rows
    # column by column: a processor mapped over a column's values, not a loop over the rows
    columns: list[Any] = list(zip(*rows, strict=True))
    for position, process, none_read_as_none, read_column in results:
        if read_column is not None:  # a whole column in one step (a time's: `UTCDateTime.column_reader`)
            columns[position] = read_column(columns[position])
        else:  # a None through a processor that reads it as None is skipped: its call, not its value
            columns[position] = ([None if value is None else process(value) for value in columns[position]]
                                 if none_read_as_none else map(process, columns[position]))
    return list(zip(*columns, strict=True))


def result_processors(dialect: Dialect, types: list[Any]) -> tuple[tuple[int, Any, bool, Any], ...]:
    """(position, processor, whether it reads a None as None, the column's reader) of each of types (a
    read's columns', in order) that has a result processor on dialect, as SQLAlchemy's execution takes
    them (SQLite's driver describes no column types); the reader, where the type has one
    (`UTCDateTime.column_reader`), reads the whole column as the processor reads each value, or is None."""
    found = []
    for position, column_type in enumerate(types):
        process = column_type._cached_result_processor(dialect, None)  # noqa: SLF001
        if process is not None:
            found.append((position, process, process(None) is None, _own_column_reader(dialect, column_type)))
    return tuple(found)


def _own_column_reader(dialect: Dialect, column_type: Any) -> Callable[[Sequence[Any]], list[Any]] | None:
    """column_type's reader of a whole column on dialect (`UTCDateTime.column_reader`), None where it has none."""
    # the type as the dialect reads it (a decorator's SQLite DATETIME), as for its processor
    reader = getattr(column_type.dialect_impl(dialect), "column_reader", None)
    return reader(dialect) if reader else None


# Column readers by dialect, then by the column types read together (`column_readers`)
_READERS: WeakKeyDictionary[Dialect, dict[tuple[Any, ...], tuple[Any, ...]]] = WeakKeyDictionary()


def column_readers(dialect: Dialect, types: tuple[Any, ...]) -> tuple[Callable[[Sequence[Any]], list[Any]], ...]:
    """A reader of each of types (columns read untyped, their processors left out of the read): a whole
    column of values as dialect's driver returns them read into the values SQLAlchemy's execution gives
    value by value, through the type's column reader where it has one (`UTCDateTime.column_reader`), else
    its result processor. Made once per dialect and types."""
    by_types = _READERS.get(dialect)
    if by_types is None:
        by_types = _READERS.setdefault(dialect, {})
    readers = by_types.get(types)
    if readers is None:
        readers = by_types[types] = tuple(_own_column_reader(dialect, column_type)
                                          or _processor_reader(dialect, column_type) for column_type in types)
    return readers


def _processor_reader(dialect: Dialect, column_type: Any) -> Callable[[Sequence[Any]], list[Any]]:
    """A reader of a column through column_type's result processor on dialect, value by value (a None
    skipped where the processor reads it as None)."""
    process = column_type.dialect_impl(dialect).result_processor(dialect, None)
    none_read_as_none = process is None or process(None) is None

    def read(values: Sequence[Any]) -> list[Any]:
        if process is None:
            return list(values)
        if none_read_as_none:
            return [None if value is None else process(value) for value in values]
        return list(map(process, values))

    return read


def rows_of(connection: Connection, statement: Any, params: dict[str, Any]) -> list[Any]:
    """The rows statement (a select built once by the caller) reads for params (by name), each a
    sequence of its columns' values as SQLAlchemy's execution gives them: at SQLite's driver where it
    takes the statement as it is (`driver_read`), else by SQLAlchemy's execution."""
    at_driver = driver_read(connection.dialect, statement)
    if at_driver is None:
        return connection.execute(statement, params).all()
    return at_driver.rows(connection, params)


# Compiled reads by dialect (an engine's: its types' processors), then by statement (the callers' built once)
_COMPILED: WeakKeyDictionary[Dialect, dict[Any, DriverRead | None]] = WeakKeyDictionary()


def driver_read(dialect: Dialect, statement: Any) -> DriverRead | None:
    """statement (a select built once by the caller) compiled for dialect's driver; None when not a
    read SQLite's driver takes as it is (another dialect, parameters rendered at execution)."""
    by_statement = _COMPILED.setdefault(dialect, {})
    try:
        return by_statement[statement]
    except KeyError:
        pass
    compiled = _driver_read(dialect, statement) if dialect.name == "sqlite" else None
    by_statement[statement] = compiled
    return compiled


def _driver_read(dialect: Dialect, statement: Any) -> DriverRead | None:
    compiled: Any = statement.compile(dialect=dialect)
    names = compiled.positiontup
    if (not names or not dialect.positional or compiled.literal_execute_params
            or compiled.post_compile_params or len(names) < 2):
        return None
    # the processors SQLAlchemy's execution of this compiled read calls: by parameter, and by result
    # column as its cursor result makes them (SQLite's driver describes no column types)
    binds = tuple((position, compiled._bind_processors[name])  # noqa: SLF001 - as SQLAlchemy's execution reads them
                  for position, name in enumerate(names) if name in compiled._bind_processors)  # noqa: SLF001
    results = result_processors(dialect, [column.type for column in compiled._result_columns])  # noqa: SLF001
    own = {name: compiled.binds[name].effective_value for name in names if not compiled.binds[name].required}
    return DriverRead(compiled.string, itemgetter(*names), own, binds, results)
