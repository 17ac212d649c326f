"""The bridge's webhook (Starlette): network-server messages in.

    POST /uplinks/tts          The Things Stack v3 webhook (every message kind), header X-Tembo-Secret
    POST /uplinks/tts/{event}  the same with a message's path appended to that base URL (`/uplinks`,
                               `/join-accept`, `/downlink-ack`: TTS's creating-webhooks example)
    POST /uplinks/tts/{app_id}/{device_id}[/{event}]
                               the same with TTS webhook path variables (base URL
                               `.../uplinks/tts/{appID}/{devID}`): a field-masked body names no device
    POST /uplinks/chirpstack?event=up|join|ack|txack|status|log|location|integration
                               ChirpStack v4 HTTP integration, JSON or Protobuf (Content-Type)
    GET  /healthz              200 when the store answers and takes writes (no data), else 503; 503 also
                               while the last body the webhook tried to keep was answered 503, until one is kept

The read API (`/api/...`, bearer tokens with roles) lives in `lora_bridge.adapters.api`, whose
`create_app` serves both. The webhook refuses to start without a proper secret
(`lora_bridge.settings.check_webhook_secret`).

A webhook answers once the body is durable (committed and fsynced) and, normally, applied:
200 processed / duplicate / recorded (a join, delivery report, location, status, log) / kept (a
kind the bridge does not know, kept for inspection) / dead letter (undecodable payload); 202 pending
(stored, the store failed while applying it; the bridge's timer applies it later); 200 dead letter,
stage parse, for a body that is not what its kind says (kept as a dead letter with the reason: see
below); 401 for a wrong secret (not stored); 408 for a body that has not arrived within `webhook_answer_within_s` (not stored, the
connection closed); 503 when the store cannot take the body (locked, read-only, full, not answering): nothing was
kept, so the network server must retry (the answer carries an `error_id`, never the store's own words:
those are logged under it, as are the reasons of a 202 pending and of a dead letter of stage apply);
it comes within `webhook_answer_within_s` (The Things Stack ends a
request after 10 s, and tries it once unless its webhook retries are on). With `TEMBO_WEBHOOK_ACK=durable` a readable body is answered 202
received (with its `intake_id` on SQLite) once it is kept, and applied right after in batches
(`lora_bridge.durable_intake`); the dead letter and the 503 stay as above. Unknown kinds and broken
bodies get 2xx on purpose: The Things Stack treats any non-2xx as a failed try, which its webhook
retries would only send again to be stored again, and counts it against the health of the whole
webhook, which it disables past a threshold: one collar sending broken bodies would stop every
collar's uplinks (lora_bridge/README.md, "Why 2xx"). Only what was not kept is answered non-2xx.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import types
from collections.abc import Generator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from lora_bridge import ingest
from lora_bridge.errors import AuthenticationFailed, NotFound, StoreUnavailable, error_id, error_id_in
from lora_bridge.group_commit import Submission
from lora_bridge.network_messages import MAX_BODY_BYTES
from lora_bridge.network_server import OddDownlinkUrls
from lora_bridge.service import Bridge
from lora_bridge.settings import BridgeSettings, check_webhook_secret
from lora_bridge.store import write_lock
from lora_bridge.store_refusals import StoreRefusals
from lora_bridge.uplink_formats import SOURCE_CHIRPSTACK, SOURCE_TTS, label
from lora_bridge.views import IngestResult

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Tembo-Secret"
# The header names as an ASGI server hands them in (lower-case bytes).
_SECRET_KEY = SECRET_HEADER.lower().encode("latin-1")
_CONTENT_TYPE_KEY = b"content-type"
# The Things Stack's base webhook URL: the route nearly every uplink comes by (`WebhookApp`).
TTS_PATH = "/uplinks/tts"
# The Things Stack's downlink route, sent with every webhook call when a downlink API key is set.
DOWNLINK_HEADERS = ("X-Downlink-Push", "X-Downlink-Replace", "X-Downlink-Apikey")
_ODD_DOWNLINK_URLS = OddDownlinkUrls()  # the collars whose downlink headers were in no usual form, told once
# The same names as an ASGI server hands header names in (lower-case bytes), looked for in one pass.
_DOWNLINK_HEADER_KEYS = frozenset(name.lower().encode("latin-1") for name in DOWNLINK_HEADERS)
STATUS_CODES = {"pending": 202, "received": 202}
# The answers `_told_by_id` may add a reason and error_id to (no other is looked at by it).
_TOLD_BY_ID = frozenset({ingest.STATUS_PENDING, ingest.STATUS_DEAD_LETTER})
_NOTHING_TOLD: dict[str, str] = {}
# What a caller is told when the bridge itself failed; the details are logged under the answer's error_id.
UNAVAILABLE_REASON = "the store cannot take the body now: nothing was kept, send it again later"
PENDING_REASON = "kept; the store failed while applying it, and the bridge applies it by itself later"
SLOW_BODY_REASON = "the body did not arrive in time: nothing was kept, send it again"
APPLY_FAILED_REASON = "kept as a dead letter: the bridge could not apply it; an operator replays it after a fix"


# Starlette's JSONResponse text (compact, UTF-8 as it is, no NaN) from one encoder made once: `json.dumps`
# given these options builds a new encoder for every answer, and every uplink is answered.
_ANSWER_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
# The C encoder `_ANSWER_ENCODER.encode` makes for each answer, made once (None where json has no C
# speedups): the same text in one call. No check for circular references: an answer is a flat dict.
_ANSWER_TEXT = (json.encoder.c_make_encoder(None, _ANSWER_ENCODER.default, json.encoder.encode_basestring, None,
                                            ":", ",", False, False, False)
                if json.encoder.c_make_encoder is not None else None)


class WebhookAnswer(JSONResponse):
    """A JSONResponse whose body is the same bytes, rendered by `_ANSWER_ENCODER`, and whose headers are the
    two Starlette gives a JSON answer (`Response.init_headers`: its length, then its type), set at once."""

    def __init__(self, content: Any, status_code: int = 200) -> None:
        self.status_code = status_code
        self.background = None
        self.body = self.render(content)
        self.raw_headers = [(b"content-length", b"%d" % len(self.body)), (b"content-type", b"application/json")]

    def render(self, content: Any) -> bytes:
        if _ANSWER_TEXT is None:
            return _ANSWER_ENCODER.encode(content).encode("utf-8")
        return "".join(_ANSWER_TEXT(content, 0)).encode("utf-8")


class WebhookApp(Starlette):
    """Starlette with The Things Stack's base webhook route (POST `TTS_PATH`, the route of nearly every
    uplink) handed straight to its handler: the same handler, answer and error handling as through
    Starlette's middleware and router, without their layers for every uplink (each layer's wrappers and
    the router's matching cost about a quarter of the webhook's Python calls per uplink). Every other
    request, and every request once middleware is added or the app is mounted under a root path, goes
    through Starlette."""

    def __init__(self, tts_route: Route, bridge: Bridge, refusals: StoreRefusals, **options: Any) -> None:
        super().__init__(**options)
        self._tts_route = tts_route
        self._bridge = bridge
        self._refusals = refusals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["path"] == TTS_PATH and scope["method"] == "POST"
                and not scope.get("root_path") and not self.user_middleware and self.max_body_size is None):
            await super().__call__(scope, receive, send)
            return
        # What the router and `request_response` do for `_tts_route` (its endpoint reads the body as
        # `_ingest` does here, with no `Request` made for it), with Starlette's error handling (the app's
        # exception handlers, else a 500 and the error raised to the server) for an error before the
        # answer; an error while answering is raised to the server, as Starlette raises it.
        route = self._tts_route
        scope["app"] = self
        scope.setdefault("router", self.router)
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, {}
        try:
            response = await _ingest(scope, receive, self._bridge, self._refusals, SOURCE_TTS, None, None)
        except Exception as error:  # noqa: BLE001 - answered as Starlette's middleware answers it
            await self._answer_error(error, scope, receive, send)
            return
        await response(scope, receive, send)

    async def _answer_error(self, error: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        """Error raised before any answer: through the same middleware Starlette builds
        (`Starlette.build_middleware_stack`), with an app that raises it in place of the router."""
        error_handler = None
        handlers: dict[Any, Any] = {}
        for key, value in self.exception_handlers.items():
            if key in (500, Exception):
                error_handler = value
            else:
                handlers[key] = value

        async def raising(scope: Scope, receive: Receive, send: Send) -> None:
            raise error

        app = ServerErrorMiddleware(ExceptionMiddleware(raising, handlers=handlers, debug=self.debug),
                                    handler=error_handler, debug=self.debug)
        await app(scope, receive, send)


def create_app(bridge: Bridge) -> Starlette:
    """The webhook app over bridge (the HTTP API adds its routes in `lora_bridge.adapters.api`).

    InsecureSettings when the webhook secret is empty, missing or published without the demo opt-in.
    """
    check_webhook_secret(bridge.settings)
    if bridge.settings.webhook_ack == "durable":
        bridge.durable_intake()  # bodies a previous run kept and did not apply are applied now
    refusals = StoreRefusals()

    async def tts_uplink(request: Request) -> JSONResponse:
        path_ids = None
        if "app_id" in request.path_params:
            path_ids = {
                "application_id": request.path_params["app_id"],
                "device_id": request.path_params["device_id"],
            }
        return await _ingest(request.scope, request.receive, bridge, refusals, SOURCE_TTS, request.path_params.get("event"),
                             path_ids)

    async def tts_base_uplink(request: Request) -> JSONResponse:
        # The base URL (no path variables): the route of nearly every uplink, read without them.
        return await _ingest(request.scope, request.receive, bridge, refusals, SOURCE_TTS, None, None)

    async def chirpstack_uplink(request: Request) -> JSONResponse:
        # ChirpStack posts every event to one URL and names it in ?event= (absent: an uplink). A call naming
        # two (`?event=up&event=join`) is refused: until 7 December the last was taken, an uplink read as a join.
        events = request.query_params.getlist("event")
        refused = None
        if len(set(events)) > 1:
            refused = (f"ambiguous ChirpStack event: the call names {len(events)} events "
                       f"({', '.join(repr(label(e)) for e in events[:5])}); which one the body is cannot be told")
        return await _ingest(request.scope, request.receive, bridge, refusals, SOURCE_CHIRPSTACK,
                             events[0] if events else "up", None, refused)

    async def healthz(request: Request) -> JSONResponse:
        healthy = await run_in_threadpool(bridge.healthy)
        refused_by = refusals.error_id
        if healthy and refused_by is not None:
            return JSONResponse({"status": "store unavailable", "reason": "the last body was answered 503",
                                 "error_id": refused_by}, status_code=503)
        return JSONResponse({"status": "ok" if healthy else "store unavailable"}, status_code=200 if healthy else 503)

    tts_route = Route(TTS_PATH, tts_base_uplink, methods=["POST"])
    app = WebhookApp(
        tts_route,
        bridge,
        refusals,
        routes=[
            tts_route,
            # The Things Stack appends each enabled message's path to the base URL (creating-webhooks:
            # `/uplinks`, `/join-accept`, `/downlink-ack`): one segment names the kind, never a device.
            Route("/uplinks/tts/{event}", tts_uplink, methods=["POST"]),
            Route("/uplinks/tts/{app_id}/{device_id}", tts_uplink, methods=["POST"]),
            Route("/uplinks/tts/{app_id}/{device_id}/{event:path}", tts_uplink, methods=["POST"]),
            Route("/uplinks/chirpstack", chirpstack_uplink, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={
            AuthenticationFailed: _unauthorized, NotFound: _not_found, ClientDisconnect: _client_gone
        },
    )
    app.state.bridge = bridge
    app.state.refusals = refusals  # `/metrics` says them too (lora_bridge.store_refusals)
    return app


async def _ingest(
    scope: Scope, receive: Receive, bridge: Bridge, refusals: StoreRefusals, network: str, event: str | None,
    path_ids: dict[str, str] | None, refused: str | None = None,
) -> JSONResponse:
    """The answer to one webhook call (its scope and receive) of network's message kind event; refused: why
    the call itself cannot be taken (its body is kept as a dead letter of stage parse, answered 400). A 503
    is noted in refusals (for `/healthz`) until a body is kept."""
    headers = scope["headers"]
    secret, content_type, downlink_route = _head(headers)
    _check_secret(scope, secret, bridge)
    settings = bridge.settings
    try:
        # A sender whose body has not come by the time the answer is due is no network server (TTS gives
        # up after 10 s): it had held its connection open for as long as it liked, one more each time.
        body, truncated = await _read_body(receive, MAX_BODY_BYTES, settings.webhook_answer_within_s)
    except TimeoutError:
        log.warning("webhook body not received within %g s; nothing stored, connection closed",
                    settings.webhook_answer_within_s, extra={"network": network, "client": _client_host(scope)})
        return JSONResponse({"status": "timeout", "reason": SLOW_BODY_REASON}, status_code=408,
                            headers={"Connection": "close"})
    if truncated:
        log.warning("oversized body truncated", extra={"source": network})
    try:
        if refused is not None:
            return await _refuse(bridge, network, body, content_type, refused)
        if settings.webhook_ack == "durable":
            result: IngestResult = await _ingest_durable(bridge, network, event, body, content_type, path_ids)
        else:
            submission = bridge.submission(network, event, body, content_type=content_type, path_ids=path_ids)
            submission.answer_by = write_lock.clock() + settings.webhook_answer_within_s
            result = await run_in_threadpool(bridge.submit, submission)
    except StoreUnavailable as error:
        said = error.error_id or error_id()  # the id the line that met the store's error logged it under
        if refusals.note_refused(said):  # the first of a run; the others are summed up (lora_bridge.store_refusals)
            log.warning("webhook answered 503 error_id=%s network=%s event=%s: the store takes no write now (%s)",
                        said, network, label(event), error, extra={"network": network, "event": event, "error_id": said})
        return JSONResponse({"status": "unavailable", "reason": UNAVAILABLE_REASON, "error_id": said},
                            status_code=503, headers={"Retry-After": "60"})
    # A body kept ends a refusal `/healthz` reports, or a run the log has not said the end of. Nearly every
    # body ends neither, and is told so by two reads, not a call (`StoreRefusals.note_kept`).
    if refusals.error_id is not None or refusals.said.total:
        refusals.note_kept()
    if network == SOURCE_TTS and downlink_route:
        await _remember_route(headers, bridge, path_ids, result.device_id, result.raw_uplink_id)
    payload = {
        "status": result.status,
        "raw_uplink_id": result.raw_uplink_id,
        "device_id": result.device_id,
        "dev_eui": result.dev_eui,
        "f_cnt": result.f_cnt,
        "message": result.message,
        "reason": result.reason,
        "stage": result.stage,  # a dead letter's: parse (not what its kind says), decode, apply, kind
        **(_told_by_id(result, network, event) if result.status in _TOLD_BY_ID else _NOTHING_TOLD),
        # The downlinks the body moved (a delivery report) or queued (an alert's ack).
        "downlink_ids": list(result.downlink_ids),
    }
    if result.intake_id is not None:
        payload["intake_id"] = result.intake_id
    # A broken body (`result.malformed`) is kept as a dead letter: 2xx, never a try TTS counts as failed.
    return WebhookAnswer(payload, status_code=STATUS_CODES.get(result.status, 200))


async def _refuse(bridge: Bridge, network: str, body: bytes, content_type: str, reason: str) -> JSONResponse:
    """Keep the body of a call that cannot be taken as a dead letter (stage parse) and answer 400 saying why;
    StoreUnavailable when the store cannot keep it now."""
    raw_id = await run_in_threadpool(ingest.keep_failed, bridge.db, network, body, reason, content_type=content_type,
                                     stage=ingest.STAGE_PARSE)
    return JSONResponse({"status": ingest.STATUS_DEAD_LETTER, "raw_uplink_id": raw_id, "reason": reason,
                         "stage": ingest.STAGE_PARSE}, status_code=400)


def _told_by_id(result: IngestResult, network: str, event: str | None) -> dict[str, str]:
    """For a body the bridge itself failed on (the store failed while applying it, or it is kept as a dead
    letter of stage apply: a bug, a value the store refused), the reason the caller reads and an
    error_id; the bridge's reason (the driver's words: paths, host names, SQL and its parameters) goes
    to the log under that id and stays with the dead letter. Empty for any other answer."""
    if result.status == ingest.STATUS_PENDING:
        told = PENDING_REASON
    elif result.status == ingest.STATUS_DEAD_LETTER and result.stage == ingest.STAGE_APPLY:
        told = APPLY_FAILED_REASON
    else:
        return {}
    said = error_id_in(result.reason) or error_id()  # the id the bridge's own log line of it has
    log.warning("webhook answered %s error_id=%s network=%s event=%s raw_uplink_id=%s: %s", result.status, said,
                network, label(event), result.raw_uplink_id, (result.reason or "").splitlines()[0][:300] if result.reason else "",
                extra={"network": network, "event": event, "raw_uplink_id": result.raw_uplink_id, "error_id": said})
    return {"reason": told, "error_id": said}


async def _ingest_durable(
    bridge: Bridge, network: str, event: str | None, body: bytes, content_type: str, path_ids: dict[str, str] | None
) -> IngestResult:
    """Hand body to the bridge's durable intake and wait (without a thread of our own) until its raw
    row is committed: `received` (applied right after) or, for a body that is not what its kind
    says, its dead letter. Raises StoreUnavailable when the store could not take it."""
    waiters = _Waiters.of(asyncio.get_running_loop())
    submission = Submission(network, event, body, content_type=content_type, path_ids=path_ids)
    # Held behind a full backlog (a store that applies nothing) it is answered 503 by then, not never.
    submission.answer_by = write_lock.clock() + bridge.settings.webhook_answer_within_s
    settled = waiters.expect(submission)
    bridge.durable_intake().submit(submission, waiters)
    await settled
    try:
        return submission.outcome()
    except StoreUnavailable:
        raise
    except Exception as error:  # noqa: BLE001 - the store refused a value of it: kept, answered as such
        return await run_in_threadpool(bridge.keep_failed, network, submission.event, body, error,
                                       content_type=content_type, path_ids=path_ids)


class _Waiters:
    """The requests of one event loop waiting for the intake: one wake-up of the loop per written
    batch, not one per body."""

    _by_loop: dict[asyncio.AbstractEventLoop, _Waiters] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.futures: dict[int, asyncio.Future[None]] = {}

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Waiters:
        waiters = cls._by_loop.get(loop)
        if waiters is None:
            for old in [known for known in cls._by_loop if known.is_closed()]:
                del cls._by_loop[old]
            waiters = cls._by_loop[loop] = cls(loop)
        return waiters

    def expect(self, submission: Submission) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        self.futures[id(submission)] = future
        return future

    def __call__(self, submissions: list[Submission]) -> None:  # from the intake's writer thread
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._settle, submissions)

    def _settle(self, submissions: list[Submission]) -> None:
        for submission in submissions:
            future = self.futures.pop(id(submission), None)
            if future is not None and not future.done():
                future.set_result(None)


async def _remember_route(
    headers: list[tuple[bytes, bytes]], bridge: Bridge, path_ids: dict[str, str] | None, device_id: str | None,
    raw_uplink_id: int | None,
) -> None:
    """Keep the X-Downlink-* headers (a request's, as its ASGI scope holds them) as the route of device_id,
    the collar the body (raw_uplink_id) was filed under."""
    push, replace, key = (Headers(raw=headers).get(name) for name in DOWNLINK_HEADERS)
    for name, url in zip(DOWNLINK_HEADERS[:2], (push, replace), strict=True):
        _ODD_DOWNLINK_URLS.check(label(device_id), name, url)
    try:
        await run_in_threadpool(bridge.remember_downlink_route, push, replace, key, path_ids,
                                device_id=device_id, raw_uplink_id=raw_uplink_id)
    except Exception as error:  # the body is stored already; the route comes again with the next message
        # Only the type: a store error's text can carry the statement's parameters, the key among them.
        log.warning("downlink route from TTS headers not stored: %s", type(error).__name__)


def _head(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, str, bool]:
    """From a request's headers in one pass: (the secret header's bytes, b"" when absent; the Content-Type,
    "application/json" when absent; whether a TTS downlink header came), each the first of its name, as
    Starlette's `Headers.get` reads them."""
    secret: bytes | None = None
    content_type: bytes | None = None
    downlink_route = False
    for key, value in headers:
        if key == _SECRET_KEY:
            if secret is None:
                secret = value
        elif key == _CONTENT_TYPE_KEY:
            if content_type is None:
                content_type = value
        elif key in _DOWNLINK_HEADER_KEYS:
            downlink_route = True
    return (secret or b"", "application/json" if content_type is None else content_type.decode("latin-1"),
            downlink_route)


