"""A collar rebuilds an update in the RAM it has: the FEC matrix spans the fragments it missed, never the whole file.

As LoRa Alliance reference decoders do, the data fragments still missing when the first parity fragment comes are
the matrix's columns; a parity row keeps a bit per column.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from test_update_fec import MemoryStore, rebuilt

from collar_firmware.compat import GC_BUDGET_BYTES
from collar_firmware.update_fec import FecDecoder
from lora_bridge.updates.fec import fragment

BUNDLE_FRAGMENTS = 870  # the real firmware bundle's fragments of 112 B (97 KB, `tembo bench firmware`)


def _image(n_bytes: int, seed: int) -> bytes:
    return bytes(random.Random(seed).getrandbits(8) for _ in range(n_bytes))


@pytest.mark.parametrize("stepped", [False, True])
def test_missing_data_fragments_that_come_after_the_parity_still_rebuild_the_image(stepped):
    """A unicast repair: the collar heard parity first, then the data fragments it lacked (some of them the
    pivots of its rows, some only columns of them)."""
    image = _image(120 * 40 - 7, 3)
    frags = fragment(image, 40)
    m = frags.nb_frag
    rng = random.Random(4)
    lost = set(rng.sample(range(1, m + 1), 30))
    store = MemoryStore()
    decoder = FecDecoder(m, 40, store, stepped)
    for n in range(1, m + 1):
        if n not in lost:
            decoder.add(n, frags.fragment(n))
    for n in range(m + 1, m + 21):  # 20 parity rows: not enough for 30 missing
        decoder.add(n, frags.fragment(n))
    assert not decoder.solving and decoder.missing == 30 and len(decoder.rows) == 20
    for n in sorted(lost)[:10]:  # ten repairs make the rank
        decoder.add(n, frags.fragment(n))
    while decoder.solving:
        decoder.solve()
    assert decoder.complete() and rebuilt(store, m, frags.padding) == image


@pytest.mark.micropython
@pytest.mark.parametrize("loss", [0.1, 0.3])
def test_a_bundle_sized_update_is_rebuilt_under_micropython_within_the_update_heap_bound(loss):
    """The real bundle's size (870 fragments of 112 B): until 7 December the decoder's RAM at 30 % loss was
    35,376 bytes (a 109-byte mask over every fragment per row), above the update path's 24,576."""
    from simulator.fuota_micropython import decoder_heap_under_micropython, heard_fragments

    image = _image(BUNDLE_FRAGMENTS * 112 - 50, 7)
    nb_frag, padding, heard = heard_fragments(image, 112, loss, 1)
    held = decoder_heap_under_micropython(nb_frag, 112, heard)
    assert held["complete"] and held["sha256"] == hashlib.sha256(image + bytes(padding)).digest()
    assert held["rows_dropped"] == 0 and held["rows_held"] > loss * nb_frag * 0.8
    assert held["decoder_heap_bytes"] <= GC_BUDGET_BYTES, held
