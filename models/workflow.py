"""A researcher's training run from labelled recordings to a collar model, honestly scored, in one call.

    loaded = load_csv(["storks/"], Columns.parse("bout=burst,x=ax,y=ay,z=az,label=behaviour"), units="m/s2")
    result = train(loaded, TrainOptions(WindowSettings(window_s=3)), out_dir="out/storks")

Steps: windows through the collar's features; folds (leave-one-animal-out when animals are known);
a search over forests (trees, depth) and boosted trees (rounds, leaves; blob format 2) that keeps only
models within the collar budget (blob bytes, heap, MicroPython fuel per window), nested inside the
folds so the reported figures never saw the held-out animal (the size and kind chosen in each outer
fold are reported); side by side the
collar model, an unconstrained 300-tree random forest on the same windows and folds, and the
model now in the field; then blob, C header, report and a registry entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import sklearn
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, GroupKFold, learning_curve
from sklearn.pipeline import Pipeline

from collar_firmware import blob as collar_blob
from collar_firmware import classifier
from models import budget as collar_budget
from models import registry as model_registry
from models.boosted import CollarBoost
from models.c_export import write_c
from models.estimator import CollarForest
from models.field_model import evaluate_model, trained_on
from models.honest import Folds, choose_folds, out_of_fold, scores
from models.recordings import DataError, Loaded
from models.windowing import Windows, WindowSettings, make_windows

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
SHIPPED_DIRS = (REPO / "collar_firmware", REPO / "tests", REPO / "simulator", REPO / "models")
INNER_FOLDS = 3
MAX_TREE_SAMPLES = 200_000  # a tree of a large set bootstraps this many windows (a million train in minutes)
BASELINE_TREES = 300
# Sizes searched: (trees, depth, min_samples_leaf, class_weight, max_leaf_nodes); those over the budget are
# left out. The last ones fill a 16 KB blob with deep trees (grown best first up to max_leaf_nodes): equal
# leaves are stored once, so a deep tree costs about its 7-byte nodes.
DEFAULT_GRID = (
    (8, 6, 1, None, None), (16, 8, 2, "balanced_subsample", None), (32, 8, 3, "balanced_subsample", None),
    (16, None, 1, "balanced_subsample", 140), (20, None, 1, None, 110), (20, None, 1, "balanced_subsample", 110),
    (24, None, 1, "balanced_subsample", 92),
)
# Boosted sizes searched beside them: (rounds, max_leaf_nodes, learning_rate, min_samples_leaf); one tree per
# class per round, so blob bytes grow with rounds x classes x leaves (~50 rounds x 5 classes x 6 leaves: 13 KB).
BOOSTED_GRID = ((40, 8, 0.2, 10), (50, 6, 0.15, 10), (48, 6, 0.2, 10))
KINDS = {"forest": CollarForest, "boosted": CollarBoost}


def make_model(chosen: dict, seed: int, **extra) -> CollarForest | CollarBoost:
    """Return the unfitted collar model of a chosen size: {"kind": "forest" | "boosted", **its parameters}."""
    params = {k: v for k, v in chosen.items() if k != "kind"}
    return KINDS[chosen.get("kind", "forest")](random_state=seed, **params, **extra)


@dataclass(frozen=True)
class TrainOptions:
    """Settings of a training run."""

    settings: WindowSettings = field(default_factory=WindowSettings)
    limits: collar_budget.Limits = field(default_factory=collar_budget.Limits)
    seed: int = 0
    grid: tuple = DEFAULT_GRID
    boosted_grid: tuple = BOOSTED_GRID  # () searches forests only
    baseline_trees: int = BASELINE_TREES
    field_blob: bytes | None = None  # default: the model shipped with the firmware
    n_jobs: int = 1
    name: str = ""
    learning_curve: bool = True


Progress = Callable[[str], None]


class OutputError(ValueError):
    """An output folder that would overwrite files Tembo ships."""


def check_out_dir(out_dir: str | Path) -> Path:
    """Return out_dir as a Path; refuse folders of the shipped firmware, simulator, models or tests."""
    out = Path(out_dir).resolve()
    for shipped in SHIPPED_DIRS:
        if out == shipped or shipped in out.parents:
            raise OutputError(f"{out_dir} is inside {shipped.relative_to(REPO)}/, which Tembo ships; "
                              "write models elsewhere (e.g. --out var/runs/NAME)")
    return out


def fingerprint(windows: Windows) -> str:
    """Return a SHA-256 over exactly what a model was trained on (features, labels, classes, groups, settings)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(windows.features, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(windows.labels, dtype=np.int64).tobytes())
    h.update("\x1f".join(windows.classes).encode())
    h.update("\x1f".join(windows.animals.tolist() + windows.bouts.tolist()).encode())
    h.update(json.dumps(asdict(windows.settings), sort_keys=True).encode())
    return h.hexdigest()


