"""Update campaigns: which collars get a signed update, in what order, and when to stop.

A campaign targets all collars, a list of them, or a group: the collars worn by the animals of one
species (`species`, as registered with the animal; the group is resolved when the campaign starts
and kept as its list). A canary share (canary_pct, at least one
collar, picked by a stable hash of the device id so a re-run picks the same, among the collars
the gates let through first) is updated first;
the rest waits until every canary has answered. When more canaries fail than
max_canary_failures_pct allows, the campaign stops itself. Gates keep collars out while their
battery is below min_battery_mv, their last RSSI below min_rssi_dbm or their last uplink's
spreading factor above max_spreading_factor (read from that stored uplink; they are "gated" and
re-checked at each evaluation). A collar whose status says it already runs the campaign's version
or a newer one is left out ("current"): it would refuse the image as a downgrade after the whole
transfer. A firmware delta (`tembo release firmware --base`) is built against one version: a collar
whose status says it runs another is left out ("skipped", with both versions), as it would refuse
the delta (wrong_base) after the whole transfer, and one that has not said what it runs waits
("gated"); a campaign none of whose collars runs the base is refused (send the whole image). A
technician pauses, resumes or aborts; every change is a campaign event. An abort ends every collar
still in the campaign: one nothing was sent to (waiting, gated) is "skipped" (ABORTED), one whose
delivery had started ("sending") is "unknown" (it may have taken the update or not) until a status
naming the campaign's image settles it, or until its delivery ends with nothing of it ever pushed
("skipped" then, `nothing_reached`). Results arrive as the collar's port-31 ack for port 201, or
its status (`record_ack`).

What an update is (kind, version, hardware) is read from the signed image's own header
(`identify`), the one the collar checks, never typed again by hand.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from collar_firmware import config as collar_config
from collar_firmware import update_image
from lora_bridge.domain import campaigns_tracked_refusals
from lora_bridge.store import bulk
from lora_bridge.store.tables import (
    Animal,
    CampaignCollar,
    CampaignEvent,
    Device,
    FuotaCollar,
    RawUplink,
    UpdateCampaign,
    UpdateResult,
)
from lora_bridge.store.utc import as_utc, utc_now

log = logging.getLogger(__name__)

ACTIVE = ("canary", "rolling")
UNFINISHED = ACTIVE + ("paused", "stopped")  # may still send to its collars (a stopped one may resume)
ENDED = ("done", "aborted", "stopped")  # its delivery's multicast group is taken down (a stopped one may resume)
UNKNOWN = "unknown"  # aborted while its delivery had started: whether it took the update is not known
FINAL_COLLAR_STATES = ("updated", "failed", "current", "skipped", UNKNOWN)
NOT_SENT = ("current", "skipped")  # final before anything was sent: the delivery leaves them out
STEPS = {"pause": ACTIVE, "resume": ("paused", "stopped"), "abort": UNFINISHED}  # a technician's step: from which states
IMAGE_KINDS = {update_image.KIND_FIRMWARE: "firmware", update_image.KIND_MODEL: "model"}
NAME_MAX = UpdateCampaign.__table__.c.name.type.length  # what the store keeps (PostgreSQL refuses more)
REASON_MAX = CampaignCollar.__table__.c.reason.type.length  # a collar's reason, as the store keeps it
CAMPAIGN_START_LOCK = 0x74656D626F_0E  # PostgreSQL advisory lock key of campaign starts ("tembo", 14)
NO_ANSWER = "no answer"  # a collar's step ended by the delivery's time limits (fuota_delivery.fail_overdue) ...
NO_RESULT = "no result in"  # ... the reason starts so: a result it sends after all still counts (record_ack)
ABORTED = "campaign aborted"  # the reason of the collars an abort ended (`steer`)
# the reason of a collar the abort reached before anything of its delivery was sent (`nothing_reached`)
NOTHING_SENT = "campaign aborted before anything was sent to it"
# the port-31 results of a collar refusing a fragmentation set-up outside its bounds (collar_firmware/update_install.py
# `setup`): once a collar took its delivery's set-up, such an ack answers another set-up (`_may_answer`)
SETUP_REFUSAL_RESULTS = ("malformed", "too_large")
ACK_CLOCK_SLACK_S = 600  # how far a collar's clock may lag the bridge's when its ack is dated (`_may_answer`)
SPREADING_FACTORS = range(7, 13)  # LoRa SF7..SF12: the highest a campaign lets collars be on
# session.info: whether a campaign was running when this unit of work first asked (`any_running`)
ANY_RUNNING = "tembo_campaign_running"


class CampaignError(ValueError):
    """A campaign request that cannot be done (unknown campaign, wrong state, no collar)."""


@dataclass(frozen=True)
class ImageIdentity:
    """What a signed update image says it is, read from its header as the collar reads it."""

    kind: str
    version: str
    hardware_id: str
    key_id: int
    image_bytes: int
    base_version: str | None = None  # a firmware delta's base: only a collar running it can compose it
    # release keys the collars hold now that a firmware's own key file lacks: collars that take it refuse,
    # from then on, model updates those keys signed and run its shipped model (`retired_keys`)
    keys_retired: tuple[int, ...] = ()


def identify(image: bytes, release_keys: Path | None = None) -> ImageIdentity:
    """Read an update image's header (`tembo release` wrote it); CampaignError when it is not one, was
    built for hardware other than Tembo's collars, is cut short or longer than its header says, its
    payload is not the one its header's hash signs, or it is unsigned: what every collar would refuse
    only after the whole transfer is refused before anything is sent: also a signature that does not
    verify with a key of the collars' key file (`release_keys`, TEMBO_RELEASE_KEYS_FILE: the key file of
    the firmware the collars run; None: the one the firmware built from this checkout carries), and a key
    id that file does not hold (`check_signature`)."""
    try:
        header = update_image.parse_header(image)
    except update_image.ImageRefused as refused:
        raise CampaignError(f"the file cannot be sent to collars: {refused}") from None
    if header.hardware_id != collar_config.HARDWARE_ID:
        raise CampaignError(f"the image is built for {header.hardware_id!r}; the collars are "
                            f"{collar_config.HARDWARE_ID!r} and would refuse it")
    if header.payload_len == 0:
        raise CampaignError("the image carries no payload: nothing for a collar to install (every collar would "
                            "refuse it as truncated)")
    expected = header.size + header.payload_len
    if len(image) < expected:
        raise CampaignError(f"the image is truncated: {len(image)} bytes where its header says {expected}; "
                            "every collar would refuse it after the whole transfer")
    if len(image) > expected:
        raise CampaignError(f"the image has {len(image) - expected} bytes after its end ({len(image)} where its "
                            f"header says {expected}): not the file tembo release wrote")
    if hashlib.sha256(image[header.size:]).digest() != header.payload_sha256:
        raise CampaignError("the image's payload does not match the SHA-256 its signed header carries: the file "
                            "was changed or damaged after it was signed")
    if header.signature == bytes(64):
        raise CampaignError("the image carries no signature: every collar would refuse it (tembo release signs)")
    held = check_signature(image[:header.signed_len], header.key_id, header.signature, release_keys)
    retired = retired_keys(held, image[header.size:]) if header.kind == update_image.KIND_FIRMWARE else ()
    return ImageIdentity(IMAGE_KINDS[header.kind], update_image.version_text(header.version), header.hardware_id,
                         header.key_id, len(image),
                         update_image.version_text(header.base_version) if header.base_version else None, retired)


def retired_keys(held: dict[int, bytes], payload: bytes) -> tuple[int, ...]:
    """The ids of the keys in held (what the collars hold now) that the release key file a firmware's
    payload carries lacks (or holds another key under): collars that take the firmware no longer hold
    them. () when the payload carries no key file of its own (a delta keeping the base's) or none that
    reads: `tembo release firmware` checked what it packed."""
    from collar_firmware import trust

    wanted, pos = trust.KEYS_FILE.encode(), 0
    while pos < len(payload):
        length = payload[pos] & ~update_image.KEPT & 0xFF
        kept = payload[pos] & update_image.KEPT
        name, pos = payload[pos + 1:pos + 1 + length], pos + 1 + length
        if kept:
            continue  # the base's record: nothing of it travels
        if pos + 4 > len(payload):
            return ()
        size = int.from_bytes(payload[pos:pos + 4], "little")
        data, pos = payload[pos + 4:pos + 4 + size], pos + 4 + size
        if name == wanted:
            try:
                after = trust.parse_keys(data)
            except ValueError:
                return ()
            return tuple(key_id for key_id in sorted(held) if after.get(key_id) != held[key_id])
    return ()


def check_signature(signed: bytes, key_id: int, signature: bytes, release_keys: Path | None = None) -> dict[int, bytes]:
    """CampaignError unless signature is release key key_id's over signed, checked by the collars' own
    checker (`collar_firmware.trust.Trust`, as `release.check_model` checks a blob) with the public keys
    of the collars' key file (`release_keys`; None: the firmware's own, `updates.keys.COLLAR_KEYS_PATH`).
    A key id that file does not hold is refused too: a collar takes only what a key of its firmware's key
    file signed (`trust.Trust.accept`), so a key the bridge is not told of is one no collar holds, or the
    bridge was not told which file the fleet's firmware carries; either way the bridge does not send
    hours of fragments on the chance. A file that cannot be read is refused likewise. Returns the keys
    the file holds."""
    from collar_firmware import trust
    from lora_bridge.updates import keys

    path = Path(release_keys) if release_keys is not None else keys.COLLAR_KEYS_PATH
    try:
        held = keys.read_collar_keys(path, must_exist=True)
    except (OSError, ValueError) as error:
        raise CampaignError(f"the collars' release key file cannot be read ({error}): the bridge checks every "
                            "image's signature with the keys the collars hold; set TEMBO_RELEASE_KEYS_FILE to the "
                            "key file their firmware carries (`tembo keys show --collar-keys FILE`)") from None
    if key_id not in held:
        ids = ", ".join(str(k) for k in sorted(held)) or "none"
        raise CampaignError(f"the image is signed with release key {key_id}, which the collars' release key file "
                            f"{path} does not hold (it holds {ids}): collars take only what a key of their "
                            "firmware's key file signed, and would refuse it after the whole transfer. Sign it with "
                            "a key they hold, or, when their firmware carries another key file (a hand-over, `tembo "
                            "release firmware --ship-keys`), point TEMBO_RELEASE_KEYS_FILE at that file")
    if not keys.verify_now(trust.Trust(held), key_id, trust.digest(signed), signature):
        raise CampaignError(f"the image's signature does not verify with release key {key_id} of the collars' key "
                            f"file {path}: its header (version, hardware, golden vector, key id) was changed after "
                            "it was signed, or another key signed it; every collar holding that key would refuse it "
                            "after the whole transfer")
    return held


def version_number(kind: str, version: str) -> int:
    """The u24 the collar compares versions by; CampaignError for a version that is not major.minor.patch."""
    try:
        return update_image.version_raw(version)
    except ValueError as err:
        raise CampaignError(f"{kind} version: {err}") from None


def running_version(kind: str, device: Device | None) -> int | None:
    """The version of kind a collar said it runs in its last status (None: not known), as it compares
    them: the firmware's major.minor.patch, the model's version number."""
    if device is None:
        return None
    if kind == "model":
        return device.model_version
    try:
        return update_image.version_raw(device.fw_version) if device.fw_version else None
    except ValueError:
        return None


def _event(session: Session, campaign: UpdateCampaign, event: str, device_id: str | None = None,
           time: datetime | None = None, **detail: Any) -> None:
    session.add(CampaignEvent(campaign_id=campaign.id, device_id=device_id, event=event, detail=detail,
                              time=time or utc_now()))


def record_event(session: Session, campaign: UpdateCampaign, event: str, device_id: str | None = None,
                 time: datetime | None = None, **detail: Any) -> None:
    """Add an event to a campaign's history (the delivery's own steps)."""
    _event(session, campaign, event, device_id, time, **detail)


PAUSE_ENDS = ("resume", "abort")  # the technician's steps that end a pause


def paused_s(session: Session, campaign_id: int, since: datetime, until: datetime) -> float:
    """Seconds of [since, until] the campaign spent paused, from its history (a `pause` step until the
    next `resume` or `abort`; a pause not yet ended runs to `until`). A delivery's time limits count
    only the time the campaign ran: nothing is sent to a collar while its campaign is paused."""
    total, began = 0.0, None
    for time, event in session.execute(
            select(CampaignEvent.time, CampaignEvent.event)
            .where(CampaignEvent.campaign_id == campaign_id, CampaignEvent.device_id.is_(None),
                   CampaignEvent.event.in_(("pause",) + PAUSE_ENDS))
            .order_by(CampaignEvent.id)):
        if event == "pause" and began is None:
            began = time
        elif event in PAUSE_ENDS and began is not None:
            total += _overlap_s(began, time, since, until)
            began = None
    if began is not None:
        total += _overlap_s(began, until, since, until)
    return total


def _overlap_s(start: datetime, end: datetime, since: datetime, until: datetime) -> float:
    return max(0.0, (min(end, until) - max(start, since)).total_seconds())


def running_s(session: Session, campaign_id: int, since: datetime, until: datetime) -> float:
    """Seconds from since to until that the campaign was not paused."""
    return (until - since).total_seconds() - paused_s(session, campaign_id, since, until)


def canary_order(device_id: str) -> str:
    """Return the stable key canaries are picked by."""
    return hashlib.sha256(device_id.encode()).hexdigest()


def create(session: Session, *, name: str, kind: str, version: str, image_sha256: str, image_bytes: int,
           devices: list[str] | None, canary_pct: int, max_canary_failures_pct: int, min_battery_mv: int,
           min_rssi_dbm: float, created_by: str, max_spreading_factor: int = 12,
           species: str | None = None, base_version: str | None = None) -> UpdateCampaign:
    """Create and start a campaign; devices and species None target every known collar, species the
    collars worn by that species' animals; base_version: the firmware a delta is built against."""
    if kind not in ("firmware", "model"):
        raise CampaignError(f"kind must be firmware or model, not {kind!r}")
    if len(name) > NAME_MAX:
        raise CampaignError(f"a campaign's name is at most {NAME_MAX} characters, this one has {len(name)}")
    if not 0 <= canary_pct <= 100 or not 0 <= max_canary_failures_pct <= 100:
        raise CampaignError("percentages must be 0..100")
    check_spreading_factor(max_spreading_factor)
    if species is not None and devices is not None:
        raise CampaignError("a campaign targets a list of collars or a species, not both")
    known = set(session.scalars(select(Device.device_id)))
    if species is not None:
        devices = species_collars(session, species)
        if not devices:
            raise CampaignError(f"no collar is worn by an animal of species {species.strip()!r}: no collar to update")
    targets = sorted(known) if devices is None else sorted(set(devices))
    unknown = [d for d in targets if d not in known]
    if unknown:
        raise CampaignError(f"unknown collars: {', '.join(unknown)}")
    if not targets:
        raise CampaignError("no collar to update")
    _one_start_at_a_time(session)
    _refuse_collars_in_another_campaign(session, targets)
    wanted = version_number(kind, version)
    devices_by_id = {d.device_id: d for d in session.scalars(select(Device).where(Device.device_id.in_(targets)))}
    needing = [d for d in targets if not _runs_it(kind, wanted, devices_by_id.get(d))]
    if not needing:
        raise CampaignError(f"every collar targeted already runs {kind} {version} or newer: nothing to send")
    if base_version is not None:
        if kind != "firmware":
            raise CampaignError(f"a delta is of a firmware, not of a {kind}")
        needing = [d for d in needing if _off_base(base_version, devices_by_id.get(d)) is None]
        if not needing:
            raise CampaignError(f"this {kind} {version} is a delta against {base_version}, and no collar targeted "
                                f"runs {base_version}: each would refuse it (wrong_base). Send the whole image "
                                "(tembo release firmware without --base)")
    campaign = UpdateCampaign(
        name=name, kind=kind, version=version, image_sha256=image_sha256, image_bytes=image_bytes,
        base_version=base_version, target=_target(devices, species, targets), canary_pct=canary_pct,
        max_canary_failures_pct=max_canary_failures_pct, min_battery_mv=min_battery_mv,
        min_rssi_dbm=min_rssi_dbm, max_spreading_factor=max_spreading_factor, state="canary", stage="canary", created_by=created_by,
    )
    session.add(campaign)
    session.flush()
    session.info.pop(ANY_RUNNING, None)
    n_canary = max(1, math.ceil(len(needing) * canary_pct / 100))
    # a canary is a collar that takes the update, one the gates let through now first: a canary held
    # by its battery or link would hold the whole fleet back while telling nothing of the image
    passing = [d for d in needing if _gate(session, campaign, devices_by_id.get(d)) is None]
    held = [d for d in needing if d not in passing]
    canaries = set((sorted(passing, key=canary_order) + sorted(held, key=canary_order))[:n_canary])
    for device_id in targets:
        session.add(CampaignCollar(campaign_id=campaign.id, device_id=device_id,
                                   stage="canary" if device_id in canaries else "fleet", state="waiting"))
    _event(session, campaign, "created", collars=len(targets), canaries=len(canaries),
           current=len(targets) - len(needing), by=created_by)
    session.flush()
    evaluate(session, campaign)
    log.info("campaign created campaign_id=%d kind=%s version=%s collars=%d species=%s max_sf=%d", campaign.id, kind,
             version, len(targets), species, max_spreading_factor)
    return campaign


