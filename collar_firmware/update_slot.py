"""A flash slot's firmware bundle: where it lies (the slot's descriptor), composing a delta's bundle
from the running slot, and checking that a slot holds the whole bundle an image signs.

Loaded by update_install with a firmware's install (a delta: with its base check) or its trial
boot, never for a model: the signature check that comes before keeps its heap as it was. A slot's
descriptor ("s<slot>.bundle", sealed: version, which records, offset, length, SHA-256) names its
bundle: a whole image's is its payload, left where the fragments put it ("f" records); a delta's is
composed into "c" records of COMPOSE_BLOCK bytes, one block of RAM at a time and a bounded share a
wake-up (Composition, docs/updates.md); a slot on trial is checked a bounded share a wake-up too (SlotCheck).
"""

import hashlib
import struct

from collar_firmware import records, update_image, update_install

COMPOSE_BLOCK = update_install.COPY_BYTES  # bytes of a composed bundle's flash record: the one block of RAM a delta's install holds
_SLOT_FORMAT = "<IBHHI32s"  # version u24, series (ord "f" fragments or "c" composed), block bytes, offset, length, SHA-256
_MAX_RECORD_HEAD = 1 + 127 + 4  # a bundle record's name length, name and size


class Bundle:
    """The firmware bundle a slot holds, as its descriptor says: version (u24), where it lies, length, SHA-256."""

    def __init__(self, store, version, block, offset, length, sha256):
        self.store = store
        self.version = version
        self.block = block
        self.offset = offset
        self.length = length
        self.sha256 = sha256

    def read(self, start, stop):
        """Return bytes start..stop of the bundle."""
        return update_install._read(self.store, self.block, self.offset + start, self.offset + stop)


def slot_bundle(storage, slot):
    """Return the Bundle of a slot, or None when its descriptor is missing, cleared or broken."""
    body = records.unsealed(storage.read(update_install.slot_key(slot)))
    if body is None or len(body) != struct.calcsize(_SLOT_FORMAT):
        return None
    version, series, block, offset, length, digest = struct.unpack(_SLOT_FORMAT, body)
    if series != 0x66 and series != 0x63 or not block:  # "f", "c"
        return None
    return Bundle(update_install.SlotStore(storage, slot, chr(series)), version, block, offset, length, bytes(digest))


def describe(storage, slot, version, series, block, offset, length, digest):
    storage.write(update_install.slot_key(slot), records.sealed(struct.pack(_SLOT_FORMAT, version, ord(series), block, offset,
                                                             length, digest)))


class _Composer:
    """Writes a bundle into a slot's "c" records block by block, hashing it on the way."""

    def __init__(self, storage, slot):
        self.store = update_install.SlotStore(storage, slot, "c")
        self.buf = bytearray(COMPOSE_BLOCK)
        self.fill = 0
        self.blocks = 0
        self.length = 0
        self.hash = hashlib.sha256()

    def write(self, data):
        """Append data (at most COMPOSE_BLOCK bytes at a time keeps RAM bounded)."""
        self.hash.update(data)
        self.length += len(data)
        pos = 0
        while pos < len(data):
            k = min(COMPOSE_BLOCK - self.fill, len(data) - pos)
            self.buf[self.fill:self.fill + k] = data[pos:pos + k]
            self.fill += k
            pos += k
            if self.fill == COMPOSE_BLOCK:
                self._flush()

    def _flush(self):
        if self.fill:
            self.store.write(self.blocks, memoryview(self.buf)[0:self.fill])
            self.blocks += 1
            self.fill = 0

    def close(self):
        """Write the last block; return (length, SHA-256) of what was written."""
        self._flush()
        return self.length, self.hash.digest()


def provision(storage, slot, version, bundle):
    """What the factory's flashing leaves: bundle (bytes) installed in slot as firmware version (u24)."""
    out = _Composer(storage, slot)
    for i in range(0, len(bundle), COMPOSE_BLOCK):
        out.write(bundle[i:i + COMPOSE_BLOCK])
    length, digest = out.close()
    describe(storage, slot, version, "c", COMPOSE_BLOCK, 0, length, digest)


def _record_at(read, pos, length):
    """Return (name, kept, end) of the bundle record at pos (read(start, stop) gives the bundle's
    bytes); OSError when it is not a whole record within length."""
    head = read(pos, min(pos + _MAX_RECORD_HEAD, length))
    n = head[0] & 0x7F if head else 0
    kept = head[0] & update_image.KEPT if head else 0
    if not n or len(head) < 1 + n + (0 if kept else 4):
        raise OSError(pos)  # no whole bundle record there
    name = bytes(head[1:1 + n])
    if kept:
        return name, True, pos + 1 + n
    end = pos + 1 + n + 4 + struct.unpack_from("<I", head, 1 + n)[0]
    if end > length:
        raise OSError(name)  # its record runs past the bundle
    return name, False, end