def _sizes(windows: Windows, options: TrainOptions) -> list[dict]:
    """Return every size to try: {"kind": ..., **parameters}, forests then boosted trees."""
    sizes = []
    for trees, depth, leaf, weight, leaves in options.grid:
        params = {"kind": "forest", "n_estimators": trees, "max_depth": depth, "min_samples_leaf": leaf,
                  "class_weight": weight, "max_leaf_nodes": leaves}
        if len(windows) > MAX_TREE_SAMPLES:
            params["max_samples"] = MAX_TREE_SAMPLES
        sizes.append(params)
    for rounds, leaves, rate, leaf in options.boosted_grid:
        if rounds * len(windows.classes) > collar_blob.MAX_TREES_BOOSTED and len(windows.classes) > 2:
            continue  # more trees than a boosted blob holds
        params = {"kind": "boosted", "n_estimators": rounds, "max_leaf_nodes": leaves, "learning_rate": rate,
                  "min_samples_leaf": leaf}
        if len(windows) > MAX_TREE_SAMPLES:
            params["max_samples"] = MAX_TREE_SAMPLES
        sizes.append(params)
    return sizes


def candidates(windows: Windows, options: TrainOptions,
               window: np.ndarray | None = None) -> tuple[list[dict], list[dict]]:
    """Return (parameter grids within the budget, every candidate's size and costs) on all windows.

    Blob bytes and the reader's arrays (a lower bound of the heap) are checked for every candidate; with a
    representative collar window, the heap of loading it and the fuel per window too (both measured under
    MicroPython), so forests and boosted trees compete under one budget.
    """
    s = windows.settings
    limits = options.limits
    sizes, blobs = [], []
    for params in _sizes(windows, options):
        model = make_model(params, options.seed).fit(windows.features, windows.label_names())
        blob = model.to_blob(s.window_s, s.rate_hz, s.overlap_pct)
        costs = collar_budget.static_costs(blob)
        fits = costs["blob_bytes"] <= limits.blob_bytes and costs["ram_bytes"] <= limits.heap_bytes
        sizes.append({**params, "blob_bytes": costs["blob_bytes"], "ram_bytes": costs["ram_bytes"], "fits": fits})
        blobs.append(blob if fits else None)
    if window is not None:
        measured = [i for i, b in enumerate(blobs) if b is not None]
        for i, cost in zip(measured, collar_budget.measure_candidates([blobs[i] for i in measured], window,
                                                                      s.rate_hz), strict=True):
            sizes[i].update(cost)
            sizes[i]["fits"] = (cost["fuel_per_window"] <= limits.fuel_per_window
                                and cost["load_heap_bytes"] <= limits.heap_bytes)
    allowed = [{"model": [make_model({k: v for k, v in row.items()
                                      if k not in ("blob_bytes", "ram_bytes", "fits", "fuel_per_window",
                                                   "load_heap_bytes")},
                                     options.seed)]} for row in sizes if row["fits"]]
    if not allowed:
        smallest = min(sizes, key=lambda c: c["blob_bytes"])
        raise ValueError(f"no model size fits the budget ({limits.blob_bytes} B blob, "
                         f"{limits.heap_bytes} B heap, {limits.fuel_per_window} fuel); "
                         f"the smallest needs {smallest['blob_bytes']} B")
    return allowed, sizes


