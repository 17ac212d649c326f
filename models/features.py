"""The numpy twin of the collar's feature definition (`collar_firmware/features.py`).

Vectorised over many windows for training and evaluation. Every collar feature is an integer
computed with integer arithmetic (integer means, integer square roots, an integer Goertzel
recursion, an integer atan2), and this twin repeats that arithmetic exactly. All values are
integers below 2^24, so they are exact in float32: the stated tolerance between the collar and
the twin is zero (`TOLERANCE`), on CPython and on 32-bit-float MicroPython alike.
`tests/test_features_parity.py` proves it against `tests/vectors/feature_golden.json`.
"""

from __future__ import annotations

import zlib

import numpy as np

from collar_firmware import features as collar_features

FEATURE_NAMES = collar_features.FEATURE_NAMES
N_FEATURES = collar_features.N_FEATURES
GOERTZEL_CHZ = collar_features.GOERTZEL_CHZ
GOERTZEL_Q = collar_features.GOERTZEL_Q
BANDS = collar_features.BANDS
TOLERANCE = 0.0  # |collar - twin| per feature, in the feature's own unit


def schema_hash(window_s: int, rate_hz: int) -> int:
    """Return the CRC32 of the feature schema text (names, order, version, bins, window settings)."""
    return zlib.crc32(collar_features.schema_text(window_s, rate_hz).encode()) & 0xFFFFFFFF


def isqrt(values: np.ndarray) -> np.ndarray:
    """Return floor(sqrt(values)) exactly for non-negative int64 values below 2^52."""
    values = np.maximum(np.asarray(values, dtype=np.int64), 0)
    root = np.floor(np.sqrt(values.astype(np.float64))).astype(np.int64)
    root -= (root * root > values).astype(np.int64)
    root += ((root + 1) * (root + 1) <= values).astype(np.int64)
    return root


def atan2_ddeg(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Return the collar's integer atan2 in deci-degrees (see collar_firmware.features.atan2_ddeg)."""
    y = np.asarray(y, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    ay, ax = np.abs(y), np.abs(x)
    steep = ay > ax
    num = np.where(steep, ax, ay) << 10
    den = np.maximum(np.where(steep, ay, ax), 1)
    t = num // den
    a = (450 * t + ((t * (1024 - t)) >> 10) * ((1435648 + 380 * t) // 10) // 1024 + 512) >> 10
    a = np.where(steep, 900 - a, a)
    a = np.where(x < 0, 1800 - a, a)
    a = np.where(y < 0, -a, a)
    return np.where((ax == 0) & (ay == 0), 0, a)


def _round_div(a: np.ndarray, b) -> np.ndarray:
    """Return a / b rounded half up, in integers."""
    return (2 * a + b) // (2 * b)


def _shift_below(values: np.ndarray, bits: int) -> np.ndarray:
    """Return, per value, the smallest k >= 0 with values >> k < 2^bits."""
    shift = np.zeros_like(values)
    while True:
        over = (values >> shift) >= (1 << bits)
        if not over.any():
            return shift
        shift += over


def compute_features(windows: np.ndarray, rate_hz: int) -> np.ndarray:
    """Return (m, N_FEATURES) float32 features of (m, n, 3) integer milli-g windows at integer rate_hz."""
    w = np.asarray(windows)
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3 or w.shape[2] != 3:
        raise ValueError(f"windows must be (m, n, 3) milli-g, got shape {np.shape(windows)}")
    if int(rate_hz) != rate_hz or rate_hz < 1:
        raise ValueError(f"rate_hz must be a positive integer, got {rate_hz}")
    rate_hz = int(rate_hz)
    dec = collar_features.decimation(rate_hz)
    w = w.astype(np.int64)
    count, n, _ = w.shape
    if n < 2 * dec:
        raise ValueError(f"window of {n} samples is too short at {rate_hz} Hz")
    out = np.empty((count, N_FEATURES), dtype=np.int64)
    rows = np.arange(count)

    sums = w.sum(axis=1)
    lo = w.min(axis=1)
    hi = w.max(axis=1)
    mean = _round_div(sums, n)
    span = hi - lo
    axis = np.where(span[:, 1] > span[:, 0], 1, 0)
    axis = np.where(span[:, 2] > np.maximum(span[:, 0], span[:, 1]), 2, axis)

    d = w - mean[:, None, :]
    q = (d * d).sum(axis=1)
    e = sums - n * mean
    odba = np.abs(d).sum(axis=2)
    vedba = isqrt((d * d).sum(axis=2))
    var100 = (q // n) * 100 + ((q % n) * 100) // n - (100 * e * e) // (n * n)

    m = n // dec
    dom = d[rows, :, axis][:, : m * dec].reshape(count, m, dec).sum(axis=2)
    positive = dom >= 0
    crossings = (positive[:, 1:] != positive[:, :-1]).sum(axis=1)

    coef = np.asarray(collar_features.goertzel_coefficients(rate_hz), dtype=np.int64)
    s1 = np.zeros((count, coef.size), dtype=np.int64)
    s2 = np.zeros_like(s1)
    for k in range(m):
        s0 = dom[:, k, None] + ((coef * s1) >> GOERTZEL_Q) - s2
        s2 = s1
        s1 = s0
    biggest = np.maximum(np.abs(s1), np.abs(s2)).max(axis=1)
    shift = _shift_below(biggest, collar_features._T_BITS)[:, None]
    t1, t2 = s1 >> shift, s2 >> shift
    power = np.maximum(t1 * t1 + t2 * t2 - ((coef * t1) >> GOERTZEL_Q) * t2, 0)
    best = np.argmax(power, axis=1)
    best_power = power[rows, best]
    total = power.sum(axis=1)
    cut = _shift_below(total, collar_features._SHARE_BITS)

    out[:, 0:3] = mean
    out[:, 3:6] = isqrt(np.maximum(var100, 0))
    out[:, 6:9] = lo
    out[:, 9:12] = hi
    out[:, 12] = _round_div(odba.sum(axis=1), n)
    out[:, 13] = odba.max(axis=1)
    out[:, 14] = _round_div(vedba.sum(axis=1), n)
    out[:, 15] = vedba.max(axis=1)
    out[:, 16] = atan2_ddeg(mean[:, 0], isqrt(mean[:, 1] ** 2 + mean[:, 2] ** 2))
    out[:, 17] = atan2_ddeg(mean[:, 1], mean[:, 2])
    out[:, 18] = _round_div(np.abs(w).sum(axis=(1, 2)), n)
    out[:, 19] = _round_div(crossings * 10 * rate_hz, m * dec)
    out[:, 20] = np.asarray(GOERTZEL_CHZ)[best]
    out[:, 21] = np.where(total > 0, ((best_power >> cut) * 1000) // np.maximum(total >> cut, 1), 0)
    for f, (_name, first, stop) in enumerate(BANDS):
        out[:, 22 + f] = (20 * isqrt(power[:, first:stop].sum(axis=1)) << shift[:, 0]) // (m * dec)
    return out.astype(np.float32)


def windows_from_stream(samples: np.ndarray, n_samples: int, step: int) -> np.ndarray:
    """Cut a (t, 3) sample stream into (m, n_samples, 3) windows that start every `step` samples."""
    samples = np.asarray(samples)
    if samples.shape[0] < n_samples:
        return np.empty((0, n_samples, 3), dtype=samples.dtype)
    starts = np.arange(0, samples.shape[0] - n_samples + 1, step)
    return samples[starts[:, None] + np.arange(n_samples)[None, :]]
