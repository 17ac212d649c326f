"""One stored body through the layers: read (kind, uplink or event) → dedupe → decode (codec) → domain.

All of it in one unit of work, so a body is applied entirely or not at all. What happens when
something breaks:
- the body is not what its kind says (MalformedUplink): a dead letter with the reason (stage parse);
- the codec cannot decode the payload: a dead letter (stage decode), replayable after a codec fix;
- the store fails for a reason that passes (locked, read-only, full): nothing is written, the body
  stays `received`, the result is `pending`, and the bridge's timer processes it again
  (`Bridge.process_pending`) — never a dead letter for a transient reason;
- anything else (a bug): a dead letter (stage apply) with the exception, replayable after a fix.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from functools import cache
from typing import Any

from sqlalchemy import Integer, bindparam, func, literal_column, or_, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from lora_bridge import ingest
from lora_bridge.decode import dated, decode_payload
from lora_bridge.domain import campaigns, devices, frag_package, geofences, network_events, rules_cursors
from lora_bridge.domain.messages import (
    ANY_OFFLINE_COLUMN,
    OFFLINE_COLLARS,
    apply_message,
    close_offline_when_heard,
    read_ahead_for_collar_alerts,
)
from lora_bridge.errors import (
    MalformedUplink,
    StoreUnavailable,
    error_id,
    failure_context,
    is_transient_store_error,
    log_failure,
    said_of,
    store_unavailable,
)
from lora_bridge.group_commit import Submission
from lora_bridge.network_messages import (
    KIND_UNKNOWN,
    KIND_UPLINK,
    CollarNamed,
    NetworkEvent,
    read_network_message,
)
from lora_bridge.rules_file import RulesFileWatch
from lora_bridge.settings import BridgeSettings
from lora_bridge.store import bulk
from lora_bridge.store.changed_rows import update_by_core
from lora_bridge.store.database import Database
from lora_bridge.store.ids import expect_ids
from lora_bridge.store.plain_changes import write_plain_changes
from lora_bridge.store.row_values import ColumnReads
from lora_bridge.store.tables import (
    Alert,
    Animal,
    DeadLetter,
    Device,
    Geofence,
    RawUplink,
    RuleCursor,
    UpdateCampaign,
)
from lora_bridge.store.utc import as_utc, utc_now
from lora_bridge.uplink_formats import MAC_PORT, Uplink
from lora_bridge.views import IngestResult

log = logging.getLogger(__name__)
# The message name of a frame with a port and no payload.
EMPTY_FRAME = "empty_frame"
PAYLOAD_LEFT_OUT = ("the uplink came with decoded_payload and without frm_payload, the bytes Tembo decodes: the "
                    "webhook's field mask leaves out up.uplink_message.frm_payload; add it (this frame cannot be read)")

DONE_STATUSES = (
    ingest.STATUS_PROCESSED,
    ingest.STATUS_DUPLICATE,
    ingest.STATUS_RECORDED,
    ingest.STATUS_KEPT,
    ingest.STATUS_DEAD_LETTER,
)


def store_and_process_batch(
    db: Database,
    submissions: list[Submission],
    codec: Any,
    settings: BridgeSettings,
    after: Callable[[Session, list[IngestResult]], None] | None = None,
    take: Callable[[Session], list[Submission]] | None = None,
    *,
    rules_file: RulesFileWatch,
) -> tuple[bool, list[Submission]]:
    """Keep and apply a batch of bodies in ONE transaction (one commit, one fsync for all): with the
    bodies `take(session)` claims first (bodies other workers handed to this one, `collar_shares`:
    they came earlier), their raw rows in one multi-row insert, each body applied in turn, collar by
    collar, then `after(session, results)` (the rules, once per collar of the batch, over the taken
    bodies too, and whatever else the batch writes) — then the results are set on the submissions.

    Should anything fail inside it, nothing of it was written (not even what `after` wrote; the taken
    bodies wait for the next take), and the batch goes the two-step way: its raw rows committed alone
    first (StoreUnavailable set on every submission when even that fails: nothing was kept; a body
    whose raw row the store refuses gets that error, the others are kept: `ingest.store_raw_apart`),
    then each body processed by itself (`process_raw`). Returns whether the one transaction committed,
    and the submissions that the batch applied the two-step way, for the caller's per-body follow-up.
    """
    try:
        with db.write() as session:
            taken = take(session) if take is not None else []
            results, order = keep_and_apply(session, taken + submissions, codec, settings, rules_file=rules_file)
            if after is not None:
                after(session, [results[i] for i in order])
        db.refused_bodies.kept()  # a run of refusals the store was in ends with this batch: said once
        for submission, result in zip(submissions, results[len(taken):], strict=True):
            submission.result = result
        return True, []
    except Exception as error:  # noqa: BLE001 - the two-step path below keeps every body whatever it was
        failure = failure_context(error)
        log.info("batch of %d bodies fell back to store-then-process: %s", len(submissions), said_of(failure),
                 extra=failure)
    if not submissions:
        return False, []
    try:
        raw_ids = ingest.store_raw_apart(db, submissions)
    except StoreUnavailable as error:
        for submission in submissions:
            submission.error = error
        return False, []
    for submission, raw_id in zip(submissions, raw_ids, strict=True):
        if raw_id is not None:
            submission.result = process_raw(db, raw_id, codec, settings, submission=submission, rules_file=rules_file)
    return False, [submission for submission in submissions if submission.result is not None]


# What a batch changes in every collar it hears: the collars' rows and their rules' cursors, written by
# Core UPDATEs at its flushes, not object by object by the unit of work (`store.changed_rows`).
BATCH_CORE_UPDATED = (Device, RuleCursor)


def keep_and_apply(
    session: Session, submissions: list[Submission], codec: Any, settings: BridgeSettings, *, rules_file: RulesFileWatch
) -> tuple[list[IngestResult], list[int]]:
    """Inside session's transaction: keep the bodies of submissions as raw rows (`keep_raws`) and apply
    each, collar by collar; their results in the submissions' order, and the order they were applied
    in (indexes). Their fixes and summaries are written before it returns (before any savepoint of
    the rules)."""
    if not submissions:
        return [], []
    update_by_core(session, *BATCH_CORE_UPDATED)
    kept = [ingest.submitted(s) for s in submissions]
    # each row made with its arrival (None: now, `keep_raws`), not set again after: a set is a call a body
    raws = [ingest.raw_row_of({**values, "received_at": s.received_at})
            for values, s in zip(kept, submissions, strict=True)]
    keep_raws(session, raws)
    # each body parsed once (the durable intake hands in what it read on arrival), from what its raw row
    # keeps (not read back through the row's mapped attributes: five ORM reads a body)
    messages = [s.message if s.message is not None else _read_kept(values)
                for s, values in zip(submissions, kept, strict=True)]
    uplinks = [m for m in messages if isinstance(m, Uplink)]
    read_batch(session, uplinks)
    read_ahead_for_collar_alerts(session, codec, uplinks, settings)
    # Collar by collar (each collar's bodies in arrival order): two workers whose batches hold the
    # same collars lock their rows in the same order, so one waits, neither deadlocks.
    keys = _order_keys(messages, submissions)
    order = sorted(range(len(raws)), key=keys.__getitem__)
    # an uplink (nearly every body) straight to _process_uplink, as _process_loaded would hand it on
    applied = {i: _process_uplink(session, raws[i], messages[i], codec, settings, rules_file, None)
               if type(messages[i]) is Uplink else
               _process_loaded(session, raws[i], codec, settings, rules_file, None, messages[i]) for i in order}
    # the batch's collar changes, fixes and summaries, before the rules' savepoints; its raw rows, when
    # still held back, inserted as they are now and left out of the session: nothing changes them after this
    write_plain_changes(session)
    bulk.write_queued(session, attach=False)
    return [applied[i] for i in range(len(raws))], order


def _undecodable(session: Session, raw: RawUplink, existing: Any, uplink: Uplink, device: Any,
                 reason: str) -> IngestResult:
    """An uplink whose payload is not there to decode or does not decode: a dead letter (stage decode)."""
    named = CollarNamed(uplink.device_id, device.dev_eui or uplink.dev_eui, uplink.f_cnt)
    ingest.dead_letter(session, raw, ingest.STAGE_DECODE, reason, existing, named=named)
    return IngestResult(
        status=ingest.STATUS_DEAD_LETTER,
        raw_uplink_id=raw.id,
        device_id=uplink.device_id,
        f_cnt=uplink.f_cnt,
        reason=reason,
        stage=ingest.STAGE_DECODE,
        dev_eui=device.dev_eui, kind=KIND_UPLINK,
    )


def keep_raws(session: Session, raws: list[RawUplink]) -> None:
    """Put a batch's raw rows in its unit of work: their ids taken first, the rows held back until the
    batch needs them in the store (`bulk.defer_add`), so each is inserted once, in the state the batch
    left it, all in one statement, in the same transaction as everything else (acknowledged only once
    it is durable), not inserted and then updated row by row. On SQLite (whose write transaction
    excludes every other writer) the ids are the table's next ones and foreign keys are checked at
    the commit; on PostgreSQL they come from the table's sequence, in the batch's first statement
    (`read_batch_start`), and the rows go in
    before anything that refers to them (a dead letter, a claim in a savepoint)."""
    now = utc_now()
    sqlite = session.get_bind().dialect.name == "sqlite"
    if sqlite:
        bulk.defer_foreign_keys(session)  # rows of the batch refer to raw rows written at its end
    ids = read_batch_start(session, len(raws), sqlite=sqlite)
    for raw_id, raw in zip(ids, raws, strict=True):
        # rows just made (`ingest.raw_row_of`), no session's yet: their dicts are their state, set as
        # `bulk.set_values` would, without its two calls a row
        values = raw.__dict__
        values["id"] = raw_id
        if values["received_at"] is None:
            values["received_at"] = now
    bulk.defer_add(session, raws)


def read_batch_start(session: Session, count: int, *, sqlite: bool) -> list[int]:
    """Read in one statement, in the batch's transaction, what each batch asks the store once of its own
    and put the answers where their readers look for them in this unit of work (`session.info`, gone
    with it: the next batch reads them again): whether an update campaign runs (`campaigns.any_running`),
    whether any collar has an open offline alert (`messages.close_offline_when_heard`: with none, the
    collars are not read), the fences' fingerprint (`geofences.fence_version`, the fence cache's check
    for a ranger's edit). Returns the ids of the batch's `count` raw rows, ascending: on SQLite the
    table's next ones after its highest (its write transaction excludes every other writer), on
    PostgreSQL the sequence's next values, taken in the same statement (one round trip a batch, not two)."""
    # on the session's connection (`bulk.read_columns`): at a batch's start nothing is pending to flush
    if sqlite:
        row = bulk.read_columns(session, _BATCH_START_READS[True], {}, _BATCH_START_TABLES)[0]
        highest, running, offline, *fence_version = row
        first_id = int(highest or 0) + 1
        ids = list(range(first_id, first_id + count))
    else:
        row = bulk.read_columns(session, _BATCH_START_READS[False], {"count": count}, _BATCH_START_TABLES)[0]
        taken, running, offline, *fence_version = row
        ids = sorted(taken)
    session.info[campaigns.ANY_RUNNING] = bool(running)
    if not offline:
        session.info[OFFLINE_COLLARS] = set()
    session.info[geofences.FENCE_VERSION_READ] = geofences.fence_version_from(*fence_version)
    return ids


