"""Applying one decoded collar message to the store: the heart of the bridge's domain layer."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.decode import dated, decode_payload, degrees, message_time
from lora_bridge.domain import (
    activity,
    alerts,
    campaigns,
    devices,
    downlinks,
    geofences,
    herd,
    positions,
    rules,
    rules_visits,
)
from lora_bridge.domain.geofences import FenceIndex
from lora_bridge.rules_file import RulesFileWatch
from lora_bridge.settings import BridgeSettings
from lora_bridge.store import bulk
from lora_bridge.store.ids import expect_ids
from lora_bridge.store.plain_changes import change_columns
from lora_bridge.store.row_values import ColumnReads
from lora_bridge.store.tables import Alert, Device, Downlink, RawUplink
from lora_bridge.uplink_formats import Uplink

log = logging.getLogger(__name__)

# session.info key: the collars with an open offline alert, as a unit of work (a batch) read them.
OFFLINE_COLLARS = "tembo_offline_collars"


@dataclass
class Applied:
    """What one message changed."""

    positions: int = 0
    activity_summaries: int = 0
    alert_ids: list[int] = field(default_factory=list)  # raised, or repeated while open
    closed_alert_ids: list[int] = field(default_factory=list)  # closed by Tembo: the condition cleared
    downlink_ids: list[int] = field(default_factory=list)


def apply_message(
    session: Session,
    *,
    raw: RawUplink,
    uplink: Uplink,
    fields: dict[str, Any],
    heard_at: datetime,
    codec: Any,
    settings: BridgeSettings,
    rules_file: RulesFileWatch,
    device: Device | None = None,
    dates: tuple[datetime, datetime | None] | None = None,
) -> Applied:
    """Turn a decoded message into device state, positions, activity, alerts and downlinks; rules_file: the
    rules file the bridge works by (`Bridge.rules_file`), whose fence profiles judge a collar's own fence
    report. device: the collar `devices.resolve_device` gave for uplink, when the caller has it. dates:
    `decode.dated(fields, heard_at)`, when the caller has read it already (an uplink's first message)."""
    applied = Applied()
    device = devices.device_for_uplink(session, uplink, heard_at, device)
    device_id = device.device_id  # its key: read once, not through the mapped attribute at every use
    message = str(fields.get("message"))
    time, claimed_ahead = dates if dates is not None else dated(fields, heard_at)
    # A message dated before the collar's current fitting (a backlog heard after a swap) is of the
    # animal that wore it then (wearing.until set): filed and judged for her, never for the new wearer.
    wearing = herd.wearing_at(session, device_id, devices.ensure_animal(session, device), time)
    animal = wearing.animal
    context = {"device_id": uplink.device_id, "f_cnt": uplink.f_cnt, "message_name": message}
    if claimed_ahead is not None:
        # Dated at its reception; the collar's claim stays in its raw row's payload and its alert's evidence.
        log.warning("collar time %s of %s is ahead of its reception %s: dated at reception",
                    claimed_ahead.isoformat(), message, heard_at.isoformat(),
                    extra={**context, "collar_time": claimed_ahead.isoformat()})

    if device_id in _offline_collars(session):  # nearly every collar has none open: no more calls for it
        applied.closed_alert_ids.extend(close_offline_when_heard(session, device, heard_at))

    # the wearer's and the raw row's columns read once, not through their mapped attributes at each use
    animal_id, fitted_at = _ANIMAL_READS(animal)
    raw_id = raw.id
    for fix_time, lat, lon in positions.fixes_in_message(fields, time):
        applied.positions += positions.add_position(
            session,
            device_id=device_id,
            animal_id=animal_id,
            time=fix_time,
            lat=lat,
            lon=lon,
            message=message,
            raw_uplink_id=raw_id,
        )

    if message == "status":
        # the behaviour it reports named by its model's classes, stored with the rest of the status
        named = activity.status_behaviour(fields, codec, settings.model_registry, session) \
            if "behaviour" in fields else None
        devices.apply_status(session, device, fields, time, codec, named_behaviour=named)
        rules.queue_reading(session, device_id, time, fields.get("battery_mv"))
        if "update_kind" in fields:
            from lora_bridge.domain import update_results  # the last over-the-air update (docs/updates.md)

            update_results.record(session, device_id, fields, time)
        campaigns.reconsider_collar(session, device_id)  # gates and versions are re-checked on every status
        # The pack is judged on the wearer's own statuses: a previous wearer's backlog reading joins the
        # trend (above) but raises no low battery, on her (she wears the collar no more) nor on him. A
        # collar in stock raises none either: its battery is on the fleet page for the technician.
        alert_id = rules.check_battery(session, device, animal_id, time, fitted_at) \
            if wearing.until is None and not herd.in_stock(wearing) else None
        if alert_id is not None:
            applied.alert_ids.append(alert_id)
    elif message == "activity":
        row = activity.add_activity(
            session,
            device_id=device_id,
            animal_id=animal_id,
            time=time,
            fields=fields,
            class_names=activity.class_names_for(fields.get("model_version"), settings.model_registry, session),
            raw_uplink_id=raw_id,
        )
        applied.activity_summaries += row is not None
        interval_end = time + timedelta(minutes=row["interval_min"]) if row is not None else time
        if row is not None and row["dominant"]:
            status_time, held_behaviour = _BEHAVIOUR_READS(device)
            if (status_time is None or interval_end > status_time) and row["dominant"] != held_behaviour:
                change_columns(session, device, {"behaviour": row["dominant"]})
    elif message == "alert":
        _apply_collar_alert(session, device_id, wearing, fields, time, uplink, raw, codec, settings,
                            rules_file, applied, claimed_ahead)
    elif message == "ack" and fields.get("on_port") == codec.port_of("data_fragment"):
        from lora_bridge.domain import update_results  # an over-the-air update's outcome (docs/updates.md)

        update_results.record_ack(session, device_id, str(fields.get("result")), time)
    elif uplink.f_port in (codec.port_of("mc_class_c_session_ans"), codec.port_of("frag_session_setup_ans"),
                           codec.port_of("app_time_req")):
        from lora_bridge.domain import fuota_delivery  # set-up answers, fragment status, clock sync

        applied.downlink_ids.extend(fuota_delivery.apply_uplink(session, codec, device_id, fields, heard_at))
    elif message == "ack":
        acked = downlinks.apply_collar_ack(session, codec, device_id, fields)
        if acked is not None and acked.alert_id is not None:
            alert = session.get(Alert, acked.alert_id)
            if alert is not None:
                alerts.record_event(
                    session, alert, device_id, alerts.ACTION_COLLAR_CONFIRMED_ACK, {"seq": acked.seq, "result": acked.ack_result}
                )
    elif message == "settings":
        devices.apply_settings(device, fields)
    if log.isEnabledFor(logging.DEBUG):  # asked once, not again inside log.debug: every message passes here
        log.debug("message applied", extra=context)
    return applied


_ANIMAL_READS = ColumnReads("id", "collar_fitted_at")
_BEHAVIOUR_READS = ColumnReads("status_time", "behaviour")


def close_offline_when_heard(session: Session, device: Device, heard_at: datetime) -> list[int]:
    """The collar was heard at heard_at (any frame: a message, a MAC-only or empty frame, a join): close
    its open offline alerts (`rules.close_offline`); their ids.

    Offline alerts are raised by the timer only, never while a batch is applied: the collars with one
    open are read once per batch (no round trip per uplink), and a frame of one of them closes it."""
    if device.device_id not in _offline_collars(session):
        return []
    closed = rules.close_offline(session, device, heard_at)
    if closed:
        _offline_collars(session).discard(device.device_id)
    return closed


def _offline_collars(session: Session) -> set[str]:
    known = session.info.get(OFFLINE_COLLARS)
    if known is None:
        # plain values on the session's connection, without its autoflush (the batch so far is not
        # written for it) or the ORM's execution: one read a batch, its statement built once
        known = {device_id for device_id, in bulk.read_columns(session, _OFFLINE_COLLARS_READ, {}, _ALERTS)}
        session.info[OFFLINE_COLLARS] = known
    return known


_ALERTS = frozenset({Alert.__table__})


_OFFLINE_COLLARS_READ = select(Alert.device_id).where(Alert.alert_type == rules.OFFLINE, Alert.open_key.is_not(None))
# whether any collar has one open, as one column of the batch's first statement (`pipeline.read_batch_start`):
# with none, session.info[OFFLINE_COLLARS] is the empty set and the collars are not read
ANY_OFFLINE_COLUMN = _OFFLINE_COLLARS_READ.exists()


_NO_TIME = datetime.min.replace(tzinfo=UTC)  # an alert without its own time: dated on arrival, read for itself


def read_ahead_for_collar_alerts(session: Session, codec: Any, uplinks: list[Uplink], settings: BridgeSettings) -> None:
    """Read now what the collar alerts among uplinks (a batch about to be applied) will read: their
    collars' alerts, last fixes and latest behaviour, and the downlinks their acks look for, a few
    statements for all of them, not five an alert (a herd alerting at once: its batches were the slowest of all). Only collars the store
    knows by DevEUI, only alerts that carry their time, only when two collars or more alert: an alert
    the read ahead does not cover reads for itself, as before. The ids of their new alerts and acks are
    expected together (`expect_ids`), a collar first heard in this batch's too."""
    port = codec.port_of("alert")
    known = session.info.get(devices.DEVICES_BY_EUI, {})
    collars: dict[str, None] = {}
    times: list[datetime] = []
    acks: set[tuple[str, bytes]] = set()
    raised: set[tuple[str, str]] = set()  # (collar, type): the most alerts the batch may open
    # a collar first heard in this batch: its alerts and acks only counted (by DevEUI), for their ids
    new_raised: set[tuple[str, str]] = set()
    new_acks: set[tuple[str, bytes]] = set()
    for uplink in uplinks:
        if uplink.f_port != port or not uplink.payload or not uplink.dev_eui:
            continue
        device = known.get(uplink.dev_eui)
        fields = decode_payload(codec, uplink.f_port, uplink.payload).fields
        if fields is None or fields.get("message") != "alert":
            continue
        alert_type = str(fields.get("alert_type", "unknown"))
        collar = uplink.dev_eui if device is None else device.device_id
        (new_raised if device is None else raised).add((collar, alert_type))
        if isinstance(seq := fields.get("seq"), int):  # the ack `_apply_collar_alert` will queue
            payload = downlinks.ack_bytes(codec, _ack_values(codec, alert_type, seq))
            if payload is not None:
                (new_acks if device is None else acks).add((collar, payload))
        if device is None:
            continue
        time = message_time(fields, _NO_TIME, heard_at=uplink.heard_at)
        if time is not _NO_TIME:
            collars[device.device_id] = None
            times.append(time)
    # their new alerts' and acks' ids in one round trip (PostgreSQL), taken when the first is needed
    expect_ids(session, {Alert: len(raised) + len(new_raised), Downlink: len(acks) + len(new_acks)})
    if len(acks) >= 2:
        downlinks.read_acks_ahead(session, acks)
    if len(collars) < 2:
        return
    alerting = list(collars)
    alerts.read_collar_alerts_ahead(session, alerting, times)
    positions.read_recent_fixes_ahead(session, alerting, settings.alert_evidence_positions)
    activity.read_latest_ahead(session, alerting)


def _apply_collar_alert(
    session: Session,
    device_id: str,
    wearing: herd.Wearing,
    fields: dict[str, Any],
    time: datetime,
    uplink: Uplink,
    raw: RawUplink,
    codec: Any,
    settings: BridgeSettings,
    rules_file: RulesFileWatch,
    applied: Applied,
    claimed_ahead: datetime | None = None,
) -> None:
    """Raise (or repeat) the collar's own alert for the animal that wore it at the alert's time, and queue
    its ack. A previous wearer's backlog (`wearing.until` set) is hers alone: its own open key, her fixes
    and behaviour as its evidence, apart from the alerts of the animal wearing the collar now."""
    animal = wearing.animal
    alert_type = str(fields.get("alert_type", "unknown"))
    key = herd.open_key_of(device_id, alert_type, wearing.until)
    seq = fields.get("seq")
    if herd.in_stock(wearing):
        _ack_alert_of_collar_in_stock(session, device_id, alert_type, seq, time, codec, settings, applied)
        return
    where = degrees(fields)
    evidence: dict[str, Any] = {
        "rule": f"decided on the collar (collar_firmware.risk, {alert_type}); see docs/alerts.md",
        "seq": seq,
        "raw_uplink_id": raw.id,
        "f_cnt": uplink.f_cnt,
        "gateways": [g.gateway_id for g in uplink.gateways],
    }
    if claimed_ahead is not None:  # dated at its reception: what the collar's clock said, for inspection
        evidence["collar_time"] = claimed_ahead.isoformat()
    # Read once for the three steps below (none of them changes it before raise_alert)
    repeat = None
    if isinstance(seq, int):  # the collar repeats until the ack reaches it: a closed alert stays closed
        open_now, near = alerts.open_and_heard_near(session, device_id, alert_type, time, key)
        repeat = alerts.closed_collar_alert_repeated(
            session, device_id=device_id, alert_type=alert_type, seq=seq, time=time, open_now=open_now, near=near
        )
    else:
        open_now = alerts.open_alert(session, device_id, alert_type, key)
    if repeat is None and alert_type in rules_visits.VISIT_TYPES and open_now is None:
        repeat, reentry = _resolved_visit(session, device_id, wearing, alert_type, time, where, rules_file)
        if repeat is not None:  # the ranger already resolved this visit's alert, or the last visit's
            rules_visits.add_to_resolved(session, repeat, time=time, source=alerts.SOURCE_COLLAR, actor=device_id,
                                         lat=where[0] if where else None, lon=where[1] if where else None,
                                         evidence=evidence, reentry=reentry)
    if repeat is not None:
        alert = repeat
    else:
        if open_now is None:
            # A new alert: the collar's last fixes and behaviour go with it. A repetition (the collar
            # sends it until its ack arrives) adds an occurrence, which keeps only its seq and raw row.
            limit = settings.alert_evidence_positions
            fixes = positions.recent_fixes(session, device_id, limit) if wearing.until is None else \
                positions.fixes_worn_by(session, device_id, animal.id, time, limit)
            evidence["positions"] = [{"time": fix_time.isoformat(), "lat": lat, "lon": lon}
                                     for fix_time, lat, lon in fixes]
            latest_activity = _latest_behaviour(session, device_id, animal.id, time if wearing.until else None)
            if latest_activity:
                evidence["behaviour"] = latest_activity
        alert, _ = alerts.raise_alert(
            session,
            device_id=device_id,
            animal_id=animal.id,
            alert_type=alert_type,
            source=alerts.SOURCE_COLLAR,
            time=time,
            lat=where[0] if where else None,
            lon=where[1] if where else None,
            evidence=evidence,
            actor=device_id,
            open_now=open_now,
            key=key,
        )
        applied.alert_ids.append(alert.id)
    if isinstance(seq, int):
        downlink = _queue_ack(session, device_id, alert_type, seq, codec, settings, alert.id)
        applied.downlink_ids.append(downlink.id)
        alerts.record_event(session, alert, alerts.SYSTEM_ACTOR, alerts.ACTION_ACK_QUEUED, {"seq": seq, "downlink_id": downlink.id})


def _queue_ack(session: Session, device_id: str, alert_type: str, seq: int, codec: Any, settings: BridgeSettings,
               alert_id: int | None) -> Any:
    """Queue the ack of the collar's alert (alert_type, seq): the collar matches its pending alert by type
    and seq; a type newer than this codec goes back as the number it arrived as ("unknown_30" -> 30)."""
    return downlinks.queue_command(session, codec, device_id=device_id, command="ack_alert",
                                   values=_ack_values(codec, alert_type, seq), alert_id=alert_id,
                                   resend_after_s=settings.ack_resend_after_s)


def _ack_values(codec: Any, alert_type: str, seq: int) -> dict[str, Any]:
    """The values of the ack of the collar's alert (alert_type, seq), as `_queue_ack` queues it."""
    values: dict[str, Any] = {"seq": seq}
    if alert_type in tuple(getattr(codec, "ALERT_TYPES", ())):
        values["alert_type"] = alert_type
    elif alert_type.startswith("unknown_") and alert_type[8:].isdigit():
        values["alert_type"] = int(alert_type[8:])
    return values


def _ack_alert_of_collar_in_stock(session: Session, device_id: str, alert_type: str, seq: Any, time: datetime,
                                  codec: Any, settings: BridgeSettings, applied: Applied) -> None:
    """A collar in stock (taken off, worn by nobody) sent an alert of its own: no animal's, so none is
    raised (its raw uplink keeps it); it is acked all the same, or the collar would repeat it, spending its
    battery and airtime on the workshop bench."""
    log.info("collar alert of a collar in stock not raised device_id=%s type=%s seq=%s", device_id, alert_type, seq,
             extra={"device_id": device_id, "alert_type": alert_type, "seq": seq, "time": time.isoformat()})
    if isinstance(seq, int):
        applied.downlink_ids.append(_queue_ack(session, device_id, alert_type, seq, codec, settings, None).id)


def _resolved_visit(session: Session, device_id: str, wearing: herd.Wearing, alert_type: str, time: datetime,
                    where: tuple[float, float] | None, rules_file: RulesFileWatch) -> tuple[Alert | None, bool]:
    """(resolved alert, reentry) for a collar's fence alert when the ranger resolved the alert of its visit
    already (reentry False), or of the visit before it, a new visit left to the bridge's track to confirm
    (reentry True); (None, False): raise it. Read only when a resolved alert of the type exists and no
    alert of it is open (rules_visits; the caller has seen none open). The fence profile is the one the
    rules file holds now, as the bridge's watch of it has it (rules_file: the one /metrics reports): until 6
    December this process kept a second watch of the file of its own, which read each edit and logged
    its reload a second time, and could judge by another version than the one /metrics showed. wearing: who
    wore the collar at `time`; a visit resolved outside that animal's time with the collar (before its
    fitting, or after the collar came off a previous wearer) was another animal's and swallows none of
    its reports."""
    animal = wearing.animal
    since = wearing.since if wearing.until is not None else animal.collar_fitted_at
    if alerts.last_closed(session, device_id, alert_type, since, wearing.until) is None:
        return None, False
    profile = rules_file.current().rules.profile_for(animal.species, animal.name, str(animal.id), device_id)
    fences = FenceIndex(geofences.all_fences(session))
    return rules_visits.collar_report_of(session, fences, profile.fences, device_id, alert_type, time, where, since,
                                         wearing.until)


def _latest_behaviour(session: Session, device_id: str, animal_id: int,
                      until: datetime | None) -> dict[str, Any] | None:
    """The collar's newest behaviour; until set: that of animal_id by then (a previous wearer's backlog)."""
    newest = activity.latest(session, device_id) if until is None else \
        activity.latest_worn_by(session, device_id, animal_id, until)
    if newest is None:
        return None
    time, dominant, shares_pct = newest
    return {"time": time.isoformat(), "dominant": dominant, "shares_pct": shares_pct}
