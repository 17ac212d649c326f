"""The bridge bench's load process: posts uplink bodies to the webhook over keep-alive HTTP/1.1
connections, as a network server's webhook client does, and times each answer.

One thread and one event loop hold every connection; each request is written as prepared bytes and
each answer read by its `Content-Length` (or its chunks). The load shares the machine with the bridge
it measures, so it must cost little: httpx in one thread per connection spent 1.05-1.26 ms of CPU per
body, about what the bridge spends on the uplink; this spends 0.08-0.11 (`docs/bridge-scale.md`)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# What a request that got no answer is counted as (no HTTP status; the bench counts it as not 2xx).
NO_ANSWER = 599
TIMEOUT_S = 60.0
MAX_HEAD_BYTES = 64 * 1024


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
    asyncio.run(_drive(url, path, secret_header, secret, load, max(1, connections)))
    return {"elapsed_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu_started,
            "statuses": load.statuses, "latencies_ms": load.latencies_ms, "started_wall": started_wall,
            "sent_wall": load.sent_wall, "raw_ids": load.raw_ids}


async def _drive(url: str, path: str, secret_header: str, secret: str, load: Load, connections: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: tembo-bench\r\n"
            f"Content-Type: application/json\r\n{secret_header}: {secret}\r\nContent-Length: ").encode()
    cursor = iter(range(len(load.bodies)))
    await asyncio.gather(*(_connection(host, port, head, load, cursor) for _ in range(connections)))


async def _connection(host: str, port: int, head: bytes, load: Load, cursor: Any) -> None:
    stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    for index in cursor:  # one event loop: the connections share the iterator without a lock
        body = load.bodies[index]
        if load.pace is None:
            load.sent_wall[index] = time.time()
            sent = time.perf_counter()
        else:
            started, started_wall, rate = load.pace
            sent = started + index / rate  # when it is due
            load.sent_wall[index] = started_wall + index / rate
            wait = sent - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                if stream is None:
                    stream = await asyncio.open_connection(host, port)
                reader, writer = stream
                writer.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
                status, answer, keep_alive = await read_answer(reader)
            load.statuses[index] = status
            if status < 300:  # the key the applied batches are reported by
                said = json.loads(answer)
                load.raw_ids[index] = said.get("intake_id") or said.get("raw_uplink_id")
            if not keep_alive:
                stream = _closed(stream)
        except (OSError, EOFError, TimeoutError, AnswerError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            load.statuses[index] = NO_ANSWER
            stream = _closed(stream)
        load.latencies_ms[index] = 1000 * (time.perf_counter() - sent)
    _closed(stream)


def _closed(stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
    if stream is not None:
        stream[1].close()
    return None


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 answer: (status, body, whether the connection stays open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD_BYTES:
        raise AnswerError("answer head too long")
    lines = head[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if not version.startswith(b"HTTP/1."):
        raise AnswerError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    try:
        status = int(rest[:3])
    except ValueError as error:
        raise AnswerError(f"no status code in {lines[0][:80]!r}") from error
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise AnswerError(f"a header line without a colon: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    keep_alive = headers.get(b"connection", b"").lower() != b"close" and version != b"HTTP/1.0"
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        return status, await _read_chunks(reader), keep_alive
    if b"content-length" in headers:
        try:
            length = int(headers[b"content-length"])
        except ValueError as error:
            raise AnswerError(f"Content-Length is no number: {headers[b'content-length'][:40]!r}") from error
        return status, await reader.readexactly(length), keep_alive
    if status in (204, 304) or 100 <= status < 200:
        return status, b"", keep_alive
    return status, await reader.read(), False  # delimited by the connection's end


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError as error:
            raise AnswerError(f"a chunk size is no number: {size_line[:40]!r}") from error
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the blank line
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise AnswerError("a chunk not followed by CRLF")


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
