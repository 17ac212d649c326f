"""The gateways of later copies merged into first copies stored before: a unit of work's merges in one statement.

A collar's uplink heard by several gateways reaches the bridge as several copies. The first copy's raw
row keeps every gateway that heard it (`ingest.claim`). With two MQTT workers sharing the collars, the
copies of a herd's two-gateway uplinks often meet in different batches: the first copy is stored in
one, the other merged into it in a later one, about one uplink in five. Each such merge had been an
UPDATE of its own flushed by the unit of work (its bookkeeping, and one statement each on PostgreSQL).

Here a merge into a stored row is held (`set_merged`, `held_writes`): the row takes its merged values
as what the store holds, and the unit of work's held merges go into the store together: on PostgreSQL
as ONE `UPDATE ... FROM unnest(...)`, on SQLite as one executemany on its driver, whenever
`held_writes` says held changes go in (a read of `raw_uplinks`, any change, a savepoint's start, the
commit). The rows were read FOR UPDATE (`ingest.claim_key`, `pipeline.read_batch`) and stay locked
until the commit, so copies merged by two workers still never overwrite each other's gateways.

A row holds each gateway once and at most `GATEWAYS_KEPT` of them (`kept_gateways`): the strongest. Until
7 December every copy added its gateways with no cap, and forty copies of one uplink posted by a hostile
sender, each naming thirty gateways, made one raw row 748 KB.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from lora_bridge.store import bulk, driver_rows, held_writes
from lora_bridge.store.json_columns import json_text
from lora_bridge.store.tables import RawUplink

# The gateways a raw row keeps of one uplink: a real uplink is heard by a handful; the strongest are kept
GATEWAYS_KEPT = 16
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


def _write(connection: Connection, held: dict[int, dict[str, Any]]) -> int:
    """Write held merges ({raw row id: {column: value}}) in one statement; how many rows."""
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


# {raw row id: {column: value}} of the merges held in this transaction, not written yet
HELD = held_writes.holder("tembo_held_gateway_merges", frozenset({_RAW_TABLE}), _write)


def set_merged(session: Session, row: RawUplink, values: dict[str, Any]) -> None:
    """Set a merge's values (`MERGED_COLUMNS`) on row, the first copy: a row the store holds takes
    them as stored and the merge is held (`held_writes.holds`); any other row (a batch's own, held back
    or pending; one expired; a merge inside a savepoint) takes them as any change."""
    if not held_writes.holds(session, row):
        bulk.set_values(row, values)
        return
    for name, value in values.items():
        set_committed_value(row, name, value)  # the unit of work has nothing to flush for it
    held_writes.entries(session, HELD)[row.id] = values  # a later merge into the same row replaces it


def _float_or_none(value: Any) -> float | None:
    """A number as a float (one array of double precision binds only floats), None as it is."""
    return None if value is None else float(value)


def kept_gateways(gateways: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Each gateway of gateways once (its first reception), at most `GATEWAYS_KEPT`: beyond them the
    strongest (best RSSI, then best SNR, then first heard), in the order heard; and how many were left out."""
    if len(gateways) < 2:
        return gateways, 0
    seen: set[Any] = set()
    once = []
    for gateway in gateways:
        gateway_id = gateway.get("gateway_id")
        if gateway_id not in seen:
            seen.add(gateway_id)
            once.append(gateway)
    if len(once) <= GATEWAYS_KEPT:
        return once, 0
    strongest = sorted(range(len(once)), key=lambda i: (-_signal(once[i], "rssi_dbm"), -_signal(once[i], "snr_db"), i))
    return [once[i] for i in sorted(strongest[:GATEWAYS_KEPT])], len(once) - GATEWAYS_KEPT


def _signal(gateway: dict[str, Any], name: str) -> float:
    """A gateway's RSSI or SNR, the weakest possible when it has none."""
    value = gateway.get(name)
    return float("-inf") if value is None else float(value)