def check_spreading_factor(value: int) -> None:
    """CampaignError unless value is a LoRa spreading factor (7..12), the highest a campaign allows."""
    if value not in SPREADING_FACTORS:
        raise CampaignError(f"the highest spreading factor a collar may be on must be 7..12 (SF7 to SF12), not {value}")


def species_collars(session: Session, species: str) -> list[str]:
    """The collars worn by the animals of a species (its name as registered, case and surrounding spaces
    aside): a group a technician names without listing collars."""
    wanted = species.strip().lower()
    if not wanted:
        raise CampaignError("a species names the group of collars to update; this one is empty")
    return sorted(session.scalars(select(Animal.device_id).where(
        Animal.device_id.is_not(None), func.lower(func.trim(Animal.species)) == wanted)))


def _target(devices: list[str] | None, species: str | None, targets: list[str]) -> dict[str, Any]:
    """What the campaign was aimed at, as stored: every collar, a list, or a species with the collars it had."""
    if species is not None:
        return {"species": species.strip(), "devices": targets}
    return {"all": True} if devices is None else {"devices": targets}


def last_spreading_factor(session: Session, device: Device) -> int | None:
    """The spreading factor of the collar's last uplink as stored (the one that gave its last RSSI:
    its session and last frame counter, through the index on them; else the newest heard), or None
    when no stored uplink says it."""
    if device.last_f_cnt is not None:
        exact = session.scalars(
            select(RawUplink.spreading_factor)
            .where(RawUplink.device_id == device.device_id, RawUplink.session == device.session,
                   RawUplink.f_cnt == device.last_f_cnt, RawUplink.spreading_factor.is_not(None))
            .order_by(RawUplink.id.desc()).limit(1)
        ).first()
        if exact is not None:
            return exact
    return session.scalars(  # a join since (a new session) or an uplink without a frame counter
        select(RawUplink.spreading_factor)
        .where(RawUplink.device_id == device.device_id, RawUplink.duplicate_of.is_(None),
               RawUplink.heard_at.is_not(None))
        .order_by(RawUplink.heard_at.desc(), RawUplink.id.desc()).limit(1)
    ).first()


