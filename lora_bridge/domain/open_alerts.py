"""The open alerts of a batch's collars as the server rules read them: plain rows, mapped only to change.

Every batch's rules look at each collar's open alerts (its type and key, its evidence, its last time)
and change few of them: on the bridge-cpu bench's herd, 2 of the 247 open alerts its rules read in a
run (a mortality's corroboration); an immobility still growing, a crossing refined, an alert closed or
repeated change theirs. Loaded as mapped objects, each cost the ORM some nine Python calls beyond its
columns' values (its instance, its state, its place in the identity map). Here they are read as result
rows, whose attributes are the alert's columns by the same names (a row cannot be changed: a rule that
set one would raise, its collar's rules rolled back and logged, not lose the change unseen), and a rule
that changes an alert takes it mapped first (`mapped`): from the identity map, or made from the row's
own values as the ORM makes an object it loads, without reading it again (a still animal's immobility
alert grows every batch: one statement a batch, a collar, saved), so the unit of work writes what the
rule changed, and only that, as before.

An alert this unit of work holds mapped already (a collar alert of the batch raised or repeated it) is
taken as that object, as the ORM's read answers with the object it holds, with its changes not flushed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session, make_transient_to_detached

from lora_bridge.store import bulk
from lora_bridge.store.row_values import new_row
from lora_bridge.store.tables import Alert

OpenAlert = Alert | Row[Any]  # an open alert as the rules hold it: a read row, or mapped once changed

_ALERTS = frozenset({Alert.__table__})


def read_open(session: Session, statement: Any, params: dict[str, Any]) -> dict[str, list[OpenAlert]]:
    """The open alerts statement reads (every column of `alerts`, in the order the rules take them), by
    collar: each as a row, or as the mapped object this session holds of it (module docstring)."""
    identity_map = session.identity_map
    by_collar: dict[str, list[OpenAlert]] = {}
    for row in bulk.read_columns(session, statement, params, _ALERTS):
        # the identity key as `orm.util.identity_key(Alert, id)` builds it, without its mapper look-up
        held = identity_map.get((Alert, (row.id,), None))
        by_collar.setdefault(row.device_id, []).append(row if held is None else held)
    return by_collar


def mapped(session: Session, alert: OpenAlert) -> Alert:
    """alert as the mapped object a rule may change: itself when mapped, the object the session holds of
    it, else one made from the row's values (what the store held when this transaction read it) and
    attached to the session as a stored row: its changes are flushed as an update of those columns."""
    if isinstance(alert, Alert):
        return alert
    if (Alert, (alert.id,), None) in session.identity_map:  # mapped since it was read
        found = session.get(Alert, alert.id)
        if found is None:  # deleted in this unit of work: anything else is a store out of step
            raise LookupError(f"open alert {alert.id} of {alert.device_id} read but not found")
        return found
    found = new_row(Alert, alert._asdict())
    make_transient_to_detached(found)  # its values are what the store holds, with no change to flush
    session.add(found)
    return found
