"""Column changes of a batch's loaded collars kept beside the ORM's history, written by one executemany.

Every uplink changes its collar's row: last heard, frame counter, RSSI and SNR, and a status's battery,
versions and flags. Set through the ORM (`row_values.set_columns`), each changed column passed through
the attribute's setter and the row's history, and the flush then compared each column with its loaded
value before `changed_rows` wrote it: some twenty Python calls an uplink for values the batch already
had in hand. Here such a change goes into the row's dict (what every reader of the object sees, the
rules' reads of the identity map included) and its column names are noted on the session; the noted
rows are written by one executemany per run of rows changing the same columns, in primary-key order
(two workers on PostgreSQL lock a batch's collar rows in one order, as `changed_rows` writes them),
with the values the rows hold then:

- when the batch has applied its bodies (`write_plain_changes`, before its rules' savepoints);
- before an ORM statement that reads their table or changes anything (a read sees them, as it would
  see the ORM's changes after its autoflush);
- before the transaction commits.

The ORM does not know these columns changed: the row stays clean for its flush, and a savepoint's
rollback does not expire it for them. So the changes are made only to rows stored and loaded whole
(nothing expired); any other row (one this unit of work created, one expired) takes the change
through the ORM as before (`set_columns`). Forgotten with the transaction (`transaction_info`): a
rolled-back transaction expires every row anyway.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from lora_bridge.store import bulk, changed_rows, driver_rows
from lora_bridge.store.row_values import set_columns
from lora_bridge.store.transaction_info import held_until_transaction_end

# session.info key: {row: set of its changed column names} noted and not written yet
PLAIN_CHANGES = held_until_transaction_end("tembo_plain_changes")


def change_columns(session: Session, row: Any, changes: dict[str, Any]) -> None:
    """row.<name> = value for each name, value of changes (plain columns named as their attributes, not
    the primary key): kept in the row's dict and written with the batch's other such changes (module
    docstring) when row is a stored row loaded whole; else set through the ORM (`set_columns`)."""
    state = row._sa_instance_state
    if state.key is None or state.expired_attributes or state.session_id != session.hash_key:
        set_columns(row, changes)
        return
    row.__dict__.update(changes)
    noted = session.info.get(PLAIN_CHANGES)
    if noted is None:
        noted = session.info[PLAIN_CHANGES] = {}
    names = noted.get(row)
    if names is None:
        noted[row] = set(changes)
    else:
        names.update(changes)


def write_plain_changes(session: Session) -> int:
    """Write the noted changes now (module docstring); how many rows."""
    noted = session.info.pop(PLAIN_CHANGES, None)
    if not noted:
        return 0
    by_table: dict[Table, list[Any]] = {}
    for row in noted:
        by_table.setdefault(type(row).__table__, []).append(row)
    connection = session.connection()
    multi_rowcount = connection.dialect.supports_sane_multi_rowcount
    for table, rows in by_table.items():
        key = _key_of(table)
        # in primary-key order, consecutive rows changing the same columns in one executemany
        changed = sorted(((row.__dict__[key], row.__dict__, tuple(sorted(noted[row]))) for row in rows),
                         key=lambda item: item[0])
        for names, run in groupby(changed, key=lambda item: item[2]):
            # the UPDATE `changed_rows` writes the unit of work's changed rows with, built once a table
            params = [{**{name: values[name] for name in names}, changed_rows._KEY: row_key}
                      for row_key, values, _ in run]
            result = driver_rows.execute_many(connection, changed_rows._update_of(table), params)
            if multi_rowcount and result.rowcount not in (-1, len(params)):
                raise StaleDataError(f"UPDATE of {table.name} matched {result.rowcount} of {len(params)} rows")
    # registered with the transaction as the unit of work registers what it writes: a savepoint rolled
    # back after this expires them, and they are read again as the store holds them
    session._register_altered([row._sa_instance_state for row in noted])
    return len(noted)


_KEYS: dict[Table, str] = {}


def _key_of(table: Table) -> str:
    """The name of table's one-column primary key (its mapped attribute's)."""
    key = _KEYS.get(table)
    if key is None:
        (column,) = table.primary_key.columns
        key = _KEYS[table] = column.key
    return key


@event.listens_for(Session, "do_orm_execute")
def _before_a_statement(state: Any) -> None:
    noted = state.session.info.get(PLAIN_CHANGES)
    if not noted or state.execution_options.get(bulk.TOUCHES_NO_ROWS):
        return
    # the tables an ORM read names, as `bulk` works them out (once a statement)
    if not state.is_select or not bulk._tables_read(state).isdisjoint({type(row).__table__ for row in noted}):
        write_plain_changes(state.session)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if session.info.get(PLAIN_CHANGES):
        write_plain_changes(session)

