"""The one alert model that collar-raised alerts and server rules share.

Priorities follow EarthRanger's scale: 0 info, 100 low, 200 medium, 300 high. An alert is open from
`new` through `acknowledged` until `resolved` with a ranger's verdict; while it is open, another alert
of the same type for the same collar adds an occurrence to it instead of a new row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import and_, bindparam, inspect, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from lora_bridge.domain import rules_crossings
from lora_bridge.errors import InvalidRequest, InvalidTransition, InvalidVerdict, UnknownAlert
from lora_bridge.store import bulk, held_inserts
from lora_bridge.store.ids import id_where_inserts_go_one_by_one, take_id
from lora_bridge.store.row_values import new_row
from lora_bridge.store.tables import Alert, AlertEvent
from lora_bridge.store.transaction_info import held_until_transaction_end
from lora_bridge.store.unflushed import read_with_new
from lora_bridge.store.utc import utc_now
from lora_bridge.views import KNOWN_AT_KEY, RAISED_AT_KEY, AlertView

log = logging.getLogger(__name__)

PRIORITY_INFO = 0
PRIORITY_LOW = 100
PRIORITY_MEDIUM = 200
PRIORITY_HIGH = 300

# Alert type → EarthRanger priority. Types not listed are medium: a ranger looks, nothing is lost.
# Names are codec.ALERT_TYPES (collar) plus the server rules' own (offline, ...).
PRIORITY_BY_TYPE = {
    "mortality": PRIORITY_HIGH,
    "poaching_risk": PRIORITY_HIGH,
    "tamper": PRIORITY_HIGH,
    "immobility": PRIORITY_MEDIUM,
    "geofence_farmland": PRIORITY_MEDIUM,
    "geofence_exit": PRIORITY_MEDIUM,
    "geofence_enter": PRIORITY_MEDIUM,
    "collar_drop": PRIORITY_MEDIUM,
    "battery_critical": PRIORITY_MEDIUM,
    "speed": PRIORITY_MEDIUM,
    "low_battery": PRIORITY_LOW,
    "battery_forecast": PRIORITY_LOW,
    "offline": PRIORITY_LOW,
    "unexpected_reboot": PRIORITY_LOW,
    "test": PRIORITY_INFO,
    # Words that name the family of a type this table does not list yet.
    "poaching": PRIORITY_HIGH,
    "geofence": PRIORITY_MEDIUM,
    "battery": PRIORITY_LOW,
}

PRIORITIES = (PRIORITY_INFO, PRIORITY_LOW, PRIORITY_MEDIUM, PRIORITY_HIGH)

# Alert type → the words a ranger reads, on the dashboard and in every SMS, e-mail and EarthRanger title:
# the one list of them. Every type the bridge raises has one (tests pin it); a type newer than this list
# (a collar's "unknown_30") reads as its name in words.
ALERT_TYPE_LABELS: dict[str, str] = {
    "mortality": "Possible mortality",
    "immobility": "Immobile",
    "poaching_risk": "Possible poaching",
    "geofence_farmland": "Entered farmland",
    "geofence_exit": "Left the reserve",
    "geofence_enter": "Entered a fenced area",
    "collar_drop": "Collar drop",
    "tamper": "Collar tamper",
    "low_battery": "Low battery",
    "battery_critical": "Battery critical",
    "battery_forecast": "Battery running out soon",
    "unexpected_reboot": "Collar restarted unexpectedly",
    "offline": "Offline",
    "speed": "Unusual speed",
    "test": "Test alert",
}


def type_label(alert_type: str) -> str:
    """The ranger's words for an alert type ('mortality' -> 'Possible mortality')."""
    return ALERT_TYPE_LABELS.get(alert_type, alert_type.replace("_", " ").capitalize())



def raised_priority(priority: int) -> int:
    """One step up EarthRanger's scale (an escalation), never past high."""
    higher = [p for p in PRIORITIES if p > priority]
    return higher[0] if higher else PRIORITY_HIGH


