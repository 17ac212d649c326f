"""CPU per uplink of the bridge's two sides, for `tembo bench bridge-cpu --json`: a small, steady figure.

`tembo bench bridge` measures rates and latencies with a load process, a server and a whole herd; on a
busy machine its rates move more from run to run than most changes to the code do. This bench measures
the bridge's own CPU time (`time.process_time`, this process) for the bench's herd
(`lora_bridge.bench.synthetic_bodies`), with no clock time in any figure:

    applier_cpu_ms_per_uplink      the applier's work, as the applier process does it: TTS bodies as the
                                   intake journal holds them (only the bytes: the process reads each once)
                                   applied by `Bridge.write_batch_now` in batches of `batch` on a fresh SQLite
                                   store after `Bridge.warm_up()`, the bridge set as in the applier process
                                   (no outbox worker; commits at synchronous NORMAL, its release thread's
                                   fsync not counted); the median and the least of `rounds`
                                   fresh stores (`_each_round`: every round's)
    applier_system_cpu_ms_per_uplink   the part of it spent in the kernel (system time: the store's reads and
                                   writes of its pages), median of the same rounds
    applier_python_calls_per_uplink   Python function calls the same batches make (a profiler counting each
                                   call on one more fresh store): the same in every run of the same code.
                                   Every applier round collects as the applier process does from its
                                   "ready" on (`as_the_applier_process_collects`): its heap collected and
                                   frozen after the warm-up, young collections paced (`collector_pace`), so
                                   what ran before in this process (imports, earlier rounds) does not move
                                   the collections into or out of the counted batches
    applier_statements_per_small_batch   SQL statements a batch of SMALL_BATCH bodies makes (the batch a webhook
                                   answered once applied is made of, eight senders each waiting for its answer:
                                   4.05 bodies on PostgreSQL, 4.09 on SQLite in `tembo bench bridge`), the same
                                   applier on one more fresh store, its first 248 bodies applied in batches of
                                   `batch` first (the herd's collars known), then SMALL_BATCH_COUNT such
                                   batches counted: the part a batch pays whatever its size, and on PostgreSQL
                                   each statement a round trip to the server
    applier_python_calls_per_small_batch   Python calls of the same batches, each (cProfile): within a call
                                   a batch from run to run of the same code (this process's first batches of
                                   that size build a few statements once: a second such count in the same
                                   process gives about 25 fewer)
    measured_code                  which code the figures are of: the folder the `lora_bridge` package was
                                   imported from and a digest of its .py files (`measured_code`). The
                                   shared virtualenv installs the package editable, so a run that does not
                                   put its tree first on the path measures another tree (`python -m` and
                                   `-c` put the current folder before PYTHONPATH): two runs whose digests
                                   differ measured different code
    intake_cpu_ms_per_uplink       the webhook's side with the durable answer: each body handed to the
                                   webhook's ASGI app in this process (Starlette, the secret, the handler,
                                   the durable intake's writer reading it and committing it to the journal,
                                   the answer), `connections` requests at a time, the applier a process of
                                   its own, its outbox worker started (as the server starts it); uvicorn's
                                   HTTP parsing is not in it. Median and least of `rounds` after a run of a
                                   tenth of the bodies that warms the process up
    intake_cpu_ms_per_uplink_by_thread   the same by thread (medians): http (the thread that runs the app),
                                   writer, supervisor (the applier process's reports), outbox
    intake_applier_process_cpu_ms_per_uplink   that run's applier process (its whole CPU from the first
                                   body to the last applied: batches as large as the moment made them)
    intake_applier_process_cpu_ms_per_uplink_by_thread   the same by thread of that process (medians; time on
                                   a CPU from the kernel's schedstat, in nanoseconds): applying (its main
                                   thread: reading the journal, the batches), release (the store's fsync, the
                                   journal's deletes, the reports), parent_pipe (the reader of the webhook
                                   process's commit notices), other
    intake_applier_process_system_cpu_ms_per_uplink   the part of it spent in the kernel (its system time,
                                   all its threads: the store's WAL writes, the journal's reads, the release
                                   thread's fsyncs and deletes), median; the rest is user time, its Python
    intake_applier_process_mean_batch   bodies per store transaction in those runs (median): the applier's
                                   batches as the run's pace made them (`intake_applier._gathered`)
    intake_applier_process_python_calls_per_uplink   the Python calls per body of that process's applying
                                   thread (`intake_applier.PROFILE_ENV`, one more run, with the handler's
                                   count): from its "ready" to its end, the journal's reads, the batches, the
                                   gathering; its release thread's fsyncs, deletes and reports are not counted.
                                   It follows the batches' size (a batch's transaction and rules are paid once),
                                   so read it with `intake_applier_process_profiled_mean_batch`, that run's
    intake_handler_python_calls_per_uplink   the Python calls per body of the thread that runs the ASGI
                                   app (the HTTP side; the writer's thread is not counted)
    intake_writer_python_calls_per_uplink   the Python calls per body of the durable intake's writer as
                                   that run sets it (the applier a process of its own): the herd's bodies
                                   handed to its batch write (`DurableIntake._write`, as its thread calls
                                   it) in batches of `connections` (every body waiting, when each
                                   connection has one in), read and committed to the journal, after a
                                   tenth of them went first, twice, to name the herd's collars (a running
                                   bridge remembers them, once applied); cProfile on the calling thread: the same
                                   in every run within half a call (a journal commit that meets the applier's
                                   delete tries again, a few calls a run)
    load_cpu_ms_per_request        the bench's load process (`lora_bridge.bench_load.drive`, as `tembo bench
                                   bridge` runs it, here in this process) posting the herd's bodies over
                                   `connections` keep-alive connections to a stand-in webhook in a process of
                                   its own that answers each as the durable intake does (202, its JSON); the
                                   load shares the machine with the bridge it measures. Median and least of
                                   `rounds` after a warm-up run
    load_python_calls_per_request  the Python calls per body of the same (cProfile): the same in every run
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import hashlib
import logging
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lora_bridge
from lora_bridge import bench_load
from lora_bridge.adapters.webhook import SECRET_HEADER, create_app
from lora_bridge.bench import BENCH_SECRET, cpu_by_part, process_tree_cpu_s, synthetic_bodies, thread_cpu_s
from lora_bridge.collector_pace import pace_young_collections
from lora_bridge.group_commit import Submission, write_and_settle
from lora_bridge.intake_applier import APPLYING_THREAD, PARENT_THREAD, PROFILE_ENV
from lora_bridge.journal_release import RELEASE_THREAD
from lora_bridge.network_messages import event_name_of
from lora_bridge.os_thread_names import on_cpu_s_by_thread_name
from lora_bridge.service import open_bridge
from lora_bridge.store.database import count_writes
from lora_bridge.uplink_formats import SOURCE_TTS


def applier_cpu_s(database_url: str, bodies: list[bytes], batch: int, profile: bool = False) -> tuple[float, int]:
    """(CPU seconds, Python calls or 0) of applying bodies in batches of `batch` on database_url after a
    warm-up, as the applier process applies journal entries."""
    spent, _system, calls = _applier_cpu(database_url, bodies, batch, profile)
    return spent, calls


def _applier_cpu(database_url: str, bodies: list[bytes], batch: int, profile: bool) -> tuple[float, float, int]:
    """`applier_cpu_s`'s (CPU seconds, of them system seconds, Python calls or 0)."""
    # as the applier process opens it (`intake_applier.run_child`): no outbox worker of its own, the store's
    # commits made durable by its release thread's fsync (`journal_release`), so NORMAL here
    with open_bridge(database_url, webhook_secret=BENCH_SECRET, outbox_worker=False,
                     sqlite_synchronous="NORMAL") as bridge:
        # each body with the event name the webhook's writer journals beside it (`event_name_of`, the
        # applier process's `Submission.event`), so that its reading is counted as the process pays it;
        # named before the warm-up, whose reading leaves no body parsed here for the applier to take
        batches = [_journalled(bodies[first:first + batch]) for first in range(0, len(bodies), batch)]
        bridge.warm_up()
        profiler = cProfile.Profile(time.process_time) if profile else None
        rules_failures = FailuresLogged()
        with as_the_applier_process_collects():
            started, system_started = time.process_time(), os.times().system
            if profiler is not None:
                profiler.enable()
            with rules_failures.watching(RULES_LOGGER):
                for submissions in batches:
                    bridge.write_batch_now(submissions)
            if profiler is not None:
                profiler.disable()
            spent, system = time.process_time() - started, os.times().system - system_started
        _all_applied(batches, rules_failures)
    calls = pstats.Stats(profiler).total_calls if profiler is not None else 0  # type: ignore[attr-defined]
    return spent, system, calls


