"""Replaying a JSON-lines capture of network-server messages (one a line) into the bridge.

Useful to rebuild a store from a capture, or to feed a bridge with what a field gateway logged
while the control room was offline. Blank lines and lines starting with '#' are skipped. A line is
either

- a message body as the network posts it to a webhook: a TTS body names its kind by its message key
  (`uplink_message`, `join_accept`, `downlink_ack`, ...); a ChirpStack body, whose event only its
  topic or `?event=` names, is read as the event whose fields it carries
  (`network_messages.chirpstack_event_of`); or
- a line of `mosquitto_sub -F '%J'` (or `'%j'`): `{"tst": ..., "topic": ..., "payload": ...}`, routed
  by its topic as the MQTT ingest routes it (`adapters.mqtt.route`: either network, any application;
  the bridge's own downlink topics are skipped).

Every line goes through the same ingest as the webhook and MQTT (`Bridge.ingest_batch`), so each is
recorded for what it is: uplinks processed, joins, delivery reports, locations and status recorded,
copies of what the store holds already filed as duplicates. A store another program holds a while
is waited for; one that stays unavailable stops the replay with how far it got, and running it
again is safe.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from lora_bridge import ingest
from lora_bridge.adapters.mqtt import RETRY_STORE_AFTER_S, content_type_of, route
from lora_bridge.errors import StoreUnavailable, failure_context, said_of
from lora_bridge.group_commit import Submission
from lora_bridge.network_messages import chirpstack_event_of
from lora_bridge.service import Bridge
from lora_bridge.uplink_formats import SOURCE_CHIRPSTACK
from lora_bridge.views import IngestResult, ReplayReport

log = logging.getLogger(__name__)

JSON = "application/json"
# The fields of a `mosquitto_sub -F '%j'` / `'%J'` line that say it is one (mosquitto_sub(1), "Output format").
MOSQUITTO_LINE_FIELDS = ("topic", "payload")


def replay_lines(bridge: Bridge, lines: Iterable[bytes], source: str = "tts") -> ReplayReport:
    """Ingest every non-blank line as one message of source's network (or of its line's MQTT topic),
    in batches of the bridge's `ingest_max_batch` (one transaction each, `Bridge.ingest_batch`);
    returns the tally, per kind of message."""
    ingest.parser_for(source)  # ValueError for a source the bridge cannot read
    bodies = (line.strip() for line in lines)
    wanted = (body for body in bodies if body and not body.startswith(b"#"))
    skipped = 0

    def submissions() -> Iterator[Submission]:
        nonlocal skipped
        for body in wanted:
            submission = submission_of(body, source)
            if submission is None:
                skipped += 1
            else:
                yield submission

    results: list[IngestResult] = []
    pending = submissions()
    while batch := list(islice(pending, bridge.settings.ingest_max_batch)):
        results.extend(_ingest_patiently(bridge, batch, taken=len(results)))
    report = dataclasses.replace(ReplayReport.tally(results), skipped=skipped)
    log.info(
        "replay finished: %d lines, %d processed, %d recorded, %d still dead, %d skipped",
        report.attempted, report.processed, report.recorded, report.still_dead, report.skipped,
        extra={"attempted": report.attempted, "processed": report.processed, "recorded": report.recorded,
               "dead": report.still_dead, "skipped": report.skipped},
    )
    return report


def _ingest_patiently(bridge: Bridge, batch: list[Submission], taken: int) -> list[IngestResult]:
    """batch ingested, waiting for a store another program holds (a backup, the running bridge's
    compaction) as the MQTT ingest waits (`RETRY_STORE_AFTER_S`); StoreUnavailable, saying how many
    lines were taken before, once the store stays unavailable: running the replay again is safe, the
    lines taken already are recognised as copies."""
    for wait_s in (*RETRY_STORE_AFTER_S, None):
        try:
            return bridge.ingest_batch(batch)
        except StoreUnavailable as error:
            if wait_s is None:
                raise StoreUnavailable(
                    f"{error}; {taken} lines were taken before it: run the replay again once the store is back "
                    "(the lines taken already are recognised as copies)"
                ) from error
            failure = failure_context(error)
            log.warning("store unavailable during a replay after %d lines %s; trying again in %.1f s", taken,
                        said_of(failure), wait_s, extra={"taken": taken, **failure})
            time.sleep(wait_s)
    raise AssertionError("unreachable")


def submission_of(line: bytes, source: str) -> Submission | None:
    """The ingest submission of one capture line: a mosquitto_sub line by its topic (None for a topic
    that is not an ingest topic), else the line as a body of source's network, its kind named as the
    live ingest would have it."""
    network = ingest.network_of(source)
    document = _json_object(line)
    if document is not None and all(name in document for name in MOSQUITTO_LINE_FIELDS):
        routed = route(str(document["topic"]))
        if routed is None:
            return None
        payload = document["payload"]
        # A payload that is no UTF-8 comes as escapes of no character (a lone surrogate): kept as such
        # bytes, the body reads as broken and is a dead letter, not the end of the replay.
        body = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else json.dumps(payload).encode()
        return Submission(f"replay:{routed.network}", routed.event, body,
                          content_type=content_type_of(routed.network, body), path_ids=routed.path_ids)
    event = chirpstack_event_of(line) if network == SOURCE_CHIRPSTACK else None
    return Submission(f"replay:{network}", event, line, content_type=JSON)


def _json_object(line: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def replay_file(bridge: Bridge, path: str | Path, source: str = "tts") -> ReplayReport:
    """Ingest a JSON-lines capture of TTS (source='tts') or ChirpStack ('chirpstack') messages, or of
    `mosquitto_sub -F '%J'` lines of either."""
    with open(path, "rb") as handle:
        return replay_lines(bridge, handle, source)
