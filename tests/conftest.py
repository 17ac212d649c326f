"""Shared fixtures of Tembo's test suite: free ports and temporary databases; each service a test
needs is started by the test's own fixture on 127.0.0.1 and stopped after it.

Real services shared by a session (started once, on first use, torn down at the end):
    postgres_server   PostgreSQL with PostGIS (tembo/local_services.py); `postgres_url` is a fresh
                      database cloned from its PostGIS template for one test, dropped after it
    mosquitto         a Mosquitto broker with a password-file user; `mqtt_broker` for one test
                      that may restart it (a broker of its own)
    store_url         the bridge suite's store: each test that takes it runs on SQLite AND on
                      PostgreSQL (the second marked `postgres`)

The bridge under test (one fixture each, for every bridge test module):
    bridge            a fresh bridge on `bridge_store` (store_url: both stores), its outbox pushed
                      by hand (`flush_downlinks()`); a module whose tests read the same on every
                      store narrows `bridge_store` to `sqlite_url`
    client            the bridge's whole HTTP face (webhook and API) in a TestClient
    network           a stand-in network server (TTS down/push, ChirpStack queue) on a free port
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import bridge_builders as b
import pytest
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from lora_bridge.adapters.api import create_app
from lora_bridge.server import serve_app_in_thread
from lora_bridge.settings import DEFAULT_DATABASE_URL
from simulator import micropython_runner
from tembo.local_services import MosquittoServer, PostgresServer, free_port

_wasm_cache_made: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """One folder of compiled MicroPython per run ($TEMBO_WASM_CACHE, see simulator.micropython_runner): the
    interpreter is compiled once for every process of the run (xdist's workers inherit the folder, and so do
    the children that measure a model's budget), not once in each (~1.1 s of CPU each time)."""
    if not os.environ.get(micropython_runner.CACHE_VARIABLE):
        _wasm_cache_made.append(tempfile.mkdtemp(prefix="tembo-wasm-"))
        os.environ[micropython_runner.CACHE_VARIABLE] = _wasm_cache_made[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist's workers (`make test`: `--dist loadfile --no-loadscope-reorder`, a file per worker at a
    time, taken in this order), the files holding a slow or browser story come first, then the rest by
    their number of tests, most first (xdist's own order). Left to xdist, a file of one or two
    minute-long stories came last: one core ran it while the other sat idle at the end of the run."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    files: dict[Path, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.path, []).append(item)

    def long_first(path: Path) -> tuple[bool, int]:
        stories = files[path]
        long = any(story.get_closest_marker("slow") or story.get_closest_marker("browser") for story in stories)
        return not long, -len(stories)

    items[:] = [item for path in sorted(files, key=long_first) for item in files[path]]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the folder of compiled MicroPython this process made."""
    for folder in _wasm_cache_made:
        os.environ.pop(micropython_runner.CACHE_VARIABLE, None)
        shutil.rmtree(folder, ignore_errors=True)
    _wasm_cache_made.clear()


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """Every test leaves logging as it found it: a test that runs the dashboard in this process
    (`ranger_dashboard.logs.configure` sets the bridge's loggers to INFO, with a handler to stderr)
    had made later tests' one-line refusals of tembo's CLI come with INFO lines above them. Loggers
    made during the test go back to no level and no handler of their own."""
    root = logging.getLogger()
    root_level = root.level  # its handlers are pytest's own, added and taken away around each phase
    manager = logging.Logger.manager
    kept = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers))
            for name in list(manager.loggerDict)}
    yield
    root.setLevel(root_level)
    for name in list(manager.loggerDict):
        logger = logging.getLogger(name)
        level, handlers = kept.get(name, (logging.NOTSET, []))
        logger.setLevel(level)
        logger.handlers[:] = handlers


# The store at the settings' default URL, where the suite runs (var/tembo.db in the checkout).
DEFAULT_STORE = Path(make_url(DEFAULT_DATABASE_URL).database).resolve()
# Whether it was there before: an operator's demo store may be, and may change while the suite runs.
_default_store_there = [DEFAULT_STORE.exists()]


@pytest.fixture(autouse=True)
def default_store_not_made(request) -> Iterator[None]:
    """No test makes the store at the default URL: a test that opened it implicitly (a dashboard page
    script imported, a bridge without a URL) had left var/tembo.db in the checkout, a store nobody
    asked for where an operator's embedded store lives. The test that made it fails at its teardown,
    named (once: the file is there for the tests after it; under xdist, a test of another worker may
    have made it while this one ran)."""
    yield
    if not _default_store_there[0] and DEFAULT_STORE.exists():
        _default_store_there[0] = True
        pytest.fail(f"{request.node.nodeid} made the store at the default URL {DEFAULT_DATABASE_URL} "
                    f"({DEFAULT_STORE}): give it a store of its own (sqlite_url, TEMBO_DATABASE_URL)")


@pytest.fixture
def port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A SQLAlchemy URL of an empty SQLite file in a temporary folder."""
    return f"sqlite:///{tmp_path / 'tembo.db'}"


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL 15 + PostGIS server for the whole session, in a temporary folder."""
    with PostgresServer.started(Path(tempfile.mkdtemp(prefix="tembo-pg-"))) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A SQLAlchemy URL of a fresh, empty PostgreSQL database with PostGIS (dropped after the test)."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(scope="session")
def postgres_store_template(postgres_server) -> str:
    """Name of a database holding the bridge's migrated, empty schema: tests clone it instead of
    migrating a database each (cloning takes ~0.15 s)."""
    from lora_bridge.store.database import open_database

    url = postgres_server.create_database("tembo_store_template")
    open_database(url).dispose()
    return url.rsplit("/", 1)[-1]


@contextmanager
def store_from(engine: str, request, sqlite_path: Path, source: Path | str | None = None) -> Iterator[str]:
    """The URL of a bridge store of the caller's own on engine: at sqlite_path a copy of the SQLite file
    source (None: a new file), or a fresh PostgreSQL database cloned from the template database named
    source (None: the migrated empty one), dropped afterwards."""
    if engine == "sqlite":
        if source is not None:
            shutil.copyfile(source, sqlite_path)
        yield f"sqlite:///{sqlite_path}"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database(template=source or request.getfixturevalue("postgres_store_template"))
    yield url
    server.drop_database(url)


def empty_store(engine: str, request, sqlite_path: Path) -> AbstractContextManager[str]:
    """The URL of an empty bridge store on engine: a SQLite file at sqlite_path, or a fresh PostgreSQL
    database made from the migrated template (dropped afterwards)."""
    return store_from(engine, request, sqlite_path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path) -> str:
    """An empty bridge store: a SQLite file, then (second run) a fresh PostgreSQL database."""
    with empty_store(request.param, request, tmp_path / "tembo.db") as url:
        yield url


@pytest.fixture(scope="session")
def mosquitto():
    """One real Mosquitto broker for the session (password-file user, no anonymous clients)."""
    with MosquittoServer.started(Path(tempfile.mkdtemp(prefix="tembo-mqtt-"))) as broker:
        yield broker


@pytest.fixture
def mqtt_broker(tmp_path):
    """A Mosquitto broker of this test's own, which the test may stop and restart."""
    with MosquittoServer.started(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def bridge_store(store_url) -> str:
    """The store the `bridge` fixture opens: both stores, unless a module narrows it."""
    return store_url


@pytest.fixture
def bridge(bridge_store):
    """A fresh bridge on bridge_store; its outbox pushes only on `flush_downlinks()`."""
    with b.fresh_bridge(bridge_store, outbox_worker=False) as bridge:
        yield bridge


@pytest.fixture
def client(bridge):
    """The bridge's webhook and API, as a network server and an operator's tools reach them."""
    with TestClient(create_app(bridge)) as client:
        yield client


@pytest.fixture
def network(port):
    """A stand-in network server on 127.0.0.1:port that records the downlinks pushed to it."""
    stand_in = b.StandInNetworkServer()
    with serve_app_in_thread(stand_in.app(), port=port) as running:
        stand_in.url = running.url
        yield stand_in
