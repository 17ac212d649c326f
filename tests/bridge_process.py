"""A bridge in a process of its own, for the durability tests: killed with SIGKILL, started again, or
run under a file-size limit (a disk that fills), and a load of uplinks posted as a network server would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import bridge_builders as b
import httpx
from sqlalchemy import create_engine, text

CHILD = """
import logging, resource, signal, sys
limit = int(sys.argv[3])
if limit:
    # A full disk: writes past `limit` bytes fail with EFBIG instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
logging.basicConfig(level=logging.WARNING)
from lora_bridge.server import serve
from lora_bridge.settings import load_settings
serve(load_settings(database_url=sys.argv[1], port=int(sys.argv[2]), webhook_secret=sys.argv[4],
                    log_level="warning", retry_pending_after_s=0.5, sqlite_busy_timeout_ms=2000))
"""


def disk_limit_with_room(sqlite_url: str, room_bytes: int = 1536 * 1024) -> int:
    """A file-size limit that leaves the store at sqlite_url room_bytes to grow (the disk that fills after
    about 20 uplinks), its schema made first."""
    from pathlib import Path

    from lora_bridge.service import open_bridge

    with open_bridge(sqlite_url, webhook_secret=b.SECRET):
        pass  # the schema is made before the disk gets tight
    return Path(sqlite_url.removeprefix("sqlite:///")).stat().st_size + room_bytes


@dataclass
class BridgeProcess:
    """A `serve()` bridge in a child process on 127.0.0.1:port."""

    database_url: str
    port: int
    file_size_limit: int = 0
    webhook_ack: str = "applied"
    intake_applier: str = "thread"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> BridgeProcess:
        """Start the child and wait until its webhook answers /healthz."""
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, self.database_url, str(self.port), str(self.file_size_limit), b.SECRET],
            env=dict(os.environ, PYTHONUNBUFFERED="1", TEMBO_WEBHOOK_ACK=self.webhook_ack,
                     TEMBO_INTAKE_APPLIER=self.intake_applier),
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bridge process exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("bridge process did not answer")

    def applier_pids(self) -> list[int]:
        """The process ids of this bridge's intake applier processes (children of its process)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or self.process is None:
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    text = stat.read()
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    command = cmdline.read()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2:].split()[1]) == self.process.pid and b"intake_applier" in command:
                found.append(int(entry))
        return found

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (a service manager's stop); its exit code once it ended."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """SIGINT (Ctrl-C), then SIGKILL if it does not stop."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def bridge_process(database_url: str, port: int, file_size_limit: int = 0, webhook_ack: str = "applied",
                   intake_applier: str = "thread"):
    """A started BridgeProcess, stopped afterwards."""
    child = BridgeProcess(database_url, port, file_size_limit, webhook_ack, intake_applier).start()
    try:
        yield child
    finally:
        child.stop()


@dataclass
class Load:
    """Uplinks posted by several clients; what the bridge answered to each."""

    answers: dict[int, int] = field(default_factory=dict)  # uplink number -> HTTP status (0: no answer)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acknowledged(self) -> set[int]:
        with self.lock:  # the posting threads write answers while a test polls this
            return {n for n, status in self.answers.items() if 200 <= status < 300}

    def not_acknowledged(self) -> set[int]:
        with self.lock:
            return {n for n, status in self.answers.items() if not 200 <= status < 300}


def uplink_body(n: int) -> bytes:
    """Uplink number n: a status of one of 20 collars, its own frame counter and time."""
    device = f"collar-{n % 20:02d}"
    f_cnt = n // 20 + 1
    return b.tts_uplink(b.status(time_s=b.T0_S + 60 * n), device_id=device, f_cnt=f_cnt)


def post_all(url: str, numbers: Iterable[int], load: Load, clients: int = 4,
             stop: threading.Event | None = None) -> None:
    """Post uplinks `numbers` from `clients` threads, recording each answer (0 when none came)."""
    queue = list(numbers)
    queue_lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=10.0) as http:
            while stop is None or not stop.is_set():
                with queue_lock:
                    if not queue:
                        return
                    n = queue.pop(0)
                try:
                    status = http.post("/uplinks/tts", content=uplink_body(n),
                                       headers={"X-Tembo-Secret": b.SECRET,
                                                "Content-Type": "application/json"}).status_code
                except httpx.HTTPError:
                    status = 0
                with load.lock:
                    load.answers[n] = status

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def retry_until_acknowledged(url: str, load: Load, numbers: Iterable[int], tries: int = 7) -> None:
    """Post again what got no 2xx, up to `tries` times, as The Things Stack retries a webhook."""
    for _ in range(tries):
        waiting = sorted(set(numbers) - load.acknowledged())
        if not waiting:
            return
        retry = Load()
        post_all(url, waiting, retry)
        load.answers.update(retry.answers)


def lost_and_twice(database_url: str, acknowledged: Iterable[int]) -> dict[str, Any]:
    """How many acknowledged uplinks the store does not hold applied (lost) and how many uplinks
    were applied more than once (twice), read straight from the store's tables."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT device_id, f_cnt, COUNT(*) FROM raw_uplinks "
                "WHERE status = 'processed' AND duplicate_of IS NULL GROUP BY device_id, f_cnt"
            )).all()
            pending = connection.execute(text("SELECT COUNT(*) FROM raw_uplinks WHERE status = 'received'")).scalar()
            positions = connection.execute(text("SELECT COUNT(*) FROM positions")).scalar()
    finally:
        engine.dispose()
    applied = {(device, int(f_cnt)): int(count) for device, f_cnt, count in rows}
    wanted = {(f"collar-{n % 20:02d}", n // 20 + 1) for n in acknowledged}
    return {
        "acknowledged": len(wanted),
        "lost": len(wanted - set(applied)),
        "applied_twice": sum(count - 1 for count in applied.values() if count > 1),
        "pending": int(pending or 0),
        "positions": int(positions or 0),
    }


def report(figures: dict[str, Any]) -> str:
    """The figures as one JSON line (printed by the tests so a run shows them)."""
    return json.dumps(figures, sort_keys=True)
