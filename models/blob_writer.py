"""Writer of Tembo's activity-model blob (format: docs/model-format.md; reader: collar_firmware/blob.py).

A model is trained in the collar's quantised feature units (`quantize`), so every split threshold
becomes an exact int16: a quantised feature q goes left when q <= floor(threshold). The collar then
predicts exactly what scikit-learn predicts on the same quantised features (up to ties between
classes closer than the 16-bit leaf resolution).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from collar_firmware import blob as collar_blob
from collar_firmware import features as collar_features
from models.features import schema_hash

LEAF_SCALE = 65535  # each leaf's class probabilities are stored as round(p * LEAF_SCALE), u16
SHARED_LEAF_LEVELS = 64  # CollarForest's leaves: probabilities in 64ths, so equal leaves are stored once
INT16_MAX = 32767


@dataclass(frozen=True)
class ModelMeta:
    """What a blob says about its model besides the trees."""

    classes: tuple[str, ...]
    window_s: int
    rate_hz: int
    scales: tuple[int, ...]  # per feature: quantised q = round(x * 2**scale)
    model_version: int = 1
    overlap_pct: int = 0
    name: str = ""


@dataclass(frozen=True)
class TreeArrays:
    """One decision tree in scikit-learn's layout: node ids in depth-first order, -1 marks a leaf.

    threshold_q is already in quantised units (go left when q <= threshold_q); value holds each
    node's class probabilities (only leaves are used).
    """

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold_q: np.ndarray
    value: np.ndarray = field(repr=False)


def choose_scales(features: np.ndarray) -> tuple[int, ...]:
    """Return per-feature scale exponents (<= 0) so every |quantised value| fits in int16."""
    peak = np.abs(np.asarray(features, dtype=np.float64)).max(axis=0) if len(features) else np.zeros(0)
    scales = []
    for p in np.atleast_1d(peak):
        e = 0
        while p * 2.0**e > INT16_MAX:
            e -= 1
        scales.append(e)
    return tuple(scales)


def quantize(features: np.ndarray, scales: Sequence[int]) -> np.ndarray:
    """Return features (m, n_features) in the collar's int16 units, exactly as Model.quantize does."""
    x = np.asarray(features)
    if not np.all(np.isfinite(x)) or not np.array_equal(x, np.round(x)):
        raise ValueError("collar features are integers; got non-integer values")
    x = x.astype(np.int64)
    e = np.asarray(scales, dtype=np.int64)
    up = x << np.maximum(e, 0)
    down = (x + (np.int64(1) << np.maximum(-e - 1, 0))) >> np.maximum(-e, 0)
    q = np.where(e >= 0, up, down)
    return np.clip(q, -32768, INT16_MAX).astype(np.int16)


def trees_from_sklearn(ensemble) -> list[TreeArrays]:
    """Return the trees of a fitted RandomForestClassifier / ExtraTreesClassifier trained on quantised features."""
    trees = []
    for estimator in ensemble.estimators_:
        t = estimator.tree_
        value = t.value[:, 0, :].astype(np.float64)
        value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300)
        leaf = t.children_left < 0
        threshold_q = np.where(leaf, 0, np.floor(np.clip(t.threshold, -32768, INT16_MAX))).astype(np.int64)
        trees.append(
            TreeArrays(t.children_left.copy(), t.children_right.copy(), t.feature.copy(), threshold_q, value)
        )
    return trees


def leaf_votes(value: np.ndarray, levels: int = LEAF_SCALE) -> np.ndarray:
    """Return the collar's integer votes of leaf class probabilities: round(p * levels), clipped to 0..levels."""
    return np.clip(np.rint(np.asarray(value, dtype=np.float64) * levels), 0, levels).astype(np.int64)


