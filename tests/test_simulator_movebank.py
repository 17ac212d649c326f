"""Replaying real Movebank tracks through the digital twin (tiny fixture made by the project)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

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
