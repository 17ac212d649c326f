"""What network servers say besides uplinks, recorded for what it is.

- join: a new session for the collar; its frame counter restarts, so the next low FCnt is expected;
- downlink reports (queued, sent / txack, ack, nack, failed, queue invalidated): move the downlink's
  network state (`domain.downlinks.apply_network_report`);
- location (network geolocation), status (battery and link margin), log, service data and
  integration events: stored in `network_events` for the technician;
- a kind the bridge does not know: kept as a dead letter (stage `kind`) for inspection.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge import ingest
from lora_bridge.domain import devices, downlinks, fuota_delivery
from lora_bridge.network_messages import (
    DOWNLINK_REPORTS,
    KIND_JOIN,
    KIND_LOG,
    KIND_UNKNOWN,
    NetworkEvent,
)
from lora_bridge.store.tables import Device, RawUplink
from lora_bridge.store.tables import NetworkEvent as NetworkEventRow
from lora_bridge.store.utc import as_utc
from lora_bridge.uplink_formats import SOURCE_CHIRPSTACK, SOURCE_TTS

log = logging.getLogger(__name__)

# ChirpStack log codes that say the collar's uplink frame counter started again.
FCNT_RESET_LOG_CODES = ("UPLINK_F_CNT_RESET",)


def dedup_key(event: NetworkEvent, body: bytes) -> str:
    """One key per network message however often it is delivered (a webhook retry, an MQTT QoS 1
    redelivery, the copy of the other integration): its network, kind, collar and identity
    (`NetworkEvent.identity`, what the network documents as telling its messages apart), or the
    body's bytes when it has none (a kind Tembo does not read). Held by the first copy's raw row
    (`ingest.claim_key`), like an uplink's."""
    if event.network == SOURCE_TTS:
        collar = f"{event.application_id}/{event.device_id}"  # TTS always names both (body or path)
    else:
        collar = (event.dev_eui or event.device_id or "").lower()
    identity = event.identity or "body=" + hashlib.sha256(body).hexdigest()
    digest = hashlib.sha256(f"{event.network}\n{event.event}\n{collar}\n{identity}".encode()).hexdigest()
    return f"event:{event.network}:{digest[:48]}"


# LoRaWAN 1.0 was published in 2015: a network time before it is a clock's zero value (Go's year 1, Unix's
# 1970, a real-time clock's 2000 after a power cut on a board without its battery), not a message's time.
NETWORK_TIMES_FROM = datetime(2015, 1, 1, tzinfo=UTC)


def network_time(reported: datetime | None, arrival: datetime, max_ahead_s: float, *, what: str,
                 device_id: str | None) -> datetime:
    """The time a network message (an uplink, a join, a report) is dated by: the network's own, or the
    bridge's arrival time when the network gave none, one more than max_ahead_s (the settings'
    `max_clock_ahead_s`) ahead of arrival (a gateway clock in year 9999) or one before
    NETWORK_TIMES_FROM (a network server's clock reset to 1970: the collar's newest fix had been filed
    there, never its animal's latest place). `what` names the message in the warning."""
    if reported is None:
        return arrival
    if NETWORK_TIMES_FROM <= reported <= arrival + timedelta(seconds=max_ahead_s):
        return reported
    log.warning(
        "network time %s of %s of device_id=%s is %s arrival %s: dated at arrival",
        reported.isoformat(), what, device_id, "before the LoRaWAN era, long before" if reported < NETWORK_TIMES_FROM
        else "ahead of", arrival.isoformat(),
        extra={"device_id": device_id},
    )
    return arrival


@dataclass
class Recorded:
    """What recording one network event did."""

    device_id: str | None = None
    downlink_ids: list[int] = field(default_factory=list)
    kept_reason: str | None = None
    joined: Device | None = None  # the collar whose join this was (heard: its offline alert closes)
    joined_at: datetime | None = None


def _refile_frames_of_new_session(session: Session, device: Device, at: datetime) -> None:
    """A join (or reset) at `at` that came after frames the collar sent since (or at that instant: a
    ChirpStack join may be dated by the uplink that completed it, docs.rs chirpstack_api 4.7 JoinEvent
    "sent at the first uplink after OTAA"): those frames, filed in its previous session, are its new
    session's (`ingest.refile_heard_since`), and the newest of them is the counter the next frame
    follows. Left where they were, a copy of one delivered again was applied a second time, and the
    previous session's counter gap counted them lost."""
    refiled = ingest.refile_heard_since(session, device.device_id, device.session - 1, device.session, at)
    if refiled:
        device.last_f_cnt = refiled[-1].f_cnt
        log.info("%d frames heard after the join of device_id=%s filed in its session %d", len(refiled),
                 device.device_id, device.session, extra={"device_id": device.device_id, "session": device.session,
                                                          "f_cnt": refiled[-1].f_cnt})


