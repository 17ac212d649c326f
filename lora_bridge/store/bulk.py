"""Rows written in bulk: many rows of a unit of work in one statement, a row already stored skipped.

Fixes, activity summaries and battery readings are keyed by (collar, time) and never updated once
stored, so the ingest path does not load or track them: it queues their rows on the session
(`queue_row`), and they are written together as one `INSERT ... ON CONFLICT DO NOTHING` per table
(executemany, SQLite and PostgreSQL dialects), a row whose key is already stored left as it is.

Queued rows are written before the session next reads their tables or changes anything through a
statement (so a read in the same unit of work sees them, as it would with the ORM's autoflush; a read
on the session's connection adds them itself from `queued_rows`, as `newest_of_collar` does for a
collar alert's evidence), and before it commits: nothing queued is left out of the transaction it
was queued in, nor read around.
A caller about to open a savepoint whose rollback must not take the queued rows with it writes them
first (`write_queued`): the batch does before its rules.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from functools import cache
from operator import itemgetter
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Table, bindparam, event, false, insert, inspect, literal_column, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.sql.dml import Insert

from lora_bridge.store import driver_reads, driver_rows, in_lists, parts
from lora_bridge.store.transaction_info import held_until_transaction_end
from lora_bridge.store.utc import as_utc

# session.info keys: {table: [row, ...]} queued in this unit of work, in the order they came; and
# new ORM objects held back until the store needs them (`defer_add`).
QUEUED_ROWS = "tembo_queued_rows"
DEFERRED_OBJECTS = "tembo_deferred_objects"
DEFERRED_TABLES = "tembo_deferred_tables"  # the tables of the objects held back
# Execution option of a read that must not see the objects held back (it looks for rows stored
# before this unit of work: a stored copy's dedup key), so need not add them.
NOT_DEFERRED = "tembo_not_deferred"
FOREIGN_KEYS_DEFERRED = "tembo_foreign_keys_deferred"
# session.info keys: how many times this session wrote queued rows; the newest rows of collars read
# ahead ({(model, columns, collar): (how many, that count then, rows newest first)}, `read_newest_ahead`)
QUEUED_WRITES = "tembo_queued_writes"
NEWEST_AHEAD = held_until_transaction_end("tembo_newest_ahead")
# Execution option of a statement that touches no row of any table (an advisory lock, a sequence's
# next values): the queued rows and the objects held back stay back.
TOUCHES_NO_ROWS = "tembo_touches_no_rows"


def insert_ignoring_conflicts(table: Table, dialect_name: str) -> Insert:
    """`INSERT INTO table ... ON CONFLICT DO NOTHING` in the store's dialect."""
    if dialect_name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect_name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise ValueError(f"no insert-or-skip for the {dialect_name!r} dialect")


def defer_add(session: Session, objects: list[Any]) -> None:
    """Add objects (new rows with their ids set) to session only when something needs them in the
    store: a read of their table, the queued rows being written, the commit, and a flush unless the
    transaction checks foreign keys at its commit (`defer_foreign_keys`). Until then they are changed
    as plain objects, so each is inserted once, in its final state."""
    session.info.setdefault(DEFERRED_OBJECTS, []).extend(objects)
    # a set comprehension, not a generator: each of a generator's items is a call (a batch's every raw row)
    session.info.setdefault(DEFERRED_TABLES, set()).update({type(obj).__table__ for obj in objects})


def set_values(obj: Any, values: dict[str, Any]) -> None:
    """Set mapped attributes of obj. An object no session holds yet (a batch's raw row that `defer_add`
    holds back, or one just made) takes them as plain values in its dict, which is what its insert
    reads (`add_deferred`, or the unit of work's insert once added), without the ORM's bookkeeping of
    each set; an object a session holds takes them through its instrumented attributes, so the
    changes are flushed."""
    state = instance_state(obj)
    if state.key is None and state.session_id is None:
        obj.__dict__.update(values)
        return
    for key, value in values.items():
        setattr(obj, key, value)