def _record(tag: int, payload: bytes) -> bytes:
    """Return one body record: tag u8, length u16, payload."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"record {tag} of {len(payload)} bytes exceeds 65535")
    return struct.pack("<BH", tag, len(payload)) + payload


def _flatten(tree, nodes: list, leaf_at: Callable[[int], int]) -> int:
    """Append one tree's split nodes to `nodes` as the collar reads them (a child is a node index, or
    -1 - leaf index); `leaf_at(i)` stores the tree's leaf i and returns its index. Return the root's link."""
    node_index, leaf_index = {}, {}
    for i in range(len(tree.left)):
        if tree.left[i] < 0:
            leaf_index[i] = leaf_at(i)
        else:
            node_index[i] = len(nodes) + len(node_index)

    def link(i: int) -> int:
        return node_index[i] if i in node_index else -1 - leaf_index[i]

    for i in sorted(node_index):
        nodes.append((int(tree.feature[i]), int(tree.threshold_q[i]), link(tree.left[i]), link(tree.right[i])))
    return link(0)


def write_blob(trees: Sequence[TreeArrays], meta: ModelMeta, leaf_levels: int = LEAF_SCALE,
               share_leaves: bool = False) -> bytes:
    """Return an unsigned model blob of the trees and meta (see docs/model-format.md).

    Each leaf stores round(p * leaf_levels) per class (leaf_levels becomes the blob's leaf_scale).
    share_leaves stores equal leaves once, every tree linking to the same entry (the format allows
    it): deep forests end mostly in pure leaves, so their LEAVES record shrinks to a few entries.
    At least one leaf per tree is still written, as the collar's reader expects.
    """
    n_classes = len(meta.classes)
    if len(meta.scales) != collar_features.N_FEATURES:
        raise ValueError(f"{len(meta.scales)} scales for {collar_features.N_FEATURES} features")
    if not 1 <= leaf_levels <= LEAF_SCALE:
        raise ValueError(f"leaf_levels must be 1..{LEAF_SCALE}, got {leaf_levels}")
    roots, nodes, leaves = [], [], []
    stored: dict[tuple[int, ...], int] = {}

    def vote_leaf(tree, i: int) -> int:
        votes = tuple(int(v) for v in leaf_votes(tree.value[i], leaf_levels))
        if share_leaves and votes in stored:
            return stored[votes]
        stored[votes] = len(leaves)
        leaves.append(list(votes))
        return stored[votes]

    for tree in trees:
        roots.append(_flatten(tree, nodes, lambda i, tree=tree: vote_leaf(tree, i)))
    while len(leaves) < len(trees):  # the reader wants n_leaves >= n_trees; padding is never linked
        leaves.append([0] * n_classes)
    if len(nodes) > collar_blob.MAX_NODES or len(leaves) > 32767:
        raise ValueError(f"{len(nodes)} nodes / {len(leaves)} leaves exceed the collar's capacity")
    leaf_votes_record = struct.pack(f"<{n_classes * len(leaves)}H", *sum(leaves, []))
    return _framed(collar_blob.FORMAT_VERSION, meta, len(trees), leaf_levels, roots, nodes, len(leaves),
                   [_record(collar_blob.REC_LEAVES, leaf_votes_record)])


@dataclass(frozen=True)
class BoostedTree:
    """One boosted tree in scikit-learn's layout (-1 marks a leaf) with integer leaf scores for one class.

    threshold_q is in quantised units (go left when q <= threshold_q); score holds each node's score
    in 1/leaf_scale units (only leaves are used).
    """

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold_q: np.ndarray
    score: np.ndarray = field(repr=False)
    class_index: int = 0


def write_boosted_blob(trees: Sequence[BoostedTree], base: Sequence[int], meta: ModelMeta,
                       leaf_scale: int) -> bytes:
    """Return an unsigned format-2 blob of boosted trees (see docs/model-format.md).

    Each tree adds its leaf's int16 score to its class; every class starts from its int32 base
    score; score / leaf_scale is the raw (logit) value. The collar's class is the highest total.
    """
    n_classes = len(meta.classes)
    if len(meta.scales) != collar_features.N_FEATURES:
        raise ValueError(f"{len(meta.scales)} scales for {collar_features.N_FEATURES} features")
    if not 1 <= leaf_scale <= 0xFFFF:
        raise ValueError(f"leaf_scale must be 1..65535, got {leaf_scale}")
    if not 1 <= len(trees) <= collar_blob.MAX_TREES_BOOSTED:
        raise ValueError(f"{len(trees)} trees: a boosted blob holds 1..{collar_blob.MAX_TREES_BOOSTED}")
    if len(base) != n_classes or any(abs(int(b)) > collar_blob.BASE_BOUND for b in base):
        raise ValueError(f"need {n_classes} base scores within +-{collar_blob.BASE_BOUND}")
    roots, nodes, leaves, tree_class = [], [], [], []

    def score_leaf(tree, i: int) -> int:
        value = int(tree.score[i])
        if not -32768 <= value <= INT16_MAX:
            raise ValueError(f"leaf score {value} does not fit int16")
        leaves.append(value)
        return len(leaves) - 1

    for tree in trees:
        if not 0 <= tree.class_index < n_classes:
            raise ValueError(f"a tree scores class {tree.class_index} of {n_classes}")
        roots.append(_flatten(tree, nodes, lambda i, tree=tree: score_leaf(tree, i)))
        tree_class.append(int(tree.class_index))
    if len(nodes) > collar_blob.MAX_NODES or len(leaves) > 32767:
        raise ValueError(f"{len(nodes)} nodes / {len(leaves)} leaves exceed the collar's capacity")
    return _framed(collar_blob.FORMAT_BOOSTED, meta, len(trees), leaf_scale, roots, nodes, len(leaves), [
        _record(collar_blob.REC_LEAVES, struct.pack(f"<{len(leaves)}h", *leaves)),
        _record(collar_blob.REC_TREE_CLASS, bytes(tree_class)),
        _record(collar_blob.REC_BASE, struct.pack(f"<{n_classes}i", *(int(b) for b in base))),
    ])


def _framed(format_version: int, meta: ModelMeta, n_trees: int, leaf_unit: int, roots: list[int],
            nodes: list[tuple[int, ...]], n_leaves: int, leaf_records: list[bytes]) -> bytes:
    """Return a blob of format_version: its header, then the META, CLASSES, SCALES, ROOTS and NODES records
    both formats share, the format's own leaf_records, and NAME when the model has one. leaf_unit: the
    META's last field (format 1: a leaf vote's levels; format 2: the leaf scores' scale)."""
    meta_payload = struct.pack(
        collar_blob.META_FORMAT, meta.model_version, meta.window_s, meta.rate_hz, meta.overlap_pct,
        collar_features.N_FEATURES, len(meta.classes), n_trees, len(nodes), n_leaves,
        schema_hash(meta.window_s, meta.rate_hz), leaf_unit,
    )
    classes = b"".join(bytes([len(c.encode())]) + c.encode() for c in meta.classes)
    body = b"".join(
        [
            _record(collar_blob.REC_META, meta_payload),
            _record(collar_blob.REC_CLASSES, classes),
            _record(collar_blob.REC_SCALES, struct.pack(f"<{len(meta.scales)}b", *meta.scales)),
            _record(collar_blob.REC_ROOTS, struct.pack(f"<{len(roots)}h", *roots)),
            _record(collar_blob.REC_NODES, b"".join(struct.pack("<Bhhh", *n) for n in nodes)),
            *leaf_records,
        ]
        + ([_record(collar_blob.REC_NAME, meta.name.encode())] if meta.name else [])
    )
    header = collar_blob.MAGIC + struct.pack(
        "<BBHII", format_version, 0, 0, len(body), zlib.crc32(body) & 0xFFFFFFFF
    )
    return header + body


def blob_from_sklearn(ensemble, meta: ModelMeta) -> bytes:
    """Return the blob of a fitted scikit-learn tree ensemble trained on quantised features."""
    classes = tuple(str(c) for c in meta.classes)
    if len(ensemble.classes_) != len(classes) or list(ensemble.classes_) != list(range(len(classes))):
        raise ValueError("the ensemble must be fitted on class indices 0..n_classes-1 of meta.classes")
    return write_blob(trees_from_sklearn(ensemble), meta)


def signed_part(blob: bytes) -> bytes:
    """Return the bytes a signature covers: header (with the signed flag set) and body."""
    body_len = struct.unpack_from("<I", blob, 8)[0]
    header = bytearray(blob[: collar_blob.HEADER_SIZE])
    header[5] |= collar_blob.FLAG_SIGNED
    return bytes(header) + blob[collar_blob.HEADER_SIZE : collar_blob.HEADER_SIZE + body_len]


def with_signature(blob: bytes, key_id: int, sign: Callable[[bytes], bytes]) -> bytes:
    """Return blob with the signed flag and an Ed25519 trailer made by sign(signed_part) (64 bytes)."""
    message = signed_part(blob)
    signature = sign(message)
    if len(signature) != 64:
        raise ValueError(f"an Ed25519 signature has 64 bytes, got {len(signature)}")
    return message + struct.pack("<BBH", collar_blob.SIG_SCHEME_ED25519, key_id, 64) + signature
