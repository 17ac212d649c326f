"""Webhook bodies answered once their raw row is durable, applied right after in large batches.

With `TEMBO_WEBHOOK_ACK=durable` the webhook does not wait for decoding and the rules: the network
server only needs to know that the body is kept. Two threads of the bridge's process do the work:

- the writer takes every body waiting (up to `ingest_max_batch`), reads each (a body that is not
  what its kind says goes the ordinary way, `Bridge.ingest_batch`-style, and is answered 400 with its
  dead letter), inserts the raw rows of the others in one statement and commits (one fsync for
  all); only then are their requests answered `202 received` (a store that cannot take them: 503,
  nothing kept, the network server retries);
- the applier takes every raw id committed meanwhile and applies them in one transaction with the
  rules once per collar of the batch (`Bridge.apply_taken`): the more arrived, the larger the
  batch and the fewer evaluations per uplink.

Nothing acknowledged is lost: a raw row stays `received` until the transaction that applies it
commits, so a crash (kill -9) in between leaves it for `Bridge.process_pending`, which the bridge
runs at start and on its timer; a batch the store failed to apply is retried the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from lora_bridge import ingest
from lora_bridge.errors import MalformedUplink, StoreUnavailable
from lora_bridge.group_commit import Submission
from lora_bridge.network_messages import event_name_of, read_network_message
from lora_bridge.uplink_formats import Uplink
from lora_bridge.views import IngestResult

log = logging.getLogger(__name__)

STATUS_RECEIVED = ingest.STATUS_RECEIVED
# The applier's batches: every body committed meanwhile, at most this many per transaction.
MAX_APPLY = 512
# Once a body waits, the applier gathers for this long before it applies (unless MAX_APPLY wait):
# the rules run once per collar of a batch, so a larger batch costs less per uplink.
GATHER_S = 0.02

Settled = Callable[[list[Submission]], None]
AppliedListener = Callable[[list[IngestResult], float], None]


class DurableIntake:
    """The writer and applier threads of one bridge (see the module docstring). `submit` hands a body
    in with a callback called (from the writer thread) once its outcome is set."""

    def __init__(self, bridge: Any, max_batch: int, max_apply: int = MAX_APPLY, gather_s: float = GATHER_S) -> None:
        self.bridge = bridge
        self.gather_s = gather_s
        self.max_batch = max(1, max_batch)
        self.max_apply = max(1, max_apply)
        self._changed = threading.Condition()
        self._incoming: list[tuple[Submission, Settled]] = []
        self._to_apply: list[int] = []
        self._applying = 0
        self._stopping = False
        self._listeners: list[AppliedListener] = []
        self.batches_written = 0
        self.batches_applied = 0
        self.applied = 0
        self._writer = threading.Thread(target=self._write_loop, name="tembo-intake-writer", daemon=True)
        self._applier = threading.Thread(target=self._apply_loop, name="tembo-intake-applier", daemon=True)
        self._writer.start()
        self._applier.start()

    def submit(self, submission: Submission, settled: Settled) -> None:
        """Queue submission; `settled([submission, ...])` is called once its outcome is set."""
        with self._changed:
            if self._stopping:
                submission.error = StoreUnavailable("the bridge is stopping")
                submission.done = True
                settled([submission])
                return
            self._incoming.append((submission, settled))
            self._changed.notify_all()

    def on_applied(self, listener: AppliedListener) -> None:
        """Call listener(results, wall-clock time of the commit) after every applied batch."""
        self._listeners.append(listener)

    def backlog(self) -> int:
        """Bodies waiting to be written or applied."""
        with self._changed:
            return len(self._incoming) + len(self._to_apply) + self._applying

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write and apply what is queued, then end both threads (what is left stays `received`)."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._writer.join(timeout=timeout_s)
        self._applier.join(timeout=timeout_s)

    # ---- the writer ----------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self._changed:
                while not self._incoming and not self._stopping:
                    self._changed.wait()
                if not self._incoming:
                    self._changed.notify_all()  # the applier sees the writer is done
                    return
                batch = self._incoming[: self.max_batch]
                del self._incoming[: self.max_batch]
            submissions = [submission for submission, _ in batch]
            try:
                self._write(submissions)
            except BaseException as error:  # noqa: BLE001 - every caller gets an answer
                log.exception("a batch of %d bodies was not written", len(submissions))
                for submission in submissions:
                    if submission.result is None and submission.error is None:
                        submission.error = error
            finally:
                for submission in submissions:
                    if submission.result is None and submission.error is None:
                        submission.error = RuntimeError("the batch gave this body no result")
                    submission.done = True
                self.batches_written += 1
                by_callback: dict[Settled, list[Submission]] = {}
                for submission, settled in batch:
                    by_callback.setdefault(settled, []).append(submission)
                for settled, settled_submissions in by_callback.items():
                    settled(settled_submissions)

    def _write(self, submissions: list[Submission]) -> None:
        kept: list[Submission] = []
        unreadable: list[Submission] = []
        messages: list[Any] = []
        for submission in submissions:
            network = ingest.network_of(submission.network)
            submission.event = event_name_of(network, submission.event, submission.body)
            try:
                message = read_network_message(
                    network, submission.event, submission.body,
                    content_type=submission.content_type, path_ids=submission.path_ids,
                )
            except MalformedUplink:
                unreadable.append(submission)
                continue
            except Exception:  # noqa: BLE001 - a reader's bug: kept, and the applier dead-letters it
                log.exception("body not read on intake; kept for the applier")
                message = None
            kept.append(submission)
            messages.append(message)
        if unreadable:  # kept with its dead letter in one transaction, answered 400 as ever
            self.bridge.write_batch_now(unreadable)
        if not kept:
            return
        try:
            raw_ids = ingest.store_raw_many(self.bridge.db, kept)
        except StoreUnavailable as error:
            for submission in kept:
                submission.error = error
            return
        for submission, message, raw_id in zip(kept, messages, raw_ids, strict=True):
            uplink = message if isinstance(message, Uplink) else None
            submission.result = IngestResult(
                status=STATUS_RECEIVED,
                raw_uplink_id=raw_id,
                device_id=uplink.device_id if uplink else getattr(message, "device_id", None),
                f_cnt=uplink.f_cnt if uplink else None,
                message=None if uplink else getattr(message, "kind", None),
            )
        with self._changed:
            self._to_apply.extend(raw_ids)
            self._changed.notify_all()

    # ---- the applier ---------------------------------------------------------------------------

    def _apply_loop(self) -> None:
        while True:
            with self._changed:
                while not self._to_apply and not (self._stopping and not self._writer.is_alive()):
                    self._changed.wait(timeout=0.5)
                if not self._to_apply:
                    return
                gather_until = time.monotonic() + self.gather_s
                while len(self._to_apply) < self.max_apply and not self._stopping:
                    left = gather_until - time.monotonic()
                    if left <= 0:
                        break
                    self._changed.wait(timeout=left)
                raw_ids = self._to_apply[: self.max_apply]
                del self._to_apply[: self.max_apply]
                self._applying = len(raw_ids)
            try:
                results = self.bridge.apply_taken(lambda _session, ids=raw_ids: ids)
            except Exception:  # noqa: BLE001 - the rows stay `received`: the timer applies them
                log.exception("a batch of %d stored bodies was not applied; the timer retries them", len(raw_ids))
                continue
            finally:
                with self._changed:
                    self._applying = 0
            committed_at = time.time()
            self.batches_applied += 1
            self.applied += len(results)
            for listener in self._listeners:
                try:
                    listener(results, committed_at)
                except Exception:  # noqa: BLE001 - an observer never stops ingest
                    log.exception("an applied-batch listener failed")