STATE_NEW = "new"
STATE_ACKNOWLEDGED = "acknowledged"
STATE_RESOLVED = "resolved"
OPEN_STATES = (STATE_NEW, STATE_ACKNOWLEDGED)

VERDICTS = ("true", "false_alarm", "unknown")
# The longest note a ranger's resolution keeps (the API's body, the dashboard's box and the service alike)
NOTE_MAX_CHARS = 2000

SOURCE_COLLAR = "collar"
SOURCE_SERVER = "server"

SYSTEM_ACTOR = "tembo"

# Every step the bridge records in an alert's history (`AlertEvent.action`, `record_event` refuses any
# other): the one list the dashboard's wording of each step is checked against (docs/alerts.md).
ACTION_RAISED = "raised"
ACTION_REPEATED = "repeated"
ACTION_CORROBORATED = "corroborated"  # detail: confidence, held
ACTION_TRACK_CHECKED = "track_checked"  # a collar's fence alert judged by the track (detail: verdict, held)
ACTION_CROSSING_REFINED = "crossing_refined"  # a fence crossing re-dated by later fixes (detail: from, to, fence)
ACTION_ESCALATED = "escalated"
ACTION_ACKNOWLEDGED = "acknowledged"
ACTION_ASSIGNED = "assigned"  # detail: to ('' when the assignment is taken back)
ACTION_RESOLVED = "resolved"  # detail: verdict, note
ACTION_AUTO_RESOLVED = "auto_resolved"  # its condition cleared (detail: reason, cleared_at)
ACTION_NOTIFICATION_QUEUED = "notification_queued"
ACTION_NOTIFICATION_SENT = "notification_sent"
ACTION_NOTIFICATION_WITHDRAWN = "notification_withdrawn"
ACTION_NOTIFICATION_REQUEUED = "notification_requeued"
ACTION_ACK_QUEUED = "ack_queued"  # Tembo's ack of the collar's alert, queued for the collar
ACTION_ACK_SENT = "ack_sent"
ACTION_ACK_UNCONFIRMED = "ack_unconfirmed"
ACTION_ACK_DELIVERED = "ack_delivered"
ACTION_ACK_REQUEUED = "ack_requeued"
ACTION_COLLAR_CONFIRMED_ACK = "collar_confirmed_ack"
ACTIONS = (
    ACTION_RAISED, ACTION_REPEATED, ACTION_CORROBORATED, ACTION_TRACK_CHECKED, ACTION_CROSSING_REFINED,
    ACTION_ESCALATED, ACTION_ACKNOWLEDGED, ACTION_ASSIGNED, ACTION_RESOLVED, ACTION_AUTO_RESOLVED,
    ACTION_NOTIFICATION_QUEUED, ACTION_NOTIFICATION_SENT, ACTION_NOTIFICATION_WITHDRAWN, ACTION_NOTIFICATION_REQUEUED,
    ACTION_ACK_QUEUED, ACTION_ACK_SENT, ACTION_ACK_UNCONFIRMED, ACTION_ACK_DELIVERED, ACTION_ACK_REQUEUED,
    ACTION_COLLAR_CONFIRMED_ACK,
)


def as_it_stood(view: AlertView, moment: datetime) -> AlertView:
    """The alert as it stood at `moment` (raised by then): its place, count and evidence as of then
    (`AlertView.as_of`), and its state too: an acknowledgement or a resolution after `moment` (a
    ranger's, or Tembo's own when the condition cleared, which says the animal moved) is undone,
    with its verdict and note."""
    view = view.as_of(moment)
    if view.resolved_at is not None and view.resolved_at <= moment:
        return view
    acknowledged = view.acknowledged_at is not None and view.acknowledged_at <= moment
    return replace(
        view,
        state=STATE_ACKNOWLEDGED if acknowledged else STATE_NEW,
        acknowledged_by=view.acknowledged_by if acknowledged else None,
        acknowledged_at=view.acknowledged_at if acknowledged else None,
        resolved_by=None,
        resolved_at=None,
        verdict=None,
        note=None,
    )