# The next ids of the raw rows' sequence (PostgreSQL), as many as asked (`count`), as one array.
_RAW_IDS_SEQUENCE = func.pg_get_serial_sequence(literal_column("'raw_uplinks'"), literal_column("'id'"))
_NEXT_RAW_IDS = (select(func.array_agg(func.nextval(_RAW_IDS_SEQUENCE)))
                 .select_from(func.generate_series(1, bindparam("count", type_=Integer))).scalar_subquery())
# read_batch_start's statement, built once (every batch runs it): scalar subqueries, one row
_BATCH_START_COLUMNS = [campaigns.ANY_RUNNING_COLUMN, ANY_OFFLINE_COLUMN, *geofences.fence_version_columns()]
_BATCH_START_READS = {
    True: select(select(func.max(RawUplink.id)).scalar_subquery(), *_BATCH_START_COLUMNS),  # SQLite
    False: select(_NEXT_RAW_IDS, *_BATCH_START_COLUMNS),
}
_BATCH_START_TABLES = frozenset({RawUplink.__table__, UpdateCampaign.__table__, Alert.__table__, Geofence.__table__})


# read_batch's statements, built once per count bucket of the batch's values (`bulk.in_list`): every
# batch runs them, building a statement with a literal list of a batch's values cost more than running
# its cached compilation, and an expanding parameter renders the IN list again at every execution.
@cache
def _collars_read(euis: int, labels: int, with_cursors: bool) -> Any:
    """The collars by DevEUI or name with the animal wearing each (one at most: animals.device_id is
    unique), one statement; euis, labels: their count buckets. with_cursors: each collar's rule cursor
    too (`rules_cursors.CURSOR_TEXT_COLUMNS`, one at most: it is keyed by the collar, its times as SQLite's
    texts), read with it where no lock must come first (SQLite)."""
    cursors = rules_cursors.CURSOR_TEXT_COLUMNS if with_cursors else ()
    read = select(Device, Animal, *cursors).outerjoin(Animal, Animal.device_id == Device.device_id)
    if with_cursors:
        read = read.outerjoin(RuleCursor, RuleCursor.device_id == Device.device_id)
    return (read.where(or_(bulk.in_list(Device.dev_eui, "eui", euis), bulk.in_list(Device.device_id, "label", labels)))
            .order_by(Device.device_id))


