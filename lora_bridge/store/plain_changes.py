"""Column changes of a batch's loaded collars kept beside the ORM's history, written by one executemany.

Every uplink changes its collar's row: last heard, frame counter, RSSI and SNR, and a status's battery,
versions and flags. Set through the ORM (`row_values.set_columns`), each changed column passed through
the attribute's setter and the row's history, and the flush then compared each column with its loaded
value before `changed_rows` wrote it: some twenty Python calls an uplink for values the batch already
had in hand. Here such a change goes into the row's dict (what every reader of the object sees, the
rules' reads of the identity map included) and its column names are noted; the noted rows are written
(`changed_rows.update_in_key_order`: one executemany per run of rows changing the same columns, in
primary-key order, as `changed_rows` writes them, so two workers on PostgreSQL lock a batch's collar
rows in one order) with the values the rows hold then: when the batch has applied its bodies
(`write_plain_changes`, before its rules' savepoints), and whenever `held_writes` says held changes
go in (a read of the collars' table, any change, a savepoint's start, the commit).

The ORM does not know these columns changed: the row stays clean for its flush. So a change is held
only for a collar the store holds, loaded whole, outside any savepoint (`held_writes.holds`); any
other (a collar this unit of work created, one expired, a change inside a savepoint) takes the change
through the ORM as before (`set_columns`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from lora_bridge.store import held_writes
from lora_bridge.store.changed_rows import update_in_key_order
from lora_bridge.store.row_values import set_columns
from lora_bridge.store.tables import Device

_COLLARS = Device.__table__


def _write(connection: Connection, noted: dict[Any, set[str]]) -> int:
    """Write the noted rows' changed columns with the values they hold now; how many rows."""
    update_in_key_order(connection, _COLLARS, [
        (row.__dict__["device_id"], {name: row.__dict__[name] for name in names}) for row, names in noted.items()])
    return len(noted)


# {collar row: the names of its columns changed} noted and not written yet
PLAIN_CHANGES = held_writes.holder("tembo_plain_changes", frozenset({_COLLARS}), _write)


def change_columns(session: Session, row: Device, changes: dict[str, Any]) -> None:
    """row.<name> = value for each name, value of changes (plain columns of a collar named as their
    attributes, not its id): held and written with the batch's other such changes (module docstring)
    when `held_writes.holds` allows, else set through the ORM (`set_columns`)."""
    if not held_writes.holds(session, row):
        set_columns(row, changes)
        return
    row.__dict__.update(changes)
    noted = held_writes.entries(session, PLAIN_CHANGES)
    names = noted.get(row)
    if names is None:
        noted[row] = set(changes)
    else:
        names.update(changes)


def write_plain_changes(session: Session) -> int:
    """Write the held collar changes now (module docstring); how many rows."""
    return held_writes.write_kind(session, PLAIN_CHANGES)
