"""The rules clean each collar's track on metres taken from the batch's one projection of its fixes
(`domain.batch_metres`): the same numbers as the track projected alone, on either side of a UTM zone's
edge; a track with a fix the batch did not read, or a fleet spread over too many degrees, is projected
for itself."""

from __future__ import annotations

from array import array
from datetime import UTC, datetime, timedelta

from lora_bridge.domain import rules_movement
from lora_bridge.domain.batch_metres import MOST_CELLS, BatchMetres
from lora_bridge.domain.geofences import metric_transformers
from lora_bridge.domain.rules_profiles import SpeedProfile

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def _track(lat: float, lon: float, count: int = 12, step_deg: float = 0.0004) -> list[tuple[int, datetime, float, float]]:
    """A collar's fixes as the rules read them, (id, time, lat, lon), walking north-east every ten minutes."""
    return [(n, T0 + timedelta(minutes=10 * n), lat + n * step_deg, lon + n * step_deg) for n in range(count)]


def _alone(rows: list[tuple[int, datetime, float, float]]) -> list[tuple[float, float]]:
    """The metres pyproj gives the track projected for itself, in the zone of its mean."""
    lons, lats = array("d", [r[3] for r in rows]), array("d", [r[2] for r in rows])
    forward = metric_transformers(sum(lons) / len(lons), sum(lats) / len(lats))[0]
    x, y = forward.transform(lons, lats)
    return list(zip(x, y, strict=True))


def test_collars_on_either_side_of_a_zone_edge_get_the_metres_of_their_own_track_projected_alone():
    # 36 degrees east parts UTM zones 36 and 37: a herd in the Tsavo area straddles it
    west, east, far = _track(-2.9, 35.93), _track(-2.9, 36.07), _track(-3.4, 36.6, count=3)
    batch = BatchMetres.of([west, east, far])
    assert len(batch.by_zone) == 2
    for rows in (west, east, far):
        lons, lats = array("d", [r[3] for r in rows]), array("d", [r[2] for r in rows])
        forward = metric_transformers(sum(lons) / len(lons), sum(lats) / len(lats))[0]
        assert batch.metres(forward, lons, lats) == _alone(rows)


def test_a_track_the_batch_did_not_read_whole_is_projected_for_itself():
    read, unread = _track(-2.9, 36.2), _track(-2.95, 36.25, count=4)
    batch = BatchMetres.of([read])
    fixes = [(t, lat, lon) for _, t, lat, lon in read + unread]
    lons, lats = array("d", [f[2] for f in fixes]), array("d", [f[1] for f in fixes])
    assert batch.metres(metric_transformers(36.2, -2.9)[0], lons, lats) is None
    # the cleaning then projects it itself: the same track cleaned as with no batch at all
    profile = SpeedProfile()
    assert rules_movement.exclude_outliers(fixes, profile, batch).kept == rules_movement.exclude_outliers(fixes, profile).kept


def test_a_fleet_spread_over_more_cells_than_the_bound_is_left_to_each_track():
    spread = [_track(-2.9, 30.0 + n, count=2) for n in range(MOST_CELLS + 1)]
    assert BatchMetres.of(spread).by_zone == {}
    assert BatchMetres.of([]).by_zone == {}


def test_a_track_cleaned_on_the_batchs_metres_keeps_and_drops_the_fixes_it_would_alone():
    rows = _track(-2.9, 36.2, count=20)
    rows[7] = (7, rows[7][1], rows[7][2] + 0.5, rows[7][3])  # a fix 55 km off: a GPS outlier
    fixes = [(t, lat, lon) for _, t, lat, lon in rows]
    profile = SpeedProfile()
    with_batch = rules_movement.exclude_outliers(fixes, profile, BatchMetres.of([rows]))
    alone = rules_movement.exclude_outliers(fixes, profile)
    assert with_batch.kept == alone.kept and len(with_batch.kept) == 19
    assert with_batch.outlier_speeds == alone.outlier_speeds