@cache
def _first_copies_read(keys: int) -> Any:
    """The first copies stored before this unit of work (the batch's own raw rows, held back, need not
    be added), locked as `ingest.claim_key` locks one: later copies merge into it one at a time."""
    return (select(RawUplink).where(bulk.in_list(RawUplink.dedup_key, "key", keys))
            .order_by(RawUplink.id).with_for_update()
            .execution_options(populate_existing=True, **{bulk.NOT_DEFERRED: True}))


def read_batch(session: Session, uplinks: list[Uplink]) -> None:
    """Read what a batch's uplinks need from the store in two statements, not three per uplink:
    their collars (by DevEUI and name) with the animals wearing them, and the stored first copies of
    their dedup keys (`ingest.claim` files a later copy against the one read here, and claims a key
    no stored copy holds without a look-up). A herd's copies heard by two gateways often come in
    different batches (two workers sharing the collars: one copy handed to its owner)."""
    euis = {u.dev_eui for u in uplinks if u.dev_eui}
    # a collar without a DevEUI may be filed under its application's name for it (`devices.collar_keys`)
    labels = {key for u in uplinks if u.device_id
              for key in ((u.device_id,) if u.dev_eui else devices.collar_keys(u.device_id, u.application_id,
                                                                                u.network_scope))}
    if not euis and not labels:
        return
    dialect = session.get_bind().dialect
    sqlite = dialect.name == "sqlite"
    with session.no_autoflush:
        eui_count, label_count = bulk.in_list_size(len(euis)), bulk.in_list_size(len(labels))
        rows = session.execute(_collars_read(eui_count, label_count, sqlite),
                               {**bulk.in_list_values("eui", list(euis), eui_count),
                                **bulk.in_list_values("label", list(labels), label_count)}).all()
        # each collar's columns read once (`ColumnReads`), in the order found (a collar worn by several
        # animals comes once)
        found = {row[0]: _BATCH_COLLAR_READS(row[0]) for row in rows}
        known = session.info.setdefault(devices.DEVICES_BY_EUI, {})
        for device, (_, eui, _) in found.items():  # the first by device_id, as `devices.resolve_device` picks
            if eui in euis and eui not in known:
                known[eui] = device
        by_id = {device_id: device for device, (device_id, _, _) in found.items()}
        unstored = (euis - {eui for _, eui, _ in found.values()}, labels - set(by_id))
        if sqlite:  # no other writer can file these collars, nor move their cursors, meanwhile
            session.info[devices.UNSTORED] = unstored
            # their rule cursors as read with them, for their rules (PostgreSQL's come with their lock)
            rules_cursors.keep_read_columns(session, dialect, [(found[row[0]][0], row[2:]) for row in rows])
        else:  # a collar first heard in the batch gets an animal: their ids in one round trip, not one each
            expect_ids(session, {Animal: len(unstored[0]) + sum(1 for u in uplinks if not u.dev_eui and u.device_id
                                                                and u.device_id in unstored[1])})
        # Their rule cursors before anything of theirs is written (`rules_cursors`' lock order).
        rules_cursors.lock_cursors(session, by_id)
        animals = session.info.setdefault(devices.ANIMALS_BY_DEVICE, {})
        for device, animal, *_ in rows:
            if animal is not None:  # worn on this collar (the join's condition): its id read with the collar's
                animals.setdefault(found[device][0], animal)
        keys = set()
        digests = session.info.setdefault(ingest.PAYLOAD_DIGESTS, {})  # handed on to `ingest.claim`
        for uplink in uplinks:
            device = known.get(uplink.dev_eui) if uplink.dev_eui else devices.named_collar(
                by_id.get, uplink.device_id, dev_eui=None, application_id=uplink.application_id,
                network_scope=uplink.network_scope)
            if device is not None:
                device_id, _, number = found[device]
                if number is not None:
                    keys.add(ingest.dedup_key(device_id, number, uplink, digests))
        if keys:
            ingest.lock_keys(session, keys)  # PostgreSQL: what is unclaimed now stays so till the commit
            stored = session.info.setdefault(ingest.CLAIMED_KEYS, {})
            count = bulk.in_list_size(len(keys))
            for first in session.scalars(_first_copies_read(count), bulk.in_list_values("key", list(keys), count)):
                stored.setdefault(first.dedup_key, first)
            session.info.setdefault(ingest.UNCLAIMED_KEYS, set()).update(keys - set(stored))


