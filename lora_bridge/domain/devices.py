"""Collars and the animals wearing them: who sent this uplink, and what it said about itself.

A collar is its DevEUI; one without (a TTS ABP device) is its name within its application and
network scope (tenant, else cluster). Its `device_id` is the name it was first heard under (when that
name already belongs to another collar: the DevEUI, else `application/name`, `collar_keys`) and
stays when the network renames it; the network's current name is its `label`. Frame counters are
counted per session: a join starts a new one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.domain import rules_cursors
from lora_bridge.errors import InvalidHerdChange, MalformedUplink, UnknownDevice
from lora_bridge.store import bulk
from lora_bridge.store.ids import take_id
from lora_bridge.store.plain_changes import change_columns
from lora_bridge.store.row_values import ColumnReads
from lora_bridge.store.tables import Animal, CollarFitting, Device
from lora_bridge.uplink_formats import Uplink, eui_or_none

log = logging.getLogger(__name__)

DEFAULT_SPECIES = "Loxodonta africana"

STATUS_FIELDS = (
    "battery_mv",
    "temperature_c",
    "fw_version",
    "model_version",
    "uptime_h",
    "reset_cause",
    "behaviour",
    "queue_depth",
    "errors",
)


# session.info keys: what a unit of work (a batch of uplinks) has looked up already, so the collars
# and animals of a batch are read once, not once per uplink.
DEVICES_BY_EUI = "tembo_devices_by_eui"
ANIMALS_BY_DEVICE = "tembo_animals_by_device"
# session.info: {device_id: collar} of the collars this unit of work created (first heard in it), added
# without a flush (the batch's next one writes them): a later look for one finds it here
CREATED = "tembo_collars_created"
# session.info: (DevEUIs, device_ids) of a batch's uplinks that no stored collar held when the batch read
# its collars (`pipeline.read_batch`, SQLite only, whose write transaction excludes every other writer):
# the collar `resolve_device` looks for under one of them, only this unit of work can have made since.
UNSTORED = "tembo_collars_unstored"

# The longest name a collar is filed under (`devices.device_id`).
MAX_DEVICE_ID = Device.__table__.c.device_id.type.length

# Deliveries arrive a few frames out of order at most; a counter this far below the last one, heard
# later, means the collar started a new session (a rejoin whose join message we did not get).
FCNT_REORDER_WINDOW = 64
# A join within this time of the start of a session the bridge began from a frame-counter reset is
# that session's join (a session a join began ends at the next join, however soon: a rejoin).
JOIN_MATCH_WINDOW = timedelta(minutes=10)
# A message whose own time is this much older than its reception waited in the collar's flash queue.
BACKFILL_AGE = timedelta(hours=6)


def collar_with_eui(session: Session, dev_eui: str) -> Device | None:
    """The collar with this DevEUI (the first by device_id, should two names hold it), else None."""
    return session.scalars(select(Device).where(Device.dev_eui == dev_eui).order_by(Device.device_id)).first()


def collar_named(session: Session, name: str) -> Device:
    """The collar the bridge files under name, else the one whose DevEUI name is (any case, with or
    without separators: `70b3d57ed0000c01`, `70-B3-D5-7E-D0-00-0C-01`); UnknownDevice when none is."""
    device = session.get(Device, name)
    if device is not None:
        return device
    try:
        dev_eui = eui_or_none(name, "device")
    except MalformedUplink:
        dev_eui = None
    if dev_eui is not None:
        device = collar_with_eui(session, dev_eui)
        if device is not None:
            return device
    raise UnknownDevice(f"no collar {name!r} (neither a device id nor a DevEUI the bridge has heard)")


def collar_keys(label: str, application_id: str | None, network_scope: str | None) -> tuple[str, ...]:
    """The names a collar called label may be filed under, in the order they are given out: the
    label; when that is another collar's (a device of the same name in another application: TTS
    device ids are unique only within their application), `application/label`; when that is too (the
    same application id in another tenant or cluster), `application@scope/label`. Each is cut to the
    column with a digest of the whole when longer."""
    keys = [label]
    if application_id:
        keys.append(_fitted(f"{application_id}/{label}"))
        if network_scope:
            keys.append(_fitted(f"{application_id}@{network_scope}/{label}"))
    return tuple(keys)


def _fitted(key: str) -> str:
    """key, or its head and a digest of the whole when it is longer than a device id may be."""
    if len(key) <= MAX_DEVICE_ID:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{key[: MAX_DEVICE_ID - 17]}~{digest}"


def same_collar(device: Device, *, dev_eui: str | None, application_id: str | None,
                network_scope: str | None) -> bool:
    """False when what device is known by contradicts what a message says of its sender: another
    DevEUI, or another application or network scope (tenant, cluster). A name is a label: a collar
    without a DevEUI is its name within its application, so the same name in another application is
    another collar. What either side leaves unsaid (a field-masked body, a collar registered before it
    was heard) contradicts nothing."""
    # each mapped attribute read once (a batch asks this of every uplink's collar)
    if dev_eui and (held := device.dev_eui) and held != dev_eui:
        return False
    if application_id and (held := device.application_id) and held != application_id:
        return False
    return not (network_scope and (held := device.network_scope) and held != network_scope)


def named_collar(filed_under: Callable[[str], Device | None], label: str, *, dev_eui: str | None,
                 application_id: str | None, network_scope: str | None) -> Device | None:
    """The collar filed under one of label's names (`collar_keys`, filed_under looking one up) that is
    the sender (`same_collar`), else None."""
    for key in collar_keys(label, application_id, network_scope):
        candidate = filed_under(key)
        if candidate is None and key == label:
            return None  # a name no collar holds has given out none of its others (collars stay)
        if candidate is not None and same_collar(candidate, dev_eui=dev_eui, application_id=application_id,
                                                 network_scope=network_scope):
            return candidate
    return None


def name_holders(filed_under: Callable[[str], Device | None], label: str, application_id: str | None,
                 network_scope: str | None) -> dict[str, Device | None]:
    """label's names (`collar_keys`) up to the first free one, each with the collar filed under it."""
    holders: dict[str, Device | None] = {}
    for key in collar_keys(label, application_id, network_scope):
        holders[key] = filed_under(key)
        if holders[key] is None and key == label:
            break  # the collar's own name is free: it is filed under it
    return holders


