"""The downlink outbox: commands for collars, queued in the store, pushed by the outbox worker.

A downlink's life, in `state` (the outbox) and `network_state` (what the network server reported):

    queued ──claim──> sending ──accepted──> sent ──collar's port-31 ack──> acknowledged
      ^   \\            │ lease expired (crash mid-push) / refused: back to queued
      │    superseded    │ (a newer command of the same kind)
      │                  └─ MAX_PUSH_ATTEMPTS refusals: failed
      └── network invalidated its queue (new session): pushed again (a sent row; an unconfirmed one
          the network still held, unless its copy goes or it may not go twice after a nack)
    sent ──N uplinks of the collar, no port-31 ack, no delivery report──> unconfirmed ──late ack──> acknowledged
                                                                      ├─ the network's late acked: sent
                                                                      └─ its late nack: stays, reason says it
                                        (an alert's ack: a copy queued again, `mark_unconfirmed`)
    network_state: queued -> sent (transmitted; ChirpStack txack) -> acked | nacked | failed
                                  ^                                          │
                                  └──── the network sends it again ──────────┘

A nack is not the end of a downlink: the collar did not confirm it, and The Things Stack's
Application Server puts it back at the head of the collar's queue and sends it again (docs:
devices/concepts/confirmed-downlinks-behavior), so its later sent / ack reports still move it and
Tembo pushes no copy of its own (that would spend a second downlink of the fair-use day on it),
however long after `ack_resend_after_s` the collar repeats its alert. Each of those resends is
counted in the collar's fair-use day (`downlink_transmissions`), as is each push of a row.
ChirpStack instead discards a confirmed queue item the collar did not acknowledge in time and
reports it with `acknowledged: false` ("Device queue-item discarded because of timeout"): that
downlink goes back to Tembo's queue and is pushed again, within fair use and MAX_PUSH_ATTEMPTS.

Acks of one alert are not repeated while the last one is on its way; a collar still repeating the
alert after `ack_resend_after_s` (or after the network reported the ack failed) gets it again.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from operator import attrgetter
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import instance_state

from collar_firmware import codec as wire
from lora_bridge import cut_off_pushes
from lora_bridge.domain import alerts
from lora_bridge.errors import InvalidCommand, InvalidCommandValues
from lora_bridge.store import bulk
from lora_bridge.store.ids import take_id
from lora_bridge.store.row_values import new_row
from lora_bridge.store.tables import Alert, Downlink, DownlinkTransmission, RawUplink
from lora_bridge.store.transaction_info import held_until_transaction_end
from lora_bridge.store.unflushed import read_with_new, with_new
from lora_bridge.store.utc import as_utc, utc_now
from lora_bridge.uplink_formats import SOURCE_CHIRPSTACK

log = logging.getLogger(__name__)

COMMAND_PORT = 32

STATE_QUEUED = "queued"
STATE_SENDING = "sending"
STATE_SENT = "sent"
STATE_FAILED = "failed"
STATE_ACKNOWLEDGED = "acknowledged"
STATE_SUPERSEDED = "superseded"
# Pushed, and the collar has since sent `after_uplinks` uplinks (each opens the receive windows a
# class A downlink is delivered in) without its port-31 ack, while the network server reported no
# delivery: not known to be lost (a network without downlink events never says), not known delivered.
STATE_UNCONFIRMED = "unconfirmed"
STATES = (STATE_QUEUED, STATE_SENDING, STATE_SENT, STATE_FAILED, STATE_ACKNOWLEDGED, STATE_SUPERSEDED,
          STATE_UNCONFIRMED)

NETWORK_QUEUED = "queued"
NETWORK_SENT = "sent"
NETWORK_ACKED = "acked"
NETWORK_NACKED = "nacked"
NETWORK_FAILED = "failed"
NETWORK_INVALIDATED = "invalidated"
# Network states after which the collar did not get the downlink and the network will not send it.
NETWORK_UNDELIVERED = (NETWORK_FAILED, NETWORK_INVALIDATED)
# Network states of a downlink that waits in the network's queue (None: pushed, no report yet; nacked:
# queued again by the network to be sent once more).
NETWORK_WAITING = (None, NETWORK_QUEUED, NETWORK_NACKED)
# How far a report says a downlink got: a report never moves it back (reports arrive out of order),
# except that a nacked downlink goes round again (sent, then acked or nacked once more).
_REPORT_RANK = {NETWORK_QUEUED: 0, NETWORK_SENT: 1, NETWORK_NACKED: 1, NETWORK_ACKED: 2}

# Why a downlink went on air (DownlinkTransmission.cause): the bridge pushed it, or the network sent
# a nacked one again by itself (a downlink_sent report after a nack).
TRANSMISSION_PUSH = "push"
TRANSMISSION_RESEND = "resend"

# Commands where a newer one makes an older, not yet delivered one pointless (the same setting).
ACK_COMMAND = "ack_alert"
CORRELATION_PREFIX = "tembo:downlink:"
# The codec's kinds of a whole number (a field of one of these kinds without a scale).
WHOLE_NUMBER_KINDS = frozenset({"u8", "u16", "u24", "u32", "i8", "i16", "i24", "i32"})
# Our correlation id as pushed: the prefix and a row id (ASCII digits, at most 18: a 64-bit INTEGER).
# Another network's id that merely starts so ("tembo:downlink:²", twenty digits) names none of ours;
# it had failed the whole delivery report (int("²"), an integer SQLite cannot hold).
CORRELATION_ID = re.compile(re.escape(CORRELATION_PREFIX) + r"([0-9]{1,18})")

# After this many failed pushes a downlink stops being retried and is marked failed.
MAX_PUSH_ATTEMPTS = 5
# The downlinks the collar answers with a port-31 ack (collar_firmware/downlink.py): commands, settings.
COLLAR_ACKED_PORTS = (COMMAND_PORT, wire.SETTINGS_PORT)
# Network states of a pushed downlink that say nothing of its delivery to the collar: no report, or
# queued / sent on air (the collar's own ack is still owed). acked: the collar's radio confirmed it;
# nacked: The Things Stack is sending it again.
NETWORK_SILENT = (None, NETWORK_QUEUED, NETWORK_SENT)
# Commands pushed again when unconfirmed: sent twice, they do what they do once (an ack tells the collar
# to stop repeating an alert). Any other command (a reboot, a tracking burst) waits for the ranger's word.
RESEND_WHEN_UNCONFIRMED = frozenset({ACK_COMMAND})
# How many unconfirmed pushes of the same bytes are followed by another one: within fair use, and not for
# ever for a collar that hears no downlink at all (its own repeat of the alert still queues an ack).
MAX_UNCONFIRMED_RESENDS = 3
# An unconfirmed downlink pushed longer ago than this is not sent again.
RESEND_WITHIN = timedelta(days=1)


def check_command_values(codec: Any, command: str, values: dict[str, Any]) -> None:
    """Refuse values that command's row of the codec table does not name, or lacks: InvalidCommandValues
    naming them and what the command takes. The codec itself reads only the names it knows (a
    `reboot` with `{"delay_s": 60}` went out as a plain reboot) and takes a missing bit field as 0
    (an `ack_alert` without values acked alert 0 of type 0): a caller's typo must not reach a collar.
    A name that is no downlink is left to the codec (CodecError)."""
    try:
        row = codec.message(command)
    except codec.CodecError:
        return
    if row[1] == codec.SETTINGS_PORT:
        known = [setting[1] for setting in codec.SETTINGS]
        _refuse_names(command, values, required=(), optional=known)
        if not values:
            raise InvalidCommandValues(f"{command} needs at least one setting: {', '.join(known)}")
        for _id, name, _kind, low, high, _unit in codec.SETTINGS:
            if name in values:
                _check_whole_number(command, name, values[name], flag=(low, high) == (0, 1))
        return
    required, optional, lists = _value_names(row[4])
    _refuse_names(command, values, required, optional)
    for name, kind, arg in row[4]:
        if kind == "bits":
            for part, bits, names in arg:
                if names is None and part in values:
                    _check_whole_number(command, part, values[part], flag=bits == 1)
        elif kind in WHOLE_NUMBER_KINDS and arg is None:
            _check_whole_number(command, name, values[name], flag=False)
    for name, subfields in lists.items():
        items = values.get(name)
        if not isinstance(items, list):
            raise InvalidCommandValues(f"{command}: {name} is a list, got {type(items).__name__}")
        item_required, item_optional, _ = _value_names(subfields)
        for number, item in enumerate(items):
            if isinstance(item, dict) or len(subfields) != 1:
                if not isinstance(item, dict):
                    raise InvalidCommandValues(f"{command}: {name}[{number}] is an object with "
                                               f"{', '.join(item_required)}, got {type(item).__name__}")
                _refuse_names(f"{command}: {name}[{number}]", item, item_required, item_optional)


def _check_whole_number(command: str, name: str, value: Any, flag: bool) -> None:
    """Refuse, as a value of the wrong type, a number with a fraction for a whole-number value (the
    codec's int() had sent `600.9` as 600) and a boolean unless the value is a flag (`true` had set
    one minute of tracking)."""
    if isinstance(value, bool) and not flag or isinstance(value, float) and not value.is_integer():
        raise InvalidCommand(f"{command}: {name}={value!r} is a value of the wrong type: a whole number")


def _value_names(fields: Any) -> tuple[list[str], list[str], dict[str, Any]]:
    """(required names, optional names, list fields and their item fields) of a codec row's fields: a
    bit field's parts are values of their own, its padding (`spare`) optional."""
    required: list[str] = []
    optional: list[str] = []
    lists: dict[str, Any] = {}
    for name, kind, arg in fields:
        if kind == "bits":
            for part, _bits, _names in arg:
                (optional if part == "spare" or part.endswith("_spare") else required).append(part)
        else:
            required.append(name)
            if kind == "list":
                lists[name] = arg[1]
    return required, optional, lists


