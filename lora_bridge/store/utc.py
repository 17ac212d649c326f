"""Timezone-aware UTC timestamps that read back aware on every engine (SQLite drops the zone)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect, processors
from sqlalchemy.types import TypeDecorator


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """value as timezone-aware UTC; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime column that always stores UTC and always returns an aware UTC datetime.

    On SQLite a time is written as SQLAlchemy's SQLite DATETIME writes it, text
    'YYYY-MM-DD HH:MM:SS.ffffff' in UTC, in one step (`sqlite_text`): every fix, summary, reading and
    raw row of an uplink binds several times, and the two-step way (this type's conversion, then the
    dialect's formatting of a dict) cost about twice as much Python. It is read back in one step too
    (`result_processor`: the text and "+00:00" parsed by `datetime.fromisoformat`): the rules read
    hundreds of times a batch, and the two-step way (the dialect's parse, then this type's
    `replace(tzinfo=UTC)`, a slow call on Python 3.11) cost about six times as much (docs/bridge-scale.md).
    A whole column of such texts read at SQLite's driver is parsed at once (`column_reader`).

    On PostgreSQL, whose driver binds and reads aware datetimes of `timestamp with time zone` as they are, a
    time goes both ways in one step (`postgres_times.as_utc_at_once`: a UTC time as it is, any other made
    aware UTC as `as_utc` makes it), the store's sessions set to UTC so that psycopg reads UTC itself."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # as_utc inline: every datetime of every row read passes here
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if _postgresql_takes_datetimes(self, dialect):
            return _postgresql_as_utc()
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        two_steps = super().bind_processor(dialect)

        def process(value: Any) -> Any:
            if type(value) is datetime:  # sqlite_text inline: every time of every row written passes here
                if value.tzinfo is not UTC and value.tzinfo is not None:
                    value = value.astimezone(UTC)
                return SQLITE_TEXT % (value.year, value.month, value.day, value.hour, value.minute,
                                       value.second, value.microsecond)
            return None if value is None else two_steps(value)  # a date, a subclass: the usual way

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if _postgresql_takes_datetimes(self, dialect):
            return _postgresql_as_utc()
        two_steps = super().result_processor(dialect, coltype)
        if two_steps is None or not self._reads_sqlite_text(dialect, coltype):
            return two_steps  # PostgreSQL's driver returns datetimes; a SQLite DATETIME read some other way
        parse = datetime.fromisoformat

        def process(value: Any) -> datetime | None:
            # SQLite's text, naive UTC, read as aware UTC at once; anything else (a date alone, a text
            # with its own offset, not text) the usual way, which parses the same text as fromisoformat
            if value is None:
                return None
            try:
                parsed = parse(value + "+00:00")
            except (TypeError, ValueError):
                return two_steps(value)
            return parsed if parsed.tzinfo is UTC else two_steps(value)

        return process

    def column_reader(self, dialect: Dialect, coltype: Any = None) -> Callable[[Sequence[Any]], list[Any]] | None:
        """A reader of a whole column of SQLite's texts (a read at the driver, `store.driver_reads`): the
        same aware UTC times `result_processor` gives value by value, the texts parsed in C (`map`) rather
        than through a Python function each; None where `result_processor` would not read SQLite's text.
        The rules read a thousand fix times a batch."""
        if not self._reads_sqlite_text(dialect, coltype):
            return None
        one = self.result_processor(dialect, coltype)
        if one is None:
            return None
        parse = datetime.fromisoformat

        def read(values: Sequence[Any]) -> list[Any]:
            try:
                times = list(map(parse, [value + "+00:00" for value in values]))
            except TypeError:  # a None (no time yet): the others read so, each None kept
                present = [value for value in values if value is not None]
                if not present or len(present) == len(values):
                    return list(map(one, values))  # not text: the usual way
                parsed = dict(zip(present, read(present), strict=True))
                return [None if value is None else parsed[value] for value in values]
            except ValueError:  # a text that is not SQLite's naive UTC
                return list(map(one, values))
            if {time.tzinfo for time in times} - {UTC}:  # a text with an offset of its own
                return list(map(one, values))
            return times

        return read

    def _reads_sqlite_text(self, dialect: Dialect, coltype: Any) -> bool:
        """Whether dialect reads this column as SQLite's text through SQLAlchemy's SQLite DATETIME."""
        return (dialect.name == "sqlite"
                and self.impl_instance.result_processor(dialect, coltype) is processors.str_to_datetime)


def _postgresql_takes_datetimes(column_type: UTCDateTime, dialect: Dialect) -> bool:
    """Whether dialect is PostgreSQL's with a driver (psycopg) that binds and reads datetimes as they are."""
    if dialect.name != "postgresql":
        return False
    impl = column_type.impl_instance.dialect_impl(dialect)
    return impl.bind_processor(dialect) is None and impl.result_processor(dialect, None) is None


def _postgresql_as_utc() -> Callable[[Any], Any]:
    """UTCDateTime's processor both ways on PostgreSQL: one step (`postgres_times`, which reads this module)."""
    from lora_bridge.store.postgres_times import as_utc_at_once

    return as_utc_at_once


def sqlite_text(value: datetime) -> str:
    """value (naive: UTC) as SQLite keeps it: UTC text in SQLAlchemy's SQLite DATETIME storage format,
    'YYYY-MM-DD HH:MM:SS.ffffff'. Formatted from its fields: an aware time's `isoformat` asks its zone
    for the offset and `replace(tzinfo=None)` builds a new datetime, each costlier than the formatting."""
    if value.tzinfo is not UTC and value.tzinfo is not None:
        value = value.astimezone(UTC)
    return SQLITE_TEXT % (value.year, value.month, value.day, value.hour, value.minute, value.second,
                           value.microsecond)


SQLITE_TEXT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"  # SQLAlchemy's SQLite DATETIME storage format (from year to microsecond)
