"""Bridge workers sharing the collars: each collar is applied by one worker, so two workers rarely
wait on each other's row locks (a collar's row, its claims, its rule cursor).

The broker's shared subscription hands each message to one worker, whichever collar it is from. Each
worker holds a lease in the store (`bridge_workers`, renewed every `lease_s / 3`); a collar belongs to
one of the workers whose lease runs, chosen by rendezvous hashing of its key (the DevEUI or device id
the topic names) over their ids, so a worker joining or leaving moves only its own share.

A message for a collar this worker owns (or one naming no collar) is ingested as usual
(`Bridge.ingest_network_message`: stored and applied in one transaction). A message for another
worker's collar is handed over durably: a `collar_handovers` row naming the owner and holding the body
is written in the same batch transaction as this worker's own bodies (group commit: one commit for
both; the MQTT PUBACK leaves after it), and the owner keeps and applies it from the store in its own
batches as it does its own bodies: its raw row written once, in its final state, in the transaction
that deletes the hand-over. On PostgreSQL the batch tells the owner by a notification naming it, and
a worker that is told looks for hand-overs only when it was named (or the members changed, or its
last look found some): an owner with nothing handed to it reads nothing for them.

Handed-over bodies of a worker whose lease ran out (it died) are taken by any live worker, and those
of workers that all hold no lease become pending raw rows for any bridge (`keep_stranded_handovers`,
run by `Bridge.process_pending`); a hand-over row is taken by one transaction only (row lock, deleted
in it), so nothing is applied twice. A batch of hand-overs that fails is taken again as raw rows
`received` and applied one by one; one still `received` after a crash in between is the timer's
(`Bridge.process_pending`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import timedelta
from select import select as wait_readable
from typing import Any

from sqlalchemy import bindparam, delete, insert, or_, select, text
from sqlalchemy.orm import Session

from lora_bridge import ingest
from lora_bridge.errors import StoreUnavailable, driver_said, is_transient_store_error
from lora_bridge.group_commit import Submission
from lora_bridge.pipeline import collar_hint
from lora_bridge.store import bulk
from lora_bridge.store.database import postgres_connect_args
from lora_bridge.store.tables import BridgeWorker, CollarHandover
from lora_bridge.store.utc import utc_now
from lora_bridge.views import IngestResult

log = logging.getLogger(__name__)

LEASE_S = 10.0
POLL_S = 0.05
MAX_TAKE = 256
NOTIFY_CHANNEL = "tembo_collar_handovers"
# A worker took or gave back its lease: the others read the members again at once, not at their next
# renewal (a third of a lease later), so two workers agree on who owns which collar within a round trip.
MEMBERS_CHANNEL = "tembo_collar_workers"


def _notify(session: Session, channel: str, payloads: tuple[str, ...] = ("",)) -> None:
    """On PostgreSQL, notify channel's listeners of each payload when session commits (nothing
    elsewhere: polled)."""
    if session.get_bind().dialect.name == "postgresql":
        for payload in payloads:
            session.execute(_NOTIFY, {"channel": channel, "payload": payload})


_NOTIFY = text("SELECT pg_notify(:channel, :payload)").execution_options(**{bulk.TOUCHES_NO_ROWS: True})


def owner_of(collar_key: str, members: list[str] | tuple[str, ...]) -> str | None:
    """The member that owns collar_key: highest rendezvous weight (stable, and a member joining or
    leaving moves only the collars it gains or had); None when there are no members."""
    best: tuple[bytes, str] | None = None
    for member in members:
        weight = hashlib.blake2b(f"{member}\x00{collar_key}".encode(), digest_size=8).digest()
        if best is None or weight > best[0]:
            best = (weight, member)
    return best[1] if best else None


class CollarShare:
    """This worker's share of the collars: its lease, its hand-overs to others, the bodies it takes.

    `ingest` has the signature of `Bridge.ingest_network_message` (what `MqttIngest` calls): the
    bridge's batches write this worker's hand-overs (`keep_for_owners`, set as `bridge.hand_over`);
    `start()` takes the lease and starts the thread that renews it and applies the bodies handed to
    this worker; `stop()` applies what is left, then gives the lease back so the others take this
    share at once.
    """

    def __init__(self, bridge: Any, worker_id: str, *, lease_s: float = LEASE_S, poll_s: float = POLL_S) -> None:
        self.bridge = bridge
        self.worker_id = worker_id[:128]
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.members: tuple[str, ...] = ()
        # Each collar's owner among the members it was worked out for (`owner`): two hashes per member a
        # message had cost, for a herd that sends the same collars all day. Replaced whole, with the members.
        self._owners: tuple[tuple[str, ...], dict[str, str | None]] = ((), {})
        self.taken = 0
        bridge.hand_over = self.keep_for_owners  # each ingest batch writes this worker's hand-overs
        # Set when this worker may have bodies to take: named by a hand-over's notification, the members
        # changed, or its last take found some. Looked at only while a LISTEN connection would tell it
        # (`_told`); without one (SQLite, not started, the connection lost) every take looks.
        self._maybe_handed = threading.Event()
        self._maybe_handed.set()  # bodies may wait from before this worker started
        self._told = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed_at = 0.0

    def __repr__(self) -> str:
        return f"CollarShare(worker_id={self.worker_id!r}, members={self.members!r})"

    # Lifecycle -------------------------------------------------------------------------------

    def start(self) -> CollarShare:
        """Take this worker's lease (raises StoreUnavailable when the store cannot) and start its thread.
        It listens before it reads the members: a worker that joins after that read is announced to it,
        so the two never both apply the same collars until the next renewal."""
        listener = self._listen()
        try:
            self.renew()
        except Exception:
            if listener is not None:
                listener.close()
            raise
        self.bridge.take_handovers = self.take  # each ingest batch applies this worker's hand-overs too
        self._told = listener is not None
        self._thread = threading.Thread(target=self._run, args=(listener,), name=f"tembo-share-{self.worker_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Apply the bodies handed to this worker, then give its lease back."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        if self.bridge.take_handovers == self.take:
            self.bridge.take_handovers = None
        if self.bridge.hand_over == self.keep_for_owners:
            self.bridge.hand_over = None  # a body still coming in is applied here
        self._told = False
        while self.take_once():
            pass
        try:
            with self.bridge.db.write() as session:
                session.execute(delete(BridgeWorker).where(BridgeWorker.worker_id == self.worker_id))
                _notify(session, MEMBERS_CHANNEL)
        except Exception as error:  # noqa: BLE001 - the lease runs out by itself
            log.warning("lease of worker %s not given back (%s)", self.worker_id, type(error).__name__)

    def __enter__(self) -> CollarShare:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def renew(self) -> tuple[str, ...]:
        """Extend this worker's lease and read who else holds one; the live members, sorted."""
        self._renewed_at = time.monotonic()
        now = utc_now()
        try:
            with self.bridge.db.write() as session:
                lease = session.get(BridgeWorker, self.worker_id)
                if lease is None:
                    session.add(BridgeWorker(worker_id=self.worker_id, started_at=now, renewed_at=now,
                                             expires_at=now + timedelta(seconds=self.lease_s)))
                    _notify(session, MEMBERS_CHANNEL)
                else:
                    lease.renewed_at = now
                    lease.expires_at = now + timedelta(seconds=self.lease_s)
                session.flush()
                members = tuple(session.scalars(
                    select(BridgeWorker.worker_id).where(BridgeWorker.expires_at > now).order_by(BridgeWorker.worker_id)
                ))
        except Exception as error:
            if is_transient_store_error(error):
                # the driver's first line: its SQL and parameters stay out of the operator's log
                raise StoreUnavailable(f"lease of worker {self.worker_id} not renewed: {driver_said(error)[:200]}") \
                    from error
            raise
        if members != self.members:
            self._maybe_handed.set()  # a worker that left may have left bodies to take
            log.info("workers sharing the collars: %s", ", ".join(members), extra={"worker_id": self.worker_id})
        self.members = members
        return members

    # Ingest ----------------------------------------------------------------------------------

    def owner(self, collar_key: str) -> str | None:
        """The member that owns collar_key (`owner_of` the members), remembered until the members change."""
        members = self.members
        known_for, owners = self._owners
        if known_for != members:
            owners = {}
            self._owners = (members, owners)
        if collar_key not in owners:
            owners[collar_key] = owner_of(collar_key, members)
        return owners[collar_key]

    def owns(self, collar_key: str) -> bool:
        """True when this worker applies collar_key's bodies itself (no key, no members: always)."""
        owner = self.owner(collar_key) if collar_key else None
        return owner is None or owner == self.worker_id

    @property
    def handed_over(self) -> int:
        """Bodies this worker's batches handed to other workers so far (committed)."""
        return self.bridge.ingest_batches()["handed_over"]

    def ingest(
        self,
        network: str,
        event: str | None,
        body: bytes,
        *,
        content_type: str | None = "application/json",
        path_ids: dict[str, str] | None = None,
    ) -> IngestResult:
        """Like `Bridge.ingest_network_message`; a body of another worker's collar is kept for that
        worker in the same batch (status `received`: durable, applied by its owner). Raises
        StoreUnavailable."""
        submission = self.bridge.submission(network, event, body, content_type=content_type, path_ids=path_ids)
        return self.bridge.submit(self.mark(submission))

    def mark(self, submission: Submission) -> Submission:
        """submission (a `Bridge.submission`), marked `for_owner` when another worker owns its collar."""
        submission.for_owner = not self.owns(collar_hint(submission))
        return submission

    def keep_for_owners(self, session: Session, submissions: list[Submission]) -> None:
        """Inside session's transaction (an ingest batch's): one insert, a hand-over row for each body of
        submissions, holding the body, to its collar's owner (who writes its raw row when it applies
        it); each owner notified by name at the commit."""
        handed_at = utc_now()
        rows = []
        for submission in submissions:
            key = collar_hint(submission)
            rows.append({**ingest.submitted(submission), "collar_key": key[:128],
                         "to_worker": self.owner(key) or self.worker_id, "from_worker": self.worker_id,
                         "handed_at": handed_at})
        # into the table, not through the ORM's bulk insert: the rows are plain values, never objects of
        # the session (its per-row bookkeeping cost more Python than the insert itself)
        session.execute(_INSERT_HANDOVERS, rows)
        _notify(session, NOTIFY_CHANNEL, tuple(sorted({row["to_worker"] for row in rows})))

    # Bodies handed to this worker ------------------------------------------------------------

    def take_once(self) -> int:
        """Apply one batch of the bodies handed to this worker (or to a worker whose lease ran out),
        collar by collar, in one transaction with their rules; how many were taken. (While this
        worker ingests, its ingest batches take them first: `Bridge._write_batch`.)"""
        if self._told and not self._maybe_handed.is_set():
            return 0  # named by no hand-over since the last look
        if self.bridge.db.write_engine.dialect.name == "sqlite":
            # SQLite has one writer at a time: look first, so an idle worker polls without taking it.
            addressed, _, values = self._addressed()
            with self.bridge.db.read() as session:
                if session.scalar(select(CollarHandover.id).where(addressed).limit(1), values) is None:
                    return 0
        return len(self.bridge.apply_handed(self.take))

    def take(self, session: Session) -> list[Submission]:
        """Inside session's transaction: claim up to MAX_TAKE bodies handed to this worker (or to a
        worker whose lease ran out), deleting their hand-over rows (a rollback gives them back); the
        bodies, in the order they were handed over. While notifications tell this worker of its
        hand-overs, it looks only when it may have some."""
        if self._told and not self._maybe_handed.is_set():
            return []
        self._maybe_handed.clear()  # a hand-over committed from here on notifies this worker again
        _, taking, values = self._addressed()
        handed = take_handovers(session, taking, values)
        if handed:
            # More may wait (at most MAX_TAKE a take), or this transaction may roll back and give
            # them back: the next take looks again.
            self._maybe_handed.set()
        self.taken += len(handed)  # counted when claimed: a batch rolled back claims them again
        return handed

    def _addressed(self) -> tuple[Any, Any, dict[str, Any]]:
        """The hand-over rows this worker takes: its own, and those of workers that hold no lease
        (once it knows the members); the condition and the statement that takes them, both built
        once, and their values."""
        if self.members:
            return _ADDRESSED, _TAKE_ADDRESSED, {"worker_id": self.worker_id, "members": list(self.members)}
        return _MINE, _TAKE_MINE, {"worker_id": self.worker_id}

    def _run(self, listener: Any) -> None:
        renew_every = self.lease_s / 3
        members_changed = False
        try:
            while not self._stopping.is_set():
                try:
                    if self._due(renew_every) or members_changed:
                        self.renew()
                    members_changed = False
                    if self.bridge.ingesting(self.poll_s):
                        # This worker is ingesting: its next batch takes the hand-overs with its own bodies;
                        # a member joining or leaving meanwhile is read at once, busy or not.
                        members_changed = self._idle(listener, self.poll_s)
                    elif self.take_once() == 0:
                        members_changed = self._idle(listener, renew_every)
                except Exception as error:  # noqa: BLE001 - the store is back later; the lease runs out meanwhile
                    log.warning("worker %s: store unavailable (%s: %s); trying again", self.worker_id,
                                type(error).__name__, driver_said(error)[:200], extra={"worker_id": self.worker_id})
                    self._stopping.wait(1.0)
        finally:
            if listener is not None:
                listener.close()

    def _listen(self) -> Any:
        """On PostgreSQL, a connection of its own that LISTENs for hand-overs (the sender NOTIFYs in its
        transaction, delivered at commit): an idle worker waits on it instead of polling the store.
        None elsewhere (SQLite: polled every poll_s) or when it cannot connect, within the store's
        connect timeout (`database_connect_timeout_s`, as every connection of the bridge)."""
        engine = self.bridge.db.write_engine
        if engine.dialect.name != "postgresql":
            return None
        try:
            import psycopg

            url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            timeout = postgres_connect_args(engine.url, self.bridge.settings.database_connect_timeout_s)
            listener = psycopg.connect(url, autocommit=True, **timeout)
            listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
            listener.execute(f"LISTEN {MEMBERS_CHANNEL}")
            return listener
        except Exception as error:  # noqa: BLE001 - polling still finds every hand-over
            log.warning("worker %s: no LISTEN connection (%s); polling", self.worker_id, type(error).__name__)
            return None

    def _idle(self, listener: Any, at_most_s: float) -> bool:
        """Wait for a hand-over to this worker or a change of members (a notification), the stop, or
        at_most_s; True when a worker took or gave back its lease meanwhile."""
        if listener is None:
            self._stopping.wait(min(self.poll_s, at_most_s))
            return False
        wait_s = min(1.0, at_most_s)  # the stop is seen within a second
        try:
            # The connection's socket is waited on first: psycopg's own wait for notifications costs about
            # 330 Python calls a look, and a worker that ingests looks every poll_s (20 times a second). Only
            # when something came are the notifications read, every one that came (the listener runs no
            # statement, so none waits in psycopg's buffers while its socket is quiet).
            readable, _, _ = wait_readable([listener.fileno()], [], [], wait_s)
            notes = list(listener.notifies(timeout=0)) if readable else []
        except Exception:
            self._told = False  # no longer told of hand-overs: every take looks
            raise
        for note in notes:
            if note.channel == NOTIFY_CHANNEL and note.payload == self.worker_id:
                self._maybe_handed.set()
        return any(note.channel == MEMBERS_CHANNEL for note in notes)

    def _due(self, every_s: float) -> bool:
        return time.monotonic() - self._renewed_at >= every_s