def _session_began_by_join(session: Session, device: Device) -> bool:
    """Whether the collar's current session began with a join the bridge recorded (not with a
    frame-counter reset it saw in the collar's frames)."""
    if device.joined_at is None:
        return False
    began = select(NetworkEventRow.id).where(NetworkEventRow.device_id == device.device_id,
                                             NetworkEventRow.kind == KIND_JOIN, NetworkEventRow.time == device.joined_at)
    return session.scalar(began.limit(1)) is not None


def record(session: Session, raw: RawUplink, event: NetworkEvent, *, max_ahead_s: float) -> Recorded:
    """Store event (from raw) and apply what it means to the collar and its downlinks. A network time
    more than max_ahead_s (the settings' `max_clock_ahead_s`) ahead of arrival is replaced by the arrival (as an uplink's is): a join dated
    in year 9999 would otherwise put every later uplink of the collar in its previous session."""
    if event.kind == KIND_UNKNOWN:
        reason = f"{event.network} message kind {event.event!r} is not one Tembo reads; kept for inspection"
        if event.detail.get("reason"):
            reason += f" ({event.detail['reason']})"
        return Recorded(kept_reason=reason)
    at = network_time(event.time, as_utc(raw.received_at), max_ahead_s,
                      what=f"a {event.kind}", device_id=event.device_id)
    if event.time is not None and at != event.time:
        event = replace(event, detail={**event.detail, "time_reported": event.time.isoformat()})
    device = None
    if event.dev_eui or event.device_id:
        device = devices.resolve_device(
            session,
            dev_eui=event.dev_eui,
            label=event.device_id,
            network=event.network,
            application_id=event.application_id,
            network_scope=event.network_scope,
        )
    outcome = Recorded(device_id=device.device_id if device else None)
    raw.device_id = outcome.device_id
    row = NetworkEventRow(
        raw_uplink_id=raw.id,
        network=event.network,
        kind=event.kind,
        device_id=outcome.device_id,
        dev_eui=event.dev_eui,
        time=at,
        lat=event.lat,
        lon=event.lon,
        accuracy_m=event.accuracy_m,
        battery_pct=event.battery_pct,
        margin_db=event.margin_db,
        detail={"event": event.event, **event.detail},
    )
    session.add(row)
    started = False
    if device is not None and event.kind == KIND_JOIN:
        started = devices.apply_join(device, at, session_joined=_session_began_by_join(session, device))
    elif device is not None and event.kind == KIND_LOG and event.detail.get("code") in FCNT_RESET_LOG_CODES:
        started = devices.apply_reset(device, at, reason="network reports a frame-counter reset")
    if started and device is not None and device.last_seen is not None and device.last_seen >= at:
        _refile_frames_of_new_session(session, device, at)
    if device is not None and event.kind == KIND_JOIN and event.network == SOURCE_CHIRPSTACK:
        # ChirpStack flushed the collar's device queue on the join: what waited there goes again.
        outcome.downlink_ids.extend(row.id for row in downlinks.requeue_flushed_on_join(session, device.device_id, at))
    if device is not None and (started or event.kind == KIND_JOIN):
        # A join is a rejoin of its collar (whether or not its frame counter told first): an update's set-up
        # does not outlive the session it was sent in.
        fuota_delivery.apply_rejoin(session, device.device_id, at)
    if device is not None and event.kind == KIND_JOIN:
        # The collar sent the join request: heard, as by any frame of its own (a rejoin after a brown-out
        # is often the first thing a silent collar says).
        if device.last_seen is None or at > device.last_seen:
            device.last_seen = at
        outcome.joined, outcome.joined_at = device, at
    if event.kind in DOWNLINK_REPORTS:
        reported = downlinks.apply_network_report(session, outcome.device_id, event, at)
        if reported:
            row.downlink_id = reported[0].id
            outcome.downlink_ids.extend(downlink.id for downlink in reported)
    log.info(
        "network event %s device_id=%s",
        event.kind,
        outcome.device_id,
        extra={"device_id": outcome.device_id, "event": event.event, "network": event.network},
    )
    return outcome
