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

A batch's unit of work holds a hundred or so collars, alerts and rows, and the read runs for many
uplinks of it: it picks the objects of model by their class, judged once for each class present rather
than once for each object, and asks `matches` only of those.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from operator import attrgetter
from typing import Any

from sqlalchemy.orm import Session


def read_with_new(session: Session, statement: Any, params: dict[str, Any], model: type,
                  matches: Callable[[Any], bool]) -> list[Any]:
    """The objects of model that statement selects, then the unit of work's new ones of model for which
    matches(obj) holds (they are not in the store yet); newest id first. matches must hold for every
    object statement may select, judged on columns that never change once the row is stored."""
    changed = _of_model((*session.dirty, *session.deleted), model)
    if changed and any(matches(obj) for obj in changed):
        found = list(session.scalars(statement, params))  # autoflush: the store then holds every change
    else:
        autoflush, session.autoflush = session.autoflush, False  # what session.no_autoflush does, in place
        try:
            found = list(session.scalars(statement, params))
        finally:
            session.autoflush = autoflush
    return with_new(session, found, model, matches)


def with_new(session: Session, found: list[Any], model: type, matches: Callable[[Any], bool]) -> list[Any]:
    """found (stored objects of model, newest id first) and the unit of work's new ones of model for which
    matches(obj) holds, each once, newest id first."""
    new = [obj for obj in _of_model(session.new, model) if matches(obj)]
    if not new:
        return found
    return sorted({id(obj): obj for obj in (*found, *new)}.values(), key=_BY_ID, reverse=True)


_BY_ID = attrgetter("id")


def _of_model(objects: Collection[Any], model: type) -> list[Any]:
    """The objects that are instances of model, in their order: isinstance asked once per class present."""
    if not objects:
        return []
    kinds = {cls for cls in {obj.__class__ for obj in objects} if issubclass(cls, model)}
    if not kinds:
        return []
    return [obj for obj in objects if obj.__class__ in kinds]
