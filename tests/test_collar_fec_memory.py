"""A collar rebuilds an update in the RAM it has: the FEC matrix spans the fragments it missed, never the whole file.

As LoRa Alliance reference decoders do, the data fragments still missing when the first parity fragment comes are
the matrix's columns; a parity row keeps a bit per column. The rows' RAM is bounded (update_fec._MATRIX_BYTES, the
update path's heap bound); a row beyond it is dropped and the status answer says NotEnoughMatrixMemory, so the
bridge knows the collar needs its missing data fragments rather than more parity.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from test_collar_fuota_frames import collar, sent
from test_update_fec import MemoryStore, rebuilt

from collar_firmware import update_fec
from collar_firmware.compat import GC_BUDGET_BYTES
from collar_firmware.update_fec import FecDecoder
from lora_bridge.updates.fec import fragment

BUNDLE_FRAGMENTS = 870  # the real firmware bundle's fragments of 112 B (97 KB, `tembo bench firmware`)


def _image(n_bytes: int, seed: int) -> bytes:
    return bytes(random.Random(seed).getrandbits(8) for _ in range(n_bytes))


def test_the_matrix_bound_is_the_update_paths_heap_bound():
    assert update_fec._MATRIX_BYTES == GC_BUDGET_BYTES, "const() takes a literal: it must follow compat's bound"


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


def test_a_collar_that_missed_too_much_drops_rows_says_not_enough_matrix_memory_and_is_repaired_by_data():
    """1,024 fragments all missed: 1,024 columns of 128 bytes a row, so the RAM bound holds fewer rows than
    there are missing fragments; the data fragments the bridge then sends complete the file byte for byte."""
    image = _image(1024 * 8, 5)
    frags = fragment(image, 8)
    m = frags.nb_frag
    store = MemoryStore()
    decoder = FecDecoder(m, 8, store, True)
    for n in range(m + 1, m + 200):
        decoder.add(n, frags.fragment(n))
    row_bytes = (m + 7) // 8 + update_fec._ROW_BYTES
    assert decoder.dropped_rows > 0 and len(decoder.rows) == update_fec._MATRIX_BYTES // row_bytes
    assert len(decoder.rows) * row_bytes <= update_fec._MATRIX_BYTES
    for n in range(1, m + 1):
        if decoder.solving:
            break
        decoder.add(n, frags.fragment(n))
    while decoder.solving:
        decoder.solve()
    assert decoder.complete() and rebuilt(store, m, frags.padding) == image


def _frame(n: int, data: bytes) -> bytes:
    return bytes([0x08]) + n.to_bytes(2, "little") + data


def test_the_status_answer_says_not_enough_matrix_memory_once_a_parity_row_was_dropped():
    c = collar()
    image = _image(1024 * 8, 6)
    frags = fragment(image, 8)
    c.hear(201, bytes.fromhex("02" "01" "0004" "08" "00" "00" "00000000"))  # 1,024 fragments of 8 B
    assert sent(c, 201) == ["0200"]
    for n in range(1025, 1025 + 10):
        c.hear(201, _frame(n, frags.fragment(n)))
    sent(c, 201)
    c.hear(201, bytes.fromhex("0101"))
    assert sent(c, 201) == ["01" "0a00" "ff" "00"], "10 received, 1,014 still needed (255 at most), no error"
    for n in range(1035, 1025 + 200):
        c.hear(201, _frame(n, frags.fragment(n)))
    sent(c, 201)
    c.hear(201, bytes.fromhex("0101"))
    (answer,) = sent(c, 201)
    assert answer[:2] == "01" and int(answer[-2:], 16) == 0x01, "NotEnoughMatrixMemory: Status bit 0"


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


@pytest.mark.micropython
def test_the_decoders_heap_under_micropython_stays_bounded_when_it_missed_every_fragment():
    """The collar's bounds (1,024 fragments), every data fragment missed: rows are dropped at the RAM bound and
    the decoder's heap stays within the matrix bound plus its bit per fragment, parity bit and column index."""
    from simulator.fuota_micropython import decoder_heap_under_micropython

    image = _image(1024 * 8, 8)
    frags = fragment(image, 8)
    heard = [(n, frags.fragment(n)) for n in range(1025, 1025 + 180)]
    held = decoder_heap_under_micropython(1024, 8, heard)
    assert held["matrix_memory_short"] and held["rows_dropped"] > 0 and not held["complete"]
    fixed = 2 * 1024 // 8 + 2 * 1024 + 512  # the two bit sets, the column index, the objects around them
    assert held["decoder_heap_bytes"] <= update_fec._MATRIX_BYTES + fixed, held