def _take_deferred(session: Session) -> list[Any] | None:
    """The objects held back (None when none), no longer held: they and their tables leave together."""
    session.info.pop(DEFERRED_TABLES, None)
    return session.info.pop(DEFERRED_OBJECTS, None)


def defer_foreign_keys(session: Session) -> None:
    """SQLite: check this transaction's foreign keys at its commit, not statement by statement (the
    rows `defer_add` holds back may be referred to before they are written)."""
    # straight on the session's sqlite3 connection, past SQLAlchemy's execution (its events, its
    # result, about 60 Python calls a batch): nothing is queued nor held back yet when a batch begins,
    # and a pragma touches no row; session.connection() first, so the transaction has begun
    session.connection().connection.driver_connection.execute("PRAGMA defer_foreign_keys = ON")
    session.info[FOREIGN_KEYS_DEFERRED] = True


def add_deferred(session: Session, attach: bool = True) -> None:
    """Write the objects `defer_add` held back, now: one Core insert per table, each object then
    attached to the session as a stored row (later changes to it are flushed as updates, as ever),
    without the unit of work's per-object insert. When the transaction checks foreign keys statement
    by statement, the session's pending objects are flushed first (what the held-back rows may refer
    to; a flush of a row that refers to them takes them along, `_before_flush`). attach False: the
    objects are left out of the session, for a caller that changes none of them afterwards (a batch
    whose bodies are all applied): attaching a batch's raw rows cost more than inserting them, and a
    read of their table in the transaction loads what the store holds. Rows of a class with
    relationships (a new herd's animals) are attached whatever attach says, as the unit of work's
    insert left them: the batch's rules judge the animals it holds (`rules_engine._collars_held`)."""
    if not session.info.get(DEFERRED_OBJECTS):
        return
    if not session.info.get(FOREIGN_KEYS_DEFERRED):
        session.flush()
    deferred = _take_deferred(session)
    if not deferred:
        return
    by_class: dict[type, list[Any]] = {}
    for obj in deferred:
        by_class.setdefault(type(obj), []).append(obj)
    connection = session.connection()
    for cls, objects in by_class.items():
        mapper = inspect(cls)
        if _links_any(mapper, objects):  # keep the unit of work for rows it must link
            session.add_all(objects)
            session.flush()
            continue
        attributes, column_of, read_row, fixed_defaults = _insert_shape(mapper)
        rows = []
        for obj in objects:
            values = obj.__dict__  # a new object no session holds: its dict is its state (`set_values`)
            for key in attributes - values.keys():  # what the ORM's flush would have filled in
                values[key] = fixed_defaults[key] if key in fixed_defaults else _python_default(column_of[key])
            rows.append(read_row(values))
        driver_rows.execute_many(connection, _plain_insert(mapper.local_table), rows)
        if not attach and not mapper.relationships:  # a mapped row others may link to (an animal) is held as ever
            continue
        for obj in objects:
            make_transient_to_detached(obj)  # its attributes are now what the store holds
            session.add(obj)


def _links_any(mapper: Any, objects: list[Any]) -> bool:
    """Whether any of objects was given a related object (a relationship's attribute set), which only
    the unit of work's insert links; a row given its foreign keys as plain columns (a new herd's
    placeholder animal, `devices.ensure_animal`) goes in by the Core insert like any other."""
    names = [relationship.key for relationship in mapper.relationships]
    return bool(names) and any(name in obj.__dict__ for obj in objects for name in names)


@cache
def _plain_insert(table: Table) -> Insert:
    """`add_deferred`'s insert of table, built once (`driver_rows` compiles it once a store)."""
    return insert(table)


