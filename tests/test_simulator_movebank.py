"""Replaying real Movebank tracks through the digital twin (tiny fixture made by the project)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from simulator.animals import AnimalIdentity
from simulator.movebank import MovebankReplay, read_movebank, replay_animals
from simulator.reserve import demo_reserve, distance_m

FIXTURE = Path(__file__).parent / "fixtures" / "movebank_tiny.csv"
NOON = int(datetime(2014, 1, 23, 12, tzinfo=UTC).timestamp())
SIM_START = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())


def _walker_replay() -> MovebankReplay:
    track = read_movebank(FIXTURE)["Tiny Walker"]
    return MovebankReplay(track, AnimalIdentity("replay-01", "70B3D57ED0069001", "Tiny Walker"), SIM_START,
                          demo_reserve())


def test_movebank_csv_splits_into_one_track_per_individual_without_hidden_or_empty_fixes():
    tracks = read_movebank(FIXTURE)
    assert sorted(tracks) == ["Tiny Sleeper", "Tiny Walker"]
    walker = tracks["Tiny Walker"]
    assert walker.time_s.tolist() == [NOON, NOON + 900, NOON + 1800, NOON + 3600]
    assert walker.taxon == "Loxodonta africana" and walker.tag_id == "901"
    assert walker.duration_s == 3600


def test_movebank_gzipped_csv_reads_the_same(tmp_path):
    packed = tmp_path / "tiny.csv.gz"
    packed.write_bytes(gzip.compress(FIXTURE.read_bytes()))
    assert read_movebank(packed)["Tiny Walker"].time_s.tolist() == read_movebank(FIXTURE)["Tiny Walker"].time_s.tolist()


def test_a_twin_replaying_a_study_names_its_elephants_007_07_and_7_as_the_study_does(tmp_path):
    # A study whose animal and tag ids are written with leading zeros: read as numbers, "007" and "07" would both
    # be the elephant 7, one track of three animals' fixes under a name the study never used.
    header, *rows = FIXTURE.read_text().splitlines()
    walker = [row for row in rows if ",Tiny Walker," in row]
    study = [header]
    for individual, tag in (("007", "0042"), ("07", "042"), ("7", "42")):
        study += [row.replace(",901,Tiny Walker,", f",{tag},{individual},") for row in walker]
    path = tmp_path / "study.csv"
    path.write_text("\n".join(study) + "\n")

    tracks = read_movebank(path)
    assert sorted(tracks) == ["007", "07", "7"]
    assert {name: track.tag_id for name, track in tracks.items()} == {"007": "0042", "07": "042", "7": "42"}
    assert [len(track) for track in tracks.values()] == [4, 4, 4]
    replays = replay_animals(tracks, SIM_START)
    assert [replay.identity.name for replay in replays] == ["007", "07", "7"]


def test_a_study_tembo_exported_replays_its_animals_under_their_names_and_keeps_two_of_one_name_apart(tmp_path):
    # Tembo's Movebank export names the individual by the animal's id and gives its name as Movebank's
    # animal-nickname; replayed, the animals are called by name, and two animals called alike stay two.
    header, *rows = FIXTURE.read_text().splitlines()
    walker = [row for row in rows if ",Tiny Walker," in row]
    study = [header + ",animal-nickname"]
    for individual, nickname in (("17", "Tembo"), ("18", "Tembo"), ("19", "")):
        study += [row.replace(",Tiny Walker,", f",{individual},") + f",{nickname}" for row in walker]
    path = tmp_path / "tembo-export.csv"
    path.write_text("\n".join(study) + "\n")

    tracks = read_movebank(path)
    assert sorted(tracks) == ["17", "18", "19"]
    replays = replay_animals(tracks, SIM_START)
    assert [replay.identity.name for replay in replays] == ["Tembo", "Tembo", "19"]
    assert len({replay.identity.device_id for replay in replays}) == 3


def test_a_file_without_movebank_columns_is_refused(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,x,y\n1,2,3\n")
    with pytest.raises(ValueError, match="location-long"):
        read_movebank(bad)


def test_replay_starts_at_the_first_fix_and_interpolates_between_fixes():
    replay = _walker_replay()
    first = replay.state_at(SIM_START)
    assert (first.lat, first.lon) == pytest.approx((0.57, 37.58))
    halfway = replay.state_at(SIM_START + 450)  # half of the 900 m walked north in 15 min
    assert halfway.lat == pytest.approx((0.57 + 0.5780938) / 2)
    assert halfway.lon == pytest.approx(37.58)


def test_replayed_behaviour_follows_the_speed_between_fixes():
    replay = _walker_replay()
    assert replay.state_at(SIM_START + 100).behaviour == "walk"  # 900 m in 900 s = 1.0 m/s
    assert replay.state_at(SIM_START + 1000).behaviour == "rest"  # did not move
    assert replay.state_at(SIM_START + 2000).behaviour == "rest"  # 11 m in 30 min


def test_replay_holds_the_last_fix_after_the_track_ends():
    replay = _walker_replay()
    late = replay.state_at(SIM_START + 10 * 3600)
    assert (late.lat, late.lon) == pytest.approx((0.5780938, 37.5801))
    assert late.inside_reserve and late.motion == "rest"


def test_a_track_from_elsewhere_moves_into_the_reserve_keeping_its_shape():
    reserve = demo_reserve()
    sleeper, walker = replay_animals(read_movebank(FIXTURE), SIM_START, reserve, start_in_reserve=True)
    assert (walker.identity.name, walker.identity.device_id) == ("Tiny Walker", "tembo-collar-02")
    assert sleeper.identity.dev_eui == "70B3D57ED0060001" and sleeper.identity.species == "Loxodonta africana"
    lats, lons = walker.track.lat, walker.track.lon
    assert reserve.frame.to_xy(lons[0], lats[0]) == pytest.approx((1500.0, 0.0), abs=0.01)  # 3 km apart
    assert reserve.frame.to_xy(sleeper.track.lon[0], sleeper.track.lat[0]) == pytest.approx((-1500.0, 0.0), abs=0.01)
    moved_m = distance_m(lons[0], lats[0], lons[1], lats[1])
    original = read_movebank(FIXTURE)["Tiny Walker"]
    original_m = distance_m(original.lon[0], original.lat[0], original.lon[1], original.lat[1])
    assert moved_m == pytest.approx(original_m, rel=0.002)  # the first 15 minutes' ~900 m, moved intact
    assert walker.state_at(SIM_START + 100).behaviour == "walk"


def test_centring_needs_a_reserve():
    with pytest.raises(ValueError, match="reserve"):
        replay_animals(read_movebank(FIXTURE), SIM_START, start_in_reserve=True)


def _tracks_as_read(tracks) -> dict:
    return {name: (t.time_s.tolist(), t.lat.tolist(), t.lon.tolist(), t.taxon, t.tag_id) for name, t in tracks.items()}


def test_a_study_saved_again_by_a_european_spreadsheet_replays_as_the_download_does(tmp_path):
    # Excel in a locale whose decimal mark is a comma saves ";" between fields, "37,58" and, as "CSV UTF-8", a
    # byte-order mark; a name holding the separator comes quoted; times lose their milliseconds on some rows.
    header, *rows = FIXTURE.read_text().splitlines()
    saved = [header.replace(",", ";")]
    for row in rows:
        cells = row.split(",")
        cells[3], cells[4] = cells[3].replace(".", ","), cells[4].replace(".", ",")
        cells[2] = cells[2].replace(":00.000", ":00") if cells[0] in ("2", "6") else cells[2]
        cells[9] = '"Tiny; the Walker"' if cells[9] == "Tiny Walker" else cells[9]
        saved.append(";".join(cells))
    path = tmp_path / "study.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(saved) + "\r\n").encode())

    tracks = _tracks_as_read(read_movebank(path))
    download = _tracks_as_read(read_movebank(FIXTURE))
    assert tracks == {"Tiny; the Walker" if k == "Tiny Walker" else k: v for k, v in download.items()}


def test_a_study_read_through_movebanks_api_or_r_replays_as_the_download_does(tmp_path):
    # Movebank's REST API and R's move2 write the attributes with underscores, R's move with dots.
    text = FIXTURE.read_text()
    header, body = text.split("\n", 1)
    for mark in ("_", "."):
        path = tmp_path / f"study{mark}csv"
        path.write_text(header.replace("-", mark) + "\n" + body.replace(",True,", ",TRUE,").replace(",False,",
                                                                                                  ",FALSE,"))
        assert _tracks_as_read(read_movebank(path)) == _tracks_as_read(read_movebank(FIXTURE))


@pytest.mark.parametrize(("event", "old", "new", "expected"), [
    ("6", "2014-01-23 13:00:00.000", "2014-01-32 13:00:00.000",
     r"row 8, column 'timestamp': '2014-01-32 13:00:00.000' is not a time as Movebank writes it"),
    ("6", "2014-01-23 13:00:00.000", "", r"row 8, column 'timestamp': '' is not a time"),
    ("6", "0.5780938", "0.5780938x", r"row 8, column 'location-lat': '0.5780938x' is not a number"),
    ("6", "37.5801000", "237.5801000", r"row 8: location \(237.5801, 0.5780938\) is not a longitude and latitude"),
])
def test_a_study_whose_time_or_place_does_not_parse_is_refused_naming_its_row(tmp_path, monkeypatch, event, old,
                                                                              new, expected):
    # Read a few rows at a time, with a blank line before it: the row is still the line of the file.
    from simulator import movebank

    monkeypatch.setattr(movebank, "CHUNK_ROWS", 2)
    header, *rows = FIXTURE.read_text().splitlines()
    rows = [row.replace(old, new) if row.startswith(f"{event},") else row for row in rows]
    path = tmp_path / "study.csv"
    path.write_text("\n".join([header, *rows[:4], "", *rows[4:]]) + "\n")
    with pytest.raises(ValueError, match=rf"study.csv, {expected}"):
        read_movebank(path)


def _study_download(path: Path, bursts_per_fix: int) -> Path:
    """A study's whole Movebank download: hourly GPS fixes of two elephants, each followed by e-obs acceleration
    bursts (no location, a long eobs:accelerations-raw text) and columns a replay does not read."""
    lines = ["event-id,visible,timestamp,location-long,location-lat,eobs:accelerations-raw,"
             "eobs:acceleration-sampling-frequency-per-axis,sensor-type,individual-taxon-canonical-name,"
             "tag-local-identifier,individual-local-identifier,study-name"]
    rng = np.random.default_rng(3)
    event = 0
    for hour in range(300):
        for tag, animal in ((901, "Tiny Walker"), (902, "Tiny Sleeper")):
            stamp = f"2014-{1 + hour // 720:02d}-{1 + hour // 24 % 30:02d} {hour % 24:02d}:00:00.000"
            event += 1
            lines.append(f"{event},true,{stamp},{37.58 + hour * 1e-4:.7f},0.5700000,,,gps,Loxodonta africana,{tag},"
                         f"{animal},Study")
            for _ in range(bursts_per_fix):
                raw = " ".join(map(str, rng.integers(1800, 2400, 600)))  # 200 samples of X, Y and Z
                event += 1
                lines.append(f"{event},true,{stamp},,,{raw},10.54,acceleration,Loxodonta africana,{tag},{animal},"
                             "Study")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_studys_whole_download_replays_in_about_the_memory_of_its_fixes(tmp_path, monkeypatch):
    import tracemalloc

    import pyarrow as pa

    from simulator import movebank

    monkeypatch.setattr(movebank, "CHUNK_ROWS", 500)
    fixes_only = _study_download(tmp_path / "gps.csv", bursts_per_fix=0)
    whole = _study_download(tmp_path / "study.csv", bursts_per_fix=5)  # the bursts: 99 % of the file's text
    read_movebank(fixes_only)  # once before measuring, so what pandas imports on its first read is not counted
    peaks, read = [], []
    default_pool = pa.default_memory_pool()
    for path in (fixes_only, whole):
        pool = pa.proxy_memory_pool(default_pool)  # pandas keeps text in Arrow memory, which tracemalloc does not see
        pa.set_memory_pool(pool)
        tracemalloc.start()
        try:
            read.append(_tracks_as_read(read_movebank(path)))
            peaks.append(tracemalloc.get_traced_memory()[1] + pool.max_memory())
        finally:
            tracemalloc.stop()
            pa.set_memory_pool(default_pool)
    assert read[0] == read[1] and [len(times) for times, *_ in read[1].values()] == [300, 300]
    assert peaks[1] < 2 * peaks[0]


def test_a_study_with_a_tag_that_failed_after_its_first_fix_replays_its_other_animals(tmp_path, caplog):
    header, *rows = FIXTURE.read_text().splitlines()
    failed = next(row for row in rows if ",Tiny Sleeper," in row).replace("902,Tiny Sleeper", "903,Tiny Dropout")
    path = tmp_path / "study.csv"
    path.write_text("\n".join([header, *rows, failed]) + "\n")
    with caplog.at_level("WARNING", logger="simulator.movebank"):
        replays = replay_animals(read_movebank(path), SIM_START, demo_reserve(), start_in_reserve=True)
    assert [replay.identity.name for replay in replays] == ["Tiny Sleeper", "Tiny Walker"]
    dropped = [r for r in caplog.records if r.getMessage() == "movebank track too short to replay, left out"]
    assert [(r.individual, r.tag, r.fixes) for r in dropped] == [("Tiny Dropout", "903", 1)]
