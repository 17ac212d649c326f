"""A collar verifies release signatures with its own SHA-512 and Ed25519 (collar_firmware/sha512.py, ed25519.py),
whose constants ship as bytes literals to save flash: they are FIPS 180-4's and RFC 8032's, derived here from first
principles, and the hash is hashlib's."""

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


def test_the_collars_ed25519_constants_are_rfc_8032s():
    """RFC 8032 5.1: d = -121665/121666, sqrt(-1) = 2^((p-1)/4), the base point's y = 4/5 and x its even root."""
    from collar_firmware import ed25519

    p = 2 ** 255 - 19
    assert ed25519._D == -121665 * pow(121666, p - 2, p) % p
    assert ed25519._SQRT_M1 == pow(2, (p - 1) // 4, p)
    y = 4 * pow(5, p - 2, p) % p
    assert ed25519._BY == y and ed25519._BX % 2 == 0
    assert (-ed25519._BX ** 2 + y * y - 1 - ed25519._D * ed25519._BX ** 2 * y * y) % p == 0, "on the curve"
