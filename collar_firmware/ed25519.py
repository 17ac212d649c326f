"""Ed25519 signature verification (RFC 8032) in pure Python, for the collar's update and model checks.

`Verification(public_key, message, signature)` does the work in small steps: each `step()` costs a
bounded amount (a few kilobytes of big-integer temporaries) and returns None until the answer,
True or False, is known. The collar runs the steps from its duty cycle with a garbage collection
between them, so the check fits a small heap and never starves the watchdog (hosts step one to the
end). Points are in extended twisted-Edwards coordinates; [S]B - [h]A is computed in one
joint double-and-add pass (Straus) and its encoding compared with R, as the reference code does.

This is the fallback: a board whose HAL has a hardware verifier (the nRF52840's CryptoCell-310)
uses that instead, see trust.py. Runs on MicroPython (big integers) and CPython; cost in
docs/updates.md.
"""

from collar_firmware import sha512

_M255 = (1 << 255) - 1
_P = _M255 - 18  # 2**255 - 19, computed at import: its decimal text would cost the .mpy 78 bytes again
_L = 2**252 + 27742317777372353535851937790883648493
# RFC 8032 5.1's d, sqrt(-1) mod p and the base point's x and y, 32 bytes each little-endian: an .mpy keeps a big
# integer as its decimal text (78 bytes), bytes as themselves (tests/test_collar_signature_constants.py checks them)
_C = (
    b"\xa3\x78\x59\x13\xca\x4d\xeb\x75\xab\xd8\x41\x41\x4d\x0a\x70\x00"
    b"\x98\xe8\x79\x77\x79\x40\xc7\x8c\x73\xfe\x6f\x2b\xee\x6c\x03\x52"
    b"\xb0\xa0\x0e\x4a\x27\x1b\xee\xc4\x78\xe4\x2f\xad\x06\x18\x43\x2f"
    b"\xa7\xd7\xfb\x3d\x99\x00\x4d\x2b\x0b\xdf\xc1\x4f\x80\x24\x83\x2b"
    b"\x1a\xd5\x25\x8f\x60\x2d\x56\xc9\xb2\xa7\x25\x95\x60\xc7\x2c\x69"
    b"\x5c\xdc\xd6\xfd\x31\xe2\xa4\xc0\xfe\x53\x6e\xcd\xd3\x36\x69\x21"
    b"\x58\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66"
    b"\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66\x66"
)
_D = int.from_bytes(_C[0:32], "little")
_SQRT_M1 = int.from_bytes(_C[32:64], "little")
_BX = int.from_bytes(_C[64:96], "little")
_BY = int.from_bytes(_C[96:128], "little")
_D2 = (2 * _D) % _P
_BASE = (_BX, _BY, 1, (_BX * _BY) % _P)
_IDENTITY = (0, 1, 1, 0)

POW_BITS_PER_STEP = 12  # square-and-multiply rounds per step
SCALAR_BITS_PER_STEP = 2  # double-and-add rounds per step
HASH_ROUNDS_PER_STEP = 5  # SHA-512 rounds per step (64-bit words are big integers on MicroPython)

# phases of a Verification
_HASH = 0
_DECODE = 1
_LADDER = 2
_ENCODE = 3
_DONE = 4


def _red(x):
    """Return x mod p for 0 <= x < 2**512 by folding (2**255 = 19 mod p): shifts, no division."""
    x = (x & _M255) + 19 * (x >> 255)
    x = (x & _M255) + 19 * (x >> 255)
    return x - _P if x >= _P else x


# Coordinates stay in 0..p-1; a difference adds 2p first, so no operand is ever negative.

def _add(p, q):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = _red((y1 - x1 + _P) * (y2 - x2 + _P))
    b = _red((y1 + x1) * (y2 + x2))
    c = _red(_red(t1 * _D2) * t2)
    d = _red(2 * z1 * z2)
    e = b - a + _P
    f = d - c + _P
    g = d + c
    h = b + a
    return (_red(e * f), _red(g * h), _red(f * g), _red(e * h))


def _double(p):
    x1, y1, z1, _t1 = p
    a = _red(x1 * x1)
    b = _red(y1 * y1)
    c = _red(2 * z1 * z1)
    s = x1 + y1
    h = a + b
    e = h - _red(s * s) + _P
    g = a - b + _P
    f = c + g
    return (_red(e * f), _red(g * h), _red(f * g), _red(e * h))


