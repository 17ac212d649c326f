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
would; a batch that knows how many new rows of some tables it may make (a herd's collar alerts and their
acks) says so first (`expect_ids`), and its first id of any of them takes all of them in one statement.
"""

from __future__ import annotations

from collections import deque
from functools import cache
from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session

from lora_bridge.store import bulk
from lora_bridge.store.transaction_info import held_until_transaction_end

# session.info key: {table name: the next id to give} in this transaction (SQLite)
NEXT_IDS = held_until_transaction_end("tembo_next_ids")
# session.info keys (PostgreSQL): {table name: how many new rows this transaction may still make}, said
# before any of them is made (`expect_ids`); {table name: ids taken from its sequence, not given yet}
EXPECTED_IDS = held_until_transaction_end("tembo_expected_ids")
IDS_AHEAD = held_until_transaction_end("tembo_ids_ahead")


def expect_ids(session: Session, counts: dict[Any, int]) -> None:
    """Say that this transaction may make up to counts[model] new rows of each model's table: on
    PostgreSQL the first of them to take its id (`take_id`) takes them all, one statement for every
    table, not one round trip a row. An id taken and never given is skipped by its sequence, as a
    rolled-back insert's is. On SQLite nothing (its ids are counted in the transaction)."""
    if session.get_bind().dialect.name == "sqlite":
        return
    expected: dict[str, int] = session.info.setdefault(EXPECTED_IDS, {})
    for model, count in counts.items():
        if count > 0:
            name = model.__table__.name
            expected[name] = expected.get(name, 0) + count


def take_id(session: Session, model: Any) -> int:
    """The id for a new row of model's table (its integer primary key `id`), taken now; the row may
    be added without a flush."""
    table = model.__table__
    if session.get_bind().dialect.name != "sqlite":
        ahead = session.info.get(IDS_AHEAD, {}).get(table.name)
        if not ahead and table.name in session.info.get(EXPECTED_IDS, ()):
            ahead = _take_expected(session)[table.name]
        if ahead:
            return ahead.popleft()
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


def _take_expected(session: Session) -> dict[str, deque[int]]:
    """PostgreSQL: the ids every expected table's rows may need (`expect_ids`), taken in one statement
    and kept for `take_id` to give out; the expectations are then met."""
    expected: dict[str, int] = session.info.pop(EXPECTED_IDS)
    names = tuple(sorted(expected))
    with session.no_autoflush:  # the sequences know nothing of pending rows, nor need to
        rows = session.execute(_next_values(names), {f"count_{n}": expected[name] for n, name in enumerate(names)}
                               | {"count": max(expected.values())}).all()
    ahead: dict[str, deque[int]] = session.info.setdefault(IDS_AHEAD, {})
    for column, name in enumerate(names):
        ahead.setdefault(name, deque()).extend(int(row[column]) for row in rows if row[column] is not None)
    return ahead


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


@cache
def _next_values(table_names: tuple[str, ...]) -> Any:
    """The next values of each table's id sequence (PostgreSQL), :count_N of the Nth table's, in one
    statement of :count rows (the largest count); a row past a table's count leaves its column NULL and
    its sequence untouched. It touches no row (`bulk.TOUCHES_NO_ROWS`)."""
    columns = ", ".join(f"CASE WHEN n <= :count_{i} THEN nextval(pg_get_serial_sequence('{name}', 'id')) END"
                        for i, name in enumerate(table_names))
    return text(f"SELECT {columns} FROM generate_series(1, :count) AS n").execution_options(
        **{bulk.TOUCHES_NO_ROWS: True}
    )
