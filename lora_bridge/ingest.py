"""Ingest: keep every delivered body first, then read it and claim it as the first copy of its uplink.

Storing comes before everything: a body is committed to `raw_uplinks` in its own transaction before
it is parsed (fsynced on SQLite, `synchronous=FULL`), so nothing a network server delivers is lost,
whatever happens next. A store that cannot take the body raises `StoreUnavailable`: the webhook
answers 503 and the network server tries again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, column, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from lora_bridge.errors import (
    MalformedUplink,
    StoreUnavailable,
    failure_context,
    is_transient_store_error,
    said_of,
    store_unavailable,
    without_values,
)
from lora_bridge.network_messages import CollarNamed, collar_named
from lora_bridge.store import bulk, gateway_merges
from lora_bridge.store.database import Database
from lora_bridge.store.row_values import row_maker
from lora_bridge.store.tables import DeadLetter, RawUplink
from lora_bridge.store.transaction_info import held_until_transaction_end
from lora_bridge.store.utc import as_utc, utc_now
from lora_bridge.uplink_formats import PARSERS, Uplink

log = logging.getLogger(__name__)
STATUS_RECEIVED = "received"
STATUS_PROCESSED = "processed"
STATUS_DUPLICATE = "duplicate"
STATUS_DEAD_LETTER = "dead_letter"
STATUS_RECORDED = "recorded"  # a network event that is not an uplink, understood and stored
STATUS_KEPT = "kept"  # a kind the bridge does not know, kept for inspection
STATUS_PENDING = "pending"  # stored durably; processing waits for the store (retried by the timer)

# session.info key: the dedup keys claimed in a unit of work (a batch) and their first copies, so a
# second copy heard in the same batch is filed without looking again; with the first copies stored
# before it that the batch read at its start (`pipeline.read_batch`).
CLAIMED_KEYS = "tembo_claimed_dedup_keys"
# What the raw row keeps of a kind's name (the column's length).
MAX_EVENT_CHARS = RawUplink.__table__.c.event.type.length
# session.info key: dedup keys a batch found no stored copy holding when it began (read in one
# statement, `pipeline.read_batch`): claiming one of them needs no look-up.
UNCLAIMED_KEYS = "tembo_unclaimed_dedup_keys"
# session.info key: {payload: its digest in `dedup_key`}, the payloads hashed in this unit of work (a
# batch's, by `pipeline.read_batch`): a payload's digest depends on nothing else, so it cannot go stale.
PAYLOAD_DIGESTS = "tembo_payload_digests"
# PostgreSQL: dedup keys a batch holds till its transaction ends (`lock_keys`), as session.info key,
# and the space of their advisory locks (pg_advisory_xact_lock(space, hashtext(key)): the two-number
# locks, apart from the one-number locks of migrations and campaign starts).
LOCKED_KEYS = held_until_transaction_end("tembo_locked_dedup_keys")
DEDUP_LOCK_SPACE = 7301
# A batch with more keys than this claims them with a savepoint each instead: every advisory lock
# takes a slot of PostgreSQL's shared lock table (max_locks_per_transaction x max_connections, 6,400 by
# default, for every session at once).
LOCK_KEYS_AT_MOST = 1024
# Its one column declared: SQLAlchemy keeps the result's shape with the compiled statement, where a plain
# text's is described and mapped anew at every batch.
_LOCK_KEYS = text(
    "SELECT count(pg_advisory_xact_lock(:space, hashed)) AS locked FROM "
    "(SELECT DISTINCT hashtext(key) AS hashed FROM unnest(CAST(:keys AS text[])) AS key ORDER BY hashed) AS batch_keys"
).columns(column("locked", BigInteger)).execution_options(**{bulk.TOUCHES_NO_ROWS: True})  # a batch's raw rows held back stay back

STAGE_PARSE = "parse"
STAGE_DECODE = "decode"
STAGE_APPLY = "apply"
STAGE_KIND = "kind"


def store_raw(
    db: Database,
    body: bytes,
    source: str,
    *,
    event: str | None = None,
    content_type: str | None = None,
    path_ids: dict[str, Any] | None = None,
) -> int:
    """Commit body to raw_uplinks (status received) and return its id; StoreUnavailable if it cannot."""
    try:
        with db.write() as session:
            raw = raw_row(body, source, event=event, content_type=content_type, path_ids=path_ids)
            session.add(raw)
            session.flush()
            raw_id = raw.id
    except Exception as error:
        if is_transient_store_error(error):
            failure = failure_context(error)
            if db.refused_bodies.refused(failure["error_id"]):
                log.warning("store cannot take a body now %s: answered as unavailable", said_of(failure),
                            extra={"source": source, **failure})
            raise store_unavailable(error, failure["error_id"]) from error
        raise
    if db.refused_bodies.total:  # a run of refusals on: this body ends it
        db.refused_bodies.kept()
    return raw_id


def store_raw_many(db: Database, submissions: list[Any]) -> list[int]:
    """Commit the bodies of submissions (network, event, body, content_type, path_ids) to raw_uplinks
    in one transaction (one multi-row insert, one fsync); their ids in order. StoreUnavailable if it cannot."""
    try:
        with db.write() as session:
            ids = insert_raw_rows(session, submissions)
    except Exception as error:
        if is_transient_store_error(error):
            # Which collars' uplinks wait: the line had named none. What becomes of them is the caller's to
            # say (a webhook's 503, an MQTT message left unacknowledged, a durable intake's journal entries
            # tried again): it had said "answered as unavailable" of bodies already answered 202.
            named, failure = uplinks_named(submissions), failure_context(error)
            if db.refused_bodies.refused(failure["error_id"]):
                log.warning("store cannot take %d bodies now %s: %s", len(submissions), said_of(failure), named,
                            extra={**failure, "uplinks": named})
            raise store_unavailable(error, failure["error_id"]) from error
        raise
    if db.refused_bodies.total:  # a run of refusals on: these bodies end it
        db.refused_bodies.kept()
    return ids


# At most this many bodies are named in a log line (a batch holds up to 256).
NAMED_IN_A_LINE = 8


def uplinks_named(submissions: list[Any], most: int = NAMED_IN_A_LINE) -> str:
    """The collars and frame counters of submissions for a log line, read cheaply from their path ids
    and JSON ("collar-01 f_cnt=3, 70b3d57ed0000002 f_cnt=9, ... (+4 more)"); names escaped, so a
    device name cannot forge a line."""
    named = [_uplink_named(submission) for submission in submissions[:most]]
    more = len(submissions) - len(named)
    return ", ".join(named) + (f" (+{more} more)" if more > 0 else "")


def _uplink_named(submission: Any) -> str:
    ids = dict(getattr(submission, "path_ids", None) or {})
    f_cnt: Any = None
    try:
        document = json.loads(submission.body)
    except (ValueError, UnicodeDecodeError):
        document = None
    if isinstance(document, dict):
        tts_ids, tts_up = document.get("end_device_ids"), document.get("uplink_message")
        chirpstack_ids = document.get("deviceInfo")
        if isinstance(tts_ids, dict):
            ids.setdefault("dev_eui", tts_ids.get("dev_eui"))
            ids.setdefault("device_id", tts_ids.get("device_id"))
        if isinstance(chirpstack_ids, dict):
            ids.setdefault("dev_eui", chirpstack_ids.get("devEui"))
            ids.setdefault("device_id", chirpstack_ids.get("deviceName"))
        f_cnt = tts_up.get("f_cnt") if isinstance(tts_up, dict) else document.get("fCnt")
    device = str(ids.get("device_id") or ids.get("dev_eui") or "?")[:64]
    shown = device.encode("unicode_escape").decode("ascii")
    return f"{shown} f_cnt={f_cnt}" if f_cnt is not None else shown


def insert_raw_rows(session: Session, submissions: list[Any]) -> list[int]:
    """Inside session's transaction: the bodies of submissions as raw rows `received`, in one
    multi-row INSERT ... RETURNING (SQLAlchemy Core: no unit of work to flush); their ids in order."""
    rows = [
        {**submitted(s), "status": STATUS_RECEIVED, "gateways": [],
         "received_at": getattr(s, "received_at", None) or utc_now()}
        for s in submissions
    ]
    statement = insert(RawUplink).returning(RawUplink.id, sort_by_parameter_order=True)
    return list(session.scalars(statement, rows))


def store_raw_apart(db: Database, submissions: list[Any]) -> list[int | None]:
    """`store_raw_many`, and should the store refuse the batch for a reason that does not pass (a
    value it cannot hold), each body alone, so one body does not cost the others theirs: ids in
    order, None for a body the store refused (its error set on its submission, for its caller to keep
    it as a dead letter, `Bridge.keep_failed`). StoreUnavailable when the store cannot take them now."""
    try:
        return list(store_raw_many(db, submissions))
    except StoreUnavailable:
        raise
    except Exception as error:  # noqa: BLE001 - which body was refused is found by storing each alone
        if len(submissions) == 1:
            submissions[0].error = error
            return [None]
        failure = failure_context(error)
        log.warning("store refused a batch of %d raw bodies %s: each kept alone", len(submissions),
                    said_of(failure), extra=failure)
    ids: list[int | None] = []
    for submission in submissions:
        try:
            ids.append(store_raw_many(db, [submission])[0])
        except StoreUnavailable as unavailable:
            submission.error = unavailable
            ids.append(None)
        except Exception as refused:  # noqa: BLE001 - this body's caller keeps it as a dead letter
            submission.error = refused
            ids.append(None)
    return ids


def keep_failed(
    db: Database,
    source: str,
    body: bytes,
    reason: str,
    *,
    event: str | None = None,
    content_type: str | None = None,
    path_ids: dict[str, Any] | None = None,
    named: CollarNamed | None = None,
    told: str | None = None,
    stage: str = STAGE_APPLY,
) -> int:
    """Commit body whose ingest failed for a reason that does not pass (a bug, a value the store
    refuses) as a raw row with its dead letter (stage apply; stage parse for a call refused before its
    body was read, as a ChirpStack call naming two events), as a body that fails while applied is
    kept: `Bridge.replay_dead_letters` runs it again after a fix. Its raw row's id; StoreUnavailable
    when the store cannot take it now. Should the store refuse the row's topic or path values
    themselves, the body is kept without them, their text in the reason. named: the collar the body
    names with its topic or path ids (`collar_named`), for the dead letter's log line (the raw row,
    written fresh here, holds no collar, and may have to be kept without its ids); told: what that
    line says of the failure (`dead_letter`)."""
    attempts = [(event, content_type, path_ids, reason)]
    if event or content_type or path_ids:
        said = f"{reason} [not stored with the body: event={event!r} path_ids={path_ids!r}]"
        attempts.append((None, None, None, said[:1000]))
    for number, (kind, encoding, ids, why) in enumerate(attempts, start=1):
        try:
            with db.write() as session:
                raw = raw_row(body, source, event=kind, content_type=encoding, path_ids=ids)
                session.add(raw)
                session.flush()
                dead_letter(session, raw, stage, why, named=named, told=told)
                return raw.id
        except Exception as error:
            if is_transient_store_error(error):
                raise store_unavailable(error) from error
            if number == len(attempts):
                raise
            failure = failure_context(error)
            log.warning("store refused a failed body's ids %s: kept without them", said_of(failure),
                        extra={"source": source, **failure})
    raise AssertionError("unreachable")


def _event(event: str | None) -> str | None:
    """The kind's name as the raw row keeps it: a webhook path or MQTT topic may name a kind longer than
    the column (PostgreSQL would refuse the whole body; the body itself keeps the full name's kind)."""
    return event[:MAX_EVENT_CHARS] if event else None


def delivered(
    body: bytes,
    source: str,
    *,
    event: str | None = None,
    content_type: str | None = None,
    path_ids: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A delivered body as the store keeps it, in a raw row or a hand-over: its source, bytes, kind's
    name, content type and path ids, each cut to its column."""
    return {
        "source": source,
        "body": bytes(body),
        "event": _event(event),
        "content_type": (content_type or None) and content_type[:64],
        "path_ids": dict(path_ids) if path_ids else None,
    }


def submitted(submission: Any) -> dict[str, Any]:
    """`delivered` for a submission (network, event, body, content_type, path_ids)."""
    return delivered(submission.body, submission.network, event=submission.event,
                     content_type=submission.content_type, path_ids=submission.path_ids)


def raw_row(
    body: bytes,
    source: str,
    *,
    event: str | None = None,
    content_type: str | None = None,
    path_ids: dict[str, Any] | None = None,
) -> RawUplink:
    """A new raw_uplinks row (status received) holding body as delivered."""
    return raw_row_of(delivered(body, source, event=event, content_type=content_type, path_ids=path_ids))


def raw_row_of(kept: dict[str, Any]) -> RawUplink:
    """A new raw_uplinks row (status received) holding what `delivered` keeps of a body."""
    raw = _new_raw_row()
    # no dedup key yet (the column's none), held as a value: `claim_key` asks every new row for it, and an
    # attribute never set is read through the ORM's default-value steps, a few calls each. A row just
    # made, no session's: its dict is its state, set as `bulk.set_values` would, without its call
    raw.__dict__.update(kept, status=STATUS_RECEIVED, gateways=[], dedup_key=None)
    return raw


# A new raw row without `RawUplink()`'s constructor steps (the init event, no values to set): a batch
# makes one a body
_new_raw_row = row_maker(RawUplink)


def parser_for(source: str) -> Callable[[bytes], Uplink]:
    """The parser of a source name ('tts', 'chirpstack', or 'replay:tts' style)."""
    network = network_of(source)
    try:
        return PARSERS[network]
    except KeyError as error:
        raise ValueError(f"unknown uplink source {source!r}; known: {', '.join(PARSERS)}") from error


def network_of(source: str) -> str:
    """The network of a source name: 'replay:tts' -> 'tts'."""
    return source.split(":")[-1]


@dataclass(frozen=True)
class Claim:
    """The result of reading a raw body: the uplink and whether this copy is the first one."""

    uplink: Uplink
    duplicate_of: int | None


def dedup_key(device_id: str, session_number: int, uplink: Uplink, digests: dict[bytes, str] | None = None) -> str:
    """Same collar, session, frame counter, port and payload: one uplink, however many gateways heard it.
    digests: payload -> its digest, this unit of work's (`PAYLOAD_DIGESTS`): each payload hashed once
    (`pipeline.read_batch` keys the batch's uplinks, `claim` each again)."""
    payload = uplink.payload
    if digests is not None and payload in digests:
        digest = digests[payload]
    else:
        digest = hashlib.sha256(payload).hexdigest()[:32]
        if digests is not None:
            digests[payload] = digest
    return f"{device_id}:{session_number}:{uplink.f_cnt}:{uplink.f_port}:{digest}"


def refile_heard_since(session: Session, device_id: str, previous: int, current: int, since: datetime) -> list[RawUplink]:
    """The first copies of device_id's frames filed in session `previous` but heard since `since`, when
    a join or reset dated `since` (come late: a webhook retried, two requests racing) began session
    `current`: filed in `current` now, their dedup keys with them (in this unit of work's claims
    too), so a copy delivered again is still a copy. Oldest first."""
    query = (select(RawUplink)
             .where(RawUplink.device_id == device_id, RawUplink.session == previous, RawUplink.heard_at >= since,
                    RawUplink.duplicate_of.is_(None), RawUplink.dedup_key.is_not(None))
             .order_by(RawUplink.heard_at, RawUplink.id))
    old, new = f"{device_id}:{previous}:", f"{device_id}:{current}:"
    claimed = session.info.setdefault(CLAIMED_KEYS, {})
    refiled = []
    for raw in session.scalars(query):
        if not raw.dedup_key.startswith(old):
            continue  # not an uplink's key of that session
        key = new + raw.dedup_key[len(old):]
        claimed.pop(raw.dedup_key, None)
        bulk.set_values(raw, {"session": current, "dedup_key": key})
        claimed[key] = raw
        refiled.append(raw)
    return refiled


def body_key(raw: RawUplink) -> str:
    """The key of a body as delivered (network, kind, encoding, path ids and bytes): a body that cannot
    be read has no message to key it by, and the same bytes again are the same delivery tried again."""
    ids = json.dumps(raw.path_ids or {}, sort_keys=True, default=str)
    digest = hashlib.sha256("\n".join((raw.event or "", raw.content_type or "", ids)).encode() + b"\n" + raw.body)
    return f"body:{network_of(raw.source)}:{digest.hexdigest()[:48]}"


def claim(session: Session, raw: RawUplink, uplink: Uplink, device_id: str, session_number: int,
          first_heard: bool = False) -> Claim:
    """Record what raw holds and claim its dedup key; the first copy's id when another copy has it.
    first_heard: the collar was created in this unit of work, so no stored body holds a key of its
    (collars are never deleted, and a body's key is claimed in the transaction that has its collar)."""
    gateways = [{"gateway_id": g.gateway_id, "rssi_dbm": g.rssi_dbm, "snr_db": g.snr_db} for g in uplink.gateways]
    heard_by = len(gateways)
    if heard_by > 1 and (heard_by > gateway_merges.GATEWAYS_KEPT or len({g.gateway_id for g in uplink.gateways}) < heard_by):
        gateways = _kept_gateways(gateways, device_id, uplink.f_cnt)  # a gateway named twice, or too many
    bulk.set_values(raw, {
        "device_id": device_id,
        "session": session_number,
        "f_port": uplink.f_port,
        "f_cnt": uplink.f_cnt,
        "payload": uplink.payload,
        "heard_at": uplink.heard_at,
        "gateways": gateways,
        "best_rssi_dbm": uplink.best_rssi_dbm,
        "best_snr_db": uplink.best_snr_db,
        "spreading_factor": uplink.spreading_factor,
        "airtime_ms": uplink.airtime_ms,
    })
    info = session.info
    digests = info[PAYLOAD_DIGESTS] if PAYLOAD_DIGESTS in info else None
    first = claim_key(session, raw, dedup_key(device_id, session_number, uplink, digests), in_store=not first_heard)
    if first is None:
        return Claim(uplink, None)
    _merge_gateways(session, first, raw)
    file_as_copy(raw, first)
    log.info(
        "duplicate uplink device_id=%s f_cnt=%s of raw_uplink_id=%d",
        device_id,
        uplink.f_cnt,
        first.id,
        extra={"device_id": device_id, "f_cnt": uplink.f_cnt, "first_raw_uplink_id": first.id},
    )
    return Claim(uplink, first.id)


_NOT_HELD = object()  # claim_key: a column not in the row's dict


def claim_key(session: Session, raw: RawUplink, key: str, fresh_after: datetime | None = None,
              in_store: bool = True) -> RawUplink | None:
    """Claim key (one delivered message however often it came: `dedup_key`, a network event's,
    a malformed body's) for raw; the first copy that holds it, or None when raw is the first (or
    already holds it: a body replayed). Marks nothing: the caller files raw as the copy it is.
    A holder that arrived before fresh_after (a key of content alone, heard again after the network
    stopped retrying it) is no first copy: raw is a message of its own and takes the key over, so
    that its own retries find it. in_store False: the store cannot hold the key (only this unit of
    work's copies are looked at)."""
    held = raw.__dict__.get("dedup_key", _NOT_HELD)  # the loaded column, read without the attribute's call
    if (raw.dedup_key if held is _NOT_HELD else held) == key:  # (one the row does not hold: the attribute)
        return None  # replaying a body that already holds its claim
    claimed = session.info.setdefault(CLAIMED_KEYS, {})  # key -> its first copy, in this unit of work
    first = claimed.get(key)
    if first is None and in_store and key not in session.info.get(UNCLAIMED_KEYS, ()):
        with session.no_autoflush:  # keys of this unit of work are in `claimed`; the store has the rest
            first = _first_copy(session, key)
    if first is not None and fresh_after is not None and first.id is not None and as_utc(first.received_at) < fresh_after:
        _retire_key(session, first, key)
        first = None
    if first is None:
        bind = session.bind  # the engine (or connection) the session was opened on; asked for when none
        if (not in_store or (bind if bind is not None else session.get_bind()).dialect.name == "sqlite"
                or key in session.info.get(LOCKED_KEYS, ())):
            # A SQLite write transaction (BEGIN IMMEDIATE) excludes every other writer until it
            # commits, on PostgreSQL a key the batch locked (`lock_keys`) waits for this commit, and
            # a key of a collar this unit of work created needs that collar's row, which another
            # writer waits for: nobody can claim the key between our look and our write.
            bulk.set_values(raw, {"dedup_key": key})
        else:
            bulk.add_deferred(session)  # a batch's raw rows held back go in first, outside the savepoint
            try:
                with session.begin_nested():
                    raw.dedup_key = key
                    session.flush()
            except IntegrityError:
                raw.dedup_key = None  # another worker claimed it between our look and our write
                first = _first_copy(session, key)
    if first is None:
        claimed[key] = raw
        return None
    claimed[key] = first  # later copies in this unit of work refer to this object, not a fresh read
    return first


def lock_keys(session: Session, keys: set[str]) -> None:
    """PostgreSQL: hold keys (uplinks' dedup keys, before the batch looks which of them the store
    holds) till the transaction ends, in one statement, in one order for every worker. Another worker
    claiming one of them waits for this commit and then finds its first copy, so claiming them here
    needs no savepoint against a unique violation (three statements an uplink). SQLite's writers
    are serial anyway."""
    if not keys or len(keys) > LOCK_KEYS_AT_MOST or session.get_bind().dialect.name != "postgresql":
        return
    session.execute(_LOCK_KEYS, {"space": DEDUP_LOCK_SPACE, "keys": sorted(keys)})
    session.info.setdefault(LOCKED_KEYS, set()).update(keys)


def file_as_copy(raw: RawUplink, first: RawUplink) -> None:
    """Mark raw as a copy of the body first (same message delivered again): nothing of it is applied."""
    bulk.set_values(raw, {"status": STATUS_DUPLICATE, "duplicate_of": first.id})


def _retire_key(session: Session, holder: RawUplink, key: str) -> None:
    """holder keeps a key of its own (key@its id) and leaves key to a later message of equal content."""
    retired = f"{key}@{holder.id}"
    session.execute(update(RawUplink).where(RawUplink.id == holder.id).values(dedup_key=retired))
    set_committed_value(holder, "dedup_key", retired)


def _first_copy(session: Session, key: str) -> RawUplink | None:
    # FOR UPDATE (PostgreSQL; SQLite's writers are serial anyway): copies heard by several gateways
    # at once merge their gateways into the first copy one after the other, none overwrites another.
    # A copy in this unit of work is in CLAIMED_KEYS: the rows it holds back need not go in first.
    query = select(RawUplink).where(RawUplink.dedup_key == key).with_for_update()
    return session.scalars(query.execution_options(populate_existing=True, **{bulk.NOT_DEFERRED: True})).first()


def _merge_gateways(session: Session, first: RawUplink, copy: RawUplink) -> None:
    """The gateways of copy that first lacks added to first's, in the order heard, at most
    `gateway_merges.GATEWAYS_KEPT` of them (a copy naming only gateways first holds adds nothing), and
    the best signal of them all. A first copy stored before this unit of work (the copies of one uplink
    handed to two workers meet in different batches) takes them as one of the transaction's merges
    written together (`gateway_merges`)."""
    known = {g.get("gateway_id") for g in first.gateways or []}
    added = [g for g in copy.gateways or [] if g.get("gateway_id") not in known]
    if not added:
        return
    heard = list(first.gateways or []) + added  # each once: claim kept each copy's gateways once
    merged = heard if len(heard) <= gateway_merges.GATEWAYS_KEPT else _kept_gateways(heard, first.device_id, first.f_cnt)
    rssi = [g["rssi_dbm"] for g in heard if g.get("rssi_dbm") is not None]
    snr = [g["snr_db"] for g in heard if g.get("snr_db") is not None]
    gateway_merges.set_merged(session, first, {
        "gateways": merged, "best_rssi_dbm": max(rssi) if rssi else first.best_rssi_dbm,
        "best_snr_db": max(snr) if snr else first.best_snr_db})


def _kept_gateways(gateways: list[dict[str, Any]], device_id: str | None, f_cnt: int | None) -> list[dict[str, Any]]:
    """The gateways a raw row keeps of gateways (`gateway_merges.kept_gateways`); those left out counted in the log."""
    kept, left_out = gateway_merges.kept_gateways(gateways)
    if left_out:
        log.info("gateways left out device_id=%s f_cnt=%s: %d beyond the %d strongest kept", device_id, f_cnt,
                 left_out, gateway_merges.GATEWAYS_KEPT,
                 extra={"device_id": device_id, "f_cnt": f_cnt, "gateways_left_out": left_out})
    return kept


def dead_letter(
    session: Session, raw: RawUplink, stage: str, reason: str, existing: DeadLetter | None = None,
    *, told: str | None = None, named: CollarNamed | None = None,
) -> DeadLetter:
    """Keep raw as a dead letter (or refresh the one being replayed) and mark raw accordingly. told: what
    the log and a replay's result say of it when reason (kept for the admins who inspect the row) may
    carry what the log must not (a store error's SQL and parameters); reason itself otherwise, for the
    log without the values it quotes (`errors.without_values`: a reader's `'f_cnt' must be a frame
    counter 0..4294967295, got …`, the codec's `payload …`; until 6 December the log line had the wrong
    value, a coordinate sent in the wrong field, and the frame's bytes in hex).
    The line names the collar whenever the body does, whatever its kind and stage: raw's collar and
    frame counter when it holds them, else what named (the caller's `collar_named` of the body as
    delivered) or raw's body, topic and path ids name (`collar_named`): its device id, its DevEUI when
    known, and an uplink's frame counter (a line of a message without one says none). Until 6 December
    it said "device_id=None f_cnt=None" of a body that failed at apply, did not read (a
    `location_solved` whose topic and `end_device_ids` named the collar) or was of a kind kept."""
    logged = without_values(reason) if told is None else told
    told = reason if told is None else told
    if named is None:
        named = collar_named(network_of(raw.source), raw.event, raw.body, content_type=raw.content_type,
                             path_ids=raw.path_ids)
    device_id = raw.device_id if raw.device_id is not None else named.device_id
    f_cnt = raw.f_cnt if raw.f_cnt is not None else named.f_cnt
    dev_eui = named.dev_eui
    raw.status = STATUS_KEPT if stage == STAGE_KIND else STATUS_DEAD_LETTER
    raw.error = reason
    if existing is not None:
        existing.reason = reason
        existing.stage = stage
        existing.replay_result = f"still dead: {told}"
        letter = existing
    else:
        letter = DeadLetter(raw_uplink_id=raw.id, body=raw.body, reason=reason, stage=stage, source=raw.source)
        session.add(letter)
    collar = f"device_id={device_id}" + (f" dev_eui={dev_eui}" if dev_eui else "")
    collar += f" f_cnt={f_cnt}" if f_cnt is not None else ""
    log.warning(
        "dead letter %s stage=%s: %s",
        collar,
        stage,
        logged,
        extra={"raw_uplink_id": raw.id, "device_id": device_id, "dev_eui": dev_eui, "f_cnt": f_cnt,
               "stage": stage, "reason": logged},
    )
    return letter


__all__ = [
    "MalformedUplink",
    "StoreUnavailable",
    "store_raw",
    "claim",
    "dead_letter",
    "parser_for",
    "network_of",
    "Claim",
]