def _refuse_names(what: str, values: dict[str, Any], required: Any, optional: Any) -> None:
    takes = [*required, *optional]
    unknown = sorted(name for name in values if name not in takes)
    missing = [name for name in required if name not in values]
    if not unknown and not missing:
        return
    problems = []
    if unknown:
        problems.append(f"unknown {', '.join(map(repr, unknown))}")
    if missing:
        problems.append(f"missing {', '.join(map(repr, missing))}")
    accepted = f"it takes {', '.join(takes)}" if takes else "it takes no values"
    raise InvalidCommandValues(f"{what}: {'; '.join(problems)} ({accepted})"[:300])


def queue_command(
    session: Session,
    codec: Any,
    *,
    device_id: str,
    command: str,
    values: dict[str, Any],
    alert_id: int | None = None,
    resend_after_s: float = 3600.0,
    now: datetime | None = None,
    version: int = 1,
) -> Downlink:
    """Encode a downlink message (port-32 command, or port-3 settings) and queue it for device_id.
    version: the TS004 package version whose codec row to encode a fragmentation command in (its v1.0.0 row
    where the version has none of its own; collar_firmware/codec.py).

    The same bytes still waiting for the same collar are not queued twice, and the ack of an alert
    pushed less than resend_after_s ago (and not reported undelivered) is not queued again: a collar
    repeating an alert until it hears the ack gets one ack, not one per repetition; that row is
    returned. A newer port-32 command supersedes a waiting one of the same name.
    Raises the codec's CodecError for a name that is not a downlink or values it cannot carry.
    """
    now = now or utc_now()
    row = codec.message(command) if hasattr(codec, "message") else (command, COMMAND_PORT, None, "down")
    if row[3] not in ("down", "both"):
        raise codec.CodecError(f"{command} is not a downlink message")
    try:
        payload = bytes(codec.encode(command, values, version))
    except codec.CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as error:
        # A value of the wrong type ("abc", null, a list, NaN where a number goes) is the caller's
        # mistake, named like any other value the codec cannot carry.
        raise codec.CodecError(f"{command}: a value of the wrong type ({error})"[:300]) from error
    f_port = int(row[1])
    if command == ACK_COMMAND:  # one read for both looks: the same bytes waiting, or an ack on its way
        # the acks this batch queued before are pending, not flushed (below)
        same = _same_bytes_read_ahead(session, device_id, payload)
        if same is None:
            same = read_with_new(session, _same_bytes_read(), {"device_id": device_id, "payload": payload}, Downlink,
                                 lambda d: d.device_id == device_id and d.payload == payload)
        waiting = next((d for d in same if d.f_port == f_port and d.state in (STATE_QUEUED, STATE_SENDING)), None)
        if waiting is not None:
            return waiting
        on_its_way = _ack_on_its_way([d for d in same if d.command == ACK_COMMAND
                                      and d.state in (STATE_SENT, STATE_ACKNOWLEDGED)],
                                     now - timedelta(seconds=resend_after_s))
        if on_its_way is not None:
            return on_its_way
    else:
        waiting = session.scalars(
            select(Downlink).where(
                Downlink.device_id == device_id,
                Downlink.f_port == f_port,
                Downlink.payload == payload,
                Downlink.state.in_((STATE_QUEUED, STATE_SENDING)),
            )
        ).first()
        if waiting is not None:
            return waiting
    downlink_id = take_id(session, Downlink)  # added without a flush: the batch's next one writes it
    downlink = new_row(Downlink, {
        "id": downlink_id,
        "device_id": device_id,
        "f_port": int(row[1]),
        "payload": payload,
        "command": command,
        "seq": values.get("seq"),
        "alert_id": alert_id,
        "state": STATE_QUEUED,
        "correlation_id": f"{CORRELATION_PREFIX}{downlink_id}",
    })
    session.add(downlink)
    _note_added(session, downlink)
    if f_port == COMMAND_PORT and command != ACK_COMMAND:
        _supersede_older(session, downlink)
    log.info(
        "downlink queued downlink_id=%d device_id=%s command=%s alert_id=%s",
        downlink.id,
        device_id,
        command,
        alert_id,
        extra={"device_id": device_id, "command": command, "downlink_id": downlink.id, "alert_id": alert_id},
    )
    return downlink