_BATCH_COLLAR_READS = ColumnReads("device_id", "dev_eui", "session")  # what `read_batch` reads of each collar


def _read(raw: RawUplink) -> Uplink | NetworkEvent | MalformedUplink:
    """What raw holds (an uplink or a network event), or why it cannot be read."""
    try:
        return read_network_message(
            ingest.network_of(raw.source), raw.event, raw.body, content_type=raw.content_type, path_ids=raw.path_ids
        )
    except MalformedUplink as error:
        return error


def _read_kept(kept: dict[str, Any]) -> Uplink | NetworkEvent | MalformedUplink:
    """`_read` of a raw row not made yet, from what `ingest.delivered` keeps of its body (the same values)."""
    try:
        return read_network_message(ingest.network_of(kept["source"]), kept["event"], kept["body"],
                                    content_type=kept["content_type"], path_ids=kept["path_ids"])
    except MalformedUplink as error:
        return error


def _order_keys(messages: list[Uplink | NetworkEvent | MalformedUplink], submissions: list[Submission]) -> list[str]:
    """The key a batch orders each body by (`keep_and_apply`): its collar's DevEUI, the same for every
    message of one collar whatever its kind, so that a collar's bodies keep their arrival order. A
    message that names its device without the DevEUI (a TTS `downlink_failed`, a field-masked join)
    takes the DevEUI another message of the batch gives that device; the topic or path ids had been
    taken before the body's own DevEUI, and a rejoined collar's first uplink was applied before the
    join that came ahead of it in the batch, in its old session."""
    named: dict[tuple[str, str | None, str], str] | None = None  # read once a message without its DevEUI asks
    keys = []
    for message, submission in zip(messages, submissions, strict=True):
        if isinstance(message, Uplink | NetworkEvent) and (message.dev_eui or message.device_id):
            eui = message.dev_eui
            if not eui:
                if named is None:
                    named = _euis_named(messages)
                eui = named.get(_device_of(message))
            keys.append((eui or message.device_id or "").lower())
        else:
            keys.append(collar_hint(submission))
    return keys


def _euis_named(messages: list[Uplink | NetworkEvent | MalformedUplink]) -> dict[tuple[str, str | None, str], str]:
    """(network, application, device) -> the DevEUI the first of messages naming both gives it."""
    named: dict[tuple[str, str | None, str], str] = {}
    for message in messages:
        if isinstance(message, Uplink | NetworkEvent) and message.dev_eui and message.device_id:
            named.setdefault(_device_of(message), message.dev_eui)
    return named


def _device_of(message: Uplink | NetworkEvent) -> tuple[str, str | None, str]:
    """(network, application id, device name) of a message's sender."""
    network = message.source if isinstance(message, Uplink) else message.network
    return network, message.application_id, message.device_id or ""


def collar_hint(submission: Submission) -> str:
    """The collar a body names, read cheaply (topic or path ids, else the JSON's ids) to order a
    batch by; "" when it names none that way (a Protobuf body without ids: it keeps its place)."""
    ids = submission.path_ids or {}
    hint = ids.get("dev_eui") or ids.get("device_id")
    if hint:
        return str(hint).lower()
    try:
        document = json.loads(submission.body)
        if not isinstance(document, dict):
            return ""
        tts = document.get("end_device_ids")
        if isinstance(tts, dict):
            return str(tts.get("dev_eui") or tts.get("device_id") or "").lower()
        chirpstack = document.get("deviceInfo")
        if isinstance(chirpstack, dict):
            return str(chirpstack.get("devEui") or chirpstack.get("deviceName") or "").lower()
    except (ValueError, UnicodeDecodeError):
        pass
    return ""


