"""Ed25519 signature verification (RFC 8032) in pure Python, for the collar's update and model checks.

`verify(public_key, message, signature) -> bool` never raises on bad input. Points are kept in
extended twisted-Edwards coordinates; [S]B - [h]A is computed in one joint double-and-add pass
(Straus), and its encoding is compared with R, as the reference implementation does. This is the
fallback: a board whose HAL has a hardware verifier (the nRF52840's CryptoCell-310) uses that
instead, see trust.py. Runs on MicroPython (big integers) and CPython; cost in docs/updates.md.
"""

from collar_firmware import sha512

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
_D2 = (2 * _D) % _P
_SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_BASE = (_BX, _BY, 1, (_BX * _BY) % _P)


def _pow(b, e, m):
    """Return b ** e % m by square and multiply (no three-argument pow needed)."""
    r = 1
    b %= m
    while e:
        if e & 1:
            r = (r * b) % m
        b = (b * b) % m
        e >>= 1
    return r


def _add(p, q):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = ((y1 - x1) * (y2 - x2)) % _P
    b = ((y1 + x1) * (y2 + x2)) % _P
    c = (t1 * _D2 * t2) % _P
    d = (2 * z1 * z2) % _P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return ((e * f) % _P, (g * h) % _P, (f * g) % _P, (e * h) % _P)


def _double(p):
    x1, y1, z1, _t1 = p
    a = (x1 * x1) % _P
    b = (y1 * y1) % _P
    c = (2 * z1 * z1) % _P
    h = a + b
    s = x1 + y1
    e = h - (s * s) % _P
    g = a - b
    f = c + g
    return ((e * f) % _P, (g * h) % _P, (f * g) % _P, (e * h) % _P)


def _decode_point(s):
    """Return the extended point encoded in 32 bytes s, or None when s encodes no point."""
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    v3 = (v * v * v) % _P
    x = (u * v3 * _pow(u * v3 * v3 * v, (_P - 5) // 8, _P)) % _P
    vx2 = (v * x * x) % _P
    if vx2 != u:
        if vx2 != (_P - u) % _P:
            return None
        x = (x * _SQRT_M1) % _P
    if x == 0 and sign:
        return None
    if (x & 1) != sign:
        x = _P - x
    return (x, y, 1, (x * y) % _P)


def _encode_point(p):
    x, y, z, _t = p
    zi = _pow(z, _P - 2, _P)
    x = (x * zi) % _P
    y = (y * zi) % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def verify(public_key, message, signature):
    """Return True when signature (64 bytes) is public_key's (32 bytes) Ed25519 signature of message.

    message is bytes, or an object with chunks() yielding bytes (a blob read from flash in pieces).
    """
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = _decode_point(bytes(public_key))
    if a is None:
        return False
    s = int.from_bytes(bytes(signature[32:]), "little")
    if s >= _L:
        return False
    h = sha512.new(bytes(signature[:32]))
    h.update(bytes(public_key))
    if hasattr(message, "chunks"):
        for chunk in message.chunks():
            h.update(chunk)
    else:
        h.update(message)
    k = int.from_bytes(h.digest(), "little") % _L
    neg_a = ((_P - a[0]) % _P, a[1], a[2], (_P - a[3]) % _P)
    both = _add(_BASE, neg_a)
    acc = (0, 1, 1, 0)
    for i in range(255, -1, -1):
        acc = _double(acc)
        bs = (s >> i) & 1
        bk = (k >> i) & 1
        if bs and bk:
            acc = _add(acc, both)
        elif bs:
            acc = _add(acc, _BASE)
        elif bk:
            acc = _add(acc, neg_a)
    return _encode_point(acc) == bytes(signature[:32])
