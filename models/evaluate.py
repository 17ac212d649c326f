"""Fair comparison of activity models: leave-one-animal-out evaluation and the collar budget of a blob."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict

from collar_firmware import blob as collar_blob
from models.dataset import Dataset
from models.estimator import CollarForest
from models.train import DEFAULT_DEPTH, DEFAULT_TREES


@dataclass(frozen=True)
class Evaluation:
    """Held-out results: accuracy overall and per animal, and the confusion matrix (rows = truth)."""

    classes: tuple[str, ...]
    accuracy: float
    accuracy_per_group: dict[int, float]
    confusion: np.ndarray  # (n_classes, n_classes) window counts

    def recall(self) -> dict[str, float]:
        """Return per class the share of its windows classified as it."""
        totals = self.confusion.sum(axis=1)
        return {
            c: float(self.confusion[i, i] / totals[i]) if totals[i] else float("nan")
            for i, c in enumerate(self.classes)
        }

    def precision(self) -> dict[str, float]:
        """Return per class the share of windows classified as it that truly are it."""
        totals = self.confusion.sum(axis=0)
        return {
            c: float(self.confusion[i, i] / totals[i]) if totals[i] else float("nan")
            for i, c in enumerate(self.classes)
        }


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Return the (n_classes, n_classes) count matrix, rows = truth, columns = prediction."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth), np.asarray(predicted)), 1)
    return matrix


def leave_one_animal_out(data: Dataset, seed: int = 0, n_trees: int = DEFAULT_TREES,
                         max_depth: int = DEFAULT_DEPTH, kind: str = "random_forest") -> Evaluation:
    """Predict every animal's windows with a collar model trained on the other animals (scikit-learn's
    LeaveOneGroupOut and cross_val_predict); pool the predictions."""
    groups = np.unique(data.groups)
    if len(groups) < 2:
        raise ValueError("leave-one-animal-out needs windows of at least two animals")
    model = CollarForest(n_estimators=n_trees, max_depth=max_depth, kind=kind, random_state=seed)
    predicted = cross_val_predict(model, data.features, data.labels, groups=data.groups, cv=LeaveOneGroupOut())
    per_group = {int(g): float(np.mean(predicted[data.groups == g] == data.labels[data.groups == g])) for g in groups}
    n_classes = len(data.classes)
    return Evaluation(
        classes=data.classes,
        accuracy=float(np.mean(predicted == data.labels)),
        accuracy_per_group=per_group,
        confusion=confusion_matrix(data.labels, predicted, n_classes),
    )


@dataclass(frozen=True)
class Budget:
    """What a model blob costs on the collar."""

    blob_bytes: int
    trees: int
    nodes: int
    leaves: int
    max_depth: int
    ram_bytes: int  # the reader's arrays: nodes, leaves, roots, scales, quantised features, votes (a lower bound:
    # the heap the collar spends is measured under MicroPython, models.budget.measure_heap)


def budget(data: bytes) -> Budget:
    """Return the collar budget of a blob (validated by the collar's own reader)."""
    parsed = collar_blob.parse(data)
    n_nodes = len(parsed.feature)
    depth = 0
    for root in parsed.roots:
        stack = [(int(root), 1)]
        while stack:
            node, d = stack.pop()
            if node < 0:
                depth = max(depth, d - 1)
                continue
            stack += [(int(parsed.left[node]), d + 1), (int(parsed.right[node]), d + 1)]
    n_classes = len(parsed.classes)
    boosted = parsed.format_version == collar_blob.FORMAT_BOOSTED
    ram = (
        collar_blob.NODE_SIZE * n_nodes
        + 2 * len(parsed.leaves)
        + 2 * len(parsed.roots)
        + parsed.n_features * (1 + 2)
        + 4 * n_classes
        + ((len(parsed.roots) + 4 * n_classes) if boosted else 0)  # tree classes and base scores
    )
    n_leaves = len(parsed.leaves) if boosted else len(parsed.leaves) // n_classes
    return Budget(len(data), len(parsed.roots), n_nodes, n_leaves, depth, ram)
