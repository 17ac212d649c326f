"""Python calls of every thread of a bridge process, for the benches' deterministic figures.

`cProfile` counts the calls of the thread that enables it. A bridge worker does its work on many
threads (the MQTT client's network thread, the threads that hand messages in, the group commit's
writer, the collar share's thread), so `ThreadProfiles` gives each thread started after `start()`
a profiler of its own (through `threading.setprofile`) and adds up their calls: `calls()` at any
moment, `stats()` for where they went. The thread that starts it is not counted: it reads the
counts, and its reading would count itself.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time
from typing import Any


class ThreadProfiles:
    """A cProfile profiler on every thread started after `start()`."""

    def __init__(self) -> None:
        self._profilers: list[tuple[str, cProfile.Profile]] = []
        self._lock = threading.Lock()

    def start(self) -> ThreadProfiles:
        """Profile every thread started from here on."""
        threading.setprofile(self._begin)
        return self

    def stop(self) -> None:
        """No profiler for threads started from here on (a thread's own profiler ends with it)."""
        threading.setprofile(None)  # type: ignore[arg-type]

    def _begin(self, *_event: Any) -> None:
        """The first profile event of a new thread: its own profiler replaces this hook."""
        sys.setprofile(None)
        profiler = cProfile.Profile(time.process_time)
        with self._lock:
            self._profilers.append((threading.current_thread().name, profiler))
        profiler.enable()

    def calls(self) -> int:
        """Python calls counted so far, all threads (reading a profiler's entries leaves it running)."""
        with self._lock:
            profilers = [profiler for _name, profiler in self._profilers]
        return sum(entry.callcount for profiler in profilers for entry in profiler.getstats())

    def stats(self) -> pstats.Stats:
        """Every thread's calls together, as pstats (for a look at where they went)."""
        with self._lock:
            profilers = [profiler for _name, profiler in self._profilers]
        stats = pstats.Stats(profilers[0])
        for profiler in profilers[1:]:
            stats.add(profiler)
        return stats
