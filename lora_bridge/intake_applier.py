"""The durable intake's applier in a process of its own (`intake_applier="process"`).

The webhook's process answers network servers: HTTP, reading each body, the journal's durable
commit. Applying the journal (raw rows, decoding, domain rows, the rules) is most of an uplink's CPU;
in a thread of the same process it shares one GIL with the answers, so the bridge used one core of
the machine. Here it runs in a child process:

    webhook process                                 applier process (python -m lora_bridge.intake_applier)
      writer: journal commit ---- "<last id>" --->    gathers what was committed (20 ms, up to 512),
                                                      applies it in one store transaction (no fsync);
                                                      a release thread fsyncs the store's WAL, deletes
      backlog bound, outbox, listeners <- report --   it from the journal, reports the ids and downlinks
                                                      (lora_bridge.journal_release)

`ApplierProcess` is the webhook process's side: it starts the child (handing it the settings on its
stdin, secrets left out: it needs none), tells it of each journal commit, reads its reports, and
starts it again should it die. The child, once its bridge is open, freezes its start-up heap as the
serving process does (`lora_bridge.start_up_heap`) and says how many objects in its "ready" line. The child dies with its parent (`PR_SET_PDEATHSIG` on Linux, and the
end of its stdin anywhere); one applier at a time holds the journal's applier lock, so one started
while an earlier one still finishes its batch waits for it. Nothing is lost or applied twice by a
kill -9 of either: an entry leaves the journal only after the store's commit that holds its raw row,
and an applier at its start lets entries the store holds already leave without applying them
(`durable_intake.left_in_journal`).

Why the outbox worker and the rules timer stay in the webhook's process: that process lives as long
as the bridge and supervises the applier, while the applier may be killed and started again at any
time; the timer's retry of pending bodies and the outbox's lease recovery are the safety net for just
that. Every waker of the outbox (a ranger's command through the API, a TTS route, the timer, the
applier's reports) is then in one process with one worker, and their CPU per uplink is small
(0.07-0.13 ms measured for the outbox). Their store writes meet the applier's across processes through
SQLite's busy timeout, as the dashboard's always have, not the in-process writer queue.
"""

from __future__ import annotations

import cProfile
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import SecretStr

from lora_bridge.errors import log_failure
from lora_bridge.journal_release import Committed, JournalRelease, releases_after_sync, sync_wal
from lora_bridge.os_thread_names import name_os_thread
from lora_bridge.settings import BridgeSettings

log = logging.getLogger(__name__)

# A child that died this soon after its start is started again only after a pause that doubles up
# to RESTART_MAX_S (a store that cannot be opened must not make a loop of process starts).
RESTART_MIN_S = 0.2
RESTART_MAX_S = 5.0
HEALTHY_AFTER_S = 10.0
# After "stop", the child waits this long for its reader thread to see the pipe's end before it ends.
READER_END_WAIT_S = 1.0
# The settings the child never needs: it answers nothing and pushes nothing.
SECRET_FIELDS = ("webhook_secret", "network_server_api_key", "mqtt_password")
PR_SET_PDEATHSIG = 1
# A file name here makes the child count its applying thread's Python calls (cProfile, from its "ready"
# to its end) and write them there (pstats) as it ends: `tembo bench bridge-cpu`'s figure of the process.
PROFILE_ENV = "TEMBO_APPLIER_PROFILE"
# A file name here makes the child write a line of wall-clock moments for each commit it is told of,
# each batch it gathers and applies, and each fsync and report of its release thread (JSON lines): where
# a body's time from its arrival to its alerts goes, stage by stage (docs/bridge-scale.md).
TRACE_ENV = "TEMBO_APPLIER_TRACE"
# The kernel's names of the child's threads (`os_thread_names`; its release thread's: `journal_release`):
# the one that applies the batches (the process's main thread) and the reader of the parent's pipe.
APPLYING_THREAD = "tembo-applier"
PARENT_THREAD = "tembo-parent"

Report = Callable[[dict[str, Any]], None]


def child_settings(settings: BridgeSettings) -> dict[str, Any]:
    """The settings the applier process runs with: the webhook process's, without secrets, without an
    outbox worker of its own (its downlinks are reported back) and applying at once (no intake)."""
    values: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name in SECRET_FIELDS or isinstance(value, SecretStr):
            continue
        values[name] = value
    values.update(outbox_worker=False, webhook_ack="applied", intake_applier="thread")
    return json.loads(json.dumps(values, default=str))


