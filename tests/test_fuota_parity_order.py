"""The bridge sends a short file's parity fragments in an order that serves the slowest collar sooner."""

from __future__ import annotations

import random

from test_update_fec import MemoryStore, rebuilt

from collar_firmware.update_fec import FecDecoder
from lora_bridge.updates import parity_order
from lora_bridge.updates.fec import fragment
from lora_bridge.updates.parity_order import counter_at, send_order

MODEL_FRAGMENTS = 35  # the model-only update: 3,844 bytes in 112-byte fragments


def fragments_until_rebuilt(frags, loss: float, rng: random.Random, order) -> tuple[int, MemoryStore]:
    """Send fragments in order(position) until a collar losing `loss` rebuilds the file; return how many."""
    store = MemoryStore()
    decoder = FecDecoder(frags.nb_frag, frags.frag_size, store)
    position = 0
    while not decoder.complete():
        position += 1
        if rng.random() >= loss:
            n = order(position, frags.nb_frag)
            decoder.add(n, frags.fragment(n))
    return position, store


def test_the_slowest_of_fifty_collars_rebuilds_the_model_sooner_with_the_bridges_parity_order():
    image = bytes(random.Random(3).getrandbits(8) for _ in range(MODEL_FRAGMENTS * 8 - 5))
    frags = fragment(image, 8)  # 35 small fragments: the code is the model update's, the XORs are cheap
    slowest = {"counter order": [], "send order": []}
    for fleet in range(40):
        for name, order in (("counter order", lambda p, m: p), ("send order", counter_at)):
            rng = random.Random(fleet)  # the same collars, losing the same frames, under both orders
            worst = 0
            for _ in range(50):
                loss = 0.1 * (0.5 + rng.random())  # as the bench draws them around 10 %
                sent, store = fragments_until_rebuilt(frags, loss, rng, order)
                assert rebuilt(store, frags.nb_frag, frags.padding) == image
                worst = max(worst, sent)
            slowest[name].append(worst)
    mean = {name: sum(v) / len(v) for name, v in slowest.items()}
    assert mean["send order"] <= mean["counter order"] - 0.5, mean


def test_every_fragment_position_is_a_distinct_ts004_counter_data_first():
    m = MODEL_FRAGMENTS
    counters = [counter_at(k, m) for k in range(1, 4 * m)]
    assert counters[:m] == list(range(1, m + 1)), "the data fragments go first, in their order"
    assert len(set(counters)) == len(counters) and min(counters[m:]) > m, "then parity, none twice"
    assert max(counters) <= (1 << 14) - 1, "every counter fits TS004's 14 bits"


def test_a_restarted_bridge_and_the_twin_get_the_same_order():
    first = send_order(MODEL_FRAGMENTS)
    send_order.cache_clear()
    assert send_order(MODEL_FRAGMENTS) == first and len(first) > 0


def test_a_long_file_goes_in_counter_order():
    m = parity_order.ORDERED_MAX_FRAGMENTS + 1
    assert send_order(m) == ()
    assert [counter_at(k, m) for k in range(1, 2 * m)] == list(range(1, 2 * m))
