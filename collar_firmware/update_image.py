"""The update image a collar receives over the air: a signed header, then the payload.

    magic "TMBU" | format u8 (1 whole, 2 firmware delta) | kind u8 (1 firmware bundle, 2 model blob) |
    version u24 (major << 16 | minor << 8 | patch) | hw_len u8 | hardware id | payload_len u32 |
    payload SHA-256 (32) | [format 2: base version u24 | bundle_len u32 | bundle SHA-256 (32)] |
    golden_n u8 | golden features i32 x golden_n | golden class u8 | key_id u8 | signature (64) | payload

The signature (Ed25519, trust.signed_message) covers every header byte before it, so the
payload is bound through its SHA-256. A whole firmware's payload is its bundle: records of
(name length u8, name, size u32, bytes) in name order. A delta (format 2, firmware only) is built
against one base version: its payload names every module of the new bundle in that order, either a
whole record or a kept one (name length | KEPT, name: the base's record of that name, byte for
byte), and its header signs the length and SHA-256 of the bundle the collar composes from it and
the base it runs (update_slot.Composition). A collar that predates deltas refuses format 2 as not
an image it knows, rather than booting a slot of a few modules. The golden vector is the self-test of a trial boot: the
classifier the collar runs afterwards must put those features in that class. Refusals name an
ACK_RESULTS entry of the codec: unsigned, tampered, downgrade, wrong_hardware, truncated, too_large,
wrong_base (a delta built against a version the collar does not run).
Loaded on the collar with the first update frame (update_install.py); shared with the release tool (lora_bridge/updates/release.py).
"""

import struct

from collar_firmware.update import version_raw as version_raw  # one definition, what boots uses
from collar_firmware.update import version_text

MAGIC = b"TMBU"
FORMAT = 1
FORMAT_DELTA = 2
KEPT = 0x80  # a delta record's name length with this bit: the module is the base's, unchanged
KIND_FIRMWARE = 1
KIND_MODEL = 2
MAX_HW_ID = 32
MAX_GOLDEN = 32
MAX_HEADER_BYTES = 4 + 1 + 1 + 3 + 1 + MAX_HW_ID + 4 + 32 + 3 + 4 + 32 + 1 + 4 * MAX_GOLDEN + 1 + 1 + 64
MAX_PAYLOAD_BYTES = 96 * 1024  # a whole firmware bundle fits (95,329 bytes on 6 December: `tembo bench firmware`)


class ImageRefused(ValueError):
    """An image the collar will not install; reason is an ACK_RESULTS name."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


class Header:
    """The fields of an image header; signed_len is where the signature starts."""

    def __init__(self):
        self.kind = 0
        self.version = 0
        self.hardware_id = ""
        self.payload_len = 0
        self.payload_sha256 = b""
        self.base_version = 0  # a delta's base (0: a whole image)
        self.bundle_len = 0  # the bundle the slot holds once installed (a whole image: its payload)
        self.bundle_sha256 = b""
        self.golden = []
        self.golden_class = 0
        self.key_id = 0
        self.signature = b""
        self.signed_len = 0
        self.size = 0


def parse_header(data):
    """Return the Header at the start of data; ImageRefused("truncated" or "tampered") when it is not one."""
    n = len(data)
    if n < 10:
        raise ImageRefused("truncated", "image of %d bytes has no header" % n)
    if bytes(data[0:4]) != MAGIC or (data[4] != FORMAT and data[4] != FORMAT_DELTA):
        raise ImageRefused("tampered", "not a Tembo update image")
    h = Header()
    h.kind = data[5]
    h.version = data[6] << 16 | data[7] << 8 | data[8]
    hw_len = data[9]
    pos = 10
    if hw_len > MAX_HW_ID:
        raise ImageRefused("tampered", "hardware id of %d bytes" % hw_len)
    if n < pos + hw_len + 37:
        raise ImageRefused("truncated", "header cut after %d bytes" % n)
    try:
        h.hardware_id = bytes(data[pos:pos + hw_len]).decode()
    except UnicodeError:
        raise ImageRefused("tampered", "hardware id is not text") from None
    pos += hw_len
    h.payload_len = struct.unpack_from("<I", data, pos)[0]
    pos += 4
    h.payload_sha256 = bytes(data[pos:pos + 32])
    pos += 32
    h.bundle_len, h.bundle_sha256 = h.payload_len, h.payload_sha256
    if data[4] == FORMAT_DELTA:
        if n < pos + 39 + 1:
            raise ImageRefused("truncated", "header cut after %d bytes" % n)
        h.base_version = data[pos] << 16 | data[pos + 1] << 8 | data[pos + 2]
        h.bundle_len = struct.unpack_from("<I", data, pos + 3)[0]
        h.bundle_sha256 = bytes(data[pos + 7:pos + 39])
        pos += 39
    golden_n = data[pos]
    pos += 1
    if golden_n > MAX_GOLDEN:
        raise ImageRefused("tampered", "golden vector of %d features" % golden_n)
    if n < pos + 4 * golden_n + 2 + 64:
        raise ImageRefused("truncated", "header cut after %d bytes" % n)
    for i in range(golden_n):
        h.golden.append(struct.unpack_from("<i", data, pos + 4 * i)[0])
    pos += 4 * golden_n
    h.golden_class = data[pos]
    h.key_id = data[pos + 1]
    pos += 2
    h.signed_len = pos
    h.signature = bytes(data[pos:pos + 64])
    h.size = pos + 64
    if h.kind != KIND_FIRMWARE and h.kind != KIND_MODEL:
        raise ImageRefused("tampered", "unknown image kind %d" % h.kind)
    if h.base_version and (h.kind != KIND_FIRMWARE or h.base_version >= h.version):
        raise ImageRefused("tampered", "a delta of a model, or against a base not older than itself")
    if h.payload_len > MAX_PAYLOAD_BYTES or h.bundle_len > MAX_PAYLOAD_BYTES:
        raise ImageRefused("too_large", "payload of %d bytes, bundle of %d" % (h.payload_len, h.bundle_len))
    return h


def check(h, image_len, hardware_id, running_version):
    """Refuse an image for other hardware, an older or equal version, a delta against a version other
    than the one running, or a wrong length."""
    if h.hardware_id != hardware_id:
        raise ImageRefused("wrong_hardware", "built for %s, this collar is %s" % (h.hardware_id, hardware_id))
    if h.version <= running_version:
        raise ImageRefused("downgrade", "version %s is not newer than %s"
                           % (version_text(h.version), version_text(running_version)))
    if h.base_version and h.base_version != running_version:
        raise ImageRefused("wrong_base", "a delta against %s, this collar runs %s"
                           % (version_text(h.base_version), version_text(running_version)))
    if h.payload_len == 0:
        raise ImageRefused("truncated", "the image carries no payload")
    if image_len < h.size + h.payload_len:
        raise ImageRefused("truncated", "image has %d bytes, header says %d" % (image_len, h.size + h.payload_len))
    if h.signature == bytes(64):
        raise ImageRefused("unsigned", "the image carries no signature")