def _one_start_at_a_time(session: Session) -> None:
    """Hold the store's campaign-start lock until this transaction ends, so that two technicians starting
    campaigns for the same collars at once (the Updates page and a script) are checked one after the
    other: the second sees the first's collars busy. PostgreSQL: a transaction-level advisory lock
    (read-committed transactions would both see the collars free); SQLite's writes are serialised
    already (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CAMPAIGN_START_LOCK})


def _refuse_collars_in_another_campaign(session: Session, targets: list[str]) -> None:
    """CampaignError naming the collars of `targets` still taking part in a campaign that is not over
    (running, paused or stopped by its canaries): a collar follows one update at a time (a second
    set-up would replace the first one's multicast and fragmentation sessions, and its ack could
    not tell which update it answers)."""
    busy = session.execute(
        select(CampaignCollar.device_id, UpdateCampaign.id, UpdateCampaign.name, UpdateCampaign.state)
        .join(UpdateCampaign, UpdateCampaign.id == CampaignCollar.campaign_id)
        .where(CampaignCollar.device_id.in_(targets), UpdateCampaign.state.in_(UNFINISHED),
               CampaignCollar.state.not_in(FINAL_COLLAR_STATES))
        .order_by(UpdateCampaign.id, CampaignCollar.device_id)
    ).all()
    if not busy:
        return
    by_campaign: dict[tuple[int, str, str], list[str]] = {}
    for device_id, campaign_id, name, state in busy:
        by_campaign.setdefault((campaign_id, name, state), []).append(device_id)
    held = "; ".join(f"{', '.join(collars)} in #{campaign_id} {name!r} ({state})"
                     for (campaign_id, name, state), collars in by_campaign.items())
    raise CampaignError(f"a collar follows one update at a time: {held}. Let that campaign finish, or abort it")


def _runs_it(kind: str, wanted: int, device: Device | None) -> bool:
    """True when a collar's last status says it runs version `wanted` of kind or a newer one."""
    running = running_version(kind, device)
    return running is not None and running >= wanted