# The states of the downlinks an ack's same-bytes look reads (`_same_bytes_read`, `_same_bytes_read_ahead`)
_ACK_STATES = (STATE_QUEUED, STATE_SENDING, STATE_SENT, STATE_ACKNOWLEDGED)


@cache
def _same_bytes_read() -> Any:
    """queue_command's read for an ack, built once (its values bound at each call): the collar's
    downlinks of the same bytes waiting, on their way or acknowledged, newest first. Every collar alert
    queues an ack, and building the statement cost more than running its cached compilation."""
    return (
        select(Downlink)
        .where(
            Downlink.device_id == bindparam("device_id"),
            Downlink.payload == bindparam("payload"),
            Downlink.state.in_(bulk.fixed_texts(_ACK_STATES)),
        )
        .order_by(Downlink.id.desc())
    )


# A batch's read ahead of the downlinks its collar alerts' acks look for (`read_acks_ahead`): by (collar,
# bytes), every stored row of theirs, whatever its state, and those the batch added since
ACKS_READ_AHEAD = held_until_transaction_end("tembo_acks_read_ahead")


def ack_bytes(codec: Any, values: dict[str, Any]) -> bytes | None:
    """The bytes `queue_command` queues for an ack of values, or None when the codec cannot carry them
    (`queue_command` says why)."""
    try:
        return bytes(codec.encode(ACK_COMMAND, values, 1))
    except (codec.CodecError, TypeError, ValueError, OverflowError):
        return None


def read_acks_ahead(session: Session, acks: set[tuple[str, bytes]]) -> None:
    """Read now, for the acks (collar, bytes) that a batch's collar alerts will queue, what each one's
    same-bytes read (`_same_bytes_read`) looks among, in one statement for all: a herd alerting at once
    read its acks once, not once an alert. Every change of the batch's own is to these very objects (the
    session's), or adds a row (`_note_added`); every state is read, each row's state judged when its ack
    is queued. No other batch queues these acks meanwhile: on SQLite the batch holds the store's write
    lock, on PostgreSQL a collar's messages are applied by the one worker that owns it
    (`collar_shares`). The outbox may move a row's state between this read and the ack, as it may between
    an ack's own read and the batch's commit: the same race, the read older by part of a batch."""
    if not acks:
        return
    collars, payloads = sorted({c for c, _ in acks}), sorted({p for _, p in acks})
    collar_count, payload_count = bulk.in_list_size(len(collars)), bulk.in_list_size(len(payloads))
    found: dict[tuple[str, bytes], list[Downlink]] = {ack: [] for ack in acks}
    with session.no_autoflush:  # the rows as stored: the batch's unflushed ones are added when judged
        for row in session.scalars(_acks_ahead_read(collar_count, payload_count),
                                   {**bulk.in_list_values("device", collars, collar_count),
                                    **bulk.in_list_values("payload", payloads, payload_count)}):
            rows = found.get((row.device_id, row.payload))
            if rows is not None:
                rows.append(row)
    session.info[ACKS_READ_AHEAD] = found


@cache
def _acks_ahead_read(collar_count: int, payload_count: int) -> Any:
    """`read_acks_ahead`'s statement, built once per count bucket of the collars and the bytes (`bulk.in_list`)."""
    return (select(Downlink)
            .where(bulk.in_list(Downlink.device_id, "device", collar_count),
                   bulk.in_list(Downlink.payload, "payload", payload_count))
            .order_by(Downlink.id.desc()))


def _same_bytes_read_ahead(session: Session, device_id: str, payload: bytes) -> list[Downlink] | None:
    """What `_same_bytes_read` and the unit of work's new downlinks would give (`read_with_new`), newest
    first, from the batch's read ahead; None when it does not cover this collar and bytes. A row of it
    the batch deleted, or that left the store (a rolled-back savepoint), is not there any more."""
    ahead: dict[tuple[str, bytes], list[Downlink]] | None = session.info.get(ACKS_READ_AHEAD)
    rows = ahead.get((device_id, payload)) if ahead is not None else None
    if rows is None:
        return None
    gone = session.deleted
    stored = [row for row in rows if instance_state(row).persistent and row not in gone and row.state in _ACK_STATES]
    stored.sort(key=_BY_ID, reverse=True)
    return with_new(session, stored, Downlink, lambda d: d.device_id == device_id and d.payload == payload)


def _note_added(session: Session, downlink: Downlink) -> None:
    """Add a downlink the batch queued to its read ahead of the same bytes, if it covers them: once
    flushed, it is a stored row the read ahead did not see."""
    ahead: dict[tuple[str, bytes], list[Downlink]] | None = session.info.get(ACKS_READ_AHEAD)
    rows = ahead.get((downlink.device_id, downlink.payload)) if ahead is not None else None
    if rows is not None:
        rows.append(downlink)


_BY_ID = attrgetter("id")


