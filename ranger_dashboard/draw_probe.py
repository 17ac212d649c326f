"""When the live map is really on screen: a probe of the browser's WebGL calls, for the dashboard
bench and the browser tests.

Streamlit's map component takes no deck.gl callbacks (its JSON carries layers, views and a
tooltip, never `onAfterRender`), so the probe watches what deck.gl asks WebGL to draw instead. An
init script (run in the page before any of its own scripts) wraps the WebGL contexts' methods:
it learns each linked program's deck.gl layer kind from the `#define SHADER_NAME` line that
deck.gl puts in every shader, follows which program and framebuffer are bound, and at each
instanced draw into the canvas (framebuffer `null`; picking draws into its own framebuffer) notes:

- `animals`: a ScatterplotLayer draw of at least the herd's number of instances (the map's one
  layer holding every animal's dot);
- `names`: a draw of the text pipeline (deck.gl's TextLayer draws through its multi-icon layer)
  with at least one character;
- `lines`: each LineLayer draw's number of segments, the first time a draw of that many was seen
  (the tracks' layer is told apart by the number of segments the tracks route answered).

The moments the page's marker saying it carries the whole herd (`markers.MAP_READY_ID`) and the
map's canvas enter the page are stamped too (`markedAt`, `canvasAt`). Each draw is stamped
(`Date.now()`, epoch milliseconds) in the second animation frame after the draw: Chromium hands
the drawn canvas to the compositor in the commit of the frame after the draw, after that frame's
animation callbacks (in this software-rendered browser the commit waits while SwiftShader reads the
canvas back: 0.7 to 1.1 s for a cold map, in traces of 3 December), so a stamp in the next frame's
callback would come before the pixels and the one after it comes once they are on screen. The probe also counts the
frames the deck drew and the draws per layer kind, for the measurement's record.
"""

from __future__ import annotations

import json
from typing import Any

from ranger_dashboard.markers import MAP_READY_ID

_SCRIPT = """
(() => {
  const probe = {animals: %(animals)d, markedAt: null, canvasAt: null, drawnAt: null, namedAt: null, lines: {}, pending: {}, frames: 0, draws: {}};
  window.__temboDrawProbe = probe;
  // The page's marker that it carries the whole herd, and the map's canvas, stamped when each
  // enters the page.
  const elements = new MutationObserver(() => {
    const found = document.getElementById(%(marker)s);
    if (probe.markedAt === null && found && Number(found.dataset.animals) === probe.animals) probe.markedAt = Date.now();
    if (probe.canvasAt === null && document.querySelector(%(canvas)s)) probe.canvasAt = Date.now();
    if (probe.markedAt !== null && probe.canvasAt !== null) elements.disconnect();
  });
  elements.observe(document, {childList: true, subtree: true});
  const shaderKind = new WeakMap(), programKind = new WeakMap(), bound = new WeakMap();
  const stateOf = gl => {
    let state = bound.get(gl);
    if (!state) { state = {program: null, framebuffer: null}; bound.set(gl, state); }
    return state;
  };
  // Runs fn once the frame holding what was just drawn is on screen (see the module's docstring).
  const onScreen = fn => requestAnimationFrame(() => requestAnimationFrame(fn));
  const stamp = name => {
    if (probe[name] !== null || probe.pending[name]) return;
    probe.pending[name] = true;
    onScreen(() => { probe[name] = Date.now(); });
  };
  let inFrame = false;
  const drew = (gl, instances) => {
    const state = stateOf(gl);
    if (state.framebuffer !== null) return;
    const kind = programKind.get(state.program) || "other";
    probe.draws[kind] = (probe.draws[kind] || 0) + 1;
    if (!inFrame) {  // draws of one frame run in one task: the first of them counts the frame
      inFrame = true;
      probe.frames += 1;
      queueMicrotask(() => { inFrame = false; });
    }
    if (kind.startsWith("scatterplot-layer") && instances >= probe.animals) stamp("drawnAt");
    if (kind.startsWith("multi-icon-layer") && instances > 0) stamp("namedAt");
    if (kind.startsWith("line-layer") && !(instances in probe.lines)) {
      probe.lines[instances] = null;
      onScreen(() => { probe.lines[instances] = Date.now(); });
    }
  };
  for (const name of ["WebGL2RenderingContext", "WebGLRenderingContext"]) {
    const proto = self[name] && self[name].prototype;
    if (!proto) continue;
    const after = (method, hook) => {
      const original = proto[method];
      if (typeof original !== "function") return;
      proto[method] = function (...args) {
        const result = original.apply(this, args);
        hook(this, args);
        return result;
      };
    };
    after("shaderSource", (gl, [shader, source]) => {
      const found = /SHADER_NAME\\s+(\\S+)/.exec(source || "");
      if (found) shaderKind.set(shader, found[1]);
    });
    after("attachShader", (gl, [program, shader]) => {
      const kind = shaderKind.get(shader);
      if (kind && !/fragment|-fs$/.test(kind)) programKind.set(program, kind);
    });
    after("useProgram", (gl, [program]) => { stateOf(gl).program = program; });
    after("bindFramebuffer", (gl, [target, framebuffer]) => {
      if (target === gl.FRAMEBUFFER || target === gl.DRAW_FRAMEBUFFER) stateOf(gl).framebuffer = framebuffer;
    });
    after("drawArraysInstanced", (gl, args) => drew(gl, args[3]));
    after("drawElementsInstanced", (gl, args) => drew(gl, args[4]));
    after("drawArrays", gl => drew(gl, 1));
    after("drawElements", gl => drew(gl, 1));
  }
})();
"""