def _off_base(base_version: str, device: Device | None) -> str | None:
    """Why a collar whose last status names another firmware than a delta's base is left out (None: it
    runs the base, or has not said what it runs; the gate holds that one)."""
    if device is None or not device.fw_version or device.fw_version == base_version:
        return None
    return f"runs firmware {device.fw_version}; delta needs {base_version}"


def _on_trial(session: Session, campaign: UpdateCampaign, device: Device) -> str | None:
    """Why a collar may be in the trial boot of an earlier campaign's firmware (None: it is not): the last
    delivery it took part in before this campaign was a firmware's, it rebuilt that image (its delivery
    complete), was left failed or unknown there (time limits, an abort) and has reported neither running
    that version nor how its install ended. A collar on trial answers no FragSessionSetupReq (its fragments
    would go over the slot it tries: collar_firmware/update.py), so a set-up sent then is lost; it waits for
    the trial's confirm or rollback, which its next status carries."""
    last = session.execute(
        select(UpdateCampaign.kind, UpdateCampaign.version, FuotaCollar.complete, CampaignCollar.state)
        .join(FuotaCollar, FuotaCollar.campaign_id == UpdateCampaign.id)
        .join(CampaignCollar, (CampaignCollar.campaign_id == UpdateCampaign.id)
              & (CampaignCollar.device_id == FuotaCollar.device_id))
        .where(FuotaCollar.device_id == device.device_id, UpdateCampaign.id != campaign.id)
        .order_by(UpdateCampaign.id.desc()).limit(1)).first()
    if last is None or last.kind != "firmware" or not last.complete or last.state not in ("failed", UNKNOWN) \
            or device.fw_version == last.version:
        return None
    result = session.get(UpdateResult, device.device_id)
    if result is not None and (result.kind, result.version) == ("firmware", last.version):
        return None
    return f"firmware {last.version} on trial: waits for its report"  # a collar's reason: REASON_MAX