async def _read_body(receive: Receive, limit: int, within_s: float) -> tuple[bytes, bool]:
    """`_read_capped` within within_s seconds, else TimeoutError. A body that has arrived whole with its
    headers (nearly every webhook call: the server's `receive` answers at once) is taken without a
    timer on the event loop; one that has not is awaited under `asyncio.timeout`."""
    waiting = receive().__await__()
    try:
        pending = waiting.send(None)
    except StopIteration as answered:
        message = answered.value
        if message["type"] == "http.request" and not message.get("more_body", False):
            body = message.get("body", b"")
            if len(body) <= limit:
                return body, False
        async with asyncio.timeout(within_s):
            return await _read_capped(receive, limit, message)
    async with asyncio.timeout(within_s):
        return await _read_capped(receive, limit, await _rest_of(waiting, pending))


@types.coroutine
def _rest_of(waiting: Generator[Any, None, Any], pending: Any) -> Generator[Any, None, Any]:
    """What the awaitable `waiting` (its `__await__`) returns, after its first step yielded pending to the
    event loop: pending handed on to the task, then the rest awaited as `await` would, an error the
    task throws in (its cancellation by a timeout) thrown into waiting."""
    try:
        yield pending
    except BaseException as error:  # noqa: BLE001 - handed on to the awaitable, as `await` hands it on
        try:
            pending = waiting.throw(error)
        except StopIteration as answered:
            return answered.value
        return (yield from _rest_of(waiting, pending))
    return (yield from waiting)


