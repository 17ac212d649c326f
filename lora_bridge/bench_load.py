"""The bridge bench's load process: posts uplink bodies to the webhook over keep-alive HTTP/1.1
connections, as a network server's webhook client does, and times each answer.

One thread and one event loop hold every connection. Each connection is an asyncio protocol: a request
is written as prepared bytes, its answer parsed from the bytes as they arrive (by its `Content-Length`,
its chunks, or the connection's end), and the next body sent from the same callback, with no task,
future or timer per request (one look a second ends requests past TIMEOUT_S). The load shares the
machine with the bridge it measures, so it must cost little: httpx in one thread per connection spent
1.05-1.26 ms of CPU per body, about what the bridge spends on the uplink; asyncio's streams with a
timeout per request 0.07-0.11; this about 0.05-0.08 (`tembo bench bridge-cpu`, `load_cpu_ms_per_request`;
`docs/bridge-scale.md`)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# What a request that got no answer is counted as (no HTTP status; the bench counts it as not 2xx).
NO_ANSWER = 599
TIMEOUT_S = 60.0
MAX_HEAD_BYTES = 64 * 1024
# An answer's header lines (lower-cased, each with its CRLF): all of them, and each as (name, value)
# without the blanks around either.
_FIELDS = re.compile(rb"(?:[^:\r\n]*:[^\r\n]*\r\n)*")
_FIELD = re.compile(rb"[ \t]*([^:\r\n]*?)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r\n")
# How often the requests in flight are looked at for one past TIMEOUT_S.
WATCH_S = 1.0
# The answers' reader: `json.loads` of bytes looks for a byte order mark and the encoding of each first
# (about ten calls a body); the bridge answers UTF-8 (a body that is not reads as a ValueError, as before).
_ANSWER_JSON = json.JSONDecoder()


class AnswerError(Exception):
    """An answer the load process cannot read as HTTP/1.1."""


@dataclass
class Load:
    """What the connections fill in, one entry per body in the file's order."""

    bodies: list[bytes]
    # (perf_counter at the start, wall-clock time at the start, bodies per second), or None: at once
    pace: tuple[float, float, float] | None = None
    statuses: list[int] = field(init=False)
    latencies_ms: list[float] = field(init=False)
    sent_wall: list[float] = field(init=False)
    raw_ids: list[int | None] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.bodies)
        self.statuses, self.latencies_ms, self.sent_wall, self.raw_ids = [0] * n, [0.0] * n, [0.0] * n, [None] * n


def drive(url: str, secret_header: str, secret: str, bodies_file: str, connections: int,
          path: str = "/uplinks/tts", rate: float | None = None) -> dict[str, Any]:
    """Post every body of bodies_file (one per line) to url + path over `connections` keep-alive
    connections at once, the webhook's secret in the header the caller names (the bridge's
    `adapters.webhook.SECRET_HEADER`: this module imports nothing of the bridge, to stay light);
    each connection takes the next body once its answer is in.

    rate (bodies per second): the network server's pace instead of as fast as answers allow; body i
    is due i / rate after the start, and its latency runs from when it was due (a body sent late
    because every connection was still waiting counts that wait, as the network server's would)."""
    bodies = Path(bodies_file).read_bytes().split(b"\n")
    started_wall = time.time()
    started = time.perf_counter()
    cpu_started = time.process_time()
    load = Load(bodies, (started, started_wall, rate) if rate else None)
    _run(_drive(url, path, secret_header, secret, load, max(1, connections)))
    return {"elapsed_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu_started,
            "statuses": load.statuses, "latencies_ms": load.latencies_ms, "started_wall": started_wall,
            "sent_wall": load.sent_wall, "raw_ids": load.raw_ids}


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run main on uvloop's event loop when it is installed (requirements.txt has it, for uvicorn), else
    on asyncio's own: the same connections, requests and answers for less of the load's CPU a body."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


async def _drive(url: str, path: str, secret_header: str, secret: str, load: Load, connections: int) -> None:
    parts = urlsplit(url)
    head = (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: tembo-bench\r\n"
            f"Content-Type: application/json\r\n{secret_header}: {secret}\r\nContent-Length: ").encode()
    run = _Run(asyncio.get_running_loop(), parts.hostname or "127.0.0.1", parts.port or 80, head, load, connections)
    await run.done