class ApplierProcess:
    """The webhook process's side of the applier process (see the module docstring)."""

    def __init__(self, settings: BridgeSettings, on_report: Report) -> None:
        # The child logs as this process does (its level, not the settings' default), to the same stderr.
        start = {"settings": child_settings(settings), "log_level": logging.getLogger().getEffectiveLevel()}
        self._settings_line = json.dumps(start).encode() + b"\n"
        self._on_report = on_report
        self._lock = threading.Lock()  # the child of the moment and writes to its stdin
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._ready = threading.Event()
        self.starts = 0
        # The thread that starts the child is the one whose end PR_SET_PDEATHSIG watches: it lives
        # as long as this object.
        self._thread = threading.Thread(target=self._supervise, name="tembo-intake-supervisor", daemon=True)

    @property
    def pid(self) -> int | None:
        """The live child's process id."""
        with self._lock:
            return self._process.pid if self._process is not None else None

    def start(self, timeout_s: float = 120.0) -> None:
        """Start the child and wait (up to timeout_s) until it has opened the store and the journal."""
        self._thread.start()
        if not self._ready.wait(timeout_s):
            log.warning("the intake applier process is not ready after %.0f s; bodies wait in the journal", timeout_s)

    def committed(self, last_id: int) -> None:
        """Tell the child that journal entries up to last_id are committed."""
        self._send(f"{last_id}\n".encode())

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Ask the child to apply what the journal holds and end; True once it has ended (after
        timeout_s it is killed: what it did not apply stays in the journal for the next start)."""
        with self._lock:
            self._stopping = True
        self._send(b"stop\n", close=True)
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            with self._lock:
                process = self._process
            if process is not None and process.poll() is None:
                log.warning("the intake applier process did not end within %.0f s; killed", timeout_s)
                process.kill()
            self._thread.join(timeout=10)
        return not self._thread.is_alive()

    def _send(self, line: bytes, close: bool = False) -> None:
        with self._lock:
            process = self._process
            if process is None or process.stdin is None:
                return
            try:
                process.stdin.write(line)
                process.stdin.flush()
                if close:
                    process.stdin.close()
            except (BrokenPipeError, ValueError, OSError):
                pass  # it died: the next one reads the journal from the start

    def _supervise(self) -> None:
        pause = RESTART_MIN_S
        while True:
            with self._lock:
                if self._stopping:
                    return
                process = subprocess.Popen(
                    [sys.executable, "-m", "lora_bridge.intake_applier", str(os.getpid())],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                )
                self._process = process
                self.starts += 1
                assert process.stdin is not None and process.stdout is not None
                try:
                    process.stdin.write(self._settings_line)
                    process.stdin.flush()
                except (BrokenPipeError, OSError):
                    pass
            started = time.monotonic()
            log.info("intake applier process %d started", process.pid)
            self._read_reports(process.stdout, process.pid)
            code = process.wait()
            with self._lock:
                self._process = None
                if self._stopping:
                    if code:
                        log.warning("intake applier process %d ended (exit %s) when asked to stop", process.pid, code)
                    return
            log.error("intake applier process %d ended (exit %s); starting it again", process.pid, code)
            pause = RESTART_MIN_S if time.monotonic() - started > HEALTHY_AFTER_S else min(RESTART_MAX_S, 2 * pause)
            time.sleep(pause)

    def _read_reports(self, stdout: BinaryIO, pid: int) -> None:
        for line in stdout:
            if line.startswith(b"ready"):  # "ready <objects of its start-up heap frozen>"
                log.info("intake applier process %d ready, %s objects of its start-up heap frozen (left out of the "
                         "garbage collector's passes)", pid, line[len(b"ready"):].strip().decode() or "no")
                self._ready.set()
                continue
            try:
                report = json.loads(line)
            except ValueError:
                log.warning("unreadable line from the intake applier process: %r", line[:200])
                continue
            try:
                self._on_report(report)
            except Exception as error:  # noqa: BLE001 - a report's consumer never stops the supervision
                log_failure(log, error, "an intake applier report was not handled")


# ---- the child ---------------------------------------------------------------------------------


class ParentLink:
    """What the webhook process says on the child's stdin, read by a thread: the last journal id
    committed, "stop" (apply what is there, then end), or the end of the pipe without "stop" (the
    parent is gone: end after the batch in hand). Each commit's id is kept with the moment it was
    told (`told_since`), so that the applier knows how long its oldest waiting body has waited."""

    def __init__(self, stdin: BinaryIO, trace: Callable[..., None] | None = None) -> None:
        self.changed = threading.Condition()
        self._trace = trace
        self.committed_id = 0
        self.stop_asked = False
        self.parent_gone = False
        # (the last id of a commit, time.monotonic() when it was told), oldest first; those taken leave
        self._told: deque[tuple[int, float]] = deque()
        self._stdin = stdin
        self.reader = threading.Thread(target=self._read, name="tembo-applier-parent", daemon=True)
        self.reader.start()

    def told_since(self, last_taken: int) -> float | None:
        """When the oldest commit with an id above last_taken was told (time.monotonic()); None when
        none is. Call it holding `changed`."""
        while self._told and self._told[0][0] <= last_taken:
            self._told.popleft()
        return self._told[0][1] if self._told else None

    def _read(self) -> None:
        name_os_thread(PARENT_THREAD)
        for line in self._stdin:
            text = line.strip()
            with self.changed:
                if text == b"stop":
                    self.stop_asked = True
                elif text.isdigit() and int(text) > self.committed_id:
                    self.committed_id = int(text)
                    self._told.append((self.committed_id, time.monotonic()))
                    if self._trace is not None:
                        self._trace("told", id=self.committed_id)
                self.changed.notify_all()
        with self.changed:
            self.parent_gone = not self.stop_asked
            self.stop_asked = True
            self.changed.notify_all()


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (Linux); end now if it is already gone."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            log.warning("PR_SET_PDEATHSIG not set; the applier ends when its stdin does")
    if os.getppid() != parent_pid:
        os._exit(0)


def run_child(parent_pid: int) -> int:
    """The applier process: apply what the webhook process keeps for the store named by the settings on
    stdin (a SQLite store's journal, a PostgreSQL store's raw rows `received`) until the parent says
    stop (or dies)."""

    from sqlalchemy.engine import make_url

    from lora_bridge.collector_pace import pace_young_collections
    from lora_bridge.intake_journal import (
        IntakeJournal,
        hold_lock,
        path_for_store,
        store_journal_mode,
    )
    from lora_bridge.service import Bridge
    from lora_bridge.start_up_heap import freeze_start_up_heap
    from lora_bridge.store.database import count_writes

    _die_with_parent(parent_pid)
    name_os_thread(APPLYING_THREAD)
    # Reports go on a private copy of stdout; whatever else writes to stdout goes to stderr.
    reports = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    stdin = sys.stdin.buffer
    start = json.loads(stdin.readline() or b"{}")
    settings = BridgeSettings(**start.get("settings", {}))
    logging.basicConfig(level=int(start.get("log_level", logging.WARNING)),
                        format="%(asctime)s %(levelname)s %(name)s [intake applier] %(message)s")
    journal_path = path_for_store(settings.database_url)
    postgres = settings.database_url.startswith("postgresql")
    if journal_path is None and not postgres:
        log.error("the intake applier process needs a SQLite file store or a PostgreSQL store")
        return 2
    journal = None
    store_path = None
    if journal_path is not None:
        hold_lock(Path(f"{journal_path}.applier"))  # the applier before this one has ended (held until exit)
        store_path = Path(str(make_url(settings.database_url).database))
        if releases_after_sync(settings.sqlite_synchronous, store_journal_mode(store_path)):
            # commits reach the disk by the release's fsync, before their entries leave the journal;
            # the journal's deletes need none (lora_bridge.journal_release)
            settings = settings.model_copy(update={"sqlite_synchronous": "NORMAL"})
        else:
            store_path = None
        journal = IntakeJournal(journal_path, settings.sqlite_synchronous, owner=False)
    bridge = Bridge(settings)
    wakes: list[list[int] | None] = []
    bridge.outbox_wakes = wakes.append
    work = count_writes(bridge.db)
    trace = _tracer(os.environ.get(TRACE_ENV))
    link = ParentLink(stdin, trace)
    writing = threading.Lock()  # reports come from the main thread and the release thread

    def write(message: dict[str, Any]) -> None:
        with writing:
            reports.write(json.dumps(message).encode() + b"\n")

    def taken_report(applied: list[int], batch: bool, left: list[int] | None = None) -> Committed:
        """What a report says of the work done since the last one, taken now; sent once released."""
        downlinks = sorted({i for ids in wakes if ids for i in ids})
        message = {"applied": applied, "batch": batch, "downlinks": downlinks,
                   "flush_outbox": any(ids is None for ids in wakes), **work}
        if left:
            message["left"] = left
        wakes.clear()
        work.update(statements=0, commits=0)
        return Committed(applied, message)

    def send(batch: Committed) -> None:
        write({**batch.report, "committed_at": time.time()})
        if trace is not None:
            trace("reported", ids=batch.intake_ids)

    def report(applied: list[int], batch: bool, left: list[int] | None = None) -> None:
        send(taken_report(applied, batch, left))

    def said(message: dict[str, Any]) -> None:
        write(message)

    # Its statements compiled before any body waits on them (lora_bridge.warm_up)
    log.debug("batch path warmed up in %.0f ms", 1000 * bridge.warm_up())
    # As the serving process does: what the child holds now lives as long as it does, and the full
    # collections of its batches would walk it all again (lora_bridge.start_up_heap).
    reports.write(f"ready {freeze_start_up_heap()}\n".encode())
    pace_young_collections()  # a batch's objects mostly go with it: fewer young collections (collector_pace)
    release = None
    profile_to = os.environ.get(PROFILE_ENV)
    profiler = cProfile.Profile(time.process_time) if profile_to else None
    if profiler is not None:
        profiler.enable()
    try:
        if journal is not None:
            sync = _traced_sync(store_path, trace) if store_path is not None else None
            release = JournalRelease(sync, journal.remove, send)
            return _apply_journal(bridge, journal, link, release, taken_report, said, wakes, trace)
        return _apply_received_rows(bridge, link, report, said)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(profile_to))
        if release is not None:
            release.close()
        if journal is not None:
            journal.close()
        bridge.close()
        # The parent closes the pipe right after "stop": once the reader has seen its end, nothing
        # of this process is left blocked in a read of stdin (see `_end`).
        link.reader.join(timeout=READER_END_WAIT_S)


Reporter = Callable[..., None]


def _gathered(link: ParentLink, last_taken: int, waiting: int) -> tuple[int, bool, bool]:
    """Wait for work as the applier does: while idle, until the parent tells of a commit (or half a
    second passes: a look at what is kept now and then); then until the oldest body not taken was told
    GATHER_S ago, for a fuller batch (at once when the applier holds bodies to try again, when stop is
    asked, or when the batch holds `durable_intake.gathered_enough`). (the last id committed, stop asked,
    parent gone)

    Counted from the body's commit, not from the applier's wake: bodies that came while it applied the
    batch before have waited already and wait only what is left of GATHER_S, so a body waits for company
    at most GATHER_S in all, as a lone one does, and a batch that took less than GATHER_S is not
    followed by a small one (each batch costs a share of its own: its transaction and the rules of its
    collars, lora_bridge.cpu_bench)."""
    from lora_bridge.durable_intake import GATHER_S, MAX_APPLY, MAX_BACKLOG, gathered_enough

    with link.changed:
        if not waiting and link.committed_id <= last_taken and not link.stop_asked:
            link.changed.wait(timeout=0.5)
        told = link.told_since(last_taken)
        gather_until = told + GATHER_S if told is not None and not waiting else 0.0
        enough = gathered_enough(MAX_APPLY, MAX_BACKLOG)
        while (link.committed_id - last_taken + waiting < enough
               and not link.stop_asked and link.committed_id > last_taken):
            left = gather_until - time.monotonic()
            if left <= 0:
                break
            link.changed.wait(timeout=left)
        return link.committed_id, link.stop_asked, link.parent_gone


def _tracer(to: str | None) -> Callable[..., None] | None:
    """A writer of the trace's lines to the file named `to` (TRACE_ENV), or None when there is none."""
    if not to:
        return None
    out = open(to, "a", buffering=1)  # noqa: SIM115 - open as long as the process
    lock = threading.Lock()

    def trace(what: str, **fields: Any) -> None:
        line = json.dumps({"what": what, "at": time.time(), **fields})
        with lock:
            out.write(line + "\n")

    return trace