def priority_for(alert_type: str) -> int:
    """EarthRanger priority of an alert type (exact name, else a known word inside it, else medium)."""
    if alert_type in PRIORITY_BY_TYPE:
        return PRIORITY_BY_TYPE[alert_type]
    for word, priority in PRIORITY_BY_TYPE.items():
        if word in alert_type:
            return priority
    return PRIORITY_MEDIUM


def dedup_key(device_id: str, alert_type: str) -> str:
    """Alerts with equal keys are one alert while it is open."""
    return f"{device_id}:{alert_type}"


# Passed for `open_now` when the caller has not read the open alert: the function reads it itself.
NOT_READ = object()


def raise_alert(
    session: Session,
    *,
    device_id: str,
    animal_id: int | None,
    alert_type: str,
    source: str,
    time: datetime,
    lat: float | None = None,
    lon: float | None = None,
    evidence: dict[str, Any] | None = None,
    actor: str = SYSTEM_ACTOR,
    open_now: Alert | None | object = NOT_READ,
    key: str | None = None,
) -> tuple[Alert, bool]:
    """Open an alert, or add an occurrence to the open one with the same key; returns (alert, is_new).
    open_now: the open alert of that key (or None) when the caller has just read it (`open_alert`).
    key: the open key (default the collar's, `dedup_key`); a previous wearer's backlog is raised under
    one of its own (`herd.open_key_of`), apart from the alerts of the animal wearing the collar now."""
    alert = open_alert(session, device_id, alert_type, key) if open_now is NOT_READ else open_now
    if alert is not None:
        alert.occurrences += 1
        if time > alert.last_time:
            alert.last_time = time
            if lat is not None and lon is not None:
                alert.lat, alert.lon = lat, lon
        alert.evidence = with_occurrence(alert.evidence, _occurrence(time, lat, lon, evidence))
        record_event(session, alert, actor, ACTION_REPEATED, {"time": time.isoformat(), **known_later(time, evidence)})
        log.info(
            "alert repeated alert_id=%d device_id=%s type=%s",
            alert.id,
            device_id,
            alert_type,
            extra={"alert_id": alert.id, "device_id": device_id, "alert_type": alert_type},
        )
        return alert, False
    alert = new_row(Alert, {
        "id": take_id(session, Alert),  # added without a flush: the batch's next one writes it
        "device_id": device_id,
        "animal_id": animal_id,
        "alert_type": alert_type,
        "priority": priority_for(alert_type),
        "state": STATE_NEW,
        "source": source,
        "dedup_key": dedup_key(device_id, alert_type),
        "open_key": key or dedup_key(device_id, alert_type),
        "time": time,
        "last_time": time,
        "occurrences": 1,
        "lat": lat,
        "lon": lon,
        "evidence": with_raised_place(evidence, time, lat, lon),
    })
    session.add(alert)
    _note_raised(session, alert)
    record_event(session, alert, actor, ACTION_RAISED, {"source": source, "time": time.isoformat()})
    log.info(
        "alert raised alert_id=%d device_id=%s type=%s priority=%d source=%s",
        alert.id,
        device_id,
        alert_type,
        alert.priority,
        source,
        extra={"alert_id": alert.id, "device_id": device_id, "alert_type": alert_type, "source": source},
    )
    return alert, True


OCCURRENCES_KEPT = 20


def with_raised_place(
    evidence: dict[str, Any] | None, time: datetime, lat: float | None, lon: float | None
) -> dict[str, Any]:
    """A new alert's evidence with where and when it was raised (`raised_at`): the alert's own place
    moves with each repeat, and the Alerts page's "as of" moment shows it where it stood then."""
    kept = dict(evidence or {})
    if lat is not None and lon is not None:
        kept[RAISED_AT_KEY] = {"time": time.isoformat(), "lat": lat, "lon": lon}
    return kept


