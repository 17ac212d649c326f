"""Ids of new rows taken before the rows are written, so a change need not flush to learn its row's id.

A collar alert opens an alert, queues the ack downlink for it and records both in the alert's history
(which names the downlink's id); each needed its row's id, and the unit of work's flush that gave it
cost more than the rest of the alert. With the id taken here the rows stay pending and go in with the
batch's next flush, in one statement per table. A new collar's animal takes its id here too, so a
SQLite batch files a new herd without a flush a collar (`domain.devices.ensure_animal`).

SQLite: the table's largest id plus one, read once per transaction and counted on from there. The
store's write transactions start with BEGIN IMMEDIATE, so no other writer inserts meanwhile, and once
a transaction counts a table's ids, every new row of that table it flushes takes its id from the count
(`_counted_ids_for_the_rest`), so none meets an id SQLite chose itself. That is the id SQLite would
have given (these tables are not AUTOINCREMENT). PostgreSQL: the table's own sequence, as its default
would.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session

from lora_bridge.store import bulk
from lora_bridge.store.transaction_info import held_until_transaction_end

# session.info key: {table name: the next id to give} in this transaction (SQLite)
NEXT_IDS = held_until_transaction_end("tembo_next_ids")


def take_id(session: Session, model: Any) -> int:
    """The id for a new row of model's table (its integer primary key `id`), taken now; the row may
    be added without a flush."""
    table = model.__table__
    if session.get_bind().dialect.name != "sqlite":
        with session.no_autoflush:  # the sequence knows nothing of pending rows, nor needs to
            return int(session.scalar(_next_value(table.name)))
    counters: dict[str, int] = session.info.setdefault(NEXT_IDS, {})
    next_id = counters.get(table.name)
    if next_id is None:
        with session.no_autoflush:  # a pending row of the table took its id here: the count covers it
            next_id = int(session.scalar(_largest_id(model)) or 0) + 1
    counters[table.name] = next_id + 1
    return next_id


def id_where_inserts_go_one_by_one(session: Session, model: Any) -> int | None:
    """The id for a new row of model's table taken now on SQLite, None on PostgreSQL. SQLite's unit of
    work inserts each new row that lacks its id in a statement of its own (to read the id back), so a
    herd's alert histories went in one row a statement; with the id taken they go in one executemany.
    PostgreSQL's inserts such rows together and hands their ids back, which a sequence read a row
    would only slow."""
    if session.get_bind().dialect.name != "sqlite":
        return None
    return take_id(session, model)


@event.listens_for(Session, "before_flush")
def _counted_ids_for_the_rest(session: Session, _context: Any, _instances: Any) -> None:
    """SQLite: a new row without an id, of a table whose ids this transaction counts, takes the next."""
    counters = session.info.get(NEXT_IDS)
    if not counters:
        return
    for obj in session.new:
        table = getattr(type(obj), "__table__", None)
        if table is not None and table.name in counters and obj.id is None:
            obj.id = take_id(session, type(obj))


@cache
def _largest_id(model: Any) -> Any:
    return select(func.max(model.id)).execution_options(**{bulk.NOT_DEFERRED: True})


@cache
def _next_value(table_name: str) -> Any:
    """The next value of table's id sequence (PostgreSQL); it touches no row, so nothing held back
    goes in for it (`bulk.TOUCHES_NO_ROWS`)."""
    return text(f"SELECT nextval(pg_get_serial_sequence('{table_name}', 'id'))").execution_options(
        **{bulk.TOUCHES_NO_ROWS: True}
    )
