"""One read of several collars in one statement, each collar's part bound by its own parameters.

A read that takes the newest rows of one collar, or those before a time of its own, cannot be asked for
several collars with one IN list: each needs its own bounds and its own LIMIT. Such reads of a batch's
collars go together as a UNION ALL of PARTS parts (each the collar's own read as a subquery, its
parameters suffixed with the part's number), PARTS collars a statement, fewer padded with a part that
asks for nothing. One size, so each statement is compiled once: compiling grows with the parts (about
half a millisecond a part), and a size first met mid-batch cost that batch its compilation. On SQLite
a connection's read goes to the driver (`store.driver_reads`), bound and read as SQLAlchemy would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, union_all
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from lora_bridge.store.driver_reads import driver_read

PARTS = 8


def union_of_parts(part: Callable[[int], Select], name: str) -> Any:
    """The UNION ALL of part(0) .. part(PARTS - 1), each a select whose bound parameters end in `_i`
    (its number), wrapped as a subquery so it may keep its ORDER BY and LIMIT."""
    return union_all(*(select(*part(i).subquery(f"{name}_{i}").c) for i in range(PARTS)))


def read_in_parts(reader: Session | Connection, statement: Any, asked: list[dict[str, Any]],
                  padding: dict[str, Any]) -> list[Any]:
    """The rows of statement (`union_of_parts`) for every part asked (each the parameters of one part,
    named without their suffix), PARTS a statement, the last one padded with padding (parameters that
    select nothing)."""
    at_driver = driver_read(reader.dialect, statement) if isinstance(reader, Connection) else None
    rows: list[Any] = []
    for start in range(0, len(asked), PARTS):
        chunk = asked[start:start + PARTS]
        chunk += [padding] * (PARTS - len(chunk))
        params = {f"{key}_{i}": value for i, part in enumerate(chunk) for key, value in part.items()}
        rows.extend(reader.execute(statement, params).all() if at_driver is None else at_driver.rows(reader, params))
    return rows
