"""Changes a unit of work holds outside the ORM's history and writes together, and when they must go in.

A batch changes many stored rows it has loaded whole (a collar's last heard time and frame counter,
`plain_changes`; a first copy's gateways, `gateway_merges`). Through the ORM each change would pass an
attribute's setter, the row's history and the flush's comparison, and go in as a statement of its own
on PostgreSQL. A holder here keeps them in the rows' dicts (what every reader of the object sees) and
writes them together, with the values the rows hold then:

- before an ORM statement that reads one of the holder's tables, or changes anything, or reads tables
  the mappers do not name (a read sees them, as it would see the ORM's changes after its autoflush); a
  holder may ask for a read that names one of its tables anywhere, a subquery of its WHERE clause too;
- when a savepoint begins, on the outer transaction's connection before the savepoint is begun there:
  a rollback to the savepoint keeps them, as it keeps what the ORM flushed before it;
- before the transaction commits.

Inside a savepoint nothing is held (`holds`): a change there goes through the ORM, so a rollback to the
savepoint takes it back with everything else done inside. A rolled-back transaction forgets what it
held (`transaction_info`) and expires every row anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Table, event
from sqlalchemy.orm import Session
from sqlalchemy.sql.util import find_tables

from lora_bridge.store import bulk
from lora_bridge.store.transaction_info import held_until_transaction_end


@dataclass(frozen=True)
class Holder:
    """What one kind of held change is: its session.info key (forgotten with the transaction), the tables
    a read of which needs them in the store, and how they are written: (connection, the entries) -> rows."""

    key: str
    tables: frozenset[Table]
    write: Callable[[Connection, dict[Any, Any]], int]
    # True: a read needs them in when it names one of the tables anywhere, a subquery of its WHERE clause
    # too (`tables_named_anywhere`); False: when the mappers it reads name one
    named_anywhere: bool = False


_HOLDERS: list[Holder] = []


def holder(name: str, tables: frozenset[Table], write: Callable[[Connection, dict[Any, Any]], int],
           named_anywhere: bool = False) -> Holder:
    """A kind of held change, its entries under session.info[name]; its hooks (module docstring) from now on."""
    made = Holder(held_until_transaction_end(name), tables, write, named_anywhere)
    _HOLDERS.append(made)
    return made


def holds(session: Session, row: Any) -> bool:
    """Whether a change of row may be held: a row the store holds, loaded whole by this session (nothing
    expired), outside any savepoint. Else the change goes through the ORM."""
    state = row._sa_instance_state
    return not (state.key is None or state.expired_attributes or state.session_id != session.hash_key
                or session.in_nested_transaction())


def entries(session: Session, kind: Holder) -> dict[Any, Any]:
    """session's entries of kind, made (empty) on the transaction's first held change, when the
    transaction is also made to hold its connection: a savepoint begun before they are written finds
    the outer connection to write them on."""
    held = session.info.get(kind.key)
    if held is None:
        session.connection()
        held = session.info[kind.key] = {}
    return held


def write_held(session: Session, connection: Connection | None = None) -> int:
    """Write every held change of session's transaction now (default: on its connection); how many rows."""
    return sum(write_kind(session, kind, connection) for kind in _HOLDERS)


def write_kind(session: Session, kind: Holder, connection: Connection | None = None) -> int:
    """Write session's held changes of kind now, no longer held; how many rows."""
    held = session.info.pop(kind.key, None)
    if not held:
        return 0
    return kind.write(connection if connection is not None else session.connection(), held)


@event.listens_for(Session, "do_orm_execute")
def _before_a_statement(state: Any) -> None:
    info = state.session.info
    tables = None  # the tables the statement reads, looked up once, when something is held
    for kind in _HOLDERS:
        if not info.get(kind.key):
            continue
        if tables is None:
            if state.execution_options.get(bulk.TOUCHES_NO_ROWS):
                return
            tables = bulk.tables_read(state) if state.is_select else frozenset()
        # a change, or a read the mappers do not name, needs every kind in first; a read only those of its tables
        if not tables or not tables.isdisjoint(kind.tables) or (
                kind.named_anywhere and not tables_named_anywhere(state.statement).isdisjoint(kind.tables)):
            write_kind(state.session, kind)


# The tables a read names anywhere, by the statement object read (kept only while that object lives)
_NAMED_ANYWHERE: WeakKeyDictionary[Any, frozenset[Table]] = WeakKeyDictionary()


def tables_named_anywhere(statement: Any) -> frozenset[Table]:
    """Every table statement names, in its FROM clause, its columns or a subquery anywhere in it (the
    mappers of `bulk.tables_read` name only what the read loads), looked for once a statement object."""
    tables = _NAMED_ANYWHERE.get(statement)
    if tables is None:
        tables = frozenset(found._deannotate() for found in find_tables(statement, check_columns=True)
                           if isinstance(found, Table))
        _NAMED_ANYWHERE[statement] = tables
    return tables


@event.listens_for(Session, "after_transaction_create")
def _before_a_savepoint(session: Session, transaction: Any) -> None:
    # the savepoint is begun on the connection at its first statement: written before that, on the outer
    # transaction's connection, they stay when the savepoint is rolled back
    if transaction.nested and any(session.info.get(kind.key) for kind in _HOLDERS):
        write_held(session, session.get_transaction().bound_connection())


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if any(session.info.get(kind.key) for kind in _HOLDERS):
        write_held(session)
