"""The one place that knows whether Tembo's collar code runs on MicroPython or CPython.

Every other collar module imports `const`, `native`, `ticks_ms`, `ticks_diff` from here.
"""
try:
    import micropython as _mp
    from micropython import const  # noqa: F401

    MICROPYTHON = True
except ImportError:
    MICROPYTHON = False

    def const(value):
        """CPython stand-in for micropython.const: returns value."""
        return value


def native(fn):
    """Use the native emitter where the port has one; plain bytecode elsewhere (wasm, CPython)."""
    if MICROPYTHON:
        try:
            return _mp.native(fn)
        except Exception:
            return fn
    return fn


try:
    from time import ticks_diff, ticks_ms  # noqa: F401
except ImportError:
    import time as _time

    def ticks_ms():
        """Milliseconds from an arbitrary point, wrapping like MicroPython's."""
        return int(_time.monotonic() * 1000) & 0x3FFFFFFF

    def ticks_diff(a, b):
        """a - b in ms, correct across one wrap."""
        d = (a - b) & 0x3FFFFFFF
        if d & 0x20000000:
            d -= 0x40000000
        return d


try:  # CPython's binascii computes CRC-16/CCITT in C (the twin runs thousands of collars);
    from binascii import crc_hqx  # noqa: F401
except ImportError:  # MicroPython's binascii has no crc_hqx: the collar computes it bit by bit
    crc_hqx = None


GC_BUDGET_BYTES = 24 * 1024  # heap a duty cycle may leave behind before the next collection

if MICROPYTHON:
    import gc as _gc

    _gc_after = [0]

    def collect_garbage():
        """The collar's one collection point: collect when the heap grew GC_BUDGET_BYTES since the last."""
        if _gc.mem_alloc() - _gc_after[0] >= GC_BUDGET_BYTES:
            _gc.collect()
            _gc_after[0] = _gc.mem_alloc()

else:

    def collect_garbage():
        """CPython frees by reference counting: nothing to do at the collection point."""
        return None
