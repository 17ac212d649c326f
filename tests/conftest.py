"""Shared fixtures of Tembo's test suite: free ports and temporary databases; each service a test
needs is started by the test's own fixture on 127.0.0.1 and stopped after it."""

from __future__ import annotations

import socket

import pytest


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A SQLAlchemy URL of an empty SQLite file in a temporary folder."""
    return f"sqlite:///{tmp_path / 'tembo.db'}"
