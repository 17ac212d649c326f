"""Webhook bodies answered once their raw row is durable, applied right after in large batches.

With `TEMBO_WEBHOOK_ACK=durable` the webhook does not wait for decoding and the rules: the network
server only needs to know that the body is kept. A writer and an applier do the work:

- the writer takes every body waiting (up to `ingest_max_batch`), reads each (a common TTS uplink
  only as far as its answer needs, `lora_bridge.uplink_heard`, when the applier reads it again; a body
  that is not what its kind says goes the ordinary way, `Bridge.write_batch_now`, and is answered with
  its dead letter, 200) and commits the others in one transaction (one fsync for all): on a SQLite store to
  its journal file (`lora_bridge.intake_journal`), so it never waits for the store's write lock; on
  PostgreSQL as raw rows in the store. Only then are their requests answered `202 received` (a
  journal or store that cannot take them: 503, nothing kept, the network server retries);
- the applier gathers what was committed meanwhile and applies it in one transaction with the
  rules once per collar of the batch: journal entries become raw rows and are applied in the same
  transaction (`Bridge.write_batch_now`, the group commit's batch), then leave the journal; raw rows
  of PostgreSQL are applied by id (`Bridge.apply_taken`). The more arrived, the larger the batch and
  the fewer evaluations per uplink. It is a thread of the webhook's process, or, with
  `intake_applier="process"` (SQLite or PostgreSQL), a process of its own
  (`lora_bridge.intake_applier`) that this one starts, tells of each commit (the last journal id, or
  the last raw row's id), hears back from after each applied batch (the bound on the backlog, the
  downlinks to push), and starts again should it die.

Nothing acknowledged is lost: a journal entry stays until the store holds its raw row, and at start
the entries left by a crash (kill -9) are applied (those the store already holds are not applied
again); a raw row stays `received` until the transaction that applies it commits, so a crash in
between leaves it for `Bridge.process_pending`, which the bridge runs at start and on its timer. A
batch the store could not take stays in the journal and is tried again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from lora_bridge import ingest
from lora_bridge.domain import devices
from lora_bridge.errors import MalformedUplink, StoreUnavailable, log_failure
from lora_bridge.group_commit import Submission, write_and_settle
from lora_bridge.intake_applier import ApplierProcess
from lora_bridge.intake_journal import (
    IntakeJournal,
    already_stored,
    hold_lock,
    save_if_deleted,
    where_refused_wait,
)
from lora_bridge.network_messages import KIND_UNKNOWN, event_name_of, read_network_message
from lora_bridge.store import write_lock
from lora_bridge.store.tables import Device, RawUplink
from lora_bridge.store.utc import utc_now
from lora_bridge.uplink_formats import Uplink
from lora_bridge.uplink_heard import UplinkHeard, heard_plainly, read_to_answer
from lora_bridge.views import IngestResult

log = logging.getLogger(__name__)

STATUS_RECEIVED = ingest.STATUS_RECEIVED
# The applier's batches: every body committed meanwhile, at most this many per transaction.
MAX_APPLY = 512
# When the applier was idle, it gathers for this long after the first body comes before it applies
# (unless `gathered_enough` wait): the rules run once per collar of a batch, so a larger batch costs less per
# uplink. Bodies that came while it applied a batch have waited already: the next batch takes them at
# once (gathering then left the applier idle for GATHER_S a batch under load, a quarter of its time).
GATHER_S = 0.02
# Bodies kept and not yet applied, at most: past it the writer holds further requests until the
# applier catches up (their answers wait, so a network server slows down instead of the backlog, and
# the time from receiving a body to its alerts, growing without bound).
MAX_BACKLOG = 128
# An idle writer looks again this often (answering the requests held behind a full backlog that are
# overdue); a body handed in wakes it at once.
WRITER_IDLE_S = 0.5
# After the store could not take a batch from the journal, the applier tries again this much later.
RETRY_S = 1.0
# Collars whose device_id the writer remembers for its answers (`DurableIntake._filed_under`): a
# reserve's fleet many times over; past it the writer forgets them all and reads them again.
FILED_REMEMBERED = 100_000

Settled = Callable[[list[Submission]], None]
# What the writer puts in the place of a body's message when the body does not read (a dead letter).
UNREAD = object()


def gathered_enough(max_apply: int, max_backlog: int) -> int:
    """The bodies an idle applier gathers for its batch before it applies without waiting out GATHER_S:
    half the backlog bound, not all of it. The writer counts a batch in the bound until it is applied
    (and, with the applier a process, released): a batch that gathered the whole bound held every
    answer from its gathering to its release, and the applier, back, found nothing to take and waited
    GATHER_S again. With half, the writer answers the next half while the batch applies."""
    return max(1, min(max_apply, max_backlog // 2))


def _named(message: Any) -> tuple[str | None, ...]:
    """Who a message names as its sender: (network, application, scope, name, DevEUI or None)."""
    network = getattr(message, "source", None) or getattr(message, "network", None)
    return (network, getattr(message, "application_id", None), getattr(message, "network_scope", None),
            getattr(message, "device_id", None), getattr(message, "dev_eui", None))


# listener(keys, committed_at): the keys the webhook answered with (intake_id on a journal, else
# raw_uplink_id) of the bodies a batch applied, and the wall-clock time of its commit.
AppliedListener = Callable[[list[int], float], None]


class DurableIntake:
    """The writer and applier threads of one bridge (see the module docstring). `submit` hands a body
    in with a callback called (from the writer thread) once its outcome is set."""

    def __init__(self, bridge: Any, max_batch: int, max_apply: int = MAX_APPLY, gather_s: float = GATHER_S,
                 max_backlog: int = MAX_BACKLOG) -> None:
        self.bridge = bridge
        self.gather_s = gather_s
        self.max_backlog = max(1, max_backlog)
        self.max_batch = max(1, max_batch)
        self.max_apply = max(1, max_apply)
        self._changed = threading.Condition()
        self._incoming: list[tuple[Submission, Settled]] = []
        # raw ids (no journal) or (intake id, submission) pairs (journal) committed, not yet applied
        self._to_apply: list[Any] = []
        self._applying = 0
        self._stopping = False
        # Whether the writer waits on `_changed` (set and read with it held): a body handed in wakes it then.
        self._writer_waiting = False
        self._listeners: list[AppliedListener] = []
        self.batches_written = 0
        self.batches_applied = 0
        self.applied = 0
        self.journal = IntakeJournal.for_store(bridge.settings.database_url, bridge.settings.sqlite_synchronous)
        # With the applier in a process of its own: the journal ids written and not yet reported
        # applied (the backlog), and ids reported before the writer counted them (a restarted applier
        # may take an entry the moment it is committed).
        self._unapplied: set[int] = set()
        self._reported_early: set[int] = set()
        # The journal as a starting applier process found it: ids up to `through` not in `present` had
        # left it (applied), whether or not their report came.
        self._journal_seen: tuple[int, frozenset[int]] = (0, frozenset())
        # DevEUI -> the device_id the store files that collar under, for collars the writer named once
        # (`_filed_under`; the writer thread's alone).
        self._filed: dict[str, str] = {}
        # (network, application, scope, name, None) -> device_id of collars without a DevEUI (`_filed_by_name`).
        self._filed_names: dict[tuple[str | None, ...], str] = {}
        # (network, application, scope, name, DevEUI) -> the device_id answered for a collar not filed yet:
        # the name it will be filed under is not free for another collar of its name (another tenant's,
        # or one with another DevEUI).
        self._promised: dict[tuple[str | None, ...], str] = {}
        self._process: ApplierProcess | None = None
        # SQL statements and commits on the store by the applier process (it reports them).
        self.applier_work = {"statements": 0, "commits": 0}
        self._applier: threading.Thread | None = None
        self._applier_lock_fd: int | None = None
        self._writer = threading.Thread(target=self._write_loop, name="tembo-intake-writer", daemon=True)
        postgres = bridge.db.write_engine.dialect.name == "postgresql"
        if (self.journal is not None or postgres) and bridge.settings.applier_in_process():
            if self.journal is not None:
                self._unapplied.update(self.journal.ids())
            self._process = ApplierProcess(bridge.settings, self._reported)
            self._process.start()
        else:
            if self.journal is not None:  # an applier process of an earlier run may still finish its batch
                self._applier_lock_fd = hold_lock(applier_lock_path(self.journal))
                self._to_apply.extend(self._left_in_journal())
            self._applier = threading.Thread(target=self._apply_loop, name="tembo-intake-applier", daemon=True)
            self._applier.start()
        self._writer.start()

    def submit(self, submission: Submission, settled: Settled) -> None:
        """Queue submission; `settled([submission, ...])` is called once its outcome is set."""
        with self._changed:
            if self._stopping:
                submission.error = StoreUnavailable("the bridge is stopping")
                submission.done = True
                settled([submission])
                return
            self._incoming.append((submission, settled))
            # only the writer waits for bodies to come (the applier waits for bodies written, and for
            # the writer's end): while it writes, it looks at `_incoming` again before it next waits.
            # Woken once: the bodies handed in before it takes the lock back are in `_incoming` then
            # (a notification each had woken no one: 0.93 of them an uplink with 8 connections).
            if self._writer_waiting:
                self._writer_waiting = False
                self._changed.notify_all()

    def _left_in_journal(self) -> list[tuple[int, Submission]]:
        """Journal entries a previous run kept and did not see applied; those the store holds already
        (it stopped between the two commits) leave the journal."""
        assert self.journal is not None
        waiting, _held = left_in_journal(self.bridge, self.journal)
        return waiting

    def on_applied(self, listener: AppliedListener) -> None:
        """Call listener(keys, wall-clock time of the commit) after every applied batch."""
        self._listeners.append(listener)

    def backlog(self) -> int:
        """Bodies waiting to be written or applied."""
        with self._changed:
            return len(self._incoming) + self._held()

    def applier_pid(self) -> int | None:
        """The process id of the applier process (None with the applier a thread of this process)."""
        return self._process.pid if self._process is not None else None

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write and apply what is queued, then end the writer and the applier (what is left stays in
        the journal, or `received`, for the next start)."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._writer.join(timeout=timeout_s)
        applier_done = True
        if self._process is not None:
            applier_done = self._process.stop(timeout_s)
        elif self._applier is not None:
            self._applier.join(timeout=timeout_s)
            applier_done = not self._applier.is_alive()
        if self.journal is not None and applier_done:
            save_if_deleted(self.journal)  # what it holds open of a deleted journal, for the next start
            self.journal.close()
            if self._applier_lock_fd is not None:
                os.close(self._applier_lock_fd)
                self._applier_lock_fd = None

    def _held(self) -> int:
        """Bodies kept and not yet applied (call with self._changed held)."""
        if self._process is not None:
            return len(self._unapplied)
        return len(self._to_apply) + self._applying

    def _reported(self, report: dict[str, Any]) -> None:
        """A report of the applier process: journal ids that left the journal (applied in a batch, or
        found in the store already at its start) or raw rows it applied, those it left to the timer
        (a batch the store failed: `left`), and the downlinks its batch queued."""
        keys = [int(i) for i in report.get("applied", [])]
        left = [int(i) for i in report.get("left", [])]
        if "through" in report:
            through, present = int(report["through"]), frozenset(int(i) for i in report["journal_ids"])
            with self._changed:
                self._journal_seen = (through, present)
                self._unapplied = {i for i in self._unapplied if i > through or i in present}
                self._changed.notify_all()
            return
        with self._changed:
            for key in keys + left:
                if key in self._unapplied:
                    self._unapplied.discard(key)
                else:
                    self._reported_early.add(key)
            for name in self.applier_work:
                self.applier_work[name] += int(report.get(name, 0))
            if report.get("batch") and keys:
                self.batches_applied += 1
                self.applied += len(keys)
            self._changed.notify_all()  # the writer may take more again
        if report.get("downlinks"):
            self.bridge.wake_outbox([int(i) for i in report["downlinks"]])
        if report.get("flush_outbox"):
            self.bridge.wake_outbox()
        if keys and report.get("batch"):
            self._tell_listeners(keys, float(report.get("committed_at", time.time())))

    def _tell_listeners(self, keys: list[int], committed_at: float) -> None:
        for listener in self._listeners:
            try:
                listener(keys, committed_at)
            except Exception as error:  # noqa: BLE001 - an observer never stops ingest
                log_failure(log, error, "an applied-batch listener failed")

    # ---- the writer ----------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self._changed:
                while not self._stopping and (not self._incoming or self._held() >= self.max_backlog):
                    self._answer_overdue()
                    self._writer_waiting = True
                    try:
                        self._changed.wait(timeout=WRITER_IDLE_S)
                    finally:
                        self._writer_waiting = False
                if not self._incoming:
                    self._changed.notify_all()  # the applier sees the writer is done
                    return
                room = max(1, min(self.max_batch, self.max_backlog - self._held()))
                batch = self._incoming[:room]
                del self._incoming[:room]
            submissions = [submission for submission, _ in batch]
            try:  # every caller gets an answer
                write_and_settle(self._write, submissions, "a batch of %d bodies was not written")
            finally:
                self.batches_written += 1
                by_callback: dict[Settled, list[Submission]] = {}
                for submission, settled in batch:
                    by_callback.setdefault(settled, []).append(submission)
                for settled, settled_submissions in by_callback.items():
                    settled(settled_submissions)

    def _answer_overdue(self) -> None:
        """Answer StoreUnavailable (503) to the bodies held behind a full backlog past their `answer_by`
        (call with self._changed held): a store that stays unavailable holds the backlog, and the
        requests behind it had waited for ever, past The Things Stack's 10 s, unanswered."""
        if not self._incoming or self._held() < self.max_backlog:
            return
        now = write_lock.clock()
        overdue = [(s, settled) for s, settled in self._incoming if s.answer_by is not None and now >= s.answer_by]
        if not overdue:
            return
        self._incoming = [item for item in self._incoming if item not in overdue]
        log.warning("%d bodies answered 503: %d kept bodies wait for the store to apply them", len(overdue),
                    self._held(), extra={"uplinks": ingest.uplinks_named([s for s, _ in overdue])})
        for submission, settled in overdue:
            submission.error = StoreUnavailable("the store has not applied the bodies kept before this one; "
                                                "try again later")
            submission.done = True
            settled([submission])

    def _write(self, submissions: list[Submission]) -> None:
        unreadable: list[Submission] = []
        # what each body reads as, by its place (a body refused: UNREAD), so no list grows per body
        messages: list[Any] = [None] * len(submissions)
        # An applier thread of this process takes each body's message as read here (its Uplink); an
        # applier process, or PostgreSQL's applier by raw id, reads the body itself: the answer needs only
        # whether the body reads and its collar (`uplink_heard.read_to_answer`, half the reading; the
        # common TTS uplink named and read in one go, `uplink_heard.heard_plainly`).
        quick = not self._hands_messages_on()
        read = read_to_answer if quick else read_network_message
        for index, submission in enumerate(submissions):
            source = submission.network
            network = source if ":" not in source else ingest.network_of(source)
            message = heard_plainly(network, submission.body, submission.content_type, submission.path_ids) \
                if quick else None
            if message is not None:
                submission.event = "uplink_message"
                messages[index] = message
                continue
            submission.event = event_name_of(network, submission.event, submission.body)
            try:
                messages[index] = read(
                    network, submission.event, submission.body,
                    content_type=submission.content_type, path_ids=submission.path_ids,
                )
            except MalformedUplink:
                unreadable.append(submission)
                messages[index] = UNREAD
            except Exception as error:  # noqa: BLE001 - a reader's bug: kept, and the applier dead-letters it
                log_failure(log, error, "body not read on intake; kept for the applier")
        kept = submissions
        if unreadable:  # kept with its dead letter in one transaction, answered 200 dead_letter as ever
            kept = [s for s, m in zip(submissions, messages, strict=True) if m is not UNREAD]
            messages = [m for m in messages if m is not UNREAD]
            self.bridge.write_batch_now(unreadable)
        if not kept:
            return
        try:
            if self.journal is not None:
                now = utc_now()
                ids = self.journal.append(
                    [(now, s.network, s.event, s.content_type, s.path_ids, s.body) for s in kept]
                )
                # the applier thread's queue (an applier process reads the journal itself)
                queued: list[Any] = [] if self._process is not None else [
                    (intake_id, Submission(s.network, s.event, s.body, s.content_type, s.path_ids, received_at=now,
                                           message=message))
                    for intake_id, s, message in zip(ids, kept, messages, strict=True)
                ]
            else:
                stored = ingest.store_raw_apart(self.bridge.db, kept)
                # a body the store refused carries its error: its request keeps it as a dead letter
                keep = [(s, m, i) for s, m, i in zip(kept, messages, stored, strict=True) if i is not None]
                kept, messages, ids = [s for s, _, _ in keep], [m for _, m, _ in keep], [i for _, _, i in keep]
                queued = list(ids)
        except StoreUnavailable as error:
            for submission in kept:
                submission.error = error
            return
        if not kept:
            return
        # each message's DevEUI, and the messages naming their collar without one or with one no collar
        # is filed under yet (filed under its name, if free: `devices.resolve_device`)
        euis = [m.dev_eui if type(m) is UplinkHeard else getattr(m, "dev_eui", None) for m in messages]
        filed_under = self._filed_under(euis)
        by_name = [m for m, eui in zip(messages, euis, strict=True) if eui not in filed_under]
        filed_by_name = self._filed_by_name(by_name) if by_name else {}
        journal = self.journal is not None
        for submission, message, kept_id, dev_eui in zip(kept, messages, ids, euis, strict=True):
            if type(message) is UplinkHeard or isinstance(message, Uplink):
                device_id, f_cnt, kind = message.device_id, message.f_cnt, None
            else:
                device_id, f_cnt, kind = getattr(message, "device_id", None), None, getattr(message, "kind", None)
                if kind == KIND_UNKNOWN:  # a kind kept for inspection: named as the applied answer names it
                    kind = message.event
            submission.result = IngestResult(
                status=STATUS_RECEIVED,
                raw_uplink_id=None if journal else kept_id,
                intake_id=kept_id if journal else None,
                # the name the collar is filed under, as the applied answer gives it (not the network's
                # label of the moment: a renamed ChirpStack device is still the same collar)
                device_id=filed_under[dev_eui] if dev_eui in filed_under
                else filed_by_name.get(_named(message), device_id),
                dev_eui=dev_eui,
                f_cnt=f_cnt,
                message=kind,
            )
        with self._changed:
            if self._process is not None:
                through, present = self._journal_seen
                fresh = {i for i in ids if i > through or i in present} - self._reported_early
                self._reported_early.difference_update(ids)
                self._unapplied.update(fresh)
            else:  # the applier thread waits for them (an applier process is told below, and waits on nothing here)
                self._to_apply.extend(queued)
                self._changed.notify_all()
        if self._process is not None:
            self._process.committed(max(ids))

    def _hands_messages_on(self) -> bool:
        """Whether the writer hands what it read of each body to an applier thread of this process (a
        SQLite store's journal applied in this process), which then reads no body again."""
        return self.journal is not None and self._process is None

    def _filed_under(self, dev_euis: list[str | None]) -> dict[str, str | None]:
        """DevEUI -> the device_id the store files that collar under, for the collars of dev_euis (a
        message's DevEUI, or None: a collar named otherwise, `_filed_by_name`); a
        collar not known yet is filed under its label, as applying it will. Read from the store once
        per collar: a collar, once filed, keeps its device_id and its DevEUI (devices gain a DevEUI
        they lacked and are never removed: `devices.resolve_device`), so the writer remembers what it
        read (FILED_REMEMBERED collars at most) and reads only collars it has not named yet. A store
        that cannot be read names no device_id (the DevEUI still says which collar)."""
        euis = {eui for eui in dev_euis if eui}
        if not euis:
            return {}
        known = {eui: self._filed[eui] for eui in euis if eui in self._filed}
        unread = euis - known.keys()
        if not unread:
            return dict(known)
        try:
            found = dict(self.bridge.device_ids_by_eui(unread))
        except Exception as error:  # noqa: BLE001 - the body is kept; only the answer's name is missing
            log.warning("collars of a kept batch not read (%s): answered by DevEUI only", type(error).__name__)
            return {**dict.fromkeys(unread), **known}
        if len(self._filed) + len(found) > FILED_REMEMBERED:
            self._filed.clear()
        self._filed.update(found)
        return {**known, **found}

    def _filed_by_name(self, messages: list[Any]) -> dict[tuple[str | None, ...], str]:
        """The collars of messages that name their device without a DevEUI (a TTS ABP device, a TTS
        report), or with one no collar is filed under yet: who names it -> the device_id the store files
        it under, or will once it is applied (a device id is unique only within its application:
        `devices.named_collar`, `devices.new_collar_key`; the answer had named another application's
        collar of that name; a collar whose name another DevEUI's collar holds is filed under its DevEUI).
        A collar without a DevEUI found is remembered (FILED_REMEMBERED at most; one with a DevEUI is
        found by it once applied), one not yet filed read again; a store that cannot be read names none
        (the answer gives the network's name)."""
        # in the order the bodies came, the order they are applied in
        wanted = dict.fromkeys(_named(m) for m in messages if getattr(m, "device_id", None))
        found = {name: self._filed_names[name] for name in wanted if name in self._filed_names}
        unread = [name for name in wanted if name not in found]
        if not unread:
            return found
        keys = {key for _, application, scope, label, _ in unread
                for key in devices.collar_keys(str(label), application, scope)}
        try:
            collars = self.bridge.collars_named(keys)
        except Exception as error:  # noqa: BLE001 - the body is kept; only the answer's name is missing
            log.warning("collars of a kept batch not read by name (%s): answered by the network's name",
                        type(error).__name__)
            return found
        promised_to = {key: name for name, key in self._promised.items()}
        promised_eui = {name[4]: key for name, key in self._promised.items() if name[4]}

        def filed_or_promised(key: str) -> Device | None:
            """The collar filed under key, else one answered with key and not applied yet (a filed
            collar without a DevEUI holding the one a body answered with it gives it)."""
            other = promised_to.get(key)
            held = collars.get(key)
            if other is None or held is not None and (held.dev_eui or not other[4]):
                return held
            return Device(device_id=key, network=other[0], application_id=other[1], network_scope=other[2],
                          label=other[3], dev_eui=other[4])

        def promise(name: tuple[str | None, ...], key: str) -> None:
            """Answer name's bodies with key until it is applied."""
            if len(self._promised) >= FILED_REMEMBERED:
                self._promised.clear()
                promised_to.clear()
                promised_eui.clear()
            self._promised[name] = key
            promised_to[key] = name
            if name[4]:
                promised_eui[name[4]] = key

        for name in unread:
            network, application, scope, label, dev_eui = name
            if dev_eui in promised_eui:  # a collar answered before by its DevEUI, not applied yet
                found[name] = promised_eui[dev_eui]
                continue
            held = devices.named_collar(filed_or_promised, str(label), dev_eui=dev_eui, application_id=application,
                                        network_scope=scope)
            if held is not None and dev_eui and not held.dev_eui:
                # it gains the DevEUI once applied (and is found by it then): another DevEUI's body of
                # its name is another collar
                found[name] = held.device_id
                promise(name, held.device_id)
                continue
            if held is not None and collars.get(held.device_id) is held:
                self._promised.pop(name, None)
                if len(self._filed_names) >= FILED_REMEMBERED:
                    self._filed_names.clear()
                self._filed_names[name] = found[name] = held.device_id
                continue
            if held is not None:  # a collar answered before, not applied yet
                found[name] = held.device_id
                continue
            # Two tenants' first bodies of one name kept before either is applied: the second is
            # filed under its tenant's name (as applying them in order will), not answered as the first.
            holders = devices.name_holders(filed_or_promised, str(label), application, scope)
            found[name] = devices.new_collar_key(holders, label=label, dev_eui=dev_eui, network=network,
                                                 application_id=application, network_scope=scope)
            promise(name, found[name])
        return found

    # ---- the applier ---------------------------------------------------------------------------

    def _apply_loop(self) -> None:
        while True:
            with self._changed:
                idle = not self._to_apply
                while not self._to_apply and not (self._stopping and not self._writer.is_alive()):
                    self._changed.wait(timeout=0.5)
                if not self._to_apply:
                    return
                gather_until = time.monotonic() + (self.gather_s if idle else 0.0)
                enough = gathered_enough(self.max_apply, self.max_backlog)
                while len(self._to_apply) < enough and not self._stopping:
                    left = gather_until - time.monotonic()
                    if left <= 0:
                        break
                    self._changed.wait(timeout=left)
                taken = self._to_apply[: self.max_apply]
                del self._to_apply[: self.max_apply]
                self._applying = len(taken)
            try:
                keys = self._apply_journal(taken) if self.journal is not None else apply_kept_rows(self.bridge, taken)
            finally:
                with self._changed:
                    self._applying = 0
                    self._changed.notify_all()  # the writer may take more again
            if not keys:
                continue
            committed_at = time.time()
            self.batches_applied += 1
            self.applied += len(keys)
            self._tell_listeners(keys, committed_at)

    def _apply_journal(self, taken: list[tuple[int, Submission]]) -> list[int]:
        """Raw rows, decoding and rules of journal entries in one transaction, then out of the journal;
        entries the store could not take go back to the front of the queue, tried again later."""
        assert self.journal is not None
        stored, refused = apply_entries(self.bridge, self.journal, taken)
        if refused and self._stopping:
            log.warning("%d kept bodies not taken by the store; %s", len(refused), where_refused_wait(self.journal))
        elif refused:
            log.warning("%d kept bodies not taken by the store now; tried again in %.0f s", len(refused), RETRY_S)
            with self._changed:
                self._to_apply[:0] = refused
                self._applying = 0  # counted once: waiting again, no longer being applied
                self._changed.wait(timeout=RETRY_S)
        return stored


