"""How the log says a run of refusals (the webhook's 503s, the raw bodies a store could not take).

The first refused body in full, with its reason and error_id; then, while bodies are still refused, one
line every SUMMARY_EVERY_S with how many were refused since; and one line when a body is kept again. Until
7 December each refused body had its line, hundreds a second under a herd, and they hid the one error that
said why the store was gone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

# While bodies are refused, a line sums them up at most this often (seconds).
SUMMARY_EVERY_S = 60.0


class RefusalRun:
    """The log lines of one kind of refusal (module docstring): `refused` says whether a refusal is the first
    of a run (its caller logs it in full) and sums the others up every every_s seconds of clock (injectable:
    a test steps it); `kept` ends the run with one line (its callers ask it only while `total` says a run is
    on: a kept body costs them an attribute read). A refusal twice every_s after the last begins a run too:
    bodies that stopped coming (nothing refused, nothing kept) do not leave the next outage's first line
    unsaid. Thread-safe."""

    def __init__(self, logger: logging.Logger, what: str, every_s: float = SUMMARY_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.what, self.every_s, self.clock = logger, what, every_s, clock
        self.total = 0  # refused since the run began (0: no run)
        self._since = 0  # refused since the run's last line
        self._first_id: str | None = None
        self._last_id: str | None = None
        self._said_at = 0.0
        self._last_at = float("-inf")
        self._lock = threading.Lock()

    def refused(self, error_id: str) -> bool:
        """Count a refusal under error_id; True when it begins a run (the caller logs it in full)."""
        with self._lock:
            now = self.clock()
            if now - self._last_at >= 2 * self.every_s:
                self.total = 0  # a run no refusal came in for so long: over
            self.total += 1
            self._last_id, self._last_at = error_id, now
            if self.total == 1:
                self._first_id, self._since, self._said_at = error_id, 0, now
                return True
            self._since += 1
            if now - self._said_at < self.every_s:
                return False
            since, waited, self._since, self._said_at = self._since, now - self._said_at, 0, now
            total, first, last = self.total, self._first_id, self._last_id
        self.logger.warning("%s: %d more in the last %.0f s, %d since the first (error_id=%s); the last error_id=%s",
                            self.what, since, waited, total, first, last,
                            extra={"refused": total, "error_id": last, "first_error_id": first})
        return False

    def kept(self) -> None:
        """A body was kept: a run of refusals, if one was on, ends with one line."""
        if not self.total:  # the common case, read without the lock
            return
        with self._lock:
            total, first, self.total, self._since = self.total, self._first_id, 0, 0
        if total:
            self.logger.warning("%s: bodies are kept again after %d refused (the first error_id=%s)", self.what,
                                total, first, extra={"refused": total, "first_error_id": first})