def new_collar_key(holders: dict[str, Device | None], *, label: str | None, dev_eui: str | None,
                   network: str | None, application_id: str | None, network_scope: str | None) -> str:
    """The name a collar heard for the first time is filed under, given its names' holders
    (`name_holders`): its label when free; else its DevEUI, or for a collar without one, the name
    that says what tells it apart (its tenant when the other collar's application has the same id, in
    another tenant; else its application)."""
    free = [key for key, held in holders.items() if held is None]
    if dev_eui:
        return label if label and label in free else dev_eui
    if free:
        same_application = any(held is not None and held.application_id == application_id for held in holders.values())
        return free[-1] if same_application else free[0]
    if label:  # every name taken by another collar: one of its own, from all it is known by
        return _fitted(f"{network}:{network_scope}:{application_id}/{label}~")
    raise ValueError("a collar needs a DevEUI or a name")


def resolve_device(
    session: Session,
    *,
    dev_eui: str | None,
    label: str | None,
    network: str | None = None,
    application_id: str | None = None,
    network_scope: str | None = None,
    first_seen: datetime | None = None,
) -> Device:
    """The collar with this DevEUI, else the one filed under this label (`collar_keys`) that is the
    same collar (`same_collar`); created on first sight."""
    device = reads = None
    known = session.info.setdefault(DEVICES_BY_EUI, {})  # DevEUI -> collar, for this unit of work
    created: dict[str, Device] = session.info.setdefault(CREATED, {})
    unstored_euis, unstored_ids = session.info.get(UNSTORED, ((), ()))
    held_eui = True
    looked: dict[str, Device | None] = {}  # label's names looked up with the DevEUI (`_collar_and_names`)
    if dev_eui:
        device = known.get(dev_eui)
        # the collar's columns read once (`ColumnReads`), not through its mapped attributes at each use
        reads = _RESOLVE_READS(device) if device is not None else None
        if reads is None or reads[0] != dev_eui:
            reads = None
            device = next((d for d in created.values() if d.dev_eui == dev_eui), None)
            if device is None and dev_eui not in unstored_euis:
                with session.no_autoflush:  # collars created here are in `created`, changes of this batch in `known`
                    device, looked = _collar_and_names(session, dev_eui, label, application_id, network_scope,
                                                       created, unstored_ids)
                # the store's DevEUI: the collar may hold another since, unflushed
                held_eui = False

    if device is None:  # not known by its DevEUI (nearly every uplink is): by its names, else a new collar
        device = _named_or_new(session, created, unstored_ids, looked, dev_eui=dev_eui, label=label, network=network,
                               application_id=application_id, network_scope=network_scope, first_seen=first_seen)
        held_eui = False
    held, held_label, held_application, held_scope, held_network, held_first_seen, held_session, device_id = \
        reads if reads is not None else _RESOLVE_READS(device)
    # a collar found in `known` or `created` by its DevEUI was just read holding it: not read again
    if dev_eui and not held_eui and held != dev_eui:
        device.dev_eui = held = dev_eui
    if label and held_label != label:
        if held_label is not None:
            log.info(
                "collar renamed device_id=%s label=%s was=%s",
                device_id,
                label,
                held_label,
                extra={"device_id": device_id, "label": label},
            )
        device.label = label
    # Set only what changes: every set of a mapped attribute costs the ORM's bookkeeping, even of
    # the value it holds already.
    if application_id and held_application != application_id:
        device.application_id = application_id
    if network_scope and held_scope != network_scope:
        device.network_scope = network_scope
    if network and held_network != network:
        device.network = network
    if held_first_seen is None:
        device.first_seen = first_seen
    if held_session is None:
        device.session = 0
    if dev_eui:
        known[dev_eui] = device
    if unstored_euis or unstored_ids:  # what this unit of work made or changed is looked for again, as ever
        unstored_euis.discard(dev_eui)
        if not dev_eui:  # else the collar holds dev_eui
            unstored_euis.discard(held)
        unstored_ids.discard(label)
        unstored_ids.discard(device_id)
    return device


