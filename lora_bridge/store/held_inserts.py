"""New rows of a history table held and inserted together, past the unit of work.

An alert's history (`AlertEvent`: raised, repeated, ack queued) gains a row or two with every collar
alert, and nothing in the transaction changes such a row once made. Added to the session, each cost
the unit of work some hundred Python calls: its add and cascade, its insert's parameters gathered
column by column at the flush, its registration as stored afterwards. A herd's collar alerts made
their batches the dearest of all. Here a new row is a plain dict kept on the session and the rows go
in with one executemany (`driver_rows`), as `held_writes` says held changes go in:

- before an ORM statement that changes anything or reads the table, wherever it names it (a history
  row may be read through a subquery the mappers do not name, as the offline pass's look for escalated
  alerts does), as the ORM's autoflush would have written it;
- when a savepoint begins, on the outer transaction's connection: a rollback to it keeps them, as it
  keeps what the ORM flushed before it;
- before the transaction commits.

A row is held only outside a savepoint (inside one it goes through the ORM, so a rollback takes it back
with the rest), and only when the row it refers to is in the store by then: already stored, or in a
transaction that checks foreign keys at its commit (a SQLite batch, `bulk.defer_foreign_keys`), since
a held row may go in before the unit of work flushes the new row it names. Else the caller adds an ORM
object as before.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from sqlalchemy import Connection, Table, insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from lora_bridge.store import bulk, driver_rows, held_writes


def may_hold(session: Session, referred: Any) -> bool:
    """Whether a new row referring to the mapped object `referred` may be held (module docstring):
    outside any savepoint, with referred stored already or foreign keys checked at the commit."""
    if session.in_nested_transaction():
        return False
    return referred._sa_instance_state.key is not None or bool(session.info.get(bulk.FOREIGN_KEYS_DEFERRED))


def inserts_of(table: Table) -> held_writes.Holder:
    """The holder of table's new rows (one a table): written before a read naming the table anywhere,
    a change, a savepoint, the commit (module docstring)."""
    return held_writes.holder(f"tembo_held_inserts_{table.name}", frozenset({table}), _writer(table),
                              named_anywhere=True)


def hold(session: Session, kind: held_writes.Holder, row: dict[str, Any]) -> None:
    """Keep row (its columns' values by key) to be inserted with the transaction's other rows of kind."""
    held = held_writes.entries(session, kind)
    held[len(held)] = row


def _writer(table: Table) -> Callable[[Connection, dict[Any, Any]], int]:
    def write(connection: Connection, held: dict[Any, Any]) -> int:
        """Insert the held rows in the order they came, one executemany a run of rows with the same keys."""
        return sum(count for count, _ in driver_rows.execute_runs(connection, _plain_insert(table),
                                                                  list(held.values())))

    return write


@cache
def _plain_insert(table: Table) -> Insert:
    """The insert of table's held rows, built once (`driver_rows` compiles it once a store)."""
    return insert(table)