def _journalled(bodies: list[bytes]) -> list[Submission]:
    """bodies as the applier process takes them from the journal: each with the event name the webhook's
    writer journals beside it (`event_name_of`)."""
    return [Submission(SOURCE_TTS, event_name_of(SOURCE_TTS, None, body), body, "application/json") for body in bodies]


def _all_applied(batches: list[list[Submission]], rules_failures: FailuresLogged) -> None:
    """Raise unless every body of batches was applied and no rule failed while they were: a rule that raises
    is logged and its collar judged again alone, every body still applied and the figures those of a
    failure's path (a draft rule's error had counted 4,433 calls an uplink)."""
    failed = [s for submissions in batches for s in submissions if s.error is not None or s.result is None]
    if failed:
        raise RuntimeError(f"{len(failed)} bodies not applied: {failed[0].error!r}")
    if rules_failures.messages:
        raise RuntimeError(f"{len(rules_failures.messages)} rule evaluations failed during the run: "
                           f"{rules_failures.messages[0]}")


# The small batches `small_batch_costs` counts: their size (a webhook answered once applied, eight senders),
# how many, and the bodies applied before them in the bench's batches (the herd's 40 collars heard).
SMALL_BATCH = 4
SMALL_BATCH_COUNT = 40
BODIES_BEFORE_SMALL_BATCHES = 248


