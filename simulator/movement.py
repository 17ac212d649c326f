"""Behaviour and movement of a simulated elephant: a semi-Markov behaviour process and a correlated walk.

Behaviour follows a diel pattern (elephants rest in the heat of the day and move most at dusk and at
night); each bout lasts a gamma-distributed time, then the next behaviour is drawn from weights that
depend on the local hour. Movement is a correlated random walk in local metres whose step speed and
turning concentration depend on the behaviour, bent toward a target (water, home, a scenario's goal).

Column names of movement tables are constants here so tests and callers share them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from collar_firmware.codec import BEHAVIOURS
from simulator.geo import UTC_OFFSET_MIN, is_night, local_hour

__all__ = ["BEHAVIOUR", "SPEED_MPS", "STEP_S", "TIME_S", "X_M", "Y_M", "is_night", "local_hour"]

TIME_S = "time_s"
X_M = "x_m"
Y_M = "y_m"
BEHAVIOUR = "behaviour"
SPEED_MPS = "speed_mps"

STEP_S = 60  # movement is integrated on a one-minute grid
EAT_UTC_OFFSET_H = UTC_OFFSET_MIN / 60  # the collar's local time (East Africa Time) for the diel pattern

REST, FORAGE, WALK, RUN = (BEHAVIOURS.index(b) for b in ("rest", "forage", "walk", "run"))


@dataclass(frozen=True)
class BehaviourParams:
    """Per-behaviour movement and bout parameters (index = position in codec.BEHAVIOURS)."""

    speed_mean_mps: tuple[float, ...] = (0.0, 0.12, 0.95, 3.2)
    speed_sd_mps: tuple[float, ...] = (0.0, 0.05, 0.2, 0.6)
    turn_kappa: tuple[float, ...] = (0.0, 0.6, 25.0, 30.0)  # von Mises concentration of turning angles
    bout_mean_s: tuple[float, ...] = (45 * 60.0, 75 * 60.0, 25 * 60.0, 2 * 60.0)
    bout_shape: float = 3.0  # gamma shape of bout durations (semi-Markov)
    bout_cap: float = 2.5  # no bout lasts longer than bout_cap times its mean
    midday_rest_factor: float = 1.6  # rest bouts last longer in the heat of the day
    # Next-behaviour weights (rest, forage, walk, run) by diel phase.
    phase_weights: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            "morning": (0.20, 0.55, 0.25, 0.004),
            "midday": (0.60, 0.28, 0.12, 0.002),
            "dusk": (0.12, 0.45, 0.43, 0.006),
            "night": (0.35, 0.40, 0.25, 0.004),
        }
    )


DEFAULT_PARAMS = BehaviourParams()


def diel_phase(t_s: float, utc_offset_h: float = EAT_UTC_OFFSET_H) -> str:
    """'morning' 06-10, 'midday' 10-16, 'dusk' 16-22, 'night' 22-06 (local time): the activity pattern,
    not the collar's night (simulator.geo.is_night)."""
    h = local_hour(t_s, int(utc_offset_h * 60))
    if 6 <= h < 10:
        return "morning"
    if 10 <= h < 16:
        return "midday"
    if 16 <= h < 22:
        return "dusk"
    return "night"


def next_bout(
    t_s: float, current: int, rng: np.random.Generator, params: BehaviourParams = DEFAULT_PARAMS
) -> tuple[int, int]:
    """Draw the next behaviour (never the current one) and its duration in whole STEP_S seconds."""
    phase = diel_phase(t_s)
    weights = np.array(params.phase_weights[phase], dtype=float)
    weights[current] = 0.0
    behaviour = int(rng.choice(len(weights), p=weights / weights.sum()))
    return behaviour, bout_duration_s(behaviour, phase, rng, params)


