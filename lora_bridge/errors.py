"""Every exception the Tembo bridge raises on purpose, in one tree.

    BridgeError                      base of everything below
    ├── UplinkRejected               an uplink body the bridge cannot read (kept as a dead letter, HTTP 200)
    │   └── MalformedUplink          not JSON, or JSON without the fields of a TTS / ChirpStack uplink
    ├── AuthenticationFailed         wrong or missing X-Tembo-Secret / API token / password (HTTP 401)
    │   └── TooManyAttempts          locked out after repeated failures, for retry_after_s (HTTP 429)
    ├── Forbidden                    a signed-in role that may not do this (HTTP 403)
    ├── NotFound                     an id that names nothing (HTTP 404)
    │   ├── UnknownAlert
    │   ├── UnknownAnimal
    │   ├── UnknownDevice
    │   ├── UnknownDeadLetter
    │   ├── UnknownGeofence
    │   └── UnknownAccount           no such user, API token or sign-in session
    ├── InvalidRequest (ValueError)  a well-formed call with a value out of range (HTTP 400)
    │   ├── InvalidVerdict           resolve_alert with a verdict other than true / false_alarm / unknown
    │   ├── InvalidTransition        alert workflow step out of order (e.g. acknowledge a resolved alert)
    │   ├── InvalidCommand           a downlink command or value the codec cannot encode
    │   │   └── InvalidCommandValues a value name the command's codec row does not know, or lacks (HTTP 422)
    │   ├── InvalidGeography         load_geography with something that is not a Tembo FeatureCollection
    │   ├── InvalidGeofenceFile      a geofence file that does not read, has no CRS or no valid polygon
    │   ├── ExportTooLarge           an export its format cannot hold (a Shapefile part past 2 GB)
    │   └── InvalidHerdChange        an animal's name or species left empty, an unknown sex, a fitting
    │                                time in the future or before the collar's current fitting
    ├── Conflict                     a change the store's present state refuses (HTTP 409)
    │   └── CollarWornByAnother      fit_collar with a collar another animal wears, without move
    ├── DownlinkError                the network server refused or did not answer a downlink push
    ├── BrokerUnusable               an MQTT broker the bridge cannot use at start: not reachable, the login
                                     or the subscriptions refused
    ├── JournalNotOpened             the durable intake's journal beside a SQLite store is another bridge
                                     process's, or cannot be opened (also a RuntimeError)
    ├── StoreNotOpened               the store named by the database URL cannot be opened as configured
                                     (a URL that does not read, a kind of database Tembo does not run on,
                                     no server there, a refused login, no such database, no PostGIS)
    └── StoreUnavailable             the store cannot take a write now (locked, read-only, full, gone):
                                     the webhook answers 503 so the network server retries later

`store_unavailable(error)` makes one from a driver's error, with the `error_id` its log line and the
webhook's 503 both carry; `error_id()` names an error answered to a caller, whose details only the log
has under that id. What a log line says of an error comes from `failure_context(error)` (its class, its
error_id, what the driver said) and a traceback from `redacted(error)`: never `str(error)`, which for
SQLAlchemy's `StatementError` adds the SQL statement and its parameters (a collar's exact position,
ids, a raw body) that the operators who read the log must not see; what PostgreSQL said is its primary
message with its SQLSTATE and without the values of the row it can quote (`postgres_said`), what any
other error said is its first line without the values it can quote (`without_values`: a `ValueError`
quoting a latitude it could not read, a reader's `got '...'`), but for the bridge's own errors that quote
none (`SAID_AS_WRITTEN`). A dead letter keeps its whole reason; its log line says it `without_values`.

`is_transient_store_error(error)` says whether an exception from the store is one that passes
(locked, read-only, disk full, I/O error, connection lost) rather than a fault of the data.

A payload that the codec cannot decode is not an exception of the bridge: it is stored as a dead
letter with the codec's reason, and `Bridge.replay_dead_letters()` tries it again after a codec fix.
"""

import logging
import re
import secrets
from collections.abc import Callable
from typing import Any


