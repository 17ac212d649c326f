"""The tables of the Tembo bridge, as SQLAlchemy 2.0 typed mappings.

Portable SQL only: the same tables run on the embedded SQLite file and on PostgreSQL. Payloads and
raw bodies are bytes (`LargeBinary`), structured extras are `JSON`, timestamps are aware UTC.
"""

# Annotations stay objects (no `from __future__ import annotations`): SQLAlchemy maps them without
# evaluating strings, which makes every bridge, CLI and test process start about 30 ms sooner.
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from lora_bridge.store.utc import UTCDateTime, utc_now


class Base(DeclarativeBase):
    """Declarative base of every Tembo bridge table."""

    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class RawUplink(Base):
    """Every body a network server delivered, stored before anything else happens to it."""

    __tablename__ = "raw_uplinks"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    source: Mapped[str] = mapped_column(String(32))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="received", index=True)
    device_id: Mapped[str | None] = mapped_column(String(64), index=True)
    f_port: Mapped[int | None]
    f_cnt: Mapped[int | None] = mapped_column(BigInteger)  # LoRaWAN FCnt is 32-bit unsigned
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Set once the body is parsed; unique, so two copies of one uplink cannot both be first.
    dedup_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("raw_uplinks.id"))
    heard_at: Mapped[datetime | None]
    gateways: Mapped[list[Any]] = mapped_column(default=list)
    best_rssi_dbm: Mapped[float | None]
    best_snr_db: Mapped[float | None]
    spreading_factor: Mapped[int | None]
    airtime_ms: Mapped[float | None]
    message: Mapped[str | None] = mapped_column(String(32))
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    # What the network server called the body (up, join, downlink_ack, location, ...), how it was
    # encoded, and the ids the webhook's path carried (a field-masked body names no device itself).
    event: Mapped[str | None] = mapped_column(String(32))
    content_type: Mapped[str | None] = mapped_column(String(64))
    path_ids: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The network's own reception time when it was not believable (far future) and heard_at was clamped.
    heard_at_reported: Mapped[datetime | None]
    # The collar's session (one per join) this frame counter belongs to, and whether the message came
    # from the collar's flash queue after newer ones (back-filled).
    session: Mapped[int | None]
    backfilled: Mapped[bool | None]


