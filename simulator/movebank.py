"""Replay of real GPS tracks from Movebank CSV files through Tembo's digital twin.

`read_movebank(path)` reads a Movebank CSV (plain or .gz) into one `Track` per individual: fixes with
visible == False or no coordinates are dropped, times are UTC Unix seconds, sorted, one fix per second;
animal and tag ids are kept as the text the study wrote ("007" stays "007"). The file may be a study saved again
by a spreadsheet (";" and decimal commas, a byte-order mark) or read through Movebank's API or R (`location_long`);
a time or coordinate that does not parse is refused naming its row; only the columns a replay reads are read, a
chunk of rows at a time.
`MovebankReplay` plays a track as a collar would experience it: the track's first fix is moved to the
simulation start, positions between fixes are interpolated linearly, and the behaviour is inferred
from the speed between fixes. After the last fix the animal stays where it was last seen. A track
from elsewhere (Salif Keita ranged in Mali) can be moved, shape and speed intact, so that its first
fix lands on a point of the reserve (`start_at`). `replay_animals` wears a collar on each track of two fixes or
more (a shorter one, a tag that failed, is logged and left out).
"""

from __future__ import annotations

import gzip
import logging
import re
from dataclasses import dataclass
from os import PathLike

import numpy as np
import pandas as pd

from collar_firmware.codec import BEHAVIOURS
from simulator.animals import AnimalIdentity, AnimalState, demo_dev_eui, demo_device_id
from simulator.reserve import Reserve, distance_m

log = logging.getLogger(__name__)

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
READ_COLUMNS = (*REQUIRED_COLUMNS, VISIBLE, TAXON, TAG_ID, NICKNAME)  # all a replay reads of a study's download
# How Movebank (empty), R's write.csv (NA) and pandas spell a value that is not there.
MISSING = frozenset({"", "na", "nan", "null", "<na>"})
CHUNK_ROWS = 100_000  # rows read at a time

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


