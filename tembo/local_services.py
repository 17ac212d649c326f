"""Throwaway PostgreSQL (with PostGIS) and Mosquitto servers for the tests and the benchmarks, each in
its own temporary folder.

    with PostgresServer.started(tmp) as server:          # initdb + pg_ctl as the postgres user
        url = server.create_database("t1")                # a fresh database from the PostGIS template
    with MosquittoServer.started(tmp) as broker:          # password file, no anonymous clients
        broker.host, broker.port, broker.username, broker.password

Both listen on 127.0.0.1 on a free port only, and are stopped (and their folders removed) on exit.
CI runs as root and PostgreSQL refuses to run as root, so PostgreSQL's commands run through
`runuser -u postgres --` on a data folder owned by postgres.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

TEMPLATE_DATABASE = "tembo_postgis_template"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout_s: float = 20.0) -> None:
    """Return once something accepts TCP connections on host:port (RuntimeError after timeout_s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {host}:{port} after {timeout_s} s") from None
            time.sleep(0.05)


_Server = TypeVar("_Server", "PostgresServer", "MosquittoServer")


@contextmanager
def _running(server: _Server) -> Iterator[_Server]:
    """server started; on exit (or when it fails to start) stopped, and its folder removed."""
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (run `make system-deps`)")
    return Path(found[-1]).parent


@dataclass
class PostgresServer:
    """One PostgreSQL server of the test session; databases are made from a PostGIS template."""

    folder: Path
    port: int
    password: str
    # False (tests): fsync off, quick to create databases. True (benchmarks): the default, durable commits.
    durable: bool = False
    bin_dir: Path = field(default_factory=_postgres_bin)
    _counter: int = 0
    _admin: Any = None

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    def url(self, database: str) -> str:
        """SQLAlchemy URL of database on this server (psycopg 3, password over TCP)."""
        return f"postgresql+psycopg://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def _as_postgres(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *command], check=check, capture_output=True, text=True, timeout=120)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run sql as the superuser over the unix socket; returns psql's output."""
        done = self._as_postgres(
            str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
            "-p", str(self.port), "-U", "postgres", "-d", database, "-At", "-c", sql,
        )
        return done.stdout

    def start(self) -> None:
        """initdb (password auth on TCP, trust on the private socket) and start on 127.0.0.1:port."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        password_file = self.folder / "pwfile"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            postgres = pwd.getpwnam("postgres")
            for path in (self.folder, self.socket_dir, password_file):
                os.chown(path, postgres.pw_uid, postgres.pw_gid)
        self._as_postgres(
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-E", "UTF8",
            "--locale=C", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256",
            f"--pwfile={password_file}",
        )
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.durable:
            # Test data is thrown away: fsync off makes database creation and commits quick.
            options += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        self._as_postgres(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.folder / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )
        self.psql(f"CREATE DATABASE {TEMPLATE_DATABASE}")
        self.psql("CREATE EXTENSION postgis", database=TEMPLATE_DATABASE)
        import psycopg

        # One admin connection for the session: creating a database through it takes ~0.15 s.
        self._admin = psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", password=self.password, dbname="postgres",
            autocommit=True,
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown)."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        self._as_postgres(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False
        )

    def create_database(self, prefix: str = "tembo", template: str = TEMPLATE_DATABASE) -> str:
        """A fresh database cloned from template (by default: empty but for PostGIS); returns its URL."""
        self._counter += 1
        name = f"{prefix}_{os.getpid()}_{self._counter}"
        # FILE_COPY clones a small template faster than PostgreSQL 15's default WAL_LOG.
        self._admin.execute(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of url, closing whatever is still connected to it."""
        name = url.rsplit("/", 1)[-1]
        self._admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    @classmethod
    def started(cls, folder: Path, durable: bool = False) -> AbstractContextManager[PostgresServer]:
        """A running server in folder, stopped and removed on exit."""
        return _running(cls(folder=folder, port=free_port(), password=secrets.token_urlsafe(16), durable=durable))


@dataclass
class MosquittoServer:
    """A Mosquitto broker on 127.0.0.1:port with one password-file user and persistence on disk."""

    folder: Path
    port: int
    username: str = "tembo-bridge"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        """mqtt://user:password@127.0.0.1:port, as `tembo bridge --mqtt` takes it."""
        return f"mqtt://{self.username}:{self.password}@{self.host}:{self.port}"

    def configure(self) -> Path:
        """Write the password file and the config; returns the config's path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        passwords = self.folder / "passwords"
        subprocess.run(
            ["mosquitto_passwd", "-b", "-c", str(passwords), self.username, self.password],
            check=True, capture_output=True, timeout=30,
        )
        os.chmod(passwords, 0o600)
        config = self.folder / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {passwords}\n"
            "persistence true\n"
            f"persistence_location {self.folder}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            # Run as whoever started it (root in CI): the folder and password file stay ours.
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        return config

    def start(self) -> None:
        """Start (or restart) the broker and wait until it accepts connections."""
        config = self.folder / "mosquitto.conf"
        if not config.exists():
            config = self.configure()
        log = open(self.folder / "broker.log", "ab")  # noqa: SIM115 - the broker writes it until stop()
        self.process = subprocess.Popen(["mosquitto", "-c", str(config)], stdout=log, stderr=log)
        log.close()
        wait_for_port(self.host, self.port)

    def stop(self) -> None:
        """Stop the broker (SIGTERM: it saves its persistent sessions first)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same sessions (a broker restart)."""
        self.stop()
        self.start()

    @classmethod
    def started(cls, folder: Path) -> AbstractContextManager[MosquittoServer]:
        """A running broker in folder, stopped and removed on exit."""
        return _running(cls(folder=folder, port=free_port()))
