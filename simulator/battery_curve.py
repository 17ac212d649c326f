"""The charge a reference pack holds at a voltage, read on its discharge curve (collar_firmware.config.BATTERY_CURVE).

The collar reports its battery in millivolts and never computes a percentage; the twin and its checks read the
curve here (hal_sim.curve_drain walks it the other way: the voltage at a charge left).
"""

from __future__ import annotations

from collar_firmware.config import BATTERY_CURVE


def battery_percent(battery_mv: int) -> int:
    """Return the charge left (0..100 %) of the reference pack at battery_mv, from BATTERY_CURVE."""
    curve = BATTERY_CURVE
    if battery_mv >= curve[0][0]:
        return 100
    for i in range(1, len(curve)):
        mv_hi, pct_hi = curve[i - 1]
        mv_lo, pct_lo = curve[i]
        if battery_mv >= mv_lo:
            return pct_lo + (battery_mv - mv_lo) * (pct_hi - pct_lo) // (mv_hi - mv_lo)
    return 0