@dataclass
class SmallBatchCosts:
    """What a small batch costs the applier: its SQL statements and its Python calls, each a batch."""

    statements: float
    calls: float


def small_batch_costs(database_url: str, bodies: list[bytes], batch: int) -> SmallBatchCosts:
    """The statements and Python calls of each of SMALL_BATCH_COUNT batches of SMALL_BATCH bodies applied
    as the applier process applies them (`_applier_cpu`), after BODIES_BEFORE_SMALL_BATCHES bodies in
    batches of `batch` (of a smaller herd: half its bodies first, then as many small batches as the rest
    makes, up to SMALL_BATCH_COUNT)."""
    first = min(BODIES_BEFORE_SMALL_BATCHES, len(bodies) // 2)  # a small herd: half its bodies first
    count = min(SMALL_BATCH_COUNT, (len(bodies) - first) // SMALL_BATCH)
    if count < 1:
        raise ValueError(f"{len(bodies)} bodies make no batch of {SMALL_BATCH} after the first half")
    small = bodies[first:first + SMALL_BATCH * count]
    with open_bridge(database_url, webhook_secret=BENCH_SECRET, outbox_worker=False,
                     sqlite_synchronous="NORMAL") as bridge:
        bridge.warm_up()
        for start in range(0, first, batch):
            bridge.write_batch_now(_journalled(bodies[start:min(first, start + batch)]))
        batches = [_journalled(small[start:start + SMALL_BATCH]) for start in range(0, len(small), SMALL_BATCH)]
        counts = count_writes(bridge.db)
        profiler = cProfile.Profile(time.process_time)
        rules_failures = FailuresLogged()
        with as_the_applier_process_collects(), rules_failures.watching(RULES_LOGGER):
            profiler.enable()
            for each in batches:
                bridge.write_batch_now(each)
            profiler.disable()
        _all_applied(batches, rules_failures)
    calls = pstats.Stats(profiler).total_calls  # type: ignore[attr-defined]
    return SmallBatchCosts(statements=counts["statements"] / len(batches), calls=calls / len(batches))


@contextmanager
def as_the_applier_process_collects() -> Iterator[None]:
    """Within: the cyclic garbage collector as the applier process has it once ready
    (`intake_applier.run_child`): what this process holds collected and frozen (`start_up_heap`),
    young collections paced (`collector_pace`); afterwards the collector as it was. The applier
    process freezes once for its life; the bench freezes for each round and lets go after it (unless
    this process had frozen objects of its own before: those stay frozen, with the round's), so every
    round starts from the same collector state whatever this process did before."""
    threshold, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    gc.collect()
    gc.freeze()
    pace_young_collections()
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if not frozen_before:
            gc.unfreeze()


def measured_code() -> dict[str, str]:
    """The folder the `lora_bridge` package was imported from and a digest (sha256, 16 hex digits) of
    its .py files' names and bytes: the code this process's figures are of."""
    package = Path(lora_bridge.__file__).parent
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes())
    return {"path": str(package.parent), "digest": digest.hexdigest()[:16]}

# The logger whose errors say a collar's server rules failed (`rules_engine._judged_one_by_one`)
RULES_LOGGER = "lora_bridge.domain.rules_engine"


class FailuresLogged(logging.Handler):
    """The messages of error records a logger (and those below it) logs while watched."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage()[:300])

    @contextmanager
    def watching(self, name: str) -> Iterator[FailuresLogged]:
        logger = logging.getLogger(name)
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)


def process_system_cpu_s(pid: int | None) -> float:
    """The system CPU seconds (time in the kernel, all its threads) of the live process pid; 0.0 when
    pid is None or gone. The applier process starts no children, so none are counted."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return 0.0
    return int(text[text.rindex(")") + 2:].split()[12]) / os.sysconf("SC_CLK_TCK")  # stime (proc(5))


@dataclass
class IntakeRun:
    """What one run of the webhook's side measured (`intake_cpu_s`)."""

    cpu_s: float  # this process's CPU seconds
    applier_cpu_s: float  # the applier process's
    calls: int  # this process's Python calls (0: not profiled)
    by_part: dict[str, float]  # this process's CPU seconds by part as `bench.THREAD_PARTS` names them
    applier_batches: int  # the applier process's batches (store transactions) that applied bodies
    applier_calls: int  # the applier process's Python calls in its applying thread (0: not profiled)
    applier_system_s: float = 0.0  # of applier_cpu_s, the applier process's system (kernel) seconds
    # the applier process's seconds on a CPU by part as APPLIER_THREAD_PARTS names them
    applier_by_part: dict[str, float] = field(default_factory=dict)


# The applier process's threads by their kernel names (`os_thread_names`); any other: "other".
APPLIER_THREAD_PARTS = {APPLYING_THREAD: "applying", RELEASE_THREAD: "release", PARENT_THREAD: "parent_pipe"}


def applier_cpu_by_part(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Seconds on a CPU each part of the applier process spent between two `on_cpu_s_by_thread_name`
    readings."""
    parts = dict.fromkeys((*APPLIER_THREAD_PARTS.values(), "other"), 0.0)
    for name, seconds in after.items():
        parts[APPLIER_THREAD_PARTS.get(name, "other")] += seconds - before.get(name, 0.0)
    return parts


def intake_cpu_s(database_url: str, bodies: list[bytes], connections: int, profile: bool = False,
                 applier_profile: bool = False) -> IntakeRun:
    """Post bodies to the webhook's ASGI app with the durable answer, `connections` at a time, until all
    are applied; profile: count this process's Python calls, applier_profile: the applier process's
    (`intake_applier.PROFILE_ENV`: its applying thread from its "ready" to its end)."""
    if not applier_profile:
        return _intake_run(database_url, bodies, connections, profile)
    with tempfile.TemporaryDirectory(prefix="tembo-applier-profile-") as folder:
        stats = Path(folder) / "applier.pstats"
        os.environ[PROFILE_ENV] = str(stats)  # the applier process started by the bridge inherits it
        try:
            run = _intake_run(database_url, bodies, connections, profile)
        finally:
            os.environ.pop(PROFILE_ENV, None)
        run.applier_calls = pstats.Stats(str(stats)).total_calls  # type: ignore[attr-defined]
    return run


def _intake_run(database_url: str, bodies: list[bytes], connections: int, profile: bool) -> IntakeRun:
    with open_bridge(database_url, webhook_secret=BENCH_SECRET, webhook_ack="durable",
                     intake_applier="process") as bridge:
        app = create_app(bridge)
        intake = bridge.durable_intake()
        outbox = bridge.start_outbox_worker()  # as the server starts it: its first full flush before the bodies
        while outbox.full_flushes < 1:
            time.sleep(0.005)
        applier_pid = intake.applier_pid()
        profiler = cProfile.Profile(time.process_time) if profile else None
        statuses: list[int] = []
        threads_started = thread_cpu_s()
        batches_started = intake.batches_applied
        started, applier_started = time.process_time(), process_tree_cpu_s(applier_pid)
        applier_system_started = process_system_cpu_s(applier_pid)
        applier_threads_started = on_cpu_s_by_thread_name(applier_pid) if applier_pid is not None else {}
        if profiler is not None:
            profiler.enable()
        asyncio.run(_post_all(app, bodies, connections, statuses))
        if profiler is not None:
            profiler.disable()
        while intake.backlog():
            time.sleep(0.005)
        spent = time.process_time() - started
        by_part = cpu_by_part(threads_started, thread_cpu_s())
        by_part["http"] += by_part.pop("other", 0.0)  # this thread, which runs the app and its event loop
        applier_spent = process_tree_cpu_s(applier_pid) - applier_started
        applier_system = process_system_cpu_s(applier_pid) - applier_system_started
        applier_by_part = applier_cpu_by_part(
            applier_threads_started, on_cpu_s_by_thread_name(applier_pid) if applier_pid is not None else {})
        batches = intake.batches_applied - batches_started
        if intake.applier_pid() != applier_pid:
            raise RuntimeError("the applier process was started again during the run: its CPU is not known")
    refused = [code for code in statuses if code != 202]
    if refused:
        raise RuntimeError(f"{len(refused)} bodies not answered 202: {sorted(set(refused))}")
    calls = pstats.Stats(profiler).total_calls if profiler is not None else 0  # type: ignore[attr-defined]
    return IntakeRun(spent, applier_spent, calls, by_part, batches, 0, applier_system, applier_by_part)


def writer_python_calls(database_url: str, bodies: list[bytes], batch: int) -> int:
    """Python calls of the durable intake's writer (`DurableIntake._write`, called here as its thread
    calls it, `group_commit.write_and_settle`) reading and journalling bodies in batches of `batch`,
    after a tenth of them went first; RuntimeError when a body was not kept."""
    with open_bridge(database_url, webhook_secret=BENCH_SECRET, webhook_ack="durable",
                     intake_applier="process") as bridge:
        intake = bridge.durable_intake()

        def batches(some: list[bytes]) -> list[list[Submission]]:
            return [[Submission(SOURCE_TTS, None, body, "application/json") for body in some[first:first + batch]]
                    for first in range(0, len(some), batch)]

        for _ in range(2):  # the second time, the first time's bodies applied, their collars are found and remembered
            for submissions in batches(bodies[:max(1, len(bodies) // 10)]):
                write_and_settle(intake._write, submissions)  # noqa: SLF001 - the writer thread's own call
            while intake.backlog():
                time.sleep(0.005)
        measured = batches(bodies)
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for submissions in measured:
            write_and_settle(intake._write, submissions)  # noqa: SLF001 - the writer thread's own call
        profiler.disable()
        while intake.backlog():
            time.sleep(0.005)
    failed = [s for submissions in measured for s in submissions if s.error is not None or s.result is None]
    if failed:
        raise RuntimeError(f"{len(failed)} bodies not kept by the writer: {failed[0].error!r}")
    return pstats.Stats(profiler).total_calls  # type: ignore[attr-defined]


async def _post_all(app: Any, bodies: list[bytes], connections: int, statuses: list[int]) -> None:
    queue = iter(bodies)

    async def client() -> None:
        for body in queue:
            statuses.append(await _post(app, body))

    await asyncio.gather(*(client() for _ in range(connections)))


async def _post(app: Any, body: bytes) -> int:
    """One POST /uplinks/tts of body to the ASGI app; its status code."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/uplinks/tts", "raw_path": b"/uplinks/tts", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (SECRET_HEADER.lower().encode(), BENCH_SECRET.encode())],
        "client": ("127.0.0.1", 40000), "server": ("bench", 80),
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected until the answer
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def load_cpu_s(bodies: list[bytes], connections: int, profile: bool = False) -> tuple[float, int]:
    """(CPU seconds of this process, Python calls or 0) of the bench's load posting bodies over
    `connections` connections to `stand_in_webhook` in a process of its own, every one answered 202."""
    server = subprocess.Popen([sys.executable, "-c", "from lora_bridge.cpu_bench import stand_in_webhook; stand_in_webhook()"],
                              stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}"
        with tempfile.TemporaryDirectory(prefix="tembo-load-bench-") as folder:
            bodies_file = Path(folder) / "bodies.jsonl"
            bodies_file.write_bytes(b"\n".join(bodies))
            profiler = cProfile.Profile(time.process_time) if profile else None
            if profiler is not None:
                profiler.enable()
            driven = bench_load.drive(url, SECRET_HEADER, BENCH_SECRET, str(bodies_file), connections)
            if profiler is not None:
                profiler.disable()
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()  # type: ignore[union-attr]
    refused = [code for code in driven["statuses"] if code != 202]
    if refused or None in driven["raw_ids"]:
        raise RuntimeError(f"{len(refused)} bodies not answered 202 by the stand-in webhook: {sorted(set(refused))}")
    calls = pstats.Stats(profiler).total_calls if profiler is not None else 0  # type: ignore[attr-defined]
    return driven["cpu_s"], calls