async def _read_capped(receive: Receive, limit: int, message: Message | None = None) -> tuple[bytes, bool]:
    """The body's first `limit` bytes and whether there was more, from message (the first one received,
    None: none yet) on; never holds more than limit in memory. ClientDisconnect when the sender hangs up
    first (as Starlette's `Request.stream` reads it)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if message is None:
            message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                if size + len(chunk) > limit:
                    chunks.append(chunk[: limit - size])
                    return b"".join(chunks), True
                chunks.append(chunk)
                size += len(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
        message = None


def _check_secret(scope: Scope, given: bytes, bridge: Bridge) -> None:
    # The header's own bytes (Starlette reads headers as Latin-1): a secret with letters beyond ASCII,
    # sent as UTF-8 as The Things Stack sends it, had never matched, and every uplink was refused.
    expected = _secret_in_force(bridge.settings)
    # An empty secret in force accepts nobody (create_app refuses to start with one anyway).
    if not expected or not hmac.compare_digest(given, expected):
        log.warning("webhook secret rejected", extra={"client": _client_host(scope)})
        raise AuthenticationFailed(f"missing or wrong {SECRET_HEADER}")


# The settings whose secret `_secret_in_force` last gave, with what it was made of and its bytes.
_secret_made: tuple[Any, Any, bool, bytes] = (None, None, False, b"")


def _secret_in_force(settings: BridgeSettings) -> bytes:
    """`settings.webhook_secret_bytes()`, made again only when the settings, their secret or their demo
    opt-in are other objects than the last time (a secret changed under a running app is in force at once)."""
    global _secret_made
    made_for, secret, demo, made = _secret_made
    if made_for is settings and secret is settings.webhook_secret and demo is settings.allow_demo_secret:
        return made
    made = settings.webhook_secret_bytes()
    _secret_made = (settings, settings.webhook_secret, settings.allow_demo_secret, made)
    return made


def _client_host(scope: Scope) -> str | None:
    """The sender's address as Starlette's `Request.client.host` gives it (None when the server names none)."""
    client = scope.get("client")
    return client[0] if client else None


async def _unauthorized(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=401)


async def _not_found(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=404)


async def _client_gone(request: Request, error: Exception) -> Response:
    """A sender that hung up before its whole body arrived: nothing was stored and nothing was
    acknowledged, so a network server sends the message again; no answer can reach it."""
    log.info("sender went away before its body arrived; nothing stored",
             extra={"path": request.url.path, "client": request.client.host if request.client else None})
    return Response(status_code=499)
