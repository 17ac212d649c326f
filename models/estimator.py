"""The collar's activity model as a scikit-learn estimator, so GridSearchCV, cross_val_predict and
pipelines work on it.

`CollarForest` quantises its input exactly as the collar's `Model.quantize` does (per-feature
power-of-two scales, round half up, clamped to int16) and fits a small tree ensemble on the
quantised values, so every split threshold is an exact int16 and `to_blob` writes a model that the
collar runs with the same decisions. Its leaves are the collar's integer votes (class probabilities
in `leaf_levels`ths), and `predict` adds exactly those votes as the collar does, so a window gets the
same class in Python and on the collar, ties included. Equal leaves are stored once in the blob, so a
forest of deep trees (mostly pure leaves) costs little more than its 7-byte nodes: `max_leaf_nodes`
caps each tree (grown best first) to fit the budget. Learned state ends in an underscore:
`classes_`, `scales_`, `forest_`, `leaf_votes_`, `n_features_in_`.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from collar_firmware import features as collar_features
from models import blob_writer

INT16_MAX = 32767
MAX_SCALE = 15  # the blob's scale exponents are -15..15
KINDS = {"random_forest": RandomForestClassifier, "extra_trees": ExtraTreesClassifier}


def choose_scales(x: np.ndarray) -> np.ndarray:
    """Return per-feature exponents e so that |x * 2**e| fits int16.

    Integer features (the collar's) only ever shrink (e <= 0), so quantisation is the identity where
    it can be; other inputs are scaled up as far as int16 allows, to keep their resolution.
    """
    x = np.asarray(x, dtype=np.float64)
    peak = np.abs(x).max(axis=0) if len(x) else np.zeros(x.shape[1])
    integer = bool(np.all(x == np.round(x)))
    top = 0 if integer else MAX_SCALE
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(INT16_MAX / np.maximum(peak, 1e-300)))
    e = np.clip(e, -MAX_SCALE, top).astype(np.int64)
    # floor(log2) can be off by one at exact powers of two: step down until it fits
    over = peak * np.exp2(e) > INT16_MAX
    while over.any():
        e -= over
        over = peak * np.exp2(e) > INT16_MAX
    return e


def quantize(x: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Return x in the collar's int16 units: round_half_up(x * 2**e), clamped (the collar's Model.quantize)."""
    x = np.asarray(x, dtype=np.float64)
    q = np.floor(x * np.exp2(np.asarray(scales, dtype=np.float64)) + 0.5)
    return np.clip(q, -32768, INT16_MAX).astype(np.int16)


def quantized_input(estimator, X) -> np.ndarray:
    """Return X checked against a fitted collar estimator and quantized to its feature scales, as the collar
    holds its features."""
    check_is_fitted(estimator)
    X = validate_data(estimator, X, reset=False)
    return quantize(X, estimator.scales_)


class CollarForest(ClassifierMixin, BaseEstimator):
    """A small tree ensemble on quantised features, exportable as the collar's model blob.

    n_estimators and max_depth set its size (and so blob bytes, heap and fuel per window);
    kind is "random_forest" or "extra_trees"; max_samples (random forest) draws each tree's bootstrap
    from that many windows (or share), which keeps training fast on millions of windows.
    """

    def __init__(self, n_estimators: int = 8, max_depth: int | None = 8, min_samples_leaf: int = 1,
                 kind: str = "random_forest", class_weight: str | None = None, max_samples=None,
                 random_state=None, n_jobs: int = 1, max_leaf_nodes: int | None = None,
                 leaf_levels: int = blob_writer.SHARED_LEAF_LEVELS):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.max_leaf_nodes = max_leaf_nodes
        self.leaf_levels = leaf_levels
        self.min_samples_leaf = min_samples_leaf
        self.kind = kind
        self.class_weight = class_weight
        self.max_samples = max_samples
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y):
        """Quantise X as the collar does and fit the ensemble; return self."""
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {self.kind!r}")
        self.classes_, y_index = np.unique(y, return_inverse=True)
        self.scales_ = choose_scales(X)
        self.forest_ = KINDS[self.kind](
            n_estimators=self.n_estimators, max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf,
            class_weight=self.class_weight, random_state=self.random_state, n_jobs=self.n_jobs,
            max_leaf_nodes=self.max_leaf_nodes,
            **({"max_samples": self.max_samples} if self.kind == "random_forest" else {}),
        )
        self.forest_.fit(quantize(X, self.scales_), y_index)
        self.leaf_votes_ = [self._tree_votes(tree) for tree in self.forest_.estimators_]
        return self

    def _tree_votes(self, tree) -> np.ndarray:
        """Return (nodes, n_classes) integer votes of one fitted tree, in the order of classes_."""
        value = tree.tree_.value[:, 0, :].astype(np.float64)
        value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300)
        votes = np.zeros((len(value), len(self.classes_)), dtype=np.int64)
        votes[:, self.forest_.classes_] = blob_writer.leaf_votes(value, self.leaf_levels)
        return votes

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "forest_")

    def _quantized(self, X) -> np.ndarray:
        return quantized_input(self, X)

    def votes(self, X) -> np.ndarray:
        """Return the collar's integer votes (m, n_classes) for every row of X: the sum of its leaves."""
        q = self._quantized(X)
        leaves = self.forest_.apply(q)
        total = np.zeros((len(leaves), len(self.classes_)), dtype=np.int64)
        for t, votes in enumerate(self.leaf_votes_):
            total += votes[leaves[:, t]]
        return total

    def predict_proba(self, X) -> np.ndarray:
        """Return class probabilities (m, n_classes) in the order of classes_, as the collar computes them."""
        total = self.votes(X)
        return total / np.maximum(total.sum(axis=1, keepdims=True), 1)

    def predict(self, X) -> np.ndarray:
        """Return the class of every row of X: the most votes, ties to the lowest index (as on the collar)."""
        votes = self.votes(X)
        return self.classes_[np.argmax(votes, axis=1)]

    @property
    def feature_importances_(self) -> np.ndarray:
        check_is_fitted(self)
        return self.forest_.feature_importances_

    def to_blob(self, window_s: int, rate_hz: int, overlap_pct: int = 0, model_version: int = 1,
                name: str = "") -> bytes:
        """Return the collar's model blob of this fitted model (needs the collar's N_FEATURES features)."""
        check_is_fitted(self)
        if self.n_features_in_ != collar_features.N_FEATURES:
            raise ValueError(f"the collar computes {collar_features.N_FEATURES} features, the model has "
                             f"{self.n_features_in_}")
        if len(self.classes_) < 2:
            raise ValueError("a collar model needs at least two classes")
        if len(self.forest_.classes_) != len(self.classes_):
            raise ValueError("every class must appear in the training data")
        meta = blob_writer.ModelMeta(
            classes=tuple(str(c) for c in self.classes_), window_s=int(window_s), rate_hz=int(rate_hz),
            scales=tuple(int(e) for e in self.scales_), model_version=int(model_version),
            overlap_pct=int(overlap_pct), name=name,
        )
        return blob_writer.write_blob(blob_writer.trees_from_sklearn(self.forest_), meta,
                                      leaf_levels=self.leaf_levels, share_leaves=True)