def _gate(session: Session, campaign: UpdateCampaign, device: Device | None) -> str | None:
    """Return why a collar may not be sent the update now, or None."""
    if device is None:
        return "unknown collar"
    if trial := _on_trial(session, campaign, device):
        return trial
    if campaign.base_version is not None and not device.fw_version:
        return "firmware not reported yet (a delta needs its base)"
    if device.battery_mv is None or device.battery_mv < campaign.min_battery_mv:
        return "battery"
    if device.last_rssi_dbm is None or device.last_rssi_dbm < campaign.min_rssi_dbm:
        return "link"
    if campaign.max_spreading_factor < max(SPREADING_FACTORS):  # SF12 allows every collar: nothing to read
        sf = last_spreading_factor(session, device)
        if sf is None or sf > campaign.max_spreading_factor:
            return "spreading factor"
    return None


def hold_back(session: Session, campaign: UpdateCampaign, collar: CampaignCollar) -> str | None:
    """Check a released ("sending") collar's gates again just before its delivery starts (its set-up is
    queued): one whose battery, RSSI or spreading factor went past a gate since it was released goes
    back to "gated" with the reason (it is released again when a later uplink shows it back). Return
    the reason, or None when it may go."""
    why = _gate(session, campaign, session.get(Device, collar.device_id))
    if why is None or collar.state != "sending":
        return None
    collar.state, collar.reason, collar.updated_at = "gated", why, utc_now()
    _event(session, campaign, "gated", collar.device_id, reason=why, before_its_set_up=True)
    log.info("device_id=%s held back before its set-up campaign_id=%d: %s", collar.device_id, campaign.id, why,
             extra={"device_id": collar.device_id, "campaign_id": campaign.id})
    if collar.stage == "canary" and campaign.stage == "canary":
        _replace_canary(session, campaign, collar)
    return why


def _replace_canary(session: Session, campaign: UpdateCampaign, held: CampaignCollar) -> None:
    """A canary held back before its set-up would keep the fleet waiting while telling nothing of the
    image: the first waiting fleet collar the gates let through (in canary order) takes its place and
    is released, and the held one waits with the fleet. With none, it stays the canary."""
    waiting = session.scalars(select(CampaignCollar).where(
        CampaignCollar.campaign_id == campaign.id, CampaignCollar.stage == "fleet", CampaignCollar.state == "waiting"))
    for candidate in sorted(waiting, key=lambda c: canary_order(c.device_id)):
        if _gate(session, campaign, session.get(Device, candidate.device_id)) is None:
            held.stage, candidate.stage = "fleet", "canary"
            candidate.state, candidate.reason, candidate.updated_at = "sending", None, utc_now()
            _event(session, campaign, "canary_replaced", candidate.device_id, instead_of=held.device_id)
            _event(session, campaign, "sending", candidate.device_id, reason=None)
            return


def evaluate(session: Session, campaign: UpdateCampaign) -> UpdateCampaign:
    """Move the campaign on: gate and release collars of the current stage, stop on failed canaries,
    open the fleet stage when the canaries are through, finish when every collar answered."""
    if campaign.state not in ACTIVE:
        return campaign
    collars = list(session.scalars(select(CampaignCollar).where(CampaignCollar.campaign_id == campaign.id)))
    canaries = [c for c in collars if c.stage == "canary"]
    failed = sum(1 for c in canaries if c.state == "failed")
    if campaign.stage == "canary" and canaries and 100 * failed > campaign.max_canary_failures_pct * len(canaries):
        campaign.state = "stopped"
        campaign.updated_at = utc_now()
        _event(session, campaign, "stopped", failed_canaries=failed, canaries=len(canaries))
        log.warning("campaign stopped campaign_id=%d failed_canaries=%d", campaign.id, failed)
        return campaign
    if campaign.stage == "canary" and all(c.state in FINAL_COLLAR_STATES for c in canaries):
        campaign.stage = "fleet"
        campaign.state = "rolling"
        _event(session, campaign, "fleet_stage", failed_canaries=failed)
    try:
        wanted: int | None = version_number(campaign.kind, campaign.version)
    except CampaignError:  # typed by hand before versions were read from the image: nobody is current
        wanted = None
    for c in collars:
        if c.state not in ("waiting", "gated"):
            continue
        device = session.get(Device, c.device_id)
        if wanted is not None and _runs_it(campaign.kind, wanted, device):  # it would refuse the image
            c.state, c.reason, c.updated_at = "current", f"runs {campaign.kind} {_running_text(campaign.kind, device)}", utc_now()
            _event(session, campaign, "current", c.device_id, reason=c.reason)
            continue
        off_base = _off_base(campaign.base_version, device) if campaign.base_version is not None else None
        if off_base is not None:  # it would refuse the delta (wrong_base) after the whole transfer
            c.state, c.reason, c.updated_at = "skipped", off_base, utc_now()
            _event(session, campaign, "skipped", c.device_id, reason=off_base)
            continue
        if c.stage == "fleet" and campaign.stage != "fleet":
            continue
        why = _gate(session, campaign, device)
        new_state = "gated" if why else "sending"
        if new_state != c.state or c.reason != why:
            if new_state != c.state:  # updated_at: in this state since (a gate's limit counts from it, `expire`)
                c.updated_at = utc_now()
            c.state, c.reason = new_state, why
            _event(session, campaign, new_state, c.device_id, reason=why)
    if all(c.state in FINAL_COLLAR_STATES for c in collars):
        campaign.state = "done"
        _event(session, campaign, "done", updated=sum(1 for c in collars if c.state == "updated"))
    campaign.updated_at = utc_now()
    return campaign


