"""`GET /map/tracks.json?since=...&until=...`: the live map's tracks, a route of the dashboard's
`st.App` beside the name tiles (mounted by `dashboard_server.py`).

The live map's first frame carries the reserve, the alert rings and every animal's dot; its tracks
layer names this route (`tracks_url`), and deck.gl fetches the segments after that frame, as it
does the names: the map's JSON over Streamlit's websocket is a seventh of what it was for 500
animals (measured in docs/dashboard.md), and the browser draws the herd before it parses and lays
out some 11,000 track segments.

Tracks are positions, so the route answers only whom the page would (`name_routes.viewer_of`: the
signed-in viewer of the browser's session cookie with the dashboard's role or an admin, or the
kiosk's visitor on a `--role visitor` dashboard; 401 otherwise), read through the bridge as that
viewer (coarse and late for roles without exact positions), for the window the page asked for, at
most `MAX_WINDOW` long. The answer is kept under that viewer only and logged in the audit log each
time it is handed out (`kept_answers`); one read ahead (`warm`) that the browser never fetches is
not logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lora_bridge.access import Viewer
from ranger_dashboard import kept_answers, map_layers, name_routes

logger = logging.getLogger(__name__)

TRACKS_PATH = "/map/tracks.json"
# The longest track the live map offers (its "Track length" choices).
TRACK_HOURS = (6, 12, 24, 48, 72, 168)
DEFAULT_TRACK_HOURS = 24
MAX_WINDOW = timedelta(hours=max(TRACK_HOURS))


def tracks_url(since: datetime, until: datetime, version: Any = None) -> str:
    """The tracks layer's URL (relative, like Streamlit's own files) for the window `since` to
    `until`; `version` (the store's change counter) makes a changed store a new URL, fetched again."""
    query = {"since": since.isoformat(), "until": until.isoformat()}
    if version is not None:
        query["v"] = hashlib.blake2s(repr(version).encode(), digest_size=5).hexdigest()
    return f".{TRACKS_PATH}?{urlencode(query)}"


def window(query: dict[str, str]) -> tuple[datetime, datetime]:
    """(since, until) of a request's query; ValueError for a missing, broken or too long window."""
    try:
        since, until = (datetime.fromisoformat(query[key]) for key in ("since", "until"))
    except KeyError as missing:
        raise ValueError(f"the tracks need {missing.args[0]!r}") from None
    since, until = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (since, until))
    if not timedelta(0) <= until - since <= MAX_WINDOW:
        raise ValueError(f"a track window runs forward and for at most {MAX_WINDOW}")
    return since, until


def segments_for(bridge: Any, viewer: Viewer, since: datetime, until: datetime, max_points: int) -> list[dict[str, Any]]:
    """The herd's tracks from `since` to `until` as `viewer` may see them, thinned by the bridge to
    `max_points` fixes each, as the map's line segments (`map_layers.track_segments`)."""
    tracks = bridge.tracks(since=since, until=until, viewer=viewer, max_points=max_points)
    return map_layers.track_segments(map_layers.track_paths(tracks))


def body_for(bridge: Any, viewer: Viewer, since: datetime, until: datetime,
             changed: tuple[Any, ...] | None = None) -> kept_answers.Kept[bytes]:
    """The route's JSON answer for `viewer` and the window, made once per change of the store and
    kept a while for `viewer` (`name_routes.cached`), not yet logged (`kept_answers.hand_out`).
    changed: the store's change counter as the caller read it (a page run), else read here."""
    from ranger_dashboard import data

    def answer() -> bytes:
        segments = segments_for(bridge, viewer, since, until, data.TRACK_MAX_POINTS)
        return json.dumps(segments, separators=(",", ":")).encode()

    key = ("tracks", viewer, since, until, bridge.change_counter() if changed is None else changed)
    return name_routes.cached(key, lambda: kept_answers.keep(bridge, viewer, answer))


def warm(bridge: Any, viewer: Viewer, url: str, changed: tuple[Any, ...] | None = None) -> None:
    """Have the answer to the map's tracks `url` (`tracks_url`) made while the browser still loads
    the map, so the map's fetch of it, a second or so later, finds it ready (`name_routes.warm`);
    logged in the audit log only when the browser fetches it. changed: the store's change counter
    the page run read (`data.changes`), so the run reads it once."""
    since, until = window(dict(parse_qsl(urlsplit(url).query)))
    name_routes.warm(lambda: body_for(bridge, viewer, since, until, changed), "tracks")


async def tracks(request: Request) -> Response:
    """GET /map/tracks.json"""
    from ranger_dashboard import config, data

    options = config.options()
    bridge = data.bridge(options.database_url)
    viewer = await run_in_threadpool(name_routes.viewer_of, request, bridge, options.role)
    if viewer is None:
        return JSONResponse({"error": "sign in to the dashboard first"}, status_code=401)
    try:
        since, until = window(dict(request.query_params))
    except ValueError as error:
        return JSONResponse({"error": str(error)}, status_code=400)

    try:
        kept = await run_in_threadpool(body_for, bridge, viewer, since, until)
        body = await run_in_threadpool(kept_answers.hand_out, bridge, kept, viewer)
    except Exception as error:
        busy = name_routes.store_busy(error, "tracks")
        if busy is None:
            raise
        return busy
    return Response(body, media_type="application/json", headers={"Cache-Control": "private, no-store"})


def routes() -> list[Route]:
    """GET /map/tracks.json"""
    return [Route(TRACKS_PATH, tracks, methods=["GET"])]
