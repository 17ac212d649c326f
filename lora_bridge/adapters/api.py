"""The bridge's HTTP API (Starlette) over the service layer, with the webhook's routes beside it.

Every data route wants `Authorization: Bearer <token>` (tokens from `tembo tokens create`, stored
hashed): 401 without a valid token, 403 when the token's role may not use the route, 429 (with
Retry-After) while the client's address is locked out after repeated bad tokens, 503 (with
Retry-After) while the store cannot keep what the request must write (its audit line, a change). The route
table below is the one source of the routes, their roles and the OpenAPI schema served at
`/api/openapi.json`. Location privacy is applied by the service layer, so every answer holds only
what the token's role may see (coarse and late positions for roles without exact ones), and every
read of positions is in the audit log. `/healthz` and the schema are open and carry no data;
`/metrics` (Prometheus text format) wants a token too.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collar_firmware import update_install
from lora_bridge import exports, queries
from lora_bridge.access import Viewer
from lora_bridge.access import roles as access
from lora_bridge.access.privacy import label
from lora_bridge.adapters import webhook
from lora_bridge.domain import geofence_files
from lora_bridge.domain.alerts import NOTE_MAX_CHARS
from lora_bridge.domain.campaigns import SPREADING_FACTORS, CampaignError
from lora_bridge.domain.fuota_delivery import DeliveryRefused
from lora_bridge.errors import (
    AuthenticationFailed,
    Conflict,
    Forbidden,
    InvalidCommandValues,
    InvalidRequest,
    NotFound,
    TooManyAttempts,
    driver_said,
    error_id,
    is_transient_store_error,
)
from lora_bridge.network_messages import EVENT_KINDS
from lora_bridge.service import Bridge
from lora_bridge.store.utc import as_utc
from lora_bridge.store_refusals import RefusalsCollector, StoreRefusals
from lora_bridge.views import PositionView, to_jsonable

log = logging.getLogger(__name__)

API_TITLE = "Tembo bridge API"
API_VERSION = "1.0.0"
GEOJSON = "application/geo+json"
DEFAULT_TRACK_POINTS = 500
MAX_TRACK_POINTS = 10_000
ALERT_STATES = ("new", "acknowledged", "resolved")
MAX_IMAGE_BYTES = update_install.MAX_IMAGE_BYTES  # the largest update image a collar takes
RETRY_AFTER_S = 30  # a 503's Retry-After while the store takes no write


class RowIdConvertor(Convertor[int]):
    """A store row id in a path: at most 18 digits, so it fits a 64-bit INTEGER column; anything else
    (letters, a sign, 20 digits) matches no route and is a 404 like any id that names nothing."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("row_id", RowIdConvertor())


# Request bodies ------------------------------------------------------------------------------


class ResolveBody(BaseModel):
    """How a ranger closes an alert."""

    model_config = ConfigDict(extra="forbid")
    verdict: str = Field(description="true, false_alarm or unknown")
    note: str | None = Field(default=None, max_length=NOTE_MAX_CHARS)


class HighValueBody(BaseModel):
    """Whether an animal is high-value (shown coarser and later to roles without exact positions)."""

    model_config = ConfigDict(extra="forbid")
    high_value: bool