def stand_in_webhook() -> None:
    """A webhook that answers each POST as the durable intake answers a TTS uplink (202 received, its
    intake_id), on a free port it prints, until it is ended; it does none of the bridge's work."""

    class Answering(asyncio.Protocol):
        given = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                head = self.buffer[:end].lower()
                length = int(head.partition(b"content-length:")[2].partition(b"\r\n")[0])
                if len(self.buffer) < end + 4 + length:
                    return
                self.buffer = self.buffer[end + 4 + length:]
                Answering.given += 1
                answer = (b'{"status":"received","raw_uplink_id":null,"device_id":"collar-01","dev_eui":'
                          b'"70B3D57ED0000001","f_cnt":%d,"message":null,"reason":null,"stage":null,'
                          b'"downlink_ids":[],"intake_id":%d}' % (Answering.given, Answering.given))
                self.transport.write(b"HTTP/1.1 202 Accepted\r\ndate: Sun, 06 Dec 2026 14:00:00 GMT\r\n"
                                     b"server: uvicorn\r\ncontent-length: %d\r\ncontent-type: application/json"
                                     b"\r\n\r\n%s" % (len(answer), answer))

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Answering, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)  # noqa: T201 - the port, to the bench
        await server.serve_forever()

    asyncio.run(serve())