@cache
def _insert_shape(mapper: Any) -> tuple[frozenset[str], dict[str, Any], Callable[[dict[str, Any]], dict[str, Any]],
                                        dict[str, Any]]:
    """What `add_deferred` reads of a mapped class: its column attributes, the column of each, a
    function from an object's values to the row its insert binds (column key -> value), in C
    (`operator.itemgetter`) rather than a Python loop over every column of every object, and the
    defaults that are no call (none, or a scalar: `_python_default` of the column, the same for every
    row of the class), by attribute: a batch's every raw row leaves some of its columns to them."""
    pairs = [(prop.key, prop.columns[0]) for prop in mapper.column_attrs]
    column_of = dict(pairs)
    fixed_defaults = {key: _python_default(column) for key, column in pairs
                      if column.default is None or column.default.is_scalar}
    column_keys = tuple(column.key for _, column in pairs)
    if len(pairs) == 1:
        (key, column), = pairs

        def read_one(values: dict[str, Any]) -> dict[str, Any]:
            return {column.key: values[key]}

        return frozenset(column_of), column_of, read_one, fixed_defaults
    getter = itemgetter(*(key for key, _ in pairs))

    def read_row(values: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(column_keys, getter(values), strict=True))

    return frozenset(column_of), column_of, read_row, fixed_defaults


def _python_default(column: Any) -> Any:
    default = column.default
    if default is None:
        return None
    if default.is_scalar:
        return default.arg
    if default.is_callable:
        return default.arg(None)
    raise ValueError(f"column {column.key} has a default the ingest path cannot compute ({default!r})")


def queue_row(session: Session, table: Table, row: dict[str, Any]) -> None:
    """Queue row for table, written with the other queued rows before the session's next statement."""
    # every fix, summary and reading of a batch passes here: the unit of work's rows by table made once
    # (a list a table as its first row comes), not a new dict and list handed to two setdefaults a row
    info = session.info
    try:
        queued = info[QUEUED_ROWS]
    except KeyError:
        queued = info[QUEUED_ROWS] = defaultdict(list)
    queued[table].append(row)


def queued_rows(session: Session, table: Table) -> list[dict[str, Any]]:
    """The rows of table queued in this unit of work and not written yet, in the order they came."""
    return list(session.info.get(QUEUED_ROWS, {}).get(table, ()))


def newest_of_collar(session: Session, model: Any, device_id: str, columns: tuple[str, ...],
                     limit: int) -> list[tuple[Any, ...]]:
    """The collar's newest `limit` rows of a mapped class keyed by (device_id, time), newest first,
    each the values of columns (time first): what a read of the store would see now, the rows this
    unit of work queued included, without writing those first. A queued row at a time already stored
    is left out, as its insert skips it. The stored rows come from `read_newest_ahead` when it read
    them for this collar and no queued row was written since."""
    if limit <= 0:
        return []
    ahead = session.info.get(NEWEST_AHEAD, {}).get((model, columns, device_id))
    if ahead is not None and ahead[0] >= limit and ahead[1] == session.info.get(QUEUED_WRITES, 0):
        stored: list[Any] = ahead[2][:limit]
    else:
        # On the session's connection, past the ORM's execution (its autoflush, its events): these
        # tables are written only as queued rows, so no pending object holds one, and the queued
        # ones are added below. A collar alert reads its evidence so twice; the ORM's way cost twice.
        stored = session.connection().execute(_newest_of_collar_read(model, columns),
                                              {"device_id": device_id, "most": limit}).all()
    rows = {row[0]: tuple(row) for row in stored}
    for queued in queued_rows(session, model.__table__):
        time = as_utc(queued["time"])
        if queued["device_id"] == device_id and time not in rows:
            rows[time] = (time, *[queued[name] for name in columns[1:]])  # a list: not a call an item
    return sorted(rows.values(), key=_FIRST, reverse=True)[:limit]


_FIRST = itemgetter(0)  # a row's time, its first value: in C, not a call of a lambda a row