class AnimalRecordBody(BaseModel):
    """What a field technician corrects of an animal: each field given changes, the others stay."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, description="the rangers' name for the animal; not empty")
    species: str | None = Field(default=None, description="scientific name, e.g. Loxodonta africana")
    sex: str | None = Field(default=None, description="female, male or unknown")


class CollarFittingBody(BaseModel):
    """A collar fitted to an animal (a swap, or a collar moved from another animal)."""

    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(description="the collar's device id or DevEUI; a collar never heard is registered")
    move: bool = Field(default=False, description="take the collar from the animal that wears it (else 409)")
    fitted_at: datetime | None = Field(default=None, description="when the collar went on (ISO 8601); default now")


class DownlinkBody(BaseModel):
    """A command for a collar, encoded by the codec (port 32)."""

    model_config = ConfigDict(extra="forbid")
    device_id: str
    command: str
    values: dict[str, Any] = Field(default_factory=dict)


# The route table -----------------------------------------------------------------------------

Handler = Callable[[Request, Viewer], Awaitable[Response]]


@dataclass(frozen=True)
class Param:
    """A query or path parameter, for the OpenAPI schema."""

    name: str
    where: str = "query"
    kind: str = "string"
    description: str = ""


@dataclass(frozen=True)
class Endpoint:
    """One API route: what it does, who may use it, how it is called."""

    method: str
    path: str
    permission: str | None  # None: open, without data
    handler: Handler
    summary: str
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    media_type: str = "application/json"
    tags: tuple[str, ...] = field(default=("data",))
    file_body: tuple[str, ...] = ()  # media types of a raw file the route takes as its body
    created: bool = False  # answers 201

    def roles(self) -> list[str]:
        """The roles that may use this route."""
        if self.permission is None:
            return sorted(access.ROLES)
        return [name for name, role in access.ROLES.items() if role.may(self.permission)]


TIME_RANGE = (
    Param("since", description="ISO 8601 time, inclusive"),
    Param("until", description="ISO 8601 time, inclusive"),
    Param("animal_id", description="one or more animal ids, comma-separated"),
)


def endpoints(bridge: Bridge, registries: Scrapes) -> list[Endpoint]:
    """Every route of the API with the handler that serves it."""

    async def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(function, *args, **kwargs)

    async def me(request: Request, viewer: Viewer) -> Response:
        role = viewer.policy
        return JSONResponse(
            {
                "username": viewer.username,
                "role": viewer.role,
                "positions": role.describe_positions(),
                "permissions": sorted(role.permissions),
            }
        )

    async def animals(request: Request, viewer: Viewer) -> Response:
        return JSONResponse(to_jsonable(await call(bridge.animals, viewer=viewer)))

    async def flag_animal(request: Request, viewer: Viewer) -> Response:
        body = await _body(request, HighValueBody)
        view = await call(bridge.set_high_value, request.path_params["animal_id"], body.high_value, viewer=viewer)
        return JSONResponse(to_jsonable(view))

    async def change_animal(request: Request, viewer: Viewer) -> Response:
        body = await _body(request, AnimalRecordBody)
        view = await call(bridge.rename_animal, request.path_params["animal_id"], viewer=viewer, name=body.name,
                          species=body.species, sex=body.sex)
        return JSONResponse(to_jsonable(view))

    async def fit_collar(request: Request, viewer: Viewer) -> Response:
        body = await _body(request, CollarFittingBody)
        view = await call(bridge.fit_collar, request.path_params["animal_id"], body.device_id, viewer=viewer,
                          move=body.move, fitted_at=body.fitted_at)
        return JSONResponse(to_jsonable(view))

    async def take_off_collar(request: Request, viewer: Viewer) -> Response:
        view = await call(bridge.take_off_collar, request.path_params["animal_id"], viewer=viewer,
                          removed_at=_time(request, "removed_at"))
        return JSONResponse(to_jsonable(view))

    async def herd_register(request: Request, viewer: Viewer) -> Response:
        return JSONResponse(to_jsonable(await call(bridge.herd_register, viewer=viewer)))

    async def collars_in_stock(request: Request, viewer: Viewer) -> Response:
        return JSONResponse(to_jsonable(await call(bridge.collars_in_stock, viewer=viewer)))

    async def collars_worn(request: Request, viewer: Viewer) -> Response:
        return JSONResponse(to_jsonable(await call(bridge.collar_history, request.path_params["animal_id"], viewer=viewer)))

    async def activity(request: Request, viewer: Viewer) -> Response:
        since = _time(request, "since")
        views = await call(bridge.activity, request.path_params["animal_id"], since, viewer=viewer)
        return JSONResponse(to_jsonable(views))

    async def devices(request: Request, viewer: Viewer) -> Response:
        return JSONResponse(to_jsonable(await call(bridge.devices, viewer=viewer)))

    async def latest(request: Request, viewer: Viewer) -> Response:
        views = await call(bridge.latest_positions, viewer=viewer)
        return JSONResponse(_points(views, label(viewer)), media_type=GEOJSON)

    async def positions(request: Request, viewer: Viewer) -> Response:
        tracks = await _tracks(request, viewer)
        limit = _max_points(request, MAX_TRACK_POINTS)
        fixes = [fix for track in tracks.values() for fix in downsample(track, limit)]
        return JSONResponse(_points(fixes, label(viewer)), media_type=GEOJSON)

    async def tracks(request: Request, viewer: Viewer) -> Response:
        tracks_ = await _tracks(request, viewer)
        limit = _max_points(request, DEFAULT_TRACK_POINTS)
        features = [
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[f.lon, f.lat] for f in fixes]},
                "properties": {
                    "animal_id": animal_id,
                    "name": fixes[0].name,
                    "device_id": fixes[-1].device_id,
                    "times": [f.time.isoformat() for f in fixes],
                    "fixes_total": len(track),
                },
            }
            for animal_id, track in tracks_.items()
            if len(fixes := downsample(track, limit)) >= 1
        ]
        return JSONResponse(
            {"type": "FeatureCollection", "precision": label(viewer), "features": features}, media_type=GEOJSON
        )

    async def _tracks(request: Request, viewer: Viewer) -> dict[str, list[PositionView]]:
        since, until = _time(request, "since"), _time(request, "until")
        if since and until and until < since:
            raise InvalidRequest("until lies before since")
        found = await call(bridge.tracks, since, _animal_ids(request), viewer=viewer)
        if until is None:
            return found
        return {a: kept for a, fixes in found.items() if (kept := [f for f in fixes if f.time <= until])}

    async def alerts(request: Request, viewer: Viewer) -> Response:
        state = request.query_params.get("state", "open")
        if state == "open":
            states: tuple[str, ...] | None = ("new", "acknowledged")
        elif state == "all":
            states = None
        else:
            states = tuple(state.split(","))
            unknown = sorted(set(states) - set(ALERT_STATES))
            if unknown:
                raise InvalidRequest(f"unknown alert state {unknown}; use open, all or {', '.join(ALERT_STATES)}")
        limit = _int(request, "limit", None, 1, 10_000)
        return JSONResponse(to_jsonable(await call(bridge.alerts, states, limit, viewer=viewer)))

    async def alert(request: Request, viewer: Viewer) -> Response:
        alert_id = request.path_params["alert_id"]
        view = await call(bridge.alert, alert_id, viewer=viewer)
        events = await call(bridge.alert_events, alert_id, viewer=viewer)
        return JSONResponse({**to_jsonable(view), "events": to_jsonable(events)})

    async def acknowledge(request: Request, viewer: Viewer) -> Response:
        view = await call(bridge.acknowledge_alert, request.path_params["alert_id"], viewer)
        return JSONResponse(to_jsonable(view))

    async def resolve(request: Request, viewer: Viewer) -> Response:
        body = await _body(request, ResolveBody)
        view = await call(bridge.resolve_alert, request.path_params["alert_id"], viewer, body.verdict, body.note)
        return JSONResponse(to_jsonable(view))

    async def awaiting_verdict(request: Request, viewer: Viewer) -> Response:
        limit = _int(request, "limit", None, 1, 10_000)
        return JSONResponse(to_jsonable(await call(bridge.alerts_awaiting_verdict, limit, viewer=viewer)))

    async def precision(request: Request, viewer: Viewer) -> Response:
        return JSONResponse(await call(bridge.alert_verdicts, viewer=viewer))

    async def geography(request: Request, viewer: Viewer) -> Response:
        return JSONResponse(await call(bridge.geography), media_type=GEOJSON)

    async def geofences(request: Request, viewer: Viewer) -> Response:
        return JSONResponse(await call(bridge.geofences_geojson), media_type=GEOJSON)

    async def import_geofences(request: Request, viewer: Viewer) -> Response:
        filename = (request.query_params.get("filename") or "").strip()
        if not filename:
            raise InvalidRequest("say the file's name (?filename=reserve.gpkg): its ending tells GeoJSON, "
                                 "GeoPackage or zipped Shapefile")
        too_large = InvalidRequest(f"{filename}: larger than {geofence_files.MAX_FILE_MB} MB, the most a fence file may be")
        if int(request.headers.get("content-length") or 0) > geofence_files.MAX_FILE_BYTES:
            raise too_large  # refused unread
        chunks, size = [], 0
        async for chunk in request.stream():  # a body sent in chunks, without a length: read up to the limit
            size += len(chunk)
            if size > geofence_files.MAX_FILE_BYTES:
                raise too_large
            chunks.append(chunk)
        data = b"".join(chunks)
        replace = _flag(request, "replace")
        added = await call(bridge.import_geofences, data, filename, kind=request.query_params.get("kind") or None,
                           alert_on=request.query_params.get("alert_on") or None, replace=replace,
                           actor=viewer)
        log.info("geofences imported over the API", extra={"geofence_file": filename, "fences": len(added),
                                                           "user": viewer.username})
        features = [{"type": "Feature", "id": v.geofence_id, "geometry": v.geometry,
                     "properties": {"name": v.name, "kind": v.kind, "alert_on": v.alert_on}} for v in added]
        return JSONResponse({"type": "FeatureCollection", "features": features}, status_code=201, media_type=GEOJSON)

    async def delete_geofence(request: Request, viewer: Viewer) -> Response:
        geofence_id = request.path_params["geofence_id"]
        await call(bridge.delete_geofence, geofence_id, actor=viewer)
        log.info("geofence deleted over the API", extra={"geofence_id": geofence_id, "user": viewer.username})
        return JSONResponse({"deleted": geofence_id})

    async def downlinks(request: Request, viewer: Viewer) -> Response:
        views = await call(bridge.downlinks, request.query_params.get("state"), viewer=viewer)
        return JSONResponse(to_jsonable(views))

    async def queue_downlink(request: Request, viewer: Viewer) -> Response:
        body = await _body(request, DownlinkBody)
        view = await call(bridge.queue_command, body.device_id, body.command, body.values)
        log.info("downlink queued over the API", extra={"device_id": body.device_id, "user": viewer.username})
        return JSONResponse(to_jsonable(view), status_code=201)

    async def network_events(request: Request, viewer: Viewer) -> Response:
        events = await call(
            bridge.network_events,
            request.query_params.get("device_id") or None,
            request.query_params.get("kind") or None,
            _int(request, "limit", 1000, 1, 100_000),
            viewer=viewer,
        )
        return JSONResponse(to_jsonable(events))

    async def dead_letters(request: Request, viewer: Viewer) -> Response:
        views = await call(bridge.dead_letters, _flag(request, "all"),
                           _int(request, "limit", queries.DEAD_LETTERS_PAGE, 1, 100_000),
                           _int(request, "after", None, 0, 2**63 - 1))
        return JSONResponse(to_jsonable(views))

    async def replay(request: Request, viewer: Viewer) -> Response:
        return JSONResponse(to_jsonable(await call(bridge.replay_dead_letters)))

    async def retry_notifications(request: Request, viewer: Viewer) -> Response:
        report = await call(bridge.retry_notifications, viewer=viewer, since=_time(request, "since"),
                            channel=request.query_params.get("channel") or None)
        log.info("failed notifications queued again over the API",
                 extra={"user": viewer.username, "requeued": len(report.requeued), "withdrawn": len(report.withdrawn)})
        return JSONResponse({"requeued": list(report.requeued), "withdrawn": list(report.withdrawn)})

    async def audit_log(request: Request, viewer: Viewer) -> Response:
        entries = await call(
            bridge.audit_log,
            viewer=viewer,
            since=_time(request, "since"),
            username=request.query_params.get("username"),
            limit=_int(request, "limit", 1000, 1, 100_000),
        )
        return JSONResponse(to_jsonable(entries))

    async def _export_data(request: Request, viewer: Viewer) -> tuple[list[PositionView], dict[str, str | None]]:
        tracks_ = await _tracks(request, viewer)
        species = {a.animal_id: a.species for a in await call(bridge.animals, viewer=viewer)}
        return exports.herd_fixes(tracks_), species

    async def movebank(request: Request, viewer: Viewer) -> Response:
        data = await call(exports.to_movebank_csv, *await _export_data(request, viewer))
        return Response(data, media_type="text/csv", headers=_attachment("tembo-movebank.csv"))

    async def export_geojson(request: Request, viewer: Viewer) -> Response:
        fixes, species = await _export_data(request, viewer)
        data = await call(exports.to_geojson, fixes, species, label(viewer))
        return Response(data, media_type=GEOJSON, headers=_attachment("tembo-positions.geojson"))

    async def export_geopackage(request: Request, viewer: Viewer) -> Response:
        fixes, species = await _export_data(request, viewer)
        data = await call(exports.to_geopackage, fixes, species, "positions")
        return Response(data, media_type=exports.MEDIA_TYPES["gpkg"], headers=_attachment("tembo-positions.gpkg"))

    async def export_shapefile(request: Request, viewer: Viewer) -> Response:
        fixes, species = await _export_data(request, viewer)
        data = await call(exports.to_shapefile, fixes, species, label(viewer), "positions")
        return Response(data, media_type=exports.MEDIA_TYPES["shp.zip"],
                        headers=_attachment("tembo-positions.shp.zip"))

    async def campaigns(request: Request, viewer: Viewer) -> Response:
        return JSONResponse(to_jsonable(await call(bridge.campaigns)))

    async def campaign(request: Request, viewer: Viewer) -> Response:
        return JSONResponse(to_jsonable(await call(bridge.campaign, request.path_params["campaign_id"])))

    async def start_campaign(request: Request, viewer: Viewer) -> Response:
        size = int(request.headers.get("content-length") or 0)
        if size > MAX_IMAGE_BYTES:
            raise InvalidRequest(f"an update image of {size} bytes is larger than a collar takes ({MAX_IMAGE_BYTES})")
        image = await request.body()
        if len(image) > MAX_IMAGE_BYTES:
            raise InvalidRequest(f"an update image of {len(image)} bytes is larger than a collar takes "
                                 f"({MAX_IMAGE_BYTES})")
        if not image:
            raise InvalidRequest("the body is the signed update image tembo release wrote, and it is empty")
        options = {
            "canary_pct": _int(request, "canary_pct", 10, 0, 100),
            "max_canary_failures_pct": _int(request, "max_canary_failures_pct", 20, 0, 100),
            "min_battery_mv": _int(request, "min_battery_mv", 3400, 0, 5000),
            "min_rssi_dbm": _float(request, "min_rssi_dbm", -120.0, -200.0, 0.0),
            "max_spreading_factor": _spreading_factor(request),
        }
        devices = _list(request, "device_id")
        if devices is None and "device_id" in request.query_params:  # a script's list came out empty: not "all"
            raise InvalidRequest("device_id names no collar; leave it out to update every collar")
        species = request.query_params.get("species")
        if species is not None and devices is not None:
            raise InvalidRequest("give device_id or species, not both: a campaign targets a list of collars or a species")
        try:
            view = await call(bridge.start_campaign, image, user=viewer.username, name=request.query_params.get("name"),
                              devices=devices, species=species, **options)
        except (CampaignError, DeliveryRefused) as refused:
            raise InvalidRequest(str(refused)) from None
        log.info("update campaign started over the API", extra={"campaign_id": view["id"], "user": viewer.username,
                                                               "image_bytes": len(image)})
        return JSONResponse(to_jsonable(view), status_code=201)

    def steering(action: str) -> Handler:
        async def steer(request: Request, viewer: Viewer) -> Response:
            campaign_id = request.path_params["campaign_id"]
            try:
                view = await call(bridge.steer_campaign, campaign_id, action, viewer.username)
            except CampaignError as refused:
                raise InvalidRequest(str(refused)) from None
            log.info("update campaign steered over the API", extra={"campaign_id": campaign_id, "action": action,
                                                                   "user": viewer.username})
            return JSONResponse(to_jsonable(view))

        return steer

    async def update_versions(request: Request, viewer: Viewer) -> Response:
        return JSONResponse(to_jsonable(await call(bridge.fleet_versions, viewer=viewer)))

    async def metrics(request: Request, viewer: Viewer) -> Response:
        return Response(await call(generate_latest, registries.for_viewer(viewer)), media_type=CONTENT_TYPE_LATEST)

    a = access
    return [
        Endpoint("GET", "/api/me", a.READ_GEOGRAPHY, me, "Who the token acts as, and what it may see", tags=("access",)),
        Endpoint("GET", "/api/animals", a.READ_ANIMALS, animals, "Every animal with its latest state, as the role sees it"),
        Endpoint("POST", "/api/animals/{animal_id}/high_value", a.FLAG_ANIMALS, flag_animal,
                 "Flag or unflag an animal as high-value", (Param("animal_id", "path"),), HighValueBody),
        Endpoint("PATCH", "/api/animals/{animal_id}", a.MANAGE_HERD, change_animal,
                 "Rename an animal, or correct its species or sex", (Param("animal_id", "path"),), AnimalRecordBody,
                 tags=("herd",)),
        Endpoint("POST", "/api/animals/{animal_id}/collar", a.MANAGE_HERD, fit_collar,
                 "Fit a collar to an animal (a swap, or a collar moved from another animal: move)",
                 (Param("animal_id", "path"),), CollarFittingBody, tags=("herd",)),
        Endpoint("DELETE", "/api/animals/{animal_id}/collar", a.MANAGE_HERD, take_off_collar,
                 "Take an animal's collar off without fitting another: nobody wears it until it is fitted again",
                 (Param("animal_id", "path"),
                  Param("removed_at", description="when the collar came off (ISO 8601); default now")), tags=("herd",)),
        Endpoint("GET", "/api/herd", a.READ_DEVICES, herd_register,
                 "The herd register: each animal's name, species, sex and the collar it wears since when (no "
                 "positions)", tags=("herd",)),
        Endpoint("GET", "/api/herd/collars-in-stock", a.READ_DEVICES, collars_in_stock,
                 "The collars in stock: taken off with none fitted, worn by nobody, when each came off and the "
                 "animal it came off (no positions)", tags=("herd",)),
        Endpoint("GET", "/api/animals/{animal_id}/collars", a.READ_DEVICES, collars_worn,
                 "The collars an animal wore, oldest first, with when each went on and came off",
                 (Param("animal_id", "path"),), tags=("herd",)),
        Endpoint("GET", "/api/animals/{animal_id}/activity", a.READ_ANIMALS, activity,
                 "An animal's behaviour shares per interval", (Param("animal_id", "path"), TIME_RANGE[0])),
        Endpoint("GET", "/api/devices", a.READ_DEVICES, devices, "Every collar's health, radio and versions"),
        Endpoint("GET", "/api/positions/latest", a.READ_ANIMALS, latest,
                 "Each animal's newest position the role may see (GeoJSON points)", media_type=GEOJSON),
        Endpoint("GET", "/api/positions", a.READ_ANIMALS, positions, "Fixes in a time range (GeoJSON points)",
                 (*TIME_RANGE, Param("max_points", kind="integer", description="per animal")), media_type=GEOJSON),
        Endpoint("GET", "/api/tracks", a.READ_ANIMALS, tracks, "Downsampled tracks per animal (GeoJSON lines)",
                 (*TIME_RANGE, Param("max_points", kind="integer", description=f"per animal, default {DEFAULT_TRACK_POINTS}")),
                 media_type=GEOJSON),
        Endpoint("GET", "/api/alerts", a.READ_ALERTS, alerts, "Alerts, most urgent first",
                 (Param("state", description="open (default), all, or new,acknowledged,resolved"),
                  Param("limit", kind="integer"))),
        Endpoint("GET", "/api/alerts/precision", a.READ_ALERTS, precision, "Verdict counts and precision per alert type"),
        Endpoint("GET", "/api/alerts/awaiting-verdict", a.HANDLE_ALERTS, awaiting_verdict,
                 "Alerts Tembo closed itself (their condition cleared) that await a ranger's verdict, oldest first",
                 (Param("limit", kind="integer"),)),
        Endpoint("GET", "/api/alerts/{alert_id}", a.READ_ALERTS, alert, "One alert with its history",
                 (Param("alert_id", "path", "integer"),)),
        Endpoint("POST", "/api/alerts/{alert_id}/acknowledge", a.HANDLE_ALERTS, acknowledge,
                 "Acknowledge an alert in the token owner's name", (Param("alert_id", "path", "integer"),)),
        Endpoint("POST", "/api/alerts/{alert_id}/resolve", a.HANDLE_ALERTS, resolve,
                 "Resolve an alert with a verdict and a note, in the token owner's name",
                 (Param("alert_id", "path", "integer"),), ResolveBody),
        Endpoint("GET", "/api/geography", a.READ_GEOGRAPHY, geography, "The reserve's map (GeoJSON)", media_type=GEOJSON),
        Endpoint("GET", "/api/geofences", a.READ_GEOGRAPHY, geofences, "The geofences the server rules test crossings against (GeoJSON polygons)",
                 media_type=GEOJSON),
        Endpoint("POST", "/api/geofences", a.MANAGE_GEOFENCES, import_geofences,
                 "Import fences from a GeoJSON, GeoPackage or zipped Shapefile (any CRS; the raw file as the body)",
                 (Param("filename", description="the file's name; its ending tells the format (.geojson, .gpkg, .zip)"),
                  Param("kind", description="boundary, farmland, village, ... when the file has no kind column"),
                  Param("alert_on", description="enter, exit or both (default from the kind)"),
                  Param("replace", description="true (or 1): the file's fences replace every stored one")),
                 media_type=GEOJSON, tags=("rules",), created=True,
                 file_body=("application/geo+json", "application/geopackage+sqlite3", "application/zip")),
        Endpoint("DELETE", "/api/geofences/{geofence_id}", a.MANAGE_GEOFENCES, delete_geofence, "Remove one fence",
                 (Param("geofence_id", "path", "integer"),), tags=("rules",)),
        Endpoint("GET", "/api/downlinks", a.READ_DOWNLINKS, downlinks, "Commands for collars and how far they got",
                 (Param("state", description="queued, sending, sent, failed or acknowledged"),)),
        Endpoint("POST", "/api/downlinks", a.QUEUE_DOWNLINKS, queue_downlink, "Queue a command for a collar",
                 body=DownlinkBody),
        Endpoint("GET", "/api/network_events", a.READ_DEVICES, network_events,
                 "What the network servers said besides uplinks: joins, delivery reports, network locations "
                 "(as exact as the role's positions), status, logs; the newest, oldest first",
                 (Param("device_id", description="the bridge's name of the collar or its DevEUI"),
                  Param("kind", description=", ".join(EVENT_KINDS)),
                  Param("limit", kind="integer", description="the newest this many, default 1000"))),
        Endpoint("GET", "/api/dead_letters", a.MANAGE_DEAD_LETTERS, dead_letters, "Bodies the bridge could not use",
                 (Param("all", description="true (or 1): the replayed ones too"),
                  Param("limit", kind="integer", description="at most this many, oldest first; default 1000"),
                  Param("after", kind="integer", description="those after this dead_letter_id (the next page)")),
                 tags=("operations",)),
        Endpoint("POST", "/api/dead_letters/replay", a.MANAGE_DEAD_LETTERS, replay,
                 "Run waiting dead letters through the current codec", tags=("operations",)),
        Endpoint("POST", "/api/notifications/retry", a.MANAGE_DEAD_LETTERS, retry_notifications,
                 "Queue failed notifications (alert steps, EarthRanger fixes) again, each with a fresh budget of tries, once "
                 "their cause is put right (an expired token renewed); those whose alert moved on are withdrawn "
                 "instead, each in its alert's history",
                 (Param("since", description="ISO 8601 time: only those queued since"),
                  Param("channel", description="earthranger, webhook, email or sms")), tags=("operations",)),
        Endpoint("GET", "/api/audit", a.READ_AUDIT, audit_log, "Who saw which positions, and account changes",
                 (TIME_RANGE[0], Param("username"), Param("limit", kind="integer")), tags=("access",)),
        Endpoint("GET", "/api/exports/movebank.csv", a.EXPORT, movebank, "Fixes as a Movebank CSV", TIME_RANGE,
                 media_type="text/csv", tags=("exports",)),
        Endpoint("GET", "/api/exports/positions.geojson", a.EXPORT, export_geojson, "Fixes as a GeoJSON file",
                 TIME_RANGE, media_type=GEOJSON, tags=("exports",)),
        Endpoint("GET", "/api/exports/positions.gpkg", a.EXPORT, export_geopackage, "Fixes as a GeoPackage",
                 TIME_RANGE, media_type="application/geopackage+sqlite3", tags=("exports",)),
        Endpoint("GET", "/api/exports/positions.shp.zip", a.EXPORT, export_shapefile,
                 "Fixes as a zipped ESRI Shapefile (points in WGS 84, UTF-8, README.txt naming each field); "
                 "400 past the format's 2 GB a file", TIME_RANGE, media_type=exports.MEDIA_TYPES["shp.zip"],
                 tags=("exports",)),
        Endpoint("GET", "/api/updates/versions", a.READ_UPDATES, update_versions,
                 "Which collar runs which firmware and model, its battery and link, and its last update's outcome",
                 tags=("updates",)),
        Endpoint("GET", "/api/updates/campaigns", a.READ_UPDATES, campaigns,
                 "Every update campaign with its collars' states, history and delivery, newest first",
                 tags=("updates",)),
        Endpoint("POST", "/api/updates/campaigns", a.MANAGE_UPDATES, start_campaign,
                 "Start a campaign for a signed update image (the raw image tembo release wrote as the body; "
                 "its kind and version are read from it)",
                 (Param("name", description="a name for the campaign (default: kind and version)"),
                  Param("device_id", description="the collars, comma-separated or repeated (default: all)"),
                  Param("canary_pct", kind="integer", description="0..100, default 10"),
                  Param("max_canary_failures_pct", kind="integer", description="stop above this share of failed "
                        "canaries, 0..100, default 20"),
                  Param("min_battery_mv", kind="integer", description="gate, default 3400"),
                  Param("species", description="the group: the collars worn by this species' animals "
                        "(instead of device_id)"),
                  Param("min_rssi_dbm", kind="number", description="gate, dBm (decimals allowed), default -120"),
                  Param("max_spreading_factor", kind="integer", description="gate: a collar whose last uplink "
                        "came at a higher spreading factor waits, 7..12, default 12")),
                 tags=("updates",), created=True, file_body=("application/octet-stream",)),
        Endpoint("GET", "/api/updates/campaigns/{campaign_id}", a.READ_UPDATES, campaign,
                 "One update campaign with its collars' states, history and delivery", (Param("campaign_id", "path", "integer"),),
                 tags=("updates",)),
        *(Endpoint("POST", f"/api/updates/campaigns/{{campaign_id}}/{action}", a.MANAGE_UPDATES, steering(action),
                   f"{action.capitalize()} an update campaign in the token owner's name", (Param("campaign_id", "path", "integer"),),
                   tags=("updates",))
          for action in ("pause", "resume", "abort")),
        Endpoint("GET", "/metrics", a.READ_METRICS, metrics, "Prometheus metrics (text format)",
                 media_type=CONTENT_TYPE_LATEST, tags=("operations",)),
    ]


# The app -------------------------------------------------------------------------------------


def create_app(bridge: Bridge) -> Starlette:
    """The bridge's whole HTTP face: the webhook (`lora_bridge.adapters.webhook`) and the API.

    InsecureSettings when the webhook secret is empty, missing or published without the demo opt-in.
    """
    app = webhook.create_app(bridge)
    registries = Scrapes(live=CollectorRegistry(), delayed=CollectorRegistry())
    refusals: StoreRefusals = app.state.refusals
    registries.live.register(BridgeCollector(bridge, live_alerts=True, refusals=refusals))
    registries.delayed.register(BridgeCollector(bridge, live_alerts=False, refusals=refusals))
    for registry in (registries.live, registries.delayed):  # no figure an alert moves: both roles' scrapes
        registry.register(RefusalsCollector(refusals, lambda: _intake_backlog(bridge)))
    requests = Counter("tembo_api_requests", "API requests answered", ["route", "status"], registry=registries.live)
    table = endpoints(bridge, registries)
    handling_alerts = frozenset(endpoint.path for endpoint in table if endpoint.permission == access.HANDLE_ALERTS)
    registries.delayed.register(RequestsWithout(requests, handling_alerts))
    for endpoint in table:
        # an id that is no number, or too long to be a row id, is a 404
        path = (endpoint.path.replace("{alert_id}", "{alert_id:row_id}")
                .replace("{geofence_id}", "{geofence_id:row_id}").replace("{campaign_id}", "{campaign_id:row_id}"))
        app.router.routes.append(Route(path, _guarded(bridge, endpoint, requests), methods=[endpoint.method]))

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(openapi(table))

    app.router.routes.append(Route("/api/openapi.json", openapi_json, methods=["GET"]))
    app.add_exception_handler(AuthenticationFailed, _unauthorized)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(InvalidRequest, _bad_request)
    app.add_exception_handler(InvalidCommandValues, _unprocessable)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Conflict, _conflict)
    app.state.endpoints = table
    app.state.scrapes = registries  # `add_collector`: what the serving process adds (its MQTT workers)
    return app


def add_collector(app: Starlette, collector: Any) -> None:
    """Answer collector's figures in `/metrics` to every role that may scrape (figures that do not move when
    an alert comes in or is handled beyond what `tembo_uplinks_stored` already tells)."""
    scrapes: Scrapes = app.state.scrapes
    scrapes.live.register(collector)
    scrapes.delayed.register(collector)


def _guarded(bridge: Bridge, endpoint: Endpoint, requests: Counter) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        status = 500
        try:
            viewer = await _viewer(request, bridge)
            if endpoint.permission is not None:
                viewer.require(endpoint.permission)
            _refuse_nul(request)
            response = await endpoint.handler(request, viewer)
            # An answer given for a token is that viewer's alone: no browser or proxy keeps it
            # (a ranger's exact positions must not be found later by whoever uses that machine).
            response.headers.setdefault("Cache-Control", "private, no-store")
            status = response.status_code
            return response
        except TooManyAttempts:
            status = 429
            raise
        except AuthenticationFailed:
            status = 401
            raise
        except Forbidden:
            status = 403
            log.warning("route refused", extra={"route": endpoint.path, "client": _client(request)})
            raise
        except NotFound:
            status = 404
            raise
        except Conflict:
            status = 409
            raise
        except InvalidCommandValues:
            status = 422
            raise
        except InvalidRequest:
            status = 400
            raise
        except ClientDisconnect:
            status = 499
            raise
        except Exception as error:
            if not is_transient_store_error(error):
                raise
            # The store takes no write now (a backup holds SQLite's lock, a full disk, a lost
            # connection): a read of positions cannot write its audit line, an acknowledgement cannot
            # be kept. Say so and when to try again, with an error_id; the driver's first line is logged
            # under it (never the statement nor its parameters, which can carry a key).
            status = 503
            said = error_id()
            log.warning("API request refused error_id=%s route=%s: the store takes no write now (%s: %s)", said,
                        endpoint.path, type(error).__name__, driver_said(error)[:200],
                        extra={"route": endpoint.path, "client": _client(request), "error_id": said})
            return JSONResponse({"error": "the store is unavailable now (locked by another program, read-only "
                                          "or full); try again later", "error_id": said}, status_code=503,
                                headers={"Retry-After": str(RETRY_AFTER_S), "Cache-Control": "private, no-store"})
        finally:
            requests.labels(endpoint.path, str(status)).inc()

    serve.__doc__ = endpoint.summary
    return serve


async def _viewer(request: Request, bridge: Bridge) -> Viewer:
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationFailed("this route wants Authorization: Bearer <API token>")
    return await run_in_threadpool(bridge.viewer_for_token, secret.strip(), _client(request))


@dataclass(frozen=True)
class Scrapes:
    """What `/metrics` answers: every gauge to a role that sees alerts live, and to a role that sees
    them late (a field technician: 1 h, 24 h for a high-value animal) no figure that moves when an
    alert comes in or is handled: no alert gauges, downlink gauges without the `ack_alert`s answering
    collar alerts (`Bridge.counts`), request counts without the routes only alert handlers call
    (a ranger's acknowledgement at 03:00). A scrape had told it at once that an alert was raised, a
    day before its alert list would."""

    live: CollectorRegistry
    delayed: CollectorRegistry

    def for_viewer(self, viewer: Viewer) -> CollectorRegistry:
        return self.live if viewer.exact_positions else self.delayed


class BridgeCollector:
    """Prometheus collector: the bridge's counts, read from the store at each scrape (for a role that
    sees alerts late, live_alerts False: without what an alert moves, `Bridge.counts`)."""

    def __init__(self, bridge: Bridge, live_alerts: bool = True, refusals: StoreRefusals | None = None) -> None:
        self.bridge = bridge
        self.live_alerts = live_alerts
        self.refusals = refusals or StoreRefusals()

    def describe(self) -> list[Any]:
        return []  # read the store only when scraped, not when registered

    def collect(self) -> Any:
        counts = self.bridge.counts(live_alerts=self.live_alerts)
        for key, value in sorted(counts.items()):
            yield GaugeMetricFamily(f"tembo_{key}", f"Tembo bridge: {key.replace('_', ' ')}", value=float(value))
        # As `/healthz`: a store that reads but refused the webhook's last body (a full disk, another program's
        # write lock) is down; it had said 1 while every uplink was answered 503.
        up = self.bridge.healthy() and self.refusals.error_id is None
        yield GaugeMetricFamily("tembo_store_up", "1 when the store answers and takes the webhook's bodies",
                                value=1.0 if up else 0.0)
        yield from rules_file_metrics(self.bridge)


def _intake_backlog(bridge: Bridge) -> int | None:
    """The durable intake's bodies not applied yet; None when the webhook answers once applied."""
    return bridge.durable_intake().backlog() if bridge.settings.webhook_ack == "durable" else None


