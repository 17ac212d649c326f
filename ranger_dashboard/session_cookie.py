"""A dashboard sign-in that survives a reload: the bridge's session secret in an HttpOnly cookie.

Streamlit talks to the browser over a websocket, where no response header can set a cookie, and
page JavaScript cannot set an HttpOnly one. So the dashboard runs as a Streamlit `st.App`
(`ranger_dashboard/dashboard_server.py`) with two small routes of its own:

    POST /auth/session   body: a one-time code  ->  204, Set-Cookie: tembo_session=<secret>; HttpOnly;
                                                    SameSite=Strict; Path=/; Max-Age=<until expiry>
    POST /auth/sign-out                         ->  204, the session in the cookie ended, cookie cleared

1. The sign-in form (`login.py`) checks the password through `Bridge.sign_in`, which stores the
   new session hashed in the bridge store, and keeps the secret in this process under a one-time
   code (`issue`) that lives `HANDOFF_S` seconds.
2. The next run of the page posts that code from the browser (`handoff_script`); the route
   (`redeem`) answers with the cookie. The secret itself never reaches page JavaScript. The same run
   draws the live map, whose tracks and name tiles are fetched with the cookie: the page's fetches of
   those routes wait for the post's answer.
3. On a reload Streamlit hands the cookie to the script as `st.context.cookies[cookie_name(host)]`
   (the cookies of the page's initial request), and the bridge checks the session again on every
   run: signed out, expired, removed, re-passworded or role-changed sessions are refused.

Both routes refuse a request whose Origin header names another site, and the cookie is
SameSite=Strict (and Secure behind HTTPS), so no other site can use or plant it. Browsers share
cookies between the ports of one host, so the cookie's name carries the port the dashboard is
reached on (`tembo_session_8501`): a ranger and a researcher dashboard on one machine keep
their sign-ins apart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

COOKIE_NAME = "tembo_session"  # behind a proxy on the scheme's own port; else + "_<port>"
HANDOFF_PATH = "/auth/session"
SIGN_OUT_PATH = "/auth/sign-out"
HANDOFF_S = 60.0  # how long a one-time code may wait for the browser to post it
MAX_PENDING = 1000  # codes waiting at once (older ones are dropped first)
MAX_BODY_BYTES = 256


@dataclass(frozen=True)
class Handoff:
    """A session secret waiting for its browser, and how long its cookie should live."""

    secret: str
    max_age_s: int
    deadline: float


_pending: dict[str, Handoff] = {}
_lock = threading.Lock()


def _code_key(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def issue(secret: str, max_age_s: int, now: float | None = None) -> str:
    """A one-time code that `redeem` turns into secret within HANDOFF_S seconds."""
    now = time.monotonic() if now is None else now
    code = secrets.token_urlsafe(32)
    with _lock:
        for key in [k for k, v in _pending.items() if v.deadline <= now]:
            del _pending[key]
        while len(_pending) >= MAX_PENDING:
            del _pending[next(iter(_pending))]
        _pending[_code_key(code)] = Handoff(secret, max(1, int(max_age_s)), now + HANDOFF_S)
    return code


def redeem(code: str, now: float | None = None) -> Handoff | None:
    """The handoff of code, once (None when unknown, used or late)."""
    now = time.monotonic() if now is None else now
    with _lock:
        handoff = _pending.pop(_code_key(str(code)), None)
    if handoff is None or handoff.deadline <= now:
        return None
    return handoff


def cookie_name(host: str | None) -> str:
    """The session cookie's name for a dashboard reached at host (a Host header): COOKIE_NAME with
    the port, when the host names one."""
    _, colon, port = (host or "").rpartition(":")
    return f"{COOKIE_NAME}_{port}" if colon and port.isdigit() else COOKIE_NAME


def set_cookie_header(name: str, secret: str, max_age_s: int, secure: bool) -> str:
    """The Set-Cookie value that carries a session secret in cookie name."""
    parts = [f"{name}={secret}", "HttpOnly", "SameSite=Strict", "Path=/", f"Max-Age={int(max_age_s)}"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def clear_cookie_header(name: str, secure: bool) -> str:
    """The Set-Cookie value that removes the session cookie name."""
    return set_cookie_header(name, "", 0, secure) + "; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


def same_origin(origin: str | None, host: str | None) -> bool:
    """True when a request's Origin header is absent or names the host it was sent to."""
    if not origin:
        return True
    if origin == "null" or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


# The dashboard's own routes the page's scripts fetch with the cookie (the live map's tracks and name
# tiles: `track_routes.TRACKS_PATH`, `name_tiles.NAMES_PATH`).
COOKIE_ROUTES_PREFIX = "/map/"


def handoff_script(code: str) -> str:
    """The page script that posts code to HANDOFF_PATH, so the browser receives the cookie. The same
    run draws the map, whose tracks and name tiles need that cookie: the page's fetches of
    COOKIE_ROUTES_PREFIX wait for the post's answer (a late answer, on a loaded phone or a slow link,
    had them refused with 401 and the map left without tracks until its next refresh)."""
    return _post_script(HANDOFF_PATH, code, hold=COOKIE_ROUTES_PREFIX)


def sign_out_script() -> str:
    """The page script that asks SIGN_OUT_PATH to end the cookie's session and clear the cookie."""
    return _post_script(SIGN_OUT_PATH, "")


def _post_script(path: str, body: str, hold: str | None = None) -> str:
    """A script posting body to path and marking the page with the outcome; with hold, the page's
    fetches of same-origin paths starting with hold go out only once the post is answered."""
    posted = (
        f"var posted = fetch({json.dumps(path)}, {{method: 'POST', credentials: 'same-origin', cache: 'no-store', "
        f"headers: {{'Content-Type': 'text/plain'}}, body: {json.dumps(body)}}})"
        ".then(function (r) { document.documentElement.dataset.temboSession = r.ok ? "
        + json.dumps(path.rsplit("/", 1)[-1])
        + " : 'refused'; });"
    )
    held = "" if hold is None else (
        "var own = window.fetch;"
        "window.fetch = function (input, init) {"
        " var target = new URL(typeof input === 'string' ? input : (input && input.url) || '', location.href);"
        f" if (target.origin === location.origin && target.pathname.indexOf({json.dumps(hold)}) === 0) {{"
        "  var go = function () { return own.call(window, input, init); };"
        "  return posted.then(go, go); }"
        " return own.call(window, input, init); };"
    )
    return (
        '<span data-tembo-session="' + path.rsplit("/", 1)[-1] + '"></span><script>(function () {'
        + posted + held + "})();</script>"
    )
