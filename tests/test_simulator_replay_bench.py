"""A real track (here the project's own tiny Movebank fixture) replayed through the real firmware under
three GNSS schedules: fixed hourly, fixed 15-minute and smart fixes."""

import subprocess
import sys
from pathlib import Path

import pytest

from simulator import replay_bench

FIXTURE = Path(__file__).parent / "fixtures" / "movebank_tiny.csv"


def test_replayed_track_is_compared_under_hourly_fifteen_minute_and_adaptive_fixes():
    figures = replay_bench.run(days=0.5, path=str(FIXTURE))
    assert figures["animals"] == 2
    hourly, quarter, adaptive = (figures["schedules"][k] for k in ("fixed_hourly", "fixed_15min", "adaptive"))
    assert quarter["fixes_per_day"] > 2 * hourly["fixes_per_day"]
    assert quarter["battery_life_years"] < hourly["battery_life_years"], "every fix costs energy"
    walker = quarter["per_animal"]["Tiny Walker"]
    assert walker["collar_positions"] >= 24, "15-minute fixes over half a day"
    assert walker["median_position_error_m"] < 20, "GNSS noise and int24 rounding stay within metres"
    assert 0.5 < quarter["path_kept"] <= 1.0 and hourly["path_kept"] <= quarter["path_kept"] + 0.02
    assert 0 < adaptive["path_kept"] <= 1.0
    for animal in hourly["per_animal"].values():
        assert all(count == 1 for count in animal["alerts"].values()), "an alert repeated until acked counts once"


def test_missing_movebank_file_is_named_in_the_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        replay_bench.run(days=0.1, path=str(tmp_path / "nowhere.csv"))


def test_replay_bench_without_its_data_stops_with_a_message_not_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tembo.cli", "bench", "replay", "--json",
                           "-o", f"path={tmp_path / 'nowhere.csv.gz'}"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "nowhere.csv.gz" in done.stderr and "Traceback" not in done.stderr