_RESOLVE_READS = ColumnReads("dev_eui", "label", "application_id", "network_scope", "network", "first_seen",
                             "session", "device_id")


def _collar_and_names(session: Session, dev_eui: str, label: str | None, application_id: str | None,
                      network_scope: str | None, created: dict[str, Device],
                      unstored_ids: Any) -> tuple[Device | None, dict[str, Device | None]]:
    """The collar with dev_eui (as `collar_with_eui` finds it), and the collar filed under each of label's
    names (`collar_keys`) not made in this unit of work nor known to be unstored (None: no collar), in one
    statement: a collar the batch's read did not find (on PostgreSQL, where another worker may have filed
    it since) looked for once, not once by its DevEUI and once by its name."""
    names = [key for key in collar_keys(label, application_id, network_scope)
             if key not in created and key not in unstored_ids] if label else []
    if not names:
        return collar_with_eui(session, dev_eui), {}
    holds_eui = Device.dev_eui == dev_eui
    rows = session.execute(select(Device, holds_eui).where(holds_eui | Device.device_id.in_(names))
                           .order_by(Device.device_id)).all()
    looked: dict[str, Device | None] = dict.fromkeys(names)
    for device, _ in rows:
        if device.device_id in looked:
            looked[device.device_id] = device
    return next((device for device, by_eui in rows if by_eui), None), looked