def _ack_on_its_way(sent: list[Downlink], since: datetime) -> Downlink | None:
    """Of a collar's acks with the same bytes sent or acknowledged (newest first), the latest if it was
    pushed since `since` and not reported undelivered."""
    latest = sent[0] if sent else None
    if latest is None or latest.sent_at is None or latest.network_state in NETWORK_UNDELIVERED:
        return None
    if latest.state == STATE_SENT and latest.network_state == NETWORK_NACKED:
        return latest  # the network is sending it again (TTS re-queues a nacked downlink): on its way, however old
    if latest.sent_at < since:
        return None
    return latest


def _supersede_older(session: Session, newer: Downlink) -> None:
    older = session.scalars(
        select(Downlink).where(
            Downlink.device_id == newer.device_id,
            Downlink.command == newer.command,
            Downlink.id != newer.id,
            Downlink.state.in_((STATE_QUEUED, STATE_SENT)),
        )
    ).all()
    for row in older:
        if row.state == STATE_SENT and row.network_state not in NETWORK_WAITING:
            continue  # already on the air: nothing left to replace
        row.state = STATE_SUPERSEDED
        row.superseded_by = newer.id
        log.info(
            "downlink superseded downlink_id=%d by=%d device_id=%s command=%s",
            row.id,
            newer.id,
            row.device_id,
            row.command,
            extra={"device_id": row.device_id, "downlink_id": row.id, "superseded_by": newer.id},
        )


def replaced_at_network(session: Session, downlink: Downlink) -> list[Downlink]:
    """When downlink supersedes a command already queued at the network server, the downlinks the
    network's queue should hold instead (still waiting there, plus this one); else []."""
    superseded_at_network = session.scalars(
        select(Downlink.id).where(
            Downlink.superseded_by == downlink.id,
            Downlink.sent_at.is_not(None),
        )
    ).first()
    if superseded_at_network is None:
        return []
    still_waiting = session.scalars(
        select(Downlink)
        .where(
            Downlink.device_id == downlink.device_id,
            Downlink.state == STATE_SENT,
            Downlink.id != downlink.id,
            _waiting_at_network(),
        )
        .order_by(Downlink.id)
    ).all()
    return [*still_waiting, downlink]


def queued(session: Session, limit: int = 100, now: datetime | None = None, after_id: int = 0) -> list[Downlink]:
    """Downlinks waiting to be pushed and due (not held back by the fair-use limit), oldest first; the
    next page from after_id (the last id of the page before)."""
    now = now or utc_now()
    return list(
        session.scalars(
            select(Downlink)
            .where(Downlink.state == STATE_QUEUED, (Downlink.not_before.is_(None)) | (Downlink.not_before <= now),
                   Downlink.id > after_id)
            .order_by(Downlink.id)
            .limit(limit)
        )
    )


def _push_interrupted(now: datetime) -> Any:
    """A downlink left `sending` past its lease (or with none): its push was interrupted."""
    return (Downlink.state == STATE_SENDING) & (Downlink.lease_until.is_(None) | (Downlink.lease_until < now))


def any_push_interrupted(session: Session, now: datetime | None = None) -> bool:
    """Whether `release_expired_leases` has anything to queue again: a read, so that the outbox's
    usual pass, with nothing to release, takes no write lock (a SQLite store's applier in another
    process then never waits for it)."""
    now = now or utc_now()
    return session.scalar(select(Downlink.id).where(_push_interrupted(now)).limit(1)) is not None


def release_expired_leases(session: Session, now: datetime | None = None) -> int:
    """Downlinks left `sending` by a bridge that died mid-push go back to the queue; how many."""
    now = now or utc_now()
    released = session.execute(
        update(Downlink)
        .where(_push_interrupted(now))
        .values(state=STATE_QUEUED, lease_until=None, last_error="push interrupted; queued again")
    ).rowcount
    if released:
        log.warning("downlinks whose push was interrupted are queued again: %d", released, extra={"released": released})
    return int(released or 0)


def transmissions_today(session: Session, device_id: str, now: datetime) -> tuple[int, datetime | None]:
    """How many downlinks went on air to device_id in the 24 hours before now (the bridge's pushes and
    the network's own resends, `record_transmission`), and the oldest of those times."""
    count, oldest = session.execute(
        select(func.count(), func.min(DownlinkTransmission.at)).where(
            DownlinkTransmission.device_id == device_id, DownlinkTransmission.at > now - timedelta(days=1)
        )
    ).one()
    return int(count or 0), oldest


def forget_push(session: Session, downlink: Downlink) -> None:
    """The network server refused the push of downlink that its claim counted: it did not go on air."""
    newest = session.scalars(
        select(DownlinkTransmission)
        .where(DownlinkTransmission.downlink_id == downlink.id, DownlinkTransmission.cause == TRANSMISSION_PUSH)
        .order_by(DownlinkTransmission.id.desc())
    ).first()
    if newest is not None:
        session.delete(newest)


def record_transmission(session: Session, downlink: Downlink, cause: str, at: datetime | None = None) -> None:
    """One transmission of downlink for its collar's fair-use day (TRANSMISSION_PUSH, TRANSMISSION_RESEND)."""
    session.add(DownlinkTransmission(device_id=downlink.device_id, downlink_id=downlink.id, at=at or utc_now(),
                                     cause=cause))


def mark_sent(downlink: Downlink, network_ref: str | None = None) -> None:
    """The network server accepted the downlink."""
    downlink.state = STATE_SENT
    downlink.sent_at = utc_now()
    downlink.attempts += 1
    downlink.last_error = None
    downlink.lease_until = None
    downlink.network_state = NETWORK_QUEUED
    if network_ref:
        downlink.network_ref = network_ref[:64]


def mark_push_failed(downlink: Downlink, reason: str) -> None:
    """The push failed; retried later until MAX_PUSH_ATTEMPTS."""
    downlink.attempts += 1
    downlink.last_error = reason
    if downlink.attempts >= MAX_PUSH_ATTEMPTS:
        downlink.state = STATE_FAILED


def command_name(codec: Any, f_port: int, command_id: Any) -> str | None:
    """The codec's name of the downlink with this port and command id (first payload byte)."""
    if isinstance(command_id, str):
        return command_id
    for row in getattr(codec, "MESSAGES", ()):
        if row[1] == f_port and row[2] == command_id and row[3] in ("down", "both"):
            return str(row[0])
    return None


