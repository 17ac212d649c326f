"""The notification outbox: rows queued with the alert step that caused them, worked by the timer.

Queued in the same unit of work as the alert, so a notification exists exactly when its alert step
does, and each (route, recipient, alert, step) has one unique key: queued once, whatever restarts.
The timer claims a due row (pending → sending, one UPDATE, so two workers never take the same row),
sends it, and marks it sent; a failure goes back to pending with a doubled wait, until max_attempts,
then `failed` (kept, with the last error). A row left `sending` by a process that died mid-send is
retried after the lease, carrying the same delivery id (`X-Tembo-Delivery`) so a receiver can drop
the repeat, unless that try was the last of its round: it is failed then. A row marked sent is never
sent again. Each row counts the tries of its round (`attempts`, bounded by max_attempts) and every try
it was ever given (`tries_total`), which an administrator's retry does not reset.

A message that asks someone to act is checked against its alert when its turn comes, not only when it
was queued (a channel down for an hour holds it that long): an escalation ("nobody answered") of an
alert a ranger acknowledged or resolved meanwhile, or a "raised" of an alert already resolved, is
`withdrawn` (kept, with the reason, and an alert event), never sent. EarthRanger's "raised" still goes:
it creates the event that the later steps patch. So is the closing of an alert whose raise to the same
recipient never went out (`never_announced`). So is a row whose route, or whose recipient on it,
the settings no longer name (a ranger taken off the duty SMS, the bridge restarted while his message
waited): it carries the alert's exact place to someone no longer on duty.

Fixes stay one row each (queued once, retried alone), but a channel that takes many at once (a
sender with `send_batch`, EarthRanger's list of observations) gets the due ones in batches of its
`batch_size`: claimed together, sent in one request, marked together. A batch the receiver refuses
outright is sent again row by row at once, so one bad fix holds up no other.

A row `failed` stays so until an administrator, having put its cause right (EarthRanger's token
renewed in the morning), queues it again (`requeue_failed`, `tembo notifications retry`): judged then
as when its turn comes, and recorded in its alert's history under the administrator's name.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collar_firmware.risk import is_night
from lora_bridge.domain import alerts
from lora_bridge.domain.rules import collar_setting
from lora_bridge.errors import is_transient_store_error, log_failure
from lora_bridge.notify.config import NotifyConfig, Route
from lora_bridge.store.database import Database
from lora_bridge.store.tables import Alert, Animal, Device, Notification
from lora_bridge.store.utc import utc_now

log = logging.getLogger(__name__)

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
WITHDRAWN = "withdrawn"  # overtaken by the alert's own life before its turn came: never sent

# Why a row is failed whose last try of its round the process did not live to finish.
INTERRUPTED_LAST_TRY = "its last try was cut short (the bridge stopped while sending it): every try of its round spent"

KIND_ALERT = "alert"
KIND_POSITION = "position"
KIND_ASSIGNMENT = "assignment"  # a collar's change of wearer, told to EarthRanger (`er_assignments`)


class DeliveryError(Exception):
    """A channel could not deliver; retryable unless the receiver refused the message itself.
    `retry_after_s`: how long the receiver asked to be left alone (its `Retry-After`), or None;
    `status_code`: the receiver's HTTP status, None when it gave no answer."""

    def __init__(self, message: str, retryable: bool = True, retry_after_s: float | None = None,
                 status_code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status_code = status_code


def shown_url(text: str) -> str:
    """text with every URL's password and query values masked: a delivery error is logged and kept in the
    outbox, and a receiver's URL may carry its credentials (`https://user:password@host/`, an SMS
    gateway's `?api_key=`); they had been written to the log with every failed try."""
    text = re.sub(r"(://[^/\s:@]*):[^/\s@]*@", r"\1:***@", text)
    return re.sub(r"([?&][^=&\s#'\"]+)=[^&\s#'\"]*", r"\1=***", text)


class Sender(Protocol):
    """One channel's sender: delivers a notification row, returns an id the receiver gave it (or None)."""

    def send(self, notification: Notification, session_lookup: Any) -> str | None: ...


@dataclass(frozen=True)
class DrainReport:
    """What one pass over the outbox did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    withdrawn: int = 0


def route_matches(route: Route, alert: Alert, action: str, device: Device | None) -> bool:
    """Does this alert step go over this route (type, priority, action, hours)?"""
    if action not in route.actions:
        return False
    if route.escalation_only and action != "escalated":
        return False
    if route.types is not None and alert.alert_type not in route.types:
        return False
    if alert.priority < route.min_priority:
        return False
    if route.hours != "any":
        offset = collar_setting(device, "utc_offset_min") if device is not None else 0
        night = is_night(int(alert.time.timestamp()), offset)
        if (route.hours == "night") != night:
            return False
    return True


def alert_payload(alert: Alert, animal: Animal | None, action: str, detail: dict[str, Any] | None = None,
                  device: Device | None = None) -> dict[str, Any]:
    """What every channel says about an alert step (a snapshot taken when it was queued). `utc_offset_min`
    is the collar's local time at the alert's place (the offset its night is reckoned by, None when the
    collar is unknown): the SMS and e-mail a ranger reads at night give the time in it."""
    corroboration = (alert.evidence or {}).get("corroboration") or {}
    return {
        "alert_id": alert.id,
        "action": action,
        "alert_type": alert.alert_type,
        "priority": alert.priority,
        "state": alert.state,
        "source": alert.source,
        "device_id": alert.device_id,
        "animal": animal.name if animal else None,
        "species": animal.species if animal else None,
        "time": alert.time.isoformat(),
        "lat": alert.lat,
        "lon": alert.lon,
        "confidence": corroboration.get("confidence"),
        "rule": (alert.evidence or {}).get("rule"),
        "verdict": alert.verdict,
        "acknowledged_by": alert.acknowledged_by,
        "resolved_by": alert.resolved_by,
        "detail": dict(detail or {}),
        "utc_offset_min": collar_setting(device, "utc_offset_min") if device is not None else None,
    }


def enqueue_alert_steps(
    session: Session,
    config: NotifyConfig,
    steps: Iterable[tuple[int, str]],
    detail: dict[tuple[int, str], dict[str, Any]] | None = None,
) -> list[int]:
    """Queue every route's notification for these (alert id, action) steps; ids of the rows queued."""
    queued: list[int] = []
    if not config.routes:
        return queued
    for alert_id, action in steps:
        alert = session.get(Alert, alert_id)
        if alert is None:
            continue
        device = session.get(Device, alert.device_id)
        animal = session.get(Animal, alert.animal_id) if alert.animal_id else None
        payload = alert_payload(alert, animal, action, (detail or {}).get((alert_id, action)), device)
        step = f"{action}{payload['detail'].get('level', '')}"
        if action == "raised" and released_from_hold(alert):
            step = "raised_released"  # raised again: its first raise was held at priority 0
            payload["detail"]["released_from_hold"] = True
        for route in config.routes:
            if not route_matches(route, alert, action, device):
                continue
            told = {**payload, "timezone": route.timezone} if route.timezone else payload
            for recipient in route.to or [route.channel]:
                key = f"{route.name}:{recipient}:alert:{alert.id}:{step}"
                row = _queue(session, key, route.channel, recipient, route.name, KIND_ALERT, told, alert.id)
                if row is not None:
                    queued.append(row)
                    alerts.record_event(
                        session, alert, alerts.SYSTEM_ACTOR, alerts.ACTION_NOTIFICATION_QUEUED,
                        {"route": route.name, "channel": route.channel, "to": recipient, "action": action},
                    )
    return queued


def released_from_hold(alert: Alert) -> bool:
    """True for an alert corroboration held at priority 0 and has let go since (`rules_corroboration`)."""
    corroboration = (alert.evidence or {}).get("corroboration") or {}
    return bool(corroboration.get("released")) and alert.priority > alerts.PRIORITY_INFO


def enqueue_position(session: Session, config: NotifyConfig, device: Device, animal: Animal | None,
                     time: datetime, lat: float, lon: float) -> int | None:
    """Queue one fix as an EarthRanger sensor observation (when EarthRanger takes positions)."""
    er = config.earthranger
    if er is None or not er.send_positions:
        return None
    payload = {
        "device_id": device.device_id,
        "animal": animal.name if animal else device.device_id,
        "species": animal.species if animal else None,
        "time": time.isoformat(),
        "lat": lat,
        "lon": lon,
        "battery_mv": device.battery_mv,
        "behaviour": device.behaviour,
    }
    key = f"earthranger:observation:{device.device_id}:{time.isoformat()}"
    return _queue(session, key, "earthranger", er.provider_key, None, KIND_POSITION, payload, None)


def enqueue_assignment(session: Session, config: NotifyConfig, device_id: str, animal: Animal | None,
                       at: datetime, previous: str | None) -> int | None:
    """Queue the change of collar device_id's wearer at `at` for EarthRanger (when it takes positions): to
    animal (None: into stock) from the animal called previous (None: from stock, or nobody)."""
    er = config.earthranger
    if er is None or not er.send_positions:
        return None
    payload = {
        "device_id": device_id,
        "animal": animal.name if animal is not None else None,
        "animal_id": animal.id if animal is not None else None,
        "species": animal.species if animal is not None else None,
        "previous": previous,
        "time": at.isoformat(),
    }
    key = f"earthranger:assignment:{device_id}:{at.isoformat()}:{payload['animal_id'] or 'stock'}"
    row = _queue(session, key, "earthranger", er.provider_key, None, KIND_ASSIGNMENT, payload, None)
    if row is not None:
        log.info("EarthRanger assignment queued device_id=%s to %s at %s", device_id, payload["animal"] or "stock",
                 payload["time"], extra={"device_id": device_id, "notification_id": row})
    return row


def held_fixes(session: Session, position_ids: list[int]) -> set[int]:
    """Of these fix rows, those that wait for a change of their collar's wearer not yet told to EarthRanger
    (an assignment row pending, sending or failed, dated at or before the fix): a fix of the new wearer
    posted before its assignment is drawn on the old one's track."""
    if not position_ids:
        return set()
    waiting: dict[str, list[datetime]] = {}
    for payload in session.scalars(select(Notification.payload).where(
            Notification.kind == KIND_ASSIGNMENT, Notification.state.in_((PENDING, SENDING, FAILED)))):
        waiting.setdefault(payload["device_id"], []).append(datetime.fromisoformat(payload["time"]))
    if not waiting:
        return set()
    held = set()
    for row_id, payload in session.execute(select(Notification.id, Notification.payload)
                                           .where(Notification.id.in_(position_ids))):
        changes = waiting.get(payload["device_id"])
        if changes and any(change <= datetime.fromisoformat(payload["time"]) for change in changes):
            held.add(row_id)
    return held


def assignment_waits(session: Session, row_id: int) -> bool:
    """True while a fix of the collar queued before this change of wearer, and dated before it, is not yet
    sent: the old wearer's fixes reach EarthRanger under her assignment first (the source and its first
    subject are made by the first fix EarthRanger hears)."""
    row = session.get(Notification, row_id)
    change = datetime.fromisoformat(row.payload["time"])
    for payload in session.scalars(select(Notification.payload).where(
            Notification.kind == KIND_POSITION, Notification.id < row_id,
            Notification.state.in_((PENDING, SENDING)))):
        if payload["device_id"] == row.payload["device_id"] and datetime.fromisoformat(payload["time"]) < change:
            return True
    return False


def _queue(session: Session, key: str, channel: str, recipient: str, route: str | None, kind: str,
           payload: dict[str, Any], alert_id: int | None) -> int | None:
    if session.scalars(select(Notification.id).where(Notification.dedup_key == key)).first() is not None:
        return None
    row = Notification(
        dedup_key=key, channel=channel, recipient=recipient, route=route, kind=kind, payload=payload,
        alert_id=alert_id, state=PENDING, attempts=0, next_attempt_at=utc_now(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return None  # another worker queued the same step a moment ago
    return row.id


def drain(db: Database, config: NotifyConfig, senders: dict[str, Sender], now: datetime | None = None,
          limit: int = 200) -> DrainReport:
    """Send what is due: claim, send, mark; failures wait (doubling) and end as failed after max_attempts."""
    at = now or utc_now()
    retry = config.retry
    with db.write() as session:
        _end_interrupted_tries(session, retry.max_attempts, at - timedelta(seconds=retry.lease_s))
        # Alert steps before fixes: they wake rangers, and a backlog of fixes for an unreachable
        # EarthRanger (the reserve's internet down overnight) must not fill the pass ahead of them.
        due = list(session.execute(
            select(Notification.id, Notification.channel, Notification.kind)
            .where(Notification.state == PENDING, Notification.next_attempt_at <= at)
            .order_by(case((Notification.kind == KIND_ALERT, 0), (Notification.kind == KIND_ASSIGNMENT, 1), else_=2),
                      Notification.next_attempt_at, Notification.id)
            .limit(limit)
        ))
    tally = {"sent": 0, "retried": 0, "failed": 0, "withdrawn": 0}
    blocked: set[str] = set()
    for channel, batched, group in _groups(due, senders):
        if channel in blocked:  # this channel just failed: leave the rest for the next pass
            continue
        if channel == "earthranger":
            group = _not_waiting(db, config, group, at)
            if not group:
                continue
        if batched:
            _send_batch(db, config, senders[channel], group, at, tally, blocked)
            continue
        row = _claim(db, config, group[0], at, tally)
        if row is not None:
            _send_one(db, config, senders.get(row.channel), row, at, tally, blocked)
    if due:
        log.info("outbox drained", extra=dict(tally))
    return DrainReport(**tally)


def _not_waiting(db: Database, config: NotifyConfig, group: list[int], at: datetime) -> list[int]:
    """The rows of group that may go now: a fix held for its collar's change of wearer (`held_fixes`) waits
    one backoff (so a change EarthRanger refused does not fill every pass with its collar's fixes), a change
    of wearer waits for the fixes queued before it (`assignment_waits`)."""
    with db.write() as session:
        kinds = {row.id: row.kind for row in session.execute(
            select(Notification.id, Notification.kind).where(Notification.id.in_(group)))}
        fixes = [i for i in group if kinds.get(i) == KIND_POSITION]
        held = held_fixes(session, fixes)
        held |= {i for i in group if kinds.get(i) == KIND_ASSIGNMENT and assignment_waits(session, i)}
        if held:
            session.execute(update(Notification).where(Notification.id.in_(held), Notification.state == PENDING)
                            .values(next_attempt_at=at + timedelta(seconds=config.retry.backoff_s)))
            log.info("notifications wait for a collar's change of wearer", extra={"held": len(held)})
    return [i for i in group if i not in held]


def _end_interrupted_tries(session: Session, max_attempts: int, lease_ended: datetime) -> None:
    """Rows left `sending` past their lease (the process stopped mid-send) are pending again, except a row
    whose round of tries is spent: it is failed, with the reason, as one whose last try was refused would
    be. Until 6 December every restart mid-send gave such a row another try, beyond max_attempts and
    without end (a sender that brings the bridge down with it was tried at every start)."""
    interrupted = (Notification.state == SENDING) & (Notification.next_attempt_at <= lease_ended)
    session.execute(
        update(Notification)
        .where(interrupted, Notification.attempts >= max_attempts)
        .values(state=FAILED, last_error=INTERRUPTED_LAST_TRY)
    )
    session.execute(update(Notification).where(interrupted).values(state=PENDING))


def _groups(due: list[Any], senders: dict[str, Sender]) -> list[tuple[str, bool, list[int]]]:
    """The due rows in order as (channel, batched, ids): fixes for a channel that takes batches gathered
    into batches of its size, every other row alone."""
    groups: list[tuple[str, bool, list[int]]] = []
    open_batch: dict[str, list[int]] = {}
    for notification_id, channel, kind in due:
        sender = senders.get(channel)
        size = max(1, int(getattr(sender, "batch_size", 1)))
        if kind != KIND_POSITION or not hasattr(sender, "send_batch"):
            groups.append((channel, False, [notification_id]))
            continue
        batch = open_batch.get(channel)
        if batch is None or len(batch) >= size:
            batch = open_batch[channel] = []
            groups.append((channel, True, batch))
        batch.append(notification_id)
    return groups


def _send_one(db: Database, config: NotifyConfig, sender: Sender | None, row: Notification, at: datetime,
              tally: dict[str, int], blocked: set[str]) -> None:
    try:
        if sender is None:
            raise DeliveryError(f"channel {row.channel} is not configured", retryable=False)
        external_id = sender.send(row, db)
    except DeliveryError as error:
        state = _failed(db, row, str(error), error.retryable, at, config, error.retry_after_s)
        if state == FAILED:
            tally["failed"] += 1
        else:
            tally["retried"] += 1
            blocked.add(row.channel)
        return
    except Exception as error:  # a bug in a sender must not stop the others
        log_failure(log, error, "notification sender crashed notification_id=%d", row.id)
        _failed(db, row, repr(error), True, at, config)
        tally["retried"] += 1
        return
    _kept_within_lease(lambda: _sent(db, row.id, external_id), config, row.id)
    tally["sent"] += 1


def _send_batch(db: Database, config: NotifyConfig, sender: Any, ids: list[int], at: datetime,
                tally: dict[str, int], blocked: set[str]) -> None:
    rows = _claim_many(db, ids, at)
    if not rows:
        return
    try:
        sender.send_batch(rows, db)
    except DeliveryError as error:
        if not error.retryable:  # the receiver refused the list itself: each fix on its own
            log.warning("batch refused, sending its %d rows one by one: %s", len(rows), error,
                        extra={"channel": rows[0].channel})
            for row in rows:
                if rows[0].channel not in blocked:
                    _send_one(db, config, sender, row, at, tally, blocked)
                else:
                    _release(db, row.id)
            return
        for row in rows:
            state = _failed(db, row, str(error), True, at, config, error.retry_after_s)
            tally["failed" if state == FAILED else "retried"] += 1
        blocked.add(rows[0].channel)
        return
    except Exception as error:  # a bug in a sender must not stop the others
        log_failure(log, error, "notification sender crashed on a batch of %d", len(rows))
        for row in rows:
            _failed(db, row, repr(error), True, at, config)
            tally["retried"] += 1
        return
    _kept_within_lease(lambda: _sent_many(db, [row.id for row in rows]), config, rows[0].id)
    tally["sent"] += len(rows)


def _kept_within_lease(record: Callable[[], None], config: NotifyConfig, notification_id: int) -> None:
    """Record a delivery the receiver took, tried again while the store cannot take it (a backup holds
    SQLite's write lock, a full or read-only disk) and the row's lease still holds it: a row left
    `sending` is sent again once its lease ends, and the duty officer got the SMS twice."""
    lease_ends = time.monotonic() + config.retry.lease_s
    pause_s = 0.2
    while True:
        try:
            record()
            return
        except Exception as failure:
            if not is_transient_store_error(failure) or time.monotonic() + pause_s >= lease_ends:
                raise
            log.warning("delivery of notification_id=%d not stored yet (%s); trying again", notification_id,
                        type(failure).__name__, extra={"notification_id": notification_id})
            time.sleep(pause_s)
            pause_s = min(2 * pause_s, 5.0)


def _claim_many(db: Database, notification_ids: list[int], at: datetime) -> list[Notification]:
    """Claim every still-pending row of notification_ids (pending → sending in one UPDATE); the claimed rows."""
    with db.write() as session:
        claimed = list(session.scalars(
            update(Notification)
            .where(Notification.id.in_(notification_ids), Notification.state == PENDING)
            .values(state=SENDING, attempts=Notification.attempts + 1, tries_total=Notification.tries_total + 1,
                    next_attempt_at=at)
            .returning(Notification.id)
        ))
        rows = list(session.scalars(
            select(Notification).where(Notification.id.in_(claimed)).order_by(Notification.id)
        ))
        for row in rows:
            session.expunge(row)
        return rows


def _sent_many(db: Database, notification_ids: list[int]) -> None:
    with db.write() as session:
        session.execute(
            update(Notification)
            .where(Notification.id.in_(notification_ids))
            .values(state=SENT, sent_at=utc_now(), last_error=None)
        )
    log.info("notifications sent in one batch", extra={"notifications": len(notification_ids)})


def _claim(db: Database, config: NotifyConfig, notification_id: int, at: datetime,
           tally: dict[str, int]) -> Notification | None:
    """Claim a pending row (pending → sending) to send it now; None when another worker has it, or when
    its alert has overtaken it or its route no longer names its recipient (`overtaken_by`,
    `no_longer_routed`: the row is withdrawn instead, counted in tally)."""
    with db.write() as session:
        claimed = session.execute(
            update(Notification)
            .where(Notification.id == notification_id, Notification.state == PENDING)
            .values(state=SENDING, attempts=Notification.attempts + 1, tries_total=Notification.tries_total + 1,
                    next_attempt_at=at)
        ).rowcount
        if claimed != 1:
            return None
        row = session.get(Notification, notification_id)
        alert = session.get(Alert, row.alert_id) if row.alert_id is not None else None
        reason = no_longer_routed(config, row) or overtaken_by(row, alert) or never_announced(session, row)
        if alert is not None and reason is not None:
            _withdraw(session, row, alert, reason)
            tally["withdrawn"] += 1
            return None
        session.expunge(row)
        return row


def no_longer_routed(config: NotifyConfig, row: Notification) -> str | None:
    """Why an alert row queued under other settings no longer goes out (its route is gone, moved to
    another channel, or no longer lists its recipient), or None."""
    if row.kind != KIND_ALERT or row.route is None:
        return None
    route = next((r for r in config.routes if r.name == row.route), None)
    if route is None or route.channel != row.channel:
        return f"route {row.route!r} is no longer configured for {row.channel}"
    if row.recipient not in (route.to or [route.channel]):
        # Without the recipient itself: the reason goes into the alert's history, which every role reads
        return f"the recipient is no longer on route {row.route!r}"
    return None


def overtaken_by(row: Notification, alert: Alert | None) -> str | None:
    """Why this alert step should no longer go out (the alert moved on since it was queued), or None.

    An escalation says nobody answered: not once a ranger acknowledged or resolved the alert. A raise
    asks someone to look: not once the alert is resolved, except to EarthRanger, whose event the later
    steps patch (and which keeps the record)."""
    if alert is None or row.kind != KIND_ALERT:
        return None
    action = (row.payload or {}).get("action")
    if action == "escalated" and alert.state != alerts.STATE_NEW:
        who = alert.acknowledged_by if alert.state == alerts.STATE_ACKNOWLEDGED else alert.resolved_by
        return f"the alert was {alert.state} by {who} before this escalation went out"
    if action == "raised" and alert.state == alerts.STATE_RESOLVED and row.channel != "earthranger":
        return f"the alert was resolved by {alert.resolved_by} before this went out"
    return None


CLOSING_ACTIONS = ("resolved", "auto_resolved")


def never_announced(session: Session, row: Notification) -> str | None:
    """Why the closing of an alert (resolved, auto_resolved) should not go to this recipient: the alert's
    raise to the same route and recipient never went out (withdrawn as the alert was closed first, or
    still waiting to be). A duty officer woken at night by "[auto_resolved] closed by Tembo" of an alert
    he was never told of had been the outcome of an alert raised and cleared while the gateway was down.
    EarthRanger still gets it: its event records the alert's whole life. None otherwise."""
    if row.kind != KIND_ALERT or row.channel == "earthranger" or row.alert_id is None:
        return None
    if (row.payload or {}).get("action") not in CLOSING_ACTIONS:
        return None
    raises = [
        state for state, payload in session.execute(
            select(Notification.state, Notification.payload)
            .where(Notification.alert_id == row.alert_id, Notification.route == row.route,
                   Notification.recipient == row.recipient, Notification.kind == KIND_ALERT,
                   Notification.id != row.id)
        )
        if (payload or {}).get("action") == "raised"
    ]
    if raises and SENT not in raises:
        return "the alert's raise never reached this recipient: its closing is not sent either"
    return None


@dataclass(frozen=True)
class RetryReport:
    """What an operator's retry of failed notifications did: the rows queued again, and those withdrawn
    instead (their alert moved on, or their route no longer names their recipient), by notification id."""

    requeued: tuple[int, ...] = ()
    withdrawn: tuple[int, ...] = ()


def requeue_failed(session: Session, config: NotifyConfig, *, actor: str, at: datetime,
                   since: datetime | None = None, channel: str | None = None) -> RetryReport:
    """Queue again the failed notifications (queued at or after `since`, over `channel`), once the operator
    has put right what failed them: EarthRanger's token that stayed expired all night spent every try of
    the night's alerts and fixes, and they had no way back out. Each alert row is judged as the timer
    judges a row when its turn comes (`no_longer_routed`, `overtaken_by`): an SMS "raised" of an alert
    resolved since is withdrawn, never sent as if new, while EarthRanger still gets its event. Every alert
    row queued again or withdrawn is an event of its alert, under `actor`, with the tries it had spent.

    A fix (an EarthRanger observation) is queued again too while EarthRanger takes positions: until 5
    December a night of EarthRanger refusing Tembo's token left a hole in the animals' tracks there for
    good. Without EarthRanger's positions in the settings it is withdrawn instead.

    A row queued again gets a fresh budget: max_attempts tries from now, the first at once and the next
    after backoff_s (until 5 December it counted as tried once: one try fewer, and its first wait doubled).
    Its sender still knows it was tried before (`was_tried`) and looks for what an earlier try may have
    delivered (EarthRanger's event) before creating it again."""
    query = (select(Notification)
             .where(Notification.state == FAILED,
                    Notification.kind.in_((KIND_ALERT, KIND_POSITION, KIND_ASSIGNMENT)))
             .order_by(Notification.id))
    if since is not None:
        query = query.where(Notification.created_at >= since)
    if channel is not None:
        query = query.where(Notification.channel == channel)
    requeued: list[int] = []
    withdrawn: list[int] = []
    for row in session.scalars(query).all():
        if row.kind in (KIND_POSITION, KIND_ASSIGNMENT):
            reason = positions_not_taken(config, row)
            if reason is not None:
                row.state = WITHDRAWN
                row.last_error = reason
                withdrawn.append(row.id)
                continue
            _requeue(row, at)
            requeued.append(row.id)
            continue
        alert = session.get(Alert, row.alert_id) if row.alert_id is not None else None
        if alert is None:
            continue
        reason = no_longer_routed(config, row) or overtaken_by(row, alert) or never_announced(session, row)
        if reason is not None:
            _withdraw(session, row, alert, reason)
            withdrawn.append(row.id)
            continue
        previous, tries, tries_total = row.last_error, row.attempts, row.tries_total
        _requeue(row, at)
        alerts.record_event(
            session, alert, actor, alerts.ACTION_NOTIFICATION_REQUEUED,
            {"route": row.route, "channel": row.channel, "to": row.recipient, "notification_id": row.id,
             "action": (row.payload or {}).get("action"), "tries": tries, "tries_total": tries_total,
             "failed_with": (previous or "")[:200]},
        )
        requeued.append(row.id)
        log.info("failed notification queued again notification_id=%d alert_id=%d after %d tries (%d in all), by %s",
                 row.id, alert.id, tries, tries_total, actor, extra={"notification_id": row.id, "alert_id": alert.id,
                                                "device_id": alert.device_id, "channel": row.channel})
    session.flush()
    if len(requeued) + len(withdrawn):
        log.info("failed notifications queued again by %s", actor,
                 extra={"requeued": len(requeued), "withdrawn": len(withdrawn), "channel": channel})
    return RetryReport(tuple(requeued), tuple(withdrawn))


def _requeue(row: Notification, at: datetime) -> None:
    """Pending again with a fresh round of tries, due at `at`; its last error, and its tries in all
    (`tries_total`), kept."""
    row.state = PENDING
    row.attempts = 0
    row.next_attempt_at = at


def was_tried(notification: Notification) -> bool:
    """True when an earlier try of this row may have reached its receiver: claimed before in this budget
    (the process died mid-send), or failed before and queued again (its last error kept)."""
    return notification.attempts > 1 or notification.last_error is not None


def positions_not_taken(config: NotifyConfig, row: Notification) -> str | None:
    """Why a failed fix is no longer sent (EarthRanger, or its positions, gone from the settings), or None."""
    er = config.earthranger
    if row.channel != "earthranger" or er is None or not er.send_positions:
        return "EarthRanger no longer takes positions in the settings"
    return None


def _withdraw(session: Session, row: Notification, alert: Alert, reason: str) -> None:
    row.state = WITHDRAWN
    row.last_error = reason
    alerts.record_event(
        session, alert, alerts.SYSTEM_ACTOR, alerts.ACTION_NOTIFICATION_WITHDRAWN,
        {"route": row.route, "channel": row.channel, "to": row.recipient, "notification_id": row.id,
         "action": (row.payload or {}).get("action"), "reason": reason},
    )
    log.info("notification withdrawn notification_id=%d alert_id=%d device_id=%s: %s", row.id, alert.id,
             alert.device_id, reason,
             extra={"notification_id": row.id, "alert_id": alert.id, "device_id": alert.device_id,
                    "channel": row.channel})


def _release(db: Database, notification_id: int) -> None:
    with db.write() as session:
        session.execute(
            update(Notification)
            .where(Notification.id == notification_id, Notification.state == SENDING)
            .values(state=PENDING, attempts=Notification.attempts - 1, tries_total=Notification.tries_total - 1)
        )


def _sent(db: Database, notification_id: int, external_id: str | None) -> None:
    with db.write() as session:
        row = session.get(Notification, notification_id)
        row.state = SENT
        row.sent_at = utc_now()
        row.last_error = None
        row.external_id = external_id
        if row.alert_id is not None:
            alert = session.get(Alert, row.alert_id)
            alerts.record_event(
                session, alert, alerts.SYSTEM_ACTOR, alerts.ACTION_NOTIFICATION_SENT,
                {"route": row.route, "channel": row.channel, "to": row.recipient, "notification_id": row.id},
            )
    log.info("notification sent notification_id=%d channel=%s", notification_id, external_id or "",
             extra={"notification_id": notification_id})


def _failed(db: Database, row: Notification, error: str, retryable: bool, at: datetime, config: NotifyConfig,
            retry_after_s: float | None = None) -> str:
    """Mark a row not delivered: pending again after the doubled wait, or after the receiver's own
    `Retry-After` when it asked for longer (capped at backoff_max_s), or failed after max_attempts. A
    receiver down for an hour's maintenance that says so is not tried every few minutes until the
    row's attempts are spent and the alert is failed just before it comes back."""
    retry = config.retry
    with db.write() as session:
        stored = session.get(Notification, row.id)
        stored.last_error = error[:2000]
        if not retryable or stored.attempts >= retry.max_attempts:
            stored.state = FAILED
        else:
            stored.state = PENDING
            wait = min(retry.backoff_s * 2 ** (stored.attempts - 1), retry.backoff_max_s)
            if retry_after_s is not None:
                wait = max(wait, min(retry_after_s, retry.backoff_max_s))
            stored.next_attempt_at = at + timedelta(seconds=wait)
        state = stored.state
    log.warning(
        "notification not delivered notification_id=%d channel=%s attempt=%d (%d in all): %s",
        row.id, row.channel, row.attempts, row.tries_total, error,
        extra={"notification_id": row.id, "channel": row.channel, "alert_id": row.alert_id},
    )
    return state


def sent_external_id(db: Database, alert_id: int, channel: str) -> str | None:
    """The id the receiver gave the first delivered notification of an alert on channel (EarthRanger's event id)."""
    with db.read() as session:
        return session.scalars(
            select(Notification.external_id)
            .where(Notification.alert_id == alert_id, Notification.channel == channel,
                   Notification.state == SENT, Notification.external_id.is_not(None))
            .order_by(Notification.id)
        ).first()
