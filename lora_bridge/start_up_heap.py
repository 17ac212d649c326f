"""The start-up heap of a bridge process, left out of the cyclic garbage collector's later passes.

Every process that applies uplinks calls `freeze_start_up_heap` once it has opened its bridge: the
serving process (`lora_bridge.server.serve`, `start_in_thread`) and the intake applier process
(`lora_bridge.intake_applier.run_child`). This module imports nothing of the bridge, so the applier
process does not import the HTTP app (uvicorn, Starlette) only to freeze what it holds.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

_frozen = False


def freeze_start_up_heap() -> int:
    """Leave what the process holds now (the imported libraries, the opened bridge: some 175,000
    objects) out of the cyclic garbage collector's later passes, once per process; how many objects
    are frozen. Those objects live as long as the process, yet every full collection walked them all
    again, ~100 ms of CPU on whichever thread allocated at that moment (the applier, mid-batch).
    Garbage is collected first; an object frozen here and later left in an unreachable cycle is not
    freed (reference counting still frees the rest)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()
        log.debug("start-up heap frozen: %d objects left out of the collector's passes", gc.get_freeze_count())
    return gc.get_freeze_count()