def apply_collar_ack(session: Session, codec: Any, device_id: str, fields: dict[str, Any]) -> Downlink | None:
    """A port-31 ack from the collar: mark its oldest sent command of that kind acknowledged."""
    on_port = fields.get("on_port", COMMAND_PORT)
    command = command_name(codec, on_port if isinstance(on_port, int) else COMMAND_PORT, fields.get("cmd"))
    query = select(Downlink).where(
        Downlink.device_id == device_id,
        Downlink.state.in_((STATE_SENT, STATE_UNCONFIRMED, STATE_QUEUED, STATE_SENDING)),
    )
    if command is not None:
        query = query.where(Downlink.command == command)
    seq = fields.get("seq")
    if isinstance(seq, int):
        query = query.where(Downlink.seq == seq)
    downlink = session.scalars(query.order_by(Downlink.id)).first()
    if downlink is None:
        return None
    downlink.state = STATE_ACKNOWLEDGED
    downlink.acked_at = utc_now()
    result = fields.get("result")
    downlink.ack_result = str(result) if result is not None else None
    if downlink.command == ACK_COMMAND:
        _settle_copies(session, downlink)
    return downlink


def _settle_copies(session: Session, acked: Downlink) -> None:
    """The collar confirmed an alert's ack: the other copies of it (the same bytes, pushed again when one
    was unconfirmed, `mark_unconfirmed`) are settled by that: a waiting copy is superseded (not pushed),
    one pushed or unconfirmed is acknowledged with it (it is not sent again)."""
    for row in session.scalars(select(Downlink).where(
            Downlink.device_id == acked.device_id, Downlink.command == ACK_COMMAND, Downlink.id != acked.id,
            Downlink.payload == acked.payload, Downlink.state.in_((STATE_QUEUED, STATE_SENT, STATE_UNCONFIRMED)))):
        if row.state == STATE_QUEUED:
            row.state = STATE_SUPERSEDED
            row.superseded_by = acked.id
        else:
            row.state = STATE_ACKNOWLEDGED
            row.acked_at = acked.acked_at
            row.ack_result = acked.ack_result


@dataclass(frozen=True)
class Due:
    """A pushed downlink `mark_unconfirmed` gives up waiting on, as read by `unconfirmed_due`: its id, its
    push time as stored, and how many uplinks the collar sent since."""

    downlink_id: int
    sent_at: datetime
    heard: int


def mark_unconfirmed(session: Session, due: list[Due], *, now: datetime) -> list[tuple[Downlink, Downlink | None]]:
    """Pushed commands and settings that no word of delivery followed become STATE_UNCONFIRMED, the
    technician's reason in `last_error`; returned with the copy queued when it is sent again
    (RESEND_WHEN_UNCONFIRMED). An alert's ack adds `ack_unconfirmed` to its alert's history, in words a
    ranger reads on a phone (`ranger_unconfirmed`), the technician's reason beside them.

    A class A downlink goes in the receive windows after one of the collar's uplinks, and the collar
    answers it on port 31 in a later one. Some networks never report a downlink's delivery (ChirpStack
    set-ups, The Things Stack without the downlink event messages enabled): such a downlink stayed
    `sent` for ever, an alert's ack looked delivered while the collar went on repeating its alert. Now
    one counts as unconfirmed once the collar has sent `after_uplinks` uplinks since its push, or at
    least one and `after_s` went by, without its ack while the network said nothing of it reaching the
    collar (no report, or queued / sent on air). No uplink, no receive window: a silent collar's
    downlinks still wait. It is not failed: it may yet have arrived (a lost ack uplink), and a late
    port-31 ack still marks it acknowledged.

    due: what `unconfirmed_due` read before this write (the outbox's usual pass, with none due, takes
    no write lock). Each row is read again here, locked, and marked only while it is still `sent` with no
    word of its delivery and the same push: one whose ack, delivery report or new push came in between
    is left as it is. Its uplinks are not counted again: they only grow, so it is still due."""
    read = {entry.downlink_id: entry for entry in due}
    if not read:
        return []
    rows = session.scalars(select(Downlink).where(Downlink.id.in_(list(read)), _awaiting_word())
                           .order_by(Downlink.id).with_for_update()).all()
    marked: list[tuple[Downlink, Downlink | None]] = []
    for row in rows:
        entry = read[row.id]
        if row.sent_at != entry.sent_at:
            continue  # pushed again since it was read: its uplinks are counted from the new push
        heard = entry.heard
        sent_at = as_utc(row.sent_at)
        said = "nothing" if row.network_state in (None, NETWORK_QUEUED) else "it went on air"
        row.state = STATE_UNCONFIRMED
        row.last_error = (f"unconfirmed: no port-31 ack from the collar in {heard} uplink{'' if heard == 1 else 's'} since it was pushed at "
                          f"{sent_at:%Y-%m-%d %H:%M:%S} UTC; the network server said {said}")
        why_not = _why_not_resent(session, row, now)
        copy = None
        if why_not is None:
            copy = _resend(session, row)
            row.last_error += f"; pushed again as downlink {copy.id}"
        else:
            row.last_error += f"; not sent again ({why_not[0]})"
        _tell_alert(session, row, alerts.ACTION_ACK_UNCONFIRMED, ranger_unconfirmed(heard, why_not[1] if why_not else None),
                    resent_as=copy.id if copy is not None else None)
        log.warning("downlink unconfirmed downlink_id=%d device_id=%s command=%s: %s", row.id, row.device_id,
                    row.command, row.last_error, extra={"device_id": row.device_id, "downlink_id": row.id})
        marked.append((row, copy))
    return marked


def _awaiting_word() -> Any:
    """The SQL condition of a pushed command or setting still `sent` with no word of its delivery: no
    port-31 ack, and nothing from the network beyond queued or sent on air (NETWORK_SILENT)."""
    silent = [state for state in NETWORK_SILENT if state is not None]
    return ((Downlink.state == STATE_SENT) & Downlink.f_port.in_(COLLAR_ACKED_PORTS) & Downlink.sent_at.is_not(None)
            & (Downlink.network_state.is_(None) | Downlink.network_state.in_(silent)))