def _named_or_new(
    session: Session,
    created: dict[str, Device],
    unstored_ids: Any,
    looked: dict[str, Device | None],
    *,
    dev_eui: str | None,
    label: str | None,
    network: str | None,
    application_id: str | None,
    network_scope: str | None,
    first_seen: datetime | None,
) -> Device:
    """`resolve_device`'s collar when none has the DevEUI: the one filed under label that is the same
    collar (`same_collar`), else a new one (added to the session and to created). looked: the collars filed
    under label's names as `_collar_and_names` found them, filled as the others are looked up (each once)."""

    def filed_under(name: str) -> Device | None:
        if name not in looked:
            looked[name] = created.get(name) or (None if name in unstored_ids else session.get(Device, name))
        return looked[name]

    ids = {"dev_eui": dev_eui, "application_id": application_id, "network_scope": network_scope}
    device = named_collar(filed_under, label, **ids) if label else None
    if device is not None:
        return device
    # None of the names named_collar looked at holds this collar. Another worker filing it meanwhile
    # (PostgreSQL) files it under the key given out below, so the insert of a second one fails and the
    # batch goes the two-step way, which finds it.
    holders = name_holders(filed_under, label, application_id, network_scope) if label else {}
    key = new_collar_key(holders, label=label, dev_eui=dev_eui, network=network, application_id=application_id,
                         network_scope=network_scope)
    # made with what the message says of it (`resolve_device` then finds nothing to change): inserted so,
    # not inserted then updated (PostgreSQL writes a new collar at once, below)
    device = Device(device_id=key, first_seen=first_seen, reported_settings={}, session=0, dev_eui=dev_eui,
                    label=label, application_id=application_id, network_scope=network_scope, network=network)
    if session.info.get(bulk.FOREIGN_KEYS_DEFERRED):
        # a new herd's collars held back till the batch needs them (`bulk.defer_add`), then written
        # together by one insert, as their placeholder animals are (`ensure_animal`): not by the flush
        bulk.defer_add(session, [device])
        # its rule cursor known without a read: a collar just filed has none stored (SQLite's batch, no
        # other writer meanwhile), kept for its rules as the batch's found collars' are (`rules_cursors`)
        rules_cursors.keep_read(session, {key: rules_cursors.Cursor(key, False)})
    else:
        session.add(device)
        session.flush()
    created[key] = device
    log.info("new collar heard device_id=%s dev_eui=%s application_id=%s", key, dev_eui, application_id,
             extra={"device_id": key, "dev_eui": dev_eui, "application_id": application_id})
    return device


def session_for_uplink(device: Device, f_cnt: int, heard_at: datetime) -> int:
    """The session frame f_cnt heard at heard_at belongs to (a new one on a reset without a join)."""
    joined_at, session, last, last_seen = _SESSION_READS(device)
    if joined_at is not None and heard_at < joined_at and session > 0:
        return session - 1  # a frame of the previous session, delivered late
    if last is not None and f_cnt + FCNT_REORDER_WINDOW < last and (last_seen is None or heard_at >= last_seen):
        start_session(device, heard_at, reason="frame counter reset")
        return device.session
    return session


_SESSION_READS = ColumnReads("joined_at", "session", "last_f_cnt", "last_seen")


def start_session(device: Device, at: datetime, reason: str) -> None:
    """A new session: the frame counter restarts, so the last counter is no longer the expectation."""
    device.session = (device.session or 0) + 1
    device.joined_at = at
    device.last_f_cnt = None
    log.info(
        "collar session %d device_id=%s: %s",
        device.session,
        device.device_id,
        reason,
        extra={"device_id": device.device_id, "session": device.session},
    )


def apply_join(device: Device, at: datetime, *, session_joined: bool) -> bool:
    """A join (accept) at `at`; True when it started a new session (not the one already begun, nor
    an older one). session_joined: the collar's current session began with a join the bridge heard;
    then a later join is a rejoin (a brown-out, a watchdog reset minutes after joining) and begins a
    new session: taken for the first session's join, the new session's frames were filed in the old
    one, and a frame of it like one sent before the rejoin (a boot status) dropped as its copy."""
    if not session_joined and device.joined_at is not None and abs(at - device.joined_at) <= JOIN_MATCH_WINDOW:
        return False  # the reset was already seen from the frame counter; this is its join
    return apply_reset(device, at, reason="join")


def apply_reset(device: Device, at: datetime, reason: str) -> bool:
    """A new session at `at` (a join, a network's frame-counter reset report), unless the collar's
    current session began at or after it; True when it started one."""
    if device.joined_at is not None and at <= device.joined_at:
        # Delivered again or late (a webhook retry, an MQTT redelivery, a replay): the collar's
        # current session began since. Starting one here put every later frame in a session of its
        # own, so a copy of a frame delivered again afterwards was applied twice.
        log.info(
            "%s at %s is not after the start of session %d of device_id=%s (%s): no new session",
            reason, at.isoformat(), device.session, device.device_id, device.joined_at.isoformat(),
            extra={"device_id": device.device_id, "session": device.session},
        )
        return False
    start_session(device, at, reason=reason)
    return True


def is_backfilled(message_time: datetime, heard_at: datetime) -> bool:
    """True when a message waited in the collar's flash queue before it was heard."""
    return heard_at - message_time > BACKFILL_AGE


