"""A stand-in for The Things Stack's downlink API, so the bridge can queue downlinks to simulated collars.

It serves the Application Server routes the bridge calls on a real network:

  POST /api/v3/as/applications/{app}/devices/{dev}/down/push     append to the device's queue
  POST /api/v3/as/applications/{app}/devices/{dev}/down/replace  replace the device's queue
  GET  /api/v3/as/applications/{app}/devices/{dev}/down          list the queue
  POST /api/v3/as/applications/{app}/webhooks/{hook}/devices/{dev}/down/push  (the webhook variant)

with a body `{"downlinks": [{"f_port": 32, "frm_payload": "<base64>", "confirmed": false}]}` and an
`Authorization: Bearer <API key>` header. It also takes ChirpStack v4's REST queue call,
`POST /api/devices/{devEui}/queue` with `{"queueItem": {"fPort", "data", "confirmed"}}` and a
`Grpc-Metadata-Authorization: Bearer <API key>` header. Errors answer with the gRPC error shape
(`{"code": <grpc code>, "message": ...}`): 401 unauthenticated, 404 unknown application or device,
400 malformed. Accepted downlinks go to a `DownlinkSink` (the Fleet), which hands each one to its
collar in the RX window after that collar's next uplink.

`NetworkServerStandIn` runs Starlette under uvicorn in a background thread on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import secrets
import socket
import threading
import time
import uuid
from typing import Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

log = logging.getLogger(__name__)

MAX_DOWNLINK_BYTES = 51  # EU868 DR0-DR2
GRPC_INVALID_ARGUMENT, GRPC_NOT_FOUND, GRPC_UNAUTHENTICATED = 3, 5, 16


class DownlinkSink(Protocol):
    """What the server hands accepted downlinks to (simulator.fleet.Fleet implements it)."""

    def push_downlink(self, device_id: str, port: int, payload: bytes, confirmed: bool = False) -> None: ...

    def clear_downlinks(self, device_id: str) -> None: ...

    def downlink_queue(self, device_id: str) -> list[tuple[int, bytes, bool]]: ...

    def has_device(self, device_id: str) -> bool: ...

    def device_id_of(self, dev_eui: str) -> str | None: ...


class DownlinkRequestError(ValueError):
    """A downlink request body that the network server refuses (answered with 400)."""


def parse_downlinks(body: object) -> list[tuple[int, bytes, bool]]:
    """[(f_port, payload, confirmed)] from a TTS down/push body; DownlinkRequestError names what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("downlinks"), list):
        raise DownlinkRequestError("body must be an object with a list 'downlinks'")
    parsed = []
    for i, item in enumerate(body["downlinks"]):
        if not isinstance(item, dict):
            raise DownlinkRequestError(f"downlinks[{i}] must be an object")
        port = item.get("f_port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 223:
            raise DownlinkRequestError(f"downlinks[{i}].f_port must be an integer 1..223, got {port!r}")
        text = item.get("frm_payload", "")
        try:
            payload = base64.b64decode(text, validate=True) if text else b""
        except (binascii.Error, TypeError) as exc:
            raise DownlinkRequestError(f"downlinks[{i}].frm_payload is not base64") from exc
        if len(payload) > MAX_DOWNLINK_BYTES:
            raise DownlinkRequestError(
                f"downlinks[{i}].frm_payload is {len(payload)} bytes, more than {MAX_DOWNLINK_BYTES}"
            )
        parsed.append((port, payload, bool(item.get("confirmed", False))))
    return parsed


def parse_chirpstack_queue_item(body: object) -> tuple[int, bytes, bool]:
    """(f_port, payload, confirmed) from a ChirpStack v4 REST queue body; DownlinkRequestError when wrong."""
    item = body.get("queueItem") if isinstance(body, dict) else None
    if not isinstance(item, dict):
        raise DownlinkRequestError("body must be an object with an object 'queueItem'")
    [(port, payload, _)] = parse_downlinks(
        {"downlinks": [{"f_port": item.get("fPort"), "frm_payload": item.get("data", "")}]}
    )
    return port, payload, bool(item.get("confirmed", False))


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def build_app(sink: DownlinkSink, api_key: str, application_id: str) -> Starlette:
    """The Starlette app of the downlink API for one application."""

    expected = f"Bearer {api_key}".encode()

    def authorised(request: Request, header: str = "authorization") -> bool:
        return hmac.compare_digest(request.headers.get(header, "").encode(), expected)

    def check(request: Request) -> JSONResponse | None:
        if not authorised(request):
            return _error(401, GRPC_UNAUTHENTICATED, "unauthenticated: missing or invalid API key")
        app, dev = request.path_params["app"], request.path_params["dev"]
        if app != application_id or not sink.has_device(dev):
            return _error(404, GRPC_NOT_FOUND, f"end device `{app}/{dev}` not found")
        return None

    async def queue_downlinks(request: Request) -> JSONResponse:
        refused = check(request)
        if refused is not None:
            return refused
        try:
            downlinks = parse_downlinks(await request.json())
        except ValueError as exc:  # JSON errors and DownlinkRequestError
            return _error(400, GRPC_INVALID_ARGUMENT, str(exc))
        device_id = request.path_params["dev"]
        if request.url.path.endswith("/replace"):
            sink.clear_downlinks(device_id)
        for port, payload, confirmed in downlinks:
            sink.push_downlink(device_id, port, payload, confirmed)
            log.info("downlink queued", extra={"device_id": device_id, "f_port": port, "bytes": len(payload)})
        return JSONResponse({})

    async def list_downlinks(request: Request) -> JSONResponse:
        refused = check(request)
        if refused is not None:
            return refused
        queue = sink.downlink_queue(request.path_params["dev"])
        return JSONResponse(
            {"downlinks": [
                {"f_port": p, "frm_payload": base64.b64encode(b).decode(), "confirmed": c} for p, b, c in queue
            ]}
        )

    async def chirpstack_enqueue(request: Request) -> JSONResponse:
        if not authorised(request, "grpc-metadata-authorization"):
            return _error(401, GRPC_UNAUTHENTICATED, "unauthenticated: missing or invalid API token")
        device_id = sink.device_id_of(request.path_params["dev_eui"])
        if device_id is None:
            return _error(404, GRPC_NOT_FOUND, f"device {request.path_params['dev_eui']} not found")
        try:
            port, payload, confirmed = parse_chirpstack_queue_item(await request.json())
        except ValueError as exc:
            return _error(400, GRPC_INVALID_ARGUMENT, str(exc))
        sink.push_downlink(device_id, port, payload, confirmed)
        log.info("downlink queued", extra={"device_id": device_id, "f_port": port, "bytes": len(payload)})
        return JSONResponse({"id": str(uuid.uuid4())})

    base = "/api/v3/as/applications/{app}/devices/{dev}/down"
    hook = "/api/v3/as/applications/{app}/webhooks/{hook}/devices/{dev}/down"
    return Starlette(
        routes=[
            Route(base + "/push", queue_downlinks, methods=["POST"]),
            Route(base + "/replace", queue_downlinks, methods=["POST"]),
            Route(base, list_downlinks, methods=["GET"]),
            Route(hook + "/push", queue_downlinks, methods=["POST"]),
            Route(hook + "/replace", queue_downlinks, methods=["POST"]),
            Route("/api/devices/{dev_eui}/queue", chirpstack_enqueue, methods=["POST"]),
        ]
    )


class NetworkServerStandIn:
    """The downlink API served from a background thread; use as a context manager or start()/stop().

    api_key: the key callers must present; None draws a random one (read it from `api_key`).
    """

    def __init__(
        self,
        sink: DownlinkSink,
        api_key: str | None = None,
        application_id: str = "tembo-demo",
        host: str = "127.0.0.1",
    ) -> None:
        if api_key is not None and not api_key:
            raise ValueError("api_key must not be empty")
        self.sink = sink
        self.application_id = application_id
        self.host = host
        self.port: int | None = None
        self._api_key = api_key or "NNSXS." + secrets.token_urlsafe(24)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"NetworkServerStandIn(url={self.url!r}, application_id={self.application_id!r}, api_key='***')"

    @property
    def api_key(self) -> str:
        """The key a caller sends as `Authorization: Bearer <api_key>`."""
        return self._api_key

    @property
    def url(self) -> str | None:
        """Base URL (http://127.0.0.1:PORT) once started, else None."""
        return None if self.port is None else f"http://{self.host}:{self.port}"

    def push_url(self, device_id: str) -> str:
        """The down/push URL of one device."""
        return f"{self.url}/api/v3/as/applications/{self.application_id}/devices/{device_id}/down/push"

    def start(self, timeout_s: float = 10.0) -> NetworkServerStandIn:
        """Bind a free port on host, serve in a daemon thread, return once it accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self.sink, self._api_key, self.application_id), log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="tembo-downlink-api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"downlink API did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._server = self._thread = None

    def __enter__(self) -> NetworkServerStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
