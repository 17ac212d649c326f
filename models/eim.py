"""Edge Impulse Linux model files (.eim): export Tembo's collar model as one, and score any .eim on our folds.

An .eim is an executable that takes a Unix socket path as its only argument, listens there, and
answers JSON messages as `edge_impulse_linux.runner.ImpulseRunner` sends them: `{"hello": 1, "id": N}`
gets `project` and `model_parameters` (labels, frequency, axis_count, input_features_count, ...);
`{"classify": [...], "id": N}` gets `result.classification` ({label: probability}). Every answer
carries `success` and the request's `id` and ends with a NUL byte, which is how the runner finds its end.

Tembo's .eim is a Python zip application (`#!/usr/bin/env python3`) holding the collar's own
features and classifier and the model blob: classify takes one window of raw accelerometer values,
x, y, z interleaved in m/s2 (Edge Impulse's accelerometer unit), at the model's rate and window length,
and answers what the collar would.
"""

from __future__ import annotations

import json
import shutil
import stat
import tempfile
import zipapp
from pathlib import Path

import numpy as np

from collar_firmware import blob as collar_blob
from models.honest import choose_folds, model_spelling, scores
from models.recordings import STANDARD_GRAVITY_M_S2, Loaded
from models.windowing import COLLAR_RATES_HZ, cut_windows

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "collar_firmware"
FIRMWARE_MODULES = ("__init__.py", "compat.py", "features.py", "blob.py", "classifier.py")
SENSOR_ACCELEROMETER = 2  # Edge Impulse's sensor code for accelerometer models

RUNNER_MAIN = r'''"""Tembo collar model as an Edge Impulse Linux model file: serves ImpulseRunner's socket protocol."""
import json
import math
import os
import signal
import socket
import sys
import time
import zipfile
from array import array

from collar_firmware import classifier, features

MG_PER_M_S2 = 1000.0 / 9.80665


def read_member(name):
    with zipfile.ZipFile(os.path.dirname(os.path.abspath(__file__))) as z:
        return z.read(name)


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: MODEL.eim SOCKET_PATH\n")
        return 2
    # ImpulseRunner.stop() ends the model with SIGINT; a parent that ignores SIGINT (a service, a
    # test worker) would hand that on, and the model would wait on its socket for ever.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    info = json.loads(read_member("tembo_eim.json"))
    model = classifier.Model.from_bytes(read_member("model.bin"))
    n = model.window_samples()
    buf = array("h", bytes(6 * n))
    feats = features.new_feature_buffer()
    votes = array("i", bytes(4 * len(model.classes)))
    path = sys.argv[1]
    for stale in (path, path + ".binding"):
        if os.path.exists(stale):
            os.unlink(stale)
    # The runner connects as soon as the path exists: it appears (by rename) only once listening.
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path + ".binding")
    server.listen(1)
    os.rename(path + ".binding", path)
    try:
        while True:
            conn, _ = server.accept()
            serve(conn, info, model, n, buf, feats, votes)
    except KeyboardInterrupt:
        return 0
    finally:
        server.close()
        if os.path.exists(path):
            os.unlink(path)


def answer(conn, message):
    conn.sendall(json.dumps(message).encode() + b"\0")


def serve(conn, info, model, n, buf, feats, votes):
    decoder = json.JSONDecoder()
    pending = ""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            conn.close()
            return
        pending += chunk.decode("utf-8", "replace")
        while True:
            pending = pending.lstrip(" \t\r\n\0")
            if not pending:
                break
            try:
                message, end = decoder.raw_decode(pending)
            except ValueError:
                break  # wait for the rest of the message
            pending = pending[end:]
            answer(conn, handle(message, info, model, n, buf, feats, votes))


def handle(message, info, model, n, buf, feats, votes):
    ident = message.get("id", 0) if isinstance(message, dict) else 0
    if not isinstance(message, dict):
        return {"success": False, "error": "a message is a JSON object", "id": ident}
    if "hello" in message:
        return {"success": True, "id": ident, **info}
    if "classify" in message:
        values = message["classify"]
        if not isinstance(values, list) or len(values) != 3 * n:
            return {"success": False, "id": ident,
                    "error": "classify needs %d values (x, y, z in m/s2 for %d samples)" % (3 * n, n)}
        started = time.perf_counter()
        try:
            for i, v in enumerate(values):
                mg = round(float(v) * MG_PER_M_S2)
                buf[i] = max(-32768, min(32767, mg))
        except (TypeError, ValueError):
            return {"success": False, "id": ident, "error": "classify values must be numbers"}
        features.compute_features(buf, n, model.rate_hz, feats)
        dsp = time.perf_counter()
        model.predict_proba(feats, votes)
        if getattr(model, "boosted", False):  # class scores in 1/proba_scale logits: softmax
            top = max(votes)
            weights = [math.exp((v - top) / model.proba_scale) for v in votes]
        else:
            weights = [float(v) for v in votes]
        total = sum(weights) or 1.0
        done = time.perf_counter()
        classification = {c: weights[k] / total for k, c in enumerate(model.classes)}
        return {"success": True, "id": ident, "result": {"classification": classification},
                "timing": {"dsp": int((dsp - started) * 1000), "classification": int((done - dsp) * 1000),
                           "anomaly": 0, "json": 0, "stdin": 0}}
    if "config" in message:
        return {"success": True, "id": ident}
    return {"success": False, "id": ident, "error": "unknown message %s" % sorted(message)}


if __name__ == "__main__":
    sys.exit(main())
'''


