"""`GET /map/names/{z}/{x}/{y}.json`: the live map's name tiles (`name_tiles`), a route of the
dashboard's `st.App` beside Streamlit's (mounted by `dashboard_server.py`).

Names sit at animals' positions, so the route answers only whom the page would: the signed-in
viewer of the browser's session cookie (the dashboard's role or an admin; checked with the bridge
on every request, as a page run is), or the kiosk's visitor on a `--role visitor` dashboard; 401
otherwise. Positions, alerts and animals are read through the bridge as that viewer (coarse and
late for roles without exact positions), for the live moment or the page's "as of" moment (`at`).
A viewer's herd is read once per change of the store (`Bridge.change_counter`) and for at most
`HERD_TTL_S`, like the map page's own queries, and kept under that viewer only (`kept_answers`):
every tile handed out is logged in the audit log as that viewer's view of the herd's positions,
and a herd read ahead (`warm_herd`) that no tile request fetches is not logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lora_bridge.access import VISITOR, Viewer
from lora_bridge.errors import AuthenticationFailed
from ranger_dashboard import kept_answers, name_tiles, roles, session_cookie

logger = logging.getLogger(__name__)

HERD_TTL_S = 60.0
CACHED = 32  # herds and placements kept (viewer x moment x zoom)
_cache: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()
_making: dict[tuple[Any, ...], threading.Event] = {}
_lock = threading.Lock()
# The live map page starts its routes' answers while the browser is still loading the map (`warm`):
# one thread, so a page run never has more than one such read of the store going on at once.
_warming = ThreadPoolExecutor(max_workers=1, thread_name_prefix="map-routes-warm")


def cached(key: tuple[Any, ...], make: Any) -> Any:
    """`make()`, kept under `key` for at most HERD_TTL_S (the last CACHED answers of the routes).
    While one thread makes an answer, another asking for the same key waits for it instead of
    making it again (a request arriving while the page's `warm` reads the store)."""
    while True:
        now = time.monotonic()
        with _lock:
            hit = _cache.get(key)
            if hit is not None and now - hit[0] < HERD_TTL_S:
                _cache.move_to_end(key)
                return hit[1]
            pending = _making.get(key)
            mine = pending is None
            if mine:
                pending = _making[key] = threading.Event()
        if mine:
            break
        pending.wait()  # made meanwhile (or its maker failed: then this thread tries)
    try:
        value = make()
        with _lock:
            _cache[key] = (now, value)
            while len(_cache) > CACHED:
                _cache.popitem(last=False)
        return value
    finally:
        with _lock:
            del _making[key]
        pending.set()


def warm(make: Any, what: str) -> None:
    """Run `make` (which fills the routes' cache through `cached`) on the warming thread; a failure
    is logged (the route makes the answer itself when asked)."""

    def run() -> None:
        try:
            make()
        except Exception:
            logger.exception("the live map's %s could not be prepared ahead", what)

    _warming.submit(run)


# Seconds a map route asks the browser to wait while the store is busy (a backup holds its write lock).
RETRY_AFTER_S = 5


def store_busy(error: BaseException, route: str) -> Response | None:
    """The 503 a map route answers while the store is busy (`error` passes: SQLite's write lock held,
    the store read-only or gone), with Retry-After; None for any other error. The answer's audit
    line cannot be written now, so its positions are not handed out (until 5 December a 500)."""
    from lora_bridge.errors import driver_said, is_transient_store_error

    if not is_transient_store_error(error):
        return None
    logger.warning("map route %s refused: the store is busy (%s)", route, driver_said(error)[:200],
                   extra={"route": route})
    return JSONResponse(
        {"error": "the Tembo store is busy (another program is writing to it); try again shortly"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S), "Cache-Control": "private, no-store"},
    )


def viewer_of(request: Request, bridge: Any, dashboard_role: str) -> Viewer | None:
    """Who asks: the kiosk's visitor on a visitor dashboard, else the live sign-in of the request's
    session cookie when its role may use this dashboard; None for anyone else."""
    if dashboard_role == VISITOR:
        from ranger_dashboard.login import kiosk_viewer

        return kiosk_viewer()
    secret = request.cookies.get(session_cookie.cookie_name(request.headers.get("host")))
    if not secret:
        return None
    try:
        viewer = bridge.viewer_for_session(secret)
    except AuthenticationFailed:
        return None
    return viewer if viewer is not None and roles.admits(dashboard_role, viewer.role) else None


