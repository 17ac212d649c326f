"""TS004 v2.0.0 fragmentation on the bridge's side: which collars speak it, their set-up, their answers.

TS004 v2.0.0 (LoRa Basics Modem's `lorawan_fragmentation_package_v2.0.0.c`) "is not compatible with the earlier
version": its FragSessionSetupReq adds SessionCnt and the data block's MIC, its FragSessionStatusAns puts Status
first (and is Status alone when the session does not exist), and a collar tells the server unasked that it
rebuilt the block (FragDataBlockReceivedReq, CID 4) when the set-up's AckReception bit asks for it. Both layouts
are rows of the codec table (collar_firmware/codec.py, one per version). Tembo's collars speak it from firmware
V2_SINCE (PackageVersionAns 3, 2) and still take v1.0.0's set-up alone in its frame, so the bridge sets a collar up
in v2.0.0 only when its reported firmware speaks it AND the collar key file holds its root key (the MIC needs its
DataBlockIntKey, `multicast_keys.CollarKeyRing.block_mic`); any other collar gets v1.0.0's set-up.

The MIC's input, as the collar computes it (collar_firmware/update_install.py, Cmac and MicCheck):
    B0  = 0x49 | SessionCnt (u16) | FragIndex (u8) | Descriptor (u32) | 0 (u32) | block size (u32), little-endian
    MIC = AES-CMAC(DataBlockIntKey, B0 | block)[0:4]
SessionCnt is the campaign's id (mod 2**16): it grows from one delivery to the next, as v2.0.0 asks; a collar set up
again in the same delivery (a reset, a rejoin) gets one above the last it was given (lora_bridge/fuota_session_counts.py).
"""

from __future__ import annotations

import struct
from typing import Any

from collar_firmware.update import version_raw
from lora_bridge.updates import multicast_keys

PACKAGE_ID, V2 = 3, 2  # TS004 PackageVersionAns: fragmented data block transport, v2.0.0
V2_SINCE = "1.1.0"  # the first firmware version that announces TS004 v2.0.0
ACK_RECEPTION = 0x40  # FragSessionSetupReq Control bit 6: send FragDataBlockReceivedReq once the block is rebuilt


def speaks_v2(fw_version: str | None) -> bool:
    """True when a collar reporting fw_version announces TS004 v2.0.0 (None or unreadable: not known, False)."""
    try:
        return bool(fw_version) and version_raw(fw_version) >= version_raw(V2_SINCE)
    except ValueError:
        return False


def set_up_in_v2(answer: tuple[int, int] | None, fw_version: str | None) -> bool:
    """Whether a collar may be set up in TS004 v2.0.0 by what it said: its PackageVersionAns on port 201
    (PackageIdentifier, PackageVersion) named TS004 (3) version 2; when it gave none (silent), its firmware
    (`speaks_v2`, what the bridge inferred before it asked)."""
    if answer is None:
        return speaks_v2(fw_version)
    return answer == (PACKAGE_ID, V2)


def descriptor(setup: bytes) -> int | None:
    """The Descriptor a queued FragSessionSetupReq (v1.0.0's or v2.0.0's, its CID first) names: the bridge's
    campaign id; None for a frame too short to hold one."""
    return int.from_bytes(setup[7:11], "little") if len(setup) >= 11 else None


def b0(session_cnt: int, frag_index: int, descriptor: int, size: int) -> bytes:
    """The 16-byte block that opens the data block MIC's input."""
    return struct.pack("<BHBIII", 0x49, session_cnt & 0xFFFF, frag_index & 3, descriptor & 0xFFFFFFFF, 0, size)


def setup_values(ring: multicast_keys.CollarKeyRing, dev_eui: str, values: dict[str, Any], session_cnt: int,
                 block: bytes) -> dict[str, Any]:
    """Return the codec values of v2.0.0's `frag_session_setup` row for a collar: v1.0.0's `values` (frag_index, nb_frag,
    frag_size, control, padding, descriptor...) with AckReception set, SessionCnt and the MIC of `block` (the
    image, NbFrag * FragSize - Padding bytes) under the collar's DataBlockIntKey; CollarKeyError when the key file
    holds no root key for it."""
    mic = ring.block_mic(dev_eui, b0(session_cnt, values["frag_index"], values["descriptor"], len(block)), block)
    return {**values, "control": values["control"] | ACK_RECEPTION, "session_cnt": session_cnt & 0xFFFF,
            "mic": int.from_bytes(mic, "little")}
