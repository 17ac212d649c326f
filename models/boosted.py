"""Gradient-boosted trees as a collar model (blob format 2), a scikit-learn estimator.

`CollarBoost` quantises its input exactly as the collar's `Model.quantize` does, fits scikit-learn's
`HistGradientBoostingClassifier` on the quantised values (one small tree per class per round), and
turns every leaf and the per-class start scores into integers in 1/leaf_scale units. `predict` adds
exactly those integers as the collar does (base score plus one leaf per tree on the tree's class,
highest total wins, ties to the lowest index), so Python and the collar give every window the same
class. Learned state ends in an underscore: `classes_`, `scales_`, `booster_`, `trees_`, `base_`,
`leaf_scale_`, `n_features_in_`.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from collar_firmware import blob as collar_blob
from collar_firmware import features as collar_features
from models import blob_writer
from models.estimator import choose_scales, quantize, quantized_input

INT16_MAX = 32767
MAX_LEAF_SCALE = 4096  # leaf scores in 1/4096 of a logit at most; smaller when a leaf would not fit int16


def _tree_of(predictor, class_index: int) -> dict:
    """Return one fitted HistGradientBoosting tree as float arrays in scikit-learn's tree layout."""
    nodes = predictor.nodes
    leaf = nodes["is_leaf"].astype(bool)
    if np.any(nodes["is_categorical"][~leaf]):
        raise ValueError("categorical splits have no place in a collar tree")
    left = np.where(leaf, -1, nodes["left"].astype(np.int64))
    right = np.where(leaf, -1, nodes["right"].astype(np.int64))
    threshold = np.where(leaf, 0, np.floor(np.clip(nodes["num_threshold"], -32768, INT16_MAX)))
    return {"left": left, "right": right, "feature": np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64),
            "threshold_q": threshold.astype(np.int64), "value": nodes["value"].astype(np.float64),
            "gain": np.where(leaf, 0.0, nodes["gain"]), "depth": int(nodes["depth"].max()),
            "class_index": class_index}