def reconsider_collar(session: Session, device_id: str) -> list[int]:
    """A collar's status was applied (battery, versions): evaluate again every running campaign in which it
    waits or is gated, so a battery that recovered releases it and a version another campaign gave it
    makes it current; return the ids of those campaigns."""
    if not any_running(session):
        return []
    active = list(session.scalars(
        select(UpdateCampaign)
        .join(CampaignCollar, CampaignCollar.campaign_id == UpdateCampaign.id)
        .where(CampaignCollar.device_id == device_id, CampaignCollar.state.in_(("waiting", "gated")),
               UpdateCampaign.state.in_(ACTIVE))
    ))
    for campaign in active:
        evaluate(session, campaign)
        log.info("campaign re-evaluated on a status campaign_id=%d device_id=%s", campaign.id, device_id,
                 extra={"campaign_id": campaign.id, "device_id": device_id})
    return [c.id for c in active]


def expire(session: Session, campaign: UpdateCampaign, now: datetime, limit_s: float) -> int:
    """End the steps that would hold an active campaign open for ever; return how many. A collar gated for
    limit_s of the campaign's running time (paused time aside) is "skipped" with its gate ("gated 14 d:
    battery": it never got the update, and counts as no canary failure); in a campaign the bridge only
    tracks (no delivery, whose own limits fail its collars, `fuota_delivery.fail_overdue`) a collar
    "sending" that long without a result fails with NO_RESULT (a result it sends later still counts)."""
    from lora_bridge.store.tables import FuotaSession

    if campaign.state not in ACTIVE:
        return 0
    tracked = session.get(FuotaSession, campaign.id) is None
    ended = 0
    days = f"{timedelta(seconds=limit_s) / timedelta(days=1):g} d"
    for c in session.scalars(select(CampaignCollar).where(CampaignCollar.campaign_id == campaign.id,
                                                          CampaignCollar.state.in_(("gated", "sending")))):
        if c.state == "sending" and not tracked or c.updated_at is None:
            continue
        if running_s(session, campaign.id, c.updated_at, now) < limit_s:
            continue
        if c.state == "gated":
            c.state, c.reason, c.updated_at = "skipped", f"gated {days}: {c.reason}"[:REASON_MAX], now
            _event(session, campaign, "skipped", c.device_id, reason=c.reason, time=now)
        else:
            c.state, c.reason, c.updated_at = "failed", f"{NO_RESULT} {days}"[:REASON_MAX], now
            _event(session, campaign, "failed", c.device_id, result=c.reason, time=now)
        log.info("device_id=%s %s in campaign_id=%d: %s", c.device_id, c.state, campaign.id, c.reason,
                 extra={"device_id": c.device_id, "campaign_id": campaign.id})
        ended += 1
    if ended:
        evaluate(session, campaign)
    return ended


def any_running(session: Session) -> bool:
    """Whether any campaign is running, read once per unit of work (an ingest batch applies the statuses
    of many collars; with none running, each status skips its read of the collar's campaigns and the
    flush of the batch so far that read would cause). Within a unit of work only `create` and `steer`
    (a technician's own) start or resume a campaign, and they forget the answer; evaluating one may
    only end it."""
    known = session.info.get(ANY_RUNNING)
    if known is None:
        # on the session's connection, without its autoflush or the ORM's execution (`bulk.read_columns`)
        known = bool(bulk.read_columns(session, _ANY_RUNNING_READ, {}, _CAMPAIGNS))
        session.info[ANY_RUNNING] = known
    return known


_CAMPAIGNS = frozenset({UpdateCampaign.__table__})


# every batch asks it (`pipeline.read_batch_start`): its states rendered once
_RUNNING_IDS = select(UpdateCampaign.id).where(UpdateCampaign.state.in_(bulk.fixed_texts(ACTIVE)))
_ANY_RUNNING_READ = _RUNNING_IDS.limit(1)
# the same question as one column of another statement (`pipeline.read_batch_start`), its answer put
# in session.info[ANY_RUNNING]
ANY_RUNNING_COLUMN = _RUNNING_IDS.exists()


def overdue(collar: CampaignCollar) -> bool:
    """True when the collar's step was ended by the delivery's time limits, not by anything it said."""
    return collar.state == "failed" and collar.reason is not None and (
        collar.reason == NO_ANSWER or collar.reason.startswith(NO_RESULT))


def _refused_another_set_up(session: Session, collar: CampaignCollar, result: str) -> bool:
    """True when an ack of result cannot be the outcome of collar's delivered session: a set-up's refusal
    (SETUP_REFUSAL_RESULTS) after the collar took the delivery's set-up, which passed the collar's bounds."""
    step = session.get(FuotaCollar, (collar.campaign_id, collar.device_id))
    return step is not None and step.setup_answered and result in SETUP_REFUSAL_RESULTS


def _may_answer(session: Session, collar: CampaignCollar, result: str, at: datetime | None) -> bool:
    """A port-31 ack names no update: it can be a delivered campaign's result only once the collar opened
    that campaign's fragmentation session (its FragSessionSetupAns came); before, it answers an older
    update (a late ack from the collar's queue). After, one of SETUP_REFUSAL_RESULTS answers a set-up that is
    not the delivery's (a stray frame, another fleet's), which the collar refused: the delivery's passed the
    collar's bounds when it took it (an image the collar refuses as too large is named by its status, which
    settles the campaign). In a campaign that only tracks, an ack dated (at, the collar's clock) more than
    ACK_CLOCK_SLACK_S before the collar was released to it is an older one's, and a set-up's refusal answers its
    image only when that image is larger than a collar takes (campaigns_tracked_refusals.py)."""
    step = session.get(FuotaCollar, (collar.campaign_id, collar.device_id))
    if step is not None:
        return step.setup_answered and not _refused_another_set_up(session, collar, result)
    if _tracked_stray_refusal(session, collar, result):
        return False
    return at is None or collar.updated_at is None or \
        as_utc(at) >= as_utc(collar.updated_at) - timedelta(seconds=ACK_CLOCK_SLACK_S)