def base_of(agent, h):
    """Return the running slot's Bundle a delta h is built against; ImageRefused("wrong_base") when the
    collar runs another version, or its slot holds no bundle of it."""
    base = slot_bundle(agent.storage, agent.boot.active_slot)
    if base is None or base.version != h.base_version or base.version != agent.boot.active_version:
        raise update_image.ImageRefused("wrong_base", "the running slot holds no bundle of %s"
                                        % update_image.version_text(h.base_version))
    return base


class Composition(update_install.Stepped):
    """The bundle of a delta h composed into the inactive slot a share a wake-up: its new records (read from
    the slot's fragments, frag_size bytes each) and the running slot's kept ones, in order; then checked
    against the length and SHA-256 h signs and described. Nothing of it is named bootable before that,
    so a power cut leaves the running version; the install starts it again after the reboot.
    step raises ImageRefused("wrong_base") when the base lacks a kept module or the result differs."""

    def __init__(self, agent, h, frag_size):
        self.h = h
        self.base = base_of(agent, h)
        self.slot = agent._inactive()
        self.storage = agent.storage
        self.fragments = update_install.SlotStore(agent.storage, self.slot)
        self.frag_size = frag_size
        self.out = _Composer(agent.storage, self.slot)
        self._take = self.out.write
        self.at = 0  # the next record of the delta
        self.base_at = 0  # where the search for the next kept record goes on in the base

    def _delta(self, start, stop):
        return update_install._read(self.fragments, self.frag_size, self.h.size + start, self.h.size + stop)

    def step(self):
        try:
            return update_install.Stepped.step(self)
        except OSError as exc:
            raise update_image.ImageRefused("wrong_base", str(exc)) from None

    def _next(self):
        """Point the copy at the delta's next record, or at the base's record of a kept one; at the end,
        check the bundle and describe the slot (True)."""
        h = self.h
        if self.at >= h.payload_len:
            length, digest = self.out.close()
            if length != h.bundle_len or digest != h.bundle_sha256:
                raise OSError("not the bundle signed")
            describe(self.storage, self.slot, h.version, "c", COMPOSE_BLOCK, 0, length, digest)
            return True
        name, kept, end = _record_at(self._delta, self.at, h.payload_len)
        if self.out.length > h.bundle_len:  # the slot's flash takes what the header signs, not more
            raise OSError("longer than signed")
        self.read, self.pos, self.end = self._delta, self.at, end
        base = self.base
        while kept:  # both in name order: the base's records before it are modules the new bundle dropped
            if self.base_at >= base.length:
                raise OSError(name)  # a kept module the running firmware lacks
            base_name, base_kept, base_end = _record_at(base.read, self.base_at, base.length)
            if base_kept:
                raise OSError("base is a delta")
            if base_name == name:
                self.read, self.pos, self.end, kept = base.read, self.base_at, base_end, 0
            self.base_at = base_end
        self.at = end
        return None


class SlotCheck(update_install.Stepped):
    """Whether a slot holds the whole bundle the header h signs, read a share a wake-up (step: True or False
    at the end, OSError for a record that is not whole): its descriptor names h's version, length and
    SHA-256, and its records read one by one to the end (none kept: a delta's) hash to that SHA-256."""

    def __init__(self, storage, slot, h):
        self.h = h
        b = slot_bundle(storage, slot)
        if b is not None and b.version == h.version and b.length == h.bundle_len and b.sha256 == h.bundle_sha256:
            self.bundle, self.read = b, b.read
        else:
            self.bundle = None
        self.digest = hashlib.sha256()
        self._take = self.digest.update

    def _next(self):
        b = self.bundle
        if b is None:
            return False
        if self.end >= b.length:
            return self.digest.digest() == self.h.bundle_sha256
        _name, kept, self.end = _record_at(b.read, self.pos, b.length)
        return False if kept else None


def adopt(storage, slot, h):
    """Describe a slot on trial that a firmware older than slot descriptors installed: a whole image
    left in its fragment records ("f", each one fragment long), its bundle the payload the trial's
    signed header h names. SlotCheck then checks it as any other; a later delta composes from it."""
    if h.base_version or slot_bundle(storage, slot) is not None:
        return
    first = storage.read("s%df0" % slot)
    if first:
        describe(storage, slot, h.version, "f", len(first), h.size, h.payload_len, h.payload_sha256)
