"""Reader of Tembo's activity-model blob (format: docs/model-format.md).

`parse_file(f)` (the collar, reading its flash a record at a time) and `parse(data)` (bytes) check
everything before the collar trusts a model: magic, format version, lengths,
CRC32 of the body, every record (unknown ones are refused, not skipped), the tree structure, and
the hash of the feature schema against this firmware's own `features.schema_text`. Any problem
raises `ModelError` naming it; nothing half-parsed is returned. Runs on MicroPython and CPython.

Format version 1 holds a forest (each leaf: n_classes u16 votes); version 2 holds boosted trees
(each leaf: one i16 score added to the class its tree belongs to, on top of per-class base scores).
"""

import hashlib
import io
import struct
import sys
from array import array

from collar_firmware import features

MAGIC = b"TMBM"
FORMAT_VERSION = 1  # a forest: leaves of per-class votes
FORMAT_BOOSTED = 2  # boosted trees: one class per tree, scalar leaf scores, per-class base scores
FORMAT_VERSIONS = (FORMAT_VERSION, FORMAT_BOOSTED)
HEADER_SIZE = 16
FLAG_SIGNED = 1

REC_META = 1
REC_CLASSES = 2
REC_SCALES = 3
REC_ROOTS = 4
REC_NODES = 5
REC_LEAVES = 6
REC_NAME = 7
REC_TREE_CLASS = 8  # version 2 only: n_trees x u8, the class each tree scores
REC_BASE = 9  # version 2 only: n_classes x i32, the score every class starts from

META_FORMAT = "<IHHBBBBHHIH"  # model_version, window_s, rate_hz, overlap_pct, n_features,
META_SIZE = 22  # n_classes, n_trees, n_nodes, n_leaves, schema_hash, leaf_scale
NODE_SIZE = 7  # feature u8, threshold i16, left i16, right i16
SIG_HEADER_SIZE = 4  # scheme u8, key_id u8, length u16
SIG_SCHEME_ED25519 = 1

# The collar's bounds: every size a blob declares is checked against them before anything is
# allocated (a crafted 41-byte blob once declared 69 MB of leaves).
MAX_TREES = 64
MAX_TREES_BOOSTED = 255  # boosted trees are small (a few leaves each), one per class per round
MAX_NODES = 4096
MAX_CLASSES = 16  # config.MAX_CLASSES: the activity uplink carries at most 16 shares
MAX_WINDOW_SAMPLES = 6000
BASE_BOUND = 1 << 24  # v2 base scores: with 255 leaves of at most 2**15 a class score stays in int32
MAX_BODY_BYTES = 48 * 1024  # a model a collar can hold: 4096 nodes of 7 bytes plus leaves and names
SCRATCH_BYTES = 511  # bytes of nodes (73 of them) read at a time by parse_file


try:
    from binascii import crc32 as _binascii_crc32
except ImportError:  # ports built without binascii.crc32
    _binascii_crc32 = None


class ModelError(ValueError):
    """A model blob was refused; the message names what is wrong."""


def crc32(data, crc=0):
    """Return the CRC-32 (IEEE 802.3, as zlib) of data, continuing from crc."""
    if _binascii_crc32 is not None:
        return _binascii_crc32(data, crc)  # unsigned on CPython 3 and MicroPython: no second big int
    if not isinstance(data, (bytes, bytearray)):
        data = bytes(data)  # an array or memoryview iterates by item, the CRC runs over bytes
    crc ^= 0xFFFFFFFF
    table = _CRC_NIBBLES
    for byte in data:
        crc = (crc >> 4) ^ table[(crc ^ byte) & 15]
        crc = (crc >> 4) ^ table[(crc ^ (byte >> 4)) & 15]
    return crc ^ 0xFFFFFFFF


_CRC_NIBBLES = (
    0x00000000,
    0x1DB71064,
    0x3B6E20C8,
    0x26D930AC,
    0x76DC4190,
    0x6B6B51F4,
    0x4DB26158,
    0x5005713C,
    0xEDB88320,
    0xF00F9344,
    0xD6D6A3E8,
    0xCB61B38C,
    0x9B64C2B0,
    0x86D3D2D4,
    0xA00AE278,
    0xBDBDF21C,
)