def _tracked_stray_refusal(session: Session, collar: CampaignCollar, result: str) -> bool:
    """True when result, a set-up's refusal acknowledged to a campaign the bridge only tracks, cannot answer a
    set-up of that campaign's image (campaigns_tracked_refusals.py)."""
    if result not in SETUP_REFUSAL_RESULTS or session.get(FuotaCollar, (collar.campaign_id, collar.device_id)):
        return False
    campaign = session.get(UpdateCampaign, collar.campaign_id)
    return campaign is not None and not campaigns_tracked_refusals.answers_its_image(campaign.image_bytes, result)


def record_ack(session: Session, device_id: str, result: str, late_in: int | None = None,
               of_image: bool = False, at: datetime | None = None) -> list[int]:
    """A collar acknowledged an update on port 201 with result: update its active campaigns; return their ids.
    of_image: the result names the campaign's image (a status's kind and version); an ack does not, so it
    settles a delivered campaign only once the collar opened that campaign's session (and then never with a
    set-up's refusal), a tracked one when it is not dated (at) before the collar was released to it
    (`_may_answer`).
    A result that comes after the delivery's time limits failed the collar (`overdue`: its ack or status
    was late, not missing) replaces that failure in the campaign it was failed in, whatever that
    campaign's state now: the collar did answer, and what it answered is what it runs. late_in: that
    campaign, when the result names its image (a status; then it settles that campaign only, and also a
    collar an abort left UNKNOWN there); else the newest one the collar was failed in. An ack never
    settles an UNKNOWN collar: it names no image, and may answer another update."""
    touched = []
    named = late_in is not None and of_image  # a status naming that campaign's image
    rows = [] if named else session.execute(
        select(CampaignCollar, UpdateCampaign)
        .join(UpdateCampaign, UpdateCampaign.id == CampaignCollar.campaign_id)
        .where(CampaignCollar.device_id == device_id, CampaignCollar.state == "sending",
               UpdateCampaign.state.in_(ACTIVE + ("paused",)))
    ).all()
    if not of_image:
        answering = []
        for collar, campaign in rows:
            if _may_answer(session, collar, result, at):
                answering.append((collar, campaign))
            else:
                log.info("device_id=%s ack %s is not campaign_id=%d's update's: an older update's, or a refused set-up "
                         "not its own", device_id, result, campaign.id,
                         extra={"device_id": device_id, "campaign_id": campaign.id})
                if _tracked_stray_refusal(session, collar, result):
                    _event(session, campaign, campaigns_tracked_refusals.NOT_COUNTED, device_id, time=at,
                           result=result, why=campaigns_tracked_refusals.why_not(campaign.image_bytes, result))
        rows = answering
    if not rows:
        late = session.execute(
            select(CampaignCollar, UpdateCampaign)
            .join(UpdateCampaign, UpdateCampaign.id == CampaignCollar.campaign_id)
            .where(CampaignCollar.device_id == device_id,
                   CampaignCollar.state.in_(("failed", UNKNOWN) if named else ("failed",)),
                   *([UpdateCampaign.id == late_in] if late_in is not None else []))
            .order_by(UpdateCampaign.id.desc()).limit(1)).first()
        rows = [late] if late is not None and (overdue(late[0]) or late[0].state == UNKNOWN) \
            and (of_image or not _refused_another_set_up(session, late[0], result)) else []
    for collar, campaign in rows:
        _settle(session, collar, campaign, result)
        touched.append(campaign.id)
    return touched


def record_after_end(session: Session, collar: CampaignCollar, result: str) -> None:
    """A result that names the image of collar's campaign (a status's kind and version) for a collar still
    'sending' there after the campaign left its run (stopped by its canaries, ended): recorded as it is, since a
    collar's outcome is the truth whatever its campaign's state (a canary that installed after another's failure
    stopped the campaign runs the image; the campaign showed it 'sending'). The campaign's own state stays
    (`evaluate` moves only a running campaign). An ack, which names no image, never settles such a collar."""
    campaign = session.get(UpdateCampaign, collar.campaign_id)
    if campaign is None or campaign.state in ACTIVE + ("paused",) or collar.state != "sending":
        return
    log.info("result from device_id=%s for campaign_id=%d, %s: %s", collar.device_id, campaign.id, campaign.state,
             result, extra={"device_id": collar.device_id, "campaign_id": campaign.id})
    _settle(session, collar, campaign, result, campaign_was=campaign.state)


def _settle(session: Session, collar: CampaignCollar, campaign: UpdateCampaign, result: str,
            **detail: Any) -> None:
    """Set collar's step in campaign to result (an ACK_RESULTS name), said in the campaign's history (with detail,
    and what it had been failed with when its result came late), and move the campaign on."""
    device_id = collar.device_id
    late_for = collar.reason if collar.state in ("failed", UNKNOWN) else None
    collar.state = "updated" if result == "ok" else "failed"
    collar.reason = None if result == "ok" else result
    collar.updated_at = utc_now()
    if late_for:
        _event(session, campaign, collar.state, device_id, result=result, late_after=late_for, **detail)
        log.info("late result from device_id=%s campaign_id=%d: %s (it had been %s)", device_id,
                 campaign.id, result, late_for, extra={"device_id": device_id, "campaign_id": campaign.id})
    else:
        _event(session, campaign, collar.state, device_id, result=result, **detail)
    evaluate(session, campaign)


def _running_text(kind: str, device: Device) -> str:
    """The version a collar runs as a technician reads it."""
    return str(device.model_version) if kind == "model" else str(device.fw_version)


def fail_collar(session: Session, campaign: UpdateCampaign, collar: CampaignCollar, reason: str,
                detail: str | None = None) -> None:
    """A collar the delivery cannot serve: failed with the reason (short: the collar's state keeps
    REASON_MAX characters), in its history with the detail when given; the campaign is evaluated again
    (a failed canary counts)."""
    if collar.state != "sending":
        return
    collar.state, collar.reason, collar.updated_at = "failed", reason[:REASON_MAX], utc_now()
    _event(session, campaign, "failed", collar.device_id, result=reason, **({"detail": detail} if detail else {}))
    evaluate(session, campaign)