def left_in_journal(bridge: Any, journal: IntakeJournal) -> tuple[list[tuple[int, Submission]], list[int]]:
    """The journal entries an applier finds at its start: (those to apply as (id, submission), the ids
    of those the store holds already, which leave the journal: the applier before stopped between its
    store's commit and the journal's delete)."""
    waiting, held = [], []
    for entry in journal.entries():
        if already_stored(bridge.db, entry):
            held.append(entry.intake_id)
            continue
        waiting.append((entry.intake_id, Submission(entry.network, entry.event, entry.body, entry.content_type,
                                                    entry.path_ids, received_at=entry.received_at)))
    journal.remove(held)
    if waiting or held:
        log.info("intake journal: %d bodies to apply, %d already in the store", len(waiting), len(held))
    return waiting, held


def apply_kept_rows(bridge: Any, raw_ids: list[int]) -> list[int]:
    """PostgreSQL's durable intake: the raw rows raw_ids applied by id in one batch
    (`Bridge.apply_taken`, by the applier thread or process); their ids, or none when the batch
    failed (logged: the rows stay `received` and the timer applies them)."""
    try:
        bridge.apply_taken(lambda _session, ids=raw_ids: ids)
    except Exception as error:  # noqa: BLE001 - the rows stay `received`: the timer applies them
        log_failure(log, error, "a batch of %d stored bodies was not applied; the timer retries them", len(raw_ids))
        return []
    return raw_ids


