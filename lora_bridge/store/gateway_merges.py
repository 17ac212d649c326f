"""The gateways of later copies merged into first copies stored before: a unit of work's merges in one statement.

A collar's uplink heard by several gateways reaches the bridge as several copies. The first copy's raw
row keeps every gateway that heard it (`ingest.claim`). With two MQTT workers sharing the collars, the
copies of a herd's two-gateway uplinks often meet in different batches: the first copy is stored in
one, the other merged into it in a later one, about one uplink in five. Each such merge had been an
UPDATE of its own flushed by the unit of work (its bookkeeping, and one statement each on PostgreSQL).

Here a merge into a stored row is held (`hold`): the row takes its merged values as what the store
holds, and the unit of work's held merges go into the store together (`write_held`): on PostgreSQL as
ONE `UPDATE ... FROM unnest(...)`, on SQLite as one executemany on its driver. That happens before
anything could read them or around them: an ORM statement that reads `raw_uplinks` or changes
anything, the start of a savepoint (a savepoint rolled back must not take them with it), the commit.
The rows were read FOR UPDATE (`ingest.claim_key`, `pipeline.read_batch`) and stay locked until the
commit, so copies merged by two workers still never overwrite each other's gateways.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, event, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from lora_bridge.store import bulk, driver_rows
from lora_bridge.store.database import json_text
from lora_bridge.store.tables import RawUplink
from lora_bridge.store.transaction_info import held_until_transaction_end

# session.info key: {raw row id: {column: value}} of the merges held in this transaction, not written yet
HELD = held_until_transaction_end("tembo_held_gateway_merges")
# The columns a merge sets
MERGED_COLUMNS = ("gateways", "best_rssi_dbm", "best_snr_db")
_RAW_TABLE = RawUplink.__table__
_ROW_ID = "merged_row_id"  # the bound name of the row's id (a column's name would be taken for a SET)

# SQLite: one executemany on its driver (`driver_rows`)
_SQLITE_UPDATE = update(_RAW_TABLE).where(_RAW_TABLE.c.id == bindparam(_ROW_ID))
# PostgreSQL: every merged row in one statement, each column's values bound as one array
_POSTGRES_UPDATE = text(
    "UPDATE raw_uplinks SET gateways = merged.gateways, best_rssi_dbm = merged.best_rssi_dbm, "
    "best_snr_db = merged.best_snr_db "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:gateways AS json[]), CAST(:rssi AS double precision[]), "
    "CAST(:snr AS double precision[])) AS merged(id, gateways, best_rssi_dbm, best_snr_db) "
    "WHERE raw_uplinks.id = merged.id"
)


def set_merged(session: Session, row: RawUplink, values: dict[str, Any]) -> None:
    """Set a merge's values (`MERGED_COLUMNS`) on row, the first copy: a row the store holds takes
    them as stored and the merge is held (`hold`); a row not stored yet (a batch's own, held back or
    pending) takes them as any change, inserted with it."""
    state = instance_state(row)
    if state.key is None or state.session_id != session.hash_key:
        bulk.set_values(row, values)
        return
    hold(session, row, values)


def hold(session: Session, row: RawUplink, values: dict[str, Any]) -> None:
    """Hold a merge into row (stored, of session): its values set as what the store holds (the unit of
    work has nothing to flush for it), written with the transaction's other merges (`write_held`)."""
    session.connection()  # the transaction holds its connection, for a savepoint begun before the merges are written
    for name, value in values.items():
        set_committed_value(row, name, value)
    session.info.setdefault(HELD, {})[row.id] = values  # a later merge into the same row replaces it


def write_held(session: Session, connection: Connection | None = None) -> int:
    """Write the merges held in session's transaction now, in one statement; how many rows.
    connection: the one to write on (default: the session's)."""
    held = session.info.pop(HELD, None)
    if not held:
        return 0
    if connection is None:
        connection = session.connection()
    ids = sorted(held)  # in id order, as the unit of work updated them
    if connection.dialect.name == "postgresql":
        result = connection.execute(_POSTGRES_UPDATE, {
            "ids": ids,
            "gateways": [json_text(held[i]["gateways"]) for i in ids],
            "rssi": [_float_or_none(held[i]["best_rssi_dbm"]) for i in ids],
            "snr": [_float_or_none(held[i]["best_snr_db"]) for i in ids],
        })
    else:
        result = driver_rows.execute_many(connection, _SQLITE_UPDATE, [
            {**{name: held[i][name] for name in MERGED_COLUMNS}, _ROW_ID: i} for i in ids])
    if result.rowcount not in (-1, len(ids)):
        raise StaleDataError(f"gateway merge matched {result.rowcount} of {len(ids)} raw rows")
    return len(ids)


def _float_or_none(value: Any) -> float | None:
    """A number as a float (one array of double precision binds only floats), None as it is."""
    return None if value is None else float(value)


@event.listens_for(Session, "do_orm_execute")
def _before_a_statement(state: Any) -> None:
    info = state.session.info
    if not info.get(HELD) or state.execution_options.get(bulk.TOUCHES_NO_ROWS):
        return
    if state.is_select:
        tables = bulk.tables_read(state)
        if tables and _RAW_TABLE not in tables:
            return  # a read of other tables: the held merges need not be in the store for it
    write_held(state.session)


@event.listens_for(Session, "after_transaction_create")
def _before_a_savepoint(session: Session, transaction: Any) -> None:
    # On the outer transaction's connection, before the savepoint is begun there (its first statement
    # begins it): a rollback to the savepoint keeps them, as it keeps what was flushed before it.
    if transaction.nested and session.info.get(HELD):
        write_held(session, session.get_transaction().bound_connection())


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if session.info.get(HELD):
        write_held(session)
