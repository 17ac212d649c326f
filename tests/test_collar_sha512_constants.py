"""A collar verifies release signatures with its own SHA-512 (collar_firmware/sha512.py), whose constants ship as
one bytes literal to save flash: they are FIPS 180-4's, derived here from first principles, and it hashes as
hashlib does."""

from __future__ import annotations

import hashlib

from collar_firmware import sha512


def first_primes(n: int) -> list[int]:
    primes: list[int] = []
    k = 2
    while len(primes) < n:
        if all(k % p for p in primes):
            primes.append(k)
        k += 1
    return primes


def fraction_bits(p: int, root: int) -> int:
    """The first 64 bits of the fractional part of p ** (1 / root), by integer root of p << (64 * root)."""
    x = p << (64 * root)
    r = 1 << (x.bit_length() // root + 1)  # above the root: Newton's steps fall to it
    while True:
        nxt = ((root - 1) * r + x // r ** (root - 1)) // root
        if nxt >= r:
            break
        r = nxt
    return r & (2 ** 64 - 1)


def test_the_collars_sha512_constants_are_fips_180_4s():
    primes = first_primes(80)
    assert list(sha512._K) == [fraction_bits(p, 3) for p in primes], "K: cube roots of the first 80 primes (4.2.3)"
    assert list(sha512._H0) == [fraction_bits(p, 2) for p in primes[:8]], "H(0): square roots of the first 8 (5.3.5)"


def test_the_collars_sha512_hashes_as_hashlib_does():
    for data in (b"", b"abc", bytes(range(256)) * 3):
        h = sha512.Sha512(data)
        out = None
        while out is None:
            out = h.step(8)
        assert out == hashlib.sha512(data).digest()
