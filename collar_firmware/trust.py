"""Whom the collar believes: the Ed25519 public keys it holds, the signatures it has verified.

Keys ship beside the firmware in `release_keys.bin`: records of (key id u8, 32-byte public key),
written by `tembo keys generate` (docs/updates.md). There is no default key that works for
everybody: a collar without keys trusts nothing, refuses every blob and image and runs its
threshold model.

What is signed is never the raw bytes but a domain-separated SHA-256 of them
(`signed_message(data)` = SIG_CONTEXT + sha256(data)): the collar's hashlib has SHA-256 in C, and
Ed25519 then hashes 52 bytes with the pure-Python SHA-512 instead of kilobytes.

A check costs about a second of CPU on the nRF52840 in pure Python, so the collar does it once: a
blob loads at boot only when its digest is in the verified list (a flash record the collar writes
after a successful check, or `default_model.sha256` beside the firmware for the shipped model, put
there by `tembo release` after checking the signature). An unverified signed blob starts a
`Verification` that the main loop advances a few steps per wake-up; when it succeeds the digest is
recorded and the model reloaded. A board with a hardware verifier (`hal.crypto.ed25519_verify(pub,
msg, sig)`, the nRF52840's CryptoCell-310) answers at once instead.
"""

import hashlib

from collar_firmware import config, records
from collar_firmware.compat import collect_garbage, const

KEYS_FILE = "release_keys.bin"
DEFAULT_DIGEST_FILE = "default_model.sha256"  # receipt() of the shipped model's signature
KEY_RECORD_BYTES = 33
MAX_KEYS = 4
MAX_VERIFIED = 6  # digests remembered in flash (model, last good, firmware images)
MAX_REFUSED = 4  # digests whose signature failed, not checked again
SIG_CONTEXT = b"tembo-ed25519-sha256:"
_STEPS_PER_WAKE = const(8)  # signature-check steps a wake-up spends, a collection between


def digest(data):
    """Return the SHA-256 of data (bytes, bytearray or memoryview), hashed where it lies: a copy of a
    signed blob's bytes was one more blob on the heap of every model load and update check."""
    return hashlib.sha256(data).digest()


def signed_message(data):
    """Return the bytes an Ed25519 signature of data covers: SIG_CONTEXT + sha256(data)."""
    return SIG_CONTEXT + digest(data)


def receipt(data_digest, key_id, signature):
    """Return what the collar remembers of a good signature: SHA-256 of (digest, key id, signature),
    so the same bytes with another signature or key are checked afresh."""
    return hashlib.sha256(bytes(data_digest) + bytes((key_id,)) + bytes(signature)).digest()


