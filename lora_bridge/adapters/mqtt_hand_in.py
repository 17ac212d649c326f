"""How an MQTT worker hands its messages in to the bridge, and learns each one's fate.

Two ways, one contract (a message is acknowledged only once its body is durable, or kept as a dead letter):

- a bridge's own ingest (`Bridge.ingest_network_message`): the worker's messages are gathered by one
  thread and handed in together as one batch (`BatchHandIn` and `BridgeBatches`: `Bridge.write_batch_now`),
  one commit for all, no thread a message waiting to be woken by the group commit;
- any other callable like it (a stand-in, a wrapper): called for one message at a time, each message on a
  thread of its own (`HandInThreads` and `OneByOne`), as its caller may wait on the store.

Either writer answers, for each message handed in, None (durable, or kept as a dead letter: acknowledge
it) or the error its ingest met (the worker retries it, or keeps it, as `MqttIngest` says).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from lora_bridge.errors import MalformedUplink, StoreUnavailable
from lora_bridge.group_commit import MAX_BATCH, Submission
from lora_bridge.network_messages import NetworkEvent, read_network_message
from lora_bridge.uplink_formats import Uplink

log = logging.getLogger(__name__)


class InHand(NamedTuple):
    """One MQTT message the worker holds until it is acknowledged: where its topic routes it (a
    `mqtt.Routed`), its body and content type, its place in the PUBACK order (the in-flight entry
    `mqtt.RETAINED` describes), and what the body read as when it was read already (a retained message
    the store was asked about, `retained_copies.with_read`), for its batch to take instead of reading it again."""

    routed: Any
    body: bytes
    content_type: str
    entry: list[Any]
    read: Any = None


def bridge_of(ingest: Callable[..., Any]) -> Any:
    """The bridge whose `ingest_network_message` ingest is (its messages are then handed in by batches),
    else None (a callable to call for one message at a time)."""
    owner = getattr(ingest, "__self__", None)
    if owner is None or not hasattr(owner, "write_batch_now"):
        return None
    return owner if getattr(owner, "ingest_network_message", None) == ingest else None


class BridgeBatches:
    """Hands messages to a bridge as one batch (`Bridge.write_batch_now`): what `Bridge.submit` does for
    one body, for all of them at once. A body of a collar another worker owns is marked for it by share
    (a `collar_shares.CollarShare`: kept for its owner in the same batch); a body the batch failed for a
    reason that does not pass is kept as a dead letter (`Bridge.keep_failed`), as `Bridge.submit` keeps it."""

    def __init__(self, bridge: Any, share: Any = None) -> None:
        self.bridge = bridge
        self.share = share
        self.most = getattr(bridge.settings, "ingest_max_batch", MAX_BATCH)

    def write(self, messages: list[InHand]) -> list[BaseException | None]:
        """Each message's fate, in order: None once durable (or kept), else the error to retry or keep."""
        fates: list[BaseException | None] = [None] * len(messages)
        batch: list[tuple[int, Submission]] = []
        mark = self.share.mark if self.share is not None else None
        for n, message in enumerate(messages):
            routed = message.routed
            try:
                submission = self.bridge.submission(routed.network, routed.event, message.body,
                                                    content_type=message.content_type, path_ids=routed.path_ids,
                                                    read=message.read)
                if mark is not None:
                    mark(submission)
                if submission.message is None and not submission.for_owner:
                    submission.message = read_as_its_batch(submission)
                batch.append((n, submission))
            except Exception as error:  # noqa: BLE001 - that message's fate, not the batch's
                fates[n] = error
        if batch:
            self.bridge.write_batch_now([submission for _, submission in batch])
        for n, submission in batch:
            if submission.error is not None:
                fates[n] = self._kept(submission)
        return fates

    def _kept(self, submission: Submission) -> BaseException | None:
        """None once submission, whose batch failed it, is kept as a dead letter; else why it is not
        (StoreUnavailable: the store cannot take it now)."""
        error = submission.error
        if isinstance(error, StoreUnavailable) or not isinstance(error, Exception):
            return error
        try:
            self.bridge.keep_failed(submission.network, submission.event, submission.body, error,
                                    content_type=submission.content_type, path_ids=submission.path_ids)
        except Exception as unkept:  # noqa: BLE001 - the worker retries or keeps it
            return unkept
        return None


