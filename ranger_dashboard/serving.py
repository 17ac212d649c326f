"""Run the dashboard as its own process for a while: the dashboard bench and the browser tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from ranger_dashboard import launch


@contextlib.contextmanager
def running(port: int, database_url: str, log_path: Path, timeout_s: float = 60.0, **options: Any) -> Iterator[str]:
    """Start `launch.command(port, database_url, **options)`, wait until Streamlit answers its health
    check, yield the base URL, and stop the server afterwards (its output goes to `log_path`)."""
    env = dict(os.environ, TEMBO_DATABASE_URL=database_url)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            launch.command(port, database_url, **options), stdout=log, stderr=subprocess.STDOUT, env=env
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"dashboard exited with {process.returncode}: {log_path.read_text()}")
                try:
                    if httpx.get(f"{base_url}/_stcore/health", timeout=1.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dashboard did not answer in {timeout_s} s: {log_path.read_text()}")
                time.sleep(0.2)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
