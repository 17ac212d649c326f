"""How often the cyclic garbage collector looks at the young objects of a process that handles uplinks.

CPython starts a young collection once 700 more container objects were made than freed. A batch of
the applier allocates tens of thousands (ORM rows, parsed bodies, the rules' lists), nearly all freed
by reference counting when the batch ends, so the collector ran in the middle of batches, walking what
the batch in hand still held and moving it to the older generations: in the applier process, 42-47 young
and 3-4 middle collections while it applied the bench's 1,240 uplinks (`tembo bench bridge-cpu`'s
intake run), 0.0037 ms of CPU an uplink. At YOUNG_OBJECTS none ran in that time: between batches few
objects are left. Cycles wait a little longer to be freed, at most YOUNG_OBJECTS objects more.
"""

from __future__ import annotations

import gc
import time
from typing import Any

YOUNG_OBJECTS = 10_000


def pace_young_collections(young_objects: int = YOUNG_OBJECTS) -> None:
    """Collect the young generation once young_objects more were made than freed; the older
    generations keep their thresholds (every 10 collections of the one below)."""
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(young_objects, middle, old)


class FullCollections:
    """Counts the full collections (the oldest generation's) a process makes while started, and their
    time in all: each walks every object the collector tracks, the GIL held, so one that walks a start-up
    heap left unfrozen (`start_up_heap`) stalls every thread of the process for about 100 ms."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._started_at: float | None = None

    def start(self) -> FullCollections:
        """Count from now on (until stop)."""
        gc.callbacks.append(self._seen)
        return self

    def stop(self) -> None:
        """Count no more."""
        gc.callbacks.remove(self._seen)

    def _seen(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started_at = time.perf_counter()
        elif self._started_at is not None:
            self.count += 1
            self.seconds += time.perf_counter() - self._started_at
            self._started_at = None
