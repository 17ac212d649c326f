"""What the PostgreSQL fault trials share: ending the bridge's connections as an administrator does, and the
store's figures once the network server's retries are done and every taken uplink had its chance to apply."""

from __future__ import annotations

import time
from typing import Any

import bridge_process as bp

from tembo.local_services import PostgresServer


def end_bridge_connections(server: PostgresServer, url: str) -> None:
    """End every connection to url's database but the one asking (`pg_terminate_backend`)."""
    name = url.rsplit("/", 1)[-1]
    server.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")


def figures_after_retries(bridge_url: str, database_url: str, load: bp.Load, uplinks: int,
                          wait_s: float = 30.0) -> dict[str, Any]:
    """Uplinks 0..uplinks-1 posted again until acknowledged (as The Things Stack retries), then, once
    nothing waits to be applied (or after wait_s), what the store holds (`bridge_process.lost_and_twice`)."""
    bp.retry_until_acknowledged(bridge_url, load, range(uplinks))
    deadline = time.monotonic() + wait_s
    while bp.lost_and_twice(database_url, load.acknowledged())["pending"] and time.monotonic() < deadline:
        time.sleep(0.2)
    return bp.lost_and_twice(database_url, load.acknowledged())
