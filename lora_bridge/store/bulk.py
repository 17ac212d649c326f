"""Rows written in bulk: many rows of a unit of work in one statement, a row already stored skipped.

Fixes, activity summaries and battery readings are keyed by (collar, time) and never updated once
stored, so the ingest path does not load or track them: it queues their rows on the session
(`queue_row`), and they are written together as one `INSERT ... ON CONFLICT DO NOTHING` per table
(executemany, SQLite and PostgreSQL dialects), a row whose key is already stored left as it is.

Queued rows are written before the session next reads their tables or changes anything through a
statement (so a read in the same unit of work sees them, as it would with the ORM's autoflush), and
before it commits: nothing queued is left out of the transaction it was queued in, nor read around.
A caller about to open a savepoint whose rollback must not take the queued rows with it writes them
first (`write_queued`): the batch does before its rules.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

# session.info key: {table: [row, ...]} queued in this unit of work, in the order they came.
QUEUED_ROWS = "tembo_queued_rows"


def insert_ignoring_conflicts(table: Table, dialect_name: str) -> Insert:
    """`INSERT INTO table ... ON CONFLICT DO NOTHING` in the store's dialect."""
    if dialect_name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect_name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise ValueError(f"no insert-or-skip for the {dialect_name!r} dialect")


def queue_row(session: Session, table: Table, row: dict[str, Any]) -> None:
    """Queue row for table, written with the other queued rows before the session's next statement."""
    queued = session.info.setdefault(QUEUED_ROWS, {})
    queued.setdefault(table, []).append(row)


def write_queued(session: Session) -> int:
    """Write every queued row now (one executemany per table); how many rows were written or skipped."""
    queued = session.info.pop(QUEUED_ROWS, None)
    if not queued:
        return 0
    dialect = session.get_bind().dialect.name
    written = 0
    for table, rows in queued.items():
        # Same keys in every row of a table: one statement, executed many.
        session.execute(insert_ignoring_conflicts(table, dialect), rows)
        written += len(rows)
    return written


@event.listens_for(Session, "do_orm_execute")
def _before_a_statement(state: Any) -> None:
    queued = state.session.info.get(QUEUED_ROWS)
    if not queued:
        return
    if state.is_select:
        tables = {mapper.local_table for mapper in state.all_mappers}
        if tables and not tables & queued.keys():
            return  # a read of other tables (a collar, a claim): the queue goes on filling
    write_queued(state.session)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if session.info.get(QUEUED_ROWS):
        write_queued(session)
