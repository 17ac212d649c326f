"""Password hashing with the standard library's scrypt (RFC 7914).

Why scrypt and not bcrypt: scrypt is memory-hard (each guess costs 16 MiB here, which is what makes
GPU and ASIC guessing expensive), it has no 72-byte limit on the password (bcrypt cuts or, in
bcrypt 5, refuses longer ones), and it needs no compiled dependency. The stored string carries its
own parameters, so they can be raised later and old hashes still verify:

    scrypt$16384$8$1$<salt, base64>$<hash, base64>
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCHEME = "scrypt"
N, R, P = 2**14, 8, 1  # 128 * R * N = 16 MiB per hash
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD_CHARS = 10
_MAX_MEM = 64 * 1024 * 1024


def hash_password(password: str) -> str:
    """The storable scrypt hash of password (ValueError when it is too short)."""
    check_strength(password)
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, N, R, P)
    return "$".join((SCHEME, str(N), str(R), str(P), _b64(salt), _b64(digest)))


def verify_password(password: str, stored: str) -> bool:
    """True when password matches the stored hash; False for a wrong password or a broken hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != SCHEME:
            return False
        expected = base64.b64decode(digest)
        given = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(given, expected)


def burn_time(password: str) -> None:
    """Spend what a verification costs, so an unknown username answers as slowly as a known one."""
    _scrypt(password, b"\0" * SALT_BYTES, N, R, P)


def check_strength(password: str) -> None:
    """ValueError when password is shorter than MIN_PASSWORD_CHARS characters."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")


def generate_password() -> str:
    """A random password of about 124 bits, easy to type: 5 groups of 5 letters and digits."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(5))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = HASH_BYTES) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAX_MEM, dklen=length)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