class Trust:
    """Keys ({key_id: 32-byte public key}), verified digests, and the one check in progress."""

    def __init__(self, keys, crypto=None, storage=None, pinned=()):
        self.keys = {}
        for key_id in keys:
            pub = bytes(keys[key_id])
            if len(pub) != 32 or not 0 <= key_id <= 255:
                raise ValueError("key %r: an Ed25519 public key has 32 bytes and an id 0..255" % (key_id,))
            self.keys[key_id] = pub
        self.crypto = crypto
        self.storage = storage
        self.pinned = list(pinned)  # digests vouched for by the firmware image itself
        self.verified = []
        self.pending = None  # (key_id, digest, signature) of a check to run in the loop
        self.check = None  # the ed25519.Verification in progress
        self.refused = []  # digests whose signature failed (not tried again)
        self.verifications = 0
        self._load()

    def _load(self):
        if self.storage is None:
            return
        try:
            body = records.unsealed(self.storage.read(config.KEY_VERIFIED))
        except OSError:
            body = None
        if body is None:
            return
        for pos in range(0, len(body) - 31, 32):
            self.verified.append(bytes(body[pos:pos + 32]))

    def _remember(self, d):
        if d in self.verified:
            return
        self.verified.append(d)
        while len(self.verified) > MAX_VERIFIED:
            self.verified.pop(0)
        if self.storage is not None:
            body = bytearray()
            for v in self.verified:
                body.extend(v)
            self.storage.write(config.KEY_VERIFIED, records.sealed(body))

    def is_verified(self, r):
        """Return True when receipt r (see receipt()) was verified here or is pinned by the firmware."""
        return r in self.verified or r in self.pinned

    def accept(self, key_id, d, signature):
        """Return True when the data whose SHA-256 is d (digest(data): a model read from flash is hashed
        as it is read, never held whole) carries a good signature already verified; otherwise start (or
        answer at once with hardware) a check and return False for now."""
        if key_id not in self.keys or len(signature) != 64:
            return False
        signature = bytes(signature)
        r = receipt(d, key_id, signature)
        if self.is_verified(r):
            return True
        if r in self.refused:
            return False
        if self.crypto is not None:
            return self._hardware(key_id, d, signature, r)
        if self.pending is None:
            self.pending = (key_id, d, signature)
        return False

    def _hardware(self, key_id, d, signature, r):
        self.verifications += 1
        try:
            ok = self.crypto.ed25519_verify(self.keys[key_id], SIG_CONTEXT + d, signature)
        except Exception:
            ok = False
        if ok:
            self._remember(r)
        else:
            self._refuse(r)
        return ok

    def step(self):
        """Advance the check in progress by one bounded step; return True when one just succeeded
        (reload what waited for it), False otherwise."""
        if self.pending is None:
            return False
        key_id, d, signature = self.pending
        if self.check is None:
            from collar_firmware import ed25519  # loaded when a check is due: its code stays off the heap

            self.check = ed25519.Verification(self.keys[key_id], SIG_CONTEXT + d, signature)
        done = self.check.step()
        if done is None:
            return False
        self.verifications += 1
        self.check = None
        self.pending = None
        r = receipt(d, key_id, signature)
        if done:
            self._remember(r)
        else:
            self._refuse(r)
        return done

    def verify_some(self, verified):
        """Advance the check in progress by up to STEPS_PER_WAKE steps, collecting garbage between
        them (a step's big integers are garbage after it); call verified() when it succeeds (reload
        what waited for it). Return False when a step or verified() raised: the check is dropped,
        not retried, and the caller counts the error. No handler is live around a collection: the
        handler is `_guarded_step`'s, whose frame has returned before `collect_garbage()` runs (a
        collection under a live handler's frame crashed MicroPython, see simulator/micropython_runner.py)."""
        for _ in range(_STEPS_PER_WAKE):
            if not self._guarded_step(verified):
                return False
            if self.pending is None:
                return True
            collect_garbage()
        return True

    def _guarded_step(self, verified):
        """One step of the check (and verified() if it just succeeded); False, the check dropped, when either raised."""
        try:
            if self.step():
                verified()
        except Exception:
            self.pending = None
            self.check = None
            return False
        return True

    def _refuse(self, d):
        self.refused.append(d)
        if len(self.refused) > MAX_REFUSED:
            self.refused.pop(0)

    def vouch(self, key_id, data, signature):
        """Record a signature as good without checking it: only for bytes that arrived inside an
        update image whose own signature (covering them through its payload SHA-256) was verified."""
        if key_id in self.keys and len(signature) == 64:
            self._remember(receipt(digest(data), key_id, bytes(signature)))

    def blob_verifier(self):
        """Return the verifier blob.parse calls: (scheme, key_id, SHA-256 of the signed bytes, signature) -> bool."""
        def check(scheme, key_id, signed_digest, signature):
            return self.accept(key_id, signed_digest, signature)
        return check


def parse_keys(data):
    """Return {key_id: public key} from the bytes of a keys file; ValueError when malformed."""
    if data is None or len(data) % KEY_RECORD_BYTES or len(data) // KEY_RECORD_BYTES > MAX_KEYS:
        raise ValueError("a keys file holds up to %d records of %d bytes" % (MAX_KEYS, KEY_RECORD_BYTES))
    keys = {}
    for pos in range(0, len(data), KEY_RECORD_BYTES):
        keys[data[pos]] = bytes(data[pos + 1:pos + KEY_RECORD_BYTES])
    return keys


def _beside(name):
    path = globals().get("__file__", "")
    cut = max(path.rfind("/"), path.rfind("\\"))
    try:
        with open(path[:cut + 1] + name, "rb") as f:
            return f.read()
    except OSError:
        return None


def shipped(crypto=None, storage=None):
    """Return the Trust of the keys and pinned digest shipped beside the firmware."""
    try:
        keys = parse_keys(_beside(KEYS_FILE))
    except ValueError:
        keys = {}
    pinned = _beside(DEFAULT_DIGEST_FILE)  # the receipt of the shipped model
    return Trust(keys, crypto, storage, (bytes(pinned),) if pinned and len(pinned) == 32 else ())
