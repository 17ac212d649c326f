"""The reserve's PostgreSQL is restarted (a fast shutdown for an upgrade, an immediate one as a crash would)
while collars report through a running bridge: uplinks are answered 503 while it is down, never 500, and once
it is back every uplink the network server was told was taken is stored and applied once."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bridge_process as bp
import postgres_faults as pf
import pytest

from tembo.local_services import TEMPLATE_DATABASE, PostgresServer

UPLINKS = 300


@pytest.fixture(scope="module")
def durable_server() -> Iterator[PostgresServer]:
    """A server of this module's own (restarted by its tests), which keeps every commit it acknowledged."""
    with PostgresServer.started(Path(tempfile.mkdtemp(prefix="tembo-pg-")), durable=True) as server:
        yield server
        server._admin = None  # its admin connection ended with the first restart


def _restart(server: PostgresServer, mode: str) -> None:
    """pg_ctl restart in mode ('fast': sessions ended, 'immediate': as a crash, recovered at start)."""
    server._as_postgres(str(server.bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-l", str(server.folder / "server.log"),
                        "-m", mode, "-w", "restart")


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["fast", "immediate"])
@pytest.mark.parametrize("ack", ["applied", "durable"])
def test_a_restarted_store_is_answered_503_and_loses_nothing_acknowledged(durable_server, port, ack, mode):
    name = f"tembo_restart_{ack}_{mode}"
    durable_server.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DATABASE}")
    url = durable_server.url(name)
    load = bp.Load()
    try:
        with bp.bridge_process(url, port, webhook_ack=ack) as bridge:
            poster = threading.Thread(target=bp.post_all, args=(bridge.url, range(UPLINKS), load))
            poster.start()
            while len(load.answers) < UPLINKS // 4 and poster.is_alive():
                time.sleep(0.05)
            _restart(durable_server, mode)
            poster.join()
            first_answers = dict(load.answers)
            figures = pf.figures_after_retries(bridge.url, url, load, UPLINKS)
    finally:
        durable_server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    statuses = sorted(set(first_answers.values()))
    print(bp.report({**figures, "statuses": statuses, "ack": ack, "mode": mode}))
    assert (figures["acknowledged"], figures["lost"], figures["applied_twice"]) == (UPLINKS, 0, 0)
    assert [status for status in first_answers.values() if status >= 500 and status != 503] == []


def _stop(server: PostgresServer) -> None:
    """pg_ctl stop, fast: sessions ended, the server down until `_start`."""
    server._as_postgres(str(server.bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-m", "fast", "-w", "stop")


def _start(server: PostgresServer) -> None:
    """pg_ctl start on the server's port and socket, as it first started."""
    options = f"-p {server.port} -k {server.socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
    server._as_postgres(str(server.bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-l", str(server.folder / "server.log"),
                        "-o", options, "-w", "start")


@pytest.mark.postgres
def test_a_store_down_while_taken_bodies_wait_to_be_applied_is_said_once_not_once_a_body(durable_server, port, capfd):
    name = "tembo_down_waiting"
    durable_server.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DATABASE}")
    url = durable_server.url(name)
    load = bp.Load()
    try:
        with bp.bridge_process(url, port, webhook_ack="durable") as bridge:
            poster = threading.Thread(target=bp.post_all, args=(bridge.url, range(UPLINKS), load))
            poster.start()
            while len(load.answers) < UPLINKS // 4 and poster.is_alive():
                time.sleep(0.05)
            _stop(durable_server)  # bodies taken a moment ago still wait to be applied
            try:
                poster.join()
                time.sleep(3)  # the applier tries them again every 0.5 s
            finally:
                _start(durable_server)
            figures = pf.figures_after_retries(bridge.url, url, load, UPLINKS)
    finally:
        durable_server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    said = capfd.readouterr().err
    print(bp.report(figures))
    assert (figures["acknowledged"], figures["lost"], figures["applied_twice"]) == (UPLINKS, 0, 0)
    # It had been a line for every body the applier tried while the store was down (26 and 57 in two runs).
    assert said.count("store unavailable while processing") == 1
    assert said.count("store unavailable while applying stored bodies: bodies are kept again after") == 1
