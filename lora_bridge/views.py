"""What the service layer hands to the dashboard and the HTTP API: frozen dataclasses, aware UTC times.

Field names are fixed by docs/contracts.md; fields after the contract's come with defaults.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
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
    # For a role with a delay, the moment this view stands at (the role's cutoff for this animal):
    # its last_seen, battery and position are as of then. None: live.
    as_of: datetime | None = None
    # When the collar it wears was fitted (None: worn since it was registered).
    collar_fitted_at: datetime | None = None


@dataclass(frozen=True)
class HerdEntryView:
    """An animal as the herd register holds it: who it is and the collar it wears since when
    (collar_fitted_at None: since it was registered), never where it is or what its collar reported."""

    animal_id: str
    name: str
    species: str
    sex: str | None
    device_id: str | None
    collar_fitted_at: datetime | None


@dataclass(frozen=True)
class CollarInStockView:
    """A collar in stock as the herd register lists it: taken off at taken_off_at with no other fitted,
    worn by nobody until it is fitted again, and the animal it came off (None: not known to this store,
    a collar taken off before fittings were kept); never where it lies."""

    device_id: str
    taken_off_at: datetime
    taken_off_animal_id: str | None
    taken_off_name: str | None


@dataclass(frozen=True)
class CollarWornView:
    """A collar an animal wore (removed_at None: wears it now) since fitted_at (None: since it was
    registered, before fittings were kept)."""

    device_id: str
    fitted_at: datetime | None
    removed_at: datetime | None


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
    # A collar in stock (taken off with none fitted, `herd.take_off_collar`) is worn by nobody: no animal
    # (animal_id and name None, not the record its time in stock is filed under), and when it came off.
    in_stock: bool = False
    taken_off_at: datetime | None = None


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
    # For a role with a delay, the moment this view stands at (the cutoff of the collar's animal):
    # its last uplink, radio, gateway, counts and status are as heard by then. None: live.
    as_of: datetime | None = None
    # Taken off and on no animal (the herd register's stock): it names no animal.
    in_stock: bool = False


@dataclass(frozen=True)
class PositionView:
    """One fix of one animal; `position_id` is the stored fix's id (the same in every read and export, so a
    researcher's Movebank event-id; None for a fix not read from the store)."""

    animal_id: str
    name: str
    device_id: str
    time: datetime
    lat: float
    lon: float
    position_id: int | None = None


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

    def as_of(self, moment: datetime) -> AlertView:
        """The alert as it stood at `moment` (raised by then). An open alert moves to each new
        occurrence (a collar still in farmland), so its place, last time and count come from the
        occurrences up to `moment` or where it was raised (no place when neither is known: an alert
        raised before 3 December kept no place of its own), and its evidence keeps nothing reported
        later."""
        evidence = stillness_until(until(self.evidence, moment), moment)
        kept = self.evidence.get(OCCURRENCES_KEY) if isinstance(self.evidence, Mapping) else None
        entries = [entry for entry in kept if isinstance(entry, Mapping)] if isinstance(kept, list) else []
        known_later = any(later_than(entry.get(KNOWN_AT_KEY), moment) for entry in entries)
        if (self.last_time is None or self.last_time <= moment) and not known_later:
            return replace(self, evidence=evidence)
        earlier = sorted(
            (entry for entry in entries if time_of(entry.get("time")) and not _after(entry, moment)),
            key=lambda entry: time_of(entry.get("time")),
        )
        raised = self.evidence.get(RAISED_AT_KEY) if isinstance(self.evidence, Mapping) else None
        placed = [
            entry
            for entry in ([raised] if isinstance(raised, Mapping) else []) + earlier
            if entry.get("lat") is not None and entry.get("lon") is not None
        ]
        lat, lon = (float(placed[-1]["lat"]), float(placed[-1]["lon"])) if placed else (None, None)
        last_time = max(self.time, time_of(earlier[-1].get("time"))) if earlier else self.time
        occurrences = max(1, self.occurrences - (len(entries) - len(earlier)))
        return replace(self, lat=lat, lon=lon, last_time=last_time, occurrences=occurrences, evidence=evidence)


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
    # How often it came: the network server's tries of a refused body, or copies of its uplink heard
    # by other gateways, each kept as a copy of this one rather than as a letter of its own.
    tries: int = 1


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
    # None: kept in the durable intake's journal or handed to its collar's owner, not yet in raw_uplinks
    raw_uplink_id: int | None
    device_id: str | None = None
    f_cnt: int | None = None
    message: str | None = None
    reason: str | None = None
    duplicate_of: int | None = None
    alert_ids: tuple[int, ...] = ()  # alerts the body raised (or repeated while open)
    downlink_ids: tuple[int, ...] = ()
    stage: str | None = None
    intake_id: int | None = None  # the body's entry in the durable intake's journal
    dev_eui: str | None = None  # the collar's identity (device_id is the name the bridge files it under)
    # What the body was: "uplink", a network event's kind ("join", "downlink_ack", "status", ...,
    # "unknown" for a kind Tembo does not read); None when it could not be read at all.
    kind: str | None = None
    # Alerts Tembo closed because the body cleared their condition (an offline collar heard again)
    closed_alert_ids: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the body was used (processed) or recognised as a copy of one that was."""
        return self.status in ("processed", "duplicate")

    @property
    def malformed(self) -> bool:
        """True when the body was not what its kind says at all (kept as a dead letter of stage parse)."""
        return self.status == "dead_letter" and self.stage == "parse"


@dataclass(frozen=True)
class ReplayReport:
    """Outcome of replaying dead letters or a file of network bodies: how many were processed
    (uplinks), recorded (network events), kept (kinds Tembo does not read), duplicates, still dead
    letters and pending (the store failed meanwhile), and the same per kind of body (`kinds`:
    "uplink", a network event's kind, "unreadable" for a body that is not what its kind says);
    skipped counts a capture's lines that are no network message to take (the bridge's own
    downlinks)."""

    attempted: int
    processed: int
    duplicates: int
    still_dead: int
    recorded: int = 0
    kept: int = 0
    pending: int = 0
    skipped: int = 0
    kinds: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def tally(cls, results: Iterable[IngestResult]) -> ReplayReport:
        """What became of results (consumed one by one), in all and per kind of body."""
        statuses: Counter[str] = Counter()
        kinds: dict[str, Counter[str]] = {}
        for result in results:
            statuses[result.status] += 1
            kind = result.kind or ("unreadable" if result.stage == "parse" else "unread")
            kinds.setdefault(kind, Counter())[result.status] += 1
        return cls(
            attempted=statuses.total(),
            processed=statuses["processed"],
            duplicates=statuses["duplicate"],
            still_dead=statuses["dead_letter"],
            recorded=statuses["recorded"],
            kept=statuses["kept"],
            pending=statuses["pending"],
            kinds={kind: dict(counts) for kind, counts in kinds.items()},
        )


# Where an alert keeps its occurrences (time, place) and where it was raised in its evidence
# (lora_bridge.domain.alerts).
OCCURRENCES_KEY = "occurrences"
RAISED_AT_KEY = "raised_at"
# When an occurrence (or a step of an alert's history) dated earlier became known: a fence crossing is
# dated at the crossing, and known once the fixes after it confirmed it (`rules_crossings.confirmed_at`).
KNOWN_AT_KEY = "known_at"


def until(value: Any, seen_until: datetime | None) -> Any:
    """A JSON-like value without the mappings that carry a `time` (or a `known_at`) after seen_until
    (an occurrence, a behaviour summary or a place reported later than the viewer may see)."""
    if seen_until is None:
        return value
    if isinstance(value, Mapping):
        return {
            key: until(item, seen_until)
            for key, item in value.items()
            if not (isinstance(item, Mapping) and _after(item, seen_until))
        }
    if isinstance(value, list | tuple):
        return [until(item, seen_until) for item in value if not (isinstance(item, Mapping) and _after(item, seen_until))]
    return value


def _after(entry: Mapping[str, Any], seen_until: datetime) -> bool:
    """True when an entry (an occurrence, a fix) was reported, or became known, after seen_until."""
    return later_than(entry.get("time"), seen_until) or later_than(entry.get(KNOWN_AT_KEY), seen_until)


# What an immobility alert's evidence counts over every fix of the still spell up to the newest.
_STILL_SPELL_COUNTS = ("cluster_fixes", "total_fixes", "share_within_radius")


def stillness_until(evidence: Any, moment: datetime) -> Any:
    """An immobility alert's evidence as it stood at `moment`: the open alert's evidence grows with
    every still fix (`still_h`), so a spell that went on past `moment` is cut there, and the counts
    made over fixes after it are left out (they would say the animal is still there now)."""
    if not isinstance(evidence, Mapping):
        return evidence
    since, hours = time_of(evidence.get("still_since")), evidence.get("still_h")
    if since is None or not isinstance(hours, int | float) or since.timestamp() + hours * 3600 <= moment.timestamp():
        return evidence
    cut = {key: value for key, value in evidence.items() if key not in _STILL_SPELL_COUNTS}
    cut["still_h"] = max(0.0, round((moment - since).total_seconds() / 3600, 2))
    return cut


def time_of(value: Any) -> datetime | None:
    """An ISO 8601 time (or a datetime) as an aware datetime; None for anything else."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def later_than(value: Any, seen_until: datetime) -> bool:
    """True when value is a time (ISO 8601 or datetime) after seen_until."""
    moment = time_of(value)
    return moment is not None and moment > seen_until


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
    attempts: int  # tries in its current round (an administrator's retry starts a new one)
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    tries_total: int = 0  # every try in all its rounds