def unconfirmed_due(session: Session, *, after_uplinks: int, after_s: float, now: datetime) -> list[Due]:
    """The pushed downlinks `mark_unconfirmed` gives up waiting on, each with how many uplinks the collar
    sent since its push: a read, so that the outbox's usual pass with none takes no write lock. One
    statement however many wait: each row with the collar's uplinks since its push and its downlinks
    pushed before it still awaiting word (`_waiting_before`), its threshold `cut_off_pushes.uplinks_to_wait`
    (after_uplinks, or sooner for a push whose answer was cut off)."""
    heard = (select(func.count(RawUplink.id))
             .where(RawUplink.device_id == Downlink.device_id, RawUplink.received_at > Downlink.sent_at,
                    RawUplink.duplicate_of.is_(None), RawUplink.f_cnt.is_not(None))
             .correlate(Downlink).scalar_subquery())
    rows = session.execute(select(Downlink.id, Downlink.sent_at, Downlink.last_error, Downlink.network_state,
                                  heard.label("heard"), _waiting_before().label("waiting_before"))
                           .where(_awaiting_word()).order_by(Downlink.id)).all()
    due = []
    for row in rows:
        waited = now - as_utc(row.sent_at) >= timedelta(seconds=after_s)
        if row.heard >= cut_off_pushes.uplinks_to_wait(row, row.waiting_before, after_uplinks) or row.heard and waited:
            due.append(Due(row.id, row.sent_at, row.heard))
    return due


def _waiting_before() -> Any:
    """The SQL count, for a pushed downlink, of its collar's downlinks pushed before it that still await
    word of their delivery (at the network before it, each heard in an earlier receive window)."""
    earlier = aliased(Downlink)
    return (select(func.count(earlier.id))
            .where(earlier.device_id == Downlink.device_id, earlier.id != Downlink.id, earlier.state == STATE_SENT,
                   earlier.sent_at.is_not(None), earlier.sent_at <= Downlink.sent_at,
                   earlier.network_state.is_(None) | (earlier.network_state == NETWORK_QUEUED))
            .correlate(Downlink).scalar_subquery())


# What a ranger reads of an alert's ack in its history (`ack_unconfirmed`, `ack_delivered`,
# `ack_requeued`): the collar repeats its alert until it hears Tembo's ack, "its alert arrived".
# The technician's detail (ports, uplinks, the network's reports) is the downlink's `last_error`, kept
# beside them in the step's detail (`technical`) and listed by GET /api/downlinks.
RANGER_DELIVERED_LATE = "The network now reports that the collar did hear that its alert arrived."
RANGER_REQUEUED = ("The collar reconnected to the network, which dropped the message telling it its alert "
                   "arrived; Tembo is sending it again.")


def ranger_unconfirmed(heard: int | None, why_not: str | None) -> str:
    """`ack_unconfirmed` in a ranger's words: the collar has not confirmed hearing that its alert arrived
    (in how many of its messages since, when known: None for a step stored before 6 December, which the
    dashboard words again), and whether Tembo tells it again (why_not None: it does, `_why_not_resent`;
    '' when it does not, for no reason in her words)."""
    since = "" if heard is None else f" in {'the message' if heard == 1 else f'the {heard} messages'} it has sent since"
    said = f"Tembo told the collar its alert arrived, but the collar has not confirmed hearing it{since}."
    if why_not is None:
        return f"{said} Tembo is telling it again."
    return f"{said} Tembo is not telling it again" + (f": {why_not}." if why_not else ".")


def _tell_alert(session: Session, row: Downlink, action: str, words: str, **detail: Any) -> None:
    """Add action to the history of row's alert (none: nothing), with the ranger's words as its reason
    and the technician's (`last_error`) beside them."""
    if row.alert_id is None:
        return
    alert = session.get(Alert, row.alert_id)
    if alert is None:
        return
    alerts.record_event(session, alert, alerts.SYSTEM_ACTOR, action,
                        {"seq": row.seq, "downlink_id": row.id, "reason": words, "technical": row.last_error,
                         **detail})


def _why_not_resent(session: Session, row: Downlink, now: datetime) -> tuple[str, str] | None:
    """Why an unconfirmed row is not pushed again, for the technician and in a ranger's words, or None
    when it is: a command that may not go twice, one pushed more than RESEND_WITHIN ago (the collar has
    long stopped waiting for it; a store upgraded with months of unreported acks sends none of them
    again), or the same bytes unconfirmed MAX_UNCONFIRMED_RESENDS times already."""
    if row.command not in RESEND_WHEN_UNCONFIRMED:
        return "not a command that may go twice", "a command like this is repeated only by a technician"
    if now - as_utc(row.sent_at) > RESEND_WITHIN:
        return f"pushed more than {RESEND_WITHIN.days} day ago", "it was first sent more than a day ago"
    unconfirmed = session.scalar(select(func.count(Downlink.id)).where(
        Downlink.device_id == row.device_id, Downlink.payload == row.payload,
        Downlink.state == STATE_UNCONFIRMED)) or 0
    if unconfirmed > MAX_UNCONFIRMED_RESENDS:  # this row counts itself
        return (f"unconfirmed {MAX_UNCONFIRMED_RESENDS} times already",
                f"it was sent {MAX_UNCONFIRMED_RESENDS + 1} times, and the collar may not be hearing the network")
    return None


def _resend(session: Session, row: Downlink) -> Downlink:
    """A queued copy of the unconfirmed row (its bytes, alert and seq); `mark_unconfirmed` makes one
    when `_why_not_resent` has no reason against it."""
    copy_id = take_id(session, Downlink)
    copy = Downlink(id=copy_id, device_id=row.device_id, f_port=row.f_port, payload=row.payload,
                    command=row.command, seq=row.seq, alert_id=row.alert_id, state=STATE_QUEUED,
                    correlation_id=f"{CORRELATION_PREFIX}{copy_id}")
    session.add(copy)
    _note_added(session, copy)
    return copy


def find_reported(session: Session, device_id: str | None, event: Any) -> Downlink | None:
    """The downlink a network delivery report is about: by our correlation id, the network's queue
    item id, else the newest one pushed to that collar with the same port and bytes."""
    for correlation in getattr(event, "correlation_ids", ()):
        found = _by_correlation(session, device_id, correlation)
        if found is not None:
            return found
    if getattr(event, "queue_item_id", None):
        found = session.scalars(select(Downlink).where(Downlink.network_ref == event.queue_item_id)).first()
        if found is not None:
            return found
    if device_id is None or getattr(event, "payload", None) is None:
        return None
    return session.scalars(
        select(Downlink)
        .where(
            Downlink.device_id == device_id,
            Downlink.f_port == event.f_port,
            Downlink.payload == event.payload,
            Downlink.sent_at.is_not(None),
        )
        .order_by(Downlink.id.desc())
    ).first()