def _traced_sync(store_path: Path, trace: Callable[..., None] | None) -> Callable[[], None]:
    """The release thread's fsync of the store, its start and end traced when there is a trace."""
    if trace is None:
        return lambda: sync_wal(store_path)

    def sync() -> None:
        trace("sync_start")
        sync_wal(store_path)
        trace("synced")

    return sync


def _apply_journal(bridge: Any, journal: Any, link: ParentLink, release: JournalRelease,
                   taken_report: Callable[..., Committed], said: Reporter, wakes: list[Any],
                   trace: Callable[..., None] | None = None) -> int:
    """A SQLite store's journal, applied in batches (`durable_intake.apply_entries`), each batch's
    entries let go by release once the store's commit is on disk; entries the store could not take are
    tried again RETRY_S later."""
    from lora_bridge.durable_intake import MAX_APPLY, RETRY_S, apply_entries, left_in_journal
    from lora_bridge.intake_journal import where_refused_wait

    # What the journal holds now: an applier killed after the journal's delete and before its report
    # applied entries the webhook process still counts as waiting.
    present, through = journal.snapshot()
    said({"journal_ids": present, "through": through})
    # the store's commits of the applier before this one on disk before their entries may leave
    release.sync_now()
    waiting, held = left_in_journal(bridge, journal)
    if held:
        release.committed(Committed([], taken_report(held, batch=False).report))
    last_taken = max([i for i, _ in waiting] + held + [0])
    retry = waiting
    while True:
        if trace is not None:
            trace("gathering")
        _committed, stopping, gone = _gathered(link, last_taken, len(retry))
        if trace is not None:
            trace("gathered")
        fresh = journal.entries(after_id=last_taken, limit=max(0, MAX_APPLY - len(retry)))
        taken = retry + [(e.intake_id, _submission_of(e)) for e in fresh]
        if fresh:
            last_taken = fresh[-1].intake_id
        if not taken:
            if stopping:
                return 0
            continue
        if trace is not None:
            trace("applying", ids=[i for i, _ in taken])
        stored, refused = apply_entries(bridge, journal, taken, remove=not release.asynchronous)
        if trace is not None:
            trace("applied", ids=stored)
        if stored or wakes:
            batch = taken_report(stored, batch=bool(stored))
            release.committed(batch if release.asynchronous else Committed([], batch.report))
            if trace is not None:
                trace("handed", ids=stored)
        retry = refused
        if gone:
            return 0
        if refused:
            if stopping:
                log.warning("%d kept bodies not taken by the store; %s", len(refused), where_refused_wait(journal))
                return 0
            log.warning("%d kept bodies not taken by the store now; tried again in %.0f s", len(refused), RETRY_S)
            with link.changed:
                link.changed.wait(timeout=RETRY_S)


