"""Replay of real GPS tracks from Movebank CSV files through Tembo's digital twin.

`read_movebank(path)` reads a Movebank CSV (plain or .gz) into one `Track` per individual: fixes with
visible == False or no coordinates are dropped, times are UTC Unix seconds, sorted, one fix per second;
animal and tag ids are kept as the text the study wrote ("007" stays "007").
`MovebankReplay` plays a track as a collar would experience it: the track's first fix is moved to the
simulation start, positions between fixes are interpolated linearly, and the behaviour is inferred
from the speed between fixes. After the last fix the animal stays where it was last seen. A track
from elsewhere (Salif Keita ranged in Mali) can be moved, shape and speed intact, so that its first
fix lands on a point of the reserve (`start_at`). `replay_animals` wears a collar on each track.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike

import numpy as np
import pandas as pd

from collar_firmware.codec import BEHAVIOURS
from simulator.animals import AnimalIdentity, AnimalState, demo_dev_eui, demo_device_id
from simulator.reserve import Reserve, distance_m

# Movebank CSV columns Tembo reads.
EVENT_ID = "event-id"
VISIBLE = "visible"
TIMESTAMP = "timestamp"
LON = "location-long"
LAT = "location-lat"
TAXON = "individual-taxon-canonical-name"
TAG_ID = "tag-local-identifier"
INDIVIDUAL = "individual-local-identifier"
STUDY = "study-name"
# Movebank's "animal nickname": a display name beside the individual's id (Tembo's own export writes the
# animal's Tembo id as the individual and its name here).
NICKNAME = "animal-nickname"
REQUIRED_COLUMNS = (TIMESTAMP, LON, LAT, INDIVIDUAL)
# Identifiers and names, read as the text the study wrote: read as numbers, animal "007" would be 7 (and
# merge with an animal "7"), and a tag "0042" would be 42.
TEXT_COLUMNS = (EVENT_ID, TAXON, TAG_ID, INDIVIDUAL, STUDY, NICKNAME)

# Speed between fixes (m/s) above which a replayed animal counts as forage / walk / run.
FORAGE_ABOVE_MPS = 0.02
WALK_ABOVE_MPS = 0.3
RUN_ABOVE_MPS = 2.0


@dataclass(frozen=True)
class Track:
    """One individual's fixes: time_s (int64 Unix seconds UTC), lat and lon (degrees) arrays; nickname the
    study's display name for it ("" when it gives none)."""

    individual: str
    taxon: str
    tag_id: str
    time_s: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    nickname: str = ""

    @property
    def name(self) -> str:
        """What a replay calls the animal: the study's nickname, else its individual id."""
        return self.nickname or self.individual

    def __len__(self) -> int:
        return len(self.time_s)

    @property
    def duration_s(self) -> int:
        """Seconds from the first to the last fix."""
        return int(self.time_s[-1] - self.time_s[0])

    def position_at(self, t_s: float) -> tuple[float, float]:
        """(lat, lon) at Unix second t_s, linear between fixes, held at the ends."""
        return float(np.interp(t_s, self.time_s, self.lat)), float(np.interp(t_s, self.time_s, self.lon))

    def speed_mps_at(self, t_s: float) -> float:
        """Speed (m/s) over the fix interval that contains t_s (0 outside the track)."""
        i = int(np.searchsorted(self.time_s, t_s, side="right")) - 1
        if i < 0 or i >= len(self.time_s) - 1:
            return 0.0
        d = distance_m(self.lon[i], self.lat[i], self.lon[i + 1], self.lat[i + 1])
        return d / float(self.time_s[i + 1] - self.time_s[i])


def read_movebank(path: str | PathLike[str]) -> dict[str, Track]:
    """Read a Movebank CSV (or .csv.gz) into {individual-local-identifier: Track}."""
    table = pd.read_csv(path, low_memory=False, dtype=dict.fromkeys(TEXT_COLUMNS, str))
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a Movebank CSV, missing columns {missing}")
    return tracks_from_table(table)


def tracks_from_table(table: pd.DataFrame) -> dict[str, Track]:
    """Split a Movebank table into per-individual Tracks (drops invisible and coordinate-less fixes)."""
    keep = table[LON].notna() & table[LAT].notna()
    if VISIBLE in table.columns:
        keep &= table[VISIBLE].astype(str).str.lower().isin(("true", "1"))
    table = table.loc[keep].copy()
    stamps = pd.to_datetime(table[TIMESTAMP], utc=True, format="mixed")
    table["_time_s"] = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    tracks = {}
    for individual, rows in table.groupby(INDIVIDUAL, sort=True):
        rows = rows.sort_values("_time_s").drop_duplicates("_time_s", keep="first")
        tracks[str(individual)] = Track(
            individual=str(individual),
            taxon=str(rows[TAXON].iloc[0]) if TAXON in rows else "",
            tag_id=str(rows[TAG_ID].iloc[0]) if TAG_ID in rows else "",
            time_s=rows["_time_s"].to_numpy(dtype=np.int64),
            lat=rows[LAT].to_numpy(dtype=float),
            lon=rows[LON].to_numpy(dtype=float),
            nickname=_first_text(rows, NICKNAME),
        )
    return tracks