def with_occurrence(evidence: dict[str, Any] | None, entry: dict[str, Any]) -> dict[str, Any]:
    """A new evidence dict with entry added to its occurrences (the last OCCURRENCES_KEPT). Built anew,
    list included: the store writes a JSON column only when its value compares different, so appending
    to the stored list in place would be lost."""
    merged = dict(evidence or {})
    merged["occurrences"] = [*merged.get("occurrences", []), entry][-OCCURRENCES_KEPT:]
    return merged


# How far apart the time a collar repeats an alert with and the alert's own may be (whole seconds on
# the wire, the store's fraction).
REPEAT_SLACK = timedelta(seconds=1)


@cache
def _open_and_heard_near_read() -> Any:
    """open_and_heard_near's read, built once (its values bound at each call): a collar alert runs it,
    and building the statement (and its cache key) cost more than running its cached compilation."""
    return (
        select(Alert)
        .where(
            Alert.device_id == bindparam("device_id"),
            Alert.alert_type == bindparam("alert_type"),
            or_(Alert.open_key == bindparam("key"),
                and_(Alert.source == SOURCE_COLLAR, Alert.time >= bindparam("earliest"), Alert.time <= bindparam("latest"))),
        )
        .order_by(Alert.id.desc())
    )


def open_and_heard_near(session: Session, device_id: str, alert_type: str, time: datetime,
                        key: str | None = None) -> tuple[Alert | None, list[Alert]]:
    """In one read, what a collar's alert of this type at `time` needs: the collar's open alert of the
    type (`open_alert`), and its collar alerts of the type from within REPEAT_SLACK of time, newest
    first (`closed_collar_alert_repeated`'s candidates). From the batch's read ahead
    (`read_collar_alerts_ahead`) when it covers this collar and time. key: the open key looked for
    (default the collar's; a previous wearer's backlog: `herd.open_key_of`)."""
    key = key or dedup_key(device_id, alert_type)
    earliest, latest = time - REPEAT_SLACK, time + REPEAT_SLACK
    rows = _from_read_ahead(session, device_id, alert_type, key, earliest, latest)
    if rows is None:
        # The batch's alerts raised before this one are pending, not flushed (`raise_alert`)
        rows = read_with_new(session, _open_and_heard_near_read(), {
            "device_id": device_id, "alert_type": alert_type, "key": key, "earliest": earliest, "latest": latest,
        }, Alert, lambda alert: alert.device_id == device_id and alert.alert_type == alert_type)
    open_now = next((alert for alert in rows if alert.open_key == key), None)
    near = [alert for alert in rows if alert.source == SOURCE_COLLAR
            and time - REPEAT_SLACK <= alert.time <= time + REPEAT_SLACK]
    return open_now, near


@dataclass
class _AlertsReadAhead:
    """The alerts of several collars that their collar alerts' reads (`open_and_heard_near`) may
    select, read in one statement: every open one, and every collar alert from `earliest` to
    `latest`; by collar, with the alerts raised for them since (`raise_alert` adds them)."""

    collars: frozenset[str]
    earliest: datetime
    latest: datetime
    alerts: dict[str, list[Alert]]


# session.info key: the batch's `_AlertsReadAhead`
ALERTS_READ_AHEAD = held_until_transaction_end("tembo_alerts_read_ahead")


@cache
def _alerts_ahead_read(size: int) -> Any:
    """`read_collar_alerts_ahead`'s statement, built once per count bucket of the collars (`bulk.in_list`)."""
    return select(Alert).where(
        bulk.in_list(Alert.device_id, "device", size),
        or_(Alert.open_key.is_not(None),
            and_(Alert.source == SOURCE_COLLAR, Alert.time >= bindparam("earliest"), Alert.time <= bindparam("latest"))),
    )


