"""What the service layer hands to the dashboard and the HTTP API: frozen dataclasses, aware UTC times.

Field names are fixed by docs/contracts.md; fields after the contract's come with defaults.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class AnimalView:
    """An animal with its collar's latest state."""

    animal_id: str
    name: str
    species: str
    device_id: str | None
    last_seen: datetime | None
    lat: float | None
    lon: float | None
    battery_mv: int | None
    behaviour: str | None
    fw_version: str | None
    model_version: int | None
    sex: str | None = None
    position_time: datetime | None = None
    temperature_c: float | None = None
    open_alerts: int = 0


@dataclass(frozen=True)
class DeviceView:
    """A collar's health as a field technician sees it."""

    device_id: str
    animal_id: str | None
    name: str | None
    dev_eui: str | None
    network: str | None
    last_seen: datetime | None
    last_f_cnt: int | None
    last_rssi_dbm: float | None
    last_snr_db: float | None
    battery_mv: int | None
    temperature_c: float | None
    fw_version: str | None
    model_version: int | None
    uptime_h: int | None
    reset_cause: str | None
    queue_depth: int | None
    errors: int | None
    flags: dict[str, bool]
    reported_settings: dict[str, Any]
    uplinks_received: int
    frame_loss_pct: float | None
    # Frames missing from the frame counters of each session, less those the collar's flash queue
    # sent again later; the back-filled ones; the network's current name for the collar.
    uplinks_lost: int | None = None
    uplinks_backfilled: int = 0
    label: str | None = None


@dataclass(frozen=True)
class CollarHealthView:
    """A collar's health for the field technicians' fleet page."""

    device_id: str
    animal_id: str | None
    name: str | None
    battery_mv: int | None
    battery_slope_mv_per_day: float | None
    battery_low_on: str | None
    battery_empty_on: str | None
    last_seen: datetime | None
    expected_interval_s: int
    offline_after_s: int
    last_rssi_dbm: float | None
    last_snr_db: float | None
    last_gateway: str | None
    frame_loss_pct: float | None
    uplinks_received: int
    fw_version: str | None
    model_version: int | None
    temperature_c: float | None


@dataclass(frozen=True)
class PositionView:
    """One fix of one animal."""

    animal_id: str
    name: str
    device_id: str
    time: datetime
    lat: float
    lon: float


@dataclass(frozen=True)
class AlertView:
    """An alert as a ranger sees it in the list."""

    alert_id: int
    animal_id: str | None
    name: str | None
    device_id: str
    alert_type: str
    priority: int
    state: str
    time: datetime
    lat: float | None
    lon: float | None
    source: str
    verdict: str | None = None
    last_time: datetime | None = None
    occurrences: int = 1
    evidence: dict[str, Any] = field(default_factory=dict)
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    assigned_to: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class AlertEventView:
    """One step in an alert's history."""

    alert_id: int
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ActivityView:
    """Behaviour shares of one animal over one interval (percent of the interval per class)."""

    animal_id: str
    device_id: str
    time: datetime
    interval_min: int
    model_version: int | None
    vedba_mean_mg: int | None
    vedba_max_mg: int | None
    shares_pct: dict[str, float]
    dominant: str | None


@dataclass(frozen=True)
class DeadLetterView:
    """A body or payload the bridge could not use, and why."""

    dead_letter_id: int
    raw_uplink_id: int | None
    source: str
    stage: str
    reason: str
    created_at: datetime
    replayed_at: datetime | None
    replay_result: str | None
    body: bytes


@dataclass(frozen=True)
class DownlinkView:
    """A command for a collar and how far it got."""

    downlink_id: int
    device_id: str
    f_port: int
    command: str
    seq: int | None
    state: str
    payload_hex: str
    alert_id: int | None
    created_at: datetime
    sent_at: datetime | None
    attempts: int
    last_error: str | None
    # What the network server reported (queued, sent, acked, nacked, failed, invalidated).
    network_state: str | None = None
    superseded_by: int | None = None


@dataclass(frozen=True)
class IngestResult:
    """What happened to one delivered body: processed, duplicate, recorded (a network event), kept
    (an unknown kind), dead_letter, or pending (stored; the store failed while applying it)."""

    status: str
    raw_uplink_id: int | None  # None: kept in the durable intake's journal, not yet in raw_uplinks
    device_id: str | None = None
    f_cnt: int | None = None
    message: str | None = None
    reason: str | None = None
    duplicate_of: int | None = None
    alert_ids: tuple[int, ...] = ()
    downlink_ids: tuple[int, ...] = ()
    stage: str | None = None
    intake_id: int | None = None  # the body's entry in the durable intake's journal

    @property
    def ok(self) -> bool:
        """True when the body was used (processed) or recognised as a copy of one that was."""
        return self.status in ("processed", "duplicate")

    @property
    def malformed(self) -> bool:
        """True when the body was not an uplink at all (the webhook answers 400)."""
        return self.status == "dead_letter" and self.stage == "parse"


@dataclass(frozen=True)
class ReplayReport:
    """Outcome of replaying dead letters or a file of uplinks."""

    attempted: int
    processed: int
    duplicates: int
    still_dead: int

    @classmethod
    def tally(cls, results: Iterable[IngestResult]) -> ReplayReport:
        """How many of results (consumed one by one) were processed, duplicates, still dead letters."""
        statuses = Counter(result.status for result in results)
        return cls(
            attempted=statuses.total(),
            processed=statuses["processed"],
            duplicates=statuses["duplicate"],
            still_dead=statuses["dead_letter"],
        )


def to_jsonable(view: Any) -> Any:
    """A view (or list/dict of views) as plain JSON types: datetimes ISO 8601, bytes hex."""
    if hasattr(view, "__dataclass_fields__"):
        return {key: to_jsonable(value) for key, value in asdict(view).items()}
    if isinstance(view, dict):
        return {str(key): to_jsonable(value) for key, value in view.items()}
    if isinstance(view, list | tuple):
        return [to_jsonable(value) for value in view]
    if isinstance(view, datetime):
        return view.isoformat()
    if isinstance(view, bytes):
        return view.hex()
    return view


# ---- Rules and notifications ----


@dataclass(frozen=True)
class GeofenceView:
    """A fence from the reserve's geometry: what it is, what crossing it means, its WGS84 GeoJSON."""

    geofence_id: int
    name: str
    kind: str
    alert_on: str
    geometry: dict[str, Any]
    source_file: str | None
    source_crs: str | None
    created_at: datetime
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NotificationView:
    """One outbox row: where it goes, what state it is in, how often it was tried."""

    notification_id: int
    channel: str
    recipient: str
    route: str | None
    kind: str
    alert_id: int | None
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None
    payload: dict[str, Any] = field(default_factory=dict)