class BridgeError(Exception):
    """Base of every error the Tembo bridge raises on purpose."""


class UplinkRejected(BridgeError):
    """An uplink body the bridge cannot take; it is kept as a dead letter with this reason."""


class MalformedUplink(UplinkRejected):
    """Not JSON, or JSON without the fields of a The Things Stack / ChirpStack uplink."""


class AuthenticationFailed(BridgeError):
    """Wrong or missing shared secret or API token."""


class TooManyAttempts(AuthenticationFailed):
    """Locked out after repeated failed sign-ins or token attempts; try again after retry_after_s."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotFound(BridgeError):
    """An id that names nothing in the store."""


class UnknownAlert(NotFound):
    """No alert with this id."""


class UnknownAnimal(NotFound):
    """No animal with this id."""


class UnknownDevice(NotFound):
    """No collar with this device id."""


class UnknownCampaign(NotFound):
    """No update campaign with this id."""


class UnknownDeadLetter(NotFound):
    """No dead letter with this id."""


class InvalidRequest(BridgeError, ValueError):
    """A well-formed call with a value the bridge does not accept."""


class InvalidHerdChange(InvalidRequest):
    """An animal's name or species left empty, a sex other than female / male / unknown, or a collar
    fitted at a time in the future or before its current fitting began."""


class Conflict(BridgeError):
    """A change the store's present state refuses (HTTP 409)."""


class CollarWornByAnother(Conflict):
    """The collar to fit is worn by another animal; moving it from that animal must be asked for."""

    def __init__(self, message: str, wearer_id: int) -> None:
        super().__init__(message)
        self.wearer_id = wearer_id


class InvalidVerdict(InvalidRequest):
    """A verdict other than true, false_alarm or unknown."""


class InvalidTransition(InvalidRequest):
    """An alert workflow step out of order (new → acknowledged → resolved)."""


class InvalidCommand(InvalidRequest):
    """A downlink command or value that the codec cannot encode."""


class InvalidCommandValues(InvalidCommand):
    """Values a command's row of the codec table does not name, or a value it needs that is missing."""


class InvalidGeography(InvalidRequest):
    """A geography that is not a GeoJSON FeatureCollection with properties.kind on every feature."""


class UnknownGeofence(NotFound):
    """No geofence with this id."""


class InvalidGeofenceFile(InvalidRequest):
    """A geofence file that does not read, has no CRS, or holds no valid polygon; the message says which."""


class ExportTooLarge(InvalidRequest):
    """Fixes more than an export's format can hold (a Shapefile's .shp or .dbf past 2 GB); the message says
    how large it would be and how to ask for less."""


class CollarFenceLimits(InvalidRequest):
    """Fences a collar cannot hold (too many, too many corners, holes, both-way alerts); the message says which."""


