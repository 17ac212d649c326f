"""TS005 multicast keys: each collar's McKEKey, a group's McKey wrapped for it, the group's session keys.

LoRa Alliance Remote Multicast Setup v1.0.0 (section 4.3; LoRaMac-node LoRaMacCrypto.c):

    McRootKey = aes128_encrypt(GenAppKey, 0x00 | pad16)      LoRaWAN 1.0.x
    McRootKey = aes128_encrypt(AppKey,    0x20 | pad16)      LoRaWAN 1.1
    McKEKey   = aes128_encrypt(McRootKey, 0x00 | pad16)
    McKey     = aes128_encrypt(McKEKey, McKey_encrypted)     what the collar's stack computes, so the
    McKey_encrypted = aes128_decrypt(McKEKey, McKey)         bridge sends this in McGroupSetupReq
    McAppSKey = aes128_encrypt(McKey, 0x01 | McAddr | pad16) McAddr little-endian, 4 bytes
    McNwkSKey = aes128_encrypt(McKey, 0x02 | McAddr | pad16)

The collars' root keys come from a key file the technician provisions (`TEMBO_COLLAR_KEYS_FILE`,
TOML, mode 0600; refused when others may read it), never from the store, the repository or a log
line; there is no default key, and an all-zero key (LoRaMac-node's placeholder) is refused:

    multicast_root = "<32 hex>"          # the bridge's secret every group's McKey derives from
    [collars."70b3d57ed0000001"]         # DevEUI
    gen_app_key = "<32 hex>"             # LoRaWAN 1.0.x collars (or app_key = "..." on LoRaWAN 1.1)

A group's McKey = AES-CMAC(multicast_root, "tembo-mc" | McAddr | label): the same key after a restart,
a different one for every delivery, and nothing to store.

The same root key gives each collar's TS004 v2.0.0 DataBlockIntKey = aes128_encrypt(root key, 0x30 | pad16)
(LoRa Basics Modem's v2.0.0 package derives it so from its LoRaWAN root key): the bridge computes each set-up's
data block MIC with it (`CollarKeyRing.block_mic`, lora_bridge/updates/frag_v2.py); the collar derives the same key
inside its LR1110 and checks the rebuilt block against it.
"""

from __future__ import annotations

import logging
import struct
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from lora_bridge.updates.keys import refuse_if_others_may_read

log = logging.getLogger(__name__)

KEY_BYTES = 16
MC_ROOT_1_0 = 0x00  # first byte of the McRootKey derivation block, LoRaWAN 1.0.x (from GenAppKey)
MC_ROOT_1_1 = 0x20  # LoRaWAN 1.1 (from AppKey)
MC_APP_S = 0x01
MC_NWK_S = 0x02
DATA_BLOCK_INT = 0x30  # first byte of TS004 v2.0.0's DataBlockIntKey derivation block
GROUP_KEY_LABEL = b"tembo-mc"


class CollarKeyError(ValueError):
    """The collar key file is missing, malformed, readable by others, or lacks a collar; says which."""


def _aes_block(key: bytes, block: bytes, decrypt: bool = False) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(block) + op.finalize()


def _pad16(head: bytes) -> bytes:
    return head + bytes(KEY_BYTES - len(head))


def mc_root_key(root_key: bytes, lorawan_1_1: bool = False) -> bytes:
    """Return McRootKey from GenAppKey (LoRaWAN 1.0.x) or AppKey (1.1)."""
    return _aes_block(root_key, _pad16(bytes([MC_ROOT_1_1 if lorawan_1_1 else MC_ROOT_1_0])))


def _cmac(key: bytes, data: bytes) -> bytes:
    """Return AES-CMAC(key, data) (RFC 4493), all 16 bytes."""
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def data_block_int_key(root_key: bytes) -> bytes:
    """Return TS004 v2.0.0's DataBlockIntKey from a collar's LoRaWAN root key (GenAppKey or AppKey)."""
    return _aes_block(root_key, _pad16(bytes([DATA_BLOCK_INT])))


def mc_ke_key(root: bytes) -> bytes:
    """Return McKEKey from McRootKey."""
    return _aes_block(root, bytes(KEY_BYTES))


def wrap_mc_key(ke_key: bytes, mc_key: bytes) -> bytes:
    """Return McKey_encrypted, the 16 bytes McGroupSetupReq carries (the collar encrypts them back)."""
    return _aes_block(ke_key, mc_key, decrypt=True)


def unwrap_mc_key(ke_key: bytes, wrapped: bytes) -> bytes:
    """Return McKey from McKey_encrypted, as a collar's LoRaWAN stack does."""
    return _aes_block(ke_key, wrapped)


def session_keys(mc_key: bytes, mc_addr: int) -> tuple[bytes, bytes]:
    """Return (McAppSKey, McNwkSKey) of the group at mc_addr."""
    addr = struct.pack("<I", mc_addr)
    return (_aes_block(mc_key, _pad16(bytes([MC_APP_S]) + addr)),
            _aes_block(mc_key, _pad16(bytes([MC_NWK_S]) + addr)))


def key_words(wrapped: bytes) -> dict[str, int]:
    """Return McKey_encrypted as the codec's four little-endian words of `mc_group_setup`."""
    words = struct.unpack("<IIII", wrapped)
    return {f"mc_key_encrypted_{i}": w for i, w in enumerate(words)}