def run(collars: int = 40, hours: int = 12, batch: int = 62, connections: int = 8, rounds: int = 3,
        intake: bool = True, load: bool = True) -> dict[str, Any]:
    """The figures of the module docstring for the herd of `collars` collars over `hours` hours."""
    bodies = synthetic_bodies(collars, hours)
    figures: dict[str, Any] = {"uplinks": len(bodies), "batch": batch, "connections": connections,
                               "measured_code": measured_code()}
    with tempfile.TemporaryDirectory(prefix="tembo-cpu-bench-") as folder:
        def url(name: str) -> str:
            return f"sqlite:///{Path(folder) / name}.db"

        rounds_cpu = [_applier_cpu(url(f"applier-{i}"), bodies, batch, profile=False) for i in range(rounds)]
        applier = [1000 * spent / len(bodies) for spent, _, _ in rounds_cpu]
        figures["applier_cpu_ms_per_uplink"] = round(statistics.median(applier), 3)
        figures["applier_cpu_ms_per_uplink_least"] = round(min(applier), 3)
        figures["applier_cpu_ms_per_uplink_each_round"] = [round(x, 3) for x in applier]
        figures["applier_system_cpu_ms_per_uplink"] = round(
            statistics.median(1000 * system / len(bodies) for _, system, _ in rounds_cpu), 3)
        _, calls = applier_cpu_s(url("applier-profiled"), bodies, batch, profile=True)
        figures["applier_python_calls_per_uplink"] = round(calls / len(bodies), 2)
        small = small_batch_costs(url("applier-small-batches"), bodies, batch)
        figures["applier_statements_per_small_batch"] = round(small.statements, 2)
        figures["applier_python_calls_per_small_batch"] = round(small.calls, 1)
        if intake:
            # this process's first run compiles the webhook's and the outbox's statements: not what a
            # running bridge spends per uplink, so a tenth of the bodies go first, unmeasured
            intake_cpu_s(url("intake-warm-up"), bodies[:max(1, len(bodies) // 10)], connections)
            runs = [intake_cpu_s(url(f"intake-{i}"), bodies, connections) for i in range(rounds)]
            webhook = [1000 * run.cpu_s / len(bodies) for run in runs]
            figures["intake_cpu_ms_per_uplink"] = round(statistics.median(webhook), 3)
            figures["intake_cpu_ms_per_uplink_least"] = round(min(webhook), 3)
            figures["intake_cpu_ms_per_uplink_each_round"] = [round(x, 3) for x in webhook]
            figures["intake_applier_process_cpu_ms_per_uplink"] = round(
                statistics.median(1000 * run.applier_cpu_s / len(bodies) for run in runs), 3)
            figures["intake_applier_process_cpu_ms_per_uplink_by_thread"] = {
                part: round(statistics.median(1000 * run.applier_by_part.get(part, 0.0) / len(bodies) for run in runs), 4)
                for part in sorted({part for run in runs for part in run.applier_by_part})}
            figures["intake_applier_process_system_cpu_ms_per_uplink"] = round(
                statistics.median(1000 * run.applier_system_s / len(bodies) for run in runs), 3)
            figures["intake_applier_process_mean_batch"] = round(
                statistics.median(len(bodies) / max(1, run.applier_batches) for run in runs), 1)
            figures["intake_cpu_ms_per_uplink_by_thread"] = {
                part: round(statistics.median(1000 * run.by_part.get(part, 0.0) / len(bodies) for run in runs), 3)
                for part in sorted({part for run in runs for part in run.by_part})}
            profiled = intake_cpu_s(url("intake-profiled"), bodies, connections, profile=True, applier_profile=True)
            figures["intake_handler_python_calls_per_uplink"] = round(profiled.calls / len(bodies), 2)
            figures["intake_applier_process_python_calls_per_uplink"] = round(profiled.applier_calls / len(bodies), 1)
            figures["intake_applier_process_profiled_mean_batch"] = round(
                len(bodies) / max(1, profiled.applier_batches), 1)
            figures["intake_writer_python_calls_per_uplink"] = round(
                writer_python_calls(url("intake-writer"), bodies, connections) / len(bodies), 1)
    if load:
        load_cpu_s(bodies[:max(1, len(bodies) // 10)], connections)  # imports and first connections, unmeasured
        posting = [1000 * load_cpu_s(bodies, connections)[0] / len(bodies) for _ in range(rounds)]
        figures["load_cpu_ms_per_request"] = round(statistics.median(posting), 4)
        figures["load_cpu_ms_per_request_least"] = round(min(posting), 4)
        figures["load_python_calls_per_request"] = round(load_cpu_s(bodies, connections, profile=True)[1] / len(bodies), 2)
    return figures
