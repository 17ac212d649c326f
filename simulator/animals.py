"""Simulated elephants of Tembo's digital twin, the demo scenarios they act out, and the herd.

A `SimulatedAnimal` lives in a `Reserve`: a semi-Markov behaviour process with a diel pattern drives a
correlated random walk (movement.py) that is drawn to water when the animal is thirsty, pulled back
home and kept inside or near the boundary. Scenarios inject the events rangers must hear about:

  mortality       the animal goes still at start_s and never moves again
  poaching_chase  the animal walks to a point near the boundary, then runs at night for duration_s
  farmland_raid   the animal walks into a farmland patch at night and forages there for duration_s
  collar_drop     the collar falls off at start_s and lies still where it fell
  low_battery     the collar's battery pack reaches the end of its life at start_s (the fleet's battery
                  source drops; the animal itself is unaffected)
  twisted_collar  the collar turns on the neck at start_s (its accelerometer sees gravity from a new
                  angle; the animal lives on as before)

`state_at(t_s)` answers what the collar experiences at any second: where it is and how it moves
(`motion` is a behaviour name, "still" for a dead animal or "dropped"). The track is generated
lazily on a one-minute grid, so queries should move forward in time (any order works, it costs more).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from collar_firmware.codec import BEHAVIOURS
from simulator import movement as mv
from simulator.reserve import Reserve, demo_reserve

SPECIES = "Loxodonta africana"
MOTION_DEAD = "still"
MOTION_DROPPED = "dropped"
MOTIONS = BEHAVIOURS + (MOTION_DEAD, MOTION_DROPPED)
_DEAD, _DROPPED = MOTIONS.index(MOTION_DEAD), MOTIONS.index(MOTION_DROPPED)
CHUNK_STEPS = 60  # the walk is generated an hour of one-minute steps at a time

SCENARIO_KINDS = ("mortality", "poaching_chase", "farmland_raid", "collar_drop", "low_battery", "twisted_collar")
# The alert (codec.ALERT_TYPES) a ranger should see for each scenario: the answer key of alert scoring.
EXPECTED_ALERT = {
    "mortality": "mortality",
    "poaching_chase": "poaching_risk",
    "farmland_raid": "geofence_farmland",
    "collar_drop": "collar_drop",
    "low_battery": "low_battery",
    "twisted_collar": "",  # the collar turns on the neck of a living animal: no alert is due
}

ELEPHANT_NAMES = (
    "Amani", "Baraka", "Dalila", "Eshe", "Faraja", "Imani", "Jabari", "Kito", "Lulu", "Mosi",
    "Neema", "Pendo", "Rafiki", "Sefu", "Tumaini", "Upendo", "Zawadi", "Zuri", "Bahati", "Kamaria",
    "Jelani", "Makena", "Nuru", "Shujaa", "Wambui", "Akili", "Chausiku", "Hodari", "Kesi", "Malaika",
)


@dataclass(frozen=True)
class AnimalIdentity:
    """Who wears the collar: the names the bridge registers (device_id is the network's device id)."""

    device_id: str
    dev_eui: str
    name: str
    species: str = SPECIES
    sex: str | None = None


@dataclass(frozen=True)
class Scenario:
    """An injected event. Times are Unix seconds UTC; duration_s 0 means 'until the end'."""

    kind: str
    start_s: int
    duration_s: int = 0
    lead_s: int = 0  # how long before start_s the animal heads for place_xy
    place_xy: tuple[float, float] | None = None  # local metres: where the event happens
    run_to_xy: tuple[float, float] | None = None  # poaching chase: where the animal runs to

    def __post_init__(self) -> None:
        if self.kind not in SCENARIO_KINDS:
            raise ValueError(f"unknown scenario kind {self.kind!r}; expected one of {SCENARIO_KINDS}")

    @property
    def end_s(self) -> int | None:
        """End of the event (None when it lasts to the end of the run)."""
        return self.start_s + self.duration_s if self.duration_s else None


@dataclass(frozen=True)
class AnimalState:
    """What the collar experiences at t_s: its position and the motion its accelerometer feels."""

    t_s: int
    lat: float
    lon: float
    behaviour: str  # the animal's behaviour (codec.BEHAVIOURS); "rest" once dead or the collar is off
    motion: str  # a behaviour, "still" (dead animal) or "dropped" (collar lying on the ground)
    in_farmland: bool
    inside_reserve: bool

    @property
    def alive(self) -> bool:
        """False once the animal has died."""
        return self.motion != MOTION_DEAD

    @property
    def collar_on(self) -> bool:
        """False once the collar has dropped off."""
        return self.motion != MOTION_DROPPED


@dataclass(frozen=True)
class GroundTruthEvent:
    """A scenario as the answer key for alert scoring."""

    device_id: str
    name: str
    kind: str
    start: datetime
    end: datetime | None
    expected_alert: str


class SimulatedAnimal:
    """One elephant: behaviour + movement in a reserve, with its scenarios. Every draw comes from seed."""

    def __init__(
        self,
        identity: AnimalIdentity,
        reserve: Reserve,
        start_s: int,
        seed: int | np.random.SeedSequence,
        home_xy: tuple[float, float] | None = None,
        scenarios: Sequence[Scenario] = (),
        params: mv.BehaviourParams = mv.DEFAULT_PARAMS,
        home_radius_m: float = 5000.0,
        history_s: int = 7 * 86400,
    ) -> None:
        self.identity = identity
        self.reserve = reserve
        self.start_s = int(start_s)
        self.scenarios = tuple(scenarios)
        self.params = params
        self.home_radius_m = home_radius_m
        self.history_steps = max(2, history_s // mv.STEP_S)  # older grid points are let go (bounded memory)
        self.rng = np.random.default_rng(seed)
        self.home_xy = home_xy if home_xy is not None else random_home_xy(reserve, self.rng)
        self._water_xy = reserve.water_xy()
        rng = self.rng
        angle, radius = rng.uniform(0, 2 * math.pi), rng.uniform(0, 800.0)
        self._x = self.home_xy[0] + radius * math.cos(angle)
        self._y = self.home_xy[1] + radius * math.sin(angle)
        self._heading = float(rng.uniform(-math.pi, math.pi))
        self._behaviour = mv.FORAGE
        self._bout_left_s = 0
        self._thirst_s = float(rng.uniform(10, 20)) * 3600.0
        self._since_water_s = float(rng.uniform(0.0, self._thirst_s))
        # The animal stops for good at its first death or collar drop (dead wins a tie).
        stops = [s.start_s for s in self.scenarios if s.kind in ("mortality", "collar_drop")]
        self._freeze_s = min(stops) if stops else None
        dead = self._freeze_s is not None and any(
            s.kind == "mortality" and s.start_s <= self._freeze_s for s in self.scenarios)
        self._frozen_motion = _DEAD if dead else _DROPPED
        self._goals = tuple(s for s in self.scenarios if s.kind in ("farmland_raid", "poaching_chase"))
        self._leads = {k: max((s.lead_s for s in self._goals if s.kind == k), default=0)
                       for k in ("farmland_raid", "poaching_chase")}
        # The generated grid: times, collar positions (local metres and lon/lat), behaviour and motion
        # indices, in-farmland and inside-reserve flags; _base is the grid index of the oldest point held.
        self._base = 0
        self._last_query: tuple[float | None, AnimalState | None] = (None, None)
        self._t: list[int] = []
        self._xs: list[float] = []
        self._ys: list[float] = []
        self._bs: list[int] = []
        self._ms: list[int] = []
        self._lons: list[float] = []
        self._lats: list[float] = []
        self._farm: list[bool] = []
        self._inside: list[bool] = []

    def __repr__(self) -> str:
        return f"SimulatedAnimal({self.identity.name!r}, device_id={self.identity.device_id!r})"

    # --- public ---
    def state_at(self, t_s: float) -> AnimalState:
        """What the collar experiences at Unix second t_s (before the start: the starting state)."""
        if t_s == self._last_query[0]:  # the IMU, GNSS, radio and thermometer of one wake-up ask alike
            return self._last_query[1]
        state = self._state_at(t_s)
        self._last_query = (t_s, state)
        return state

    def _state_at(self, t_s: float) -> AnimalState:
        t = max(float(t_s), float(self.start_s))
        i = self._local(int((t - self.start_s) // mv.STEP_S))
        frac = (t - self._t[i]) / mv.STEP_S
        lons, lats = self._lons, self._lats
        # between two grid points a minute apart the track is a straight line (lon/lat and metres agree
        # to well under a millimetre over the few hundred metres an elephant covers in a minute)
        lon = lons[i] + frac * (lons[i + 1] - lons[i])
        lat = lats[i] + frac * (lats[i + 1] - lats[i])
        near = i if frac < 0.5 else i + 1  # the flags of the nearer grid point
        return AnimalState(
            t_s=int(t),
            lat=lat,
            lon=lon,
            behaviour=BEHAVIOURS[self._bs[i]],
            motion=MOTIONS[self._ms[i]],
            in_farmland=self._farm[near],
            inside_reserve=self._inside[near],
        )

    def table(self, until_s: int) -> pd.DataFrame:
        """The one-minute track from the start to until_s: time_s, x_m, y_m, lat, lon, behaviour, motion."""
        n = int((until_s - self.start_s) // mv.STEP_S) + 1
        self._extend_to(n)
        if self._base:
            raise ValueError(f"{self!r} no longer holds its track from the start (history_s too short)")
        xs, ys = np.asarray(self._xs[:n]), np.asarray(self._ys[:n])
        return pd.DataFrame(
            {
                mv.TIME_S: np.asarray(self._t[:n], dtype=np.int64),
                mv.X_M: xs,
                mv.Y_M: ys,
                "lat": np.asarray(self._lats[:n]),
                "lon": np.asarray(self._lons[:n]),
                mv.BEHAVIOUR: [BEHAVIOURS[b] for b in self._bs[:n]],
                "motion": [MOTIONS[m] for m in self._ms[:n]],
            }
        )

    # --- generation ---
    def _extend_to(self, index: int) -> None:
        while self._base + len(self._t) <= index:
            self._chunk()

    def _local(self, index: int) -> int:
        """Position in the held lists of grid index `index` (and `index + 1`), generating as needed."""
        self._extend_to(index + 1)
        excess = len(self._t) - 2 * self.history_steps
        if excess > 0 and index - self._base > self.history_steps + excess:
            for held in (self._t, self._xs, self._ys, self._bs, self._ms, self._lons, self._lats, self._farm,
                         self._inside):
                del held[:excess]
            self._base += excess
        if index < self._base:
            raise ValueError(f"{self!r}: time {self.start_s + index * mv.STEP_S} is older than the held history")
        return index - self._base

    def _active(self, kind: str, t: int, lead_s: int = 0) -> Scenario | None:
        for s in self._goals:
            if s.kind == kind and s.start_s - lead_s <= t and (s.end_s is None or t < s.end_s):
                return s
        return None

    def _chunk(self) -> None:
        """Generate the next CHUNK_STEPS grid points: the walk step by step (its random turns and speeds
        drawn for the whole chunk at once), then lon/lat and the reserve's flags for all of them at once.
        Chunks are whole, so the track does not depend on the order of the queries."""
        n = CHUNK_STEPS
        rng, params = self.rng, self.params
        turns = [rng.vonmises(0.0, k, n).tolist() if k > 0 else rng.uniform(-math.pi, math.pi, n).tolist()
                 for k in params.turn_kappa]
        normals = rng.standard_normal(n).tolist()
        first = len(self._xs)
        for k in range(n):
            self._step(turns, normals, k)
        xs = np.asarray(self._xs[first:])
        ys = np.asarray(self._ys[first:])
        lon, lat = self.reserve.frame.to_lonlat(xs, ys)
        self._lons.extend(np.asarray(lon, dtype=float).tolist())
        self._lats.extend(np.asarray(lat, dtype=float).tolist())
        self._farm.extend(self.reserve.in_farmland_many(xs, ys).tolist())
        self._inside.extend(self.reserve.inside_many(xs, ys).tolist())

    def _step(self, turns: list[list[float]], normals: list[float], k: int) -> None:
        """Record the state at the next grid time, then move the animal to the one after (k: the step's
        place in its chunk, to pick its pre-drawn turn and speed)."""
        t = self.start_s + (self._base + len(self._t)) * mv.STEP_S
        if self._freeze_s is not None and t >= self._freeze_s:
            self._record(t, mv.REST, self._frozen_motion)
            return
        behaviour, target, pull = self._decide(t)
        self._record(t, behaviour, behaviour)
        params = self.params
        free = self._heading + turns[behaviour][k]
        if target is None or pull <= 0.0:
            self._heading = free
        else:
            aim = math.atan2(target[1] - self._y, target[0] - self._x)
            hx = (1.0 - pull) * math.cos(free) + pull * math.cos(aim)
            hy = (1.0 - pull) * math.sin(free) + pull * math.sin(aim)
            self._heading = math.atan2(hy, hx)
        mean = params.speed_mean_mps[behaviour]
        if mean:
            speed = mean + params.speed_sd_mps[behaviour] * normals[k]
            if speed > 0.0:
                d = speed * mv.STEP_S
                self._x += d * math.cos(self._heading)
                self._y += d * math.sin(self._heading)
        self._since_water_s += mv.STEP_S
        x, y = self._x, self._y
        for wx, wy in self._water_xy:
            if (x - wx) * (x - wx) + (y - wy) * (y - wy) < 250.0 * 250.0:
                self._since_water_s = 0.0
                break

    def _record(self, t: int, behaviour: int, motion: int) -> None:
        self._t.append(t)
        self._xs.append(self._x)
        self._ys.append(self._y)
        self._bs.append(behaviour)
        self._ms.append(motion)

    def _decide(self, t: int) -> tuple[int, tuple[float, float] | None, float]:
        """Behaviour for the next step, the target it heads for (or None) and how strongly (0..1)."""
        if self._goals:
            forced, target, pull = self._scenario_goal(t)
            if forced is not None:
                self._behaviour, self._bout_left_s = forced, 0
                return forced, target, pull
        if self._bout_left_s <= 0:
            self._behaviour, self._bout_left_s = mv.next_bout(t, self._behaviour, self.rng, self.params)
        self._bout_left_s -= mv.STEP_S
        return self._behaviour, *self._routine_goal()

    def _scenario_goal(self, t: int) -> tuple[int | None, tuple[float, float] | None, float]:
        chase = self._active("poaching_chase", t, lead_s=self._leads["poaching_chase"])
        if chase is not None:
            if t >= chase.start_s:
                return mv.RUN, chase.run_to_xy, 0.5
            near = math.hypot(self._x - chase.place_xy[0], self._y - chase.place_xy[1]) < 300.0
            return (mv.FORAGE if near else mv.WALK), chase.place_xy, 0.7
        raid = self._active("farmland_raid", t, lead_s=self._leads["farmland_raid"])
        if raid is not None:
            if self.reserve.farmland_at_xy(self._x, self._y) is None:
                return mv.WALK, raid.place_xy, 0.7
            return mv.FORAGE, raid.place_xy, 0.2
        for s in self._goals:  # after a raid or chase: head home at a walk
            if s.end_s is not None and s.end_s <= t < s.end_s + 4 * 3600 and self._distance_home_m() > 2000.0:
                return mv.WALK, self.home_xy, 0.6
        return None, None, 0.0

    def _routine_goal(self) -> tuple[tuple[float, float] | None, float]:
        ahead_x = self._x + 400.0 * math.cos(self._heading)
        ahead_y = self._y + 400.0 * math.sin(self._heading)
        reserve = self.reserve
        if not reserve.inside_xy(self._x, self._y) or not reserve.inside_xy(ahead_x, ahead_y):
            return self.home_xy, 0.7
        if reserve.farmland_at_xy(self._x, self._y) or reserve.farmland_at_xy(ahead_x, ahead_y):
            return self.home_xy, 0.7  # outside a raid, farmland is avoided like the boundary
        if self._since_water_s > self._thirst_s:
            wx, wy = min(self._water_xy, key=lambda w: math.hypot(self._x - w[0], self._y - w[1]))
            return (wx, wy), 0.5
        if self._distance_home_m() > self.home_radius_m:
            return self.home_xy, 0.25
        return None, 0.0

    def _distance_home_m(self) -> float:
        return math.hypot(self._x - self.home_xy[0], self._y - self.home_xy[1])


# --- placing animals and scenarios in a reserve ---
def random_home_xy(reserve: Reserve, rng: np.random.Generator, min_edge_m: float = 2500.0) -> tuple[float, float]:
    """A home-range centre inside the reserve at least min_edge_m from the boundary."""
    ring = reserve.boundary_xy()
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    for _ in range(1000):
        x, y = rng.uniform(min(xs), max(xs)), rng.uniform(min(ys), max(ys))
        if reserve.inside_xy(x, y) and reserve.boundary_distance_m(x, y) >= min_edge_m:
            return float(x), float(y)
    raise ValueError("no home-range centre fits inside the reserve")


def boundary_point_xy(reserve: Reserve, fraction: float, inset_m: float) -> tuple[float, float]:
    """The point at `fraction` of the boundary's perimeter, moved inset_m toward the reserve centre."""
    ring = reserve.boundary_xy()
    edges = [(ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))]
    lengths = [math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in edges]
    along = (fraction % 1.0) * sum(lengths)
    for (a, b), length in zip(edges, lengths, strict=True):
        if along <= length:
            px, py = a[0] + (b[0] - a[0]) * along / length, a[1] + (b[1] - a[1]) * along / length
            break
        along -= length
    cx, cy = sum(p[0] for p in ring) / len(ring), sum(p[1] for p in ring) / len(ring)
    d = math.hypot(cx - px, cy - py)
    return px + inset_m * (cx - px) / d, py + inset_m * (cy - py) / d


def next_local_time_s(after_s: int, hour: float, utc_offset_h: float = mv.EAT_UTC_OFFSET_H) -> int:
    """First Unix second at or after after_s when the local clock reads `hour`."""
    day_s = 86400
    local = after_s + int(utc_offset_h * 3600)
    candidate = local - local % day_s + int(hour * 3600)
    if candidate < local:
        candidate += day_s
    return candidate - int(utc_offset_h * 3600)


def demo_dev_eui(index: int) -> str:
    """DevEUI of demo collar `index` (0-based): 16 hex digits in Tembo's demo block."""
    return f"70B3D57ED006{index + 1:04X}"


def demo_device_id(index: int) -> str:
    """Network device id of demo collar `index` (0-based)."""
    return f"tembo-collar-{index + 1:02d}"


class Herd:
    """n simulated elephants in a reserve; `scenarios="demo"` injects a few events so a 2-day run raises alerts.

    Same (n, seed, start, days) -> the same animals, homes, scenarios and tracks.
    """

    def __init__(
        self,
        n: int,
        seed: int,
        start: datetime,
        reserve: Reserve | None = None,
        days: float = 2.0,
        scenarios: str | dict[int, Sequence[Scenario]] | None = "demo",
    ) -> None:
        if n < 1:
            raise ValueError(f"a herd needs at least one animal, got n={n}")
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        self.n, self.seed, self.start, self.days = n, seed, start, days
        self.reserve = reserve or demo_reserve()
        self.start_s = int(start.timestamp())
        self.end_s = self.start_s + int(days * 86400)
        rng = np.random.default_rng(seed)
        seeds = np.random.SeedSequence(seed).spawn(n)
        homes: dict[int, tuple[float, float]] = {}
        if scenarios == "demo":
            plan = self._demo_plan(rng, homes)
        else:
            plan = {i: tuple(s) for i, s in (scenarios or {}).items()}
        self.animals = [
            SimulatedAnimal(
                identity=AnimalIdentity(
                    device_id=demo_device_id(i),
                    dev_eui=demo_dev_eui(i),
                    name=ELEPHANT_NAMES[i % len(ELEPHANT_NAMES)] + ("" if i < len(ELEPHANT_NAMES) else f" {i}"),
                    sex="male" if rng.random() < 0.35 else "female",
                ),
                reserve=self.reserve,
                start_s=self.start_s,
                seed=seeds[i],
                home_xy=homes.get(i),
                scenarios=plan.get(i, ()),
            )
            for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self.animals)

    def __iter__(self) -> Iterator[SimulatedAnimal]:
        return iter(self.animals)

    def __getitem__(self, i: int) -> SimulatedAnimal:
        return self.animals[i]

    def manifest(self) -> list[dict]:
        """device_id, dev_eui, name, species, sex of every animal (to register the herd with the bridge)."""
        return [
            {"device_id": a.identity.device_id, "dev_eui": a.identity.dev_eui, "name": a.identity.name,
             "species": a.identity.species, "sex": a.identity.sex}
            for a in self.animals
        ]

    def ground_truth(self) -> list[GroundTruthEvent]:
        """Every injected scenario with the alert a ranger should see, in time order."""
        events = [
            GroundTruthEvent(
                device_id=a.identity.device_id,
                name=a.identity.name,
                kind=s.kind,
                start=datetime.fromtimestamp(s.start_s, UTC),
                end=None if s.end_s is None else datetime.fromtimestamp(s.end_s, UTC),
                expected_alert=EXPECTED_ALERT[s.kind],
            )
            for a in self.animals
            for s in a.scenarios
        ]
        return sorted(events, key=lambda e: (e.start, e.device_id))

    def _demo_plan(
        self, rng: np.random.Generator, homes: dict[int, tuple[float, float]]
    ) -> dict[int, tuple[Scenario, ...]]:
        """Pick distinct animals for mortality, a poaching chase, a farmland raid, a collar drop and a
        failing battery."""
        start, end, reserve = self.start_s, self.end_s, self.reserve
        order = [int(i) for i in rng.permutation(self.n)]
        plan: dict[int, tuple[Scenario, ...]] = {}
        wanted = []
        wanted.append(Scenario("mortality", start + 3 * 3600))
        fraction = float(rng.uniform(0.0, 1.0))
        chase_start = next_local_time_s(start + 4 * 3600, 22.0)
        wanted.append(
            Scenario(
                "poaching_chase", chase_start, duration_s=25 * 60, lead_s=3 * 3600,
                place_xy=boundary_point_xy(reserve, fraction, 500.0),
                run_to_xy=boundary_point_xy(reserve, fraction + 0.05, 700.0),
            )
        )
        centres = reserve.farmland_centres_xy()
        farm = centres[int(rng.integers(len(centres)))]
        wanted.append(
            Scenario(
                "farmland_raid", next_local_time_s(start + 18 * 3600, 0.5), duration_s=150 * 60,
                lead_s=3 * 3600, place_xy=farm,
            )
        )
        wanted.append(Scenario("collar_drop", start + 28 * 3600))
        wanted.append(Scenario("low_battery", start + 30 * 3600))
        for animal_index, scenario in zip(order, wanted, strict=False):
            if scenario.start_s + (9 if scenario.kind == "low_battery" else 2) * 3600 > end:
                continue
            plan[animal_index] = (scenario,)
            if scenario.kind == "poaching_chase":
                homes[animal_index] = boundary_point_xy(reserve, fraction, 3500.0)
            elif scenario.kind == "farmland_raid":
                d = math.hypot(*farm)
                homes[animal_index] = (farm[0] - 5000.0 * farm[0] / d, farm[1] - 5000.0 * farm[1] / d)
        return plan

