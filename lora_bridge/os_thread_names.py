"""The names the kernel shows for a bridge process's threads (`/proc/<pid>/task/<tid>/comm`, `top -H`).

Python's thread names live in Python only: every thread of the intake applier process showed as
"python", so its CPU could not be told apart by thread from outside (`tembo bench bridge-cpu` reads it
from /proc). A thread that calls `name_os_thread` is shown by its name there too (Linux; elsewhere nothing
changes).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

PR_SET_NAME = 15
# The kernel keeps 15 bytes of a thread's name.
MOST_BYTES = 15


def name_os_thread(name: str) -> None:
    """Name the calling thread `name` (its first 15 bytes) as the kernel shows it, on Linux."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, name.encode()[:MOST_BYTES], 0, 0, 0)
    except (OSError, AttributeError):
        log.debug("thread %s not named for the kernel", name)


def on_cpu_s_by_thread_name(pid: int) -> dict[str, float]:
    """Seconds on a CPU of the live threads of process pid, summed by their kernel names
    (`/proc/<pid>/task/<tid>/schedstat`, nanoseconds: finer than the clock ticks of `stat`); {} when pid
    is gone or the kernel keeps no such figures."""
    found: dict[str, float] = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as comm, open(f"/proc/{pid}/task/{tid}/schedstat") as sched:
                name, on_cpu_ns = comm.read().strip(), int(sched.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        found[name] = found.get(name, 0.0) + on_cpu_ns / 1e9
    return found