def read_collar_alerts_ahead(session: Session, device_ids: list[str], times: list[datetime]) -> None:
    """Read now, for collar alerts of device_ids at times that the batch will apply, what each one's
    `open_and_heard_near` selects, in one statement for all: a herd's alerts in one batch read their
    collars' alerts once, not once an alert.

    The answer stays exact while the batch runs: an alert's collar, type, source and time never
    change, its open key is only ever cleared (an alert that did not match cannot come to), the
    alerts read are the session's own objects (every change the batch makes to them is seen), and
    the alerts raised since are added as they are raised."""
    if not device_ids or not times:
        return
    earliest, latest = min(times) - REPEAT_SLACK, max(times) + REPEAT_SLACK
    found: dict[str, list[Alert]] = {device_id: [] for device_id in device_ids}
    size = bulk.in_list_size(len(device_ids))
    for alert in session.scalars(_alerts_ahead_read(size), {**bulk.in_list_values("device", list(device_ids), size),
                                                            "earliest": earliest, "latest": latest}):
        found[alert.device_id].append(alert)
    session.info[ALERTS_READ_AHEAD] = _AlertsReadAhead(frozenset(device_ids), earliest, latest, found)


def _from_read_ahead(session: Session, device_id: str, alert_type: str, key: str, earliest: datetime,
                     latest: datetime) -> list[Alert] | None:
    """What `_open_and_heard_near_read` and the unit of work's new alerts would give, newest first,
    from the batch's read ahead; None when it does not cover this collar and time. An alert raised in
    the batch and not yet flushed counts whatever its time, as `read_with_new` adds it."""
    ahead: _AlertsReadAhead | None = session.info.get(ALERTS_READ_AHEAD)
    if ahead is None or device_id not in ahead.collars or earliest < ahead.earliest or latest > ahead.latest:
        return None
    new, gone = session.new, session.deleted
    rows = []
    for alert in ahead.alerts[device_id]:
        state = inspect(alert)
        if alert.alert_type != alert_type or alert in gone or not (state.persistent or state.pending):
            continue  # another type, or no longer in the store (a savepoint rolled back)
        if alert in new or alert.open_key == key or (
                alert.source == SOURCE_COLLAR and earliest <= alert.time <= latest):
            rows.append(alert)
    return sorted(rows, key=lambda alert: alert.id, reverse=True)


def _note_raised(session: Session, alert: Alert) -> None:
    """Add a just raised alert to the batch's read ahead of its collar's alerts, if any."""
    ahead: _AlertsReadAhead | None = session.info.get(ALERTS_READ_AHEAD)
    if ahead is not None and alert.device_id in ahead.collars:
        ahead.alerts[alert.device_id].append(alert)


def closed_collar_alert_repeated(
    session: Session, *, device_id: str, alert_type: str, seq: int, time: datetime,
    open_now: Alert | None, near: list[Alert],
) -> Alert | None:
    """A collar alert the bridge already has and has closed, heard again: the collar repeats an alert
    (the same record: type, seq and time) until the bridge's ack reaches it. The repeat is an
    occurrence of that alert (recorded, not reopened), not a new alert; the alert, or None when this
    is no such repeat. The 3-bit seq wraps after eight alerts, so the alert's time must match too.
    An open alert is left to raise_alert (it adds the occurrence itself). open_now and near (the
    candidates) as `open_and_heard_near` reads them."""
    if open_now is not None:
        return None
    for alert in near:
        evidence = alert.evidence or {}
        if evidence.get("seq") != seq or int(alert.time.timestamp()) != int(time.timestamp()):
            continue
        alert.occurrences += 1
        alert.evidence = with_occurrence(evidence, _occurrence(time, None, None, {"seq": seq}))
        record_event(session, alert, device_id, ACTION_REPEATED, {"time": time.isoformat(), "seq": seq, "while": alert.state})
        log.info(
            "collar repeated a closed alert alert_id=%d device_id=%s type=%s seq=%d",
            alert.id, device_id, alert_type, seq,
            extra={"alert_id": alert.id, "device_id": device_id, "alert_type": alert_type},
        )
        return alert
    return None