class _Pow:
    """b ** e % _P by square and multiply, a few rounds per step (no three-argument pow needed)."""

    def __init__(self, b, e):
        self.r = 1
        self.b = b % _P
        self.e = e

    def step(self, rounds):
        """Run up to rounds rounds; return True when the result (self.r) is ready."""
        r = self.r
        b = self.b
        e = self.e
        while e and rounds:
            if e & 1:
                r = _red(r * b)
            b = _red(b * b)
            e >>= 1
            rounds -= 1
        self.r = r
        self.b = b
        self.e = e
        return e == 0


class Verification:
    """One signature check done in steps; step() returns None until the answer (True or False)."""

    def __init__(self, public_key, message, signature):
        self.result = None
        self.steps = 0
        if len(public_key) != 32 or len(signature) != 64:
            self.result = False
            return
        self._pub = bytes(public_key)
        self._r = bytes(signature[:32])
        self._s = int.from_bytes(bytes(signature[32:]), "little")
        if self._s >= _L:
            self.result = False
            return
        self._hash = sha512.Sha512(self._r + self._pub + bytes(message))
        self._k = 0
        y = int.from_bytes(self._pub, "little")
        self._sign = y >> 255
        y &= (1 << 255) - 1
        if y >= _P:
            self.result = False
            return
        self._y = y
        u = (y * y - 1) % _P
        v = (_D * y * y + 1) % _P
        v3 = (v * v * v) % _P
        self._u = u
        self._v = v
        self._uv3 = (u * v3) % _P
        self._pow = _Pow(u * v3 * v3 * v, (_P - 5) // 8)
        self._phase = _HASH
        self._bit = 255
        self._acc = _IDENTITY

    def step(self):
        """Do one bounded piece of the work; return None while it goes on, then True or False."""
        if self.result is not None:
            return self.result
        self.steps += 1
        if self._phase == _HASH:
            h = self._hash.step(HASH_ROUNDS_PER_STEP)
            if h is not None:
                self._k = int.from_bytes(h, "little") % _L
                self._hash = None
                self._phase = _DECODE
        elif self._phase == _DECODE:
            if self._pow.step(POW_BITS_PER_STEP):
                self._decoded()
        elif self._phase == _LADDER:
            self._ladder()
        elif self._phase == _ENCODE:
            if self._pow.step(POW_BITS_PER_STEP):
                x, y, _z, _t = self._acc
                zi = self._pow.r
                x = (x * zi) % _P
                y = (y * zi) % _P
                self.result = (y | ((x & 1) << 255)).to_bytes(32, "little") == self._r
                self._phase = _DONE
        return self.result

    def _decoded(self):
        """Finish decoding A from the power just computed, or fail when the bytes encode no point."""
        u = self._u
        x = (self._uv3 * self._pow.r) % _P
        vx2 = (self._v * x * x) % _P
        if vx2 != u:
            if vx2 != (_P - u) % _P:
                self.result = False
                return
            x = (x * _SQRT_M1) % _P
        if x == 0 and self._sign:
            self.result = False
            return
        if (x & 1) != self._sign:
            x = _P - x
        y = self._y
        self._neg_a = ((_P - x) % _P, y, 1, (_P - (x * y) % _P) % _P)
        self._both = _add(_BASE, self._neg_a)
        self._phase = _LADDER

    def _ladder(self):
        """SCALAR_BITS_PER_STEP rounds of the joint double-and-add for [S]B + [k](-A)."""
        acc = self._acc
        s = self._s
        k = self._k
        i = self._bit
        stop = i - SCALAR_BITS_PER_STEP
        if stop < -1:
            stop = -1
        while i > stop:
            acc = _double(acc)
            bs = (s >> i) & 1
            bk = (k >> i) & 1
            if bs and bk:
                acc = _add(acc, self._both)
            elif bs:
                acc = _add(acc, _BASE)
            elif bk:
                acc = _add(acc, self._neg_a)
            i -= 1
        self._acc = acc
        self._bit = i
        if i < 0:
            self._pow = _Pow(acc[2], _P - 2)
            self._phase = _ENCODE

