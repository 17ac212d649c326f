"""psycopg's cursor for the bridge's store: a result's column descriptions made only when read.

psycopg makes `cursor.description` anew at each read, a `Column` for every column of the result (its
name decoded, its type looked up: some eight Python calls a column). SQLAlchemy reads it after every
statement that returns rows, but a statement it compiled before (every statement of a running bridge's
batches) keeps the result's shape from its first run and only asks whether there is one: on
PostgreSQL, a batch of one uplink made some 150 such columns for nobody, a sixth of its Python calls.
Here the description is a sequence that knows its length at once and makes its columns, the same
`Column` objects as psycopg's, the first time anything reads one of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import psycopg
from psycopg import Column
from psycopg.pq import ExecStatus

# The results whose description psycopg gives even when they have no column (`SELECT ;`).
_TUPLES = frozenset({ExecStatus.TUPLES_OK, ExecStatus.SINGLE_TUPLE, ExecStatus.TUPLES_CHUNK})


class ColumnsOnRead(Sequence[Column]):
    """A result's column descriptions (psycopg's `Column`), made the first time one is read."""

    __slots__ = ("_columns", "_count", "_cursor", "_result")

    def __init__(self, cursor: psycopg.Cursor[Any], result: Any, count: int) -> None:
        self._cursor = cursor
        self._result = result
        self._count = count
        self._columns: list[Column] | None = None

    def _made(self) -> list[Column]:
        if self._columns is None:
            if self._cursor.pgresult is not self._result:
                # psycopg reads the names and types from the cursor's current result: made now, they
                # would describe another statement's
                raise RuntimeError("a result's columns were read after its cursor had moved on to another result")
            self._columns = [Column(self._cursor, index) for index in range(self._count)]
        return self._columns

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Column: ...

    @overload
    def __getitem__(self, index: slice) -> list[Column]: ...

    def __getitem__(self, index: int | slice) -> Column | list[Column]:
        return self._made()[index]

    def __iter__(self) -> Iterator[Column]:
        return iter(self._made())

    def __repr__(self) -> str:
        return repr(self._made())


class ColumnsOnReadCursor(psycopg.Cursor[Any]):
    """psycopg's client-side cursor whose `description` makes its columns only when they are read."""

    @property
    def description(self) -> ColumnsOnRead | None:  # type: ignore[override]
        """The current result's columns, None when it returned no rows (as psycopg's)."""
        result = self.pgresult
        if result and (result.nfields or result.status in _TUPLES):
            return ColumnsOnRead(self, result, result.nfields)
        return None
