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
    attempted = processed = duplicates = dead = 0
    for line in lines:
        body = line.strip()
        if not body or body.startswith(b"#"):
            continue
        attempted += 1
        result = bridge.ingest_uplink(body, f"replay:{source}")
        processed += result.status == "processed"
        duplicates += result.status == "duplicate"
        dead += result.status == "dead_letter"
    log.info("replay finished", extra={"attempted": attempted, "processed": processed, "dead": dead})
    return ReplayReport(attempted, processed, duplicates, dead)


def replay_file(bridge: Bridge, path: str | Path, source: str = "tts") -> ReplayReport:
    """Ingest a JSON-lines file of TTS (source='tts') or ChirpStack ('chirpstack') uplink bodies."""
    with open(path, "rb") as handle:
        return replay_lines(bridge, handle, source)
