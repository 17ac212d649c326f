"""GNSS error model of Tembo's digital twin: a u-blox M8 class receiver on a collar under open sky.

What a collar sees is not the animal's true position: each fix is a few metres off (horizontal error
scales with HDOP), now and then a fix is badly off (multipath, few satellites), a fix takes time (hot
start when the last fix is recent, cold start otherwise) and sometimes never comes before the timeout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from collar_firmware.hal import GNSS, Clock
from simulator.geo import offset_lonlat

EPHEMERIS_VALID_S = 4 * 3600  # broadcast ephemeris lasts about four hours: hot start inside it


@dataclass(frozen=True)
class GnssFix:
    """One fix as the receiver reports it (the HAL's acquire() tuple is lat, lon, hdop, ttff_s)."""

    lat: float
    lon: float
    hdop: float
    ttff_s: int
    error_m: float

    def as_hal_tuple(self) -> tuple[float, float, float, int]:
        """(lat_deg, lon_deg, hdop, ttff_s), the shape of collar_firmware.hal.GNSS.acquire()."""
        return (self.lat, self.lon, self.hdop, self.ttff_s)


@dataclass(frozen=True)
class GnssNoiseModel:
    """Parameters of the error model; defaults are typical of an M8 on a collar in savanna."""

    sigma_per_hdop_m: float = 2.5  # 1-sigma horizontal error per unit of HDOP (per axis)
    hdop_min: float = 0.7
    hdop_median: float = 1.1
    bad_fix_probability: float = 0.02
    bad_fix_error_m: tuple[float, float] = (60.0, 600.0)
    no_fix_probability: float = 0.03  # dense canopy, collar rotated under the neck
    hot_ttff_s: tuple[float, float] = (1.0, 5.0)
    cold_ttff_s: tuple[float, float] = (26.0, 60.0)


class GnssReceiver:
    """A simulated receiver: true position in, noisy fix (or None) out. Every draw comes from rng."""

    def __init__(self, rng: np.random.Generator, model: GnssNoiseModel | None = None) -> None:
        self.rng = rng
        self.model = model or GnssNoiseModel()
        self.last_fix_s: int | None = None

    def acquire(self, true_lat: float, true_lon: float, now_s: int, timeout_s: int) -> GnssFix | None:
        """Try for a fix at now_s: a GnssFix whose ttff_s <= timeout_s, or None when it times out."""
        m, rng = self.model, self.rng
        hot = self.last_fix_s is not None and now_s - self.last_fix_s < EPHEMERIS_VALID_S
        low, high = m.hot_ttff_s if hot else m.cold_ttff_s
        ttff_s = int(math.ceil(rng.uniform(low, high)))
        if rng.random() < m.no_fix_probability or ttff_s > timeout_s:
            return None
        hdop = max(m.hdop_min, float(rng.lognormal(math.log(m.hdop_median), 0.3)))
        if rng.random() < m.bad_fix_probability:
            error_m = float(rng.uniform(*m.bad_fix_error_m))
            bearing = float(rng.uniform(0.0, 2 * math.pi))
            east_m, north_m = error_m * math.sin(bearing), error_m * math.cos(bearing)
            hdop = max(hdop, float(rng.uniform(4.0, 15.0)))
        else:
            east_m, north_m = rng.normal(0.0, m.sigma_per_hdop_m * hdop, size=2)
            error_m = math.hypot(east_m, north_m)
        lon, lat = offset_lonlat(true_lon, true_lat, float(east_m), float(north_m))
        self.last_fix_s = now_s
        return GnssFix(lat=lat, lon=lon, hdop=round(hdop, 1), ttff_s=ttff_s, error_m=error_m)


class NoisyGnss(GNSS):
    """The collar's GNSS back end in the twin: a `collar_firmware.hal.GNSS` whose fixes come from the
    animal's true position (`position(t_s) -> (lat, lon)`) through a GnssReceiver's error model."""

    def __init__(self, clock: Clock, position: Callable[[int], tuple[float, float]], receiver: GnssReceiver) -> None:
        self.clock = clock
        self.position = position
        self.receiver = receiver
        self.fixes = 0
        self.failures = 0
        self.on_s = 0  # receiver-on time, for energy accounting

    def acquire(self, timeout_s: int) -> tuple[float, float, float, int] | None:
        """(lat_deg, lon_deg, hdop, ttff_s) of a noisy fix at the clock's time, or None on timeout."""
        now_s = self.clock.now_s()
        lat, lon = self.position(now_s)
        fix = self.receiver.acquire(lat, lon, now_s, timeout_s)
        if fix is None:
            self.failures += 1
            self.on_s += timeout_s
            return None
        self.fixes += 1
        self.on_s += fix.ttff_s
        return fix.as_hal_tuple()
