"""Releases a field technician rolls out: signed model blobs and firmware bundles with a manifest.

A model release is the promoted blob signed with a release key (its Ed25519 trailer, see
docs/model-format.md) and a manifest. A firmware release is every collar module compiled with
mpy-cross for the nRF52840 (armv7emsp) packed into one image, a manifest (semantic version,
hardware id, sizes, SHA-256 of each module and of the image) signed with the release key, and,
when it is smaller, a delta against the version a collar runs. docs/updates.md has the formats.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

from collar_firmware import blob as collar_blob
from collar_firmware import trust
from lora_bridge.updates.keys import COLLAR_KEYS_PATH, SigningKey, read_collar_keys

log = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = Path(collar_blob.__file__).with_name("default_model.bin")
DEFAULT_DIGEST_PATH = Path(trust.__file__).with_name(trust.DEFAULT_DIGEST_FILE)


class ReleaseError(ValueError):
    """A release cannot be built; the message says why."""


def unsigned_part(blob: bytes) -> bytes:
    """Return a model blob without its signature trailer and signed flag (header and body)."""
    if len(blob) < collar_blob.HEADER_SIZE or blob[:4] != collar_blob.MAGIC:
        raise ReleaseError("not a Tembo model blob")
    body_len = struct.unpack_from("<I", blob, 8)[0]
    header = bytearray(blob[: collar_blob.HEADER_SIZE])
    header[5] &= ~collar_blob.FLAG_SIGNED & 0xFF
    return bytes(header) + blob[collar_blob.HEADER_SIZE : collar_blob.HEADER_SIZE + body_len]


def sign_model(blob: bytes, key: SigningKey) -> bytes:
    """Return the blob signed with key (any signature it carried is replaced)."""
    from models.blob_writer import with_signature

    return with_signature(unsigned_part(blob), key.key_id, key.sign)


def signed_digest(blob: bytes) -> bytes:
    """Return the SHA-256 of the part of a signed blob its signature covers."""
    body_len = struct.unpack_from("<I", blob, 8)[0]
    return trust.digest(blob[: collar_blob.HEADER_SIZE + body_len])


def check_model(blob: bytes, keys: dict[int, bytes]) -> collar_blob.ParsedModel:
    """Parse a signed blob as the collar does and verify its signature with keys; ReleaseError if not."""
    checker = trust.Trust(keys)
    try:
        return collar_blob.parse(blob, lambda scheme, key_id, signed, sig: checker.verify_now(key_id, signed, sig))
    except collar_blob.ModelError as exc:
        raise ReleaseError(f"the collar would refuse this blob: {exc}") from None


@dataclass(frozen=True)
class ModelRelease:
    """A signed model blob on disk and what its manifest says."""

    blob_path: Path
    manifest_path: Path
    manifest: dict


def release_model(blob: bytes, key: SigningKey, out_dir: Path, collar_keys: Path = COLLAR_KEYS_PATH) -> ModelRelease:
    """Sign a promoted model blob and write it with its manifest into out_dir."""
    signed = sign_model(blob, key)
    keys = read_collar_keys(collar_keys)
    if keys.get(key.key_id) != key.public_key:
        raise ReleaseError(f"key {key.key_id} is not in the collars' key file {collar_keys}: they would refuse it")
    parsed = check_model(signed, keys)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"model-{parsed.model_version}"
    blob_path = out_dir / f"{name}.bin"
    blob_path.write_bytes(signed)
    manifest = {
        "kind": "model",
        "model_version": parsed.model_version,
        "name": parsed.name,
        "classes": list(parsed.classes),
        "window_s": parsed.window_s,
        "rate_hz": parsed.rate_hz,
        "size_bytes": len(signed),
        "sha256": hashlib.sha256(signed).hexdigest(),
        "signed_sha256": signed_digest(signed).hex(),
        "key_id": key.key_id,
    }
    manifest_path = out_dir / f"{name}.json"
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("model release written model_version=%d key_id=%d", parsed.model_version, key.key_id)
    return ModelRelease(blob_path, manifest_path, manifest)


def install_default_model(blob: bytes, key: SigningKey, collar_keys: Path = COLLAR_KEYS_PATH,
                          model_path: Path = DEFAULT_MODEL_PATH, digest_path: Path = DEFAULT_DIGEST_PATH) -> bytes:
    """Sign the model that ships inside the firmware and pin its digest beside it (the collar loads
    it at boot without a second check because the firmware image that carries it was verified)."""
    signed = sign_model(blob, key)
    check_model(signed, read_collar_keys(collar_keys))
    Path(model_path).write_bytes(signed)
    Path(digest_path).write_bytes(trust.receipt(signed_digest(signed), key.key_id, signed[-64:]))
    return signed