def take_handovers(session: Session, taking: Any, values: dict[str, Any] | None = None,
                   most: int = MAX_TAKE) -> list[Submission]:
    """Inside session's transaction: claim up to `most` hand-over rows with `taking` (a
    `_take_statement`, with values for its condition's parameters; rows another transaction holds
    are skipped), deleting them in the same statement (a rollback gives them back); their bodies as
    submissions, in the order they were handed over."""
    rows = sorted(session.execute(taking, {**(values or {}), "most": most}).all())
    # a handed body was first kept when it was handed over
    return [Submission(row.source, row.event, row.body, content_type=row.content_type, path_ids=row.path_ids,
                       received_at=row.handed_at) for row in rows]


def _take_statement(addressed: Any) -> Any:
    """Claim (FOR UPDATE SKIP LOCKED) and delete the first `most` rows addressed selects, returning
    what take_handovers hands on."""
    claimed = (select(CollarHandover.id).where(addressed).order_by(CollarHandover.id).limit(bindparam("most"))
               .with_for_update(skip_locked=True).scalar_subquery())
    return (delete(CollarHandover).where(CollarHandover.id.in_(claimed))
            .returning(CollarHandover.id, CollarHandover.source, CollarHandover.event, CollarHandover.body,
                       CollarHandover.content_type, CollarHandover.path_ids, CollarHandover.handed_at)
            .execution_options(synchronize_session=False))