def _first_text(rows: pd.DataFrame, column: str) -> str:
    """The first non-empty text of column in rows ("" when the study has no such column or leaves it empty)."""
    if column not in rows:
        return ""
    given = rows[column].dropna()
    given = given[given.str.strip() != ""]
    return str(given.iloc[0]).strip() if len(given) else ""


def moved_track(track: Track, lon: float, lat: float) -> Track:
    """The track moved so its first fix is at (lon, lat), kept to scale in metres east and north."""
    lat0, lon0 = float(track.lat[0]), float(track.lon[0])
    north = track.lat - lat0
    east_scaled = (track.lon - lon0) * np.cos(np.radians(track.lat)) / np.cos(np.radians(lat))
    return Track(
        individual=track.individual, taxon=track.taxon, tag_id=track.tag_id, time_s=track.time_s,
        lat=lat + north, lon=lon + east_scaled, nickname=track.nickname,
    )


def replay_animals(
    tracks: dict[str, Track] | list[Track],
    start_s: int,
    reserve: Reserve | None = None,
    start_in_reserve: bool = False,
    first_index: int = 0,
    spacing_m: float = 3000.0,
) -> list[MovebankReplay]:
    """One MovebankReplay per track, with demo device ids from first_index (tracks sorted by individual).

    start_in_reserve moves each track so it starts near the reserve's centre (needs reserve), the
    animals spaced spacing_m apart from west to east.
    """
    if start_in_reserve and reserve is None:
        raise ValueError("start_in_reserve needs a reserve")
    ordered = sorted(tracks.values() if isinstance(tracks, dict) else tracks, key=lambda t: t.individual)
    animals = []
    for k, track in enumerate(ordered):
        i = first_index + k
        identity = AnimalIdentity(demo_device_id(i), demo_dev_eui(i), track.name,
                                  species=track.taxon or "Loxodonta africana")
        start_at = None
        if start_in_reserve and reserve is not None:
            start_at = reserve.frame.to_lonlat((k - (len(ordered) - 1) / 2) * spacing_m, 0.0)
        animals.append(MovebankReplay(track, identity, start_s, reserve, start_at=start_at))
    return animals


def behaviour_from_speed(speed_mps: float) -> str:
    """Behaviour a replayed animal is given for its speed between fixes."""
    if speed_mps >= RUN_ABOVE_MPS:
        return BEHAVIOURS[3]
    if speed_mps >= WALK_ABOVE_MPS:
        return BEHAVIOURS[2]
    if speed_mps >= FORAGE_ABOVE_MPS:
        return BEHAVIOURS[1]
    return BEHAVIOURS[0]


class MovebankReplay:
    """A real track played as a simulated animal (same `identity` / `state_at` as SimulatedAnimal)."""

    def __init__(
        self,
        track: Track,
        identity: AnimalIdentity,
        start_s: int,
        reserve: Reserve | None = None,
        start_at: tuple[float, float] | None = None,
    ) -> None:
        if len(track) < 2:
            raise ValueError(f"track of {track.individual!r} has {len(track)} fix(es); replay needs two")
        if start_at is not None:
            track = moved_track(track, *start_at)
        self.track = track
        self.identity = identity
        self.start_s = int(start_s)
        self.reserve = reserve
        self.offset_s = int(track.time_s[0]) - self.start_s  # add to simulation time to get track time

    def __repr__(self) -> str:
        return f"MovebankReplay({self.track.individual!r}, device_id={self.identity.device_id!r})"

    def state_at(self, t_s: float) -> AnimalState:
        """Where the replayed animal is at simulation second t_s, and its speed-inferred behaviour."""
        track_t = max(float(t_s), float(self.start_s)) + self.offset_s
        lat, lon = self.track.position_at(track_t)
        behaviour = behaviour_from_speed(self.track.speed_mps_at(track_t))
        reserve = self.reserve
        return AnimalState(
            t_s=int(t_s),
            lat=lat,
            lon=lon,
            behaviour=behaviour,
            motion=behaviour,
            in_farmland=reserve is not None and reserve.farmland_at(lon, lat) is not None,
            inside_reserve=reserve is None or reserve.contains(lon, lat),
        )
