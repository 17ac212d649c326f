"""Scenario files of Tembo's digital twin: a reserve, a herd, a network and injected events, in TOML.

`load_scenario(path)` reads and validates a file (docs/scenarios.md describes every key); a mistake
raises ScenarioError naming the file and the key (`herd.count: must be a whole number >= 1, got 0`).
`build(scenario)` turns it into a running twin: the Reserve, the animals with their scripted events,
the Network with its outages and holes, and a `Fleet`; `Scenario.truth_events()` lists what a ranger
should hear about (the answer key of `simulator.scoring`).

Times of events are offsets from the start ("3h", "2d 4h", "90m", "45s") or RFC 3339 datetimes.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from collar_firmware import codec
from simulator import movebank
from simulator.animals import (
    ELEPHANT_NAMES,
    AnimalIdentity,
    SimulatedAnimal,
    boundary_point_xy,
    demo_dev_eui,
    demo_device_id,
    random_home_xy,
)
from simulator.animals import (
    Scenario as AnimalEvent,
)
from simulator.network import Network, PathLossModel
from simulator.reserve import Area, Gateway, LocalFrame, Reserve, Road, WaterPoint, demo_reserve

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"

# Event kinds of a scenario file -> what happens in the twin and the alert a ranger should get.
ANIMAL_EVENTS = {  # kind in the file: (animal scenario kind, expected alert types)
    "death": ("mortality", ("mortality", "immobility")),
    "poaching_chase": ("poaching_chase", ("poaching_risk",)),
    "crop_raid": ("farmland_raid", ()),  # the truth is the farmland entry the raid makes (simulator.scoring)
    "collar_drop": ("collar_drop", ("collar_drop",)),
    "twisted_collar": ("twisted_collar", ()),  # no alert: the collar still sits on a living animal
    "battery_failure": ("low_battery", ("low_battery", "battery_critical", "battery_forecast")),
}
NETWORK_EVENTS = ("gateway_outage", "no_coverage", "frame_counter_reset")
EVENT_KINDS = tuple(ANIMAL_EVENTS) + NETWORK_EVENTS
FORMATS = ("tts", "chirpstack")
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?"
                       r"\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Event:
    """One injected event: kind (EVENT_KINDS), the collar (0-based index) it befalls, start and end."""

    kind: str
    start_s: int
    duration_s: int = 0
    collar: int | None = None
    gateway: str | None = None
    area_km: tuple[tuple[float, float], ...] = ()

    @property
    def end_s(self) -> int | None:
        """End of the event, or None when it lasts to the end of the run."""
        return self.start_s + self.duration_s if self.duration_s else None


@dataclass(frozen=True)
class Scenario:
    """A validated scenario file (see docs/scenarios.md)."""

    name: str
    path: Path | None
    seed: int
    start: datetime
    days: float
    reserve: Reserve
    count: int
    names: dict[int, str]
    sexes: dict[int, str]
    settings: dict[str, int]
    model: Path | None
    movebank_file: Path | None
    events: tuple[Event, ...]
    network: dict[str, Any] = field(default_factory=dict)
    library_windows: int = 32

    @property
    def start_s(self) -> int:
        """The start in Unix seconds."""
        return int(self.start.timestamp())

    @property
    def end_s(self) -> int:
        """The end in Unix seconds."""
        return self.start_s + int(self.days * 86400)


# --- reading values, each error naming its key --------------------------------------------------------
class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {key}: {message}")

    def table(self, data: dict, key: str, required: bool = False) -> dict:
        value = data.get(key.rsplit(".", 1)[-1])
        if value is None:
            if required:
                raise self.fail(key, "missing (a [table])")
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table, got {type(value).__name__}")
        return value

    def integer(self, data: dict, key: str, default: int | None = None, low: int | None = None,
                high: int | None = None) -> int:
        value = data.get(key.rsplit(".", 1)[-1], default)
        if value is None:
            raise self.fail(key, "missing (a whole number)")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be a whole number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.fail(key, f"must be within {low}..{high if high is not None else 'any'}, got {value}")
        return value

    def number(self, data: dict, key: str, default: float | None = None, low: float | None = None) -> float:
        value = data.get(key.rsplit(".", 1)[-1], default)
        if value is None:
            raise self.fail(key, "missing (a number)")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, f"must be a number, got {value!r}")
        if low is not None and value < low:
            raise self.fail(key, f"must be at least {low}, got {value}")
        return float(value)

    def text(self, data: dict, key: str, default: str | None = None, choices: tuple[str, ...] | None = None) -> str:
        value = data.get(key.rsplit(".", 1)[-1], default)
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def point(self, value: Any, key: str) -> tuple[float, float]:
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
            raise self.fail(key, f"must be [east_km, north_km], got {value!r}")
        return float(value[0]), float(value[1])

    def ring(self, value: Any, key: str, minimum: int = 3) -> tuple[tuple[float, float], ...]:
        if not isinstance(value, list) or len(value) < minimum:
            raise self.fail(key, f"must be a list of at least {minimum} [east_km, north_km] points")
        return tuple(self.point(p, f"{key}[{i}]") for i, p in enumerate(value))

    def when(self, value: Any, key: str, start: datetime) -> int:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise self.fail(key, "a datetime needs a time zone (e.g. 2026-03-01T22:00:00Z)")
            return int(value.timestamp())
        return int(start.timestamp()) + self.duration(value, key)

    def duration(self, value: Any, key: str) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        match = _DURATION.match(value) if isinstance(value, str) and value.strip() else None
        if match is None or not any(match.groups()):
            raise self.fail(key, f"must be a duration like \"3h\", \"2d 4h\", \"90m\" or seconds, got {value!r}")
        d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
        return int(round(d * 86400 + h * 3600 + m * 60 + s))


# --- the file --------------------------------------------------------------------------------------
def named_path(name_or_path: str | Path) -> Path:
    """A scenario by file path, or by name from the project's scenarios/ folder ("quick", "standard")."""
    path = Path(name_or_path)
    if path.exists() or path.suffix == ".toml":
        return path
    return SCENARIO_DIR / f"{name_or_path}.toml"


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Read and validate a scenario file; ScenarioError naming the key when something is wrong."""
    path = named_path(name_or_path)
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
        raise ScenarioError(f"{path}: no such scenario file (the project's scenarios: {known})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{path}: not valid TOML: {err}") from None
    return parse_scenario(data, source=str(path), base_dir=path.parent)


_TOP_KEYS = {"name", "seed", "start", "duration", "reserve", "herd", "network", "events", "twin"}


def parse_scenario(data: dict, source: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    """Validate a scenario already read from TOML (see load_scenario)."""
    r = _Reader(source)
    base_dir = base_dir or Path.cwd()
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise r.fail(unknown[0], f"unknown key; expected some of {', '.join(sorted(_TOP_KEYS))}")
    name = r.text(data, "name")
    seed = r.integer(data, "seed", low=0)
    start = data.get("start", datetime(2026, 3, 1, tzinfo=UTC))
    if not isinstance(start, datetime) or start.tzinfo is None:
        raise r.fail("start", f"must be a datetime with a time zone (2026-03-01T00:00:00Z), got {start!r}")
    duration_s = r.duration(data.get("duration"), "duration") if "duration" in data else None
    if not duration_s:
        raise r.fail("duration", "missing or zero (e.g. \"30d\")")
    reserve = _reserve(r, r.table(data, "reserve"))
    herd = r.table(data, "herd", required=True)
    source_kind = r.text(herd, "herd.source", default="simulated", choices=("simulated", "movebank"))
    movebank_file = None
    if source_kind == "movebank":
        movebank_file = (base_dir / r.text(herd, "herd.movebank_file")).resolve()
    count = r.integer(herd, "herd.count", default=None if source_kind == "simulated" else 0, low=0, high=10_000)
    if source_kind == "simulated" and count < 1:
        raise r.fail("herd.count", f"must be a whole number >= 1, got {count}")
    settings = _settings(r, r.table(herd, "herd.settings"))
    model = None
    if "model" in herd:
        model = (base_dir / r.text(herd, "herd.model")).resolve()
        if not model.exists():
            raise r.fail("herd.model", f"model blob {model} not found")
    names, sexes = {}, {}
    individuals = herd.get("individuals", [])
    if not isinstance(individuals, list):
        raise r.fail("herd.individuals", "must be an array of tables [[herd.individuals]]")
    for i, row in enumerate(individuals):
        key = f"herd.individuals[{i}]"
        if not isinstance(row, dict):
            raise r.fail(key, "must be a table")
        collar = r.integer(row, f"{key}.collar", low=1, high=max(count, 1)) - 1
        if "name" in row:
            names[collar] = r.text(row, f"{key}.name")
        if "sex" in row:
            sexes[collar] = r.text(row, f"{key}.sex", choices=("female", "male"))
    twin = r.table(data, "twin")
    library_windows = r.integer(twin, "twin.library_windows", default=32, low=0, high=4096)
    network = _network(r, r.table(data, "network"), reserve)
    raw_events = data.get("events", [])
    if not isinstance(raw_events, list):
        raise r.fail("events", "must be an array of tables [[events]]")
    events = tuple(_event(r, e, i, start, count, reserve) for i, e in enumerate(raw_events))
    end_s = int(start.timestamp()) + duration_s
    for i, e in enumerate(events):
        if e.start_s >= end_s:
            raise r.fail(f"events[{i}].at", "falls after the end of the scenario")
    return Scenario(name=name, path=Path(source) if source != "<scenario>" else None, seed=seed, start=start,
                    days=duration_s / 86400, reserve=reserve, count=count, names=names, sexes=sexes,
                    settings=settings, model=model, movebank_file=movebank_file, events=events,
                    network=network, library_windows=library_windows)


def _settings(r: _Reader, table: dict) -> dict[str, int]:
    rows = {row[1]: row for row in codec.SETTINGS}
    out = {}
    for key in table:
        row = rows.get(key)
        if row is None:
            raise r.fail(f"herd.settings.{key}", f"unknown collar setting; known: {', '.join(sorted(rows))}")
        out[key] = r.integer(table, f"herd.settings.{key}", low=row[3], high=row[4])
    return out


def _network(r: _Reader, table: dict, reserve: Reserve) -> dict[str, Any]:
    return {
        "format": r.text(table, "network.format", default="tts", choices=FORMATS),
        "loss_probability": r.number(table, "network.loss_probability", default=0.02, low=0.0),
        "duplicate_probability": r.number(table, "network.duplicate_probability", default=0.01, low=0.0),
        "path_loss_exponent": r.number(table, "network.path_loss_exponent", default=2.7, low=1.5),
        "shadowing_sigma_db": r.number(table, "network.shadowing_sigma_db", default=6.0, low=0.0),
        "application_id": r.text(table, "network.application_id", default="tembo-demo"),
    }


def _reserve(r: _Reader, table: dict) -> Reserve:
    if not table or table.get("base") == "demo":
        extra = {k for k in table if k != "base"}
        if extra:
            raise r.fail(f"reserve.{sorted(extra)[0]}", "the demo reserve takes no geometry; drop base or the key")
        return demo_reserve()
    centre = table.get("centre")
    if (not isinstance(centre, list) or len(centre) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in centre)):
        raise r.fail("reserve.centre", f"must be [lon, lat] in degrees, got {centre!r}")
    frame = LocalFrame(float(centre[0]), float(centre[1]))

    def ll(p: tuple[float, float]) -> tuple[float, float]:
        lon, lat = frame.to_lonlat(p[0] * 1000.0, p[1] * 1000.0)
        return round(lon, 6), round(lat, 6)

    name = r.text(table, "reserve.name", default="reserve")
    boundary = Area(name, tuple(ll(p) for p in r.ring(table.get("boundary_km"), "reserve.boundary_km")))

    def areas(kind: str) -> tuple[Area, ...]:
        out = []
        for i, row in enumerate(_rows(r, table, kind)):
            key = f"reserve.{kind}[{i}]"
            out.append(Area(r.text(row, f"{key}.name"), tuple(ll(p) for p in r.ring(row.get("ring_km"), f"{key}.ring_km"))))
        return tuple(out)

    water = tuple(WaterPoint(r.text(row, f"reserve.water[{i}].name"),
                             *ll(r.point(row.get("at_km"), f"reserve.water[{i}].at_km")))
                  for i, row in enumerate(_rows(r, table, "water")))
    roads = tuple(Road(r.text(row, f"reserve.roads[{i}].name"),
                       tuple(ll(p) for p in r.ring(row.get("line_km"), f"reserve.roads[{i}].line_km", 2)))
                  for i, row in enumerate(_rows(r, table, "roads")))
    gateways = []
    for i, row in enumerate(_rows(r, table, "gateways")):
        key = f"reserve.gateways[{i}]"
        lon, lat = ll(r.point(row.get("at_km"), f"{key}.at_km"))
        gateways.append(Gateway(r.text(row, f"{key}.id"), r.text(row, f"{key}.name", default=row.get("id")), lon, lat,
                                r.number(row, f"{key}.height_m", default=10.0, low=0.0),
                                r.number(row, f"{key}.range_m", default=15_000.0, low=1.0),
                                eui=r.text(row, f"{key}.eui", default=f"7076FF00650{i:05X}")))
    if not gateways:
        raise r.fail("reserve.gateways", "a reserve needs at least one gateway ([[reserve.gateways]])")
    try:
        return Reserve(name=name, frame=frame, boundary=boundary, farmland=areas("farmland"), water=water,
                       roads=roads, gateways=tuple(gateways), villages=areas("villages"))
    except ValueError as err:
        raise r.fail("reserve", str(err)) from None


def _rows(r: _Reader, table: dict, kind: str) -> list[dict]:
    rows = table.get(kind, [])
    if not isinstance(rows, list) or not all(isinstance(x, dict) for x in rows):
        raise r.fail(f"reserve.{kind}", f"must be an array of tables [[reserve.{kind}]]")
    return rows


def _event(r: _Reader, row: Any, i: int, start: datetime, count: int, reserve: Reserve) -> Event:
    key = f"events[{i}]"
    if not isinstance(row, dict):
        raise r.fail(key, "must be a table [[events]]")
    kind = r.text(row, f"{key}.kind", choices=EVENT_KINDS)
    if "at" not in row:
        raise r.fail(f"{key}.at", "missing (when it starts: \"3h\", \"2d 4h\" or a datetime)")
    start_s = r.when(row["at"], f"{key}.at", start)
    duration_s = r.duration(row["duration"], f"{key}.duration") if "duration" in row else 0
    if kind in ("poaching_chase", "crop_raid", "gateway_outage", "no_coverage") and not duration_s:
        raise r.fail(f"{key}.duration", f"a {kind} needs a duration")
    collar = gateway = None
    area: tuple[tuple[float, float], ...] = ()
    if kind in ANIMAL_EVENTS or kind == "frame_counter_reset":
        collar = r.integer(row, f"{key}.collar", low=1, high=max(count, 1)) - 1
    elif kind == "gateway_outage":
        gateway = r.text(row, f"{key}.gateway", choices=tuple(g.gateway_id for g in reserve.gateways))
    else:
        area = r.ring(row.get("area_km"), f"{key}.area_km")
    return Event(kind, start_s, duration_s, collar, gateway, area)


# --- building the twin -----------------------------------------------------------------------------
def _identity(scenario: Scenario, i: int, rng: np.random.Generator) -> AnimalIdentity:
    default = ELEPHANT_NAMES[i % len(ELEPHANT_NAMES)] + ("" if i < len(ELEPHANT_NAMES) else f" {i}")
    sex = scenario.sexes.get(i) or ("male" if rng.random() < 0.35 else "female")
    return AnimalIdentity(demo_device_id(i), demo_dev_eui(i), scenario.names.get(i, default), sex=sex)


def animals(scenario: Scenario) -> list:
    """The scenario's animals: simulated elephants acting out their events, or replayed Movebank tracks."""
    if scenario.movebank_file is not None:
        return _replayed(scenario)
    reserve, rng = scenario.reserve, np.random.default_rng(scenario.seed)
    seeds = np.random.SeedSequence(scenario.seed).spawn(scenario.count)
    plan: dict[int, list[AnimalEvent]] = {}
    homes: dict[int, tuple[float, float]] = {}
    centres = reserve.farmland_centres_xy()
    for e in scenario.events:
        if e.kind not in ANIMAL_EVENTS:
            continue
        kind = ANIMAL_EVENTS[e.kind][0]
        if kind == "poaching_chase":
            fraction = float(rng.uniform(0.0, 1.0))
            plan.setdefault(e.collar, []).append(AnimalEvent(
                kind, e.start_s, e.duration_s, lead_s=3 * 3600, place_xy=boundary_point_xy(reserve, fraction, 500.0),
                run_to_xy=boundary_point_xy(reserve, fraction + 0.05, 700.0)))
            homes.setdefault(e.collar, boundary_point_xy(reserve, fraction, 3500.0))
        elif kind == "farmland_raid":
            if not centres:
                raise ScenarioError(f"{scenario.path}: events: a crop_raid needs farmland in the reserve")
            farm = centres[int(rng.integers(len(centres)))]
            plan.setdefault(e.collar, []).append(AnimalEvent(kind, e.start_s, e.duration_s, lead_s=3 * 3600,
                                                             place_xy=farm))
            d = math.hypot(*farm) or 1.0
            homes.setdefault(e.collar, (farm[0] - 5000.0 * farm[0] / d, farm[1] - 5000.0 * farm[1] / d))
        else:
            plan.setdefault(e.collar, []).append(AnimalEvent(kind, e.start_s, e.duration_s))
    out = []
    for i in range(scenario.count):
        home = homes.get(i) or random_home_xy(reserve, np.random.default_rng(seeds[i].spawn(1)[0]))
        out.append(SimulatedAnimal(identity=_identity(scenario, i, rng), reserve=reserve, start_s=scenario.start_s,
                                   seed=seeds[i], home_xy=home, scenarios=tuple(plan.get(i, ()))))
    return out


