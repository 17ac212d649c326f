"""The dashboard's own HTTP routes beside Streamlit's: the two that carry a sign-in in an HttpOnly
cookie (see `ranger_dashboard.session_cookie` for the design). Mounted by `dashboard_server.py`."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ranger_dashboard import session_cookie

logger = logging.getLogger(__name__)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def _name(request: Request) -> str:
    return session_cookie.cookie_name(request.headers.get("host"))


def _refused(request: Request) -> Response | None:
    if not session_cookie.same_origin(request.headers.get("origin"), request.headers.get("host")):
        logger.warning("session route refused: another origin", extra={"origin": request.headers.get("origin")})
        return Response("another site may not do this", status_code=403, media_type="text/plain")
    return None


async def start_cookie(request: Request) -> Response:
    """POST /auth/session: turn a one-time code from the sign-in form into the session cookie."""
    refused = _refused(request)
    if refused is not None:
        return refused
    body = (await request.body())[: session_cookie.MAX_BODY_BYTES]
    handoff = session_cookie.redeem(body.decode("utf-8", "replace").strip())
    if handoff is None:
        return Response("unknown or expired sign-in code: sign in again", status_code=400, media_type="text/plain")
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.headers["Set-Cookie"] = session_cookie.set_cookie_header(
        _name(request), handoff.secret, handoff.max_age_s, _secure(request)
    )
    return response


async def end_cookie(request: Request) -> Response:
    """POST /auth/sign-out: end the session the cookie carries (in the bridge store) and clear it."""
    refused = _refused(request)
    if refused is not None:
        return refused
    secret = request.cookies.get(_name(request))
    if secret:
        from ranger_dashboard import config, data  # streamlit-bound: only once a cookie is to end

        try:
            await run_in_threadpool(data.bridge(config.options().database_url).sign_out, secret)
        except Exception:  # the cookie is cleared anyway; the session ends at its expiry at the latest
            logger.exception("could not end the session of a sign-out")
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.headers["Set-Cookie"] = session_cookie.clear_cookie_header(_name(request), _secure(request))
    return response


def routes() -> list[Route]:
    """POST /auth/session and POST /auth/sign-out."""
    return [
        Route(session_cookie.HANDOFF_PATH, start_cookie, methods=["POST"]),
        Route(session_cookie.SIGN_OUT_PATH, end_cookie, methods=["POST"]),
    ]