class _Run:
    """The connections of one drive and what they share: the next body to send, the clock that ends a
    request unanswered after TIMEOUT_S (one look a second for all, not a timer per request)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int, head: bytes, load: Load,
                 connections: int) -> None:
        self.loop, self.host, self.port, self.head, self.load = loop, host, port, head, load
        self.cursor = iter(range(len(load.bodies)))
        self.done: asyncio.Future[None] = loop.create_future()
        self.clients = [_Client(self) for _ in range(connections)]
        self.busy = len(self.clients)
        self._watch = loop.call_later(WATCH_S, self._look)
        for client in self.clients:
            client.take_next()

    def finished(self) -> None:
        """A client found no body left."""
        self.busy -= 1
        if self.busy == 0:
            self._watch.cancel()
            if not self.done.done():
                self.done.set_result(None)

    def _look(self) -> None:
        now = self.loop.time()
        for client in self.clients:
            if client.index is not None and now >= client.deadline:
                client.fail()
        self._watch = self.loop.call_later(WATCH_S, self._look)


class _Client:
    """One keep-alive connection: it sends a body, reads its answer as the bytes come (no task per
    request), records it and sends the next; a new connection once the server ends one."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.wire: _Wire | None = None
        self.index: int | None = None  # the body awaiting its answer
        self.sent = 0.0  # perf_counter time its latency runs from
        self.deadline = 0.0  # loop time it is given up by
        self.buffer = b""

    def take_next(self) -> None:
        load = self.run.load
        index = next(self.run.cursor, None)
        if index is None:
            self.index = None
            if self.wire is not None:
                self.wire.transport.close()
                self.wire = None
            self.run.finished()
            return
        self.index = index
        self.deadline = self.run.loop.time() + TIMEOUT_S
        if load.pace is None:
            load.sent_wall[index] = time.time()
            self.sent = time.perf_counter()
            self.send()
            return
        started, started_wall, rate = load.pace
        self.sent = started + index / rate  # when it is due
        load.sent_wall[index] = started_wall + index / rate
        wait = self.sent - time.perf_counter()
        self.deadline += max(0.0, wait)
        if wait > 0:
            self.run.loop.call_later(wait, self.send_when_due)
        else:
            self.send()

    def send_when_due(self) -> None:
        """Send the paced body once it is due: uvloop's timers count whole milliseconds from the time its
        loop read at the start of its turn, so one may come a little early (then wait what is left)."""
        wait = self.sent - time.perf_counter()
        if wait > 0:
            self.run.loop.call_later(wait, self.send_when_due)
            return
        self.send()

    def send(self) -> None:
        assert self.index is not None
        if self.wire is None:
            self.run.loop.create_task(self._connect())
            return
        body = self.run.load.bodies[self.index]
        self.buffer = b""
        self.wire.transport.write(b"%s%d\r\n\r\n%s" % (self.run.head, len(body), body))

    async def _connect(self) -> None:
        try:
            async with asyncio.timeout(max(0.0, self.deadline - self.run.loop.time())):
                await self.run.loop.create_connection(lambda: _Wire(self), self.run.host, self.run.port)
        except (OSError, TimeoutError):
            self.fail()
            return
        self.send()

    def received(self, wire: _Wire, data: bytes) -> None:
        if wire is not self.wire or self.index is None:
            return
        self.buffer += data
        try:
            answer = read_answer(self.buffer, ended=False)
        except (AnswerError, ValueError):
            self.fail()
            return
        if answer is not None:
            self.answered(*answer)

    def lost(self, wire: _Wire) -> None:
        if wire is not self.wire:
            return
        self.wire = None
        if self.index is None:
            return
        try:  # an answer delimited by the connection's end is whole now
            answer = read_answer(self.buffer, ended=True)
        except (AnswerError, ValueError):
            answer = None
        if answer is None:
            self.fail()
        else:
            self.answered(*answer)

    def answered(self, status: int, body: bytes, keep_alive: bool) -> None:
        index, load = self.index, self.run.load
        assert index is not None
        if status < 300:  # the key the applied batches are reported by
            try:
                said = _ANSWER_JSON.decode(body.decode())
                load.raw_ids[index] = said.get("intake_id") or said.get("raw_uplink_id")
            except (ValueError, AttributeError):
                self.fail()
                return
        load.statuses[index] = status
        load.latencies_ms[index] = 1000 * (time.perf_counter() - self.sent)
        if not keep_alive:
            self.close()
        self.take_next()

    def fail(self) -> None:
        """No answer to the body in flight (connection refused, ended, timed out, not HTTP): counted as
        NO_ANSWER, the connection closed, the next body on a new one."""
        if self.index is None:
            return
        load = self.run.load
        load.statuses[self.index] = NO_ANSWER
        load.raw_ids[self.index] = None
        load.latencies_ms[self.index] = 1000 * (time.perf_counter() - self.sent)
        self.close()
        self.take_next()

    def close(self) -> None:
        wire, self.wire, self.buffer = self.wire, None, b""
        if wire is not None:
            wire.transport.abort()