def rules_file_metrics(bridge: Bridge) -> Any:
    """The rules file version the bridge works by (its sha256, as `sha256sum` prints it) and whether the
    file's last change read, looked at now: an edit the bridge refused shows as 0 until it is put right."""
    watch = bridge.rules_file
    if watch.path is None:
        return
    bridge.reload_rules_file()
    info = GaugeMetricFamily("tembo_rules_file_info", "The rules file version in force (sha256 of its bytes)",
                             labels=["sha256"])
    info.add_metric([watch.in_force.sha256 or ""], 1.0)
    yield info
    yield GaugeMetricFamily("tembo_rules_file_last_reload_successful",
                            "1 when the rules file's last change was applied, 0 when it did not read (see the log)",
                            value=1.0 if watch.last_read_ok else 0.0)


class RequestsWithout:
    """Prometheus collector: the API's request counts without the samples of some routes (those only
    alert handlers call, for a role that sees alerts late)."""

    def __init__(self, requests: Counter, hidden_routes: frozenset[str]) -> None:
        self.requests = requests
        self.hidden_routes = hidden_routes

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        for family in self.requests.collect():  # a fresh family each scrape: its samples may be cut
            family.samples = [sample for sample in family.samples if sample.labels.get("route") not in self.hidden_routes]
            yield family