class DeadLetter(Base):
    """A body or payload the bridge could not use, with the reason; replayable after a fix."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    raw_uplink_id: Mapped[int | None] = mapped_column(ForeignKey("raw_uplinks.id"), index=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    replayed_at: Mapped[datetime | None]
    replay_result: Mapped[str | None] = mapped_column(Text)


class Device(Base):
    """A collar as the network knows it, with what it last told the bridge about itself."""

    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dev_eui: Mapped[str | None] = mapped_column(String(16), index=True)
    application_id: Mapped[str | None] = mapped_column(String(64))
    # The tenant (else the cluster) the network names the application in: with the application, what
    # tells a collar without a DevEUI from another of its name (`devices.same_collar`).
    network_scope: Mapped[str | None] = mapped_column(String(64))
    network: Mapped[str | None] = mapped_column(String(16))
    first_seen: Mapped[datetime | None]
    last_seen: Mapped[datetime | None]
    last_f_cnt: Mapped[int | None] = mapped_column(BigInteger)
    last_rssi_dbm: Mapped[float | None]
    last_snr_db: Mapped[float | None]
    status_time: Mapped[datetime | None]
    battery_mv: Mapped[int | None]
    temperature_c: Mapped[float | None]
    fw_version: Mapped[str | None] = mapped_column(String(32))
    model_version: Mapped[int | None]
    uptime_h: Mapped[int | None]
    reset_cause: Mapped[str | None] = mapped_column(String(32))
    behaviour: Mapped[str | None] = mapped_column(String(32))
    flags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    queue_depth: Mapped[int | None]
    errors: Mapped[int | None]
    reported_settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The network's current name for the collar (TTS device id, ChirpStack device name): a label.
    label: Mapped[str | None] = mapped_column(String(64))
    # One session per (re)join: the frame counter restarts, so FCnts are compared within a session.
    session: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    joined_at: Mapped[datetime | None]
    newest_message_time: Mapped[datetime | None]
    # When the collar was taken off its animal with no other fitted (`herd.take_off_collar`); None while an
    # animal wears it. Until it is fitted again it is worn by nobody: its fixes raise no animal's alert.
    taken_off_at: Mapped[datetime | None]
    # When it was last fitted to an animal out of stock (`herd.fit_collar`): the offline rule counts its
    # silence from then, not from its last report in the workshop (`rules.check_offline`).
    left_stock_at: Mapped[datetime | None]

    animal: Mapped["Animal | None"] = relationship(back_populates="device", uselist=False)


class Animal(Base):
    """An animal wearing a collar; the ranger's name for it."""

    __tablename__ = "animals"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    species: Mapped[str] = mapped_column(String(128))
    sex: Mapped[str | None] = mapped_column(String(16))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.device_id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    # High-value animals (a rhino, a tusker) are shown coarser and later to roles without exact positions.
    high_value: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # When the collar it wears now was fitted (`herd.fit_collar`); None: worn since it was registered.
    # A message of that collar dated before it is of the animal that wore the collar then.
    collar_fitted_at: Mapped[datetime | None]
    # No animal: the record a collar in stock (taken off with none fitted, `Device.taken_off_at`) is filed
    # under while nobody wears it (`devices.ensure_animal`); its time with the collar raises no alert, and
    # the herd register lists it as a collar in stock, not as an animal.
    holds_collar_in_stock: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    device: Mapped[Device | None] = relationship(back_populates="animal")


# The records that are animals (every listing of animals, their fixes and tracks filters by it): not the one a
# collar in stock is filed under (`Animal.holds_collar_in_stock`).
IS_AN_ANIMAL = Animal.holds_collar_in_stock.is_(False)


