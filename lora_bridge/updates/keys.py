"""Ed25519 release keys: made with the `cryptography` package, kept in a file only its owner reads.

A key is two files: the private key (PKCS#8 PEM, mode 0600, never in the store, the repository
or a log line) and beside it `NAME.pub`, one line `tembo-ed25519 <key id> <public key hex>`.
The collar holds public keys in `collar_firmware/release_keys.bin` (records of key id u8 +
32 bytes; see collar_firmware/trust.py). Nothing here has a default key: a release needs a key
file a technician made.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from collar_firmware import trust
from models.atomic_file import replace_file, write_new_file

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644  # a key's public half: anyone may read it (it goes into the collars' keys file)
PUB_PREFIX = "tembo-ed25519"
COLLAR_KEYS_PATH = Path(trust.__file__).with_name(trust.KEYS_FILE)
SOURCE_TREE = Path(trust.__file__).resolve().parents[1]  # the checkout the firmware is built from


class KeyFileError(ValueError):
    """A key file is missing, malformed, or readable by others; the message says which."""


@dataclass(frozen=True)
class SigningKey:
    """A release key loaded for signing; its repr never shows the private half."""

    key_id: int
    path: Path
    public_key: bytes
    _private: Ed25519PrivateKey = field(repr=False)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id}, public_key={self.public_key.hex()}, private=***)"

    def sign(self, data: bytes) -> bytes:
        """Return the Ed25519 signature of data as the collar checks it (trust.signed_message)."""
        return self._private.sign(trust.signed_message(data))


def public_path(private_path: Path) -> Path:
    """Return the path of the public half written beside a private key file."""
    return private_path.with_name(private_path.name + ".pub")


def refuse_under_a_file(path: Path, what: str) -> None:
    """KeyFileError naming the file when one of path's folders is a file, not a folder: nothing can be
    written at path (the operating system says only "File exists" or "Not a directory")."""
    for folder in Path(path).parents:
        if folder.exists():
            if not folder.is_dir():
                raise KeyFileError(f"{folder} is a file, not a folder: the {what} {path} cannot be written under "
                                   "it (choose another path)")
            return


def generate(private_path: Path, key_id: int) -> SigningKey:
    """Make a new key pair: the private key file (0600, refused when it exists) and its .pub."""
    if not 0 <= key_id <= 255:
        raise KeyFileError(f"key id must be 0..255, got {key_id}")
    private_path = Path(private_path)
    refuse_under_a_file(private_path, "private key")
    if private_path.is_dir():
        raise KeyFileError(f"{private_path} is a folder: name the key file to make in it "
                           f"(e.g. {private_path / f'release-{key_id}.key'})")
    if private_path.resolve().is_relative_to(SOURCE_TREE):
        raise KeyFileError(f"{private_path} is inside the Tembo checkout {SOURCE_TREE}: a private release key is kept "
                           "outside it, one `git add` away from being published otherwise (e.g. ~/.tembo/release-1.key)")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = _raw_public(key.public_key())
    try:
        write_new_file(private_path, pem, PRIVATE_MODE)  # a full disk or Ctrl-C half way leaves no key file
    except FileExistsError:
        raise KeyFileError(f"{private_path} exists: a release key is never overwritten") from None
    try:
        # fsynced with the folder: the key's name and its .pub's survive a power cut once this returns
        replace_file(public_path(private_path), f"{PUB_PREFIX} {key_id} {public.hex()}\n".encode(), PUBLIC_MODE)
    except BaseException:
        # a full disk or Ctrl-C half way: the key this call made (never used) goes, so the same command
        # works again; left, it "exists" and is never overwritten, yet no .pub says its id
        private_path.unlink(missing_ok=True)
        raise
    log.info("release key generated key_id=%d path=%s", key_id, private_path)
    return SigningKey(key_id, private_path, public, key)


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def read_public(path: Path) -> tuple[int, bytes]:
    """Return (key id, public key) from a .pub file; KeyFileError when it is missing or not one."""
    path = Path(path)
    if not path.exists():
        raise KeyFileError(f"{path}: no such file; the key's id and public half live there, beside the private "
                           "key `tembo keys generate` wrote")
    parts = path.read_text().split()
    if len(parts) != 3 or parts[0] != PUB_PREFIX or not (parts[1].isascii() and parts[1].isdigit()):
        raise KeyFileError(f"{path}: expected '{PUB_PREFIX} <key id> <hex>'")
    if not 0 <= int(parts[1]) <= 255:
        raise KeyFileError(f"{path}: key id {int(parts[1])} is outside 0..255 (a signature carries it in one byte)")
    try:
        public = bytes.fromhex(parts[2])
    except ValueError:
        raise KeyFileError(f"{path}: the public key is not hexadecimal") from None
    if len(public) != 32:
        raise KeyFileError(f"{path}: an Ed25519 public key has 32 bytes")
    return int(parts[1]), public


def refuse_if_others_may_read(path: Path, error: type[ValueError]) -> None:
    """Raise `error` when the file at path (a secret the technician provisioned) is readable by others."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise error(f"{path}: mode {mode:o} lets others read it; chmod 600 it")


