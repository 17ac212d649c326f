"""Whom the collar believes: the Ed25519 public keys it holds, and how it checks a signature with them.

The keys ship beside the firmware in `release_keys.bin`: records of (key id u8, 32-byte public key).
A deployment writes its own with `tembo keys generate` (docs/updates.md); there is no default key
that works for everybody, and a collar without keys trusts nothing (every blob and image refused,
the collar keeps running its threshold model). Verification goes to the HAL's hardware verifier
when the board has one (`hal.crypto.ed25519_verify(pub, msg, sig)`, the CryptoCell-310 of the
nRF52840) and to the pure-Python ed25519.verify otherwise.
"""

from collar_firmware import ed25519

KEYS_FILE = "release_keys.bin"
KEY_RECORD_BYTES = 33
MAX_KEYS = 4
_CACHE_SIZE = 4


def _digest(message):
    """Return a SHA-256 of message (bytes or an object with chunks()), for the verified cache."""
    import hashlib

    h = hashlib.sha256()
    if hasattr(message, "chunks"):
        for chunk in message.chunks():
            h.update(chunk)
    else:
        h.update(message)
    return h.digest()


class Trust:
    """The public keys a collar holds ({key_id: 32 bytes}) and an optional hardware verifier."""

    def __init__(self, keys, crypto=None):
        self.keys = {}
        for key_id in keys:
            pub = bytes(keys[key_id])
            if len(pub) != 32 or not 0 <= key_id <= 255:
                raise ValueError("key %r: an Ed25519 public key has 32 bytes and an id 0..255" % (key_id,))
            self.keys[key_id] = pub
        self.crypto = crypto
        self.verifications = 0  # signatures actually checked (not served from the cache)
        self._verified = []  # (key_id, signature, sha256 of message) of recent good signatures

    def verify(self, key_id, message, signature):
        """Return True when signature is key key_id's signature of message."""
        pub = self.keys.get(key_id)
        if pub is None or len(signature) != 64:
            return False
        signature = bytes(signature)
        digest = _digest(message)
        for entry in self._verified:
            if entry[0] == key_id and entry[1] == signature and entry[2] == digest:
                return True  # the same bytes were verified already (a reboot re-reads the model)
        self.verifications += 1
        ok = False
        if self.crypto is not None:
            try:
                ok = self.crypto.ed25519_verify(pub, _whole(message), signature)
            except Exception:
                ok = ed25519.verify(pub, message, signature)
        else:
            ok = ed25519.verify(pub, message, signature)
        if ok:
            self._verified.append((key_id, signature, digest))
            if len(self._verified) > _CACHE_SIZE:
                self._verified.pop(0)
        return ok

    def blob_verifier(self):
        """Return the verifier blob.parse calls: (scheme, key_id, signed bytes, signature) -> bool."""
        def check(scheme, key_id, signed, signature):
            return self.verify(key_id, signed, signature)
        return check


def _whole(message):
    if hasattr(message, "chunks"):
        out = bytearray()
        for chunk in message.chunks():
            out.extend(chunk)
        return bytes(out)
    return bytes(message)


def parse_keys(data):
    """Return {key_id: public key} from the bytes of a keys file; ValueError when malformed."""
    if data is None or len(data) % KEY_RECORD_BYTES or len(data) // KEY_RECORD_BYTES > MAX_KEYS:
        raise ValueError("a keys file holds up to %d records of %d bytes" % (MAX_KEYS, KEY_RECORD_BYTES))
    keys = {}
    for pos in range(0, len(data), KEY_RECORD_BYTES):
        keys[data[pos]] = bytes(data[pos + 1:pos + KEY_RECORD_BYTES])
    return keys


def shipped(crypto=None):
    """Return the Trust of the keys shipped beside the firmware (none: a Trust that refuses all)."""
    path = globals().get("__file__", "")
    cut = max(path.rfind("/"), path.rfind("\\"))
    try:
        with open(path[:cut + 1] + KEYS_FILE, "rb") as f:
            keys = parse_keys(f.read())
    except (OSError, ValueError):
        keys = {}
    return Trust(keys, crypto)
