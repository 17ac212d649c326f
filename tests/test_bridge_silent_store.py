"""The reserve's PostgreSQL host stops answering (it drops packets, or a fail-over left its address to a
machine where nothing answers): the network server still gets the webhook's 503 before it gives up on the
request (The Things Stack: 10 s), so it sends the uplink again, and the uplink is taken once the store
answers again. A connection to such a host had waited for ever, and so had the webhook request."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import bridge_builders as b
import httpx
import pytest
from sqlalchemy.engine import make_url

from lora_bridge.adapters.api import create_app
from lora_bridge.errors import StoreNotOpened
from lora_bridge.server import serve_app_in_thread
from lora_bridge.service import open_bridge
from lora_bridge.settings import InvalidSettings, load_settings

# The Things Stack ends a webhook request after 10 s (integrations/webhooks/retries).
NETWORK_SERVER_PATIENCE_S = 10.0


class PostgresHost:
    """The way from the bridge to a PostgreSQL server at 127.0.0.1:upstream_port (None: nothing behind
    it), through a TCP port of its own. Dark: its connections are cut and new ones are accepted and never
    answered, as by a host that drops every packet after the handshake."""

    def __init__(self, upstream_port: int | None) -> None:
        self.upstream_port = upstream_port
        self.dark = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, name="postgres-host", daemon=True).start()

    def go_dark(self) -> None:
        self.dark.set()
        with self._lock:
            cut, self._open = self._open, []
        for sock in cut:
            _close(sock)

    def come_back(self) -> None:
        self.dark.clear()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._open + self._held:
                _close(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.dark.is_set() or self.upstream_port is None:
                with self._lock:
                    self._held.append(client)  # accepted; not a byte comes back
                continue
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@contextmanager
def postgres_host(upstream_port: int | None) -> Iterator[PostgresHost]:
    host = PostgresHost(upstream_port)
    try:
        yield host
    finally:
        host.close()


def ended_in_time(start: Callable[[], object], within_s: float) -> tuple[bool, BaseException | None]:
    """Run start in a thread and wait for it at most within_s: whether it ended by then, and what it
    raised (None when it returned, or is still waiting on the host)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            start()
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - what the caller is told
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=within_s)
    ended = not thread.is_alive()
    return ended, outcome[0] if ended else None


def test_a_bridge_started_on_a_postgresql_host_that_never_answers_is_refused_instead_of_hanging():
    with postgres_host(None) as silent:
        url = f"postgresql+psycopg://tembo:db-password@127.0.0.1:{silent.port}/tembo"
        ended, told = ended_in_time(
            lambda: open_bridge(url, webhook_secret=b.SECRET, database_connect_timeout_s=2).close(),
            NETWORK_SERVER_PATIENCE_S * 3)

    assert ended, "the start waited on a host that never answers"
    assert isinstance(told, StoreNotOpened)
    assert f"no PostgreSQL answers at 127.0.0.1:{silent.port}" in str(told) and "db-password" not in str(told)


def test_operator_migrating_a_store_on_a_host_that_never_answers_is_told_instead_of_waiting(
        monkeypatch, capsys):
    from tembo.cli import main

    monkeypatch.setenv("TEMBO_WEBHOOK_SECRET", b.SECRET)
    monkeypatch.setenv("TEMBO_DATABASE_CONNECT_TIMEOUT_S", "2")
    with postgres_host(None) as silent:
        url = f"postgresql+psycopg://tembo:db-password@127.0.0.1:{silent.port}/tembo"
        exit_codes: list[int] = []
        migrating = threading.Thread(target=lambda: exit_codes.append(
            main(["bridge", "migrate", "--database-url", url])), daemon=True)
        migrating.start()
        migrating.join(timeout=NETWORK_SERVER_PATIENCE_S * 3)

    assert exit_codes == [2], "tembo bridge migrate waited on a host that never answers"
    assert f"no PostgreSQL answers at 127.0.0.1:{silent.port}" in capsys.readouterr().err


@pytest.mark.postgres
def test_network_server_gets_its_503_in_time_while_the_postgresql_host_drops_packets_and_the_retry_is_taken(
        postgres_url):
    upstream = make_url(postgres_url)
    body = b.tts_uplink(b.alert("mortality"), f_cnt=5)
    with postgres_host(upstream.port) as host:
        through_host = upstream.set(port=host.port).render_as_string(hide_password=False)
        with b.fresh_bridge(through_host, outbox_worker=False, database_connect_timeout_s=2) as bridge, \
                serve_app_in_thread(create_app(bridge)) as server, \
                httpx.Client(base_url=server.url, timeout=NETWORK_SERVER_PATIENCE_S) as network_server:
            host.go_dark()
            refused = network_server.post("/uplinks/tts", content=body, headers=b.HEADERS)
            health = network_server.get("/healthz")
            host.come_back()
            again = network_server.post("/uplinks/tts", content=body, headers=b.HEADERS)
            counts = bridge.counts()

    assert (refused.status_code, "Retry-After" in refused.headers) == (503, True)
    assert str(host.port) not in refused.text and "127.0.0.1" not in refused.text, "no host of the store told"
    assert health.status_code == 503
    assert (again.status_code, again.json()["status"]) == (200, "processed")
    assert (counts["uplinks_stored"], counts["alerts"]) == (1, 1)


def test_operator_whose_connect_timeout_outlasts_the_webhooks_answer_is_told_before_anything_starts(monkeypatch):
    monkeypatch.setenv("TEMBO_DATABASE_URL", "postgresql+psycopg://tembo:db-password@db:5432/tembo")
    monkeypatch.setenv("TEMBO_DATABASE_CONNECT_TIMEOUT_S", "9")
    with pytest.raises(InvalidSettings, match=r"database_connect_timeout_s \(9 s\) must be shorter than "
                                              r"webhook_answer_within_s \(8 s\)"):
        load_settings(webhook_secret=b.SECRET)
    monkeypatch.setenv("TEMBO_DATABASE_CONNECT_TIMEOUT_S", "1")
    with pytest.raises(InvalidSettings, match="TEMBO_DATABASE_CONNECT_TIMEOUT_S"):
        load_settings(webhook_secret=b.SECRET)
    # An embedded store opens no connection to wait for: a short answer time stands beside the default.
    monkeypatch.delenv("TEMBO_DATABASE_CONNECT_TIMEOUT_S")
    monkeypatch.setenv("TEMBO_DATABASE_URL", "sqlite:///var/reserve.db")
    assert load_settings(webhook_secret=b.SECRET, webhook_answer_within_s=0.5).webhook_answer_within_s == 0.5
