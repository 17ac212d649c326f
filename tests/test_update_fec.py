"""Fragmented transport with forward error correction: what the bridge sends, the collar rebuilds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collar_firmware.update_fec import FecDecoder, parity_row, prbs23
from lora_bridge.updates.fec import fragment


class MemoryStore:
    """Fragment store of a test: what the collar would write to its inactive slot."""

    def __init__(self) -> None:
        self.frags: dict[int, bytes] = {}
        self.rows: dict[int, bytes] = {}

    def write(self, i: int, data: bytes) -> None:
        self.frags[i] = bytes(data)

    def read(self, i: int) -> bytes:
        return self.frags[i]

    def write_row(self, p: int, data: bytes) -> None:
        self.rows[p] = bytes(data)

    def read_row(self, p: int) -> bytes:
        return self.rows[p]


def rebuilt(store: MemoryStore, m: int, padding: int) -> bytes:
    image = b"".join(store.frags[i] for i in range(m))
    return image[: len(image) - padding]


def test_parity_rows_follow_ts004s_generator():
    # PRBS-23 started at 1001: the first states as an independent TS004 implementation documents them
    x, seen = 1001, []
    for _ in range(2):
        x = prbs23(x)
        seen.append(x)
    assert seen == [0x0000_01F4, 0x0040_00FA]
    for m in (7, 8, 100):
        row = parity_row(1, m)
        assert 0 < len(row) <= m // 2 and all(0 <= j < m for j in row)
        assert parity_row(1, m) == row, "the collar and the bridge draw the same row"


@settings(max_examples=60, deadline=None)
@given(image=st.binary(min_size=1, max_size=600), frag_size=st.integers(8, 48), loss=st.floats(0, 0.3),
       seed=st.integers(0, 2**32 - 1))
def test_a_collar_rebuilds_the_file_from_enough_fragments_in_any_order(image, frag_size, loss, seed):
    frags = fragment(image, frag_size)
    m = frags.nb_frag
    rng = random.Random(seed)
    sent = list(range(1, 2 * m + 12))
    heard = [n for n in sent if rng.random() >= loss]
    rng.shuffle(heard)
    store = MemoryStore()
    decoder = FecDecoder(m, frag_size, store)
    for n in heard:
        decoder.add(n, frags.fragment(n))
    if decoder.complete():
        assert rebuilt(store, m, frags.padding) == image
    else:
        assert len(heard) < m + 12, "with twice the fragments and a dozen more, only bad luck fails"


def test_with_ten_percent_loss_m_plus_a_few_fragments_suffice():
    image = bytes(random.Random(1).getrandbits(8) for _ in range(4000))
    frags = fragment(image, 40)
    m = frags.nb_frag
    rng = random.Random(2)
    needed = []
    for _ in range(20):
        store = MemoryStore()
        decoder = FecDecoder(m, 40, store)
        n = 0
        while not decoder.complete():
            n += 1
            if rng.random() >= 0.1:
                decoder.add(n, frags.fragment(n))
        needed.append(decoder.received)
        assert rebuilt(store, m, frags.padding) == image
    assert sum(needed) / len(needed) <= 1.05 * m, needed  # about M + 2..5 fragments, as TS004 codes do


def test_a_setup_beyond_the_collars_bounds_is_refused_before_allocating():
    with pytest.raises(ValueError, match="exceed"):
        FecDecoder(65535, 240, MemoryStore())


class CountingStore(MemoryStore):
    """A store that counts the fragments read (one per XOR of a solve)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def read(self, i: int) -> bytes:
        self.reads += 1
        return super().read(i)


def test_a_collar_writes_the_missing_fragments_a_bounded_share_per_wake_up_and_the_same_bytes():
    rng = random.Random(7)
    image = bytes(rng.getrandbits(8) for _ in range(300 * 40 - 5))
    frags = fragment(image, 40)
    at_once, stepped = MemoryStore(), CountingStore()
    whole, collar = FecDecoder(frags.nb_frag, 40, at_once), FecDecoder(frags.nb_frag, 40, stepped, True)
    n = 0
    while not whole.complete():
        n += 1
        if rng.random() >= 0.15:
            assert whole.add(n, frags.fragment(n)) == whole.complete()
            collar.add(n, frags.fragment(n))
    assert collar.solving and not collar.complete() and collar.missing > 10, "the rank is there, not the bytes"
    assert not collar.add(n + 1, frags.fragment(n + 1)), "further fragments wait for the solve"
    calls, most = 0, 0
    while not collar.complete():
        before = stepped.reads
        collar.solve(64)
        calls += 1
        most = max(most, stepped.reads - before)
    assert calls > 1 and most < 64 + frags.nb_frag, "a call stops after the pivot that spends its budget"
    assert not collar.solving and collar.rows == {}
    assert rebuilt(stepped, frags.nb_frag, frags.padding) == rebuilt(at_once, frags.nb_frag, frags.padding) == image


@pytest.mark.micropython
def test_the_same_update_decoded_under_micropython_and_cpython_gives_identical_bytes():
    import hashlib

    from simulator.fuota_micropython import decode_under_micropython, heard_fragments

    image = bytes(random.Random(5).getrandbits(8) for _ in range(3000))
    nb_frag, padding, heard = heard_fragments(image, 60, 0.25, 3)
    assert len(heard) > nb_frag - 10, "some fragments were lost and rebuilt from parity"
    store = MemoryStore()
    decoder = FecDecoder(nb_frag, 60, store)
    for n, data in heard:
        decoder.add(n, data)
    cpython = hashlib.sha256(b"".join(store.frags[i] for i in range(nb_frag))).digest()
    micropython, _ = decode_under_micropython(nb_frag, 60, heard)
    assert micropython == cpython == hashlib.sha256(image + bytes(padding)).digest()


@pytest.mark.micropython
@pytest.mark.slow
def test_a_signature_check_under_micropython_leaves_no_more_than_the_collars_gc_budget_between_collections():
    from collar_firmware import config, trust, update_image
    from collar_firmware.compat import GC_BUDGET_BYTES
    from lora_bridge.updates import release
    from simulator import fuota
    from simulator.fuota_micropython import verify_fuel

    key, _ = fuota.bench_keys()
    image = release.model_image(fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), key), key,
                                config.HARDWARE_ID)
    h = update_image.parse_header(image)
    message = trust.SIG_CONTEXT + trust.digest(image[:h.signed_len])
    verified, fuel, steps, peak_step_bytes = verify_fuel(key.public_key, message, h.signature)
    assert verified and fuel > 0 and steps > 100
    assert peak_step_bytes <= GC_BUDGET_BYTES, "one step of the check allocates more than the loop may hold"
    tampered = bytes([h.signature[0] ^ 1]) + h.signature[1:]
    assert verify_fuel(key.public_key, message, tampered)[0] is False