class CollarBoost(ClassifierMixin, BaseEstimator):
    """Small boosted trees on quantised features, exportable as the collar's format-2 model blob.

    n_estimators rounds of one tree per class (one tree per round for two classes), each with at most
    max_leaf_nodes leaves: blob bytes grow with rounds x classes x leaves, fuel with rounds x classes
    x depth. max_samples, when set and smaller than the data, fits on that many windows drawn at
    random (keeps training of millions of windows in minutes); n_jobs is the OpenMP threads of the fit.
    """

    def __init__(self, n_estimators: int = 30, max_leaf_nodes: int = 8, learning_rate: float = 0.2,
                 min_samples_leaf: int = 10, l2_regularization: float = 0.0, class_weight: str | None = None,
                 max_samples: int | None = None, random_state=None, n_jobs: int = 1):
        self.n_estimators = n_estimators
        self.max_leaf_nodes = max_leaf_nodes
        self.learning_rate = learning_rate
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.class_weight = class_weight
        self.max_samples = max_samples
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y):
        """Quantise X as the collar does, fit the boosted trees and make their scores integers; return self."""
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"a classifier needs more than one class in y, got 1 class ({self.classes_[0]!r})")
        n_classes = len(self.classes_)
        if n_classes * self.n_estimators > collar_blob.MAX_TREES_BOOSTED and n_classes > 2:
            raise ValueError(f"{self.n_estimators} rounds x {n_classes} classes exceed the collar's "
                             f"{collar_blob.MAX_TREES_BOOSTED} boosted trees")
        self.scales_ = choose_scales(X)
        q = quantize(X, self.scales_)
        if self.max_samples is not None and len(q) > self.max_samples:
            rng = np.random.default_rng(self.random_state if isinstance(self.random_state, int) else None)
            pick = np.sort(rng.choice(len(q), self.max_samples, replace=False))
            q, y_index = q[pick], y_index[pick]
        booster = HistGradientBoostingClassifier(
            max_iter=self.n_estimators, max_leaf_nodes=self.max_leaf_nodes, learning_rate=self.learning_rate,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
            class_weight=self.class_weight, early_stopping=False, random_state=self.random_state,
        )
        with threadpool_limits(limits=self.n_jobs, user_api="openmp"):  # idle OpenMP threads spin on a busy machine
            self.booster_ = booster.fit(q, y_index)
        fitted = self.booster_.classes_
        trees = []
        for round_trees in self.booster_._predictors:
            for k, predictor in enumerate(round_trees):
                # two classes: one tree per round, scoring class 1 against class 0's constant 0
                trees.append(_tree_of(predictor, int(fitted[1] if len(round_trees) == 1 else fitted[k])))
        baseline = np.ravel(self.booster_._baseline_prediction).astype(np.float64)
        base = np.zeros(n_classes)
        if len(baseline) == 1:
            base[fitted[1]] = baseline[0]
        else:
            base[fitted] = baseline
        if len(fitted) < n_classes:  # a class absent from the training part never wins
            base[np.setdiff1d(np.arange(n_classes), fitted)] = -collar_blob.BASE_BOUND
        peak = max([float(np.max(np.abs(t["value"]))) for t in trees] + [1e-9])
        scale = MAX_LEAF_SCALE
        while scale > 1 and peak * scale > INT16_MAX:
            scale //= 2
        self.leaf_scale_ = scale
        finite = np.abs(base) < collar_blob.BASE_BOUND
        self.base_ = np.where(finite, np.clip(np.rint(base * scale), -collar_blob.BASE_BOUND, collar_blob.BASE_BOUND),
                              -collar_blob.BASE_BOUND).astype(np.int64)
        for t in trees:
            t["score"] = np.clip(np.rint(t.pop("value") * scale), -32768, INT16_MAX).astype(np.int64)
        self.trees_ = trees
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "trees_")

    def _quantized(self, X) -> np.ndarray:
        return quantized_input(self, X)

    def scores(self, X) -> np.ndarray:
        """Return the collar's integer class scores (m, n_classes): base plus each tree's leaf on its class."""
        q = self._quantized(X).astype(np.int64)
        total = np.tile(self.base_, (len(q), 1))
        rows = np.arange(len(q))
        for t in self.trees_:
            node = np.zeros(len(q), dtype=np.int64)
            for _ in range(t["depth"]):
                inner = t["left"][node] >= 0
                go_left = q[rows, t["feature"][node]] <= t["threshold_q"][node]
                node = np.where(inner, np.where(go_left, t["left"][node], t["right"][node]), node)
            total[:, t["class_index"]] += t["score"][node]
        return total

    def decision_function(self, X) -> np.ndarray:
        """Return scikit-learn's decision values: the collar's scores (m, n_classes), or for two classes
        class 1's score minus class 0's (m,), in 1/leaf_scale_ units."""
        scores = self.scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict_proba(self, X) -> np.ndarray:
        """Return class probabilities (m, n_classes): the softmax of the collar's scores."""
        scores = self.scores(X) / self.leaf_scale_
        scores -= scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """Return the class of every row of X: the highest integer score, ties to the lowest index (as on the collar)."""
        best = np.argmax(self.scores(X), axis=1)
        return self.classes_[best]

    @property
    def feature_importances_(self) -> np.ndarray:
        """Return each feature's share of the trees' split gain."""
        check_is_fitted(self)
        gain = np.zeros(self.n_features_in_)
        for t in self.trees_:
            inner = t["left"] >= 0
            np.add.at(gain, t["feature"][inner], t["gain"][inner])
        return gain / gain.sum() if gain.sum() > 0 else gain

    def to_blob(self, window_s: int, rate_hz: int, overlap_pct: int = 0, model_version: int = 1,
                name: str = "") -> bytes:
        """Return the collar's format-2 model blob of this fitted model (needs the collar's N_FEATURES features)."""
        check_is_fitted(self)
        if self.n_features_in_ != collar_features.N_FEATURES:
            raise ValueError(f"the collar computes {collar_features.N_FEATURES} features, the model has "
                             f"{self.n_features_in_}")
        meta = blob_writer.ModelMeta(
            classes=tuple(str(c) for c in self.classes_), window_s=int(window_s), rate_hz=int(rate_hz),
            scales=tuple(int(e) for e in self.scales_), model_version=int(model_version),
            overlap_pct=int(overlap_pct), name=name,
        )
        trees = [blob_writer.BoostedTree(t["left"], t["right"], t["feature"], t["threshold_q"], t["score"],
                                         t["class_index"]) for t in self.trees_]
        return blob_writer.write_boosted_blob(trees, self.base_.tolist(), meta, self.leaf_scale_)