def process_raw(
    db: Database,
    raw_uplink_id: int,
    codec: Any,
    settings: BridgeSettings,
    dead_letter_id: int | None = None,
    *,
    submission: Submission | None = None,
    rules_file: RulesFileWatch,
) -> IngestResult:
    """Read, dedupe, decode and apply the stored body raw_uplink_id; returns what happened. submission
    (the body as it came, when the caller has it) names its collar in a log line the store cannot;
    rules_file: the rules file the bridge works by (`Bridge.rules_file`)."""
    for attempt in (1, 2):
        try:
            with db.write() as session:
                result = _process(session, raw_uplink_id, codec, settings, rules_file, dead_letter_id)
            if db.unapplied_bodies.total:  # a run of bodies the store could not apply: this one ends it
                db.unapplied_bodies.kept()
            return result
        except IntegrityError as error:
            if attempt == 1:
                continue  # another worker created the same collar or claim a moment ago: read again
            return _after_failure(db, raw_uplink_id, dead_letter_id, error, submission)
        except OperationalError as error:
            if attempt == 1 and _lost_a_race(error):
                continue  # PostgreSQL chose this transaction to end a deadlock with another worker
            return _after_failure(db, raw_uplink_id, dead_letter_id, error, submission)
        except Exception as error:  # noqa: BLE001 - every failure is either retried or kept with its reason
            return _after_failure(db, raw_uplink_id, dead_letter_id, error, submission)
    raise AssertionError("unreachable")


def _lost_a_race(error: OperationalError) -> bool:
    """A deadlock or serialization failure: the store is fine, trying again is the cure."""
    return getattr(error.orig, "sqlstate", None) in ("40P01", "40001")


def _after_failure(db: Database, raw_uplink_id: int, dead_letter_id: int | None, error: BaseException,
                   submission: Submission | None = None) -> IngestResult:
    """The body raw_uplink_id failed with error: pending when the store takes no write now, else kept as
    a dead letter. The log (and the result's reason, which the webhook logs) gets the driver's first
    line, the collar and frame counter and an error_id, never the SQL nor its parameters (a collar's
    position and ids); a dead letter's line has the traceback too, redacted (`errors.log_failure`: its
    frames, each error said by its class and the driver's first line). Until 6 December it had no
    traceback when the error came from a statement, and the operator could not tell where it came
    from. The dead letter row keeps the whole error for the admins who inspect it."""
    failure = failure_context(error, error_id())
    said, driver = failure["error_id"], failure["driver_said"]
    named = ingest.uplinks_named([submission]) if submission is not None else "?"
    if is_transient_store_error(error):
        if db.unapplied_bodies.refused(said):  # the first of a run in full, the others summed up
            log.warning("store unavailable while processing raw_uplink_id=%d %s; retried later: %s",
                        raw_uplink_id, named, said_of(failure),
                        extra={"raw_uplink_id": raw_uplink_id, "uplinks": named, **failure})
        return IngestResult(status=ingest.STATUS_PENDING, raw_uplink_id=raw_uplink_id,
                            reason=f"{store_unavailable(error)} error_id={said}")
    told = f"processing failed: {type(error).__name__}: {driver} error_id={said}"
    try:
        with db.write() as session:
            raw = session.get(RawUplink, raw_uplink_id)
            named = ingest.uplinks_named([raw]) if raw is not None else named
            existing = session.get(DeadLetter, dead_letter_id) if dead_letter_id else None
            # the whole error for the admins who inspect the row; the log gets what the caller is told,
            # with the collar and frame counter read of the body (the failed apply rolled them back on raw)
            ingest.dead_letter(session, raw, ingest.STAGE_APPLY, f"processing failed: {error!r}"[:1000], existing,
                               told=told)
    except Exception as second:
        if is_transient_store_error(second):
            return IngestResult(status=ingest.STATUS_PENDING, raw_uplink_id=raw_uplink_id, reason=told)
        raise
    finally:
        log_failure(log, error, "body processing failed raw_uplink_id=%d %s:", raw_uplink_id, named,
                    context={"raw_uplink_id": raw_uplink_id, "uplinks": named}, said=said)
    return IngestResult(
        status=ingest.STATUS_DEAD_LETTER, raw_uplink_id=raw_uplink_id, reason=told, stage=ingest.STAGE_APPLY
    )


def _process(
    session: Session, raw_uplink_id: int, codec: Any, settings: BridgeSettings, rules_file: RulesFileWatch,
    dead_letter_id: int | None,
) -> IngestResult:
    raw = session.get(RawUplink, raw_uplink_id, with_for_update=True)
    if raw is None:
        raise ValueError(f"no raw uplink {raw_uplink_id}")
    if dead_letter_id is None and raw.status in DONE_STATUSES:
        return _result_of(raw)  # already processed (by another worker, or the timer got there first)
    existing = session.get(DeadLetter, dead_letter_id) if dead_letter_id else None
    if existing is not None and existing.replayed_at is not None:
        # Replayed meanwhile by another run (the CLI and the API, two operators: each read the letter
        # waiting before either applied it; the body's row lock above makes this one wait for the
        # other's commit). Applied again, a collar alert had been "repeated" and its ack queued twice.
        return _result_of(raw)
    message = _read(raw)
    if isinstance(message, Uplink):
        read_batch(session, [message])  # read as a batch reads its collars (on PostgreSQL the cursor row first)
    return _process_loaded(session, raw, codec, settings, rules_file, existing, message)


