"""Reads that see the unit of work's new objects without flushing it first.

The ORM's autoflush writes every pending change before a read, so the read sees them. A herd's collar
alerts in one batch each read the collar's alerts and its acks on their way, and each such read
flushed what the alert before it had added: four flushes an alert, most of its cost. A read here
leaves the new objects pending and adds those of its own table that match to what the store answers;
the batch's next flush writes them all together. When the unit of work holds changed or deleted rows
of the table that the read may concern, which the store's answer would not reflect, it flushes first
as autoflush does. Which rows it may concern `matches` tells, on what never changes once a row is
stored (a collar alert's collar and type, a downlink's collar and bytes): the open alert of one
collar that another collar's alert repeated earlier in the batch does not make this read flush.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session


def read_with_new(session: Session, statement: Any, params: dict[str, Any], model: type,
                  matches: Callable[[Any], bool]) -> list[Any]:
    """The objects of model that statement selects, then the unit of work's new ones of model for which
    matches(obj) holds (they are not in the store yet); newest id first. matches must hold for every
    object statement may select, judged on columns that never change once the row is stored."""
    if any(isinstance(obj, model) and matches(obj) for obj in (*session.dirty, *session.deleted)):
        found = list(session.scalars(statement, params))  # autoflush: the store then holds every change
    else:
        with session.no_autoflush:
            found = list(session.scalars(statement, params))
    new = [obj for obj in session.new if isinstance(obj, model) and matches(obj)]
    if not new:
        return found
    return sorted({id(obj): obj for obj in (*found, *new)}.values(), key=lambda obj: obj.id, reverse=True)