def device_for_uplink(session: Session, uplink: Uplink, heard_at: datetime, resolved: Device | None = None) -> Device:
    """The collar that sent uplink (created on first sight), updated with what this uplink says of it.
    resolved: the collar `resolve_device` just gave for uplink (filed under uplink.device_id, given the
    uplink's DevEUI, application, scope, source as network and heard_at as first sight), which is what
    looking it up by that id finds and already says what uplink does: neither looked up nor checked again
    (a batch's every uplink)."""
    reads = _HEARD_READS(resolved) if resolved is not None else None
    if reads is not None and reads[0] == uplink.device_id:
        # resolve_device, given this uplink's DevEUI, application, scope, network and heard_at, made the
        # collar say what the uplink says of its sender (and dated its first sight): asked again, each of
        # those mapped attributes would be read once more for nothing, at every uplink of a batch
        device = resolved
        if not uplink.source and device.network != uplink.source:
            device.network = uplink.source
    else:
        device = _heard_collar(session, uplink, heard_at)
        reads = _HEARD_READS(device)
    _, last_seen, last_f_cnt, last_rssi_dbm, last_snr_db = reads
    if last_seen is None or heard_at >= last_seen:
        # set only what changes (see resolve_device): the values were read with last_seen, for no call;
        # the changes kept together outside the ORM's history (`plain_changes`)
        changes = {}
        if last_seen != heard_at:
            changes["last_seen"] = heard_at
        if last_f_cnt != uplink.f_cnt:
            changes["last_f_cnt"] = uplink.f_cnt
        if last_rssi_dbm != uplink.best_rssi_dbm:
            changes["last_rssi_dbm"] = uplink.best_rssi_dbm
        if last_snr_db != uplink.best_snr_db:
            changes["last_snr_db"] = uplink.best_snr_db
        if changes:
            change_columns(session, device, changes)
    return device


_HEARD_READS = ColumnReads("device_id", "last_seen", "last_f_cnt", "last_rssi_dbm", "last_snr_db")


def _heard_collar(session: Session, uplink: Uplink, heard_at: datetime) -> Device:
    """The collar filed under uplink.device_id when it is the sender (`same_collar`), else the one
    `resolve_device` finds or creates, made to say what uplink says of its sender."""
    device = session.info.get(CREATED, {}).get(uplink.device_id) or session.get(Device, uplink.device_id)
    if device is None or not same_collar(device, dev_eui=uplink.dev_eui, application_id=uplink.application_id,
                                         network_scope=uplink.network_scope):
        device = resolve_device(
            session,
            dev_eui=uplink.dev_eui,
            label=uplink.device_id,
            network=uplink.source,
            application_id=uplink.application_id,
            network_scope=uplink.network_scope,
            first_seen=heard_at,
        )
    if device.first_seen is None:
        device.first_seen = heard_at
    if uplink.dev_eui and device.dev_eui != uplink.dev_eui:  # set only what changes (see resolve_device)
        device.dev_eui = uplink.dev_eui
    if uplink.application_id and device.application_id != uplink.application_id:
        device.application_id = uplink.application_id
    if uplink.network_scope and device.network_scope != uplink.network_scope:
        device.network_scope = uplink.network_scope
    if device.network != uplink.source:
        device.network = uplink.source
    return device


def _flush_unless_keys_checked_at_commit(session: Session) -> None:
    """Write a new collar or animal now unless the transaction checks foreign keys at its commit (a
    SQLite batch, `bulk.defer_foreign_keys`): there it waits for the batch's next flush, which writes
    its new collars together. Elsewhere the rows that refer to it (its alerts, its fixes) may be
    flushed before it: the unit of work orders tables by relationships, and these have none."""
    if not session.info.get(bulk.FOREIGN_KEYS_DEFERRED):
        session.flush()