def schema_hash(window_s, rate_hz):
    """Return the CRC32 of this firmware's feature schema for a window setting."""
    return crc32(features.schema_text(window_s, rate_hz).encode())


class ParsedModel:
    """The validated contents of a blob, as flat arrays the classifier walks."""

    def __init__(self):
        self.format_version = FORMAT_VERSION
        self.model_version = 0
        self.window_s = 0
        self.rate_hz = 0
        self.overlap_pct = 0
        self.n_features = 0
        self.classes = ()
        self.schema_hash = 0
        self.leaf_scale = 0
        self.name = ""
        self.scales = None  # array('b'): feature f is quantised as round(x * 2**scales[f])
        self.roots = None  # array('h'): root node of each tree (negative: a single leaf)
        self.feature = None  # array('B') per node
        self.threshold = None  # array('h') per node: go left when q[feature] <= threshold
        self.left = None  # array('h') per node: child node, or -1 - leaf index
        self.right = None
        self.leaves = None  # v1: array('H'), n_classes per leaf, each leaf summing to ~leaf_scale
        #                     v2: array('h'), one score per leaf (score / leaf_scale is its raw value)
        self.tree_class = None  # v2: array('B') per tree, the class its leaves add to
        self.base = None  # v2: array('i') per class, the score before any tree
        self.signature = None  # (scheme, key_id, bytes) when the blob carries one
        self.body_len = 0  # bytes of records, the bound of every capacity META declares
        self.n_trees = 0  # the capacity META declares, each array's length checked against it
        self.n_nodes = 0
        self.n_leaves = 0


def parse(data, verifier=None):
    """Return a ParsedModel from blob bytes; raise ModelError naming the first problem found.

    verifier, when given, is called as verifier(scheme, key_id, signed_digest, signature) and must
    return True (signed_digest: the SHA-256 of the header and body, what trust.signed_message covers);
    a blob without a signature is then refused. Tools and tests read bytes; the collar reads its flash
    with parse_file.
    """
    if data is None:
        raise ModelError("no model blob")
    return parse_file(io.BytesIO(data), verifier)


def parse_file(f, verifier=None):
    """Return a ParsedModel read from the binary file f (from its start), as parse does from bytes.

    The blob is never whole on the heap: each record is read from the file straight into its array
    (the nodes through a small scratch buffer), the body's CRC-32 and the signed SHA-256 taken as the
    bytes go by. Nothing is trusted before all of them were read: a problem in a record is reported
    only after the CRC and the signature were checked, so the reason is the one parse always gave.
    """
    size = f.seek(0, 2)
    f.seek(0)
    if size < HEADER_SIZE:
        raise ModelError("truncated: %d bytes, header needs %d" % (size, HEADER_SIZE))
    head = f.read(HEADER_SIZE)
    if head[0:4] != MAGIC:
        raise ModelError("bad magic %r, expected %r" % (bytes(head[0:4]), MAGIC))
    version, flags, reserved, body_len, body_crc = struct.unpack_from("<BBHII", head, 4)
    if version not in FORMAT_VERSIONS:
        raise ModelError("unsupported format version %d, this collar reads %d and %d"
                         % (version, FORMAT_VERSION, FORMAT_BOOSTED))
    if flags & ~FLAG_SIGNED or reserved != 0:
        raise ModelError("unknown header flags 0x%02x/0x%04x" % (flags, reserved))
    if body_len > MAX_BODY_BYTES:
        raise ModelError("body of %d bytes exceeds the collar's %d" % (body_len, MAX_BODY_BYTES))
    end = HEADER_SIZE + body_len
    if size < end:
        raise ModelError("truncated: body needs %d bytes, blob has %d" % (end, size))
    src = _Source(f, hashlib.sha256(head) if flags & FLAG_SIGNED and verifier is not None else None)
    model = ParsedModel()
    model.format_version = version
    model.body_len = body_len
    try:
        _parse_records(model, src, end)
        failure = None
    except ModelError as e:  # reported after the CRC and the signature, as from a blob read whole
        failure = e
        while src.pos < end:  # the rest is read (and hashed), none of it kept
            src.chunk(min(SCRATCH_BYTES, end - src.pos))
    if src.crc != body_crc:
        raise ModelError("CRC mismatch: body crc32 %08x, header says %08x" % (src.crc, body_crc))
    _parse_trailer(model, f, size, end, flags, verifier, src.sha)
    if failure is not None:
        raise failure
    _check_trees(model)
    expected = schema_hash(model.window_s, model.rate_hz)
    if model.schema_hash != expected:
        raise ModelError(
            "schema hash mismatch: blob %08x, firmware features v%d give %08x"
            % (model.schema_hash, features.FEATURES_VERSION, expected)
        )
    return model