def _apply_received_rows(bridge: Any, link: ParentLink, report: Reporter, said: Reporter) -> int:
    """A PostgreSQL store's raw rows kept `received` by the webhook process, applied by id in batches
    (`Bridge.apply_taken`: each row locked, one another applier or the timer applied meanwhile left as
    it is). A batch the store fails is left `received` for the timer (`Bridge.process_pending`), as the
    applier thread leaves it, and reported `left` so that the webhook process stops counting it."""
    from lora_bridge.durable_intake import MAX_APPLY, RETRY_S, apply_kept_rows, newest_raw_id, received_rows

    # What is kept and not applied now: rows the webhook process told an applier killed before it
    # applied them are among these (the first batches), and they are told of as the journal's are.
    through = newest_raw_id(bridge)
    waiting = received_rows(bridge, through_id=through)
    said({"journal_ids": waiting, "through": through})
    last_taken = through
    while True:
        committed, stopping, gone = _gathered(link, last_taken, len(waiting))
        if committed > last_taken and len(waiting) < MAX_APPLY:
            room = MAX_APPLY - len(waiting)
            try:
                fresh = received_rows(bridge, after_id=last_taken, through_id=committed, most=room)
                last_taken = fresh[-1] if len(fresh) == room else committed
            except Exception as error:  # noqa: BLE001 - the rows stay `received`: read again, or at the next start
                fresh = []
                if not (stopping or gone):
                    log.warning("kept rows not read (%s); read again in %.0f s", type(error).__name__, RETRY_S)
                    with link.changed:
                        link.changed.wait(timeout=RETRY_S)
                    continue
                log.warning("kept rows not read (%s); left for the next start", type(error).__name__)
                last_taken = committed
            waiting += fresh
        taken, waiting = waiting[:MAX_APPLY], waiting[MAX_APPLY:]
        if not taken:
            if stopping:
                return 0
            continue
        if apply_kept_rows(bridge, taken):
            report(taken, batch=True)
        else:
            report([], batch=False, left=taken)
        if gone:
            return 0


def _end(code: int) -> None:
    """End the child with code once everything it says is out. Not by the interpreter's shutdown: a
    parent that keeps the pipe open after "stop" leaves the reader thread inside a read of stdin,
    and the shutdown then aborts ("could not acquire lock for <stdin>") instead of exiting."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _submission_of(entry: Any) -> Any:
    from lora_bridge.group_commit import Submission

    return Submission(entry.network, entry.event, entry.body, entry.content_type, entry.path_ids,
                      received_at=entry.received_at)


if __name__ == "__main__":
    _end(run_child(int(sys.argv[1])))