def _process_loaded(
    session: Session,
    raw: RawUplink,
    codec: Any,
    settings: BridgeSettings,
    rules_file: RulesFileWatch,
    existing: DeadLetter | None,
    message: Uplink | NetworkEvent | MalformedUplink | None = None,
) -> IngestResult:
    if message is None:
        message = _read(raw)
    if type(message) is Uplink:  # nearly every body: an uplink, without asking the other kinds (a call each)
        return _process_uplink(session, raw, message, codec, settings, rules_file, existing)
    if isinstance(message, MalformedUplink):
        error = message
        first = ingest.claim_key(session, raw, ingest.body_key(raw))
        if first is None:
            ingest.dead_letter(session, raw, ingest.STAGE_PARSE, str(error), existing)
        else:
            # The network server tries the refused body again (TTS: any non-2xx is a failed try): one
            # dead letter per body, its tries counted from its copies (`queries.dead_letter_views`).
            bulk.set_values(raw, {"error": str(error)})
            ingest.file_as_copy(raw, first)
            # A letter of the same body kept before the bodies were keyed (an older store) folds into it.
            _close_replayed(existing, f"a try of dead letter of raw_uplink_id={first.id}")
        return IngestResult(
            status=ingest.STATUS_DEAD_LETTER, raw_uplink_id=raw.id, reason=str(error), stage=ingest.STAGE_PARSE,
            duplicate_of=first.id if first is not None else None,
        )
    if isinstance(message, NetworkEvent):
        return _record_event(session, raw, message, existing, settings.max_clock_ahead_s)
    return _process_uplink(session, raw, message, codec, settings, rules_file, existing)


def _record_event(
    session: Session, raw: RawUplink, event: NetworkEvent, existing: DeadLetter | None, max_ahead_s: float
) -> IngestResult:
    fresh_after = as_utc(raw.received_at) - event.copies_within if event.copies_within else None
    first = ingest.claim_key(session, raw, network_events.dedup_key(event, raw.body), fresh_after)
    if first is not None:
        # The same message delivered again: a retry, a redelivery, the other integration's copy.
        # It was recorded and applied with its first copy; this one is kept as a copy of it.
        bulk.set_values(raw, {"device_id": first.device_id, "message": event.kind})
        ingest.file_as_copy(raw, first)
        _close_replayed(existing, ingest.STATUS_DUPLICATE)
        log.info("%s delivered again device_id=%s: a copy of raw_uplink_id=%d", event.kind, first.device_id, first.id,
                 extra={"device_id": first.device_id, "event": event.event, "first_raw_uplink_id": first.id})
        return IngestResult(status=ingest.STATUS_DUPLICATE, raw_uplink_id=raw.id, device_id=first.device_id,
                            message=event.kind, duplicate_of=first.id, dev_eui=event.dev_eui, kind=event.kind)
    outcome = network_events.record(session, raw, event, max_ahead_s=max_ahead_s)
    if outcome.kept_reason is not None:
        ingest.dead_letter(session, raw, ingest.STAGE_KIND, outcome.kept_reason, existing)
        return IngestResult(
            status=ingest.STATUS_KEPT,
            raw_uplink_id=raw.id,
            device_id=outcome.device_id,
            message=event.event,
            reason=outcome.kept_reason,
            stage=ingest.STAGE_KIND,
            dev_eui=event.dev_eui, kind=event.kind,
        )
    raw.status = ingest.STATUS_RECORDED
    raw.message = event.kind
    raw.processed_at = utc_now()
    raw.error = None
    _close_replayed(existing, ingest.STATUS_RECORDED)
    closed: list[int] = []
    if outcome.joined is not None and outcome.joined_at is not None:  # a join request: the collar is alive
        closed = close_offline_when_heard(session, outcome.joined, outcome.joined_at)
    return IngestResult(
        status=ingest.STATUS_RECORDED,
        raw_uplink_id=raw.id,
        device_id=outcome.device_id,
        message=event.kind,
        downlink_ids=tuple(outcome.downlink_ids),
        dev_eui=event.dev_eui, kind=event.kind,
        closed_alert_ids=tuple(closed),
    )