@dataclass(frozen=True)
class GroupKeys:
    """A multicast group's address and keys; what the network server's group is created with."""

    mc_addr: int
    mc_key: bytes = field(repr=False)
    app_s_key: bytes = field(repr=False)
    nwk_s_key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"GroupKeys(mc_addr={self.mc_addr:08x}, keys=***)"


@dataclass(frozen=True)
class CollarKeyRing:
    """The collars' McKEKeys and the bridge's multicast root, loaded from the technician's key file."""

    path: Path
    _root: bytes = field(repr=False)
    _ke_keys: dict[str, bytes] = field(repr=False)
    _block_keys: dict[str, bytes] = field(default_factory=dict, repr=False)  # DevEUI -> DataBlockIntKey

    def __repr__(self) -> str:
        return f"CollarKeyRing(path={str(self.path)!r}, collars={len(self._ke_keys)}, keys=***)"

    def knows(self, dev_eui: str | None) -> bool:
        """True when the key file holds this collar's root key."""
        return bool(dev_eui) and dev_eui.lower() in self._ke_keys

    def group(self, mc_addr: int, label: str) -> GroupKeys:
        """Return the keys of the group at mc_addr for one delivery (label: e.g. the campaign id)."""
        if not 0 < mc_addr <= 0xFFFFFFFF:
            raise CollarKeyError(f"a multicast address is 1..0xFFFFFFFF, got {mc_addr}")
        mc_key = _cmac(self._root, GROUP_KEY_LABEL + struct.pack("<I", mc_addr) + label.encode())
        app_s, nwk_s = session_keys(mc_key, mc_addr)
        return GroupKeys(mc_addr, mc_key, app_s, nwk_s)

    def block_mic(self, dev_eui: str, b0: bytes, block: bytes) -> bytes:
        """Return TS004 v2.0.0's data block MIC for this collar: the first 4 bytes of AES-CMAC(DataBlockIntKey,
        b0 | block); CollarKeyError when the key file holds no root key for it."""
        key = self._block_keys.get((dev_eui or "").lower())
        if key is None:
            raise CollarKeyError(f"collar {dev_eui}: no root key in {self.path} (add it under [collars])")
        return _cmac(key, b0 + block)[:4]

    def wrapped_for(self, dev_eui: str, group: GroupKeys) -> bytes:
        """Return the group's McKey wrapped with this collar's McKEKey; CollarKeyError when unknown."""
        ke_key = self._ke_keys.get((dev_eui or "").lower())
        if ke_key is None:
            raise CollarKeyError(f"collar {dev_eui}: no root key in {self.path} (add it under [collars])")
        return wrap_mc_key(ke_key, group.mc_key)


def _key(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise CollarKeyError(f"{where}: a key is a string of 32 hex digits")
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise CollarKeyError(f"{where}: not hex") from None
    if len(key) != KEY_BYTES:
        raise CollarKeyError(f"{where}: an AES-128 key has 16 bytes, got {len(key)}")
    if key == bytes(KEY_BYTES):
        raise CollarKeyError(f"{where}: the all-zero key is a placeholder, not a key")
    return key


def load(path: Path | str | None) -> CollarKeyRing:
    """Load the collar key file; CollarKeyError when unset, missing, readable by others or malformed."""
    if not path:
        raise CollarKeyError("no collar key file: set TEMBO_COLLAR_KEYS_FILE to the file the technician provisioned")
    path = Path(path)
    if path.is_dir():
        raise CollarKeyError(f"{path} is a folder, not the collar key file (the TOML of multicast_root and the "
                             "collars' keys the technician provisioned): name the file in it")
    if not path.is_file():
        raise CollarKeyError(f"{path}: no such collar key file")
    refuse_if_others_may_read(path, CollarKeyError)
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CollarKeyError(f"{path}: not TOML ({exc})") from None
    unknown = set(data) - {"multicast_root", "collars"}
    if unknown:
        raise CollarKeyError(f"{path}: unknown entries {sorted(unknown)}")
    root = _key(data.get("multicast_root"), f"{path}: multicast_root")
    collars = data.get("collars")
    if not isinstance(collars, dict) or not collars:
        raise CollarKeyError(f"{path}: no [collars] table")
    ke_keys: dict[str, bytes] = {}
    block_keys: dict[str, bytes] = {}
    for written, entry in collars.items():
        where = f"{path}: collar {written}"
        dev_eui = "".join(written.split())  # "70 B3 D5 7E D0 00 00 01", as consoles show it, is that collar
        try:
            valid_eui = len(bytes.fromhex(dev_eui)) == 8
        except ValueError:
            valid_eui = False
        if not valid_eui:
            raise CollarKeyError(f"{where}: a DevEUI is 16 hex digits")
        if not isinstance(entry, dict) or set(entry) - {"gen_app_key", "app_key"} or len(entry) != 1:
            raise CollarKeyError(f"{where}: give exactly one of gen_app_key (LoRaWAN 1.0.x) or app_key (1.1)")
        if dev_eui.lower() in ke_keys:  # which of the two keys is the collar's? the bridge cannot tell
            raise CollarKeyError(f"{where}: that DevEUI is listed twice (written another way); keep one entry")
        ((name, value),) = entry.items()
        root_key = _key(value, f"{where}: {name}")
        ke_keys[dev_eui.lower()] = mc_ke_key(mc_root_key(root_key, name == "app_key"))
        block_keys[dev_eui.lower()] = data_block_int_key(root_key)
    log.info("collar key file loaded path=%s collars=%d", path, len(ke_keys))
    return CollarKeyRing(path, root, ke_keys, block_keys)
