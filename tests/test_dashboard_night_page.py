"""A ranger opening the dashboard in a dark control room sees no white flash: the page's HTML shell
starts in the night theme (`ranger_dashboard.night_page`) before Streamlit's own theme arrives."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.sync_api import sync_playwright

from lora_bridge.service import open_bridge
from ranger_dashboard import chart_preload, night_page, palette, serving
from ranger_dashboard.headless_browser import CHROMIUM, CHROMIUM_ARGS

SHELL = b"<!DOCTYPE html><html><head><title>Streamlit</title></head><body><div id='root'></div></body></html>"


def call(app, path: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None):
    """One request through the ASGI `app`: the response's headers and body."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    async def run():
        await app({"type": "http", "method": method, "path": path, "headers": headers or []}, receive, send)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return dict(start["headers"]), body


def page_app(body: bytes, content_type: bytes = b"text/html; charset=utf-8", asked: list | None = None):
    """A stand-in for Streamlit's server answering every request with `body` (and noting the headers
    it was asked with)."""

    async def app(scope, receive, send):
        if asked is not None:
            asked.append(dict(scope["headers"]))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body[:10], "more_body": True})
        await send({"type": "http.response.body", "body": body[10:]})

    return app


def test_page_shell_paints_the_night_background_and_starts_streamlit_dark():
    asked: list = []
    headers, body = call(night_page.NightPage(page_app(SHELL, asked=asked)), "/alerts",
                         headers=[(b"accept-encoding", b"gzip")])
    head = body[: body.index(b"</head>")]
    assert palette.THEME["backgroundColor"].encode() in head
    assert b'JSON.stringify("Dark")' in head and b"stActiveTheme-" in head
    assert int(headers[b"content-length"]) == len(body)
    assert body.endswith(b"</html>")
    assert b"accept-encoding" not in asked[0]  # the shell asked for uncompressed, so it can be amended


@pytest.mark.parametrize("path", ["/static/js/index.js", "/_stcore/health", "/media/export.csv"])
def test_streamlit_files_and_endpoints_pass_through_untouched(path):
    asked: list = []
    headers, body = call(night_page.NightPage(page_app(SHELL, asked=asked)), path,
                         headers=[(b"accept-encoding", b"gzip")])
    assert body == SHELL and asked[0][b"accept-encoding"] == b"gzip"


def test_only_html_is_amended_and_a_page_without_a_head_is_left_as_it_is():
    _, body = call(night_page.NightPage(page_app(b'{"head": "</head>"}', b"application/json")), "/api")
    assert body == b'{"head": "</head>"}'
    headerless = b"<html><body>no head</body></html>"
    headers, body = call(night_page.NightPage(page_app(headerless)), "/")
    assert body == headerless and int(headers[b"content-length"]) == len(headerless)


def test_page_shell_asks_for_the_map_scripts_at_once_without_repeating_streamlits_own():
    shell = (chart_preload.STATIC_JS.parent.parent / "index.html").read_bytes()  # Streamlit's own shell
    _, body = call(night_page.NightPage(page_app(shell)), "/")
    head = body[: body.index(b"</head>")]
    added = [name for name in chart_preload.SHELL_PRELOAD.findall(head) if name not in chart_preload.SHELL_PRELOAD.findall(shell)]
    assert added and added[0].decode().startswith("DeckGlJsonChart.")  # the map's module, then what it imports
    assert len(added) == len(set(added))
    assert not set(added) & chart_preload.shell_modules(shell)  # nothing the shell loads anyway
    assert all((chart_preload.STATIC_JS / name.decode()).is_file() for name in added)
    assert b"webgl" in b" ".join(added)  # the module it imports when the map starts, too
    assert any(name.startswith(b"webgl-device.") for name in added)  # and deck.gl's device, asked for by name
    # And the elements the live map page shows beside the map: its sidebar's select boxes, toggle
    # and buttons, the "as of" slider, the metrics, its marker.
    for element in chart_preload.PAGE_ELEMENTS:
        assert any(name.decode().startswith(f"{element}.") for name in added), element
    # The map's own stylesheet is in the page from the start: Streamlit's import of the map's code
    # then finds it there and does not wait for it to load before drawing the map.
    styles = [name for name in re.findall(rb'<link rel="stylesheet" href="\./static/css/([\w.\-]+\.css)">', head)
              if name.startswith(b"DeckGlJsonChart.")]
    assert len(styles) == 1 and (chart_preload.STATIC_CSS / styles[0].decode()).is_file()
    # The map's module is evaluated early, by a module script after Streamlit's own.
    early = f'<script type="module">import("./static/js/{added[0].decode()}");</script>'.encode()
    assert head.index(early) > max(head.index(b'src="./static/js/' + name.encode()) for name in chart_preload.SHELL_SCRIPT.findall(shell) for name in [name.decode()])


def test_map_module_imports_are_read_from_static_imports_and_vite_dependency_maps():
    source = (b'const __vite__mapDeps=(i,m=__vite__mapDeps,d=(m.f||(m.f=["./webgl.A1.js","./x.B2.js"])))=>i;'
              b'import{a as b}from"./rolldown-runtime.C3.js";import"./src.D4.js";import{c}from "./x.B2.js";'
              b'async attach(){let{D:n}=await x(async()=>{let{D:e}=await import(`./webgl-device.E5.js`);return e},[])}')
    assert chart_preload.module_imports(source) == ["rolldown-runtime.C3.js", "src.D4.js", "x.B2.js", "webgl.A1.js"]
    assert chart_preload.module_imports(source, named=True) == [
        "rolldown-runtime.C3.js", "src.D4.js", "x.B2.js", "webgl.A1.js", "webgl-device.E5.js"]
    assert chart_preload.module_imports(source, dynamic=False) == ["rolldown-runtime.C3.js", "src.D4.js", "x.B2.js"]


# Recorded by the page itself: the background of Streamlit's app the moment it is first put in the page.
FIRST_PAINT = """
window.temboFirstBackground = null;
new MutationObserver((_, observer) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (app) { window.temboFirstBackground = getComputedStyle(app).backgroundColor; observer.disconnect(); }
}).observe(document, {childList: true, subtree: true});
"""


def luminance(css_rgb: str) -> float:
    red, green, blue = (int(v) for v in css_rgb[css_rgb.index("(") + 1 : css_rgb.index(")")].split(",")[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


@pytest.mark.browser
def test_ranger_opening_the_dashboard_for_the_first_time_sees_no_white_flash(sqlite_url, port, tmp_path):
    with open_bridge(sqlite_url):
        pass
    with serving.running(port, sqlite_url, tmp_path / "dashboard.log") as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(color_scheme="light").new_page()  # a browser in a light system theme
            page.add_init_script(FIRST_PAINT)
            page.goto(base_url)
            page.get_by_role("textbox", name="Username").wait_for(timeout=120_000)
            first = page.evaluate("window.temboFirstBackground")
            # The sign-in page draws no map, yet the browser has the map's module already.
            page.wait_for_function(
                "() => performance.getEntriesByType('resource').some(e => e.name.includes('/DeckGlJsonChart.')"
                " && e.responseEnd > 0)", timeout=120_000)
            final = page.evaluate("getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor")
        finally:
            browser.close()
    assert first is not None and luminance(first) < 60, first  # dark from the first paint
    night = palette.THEME["backgroundColor"].lstrip("#")
    assert final == "rgb({}, {}, {})".format(*(int(night[i : i + 2], 16) for i in (0, 2, 4)))  # then the night theme