def _process_uplink(
    session: Session,
    raw: RawUplink,
    uplink: Uplink,
    codec: Any,
    settings: BridgeSettings,
    rules_file: RulesFileWatch,
    existing: DeadLetter | None,
) -> IngestResult:
    # Dated (and stored, for every reader of heard_at) by the time the bridge uses: the network's,
    # else the arrival; a disbelieved network time is kept in heard_at_reported.
    heard_at = network_events.network_time(uplink.heard_at, as_utc(raw.received_at), settings.max_clock_ahead_s,
                                           what=f"f_cnt={uplink.f_cnt}", device_id=uplink.device_id)
    if heard_at != uplink.heard_at:
        if uplink.heard_at is not None:
            raw.heard_at_reported = uplink.heard_at
        uplink = dataclasses.replace(uplink, heard_at=heard_at)
    device = devices.resolve_device(
        session,
        dev_eui=uplink.dev_eui,
        label=uplink.device_id,
        network=uplink.source,
        application_id=uplink.application_id,
        network_scope=uplink.network_scope,
        first_seen=heard_at,
    )
    device_id = device.device_id  # its key: read once, not through the mapped attribute at every use
    if uplink.device_id != device_id:
        uplink = dataclasses.replace(uplink, device_id=device_id)
    session_number = devices.session_for_uplink(device, uplink.f_cnt, heard_at)
    claim = ingest.claim(session, raw, uplink, device_id, session_number,
                         first_heard=device_id in session.info.get(devices.CREATED, ()))
    if claim.duplicate_of is not None:
        _close_replayed(existing, ingest.STATUS_DUPLICATE)
        return IngestResult(
            status=ingest.STATUS_DUPLICATE,
            raw_uplink_id=raw.id,
            device_id=device_id,
            f_cnt=uplink.f_cnt,
            duplicate_of=claim.duplicate_of,
            dev_eui=device.dev_eui, kind=KIND_UPLINK,
        )
    if uplink.payload_left_out:
        log.warning("uplink without its payload: the webhook's field mask leaves out frm_payload",
                    extra={"device_id": uplink.device_id, "f_cnt": uplink.f_cnt})
        return _undecodable(session, raw, existing, uplink, device, PAYLOAD_LEFT_OUT)
    if uplink.f_port == MAC_PORT or not uplink.payload:
        # MAC commands only (port 0: the network server has used them), or a frame with a port and no
        # payload (LoRaWAN allows it; TTS then leaves frm_payload out, ChirpStack `data`): nothing to
        # decode, nothing to replay after a codec fix; the frame still counts and says the collar lives.
        heard = devices.device_for_uplink(session, uplink, heard_at, device)
        closed = close_offline_when_heard(session, heard, heard_at)
        return _done(raw, existing, uplink, "mac_commands" if uplink.f_port == MAC_PORT else EMPTY_FRAME, (),
                     dev_eui=device.dev_eui, closed_alert_ids=tuple(closed))
    # TS004's answers are laid out as the version the collar's fragmentation session speaks (frag_package.py)
    frag_version = frag_package.session_version(session, device_id, codec) \
        if uplink.f_port == getattr(codec, "PORT_FRAGMENTS", None) else frag_package.V1
    decoded = decode_payload(codec, uplink.f_port, uplink.payload, frag_version)
    if decoded.fields is None:
        reason = decoded.reason or "undecodable"
        return _undecodable(session, raw, existing, uplink, device, reason)
    # the first message's `dated` (its time is `message_time`'s): read once, for the raw row and for applying it
    first_dated = dated(decoded.fields, heard_at)
    downlink_ids: list[int] = []
    alert_ids: list[int] = []
    closed_alert_ids: list[int] = []
    for fields in decoded.answers:  # one message, or each answer of a FUOTA uplink that carries several, in order
        applied = apply_message(
            session, raw=raw, uplink=uplink, fields=fields, heard_at=heard_at, codec=codec, settings=settings,
            rules_file=rules_file, device=device, dates=first_dated if fields is decoded.fields else None,
        )
        # most messages queue, raise and close nothing: no call for their empty lists
        if applied.downlink_ids:
            downlink_ids.extend(applied.downlink_ids)
        if applied.alert_ids:
            alert_ids.extend(applied.alert_ids)
        if applied.closed_alert_ids:
            closed_alert_ids.extend(applied.closed_alert_ids)
    # the collar holds the uplink's DevEUI when it gave one (resolve_device made it so): not read back
    result = _done(raw, existing, uplink, decoded.message, tuple(downlink_ids), tuple(alert_ids),
                   dev_eui=uplink.dev_eui or device.dev_eui, closed_alert_ids=tuple(closed_alert_ids),
                   backfilled=devices.is_backfilled(first_dated[0], heard_at))
    return result


def _done(
    raw: RawUplink,
    existing: DeadLetter | None,
    uplink: Uplink,
    message: str | None,
    downlink_ids: tuple[int, ...],
    alert_ids: tuple[int, ...] = (),
    *,
    dev_eui: str | None = None,
    closed_alert_ids: tuple[int, ...] = (),
    backfilled: bool | None = None,
) -> IngestResult:
    """raw processed as message; backfilled: whether its message waited in the collar's queue (a decoded
    uplink's), set with the rest in one step (nothing reads it while the uplink is applied)."""
    values = {"status": ingest.STATUS_PROCESSED, "message": message, "processed_at": utc_now(), "error": None}
    if backfilled is not None:
        values["backfilled"] = backfilled
    bulk.set_values(raw, values)
    if existing is not None:  # a dead letter replayed; a batch's bodies have none: no call for them
        _close_replayed(existing, ingest.STATUS_PROCESSED)
    if log.isEnabledFor(logging.INFO):  # asked once, not again inside log.info: every uplink passes here
        log.info(
            "uplink processed device_id=%s f_cnt=%s message=%s",
            uplink.device_id,
            uplink.f_cnt,
            message,
            extra={"device_id": uplink.device_id, "f_cnt": uplink.f_cnt, "message_name": message},
        )
    return IngestResult(
        status=ingest.STATUS_PROCESSED,
        raw_uplink_id=raw.id,
        device_id=uplink.device_id,
        f_cnt=uplink.f_cnt,
        message=message,
        alert_ids=alert_ids,
        downlink_ids=downlink_ids,
        dev_eui=dev_eui, kind=KIND_UPLINK,
        closed_alert_ids=closed_alert_ids,
    )


def _result_of(raw: RawUplink) -> IngestResult:
    stage = None
    if raw.status == ingest.STATUS_DEAD_LETTER and raw.message is None and raw.f_cnt is None:
        stage = ingest.STAGE_PARSE
    return IngestResult(
        status=raw.status,
        raw_uplink_id=raw.id,
        device_id=raw.device_id,
        f_cnt=raw.f_cnt,
        message=raw.message,
        reason=raw.error,
        duplicate_of=raw.duplicate_of,
        stage=stage,
        kind=_kind_of(raw),
    )


