"""Group commit: bodies that arrive together are kept and applied together, in one transaction.

Every ingest caller (webhook requests, MQTT worker threads, replays) hands its body in and waits for
its own result. The first caller to find no batch in progress becomes the writer: it takes every body
waiting (up to `max_batch`), has them applied in one unit of work, one commit and one fsync for all,
then wakes each of their callers, whose results are ready (each caller sleeps on a lock of its own:
woken once, for its own answer). Bodies that arrive meanwhile wait for the next batch, written by the
caller of the oldest of them, handed the writing. A caller alone makes a batch of one and never waits: no timer,
no background thread, nothing to start or stop.

Each caller's answer still comes only once its body is durable: its batch's commit returns first.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lora_bridge.errors import log_failure

log = logging.getLogger(__name__)

MAX_BATCH = 256


@dataclass(eq=False)
class Submission:
    """One body handed in for ingest, and, once its batch is written, its result or error."""

    network: str
    event: str | None
    body: bytes
    content_type: str | None = None
    path_ids: dict[str, Any] | None = None
    result: Any = None
    error: BaseException | None = None
    done: bool = field(default=False, repr=False)
    # When the bridge first kept the body, if before this hand-in (the durable intake's journal).
    received_at: datetime | None = None
    # What the body holds, when it was read already (the durable intake reads each on arrival; an MQTT
    # worker each message as it names its kind, `mqtt_hand_in.read_as_its_batch`, and each retained one
    # before, to ask the store for it: `Bridge.submission`).
    message: Any = field(default=None, repr=False)
    # A body of a collar another worker owns (`lora_bridge.collar_shares`): its batch keeps it for that
    # worker (a hand-over row, in the batch's transaction) instead of applying it.
    for_owner: bool = False
    # When its sender gives up waiting for the answer (`write_lock.clock()` time; None: it waits), so
    # its batch waits for the store's write lock no longer than that (`write_lock.answering_by`).
    answer_by: float | None = None

    def outcome(self) -> Any:
        """The result; raises the error the batch met for this body (StoreUnavailable, ...)."""
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit:
    """Leader/follower batching in front of `write_batch`, which must set result or error on each
    submission it is given (an exception it raises is set as the error of those it left unset).

    A caller that must wait sleeps on a lock of its own, released once: by the writer of its batch
    when its outcome is set, or by the writer stepping down when it hands this caller the writing of
    what is left (the oldest body waiting; a `write_now` caller waiting for its turn goes first).
    No caller is woken for another's answer."""

    def __init__(self, write_batch: Callable[[list[Submission]], None], max_batch: int = MAX_BATCH) -> None:
        self._write_batch = write_batch
        self.max_batch = max(1, max_batch)
        self._mutex = threading.Lock()
        # Bodies not yet taken into a batch, in the order they came, each with the lock its caller
        # sleeps on (None for the writer's own: it does not sleep).
        self._waiting: list[tuple[Submission, threading.Lock | None]] = []
        # Locks of `write_now` callers waiting for their turn, in the order they came.
        self._turns: deque[threading.Lock] = deque()
        self._writing = False
        self.batches = 0
        self.submissions = 0
        self.wake_ups = 0  # callers woken (once each caller that waited: for its answer or to write)

    def submit(self, submission: Submission) -> Any:
        """Write submission (with whatever else is waiting) and return its result, or raise its error."""
        with self._mutex:
            if self._writing:
                wake = asleep()
                self._waiting.append((submission, wake))
            else:
                wake = None
                self._waiting.append((submission, None))
                self._writing = True
        if wake is not None:
            wake.acquire()
            if submission.done:
                return submission.outcome()
            # Handed the writing: this body is the oldest waiting, so the next batch holds it.
        try:
            while not submission.done:
                with self._mutex:
                    taken = self._waiting[: self.max_batch]
                    del self._waiting[: self.max_batch]
                try:
                    self._write([body for body, _ in taken])
                finally:
                    self._wake([wake for body, wake in taken if wake is not None and body is not submission])
        finally:
            self._step_down()
        return submission.outcome()

    def write_now(self, batch: list[Submission]) -> None:
        """Write batch as one batch now, in turn with the callers of submit; sets each outcome."""
        with self._mutex:
            if self._writing:
                turn = asleep()
                self._turns.append(turn)
            else:
                turn = None
                self._writing = True
        if turn is not None:
            turn.acquire()
        try:
            self._write(batch)
        finally:
            self._step_down()

    def waiting(self) -> int:
        """How many bodies wait for the batch in progress to end."""
        with self._mutex:
            return len(self._waiting)

    def _write(self, batch: list[Submission]) -> None:
        try:
            write_and_settle(self._write_batch, batch)
        finally:
            self.batches += 1
            self.submissions += len(batch)

    def _wake(self, wakes: list[threading.Lock]) -> None:
        """Wake the callers whose answers are set (each lock is released once, and only here or in
        `_step_down`)."""
        self.wake_ups += len(wakes)
        for wake in wakes:
            wake.release()

    def _step_down(self) -> None:
        """End this caller's writing: hand it to the first `write_now` caller waiting, else to the
        caller of the oldest body waiting, else leave no writer."""
        with self._mutex:
            if self._turns:
                handed_to = self._turns.popleft()
            else:
                # The oldest body with a caller asleep (a writer that left on an error it could not
                # settle leaves its own body here, written with the next batch).
                handed_to = next((wake for _, wake in self._waiting if wake is not None), None)
            if handed_to is None:
                self._writing = False
                return
            self.wake_ups += 1
            handed_to.release()


def asleep() -> threading.Lock:
    """A lock already held: its waiter sleeps in `acquire` until another thread releases it."""
    wake = threading.Lock()
    wake.acquire()
    return wake


def write_and_settle(write_batch: Callable[[list[Submission]], None], batch: list[Submission],
                     failure: str = "a batch of %d bodies failed") -> None:
    """Call write_batch(batch) and settle every submission of it: each leaves with its result or an
    error (the exception write_batch raised, for those it left unset, logged once as `failure` % the
    batch's size; a RuntimeError for any it left without either) and is marked done."""
    try:
        write_batch(batch)
    except BaseException as error:  # noqa: BLE001 - handed to every caller of the batch
        log_failure(log, error, failure, len(batch))
        for submission in batch:
            if submission.result is None and submission.error is None:
                submission.error = error
    finally:
        for submission in batch:
            if submission.result is None and submission.error is None:
                submission.error = RuntimeError("the batch gave this body no result")
            submission.done = True
