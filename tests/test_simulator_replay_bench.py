"""A real track (here the project's own tiny Movebank fixture) replayed through the real firmware."""

from pathlib import Path

import pytest

from simulator import replay_bench

FIXTURE = Path(__file__).parent / "fixtures" / "movebank_tiny.csv"


def test_replayed_track_reaches_the_map_within_metres_of_where_the_animal_was():
    figures = replay_bench.run(days=0.5, path=str(FIXTURE))
    assert figures["animals"] == 2
    assert figures["uplinks_delivered"] > 0
    walker = figures["per_animal"]["Tiny Walker"]
    assert walker["collar_positions"] >= 6, "hourly fixes over half a day"
    assert walker["position_error_m_median"] < 20, "GNSS noise and int24 rounding stay within metres"
    for animal in figures["per_animal"].values():
        assert all(count == 1 for count in animal["alerts"].values()), "an alert repeated until acked counts once"


def test_missing_movebank_file_is_named_in_the_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        replay_bench.run(days=0.1, path=str(tmp_path / "nowhere.csv"))