# OpenAPI -------------------------------------------------------------------------------------


def openapi(table: list[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API (and of the webhook routes), from the route table."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in table:
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "operationId": _operation_id(endpoint),
            "tags": list(endpoint.tags),
            "description": "Roles: " + ", ".join(endpoint.roles()),
            "x-tembo-roles": endpoint.roles(),
            "security": [{"bearer": []}],
            "parameters": [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.where == "path",
                    "schema": {"type": p.kind},
                    **({"description": p.description} if p.description else {}),
                }
                for p in endpoint.params
            ],
            "responses": {
                "201" if endpoint.created or endpoint.body is DownlinkBody else "200": {
                    "description": "OK",
                    "content": {endpoint.media_type: {}},
                },
                "400": {"description": "A value the bridge does not accept"},
                **({"422": {"description": "Values the command's codec row does not name, or lacks"}}
                   if endpoint.body is DownlinkBody else {}),
                "401": {"description": "No valid API token"},
                "403": {"description": "The token's role may not use this route"},
                **({"404": {"description": "No animal with this id"}} if "{animal_id}" in endpoint.path else {}),
                **({"409": {"description": "Another animal wears the collar; say move to take it from it"}}
                   if endpoint.body is CollarFittingBody else {}),
                "429": {"description": "Locked out after repeated bad tokens from this address; see Retry-After"},
                "503": {"description": "The store is unavailable now (locked, read-only, full); see Retry-After"},
            },
        }
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": endpoint.body.model_json_schema()}},
            }
        if endpoint.file_body:
            operation["requestBody"] = {
                "required": True,
                "content": {kind: {"schema": {"type": "string", "contentMediaType": kind}} for kind in endpoint.file_body},
            }
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    secret = [{"webhookSecret": []}]
    for path, summary in (
        ("/uplinks/tts", "The Things Stack v3 webhook (every message kind)"),
        ("/uplinks/tts/{event}", "The Things Stack v3 webhook, one message kind per path appended to the base URL"),
        ("/uplinks/tts/{app_id}/{device_id}", "The Things Stack v3 webhook with its path variables"),
        ("/uplinks/tts/{app_id}/{device_id}/{event}", "The Things Stack v3 webhook, one message kind per path"),
        ("/uplinks/chirpstack", "ChirpStack v4 HTTP integration (?event=up, join, ack, txack, status, ...)"),
    ):
        names = re.findall(r"{(\w+)}", path)
        paths.setdefault(path, {})["post"] = {
            "summary": summary,
            "parameters": [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names],
            "operationId": _operation_id(Endpoint("POST", path, None, _never, summary)),
            "tags": ["webhook"],
            "security": secret,
            "responses": {
                "200": {"description": "Kept and read: processed, duplicate, recorded, kept (a kind Tembo does "
                                       "not read) or dead_letter (no retry wanted; stage parse: not what its "
                                       "kind says, the reason says why)"},
                "202": {"description": "Kept, applied later: pending (the store failed while applying it) or, "
                                       "with TEMBO_WEBHOOK_ACK=durable, received"},
                "401": {"description": "Wrong or missing X-Tembo-Secret (nothing kept)"},
                "408": {"description": "The body did not all arrive within the answer's deadline (nothing "
                                       "kept, the connection closed): send it again"},
                "503": {"description": "The store cannot take the body now (nothing kept): send it again; "
                                       "see Retry-After (its error_id names it in the bridge's log)"},
            },
        }
    paths["/healthz"] = {"get": {"summary": "200 when the store answers (no data)", "operationId": "healthz",
                                 "tags": ["operations"], "security": [], "responses": {"200": {"description": "OK"}}}}
    paths["/api/openapi.json"] = {"get": {"summary": "This document", "operationId": "openapi", "tags": ["operations"],
                                          "security": [], "responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": API_TITLE,
            "version": API_VERSION,
            "description": "Positions follow the token's role: exact and live for rangers and admins, "
            "coarsened and delayed for the others; every read of positions is audited.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "tembo tokens create"},
                "webhookSecret": {"type": "apiKey", "in": "header", "name": webhook.SECRET_HEADER},
            }
        },
        "paths": paths,
    }


