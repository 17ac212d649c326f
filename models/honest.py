"""Honest evaluation of activity models: folds that never share an animal, and the figures researchers publish.

Leave-one-animal-out (scikit-learn's `LeaveOneGroupOut` over animal ids) whenever the data names
its animals. When it names only bouts, folds are grouped by bout (`StratifiedGroupKFold`) and the
figures say so (`"cv": "grouped_by_bout"`) with a warning: they are not animal-independent.
Overlapping windows share their bout and animal, so they never straddle a fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, cross_val_predict

from models.windowing import Windows

MINUTES_PER_DAY = 1440
BOUT_FOLDS = 5
BOUT_WARNING = ("the data names fewer than two animals: folds are grouped by bout, so windows of one animal can sit in "
                "training and test; these figures are NOT animal-independent and overstate what a new "
                "animal will see")


@dataclass(frozen=True)
class Folds:
    """How windows are split for evaluation."""

    kind: str  # "leave_one_animal_out" or "grouped_by_bout"
    splitter: object
    groups: np.ndarray
    n_folds: int
    warning: str | None


def choose_folds(windows: Windows, seed: int = 0) -> Folds:
    """Return leave-one-animal-out folds when animals are known, else folds grouped by bout (with a warning)."""
    animals = np.unique(windows.animals)
    if windows.animals_known and len(animals) >= 2:
        return Folds("leave_one_animal_out", LeaveOneGroupOut(), windows.animals, len(animals), None)
    bouts = np.unique(windows.bouts)
    if len(bouts) < 2:
        raise ValueError("evaluation needs windows of at least two animals or two bouts")
    n = min(BOUT_FOLDS, len(bouts))
    named = windows.animals != ""
    warning = BOUT_WARNING
    if named.any() and not named.all():  # say why when animals are named, but not everywhere
        unnamed = sorted({b.split("#")[0] for b in windows.bouts[~named].tolist()})
        warning = BOUT_WARNING.replace(
            "the data names fewer than two animals",
            f"{int((~named).sum())} of {len(named)} windows name no animal (from {len(unnamed)} bout(s), e.g. "
            f"{unnamed[0]!r}), so animals cannot be held out")
    return Folds("grouped_by_bout", StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed),
                 windows.bouts, n, warning)


def model_spelling(data_labels, model_classes) -> dict[str, str]:
    """Return {data label: the model's class} for labels a model spells otherwise only in case ("Walk" and
    "walk"), so a model is scored on the behaviour it names, not marked wrong for a capital letter."""
    by_fold = {str(c).casefold(): str(c) for c in model_classes}
    return {str(d): by_fold[str(d).casefold()] for d in data_labels
            if str(d) not in set(map(str, model_classes)) and str(d).casefold() in by_fold}


def out_of_fold(estimator, windows: Windows, folds: Folds, n_jobs: int = 1) -> np.ndarray:
    """Return every window's class index predicted by a model that never saw its animal (or bout)."""
    return cross_val_predict(estimator, windows.features, windows.labels, groups=folds.groups,
                             cv=folds.splitter, n_jobs=n_jobs)


def scores(truth: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...], animals: np.ndarray) -> dict:
    """Return the figures of one model: per-class P/R/F1, macro-F1, accuracy, confusion, per animal, time budget.

    truth and predicted are class names; predictions outside `classes` (a field model's other classes)
    count as wrong. The time-budget error is, per animal, how many minutes a day the predicted shares
    of each class differ from the true shares (windows stand for equal stretches of time).
    """
    truth = np.asarray(truth, dtype=str)
    predicted = np.asarray(predicted, dtype=str)
    labels = list(classes)
    p, r, f, support = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    per_animal, budget_error = {}, {}
    for animal in np.unique(animals):
        mask = animals == animal
        per_animal[str(animal)] = round(float(np.mean(truth[mask] == predicted[mask])), 4)
        true_share = np.array([np.mean(truth[mask] == c) for c in labels])
        pred_share = np.array([np.mean(predicted[mask] == c) for c in labels])
        budget_error[str(animal)] = {c: round(float((pred_share[i] - true_share[i]) * MINUTES_PER_DAY), 1)
                                     for i, c in enumerate(labels)}
    abs_errors = [abs(v) for row in budget_error.values() for v in row.values()]
    return {
        "macro_f1": round(float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)), 4),
        "accuracy": round(float(np.mean(truth == predicted)), 4),
        "per_class": {c: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                          "f1": round(float(f[i]), 4), "windows": int(support[i])} for i, c in enumerate(labels)},
        "confusion": {"labels": labels,
                      "matrix": confusion_matrix(truth, predicted, labels=labels).tolist()},
        "per_animal_accuracy": per_animal,
        "time_budget_error_min_per_day": budget_error,
        "time_budget_mean_abs_error_min_per_day": round(float(np.mean(abs_errors)), 1) if abs_errors else 0.0,
    }