def _by_correlation(session: Session, device_id: str | None, correlation: str) -> Downlink | None:
    ours = CORRELATION_ID.fullmatch(correlation)
    if ours is None:
        return None
    found = session.get(Downlink, int(ours.group(1)))
    if found is None or (device_id is not None and found.device_id != device_id):
        return None
    return found


def apply_network_report(session: Session, device_id: str | None, event: Any, at: datetime) -> list[Downlink]:
    """Move the reported downlink's network state (queued, sent, acked, nacked, failed, invalidated): the
    downlinks the report names, the one it reports first (none: a downlink Tembo did not send). An
    invalidation names every downlink the network dropped, each back in Tembo's queue to be woken."""
    from lora_bridge.network_messages import (
        KIND_DOWNLINK_ACK,
        KIND_DOWNLINK_FAILED,
        KIND_DOWNLINK_INVALIDATED,
        KIND_DOWNLINK_NACK,
        KIND_DOWNLINK_QUEUED,
        KIND_DOWNLINK_SENT,
    )

    if event.kind == KIND_DOWNLINK_INVALIDATED:
        return _requeue_invalidated(session, device_id, event, at)
    downlink = find_reported(session, device_id, event)
    if downlink is None:
        log.info("delivery report for a downlink Tembo did not send", extra={"device_id": device_id, "event": event.event})
        return []
    state = {
        KIND_DOWNLINK_QUEUED: NETWORK_QUEUED,
        KIND_DOWNLINK_SENT: NETWORK_SENT,
        KIND_DOWNLINK_ACK: NETWORK_ACKED,
        KIND_DOWNLINK_NACK: NETWORK_NACKED,
        KIND_DOWNLINK_FAILED: NETWORK_FAILED,
    }[event.kind]
    if state != NETWORK_FAILED and not _moves_on(downlink, state, at):
        return [downlink]
    if _resent(downlink, state):
        record_transmission(session, downlink, TRANSMISSION_RESEND)
    downlink.network_state = state
    downlink.network_reported_at = at
    if state == NETWORK_NACKED and event.network == SOURCE_CHIRPSTACK and downlink.state == STATE_SENT:
        downlink.state = STATE_QUEUED  # ChirpStack discarded it: nobody else sends it again
    if state == NETWORK_ACKED and downlink.state == STATE_UNCONFIRMED:
        _delivered_late(session, downlink)
    if state == NETWORK_NACKED and downlink.state == STATE_UNCONFIRMED:
        _nacked_while_unconfirmed(downlink, event.network, at)
    if state == NETWORK_FAILED:
        error = event.detail.get("error") or {}
        downlink.last_error = f"network server failed it: {error.get('name') or 'unknown error'}"
        if downlink.state != STATE_ACKNOWLEDGED:
            downlink.state = STATE_FAILED
    log.info(
        "downlink %s at the network downlink_id=%d device_id=%s",
        state,
        downlink.id,
        downlink.device_id,
        extra={"device_id": downlink.device_id, "downlink_id": downlink.id, "network_state": state},
    )
    return [downlink]


def _delivered_late(session: Session, downlink: Downlink) -> None:
    """The network reported an unconfirmed downlink acked: the collar's radio confirmed it got it. It
    reads as a `sent` row with that report does (delivered, the collar's port-31 ack still to come),
    not unconfirmed; a copy of it still waiting in Tembo's queue (an alert's ack queued again,
    `mark_unconfirmed`) is superseded by it, not pushed."""
    downlink.state = STATE_SENT
    downlink.last_error = None
    for copy in session.scalars(select(Downlink).where(
            Downlink.device_id == downlink.device_id, Downlink.command == ACK_COMMAND,
            Downlink.payload == downlink.payload, Downlink.id != downlink.id, Downlink.state == STATE_QUEUED)):
        copy.state = STATE_SUPERSEDED
        copy.superseded_by = downlink.id
    # Its alert's history said it unconfirmed: it says now that the collar got it after all.
    _tell_alert(session, downlink, alerts.ACTION_ACK_DELIVERED, RANGER_DELIVERED_LATE, network_state=NETWORK_ACKED)


# The part of an unconfirmed downlink's reason that says what the network reported of it
# (`mark_unconfirmed`), replaced by a later nack (`_nacked_while_unconfirmed`).
_NETWORK_SAID = re.compile(r"the network server (?:said|reported) [^;]*")


def _nacked_while_unconfirmed(downlink: Downlink, network: str, at: datetime) -> None:
    """The network reports an unconfirmed downlink nacked: it went on air and the collar's radio did not
    acknowledge it (The Things Stack's downlink_nack; ChirpStack's `ack` with `acknowledged: false`, the
    queue item timed out). It stays unconfirmed, since the collar may have it with its answer lost, and
    is not pushed again by this report: an alert's ack copy already goes (or the bridge stopped sending
    copies, with why), and a command that may not go twice waits for the technician. Its reason now says
    what the network reported, instead of "said nothing": The Things Stack sends it again by itself (a
    later ack makes it delivered, `_delivered_late`); ChirpStack dropped it from the collar's queue."""
    when = f"{as_utc(at):%Y-%m-%d %H:%M:%S} UTC"
    if network == SOURCE_CHIRPSTACK:
        reported = (f"the network server reported at {when} that the collar did not acknowledge it in time "
                    "(ChirpStack ack, acknowledged false): it went on air and ChirpStack dropped it from the queue")
    else:
        reported = (f"the network server reported at {when} that the collar did not acknowledge it "
                    "(downlink_nack): it went on air, and The Things Stack sends it again by itself")
    error = downlink.last_error or ""
    downlink.last_error = (_NETWORK_SAID.sub(lambda _m: reported, error, count=1) if _NETWORK_SAID.search(error)
                           else f"{error}; {reported}" if error else reported)


def _resent(downlink: Downlink, state: str) -> bool:
    """True when a report of state says the network sent downlink again by itself: any round's report
    (sent, or acked / nacked when that round's sent report was lost) after a nack of a downlink still
    with the network, unconfirmed ones too (TTS re-queues it; a ChirpStack discard puts a sent one back
    in Tembo's queue instead, and its push is counted, and leaves an unconfirmed one dropped)."""
    return (downlink.state in (STATE_SENT, STATE_ACKNOWLEDGED, STATE_UNCONFIRMED)
            and downlink.network_state == NETWORK_NACKED
            and state in (NETWORK_SENT, NETWORK_ACKED, NETWORK_NACKED))


