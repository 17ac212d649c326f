"""The model now in the field, scored on a researcher's data at its own window and rate.

The shipped (or any) blob fixes its window length, sampling rate and classes; the researcher's
recordings are windowed at those settings, run through the collar's own classifier, and scored
against the data's labels (a label the model spells otherwise only in case, "Walk" for "walk", is its
class). A class the data does not have counts as a wrong answer; when the
field model shares no class with the data, or the data's bouts are too short for its window, the
figures say it does not apply, and why.
"""

from __future__ import annotations

import numpy as np

from collar_firmware import classifier
from models.honest import model_spelling, scores
from models.recordings import DataError, Loaded, LoadReport, Recording
from models.windowing import WindowSettings, make_windows


def predict_blob(blob: bytes, features: np.ndarray) -> np.ndarray:
    """Return class names the collar's own classifier gives for collar features (m, N_FEATURES)."""
    model = classifier.Model.from_bytes(blob)
    out = np.empty(len(features), dtype=object)
    row = classifier.array("i", bytes(4 * model.n_features))
    for i, values in enumerate(np.asarray(features, dtype=np.int64)):
        for f in range(model.n_features):
            row[f] = int(values[f])
        out[i] = model.classes[model.predict(row)]
    return out.astype(str)


def field_scores(blob: bytes, loaded: Loaded, axes: str = "x,y,z") -> dict:
    """Return the field model's figures on loaded data, or {"applicable": False, "reason": ...}."""
    model = classifier.Model.from_bytes(blob)
    data_labels = set(loaded.label_counts())
    spelling = model_spelling(data_labels, model.classes)
    common = sorted(set(model.classes) & {spelling.get(label, label) for label in data_labels})
    about = {"model_version": model.version, "classes": list(model.classes),
             "window_s": model.window_s, "rate_hz": model.rate_hz}
    if not common:
        return {**about, "applicable": False,
                "reason": f"the field model's classes ({', '.join(model.classes)}) share none with the data's "
                          f"({', '.join(sorted(data_labels))})"}
    settings = WindowSettings(window_s=model.window_s, overlap=model.overlap_pct / 100, rate_hz=model.rate_hz,
                              axes=axes)
    try:
        windows = make_windows(loaded, settings)
    except DataError as err:
        return {**about, "applicable": False, "reason": f"the data cannot fill its {model.window_s} s windows: {err}"}
    truth = np.asarray([spelling.get(label, label) for label in windows.label_names()], dtype=str)
    classes = tuple(spelling.get(c, c) for c in windows.classes)
    predicted = predict_blob(blob, windows.features)
    animals = windows.animals if windows.animals_known else np.full(len(truth), "(all)")
    return {**about, "applicable": True, "windows": len(truth), "common_classes": common,
            **({"spelt_as_the_model": spelling} if spelling else {}), **scores(truth, predicted, classes, animals)}


TRAINED_ON = "recordings this model was trained on (an honest score needs data it never saw)"


def trained_on(record: dict | None) -> set[str] | None:
    """Return what a registry entry's record says its model was trained on: each recording's digest and, from
    models registered since it was written, its content digest (its data whatever its labels); None without an
    entry."""
    if record is None:
        return None
    dataset = record.get("dataset", {})
    return set(dataset.get("recording_digests", [])) | set(dataset.get("recording_contents", []))


def _seen(recording: Recording, trained_on: set[str]) -> bool:
    return recording.digest() in trained_on or recording.content_digest() in trained_on


def evaluate_model(blob: bytes, loaded: Loaded, axes: str = "x,y,z", trained_on: set[str] | None = None) -> dict:
    """Return field_scores of a model on the recordings it was not trained on (trained_on: their digests or
    content digests, from its registry entry: `trained_on`); the recordings it was trained on, relabelled since or
    not, are left out and counted, never scored."""
    seen = [r for r in loaded.recordings if _seen(r, trained_on)] if trained_on else []
    if not seen:
        return field_scores(blob, loaded, axes)
    report = LoadReport()
    report.merge(loaded.report)
    report.leave_out(TRAINED_ON, sum(len(r) for r in seen))
    unseen = Loaded([r for r in loaded.recordings if not _seen(r, trained_on)], report)
    left_out = {"trained_on_recordings": len(seen), "left_out_samples": dict(report.left_out)}
    if not unseen.recordings:
        model = classifier.Model.from_bytes(blob)
        return {"model_version": model.version, "classes": list(model.classes), "applicable": False, **left_out,
                "reason": f"every recording ({len(seen)}) was in this model's training data: scored on them it "
                          "would only say how well it remembers; its honest score is the cross-validated one "
                          "of its training (tembo models list)"}
    return {**field_scores(blob, unseen, axes), **left_out}
