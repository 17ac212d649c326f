"""The bridge's HTTP face (Starlette): network-server webhooks in, a small read API out.

    POST /uplinks/tts          The Things Stack v3 webhook, header X-Tembo-Secret
    POST /uplinks/chirpstack   ChirpStack v4 HTTP integration (event=up), header X-Tembo-Secret
    GET  /healthz              200 when the store answers
    GET  /api/animals, /api/alerts[?state=open|all|new,acknowledged,resolved], /api/positions/latest,
         /api/devices, /api/geography, /api/dead_letters
                               JSON views; `Authorization: Bearer <api_token>` when one is set
    POST /api/dead_letters/replay
                               run waiting dead letters through the current codec (API token as above)

A webhook answers as soon as the body is stored and applied: 200 processed / duplicate / dead letter
(undecodable payloads are kept, the network server must not retry them), 400 for a body that is not
an uplink (kept as a dead letter with the reason), 401 for a wrong secret (not stored).
"""

from __future__ import annotations

import hmac
import logging

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lora_bridge.errors import AuthenticationFailed, NotFound
from lora_bridge.service import Bridge
from lora_bridge.uplink_formats import SOURCE_CHIRPSTACK, SOURCE_TTS
from lora_bridge.views import IngestResult, to_jsonable

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Tembo-Secret"
# Network-server uplink bodies are a few KB; anything far larger is not one of them.
MAX_BODY_BYTES = 256 * 1024


def create_app(bridge: Bridge) -> Starlette:
    """The webhook and read-API app over bridge."""

    async def tts_uplink(request: Request) -> JSONResponse:
        return await _ingest(request, bridge, SOURCE_TTS)

    async def chirpstack_uplink(request: Request) -> JSONResponse:
        event = request.query_params.get("event", "up")
        if event != "up":
            # ChirpStack posts every event type to one URL; only uplinks are Tembo's business.
            _check_secret(request, bridge)
            return JSONResponse({"status": "ignored", "event": event})
        return await _ingest(request, bridge, SOURCE_CHIRPSTACK)

    async def healthz(request: Request) -> JSONResponse:
        healthy = await run_in_threadpool(bridge.healthy)
        return JSONResponse({"status": "ok" if healthy else "store unavailable"}, status_code=200 if healthy else 503)

    async def api_animals(request: Request) -> JSONResponse:
        _check_api_token(request, bridge)
        return JSONResponse(to_jsonable(await run_in_threadpool(bridge.animals)))

    async def api_alerts(request: Request) -> JSONResponse:
        _check_api_token(request, bridge)
        state = request.query_params.get("state", "open")
        if state == "open":
            views = await run_in_threadpool(bridge.open_alerts)
        elif state == "all":
            views = await run_in_threadpool(bridge.alerts)
        else:
            views = await run_in_threadpool(bridge.alerts, tuple(state.split(",")))
        return JSONResponse(to_jsonable(views))

    async def api_latest_positions(request: Request) -> JSONResponse:
        _check_api_token(request, bridge)
        viewer = request.client.host if request.client else None
        views = await run_in_threadpool(bridge.latest_positions, f"api:{viewer}")
        return JSONResponse(to_jsonable(views))

    async def api_devices(request: Request) -> JSONResponse:
        _check_api_token(request, bridge)
        return JSONResponse(to_jsonable(await run_in_threadpool(bridge.devices)))

    async def api_geography(request: Request) -> JSONResponse:
        _check_api_token(request, bridge)
        return JSONResponse(await run_in_threadpool(bridge.geography))

    async def api_dead_letters(request: Request) -> JSONResponse:
        _check_api_token(request, bridge)
        views = await run_in_threadpool(bridge.dead_letters, request.query_params.get("all") == "1")
        return JSONResponse(to_jsonable(views))

    async def api_replay_dead_letters(request: Request) -> JSONResponse:
        _check_api_token(request, bridge)
        report = await run_in_threadpool(bridge.replay_dead_letters)
        return JSONResponse(to_jsonable(report))

    app = Starlette(
        routes=[
            Route("/uplinks/tts", tts_uplink, methods=["POST"]),
            Route("/uplinks/chirpstack", chirpstack_uplink, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/api/animals", api_animals, methods=["GET"]),
            Route("/api/alerts", api_alerts, methods=["GET"]),
            Route("/api/positions/latest", api_latest_positions, methods=["GET"]),
            Route("/api/devices", api_devices, methods=["GET"]),
            Route("/api/geography", api_geography, methods=["GET"]),
            Route("/api/dead_letters", api_dead_letters, methods=["GET"]),
            Route("/api/dead_letters/replay", api_replay_dead_letters, methods=["POST"]),
        ],
        exception_handlers={AuthenticationFailed: _unauthorized, NotFound: _not_found},
    )
    app.state.bridge = bridge
    return app


async def _ingest(request: Request, bridge: Bridge, source: str) -> JSONResponse:
    _check_secret(request, bridge)
    body, truncated = await _read_capped(request, MAX_BODY_BYTES)
    if truncated:
        log.warning("oversized uplink body truncated", extra={"source": source})
    result: IngestResult = await run_in_threadpool(bridge.ingest_uplink, body, source)
    payload = {
        "status": result.status,
        "raw_uplink_id": result.raw_uplink_id,
        "device_id": result.device_id,
        "f_cnt": result.f_cnt,
        "message": result.message,
        "reason": result.reason,
    }
    return JSONResponse(payload, status_code=400 if result.malformed else 200)


async def _read_capped(request: Request, limit: int) -> tuple[bytes, bool]:
    """The body's first `limit` bytes and whether there was more; never holds more than limit in memory."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        if size + len(chunk) > limit:
            chunks.append(chunk[: limit - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _check_secret(request: Request, bridge: Bridge) -> None:
    given = request.headers.get(SECRET_HEADER, "").encode()
    if not hmac.compare_digest(given, bridge.settings.webhook_secret_bytes()):
        log.warning("webhook secret rejected", extra={"client": request.client.host if request.client else None})
        raise AuthenticationFailed(f"missing or wrong {SECRET_HEADER}")


def _check_api_token(request: Request, bridge: Bridge) -> None:
    token = bridge.settings.api_token
    if token is None:
        return
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
    if not hmac.compare_digest(given, token.get_secret_value().encode()):
        raise AuthenticationFailed("missing or wrong API token")


async def _unauthorized(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=401)


async def _not_found(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=404)
