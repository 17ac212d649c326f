"""`column IN` a batch's values, written for each store's driver (`store.bulk.in_list`).

SQLite has no arrays: the values are bound one by one, `IN (:name_0, ..., :name_<size - 1>)`, the
list padded to its count bucket so each bucket's statement is compiled once (by SQLAlchemy and by
sqlite3's statement cache). PostgreSQL reads `column = ANY(:name)`, the values bound as one array of
the column's type: psycopg keeps its conversion of a statement only for statements of at most 50
parameters, so a bucket of 64 or more scalars was converted again at every execution.

One construct holds both forms and each dialect compiles its own; SQLAlchemy's compiled cache keeps
it as any statement (its cache key is both forms'), so no read is rendered again per execution.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, any_, bindparam
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnElement, Grouping
from sqlalchemy.sql.visitors import InternalTraversal


class ValuesIn(ColumnElement[bool]):
    """column IN the values bound as names (SQLite: one parameter each) or as name (PostgreSQL: an array)."""

    inherit_cache = True
    _traverse_internals = [
        ("one_by_one", InternalTraversal.dp_clauseelement),
        ("as_array", InternalTraversal.dp_clauseelement),
    ]
    type = Boolean()

    def __init__(self, column: Any, name: str, names: tuple[str, ...]) -> None:
        self.one_by_one = column.in_([bindparam(key, type_=column.type) for key in names])
        self.as_array = column == any_(bindparam(name, type_=postgresql.ARRAY(column.type)))

    def self_group(self, against: Any = None) -> ColumnElement[Any]:
        """A comparison, as both forms are: as it is in an AND, an OR or a WHERE (no `= 1` after it, as
        a boolean column gets on SQLite), in parentheses anywhere else."""
        if against in (operators.and_, operators.or_, operators._asbool):
            return self
        return Grouping(self)


@compiles(ValuesIn)
def _one_by_one(element: ValuesIn, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.one_by_one, **kw)


@compiles(ValuesIn, "postgresql")
def _as_array(element: ValuesIn, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.as_array, **kw)