def ensure_animal(session: Session, device: Device) -> Animal:
    """The animal wearing device; a placeholder named after the collar until one is registered."""
    known = session.info.setdefault(ANIMALS_BY_DEVICE, {})  # device id -> animal, for this unit of work
    # the loaded rows' columns read from their dicts without the attributes' calls (every uplink); a column
    # a row does not hold (an expired row) through its attribute, as `ColumnReads` does
    held = device.__dict__
    device_id = held["device_id"] if "device_id" in held else device.device_id
    animal = known.get(device_id)
    # A collar this unit of work created has no stored animal to read (an animal refers to a stored
    # collar): only one made here, which `known` holds.
    first_heard = animal is None and device_id in session.info.get(CREATED, ())
    if animal is not None:
        held = animal.__dict__
        worn = held["device_id"] if "device_id" in held else animal.device_id
    if not first_heard and (animal is None or worn != device_id):
        with session.no_autoflush:  # animals made in this unit of work are in `known`
            animal = session.scalars(select(Animal).where(Animal.device_id == device.device_id)).first()
    if animal is None:
        # A collar taken off an animal (`herd.take_off`) is held by this placeholder since it came off, a
        # record of its time in stock, no animal (`Animal.holds_collar_in_stock`): a message dated before
        # that is of the animal that wore it (`herd.wearer_at`).
        came_off = None if first_heard else session.scalar(
            select(CollarFitting.removed_at).where(CollarFitting.device_id == device.device_id)
            .order_by(CollarFitting.removed_at.desc()).limit(1))
        animal = Animal(id=take_id(session, Animal), name=device.device_id, species=DEFAULT_SPECIES,
                        device_id=device.device_id, collar_fitted_at=came_off,
                        holds_collar_in_stock=not first_heard and device.taken_off_at is not None)
        if first_heard and session.info.get(bulk.FOREIGN_KEYS_DEFERRED):
            # a new herd's placeholders held back till the batch needs them (`bulk.defer_add`), then
            # written together: one insert for the batch's new animals, not one flush each
            bulk.defer_add(session, [animal])
        else:
            session.add(animal)
            _flush_unless_keys_checked_at_commit(session)
    known[device_id] = animal
    return animal


def register_animal(
    session: Session, device_id: str, name: str, species: str = DEFAULT_SPECIES, sex: str | None = None
) -> Animal:
    """Name the animal wearing device_id (creating the collar record if it was never heard). Not for a
    collar in stock, worn by nobody: registering an animal on it is a fitting (`herd.register_animal`)."""
    device = session.get(Device, device_id)
    if device is None:
        device = Device(device_id=device_id, reported_settings={})
        session.add(device)
        session.flush()
    if device.taken_off_at is not None:
        raise InvalidHerdChange(f"collar {device_id} is in stock: an animal registered on it is fitted with it")
    animal = ensure_animal(session, device)
    animal.name = name
    animal.species = species
    animal.sex = sex
    log.info("animal registered", extra={"device_id": device_id, "animal": name})
    return animal


@cache
def status_flag_names(codec: Any) -> tuple[str, ...]:
    """Names of the one-bit flags a status carries (codec.STATUS_FLAGS), spare bits left out; read once a
    codec (a codec's table never changes), not at every status."""
    return tuple(row[0] for row in getattr(codec, "STATUS_FLAGS", ()) if row[0] != "spare")


def apply_status(session: Session, device: Device, fields: dict[str, Any], time: datetime, codec: Any, *,
                 named_behaviour: str | None) -> None:
    """Record what a status message says about the collar (battery, versions, behaviour, ...);
    named_behaviour: the behaviour it reports named by its model's classes (`activity.status_behaviour`),
    stored in place of the wire's."""
    held = dict(zip(_STATUS_READ_NAMES, _STATUS_READS(device), strict=True))  # one read, not one an attribute
    status_time = held["status_time"]
    if status_time is not None and time < status_time:
        return  # an older status arriving late (store-and-forward) does not overwrite a newer one
    changes: dict[str, Any] = {} if status_time == time else {"status_time": time}
    for name in STATUS_FIELDS:
        if name in fields:
            value = fields[name]
            if name == "fw_version" and value is not None:
                value = str(value)
            elif name == "behaviour":
                value = named_behaviour
            if held[name] != value:  # set only what changes (see resolve_device)
                changes[name] = value
    flags = {name: bool(fields[name]) for name in status_flag_names(codec) if name in fields}
    if held["flags"] != flags:
        changes["flags"] = flags
    if changes:
        change_columns(session, device, changes)  # together, outside the ORM's history (`plain_changes`)


_STATUS_READ_NAMES = ("status_time", "flags", *STATUS_FIELDS)
_STATUS_READS = ColumnReads(*_STATUS_READ_NAMES)


def apply_settings(device: Device, fields: dict[str, Any]) -> None:
    """Remember the settings the collar reported (port 3)."""
    reported = dict(device.reported_settings or {})
    for key, value in fields.items():
        if key not in ("message", "port"):
            reported[key] = value
    device.reported_settings = reported