def last_closed(session: Session, device_id: str, alert_type: str, since: datetime | None = None,
                until: datetime | None = None) -> Alert | None:
    """The collar's most recent resolved alert of this type (a server rule asks before raising the same
    condition again: a ranger who resolved it while it lasts is not told again until it clears).
    since: the wearer's fitting (`Animal.collar_fitted_at`): an alert dated before it was another
    animal's (`herd.fit_collar` files by that time), not this one's condition. until: when the collar
    came off a previous wearer judged for her backlog: an alert dated since was the next animal's."""
    query = select(Alert).where(Alert.device_id == device_id, Alert.alert_type == alert_type,
                                Alert.state == STATE_RESOLVED)
    if since is not None:
        query = query.where(Alert.time >= since)
    if until is not None:
        query = query.where(Alert.time < until)
    return session.scalars(query.order_by(Alert.id.desc()).limit(1)).first()


def acknowledge(session: Session, alert_id: int, user: str) -> Alert:
    """new → acknowledged by user; an alert no longer new is refused, naming who took it (the second
    of two rangers tapping at once learns who is on it)."""
    alert = get_alert(session, alert_id, for_update=True)
    if alert.state != STATE_NEW:
        who = alert.acknowledged_by if alert.state == STATE_ACKNOWLEDGED else alert.resolved_by
        raise InvalidTransition(f"alert {alert_id} is {alert.state}" + (f": {alert.state} by {who}" if who else "")
                                + "; only a new alert can be acknowledged")
    alert.state = STATE_ACKNOWLEDGED
    alert.acknowledged_at = utc_now()
    alert.acknowledged_by = user
    record_event(session, alert, user, ACTION_ACKNOWLEDGED)
    log.info("alert acknowledged alert_id=%d by %s", alert.id, user, extra={"alert_id": alert.id, "device_id": alert.device_id, "user": user})
    return alert