def read_as_its_batch(submission: Submission) -> Uplink | NetworkEvent | MalformedUplink | None:
    """What submission's batch reads its body as (`pipeline.keep_and_apply`: a MalformedUplink is the read of a
    body it keeps as a dead letter), read as soon as `Bridge.submission` named its kind: a TTS body's JSON,
    parsed to name it, is still in hand (`network_messages.event_name_of`) and is not parsed again. None for a
    reader that fails otherwise: the batch reads that body itself and meets the failure, as it always did."""
    try:
        return read_network_message(submission.network, submission.event, submission.body,
                                    content_type=submission.content_type, path_ids=submission.path_ids)
    except MalformedUplink as refused:
        return refused
    except Exception:  # noqa: BLE001 - a reader's bug is the batch's to meet and keep, not this message's fate
        return None


class OneByOne:
    """Hands each message to ingest (a callable like `Bridge.ingest_network_message`) by itself."""

    def __init__(self, ingest: Callable[..., Any]) -> None:
        self.ingest = ingest

    def write(self, messages: list[InHand]) -> list[BaseException | None]:
        """Each message's fate, in order: None once ingest returned, else the error it raised."""
        fates: list[BaseException | None] = []
        for message in messages:
            routed = message.routed
            try:
                self.ingest(routed.network, routed.event, message.body, content_type=message.content_type,
                            path_ids=routed.path_ids)
                fates.append(None)
            except Exception as error:  # noqa: BLE001 - the worker retries or keeps it
                fates.append(error)
        return fates


class BatchHandIn:
    """One thread that runs `work(items)` with every item put since its last call (at most `most`): an
    MQTT worker's messages gathered while its previous batch is written, then handed in together.

    The thread starts with the first item put. `close()` lets it work every item put, then ends it."""

    def __init__(self, work: Callable[[list[Any]], None], name: str, most: int = MAX_BATCH) -> None:
        self._work = work
        self._name = name
        self._most = max(1, most)
        self._items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def put(self, item: Any) -> None:
        """Have item worked in the next batch (RuntimeError once closed)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker's hand-in is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._items.put(item)

    def close(self) -> None:
        """Work every item put, then end the thread (no item may be put after)."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._items.put(None)
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        items, most = self._items, self._most
        closing = False
        while not closing:
            first = items.get()
            batch = [] if first is None else [first]
            closing = first is None
            while not closing and len(batch) < most:
                try:
                    item = items.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    closing = True
                else:
                    batch.append(item)
            if not batch:
                continue
            try:
                self._work(batch)
            except Exception:  # noqa: BLE001 - the next batch is still handed in
                log.exception("MQTT batch hand-in failed", extra={"messages": len(batch)})


class HandInThreads:
    """Up to `count` threads that each run `work(*item)` for one item put at a time: an MQTT worker's
    messages handed in, each by a thread of its own while it waits for the store.

    A thread starts when an item is put and every started thread is busy; an idle thread waits on a
    queue. It does what a thread pool's executor did for the worker, without a future, its condition
    and its locks for every message, which the worker never read: about thirty Python calls a message,
    on the network thread that reads every message. `close()` lets the threads finish what was put,
    then ends them.
    """

    def __init__(self, work: Callable[..., Any], count: int, name: str) -> None:
        self._work = work
        self._count = max(1, count)
        self._name = name
        self._items: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # started threads waiting for an item, less the items put for them
        self._lock = threading.Lock()
        self._closed = False

    def put(self, *item: Any) -> None:
        """Have item worked by an idle thread, or a new one (RuntimeError once closed)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker's threads are closed")
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self._count:
                thread = threading.Thread(target=self._run, name=f"{self._name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._items.put(item)

    def close(self) -> None:
        """Finish every item put, then end the threads (no item may be put after)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._items.put(None)
        for thread in threads:
            thread.join()

    def _run(self) -> None:
        while (item := self._items.get()) is not None:
            try:
                self._work(*item)
            except Exception:  # noqa: BLE001 - the next message still gets a thread
                log.exception("MQTT message hand-in failed")
            with self._lock:
                self._idle += 1