def _moves_on(downlink: Downlink, state: str, at: datetime) -> bool:
    """True when a report of state at `at` tells more than the downlink's last one: it got further, or
    as far again later (sent or nacked once more after a nack: the network sends a nacked downlink
    again). A report of an earlier round delivered late, or anything after the collar's ack or the
    network's failure, is not."""
    current = downlink.network_state
    if current == NETWORK_FAILED:
        return False
    if current not in _REPORT_RANK or state not in _REPORT_RANK:
        return True
    if _REPORT_RANK[state] != _REPORT_RANK[current]:
        return _REPORT_RANK[state] > _REPORT_RANK[current]
    last = downlink.network_reported_at
    return last is None or at >= as_utc(last)


def _waiting_at_network() -> Any:
    """The SQL condition of NETWORK_WAITING."""
    reported = [state for state in NETWORK_WAITING if state is not None]
    return (Downlink.network_state.is_(None)) | (Downlink.network_state.in_(reported))


def requeue_flushed_on_join(session: Session, device_id: str, at: datetime) -> list[Downlink]:
    """The collar joined its ChirpStack network at `at`: ChirpStack v4 flushes a device's queue when it
    activates (OTAA join, ABP activation) if its device profile says `flush_queue_on_activate` (the
    console's default), and reports nothing for the items it dropped: no txack, no ack ever comes for
    them. What Tembo pushed there before the join and ChirpStack had not sent yet (no txack) goes back
    to Tembo's queue, with the reason, and is pushed again in the new session; that push never went on
    air, so it leaves the collar's fair-use day. An update delivery's set-up and fragments of the old
    session are then dropped by `fuota_delivery.apply_rejoin`, which sets the collar up again."""
    pushed = session.scalars(select(Downlink).where(
        Downlink.device_id == device_id, Downlink.state.in_((STATE_SENT, STATE_UNCONFIRMED)),
        # ChirpStack holds no nacked item: it dropped it when it reported it (`_nacked_while_unconfirmed`)
        Downlink.network_state.is_(None) | (Downlink.network_state == NETWORK_QUEUED),
        Downlink.sent_at.is_not(None)).order_by(Downlink.id)).all()
    flushed = f"ChirpStack flushed the collar's queue when it joined at {as_utc(at):%Y-%m-%d %H:%M:%S} UTC"
    rows = [row for row in pushed if as_utc(row.sent_at) <= as_utc(at) and _requeue_flushed(session, row, at, flushed)]
    for row in rows:
        forget_push(session, row)
    if rows:
        log.warning("device_id=%s joined: %d downlinks ChirpStack had not sent yet are pushed again (%s)", device_id,
                    len(rows), ", ".join(str(row.id) for row in rows), extra={"device_id": device_id})
    return rows


def _requeue_invalidated(session: Session, device_id: str | None, event: Any, at: datetime) -> list[Downlink]:
    """The network dropped its queue for the collar (new session): what Tembo had there goes again. Every
    downlink the report names (or, naming none of Tembo's, every one waiting there), by id: each is woken
    in the outbox, not only the first (until 6 December the others waited for the next full flush)."""
    found = (_by_correlation(session, device_id, correlation) for correlation in event.correlation_ids)
    rows = [row for row in found if row is not None]
    if not rows and device_id is not None:
        rows = list(session.scalars(select(Downlink).where(
            Downlink.device_id == device_id,
            Downlink.state.in_((STATE_SENT, STATE_UNCONFIRMED)),
            _waiting_at_network(),
        ).order_by(Downlink.id)))
    for row in rows:
        if row.state == STATE_SENT:
            row.state = STATE_QUEUED
            row.network_state = NETWORK_INVALIDATED
            row.network_reported_at = at
        elif row.state == STATE_UNCONFIRMED and row.network_state in NETWORK_WAITING:
            _requeue_flushed(session, row, at, "The Things Stack invalidated the collar's downlink queue "
                                               f"at {as_utc(at):%Y-%m-%d %H:%M:%S} UTC")
    return rows


def _requeue_flushed(session: Session, row: Downlink, at: datetime, flushed: str) -> bool:
    """The network dropped row from the collar's queue at a new session (`requeue_flushed_on_join`,
    `_requeue_invalidated`); True when it goes back to Tembo's queue. A `sent` row does, with the
    reason: the network never put it on air. So does an unconfirmed one (it waited there, no report of
    it going on air: the collar's silence was the network's), except an alert's ack whose copy
    (`mark_unconfirmed`) is waiting or pushed (that copy goes, once), and a command that may not go
    twice after the network sent it once (nacked: the collar may have it, its answer lost), left to the
    technician as when it went unconfirmed. Either way `network_state` is invalidated and the technician
    reads in `last_error` what became of it."""
    was, on_air = row.state, row.network_state == NETWORK_NACKED
    row.network_state = NETWORK_INVALIDATED
    row.network_reported_at = at
    if was == STATE_UNCONFIRMED:
        copy = _waiting_copy(session, row)
        if copy is not None:
            row.last_error = f"{row.last_error}; {flushed}: its copy, downlink {copy.id}, goes instead"
            return False
        if on_air and row.command not in RESEND_WHEN_UNCONFIRMED:
            row.last_error = (f"{row.last_error}; {flushed}: not sent again (it went on air once and is not a "
                              "command that may go twice)")
            return False
    row.state = STATE_QUEUED
    row.last_error = flushed + ("; it was unconfirmed, and goes again in the new session" if was == STATE_UNCONFIRMED
                                else "")
    if was == STATE_UNCONFIRMED:  # its alert's history said it unconfirmed: it says now that it goes again
        _tell_alert(session, row, alerts.ACTION_ACK_REQUEUED, RANGER_REQUEUED, network_state=NETWORK_INVALIDATED)
    return True


def _waiting_copy(session: Session, row: Downlink) -> Downlink | None:
    """Another copy of an alert's ack row (the same bytes) still to be pushed or on its way: a later one
    (`mark_unconfirmed`), or one a rejoin just put back in the queue (`_requeue_flushed`: of an ack
    unconfirmed four times, one goes again, not all four)."""
    if row.command != ACK_COMMAND:
        return None
    return session.scalars(select(Downlink).where(
        Downlink.device_id == row.device_id, Downlink.command == ACK_COMMAND, Downlink.payload == row.payload,
        Downlink.id != row.id, Downlink.state.in_((STATE_QUEUED, STATE_SENDING, STATE_SENT)),
    ).order_by(Downlink.id)).first()