class CollarFitting(Base):
    """A collar an animal wore and no longer wears (a swap, a collar moved to another animal): whose
    fixes, activity and alerts a message of that collar dated within [fitted_at, removed_at) are. The
    collar an animal wears now is `Animal.device_id` (since `Animal.collar_fitted_at`)."""

    __tablename__ = "collar_fittings"

    id: Mapped[int] = mapped_column(primary_key=True)
    animal_id: Mapped[int] = mapped_column(ForeignKey("animals.id"), index=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"))
    fitted_at: Mapped[datetime | None]  # None: worn since the animal was registered
    removed_at: Mapped[datetime]


class Position(Base):
    """One GNSS fix of a collar, from a status, positions or alert message."""

    __tablename__ = "positions"
    __table_args__ = (UniqueConstraint("device_id", "time", name="uq_position_device_time"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"))
    animal_id: Mapped[int | None] = mapped_column(ForeignKey("animals.id"), index=True)
    time: Mapped[datetime] = mapped_column(index=True)
    lat: Mapped[float]
    lon: Mapped[float]
    message: Mapped[str] = mapped_column(String(32))
    raw_uplink_id: Mapped[int | None] = mapped_column(ForeignKey("raw_uplinks.id"))


class ActivitySummary(Base):
    """Share of each behaviour class over one interval, as the collar's classifier saw it."""

    __tablename__ = "activity_summaries"
    __table_args__ = (UniqueConstraint("device_id", "time", name="uq_activity_device_time"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"))
    animal_id: Mapped[int | None] = mapped_column(ForeignKey("animals.id"))
    time: Mapped[datetime] = mapped_column(index=True)
    interval_min: Mapped[int]
    model_version: Mapped[int | None]
    vedba_mean_mg: Mapped[int | None]
    vedba_max_mg: Mapped[int | None]
    shares_pct: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dominant: Mapped[str | None] = mapped_column(String(32))
    raw_uplink_id: Mapped[int | None] = mapped_column(ForeignKey("raw_uplinks.id"))


class Alert(Base):
    """An alert raised by a collar or by a server rule; one row per open (device, type)."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), index=True)
    animal_id: Mapped[int | None] = mapped_column(ForeignKey("animals.id"))
    alert_type: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default="new", index=True)
    verdict: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    dedup_key: Mapped[str] = mapped_column(String(160), index=True)
    # Equal to dedup_key while the alert is open, NULL once resolved: at most one open alert per key.
    open_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    time: Mapped[datetime]
    last_time: Mapped[datetime]
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    lat: Mapped[float | None]
    lon: Mapped[float | None]
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(64))


class AlertEvent(Base):
    """Who did what to an alert, and when (raised, repeated, acknowledged, resolved, ack sent)."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utc_now)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Downlink(Base):
    """A command for a collar: queued, then sent to the network server, then acked by the collar."""

    __tablename__ = "downlinks"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), index=True)
    f_port: Mapped[int]
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    command: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int | None]
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    acked_at: Mapped[datetime | None]
    ack_result: Mapped[str | None] = mapped_column(String(32))
    # Outbox bookkeeping: a push holds a lease; a crash mid-push leaves an expired lease, and the
    # row goes back to the queue. correlation_id travels with the push and comes back in delivery
    # reports; network_ref is the network's own id for the queued item (ChirpStack queue item id).
    lease_until: Mapped[datetime | None]
    not_before: Mapped[datetime | None]
    correlation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    network_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    network_state: Mapped[str | None] = mapped_column(String(16))
    network_reported_at: Mapped[datetime | None]
    superseded_by: Mapped[int | None] = mapped_column(ForeignKey("downlinks.id"))


class DownlinkTransmission(Base):
    """One downlink on air for a collar's fair-use day: the bridge's push, or the network's own resend
    of a nacked downlink (The Things Stack sends it again; each resend reported as downlink_sent).
    Times are the bridge's clock, as the fair-use window is read by."""

    __tablename__ = "downlink_transmissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64))
    downlink_id: Mapped[int] = mapped_column(ForeignKey("downlinks.id"), index=True)
    at: Mapped[datetime]
    cause: Mapped[str] = mapped_column(String(16))


class GeographyFeature(Base):
    """One feature of the reserve's own map: boundary, farmland, water, road or gateway."""

    __tablename__ = "geography_features"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str | None] = mapped_column(String(128))
    geometry: Mapped[dict[str, Any]] = mapped_column(default=dict)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    loaded_at: Mapped[datetime] = mapped_column(default=utc_now)



# ---- Rules and notifications (server-side alert rules, geofences, the notification outbox) ----


class Geofence(Base):
    """A fence from the reserve's geometry: a polygon (holes allowed) in WGS84, and what crossing it means."""

    __tablename__ = "geofences"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    # "exit": alert when an animal leaves it (park boundary), "enter": when one goes in (farmland), "both".
    alert_on: Mapped[str] = mapped_column(String(8))
    geometry: Mapped[dict[str, Any]] = mapped_column(default=dict)  # GeoJSON, EPSG:4326 lon/lat
    source_file: Mapped[str | None] = mapped_column(String(256))
    source_crs: Mapped[str | None] = mapped_column(String(64))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    # Stamped on every change (rename, redraw): the rules rebuild their fence index when it moves.
    updated_at: Mapped[datetime | None] = mapped_column(default=utc_now, onupdate=utc_now)


class BatteryReading(Base):
    """One battery reading of a collar (from its status), kept for the battery trend."""

    __tablename__ = "battery_readings"
    __table_args__ = (UniqueConstraint("device_id", "time", name="uq_battery_device_time"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # found by collar through the unique key's index or the window's below, both led by the collar
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"))
    time: Mapped[datetime]
    battery_mv: Mapped[int]
    # `time` as seconds since 1970-01-01 UTC, written with it (`rules.queue_reading`): the battery trend
    # sums a collar's readings of two weeks by it (`rules.reading_sums`) from an index, with no stored
    # time to parse on each reading.
    epoch_s: Mapped[float]


class RuleCursor(Base):
    """How far the server rules have read a collar's track: every fix up to `position_id` (the highest
    fix id judged) is evaluated; `position_time` is the newest fix time judged, so a fix with a higher
    id but an older time is one back-filled from the collar's flash."""

    __tablename__ = "rule_cursors"

    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), primary_key=True)
    position_id: Mapped[int | None]
    position_time: Mapped[datetime | None]
    status_time: Mapped[datetime | None]
    evaluated_at: Mapped[datetime | None]


class Notification(Base):
    """One message in the outbox: to one channel and recipient, sent at most once, retried with backoff."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Unique, so the same alert step is never queued twice for the same route (restarts, several workers).
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    channel: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(256))
    route: Mapped[str | None] = mapped_column(String(64))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # tries in this round (max_attempts)
    # every try in all its rounds (an administrator's retry starts a new round; this goes on counting)
    tries_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(128))


# ---- Network events and downlink routes (ingest) ------------------------------------------------


class NetworkEvent(Base):
    """What a network server said that is not an uplink: join, downlink report, location, status, log,
    service data, or a kind the bridge does not know (kept for inspection)."""

    __tablename__ = "network_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    raw_uplink_id: Mapped[int | None] = mapped_column(ForeignKey("raw_uplinks.id"), index=True)
    network: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    device_id: Mapped[str | None] = mapped_column(String(64), index=True)
    dev_eui: Mapped[str | None] = mapped_column(String(16))
    time: Mapped[datetime | None]
    downlink_id: Mapped[int | None] = mapped_column(ForeignKey("downlinks.id"))
    lat: Mapped[float | None]
    lon: Mapped[float | None]
    accuracy_m: Mapped[float | None]
    battery_pct: Mapped[float | None]
    margin_db: Mapped[int | None]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DownlinkRoute(Base):
    """Where a TTS collar's downlinks go, as The Things Stack told us with its webhook headers
    (X-Downlink-Push / X-Downlink-Replace / X-Downlink-Apikey). The key is a secret: never logged.

    A route is the collar's it was learnt from (device_id, the bridge's name of it; migration 0028):
    keyed by application and TTS device id, two tenants' `tembo/collar-1` had shared one, and one
    tenant's acks went to the other's collar."""

    __tablename__ = "downlink_routes"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    application_id: Mapped[str] = mapped_column(String(64))  # the push path's (multicast looks it up)
    tts_device_id: Mapped[str] = mapped_column(String(64))
    push_url: Mapped[str | None] = mapped_column(Text)
    replace_url: Mapped[str | None] = mapped_column(Text)
    api_key: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)

    def __repr__(self) -> str:
        return (
            f"DownlinkRoute(device_id={self.device_id!r}, application_id={self.application_id!r}, "
            f"tts_device_id={self.tts_device_id!r}, "
            f"push_url={self.push_url!r}, api_key=***)"
        )


Index("ix_raw_uplinks_device_session_fcnt", RawUplink.device_id, RawUplink.session, RawUplink.f_cnt)
# What a collar had been heard to say by a moment (a role with a delay reads its last report then).
Index("ix_raw_uplinks_device_heard", RawUplink.device_id, RawUplink.heard_at)
Index("ix_downlink_transmissions_device_at", DownlinkTransmission.device_id, DownlinkTransmission.at)


# Access: accounts, API tokens, sign-in sessions and the audit log (lora_bridge.access) ---------


class UserAccount(Base):
    """A person (or a kiosk) who signs in: a role and a password hash (never the password)."""

    __tablename__ = "user_accounts"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    password_changed_at: Mapped[datetime] = mapped_column(default=utc_now)


class ApiToken(Base):
    """A bearer token for the HTTP API, stored as its SHA-256 only; revocable, optionally expiring."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the token's first characters, to tell tokens apart
    name: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class SignInSession(Base):
    """A dashboard sign-in, stored as the SHA-256 of its session token; ends at expiry or sign-out."""

    __tablename__ = "sign_in_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    # The role the account held at sign-in: a session of a changed role is refused.
    role: Mapped[str] = mapped_column(String(32), default="", server_default="")
    last_seen_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(32))  # signed_out, account_removed, role_changed, ...
    client: Mapped[str | None] = mapped_column(String(64))  # the address it signed in from