def newest_of_wearer(session: Session, model: Any, device_id: str, animal_id: int, until: datetime,
                     columns: tuple[str, ...], limit: int) -> list[tuple[Any, ...]]:
    """As `newest_of_collar`, only the rows of the collar filed under animal_id and dated at or before
    until: a previous wearer's backlog alert's evidence (her fixes, her behaviour before it), none of
    the animal wearing the collar now. Read for such an alert alone, so not from a read ahead."""
    if limit <= 0:
        return []
    stored = session.connection().execute(
        select(*(getattr(model, name) for name in columns))
        .where(model.device_id == device_id, model.animal_id == animal_id, model.time <= until)
        .order_by(model.time.desc())
        .limit(limit)
    ).all()
    rows = {as_utc(row[0]): (as_utc(row[0]), *row[1:]) for row in stored}
    for queued in queued_rows(session, model.__table__):
        time = as_utc(queued["time"])
        if (queued["device_id"], queued.get("animal_id")) == (device_id, animal_id) and time <= until \
                and time not in rows:
            rows[time] = (time, *(queued[name] for name in columns[1:]))
    return sorted(rows.values(), key=lambda row: row[0], reverse=True)[:limit]


def read_newest_ahead(session: Session, model: Any, device_ids: list[str], columns: tuple[str, ...],
                      limit: int) -> None:
    """Read now the stored newest `limit` rows of model (as `newest_of_collar` reads them) of every
    collar of device_ids, several collars a statement (`store.parts`), for `newest_of_collar` to take
    instead of a read each: a batch's collar alerts each read their collar's last fixes and
    behaviour. Kept until a queued row is written (the store then holds rows this read did not see)
    or the transaction ends."""
    if limit <= 0 or not device_ids:
        return
    asked = [{"device": device_id, "most": limit} for device_id in device_ids]
    found: dict[str, list[Any]] = {device_id: [] for device_id in device_ids}
    for device_id, *values in parts.read_in_parts(session.connection(), _newest_of_collars_read(model, columns),
                                                  asked, {"device": "", "most": 0}):
        found[device_id].append(tuple(values))
    ahead = session.info.setdefault(NEWEST_AHEAD, {})
    written = session.info.get(QUEUED_WRITES, 0)
    for device_id, rows in found.items():
        ahead[(model, columns, device_id)] = (limit, written, sorted(rows, key=lambda row: row[0], reverse=True))


def connection_to_read(session: Session, tables: frozenset[Table]) -> Connection:
    """The session's connection, for a read of plain columns of `tables` past the ORM's execution (its
    result rows, its autoflush), after what the ORM's hook would write first for such a read
    (`_before_a_statement`): the rows of those tables held back or queued. Only for tables no ORM
    object of a unit of work holds (written only as queued rows: fixes, battery readings), whose
    rows the unit of work's flush therefore never writes."""
    info = session.info
    if info.get(DEFERRED_OBJECTS) and tables & info.get(DEFERRED_TABLES, set()):
        add_deferred(session)
    queued = info.get(QUEUED_ROWS)
    if queued and tables & queued.keys():
        write_queued(session, deferred=False)
    return session.connection()


def read_columns(session: Session, statement: Any, params: dict[str, Any], tables: frozenset[Table]) -> list[Any]:
    """The rows of statement, a read of plain columns of `tables`, as the ORM's execution would answer
    them, on `connection_to_read`: a batch's rules read every collar's track so, a thousand rows a
    batch, and the ORM's result rows cost more than the read."""
    return connection_to_read(session, tables).execute(statement, params).all()


def read_column_tuples(session: Session, statement: Any, params: dict[str, Any], tables: frozenset[Table]) -> list[Any]:
    """What `read_columns` reads, each row a plain sequence of its values (no attribute by name): on
    SQLite at the driver (`driver_reads.rows_of`), a time column's texts read in one step. The rules'
    track reads take a thousand fixes a batch so."""
    return driver_reads.rows_of(connection_to_read(session, tables), statement, params)