async def _never(request: Request, viewer: Viewer) -> Response:  # pragma: no cover - schema only
    raise NotFound("no such route")


def _operation_id(endpoint: Endpoint) -> str:
    words = re.sub(r"[{}]", "", endpoint.path).strip("/").replace("/", "_").replace(".", "_")
    return f"{endpoint.method.lower()}_{words}"


# Small parsers and answers -------------------------------------------------------------------


def downsample(fixes: list[PositionView], max_points: int) -> list[PositionView]:
    """At most max_points fixes spread evenly over the track, the first and the last kept."""
    if max_points <= 0 or len(fixes) <= max_points:
        return list(fixes)
    if max_points == 1:
        return [fixes[-1]]
    picks = np.unique(np.linspace(0, len(fixes) - 1, max_points).round().astype(int))
    return [fixes[i] for i in picks]


def _points(views: list[PositionView], precision: str) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "precision": precision,
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [v.lon, v.lat]},
                "properties": {"animal_id": v.animal_id, "name": v.name, "device_id": v.device_id,
                               "time": v.time.isoformat()},
            }
            for v in views
        ],
    }


def _refuse_nul(request: Request) -> None:
    """A NUL character in a path or query value is no id, time or name (PostgreSQL text cannot even hold
    one: it had answered 500); InvalidRequest naming the parameter."""
    for name, value in [*request.path_params.items(), *request.query_params.multi_items()]:
        if _has_nul(value):
            raise InvalidRequest(f"{name} holds a NUL character")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _time(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return as_utc(datetime.fromisoformat(raw.replace("Z", "+00:00")))
    except ValueError:
        raise InvalidRequest(f"{name}={raw!r} is not an ISO 8601 time (e.g. 2026-03-01T06:00:00Z)") from None
    except OverflowError:  # a time at the calendar's edge whose offset moves it past year 1 or 9999 in UTC
        raise InvalidRequest(f"{name}={raw!r} lies outside the years 1..9999 in UTC") from None


FLAG_VALUES = {"true": True, "1": True, "false": False, "0": False}


def _flag(request: Request, name: str) -> bool:
    """A yes/no query parameter: true or 1, false or 0 (absent or empty: false); InvalidRequest otherwise,
    so that a script's `?all=true` is not silently read as no."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return False
    try:
        return FLAG_VALUES[raw.lower()]
    except KeyError:
        raise InvalidRequest(f"{name} is true or false (1 or 0), got {raw[:40]!r}") from None


def _int(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be {low}..{high}, got {value}")
    return value


def _float(request: Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:  # NaN too
        raise InvalidRequest(f"{name} must be {low:g}..{high:g}, got {raw}")
    return value


def _spreading_factor(request: Request) -> int:
    raw = request.query_params.get("max_spreading_factor")
    if raw is None or raw == "":
        return max(SPREADING_FACTORS)  # SF12: no gate
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value not in SPREADING_FACTORS:
        raise InvalidRequest("max_spreading_factor is the highest spreading factor a collar may be on, "
                             f"7..12 (SF7 to SF12), not {raw!r}")
    return value


def _max_points(request: Request, default: int) -> int:
    return int(_int(request, "max_points", default, 1, MAX_TRACK_POINTS) or default)


def _animal_ids(request: Request) -> list[str] | None:
    return _list(request, "animal_id")


def _list(request: Request, name: str) -> list[str] | None:
    """A parameter given comma-separated, repeated, or both; None when absent or empty."""
    raw = request.query_params.getlist(name)
    items = [part.strip() for item in raw for part in item.split(",") if part.strip()]
    return items or None


async def _body(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()
    try:
        document = json.loads(raw or b"null")
        if _has_nul(document):
            raise InvalidRequest(f"body is not a {model.__name__}: a text holds a NUL character")
        return model.model_validate(document)
    except InvalidRequest:
        raise
    except (ValueError, ValidationError) as error:
        raise InvalidRequest(f"body is not a {model.__name__}: {error}") from None
    except RecursionError:
        raise InvalidRequest(f"body is not a {model.__name__}: JSON nested too deeply") from None


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _unauthorized(request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, TooManyAttempts):
        return JSONResponse({"error": str(error)}, status_code=429, headers={"Retry-After": str(error.retry_after_s)})
    return JSONResponse({"error": str(error)}, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="tembo"'})


async def _forbidden(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=403)


async def _bad_request(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=400)


async def _unprocessable(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=422)


async def _not_found(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=404)


async def _conflict(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=409)