def herd_points(bridge: Any, viewer: Viewer, as_of: datetime | None, clock: str) -> list[dict[str, Any]]:
    """The herd as the live map draws it at moment `as_of` (None: live, by the dashboard's `clock`),
    as `viewer` may see it: the map page's own composition (`herd.compose`)."""
    from ranger_dashboard import herd

    animals = bridge.animals(viewer=viewer)
    alerts = bridge.alerts_at(as_of, viewer=viewer)
    positions = bridge.positions_at(as_of, viewer=viewer)
    return herd.compose(animals, alerts, positions, as_of, clock).points


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def names_for(
    bridge: Any, viewer: Viewer, z: int, x: int, y: int, query: dict[str, str], clock: str = "wall"
) -> dict[str, Any]:
    """The FeatureCollection of names in tile z/x/y for `viewer` (see `name_tiles`), on a dashboard
    whose clock is `clock`; the herd's reads logged as `viewer`'s view."""
    herd_key, kept = herd_for(bridge, viewer, query, clock)
    points = kept_answers.hand_out(bridge, kept, viewer)
    whole, focus = _float(query.get("whole")), query.get("focus") or None
    named = cached((*herd_key, z, whole, focus), lambda: name_tiles.named_at_zoom(points, z, whole, focus))
    return name_tiles.tile_names(named, z, x, y)


def herd_for(
    bridge: Any, viewer: Viewer, query: dict[str, str], clock: str, changed: tuple[Any, ...] | None = None
) -> tuple[tuple[Any, ...], kept_answers.Kept[list[dict[str, Any]]]]:
    """The herd the name tiles of a names URL's `query` place (`herd_points` at its moment `at`),
    read once per viewer, moment and change of the store, not yet logged: (its cache key, the herd
    kept for `viewer`). changed: the store's change counter as the caller read it, else read here."""
    as_of = datetime.fromisoformat(query["at"]) if query.get("at") else None
    herd_key = ("herd", viewer, as_of, bridge.change_counter() if changed is None else changed)
    return herd_key, cached(herd_key, lambda: kept_answers.keep(bridge, viewer, lambda: herd_points(bridge, viewer, as_of, clock)))


def warm_herd(bridge: Any, viewer: Viewer, as_of: datetime | None, clock: str,
              changed: tuple[Any, ...] | None = None) -> None:
    """Have the herd the name tiles of the live map at `as_of` (None: live) place read while the
    browser loads the map (`warm`), as the tiles' `at` will name it; logged only once a tile is
    handed out."""
    query = {"at": as_of.isoformat()} if as_of else {}
    warm(lambda: herd_for(bridge, viewer, query, clock, changed), "names")


async def names(request: Request) -> Response:
    """GET /map/names/{z}/{x}/{y}.json"""
    from ranger_dashboard import config, data

    z, x, y = (request.path_params[key] for key in ("z", "x", "y"))
    if not name_tiles.valid_tile(z, x, y):
        return JSONResponse({"error": f"no such name tile {z}/{x}/{y}"}, status_code=404)
    options = config.options()
    bridge = data.bridge(options.database_url)
    viewer = await run_in_threadpool(viewer_of, request, bridge, options.role)
    if viewer is None:
        return JSONResponse({"error": "sign in to the dashboard first"}, status_code=401)
    try:
        found = await run_in_threadpool(names_for, bridge, viewer, z, x, y, dict(request.query_params), options.clock)
    except ValueError as error:  # a broken `at`
        return JSONResponse({"error": str(error)}, status_code=400)
    except Exception as error:
        busy = store_busy(error, "names")
        if busy is None:
            raise
        return busy
    return JSONResponse(found, headers={"Cache-Control": "private, no-store"})


def routes() -> list[Route]:
    """GET /map/names/{z}/{x}/{y}.json"""
    return [Route(name_tiles.NAMES_PATH + "/{z:int}/{x:int}/{y:int}.json", names, methods=["GET"])]
