"""Replaying a JSON-lines file of uplinks (one network-server body per line) into the bridge.

Useful to rebuild a store from a capture, or to feed a bridge with what a field gateway logged
while the control room was offline. Blank lines and lines starting with '#' are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from lora_bridge.service import Bridge
from lora_bridge.views import ReplayReport

log = logging.getLogger(__name__)


def replay_lines(bridge: Bridge, lines: Iterable[bytes], source: str = "tts") -> ReplayReport:
    """Ingest every non-blank line as one uplink body from source; returns the tally."""
    bodies = (line.strip() for line in lines)
    report = ReplayReport.tally(
        bridge.ingest_uplink(body, f"replay:{source}") for body in bodies if body and not body.startswith(b"#")
    )
    log.info(
        "replay finished",
        extra={"attempted": report.attempted, "processed": report.processed, "dead": report.still_dead},
    )
    return report


def replay_file(bridge: Bridge, path: str | Path, source: str = "tts") -> ReplayReport:
    """Ingest a JSON-lines file of TTS (source='tts') or ChirpStack ('chirpstack') uplink bodies."""
    with open(path, "rb") as handle:
        return replay_lines(bridge, handle, source)
