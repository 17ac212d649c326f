"""Days between two times, computed by the store: what a trend needs of many rows in one number each.

`days_since(column, origin)` is the SQL expression for (column - origin) in days as a float, in the
dialect of the store it runs on (SQLite keeps times as UTC text: julianday; PostgreSQL as timestamps
with time zone: the epoch of the interval), so an aggregate over a collar's readings returns sums,
not every row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

SECONDS_PER_DAY = 86_400


class days_since(FunctionElement[float]):  # noqa: N801 - used like the SQL functions it stands for
    """(later - origin) in days, a float: `days_since(Table.time, bindparam("origin", type_=...))`."""

    type = Float()
    inherit_cache = True
    name = "days_since"


@compiles(days_since, "sqlite")
def _days_since_sqlite(element: days_since, compiler: Any, **kw: Any) -> str:
    later, origin = list(element.clauses)
    return f"(julianday({compiler.process(later, **kw)}) - julianday({compiler.process(origin, **kw)}))"


@compiles(days_since, "postgresql")
def _days_since_postgresql(element: days_since, compiler: Any, **kw: Any) -> str:
    later, origin = list(element.clauses)
    return (f"(EXTRACT(EPOCH FROM ({compiler.process(later, **kw)} - {compiler.process(origin, **kw)}))"
            f" / {SECONDS_PER_DAY}.0)")


@compiles(days_since)
def _days_since_elsewhere(element: days_since, compiler: Any, **kw: Any) -> str:
    raise NotImplementedError(f"days_since has no form for the {compiler.dialect.name} dialect")
