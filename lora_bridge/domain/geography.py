"""The reserve's own map (boundary, farmland, water, roads, gateways), kept in the store.

It is the ranger map's base layer when the control room has no internet, and the geometry that
geofence rules will test positions against.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lora_bridge.errors import InvalidGeography
from lora_bridge.store.tables import GeographyFeature

KNOWN_KINDS = ("boundary", "farmland", "water", "road", "gateway")
GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")


def validate(geojson: dict[str, Any]) -> list[dict[str, Any]]:
    """The features of a FeatureCollection, each with a geometry and a text properties.kind."""
    if not isinstance(geojson, dict) or geojson.get("type") != "FeatureCollection":
        raise InvalidGeography("geography must be a GeoJSON FeatureCollection")
    features = geojson.get("features")
    if not isinstance(features, list):
        raise InvalidGeography("FeatureCollection has no features list")
    for index, feature in enumerate(features):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise InvalidGeography(f"features[{index}] is not a GeoJSON Feature")
        geometry = feature.get("geometry")
        if not isinstance(geometry, dict) or geometry.get("type") not in GEOMETRY_TYPES:
            raise InvalidGeography(f"features[{index}] geometry must be one of {', '.join(GEOMETRY_TYPES)}")
        if not isinstance(geometry.get("coordinates"), list):
            raise InvalidGeography(f"features[{index}] geometry has no coordinates")
        kind = (feature.get("properties") or {}).get("kind")
        if not isinstance(kind, str) or not kind:
            raise InvalidGeography(f"features[{index}] has no properties.kind (e.g. {', '.join(KNOWN_KINDS)})")
    return features


def replace(session: Session, geojson: dict[str, Any]) -> int:
    """Replace the stored geography with geojson's features; returns how many were stored."""
    features = validate(geojson)
    session.execute(delete(GeographyFeature))
    for feature in features:
        properties = dict(feature.get("properties") or {})
        session.add(
            GeographyFeature(
                kind=properties["kind"],
                name=properties.get("name"),
                geometry=feature["geometry"],
                properties=properties,
            )
        )
    return len(features)


def as_feature_collection(session: Session) -> dict[str, Any]:
    """The stored geography as a GeoJSON FeatureCollection, in load order."""
    rows = session.scalars(select(GeographyFeature).order_by(GeographyFeature.id)).all()
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": row.geometry, "properties": dict(row.properties)} for row in rows
        ],
    }