# What a worker takes, as conditions and statements built once: each batch of a worker sharing the
# collars may take, and building the statement cost more than running its cached compilation.
_MINE = CollarHandover.to_worker == bindparam("worker_id")
_ADDRESSED = or_(_MINE, CollarHandover.to_worker.not_in(bindparam("members", expanding=True)))
_TAKE_MINE = _take_statement(_MINE)
_TAKE_ADDRESSED = _take_statement(_ADDRESSED)
_INSERT_HANDOVERS = insert(CollarHandover.__table__)


def keep_stranded_handovers(db: Any) -> int:
    """Hand-overs to workers that hold no lease (they stopped or died, and no worker sharing the
    collars is left to take them) become raw rows `received`, applied as every pending body is
    (`Bridge.process_pending`); how many. A bridge that shares no collars runs this at its start and
    by its timer, so nothing handed over waits for a worker that never comes."""
    live = select(BridgeWorker.worker_id).where(BridgeWorker.expires_at > utc_now())
    stranded = CollarHandover.to_worker.not_in(live)
    taking = _take_statement(stranded)
    # A look first: the timer runs this every few seconds, and on SQLite a write transaction would take
    # the store's one write lock from the applier for nothing.
    with db.read() as session:
        if session.scalar(select(CollarHandover.id).where(stranded).limit(1)) is None:
            return 0
    kept = 0
    while True:
        with db.write() as session:
            handed = take_handovers(session, taking)
            if handed:
                ingest.insert_raw_rows(session, handed)
        kept += len(handed)
        if len(handed) < MAX_TAKE:
            return kept
