"""The twin's standard scenario raises each alert it should and no more, through the real bridge.

The whole standard month (50 collars, 30 days) takes hours through the bridge, so it is cut into windows
around its injected events, each event on a collar of its own that lives only through its window (the
animals are the twin's, drawn from the standard's seed; the windows are written as scenario files):
- the evening: the standard's eight poaching chases at their own time of day and duration, one night;
- the night: its eight crop raids (the farmland entries they make), the same way;
- the day and the late evening: its six deaths, four collar drops and three twisted collars at their own
  time of day, until three hours after the last (a calm collar beside them rejoins with its frame
  counter at zero, as the standard's collars do);
- the battery: its three battery failures, half an hour into 11.5 hours (the pack sags for hours).
The network events of the standard (a mast down, a hole in the coverage) are the quick scenario's test.

Each window runs through `tembo.twin.run_through_bridge` (HTTP webhook, SQLite, the twin playing the
ranger, the reserve's fences imported so the bridge's crossing rule runs beside the collars'); the twin's
truth says which alerts should come. Summed over the windows, per alert type: every event raised (recall
1.0), one alert per event, and no false alert from any source."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest

from simulator.scenario import load_scenario
from tembo import twin

pytestmark = pytest.mark.slow

DAY = datetime(2026, 3, 9, tzinfo=UTC)  # a day of the standard month (collar 13's chase is this evening)


@cache
def _standard():
    """The standard scenario, read once for every window (a read builds its reserve, about a second)."""
    return load_scenario("standard")


def _window(folder: Path, name: str, start: datetime, hours: float, events: list[tuple[str, datetime, int]],
            calm: int = 0, extra: str = "") -> Path:
    """A scenario file: the standard's reserve, seed and settings, one collar per event (plus calm ones)."""
    standard = _standard()
    settings = "\n".join(f"{k} = {v}" for k, v in standard.settings.items())
    rows = []
    for collar, (kind, at, duration_s) in enumerate(events, start=1):
        rows.append(f'[[events]]\nkind = "{kind}"\ncollar = {collar}\nat = {at.strftime("%Y-%m-%dT%H:%M:%SZ")}'
                    + (f'\nduration = "{duration_s}s"' if duration_s else ""))
    text = f"""name = "standard-{name}"
seed = {standard.seed}
start = {start.strftime("%Y-%m-%dT%H:%M:%SZ")}
duration = "{hours}h"

[reserve]
base = "demo"

[herd]
count = {len(events) + calm}

[herd.settings]
{settings}

[network]
format = "tts"

[twin]
library_windows = {standard.library_windows}

{chr(10).join(rows)}
{extra}
"""
    path = folder / f"standard-{name}.toml"
    path.write_text(text)
    return path


def _standard_events(*kinds: str) -> list:
    return [e for e in _standard().events if e.kind in kinds]


def _same_time_on(day: datetime, t_s: int) -> datetime:
    at = datetime.fromtimestamp(t_s, UTC)
    return day.replace(hour=at.hour, minute=at.minute)


def _windows(folder: Path) -> list[Path]:
    chases = [("poaching_chase", _same_time_on(DAY, e.start_s), e.duration_s) for e in _standard_events("poaching_chase")]
    raids = [("crop_raid", _same_time_on(DAY, e.start_s), e.duration_s) for e in _standard_events("crop_raid")]
    day_events = _standard_events("death", "collar_drop", "twisted_collar")
    by_day = [(e.kind, _same_time_on(DAY, e.start_s), 0) for e in day_events if 3 <= _hour(e.start_s) < 16]
    by_night = [(e.kind, _same_time_on(DAY, e.start_s) + timedelta(days=_hour(e.start_s) < 3), 0)
                for e in day_events if not 3 <= _hour(e.start_s) < 16]
    battery = [("battery_failure", DAY.replace(hour=7), 0) for _ in _standard_events("battery_failure")]
    rejoin = f'[[events]]\nkind = "frame_counter_reset"\ncollar = {len(by_day) + 1}\nat = "2h"'
    return [
        _window(folder, "evening", DAY.replace(hour=16), 8.5, chases),  # from 17:15 to 00:02
        _window(folder, "night", DAY.replace(hour=20, minute=30), 5, raids),  # from 21:02 to 00:52
        _window(folder, "day", DAY.replace(hour=3, minute=30), 12.5, by_day, calm=1, extra=rejoin),  # 04:00 to 13:00
        _window(folder, "late", DAY.replace(hour=17, minute=30), 10, by_night),  # 18:00 to 00:00
        _window(folder, "battery", DAY.replace(hour=6, minute=30), 11.5, battery),
    ]


def _hour(t_s: int) -> int:
    return datetime.fromtimestamp(t_s, UTC).hour


@pytest.fixture(scope="module")
def standard_windows(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("standard-windows")
    return [twin.run_through_bridge(str(path)) for path in _windows(folder)]


def _summed(runs: list[dict]) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for run in runs:
        for kind, got in run["alerts_by_type"].items():
            total = out.setdefault(kind, Counter())
            total["events"] += got["events"]
            total["alerts"] += got["alerts"]
            total["missed"] += round(got["events"] * (1 - got["recall"])) if got["recall"] is not None else 0
            for source, n in got.get("false_by_source", {}).items():
                total[f"false_{source}"] += n
    return out


def test_each_standard_event_raises_its_alert_once_and_nothing_else_is_raised(standard_windows):
    runs = standard_windows
    assert all(run["failed_posts"] == 0 for run in runs)
    per_type = _summed(runs)
    expected = {"mortality": 6, "poaching_risk": 8, "collar_drop": 4, "low_battery": 3}  # the standard's events
    assert {kind: per_type[kind]["events"] for kind in expected} == expected
    assert per_type["geofence_farmland"]["events"] >= 8  # each crop raid enters a field (and animals wander in)
    for kind in ("mortality", "poaching_risk", "geofence_farmland", "collar_drop", "low_battery"):
        got = per_type[kind]
        assert got["events"] and got["missed"] == 0, (kind, got, [r["alerts_by_type"][kind] for r in runs])
    for kind, got in per_type.items():  # no false alarm, from the collar or from a bridge rule
        false = {k: v for k, v in got.items() if k.startswith("false_")}
        assert not any(false.values()), (kind, got, [r["alerts_by_type"][kind] for r in runs])
    # One alert per event, whoever saw it: the collar's farmland alert and the bridge's own crossing rule
    # (the reserve's fences are imported into the twin's bridge) report one visit as one alert.
    for kind in ("mortality", "poaching_risk", "geofence_farmland", "collar_drop", "low_battery"):
        assert per_type[kind]["alerts"] == per_type[kind]["events"], (kind, per_type[kind])
    # The bridge's own crossing rule judged the crop raids (it sees most entries before the collar does),
    # and every type raised has a truth to judge it.
    assert sum(run["alerts_by_source"].get("geofence_farmland", {}).get("server", 0) for run in runs) > 0
    assert all(run["not_scored"] == {} for run in runs), [run["not_scored"] for run in runs]


def test_a_collar_that_rejoins_in_the_standard_day_loses_nothing(standard_windows):
    day = next(run for run in standard_windows if run["scenario"] == "standard-day")
    (rejoin,) = [c for c in day["network_events"] if c["kind"] == "frame_counter_reset"]
    assert rejoin["lost"] == 0 and rejoin["stored"] == rejoin["frames_delivered_after"] > 0