def received_rows(bridge: Any, after_id: int = 0, through_id: int | None = None,
                  most: int | None = None) -> list[int]:
    """PostgreSQL's durable intake: the ids of raw rows kept and not applied yet (status `received`),
    after after_id and up to through_id, oldest first, at most `most`."""
    query = select(RawUplink.id).where(RawUplink.status == STATUS_RECEIVED, RawUplink.id > after_id)
    if through_id is not None:
        query = query.where(RawUplink.id <= through_id)
    with bridge.db.read() as session:
        return list(session.scalars(query.order_by(RawUplink.id).limit(most)))


def newest_raw_id(bridge: Any) -> int:
    """The id of the newest raw row the store holds (0: none)."""
    with bridge.db.read() as session:
        return int(session.scalar(select(func.max(RawUplink.id))) or 0)


def apply_entries(bridge: Any, journal: IntakeJournal, taken: list[tuple[int, Submission]],
                  remove: bool = True) -> tuple[list[int], list[tuple[int, Submission]]]:
    """Apply journal entries (id, submission) in one transaction with their rules, then delete those the
    store took from the journal: (their ids, the others as fresh submissions to try again). remove
    False: the caller lets them go once the store's commit is on disk (`lora_bridge.journal_release`)."""
    submissions = [submission for _, submission in taken]
    try:
        bridge.write_batch_now(submissions)
    except Exception as error:  # noqa: BLE001 - every submission carries its outcome; handled below
        log_failure(log, error, "a batch of %d journal entries met an error", len(submissions))
    for _intake_id, submission in taken:
        if submission.result is None and submission.error is not None:
            _keep_refused(bridge, submission)
    stored = [intake_id for intake_id, s in taken if s.result is not None and s.error is None]
    # what this process read of a body (the writer on its arrival, or the batch) goes with its retry:
    # a message is never changed by applying it (frozen), and a body is read once per process
    refused = [(intake_id, Submission(s.network, s.event, s.body, s.content_type, s.path_ids,
                                      received_at=s.received_at, message=s.message))
               for intake_id, s in taken if not (s.result is not None and s.error is None)]
    if remove:
        journal.remove(stored)
    return stored, refused


def _keep_refused(bridge: Any, submission: Submission) -> None:
    """A journal entry the store refused for a reason that does not pass (a value it cannot hold):
    kept as a dead letter (`Bridge.keep_failed`) so that it leaves the journal, instead of being
    tried again every RETRY_S for ever; one the store cannot take now stays for the next try."""
    error = submission.error
    if isinstance(error, StoreUnavailable):
        return
    try:
        submission.result = bridge.keep_failed(submission.network, submission.event, submission.body, error,
                                               content_type=submission.content_type, path_ids=submission.path_ids)
    except StoreUnavailable:
        return
    except Exception as error:  # noqa: BLE001 - left in the journal: a store refusing even the bare body is looked at
        log_failure(log, error, "a journal entry was neither applied nor kept as a dead letter")
        return
    submission.error = None


def applier_lock_path(journal: IntakeJournal) -> Path:
    """The lock file that one applier at a time holds (see lora_bridge.intake_journal)."""
    return Path(f"{journal.path}.applier")