class _Source:
    """A blob's body read in order from a file, its CRC-32 (and the signed SHA-256, when asked)
    taken as the bytes go by. pos: the blob offset of the next byte."""

    def __init__(self, f, sha):
        self.f = f
        self.sha = sha  # hashlib.sha256 of the header so far, or None
        self.crc = 0
        self.pos = HEADER_SIZE
        self.scratch = bytearray(SCRATCH_BYTES)
        self.head = bytearray(3)  # a record's tag and length

    def fill(self, buf, n):
        """Read the next n bytes into buf (a bytearray, memoryview or array of exactly n bytes); return buf."""
        got = self.f.readinto(buf)
        if got != n:
            raise ModelError("truncated at offset %d" % self.pos)
        self.crc = crc32(buf, self.crc)
        if self.sha is not None:
            self.sha.update(buf)
        self.pos += n
        return buf

    def chunk(self, n):
        """Return the next n (<= SCRATCH_BYTES) bytes in the scratch buffer, valid until the next chunk."""
        return self.fill(self.scratch if n == SCRATCH_BYTES else memoryview(self.scratch)[0:n], n)

    def array(self, typecode, length, size):
        """Return an array of typecode (items of size bytes) read straight from the next length bytes (little-endian)."""
        target = array(typecode, range(length // size))  # sized without a buffer to copy
        self.fill(target, length)
        if sys.byteorder != "little":
            target.byteswap()
        return target


def _parse_trailer(model, f, size, end, flags, verifier, sha):
    """Check the signature trailer (present exactly when FLAG_SIGNED; f is at `end`) and verify it if asked."""
    if not flags & FLAG_SIGNED:
        if size != end:
            raise ModelError("%d unexpected bytes after the body of an unsigned blob" % (size - end))
        if verifier is not None:
            raise ModelError("signature required but the blob is unsigned")
        return
    if size < end + SIG_HEADER_SIZE:
        raise ModelError("truncated: signature trailer missing")
    scheme, key_id, sig_len = struct.unpack_from("<BBH", f.read(SIG_HEADER_SIZE), 0)
    if size != end + SIG_HEADER_SIZE + sig_len:
        raise ModelError("signature trailer length %d does not match the blob" % sig_len)
    if scheme != SIG_SCHEME_ED25519 or sig_len != 64:
        raise ModelError("unknown signature scheme %d (length %d)" % (scheme, sig_len))
    signature = f.read(sig_len)
    model.signature = (scheme, key_id, signature)
    if verifier is not None and not verifier(scheme, key_id, sha.digest(), signature):
        raise ModelError("signature does not verify (key %d)" % key_id)


def _parse_records(model, src, end):
    """Read the body's records into model; META first, each known record once, nothing unknown."""
    seen = 0
    while src.pos < end:
        pos = src.pos
        if end - pos < 3:
            raise ModelError("truncated record header at offset %d" % pos)
        head = src.head
        src.fill(head, 3)
        tag = head[0]
        length = head[1] | (head[2] << 8)
        pos += 3
        if pos + length > end:
            raise ModelError("truncated: record %d needs %d bytes at offset %d" % (tag, length, pos))
        last = REC_NAME if model.format_version == FORMAT_VERSION else REC_BASE
        if tag < REC_META or tag > last:
            raise ModelError("unknown record 0x%02x at offset %d" % (tag, pos - 3))
        bit = 1 << tag
        if seen & bit:
            raise ModelError("record %d appears twice" % tag)
        if tag != REC_META and not seen & (1 << REC_META):
            raise ModelError("record %d before META: capacity must be declared first" % tag)
        seen |= bit
        _read_record(model, tag, src, pos, length)
    required = (REC_META, REC_CLASSES, REC_SCALES, REC_ROOTS, REC_NODES, REC_LEAVES)
    if model.format_version == FORMAT_BOOSTED:
        required += (REC_TREE_CLASS, REC_BASE)
    for tag in required:
        if not seen & (1 << tag):
            raise ModelError("required record %d missing" % tag)


def _expect(tag, length, wanted):
    """Raise ModelError unless a record has exactly the wanted length."""
    if length != wanted:
        raise ModelError("record %d has %d bytes, expected %d" % (tag, length, wanted))


def _read_record(model, tag, src, pos, length):
    """Read one record's value (at blob offset pos; validated lengths and ranges) from src into model."""
    if tag == REC_META:
        _expect(tag, length, META_SIZE)
        (
            model.model_version,
            model.window_s,
            model.rate_hz,
            model.overlap_pct,
            model.n_features,
            n_classes,
            n_trees,
            n_nodes,
            n_leaves,
            model.schema_hash,
            model.leaf_scale,
        ) = struct.unpack_from(META_FORMAT, src.chunk(META_SIZE), 0)
        if model.n_features != features.N_FEATURES:
            raise ModelError(
                "model has %d features, firmware computes %d" % (model.n_features, features.N_FEATURES)
            )
        boosted = model.format_version == FORMAT_BOOSTED
        max_trees = MAX_TREES_BOOSTED if boosted else MAX_TREES
        if (not 2 <= n_classes <= MAX_CLASSES or not 1 <= n_trees <= max_trees or n_nodes > MAX_NODES
                or n_leaves < n_trees or n_leaves > n_nodes + n_trees):
            # binary trees: each tree has one leaf more than it has nodes
            raise ModelError(
                "bad capacity: %d classes, %d trees, %d nodes, %d leaves"
                % (n_classes, n_trees, n_nodes, n_leaves)
            )
        if boosted:  # scalar leaves, plus TREE_CLASS and BASE
            need = 3 * n_trees + NODE_SIZE * n_nodes + 2 * n_leaves + 4 * n_classes + model.n_features
        else:
            need = 2 * n_trees + NODE_SIZE * n_nodes + 2 * n_leaves * n_classes + model.n_features
        if need > model.body_len:
            raise ModelError(
                "capacity needs %d bytes of records, the body has %d" % (need, model.body_len)
            )
        samples = model.window_s * model.rate_hz
        if (
            not 1 <= model.rate_hz <= 400
            or samples < 2
            or samples > MAX_WINDOW_SAMPLES
            or model.overlap_pct > 90
        ):
            raise ModelError(
                "bad window: %d s at %d Hz, overlap %d %%"
                % (model.window_s, model.rate_hz, model.overlap_pct)
            )
        if model.leaf_scale == 0:
            raise ModelError("leaf scale is zero")
        model.classes = [None] * n_classes
        model.n_trees = n_trees
        model.n_nodes = n_nodes
        model.n_leaves = n_leaves
    elif tag == REC_CLASSES:
        data = src.fill(bytearray(length), length)
        names = model.classes
        at = 0
        for c in range(len(names)):
            if at >= length or at + 1 + data[at] > length:
                raise ModelError("record %d: class names truncated" % tag)
            n = data[at]
            names[c] = _text(tag, data, at + 1, at + 1 + n, pos)
            at += 1 + n
        if at != length:
            raise ModelError("record %d: bytes left after %d class names" % (tag, len(names)))
        model.classes = tuple(names)
    elif tag == REC_SCALES:
        _expect(tag, length, model.n_features)
        model.scales = src.array("b", length, 1)
        for f in range(model.n_features):
            e = model.scales[f]
            if e < -15 or e > 15:
                raise ModelError("feature %d scale exponent %d out of range" % (f, e))
    elif tag == REC_ROOTS:
        _expect(tag, length, 2 * model.n_trees)
        model.roots = src.array("h", length, 2)
    elif tag == REC_NODES:
        _expect(tag, length, NODE_SIZE * model.n_nodes)
        _read_nodes(model, src, model.n_nodes)
    elif tag == REC_LEAVES:
        boosted = model.format_version == FORMAT_BOOSTED
        _expect(tag, length, 2 * model.n_leaves * (1 if boosted else len(model.classes)))
        model.leaves = src.array("h" if boosted else "H", length, 2)
    elif tag == REC_TREE_CLASS:
        _expect(tag, length, model.n_trees)
        model.tree_class = src.array("B", length, 1)
        n_classes = len(model.classes)
        for t in range(model.n_trees):
            if model.tree_class[t] >= n_classes:
                raise ModelError("tree %d scores class %d of %d" % (t, model.tree_class[t], n_classes))
    elif tag == REC_BASE:
        _expect(tag, length, 4 * len(model.classes))
        model.base = src.array("i", length, 4)
        for c in range(len(model.base)):
            v = model.base[c]
            if v < -BASE_BOUND or v > BASE_BOUND:
                raise ModelError("class %d base score %d outside +-%d" % (c, v, BASE_BOUND))
    elif tag == REC_NAME:
        model.name = _text(tag, src.fill(bytearray(length), length), 0, length, pos)


def _read_nodes(model, src, n):
    """Read n interleaved nodes (feature u8, threshold, left, right i16) into four arrays, a scratch
    buffer of whole nodes at a time: no copy of the record on the heap."""
    feature = model.feature = array("B", bytes(n))  # a 'B' array sized from range() would overflow past 255 nodes
    threshold = model.threshold = array("h", range(n))
    left = model.left = array("h", range(n))
    right = model.right = array("h", range(n))
    per = SCRATCH_BYTES // NODE_SIZE
    i = 0
    while i < n:
        k = n - i if n - i < per else per
        buf = src.chunk(NODE_SIZE * k)
        p = 0
        for j in range(i, i + k):
            feature[j] = buf[p]
            threshold[j] = _i16(buf, p + 1)
            left[j] = _i16(buf, p + 3)
            right[j] = _i16(buf, p + 5)
            p += NODE_SIZE
        i += k


def _i16(buf, p):
    """Return the little-endian int16 at buf[p]."""
    v = buf[p] | (buf[p + 1] << 8)
    return v - 65536 if v > 32767 else v


def _text(tag, data, start, stop, at):
    """Return data[start:stop] decoded as UTF-8 (data read from blob offset at); raise ModelError when it is not UTF-8."""
    try:
        return bytes(data[start:stop]).decode()
    except ValueError:  # UnicodeError on MicroPython and CPython alike
        raise ModelError("record %d: text at offset %d is not UTF-8" % (tag, at + start)) from None


def _check_trees(model):
    """Refuse trees that could misbehave: bad feature indices, children out of range or not forward."""
    n_nodes = len(model.feature)
    if model.format_version == FORMAT_BOOSTED:
        n_leaves = len(model.leaves)
    else:
        n_leaves = len(model.leaves) // len(model.classes)
    for t in range(len(model.roots)):
        _check_child(model.roots[t], -1, n_nodes, n_leaves)
    for i in range(n_nodes):
        if model.feature[i] >= model.n_features:
            raise ModelError("node %d tests feature %d of %d" % (i, model.feature[i], model.n_features))
        _check_child(model.left[i], i, n_nodes, n_leaves)
        _check_child(model.right[i], i, n_nodes, n_leaves)


def _check_child(child, parent, n_nodes, n_leaves):
    """A child is a later node (so every walk ends) or an existing leaf."""
    if child >= 0:
        if child <= parent or child >= n_nodes:
            raise ModelError("node %d links to node %d (of %d)" % (parent, child, n_nodes))
    elif -1 - child >= n_leaves:
        raise ModelError("node %d links to leaf %d (of %d)" % (parent, -1 - child, n_leaves))