class SignInThrottle(Base):
    """Failed sign-ins (or API token attempts) of one username or one client address, and the lock
    they earned (lora_bridge.access.throttle)."""

    __tablename__ = "sign_in_throttle"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_sign_in_throttle_scope_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))  # "user", "client" or "token_client"
    key: Mapped[str] = mapped_column(String(128))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locks: Mapped[int] = mapped_column(Integer, default=0)  # locks earned in a row: each lasts longer
    last_failure_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]


class AuditEntry(Base):
    """Who saw which positions (exact or coarse) and when; who changed accounts and tokens."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(48))
    precision: Mapped[str | None] = mapped_column(String(16))
    animals: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Reads of one viewer, kind and minute share a row: how many, and when the last one was.
    repeats: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    last_at: Mapped[datetime | None]


# A collar's readings of a window with what the battery trend sums: its read never leaves this index.
Index("ix_battery_readings_window", BatteryReading.device_id, BatteryReading.epoch_s, BatteryReading.battery_mv)
# A collar's fixes newer than its rule cursor (the rules' track read) without walking its whole history.
Index("ix_positions_device_id", Position.device_id, Position.id)
Index("ix_alerts_device_type", Alert.device_id, Alert.alert_type)
# One animal's summaries of the days its page shows (`queries.activity_views`), in time order.
Index("ix_activity_animal_time", ActivitySummary.animal_id, ActivitySummary.time)
# Who wore a collar when one of its messages was dated (`herd.wearer_at`).
Index("ix_collar_fittings_device_removed", CollarFitting.device_id, CollarFitting.removed_at)


# ---- Over-the-air update campaigns (docs/updates.md) -------------------------------------------


class UpdateCampaign(Base):
    """A roll-out of one signed update image: whom it targets, its gates, canary stage and state."""

    __tablename__ = "update_campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # firmware | model
    version: Mapped[str] = mapped_column(String(32))
    image_sha256: Mapped[str] = mapped_column(String(64))
    image_bytes: Mapped[int]
    # a firmware delta's base (tembo release firmware --base): only collars running it are sent it
    base_version: Mapped[str | None] = mapped_column(String(32))
    # {"all": true} | {"devices": [...]} | {"species": "...", "devices": [the collars it had at the start]}
    target: Mapped[dict[str, Any]] = mapped_column(default=dict)
    canary_pct: Mapped[int]
    max_canary_failures_pct: Mapped[int]
    min_battery_mv: Mapped[int]
    min_rssi_dbm: Mapped[float]
    # gate: a collar whose last uplink came at a higher spreading factor waits (12: no gate)
    max_spreading_factor: Mapped[int] = mapped_column(Integer, default=12, server_default="12")
    state: Mapped[str] = mapped_column(String(16), index=True)
    stage: Mapped[str] = mapped_column(String(16))  # canary | fleet
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class CampaignCollar(Base):
    """One collar in a campaign: its stage, where its update stands, and why."""

    __tablename__ = "campaign_collars"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("update_campaigns.id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16))  # canary | fleet
    state: Mapped[str] = mapped_column(String(16))  # waiting | gated | sending | updated | failed | current | skipped | unknown
    reason: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class CampaignEvent(Base):
    """The history of a campaign: what happened to it and to each of its collars, in order."""

    __tablename__ = "campaign_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("update_campaigns.id"), index=True)
    device_id: Mapped[str | None] = mapped_column(String(64))
    time: Mapped[datetime] = mapped_column(default=utc_now)
    event: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


# ---- Over-the-air delivery (fuota: docs/updates.md) --------------------------------------------


class UpdateResult(Base):
    """The last over-the-air update a collar reported in its status: what, how it ended, why."""

    __tablename__ = "update_results"

    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # codec.UPDATE_KINDS
    version: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))  # codec.UPDATE_OUTCOMES
    reason: Mapped[str] = mapped_column(String(32))  # codec.ACK_RESULTS
    time: Mapped[datetime]  # the collar's time of the status that said so
    reported_at: Mapped[datetime] = mapped_column(default=utc_now)


class FuotaSession(Base):
    """A campaign's delivery: the signed image, its fragmentation and how far the sending got (resumable)."""

    __tablename__ = "fuota_sessions"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("update_campaigns.id"), primary_key=True)
    image: Mapped[bytes] = mapped_column(LargeBinary)
    group_id: Mapped[str] = mapped_column(String(64))  # the multicast group's device id at the network
    application_id: Mapped[str | None] = mapped_column(String(64))
    gateways: Mapped[list[str]] = mapped_column(JSON, default=list)
    # the McAddr of the group the bridge sets up on each collar (TS005 McGroupSetupReq, its McKey
    # derived from the technician's key file); None: the group the collars left the factory with
    mc_addr: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), index=True)  # setup | window | repair | closed
    frag_size: Mapped[int]
    nb_frag: Mapped[int]
    padding: Mapped[int]
    sf: Mapped[int]
    fragment_airtime_s: Mapped[float]
    spacing_s: Mapped[float]
    session_time: Mapped[datetime]  # the Class C window opens
    target_fragment: Mapped[int]  # send fragments up to this counter (first round, then repairs)
    next_fragment: Mapped[int] = mapped_column(Integer, default=1)
    next_at: Mapped[datetime]  # the duty cycle's earliest next multicast
    sent: Mapped[int] = mapped_column(Integer, default=0)
    airtime_s: Mapped[float] = mapped_column(default=0.0)
    status_asked_at: Mapped[datetime | None]
    status_rounds: Mapped[int] = mapped_column(Integer, default=0)
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)
    ended_at: Mapped[datetime | None]  # the campaign ended (done, aborted, stopped): the group was taken down
    group_created: Mapped[bool] = mapped_column(Boolean, default=False)  # the bridge made the network server's group
    group_deleted_at: Mapped[datetime | None]
    group_delete_attempts: Mapped[int] = mapped_column(Integer, default=0)
    group_delete_next_at: Mapped[datetime | None]  # the next try at deleting the network server's group
    group_delete_error: Mapped[str | None] = mapped_column(String(200))