# A read of a batch's values (`column IN (...)`). On SQLite: one statement per count bucket, its
# values bound one by one, padded to the bucket's size with the list's last value (the same set: a
# value twice in an IN list reads nothing more). An expanding parameter (`bindparam(..., expanding=True)`)
# renders the statement's IN list again at every execution, a few Python calls per value; a bucket's
# statement is compiled once and its values only bound. Few buckets, the smallest holding a batch of
# the bench's size: each is compiled once a process (the applier's warm-up compiles the smallest),
# which costs more than a few thousand values rendered. On PostgreSQL: `column = ANY(:name)`, the
# values bound as one array (`in_lists`): psycopg keeps its conversion of a statement to its own form
# only for statements of at most 50 parameters, so a bucket's read was converted again at each
# execution, some fifty Python calls per uplink in the MQTT workers' and the applier's batches.
IN_LIST_SIZES = (64, 256, 1024)


def in_list_size(count: int) -> int:
    """The size of the bucket holding count values (0 for none): the smallest of `IN_LIST_SIZES` not
    below it, past the largest the next multiple of it (a batch's values are bounded by its size)."""
    if not count:
        return 0
    for size in IN_LIST_SIZES:
        if count <= size:
            return size
    largest = IN_LIST_SIZES[-1]
    return -(-count // largest) * largest


def fixed_texts(texts: tuple[str, ...]) -> list[Any]:
    """A fixed list of texts (states) as SQL literals, rendered with the statement's cached compilation:
    an `in_` of plain values is an expanding parameter, its list rendered again at every execution."""
    return [literal_column("'" + text.replace("'", "''") + "'") for text in texts]


def in_list(column: Any, name: str, size: int) -> Any:
    """column IN the values of `in_list_values(name, values, size)`: on SQLite IN (:name_0, ...,
    :name_<size - 1>), each bound with column's type, on PostgreSQL = ANY(:name), an array of column's
    type (`in_lists.ValuesIn`); nothing is in an empty list (`false()`, as SQLAlchemy reads an empty IN)."""
    if not size:
        return false()
    return in_lists.ValuesIn(column, name, in_list_names(name, size))


@cache
def in_list_names(name: str, size: int) -> tuple[str, ...]:
    """The names of `in_list(column, name, size)`'s parameters on SQLite, in order."""
    return tuple(f"{name}_{i}" for i in range(size))


def in_list_values(name: str, values: list[Any], size: int) -> dict[str, Any]:
    """The parameters of `in_list(column, name, size)` for values (at most size of them): the padded
    ones SQLite's statement binds and the array PostgreSQL's binds (each statement reads its own)."""
    padded = dict(zip(in_list_names(name, size), values + values[-1:] * (size - len(values)), strict=True))
    padded[name] = values
    return padded


@cache
def _newest_of_collars_read(model: Any, columns: tuple[str, ...]) -> Any:
    """`_newest_of_collar_read` of several collars in one statement (`store.parts`), each row led by
    its collar."""
    return parts.union_of_parts(
        lambda i: select(model.device_id, *(getattr(model, name) for name in columns))
        .where(model.device_id == bindparam(f"device_{i}"))
        .order_by(model.time.desc())
        .limit(bindparam(f"most_{i}")),
        "newest",
    )


@cache
def _newest_of_collar_read(model: Any, columns: tuple[str, ...]) -> Any:
    """newest_of_collar's read of model's columns, built once (the collar and the count bound at each
    call): every collar alert reads its evidence so, and building a statement cost more than running
    its cached compilation."""
    return (
        select(*(getattr(model, name) for name in columns))
        .where(model.device_id == bindparam("device_id"))
        .order_by(model.time.desc())
        .limit(bindparam("most"))
    )


# Per table: what must happen in the unit of work just before its queued rows are inserted (the fixes'
# collars locked for the rules: `domain.rules_cursors`), registered by the module that queues them.
_BEFORE_WRITING: dict[Table, list[Callable[[Session, list[dict[str, Any]]], None]]] = {}


def before_writing(table: Table, hook: Callable[[Session, list[dict[str, Any]]], None]) -> None:
    """Call hook(session, rows) each time queued rows of table are about to be inserted."""
    hooks = _BEFORE_WRITING.setdefault(table, [])
    if hook not in hooks:
        hooks.append(hook)


def write_queued(session: Session, deferred: bool = True, attach: bool = True) -> int:
    """Write every queued row now (one executemany per table); how many rows were written or skipped.
    deferred: the objects `defer_add` holds back go in first (rows the queued ones may refer to);
    False only where the transaction checks foreign keys at its commit, so they can wait. attach:
    those objects are attached to the session once written (`add_deferred`)."""
    if deferred or not session.info.get(FOREIGN_KEYS_DEFERRED):
        add_deferred(session, attach=attach)
    queued = session.info.pop(QUEUED_ROWS, None)
    if not queued:
        return 0
    session.info[QUEUED_WRITES] = session.info.get(QUEUED_WRITES, 0) + 1
    dialect = session.get_bind().dialect.name
    written = 0
    for table, rows in queued.items():
        for hook in _BEFORE_WRITING.get(table, ()):
            hook(session, rows)
        # Same keys in every row of a table: one statement, executed many, on the session's connection
        # after the session's autoflush, as `Session.execute` would run it (the statement is no ORM
        # read nor change, so the session has nothing else to do for it); on SQLite past SQLAlchemy's
        # per-row steps (`driver_rows`)
        if session.autoflush:
            session.flush()
        driver_rows.execute_many(session.connection(), _queued_insert(table, dialect), rows)
        written += len(rows)
    return written


@cache
def _queued_insert(table: Table, dialect_name: str) -> Insert:
    """write_queued's statement of table, built once (its rows bound at each execution): three tables
    a batch, and building it cost some twenty Python calls each time."""
    return insert_ignoring_conflicts(table, dialect_name)


@event.listens_for(Session, "do_orm_execute")
def _before_a_statement(state: Any) -> None:
    info = state.session.info
    queued = info.get(QUEUED_ROWS)
    deferred = info.get(DEFERRED_OBJECTS)
    options = state.execution_options
    if (not queued and not deferred) or options.get(TOUCHES_NO_ROWS):
        return
    tables = tables_read(state) if state.is_select else frozenset()
    if not tables:  # a change, or a read the mappers do not name: everything goes in first
        write_queued(state.session)
        return
    if deferred and not state.execution_options.get(NOT_DEFERRED) and tables & info.get(DEFERRED_TABLES, set()):
        add_deferred(state.session)
    if queued and tables & queued.keys():
        # A read of queued rows needs them, not the objects held back: those (a batch's raw rows) stay
        # back when foreign keys are checked at the commit, so each is still inserted once, in its
        # final state, rather than inserted now and updated by every later change of the batch.
        write_queued(state.session, deferred=False)


# The tables an ORM read names, by the statement object read (kept only while that object lives):
# SQLAlchemy's statements never change once built, and the batch's reads are built once and executed
# again, while asking the mappers of one costs some fifty Python calls each time.
_TABLES_READ: WeakKeyDictionary[Any, frozenset[Table]] = WeakKeyDictionary()


def tables_read(state: Any) -> frozenset[Table]:
    """The tables of the mappers an ORM read names (`ORMExecuteState.all_mappers`), once a statement."""
    statement = state.statement
    tables = _TABLES_READ.get(statement)
    if tables is None:
        tables = frozenset(mapper.local_table for mapper in state.all_mappers)
        _TABLES_READ[statement] = tables
    return tables


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    if session.info.get(FOREIGN_KEYS_DEFERRED):
        return  # what this flush writes may refer to them: checked at the commit, when they are in
    held = session.info.get(DEFERRED_TABLES)
    if not held:
        return
    # Foreign keys checked statement by statement (PostgreSQL): the objects held back join the first
    # flush that writes a row which may refer to them; a flush of rows that cannot leaves them back.
    if any(_refers_to(type(obj)) & held for obj in (*session.new, *session.dirty)):
        session.add_all(_take_deferred(session) or ())


@cache
def _refers_to(cls: type) -> frozenset[Table]:
    """The tables a mapped class's rows refer to by foreign key."""
    return frozenset(key.column.table for key in inspect(cls).local_table.foreign_keys)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if session.info.get(QUEUED_ROWS) or session.info.get(DEFERRED_OBJECTS):
        write_queued(session)
