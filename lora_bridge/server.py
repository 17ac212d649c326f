"""Running the bridge's webhook app under uvicorn (used by `tembo bridge` and the demo)."""

from __future__ import annotations

import logging

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


def serve(settings: BridgeSettings | None = None, bridge: Bridge | None = None) -> None:
    """Serve the webhook until interrupted (Ctrl-C stops it cleanly)."""
    settings = settings or load_settings()
    server = build_server(settings, bridge)
    server.config.app.state.bridge.process_pending()
    log.info("bridge listening on http://%s:%d", settings.host, settings.port)
    try:
        server.run()
    finally:
        server.config.app.state.bridge.close()