def load(private_path: Path) -> SigningKey:
    """Load a private key for signing; refused when others may read it or its .pub disagrees."""
    private_path = Path(private_path)
    if not private_path.exists():
        raise KeyFileError(f"{private_path}: no such key file (make one with `tembo keys generate`)")
    if private_path.is_dir():  # its mode says nothing of a key: "chmod 600 it" would mislead
        raise KeyFileError(f"{private_path} is a folder, not a private key file: name the key file in it "
                           "(`tembo keys generate` wrote e.g. release-1.key)")
    refuse_if_others_may_read(private_path, KeyFileError)
    try:
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    except ValueError as exc:
        raise KeyFileError(f"{private_path}: not a PEM private key") from exc
    except TypeError:  # `cryptography` says so of a key encrypted with a password
        raise KeyFileError(f"{private_path}: encrypted with a password; a Tembo release key is an unencrypted "
                           "PKCS#8 PEM file only its owner reads (`tembo keys generate` makes one)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{private_path}: not an Ed25519 key")
    key_id, public = read_public(public_path(private_path))
    if public != _raw_public(key.public_key()):
        raise KeyFileError(f"{public_path(private_path)} does not match {private_path}")
    return SigningKey(key_id, private_path, public, key)


def read_collar_keys(path: Path = COLLAR_KEYS_PATH, must_exist: bool = False) -> dict[int, bytes]:
    """Return {key id: public key} of a collar keys file ({} when there is none, KeyFileError instead
    with `must_exist`: a file named as what collars hold, mistyped, is not collars holding no key)."""
    path = Path(path)
    if not path.exists():
        if must_exist:
            raise KeyFileError(f"{path}: no such collar key file (the public keys a firmware carries, "
                               "collar_firmware/release_keys.bin)")
        return {}
    if path.is_dir():
        raise KeyFileError(f"{path} is a folder, not a collar key file (the public keys a firmware carries, "
                           "collar_firmware/release_keys.bin)")
    try:
        return trust.parse_keys(path.read_bytes())
    except ValueError as exc:
        raise KeyFileError(f"{path}: {exc}") from None


def refuse_replacing(key_id: int, public: bytes | None, path: Path = COLLAR_KEYS_PATH) -> None:
    """KeyFileError when the collar keys file holds another key under key_id (public None: any key):
    collars running a firmware built with that file trust it, and a firmware built after a silent
    replacement would pass every release check here and be refused by all of them."""
    held = read_collar_keys(path).get(key_id)
    if held is not None and held != public:
        raise KeyFileError(f"{path} already holds another key under id {key_id} (public {held.hex()[:16]}...): "
                           "collars running a firmware built with it trust that key and would refuse what a new "
                           "one signs. Choose another --key-id, or pass --replace when no collar holds it yet "
                           "(a new deployment replacing the repository's key)")


def check_installable(key_id: int, path: Path = COLLAR_KEYS_PATH, replace: bool = False) -> None:
    """KeyFileError (or OSError) when a new key under key_id could not be installed into the collar keys
    file: another key holds the id (unless `replace`), the file is full, or it cannot be written. Run
    before `generate --install` makes a key, so a refused install leaves no key that no collar holds."""
    path = Path(path)
    refuse_under_a_file(path, "collar key file")
    if not replace:
        refuse_replacing(key_id, None, path)
    held = read_collar_keys(path)
    if len(held.keys() | {key_id}) > trust.MAX_KEYS:
        raise KeyFileError(f"{path} holds {len(held)} keys already, as many as a collar holds ({trust.MAX_KEYS}); "
                           "retire one first")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise OSError(f"{path}: cannot be written (no such folder, or no permission)")


def install_public(key_id: int, public: bytes, path: Path = COLLAR_KEYS_PATH, replace: bool = False) -> dict[int, bytes]:
    """Add a public key to the collar keys file that ships with the firmware; another key under the
    same id is replaced only with `replace` (`refuse_replacing`)."""
    refuse_under_a_file(Path(path), "collar key file")
    if not replace:
        refuse_replacing(key_id, public, path)
    keys = read_collar_keys(path)
    if key_id in keys and keys[key_id] != public:
        log.warning("collar key %d replaced in %s", key_id, path)
    keys[key_id] = public
    if len(keys) > trust.MAX_KEYS:
        raise KeyFileError(f"a collar holds at most {trust.MAX_KEYS} keys")
    replace_file(Path(path), b"".join(bytes([k]) + keys[k] for k in sorted(keys)))
    return keys


def verify_now(checker: trust.Trust, key_id: int, signed_digest: bytes, signature: bytes) -> bool:
    """Check a signature of the data whose SHA-256 is signed_digest (`trust.digest(data)`) to the end at once
    with the collars' own checker, as a collar would over its wake-ups (`Trust.accept`, then `step`): for the
    bridge and the release tools (the collar's flash does not carry this loop)."""
    if checker.accept(key_id, signed_digest, signature):
        return True
    while checker.pending is not None:
        if checker.step() and checker.pending is None:
            break
    return checker.is_verified(trust.receipt(signed_digest, key_id, bytes(signature)))