def resolve(session: Session, alert_id: int, user: str, verdict: str, note: str | None = None) -> Alert:
    """new/acknowledged → resolved with the ranger's verdict (true, false_alarm, unknown), the alert read
    under its row lock; an alert a ranger resolved already is refused, naming who and the verdict."""
    if verdict not in VERDICTS:
        raise InvalidVerdict(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    note = (note or "").strip()  # a note box left with spaces (a phone's keyboard adds one) is no note
    if len(note) > NOTE_MAX_CHARS:
        raise InvalidRequest(f"a note of {len(note)} characters is too long: at most {NOTE_MAX_CHARS}")
    alert = get_alert(session, alert_id, for_update=True)
    if alert.state not in OPEN_STATES and alert.verdict is not None:
        raise InvalidTransition(f"alert {alert_id} is already resolved: resolved by {alert.resolved_by}, "
                                f"verdict {alert.verdict}")
    # An alert Tembo closed itself (the condition cleared) waits for a ranger's verdict: it may take one.
    alert.state = STATE_RESOLVED
    alert.verdict = verdict
    alert.open_key = None
    alert.resolved_at = utc_now()
    alert.resolved_by = user
    detail: dict[str, Any] = {"verdict": verdict}
    if note:
        detail["note"] = note
    record_event(session, alert, user, ACTION_RESOLVED, detail)
    log.info(
        "alert resolved alert_id=%d by %s verdict=%s",
        alert.id,
        user,
        verdict,
        extra={"alert_id": alert.id, "device_id": alert.device_id, "user": user, "verdict": verdict},
    )
    return alert


def close_if_still_open(session: Session, alert: Alert, actor: str, verdict: str | None = None) -> bool:
    """Resolve an alert Tembo's rules read open without its row lock (reading each under its lock would
    cost the ingest path a round trip per uplink): one UPDATE that holds only while the stored alert is
    still open, so a ranger's resolution committed meanwhile, or being committed (PostgreSQL waits for
    the ranger's transaction and reads the row again), is kept. True when closed here; False when a
    ranger had closed it (the alert then shows what the ranger did). SQLite serialises its writers and
    gives the same answer."""
    values: dict[str, Any] = {"state": STATE_RESOLVED, "open_key": None, "resolved_at": utc_now(),
                              "resolved_by": actor}
    if verdict is not None:
        values["verdict"] = verdict
    if inspect(alert).pending:  # raised in this unit of work: no ranger has seen it yet
        for name, value in values.items():
            setattr(alert, name, value)
        return True
    closed = session.execute(
        update(Alert).where(Alert.id == alert.id, Alert.state.in_(OPEN_STATES)).values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not closed:
        session.expire(alert, ["state", "open_key", "resolved_at", "resolved_by", "verdict"])
        log.info("alert alert_id=%d device_id=%s was resolved by %s meanwhile: %s's close not applied", alert.id,
                 alert.device_id, alert.resolved_by, actor,
                 extra={"alert_id": alert.id, "device_id": alert.device_id, "resolved_by": alert.resolved_by})
        return False
    for name, value in values.items():  # the row says so already: nothing left for the flush to write
        set_committed_value(alert, name, value)
    return True


def get_alert(session: Session, alert_id: int, *, for_update: bool = False) -> Alert:
    """The alert with this id, or UnknownAlert. for_update: read it under its row lock, held to the
    commit (a ranger's step: two phones taking one alert at once are served one after the other, the
    second seeing what the first did; SQLite's one writer does that by itself)."""
    try:
        key = int(alert_id)
    except (TypeError, ValueError) as error:
        raise UnknownAlert(f"no alert {alert_id!r}") from error
    alert = session.get(Alert, key, with_for_update=True if for_update else None)
    if alert is None:
        raise UnknownAlert(f"no alert {alert_id!r}")
    return alert


def open_alert(session: Session, device_id: str, alert_type: str, key: str | None = None) -> Alert | None:
    """The open alert of this type for this collar, if any (key: another open key than the collar's,
    `raise_alert`)."""
    return session.scalars(select(Alert).where(Alert.open_key == (key or dedup_key(device_id, alert_type)))).first()


def record_event(
    session: Session, alert: Alert, actor: str, action: str, detail: dict[str, Any] | None = None
) -> None:
    """Append one step to the alert's history (a row held and inserted with the transaction's others
    where `held_inserts` allows, else an ORM row); ValueError for an action not in ACTIONS."""
    if action not in ACTIONS:
        raise ValueError(f"unknown alert history step {action!r}: add it to alerts.ACTIONS")
    values = {"id": id_where_inserts_go_one_by_one(session, AlertEvent), "alert_id": alert.id,
              "actor": actor, "action": action, "detail": dict(detail or {})}
    if held_inserts.may_hold(session, alert):  # a plain row, inserted with the transaction's others
        if values["id"] is None:
            del values["id"]  # the table's sequence gives it, as the unit of work's insert leaves it to
        values["at"] = utc_now()
        held_inserts.hold(session, _HISTORY_STEPS, values)
        return
    session.add(new_row(AlertEvent, values))


# the alerts' history steps held as plain rows (`record_event`)
_HISTORY_STEPS = held_inserts.inserts_of(AlertEvent.__table__)


def _occurrence(
    time: datetime, lat: float | None, lon: float | None, evidence: dict[str, Any] | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"time": time.isoformat(), "lat": lat, "lon": lon}
    if evidence and "seq" in evidence:
        entry["seq"] = evidence["seq"]
    return {**entry, **known_later(time, evidence)}


def known_later(time: datetime, evidence: dict[str, Any] | None) -> dict[str, str]:
    """What an occurrence (and its "repeated" step) dated `time` keeps of when it became known, when
    that was later: a fence crossing is dated before the fixes that confirmed it (its evidence's
    `confirmation`); {} otherwise."""
    known = rules_crossings.confirmed_at(evidence or {})
    return {KNOWN_AT_KEY: known.isoformat()} if known is not None and known > time else {}