def _kind_of(raw: RawUplink) -> str | None:
    """What an applied raw row held: an uplink (it has a frame counter), else the network event's kind
    its message keeps, or a kind kept for inspection."""
    if raw.f_cnt is not None:
        return KIND_UPLINK
    if raw.status == ingest.STATUS_KEPT:
        return KIND_UNKNOWN
    return raw.message if raw.status in (ingest.STATUS_RECORDED, ingest.STATUS_DUPLICATE) else None


def _close_replayed(letter: DeadLetter | None, result: str) -> None:
    if letter is not None:
        letter.replayed_at = utc_now()
        letter.replay_result = result


# ---- bodies already stored, taken by a worker (lora_bridge.collar_shares) ------------------------


def apply_taken_in(
    session: Session, take: Callable[[Session], list[int]], codec: Any, settings: BridgeSettings, *,
    rules_file: RulesFileWatch,
) -> list[IngestResult]:
    """Inside session's transaction: the stored bodies `take(session)` claims (raw ids, in collar
    order), each locked and applied (a body some other worker or the timer applied meanwhile is left
    as it is), like an ingest batch: each parsed once, their collars, animals and unclaimed dedup
    keys read in three statements, fixes and summaries written in one statement per table. Their
    results; the caller runs the rules and commits."""
    raw_ids = take(session)
    if not raw_ids:
        return []
    update_by_core(session, *BATCH_CORE_UPDATED)
    # Every taken row locked in one statement (not one per body).
    raws = {raw.id: raw for raw in session.scalars(
        select(RawUplink).where(RawUplink.id.in_(raw_ids)).order_by(RawUplink.id).with_for_update()
    )}
    messages = {raw_id: _read(raw) for raw_id, raw in raws.items() if raw.status not in DONE_STATUSES}
    read_batch(session, [m for m in messages.values() if isinstance(m, Uplink)])
    results = [
        _result_of(raws[raw_id]) if raw_id not in messages
        else _process_loaded(session, raws[raw_id], codec, settings, rules_file, None, messages[raw_id])
        for raw_id in raw_ids
    ]
    write_plain_changes(session)
    bulk.write_queued(session)
    return results


def apply_handed_in(
    session: Session, take: Callable[[Session], list[Submission]], codec: Any, settings: BridgeSettings, *,
    rules_file: RulesFileWatch,
) -> list[IngestResult]:
    """Inside session's transaction: the bodies `take(session)` claims (bodies another worker kept and
    handed to this one, `lora_bridge.collar_shares`), kept and applied as an ingest batch keeps and
    applies its own (`keep_and_apply`); their results, collar by collar. The caller runs the rules and
    commits."""
    handed = take(session)
    if not handed:
        return []
    results, order = keep_and_apply(session, handed, codec, settings, rules_file=rules_file)
    return [results[i] for i in order]


def process_handed_batch(
    db: Database,
    take: Callable[[Session], list[Submission]],
    codec: Any,
    settings: BridgeSettings,
    after: Callable[[Session, list[IngestResult]], None] | None = None,
    *,
    rules_file: RulesFileWatch,
) -> tuple[list[IngestResult], bool]:
    """Apply handed bodies in ONE transaction (`apply_handed_in`), then `after(session, results)`, one
    commit. Should that fail, nothing of it was written: the bodies are taken again in a transaction
    that keeps them as raw rows `received`, then applied one by one (`_applied_apart`). Returns the
    results and whether the batch went one by one."""
    return _applied_apart(db, lambda session: apply_handed_in(session, take, codec, settings, rules_file=rules_file),
                          lambda session: ingest.insert_raw_rows(session, take(session)), codec, settings, after,
                          rules_file)


def process_taken_batch(
    db: Database,
    take: Callable[[Session], list[int]],
    codec: Any,
    settings: BridgeSettings,
    after: Callable[[Session, list[IngestResult]], None] | None = None,
    *,
    rules_file: RulesFileWatch,
) -> tuple[list[IngestResult], bool]:
    """Apply stored bodies in ONE transaction (`apply_taken_in`), then `after(session, results)`, one
    commit. Should that fail, nothing of it was written, and the bodies are taken in a transaction of
    their own and applied one by one (`_applied_apart`). Returns the results and whether the batch
    went one by one."""
    return _applied_apart(db, lambda session: apply_taken_in(session, take, codec, settings, rules_file=rules_file),
                          take, codec, settings, after, rules_file)


def _applied_apart(
    db: Database,
    apply_in: Callable[[Session], list[IngestResult]],
    take_raw_ids: Callable[[Session], list[int]],
    codec: Any,
    settings: BridgeSettings,
    after: Callable[[Session, list[IngestResult]], None] | None,
    rules_file: RulesFileWatch,
) -> tuple[list[IngestResult], bool]:
    """`apply_in(session)` and `after` in one transaction; should that fail, the bodies' raw ids taken
    in a transaction of their own (`take_raw_ids`) and each applied by itself (`process_raw`; one still
    `received` after a crash in between is the timer's, `Bridge.process_pending`)."""
    try:
        with db.write() as session:
            results = apply_in(session)
            if after is not None and results:
                after(session, results)
        return results, False
    except Exception as error:  # noqa: BLE001 - every body is still kept; applied one by one below
        failure = failure_context(error)
        log.info("batch apart fell back to one by one: %s", said_of(failure), extra=failure)
    try:
        with db.write() as session:
            raw_ids = take_raw_ids(session)
    except Exception as error:  # noqa: BLE001 - nothing was taken; the next round tries again
        log.warning("bodies not taken (%s); tried again later", type(error).__name__)
        return [], True
    return [process_raw(db, raw_id, codec, settings, rules_file=rules_file) for raw_id in raw_ids], True