class FuotaCollar(Base):
    """One collar in a delivery: its answers (set-up, fragment status), observed loss, unicast repairs."""

    __tablename__ = "fuota_collars"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("update_campaigns.id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), primary_key=True)
    setup_queued_at: Mapped[datetime | None]
    session_answered: Mapped[bool] = mapped_column(Boolean, default=False)
    setup_answered: Mapped[bool] = mapped_column(Boolean, default=False)
    received: Mapped[int | None]
    missing: Mapped[int | None]
    status_fragment: Mapped[int | None]  # the fragment counter when it last reported
    status_at: Mapped[datetime | None]
    loss: Mapped[float | None]  # observed downlink loss of this session
    unicast_sent: Mapped[int] = mapped_column(Integer, default=0)
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    unicast_reason: Mapped[str | None] = mapped_column(String(120))  # out of the group's window: why (unicast)
    version_asked_at: Mapped[datetime | None]  # when PackageVersionReq was queued before its set-up (none: not asked)
    session_cnt: Mapped[int | None]  # TS004 v2.0.0 SessionCnt of its last v2.0.0 set-up (none: never set up in v2.0.0)
    # the TS004 version of the last fragmentation set-up queued for it in this delivery, and when: the layout its
    # answers on port 201 are read in (frag_package.session_version), kept here where no outbox pruning reaches it
    setup_version: Mapped[int | None]
    setup_version_at: Mapped[datetime | None]


# a collar's deliveries read by the collar alone at each answer on port 201 (migration 0035)
Index("ix_fuota_collars_device_id", FuotaCollar.device_id)


class CollarPackage(Base):
    """A LoRa Alliance application package as a collar last announced it (PackageVersionAns on the package's
    port: 200 TS005, 201 TS004, 202 TS003): the identifier and version it named, as heard, even one the bridge
    does not speak (lora_bridge/domain/collar_packages.py)."""

    __tablename__ = "collar_packages"

    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), primary_key=True)
    port: Mapped[int] = mapped_column(Integer, primary_key=True)  # the package's port, which was asked
    package_id: Mapped[int] = mapped_column(Integer)  # PackageIdentifier as answered
    package_version: Mapped[int] = mapped_column(Integer)  # PackageVersion as answered
    fw_version: Mapped[str | None] = mapped_column(String(32))  # the firmware the collar reported then
    heard_at: Mapped[datetime]


