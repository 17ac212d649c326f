"""Replaying a JSON-lines file of uplinks (one network-server body per line) into the bridge.

Useful to rebuild a store from a capture, or to feed a bridge with what a field gateway logged
while the control room was offline. Blank lines and lines starting with '#' are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from itertools import islice
from pathlib import Path

from lora_bridge import ingest
from lora_bridge.group_commit import Submission
from lora_bridge.service import Bridge
from lora_bridge.uplink_formats import SOURCE_TTS
from lora_bridge.views import ReplayReport

log = logging.getLogger(__name__)

JSON = "application/json"


def replay_lines(bridge: Bridge, lines: Iterable[bytes], source: str = "tts") -> ReplayReport:
    """Ingest every non-blank line as one uplink body from source, in batches of the bridge's
    `ingest_max_batch` (one transaction each, `Bridge.ingest_batch`); returns the tally."""
    ingest.parser_for(source)  # ValueError for a source the bridge cannot read
    event = None if ingest.network_of(source) == SOURCE_TTS else "up"
    bodies = (line.strip() for line in lines)
    wanted = (body for body in bodies if body and not body.startswith(b"#"))
    results = []
    while batch := list(islice(wanted, bridge.settings.ingest_max_batch)):
        submissions = [Submission(f"replay:{source}", event, body, content_type=JSON) for body in batch]
        results.extend(bridge.ingest_batch(submissions))
    report = ReplayReport.tally(results)
    log.info(
        "replay finished",
        extra={"attempted": report.attempted, "processed": report.processed, "dead": report.still_dead},
    )
    return report


def replay_file(bridge: Bridge, path: str | Path, source: str = "tts") -> ReplayReport:
    """Ingest a JSON-lines file of TTS (source='tts') or ChirpStack ('chirpstack') uplink bodies."""
    with open(path, "rb") as handle:
        return replay_lines(bridge, handle, source)
