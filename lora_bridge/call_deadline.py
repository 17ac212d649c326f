"""An outgoing call bounded in all, not only in each of its waits.

httpx's timeouts bound each connect, write and read on its own: a network server (or a proxy before it)
that answers one byte at a time, each within the read timeout, never trips them, and the caller waits for
as long as the trickle lasts. The downlink outbox pushes one downlink after another in one thread, so every
other collar's ack waited behind such a server. `within` gives the caller its answer, or `DeadlinePassed`
once the deadline is reached; the call itself goes on in a daemon thread of its own until its server lets
go (or a wait of its own times out), and its outcome is dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


class DeadlinePassed(Exception):
    """The call had not returned within its deadline (seconds)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no whole answer within {seconds:g} s")
        self.seconds = seconds


def within(call: Callable[[], T], seconds: float, name: str = "bounded-call") -> T:
    """call()'s result, or the exception it raised, when it returns within seconds; else DeadlinePassed.
    The call runs in a daemon thread named name (it never holds up the process's exit)."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # handed to the caller as it is, whatever it is
            failure.append(error)

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise DeadlinePassed(seconds)
    if failure:
        raise failure[0]
    return outcome[0]


def whole_call_s(timeout: httpx.Timeout) -> float | None:
    """How long one call may take in all under an httpx timeout: one connect and one read, each at its
    limit (a request's body is small); None when either is unbounded."""
    if timeout.connect is None or timeout.read is None:
        return None
    return timeout.connect + timeout.read


def request_within(client: httpx.Client, method: str, url: str, name: str, **options: Any) -> httpx.Response:
    """client.request(method, url, **options), ended with DeadlinePassed once `whole_call_s` of the client's
    timeout has passed; httpx.HTTPError as client.request raises it."""
    seconds = whole_call_s(client.timeout)
    if seconds is None:
        return client.request(method, url, **options)
    return within(lambda: client.request(method, url, **options), seconds, name)
