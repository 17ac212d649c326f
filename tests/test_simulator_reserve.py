"""The demo reserve the bridge stores and the ranger's map draws."""

from __future__ import annotations

import json

import pytest

from simulator.reserve import (
    KINDS,
    LocalFrame,
    demo_reserve,
    demo_reserve_geojson,
    distance_m,
)


def test_reserve_geojson_has_boundary_farmland_water_roads_and_gateways():
    collection = json.loads(json.dumps(demo_reserve_geojson()))  # survives a JSON round trip
    assert collection["type"] == "FeatureCollection"
    by_kind = {k: [f for f in collection["features"] if f["properties"]["kind"] == k] for k in KINDS}
    assert len(by_kind["boundary"]) == 1
    assert len(by_kind["farmland"]) >= 2 and len(by_kind["water"]) >= 3 and len(by_kind["road"]) >= 1
    assert 3 <= len(by_kind["gateway"]) <= 4
    assert all(f["properties"]["name"] for f in collection["features"])
    ring = by_kind["boundary"][0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1]  # GeoJSON rings are closed
    assert all(36.0 < lon < 39.0 and 0.0 < lat < 1.5 for lon, lat in ring)  # [lon, lat] in central Kenya
    gateway = by_kind["gateway"][0]["properties"]
    assert gateway["gateway_id"].startswith("tembo-gw-") and len(gateway["eui"]) == 16


def test_reserve_is_about_thirty_by_twenty_kilometres():
    ring = demo_reserve().boundary.ring_lonlat
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    mid_lat, mid_lon = sum(lats) / len(lats), sum(lons) / len(lons)
    east_west_m = distance_m(min(lons), mid_lat, max(lons), mid_lat)
    north_south_m = distance_m(mid_lon, min(lats), mid_lon, max(lats))
    assert 27_000 < east_west_m < 34_000
    assert 18_000 < north_south_m < 23_000


def test_habiba_real_range_lies_inside_the_demo_reserve():
    reserve = demo_reserve()
    # Corners of the box Habiba used in 2014 (Movebank, Wall et al. 2014).
    for lon, lat in ((37.5427, 0.5353), (37.6308, 0.5353), (37.5427, 0.6135), (37.6308, 0.6135)):
        assert reserve.contains(lon, lat)


def test_farmland_lies_outside_or_at_the_edge_of_the_reserve():
    reserve = demo_reserve()
    for x, y in reserve.farmland_centres_xy():
        assert not reserve.inside_xy(x, y) or reserve.boundary_distance_m(x, y) < 3000
    assert reserve.farmland_at_xy(0.0, 0.0) is None


def test_every_gateway_stands_inside_the_reserve():
    reserve = demo_reserve()
    assert all(reserve.contains(g.lon, g.lat) for g in reserve.gateways)


def test_local_frame_round_trips_and_measures_metres():
    frame = LocalFrame(37.585, 0.572)
    lon, lat = frame.to_lonlat(1000.0, -2000.0)
    x, y = frame.to_xy(lon, lat)
    assert abs(x - 1000.0) < 1e-6 and abs(y + 2000.0) < 1e-6
    assert abs(distance_m(37.585, 0.572, lon, lat) - (1000**2 + 2000**2) ** 0.5) < 2.0


def test_reserve_is_a_geodataframe_with_every_kind_and_gateway_heights():
    frame = demo_reserve().geodataframe()
    assert frame.crs.to_epsg() == 4326
    assert {"boundary", "farmland", "water", "road", "gateway"} <= set(frame["kind"])
    gateways = frame[frame["kind"] == "gateway"]
    assert (gateways["altitude_m"] > 0).all()
    boundary = frame[frame["kind"] == "boundary"].geometry.iloc[0]
    assert boundary.contains(gateways.geometry).all()


def test_twin_and_collar_share_one_metres_per_degree_and_one_night():
    from collar_firmware import geo as collar_geo
    from collar_firmware import risk
    from simulator import geo

    assert geo.METRES_PER_DEGREE is collar_geo.METRES_PER_DEGREE
    # the collar keeps an integer literal for const(): pinned to the one definition
    assert collar_geo._LAT_MM_PER_UNIT == int(collar_geo.METRES_PER_DEGREE * 1000 * 90 / 2**23)
    assert collar_geo.metres_per_degree_lon(60.0) == pytest.approx(collar_geo.METRES_PER_DEGREE / 2)
    # the collar's flat metres-per-degree agrees with the WGS84 geodesic over a reserve (within 0.7 %)
    assert geo.distance_m(37.585, 0.572, 37.685, 0.572) == pytest.approx(0.1 * geo.metres_per_degree_lon(0.572),
                                                                          rel=0.007)
    evening = 1772323200 + (18 * 3600 + 35 * 60) - 3 * 3600  # 18:35 East Africa Time
    assert risk.is_night(evening, 180) and geo.is_night(evening)
    assert not geo.is_night(evening - 10 * 60)  # 18:25 is day for both


def test_fast_reserve_lookups_agree_with_shapely_everywhere():
    import numpy as np
    import shapely

    reserve = demo_reserve()
    rng = np.random.default_rng(5)
    xs, ys = rng.uniform(-20_000, 20_000, 4000), rng.uniform(-15_000, 15_000, 4000)
    exact_inside = shapely.contains_xy(reserve._boundary_xy, xs, ys)
    exact_farm = shapely.contains_xy(reserve._any_farmland_xy, xs, ys)
    assert [reserve.inside_xy(x, y) for x, y in zip(xs, ys, strict=True)] == list(exact_inside)
    assert [reserve.farmland_at_xy(x, y) is not None for x, y in zip(xs, ys, strict=True)] == list(exact_farm)
