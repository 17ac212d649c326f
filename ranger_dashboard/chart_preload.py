"""The map's scripts fetched with the page, not after it: `<link rel="modulepreload">` lines for the
page's HTML shell (`night_page.NightPage` puts them in).

Streamlit loads the code of its map element (`DeckGlJsonChart.<hash>.js`, deck.gl: about 3 MB, and
its own imports) only once the first map element has arrived over the websocket, that is after
the page's script, the websocket and the app's run: on a browser that has not cached it, the map
then waits for the fetch, the parse and the evaluation of 3 MB of JavaScript. Every page of the
dashboard draws a map (live map, alert evidence, animal), so the shell asks for that code at once:
the browser fetches and compiles it while Streamlit's own scripts start and the app runs on the
server. The files are Streamlit's own, found by name in its static folder (the names carry a
content hash, so the list is read from the installed Streamlit once per process).

The same holds for the elements around the map (`PAGE_ELEMENTS`): Streamlit loads the code of a
button, a select box, a toggle, a slider, a metric, an HTML block and a custom theme only once the
first of them arrives, and the live map page shows all of them with the map (its sidebar, the "as
of" slider, the metrics, its marker). Measured on a cold visit of the 500-animal map
(docs/dashboard.md): 37 such modules asked for 1.4 s after the page, the last arriving at 2.1 s,
the map element put in the page after them. They are preloaded after the map's own modules.
"""

from __future__ import annotations

import logging
import re
from functools import cache
from pathlib import Path

import streamlit

logger = logging.getLogger(__name__)

STATIC_JS = Path(streamlit.__file__).resolve().parent / "static" / "static" / "js"
STATIC_CSS = STATIC_JS.parent / "css"
CHART_MODULE = "DeckGlJsonChart.*.js"
CHART_STYLES = "DeckGlJsonChart.*.css"
# Streamlit's modules of the elements the live map page shows beside the map, by name.
PAGE_ELEMENTS = ("Button", "Selectbox", "Checkbox", "Slider", "Metric", "Html", "CustomTheme")
# A module's static imports (`from"./x.js"`, `import"./x.js"`) and the chunks Vite maps for its
# dynamic imports (`__vite__mapDeps`: the WebGL device the chart asks for when it starts).
IMPORT = re.compile(rb"""(?:from|import)\s*["'](\./[\w.\-]+\.js)["']""")
MAPPED = re.compile(rb"""__vite__mapDeps=.*?\[([^\]]*)\]""")
# A dynamic import of a literal file name (`import(`./webgl-device.js`)`): deck.gl asks for its WebGL
# device so when the map starts, and that tiny module was fetched only then (20 to 110 ms on a cold
# visit, between the map element and its first frame).
DYNAMIC = re.compile(rb"""import\(\s*[`"'](\./[\w.\-]+\.js)[`"']\s*\)""")
MAPPED_FILE = re.compile(rb"""["'](\./[\w.\-]+\.js)["']""")


def module_imports(source: bytes, dynamic: bool = True, named: bool = False) -> list[str]:
    """The file names a built module imports statically, (with `dynamic`) maps for its dynamic
    imports and (with `named` too) imports dynamically by name, in order."""
    names = [match.decode() for match in IMPORT.findall(source)]
    mapped = MAPPED.search(source[:20_000]) if dynamic else None
    if mapped:
        names += [match.decode() for match in MAPPED_FILE.findall(mapped.group(1))]
    if dynamic and named:
        names += [match.decode() for match in DYNAMIC.findall(source)]
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name.removeprefix("./"), None)
    return list(seen)


def chart_files(
    already: frozenset[str] = frozenset(), static_js: Path = STATIC_JS, elements: tuple[str, ...] = PAGE_ELEMENTS
) -> list[str]:
    """The map element's module and every module it needs (imports of imports too) that is not in
    `already` (modules the page loads anyway, whose imports it loads too), module first, then those
    of the page's other `elements`; none for a module this Streamlit does not have (the pages still
    work, only without its preload)."""
    order: dict[str, None] = {}
    # The map's module with what it imports when it starts (its dynamic imports); the elements'
    # modules with their static imports only (what Streamlit fetches when they arrive).
    for pattern, dynamic in ((CHART_MODULE, True), *((f"{element}.*.js", False) for element in elements)):
        found = sorted(static_js.glob(pattern))
        if len(found) != 1:
            logger.warning("module not found for preloading", extra={"static": str(static_js), "module": pattern, "found": len(found)})
            continue
        _add_with_imports(found[0].name, order, already, static_js, dynamic)
    return list(order)


def _add_with_imports(first: str, order: dict[str, None], already: frozenset[str], static_js: Path, dynamic: bool) -> None:
    pending = [first]
    while pending:
        name = pending.pop(0)
        if name in order or name in already or not (static_js / name).is_file():
            continue
        order[name] = None
        # The first module's own dynamic imports by name too (the map's: its WebGL device).
        pending.extend(module_imports((static_js / name).read_bytes(), dynamic, named=dynamic and name == first))


@cache
def preload_links(already: frozenset[str] = frozenset()) -> bytes:
    """`<link rel="modulepreload">` lines for the map's modules, without those in `already` (the
    shell preloads Streamlit's core itself); relative like Streamlit's own, so they resolve under a
    base URL path too."""
    return "".join(
        f'<link rel="modulepreload" crossorigin href="./static/js/{name}">'
        for name in chart_files(already)
    ).encode()


@cache
def early_import(already: frozenset[str] = frozenset()) -> bytes:
    """A module script that imports (fetches if need be, and evaluates) the map's module as soon as
    Streamlit's own module has run, while the page waits for the websocket and the app's run:
    Streamlit's import of the same file when the map arrives then finds it evaluated (a module is
    evaluated once per page). Evaluating deck.gl's 3 MB took 0.3 to 0.7 s of the page's main thread
    after the map element arrived (docs/dashboard.md). Started later instead, once the app's sidebar
    was drawn (the websocket open and the run asked for), it no longer held back the websocket's
    opening but delayed the map element by as much again: from the websocket's opening to the map's
    first frame the page's main thread is busy throughout (docs/dashboard.md, seventh session).
    Empty when there is no map module."""
    files = chart_files(already, elements=())
    if not files:
        return b""
    return f'<script type="module">import("./static/js/{files[0]}");</script>'.encode()


@cache
def chart_styles(static_css: Path = STATIC_CSS) -> bytes:
    """`<link rel="stylesheet">` lines for the map element's own stylesheet. Streamlit's import of the
    map's code adds that stylesheet and waits until it has loaded before it draws the map (Vite's
    preload helper); one already in the page is not asked for again, so the map no longer waits for
    that fetch (0.03 to 0.3 s on a cold visit, after its element arrived)."""
    return "".join(
        f'<link rel="stylesheet" href="./static/css/{path.name}">' for path in sorted(static_css.glob(CHART_STYLES))
    ).encode()


SHELL_PRELOAD = re.compile(rb"""<link rel="modulepreload" crossorigin href="\./static/js/([\w.\-]+\.js)">""")
SHELL_SCRIPT = re.compile(rb"""<script type="module" crossorigin src="\./static/js/([\w.\-]+\.js)">""")


def shell_modules(body: bytes) -> frozenset[str]:
    """The modules a page's HTML shell already loads or preloads."""
    return frozenset(m.decode() for m in SHELL_PRELOAD.findall(body) + SHELL_SCRIPT.findall(body))