MAP_CANVAS = "[data-testid='stDeckGlJsonChart'] canvas"
DRAWN = "() => window.__temboDrawProbe && window.__temboDrawProbe.drawnAt"
NAMED = "() => window.__temboDrawProbe && window.__temboDrawProbe.namedAt"


def script(animals: int) -> str:
    """The init script of the probe for a map of `animals` animals."""
    return _SCRIPT % {"animals": int(animals), "marker": json.dumps(MAP_READY_ID), "canvas": json.dumps(MAP_CANVAS)}


def install(page: Any, animals: int) -> None:
    """Have `page` (a Playwright page, before it loads the map) run the probe in every document."""
    page.add_init_script(script=script(animals))


def wait_drawn(page: Any, timeout_ms: float) -> float:
    """Epoch seconds of the first frame on screen holding every animal's dot (waits for it)."""
    return float(page.wait_for_function(DRAWN, timeout=timeout_ms).json_value()) / 1000


def wait_named(page: Any, timeout_ms: float) -> float:
    """Epoch seconds of the first frame on screen holding animal names (waits for it)."""
    return float(page.wait_for_function(NAMED, timeout=timeout_ms).json_value()) / 1000


def wait_lines(page: Any, segments: int, timeout_ms: float) -> float:
    """Epoch seconds of the first frame on screen holding a LineLayer draw of `segments` segments."""
    expression = f"() => window.__temboDrawProbe && window.__temboDrawProbe.lines[{int(segments)}]"
    return float(page.wait_for_function(expression, timeout=timeout_ms).json_value()) / 1000


def marked_at(page: Any) -> float | None:
    """Epoch seconds at which the page's map marker (carrying every animal) entered the page."""
    stamp = page.evaluate("() => window.__temboDrawProbe && window.__temboDrawProbe.markedAt")
    return None if stamp is None else float(stamp) / 1000


def canvas_at(page: Any) -> float | None:
    """Epoch seconds at which the map's canvas entered the page."""
    stamp = page.evaluate("() => window.__temboDrawProbe && window.__temboDrawProbe.canvasAt")
    return None if stamp is None else float(stamp) / 1000


def record(page: Any) -> dict[str, Any]:
    """What the probe saw: frames the deck drew into its canvas and draws per layer kind."""
    return page.evaluate("() => { const p = window.__temboDrawProbe; return {frames: p.frames, draws: p.draws}; }")
