"""The bridge's side of TS004-style fragmentation: split an image into fragments and add parity.

Fragment n (1-based) of an image of M fragments is data for n <= M and, beyond, the XOR of the
data fragments `collar_firmware.update_fec.parity_row(n - M, M)` picks: the collar decodes with
the very same function, so there is one definition of the code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from collar_firmware.update_fec import MAX_FRAG_SIZE, MAX_FRAGMENTS, parity_row


@dataclass(frozen=True)
class Fragmented:
    """An image cut into nb_frag data fragments of frag_size bytes (the last padded with padding bytes)."""

    data: tuple[bytes, ...]
    frag_size: int
    padding: int

    @property
    def nb_frag(self) -> int:
        return len(self.data)

    def fragment(self, n: int) -> bytes:
        """Return fragment n (1-based): a data fragment, or a parity fragment when n > nb_frag."""
        m = self.nb_frag
        if n <= m:
            return self.data[n - 1]
        out = bytearray(self.frag_size)
        for j in parity_row(n - m, m):
            for i, b in enumerate(self.data[j]):
                out[i] ^= b
        return bytes(out)


def fragment(image: bytes, frag_size: int) -> Fragmented:
    """Cut image into fragments of frag_size bytes; ValueError when a collar could not take it."""
    if not 1 <= frag_size <= MAX_FRAG_SIZE:
        raise ValueError(f"fragment size {frag_size} outside 1..{MAX_FRAG_SIZE}")
    m = max(1, math.ceil(len(image) / frag_size))
    if m > MAX_FRAGMENTS:
        raise ValueError(f"{m} fragments exceed the collar's {MAX_FRAGMENTS}")
    padding = m * frag_size - len(image)
    padded = image + bytes(padding)
    return Fragmented(tuple(padded[i * frag_size:(i + 1) * frag_size] for i in range(m)), frag_size, padding)