class CollarMulticastGroup(Base):
    """A TS005 multicast group as a collar last said it holds it (McGroupSetupAns / McGroupStatusAns)."""

    __tablename__ = "collar_multicast_groups"

    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), primary_key=True)
    mc_group: Mapped[int] = mapped_column(Integer, primary_key=True)  # McGroupID 0..3
    state: Mapped[str] = mapped_column(String(16))  # setup_sent | defined | refused | absent
    mc_addr: Mapped[int | None] = mapped_column(BigInteger)
    campaign_id: Mapped[int | None]  # the delivery that set it up
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class MulticastDownlink(Base):
    """A frame for a multicast group (a FUOTA fragment or status request), pushed by the outbox."""

    __tablename__ = "multicast_downlinks"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("update_campaigns.id"), index=True)
    group_id: Mapped[str] = mapped_column(String(64))
    application_id: Mapped[str | None] = mapped_column(String(64))
    gateways: Mapped[list[str]] = mapped_column(JSON, default=list)
    f_port: Mapped[int]
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    command: Mapped[str] = mapped_column(String(32))
    send_at: Mapped[datetime]  # Class C absolute time of transmission
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    correlation_id: Mapped[str | None] = mapped_column(String(64))


# ---- Workers sharing the collars (MQTT workers on one store; lora_bridge.collar_shares) ------------


class BridgeWorker(Base):
    """A live bridge worker's lease: the workers whose lease runs share the collars between them."""

    __tablename__ = "bridge_workers"

    worker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utc_now)
    renewed_at: Mapped[datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class CollarHandover(Base):
    """A body as delivered, kept by the worker that received it and handed to the worker that owns its
    collar; the owner applies it like a body of its own (its raw row written then, once) and deletes
    this row in the same transaction (any live worker does, once the owner's lease has run out)."""

    __tablename__ = "collar_handovers"

    id: Mapped[int] = mapped_column(primary_key=True)
    collar_key: Mapped[str] = mapped_column(String(128))
    to_worker: Mapped[str] = mapped_column(String(128), index=True)
    from_worker: Mapped[str] = mapped_column(String(128))
    # when the bridge first kept the body: its raw row's received_at
    handed_at: Mapped[datetime] = mapped_column(default=utc_now)
    # The body as its raw row will hold it (`ingest.delivered`).
    source: Mapped[str] = mapped_column(String(32))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    event: Mapped[str | None] = mapped_column(String(32))
    content_type: Mapped[str | None] = mapped_column(String(64))
    path_ids: Mapped[dict[str, Any] | None] = mapped_column(JSON)
