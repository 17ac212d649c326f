"""Running the bridge's webhook app under uvicorn (used by `tembo bridge` and the demo)."""

from __future__ import annotations

import logging
import threading

import uvicorn

from lora_bridge.adapters.webhook import create_app
from lora_bridge.service import Bridge
from lora_bridge.settings import BridgeSettings, load_settings

log = logging.getLogger(__name__)


def build_server(settings: BridgeSettings | None = None, bridge: Bridge | None = None) -> uvicorn.Server:
    """A uvicorn Server for the webhook app (not started); run it with .run() or in a thread."""
    settings = settings or load_settings()
    bridge = bridge or Bridge(settings)
    config = uvicorn.Config(
        create_app(bridge),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )
    return uvicorn.Server(config)


class RulesTimer:
    """Runs the bridge's time-driven rules (offline) every `every_s` seconds in a daemon thread."""

    def __init__(self, bridge: Bridge, every_s: float) -> None:
        self.bridge = bridge
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tembo-rules", daemon=True)

    def run_once(self) -> list[int]:
        """Run the rules now (wall clock); the ids of alerts raised. Errors are logged, not raised."""
        try:
            return self.bridge.run_rules()
        except Exception:
            log.exception("server rules failed")
            return []

    def start(self) -> None:
        """Start the background loop."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.run_once()


def serve(settings: BridgeSettings | None = None, bridge: Bridge | None = None) -> None:
    """Serve the webhook until interrupted (Ctrl-C stops it cleanly), with the rules on a timer.

    Bodies stored but not processed before a previous stop are processed first.
    """
    settings = settings or load_settings()
    server = build_server(settings, bridge)
    running_bridge: Bridge = server.config.app.state.bridge
    running_bridge.process_pending()
    rules = RulesTimer(running_bridge, settings.rules_every_s)
    rules.start()
    log.info("bridge listening on http://%s:%d", settings.host, settings.port)
    try:
        server.run()
    finally:
        rules.stop()
        running_bridge.close()
