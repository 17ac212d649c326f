"""The bridge's service layer: the only door the dashboard, the HTTP API and the CLI go through.

    bridge = open_bridge("sqlite:///var/tembo.db")
    bridge.ingest_network_message("tts", "up", body)   # store raw first (fsynced), then read and apply
    amani = Viewer("amani", "ranger")       # who asks: positions, tracks and alerts follow their role
    bridge.animals(viewer=amani); bridge.open_alerts(viewer=amani)  # frozen views, aware UTC times
    bridge.acknowledge_alert(7, amani); bridge.resolve_alert(7, amani, "true")

Location privacy (lora_bridge.access) is applied here: every method that returns animals,
positions, tracks or alerts takes the `viewer` and hands out only what its role may see, and every
read of positions is written to the audit log before the answer is returned.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from time import monotonic
from typing import Any

import httpx
from sqlalchemy import and_, func, select, text, true

from lora_bridge import https, ingest, queries, warm_up
from lora_bridge.access import accounts, audit, delayed, privacy, roles, throttle
from lora_bridge.access.roles import Viewer, require
from lora_bridge.collar_shares import keep_stranded_handovers
from lora_bridge.decode import default_codec
from lora_bridge.domain import (
    activity,
    alerts,
    collar_fences,
    devices,
    downlinks,
    geofences,
    geography,
    herd,
    rules,
    rules_engine,
    rules_lifecycle,
)
from lora_bridge.domain.geofence_files import far_from_reserve, read_fence_file
from lora_bridge.durable_intake import DurableIntake
from lora_bridge.errors import (
    AuthenticationFailed,
    InvalidCommand,
    InvalidHerdChange,
    InvalidRequest,
    InvalidTransition,
    StoreUnavailable,
    TooManyAttempts,
    UnknownAlert,
    UnknownAnimal,
    UnknownCampaign,
    UnknownDeadLetter,
    UnknownDevice,
    UnknownGeofence,
    failure_context,
    is_transient_store_error,
    log_failure,
    redacted,
    said_of,
    store_unavailable,
)
from lora_bridge.group_commit import GroupCommit, Submission
from lora_bridge.network_messages import EVENT_KINDS, NETWORKS, canonical_event, collar_named, event_name_of
from lora_bridge.network_server import NetworkServerClient
from lora_bridge.notify import channels, outbox
from lora_bridge.notify.config import CHANNELS
from lora_bridge.notify.outbox import DrainReport
from lora_bridge.outbox import Outbox, OutboxWorker
from lora_bridge.pipeline import (
    keep_and_apply,
    process_handed_batch,
    process_raw,
    process_taken_batch,
    store_and_process_batch,
)
from lora_bridge.rules_file import RulesFile, RulesFileWatch, one_line, read_rules_file
from lora_bridge.settings import BridgeSettings, InvalidSettings, load_settings
from lora_bridge.store import bulk, retention, write_lock
from lora_bridge.store.database import Database, open_database
from lora_bridge.store.retention import Compaction, DeadLetterCompaction
from lora_bridge.store.tables import (
    IS_AN_ANIMAL,
    ActivitySummary,
    Alert,
    AlertEvent,
    Animal,
    DeadLetter,
    Device,
    Downlink,
    Geofence,
    NetworkEvent,
    Notification,
    Position,
    RawUplink,
    UpdateCampaign,
)
from lora_bridge.store.utc import as_utc, utc_now
from lora_bridge.uplink_formats import SOURCE_CHIRPSTACK, SOURCE_TTS
from lora_bridge.views import (
    ActivityView,
    AlertEventView,
    AlertView,
    AnimalView,
    CollarHealthView,
    CollarInStockView,
    CollarWornView,
    DeadLetterView,
    DeviceView,
    DownlinkView,
    GeofenceView,
    HerdEntryView,
    IngestResult,
    NotificationView,
    PositionView,
    ReplayReport,
)

log = logging.getLogger(__name__)

# How often an API token's last use is written (`tembo tokens list` shows it to the minute): not a
# write, and a wait for the store's write lock, on every API request.
TOKEN_STAMP_EVERY = timedelta(minutes=1)
# How long a request (or a dashboard page's sign-in check) waits for the store's write lock to stamp
# its token's (its sign-in's) last use, at most (a backup holding the lock for minutes would otherwise
# hold each request for the store's whole busy timeout).
TOKEN_STAMP_WAIT_S = 0.2


def _rules_file_at_start(path: str | None) -> RulesFile:
    """The rule profiles and notification settings of the rules file at path (TEMBO_RULES_PATH);
    InvalidSettings, in one line, when it does not read or holds what they do not know (it had been
    a traceback at start)."""
    try:
        return read_rules_file(path)
    except InvalidRequest as error:
        raise InvalidSettings(f"rules_path (TEMBO_RULES_PATH): {one_line(error)}") from None


class Bridge:
    """One handle on the Tembo store and pipeline; safe to share between threads."""

    def __init__(
        self,
        settings: BridgeSettings | None = None,
        *,
        codec: Any = None,
        http_client: httpx.Client | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings or load_settings()
        self.codec = codec if codec is not None else default_codec()
        # The rules file before the store: a mistake in it stops the bridge in one line, store untouched.
        rules_file = _rules_file_at_start(self.settings.rules_path)
        self.notify_config = rules_file.notify
        self.db: Database = open_database(
            self.settings.database_url, self.settings.sqlite_busy_timeout_ms, synchronous=self.settings.sqlite_synchronous,
            connect_timeout_s=self.settings.database_connect_timeout_s,
        )
        self.network_server = NetworkServerClient(self.settings, http_client)
        self.rules_runtime = rules_engine.RulesRuntime(rules_file.rules)
        # The one watch of the rules file: the applier (`pipeline`), the rules, the notifications and
        # /metrics all work by the version it holds (`_use_rules_file` swaps in each new one).
        self.rules_file = RulesFileWatch(self.settings.rules_path, rules_file, on_change=self._use_rules_file)
        self._notify_client = http_client or https.client(timeout=self.notify_config.retry.timeout_s)
        self.senders = channels.senders_for(self.notify_config, self._notify_client)
        self.outbox = Outbox(self.db, self.settings, self.network_server, lambda: self.clock())
        self._outbox_worker: OutboxWorker | None = None
        # Bodies that arrive together are kept and applied together (lora_bridge.group_commit).
        self._group_commit = GroupCommit(self._write_batch, self.settings.ingest_max_batch)
        # One batch at a time per bridge: an ingest batch and a batch of taken hand-overs (collar
        # shares) hold the same collars' rows, and would otherwise wait on each other's locks.
        self._writer_turn = threading.Lock()
        # Set by a worker sharing the collars (`collar_shares.CollarShare`): claims the bodies handed
        # to this worker inside a transaction; each ingest batch applies them with its own bodies.
        self.take_handovers: Callable[[Any], list[Submission]] | None = None
        # Set by the same share: writes the hand-over rows of bodies of other workers' collars
        # (`Submission.for_owner`) inside a transaction; each ingest batch writes its own in its own.
        self.hand_over: Callable[[Any, list[Submission]], None] | None = None
        self._handed_over = 0
        self._batch_started = self._batch_ended = 0.0  # monotonic() of this bridge's last ingest batch
        self._batches_fell_back = 0
        # Batches applied outside an ingest batch (`_apply_apart`: hand-overs an idle share took) and
        # their bodies
        self._apart_batches = self._apart_bodies = 0
        self._intake: DurableIntake | None = None
        self._intake_lock = threading.Lock()
        # Set in an intake applier process (lora_bridge.intake_applier): the downlinks its batches
        # queued go to the webhook process's outbox worker instead of one of its own.
        self.outbox_wakes: Callable[[list[int] | None], None] | None = None
        # The clock that location delays are measured on (aware UTC); tests and replays may set it.
        self.clock = clock
        # Per thread: the reads of positions an `audit_deferred` block collects instead of logging.
        self._deferred_reads = threading.local()
        # SHA-256 of an API token -> when its last use was stamped in the store (`_stamp_token_use`).
        self._token_stamps: dict[str, datetime] = {}

    def __repr__(self) -> str:
        return f"Bridge({self.settings!r})"

    def close(self) -> None:
        """Stop the durable intake (what it holds is written and applied first) and the outbox worker;
        release the store's connections and the network-server client."""
        if self._intake is not None:
            self._intake.stop()
        if self._outbox_worker is not None:
            self._outbox_worker.stop()
        self.db.dispose()
        self.network_server.close()
        self._notify_client.close()

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Ingest ----------------------------------------------------------------------------------

    def ingest_network_message(
        self,
        network: str,
        event: str | None,
        body: bytes,
        *,
        content_type: str | None = "application/json",
        path_ids: dict[str, str] | None = None,
    ) -> IngestResult:
        """Any message a network server sends, from any adapter (webhook, MQTT, file replay).

        network: "tts" or "chirpstack"; event: the kind as the network names it ("up", "join",
        "ack", "txack", "downlink_ack", "down/ack", ... or None to read it from a TTS body);
        content_type: JSON, or binary Protobuf for ChirpStack; path_ids: application_id,
        device_id, dev_eui from a webhook path or MQTT topic (a field-masked body names no device).

        The body is committed (fsynced) in one transaction with everything it changed, together
        with the bodies other callers handed in meanwhile (group commit: one fsync for the batch, the
        rules once per collar of the batch; `lora_bridge.group_commit`), or, should applying the batch
        fail, alone first and applied after (`pipeline.store_and_process_batch`). Raises
        StoreUnavailable when the store cannot take it: nothing is acknowledged, the sender must
        retry (HTTP 503, MQTT no PUBACK). Every other outcome is an IngestResult: processed,
        duplicate, recorded (a network event), kept (an unknown kind), dead_letter (with the stage:
        parse means the body was not what its kind says) or pending (stored; the store failed
        while applying it, the timer tries again).
        """
        return self.submit(self.submission(network, event, body, content_type=content_type, path_ids=path_ids))

    def submit(self, submission: Submission) -> IngestResult:
        """Hand submission (`submission()`) to the group commit and wait for its result, as
        `ingest_network_message` does (a body of another worker's collar, `for_owner`, is kept for
        that worker in the batch's transaction: `received`). Raises StoreUnavailable."""
        try:
            return self._group_commit.submit(submission)
        except StoreUnavailable:
            raise
        except Exception as error:  # noqa: BLE001 - kept for inspection, never retried in vain
            return self.keep_failed(submission.network, submission.event, submission.body, error,
                                    content_type=submission.content_type, path_ids=submission.path_ids)

    def keep_failed(
        self,
        network: str,
        event: str | None,
        body: bytes,
        error: BaseException,
        *,
        content_type: str | None = "application/json",
        path_ids: dict[str, str] | None = None,
    ) -> IngestResult:
        """Keep a body whose ingest raised error for a reason that does not pass (a bug, a value the
        store refuses) as a dead letter (stage apply), as a body that fails while applied is kept, and
        say so: the answer is a `dead_letter` (webhook 200, MQTT PUBACK), so the network server does
        not send it again in vain, and `replay_dead_letters()` runs it after a fix. Raises
        StoreUnavailable when error is a store error that passes, or when the store cannot keep it now
        (nothing kept: webhook 503, MQTT no PUBACK)."""
        if is_transient_store_error(error):
            raise store_unavailable(error) from error
        # The collar (and an uplink's frame counter) the body, its topic or its ids name: its raw row is
        # new and holds none. Both lines below name it (escaped: a device name cannot forge a line).
        named = collar_named(network, event, body, content_type=content_type, path_ids=path_ids)
        context = {"network": network, "event": event, "device": named.device_id, "dev_eui": named.dev_eui}
        reason = f"ingest failed: {error!r}"[:1000]  # the whole error, for the admins who inspect the row
        # The log and the caller get the error's class, what the driver said (without the values it
        # quotes) and an error_id; the traceback its frames (`redacted`): a statement error's text carries
        # its SQL and parameters, a reader's `ValueError` the value it could not read (a position).
        failure = failure_context(error)
        told = f"ingest failed: {failure['error_class']}: {failure['driver_said']} error_id={failure['error_id']}"
        raw_id = ingest.keep_failed(self.db, network, body, reason, event=event, content_type=content_type,
                                    path_ids=path_ids, named=named, told=told)
        log.error("ingest failed network=%s event=%s device=%s: kept as a dead letter raw_uplink_id=%d %s",
                  network, event, named.device_id, raw_id, said_of(failure), exc_info=redacted(error),
                  extra={**context, "raw_uplink_id": raw_id, **failure})
        return IngestResult(status=ingest.STATUS_DEAD_LETTER, raw_uplink_id=raw_id, reason=told,
                            stage=ingest.STAGE_APPLY)

    def submission(
        self,
        network: str,
        event: str | None,
        body: bytes,
        *,
        content_type: str | None = "application/json",
        path_ids: dict[str, str] | None = None,
        read: Any = None,
    ) -> Submission:
        """A body handed in for ingest, its kind named (see ingest_network_message); ValueError for an
        unknown network. read: what `read_network_message` gave for these very arguments, when the caller
        read the body already (a retained MQTT message); its batch takes it instead of reading the body
        again when it reads it under the same kind."""
        source = network.split(":")[-1]
        if source not in NETWORKS:
            raise ValueError(f"unknown network {network!r}; known: {', '.join(NETWORKS)}")
        name = event_name_of(source, event, body)
        submission = Submission(network, name, body, content_type=content_type, path_ids=path_ids)
        # The batch reads a body under the kind named here, which for a TTS body is the message key the body
        # holds, not the topic's: the same read only when the topic's kind is that key (`up`, `uplink_message`).
        if read is not None and canonical_event(source, event) == name:
            submission.message = read
        return submission

    def device_ids_by_eui(self, dev_euis: set[str]) -> dict[str, str]:
        """DevEUI -> the device_id each known collar is filed under (devices are their DevEUI; the
        network's names are labels). One Core read on a connection: no ORM session or loading."""
        with self.db.read_engine.connect() as connection:
            return queries.device_ids_by_eui(connection, dev_euis)

    def collars_named(self, names: set[str]) -> dict[str, Any]:
        """name -> the collar filed under it (device_id, dev_eui, application_id, network_scope), for
        the names some collar holds. One Core read on a connection, as `device_ids_by_eui`."""
        with self.db.read_engine.connect() as connection:
            return queries.collars_named(connection, names)

    def durable_intake(self) -> DurableIntake:
        """The writer and applier threads that answer webhook bodies once their raw row is durable and
        apply them in batches right after (`TEMBO_WEBHOOK_ACK=durable`; lora_bridge.durable_intake);
        started on first use, stopped by close()."""
        with self._intake_lock:
            if self._intake is None:
                self._intake = DurableIntake(self, self.settings.ingest_max_batch)
            return self._intake

    def applies_elsewhere(self) -> bool:
        """Whether the webhook's bodies are applied by the durable intake's applier process, not by
        this one (which then runs a batch only for an MQTT worker or a body it could not read)."""
        return self._intake is not None and self._intake.applier_pid() is not None

    def write_batch_now(self, submissions: list[Submission]) -> None:
        """Keep and apply submissions as one batch now, in turn with the group commit's other
        batches; sets each one's outcome (result or error)."""
        self._group_commit.write_now(submissions)

    def ingest_batch(self, submissions: list[Submission]) -> list[IngestResult]:
        """Several bodies at once (a file replay, a capture): kept and applied in batches of
        settings.ingest_max_batch, one transaction each; their results in order. Raises the store's
        error (StoreUnavailable: that batch was not kept) after the batches before it were written."""
        results: list[IngestResult] = []
        size = self._group_commit.max_batch
        for first in range(0, len(submissions), size):
            batch = [
                replace(s, event=event_name_of(ingest.network_of(s.network), s.event, s.body))
                for s in submissions[first:first + size]
            ]
            self._group_commit.write_now(batch)
            results.extend(s.outcome() for s in batch)
        return results

    def warm_up(self) -> float:
        """A batch's path run once on made-up collars' bodies and rolled back, so this process's first
        batch does not pay its one-time costs (`lora_bridge.warm_up`); the seconds it took."""
        def apply(session: Any, submissions: list[Submission]) -> None:
            results, order = keep_and_apply(session, submissions, self.codec, self.settings, rules_file=self.rules_file)
            self._rules_of_batch(session, [results[i] for i in order])

        return warm_up.warm_up(self.db, apply, self.codec)

    def ingest_batches(self) -> dict[str, int]:
        """How ingest batched so far: batches written, the bodies they held, and the batches that went
        the two-step way (a race with another worker, a bug in one body, the store failing); the
        batches applied apart from ingest and their bodies (`apart_batches`, `apart_bodies`: taken
        hand-overs or stored bodies, each such batch a commit and a judgement of its collars of its own)."""
        return {
            "batches": self._group_commit.batches,
            "bodies": self._group_commit.submissions,
            "fell_back": self._batches_fell_back,
            "handed_over": self._handed_over,
            "apart_batches": self._apart_batches,
            "apart_bodies": self._apart_bodies,
        }

    def _write_batch(self, submissions: list[Submission]) -> None:
        """Keep and apply a batch of bodies in one transaction with the rules of its collars
        (`pipeline.store_and_process_batch`); bodies that went the two-step way get their rules after.
        Bodies of other workers' collars (`for_owner`, while a share hands them over) are kept for
        their owners in the same transaction: one commit for both, not one each."""
        hand_over = self.hand_over
        handed = [s for s in submissions if s.for_owner] if hand_over is not None else []
        own = [s for s in submissions if not s.for_owner] if handed else submissions
        applied: list[IngestResult] = []

        def after(session: Any, results: list[IngestResult]) -> None:
            if handed:
                hand_over(session, handed)
            self._rules_of_batch(session, results)
            applied[:] = results  # the bodies taken from other workers' hand-overs too

        # a webhook's sender gives up on its answer after a while: the batch waits for the write lock
        # no longer than its first sender does, which then gets its 503 in time
        answer_by = min((s.answer_by for s in submissions if s.answer_by is not None), default=None)
        with self._writer_turn, write_lock.answering_by(answer_by):
            self._batch_started = monotonic()
            try:
                committed, one_by_one = store_and_process_batch(self.db, own, self.codec, self.settings, after,
                                                                take=self.take_handovers, rules_file=self.rules_file)
            finally:
                self._batch_ended = monotonic()
        if handed:
            self._settle_handed(hand_over, handed, committed)
        if one_by_one:
            self._batches_fell_back += 1
        for submission in one_by_one:
            self._after_processed(submission.result)
        done = applied if committed else [s.result for s in own if s.result is not None]
        queued = [i for r in done for i in r.downlink_ids]
        if queued:
            self.wake_outbox(queued)  # committed: the worker pushes just these

    def _settle_handed(self, hand_over: Callable[[Any, list[Submission]], None], handed: list[Submission],
                       written: bool) -> None:
        """The outcome of bodies kept for their collars' owners: `received` once their hand-over rows
        are committed (in their batch's transaction when `written`, else in one of their own now);
        StoreUnavailable when the store cannot keep them (no acknowledgement: the broker delivers
        them again), or the error the store gave."""
        if not written:
            try:
                with self.db.write() as session:
                    hand_over(session, handed)
            except Exception as error:  # noqa: BLE001 - each caller gets it
                if is_transient_store_error(error):
                    error = store_unavailable(error)
                for submission in handed:
                    submission.error = error
                return
        self._handed_over += len(handed)
        for submission in handed:
            submission.result = IngestResult(status=ingest.STATUS_RECEIVED, raw_uplink_id=None)

    def _rules_of_batch(self, session: Any, results: list[IngestResult]) -> None:
        """The per-collar rules once per collar of a batch (over all its new rows), then the collar
        alerts' notifications, inside the batch's transaction. A collar whose rules fail is rolled back
        to its savepoint and logged: the timer catches it up (`rules_engine.devices_behind`)."""
        bulk.write_queued(session)  # the batch's fixes and summaries, outside the collars' savepoints
        processed = [r for r in results if r.status == ingest.STATUS_PROCESSED and r.device_id]
        judged = rules_engine.evaluate_devices(session, self._current_rules(), [r.device_id for r in processed])
        for steps in judged.values():
            self._queue_steps(session, steps)
        # Alerts a recorded network event closed too (a join: the offline collar heard again).
        raised: list[tuple[int, str]] = []
        for r in results:  # a loop: most bodies raise and close nothing, and ask no call for it
            if r.device_id and (r.alert_ids or r.closed_alert_ids):
                raised.extend(_alert_steps(r))
        if raised:
            outbox.enqueue_alert_steps(session, self._current_notify_config(), raised)

    # Workers sharing the collars (lora_bridge.collar_shares) -----------------------------------

    def ingesting(self, within_s: float) -> bool:
        """True while an ingest batch is being written, or when one ended less than within_s ago."""
        return self._batch_started > self._batch_ended or monotonic() - self._batch_ended < within_s

    def apply_taken(self, take: Callable[[Any], list[int]]) -> list[IngestResult]:
        """Apply stored bodies that `take(session)` claims (raw ids: the durable intake's on
        PostgreSQL), in one transaction with the rules once per collar (`pipeline.process_taken_batch`);
        their results."""
        return self._apply_apart(process_taken_batch, take)

    def apply_handed(self, take: Callable[[Any], list[Submission]]) -> list[IngestResult]:
        """Apply the bodies handed to this worker that `take(session)` claims (`collar_shares`), kept
        and applied like an ingest batch's, in one transaction with the rules once per collar
        (`pipeline.process_handed_batch`); their results."""
        return self._apply_apart(process_handed_batch, take)

    def _apply_apart(self, process: Callable[..., tuple[list[IngestResult], bool]], take: Any) -> list[IngestResult]:
        """A batch of bodies applied outside an ingest batch (`process(db, take, ...)`), then what
        follows each body: its downlinks pushed; one by one when the batch fell back."""
        with self._writer_turn:  # never at once with this bridge's ingest batch: the same collars' rows
            results, one_by_one = process(self.db, take, self.codec, self.settings, self._rules_of_batch,
                                          rules_file=self.rules_file)
        if results:
            self._apart_batches += 1
            self._apart_bodies += len(results)
        if one_by_one:
            self._batches_fell_back += 1
            for result in results:
                self._after_processed(result)
        queued = [i for r in results for i in r.downlink_ids]
        if queued:
            self.wake_outbox(queued)
        return results

    def ingest_tts_uplink(self, body: bytes) -> IngestResult:
        """A The Things Stack v3 message body (kind read from its message key): see ingest_network_message."""
        return self.ingest_network_message(SOURCE_TTS, None, body)

    def ingest_chirpstack_uplink(self, body: bytes) -> IngestResult:
        """A ChirpStack v4 `event/up` JSON body: see ingest_network_message."""
        return self.ingest_network_message(SOURCE_CHIRPSTACK, "up", body)

    def ingest_uplink(self, body: bytes, source: str) -> IngestResult:
        """A body from source ('tts', 'chirpstack', 'replay:tts', ...): see ingest_network_message."""
        ingest.parser_for(source)
        event = None if ingest.network_of(source) == SOURCE_TTS else "up"
        return self.ingest_network_message(source, event, body)

    def process_pending(self, older_than_s: float = 0.0) -> ReplayReport:
        """Process bodies stored but not processed: the process stopped in between, or the store
        failed while applying them. Run at start and by the bridge's timer; never raises."""
        cutoff = utc_now() - timedelta(seconds=older_than_s)
        try:
            # bodies handed to a worker sharing the collars that holds no lease any more: pending too
            kept = keep_stranded_handovers(self.db)
            if kept:
                log.info("%d bodies handed to workers that are gone kept as pending bodies", kept)
            with self.db.read() as session:
                waiting = session.scalars(
                    select(RawUplink.id)
                    .where(RawUplink.status == ingest.STATUS_RECEIVED, RawUplink.received_at <= cutoff)
                    .order_by(RawUplink.id)
                ).all()
        except Exception as error:
            log.warning("pending bodies not read: store unavailable (%s)", type(error).__name__)
            return ReplayReport(attempted=0, processed=0, duplicates=0, still_dead=0)
        results = []
        for raw_id in waiting:
            result = process_raw(self.db, raw_id, self.codec, self.settings, rules_file=self.rules_file)
            self._after_processed(result)
            results.append(result)
            if result.status == ingest.STATUS_PENDING:
                break  # the store is still unavailable: try again at the next tick
        report = ReplayReport.tally(results)
        if waiting:
            log.info("pending bodies processed: %d of %d", report.processed, len(waiting))
        queued = [i for r in results for i in r.downlink_ids]
        if queued:
            self.wake_outbox(queued)
        return report

    def replay_dead_letters(self, ids: list[int] | None = None) -> ReplayReport:
        """Run waiting dead letters through the current codec again (after a codec or parser fix)."""
        with self.db.read() as session:
            query = select(DeadLetter.id, DeadLetter.raw_uplink_id).where(DeadLetter.replayed_at.is_(None))
            if ids is not None:
                query = query.where(DeadLetter.id.in_(ids))
            letters = session.execute(query.order_by(DeadLetter.id)).all()
        if ids is not None and len(letters) != len(set(ids)):
            found = {letter_id for letter_id, _ in letters}
            missing = sorted(set(ids) - found)
            raise UnknownDeadLetter(f"no waiting dead letter with id {missing}")
        report = ReplayReport.tally(
            process_raw(self.db, raw_uplink_id, self.codec, self.settings, dead_letter_id=letter_id,
                        rules_file=self.rules_file)
            for letter_id, raw_uplink_id in letters
        )
        log.info("dead letters replayed", extra={"attempted": report.attempted, "processed": report.processed})
        self.wake_outbox()
        return report

    def dead_letters(self, include_replayed: bool = False, limit: int | None = None,
                     after_id: int | None = None) -> list[DeadLetterView]:
        """Dead letters waiting for a fix (and the replayed ones when include_replayed), oldest first; at
        most limit, those after the letter after_id when given."""
        with self.db.read() as session:
            return queries.dead_letter_views(session, include_replayed, limit, after_id)

    # Animals and positions -------------------------------------------------------------------

    def register_animal(
        self,
        device_id: str,
        name: str,
        species: str = devices.DEFAULT_SPECIES,
        sex: str | None = None,
        *,
        high_value: bool = False,
    ) -> AnimalView:
        """Name the animal wearing collar device_id (works before or after the collar is heard). On a
        collar in stock it is a new animal fitted with it now (`herd.register_animal`): her wear starts
        now, and EarthRanger is told the collar is hers from then.

        The view returned says who the animal is, never where: its position fields are empty."""
        with self.db.write() as session:
            at = self.clock()
            animal, fitting = herd.register_animal(session, device_id, name, species, sex, at=at)
            if fitting is not None:
                self._queue_change_of_wearer(session, fitting, animal, at)
            if high_value:
                animal.high_value = True
            animal_id = animal.id
        return self._animal_view(animal_id)

    def animals(self, *, viewer: Viewer, animal_ids: list[str] | None = None) -> list[AnimalView]:
        """Every animal (only those of `animal_ids` when given) with its collar's latest state
        (position, battery, behaviour, versions), as viewer's role may see it: for a role with a
        delay, as its collar had reported by the cutoff. Logged in the audit log."""
        require(viewer, roles.READ_ANIMALS)
        now = self.clock()
        wanted = None if animal_ids is None else {str(animal_id) for animal_id in animal_ids}
        with self.db.read() as session:
            views = [v for v in queries.animal_views(session) if wanted is None or v.animal_id in wanted]
            if not viewer.exact_positions:
                high_value = delayed.high_value_flags(session)
                shown = {key: flag for key, flag in high_value.items() if wanted is None or key in wanted}
                cutoffs = self._cutoffs(viewer, shown, now)
                latest = {p.animal_id: p for p in self._delayed_latest(session, viewer, shown, now)}
                visible = self._delayed_alerts(session, viewer, alerts.OPEN_STATES, high_value, now)
                open_counts = Counter(a.animal_id for a in visible if a.animal_id is not None)
                behaviour = delayed.behaviour_by(session, cutoffs)
                reports = delayed.collar_reports_by(session, cutoffs, self.codec)
                seen_until = {key: cutoff for cutoff, keys in cutoffs.items() for key in keys}
                views = privacy.animals(viewer, views, latest, open_counts, behaviour, reports, seen_until)
        self._audit_positions(viewer, "animals", [v.animal_id for v in views if v.lat is not None], now)
        return views

    def devices(self, device_ids: list[str] | None = None, *, viewer: Viewer | None = None) -> list[DeviceView]:
        """Every collar's health (radio, battery, versions, errors, frame loss), by device id; only
        the collars of `device_ids` when given (one collar's page need not count the whole fleet's
        uplinks). For a viewer without exact positions, each collar as it had been heard by the
        cutoff of its animal (a collar without one: the strictest): its status flags say whether the
        animal is in farmland or outside the park, its last uplink (and a count of uplinks that rose
        since the last read) that it is alive and within a gateway's range."""
        if viewer is not None:
            require(viewer, roles.READ_DEVICES)
        return self._devices_by_cutoff(device_ids, viewer, self.clock())

    def _devices_by_cutoff(self, device_ids: list[str] | None, viewer: Viewer | None, now: datetime) -> list[DeviceView]:
        """`devices` as viewer sees them with the clock at now (one reading of it for the whole answer)."""
        with self.db.read() as session:
            views = queries.device_views(session, device_ids)
            if viewer is None or viewer.exact_positions:
                return views
            cutoffs = self._cutoffs(viewer, delayed.high_value_flags(session), now)
            reports = delayed.collar_reports_by(session, cutoffs, self.codec)
            filed_under = self._filed_under(session, views)
            by_cutoff = self._collar_cutoffs(viewer, filed_under, cutoffs, now)
            counts = {device_id: found for cutoff, device_ids_then in by_cutoff.items()
                      for device_id, found in queries.frame_counts(session, device_ids_then, cutoff).items()}
        unknown, uncounted = delayed.CollarReport(last_seen=None), queries.FrameCounts()
        return [
            replace(view, **{name: getattr(reports.get(filed_under[view.device_id] or "", unknown), name)
                             for name in delayed.REPORTED_DEVICE_FIELDS},
                    **_counted(counts.get(view.device_id, uncounted)))
            for view in views
        ]

    @staticmethod
    def _filed_under(session: Any, views: Iterable[DeviceView]) -> dict[str, str | None]:
        """Device id -> the id of the record its messages are filed under: its animal's, and for a collar in
        stock (which names no animal) the record of its time there, whose cutoff a role with a delay reads
        it by, as before it named none."""
        views = list(views)
        holders = queries.collar_holders(session, [view.device_id for view in views if view.in_stock])
        return {view.device_id: view.animal_id or holders.get(view.device_id) for view in views}

    @staticmethod
    def _collar_cutoffs(
        viewer: Viewer, animal_of: Mapping[str, str | None], cutoffs: dict[datetime, list[str]], now: datetime
    ) -> dict[datetime, list[str]]:
        """Each cutoff of viewer's role -> the device ids of the collars it applies to (`animal_of`: device id ->
        its animal's id): that of each collar's animal (`cutoffs`: cutoff -> animal ids, `_cutoffs` at now), the
        strictest at now for a collar without one. The one answer to "up to when may this role see this collar"
        that the collars' pages, the fleet's health and the network events all read."""
        cutoff_of = {animal_id: cutoff for cutoff, animal_ids in cutoffs.items() for animal_id in animal_ids}
        strictest = _earliest_cutoff(viewer, now)
        by_cutoff: dict[datetime, list[str]] = {}
        for device_id, animal_id in animal_of.items():
            by_cutoff.setdefault(cutoff_of.get(animal_id or "", strictest), []).append(device_id)
        return by_cutoff

    def latest_positions(self, *, viewer: Viewer) -> list[PositionView]:
        """The newest fix of every animal that viewer may see (for a role with a delay: the newest
        before it, coarsened). Logged in the audit log."""
        require(viewer, roles.READ_ANIMALS)
        now = self.clock()
        with self.db.read() as session:
            if viewer.exact_positions:
                views = queries.latest_position_views(session)
            else:
                high_value = delayed.high_value_flags(session)
                views = self._delayed_latest(session, viewer, high_value, now)
        self._audit_positions(viewer, "latest_positions", [v.animal_id for v in views], now)
        return views

    def tracks(
        self,
        since: datetime | None = None,
        animal_ids: list[str] | None = None,
        *,
        viewer: Viewer,
        max_points: int | None = None,
        until: datetime | None = None,
    ) -> dict[str, list[PositionView]]:
        """Positions per animal id, oldest first (from since on, up to until; only animal_ids when
        given), as viewer's role may see them; with max_points, each track thinned evenly to at most
        that many fixes, newest kept. Logged in the audit log."""
        require(viewer, roles.READ_ANIMALS)
        now = self.clock()
        until = as_utc(until) if until else None
        if not viewer.exact_positions:  # nothing newer than the role sees of any animal, before thinning
            seen_until = privacy.cutoff(viewer.policy.animals, now)
            until = min(until, seen_until) if until else seen_until
        with self.db.read() as session:
            tracks = queries.track_views(
                session, as_utc(since) if since else None, animal_ids, max_points=max_points, until=until
            )
            if not viewer.exact_positions:
                tracks = privacy.tracks(viewer, tracks, delayed.high_value_flags(session), now)
        self._audit_positions(
            viewer, "tracks", list(tracks), now, since=as_utc(since).isoformat() if since else None,
            fixes=sum(len(fixes) for fixes in tracks.values()),
        )
        return tracks

    def activity(
        self, animal_id: str | int, since: datetime | None = None, *, viewer: Viewer, until: datetime | None = None
    ) -> list[ActivityView]:
        """An animal's behaviour shares per interval from `since` up to `until` (each when given),
        oldest first (for a role with a delay: only intervals that ended before it)."""
        require(viewer, roles.READ_ANIMALS)
        key = self._existing_animal_key(animal_id)
        with self.db.read() as session:
            views = queries.activity_views(session, key, as_utc(since) if since else None, as_utc(until) if until else None)
            if not viewer.exact_positions:
                views = privacy.activity(viewer, views, delayed.high_value_flags(session), self.clock())
        return views

    def set_high_value(self, animal_id: str | int, high_value: bool, *, viewer: Viewer) -> AnimalView:
        """Flag (or unflag) an animal as high-value: roles without exact positions see it coarser and
        later. Rangers and admins may; the change is logged."""
        require(viewer, roles.FLAG_ANIMALS)
        key = self._existing_animal_key(animal_id)
        now = self.clock()
        with self.db.write() as session:
            session.get(Animal, key).high_value = bool(high_value)
            audit.record_change(session, viewer, "animal_flagged", now, animal_id=str(key), high_value=bool(high_value))
        log.info("animal high-value flag set", extra={"animal_id": key, "high_value": bool(high_value)})
        return next(view for view in self.animals(viewer=viewer) if view.animal_id == str(key))

    # The herd register (docs/access.md, "The herd register") -----------------------------------

    def rename_animal(self, animal_id: str | int, *, viewer: Viewer, name: str | None = None,
                      species: str | None = None, sex: str | None = None) -> AnimalView:
        """Give an animal another name, species or sex (each when given; InvalidHerdChange for an
        empty name or species, or a sex other than female, male, unknown). Field technicians and
        admins may; the change is in the audit log with who made it and what the animal was called."""
        require(viewer, roles.MANAGE_HERD)
        key = self._existing_animal_key(animal_id)
        now = self.clock()
        with self.db.write() as session:
            animal = session.get(Animal, key)
            changed = herd.rename(session, animal, name=name, species=species, sex=sex)
            if changed:
                audit.record_change(session, viewer, "animal_renamed", now, animal_id=str(key),
                                    **{field: {"was": was, "now": value} for field, (was, value) in changed.items()})
        log.info("animal record changed animal_id=%s by %s: %s", key, viewer.username, sorted(changed),
                 extra={"animal_id": key, "username": viewer.username})
        return self._animal_view(key)

    def fit_collar(self, animal_id: str | int, collar: str, *, viewer: Viewer, move: bool = False,
                   fitted_at: datetime | None = None) -> AnimalView:
        """Fit collar (a device id or DevEUI; one never heard is registered) to an animal at fitted_at
        (default now). The animal's previous collar comes off; a collar another animal wears is taken
        from it only with move (else CollarWornByAnother). What each collar reported before stays with
        the animal that wore it; a message dated before the fitting heard later is filed under that
        animal too. Field technicians and admins may; logged in the audit log."""
        key, now, at = self._herd_change(animal_id, viewer, fitted_at, "fitted")
        with self.db.write() as session:
            animal = session.get(Animal, key)
            fitting = herd.fit_collar(session, animal, collar, at, move=move)
            audit.record_change(session, viewer, "collar_fitted", now, animal_id=str(key), device_id=fitting.device_id,
                                fitted_at=at.isoformat(), previous_collar=fitting.previous_collar,
                                taken_from=None if fitting.taken_from is None else str(fitting.taken_from),
                                refiled=fitting.refiled, closed_alerts=list(fitting.closed_alert_ids))
            self._queue_closed_at_take_off(session, fitting.closed_alert_ids, animal.name, at)
            if animal.collar_fitted_at is not None and as_utc(animal.collar_fitted_at) == at:  # not already worn
                self._queue_change_of_wearer(session, fitting, animal, at)
        return self._animal_view(key)

    def _queue_change_of_wearer(self, session: Any, fitting: herd.Fitting, animal: Animal, at: datetime) -> None:
        """Tell EarthRanger that the collar fitted to animal at `at` is hers from then on, and that the collar
        she wore before went into stock (`er_assignments`)."""
        config = self._current_notify_config()
        taken_from = session.get(Animal, fitting.taken_from) if fitting.taken_from is not None else None
        if fitting.previous_collar is not None:
            outbox.enqueue_assignment(session, config, fitting.previous_collar, None, at, animal.name)
        outbox.enqueue_assignment(session, config, fitting.device_id, animal, at,
                                  taken_from.name if taken_from is not None else None)

    def herd_register(self, *, viewer: Viewer) -> list[HerdEntryView]:
        """Every animal with its species, sex and the collar it wears since when, by name: no position nor
        anything its collar reported, so nothing is logged as a view of positions. The record a collar in
        stock is filed under is no animal and is left out (`collars_in_stock` lists the collar). Roles
        that read collars may (as `collar_history`)."""
        require(viewer, roles.READ_DEVICES)
        with self.db.read() as session:
            rows = session.execute(select(Animal).where(IS_AN_ANIMAL)
                                   .order_by(Animal.name, Animal.id)).scalars().all()
            return [HerdEntryView(str(a.id), a.name, a.species, a.sex, a.device_id, a.collar_fitted_at) for a in rows]

    def collars_in_stock(self, *, viewer: Viewer) -> list[CollarInStockView]:
        """The collars taken off with none fitted, worn by nobody (`herd.take_off_collar`), by collar: when
        each came off and the animal it came off; no position. Roles that read collars may."""
        require(viewer, roles.READ_DEVICES)
        with self.db.read() as session:
            return [CollarInStockView(device_id, as_utc(at), str(animal_id) if animal_id is not None else None, name)
                    for device_id, at, animal_id, name in herd.collars_in_stock(session)]

    def take_off_collar(self, animal_id: str | int, *, viewer: Viewer, removed_at: datetime | None = None) -> AnimalView:
        """Take an animal's collar off at removed_at (default now) without fitting another: the animal
        wears none, and the collar is worn by nobody until it is fitted again, so what it reports from
        then on raises no alert (`herd.take_off`); its alerts still open are closed, as of removed_at
        (`herd.close_alerts_of_collar_taken_off`). InvalidHerdChange when the animal wears no
        collar, or removed_at lies in the future or before the collar went on. Field technicians and
        admins may; logged in the audit log."""
        key, now, at = self._herd_change(animal_id, viewer, removed_at, "taken off")
        with self.db.write() as session:
            animal = session.get(Animal, key)
            taken = herd.take_off_collar(session, animal, at)
            audit.record_change(session, viewer, "collar_taken_off", now, animal_id=str(key),
                                device_id=taken.device_id, removed_at=at.isoformat(), refiled=taken.refiled,
                                closed_alerts=list(taken.closed_alert_ids))
            self._queue_closed_at_take_off(session, taken.closed_alert_ids, animal.name, at)
            outbox.enqueue_assignment(session, self._current_notify_config(), taken.device_id, None, at, animal.name)
        return self._animal_view(key)

    def _queue_closed_at_take_off(self, session: Any, alert_ids: Iterable[int], name: str, at: datetime) -> None:
        """Tell the routes (rangers, EarthRanger) that the alerts of a collar taken off `name` at `at` are
        closed, and why (`herd.close_alerts_of_collar_taken_off`)."""
        why = {"reason": herd.taken_off_reason(name), "cleared_at": at.isoformat()}
        steps = [(alert_id, "auto_resolved") for alert_id in alert_ids]
        if steps:
            outbox.enqueue_alert_steps(session, self._current_notify_config(), steps, dict.fromkeys(steps, why))

    def _herd_change(self, animal_id: str | int, viewer: Viewer, at: datetime | None,
                     done: str) -> tuple[int, datetime, datetime]:
        """A collar change a field technician or admin asks for: (the animal's key, now, when it happened:
        at, default now). InvalidHerdChange when at lies in the future ("a collar cannot be <done> ...")."""
        require(viewer, roles.MANAGE_HERD)
        key = self._existing_animal_key(animal_id)
        now = self.clock()
        when = as_utc(at) if at is not None else now
        if when > now:
            raise InvalidHerdChange(f"a collar cannot be {done} in the future ({when.isoformat()})")
        return key, now, when

    def collar_history(self, animal_id: str | int, *, viewer: Viewer) -> list[CollarWornView]:
        """The collars an animal wore, oldest first, the one it wears now last."""
        require(viewer, roles.READ_DEVICES)
        key = self._existing_animal_key(animal_id)
        with self.db.read() as session:
            animal = session.get(Animal, key)
            worn = [CollarWornView(f.device_id, f.fitted_at, f.removed_at) for f in herd.fittings_of(session, key)]
            if animal.device_id is not None:
                worn.append(CollarWornView(animal.device_id, animal.collar_fitted_at, None))
        return worn

    # Alerts ----------------------------------------------------------------------------------

    def open_alerts(self, *, viewer: Viewer) -> list[AlertView]:
        """Alerts not yet resolved that viewer may see, highest priority first, then newest first."""
        return self.alerts(alerts.OPEN_STATES, viewer=viewer)

    def alerts(
        self, states: tuple[str, ...] | None = None, limit: int | None = None, *, viewer: Viewer
    ) -> list[AlertView]:
        """Alerts (or those in states) that viewer may see, highest priority first, then newest
        first; for a role without exact positions delayed and coarsened like its positions."""
        require(viewer, roles.READ_ALERTS)
        now = self.clock()
        with self.db.read() as session:
            if viewer.exact_positions:
                views = queries.alert_views(session, states, limit)
            else:
                views = self._delayed_alerts(session, viewer, states, delayed.high_value_flags(session), now)[:limit]
        self._audit_alerts(viewer, views, now)
        return views

    def alert(self, alert_id: int, *, viewer: Viewer) -> AlertView:
        """One alert by id as viewer may see it (UnknownAlert when none, or not yet for this role)."""
        require(viewer, roles.READ_ALERTS)
        now = self.clock()
        with self.db.read() as session:
            alert = alerts.get_alert(session, alert_id)
            animal = session.get(Animal, alert.animal_id) if alert.animal_id else None
            extras = queries.assignments_and_notes(session, [alert.id]).get(alert.id, (None, None))
            views = [queries.alert_view(alert, animal, *extras)]
            if not viewer.exact_positions:
                views = self._as_seen(session, viewer, views, delayed.high_value_flags(session), now)
        if not views:
            raise UnknownAlert(f"no alert {alert_id}")
        self._audit_alerts(viewer, views, now)
        return views[0]

    def alert_events(self, alert_id: int, *, viewer: Viewer) -> list[AlertEventView]:
        """Who did what to an alert and when, oldest first (details without places for roles
        without exact positions)."""
        shown = self.alert(alert_id, viewer=viewer)  # UnknownAlert unless viewer may see the alert
        with self.db.read() as session:
            events = queries.alert_event_views(session, int(alert_id))
            if viewer.exact_positions:
                return events
            seen_until = privacy.alert_cutoff(viewer, shown.animal_id, delayed.high_value_flags(session), self.clock())
            return privacy.alert_events(viewer, events, seen_until)

    def acknowledge_alert(self, alert_id: int, viewer: Viewer) -> AlertView:
        """A ranger takes the alert: new → acknowledged, in the viewer's name."""
        require(viewer, roles.HANDLE_ALERTS)
        with self.db.write() as session:
            alert = alerts.acknowledge(session, alert_id, viewer.username)
            outbox.enqueue_alert_steps(session, self._current_notify_config(), [(alert.id, "acknowledged")])
        return self.alert(alert_id, viewer=viewer)

    def resolve_alert(self, alert_id: int, viewer: Viewer, verdict: str, note: str | None = None) -> AlertView:
        """A ranger closes the alert with a verdict (true, false_alarm or unknown), in the viewer's name."""
        require(viewer, roles.HANDLE_ALERTS)
        with self.db.write() as session:
            alert = alerts.resolve(session, alert_id, viewer.username, verdict, note)
            outbox.enqueue_alert_steps(session, self._current_notify_config(), [(alert.id, "resolved")])
        return self.alert(alert_id, viewer=viewer)

    def assign_alert(self, alert_id: int, assignee: str, viewer: Viewer) -> AlertView:
        """The viewer hands an open alert to `assignee` (a ranger's name; '' takes the assignment back).

        Kept as an 'assigned' event in the alert's history; the alert's views carry `assigned_to`.
        """
        require(viewer, roles.HANDLE_ALERTS)
        assignee = assignee.strip()
        with self.db.write() as session:
            alert = alerts.get_alert(session, alert_id, for_update=True)
            if alert.state not in alerts.OPEN_STATES:
                raise InvalidTransition(f"alert {alert_id} is {alert.state}; only open alerts are assigned")
            alerts.record_event(session, alert, viewer.username, queries.ACTION_ASSIGNED, {"to": assignee})
        log.info("alert assigned", extra={"alert_id": alert_id, "user": viewer.username, "assignee": assignee})
        return self.alert(alert_id, viewer=viewer)

    def alerts_awaiting_verdict(self, limit: int | None = None, *, viewer: Viewer) -> list[AlertView]:
        """Alerts Tembo closed itself (its condition cleared) that no ranger has judged yet, oldest
        first: what a ranger's screen lists so every alert gets a verdict (`resolve_alert` takes one
        on them). Only for roles that give verdicts."""
        require(viewer, roles.READ_ALERTS)
        require(viewer, roles.HANDLE_ALERTS)
        now = self.clock()
        with self.db.read() as session:
            views = queries.alerts_awaiting_verdict(session, limit)
            if not viewer.exact_positions:
                views = privacy.alerts(viewer, views, delayed.high_value_flags(session), now)
        self._audit_alerts(viewer, views, now)
        return views

    def alert_verdicts(self, *, viewer: Viewer | None = None) -> dict[str, dict[str, Any]]:
        """Per alert type: verdict counts, alerts waiting for one, and precision true / (true + false_alarm).
        The one precision figure: the dashboard and the twin's score both read it. For a viewer
        with a delay, counted over the alerts resolved by their animal's cutoff, as they stood then:
        a count that rose the minute a ranger resolved a poaching alert raised an hour ago (or
        Tembo closed a farmland alert as the animal left) told of the alert before its list did."""
        if viewer is not None:
            require(viewer, roles.READ_ALERTS)
        with self.db.read() as session:
            if viewer is None or viewer.exact_positions:
                return rules_lifecycle.precision_by_type(session)
            resolved = self._delayed_alerts(
                session, viewer, (alerts.STATE_RESOLVED,), delayed.high_value_flags(session), self.clock())
        by_verdict = Counter((view.alert_type, view.verdict) for view in resolved)
        return rules_lifecycle.precision_of((kind, verdict, count) for (kind, verdict), count in by_verdict.items())

    def run_rules(self, now: datetime | None = None) -> list[int]:
        """Run the time-driven server rules at now (default: the wall clock): catch up collars whose
        fixes the uplink path did not evaluate, offline per collar, escalation, late corroboration;
        the ids of alerts raised."""
        at = as_utc(now) if now else utc_now()
        self.reload_rules_file()  # offline and escalation judged by the profiles the file holds now
        with self.db.read() as session:
            behind = rules_engine.devices_behind(session)
        for device_id in behind:
            self.evaluate_rules(device_id)
        with self.db.write() as session:
            raised = rules.check_offline(session, at, self._profile_of)
            escalated = rules_lifecycle.escalate(session, at, self._profile_of, wall_clock=now is None)
            rules_engine.refresh_corroboration(session, self._current_rules(), at)
            steps = rules_engine.Steps()
            for alert_id in raised:
                steps.add(alert_id, "raised")
            for step in escalated:  # the alert's priority is already raised: routes and payloads see it
                steps.add(step.alert_id, "escalated")
                steps.detail[(step.alert_id, "escalated")] = step.detail()
            recent = session.scalars(
                select(Alert.id).where(
                    Alert.state.in_(alerts.OPEN_STATES),
                    Alert.created_at >= at - timedelta(days=1),
                    # an escalated alert's raise went out long ago, at its priority then: not again at the new one
                    ~select(AlertEvent.id)
                    .where(AlertEvent.alert_id == Alert.id, AlertEvent.action == rules_lifecycle.ESCALATED)
                    .exists(),
                )
            ).all()
            for alert_id in recent:  # collar alerts whose uplink path stopped before queueing them
                steps.add(alert_id, "raised")
            self._queue_steps(session, steps)
        return raised

    def _profile_of(self, device: Device, animal: Animal | None) -> Any:
        return self.rules_runtime.profile(device, animal)

    # Downlinks -------------------------------------------------------------------------------

    def queue_command(self, device_id: str, command: str, values: dict[str, Any] | None = None) -> DownlinkView:
        """Queue a port-32 command (encoded by the codec) for a collar, named by the bridge's device_id
        or its DevEUI (as the network server's console shows it); the outbox worker pushes it.
        A newer command of the same name supersedes one still waiting. InvalidCommandValues for a
        value name the command's codec row does not know or a value it needs that is missing
        (nothing queued); InvalidCommand for a value the codec cannot carry."""
        values = dict(values or {})
        downlinks.check_command_values(self.codec, command, values)
        with self.db.write() as session:
            device_id = devices.collar_named(session, device_id).device_id
            try:
                downlink = downlinks.queue_command(
                    session,
                    self.codec,
                    device_id=device_id,
                    command=command,
                    values=values,
                    resend_after_s=self.settings.ack_resend_after_s,
                )
            except self.codec.CodecError as error:
                raise InvalidCommand(f"cannot encode {command!r}: {error}"[:300]) from error
            downlink_id = downlink.id
        self.wake_outbox([downlink_id])
        return self._downlink_view(downlink_id)

    def downlinks(self, state: str | None = None, *, viewer: Viewer | None = None) -> list[DownlinkView]:
        """Downlinks (queued, sending, sent, failed, acknowledged, superseded), oldest first; InvalidRequest
        for a state that is none of these (a typo would otherwise read as "no downlinks"). For a viewer
        without exact positions, without the acks of alerts it may not see yet, nor those queued after
        the alert's cutoff: an ack names its alert and the alert's type, and is queued the moment the
        collar's alert is heard (a farmland alert acked now, first or repeated, says the animal is in
        the farmland now)."""
        state = state or None
        if state is not None and state not in downlinks.STATES:
            raise InvalidRequest(f"unknown downlink state {state[:40]!r}; use one of {', '.join(downlinks.STATES)}")
        if viewer is not None:
            require(viewer, roles.READ_DOWNLINKS)
        with self.db.read() as session:
            views = queries.downlink_views(session, state)
            if viewer is None or viewer.exact_positions or not any(_acks_alert(view) for view in views):
                return views
            now = self.clock()
            high_value = delayed.high_value_flags(session)
            seen_until = {alert.alert_id: privacy.alert_cutoff(viewer, alert.animal_id, high_value, now)
                          for alert in self._delayed_alerts(session, viewer, None, high_value, now)}
        return [
            view for view in views
            if not _acks_alert(view)
            or (view.alert_id in seen_until and as_utc(view.created_at) <= seen_until[view.alert_id])
        ]

    def flush_downlinks(self, limit: int = 100, ids: list[int] | None = None) -> int:
        """Push queued, due downlinks now (only `ids` when given); how many the network accepted.
        The outbox worker calls this in the background; tests and tools may call it directly."""
        return self.outbox.flush(limit, ids)

    def start_outbox_worker(self) -> OutboxWorker:
        """Start (once) the thread that pushes downlinks outside any webhook request."""
        if self._outbox_worker is None or not self._outbox_worker.running:
            self._outbox_worker = OutboxWorker(self.outbox, self.settings.outbox_every_s, self.deliver_updates)
            self._outbox_worker.start()
        return self._outbox_worker

    def wake_outbox(self, ids: list[int] | None = None) -> None:
        """Tell the outbox worker there is work (starting it when the settings want one): the downlinks
        `ids` just committed, else a full flush of everything due."""
        if self.outbox_wakes is not None:
            self.outbox_wakes(ids)
            return
        if self._outbox_worker is None and self.settings.outbox_worker:
            self.start_outbox_worker()
        if self._outbox_worker is not None:
            self._outbox_worker.wake(ids)

    def remember_downlink_route(
        self,
        push_url: str | None,
        replace_url: str | None,
        api_key: str | None,
        path_ids: dict[str, str] | None = None,
        *,
        device_id: str | None,
        raw_uplink_id: int | None = None,
    ) -> bool:
        """Keep the downlink route The Things Stack sends in its webhook headers (X-Downlink-Push,
        X-Downlink-Replace, X-Downlink-Apikey) as the route of the collar device_id whose message
        (raw_uplink_id, when stored) brought them (the ingest result's); True when it was new or
        changed. A message heard before the collar's newest does not replace its route.

        A new route wakes the outbox: the message that brought it was applied first, so the ack it
        queued found no route then and would otherwise wait for the next safety round."""
        stored = self.outbox.remember_route(push_url, replace_url, api_key, path_ids, device_id=device_id,
                                            raw_uplink_id=raw_uplink_id)
        if stored:
            self.wake_outbox()
        return stored

    def network_events(
        self, device_id: str | None = None, kind: str | None = None, limit: int | None = None, *, viewer: Viewer
    ) -> list[dict[str, Any]]:
        """Joins, delivery reports, locations, status and logs the network servers sent, oldest first
        (the newest `limit` when given); device_id: the bridge's name of the collar or its DevEUI
        (UnknownDevice when it names none); InvalidRequest for a kind that is none Tembo records.
        A network location is where the collar is, and so may be a service's answer (LoRa Cloud's
        position solution): only roles with exact positions get them (audited), and the bytes of a
        simulated uplink that carry a place (decoded, the exact fix)."""
        require(viewer, roles.READ_DEVICES)
        if kind is not None and kind not in EVENT_KINDS:
            raise InvalidRequest(f"unknown network event kind {kind[:40]!r}; use one of {', '.join(EVENT_KINDS)}")
        if device_id is not None:
            with self.db.read() as session:
                device_id = devices.collar_named(session, device_id).device_id
        if not viewer.exact_positions:
            events = self._events_by_cutoff(self._network_events(device_id, kind, None), viewer)
            events = events[-limit:] if limit else events
            return [{**event, "lat": None, "lon": None, "accuracy_m": None,
                     "detail": privacy.network_event_detail(event["detail"], self.codec)} for event in events]
        events = self._network_events(device_id, kind, limit)
        placed = [event["device_id"] for event in events
                  if event["lat"] is not None
                  or any(event["detail"].get(key) is not None for key in privacy.SERVICE_ANSWER_KEYS)]
        if placed:
            self._audit_positions(viewer, "network_locations", [], self.clock(), devices=sorted(set(placed)))
        return events

    def _events_by_cutoff(self, events: list[dict[str, Any]], viewer: Viewer) -> list[dict[str, Any]]:
        """The events a role with a delay may see: those of each collar up to its animal's cutoff (a
        join, a battery report or a delivery report heard now says the collar is in a gateway's range
        now, and an ack's report that an alert was raised); a collar without an animal up to the
        strictest cutoff; an event without a time is never shown."""
        now = self.clock()
        with self.db.read() as session:
            cutoffs = self._cutoffs(viewer, delayed.high_value_flags(session), now)
            animal_of = queries.collar_holders(session, {event["device_id"] for event in events if event["device_id"]})
        collars = {event["device_id"] or "": animal_of.get(event["device_id"]) for event in events}  # "": no collar
        until = {device_id: cutoff for cutoff, device_ids in self._collar_cutoffs(viewer, collars, cutoffs, now).items()
                 for device_id in device_ids}
        return [event for event in events
                if event["time"] is not None and as_utc(event["time"]) <= until[event["device_id"] or ""]]

    def _network_events(self, device_id: str | None, kind: str | None, limit: int | None) -> list[dict[str, Any]]:
        with self.db.read() as session:
            query = select(NetworkEvent).order_by(NetworkEvent.id.desc()).limit(limit)
            if device_id is not None:
                query = query.where(NetworkEvent.device_id == device_id)
            if kind is not None:
                query = query.where(NetworkEvent.kind == kind)
            rows = list(session.scalars(query))[::-1]
            return [
                {
                    "id": row.id,
                    "kind": row.kind,
                    "network": row.network,
                    "device_id": row.device_id,
                    "dev_eui": row.dev_eui,
                    "time": row.time,
                    "downlink_id": row.downlink_id,
                    "lat": row.lat,
                    "lon": row.lon,
                    "accuracy_m": row.accuracy_m,
                    "battery_pct": row.battery_pct,
                    "margin_db": row.margin_db,
                    "detail": dict(row.detail or {}),
                }
                for row in rows
            ]

    # Geography -------------------------------------------------------------------------------

    def load_geography(self, geojson: dict[str, Any]) -> int:
        """Replace the reserve's geography (FeatureCollection, properties.kind on each feature)."""
        with self.db.write() as session:
            count = geography.replace(session, geojson)
        log.info("geography loaded", extra={"features": count})
        return count

    def geography(self) -> dict[str, Any]:
        """The reserve's boundary, farmland, water, roads and gateways as a GeoJSON FeatureCollection."""
        with self.db.read() as session:
            return geography.as_feature_collection(session)

    # Rules and notifications -----------------------------------------------------------------
    # Geofences from the reserve's files, the per-collar rules after each uplink, the timer's rules
    # (offline, escalation, late corroboration, catch-up), and the notification outbox.

    def import_geofences(
        self,
        data: bytes,
        filename: str,
        *,
        kind: str | None = None,
        alert_on: str | None = None,
        replace: bool = False,
        actor: Viewer | None = None,
    ) -> list[GeofenceView]:
        """Store the polygon fences of a GeoJSON, GeoPackage or zipped Shapefile (any CRS); the new
        fences. InvalidGeofenceFile says what is wrong with a broken file; nothing is stored then.
        actor (a signed-in user or token): who did it, in the audit log with the file and the fences."""
        if actor is not None:
            require(actor, roles.MANAGE_GEOFENCES)
        fence_file = read_fence_file(data, filename, kind=kind, alert_on=alert_on)
        far_from_reserve(fence_file, self.geography())
        with self.db.write() as session:
            rows = geofences.store_fences(session, fence_file, replace=replace)
            views = [_geofence_view(row) for row in rows]
            if actor is not None:
                audit.record_change(session, actor, "geofences_imported", self.clock(), filename=filename,
                                    replace=replace, geofence_ids=[v.geofence_id for v in views])
            return views

    def geofences(self) -> list[GeofenceView]:
        """Every stored fence, oldest first."""
        with self.db.read() as session:
            return [_geofence_view(row) for row in geofences.all_fences(session)]

    def geofences_geojson(self) -> dict[str, Any]:
        """The fences as one GeoJSON FeatureCollection (WGS84), for maps and exports."""
        return {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "id": view.geofence_id,
                    "geometry": view.geometry,
                    "properties": {"name": view.name, "kind": view.kind, "alert_on": view.alert_on},
                }
                for view in self.geofences()
            ],
        }

    def delete_geofence(self, geofence_id: int, actor: Viewer | None = None) -> None:
        """Remove one fence (UnknownGeofence when there is none); actor as for import_geofences."""
        if actor is not None:
            require(actor, roles.MANAGE_GEOFENCES)
        with self.db.write() as session:
            geofences.delete_fence(session, geofence_id)
            if actor is not None:
                audit.record_change(session, actor, "geofence_deleted", self.clock(), geofence_id=int(geofence_id))

    def evaluate_rules(self, device_id: str) -> list[int]:
        """Run the per-collar rules over what arrived since its cursor, queue their notifications;
        the ids of alerts raised or changed. Errors are logged, never raised: ingest goes on."""
        try:
            with self.db.write() as session:
                steps = rules_engine.evaluate_device(session, self._current_rules(), device_id)
                self._queue_steps(session, steps)
                return [alert_id for alert_id, _ in steps.items]
        except Exception as error:
            log_failure(log, error, "server rules failed device_id=%s", device_id, context={"device_id": device_id})
            return []

    def evaluate_rules_for(self, device_ids: list[str]) -> list[int]:
        """evaluate_rules for every collar of a batch (each once, whatever how many of its uplinks the
        batch held) in one unit of work, their notifications queued in it; the ids of alerts raised or
        changed. A collar whose rules fail is logged and skipped; the others are still judged."""
        try:
            with self.db.write() as session:
                done = rules_engine.evaluate_devices(session, self._current_rules(), device_ids)
                changed: list[int] = []
                for steps in done.values():
                    self._queue_steps(session, steps)
                    changed.extend(alert_id for alert_id, _ in steps.items)
                return changed
        except Exception as error:
            log_failure(log, error, "server rules failed for a batch", context={"devices": len(device_ids)})
            return []

    def battery_trend(self, device_id: str, now: datetime | None = None) -> dict[str, Any] | None:
        """The collar's battery slope (mV/day) and the dates it reaches low, critical and empty."""
        at = as_utc(now) if now else utc_now()
        with self.db.read() as session:
            device = session.get(Device, device_id)
            if device is None:
                raise UnknownDevice(f"no collar {device_id!r}")
            animal = session.scalars(select(Animal).where(Animal.device_id == device_id)).first()
            profile = self.rules_runtime.profile(device, animal)
            return rules.battery_trend(session, device, at, profile.battery)

    def flush_notifications(self, now: datetime | None = None) -> DrainReport:
        """Send what the outbox has due (the timer calls this; ingest never waits on it), with the
        notification settings as the rules file holds them now (`reload_rules_file`)."""
        self.reload_rules_file()
        if not self.senders:
            return DrainReport()
        return outbox.drain(self.db, self.notify_config, self.senders, as_utc(now) if now else None)

    def reload_rules_file(self) -> bool:
        """Read the rules file again when it changed since it was last read, and work by it from now on
        (True when a new version was applied): its `[notify]` settings for the next alert step and
        notification sent, its `[rules]` profiles for the next evaluation of new data (alerts already
        raised stay as they are, never raised again). The admin who renews EarthRanger's expired token
        in the morning, the warden who tightens the immobility threshold or adds a species' profile,
        edits the file: until 5 December the running bridge went on with the notify settings it read
        at start, and with its rule profiles, until someone restarted it. A file that
        no longer reads keeps the running version, with an error in the log naming the file
        (`rules_file.RulesFileWatch`). The applier of uplinks looks at the same watch
        (`pipeline`, `rules_file=self.rules_file`): whoever looks first after an edit reads it, once."""
        return self.rules_file.poll() is not None

    def _use_rules_file(self, reading: RulesFile) -> None:
        """Work by a new version of the rules file (`RulesFileWatch.on_change`, called under the
        watch's lock: two edits in quick succession are applied in their order)."""
        self.senders = channels.senders_for(reading.notify, self._notify_client)
        self.notify_config = reading.notify
        self.rules_runtime.use(reading.rules)

    def reload_notify_settings(self) -> bool:
        """`reload_rules_file` (the name it had when only the notify settings were read again)."""
        return self.reload_rules_file()

    def _current_rules(self) -> rules_engine.RulesRuntime:
        """The rule profiles as the rules file holds them now (`reload_rules_file`)."""
        self.reload_rules_file()
        return self.rules_runtime

    def _current_notify_config(self) -> Any:
        """The notification settings as the rules file holds them now: alert steps are queued by the
        routes the admin last wrote (an intake applier process queues them, and never works the outbox)."""
        self.reload_rules_file()
        return self.notify_config

    def notifications(self, *, viewer: Viewer, state: str | None = None) -> list[NotificationView]:
        """Outbox rows (pending, sending, sent, failed, withdrawn), oldest first. Their payloads carry exact
        positions for EarthRanger and the control room's channels, so only admins read them."""
        require(viewer, roles.READ_AUDIT)
        with self.db.read() as session:
            query = select(Notification).order_by(Notification.id)
            if state is not None:
                query = query.where(Notification.state == state)
            return [_notification_view(row) for row in session.scalars(query)]

    def retry_notifications(self, *, viewer: Viewer, since: datetime | None = None,
                            channel: str | None = None) -> outbox.RetryReport:
        """Queue again the failed notifications, alert steps and fixes (since, over channel), each with a
        fresh budget of tries, once their cause is put right:
        the outbox's dead letters, so it takes the permission to replay those. Rows whose alert moved on
        are withdrawn instead (`outbox.requeue_failed`); the retry is in the audit log, each row in its
        alert's history."""
        require(viewer, roles.MANAGE_DEAD_LETTERS)
        if channel is not None and channel not in CHANNELS:
            raise InvalidRequest(f"no channel {channel!r}; the channels are {', '.join(CHANNELS)}")
        now = self.clock()
        with self.db.write() as session:
            report = outbox.requeue_failed(session, self._current_notify_config(), actor=viewer.username, at=now,
                                           since=as_utc(since) if since else None, channel=channel)
            audit.record_change(session, viewer, "notifications_retried", now, channel=channel,
                                since=since.isoformat() if since else None, requeued=list(report.requeued),
                                withdrawn=list(report.withdrawn))
        return report

    def _queue_steps(self, session: Any, steps: Any) -> None:
        config = self._current_notify_config()
        outbox.enqueue_alert_steps(session, config, steps.items, steps.detail)
        er = config.earthranger
        if er is None or not er.send_positions:
            return
        # Each fix under the animal that wore the collar at its time (`herd.wearer_at`, as the store files
        # it): a previous wearer's backlog heard after a swap or a take-off is hers, never the animal's
        # wearing the collar now; a fix of a spell in stock is no animal's and goes nowhere.
        holders: dict[str, Animal | None] = {}
        for device_id, time, lat, lon in steps.fixes:
            device = session.get(Device, device_id)
            if device_id not in holders:  # once per collar, not once per fix
                holders[device_id] = session.scalars(select(Animal).where(Animal.device_id == device_id)).first()
            wearer = holders[device_id]
            if wearer is not None:
                wearer = herd.wearer_at(session, device_id, wearer, time)
                if wearer.holds_collar_in_stock:
                    continue
            outbox.enqueue_position(session, config, device, wearer, time, lat, lon)

    def _after_processed(self, result: IngestResult) -> None:
        if result.status not in (ingest.STATUS_PROCESSED, ingest.STATUS_RECORDED) or not result.device_id:
            return
        if result.status == ingest.STATUS_PROCESSED:
            self.evaluate_rules(result.device_id)  # first: a collar alert goes out corroborated
        steps = _alert_steps(result)
        if steps:
            try:
                with self.db.write() as session:
                    outbox.enqueue_alert_steps(session, self._current_notify_config(), steps)
            except Exception as error:
                log_failure(log, error, "notifications not queued device_id=%s", result.device_id,
                            context={"device_id": result.device_id})

    # Figures ---------------------------------------------------------------------------------

    def counts(self, *, live_alerts: bool = True) -> dict[str, int]:
        """How much the bridge holds: uplinks_stored (distinct), dead_letter (waiting), animals, ...

        live_alerts False: the figures for a role that sees alerts late, without the alert counts and
        with downlinks_queued and downlinks_sent leaving out the `ack_alert`s that answer collar alerts
        (each is queued the moment its alert comes in)."""
        with self.db.read() as session:

            def count(query: Any) -> int:
                return int(session.scalar(query) or 0)

            # The downlinks a scrape counts: for a role that sees alerts late, not those answering one.
            shown = true() if live_alerts else and_(Downlink.alert_id.is_(None), Downlink.command != downlinks.ACK_COMMAND)
            figures = {
                "uplinks_stored": count(
                    select(func.count()).select_from(RawUplink).where(RawUplink.status != ingest.STATUS_DUPLICATE)
                ),
                "dead_letter": count(
                    select(func.count()).select_from(DeadLetter).where(DeadLetter.replayed_at.is_(None))
                ),
                "animals": count(select(func.count()).select_from(Animal)),
                "positions": count(select(func.count()).select_from(Position)),
                "activity_summaries": count(select(func.count()).select_from(ActivitySummary)),
                "alerts": count(select(func.count()).select_from(Alert)),
                "open_alerts": count(
                    select(func.count()).select_from(Alert).where(Alert.state.in_(alerts.OPEN_STATES))
                ),
                "duplicates": count(
                    select(func.count()).select_from(RawUplink).where(RawUplink.status == ingest.STATUS_DUPLICATE)
                ),
                "devices": count(select(func.count()).select_from(Device)),
                "downlinks_queued": count(
                    select(func.count()).select_from(Downlink).where(Downlink.state == downlinks.STATE_QUEUED, shown)
                ),
                "downlinks_sent": count(
                    select(func.count())
                    .select_from(Downlink)
                    .where(Downlink.state.in_((downlinks.STATE_SENT, downlinks.STATE_ACKNOWLEDGED)), shown)
                ),
            }
            if not live_alerts:
                del figures["alerts"], figures["open_alerts"]
            return figures

    def healthy(self) -> bool:
        """True when the store answers and takes writes: a PostgreSQL that is read-only (a standby after a
        fail-over, default_transaction_read_only) answers every uplink 503, and had been reported healthy."""
        try:
            with self.db.read() as session:
                if session.get_bind().dialect.name == "postgresql":
                    writable = session.execute(text(
                        "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'"
                    )).scalar()
                else:
                    writable = session.execute(select(1)).scalar() == 1
        except Exception as error:  # noqa: BLE001 - a probe's answer; one line, not a traceback per probe
            log.warning("store not answering (%s: %s)", type(error).__name__, str(error).splitlines()[0][:200]
                        if str(error) else "")
            return False
        if not writable:
            log.warning("store answers but takes no write (read-only)")
        return bool(writable)

    # Retention (scale) ------------------------------------------------------------------------

    def compact_raw_bodies(self, now: datetime | None = None) -> Compaction:
        """Compact raw bodies older than settings.raw_retention_days (all of them, in short batches)."""
        older_than = (as_utc(now) if now else utc_now()) - timedelta(days=self.settings.raw_retention_days)
        cleared = deleted = freed = 0
        while True:
            with self.db.write() as session:
                step = retention.compact_raw_bodies(session, older_than)
            cleared += step.bodies_cleared
            deleted += step.duplicates_deleted
            freed += step.bytes_freed
            if step.bodies_cleared == step.duplicates_deleted == 0:
                return Compaction(bodies_cleared=cleared, duplicates_deleted=deleted, bytes_freed=freed)

    def compact_dead_letters(self, now: datetime | None = None) -> DeadLetterCompaction:
        """Compact dead letters (`retention.compact_dead_letters`, all of them, in short batches)."""
        replayed_before = (as_utc(now) if now else utc_now()) - timedelta(days=self.settings.dead_letter_retention_days)
        deleted = trimmed = freed = 0
        while True:
            with self.db.write() as session:
                step = retention.compact_dead_letters(session, replayed_before, self.settings.dead_letter_body_budget_bytes)
            deleted, trimmed, freed = deleted + step.letters_deleted, trimmed + step.bodies_trimmed, freed + step.bytes_freed
            if step.letters_deleted == step.bodies_trimmed == 0:
                return DeadLetterCompaction(letters_deleted=deleted, bodies_trimmed=trimmed, bytes_freed=freed)

    def store_size(self) -> dict[str, int]:
        """The store's size in bytes: store_bytes (allocated) and used_bytes."""
        with self.db.read() as session:
            return retention.store_size(session)

    # Fences on the collars (dashboard) --------------------------------------------------------

    def send_fences_to_collars(
        self, geofence_ids: list[int], device_ids: list[str] | None = None, *, actor: Viewer | None = None
    ) -> list[DownlinkView]:
        """Queue, for each collar (every collar when device_ids is None), `clear_fences` and then the
        `fence` commands that install the chosen fences. CollarFenceLimits, with nothing queued,
        when the fences do not fit on a collar (count, corners, holes, both-way alerts).
        actor (a signed-in user or token): who sent them, in the audit log with the fences and collars."""
        if actor is not None:
            require(actor, roles.MANAGE_GEOFENCES)
        chosen = {view.geofence_id: view for view in self.geofences() if view.geofence_id in set(geofence_ids)}
        missing = sorted(set(geofence_ids) - set(chosen))
        if missing:
            raise UnknownGeofence(f"no geofence with id {missing}")
        commands = collar_fences.fence_commands([chosen[i] for i in geofence_ids])
        if device_ids is None:
            with self.db.read() as session:
                device_ids = list(session.scalars(select(Device.device_id).order_by(Device.device_id)))
        queued = []
        for device_id in device_ids:
            queued.append(self.queue_command(device_id, "clear_fences"))
            queued += [self.queue_command(device_id, "fence", values) for values in commands]
        if actor is not None:
            with self.db.write() as session:
                audit.record_change(session, actor, "fences_sent", self.clock(), geofence_ids=list(geofence_ids),
                                    collars=len(device_ids), downlinks=len(queued))
        log.info("fences queued for collars", extra={"fences": len(chosen), "collars": len(device_ids),
                                                     "user": actor.username if actor else None})
        return queued

    def rename_geofence(self, geofence_id: int, name: str) -> GeofenceView:
        """Give a stored fence the ranger's name for it (its kind and geometry stay)."""
        name = name.strip()
        if not name:
            raise InvalidRequest("a fence needs a name")
        with self.db.write() as session:
            row = session.get(Geofence, int(geofence_id))
            if row is None:
                raise UnknownGeofence(f"no geofence {geofence_id!r}")
            row.name = name[:128]
            session.flush()
            return _geofence_view(row)

    # Models (dashboard) -----------------------------------------------------------------------

    def model_versions(self) -> list[dict[str, Any]]:
        """Every activity model the bridge knows (the shipped one and the registry's), with its class
        names and how many collars report running it, newest version first."""
        known = activity.model_classes(self.settings.model_registry)
        with self.db.read() as session:
            running = dict(
                session.execute(
                    select(Device.model_version, func.count()).where(Device.model_version.is_not(None)).group_by(
                        Device.model_version
                    )
                ).all()
            )
        versions = sorted(set(known) | {int(v) for v in running}, reverse=True)
        return [
            {"model_version": v, "classes": list(known.get(v, [])), "collars": int(running.get(v, 0))}
            for v in versions
        ]

    # Fleet health (dashboard) -----------------------------------------------------------------

    def fleet_health(self, now: datetime | None = None, *, viewer: Viewer | None = None) -> list[CollarHealthView]:
        """Every collar's health in one read: battery and its trend (the rules' battery trend),
        last uplink against the collar's own reporting interval, radio and gateway of its newest
        uplink, lost uplinks from FCnt gaps, firmware and model versions. For a viewer without exact
        positions each collar as heard by its animal's cutoff (`devices`; `as_of` says when): the
        gateway that heard it just now places the animal within that gateway's range now."""
        at = as_utc(now) if now else utc_now()
        if viewer is not None:
            require(viewer, roles.READ_FLEET)
        late = viewer is not None and not viewer.exact_positions
        if late:
            require(viewer, roles.READ_DEVICES)
        seen_at = self.clock()  # one reading: the collars, their as_of and their gateways by the same cutoffs
        health = {view.device_id: view for view in self._devices_by_cutoff(None, viewer if late else None, seen_at)}
        with self.db.read() as session:
            if late:
                cutoffs = self._collar_cutoffs(viewer, self._filed_under(session, health.values()),
                                               self._cutoffs(viewer, delayed.high_value_flags(session), seen_at),
                                               seen_at)
                as_of = {device_id: cutoff for cutoff, device_ids in cutoffs.items() for device_id in device_ids}
                gateways = {device_id: gateway for cutoff, device_ids in cutoffs.items()
                            for device_id, gateway in queries.last_gateway_per_device(session, device_ids, cutoff).items()}
            else:
                as_of, gateways = {}, queries.last_gateway_per_device(session)
            rows = session.execute(
                select(Device, Animal).outerjoin(Animal, Animal.device_id == Device.device_id)
            ).all()
            views = []
            for device, animal in rows:
                profile = self.rules_runtime.profile(device, animal)
                view = health.get(device.device_id)
                if view is None:  # registered since the collars were read: on the next read
                    continue
                trend = rules.battery_trend(session, device, at, profile.battery)
                views.append(
                    CollarHealthView(
                        device_id=device.device_id,
                        animal_id=view.animal_id,
                        name=view.name,
                        battery_mv=view.battery_mv,
                        battery_slope_mv_per_day=trend["slope_mv_per_day"] if trend else None,
                        battery_low_on=trend["low_on"] if trend else None,
                        battery_empty_on=trend["empty_on"] if trend else None,
                        last_seen=view.last_seen,
                        expected_interval_s=rules.expected_interval_s(device),
                        offline_after_s=rules.offline_after_s(device, profile.offline),
                        last_rssi_dbm=view.last_rssi_dbm,
                        last_snr_db=view.last_snr_db,
                        last_gateway=gateways.get(device.device_id),
                        frame_loss_pct=view.frame_loss_pct,
                        uplinks_received=view.uplinks_received,
                        fw_version=view.fw_version,
                        model_version=view.model_version,
                        temperature_c=view.temperature_c,
                        as_of=as_of.get(device.device_id),
                        in_stock=view.in_stock,
                    )
                )
        return sorted(views, key=lambda v: (v.name or "", v.device_id))

    # Access: accounts, tokens, sessions, the audit log ----------------------------------------

    def add_user(self, username: str, role: str, password: str, *, actor: Viewer) -> accounts.AccountView:
        """A new account (admins only); the password is stored as a scrypt hash."""
        require(actor, roles.MANAGE_ACCOUNTS)
        now = self.clock()
        with self.db.write() as session:
            account = accounts.add_user(session, username, role, password, now)
            audit.record_change(session, actor, "user_added", now, username=username, role=role)
        log.info("account added", extra={"username": username, "role": role, "actor": actor.username})
        return account

    def users(self, *, viewer: Viewer) -> list[accounts.AccountView]:
        """Every account, by username (admins only)."""
        require(viewer, roles.MANAGE_ACCOUNTS)
        with self.db.read() as session:
            return accounts.list_users(session)

    def remove_user(self, username: str, *, actor: Viewer) -> None:
        """Delete an account (admins only); its tokens are revoked and its sessions ended."""
        require(actor, roles.MANAGE_ACCOUNTS)
        now = self.clock()
        with self.db.write() as session:
            accounts.remove_user(session, username, now)
            audit.record_change(session, actor, "user_removed", now, username=username)
        log.info("account removed", extra={"username": username, "actor": actor.username})

    def set_password(self, username: str, password: str, *, actor: Viewer) -> None:
        """A new password for username (admins, or the user themself); open sessions end."""
        if actor.username != username:
            require(actor, roles.MANAGE_ACCOUNTS)
        now = self.clock()
        with self.db.write() as session:
            accounts.set_password(session, username, password, now)
            audit.record_change(session, actor, "password_set", now, username=username)
        log.info("password changed", extra={"username": username, "actor": actor.username})

    def set_role(self, username: str, role: str, *, actor: Viewer) -> None:
        """Give an account another role (admins only); its open sign-ins end and its tokens of the
        old role stop working."""
        require(actor, roles.MANAGE_ACCOUNTS)
        now = self.clock()
        with self.db.write() as session:
            old, ended = accounts.set_role(session, username, role, now)
            if old != role:
                audit.record_change(session, actor, "role_changed", now, username=username, old_role=old, role=role,
                                    sessions_ended=ended)
        log.info("role changed", extra={"username": username, "role": role, "actor": actor.username})

    def sign_in(self, username: str, password: str, client: str | None = None) -> tuple[Viewer, str]:
        """The viewer and a new session secret when the password is right; AuthenticationFailed
        otherwise, with the same message for an unknown name and a wrong password, and
        TooManyAttempts while the username or the client address is locked out (the password is
        not even looked at then). Sign-ins, failures and lockouts go to the audit log.

        Usernames are lowercase (`accounts.check_username`), so the name is taken in lowercase and
        without surrounding spaces: a phone's keyboard capitalises the first letter of a field."""
        now = self.clock()
        name = str(username).strip().lower()
        keys = {throttle.USER: name, throttle.CLIENT: client}
        with self.db.read() as session:
            lock = throttle.active_lock(session, keys, now)
        if lock is not None:
            log.warning("sign-in refused: locked out", extra={"username": name[:64], "client": client})
            raise TooManyAttempts(self._locked_message(lock, now), lock.retry_after_s(now))
        try:
            with self.db.read() as session:
                viewer = accounts.check_password(session, name, password)
        except AuthenticationFailed:
            with self.db.write() as session:
                audit.record_failed_sign_in(session, name, now, client)
                for scope, key in keys.items():
                    if key is None:
                        continue
                    earned = throttle.record_failure(session, scope, key, now)
                    if earned is not None:
                        audit.record_security(session, name, "sign_in_locked", now, scope=scope, key=earned.key,
                                              until=earned.until.isoformat(), client=client)
                        log.warning("sign-in locked out", extra={"scope": scope, "key": earned.key[:64],
                                                                 "until": earned.until.isoformat()})
            log.warning("sign-in failed", extra={"username": name[:64], "client": client})
            raise
        with self.db.write() as session:
            throttle.clear(session, throttle.USER, viewer.username)
            secret = accounts.start_session(session, viewer, now, self.settings.session_hours, client)
            audit.record_change(session, viewer, "signed_in", now, client=client)
        return viewer, secret

    @staticmethod
    def _locked_message(lock: throttle.Lock, now: datetime) -> str:
        return f"too many failed attempts: try again in {lock.retry_after_s(now)} s"

    def viewer_for_session(self, secret: str) -> Viewer:
        """The viewer of a live sign-in session (AuthenticationFailed when it ended, expired, or its
        account is gone, re-passworded or holds another role); notes when it was last seen."""
        now = self.clock()
        with self.db.read() as session:
            viewer, due = accounts.session_viewer(session, secret, now)
        if due:  # a write at most once a minute per session, not on every run of a page
            self._stamp_last_use("sign-in's last use", viewer,
                                 lambda session: accounts.touch_session(session, secret, now))
        return viewer

    def session_expiry(self, secret: str) -> datetime | None:
        """When the sign-in session of secret expires (None when unknown)."""
        with self.db.read() as session:
            return accounts.session_expiry(session, secret)

    def sign_out(self, secret: str) -> None:
        """End a sign-in session (audited); nothing happens for an unknown or ended one."""
        now = self.clock()
        with self.db.write() as session:
            username = accounts.end_session(session, secret, now, "signed_out")
            if username is not None:
                audit.record_security(session, username, "signed_out", now)

    def sessions(self, *, viewer: Viewer, include_ended: bool = False) -> list[accounts.SessionView]:
        """Sign-in sessions, newest first, live ones only unless include_ended (admins only)."""
        require(viewer, roles.MANAGE_ACCOUNTS)
        with self.db.read() as session:
            return accounts.list_sessions(session, self.clock(), include_ended)

    def end_sessions(self, username: str, *, actor: Viewer) -> int:
        """End every open sign-in of username now (admins only; audited): a lost phone, a shared
        machine left signed in. How many ended."""
        require(actor, roles.MANAGE_ACCOUNTS)
        now = self.clock()
        with self.db.write() as session:
            accounts.get_user(session, username)
            ended = accounts.end_sessions_of(session, username, now, "revoked")
            audit.record_change(session, actor, "sessions_ended", now, username=username, sessions_ended=ended)
        log.info("sign-ins ended", extra={"username": username, "ended": ended, "actor": actor.username})
        return ended

    def lockouts(self, *, viewer: Viewer) -> list[throttle.ThrottleView]:
        """Usernames and client addresses with failed attempts or a lock, locked first (admins only)."""
        require(viewer, roles.MANAGE_ACCOUNTS)
        with self.db.read() as session:
            return throttle.listing(session, self.clock())

    def unlock(self, *, actor: Viewer, username: str | None = None, client: str | None = None) -> int:
        """Lift the lock and forget the failures of a username and/or a client address (admins
        only; audited); how many keys were cleared."""
        require(actor, roles.MANAGE_ACCOUNTS)
        if username is None and client is None:
            raise InvalidRequest("unlock a username, a client address, or both")
        now = self.clock()
        cleared = 0
        with self.db.write() as session:
            if username is not None:
                cleared += throttle.clear(session, throttle.USER, username)
            if client is not None:
                cleared += throttle.clear(session, throttle.CLIENT, client)
                cleared += throttle.clear(session, throttle.TOKEN_CLIENT, client)
            audit.record_change(session, actor, "unlocked", now, username=username, client=client, cleared=cleared)
        log.info("unlocked", extra={"username": username, "client": client, "actor": actor.username})
        return cleared

    def create_token(
        self,
        owner: str,
        name: str,
        role: str | None = None,
        expires_at: datetime | None = None,
        *,
        actor: Viewer,
    ) -> accounts.NewToken:
        """A new API token for account owner (admins only); its secret is shown once, stored hashed."""
        require(actor, roles.MANAGE_ACCOUNTS)
        now = self.clock()
        with self.db.write() as session:
            made = accounts.create_token(session, owner, name, role, now, expires_at)
            audit.record_change(
                session, actor, "token_created", now, token_id=made.view.token_id, owner=owner, role=made.view.role
            )
        log.info("API token created", extra={"token_id": made.view.token_id, "owner": owner, "role": made.view.role})
        return made

    def tokens(self, *, viewer: Viewer) -> list[accounts.TokenView]:
        """Every API token, without secrets (admins only)."""
        require(viewer, roles.MANAGE_ACCOUNTS)
        with self.db.read() as session:
            return accounts.list_tokens(session)

    def revoke_token(self, token_id: int, *, actor: Viewer) -> accounts.TokenView:
        """Revoke an API token (admins only): it is refused from now on."""
        require(actor, roles.MANAGE_ACCOUNTS)
        now = self.clock()
        with self.db.write() as session:
            view = accounts.revoke_token(session, token_id, now)
            audit.record_change(session, actor, "token_revoked", now, token_id=int(token_id))
        log.info("API token revoked", extra={"token_id": token_id, "actor": actor.username})
        return view

    def viewer_for_token(self, secret: str, client: str | None = None) -> Viewer:
        """The viewer an API token acts as (AuthenticationFailed when unknown, revoked or expired).
        A client address that keeps sending bad tokens is locked out (TooManyAttempts), audited."""
        now = self.clock()
        if client is not None:
            with self.db.read() as session:
                lock = throttle.active_lock(session, {throttle.TOKEN_CLIENT: client}, now)
            if lock is not None:
                raise TooManyAttempts(self._locked_message(lock, now), lock.retry_after_s(now))
        try:
            with self.db.read() as session:
                viewer = accounts.token_viewer(session, secret, now)
        except AuthenticationFailed as error:
            if client is not None:
                with self.db.write() as session:
                    earned = throttle.record_failure(session, throttle.TOKEN_CLIENT, client, now)
                    if earned is not None:
                        audit.record_security(session, "", "token_client_locked", now, client=client,
                                              until=earned.until.isoformat(), reason=str(error))
                        log.warning("API client locked out", extra={"client": client, "until": earned.until.isoformat()})
            raise
        self._stamp_token_use(secret, viewer, now)
        return viewer

    def _stamp_token_use(self, secret: str, viewer: Viewer, now: datetime) -> None:
        """Stamp a token's last use, tried at most once a minute, and never at the cost of the answer:
        while the store takes no write (a backup holds SQLite's write lock, a full disk) the read goes on
        without it, after TOKEN_STAMP_WAIT_S at most. Every API request had written the stamp, so each
        answered 500 meanwhile."""
        key = accounts.digest(secret)
        last = self._token_stamps.get(key)
        if last is not None and timedelta(0) <= now - last < TOKEN_STAMP_EVERY:
            return
        self._stamp_last_use("API token's last use", viewer,
                             lambda session: accounts.stamp_token_use(session, secret, now))
        # tried: the next try a minute on, so that a store that takes no write delays no other request
        self._token_stamps[key] = now

    def _stamp_last_use(self, what: str, viewer: Viewer, stamp: Callable[[Any], None]) -> None:
        """Write `what` (a sign-in's or an API token's last use) with `stamp(session)`, never at the cost
        of the answer it goes with: while the store takes no write (a backup holds SQLite's write lock, a
        full disk) the read goes on without it, after TOKEN_STAMP_WAIT_S at most. Until 6 December a
        dashboard sign-in older than a minute failed on it, so a ranger's page kept during a backup
        said "store busy" instead of the herd she last saw."""
        try:
            with write_lock.answering_by(write_lock.clock() + TOKEN_STAMP_WAIT_S), self.db.write() as session:
                stamp(session)
        except Exception as error:
            if not is_transient_store_error(error):
                raise
            log.warning("%s not stamped: the store takes no write now (%s)", what, type(error).__name__,
                        extra={"user": viewer.username})

    def prune_audit_log(self, now: datetime | None = None) -> int:
        """Delete audit lines older than settings.audit_retention_days, sign-in sessions that ended
        as long ago, and stale lockout counts; how many audit lines went."""
        now = as_utc(now) if now else self.clock()
        older_than = now - timedelta(days=self.settings.audit_retention_days)
        with self.db.write() as session:
            deleted = audit.prune(session, older_than)
            accounts.prune_sessions(session, older_than)
            throttle.prune(session, now)
        if deleted:
            log.info("audit log pruned", extra={"deleted": deleted})
        return deleted

    def audit_log(
        self, *, viewer: Viewer, since: datetime | None = None, username: str | None = None, limit: int = 1000
    ) -> list[audit.AuditView]:
        """The audit log, newest first (admins only)."""
        require(viewer, roles.READ_AUDIT)
        with self.db.read() as session:
            return audit.entries(session, as_utc(since) if since else None, username, limit)

    def _audit_positions(
        self, viewer: Viewer, action: str, animal_ids: list[str | None], now: datetime, **detail: Any
    ) -> None:
        """Write who saw which positions before the answer leaves the service (inside an
        `audit_deferred` block: keep it for `record_reads` instead)."""
        read = audit.PositionsRead(
            viewer, action, tuple(str(a) for a in animal_ids if a is not None),
            {key: value for key, value in detail.items() if value is not None},
        )
        deferred = getattr(self._deferred_reads, "reads", None)
        if deferred is not None:
            deferred.append(read)
            return
        self.record_reads([read], now)

    @contextmanager
    def audit_deferred(self) -> Iterator[list[audit.PositionsRead]]:
        """Reads of positions made in this block (on this thread) are not logged when made: each
        adds what it would log (`audit.PositionsRead`) to the list yielded, and the caller logs them
        with `record_reads` each time it hands the answer to its viewer, and never when it does not.

        For a caller that keeps answers for their viewer (the dashboard's caches, and the live map's
        tracks and names read ahead while the browser loads the map): a kept answer handed out a
        second time is logged a second time, and one read ahead but never fetched is not logged."""
        outer = getattr(self._deferred_reads, "reads", None)
        reads: list[audit.PositionsRead] = []
        self._deferred_reads.reads = reads
        try:
            yield reads
        finally:
            self._deferred_reads.reads = outer

    def record_reads(self, reads: Iterable[audit.PositionsRead], at: datetime | None = None) -> None:
        """Log reads of positions (`audit_deferred`) as handed to their viewers at `at` (the
        bridge's clock): one line per viewer, kind and minute, as every read is logged."""
        reads = list(reads)
        if not reads:
            return
        at = as_utc(at) if at else self.clock()
        with self.db.write() as session:
            for read in reads:
                audit.record_positions(session, read.viewer, read.action, read.animal_ids, at, **read.detail)
        for read in reads:
            log.info(
                "positions viewed",
                extra={"viewer": read.viewer.username, "role": read.viewer.role, "action": read.action,
                       "animals": len(read.animal_ids)},
            )

    def _audit_alerts(self, viewer: Viewer, views: list[AlertView], now: datetime) -> None:
        placed = [view.animal_id for view in views if view.lat is not None]
        if placed:
            self._audit_positions(viewer, "alerts", placed, now, alerts=len(views))

    def _delayed_alerts(
        self, session: Any, viewer: Viewer, states: tuple[str, ...] | None, high_value: dict[str, bool], now: datetime
    ) -> list[AlertView]:
        """The alerts in `states` as they stood at their animal's cutoff for a role with a delay: one
        resolved since was still open then, and is listed as open."""
        views = self._as_seen(
            session, viewer, queries.alert_views(session, states, resolved_after=_earliest_cutoff(viewer, now)),
            high_value, now,
        )
        return views if states is None else [view for view in views if view.state in states]

    @staticmethod
    def _as_seen(
        session: Any, viewer: Viewer, views: list[AlertView], high_value: dict[str, bool], now: datetime
    ) -> list[AlertView]:
        """Alerts as a role with a delay sees them (`privacy.alerts`), with the steps of their history
        that say how they stood at its cutoff (assignment, priority before escalations), highest
        priority first, then the newest."""
        steps = queries.alert_steps(session, [view.alert_id for view in views], privacy.STANDING_STEPS)
        seen = privacy.alerts(viewer, views, high_value, now, steps)
        # In the queue's order by how they stood then: an order by their priority now says which was escalated.
        return sorted(seen, key=lambda view: (-view.priority, -(view.last_time or view.time).timestamp(), -view.alert_id))

    def _delayed_latest(
        self, session: Any, viewer: Viewer, high_value: dict[str, bool], now: datetime
    ) -> list[PositionView]:
        by_cutoff = self._cutoffs(viewer, high_value, now)
        return privacy.positions(viewer, delayed.latest_fixes_by(session, by_cutoff), high_value, now)

    @staticmethod
    def _cutoffs(viewer: Viewer, high_value: dict[str, bool], now: datetime) -> dict[datetime, list[str]]:
        """Each cutoff of viewer's role (ordinary, high-value) -> the animal ids it applies to."""
        by_cutoff: dict[datetime, list[str]] = {}
        for animal_id, flagged in high_value.items():
            by_cutoff.setdefault(privacy.cutoff(privacy.precision_for(viewer, flagged), now), []).append(animal_id)
        return by_cutoff

    # The dashboard's "as of" moment (dash) --------------------------------------------------

    def positions_at(self, as_of: datetime | None = None, *, viewer: Viewer) -> list[PositionView]:
        """Each animal's newest fix at or before `as_of` (None: its newest), as viewer may see it:
        for a role with a delay never newer than the role's cutoff, and coarsened. Logged in the
        audit log."""
        if as_of is None:
            return self.latest_positions(viewer=viewer)
        require(viewer, roles.READ_ANIMALS)
        now = self.clock()
        as_of = as_utc(as_of)
        with self.db.read() as session:
            if viewer.exact_positions:
                views = queries.latest_position_views(session, as_of)
            else:
                high_value = delayed.high_value_flags(session)
                by_until: dict[datetime, list[int]] = {}
                for animal_id, flagged in high_value.items():
                    seen_until = min(as_of, privacy.cutoff(privacy.precision_for(viewer, flagged), now))
                    by_until.setdefault(seen_until, []).append(int(animal_id))
                found = [
                    view
                    for until, keys in by_until.items()
                    for view in queries.latest_position_views(session, until, keys)
                ]
                views = privacy.positions(viewer, sorted(found, key=lambda v: (v.name, int(v.animal_id))), high_value, now)
        self._audit_positions(viewer, "positions_at", [v.animal_id for v in views], now, as_of=as_of.isoformat())
        return views

    def alerts_at(self, as_of: datetime | None = None, *, viewer: Viewer) -> list[AlertView]:
        """The alerts open at `as_of` (None: now) as they stood then (raised by then, not resolved
        by then; new or acknowledged then), highest priority first; for a role without exact
        positions only those it may see now, delayed and coarsened like its positions."""
        if as_of is None:
            return self.open_alerts(viewer=viewer)
        require(viewer, roles.READ_ALERTS)
        now = self.clock()
        as_of = as_utc(as_of)
        with self.db.read() as session:
            if viewer.exact_positions:
                views = queries.alert_views_at(session, as_of)
            else:  # as they stood at the sooner of the moment and the cutoff: one resolved in between was open
                views = self._as_seen(session, viewer,
                                      queries.alert_views_at(session, as_of, open_at=_earliest_cutoff(viewer, now)),
                                      delayed.high_value_flags(session), now)
                views = [view for view in views if view.state in alerts.OPEN_STATES]
        self._audit_alerts(viewer, views, now)
        return views

    def change_counter(self) -> tuple[Any, ...]:
        """A value that changes whenever what the dashboard's pages show may have changed: new
        positions, activity, alerts or alert events, animals registered, renamed, given another
        species or collar, or flagged, collars heard. Cheap (newest ids and one read of the small
        animals table), for caching reads between changes."""
        import hashlib

        with self.db.read() as session:
            newest = tuple(
                session.execute(
                    select(
                        select(func.max(Position.id)).scalar_subquery(),
                        select(func.max(ActivitySummary.id)).scalar_subquery(),
                        select(func.max(Alert.id)).scalar_subquery(),
                        select(func.max(AlertEvent.id)).scalar_subquery(),
                        select(func.max(Device.last_seen)).scalar_subquery(),
                    )
                ).one()
            )
            herd = session.execute(
                select(Animal.id, Animal.name, Animal.species, Animal.device_id, Animal.high_value).order_by(Animal.id)
            ).all()
        # Who each animal is and which collar it wears, not only how many there are: a renamed animal
        # or a collar moved to another after a swap must show at the ranger's next rerun, not a
        # minute later (a mortality alert naming the wrong animal sends rangers to the wrong one).
        who = hashlib.blake2b(repr([tuple(row[:4]) for row in herd]).encode(), digest_size=16).hexdigest()
        # The high-value animals themselves, not a sum of their ids: moving the flag from two
        # animals to one whose id is their sum changes how coarsely roles without exact
        # positions see it, and must change the counter (a kept answer would be too fine).
        flagged = tuple(row.id for row in herd if row.high_value)
        return (*newest, who, flagged)

    # Helpers ---------------------------------------------------------------------------------

    # Update campaigns (docs/updates.md) ---------------------------------------------------------

    def create_campaign(self, *, name: str, kind: str, version: str, image_sha256: str, image_bytes: int,
                        user: str, devices: list[str] | None = None, canary_pct: int = 10,
                        max_canary_failures_pct: int = 20, min_battery_mv: int = 3400,
                        min_rssi_dbm: float = -120.0, max_spreading_factor: int = 12, species: str | None = None,
                        image: bytes | None = None) -> dict[str, Any]:
        """Start a roll-out of a signed update image to all collars (devices and species None), a list,
        or the collars of a species' animals; gated on battery, RSSI and spreading factor. With the
        image itself (and TEMBO_FUOTA_MULTICAST_GROUP set, or on ChirpStack the collars' key file and
        TEMBO_FUOTA_MULTICAST_ADDR) the bridge also delivers it over the network server
        (deliver_updates); without, it tracks what collars report. With the key file and the address
        the bridge sets up the group on every collar (TS005 McGroupSetupReq). ValueError
        (CampaignError, DeliveryRefused) when it cannot be done."""
        import hashlib

        from lora_bridge.domain import campaigns

        if image is not None:
            if hashlib.sha256(image).hexdigest() != image_sha256 or len(image) != image_bytes:
                raise campaigns.CampaignError("the image does not match its SHA-256 and size")
            identity = campaigns.identify(image, self._release_keys)
            if (identity.kind, identity.version) != (kind, version):
                raise campaigns.CampaignError(f"the image is {identity.kind} {identity.version}, not {kind} {version}")
        return self._create_campaign(
            name=name, kind=kind, version=version, image_sha256=image_sha256, image_bytes=image_bytes, user=user,
            devices=devices, canary_pct=canary_pct, max_canary_failures_pct=max_canary_failures_pct,
            min_battery_mv=min_battery_mv, min_rssi_dbm=min_rssi_dbm, max_spreading_factor=max_spreading_factor,
            species=species, image=image, base_version=identity.base_version if image is not None else None,
            keys_retired=identity.keys_retired if image is not None else ())

    def _create_campaign(self, *, name: str, kind: str, version: str, image_sha256: str, image_bytes: int,
                         user: str, devices: list[str] | None, canary_pct: int, max_canary_failures_pct: int,
                         min_battery_mv: int, min_rssi_dbm: float, max_spreading_factor: int,
                         species: str | None, image: bytes | None, base_version: str | None,
                         keys_retired: tuple[int, ...] = ()) -> dict[str, Any]:
        """Create a campaign whose image (when given) was already identified and matched to kind,
        version, SHA-256 and size by the caller: plan its delivery and record both in one transaction.
        keys_retired: release keys the firmware's key file drops (`campaigns.retired_keys`), said in the
        campaign's history (event `keys_retired`)."""
        from lora_bridge.domain import campaigns, fuota_delivery

        mc_addr = int(self.settings.fuota_multicast_addr, 16) if self.settings.fuota_multicast_addr else None
        group_keys = self._collar_keys() if mc_addr is not None and image is not None else None
        create_group = False
        if image is not None:
            if not self.delivers_updates:
                raise campaigns.CampaignError("no multicast group to deliver through: set TEMBO_FUOTA_MULTICAST_GROUP "
                                              "to the group's device id at the network server (or, on ChirpStack, "
                                              "TEMBO_COLLAR_KEYS_FILE and TEMBO_FUOTA_MULTICAST_ADDR)")
            create_group = not self.settings.fuota_multicast_group  # the bridge sets up its own (group_keys read)
        with self.db.write() as session:
            campaign = campaigns.create(
                session, name=name, kind=kind, version=version, image_sha256=image_sha256,
                image_bytes=image_bytes, devices=devices, canary_pct=canary_pct,
                max_canary_failures_pct=max_canary_failures_pct, min_battery_mv=min_battery_mv,
                min_rssi_dbm=min_rssi_dbm, max_spreading_factor=max_spreading_factor, species=species,
                created_by=user, base_version=base_version)
            if keys_retired:
                warning = (f"collars that take this firmware no longer hold release key(s) "
                           f"{', '.join(map(str, keys_retired))}: a model update those keys signed stops loading on "
                           "them and they run the firmware's shipped model (status model_fallback) until a model "
                           "signed with a key they hold is sent; once they run it, point TEMBO_RELEASE_KEYS_FILE at "
                           "the key file it carries")
                campaigns.record_event(session, campaign, "keys_retired", keys=list(keys_retired), warning=warning)
                log.warning("campaign %s: %s", name, warning, extra={"campaign_id": campaign.id})
            if image is not None:
                row = fuota_delivery.start(session, campaign, image, str(self.settings.fuota_multicast_group or ""),
                                           self.clock(), prior_loss=self.settings.fuota_prior_loss, mc_addr=mc_addr,
                                           group_keys=group_keys, route_usable=self.outbox.usable_route)
                if create_group:
                    row.group_id = self._create_chirpstack_group(session, row, group_keys)
                    row.group_created = True  # the bridge deletes it again when the campaign ends
                else:
                    self._check_technicians_group(session, row)
            view = campaigns.view(session, campaign)
            view["delivery"] = fuota_delivery.view(session, campaign.id)
            return view

    @property
    def delivers_updates(self) -> bool:
        """True when a campaign given its image is delivered over the network server: a multicast group
        to send through (TEMBO_FUOTA_MULTICAST_GROUP), or one the bridge sets up on ChirpStack
        (TEMBO_FUOTA_MULTICAST_ADDR, with TEMBO_COLLAR_KEYS_FILE: create_campaign says so when it is
        missing). Otherwise campaigns track what collars report."""
        return bool(self.settings.fuota_multicast_group or self.settings.fuota_multicast_addr)

    def update_image_identity(self, image: bytes) -> Any:
        """What a signed update image is (`campaigns.ImageIdentity`: kind, version, hardware, key),
        read from its header; ValueError (CampaignError) when it is not one for Tembo's collars, or its
        key is not one the collars hold (TEMBO_RELEASE_KEYS_FILE) or its signature does not verify."""
        from lora_bridge.domain import campaigns

        return campaigns.identify(image, self._release_keys)

    @property
    def _release_keys(self) -> Path | None:
        """The key file of the firmware the collars run (TEMBO_RELEASE_KEYS_FILE); None: the firmware's own."""
        return Path(self.settings.release_keys_file) if self.settings.release_keys_file else None

    def start_campaign(self, image: bytes, *, user: str, name: str | None = None, devices: list[str] | None = None,
                       canary_pct: int = 10, max_canary_failures_pct: int = 20, min_battery_mv: int = 3400,
                       min_rssi_dbm: float = -120.0, max_spreading_factor: int = 12,
                       species: str | None = None) -> dict[str, Any]:
        """Start a roll-out of the signed update image a field technician hands over (the Updates page,
        `POST /api/updates/campaigns`): its kind and version read from its header, delivered over the
        network server when the bridge has a way to the collars (`delivers_updates`), else tracked from
        what the collars report. ValueError (CampaignError, DeliveryRefused) when it cannot be done."""
        import hashlib

        identity = self.update_image_identity(image)  # read once: what it is, and that it is whole and signed
        log.info("update image identified: %s %s for %s, key %d, %d bytes", identity.kind, identity.version,
                 identity.hardware_id, identity.key_id, identity.image_bytes, extra={"user": user})
        return self._create_campaign(
            name=(name or "").strip() or f"{identity.kind} {identity.version}", kind=identity.kind,
            version=identity.version, image_sha256=hashlib.sha256(image).hexdigest(), image_bytes=len(image),
            user=user, devices=devices, canary_pct=canary_pct, max_canary_failures_pct=max_canary_failures_pct,
            min_battery_mv=min_battery_mv, min_rssi_dbm=min_rssi_dbm, max_spreading_factor=max_spreading_factor,
            species=species, image=image if self.delivers_updates else None, base_version=identity.base_version,
            keys_retired=identity.keys_retired)

    def deliver_updates(self, now: datetime | None = None) -> int:
        """Move every campaign's delivery on (set-up, multicast fragments, repair rounds, stragglers):
        frames go to the outbox, which pushes them; return how many were queued. The outbox worker
        calls this before each flush; tests and tools may call it with their own clock. It also ends the
        steps that would keep a campaign open for ever (`campaigns.expire`: gated, or tracked without a
        result, for TEMBO_CAMPAIGN_COLLAR_DAYS)."""
        from lora_bridge.domain import campaigns, fuota_delivery

        group_keys = None
        if self.settings.collar_keys_file:
            try:
                group_keys = self._collar_keys()
            except ValueError as error:  # deliveries with their own group wait; the others go on
                log.error("collar key file unusable: %s", error)
        now = now or self.clock()
        queued = 0
        with self.db.read() as session:  # no campaign to move on: no write lock taken
            moving = fuota_delivery.anything_to_move(session)
        if moving:
            with self.db.write() as session:
                queued = fuota_delivery.tick(session, self.codec, now, group_keys=group_keys,
                                             no_answer_factor=self.settings.fuota_no_answer_factor,
                                             version_wait_s=self.settings.fuota_version_wait_s)
                for campaign in session.scalars(select(UpdateCampaign).where(UpdateCampaign.state.in_(campaigns.ACTIVE))):
                    campaigns.expire(session, campaign, now, timedelta(days=self.settings.campaign_collar_days).total_seconds())
        self._delete_ended_groups(now)
        return queued

    def _delete_ended_groups(self, now: datetime) -> None:
        """Delete the network server groups of ended deliveries (outside the store's transaction);
        a refusal is recorded and tried again later, never blocking the rest."""
        from lora_bridge.domain import fuota_delivery
        from lora_bridge.errors import DownlinkError

        with self.db.read() as session:
            due = fuota_delivery.delete_due(session, now)
        for campaign_id, group_id in due:
            error = None
            try:
                self.network_server.delete_chirpstack_multicast_group(group_id)
            except DownlinkError as failure:
                error = str(failure)
            with self.db.write() as session:
                fuota_delivery.record_group_delete(session, campaign_id, error, now)

    def _collar_keys(self) -> Any:
        """The technician's collar key file, loaded on each use (a replaced file is read again);
        CampaignError when it is unset, exposed or malformed."""
        from lora_bridge.domain import campaigns
        from lora_bridge.updates import multicast_keys

        try:
            return multicast_keys.load(self.settings.collar_keys_file)
        except multicast_keys.CollarKeyError as error:
            raise campaigns.CampaignError(str(error)) from None

    def _create_chirpstack_group(self, session: Any, row: Any, group_keys: Any) -> str:
        """Create the delivery's multicast group at ChirpStack (its collars, the gateways that hear
        them, the group's session keys); CampaignError when ChirpStack refuses (nothing is kept)."""
        from sqlalchemy import select

        from lora_bridge.domain import campaigns, fuota_delivery
        from lora_bridge.errors import DownlinkError
        from lora_bridge.network_server import ChirpStackGroup
        from lora_bridge.store.tables import Device, FuotaCollar

        devices = select(FuotaCollar.device_id).where(FuotaCollar.campaign_id == row.campaign_id)
        networks = set(session.scalars(select(Device.network).where(Device.device_id.in_(devices))))
        if networks != {"chirpstack"}:
            raise campaigns.CampaignError("the bridge creates multicast groups on ChirpStack only; on The Things "
                                          "Stack set TEMBO_FUOTA_MULTICAST_GROUP to the multicast end device the "
                                          "technician created (docs/updates.md)")
        euis = [e for e in session.scalars(select(Device.dev_eui).where(Device.device_id.in_(devices))) if e]
        keys = group_keys.group(row.mc_addr, fuota_delivery.group_label(row.campaign_id))
        try:
            return self.network_server.create_chirpstack_multicast_group(ChirpStackGroup(
                name=f"tembo-{fuota_delivery.group_label(row.campaign_id)}", application_id=row.application_id or "",
                keys=keys, dr=max(0, 12 - row.sf), frequency_hz=fuota_delivery.MC_FREQUENCY_HZ100 * 100,
                dev_euis=sorted(euis), gateway_ids=list(row.gateways or [])))
        except DownlinkError as error:
            raise campaigns.CampaignError(f"ChirpStack did not create the multicast group: {error}") from None

    def _check_technicians_group(self, session: Any, row: Any) -> None:
        """A multicast group the technician made must send as the plan does: Class C, 869.525 MHz, the
        plan's data rate. On ChirpStack the group (MulticastGroupService.Get); on The Things Stack the
        multicast end device's RX2 parameters, which its Class C downlinks go out on
        (NsEndDeviceRegistry.Get). CampaignError (nothing kept) when it does not or cannot be read."""
        from sqlalchemy import select

        from lora_bridge.domain import campaigns, fuota_delivery
        from lora_bridge.store.tables import Device, FuotaCollar

        devices = select(FuotaCollar.device_id).where(FuotaCollar.campaign_id == row.campaign_id)
        networks = set(session.scalars(select(Device.network).where(Device.device_id.in_(devices)))) - {None}
        frequency_hz, dr = fuota_delivery.MC_FREQUENCY_HZ100 * 100, max(0, 12 - row.sf)
        if networks == {"chirpstack"}:
            server, problems = "ChirpStack multicast group", self._chirpstack_group_problems(row, frequency_hz, dr)
        else:  # the outbox sends a delivery's frames to The Things Stack unless its collars are on ChirpStack
            server, problems = "TTS multicast end device", self._tts_group_problems(session, row, frequency_hz, dr)
        if problems:
            raise campaigns.CampaignError(f"the {server} {row.group_id} does not send as the plan does: "
                                          f"{'; '.join(problems)}")

    def _chirpstack_group_problems(self, row: Any, frequency_hz: int, dr: int) -> list[str]:
        from chirpstack_api.api import multicast_group_pb2 as mg

        from lora_bridge.domain import campaigns
        from lora_bridge.errors import DownlinkError

        try:
            group = self.network_server.chirpstack_multicast_group(row.group_id)
        except DownlinkError as error:
            raise campaigns.CampaignError(f"could not read the ChirpStack multicast group {row.group_id}: "
                                          f"{error}") from None
        problems = []
        if group.group_type != mg.MulticastGroupType.CLASS_C:
            problems.append(f"type {mg.MulticastGroupType.Name(group.group_type)}, not CLASS_C")
        if group.frequency != frequency_hz:
            problems.append(f"frequency {group.frequency} Hz, not {frequency_hz}")
        if group.dr != dr:
            problems.append(f"DR{group.dr}, not the plan's DR{dr} (SF{row.sf})")
        return problems

    def _tts_group_problems(self, session: Any, row: Any, frequency_hz: int, dr: int) -> list[str]:
        from sqlalchemy import select

        from lora_bridge.domain import campaigns, fuota_delivery
        from lora_bridge.errors import DownlinkError
        from lora_bridge.network_server import RouteHint
        from lora_bridge.store.tables import FuotaCollar

        collars = list(session.scalars(select(FuotaCollar.device_id).where(FuotaCollar.campaign_id == row.campaign_id)))
        route = fuota_delivery.group_route(session, collars, row.application_id,  # its own collars' network only
                                           self.outbox.usable_route)
        hint = RouteHint(route.push_url, route.api_key) if route is not None and route.push_url else None
        try:
            device = self.network_server.tts_multicast_device(row.application_id or "", row.group_id, hint)
        except DownlinkError as error:
            raise campaigns.CampaignError(f"could not read the TTS multicast end device {row.group_id}: "
                                          f"{error}") from None
        problems = []
        if not device.multicast:
            problems.append("not a multicast end device")
        if not device.supports_class_c:
            problems.append("Class C not supported")
        if device.rx2_frequency_hz is None:
            problems.append("no MAC state at the Network Server (reset the device's session and MAC state)")
        else:
            if device.rx2_frequency_hz != frequency_hz:
                problems.append(f"RX2 frequency {device.rx2_frequency_hz} Hz, not {frequency_hz}")
            if device.rx2_data_rate != dr:
                problems.append(f"RX2 DR{device.rx2_data_rate}, not the plan's DR{dr} (SF{row.sf})")
        return problems

    def request_multicast_status(self, device_id: str) -> int:
        """Ask one collar which TS005 multicast groups it holds (McGroupStatusReq); return the downlink id."""
        from lora_bridge.domain import multicast_groups

        with self.db.write() as session:
            return multicast_groups.request_status(session, self.codec, device_id)

    def multicast_groups(self, device_id: str) -> list[dict[str, Any]]:
        """The TS005 groups a collar holds, as it last said (set-up and status answers)."""
        from lora_bridge.domain import multicast_groups

        with self.db.read() as session:
            return multicast_groups.view(session, device_id)

    def campaigns(self) -> list[dict[str, Any]]:
        """Every campaign with its collars and history, newest first."""
        from sqlalchemy import select

        from lora_bridge.domain import campaigns
        from lora_bridge.store.tables import UpdateCampaign

        with self.db.read() as session:
            from lora_bridge.domain import fuota_delivery

            rows = session.scalars(select(UpdateCampaign).order_by(UpdateCampaign.id.desc()))
            return [{**campaigns.view(session, c), "delivery": fuota_delivery.view(session, c.id)} for c in rows]

    def campaign(self, campaign_id: int) -> dict[str, Any]:
        """One campaign with its collars, history and delivery; UnknownCampaign when there is none."""
        from lora_bridge.domain import campaigns, fuota_delivery
        from lora_bridge.store.tables import UpdateCampaign

        with self.db.read() as session:
            row = session.get(UpdateCampaign, campaign_id)
            if row is None:
                raise UnknownCampaign(f"no update campaign {campaign_id}")
            return {**campaigns.view(session, row), "delivery": fuota_delivery.view(session, row.id)}

    def steer_campaign(self, campaign_id: int, action: str, user: str) -> dict[str, Any]:
        """Pause, resume or abort a campaign (action "pause" | "resume" | "abort"); UnknownCampaign when
        there is none, CampaignError when its state does not allow the action."""
        from lora_bridge.domain import campaigns, fuota_delivery, fuota_pause
        from lora_bridge.store.tables import UpdateCampaign

        now = self.clock()
        with self.db.write() as session:
            found = session.get(UpdateCampaign, campaign_id)
            if found is None:
                raise UnknownCampaign(f"no update campaign {campaign_id}")
            if action == "resume" and found.state == "stopped":  # the override: the fleet goes on, delivered
                fuota_pause.reopen_after_stop(session, found, now)
            campaign = campaigns.steer(session, campaign_id, action, user, now)
            if action == "pause":
                fuota_pause.paused(session, campaign, now)
            elif action == "resume" and campaign.state in campaigns.ACTIVE:
                fuota_pause.resumed(session, self.codec, campaign, now)
            return {**campaigns.view(session, campaign), "delivery": fuota_delivery.view(session, campaign_id)}

    def record_update_ack(self, device_id: str, result: str, at: datetime) -> list[int]:
        """A collar's port-31 ack for port 201 (an ACK_RESULTS name) dated at (its `time_s`): taken as the
        pipeline takes one heard over the air (`update_results.record_ack`); return the campaigns it moved."""
        from lora_bridge.domain import update_results

        with self.db.write() as session:
            return update_results.record_ack(session, device_id, result, at)

    def evaluate_campaigns(self) -> int:
        """Re-check gates and stages of every active campaign; return how many were looked at."""
        from sqlalchemy import select

        from lora_bridge.domain import campaigns
        from lora_bridge.store.tables import UpdateCampaign

        with self.db.write() as session:
            active = list(session.scalars(select(UpdateCampaign).where(UpdateCampaign.state.in_(campaigns.ACTIVE))))
            for c in active:
                campaigns.evaluate(session, c)
            return len(active)

    def fleet_versions(self, *, viewer: Viewer | None = None) -> list[dict[str, Any]]:
        """Which collar runs which firmware and model, with battery and link. For a viewer without
        exact positions, each collar as it had been heard by the cutoff of its animal, as `devices`
        shows it: a battery, a link and a status time of minutes ago say the collar is alive and how
        far it is from a mast now, an update result reported since that it was heard just now."""
        from lora_bridge.domain import campaigns

        if viewer is not None:
            require(viewer, roles.READ_UPDATES)
        with self.db.read() as session:
            fleet = campaigns.fleet_versions(session)
            if viewer is None or viewer.exact_positions:
                return fleet
            collars = queries.device_views(session)
            now = self.clock()
            cutoffs = self._cutoffs(viewer, delayed.high_value_flags(session), now)
            reports = delayed.collar_reports_by(session, cutoffs, self.codec)
            worn_by = {device_id: key or "" for device_id, key in self._filed_under(session, collars).items()}
        cutoff_of = {device_id: cutoff
                     for cutoff, device_ids in self._collar_cutoffs(viewer, worn_by, cutoffs, now).items()
                     for device_id in device_ids}
        unknown = delayed.CollarReport(last_seen=None)
        shown = []
        for row in fleet:
            report, seen_until = reports.get(worn_by.get(row["device_id"], ""), unknown), cutoff_of[row["device_id"]]
            result = row["update"]
            shown.append({
                **row, "fw_version": report.fw_version, "model_version": report.model_version,
                "model_fallback": bool(report.flags.get("model_fallback")), "battery_mv": report.battery_mv,
                "last_rssi_dbm": report.last_rssi_dbm, "status_time": report.status_time,
                "update": result if result is not None and as_utc(result["time"]) <= seen_until else None,
            })
        return shown

    def _existing_animal_key(self, animal_id: str | int) -> int:
        """The key of animal_id; UnknownAnimal when none, or when it names the record a collar in stock is
        filed under (`Animal.holds_collar_in_stock`), which is no animal."""
        key = queries.animal_key(animal_id)
        with self.db.read() as session:
            found = session.get(Animal, key) if key is not None else None
            if found is None or found.holds_collar_in_stock:
                raise UnknownAnimal(f"no animal {animal_id!r}")
        return key

    def _animal_view(self, key: int) -> AnimalView:
        """Who the animal is, without where it is (no viewer asked)."""
        with self.db.read() as session:
            views = queries.animal_views(session)
        for view in views:
            if view.animal_id == str(key):
                return replace(view, lat=None, lon=None, position_time=None)
        raise UnknownAnimal(f"no animal {key!r}")

    def _downlink_view(self, downlink_id: int) -> DownlinkView:
        with self.db.read() as session:
            row = session.get(Downlink, downlink_id)
            if row is None:
                raise LookupError(downlink_id)
            return queries.downlink_view(row)