def steer(session: Session, campaign_id: int, action: str, user: str, now: datetime | None = None) -> UpdateCampaign:
    """Pause, resume or abort a campaign at now (the bridge's clock: the history's pauses are what
    `paused_s` reads)."""
    now = now or utc_now()
    campaign = session.get(UpdateCampaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"no campaign {campaign_id}")
    if action not in STEPS:
        raise CampaignError(f"unknown action {action!r}")
    if campaign.state not in STEPS[action]:
        raise CampaignError(f"cannot {action} a campaign that is {campaign.state}")
    overriding = action == "resume" and campaign.state == "stopped"  # the fleet goes on despite its canaries
    session.info.pop(ANY_RUNNING, None)
    if action == "pause":
        campaign.state = "paused"
    elif action == "abort":
        campaign.state = "aborted"
    else:
        if overriding:
            campaign.stage = "fleet"
        campaign.state = "rolling" if campaign.stage == "fleet" else "canary"
    campaign.updated_at = now
    _event(session, campaign, action, time=now, by=user)
    if action == "abort":
        _end_collars(session, campaign, now)
    if overriding:
        _event(session, campaign, "fleet_stage", time=now, by=user, overriding_canary_stop=True)
        log.warning("campaign resumed past its canaries' stop campaign_id=%d by=%s", campaign.id, user,
                    extra={"campaign_id": campaign.id})
    if action == "resume":
        evaluate(session, campaign)
    return campaign


def _end_collars(session: Session, campaign: UpdateCampaign, now: datetime) -> None:
    """The campaign was aborted: a collar nothing was sent to (waiting, gated) is "skipped", one whose
    delivery had started ("sending") is UNKNOWN (a status naming the image settles it, `record_ack`);
    each with reason ABORTED and its event."""
    for c in session.scalars(select(CampaignCollar).where(CampaignCollar.campaign_id == campaign.id,
                                                          CampaignCollar.state.not_in(FINAL_COLLAR_STATES))):
        c.state = UNKNOWN if c.state == "sending" else "skipped"
        c.reason, c.updated_at = ABORTED, now
        _event(session, campaign, c.state, c.device_id, reason=ABORTED, time=now)
    log.info("campaign aborted campaign_id=%d: its unfinished collars ended", campaign.id,
             extra={"campaign_id": campaign.id})


def nothing_reached(session: Session, campaign: UpdateCampaign, device_ids: set[str], now: datetime) -> None:
    """Collars an abort left UNKNOWN to which no frame of their delivery was ever pushed (so
    `fuota_delivery` finds when the delivery ends) are "skipped" after all: they run what they ran,
    and the technician sees why."""
    if not device_ids:
        return
    for c in session.scalars(select(CampaignCollar).where(
            CampaignCollar.campaign_id == campaign.id, CampaignCollar.device_id.in_(sorted(device_ids)),
            CampaignCollar.state == UNKNOWN).order_by(CampaignCollar.device_id)):
        c.state, c.reason, c.updated_at = "skipped", NOTHING_SENT, now
        _event(session, campaign, "skipped", c.device_id, reason=NOTHING_SENT, time=now)


def view(session: Session, campaign: UpdateCampaign) -> dict[str, Any]:
    """Return a campaign with its collars' states and its history, as plain data."""
    collars = session.scalars(select(CampaignCollar).where(CampaignCollar.campaign_id == campaign.id)
                              .order_by(CampaignCollar.device_id))
    events = session.scalars(select(CampaignEvent).where(CampaignEvent.campaign_id == campaign.id)
                             .order_by(CampaignEvent.id))
    per_collar = [{"device_id": c.device_id, "stage": c.stage, "state": c.state, "reason": c.reason,
                   "updated_at": c.updated_at} for c in collars]
    counts: dict[str, int] = {}
    for c in per_collar:
        counts[c["state"]] = counts.get(c["state"], 0) + 1
    return {"id": campaign.id, "name": campaign.name, "kind": campaign.kind, "version": campaign.version,
            "base_version": campaign.base_version, "state": campaign.state, "stage": campaign.stage, "canary_pct": campaign.canary_pct,
            "max_canary_failures_pct": campaign.max_canary_failures_pct, "min_battery_mv": campaign.min_battery_mv,
            "min_rssi_dbm": campaign.min_rssi_dbm, "max_spreading_factor": campaign.max_spreading_factor,
            "target": campaign.target, "image_bytes": campaign.image_bytes,
            "created_by": campaign.created_by, "created_at": campaign.created_at, "counts": counts,
            "steps": [action for action, states in STEPS.items() if campaign.state in states],
            "collars": per_collar,
            "history": [{"time": e.time, "device_id": e.device_id, "event": e.event, "detail": e.detail}
                        for e in events]}


def fleet_versions(session: Session) -> list[dict[str, Any]]:
    """Return which collar runs which firmware and model (from their last status), whether that model is
    a fallback ("model_fallback": the collar refused its stored model, e.g. one signed with a key a firmware
    hand-over retired, and runs its last good or shipped one), the species of the animal wearing it (the
    group a campaign may target), with the result of its last over-the-air update ("update": kind,
    version, outcome, reason, time; None if none)."""
    from lora_bridge.domain import update_results

    results = update_results.latest(session)
    return [{"device_id": d.device_id, "fw_version": d.fw_version, "model_version": d.model_version,
             "model_fallback": bool((d.flags or {}).get("model_fallback")),
             "battery_mv": d.battery_mv, "last_rssi_dbm": d.last_rssi_dbm, "status_time": d.status_time,
             "species": d.animal.species if d.animal is not None else None,
             "update": results.get(d.device_id)}
            for d in session.scalars(select(Device).order_by(Device.device_id))]
