"""Several mapped columns of one stored row read at once, and a new row made or changed, without the
ORM's call per attribute."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from operator import attrgetter, itemgetter
from typing import Any, TypeVar

from sqlalchemy.orm.instrumentation import manager_of_class

Row = TypeVar("Row")


class ColumnReads:
    """Reads the named columns of a row as one tuple, the values its mapped attributes give.

    A loaded row holds its columns' values (with this unit of work's changes) in its instance dict,
    which SQLAlchemy's instrumented attribute reads too: read from there, the columns cost no Python
    call each (a collar's row is read some 45 times an uplink). A column the row does not hold (an
    expired row after a commit, an unset column of a row just made) is read through the attributes,
    which load or default it as ever."""

    __slots__ = ("_from_dict", "_from_row")

    def __init__(self, *names: str) -> None:
        if len(names) < 2:
            raise ValueError("ColumnReads reads two columns or more")
        self._from_dict = itemgetter(*names)
        self._from_row = attrgetter(*names)

    def __call__(self, row: Any) -> tuple[Any, ...]:
        """The named columns' values of row, in the order named."""
        try:
            return self._from_dict(row.__dict__)
        except KeyError:
            return self._from_row(row)


def set_columns(row: Any, changes: dict[str, Any]) -> None:
    """row.<name> = value for each name, value of changes, as each mapped attribute sets it: the same
    setter (the old value kept in the row's history for the flush to write, the attribute's events
    fired), called straight from the row's state without the attribute's own call around it (a collar's
    row takes several changes an uplink)."""
    state = row._sa_instance_state
    attributes = state.manager  # the class's attributes by name (a dict)
    values = row.__dict__
    for name, value in changes.items():
        attributes[name].impl.set(state, values, value, None)


def new_row(cls: type[Row], values: dict[str, Any]) -> Row:
    """A new object of the mapped class cls holding values, as `cls(**values)` makes it for a session to
    add: its instance state (what the ORM gives a row it loads), the values in its dict, from which the
    flush inserts a new object's columns. Without the constructor's steps (its init event, then a set
    event a value): an alert, its history's steps and its ack each took some twenty calls so. For classes
    without relationships (nothing to link) and values of their columns only."""
    row = row_maker(cls)()
    row.__dict__.update(values)
    return row


@cache
def row_maker(cls: type[Row]) -> Callable[[], Row]:
    """What makes a new, empty object of the mapped class cls as the ORM makes one it loads (its class
    manager's `new_instance`: the instance state only, no constructor's steps), looked up once a class."""
    return manager_of_class(cls).new_instance  # type: ignore[no-any-return]