def bout_duration_s(
    behaviour: int, phase: str, rng: np.random.Generator, params: BehaviourParams = DEFAULT_PARAMS
) -> int:
    """Gamma-distributed bout length of a behaviour, rounded to the step grid (at least one step)."""
    mean_s = params.bout_mean_s[behaviour]
    if behaviour == REST and phase == "midday":
        mean_s *= params.midday_rest_factor
    drawn = min(rng.gamma(params.bout_shape, mean_s / params.bout_shape), params.bout_cap * mean_s)
    return max(STEP_S, int(round(drawn / STEP_S)) * STEP_S)


def step_speed_mps(behaviour: int, rng: np.random.Generator, params: BehaviourParams = DEFAULT_PARAMS) -> float:
    """Speed over one step for a behaviour (m/s, never negative)."""
    mean, sd = params.speed_mean_mps[behaviour], params.speed_sd_mps[behaviour]
    if mean == 0.0:
        return 0.0
    return max(0.0, float(rng.normal(mean, sd)))


def turn(
    heading_rad: float,
    behaviour: int,
    rng: np.random.Generator,
    target_heading_rad: float | None = None,
    pull: float = 0.0,
    params: BehaviourParams = DEFAULT_PARAMS,
) -> float:
    """New heading: a von Mises turn of the old one, bent toward target_heading by pull (0..1)."""
    kappa = params.turn_kappa[behaviour]
    free = heading_rad + (float(rng.vonmises(0.0, kappa)) if kappa > 0 else float(rng.uniform(-math.pi, math.pi)))
    if target_heading_rad is None or pull <= 0.0:
        return free
    hx = (1.0 - pull) * math.cos(free) + pull * math.cos(target_heading_rad)
    hy = (1.0 - pull) * math.sin(free) + pull * math.sin(target_heading_rad)
    return math.atan2(hy, hx)


def heading_to(x_m: float, y_m: float, tx_m: float, ty_m: float) -> float:
    """Heading in radians (math convention: 0 = east, pi/2 = north) from (x, y) toward (tx, ty)."""
    return math.atan2(ty_m - y_m, tx_m - x_m)


def step_speeds_mps(table: pd.DataFrame) -> pd.Series:
    """Speed of each step of a movement table (TIME_S, X_M, Y_M): distance / time, first row NaN."""
    dist_m = np.hypot(table[X_M].diff(), table[Y_M].diff())
    return (dist_m / table[TIME_S].diff()).rename(SPEED_MPS)


def straight_line_table(speed_mps: float, heading_deg: float, duration_s: int, step_s: int = STEP_S) -> pd.DataFrame:
    """Hand-checkable builder: constant speed along a compass heading (0 = north, 90 = east)."""
    t = np.arange(0, duration_s + 1, step_s, dtype=np.int64)
    d = speed_mps * t
    rad = math.radians(heading_deg)
    return pd.DataFrame({TIME_S: t, X_M: d * math.sin(rad), Y_M: d * math.cos(rad)})


def behaviour_bout_table(
    behaviour: str, duration_s: int, seed: int, params: BehaviourParams = DEFAULT_PARAMS
) -> pd.DataFrame:
    """Hand-checkable builder: a free correlated walk held in one behaviour (no targets, no borders)."""
    rng = np.random.default_rng(seed)
    b = BEHAVIOURS.index(behaviour)
    n = duration_s // STEP_S
    kappa, mean, sd = params.turn_kappa[b], params.speed_mean_mps[b], params.speed_sd_mps[b]
    turns = rng.vonmises(0.0, kappa, n) if kappa > 0 else rng.uniform(-math.pi, math.pi, n)
    heading = rng.uniform(-math.pi, math.pi) + np.cumsum(turns)
    step_m = (np.clip(rng.normal(mean, sd, n), 0.0, None) if mean > 0 else np.zeros(n)) * STEP_S
    x = np.concatenate(([0.0], np.cumsum(step_m * np.cos(heading))))
    y = np.concatenate(([0.0], np.cumsum(step_m * np.sin(heading))))
    return pd.DataFrame(
        {TIME_S: np.arange(n + 1, dtype=np.int64) * STEP_S, X_M: x, Y_M: y, BEHAVIOUR: behaviour}
    )
