"""Which TS004 parity fragments the bridge sends first, for a short file.

TS004 fixes what parity fragment n holds (the XOR of the data fragments its pseudo-random matrix
line picks, `collar_firmware.update_fec.parity_row`), not which n a sender uses: any counter above
the M data fragments is a valid parity fragment, and a decoder takes them in any order (the
collar's `FecDecoder`; LoRaMac-node's `FragDecoderProcess` counts only missing *data* fragments as
lost and solves each parity row it gets). Sent in counter order, the rows of a short file are
uneven: for M = 35 the first 15 parity rows cover data fragment 33 twice and fragment 14 nine
times, so a collar that missed fragment 33 waits for one of two rows. The slowest collar of a fleet
then needs several fragments more than the rank it lacks.

`send_order(nb_frag)` picks the parity counters greedily: among the next unused counters, the one
whose row is independent of what the most of a fixed sample of simulated collars already hold
(losses drawn over 2-50 %: deliveries plan for up to 30 %, and a collar loses up to 1.5 times that; seeded: the same order in the bridge, the
twin and after a restart). It costs about a second for M = 35 and is cached per M; beyond
`ORDERED_MAX_FRAGMENTS` the fragments go in counter order (a long file's tail is a small share of
it). `counter_at(position, nb_frag)` is the counter of the position-th fragment sent: positions
1..M are the data fragments, then the chosen parity, then every other counter in ascending order.
"""

from __future__ import annotations

import random
from functools import lru_cache

from collar_firmware.update_fec import parity_row

ORDERED_MAX_FRAGMENTS = 128  # files up to this many data fragments get a chosen parity order
SAMPLE_COLLARS = 400  # simulated collars whose progress scores a candidate row
CANDIDATES = 32  # the next unused counters weighed for each position
SAMPLE_LOSS = (0.02, 0.5)  # the downlink losses the sample is drawn over (planned for: up to 1.5 x 30 %)
SAMPLE_SEED = 14  # fixed: the bridge, the twin and a restarted bridge get the same order


def _row_mask(counter: int, nb_frag: int) -> int:
    if counter <= nb_frag:
        return 1 << (counter - 1)
    mask = 0
    for j in parity_row(counter - nb_frag, nb_frag):
        mask |= 1 << j
    return mask


def _reduce(basis: dict[int, int], v: int) -> int:
    """Return what is left of row v after the rows of basis (keyed by their lowest bit); 0: dependent."""
    while v:
        low = v & -v
        if low not in basis:
            return v
        v ^= basis[low]
    return 0


def _hold(basis: dict[int, int], v: int) -> None:
    left = _reduce(basis, v)
    if left:
        basis[left & -left] = left


def _sample(rng: random.Random, nb_frag: int, sent: list[int]) -> list[tuple[float, dict[int, int]]]:
    """Simulated collars (loss, basis of the rows they hold) that heard the data and `sent` at their loss."""
    collars = []
    for _ in range(SAMPLE_COLLARS):
        loss = rng.uniform(*SAMPLE_LOSS)
        basis: dict[int, int] = {}
        for n in range(1, nb_frag + 1):
            if rng.random() >= loss:
                basis[1 << (n - 1)] = 1 << (n - 1)
        for counter in sent:
            if len(basis) < nb_frag and rng.random() >= loss:
                _hold(basis, _row_mask(counter, nb_frag))
        collars.append((loss, basis))
    return collars


@lru_cache(maxsize=16)
def send_order(nb_frag: int) -> tuple[int, ...]:
    """Return the parity counters to send first, best first (empty: counter order for a long file)."""
    if nb_frag > ORDERED_MAX_FRAGMENTS or nb_frag < 2:
        return ()
    rng = random.Random(SAMPLE_SEED)
    length = 2 * nb_frag + 8  # room for 30 % loss and a repair round; later parity goes in counter order
    rows: dict[int, int] = {}
    chosen: list[int] = []
    collars = _sample(rng, nb_frag, chosen)
    next_free = nb_frag + 1
    while len(chosen) < length:
        behind = [basis for _loss, basis in collars if len(basis) < nb_frag]
        if not behind:  # the sample has the file: a fresh one, that heard what was chosen so far
            collars = _sample(rng, nb_frag, chosen)
            behind = [basis for _loss, basis in collars if len(basis) < nb_frag]
            if not behind:
                break
        while next_free in chosen:
            next_free += 1
        candidates, n = [], next_free
        while len(candidates) < CANDIDATES:
            if n not in chosen:
                candidates.append(n)
            n += 1
        best, best_score = candidates[0], -1
        for counter in candidates:
            v = rows.setdefault(counter, _row_mask(counter, nb_frag))
            score = sum(1 for basis in behind if _reduce(basis, v))
            if score > best_score:
                best, best_score = counter, score
        chosen.append(best)
        for loss, basis in collars:
            if len(basis) < nb_frag and rng.random() >= loss:
                _hold(basis, rows[best])
    return tuple(chosen)


def counter_at(position: int, nb_frag: int) -> int:
    """Return the TS004 fragment counter of the position-th fragment sent (1-based)."""
    if position <= nb_frag:
        return position
    order = send_order(nb_frag)
    k = position - nb_frag
    if k <= len(order):
        return order[k - 1]
    k -= len(order)
    chosen = set(order)
    n = nb_frag
    while k:
        n += 1
        if n not in chosen:
            k -= 1
    return n
