"""The dashboard's page starts dark: no light-theme flash before the night theme arrives.

Streamlit's page is an empty HTML shell; its script draws the app in a theme chosen before the
server's theme (the night theme of `palette.THEME`) reaches it over the websocket: the one it
remembers in the browser's localStorage for that page (`stActiveTheme-<path>-v2`: "Light", "Dark"
or "System"), and it remembers "System" for a custom theme. A ranger's browser set to a light
system theme therefore flashes white placeholders in a dark control room on every page load.

`NightPage` is an ASGI middleware around the dashboard (`dashboard_server.py`) that puts two
things in the head of that HTML shell, before Streamlit's script: a style that paints the page in
the night theme's background, and a line that has Streamlit start in its dark theme. The server's
night theme then replaces that dark theme as before. It also asks for the map's scripts at once
(`chart_preload`), so the browser fetches and compiles deck.gl while the app runs, and has the
map's stylesheet in the page from the start (Streamlit waits for it before drawing the map). Everything else
passes through untouched.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ranger_dashboard import chart_preload
from ranger_dashboard.palette import THEME

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Message, Receive, Send], Awaitable[None]]

# Paths that never answer the page's HTML shell: Streamlit's own endpoints and files.
PASSED_THROUGH = ("/_stcore/", "/static/", "/media/", "/component/", "/app/static/", "/auth/", "/map/")
# The version of Streamlit's key for the remembered theme (`stActiveTheme-<path>-v2`).
THEME_KEY_VERSION = 2
HEAD_END = b"</head>"


def night_head() -> bytes:
    """The lines put before `</head>`: the night background, and Streamlit told to start dark."""
    background = THEME["backgroundColor"]
    key = json.dumps(f"-v{THEME_KEY_VERSION}")
    return (
        f"<style>html,body,#root{{background:{background};color-scheme:dark}}</style>"
        "<script>try{localStorage.setItem("
        f'"stActiveTheme-"+window.location.pathname+{key},JSON.stringify("Dark"))'
        "}catch(e){}</script>"
    ).encode()


def with_night_head(body: bytes) -> bytes:
    """`body` (an HTML page) with `night_head()`, the map's stylesheet (`chart_preload.chart_styles`),
    the map's and the page elements' module preloads
    (`chart_preload.preload_links`) and the map module's early import (`chart_preload.early_import`,
    run after Streamlit's own module) before its `</head>`; unchanged without one."""
    at = body.find(HEAD_END)
    if at < 0:
        return body  # the same object when unchanged
    shell = chart_preload.shell_modules(body)
    preloads = chart_preload.chart_styles() + chart_preload.preload_links(shell) + chart_preload.early_import(shell)
    return body[:at] + night_head() + preloads + body[at:]


class NightPage:
    """ASGI middleware: GET requests for a page get its HTML shell with `night_head()`."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        path = scope.get("path") or "/"
        if scope["type"] != "http" or scope.get("method") != "GET" or path.startswith(PASSED_THROUGH):
            await self.app(scope, receive, send)
            return
        # The shell is small: asked for uncompressed, so it can be read and amended here.
        headers = [(name, value) for name, value in scope.get("headers", []) if name.lower() != b"accept-encoding"]
        scope = {**scope, "headers": headers}
        start: Message | None = None
        chunks: list[bytes] = []

        async def amend(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            raw = [(name.lower(), value) for name, value in start.get("headers", [])]
            html = any(name == b"content-type" and value.startswith(b"text/html") for name, value in raw)
            encoded = any(name == b"content-encoding" for name, _ in raw)
            amended = with_night_head(body) if html and not encoded else body
            if amended is not body:
                body = amended
                raw = [(name, value) for name, value in raw if name != b"content-length"]
                raw.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": raw})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, amend)