class _Wire(asyncio.Protocol):
    """One TCP connection of a client (a client outlives the connections a server ends)."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.client.wire = self

    def data_received(self, data: bytes) -> None:
        self.client.received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.lost(self)


def read_answer(data: bytes, ended: bool) -> tuple[int, bytes, bool] | None:
    """One HTTP/1.1 answer at the start of data: (status, body, whether the connection stays open), or
    None while it is not whole (ended: the server has closed the connection, nothing more comes)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_HEAD_BYTES:
            raise AnswerError("answer head too long")
        return None
    if end + 4 > MAX_HEAD_BYTES:
        raise AnswerError("answer head too long")
    status_end = data.find(b"\r\n", 0, end + 2)
    version, _, rest = data[:status_end].partition(b" ")
    if not version.startswith(b"HTTP/1."):
        raise AnswerError(f"not an HTTP/1.x status line: {data[:min(status_end, 80)]!r}")
    try:
        status = int(rest[:3])
    except ValueError as error:
        raise AnswerError(f"no status code in {data[:min(status_end, 80)]!r}") from error
    fields = data[status_end + 2:end + 2].lower()  # each header line with its CRLF
    if not _FIELDS.fullmatch(fields):
        bad = next(line for line in fields.split(b"\r\n") if b":" not in line)
        raise AnswerError(f"a header line without a colon: {bad[:80]!r}")
    headers = dict(_FIELD.findall(fields))
    keep_alive = headers.get(b"connection") != b"close" and version != b"HTTP/1.0"
    start = end + 4
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        body = _chunks(data, start)
        return None if body is None else (status, body, keep_alive)
    if b"content-length" in headers:
        try:
            length = int(headers[b"content-length"])
        except ValueError as error:
            raise AnswerError(f"Content-Length is no number: {headers[b'content-length'][:40]!r}") from error
        return None if len(data) < start + length else (status, data[start:start + length], keep_alive)
    if status in (204, 304) or 100 <= status < 200:
        return status, b"", keep_alive
    return (status, data[start:], False) if ended else None  # delimited by the connection's end


def _chunks(data: bytes, at: int) -> bytes | None:
    """A chunked body starting at data[at:], or None while its last chunk and trailers have not come."""
    parts = []
    while True:
        line_end = data.find(b"\r\n", at)
        if line_end < 0:
            return None
        try:
            size = int(data[at:line_end].split(b";")[0].strip(), 16)
        except ValueError as error:
            raise AnswerError(f"a chunk size is no number: {data[at:line_end][:40]!r}") from error
        at = line_end + 2
        if size == 0:
            while True:  # trailers, then the blank line
                line_end = data.find(b"\r\n", at)
                if line_end < 0:
                    return None
                if line_end == at:
                    return b"".join(parts)
                at = line_end + 2
        if len(data) < at + size + 2:
            return None
        parts.append(data[at:at + size])
        if data[at + size:at + size + 2] != b"\r\n":
            raise AnswerError("a chunk not followed by CRLF")
        at += size + 2


def _main(argv: list[str]) -> int:
    if len(argv) not in (5, 6):
        print("python -m lora_bridge.bench_load URL SECRET_HEADER SECRET BODIES_FILE CONNECTIONS [RATE]",
              file=sys.stderr)
        return 2
    url, secret_header, secret, bodies_file, connections = argv[:5]
    rate = float(argv[5]) if len(argv) == 6 else None
    print(json.dumps(drive(url, secret_header, secret, bodies_file, int(connections), rate=rate)))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