def hello_info(blob: bytes, project_name: str = "tembo collar model", owner: str = "tembo") -> dict:
    """Return the hello answer (project and model_parameters) of a collar blob."""
    parsed = collar_blob.parse(blob)
    n = parsed.window_s * parsed.rate_hz
    return {
        "project": {"deploy_version": parsed.model_version, "id": 0, "name": project_name, "owner": owner},
        "model_parameters": {
            "axis_count": 3, "frequency": parsed.rate_hz, "has_anomaly": 0, "image_channel_count": 0,
            "image_input_frames": 0, "image_input_height": 0, "image_input_width": 0, "image_resize_mode": "none",
            "inferencing_engine": 0, "input_features_count": 3 * n, "interval_ms": 1000.0 / parsed.rate_hz,
            "label_count": len(parsed.classes), "labels": list(parsed.classes), "model_type": "classification",
            "sensor": SENSOR_ACCELEROMETER, "slice_size": 3 * n, "threshold": 0, "use_continuous_mode": False,
        },
    }


def export_eim(blob: bytes, path: str | Path, project_name: str = "tembo collar model") -> Path:
    """Write blob as an executable Edge Impulse Linux model file; return its path."""
    path = Path(path)
    info = hello_info(blob, project_name)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "app"
        (root / "collar_firmware").mkdir(parents=True)
        for name in FIRMWARE_MODULES:
            shutil.copyfile(FIRMWARE_DIR / name, root / "collar_firmware" / name)
        (root / "model.bin").write_bytes(blob)
        (root / "tembo_eim.json").write_text(json.dumps(info))
        (root / "__main__.py").write_text(RUNNER_MAIN)
        zipapp.create_archive(root, path, interpreter="/usr/bin/env python3")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def evaluate_eim(eim_path: str | Path, loaded: Loaded, axes: str = "x,y,z", seed: int = 0,
                 units_m_s2: bool = True) -> dict:
    """Score an .eim on the data through Edge Impulse's own ImpulseRunner: pooled figures and per-fold macro-F1."""
    from edge_impulse_linux.runner import ImpulseRunner

    runner = ImpulseRunner(str(eim_path))
    try:
        info = runner.init()
        params = info["model_parameters"]
        if params.get("axis_count") != 3:
            raise ValueError(f"{eim_path} takes {params.get('axis_count')} axes; Tembo's data has 3")
        rate = float(params["frequency"])
        n = int(params["input_features_count"]) // 3
        raw = cut_windows(loaded, rate, n, n, axes)
        scale = 1.0 / (1000.0 / STANDARD_GRAVITY_M_S2) if units_m_s2 else 1.0 / 1000.0
        predicted = []
        for window in raw.samples:
            result = runner.classify((window.reshape(-1) * scale).tolist())
            classification = result["result"]["classification"]
            predicted.append(max(classification, key=classification.get))
    finally:
        runner.stop()
    predicted = np.asarray(predicted, dtype=str)
    spelling = model_spelling(set(raw.labels.tolist()), params.get("labels") or [])
    truth = np.asarray([spelling.get(label, label) for label in raw.labels.tolist()], dtype=str)
    classes = tuple(sorted(set(truth.tolist())))
    known = bool(np.all(raw.animals != ""))
    animals = raw.animals if known else np.full(len(predicted), "(all)")
    from models.windowing import Windows, WindowSettings

    index = {c: i for i, c in enumerate(classes)}
    stub = Windows(np.zeros((len(predicted), 1)), np.asarray([index[x] for x in truth]), classes, raw.animals,
                   raw.bouts, WindowSettings(), raw.report, raw.source_rate_hz)
    folds = choose_folds(stub, seed)
    per_fold = []
    for _train, test in folds.splitter.split(stub.features, stub.labels, folds.groups):
        # A fold is scored on the classes it holds or predicts: an animal that never ran has no "run" window, and
        # an F1 of 0 for a class with nothing to find and nothing found would be no failure of the model there.
        in_fold = set(truth[test].tolist()) | set(predicted[test].tolist())
        fold_classes = tuple(c for c in classes if c in in_fold)
        per_fold.append(scores(truth[test], predicted[test], fold_classes, animals[test])["macro_f1"])
    figures = scores(truth, predicted, classes, animals)
    return {"eim": str(eim_path), "project": info.get("project"), "labels": params.get("labels"),
            "frequency_hz": rate, "window_samples": n, "collar_rate": int(rate) in COLLAR_RATES_HZ,
            "cv": folds.kind, "folds": folds.n_folds, "per_fold_macro_f1": per_fold, "warning": folds.warning,
            "windows": int(len(predicted)), **figures}