def _acks_alert(view: DownlinkView) -> bool:
    """True for a downlink that answers a collar's alert (its `ack_alert`)."""
    return view.alert_id is not None or view.command == downlinks.ACK_COMMAND


def _counted(counts: queries.FrameCounts) -> dict[str, Any]:
    """A collar view's uplink counts (`DeviceView`) from FrameCounts."""
    return {"uplinks_received": counts.received, "uplinks_lost": counts.lost, "frame_loss_pct": counts.loss_pct,
            "uplinks_backfilled": counts.backfilled}


def _earliest_cutoff(viewer: Viewer, now: datetime) -> datetime:
    """The cutoff of viewer's role for the animals it sees latest (high-value ones)."""
    return min(privacy.cutoff(viewer.policy.precision(flag), now) for flag in (False, True))


def open_bridge(database_url: str | None = None, **settings: Any) -> Bridge:
    """A Bridge on database_url (default: settings, i.e. TEMBO_DATABASE_URL or sqlite:///var/tembo.db)."""
    if database_url is not None:
        settings["database_url"] = database_url
    codec = settings.pop("codec", None)
    http_client = settings.pop("http_client", None)
    clock = settings.pop("clock", utc_now)
    return Bridge(load_settings(**settings), codec=codec, http_client=http_client, clock=clock)


def _geofence_view(row: Geofence) -> GeofenceView:
    return GeofenceView(
        geofence_id=row.id,
        name=row.name,
        kind=row.kind,
        alert_on=row.alert_on,
        geometry=dict(row.geometry),
        source_file=row.source_file,
        source_crs=row.source_crs,
        created_at=row.created_at,
        properties=dict(row.properties or {}),
    )


def _alert_steps(result: IngestResult) -> list[tuple[int, str]]:
    """The alert steps an applied body took, for the outbox: its alerts raised, and those Tembo closed
    because it cleared their condition (an offline collar heard again: EarthRanger's event resolved)."""
    return ([(alert_id, "raised") for alert_id in result.alert_ids]
            + [(alert_id, "auto_resolved") for alert_id in result.closed_alert_ids])


def _notification_view(row: Notification) -> NotificationView:
    return NotificationView(
        notification_id=row.id,
        channel=row.channel,
        recipient=row.recipient,
        route=row.route,
        kind=row.kind,
        alert_id=row.alert_id,
        state=row.state,
        attempts=row.attempts,
        tries_total=row.tries_total,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        sent_at=row.sent_at,
        last_error=row.last_error,
        payload=dict(row.payload or {}),
    )