def chosen_of(model: CollarForest | CollarBoost) -> dict:
    """Return the size a fitted or unfitted collar model stands for: {"kind": ..., **its parameters}."""
    kind = "boosted" if isinstance(model, CollarBoost) else "forest"
    keys = ("n_estimators", "max_leaf_nodes", "learning_rate", "min_samples_leaf", "max_samples") if kind == "boosted" \
        else ("n_estimators", "max_depth", "min_samples_leaf", "class_weight", "max_leaf_nodes", "max_samples")
    params = model.get_params()
    return {"kind": kind, **{k: params[k] for k in keys if k != "max_samples" or params[k] is not None}}


class InnerGroupFolds(GroupKFold):
    """GroupKFold with at most n_splits folds, fewer when the training part holds fewer groups
    (leave-one-animal-out on three animals leaves two to search on), and only folds whose training part
    holds two behaviours (a small study's rare behaviour may live in one animal or bout); none such, or
    one group: stratified folds."""

    def get_n_splits(self, X=None, y=None, groups=None):
        if X is None or y is None:
            return max(2, min(self.n_splits, len(np.unique(groups)))) if groups is not None else self.n_splits
        return len(self._splits(X, y, groups))

    def split(self, X, y=None, groups=None):
        return iter(self._splits(X, y, groups))

    def _splits(self, X, y, groups) -> list[tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import StratifiedKFold

        y = np.asarray(y)
        n_groups = len(np.unique(groups)) if groups is not None else 0
        if n_groups >= 2:
            splits = [(tr, te) for tr, te in GroupKFold(n_splits=min(self.n_splits, n_groups)).split(X, y, groups)
                      if len(np.unique(y[tr])) >= 2]
            if splits:
                return splits
        return list(StratifiedKFold(n_splits=2).split(X, y))


def check_folds_train_two_behaviours(windows: Windows, folds: Folds) -> None:
    """Raise DataError when holding out one fold leaves a single behaviour to train on (a small study whose
    behaviours each live in one animal or bout), naming what is held out."""
    truth = windows.label_names()
    what = "animal" if folds.kind == "leave_one_animal_out" else "bout"
    for train_rows, test_rows in folds.splitter.split(windows.features, truth, folds.groups):
        kept = np.unique(truth[train_rows])
        if len(kept) < 2:
            held = ", ".join(map(str, np.unique(folds.groups[test_rows])[:3]))
            raise DataError("data", f"holding out {what} {held} leaves only {str(kept[0])!r} to train on: each fold must "
                            f"train on two behaviours; add {what}s of the other behaviours (the data has "
                            f"{len(np.unique(folds.groups))} {what}s)")


def budget_search(allowed: list[dict], seed: int) -> GridSearchCV:
    """Return the search over allowed sizes (forests and boosted trees) by macro-F1 on folds grouped like the
    outer ones; the model is the one step of a pipeline, so the search may change its kind."""
    return GridSearchCV(Pipeline([("model", CollarForest(random_state=seed))]), allowed,
                        cv=InnerGroupFolds(n_splits=INNER_FOLDS), scoring="f1_macro", refit=True, error_score="raise")


def _nested_predictions(search: GridSearchCV, windows: Windows, folds: Folds) -> tuple[np.ndarray, list[dict]]:
    """Out-of-fold predictions of the whole search, and the size it chose in each outer fold: the held-out
    group never takes part in choosing a size or a kind."""
    from sklearn.base import clone

    labels = windows.label_names()
    predicted = np.empty(len(labels), dtype=labels.dtype)
    chosen = []
    for train_rows, test_rows in folds.splitter.split(windows.features, labels, folds.groups):
        with sklearn.config_context(enable_metadata_routing=True):
            fitted = clone(search).fit(windows.features[train_rows], labels[train_rows],
                                       groups=folds.groups[train_rows])
        predicted[test_rows] = fitted.predict(windows.features[test_rows])
        chosen.append(chosen_of(fitted.best_estimator_.named_steps["model"]))
    return predicted, chosen


def _representative_window(windows: Windows, loaded: Loaded) -> np.ndarray:
    """Return one collar window of real data (the first) for the fuel measurement."""
    from models.windowing import to_collar_samples

    s = windows.settings
    for recording in loaded.recordings:
        xyz = to_collar_samples(recording, s)
        if len(xyz) >= s.n_samples:
            return xyz[: s.n_samples]
    raise ValueError("no recording fills a window")


def train(loaded: Loaded, options: TrainOptions, out_dir: str | Path, registry: str | Path | None = None,
          progress: Progress | None = None, register: bool = True) -> dict:
    """Train, evaluate and write a collar model; return the result figures (also written as result.json)."""
    step = progress or (lambda _what: None)
    out = check_out_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = options.settings

    step("windows and collar features")
    windows = make_windows(loaded, s)
    if len(windows.classes) > collar_blob.MAX_CLASSES:
        counts = np.bincount(windows.labels, minlength=len(windows.classes))
        fewest = sorted(zip(windows.classes, counts.tolist(), strict=True), key=lambda pair: pair[1])
        listed = ", ".join(f"{c} ({n})" for c, n in fewest)
        raise DataError("data", f"{len(windows.classes)} behaviours, but a collar model reports at most "
                        f"{collar_blob.MAX_CLASSES} (the activity uplink carries one share per behaviour): merge or "
                        f"leave out some; windows per behaviour, fewest first: {listed}", column="label")
    folds = choose_folds(windows, options.seed)
    check_folds_train_two_behaviours(windows, folds)
    names = np.asarray(windows.classes)
    truth = names[windows.labels]
    animals = windows.animals if windows.animals_known else np.full(len(truth), "(all)")

    step("model sizes within the budget")
    allowed, sizes = candidates(windows, options, _representative_window(windows, loaded))
    step(f"collar model, {folds.kind} ({folds.n_folds} folds)")
    collar_pred, fold_choices = _nested_predictions(budget_search(allowed, options.seed), windows, folds)
    step(f"{options.baseline_trees}-tree random forest, same windows and folds")
    baseline = RandomForestClassifier(options.baseline_trees, random_state=options.seed, n_jobs=options.n_jobs)
    baseline_pred = names[out_of_fold(baseline, windows, folds)]
    step("the model in the field")
    field_blob = options.field_blob if options.field_blob is not None else classifier.read_default_blob()
    # A field model trained on these recordings (a promoted model installed as the shipped one) would be
    # scored in-sample against the collar model's out-of-fold figures: it is scored on the others only.
    field_entry = model_registry.entry_of_blob(field_blob, registry)
    field = evaluate_model(field_blob, loaded, s.axes, trained_on(field_entry.record if field_entry else None))

    step("final model on all windows")
    with sklearn.config_context(enable_metadata_routing=True):
        final_search = budget_search(allowed, options.seed).fit(windows.features, truth, groups=folds.groups)
    model = final_search.best_estimator_.named_steps["model"]
    chosen = chosen_of(model)
    # Registered runs hold their version from here on, so a training running at the same time gets another.
    version = model_registry.reserve_version(registry) if register else model_registry.next_version(registry)
    if chosen["kind"] == "boosted":
        size = f"{model.n_estimators} rounds x {len(windows.classes)} boosted trees of <= {model.max_leaf_nodes} leaves"
    else:
        depth = f"depth {model.max_depth}" if model.max_leaf_nodes is None else f"<= {model.max_leaf_nodes} leaves"
        size = f"{model.n_estimators} trees x {depth}"
    name = options.name or f"tembo collar model v{version}: {size}, {len(windows)} windows, {folds.kind}"
    blob = model.to_blob(s.window_s, s.rate_hz, s.overlap_pct, model_version=version, name=name[:200])
    step("collar cost under MicroPython")
    costs = {**collar_budget.static_costs(blob),
             **collar_budget.measure_fuel(blob, _representative_window(windows, loaded), s.rate_hz)}
    over = collar_budget.check(costs, options.limits)

    collar = scores(truth, collar_pred, windows.classes, animals)
    rf = scores(truth, baseline_pred, windows.classes, animals)
    curve = None
    if options.learning_curve:
        step("learning curve")
        sizes_used, _train, test = learning_curve(
            make_model(chosen, options.seed), windows.features, truth,
            groups=folds.groups, cv=folds.splitter, train_sizes=[0.2, 0.4, 0.6, 0.8, 1.0], scoring="f1_macro")
        curve = {"train_windows": sizes_used.tolist(), "macro_f1": np.round(test.mean(axis=1), 4).tolist()}

    result = {
        "macro_f1": collar["macro_f1"],
        "cv": folds.kind,
        "folds": folds.n_folds,
        "warning": folds.warning,
        "windows": len(windows),
        "classes": list(windows.classes),
        "per_class_f1": {c: v["f1"] for c, v in collar["per_class"].items()},
        "baseline_macro_f1": rf["macro_f1"],
        "ratio": round(collar["macro_f1"] / rf["macro_f1"], 4) if rf["macro_f1"] else None,
        "field_macro_f1": field.get("macro_f1"),
        "blob_bytes": costs["blob_bytes"],
        "fuel_per_window": costs["fuel_per_window"],
        "model_heap_bytes": costs["load_heap_bytes"],
        "model_version": version,
        "chosen": chosen,
        "kind": chosen["kind"],
        "fold_choices": fold_choices,
        "over_budget": over,
        "settings": {**asdict(s), "source_rate_hz": windows.source_rate_hz},
        "limits": asdict(options.limits),
        "data": windows.report.as_dict(),
        "dataset_fingerprint": fingerprint(windows),
        "models": {"collar": collar, "random_forest": rf, "field": field},
        "budget": costs,
        "search": sizes,
        "learning_curve": curve,
        "feature_importance": dict(zip(_feature_names(), np.round(model.feature_importances_, 4).tolist(),
                                       strict=True)),
        "out_dir": str(out),
    }
    step("blob, C header, report")
    (out / "model.bin").write_bytes(blob)
    if chosen["kind"] == "forest":  # emlearn converts forests; boosted trees have no C export yet
        write_c(model, out / "model.h", name="tembo_model")
    from models.report import write_report

    write_report(result, out)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    if register:
        step("registry entry")
        entry = model_registry.register(blob, {
            "dataset": {"fingerprint": result["dataset_fingerprint"], "files": result["data"]["files"],
                        "windows": len(windows), "left_out_samples": result["data"]["left_out_samples"],
                        "recording_digests": sorted({r.digest() for r in loaded.recordings}),
                        "recording_contents": sorted({r.content_digest() for r in loaded.recordings})},
            "settings": {**result["settings"], "chosen": result["chosen"], "seed": options.seed},
            "metrics": {k: result[k] for k in ("macro_f1", "cv", "folds", "windows", "per_class_f1",
                                                 "baseline_macro_f1", "ratio", "field_macro_f1")},
            "budget": {**costs, "limits": result["limits"], "over_budget": over},
            "out_dir": str(out),
        }, registry, extra_files={"report.html": out / "report.html", "figures.json": out / "figures.json",
                                  **({"model.h": out / "model.h"} if chosen["kind"] == "forest" else {})})
        result["model_id"] = entry.model_id
        (out / "result.json").write_text(json.dumps(result, indent=1))
    log.info("model trained", extra={"model_version": version, "macro_f1": result["macro_f1"], "cv": folds.kind})
    return result


def _feature_names() -> list[str]:
    from collar_firmware import features as collar_features

    return list(collar_features.FEATURE_NAMES)


def summary_json(result: dict) -> dict:
    """Return the headline figures `tembo models train --json` prints."""
    keys = ("macro_f1", "cv", "folds", "warning", "windows", "classes", "per_class_f1", "baseline_macro_f1",
            "ratio", "field_macro_f1", "blob_bytes", "fuel_per_window", "model_heap_bytes", "model_version",
            "model_id", "kind", "chosen", "over_budget", "out_dir")
    return {k: result.get(k) for k in keys} | {"left_out_samples": result["data"]["left_out_samples"],
                                                "notes": result["data"].get("notes", [])}