def _key(name: str) -> str:
    """An attribute name without case and punctuation: Movebank's CSV writes `location-long`, its REST API and
    R's move2 `location_long`, R's move `location.long`."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def _separator(path: str | PathLike[str]) -> str:
    """The field separator from the header line: "," as Movebank writes, or ";" (a spreadsheet in a locale whose
    decimal mark is a comma saved the study again) or a tab when the header holds those and no comma."""
    opener = gzip.open if str(path).lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        header = f.readline()
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    return "," if counts[","] or not max(counts.values()) else max(counts, key=counts.get)


def _numbers(text: pd.Series, decimal_comma: bool, path: object, column: str, rows: pd.Index) -> np.ndarray:
    """The column's numbers (NaN where empty or NA); ValueError naming the file, line and column of any other
    text that is not a number."""
    given = text.str.strip()
    missing = given.str.lower().isin(MISSING)
    if decimal_comma:
        given = given.str.replace(",", ".", regex=False)
    values = pd.to_numeric(given.where(~missing), errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~missing.to_numpy() & ~np.isfinite(values))
    if len(bad):
        raise ValueError(f"{path}, row {rows[bad[0]] + 2}, column {column!r}: {text.iloc[bad[0]]!r} is not a number")
    return values


def _fixes(chunk: pd.DataFrame, path: object, decimal_comma: bool) -> pd.DataFrame:
    """The visible fixes with coordinates of a chunk of rows: Unix seconds, lat, lon and the text columns."""
    chunk = chunk.loc[~(chunk == "").all(axis=1)]  # blank lines (read as rows, so rows keep their line numbers)
    keep = np.ones(len(chunk), dtype=bool)
    if VISIBLE in chunk.columns:
        keep &= chunk[VISIBLE].str.strip().str.lower().isin(("true", "1")).to_numpy()
    lon = _numbers(chunk[LON], decimal_comma, path, LON, chunk.index)
    lat = _numbers(chunk[LAT], decimal_comma, path, LAT, chunk.index)
    keep &= np.isfinite(lon) & np.isfinite(lat)  # Movebank keeps events without a location (no fix)
    outside = np.flatnonzero(keep & ((np.abs(lat) > 90) | (np.abs(lon) > 180)))
    if len(outside):
        i = outside[0]
        raise ValueError(f"{path}, row {chunk.index[i] + 2}: location ({lon[i]}, {lat[i]}) is not a longitude "
                         "and latitude in degrees")
    fixes = chunk.loc[keep].copy()
    fixes[LON], fixes[LAT] = lon[keep], lat[keep]
    stamps = pd.to_datetime(fixes[TIMESTAMP].str.strip(), utc=True, format="ISO8601", errors="coerce")
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if len(bad):
        raise ValueError(f"{path}, row {fixes.index[bad[0]] + 2}, column {TIMESTAMP!r}: "
                         f"{fixes[TIMESTAMP].iloc[bad[0]]!r} is not a time as Movebank writes it "
                         "(yyyy-MM-dd HH:mm:ss.SSS, UTC)")
    fixes["_time_s"] = ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
    return fixes.drop(columns=[c for c in (TIMESTAMP, VISIBLE) if c in fixes.columns])


def read_movebank(path: str | PathLike[str]) -> dict[str, Track]:
    """Read a Movebank CSV (or .csv.gz) into {individual-local-identifier: Track}.

    Movebank's attribute names, or as its REST API and R spell them (`location_long`, `location.long`); commas
    between fields, or semicolons and decimal commas as a spreadsheet saves a study again; a UTF-8 byte-order mark.
    Only the columns read, CHUNK_ROWS rows at a time: a study's download holds every sensor's events (acceleration
    bursts without a location among them) beside columns a replay does not read. A time or coordinate that does
    not parse is a ValueError naming the file, the row (1 = the header) and the column."""
    sep = _separator(path)
    header = list(pd.read_csv(path, nrows=0, sep=sep).columns)
    by_key: dict[str, str] = {}
    for name in header:
        by_key.setdefault(_key(name), name)
    names = {a: a if a in header else by_key[_key(a)] for a in READ_COLUMNS if a in header or _key(a) in by_key}
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{path}: not a Movebank CSV, missing columns {missing}; the file has {header}")
    chunks = pd.read_csv(path, sep=sep, usecols=list(names.values()), dtype=str, keep_default_na=False,
                         skip_blank_lines=False, chunksize=CHUNK_ROWS)
    renamed = {column: attribute for attribute, column in names.items()}
    parts = [_fixes(chunk.rename(columns=renamed), path, sep != ",") for chunk in chunks]
    return tracks_from_table(pd.concat(parts) if parts else pd.DataFrame(columns=[*names, "_time_s"]))


def tracks_from_table(table: pd.DataFrame) -> dict[str, Track]:
    """Split a table of fixes (`_fixes`: Unix seconds in `_time_s`) into per-individual Tracks, sorted by time,
    one fix a second; events of no individual (a tag before or after its deployment) are no animal's."""
    table = table.loc[~table[INDIVIDUAL].str.strip().str.lower().isin(MISSING)]
    tracks = {}
    for individual, rows in table.groupby(INDIVIDUAL, sort=True):
        rows = rows.sort_values("_time_s", kind="stable").drop_duplicates("_time_s", keep="first")
        tracks[str(individual)] = Track(
            individual=str(individual),
            taxon=_first_text(rows, TAXON),
            tag_id=_first_text(rows, TAG_ID),
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
    """One MovebankReplay per track of two fixes or more (a shorter one is logged and left out), with demo device
    ids from first_index (tracks sorted by individual).

    start_in_reserve moves each track so it starts near the reserve's centre (needs reserve), the
    animals spaced spacing_m apart from west to east.
    """
    if start_in_reserve and reserve is None:
        raise ValueError("start_in_reserve needs a reserve")
    ordered = []
    for track in sorted(tracks.values() if isinstance(tracks, dict) else tracks, key=lambda t: t.individual):
        if len(track) < 2:  # a tag that failed after its first fix: the study's other animals still replay
            log.warning("movebank track too short to replay, left out",
                        extra={"individual": track.individual, "tag": track.tag_id, "fixes": len(track)})
            continue
        ordered.append(track)
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