class DownlinkError(BridgeError):
    """The network server refused or did not answer a downlink push. status: the HTTP status it
    answered (None: no answer); retry_after_s: how long its `Retry-After` asked to wait (a 429)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class BrokerUnusable(BridgeError):
    """An MQTT broker a worker could not start with: not reachable in time, or it refused the login or
    the subscriptions; the message says which (the password masked)."""


class JournalNotOpened(BridgeError, RuntimeError):
    """The durable intake's journal of a SQLite store is held by another live bridge process (one
    answers durably per store), or cannot be opened; the message says which and what to do."""


class StoreNotOpened(BridgeError):
    """The store the database URL names cannot be opened; the message says which part is wrong (the
    URL shown with its password masked). Its cause is the driver's error: `is_transient_store_error`
    still tells a store that is only busy (a backup holding SQLite's lock) from a wrong URL."""


class StoreUnavailable(BridgeError):
    """The store cannot take the body now; nothing was acknowledged, the sender should retry. error_id:
    the id its log line carries (None when made without one), which the answer to the sender repeats."""

    error_id: str | None = None


def store_unavailable(error: BaseException, said: str | None = None) -> StoreUnavailable:
    """The StoreUnavailable that answers for a store error that passes: the driver's own first line, cut
    to 200 characters, for the log (never the statement nor its parameters, which can carry a collar's
    key; never an answer to a caller: its `error_id`, said or a fresh one, names it there)."""
    unavailable = StoreUnavailable(f"store unavailable: {driver_said(error)[:200]}")
    unavailable.error_id = said or getattr(error, "error_id", None) or error_id()
    return unavailable


def driver_said(error: BaseException) -> str:
    """The first line of what the database driver (or whatever raised error) said of it (SQLAlchemy's
    wrapper adds the SQL and its parameters on the lines after it), or the error's type when it said
    nothing; without the values it can quote. PostgreSQL's is said by its SQLSTATE (`postgres_said`);
    an error of the bridge's own that never quotes a value (`SAID_AS_WRITTEN`: a URL with its password
    masked, a journal's path) as written; any other (SQLite's, Python's `ValueError: could not convert
    string to float: '-2.5123'`, a `KeyError`, JSON's, the network readers' `MalformedUplink` that quotes
    the wrong value on purpose for its dead letter) without its values (`without_values`)."""
    cause = getattr(error, "orig", None) or error
    said = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    sqlstate, diag = getattr(cause, "sqlstate", None), getattr(cause, "diag", None)
    if sqlstate and diag is not None:
        return postgres_said(diag, said, sqlstate)
    if isinstance(cause, SAID_AS_WRITTEN):
        return said
    return without_values(said) + _http_status_of(cause)


def _http_status_of(error: BaseException) -> str:
    """" (HTTP 429)" for a `DownlinkError` the network server answered, from its `status` (its text quotes the
    server's answer, which `without_values` masks with the status in it), else "". Until 6 December a
    refused push was logged `network server answered …: '…'`, and the operator could not tell a 429
    from a 404."""
    status = getattr(error, "status", None) if isinstance(error, DownlinkError) else None
    return f" (HTTP {status})" if isinstance(status, int) and not isinstance(status, bool) else ""


# What can be a value in an error's first line: a double-quoted word (PostgreSQL's: a name or a value of
# the row; a Python repr of text that holds a '), a single-quoted word (a Python repr), a number, a run of
# hex digits (a payload, a key). A range of the bridge's own bounds (`0..255`) is matched to be kept.
_VALUE = re.compile(
    r'"((?:[^"]|"")*)"'
    r"|(?<!\w)'((?:[^'\\]|\\.)*)'(?!\w)"
    r"|(?<![\w.])(\d+\.\.\d+)(?![\w.])"
    r"|(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?!\w)"
    r"|(?<![\w.])(?=[0-9A-Fa-f]*\d)[0-9A-Fa-f]{4,}(?!\w)"
)
# A quoted word said as written outside PostgreSQL's messages: a name (a table or column, a field of a
# body: 'rx_metadata', 'fCnt', 'positions.lat'), made of letters, underscores and dots, or a mark of
# syntax (JSON's `Expecting ',' delimiter`); a coordinate, a frame's bytes in hex, a key all hold a digit.
_A_NAME = re.compile(r"[A-Za-z_][A-Za-z_.]{0,63}|[^\w\s]{1,3}")
# What a value is said as.
LEFT_OUT = "…"


def a_name(word: str) -> bool:
    """Whether a quoted word reads as a name, not a value (`_A_NAME`)."""
    return _A_NAME.fullmatch(word) is not None


def without_values(said: str, is_name: Callable[[str], bool] = a_name) -> str:
    """said (an error's first line, a dead letter's reason) with every value it can quote said as `…`:
    a quoted word that is_name does not take (by default: one that is not a name, `a_name`), a number,
    a run of hex digits; the words around, the names and the bridge's own bounds (`0..255`) kept.
    `could not convert string to float: '-2.5123'` is said `could not convert string to float: '…'`;
    `'f_cnt' must be a frame counter 0..4294967295, got 37.971555` is said `'f_cnt' must be a frame
    counter 0..4294967295, got …`."""

    def name_or_left_out(found: re.Match[str]) -> str:
        double, single, bounds = found.group(1), found.group(2), found.group(3)
        if bounds is not None:
            return bounds
        if double is not None:
            return found.group(0) if is_name(double.replace('""', '"')) else f'"{LEFT_OUT}"'
        if single is not None:
            return found.group(0) if is_name(single) else f"'{LEFT_OUT}'"
        return LEFT_OUT

    return _VALUE.sub(name_or_left_out, said)


# SQLSTATE classes whose primary message quotes only what the schema and the server are made of (a
# table or column that does not exist, a lock, a connection, a login, a full disk): said as written.
# Every other class (22 data exception, 23 integrity, P0 a trigger's RAISE, XX PostGIS, ...) can quote
# the row.
SCHEMA_ONLY_CLASSES = ("08", "28", "3D", "3F", "42", "53", "55", "57")


def postgres_said(diag: Any, said: str, sqlstate: str) -> str:
    """PostgreSQL's primary message (psycopg's `diag.message_primary`, else the first line said) with
    its SQLSTATE, and without the values of the row it can quote: the server's primary message quotes a
    value that does not read as its column's type (`invalid input syntax for type double precision:
    "-2.5123"`, 22P02; `value "..." is out of range for type integer`, `"..." is out of range for type
    real`, 22003; `date/time field value out of range: "..."`, 22008), where its DETAIL (`Key (lat,
    lon)=(...) already exists`, `Failing row contains (...)`) and HINT (PostGIS: the WKT up to the
    parse error) hold the row on lines of their own. Every quoted word other than a name the server
    gave (schema, table, column, type, constraint) and every number is said as `…`:
    `invalid input syntax for type double precision: "…" (SQLSTATE 22P02)`; `duplicate key value
    violates unique constraint "uq_position_device_time" (SQLSTATE 23505)`. A class that names only the
    schema (`SCHEMA_ONLY_CLASSES`: `relation "positions" does not exist`) is said as written."""
    if sqlstate.startswith(SCHEMA_ONLY_CLASSES):
        return f"{said} (SQLSTATE {sqlstate})"
    names = {getattr(diag, field, None) for field in
             ("schema_name", "table_name", "column_name", "datatype_name", "constraint_name")} - {None, ""}
    primary = (getattr(diag, "message_primary", None) or said).strip().splitlines()[0]
    return f"{without_values(primary, names.__contains__)} (SQLSTATE {sqlstate})"


def failure_context(error: BaseException, said: str | None = None) -> dict[str, str]:
    """What a log line (its `extra`, and its message through `said_of`) says of error: its class, an
    error_id (said, the one error carries, or a fresh one) and what the driver said (`driver_said`, cut
    to 200 characters); never the SQL statement nor its parameters."""
    return {
        "error_class": type(error).__name__,
        "error_id": said or getattr(error, "error_id", None) or error_id(),
        "driver_said": driver_said(error)[:200],
    }


def said_of(context: dict[str, str]) -> str:
    """A `failure_context` for a log line's message: `error_id=... IntegrityError: what the driver said`."""
    return f"error_id={context['error_id']} {context['error_class']}: {context['driver_said']}"


class Redacted(Exception):  # noqa: N818 - it stands in for an error, it is none itself
    """An error as a log's traceback shows it: its class and what the driver said, with its frames."""


# How many errors of a chain (raised from, during the handling of) a traceback shows at most.
REDACTED_CHAIN = 8


def redacted(error: BaseException, _depth: int = 0) -> Redacted:
    """A stand-in for error to log its traceback with (`exc_info=redacted(error)`): the same frames and
    chain of causes, each said as `module.Class: what the driver said`, so that no line of it repeats
    a statement error's SQL and parameters (a traceback's last line is str(error))."""
    kind = type(error)
    stand_in = Redacted(f"{kind.__module__}.{kind.__qualname__}: {driver_said(error)[:200]}")
    stand_in.__traceback__ = error.__traceback__
    if _depth < REDACTED_CHAIN:
        if error.__cause__ is not None:
            stand_in.__cause__ = redacted(error.__cause__, _depth + 1)
        elif error.__context__ is not None and not error.__suppress_context__:
            stand_in.__context__ = redacted(error.__context__, _depth + 1)
    stand_in.__suppress_context__ = error.__suppress_context__
    return stand_in


def log_failure(logger: logging.Logger, error: BaseException, message: str, *args: object,
                context: dict[str, Any] | None = None, said: str | None = None) -> str:
    """Log message % args at ERROR, followed by error's `failure_context` (class, error_id, the driver's
    words) and its `redacted` traceback, in place of `logger.exception`; context (device, f_port, ...)
    joins the record's fields; said: the error_id already told to a caller (else error's, or a fresh
    one). The error_id logged is returned."""
    failure = failure_context(error, said)
    logger.error(f"{message} %s", *args, said_of(failure), exc_info=redacted(error),
                 extra={**(context or {}), **failure}, stacklevel=2)  # the line of the caller's failure
    return failure["error_id"]


def error_id_in(reason: str | None) -> str | None:
    """The error_id a result's reason ends with (`... error_id=0a1b2c3d4e5f`), or None."""
    head, found, said = (reason or "").rpartition("error_id=")
    return said if found and len(said) == ERROR_ID_CHARS and all(c in "0123456789abcdef" for c in said) else None


# The length of an error_id (6 random bytes as hex).
ERROR_ID_CHARS = 12


def error_id() -> str:
    """A fresh id for one error answered to a caller: the answer carries it instead of the store's words
    (a file path, a host name, SQL), and the log line with the details carries it too."""
    return secrets.token_hex(ERROR_ID_CHARS // 2)


def is_transient_store_error(error: BaseException) -> bool:
    """True for store errors that pass: locked, read-only, disk full, I/O error, connection lost."""
    import sqlite3

    from sqlalchemy import exc

    if isinstance(error, StoreUnavailable):
        return True
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if _passing_sqlstate(getattr(getattr(error, "orig", None), "sqlstate", None)):
        return True
    if isinstance(error, exc.OperationalError | exc.InterfaceError | exc.TimeoutError | exc.DisconnectionError):
        return True
    if isinstance(error, sqlite3.OperationalError | OSError):
        return True
    cause = error.__cause__ or error.__context__
    return cause is not None and cause is not error and is_transient_store_error(cause)


# PostgreSQL's SQLSTATEs of a store that takes no write now (psycopg raises some of them as InternalError
# or ProgrammingError): connection exceptions (08), read-only (25006: a standby after a fail-over,
# default_transaction_read_only), insufficient resources (53: disk full, out of memory, too many
# connections), an operator's or crash shutdown (57P), a lock not available or a statement cancelled
# (55P03, 57014), a serialization failure or deadlock (40001, 40P01). A read-only store had been
# answered 500, and its bodies taken for faults of the data.
PASSING_SQLSTATE_CLASSES = ("08", "53", "57P")
PASSING_SQLSTATES = frozenset({"25006", "55P03", "57014", "40001", "40P01"})


def _passing_sqlstate(sqlstate: str | None) -> bool:
    return bool(sqlstate) and (sqlstate in PASSING_SQLSTATES or sqlstate.startswith(PASSING_SQLSTATE_CLASSES))


class Forbidden(BridgeError):
    """An authenticated viewer whose role may not do this (HTTP 403)."""


class UnknownAccount(NotFound):
    """No account, API token or sign-in session with this name or id."""


# Errors of the bridge's own whose message never quotes a value of a body or a row (a database URL with
# its password masked, a journal's path, a broker's address, an id that names nothing; StoreUnavailable:
# the driver's words said already without their values): `driver_said` says them as written.
SAID_AS_WRITTEN: tuple[type[BaseException], ...] = (
    StoreUnavailable, StoreNotOpened, JournalNotOpened, BrokerUnusable, AuthenticationFailed, Forbidden, NotFound,
)
