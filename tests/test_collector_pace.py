"""The applier process lets the garbage collector look at young objects only once many more were made
than freed (`lora_bridge.collector_pace`): a batch's short-lived rows no longer start collections."""

from __future__ import annotations

import gc

from lora_bridge.collector_pace import YOUNG_OBJECTS, FullCollections, pace_young_collections


def _young_collections_while_a_batch_holds(objects: int) -> int:
    """Young collections while `objects` dicts are made and held (as a batch holds its rows), then freed."""
    collections = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 0:
            collections.append(1)

    gc.collect()
    gc.callbacks.append(seen)
    try:
        held = [{"row": n} for n in range(objects)]
        del held
    finally:
        gc.callbacks.remove(seen)
    return len(collections)


def test_a_paced_process_holds_a_batch_of_rows_without_a_young_collection_and_keeps_its_older_thresholds():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, before[1], before[2])
        unpaced = _young_collections_while_a_batch_holds(5_000)
        pace_young_collections()
        paced = _young_collections_while_a_batch_holds(5_000)
        thresholds = gc.get_threshold()
    finally:
        gc.set_threshold(*before)

    assert unpaced >= 5  # every 700 objects held
    assert paced == 0
    assert thresholds == (YOUNG_OBJECTS, before[1], before[2])


def test_the_bench_counts_a_worker_s_full_collections_and_not_its_young_ones():
    counted = FullCollections().start()
    try:
        gc.collect(0)
        gc.collect(1)
        gc.collect()
        gc.collect()
    finally:
        counted.stop()
    gc.collect()  # after stop: not counted

    assert counted.count == 2
    assert counted.seconds > 0