def _replayed(scenario: Scenario) -> list:
    path = scenario.movebank_file
    if path is not None and path.exists():
        tracks = movebank.read_movebank(path)
    else:
        tracks = {"Tembo walker": own_track(scenario.start_s - 86400, scenario.days + 2, scenario.seed)}
    replays = movebank.replay_animals(tracks, scenario.start_s, scenario.reserve, start_in_reserve=True)
    return replays[: scenario.count] if scenario.count else replays


def own_track(start_s: int, days: float, seed: int) -> movebank.Track:
    """A small track the project makes itself (15-minute fixes of a simulated elephant), used when the
    real Movebank file is absent, so a replay scenario still loads and runs."""
    reserve = demo_reserve()
    animal = SimulatedAnimal(AnimalIdentity("track", "0" * 16, "Tembo walker"), reserve, start_s, seed)
    table = animal.table(start_s + int(days * 86400))
    table = table.iloc[::15]
    return movebank.Track("Tembo walker", "Loxodonta africana", "tembo", table["time_s"].to_numpy(),
                          table["lat"].to_numpy(), table["lon"].to_numpy())


def network(scenario: Scenario) -> Network:
    """The scenario's network: its gateways, radio parameters, outages and holes."""
    spec = scenario.network
    seeds = np.random.SeedSequence([scenario.seed, 0x7E3B0]).spawn(2)
    net = Network(scenario.reserve.gateways, seed=seeds[0],
                  path_loss=PathLossModel(exponent=spec.get("path_loss_exponent", 2.7),
                                          shadowing_sigma_db=spec.get("shadowing_sigma_db", 6.0)),
                  loss_probability=spec.get("loss_probability", 0.02),
                  duplicate_probability=spec.get("duplicate_probability", 0.01),
                  application_id=spec.get("application_id", "tembo-demo"))
    frame = scenario.reserve.frame
    for e in scenario.events:
        end = e.end_s if e.end_s is not None else scenario.end_s
        if e.kind == "gateway_outage":
            net.add_outage(e.gateway, e.start_s, end)
        elif e.kind == "no_coverage":
            net.add_hole([frame.to_lonlat(x * 1000.0, y * 1000.0) for x, y in e.area_km], e.start_s, end)
    return net


def fleet(scenario: Scenario, until_s: int | None = None, on_window=None, library_windows: int | None = None):
    """A simulator.fleet.Fleet running the scenario (to until_s when given)."""
    from simulator.fleet import Fleet

    herd = animals(scenario)
    rejoins: dict[str, list[int]] = {}
    for e in scenario.events:
        if e.kind == "frame_counter_reset" and e.collar < len(herd):
            rejoins.setdefault(herd[e.collar].identity.device_id, []).append(e.start_s)
    end_s = min(until_s, scenario.end_s) if until_s else scenario.end_s
    settings = dict(scenario.settings)
    f = Fleet(n_collars=len(herd), seed=scenario.seed, start=scenario.start, days=(end_s - scenario.start_s) / 86400,
              network=network(scenario), animals=herd, reserve=scenario.reserve, settings=settings or None,
              library_windows=scenario.library_windows if library_windows is None else library_windows,
              on_window=on_window, rejoins=rejoins)
    if scenario.model is not None:
        for w in f._wearers:
            w.hal.storage.write("model", scenario.model.read_bytes())
            w.collar.reload_model()
            f.remember_passes(w.collar)
    return f
