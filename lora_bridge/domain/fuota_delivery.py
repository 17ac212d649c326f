"""Delivering a campaign's signed image through the network server, as the LoRa Alliance FUOTA packages do.

`start` plans the delivery (planner.make_plan: the collars' spreading factors from their uplinks,
their loss from earlier deliveries, else a prior) and keeps the image, its fragmentation and the
progress in `fuota_sessions` / `fuota_collars`, so a bridge that restarts resumes where it was.
`tick(now)` then moves each delivery on, all of it through the downlink outbox:

1. set-up, unicast (class A, after each collar's uplinks, within fair use), once a collar whose TS004 version the
   bridge does not know has answered PackageVersionReq or stayed silent a bounded time (`_versions_known`,
   collar_packages.py: it is set up in what it said, or failed when the bridge does not speak it): when the delivery has
   its own McAddr (the technician's key file is configured), TS005 `mc_group_setup` with the group's
   McKey wrapped for that collar (lora_bridge/domain/multicast_groups.py), then TS005
   `mc_class_c_session` (the window's GPS time, its timeout from the plan, frequency, data rate) and TS004
   `frag_session_setup` (its FragSession byte laid out for the firmware the collar reports,
   lora_bridge/updates/setup_layouts.py), to every collar the campaign releases (canaries first, then the fleet);
   the collar answers both and asks the time (TS003 `app_time_req`, answered by `apply_uplink`
   with an `app_time_ans` correction), so every collar opens its window at the same time;
2. the window: `data_fragment` frames to the multicast group (`multicast_downlinks`, pushed with
   The Things Stack's `class_b_c` gateways and absolute time, or into a ChirpStack group's queue
   when due, see network_server.py), spaced by airtime / duty cycle of the
   10 % sub-band and queued at most HORIZON_S ahead: the data fragments, then parity in the send
   order of `parity_order.counter_at` (a fixed function of M); the position in that order is
   durable, so a restart resumes;
3. repair rounds (lora_bridge/updates/delivery.py): a multicast `frag_session_status` that every
   collar answers the first time (participants = 1), the collars still missing fragments after
   (participants = 0), with what it still needs; the answers (and the loss each collar's count
   shows) size the next parity; a collar that said nothing is asked again;
4. stragglers, still missing after the rounds: unicast parity fragments, as many as their
   answer and loss call for, within fair use (the outbox holds them to 10 a day per collar), each
   batch followed by a unicast `frag_session_status` (participants = 0) whose answer brings the next;
   a collar outside the group (it refused McGroupSetupReq or the window, or had not accepted its
   set-up when the window opened) is left out of the window's accounting with its reason and
   served by unicast from the start;
5. when the campaign ends (done, aborted, stopped by its canaries): what is still queued of it is
   dropped, its PackageVersionReq included (`queued_for_collars`; kept for a collar another unfinished campaign
   is updating, whose set-up may wait for the answer; a pause holds them with the set-ups), every collar
   that took its fragmentation session and has not rebuilt the image gets TS004 `frag_session_delete` (it
   stops waiting for fragments), every collar it gave the group gets TS005 `mc_group_delete`, and a
   network server group the bridge made is deleted (`delete_due` / `record_group_delete`: retried, never blocking).

A collar's result arrives as its port-31 ack and in its status (campaigns / update_results). Every
collar's step ends in bounded time (`fail_overdue`: "no answer", "no result in ..."), not counting
the time its campaign was paused; pause and resume are fuota_pause.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collar_firmware import codec as wire
from collar_firmware.scheduler import airtime_us
from lora_bridge import fuota_session_counts, queries
from lora_bridge.domain import (
    campaigns,
    collar_packages,
    downlinks,
    frag_package,
    group_pushes,
    multicast_groups,
)
from lora_bridge.network_server import origin_of
from lora_bridge.store.tables import (
    CampaignCollar,
    CampaignEvent,
    CollarMulticastGroup,
    Device,
    Downlink,
    DownlinkRoute,
    DownlinkTransmission,
    FuotaCollar,
    FuotaSession,
    MulticastDownlink,
    RawUplink,
    UpdateCampaign,
)
from lora_bridge.store.utc import utc_now
from lora_bridge.updates import delivery, frag_v2, multicast_keys, setup_layouts
from lora_bridge.updates.fec import Fragmented, fragment
from lora_bridge.updates.parity_order import counter_at
from lora_bridge.updates.planner import DOWNLINK_DUTY, CollarLink, PlanRefused, make_plan
from lora_bridge.uplink_formats import label

log = logging.getLogger(__name__)

SETUP_LEAD_S = 2 * 3600  # the window opens this long after the set-up is queued (class A: after uplinks)
HORIZON_S = 60.0  # multicast frames are queued at most this long before their absolute time
PRIOR_LOSS = 0.1  # a collar's downlink loss before any delivery measured it
NO_ANSWER = campaigns.NO_ANSWER
DEFAULT_SF = 9
MC_FREQUENCY_HZ100 = 8695250  # EU868 869.525 MHz, the 10 % sub-band (RX2)
# the FragIndex of every delivery's session: a collar holds one session at a time, and a set-up of the
# index it holds replaces a session a lost FragSessionDeleteReq left behind, where another index would be
# refused NotEnoughMemory until that session fell silent (collar_firmware/update.py); answers are matched
# to it whatever its value (setup_layouts.answers_set_up, the status answer's FragIndex)
# 1, not 0: an odd FragIndex is what lets the set-up byte for a collar whose firmware the bridge has not heard
# (setup_layouts.EITHER: FragIndex in bits 5..4 and 1..0) also enable group 0 in TS004's McGroupBitMask
# (bits 3..0), which today's collar enforces on every multicast fragment (TS004 v1.0.0: "silently dropped")
SESSION_INDEX = 1
MC_GROUP = 0  # the TS005 group a delivery sets up and opens its window for
MC_GROUP_BIT_MASK = 1 << MC_GROUP  # TS004 FragSession's McGroupBitMask: the delivery's group may carry the fragments
SETUP_ERROR_BITS = 0x3F  # FragSessionSetupAns below its FragIndex (bits 7..6): any set is a refusal
SETUP_ENCODING_UNSUPPORTED = 0x01  # ... bit 0 alone: what a collar without a crypto engine answers a v2.0.0 set-up
SETUP_SESSION_CNT_REPLAY = 0x10  # ... bit 4 alone: a v2.0.0 set-up whose SessionCnt is not above the last it took
SET_UP_V1_EVENT = "collar_setup_v1"  # the history's word for a collar set up in v1.0.0 after refusing v2.0.0's

SETUP = "setup"
WINDOW = "window"
REPAIR = "repair"
STRAGGLERS = "stragglers"
CLOSED = "closed"
DELIVERY_COMMANDS = ("mc_group_setup", "mc_class_c_session", "frag_session_setup", "data_fragment",
                     "frag_session_status")  # the last: a straggler asked by unicast what it still misses
DELETE_RETRY_S = 60  # a refused network server group deletion is tried again after this, doubling
DELETE_RETRY_MAX_S = 6 * 3600
MAX_DELETE_ATTEMPTS = 10


class DeliveryRefused(ValueError):
    """A delivery that cannot start: the plan breaks duty cycle or fair use, or the image cannot travel."""


class SplitNetwork(DeliveryRefused):
    """A delivery's collars are on networks that cannot carry one multicast session: two tenants (or
    clusters), or downlink routes to two network servers."""


def group_route(session: Session, device_ids: list[str], application_id: str | None,
                usable: Callable[[str], bool] | None = None) -> DownlinkRoute | None:
    """The downlink route (The Things Stack's X-Downlink-* headers: host and API key) a delivery's group
    frames go by: the newest of its own collars' routes in the group's application. A route is one
    collar's (two tenants may both have `elephants/collar-1`), so another tenant's collar of the same
    application never lends its host or key to this group. None when none of them has brought one yet.
    SplitNetwork when the collars name two tenants (`network_scope`) or their routes two hosts: a
    multicast group lives on one network server, and its frames would reach only part of the fleet,
    or be pushed to another tenant's server with its key. usable: whether a push URL may be used at all
    (network_server.allowed_route: on the configured server's origin when one is configured); the
    others are never pushed to, so they neither split the collars nor route the group."""
    scopes = sorted(set(session.scalars(select(Device.network_scope).where(
        Device.device_id.in_(device_ids), Device.network_scope.is_not(None)))))
    if len(scopes) > 1:
        raise SplitNetwork(f"the collars belong to {len(scopes)} network tenants ({', '.join(scopes)}): one "
                           "multicast group cannot reach them; start one campaign per tenant")
    routes = list(session.scalars(select(DownlinkRoute).where(
        DownlinkRoute.device_id.in_(device_ids), DownlinkRoute.push_url.is_not(None))
        .order_by(DownlinkRoute.updated_at.desc(), DownlinkRoute.device_id)))
    routes = [route for route in routes if usable is None or usable(route.push_url or "")]
    # one server is one origin (scheme, host, port: network_server.origin_of), however its URL is spelt
    servers = {origin_of(route.push_url) or route.push_url or "" for route in routes}
    if len(servers) > 1:
        hosts = sorted(":".join(map(str, server)) if isinstance(server, tuple) else server for server in servers)
        raise SplitNetwork(f"the collars' downlinks go to {len(hosts)} network servers ({', '.join(hosts)}): one "
                           "multicast group cannot reach them; start one campaign per network server")
    application = label(application_id) or ""
    return next((route for route in routes if route.application_id == application), None)


def _frags(row: FuotaSession) -> Fragmented:
    return fragment(row.image, row.frag_size)


def _links(session: Session, device_ids: list[str], prior_loss: float, max_sf: int) -> list[CollarLink]:
    """The collars' links as the plan sees them: a collar heard above the campaign's spreading factor
    gate (max_sf) is held until it is heard at max_sf or faster, so it is planned at max_sf, never
    slowing the group's window down to where it is now."""
    links = []
    for device_id in device_ids:
        sf = session.scalars(
            select(RawUplink.spreading_factor)
            .where(RawUplink.device_id == device_id, RawUplink.spreading_factor.is_not(None))
            .order_by(RawUplink.id.desc())
        ).first()
        loss = session.scalars(
            select(FuotaCollar.loss)
            .where(FuotaCollar.device_id == device_id, FuotaCollar.loss.is_not(None))
            .order_by(FuotaCollar.status_at.desc())
        ).first()
        links.append(CollarLink(device_id, min(int(sf or DEFAULT_SF), max_sf), prior_loss if loss is None else float(loss)))
    return links


def group_label(campaign_id: int) -> str:
    """The label a delivery's group McKey derives from (multicast_keys.CollarKeyRing.group)."""
    return f"campaign-{campaign_id}"


def start(session: Session, campaign: UpdateCampaign, image: bytes, group_id: str, now: datetime,
          prior_loss: float = PRIOR_LOSS, lead_s: float = SETUP_LEAD_S, mc_addr: int | None = None,
          group_keys: multicast_keys.CollarKeyRing | None = None,
          route_usable: Callable[[str], bool] | None = None) -> FuotaSession:
    """Plan and record the delivery of image for campaign; DeliveryRefused when it cannot be done.
    mc_addr and group_keys: the bridge sets up the group itself (every collar's root key must be in
    the key file); without them the collars' factory group is used. route_usable: which downlink
    routes may be pushed to (`group_route`)."""
    collars = list(session.scalars(select(CampaignCollar.device_id).where(
        CampaignCollar.campaign_id == campaign.id,
        CampaignCollar.state.not_in(campaigns.NOT_SENT))))  # not those that run it, nor those off a delta's base
    networks = set(session.scalars(select(Device.network).where(Device.device_id.in_(collars))))
    if networks - {"tts", "chirpstack"} or len(networks) > 1:
        raise DeliveryRefused("a delivery goes through one multicast group on one network server (The Things "
                              "Stack or ChirpStack); these collars are on "
                              f"{', '.join(sorted(str(n) for n in networks))}")
    group_route(session, collars, None, route_usable)  # SplitNetwork: the collars span tenants or network servers
    if mc_addr is not None:
        if group_keys is None:
            raise DeliveryRefused("a multicast address without the collars' key file: set TEMBO_COLLAR_KEYS_FILE")
        euis = dict(session.execute(select(Device.device_id, Device.dev_eui).where(Device.device_id.in_(collars))).all())
        unknown = sorted(d for d in collars if not group_keys.knows(euis.get(d)))
        if unknown:
            raise DeliveryRefused(f"no root key in {group_keys.path} for {', '.join(unknown)}: the bridge cannot "
                                  "give them the group's key")
    try:
        plan = make_plan(len(image), _links(session, collars, prior_loss, campaign.max_spreading_factor))
        frags = fragment(image, plan.frag_size)
    except (PlanRefused, ValueError) as error:
        raise DeliveryRefused(str(error)) from error
    application = session.scalars(
        select(Device.application_id).where(Device.device_id.in_(collars), Device.application_id.is_not(None))
    ).first()
    heard_by = queries.last_gateway_per_device(session)
    gateways = sorted({heard_by[d] for d in collars if d in heard_by})
    opens = (now + timedelta(seconds=lead_s)).replace(microsecond=0)  # collars get whole seconds
    row = FuotaSession(
        campaign_id=campaign.id, image=image, group_id=group_id, application_id=application, gateways=gateways,
        mc_addr=mc_addr, state=SETUP, frag_size=frags.frag_size, nb_frag=frags.nb_frag, padding=frags.padding, sf=plan.sf,
        fragment_airtime_s=plan.fragment_airtime_s, spacing_s=plan.spacing_s, session_time=opens,
        target_fragment=plan.fragments, next_fragment=1, next_at=opens, sent=0, airtime_s=0.0,
        status_rounds=0, updated_at=now,
    )
    session.add(row)
    for device_id in collars:
        session.add(FuotaCollar(campaign_id=campaign.id, device_id=device_id, session_answered=False,
                                setup_answered=False, unicast_sent=0, complete=False))
    session.flush()
    log.info("delivery planned campaign_id=%d fragments=%d (data %d) sf=%d window=%s gateways=%s",
             campaign.id, plan.fragments, plan.nb_frag, plan.sf, opens.isoformat(), gateways,
             extra={"campaign_id": campaign.id})
    return row


# ---- moving deliveries on ----------------------------------------------------------------------


def anything_to_move(session: Session) -> bool:
    """Whether `tick` and the campaigns' expiry have anything to do: an active campaign, or a delivery
    not yet ended (its campaign may have ended since). A read: the outbox asks before each flush, and
    with no campaign under way it takes no write lock."""
    open_delivery = select(FuotaSession.campaign_id).where(FuotaSession.ended_at.is_(None)).limit(1)
    return campaigns.any_running(session) or session.scalar(open_delivery) is not None


def tick(session: Session, codec: Any, now: datetime | None = None,
         group_keys: multicast_keys.CollarKeyRing | None = None, *, no_answer_factor: float,
         version_wait_s: float = 0.0) -> int:
    """Move every open delivery of an active campaign on; return how many frames were queued.
    group_keys: the collars' key file, for deliveries that set up their own group; no_answer_factor:
    how many planned delivery times a collar may stay silent, or go without a result (`fail_overdue`);
    version_wait_s: a collar whose TS004 version is not known is asked PackageVersionReq first and its set-up
    waits this long for the answer (`_versions_known`; 0: it is set up as its firmware says, unasked)."""
    now = now or utc_now()
    queued = 0
    rows = session.execute(
        select(FuotaSession, UpdateCampaign)
        .join(UpdateCampaign, UpdateCampaign.id == FuotaSession.campaign_id)
        .where(UpdateCampaign.state.in_(campaigns.ACTIVE))
    ).all()
    for row, _campaign in rows:
        queued += _tick_one(session, codec, row, now, group_keys, version_wait_s)
        fail_overdue(session, row, now, no_answer_factor)
        row.updated_at = now
    return queued + _end_deliveries(session, codec, now)


def _tick_one(session: Session, codec: Any, row: FuotaSession, now: datetime,
              group_keys: multicast_keys.CollarKeyRing | None = None, version_wait_s: float = 0.0) -> int:
    queued = _setups(session, codec, row, now, group_keys, version_wait_s)  # a closed delivery opens again for collars released since
    if row.state == SETUP and now >= row.session_time:
        row.state = WINDOW
        _exclude_outside_the_group(session, row)
        log.info("class C window open campaign_id=%d", row.campaign_id, extra={"campaign_id": row.campaign_id})
    if row.state in (WINDOW, REPAIR) and now >= window_closes(row):
        row.state = STRAGGLERS  # the collars closed their Class C windows (TS005 timeout): unicast from here
        log.info("class C window closed campaign_id=%d", row.campaign_id, extra={"campaign_id": row.campaign_id})
    if row.state in (WINDOW, REPAIR):
        queued += _multicast(session, codec, row, now)
    if row.state == STRAGGLERS:
        queued += _stragglers(session, codec, row)
    return queued


def _setups(session: Session, codec: Any, row: FuotaSession, now: datetime,
            group_keys: multicast_keys.CollarKeyRing | None = None, version_wait_s: float = 0.0) -> int:
    """Queue the set-up of every collar the campaign released since (a new window when the last one
    already opened: the fleet after its canaries), once its package versions are known or waited for."""
    released = list(session.scalars(
        select(FuotaCollar)
        .join(CampaignCollar, (CampaignCollar.campaign_id == FuotaCollar.campaign_id)
              & (CampaignCollar.device_id == FuotaCollar.device_id))
        .where(FuotaCollar.campaign_id == row.campaign_id, CampaignCollar.state == "sending",
               FuotaCollar.setup_queued_at.is_(None))
    ))
    if not released:
        return 0
    campaign = session.get(UpdateCampaign, row.campaign_id)
    steps = {c.device_id: c for c in session.scalars(select(CampaignCollar).where(
        CampaignCollar.campaign_id == row.campaign_id, CampaignCollar.device_id.in_([c.device_id for c in released])))}
    if row.ended_at is None:  # a link or battery that went past a gate since the release holds the collar back
        released = [c for c in released if campaigns.hold_back(session, campaign, steps[c.device_id]) is None]
        if not released:
            return 0
    if row.ended_at is not None:  # resumed after its canaries stopped it: the group is gone
        for collar in session.scalars(select(CampaignCollar).where(
                CampaignCollar.campaign_id == row.campaign_id, CampaignCollar.state == "sending",
                CampaignCollar.device_id.in_([c.device_id for c in released]))):
            campaigns.fail_collar(session, campaign, collar, "the delivery ended when the campaign stopped")
        return 0
    asked = 0
    if version_wait_s > 0:
        released, asked = _versions_known(session, codec, row, campaign, steps, released, now, version_wait_s)
        if not released:
            return asked
    if row.mc_addr is not None and group_keys is None:
        log.warning("set-up of %d collars waits: campaign_id=%d needs the collars' key file (TEMBO_COLLAR_KEYS_FILE)",
                    len(released), row.campaign_id, extra={"campaign_id": row.campaign_id})
        return asked
    queued = asked
    if row.state != SETUP:  # a collar that rejoined since the window opened: a new session by unicast
        for collar in [c for c in released if c.unicast_reason is not None]:
            queued += _set_up_rejoined(session, codec, row, collar, now, group_keys)
        released = [c for c in released if c.unicast_reason is None]
        if not released:
            return queued
        _reopen(row, now)
    group = None
    if row.mc_addr is not None and group_keys is not None:
        group = group_keys.group(row.mc_addr, group_label(row.campaign_id))
        euis = dict(session.execute(select(Device.device_id, Device.dev_eui)
                                    .where(Device.device_id.in_([c.device_id for c in released]))).all())
    for collar in released:
        if collar.session_cnt is not None and collar.session_answered:  # its v2.0.0 set-up refused as a replay
            _queue_frag_setup(session, codec, row, collar.device_id, campaign, now, group_keys)  # that alone again
            collar.setup_queued_at = now
            queued += 1
            continue
        if group is not None:
            try:
                multicast_groups.queue_setup(session, codec, device_id=collar.device_id,
                                             dev_eui=euis.get(collar.device_id) or "", group=MC_GROUP, keys=group,
                                             ring=group_keys, campaign_id=row.campaign_id, now=now)
            except multicast_keys.CollarKeyError as error:
                log.warning("no set-up for device_id=%s: %s", collar.device_id, error,
                            extra={"device_id": collar.device_id, "campaign_id": row.campaign_id})
                continue  # it stays unreleased until its key is in the file
            queued += 1
        queue_window(session, codec, row, collar.device_id)
        _queue_frag_setup(session, codec, row, collar.device_id, campaign, now, group_keys)
        collar.setup_queued_at = now
        queued += 2
    log.info("set-up queued for %d collars campaign_id=%d", len(released), row.campaign_id,
             extra={"campaign_id": row.campaign_id})
    return queued


def _versions_known(session: Session, codec: Any, row: FuotaSession, campaign: UpdateCampaign,
                    steps: dict[str, CampaignCollar], released: list[FuotaCollar], now: datetime,
                    wait_s: float) -> tuple[list[FuotaCollar], int]:
    """Of the released collars, those whose set-up may be queued now, and how many PackageVersionReq were queued.
    A collar whose TS004 version is not known (collar_packages.announced) is asked first (port 201, and 200 when
    the delivery sets up its own TS005 group) and waits up to wait_s of the campaign's running time; silent, it
    is set up as its firmware says (frag_v2.speaks_v2), its history saying so. A collar that announced a package
    or version the bridge does not speak on those ports is failed with that reason."""
    ports = (collar_packages.FRAGMENTS.port,) + ((collar_packages.MULTICAST.port,) if row.mc_addr is not None else ())
    ready, queued = [], 0
    for collar in released:
        device_id = collar.device_id
        heard = collar_packages.announced(session, device_id)
        trouble = next(filter(None, (collar_packages.problem(heard[p]) for p in ports if p in heard)), None)
        if trouble is not None:
            log.warning("device_id=%s not set up campaign_id=%d: it %s", device_id, row.campaign_id, trouble,
                        extra={"device_id": device_id, "campaign_id": row.campaign_id})
            campaigns.fail_collar(session, campaign, steps[device_id], f"it {trouble}")
        elif collar_packages.FRAGMENTS.port in heard:
            ready.append(collar)
        elif collar.version_asked_at is None:
            queued += len(collar_packages.ask(session, codec, device_id, ports))
            collar.version_asked_at = now
        elif campaigns.running_s(session, row.campaign_id, collar.version_asked_at, now) >= wait_s:
            fw_version = collar_packages.firmware_of(session, device_id)
            guess = "v2.0.0" if frag_v2.speaks_v2(fw_version) else "v1.0.0"
            campaigns.record_event(session, campaign, "collar_version_unanswered", device_id, time=now,
                                   fw_version=fw_version, firmware_says=f"TS004 {guess}",
                                   why=f"no PackageVersionAns within {wait_s:g} s: set up as its firmware says")
            log.warning("no PackageVersionAns from device_id=%s campaign_id=%d within %g s: set up as its firmware %s "
                        "says (TS004 %s)", device_id, row.campaign_id, wait_s, fw_version, guess,
                        extra={"device_id": device_id, "campaign_id": row.campaign_id})
            ready.append(collar)
    return ready, queued


def _queue_frag_setup(session: Session, codec: Any, row: FuotaSession, device_id: str, campaign: UpdateCampaign,
                      now: datetime, ring: multicast_keys.CollarKeyRing | None = None) -> Downlink:
    """Queue the collar's TS004 FragSessionSetupReq, its FragSession byte laid out as the firmware the
    collar last reported reads it (updates/setup_layouts.py); a collar set up in another layout than
    TS004's has its campaign's history say which and why. A collar whose firmware speaks TS004 v2.0.0 and whose
    root key the key file (ring) holds gets v2.0.0's set-up (the codec's v2.0.0 row): SessionCnt (above any the
    collar was given before, `fuota_session_counts`), the image's MIC, AckReception (updates/frag_v2.py); any other
    collar (and one given no ring) v1.0.0's. Returns the set-up's downlink."""
    device = session.get(Device, device_id)
    fw_version, dev_eui = (device.fw_version, device.dev_eui) if device is not None else (None, None)
    layout = setup_layouts.layout_for(fw_version)
    values = {**setup_layouts.setup_values(fw_version, SESSION_INDEX, MC_GROUP_BIT_MASK), "nb_frag": row.nb_frag,
              "frag_size": row.frag_size, "control": delivery.BLOCK_ACK_DELAY, "padding": row.padding,
              "descriptor": row.campaign_id}
    version = frag_package.V1
    heard = collar_packages.announced(session, device_id).get(collar_packages.FRAGMENTS.port)
    answer = None if heard is None else (heard.package_id, heard.package_version)
    v2 = frag_v2.set_up_in_v2(answer, fw_version) and ring is not None and ring.knows(dev_eui)
    count = fuota_session_counts.give(session, device_id, row.campaign_id) if v2 else None
    if v2 and count is None:
        _counts_spent(session, row, campaign, device_id, now)
    elif count is not None:
        values = frag_v2.setup_values(ring, dev_eui or "", {**values, "frag_index": SESSION_INDEX}, count, row.image)
        version = frag_package.V2
        log.info("frag_session_setup in TS004 v2.0.0 for device_id=%s (fw_version=%s) session_cnt=%d campaign_id=%d",
                 device_id, fw_version, values["session_cnt"], row.campaign_id,
                 extra={"device_id": device_id, "campaign_id": row.campaign_id})
    queued = downlinks.queue_command(session, codec, device_id=device_id, command="frag_session_setup",
                                     values=values, version=version)
    delivered = session.get(FuotaCollar, (row.campaign_id, device_id))
    if delivered is not None:
        frag_package.record_setup(delivered, version, now)
    if layout is not setup_layouts.TS004:
        if layout is setup_layouts.EITHER:
            why = ("the collar has not reported a firmware version the bridge reads: its set-up names the same "
                   "FragIndex to firmware 1.0.0 and to firmware from 1.0.1")
        else:
            why = f"the collar runs firmware {fw_version}, which reads FragSessionSetupReq as {layout.name} does"
        campaigns.record_event(session, campaign, "collar_setup_layout", device_id, time=now,
                               fw_version=fw_version, layout=layout.describe(), why=why)
        log.info("frag_session_setup for device_id=%s laid out as %s reads it (fw_version=%s) campaign_id=%d",
                 device_id, layout.name, fw_version, row.campaign_id,
                 extra={"device_id": device_id, "campaign_id": row.campaign_id})
    return queued


def _counts_spent(session: Session, row: FuotaSession, campaign: UpdateCampaign, device_id: str,
                  now: datetime) -> None:
    """The collar was given the last TS004 v2.0.0 SessionCnt (`fuota_session_counts.LAST_COUNT`): it refuses any
    v2.0.0 set-up from then on, so it is set up in v1.0.0, its campaign's history saying why."""
    last = fuota_session_counts.LAST_COUNT
    log.warning("device_id=%s was given SessionCnt %d, the last TS004 v2.0.0 has: set up in v1.0.0 campaign_id=%d",
                device_id, last, row.campaign_id, extra={"device_id": device_id, "campaign_id": row.campaign_id})
    campaigns.record_event(session, campaign, fuota_session_counts.SPENT_EVENT, device_id, time=now, session_cnt=last,
                           why=f"the collar was given SessionCnt {last}, the last TS004 v2.0.0 has, and refuses any "
                               "set-up not above it (never wrapped): set up in TS004 v1.0.0, its image still signed "
                               "and checked on the collar, without the block's MIC")


def _set_up_rejoined(session: Session, codec: Any, row: FuotaSession, collar: FuotaCollar, now: datetime,
                     ring: multicast_keys.CollarKeyRing | None = None) -> int:
    """A collar that rejoined or lost its session after the delivery's window opened (`apply_rejoin`,
    `_session_lost`): a new TS004 fragmentation session by unicast, and unicast fragments once it accepts it (a
    new Class C window for one collar would hold the group's window for the others); return how many frames were
    queued. The collar's own word decides its version, as for its first set-up: v2.0.0 with its key ring (ring)
    when it announced v2.0.0, unless it refused v2.0.0's set-up in this delivery (`_set_up_v1_instead`)."""
    campaign = session.get(UpdateCampaign, row.campaign_id)
    if ring is not None and _refused_v2(session, row, collar.device_id):
        ring = None
    _queue_frag_setup(session, codec, row, collar.device_id, campaign, now, ring)
    collar.setup_queued_at = now
    log.info("fragmentation session set up again by unicast device_id=%s campaign_id=%d", collar.device_id,
             row.campaign_id, extra={"device_id": collar.device_id, "campaign_id": row.campaign_id})
    return 1


def _refused_v2(session: Session, row: FuotaSession, device_id: str) -> bool:
    """True when the collar refused TS004 v2.0.0's set-up in this delivery (EncodingUnsupported: no crypto engine),
    which its campaign's history keeps (`_set_up_v1_instead`)."""
    return session.scalar(select(CampaignEvent.id).where(
        CampaignEvent.campaign_id == row.campaign_id, CampaignEvent.device_id == device_id,
        CampaignEvent.event == SET_UP_V1_EVENT).limit(1)) is not None


def apply_rejoin(session: Session, device_id: str, at: datetime) -> None:
    """The collar joined the network again at `at` (a brown-out, a watchdog reset): its firmware keeps
    neither the fragmentation session nor the Class C window across a reset (collar_firmware/update.py,
    multicast.py: RAM), and the modem's stack forgets the multicast group. TS004 FragSessionSetupReq and
    TS005 McGroupSetupReq / McClassCSessionReq hold for the session they were sent in, so for every open
    delivery that set the collar up before `at` and has no image from it yet: what is still queued of
    its old set-up is dropped, its group is no longer counted as held, and `tick` sets it up again (in
    the coming window while the delivery is still in set-up; else a new fragmentation session by unicast,
    as a straggler). Its campaign's history says so."""
    found = session.execute(
        select(FuotaCollar, FuotaSession, CampaignCollar)
        .join(FuotaSession, FuotaSession.campaign_id == FuotaCollar.campaign_id)
        .join(CampaignCollar, (CampaignCollar.campaign_id == FuotaCollar.campaign_id)
              & (CampaignCollar.device_id == FuotaCollar.device_id))
        .where(FuotaCollar.device_id == device_id, FuotaCollar.complete.is_(False),
               FuotaCollar.setup_queued_at.is_not(None), FuotaCollar.setup_queued_at < at,
               FuotaSession.ended_at.is_(None), CampaignCollar.state == "sending")).all()
    for collar, row, _step in found:
        dropped = _drop_queued(session, device_id)
        in_window = row.state != SETUP
        collar.setup_queued_at = None
        collar.session_answered = collar.setup_answered = False
        collar.received = collar.missing = collar.status_fragment = collar.status_at = None
        if in_window:
            collar.unicast_reason = f"rejoined the network at {at:%Y-%m-%d %H:%M} UTC, after its window opened"
        if row.mc_addr is not None:
            multicast_groups.forget(session, device_id, MC_GROUP, at)
        campaign = session.get(UpdateCampaign, row.campaign_id)
        campaigns.record_event(session, campaign, "collar_rejoined", device_id, time=at, delivery_state=row.state,
                               set_up_again="fragmentation session by unicast" if in_window else "for the window",
                               frames_dropped=dropped)
        log.warning("device_id=%s rejoined during the delivery of campaign_id=%d (%s): its set-up is lost, set up "
                    "again%s", device_id, row.campaign_id, row.state, " by unicast" if in_window else "",
                    extra={"device_id": device_id, "campaign_id": row.campaign_id})


def _session_lost(session: Session, row: FuotaSession, collar: FuotaCollar, heard_at: datetime) -> None:
    """The collar answered a status request with SessionDoesNotExist (TS004 FragSessionStatusAns): it holds
    no fragmentation session of the delivery (a watchdog reset ended it, which the network does not
    report as it does a rejoin), so it has not the image, whatever its counts say. As after a rejoin,
    what is still queued for its old session is dropped and `tick` sets it up again (by unicast once the
    window opened; its multicast group is untouched: its modem kept it). Its campaign's history says so."""
    device_id = collar.device_id
    dropped = _drop_queued(session, device_id)
    in_window = row.state != SETUP
    collar.setup_queued_at = None
    collar.setup_answered = False
    collar.received = collar.missing = collar.status_fragment = collar.status_at = None
    if in_window:
        collar.unicast_reason = "its fragmentation session was lost (FragSessionStatusAns SessionDoesNotExist)"
    campaign = session.get(UpdateCampaign, row.campaign_id)
    campaigns.record_event(session, campaign, "collar_lost_session", device_id, time=heard_at,
                           delivery_state=row.state, frames_dropped=dropped)
    log.warning("device_id=%s holds no fragmentation session of campaign_id=%d (%s): set up again%s", device_id,
                row.campaign_id, row.state, " by unicast" if in_window else "",
                extra={"device_id": device_id, "campaign_id": row.campaign_id})


def _reopen(row: FuotaSession, now: datetime) -> None:
    """A new window for collars released after the last one opened; totals stay cumulative."""
    row.state = SETUP
    row.session_time = (now + timedelta(seconds=SETUP_LEAD_S)).replace(microsecond=0)
    row.next_at = row.session_time
    row.next_fragment = 1
    row.status_asked_at = None
    row.status_rounds = 0
    row.closed_at = None  # the new window sends as many fragments as the last one ended with


def window_closes(row: FuotaSession) -> datetime:
    """When the collars close the Class C window of the delivery's session (TS005 timeout)."""
    return row.session_time + timedelta(seconds=1 << delivery.window_timeout_log2(row.nb_frag, row.spacing_s))


def _own_collars(row: FuotaSession) -> Any:
    """The delivery's collars that no other unfinished campaign is updating now (a collar whose step here
    ended may follow another campaign: what is queued for it is that campaign's)."""
    elsewhere = (select(CampaignCollar.device_id)
                 .join(UpdateCampaign, UpdateCampaign.id == CampaignCollar.campaign_id)
                 .where(CampaignCollar.campaign_id != row.campaign_id, UpdateCampaign.state.in_(campaigns.UNFINISHED),
                        CampaignCollar.state.not_in(campaigns.FINAL_COLLAR_STATES)))
    return select(FuotaCollar.device_id).where(FuotaCollar.campaign_id == row.campaign_id,
                                               FuotaCollar.device_id.not_in(elsewhere))


def queued_for_collars(session: Session, row: FuotaSession) -> list[Downlink]:
    """The delivery's unicast frames (its PackageVersionReq, set-up, fragments) still queued for its own collars
    (`_own_collars`: a collar another unfinished campaign is updating keeps its version question, which that
    campaign's set-up may wait for; the outbox queues one question for both, `downlinks.queue_command`)."""
    return list(session.scalars(select(Downlink).where(
        Downlink.device_id.in_(_own_collars(row)), Downlink.command.in_(DELIVERY_COMMANDS + collar_packages.QUESTIONS),
        Downlink.state == downlinks.STATE_QUEUED)))


def queue_window(session: Session, codec: Any, row: FuotaSession, device_id: str) -> None:
    """Queue a collar's TS005 McClassCSessionReq for the delivery's window (its time, its timeout)."""
    downlinks.queue_command(session, codec, device_id=device_id, command="mc_class_c_session", values={
        "group": MC_GROUP, "session_time_gps_s": wire.gps_from_unix(int(row.session_time.timestamp())),
        "timeout_log2_s": delivery.window_timeout_log2(row.nb_frag, row.spacing_s),
        "frequency_hz100": MC_FREQUENCY_HZ100, "data_rate": max(0, 12 - row.sf)})


def _queue_multicast(session: Session, row: FuotaSession, command: str, port: int, payload: bytes,
                     at: datetime) -> None:
    """Queue one frame for the group at `at`; the next may go one airtime / duty cycle later."""
    frame = MulticastDownlink(
        campaign_id=row.campaign_id, group_id=row.group_id, application_id=row.application_id,
        gateways=list(row.gateways or []), f_port=port, payload=payload, command=command, send_at=at,
        state=downlinks.STATE_QUEUED, attempts=0)
    session.add(frame)
    session.flush()
    frame.correlation_id = f"tembo:multicast:{frame.id}"
    airtime_s = airtime_us(len(payload), row.sf, 125) / 1e6
    row.next_at = at + timedelta(seconds=airtime_s / DOWNLINK_DUTY)
    row.sent += 1
    row.airtime_s += airtime_s


def _multicast(session: Session, codec: Any, row: FuotaSession, now: datetime) -> int:
    """Queue the fragments due within the horizon, then the status request, then the repair decision."""
    queued = 0
    horizon = now + timedelta(seconds=HORIZON_S)
    frags = None
    while row.next_fragment <= row.target_fragment and row.next_at <= horizon:
        frags = frags or _frags(row)
        n = counter_at(row.next_fragment, row.nb_frag)  # data first, then parity in the send order
        payload = codec.encode("data_fragment", {"index_and_n": (SESSION_INDEX << 14) | n,
                                                 "data": list(frags.fragment(n))})
        _queue_multicast(session, row, "data_fragment", codec.port_of("data_fragment"), payload,
                         max(row.next_at, now))
        row.next_fragment += 1
        queued += 1
    if row.next_fragment <= row.target_fragment:
        return queued
    if row.status_asked_at is None:
        if row.next_at > horizon:
            return queued
        at = max(row.next_at, now)
        _queue_multicast(session, row, "frag_session_status", codec.port_of("frag_session_status"),
                         codec.encode("frag_session_status", {"frag_index": SESSION_INDEX,
                                      "participants": delivery.status_participants(row.status_rounds)}), at)
        row.status_asked_at = at
        row.state = REPAIR
        return queued + 1
    if now < row.status_asked_at + timedelta(seconds=delivery.ANSWER_WAIT_S):
        return queued
    answers, silent = _answers_to_round(session, row)
    target = delivery.repair_target(answers, row.target_fragment)
    if not answers and (not silent or row.status_rounds >= delivery.MAX_REPAIR_ROUNDS):
        _close(session, row, now)  # every collar has its image (the silent ones will say so in status)
    elif row.status_rounds < delivery.MAX_REPAIR_ROUNDS:
        row.status_rounds += 1
        log.info("repair round %d campaign_id=%d: %d collars still missing, %d silent, fragments up to %d",
                 row.status_rounds, row.campaign_id, len(answers), len(silent), target,
                 extra={"campaign_id": row.campaign_id})
        row.target_fragment = target  # the same when only silent collars are asked again
        row.status_asked_at = None
    else:
        row.state = STRAGGLERS
        log.info("multicast done campaign_id=%d: %d stragglers get unicast", row.campaign_id, len(answers),
                 extra={"campaign_id": row.campaign_id})
    return queued


def _answers_to_round(session: Session, row: FuotaSession) -> tuple[list[delivery.StatusAnswer], list[str]]:
    """The collars still missing fragments by their answers heard after every fragment of this round
    was queued (by the counter, not by clocks), and the collars in the window that said nothing."""
    in_window = session.scalars(select(FuotaCollar).where(
        FuotaCollar.campaign_id == row.campaign_id, FuotaCollar.setup_answered.is_(True),
        FuotaCollar.unicast_reason.is_(None), FuotaCollar.complete.is_(False)))
    answers, silent = [], []
    for c in in_window:
        if c.status_fragment is None or c.status_fragment < row.target_fragment:
            silent.append(c.device_id)  # missed the request, or its answer was lost
        elif c.missing:
            answers.append(delivery.StatusAnswer(c.device_id, c.status_fragment, c.missing,
                                                 c.loss if c.loss is not None else PRIOR_LOSS))
    return answers, silent


def _exclude(collar: FuotaCollar, row: FuotaSession, reason: str) -> None:
    """Take a collar out of the group's window and accounting: it is served by unicast (once it has a
    fragmentation session), and the reason is kept."""
    if collar.unicast_reason is not None or collar.complete:
        return
    collar.unicast_reason = reason[:120]
    if collar.setup_answered and not collar.missing:
        collar.missing = row.nb_frag  # it hears none of the group's frames: all of it goes by unicast
    if row.state == CLOSED and collar.missing:
        row.state = STRAGGLERS
    log.info("device_id=%s outside the multicast group of campaign_id=%d: %s; unicast", collar.device_id,
             row.campaign_id, reason, extra={"device_id": collar.device_id, "campaign_id": row.campaign_id})


def _exclude_outside_the_group(session: Session, row: FuotaSession) -> None:
    """At the window's opening: every collar that did not accept all of its set-up (group, window,
    fragmentation session) is outside the group, with the reason."""
    groups = {}
    if row.mc_addr is not None:
        groups = {g.device_id: g.state for g in session.scalars(select(CollarMulticastGroup).where(
            CollarMulticastGroup.campaign_id == row.campaign_id, CollarMulticastGroup.mc_group == MC_GROUP))}
    for collar in session.scalars(select(FuotaCollar).where(
            FuotaCollar.campaign_id == row.campaign_id, FuotaCollar.setup_queued_at.is_not(None),
            FuotaCollar.unicast_reason.is_(None), FuotaCollar.complete.is_(False))):
        group = groups.get(collar.device_id)
        if row.mc_addr is not None and group != multicast_groups.DEFINED:
            _exclude(collar, row, "refused the multicast group (McGroupSetupAns IDerror)"
                     if group == multicast_groups.REFUSED else "no McGroupSetupAns before the window opened")
        elif not collar.session_answered:
            _exclude(collar, row, "no McClassCSessionAns accepting the window before it opened")
        elif not collar.setup_answered:
            _exclude(collar, row, "no FragSessionSetupAns before the window opened")


# TS004 FragSessionSetupAns StatusBitMask below the FragIndex, as LoRaMac-node's LmhpFragmentation.c sets them
SETUP_REFUSALS = ((1, "EncodingUnsupported"), (2, "NotEnoughMemory"), (4, "FragSessionIndexNotSupported"),
                  (8, "WrongDescriptor"), (0x10, "SessionCntReplay"))
SETUP_BUSY_DETAIL = "NotEnoughMemory: the image is too large for the collar, or it is busy with an earlier image"


def _refused_setup(session: Session, row: FuotaSession, device_id: str, status: int) -> None:
    """A collar refused its fragmentation session (a collar checking an earlier image answers NotEnoughMemory):
    it is failed with the reason its answer gives, not later as "no answer to the set-up"."""
    collar = session.scalars(select(CampaignCollar).where(CampaignCollar.campaign_id == row.campaign_id,
                                                          CampaignCollar.device_id == device_id)).first()
    if collar is None:
        return
    bits = ", ".join(name for bit, name in SETUP_REFUSALS if status & bit) or f"status {status:#04x}"
    log.warning("fragmentation session refused device_id=%s campaign_id=%d: %s", device_id, row.campaign_id, bits,
                extra={"device_id": device_id, "campaign_id": row.campaign_id})
    campaigns.fail_collar(session, session.get(UpdateCampaign, row.campaign_id), collar, f"set-up refused: {bits}",
                          detail=SETUP_BUSY_DETAIL if status & 2 else None)


def _stray_setup_refused(session: Session, row: FuotaSession, device_id: str, status: int, heard_at: datetime) -> None:
    """The collar refused a fragmentation set-up that is not the delivery's (it took the delivery's, or none was
    sent it yet): a replayed frame, another fleet's campaign. Its step is untouched, said in the campaign's history;
    a session the refusal ended is found by the status rounds (`_session_lost`)."""
    bits = ", ".join(name for bit, name in SETUP_REFUSALS if status & bit) or f"status {status:#04x}"
    log.warning("device_id=%s refused a fragmentation set-up that is not campaign_id=%d's: %s", device_id,
                row.campaign_id, bits, extra={"device_id": device_id, "campaign_id": row.campaign_id})
    campaigns.record_event(session, session.get(UpdateCampaign, row.campaign_id), "stray_setup_refused", device_id,
                           time=heard_at, refused=bits)


def _refused_group(session: Session, device_id: str, fields: dict[str, Any]) -> None:
    """A collar's McGroupSetupAns with IDerror for the group its open delivery set up: out of the group."""
    if fields.get("message") != "mc_group_setup_ans" or not int(fields.get("status") or 0) & multicast_groups.ERR_BIT \
            or int(fields.get("status") or 0) & multicast_groups.GROUP_MASK != MC_GROUP:
        return
    found = session.execute(
        select(FuotaCollar, FuotaSession)
        .join(FuotaSession, FuotaSession.campaign_id == FuotaCollar.campaign_id)
        .where(FuotaCollar.device_id == device_id, FuotaCollar.complete.is_(False), FuotaSession.mc_addr.is_not(None),
               FuotaSession.ended_at.is_(None))
        .order_by(FuotaCollar.campaign_id.desc())
    ).first()
    if found is not None and not _step_over(session, found[1], device_id, "mc_group_setup_ans"):
        _exclude(found[0], found[1], "refused the multicast group (McGroupSetupAns IDerror)")


def _step_over(session: Session, row: FuotaSession, device_id: str, message: str) -> bool:
    """True (and logged) when the collar's step in the delivery's campaign is already over (failed, or
    updated): a late answer then changes nothing, it does not bring the collar back into the delivery."""
    step = session.scalar(select(CampaignCollar).where(CampaignCollar.campaign_id == row.campaign_id,
                                                        CampaignCollar.device_id == device_id))
    if step is None or step.state not in campaigns.FINAL_COLLAR_STATES:
        return False
    log.info("late %s from device_id=%s ignored: its step in campaign_id=%d is already %s%s", message, device_id,
             row.campaign_id, step.state, f" ({step.reason})" if step.reason else "",
             extra={"device_id": device_id, "campaign_id": row.campaign_id})
    return True


def _close(session: Session, row: FuotaSession, now: datetime) -> None:
    silent = session.scalars(
        select(CampaignCollar)
        .join(FuotaCollar, (FuotaCollar.campaign_id == CampaignCollar.campaign_id)
              & (FuotaCollar.device_id == CampaignCollar.device_id))
        .where(CampaignCollar.campaign_id == row.campaign_id, CampaignCollar.state == "sending",
               FuotaCollar.setup_queued_at.is_not(None), FuotaCollar.setup_answered.is_(False),
               # set up again by unicast after a rejoin (`_set_up_rejoined`): its answer may come after the
               # window; until then `fail_overdue` bounds its wait
               ~(FuotaCollar.unicast_reason.is_not(None) & (FuotaCollar.setup_queued_at > row.session_time))))
    campaign = session.get(UpdateCampaign, row.campaign_id)
    for collar in silent:
        # no fragmentation session on the collar: unicast cannot serve it either
        campaigns.fail_collar(session, campaign, collar, "no answer to the set-up")
    row.state = CLOSED
    row.closed_at = now
    log.info("delivery closed campaign_id=%d fragments=%d airtime_s=%.1f", row.campaign_id, row.sent,
             row.airtime_s, extra={"campaign_id": row.campaign_id})


def planned_s(row: FuotaSession) -> float:
    """The delivery's planned time for one collar: from its set-up to its class C window's end."""
    return SETUP_LEAD_S + (1 << delivery.window_timeout_log2(row.nb_frag, row.spacing_s))


def fail_overdue(session: Session, row: FuotaSession, now: datetime, factor: float) -> list[str]:
    """End the step of every collar of the delivery that is overdue; return their ids. Time counts only
    while the campaign runs (`campaigns.running_s`: paused time is not a collar's fault). Two limits:

    - "no answer": it answered its set-up, then was heard neither since its set-up nor at all in the
      last `factor` planned times (`planned_s`), with nothing queued for it in the outbox (fair use
      may hold its unicast fragments; a collar fed by unicast after its uplinks is heard);
    - "no result": `factor` planned times since its set-up (and MAX_UNICAST_DAYS more when it is served
      by unicast, which fair use spreads over days) went by without its result, heard or not: a
      collar that keeps answering status requests, or sending its own status, but never rebuilds the
      image or never says how its install went would otherwise hold its campaign open for ever.
      What is still queued for it is dropped.

    Either way what its delivery pushed to the network server and no report followed (no `sent` on air:
    a network without downlink events never says, and a class A collar that is not heard is given
    nothing) is dropped too, the reason on each (`_drop_pushed`): until 6 December those fragments and
    status requests were shown `sent` for ever to a collar whose step had long failed.

    The campaign counts it like any failed collar: an overdue canary stops a campaign as a refusing
    one does, and a campaign whose last collar is overdue is done."""
    limit_s = factor * planned_s(row)
    found = session.execute(
        select(CampaignCollar, FuotaCollar, Device.last_seen)
        .join(FuotaCollar, (FuotaCollar.campaign_id == CampaignCollar.campaign_id)
              & (FuotaCollar.device_id == CampaignCollar.device_id))
        .join(Device, Device.device_id == CampaignCollar.device_id)
        .where(CampaignCollar.campaign_id == row.campaign_id, CampaignCollar.state == "sending",
               FuotaCollar.setup_queued_at.is_not(None),
               FuotaCollar.setup_queued_at <= now - timedelta(seconds=limit_s))).all()  # wall time >= running time
    if not found:
        return []
    campaign = session.get(UpdateCampaign, row.campaign_id)
    failed = []
    for collar, delivered, last_seen in found:
        quiet_since = max(delivered.setup_queued_at, last_seen or delivered.setup_queued_at)
        if delivered.setup_answered and campaigns.running_s(session, row.campaign_id, quiet_since, now) > limit_s \
                and not session.scalar(select(func.count()).select_from(Downlink).where(
                    Downlink.device_id == collar.device_id, Downlink.state == downlinks.STATE_QUEUED)):
            pushed = _drop_pushed(session, collar.device_id, NO_ANSWER)
            log.warning("no answer from device_id=%s campaign_id=%d: silent for %.1f h since its set-up (%d frames "
                        "pushed and never reported dropped)", collar.device_id, row.campaign_id, limit_s / 3600,
                        pushed, extra={"device_id": collar.device_id, "campaign_id": row.campaign_id})
            campaigns.fail_collar(session, campaign, collar, NO_ANSWER)
            failed.append(collar.device_id)
            continue
        since_setup_s = campaigns.running_s(session, row.campaign_id, delivered.setup_queued_at, now)
        by_unicast = delivered.unicast_sent > 0 or delivered.unicast_reason is not None
        if since_setup_s > limit_s + (timedelta(days=delivery.MAX_UNICAST_DAYS).total_seconds() if by_unicast else 0):
            reason, detail = _no_result(delivered, since_setup_s)
            dropped = _drop_queued(session, collar.device_id)
            pushed = _drop_pushed(session, collar.device_id, reason)
            log.warning("no result from device_id=%s campaign_id=%d after %.1f h of its delivery: %s (%d frames "
                        "dropped, %d more pushed and never reported)", collar.device_id, row.campaign_id,
                        since_setup_s / 3600, detail, dropped, pushed, extra={"device_id": collar.device_id, "campaign_id": row.campaign_id})
            campaigns.fail_collar(session, campaign, collar, reason, detail=detail)
            failed.append(collar.device_id)
    return failed


def _no_result(delivered: FuotaCollar, since_setup_s: float) -> tuple[str, str]:
    """The reason (short, as a collar's state keeps it) and the history's account of a collar that gave
    no result in its time."""
    hours = f"{since_setup_s / 3600:.1f} h"
    if delivered.complete:
        return (f"{campaigns.NO_RESULT} {hours}: image rebuilt, no ack",
                "it said it holds the whole image but sent no result (no port-31 ack, no status with it)")
    if delivered.missing is not None:
        return (f"{campaigns.NO_RESULT} {hours}: {delivered.missing} fragments missing",
                f"it still missed {delivered.missing} fragments when it last answered"
                f"{'' if delivered.status_at is None else ' at ' + delivered.status_at.isoformat()}")
    return f"{campaigns.NO_RESULT} {hours}: never said what it holds", "it never answered a fragment status request"


def _drop_queued(session: Session, device_id: str) -> int:
    """Drop what a collar's delivery still has queued for it (set-up, unicast fragments); return how many."""
    dropped = 0
    for frame in session.scalars(select(Downlink).where(
            Downlink.device_id == device_id, Downlink.command.in_(DELIVERY_COMMANDS),
            Downlink.state == downlinks.STATE_QUEUED)):
        frame.state = downlinks.STATE_SUPERSEDED
        dropped += 1
    return dropped


def _drop_pushed(session: Session, device_id: str, reason: str) -> int:
    """Drop what a collar's delivery pushed to the network server with no report of it going on air (set-up,
    unicast fragments, status requests), its step having ended for reason; return how many. The network
    may still hold it in its queue, and each says so."""
    dropped = 0
    for frame in session.scalars(select(Downlink).where(
            Downlink.device_id == device_id, Downlink.command.in_(DELIVERY_COMMANDS),
            Downlink.state == downlinks.STATE_SENT,
            Downlink.network_state.is_(None) | Downlink.network_state.in_((downlinks.NETWORK_QUEUED,)))):
        frame.state = downlinks.STATE_SUPERSEDED
        frame.last_error = (f"its update step ended ({reason}): dropped; no report of it going on air, it may still "
                            "be in the network server's queue")[:2000]
        dropped += 1
    return dropped


def _in_flight(session: Session, collar: FuotaCollar) -> int:
    """How many unicast fragments of a collar its last answer could not count, as not on the air yet: held
    by the outbox (fair use) or being pushed, and those the network server took into its queue and did not
    report sent (class A: each waits for one of the collar's uplinks). The network's queue is first in,
    first out: what was pushed before the status request the collar answered went on the air before it."""
    fragments = (Downlink.device_id == collar.device_id) & (Downlink.command == "data_fragment")
    held = session.scalar(select(func.count()).select_from(Downlink).where(
        fragments, Downlink.state.in_((downlinks.STATE_QUEUED, downlinks.STATE_SENDING)))) or 0
    pushed = fragments & (Downlink.state == downlinks.STATE_SENT) & (Downlink.network_state == downlinks.NETWORK_QUEUED)
    if collar.status_at is not None:
        asked = session.scalar(select(func.max(DownlinkTransmission.at)).join(
            Downlink, Downlink.id == DownlinkTransmission.downlink_id).where(
            Downlink.device_id == collar.device_id, Downlink.command == "frag_session_status",
            DownlinkTransmission.at < collar.status_at))
        if asked is not None:  # pushed after the request it answered
            pushed = pushed & Downlink.id.in_(select(DownlinkTransmission.downlink_id).where(
                DownlinkTransmission.device_id == collar.device_id, DownlinkTransmission.at > asked))
    return int(held) + int(session.scalar(select(func.count()).select_from(Downlink).where(pushed)) or 0)


def _stragglers(session: Session, codec: Any, row: FuotaSession) -> int:
    """Unicast parity to every collar still missing fragments: as many as its answer and loss call for
    (the outbox holds them within fair use); then the delivery is closed."""
    queued = 0
    frags = _frags(row)
    for collar in session.scalars(select(FuotaCollar).join(
            CampaignCollar, (CampaignCollar.campaign_id == FuotaCollar.campaign_id)
            & (CampaignCollar.device_id == FuotaCollar.device_id)).where(
            FuotaCollar.campaign_id == row.campaign_id, FuotaCollar.missing > 0, FuotaCollar.setup_answered.is_(True),
            FuotaCollar.complete.is_(False), CampaignCollar.state == "sending")):  # not one whose step ended
        count = delivery.needed(collar.missing or 0, collar.loss if collar.loss is not None else PRIOR_LOSS) \
            - _in_flight(session, collar)
        for _ in range(count):
            n = counter_at(row.target_fragment + 1 + collar.unicast_sent, row.nb_frag)  # parity not multicast
            if n > delivery.MAX_COUNTER:
                break
            downlinks.queue_command(session, codec, device_id=collar.device_id, command="data_fragment",
                                    values={"index_and_n": (SESSION_INDEX << 14) | n, "data": list(frags.fragment(n))})
            collar.unicast_sent += 1
            queued += 1
        if count > 0:
            # Then ask it what it still misses (TS004 FragSessionStatusReq, participants 0: only a collar
            # still missing fragments answers). It answers only when asked, so without this a straggler that
            # lost some of the batch got nothing more; queued after the batch, it arrives after it.
            downlinks.queue_command(session, codec, device_id=collar.device_id, command="frag_session_status",
                                    values={"frag_index": SESSION_INDEX, "participants": 0})
            queued += 1
        log.info("straggler device_id=%s: %d unicast parity fragments queued", collar.device_id, max(count, 0),
                 extra={"device_id": collar.device_id, "campaign_id": row.campaign_id})
    _close(session, row, utc_now())
    return queued


# ---- when the campaign ends ---------------------------------------------------------------------


def _end_deliveries(session: Session, codec: Any, now: datetime) -> int:
    """Take down the group of every delivery whose campaign ended (done, aborted, stopped by its
    canaries); return how many downlinks were queued. Runs once per delivery (`ended_at`)."""
    queued = 0
    rows = session.execute(
        select(FuotaSession, UpdateCampaign)
        .join(UpdateCampaign, UpdateCampaign.id == FuotaSession.campaign_id)
        .where(UpdateCampaign.state.in_(campaigns.ENDED), FuotaSession.ended_at.is_(None))
    ).all()
    for row, campaign in rows:
        queued += _end(session, codec, row, campaign, now)
    return queued


def _end(session: Session, codec: Any, row: FuotaSession, campaign: UpdateCampaign, now: datetime) -> int:
    """The campaign ended: nothing more of it goes on the air, every collar it gave the group is told
    to delete it (TS005 McGroupDeleteReq, unicast), and the network server's group, when the bridge
    made it, is due for deletion (`delete_due`, retried by the service until it is gone)."""
    if row.state != CLOSED:
        row.state, row.closed_at = CLOSED, now
    row.ended_at = now
    dropped = 0
    for frame in session.scalars(select(MulticastDownlink).where(
            MulticastDownlink.campaign_id == row.campaign_id, MulticastDownlink.state == downlinks.STATE_QUEUED)):
        frame.state = downlinks.STATE_SUPERSEDED
        dropped += 1
    never_set_up, waiting, unasked = set(), set(), set()
    for frame in queued_for_collars(session, row):  # not what another campaign queued for a collar since
        frame.state = downlinks.STATE_SUPERSEDED
        dropped += 1
        waiting.add(frame.device_id)
        if frame.command == "mc_group_setup":
            never_set_up.add(frame.device_id)
        elif frame.command in collar_packages.QUESTIONS:
            unasked.add(frame.device_id)
    withdrawn = _unask(session, row, unasked)
    # a collar never set up (its version question may have gone out, nothing of the update did) is one too
    waiting |= set(session.scalars(select(FuotaCollar.device_id).where(
        FuotaCollar.campaign_id == row.campaign_id, FuotaCollar.setup_queued_at.is_(None))))
    campaigns.nothing_reached(session, campaign, _nothing_pushed(session, campaign, waiting), now)
    deleted = 0
    for step in session.scalars(select(FuotaCollar).where(  # they hold an open session: TS004 lets it go
            FuotaCollar.campaign_id == row.campaign_id, FuotaCollar.setup_answered.is_(True),
            FuotaCollar.complete.is_(False))):
        downlinks.queue_command(session, codec, device_id=step.device_id, command="frag_session_delete",
                                values={"frag_index": SESSION_INDEX})
        deleted += 1
    told = 0
    if row.mc_addr is not None:
        for group in list(session.scalars(select(CollarMulticastGroup).where(
                CollarMulticastGroup.campaign_id == row.campaign_id, CollarMulticastGroup.mc_group == MC_GROUP,
                CollarMulticastGroup.state.in_((multicast_groups.SETUP_SENT, multicast_groups.DEFINED))))):
            if group.device_id in never_set_up:
                # the set-up never left the bridge: the collar holds what it held (its factory group, maybe);
                # deleting group 0 would take that; ask it instead (McGroupStatusReq records the truth)
                group.state, group.campaign_id, group.updated_at = multicast_groups.ABSENT, None, now
                multicast_groups.request_status(session, codec, group.device_id)
                continue
            multicast_groups.queue_delete(session, codec, device_id=group.device_id, group=MC_GROUP,
                                          campaign_id=row.campaign_id, now=now)
            told += 1
    if row.group_created and row.group_deleted_at is None:
        row.group_delete_next_at = now
    campaigns.record_event(session, campaign, "delivery_ended", state=campaign.state, collars_told=told,
                           sessions_deleted=deleted, frames_dropped=dropped, version_questions_withdrawn=withdrawn,
                           network_group=row.group_id if row.group_created else None)
    log.info("delivery ended campaign_id=%d (%s): %d frames dropped (%d collars' PackageVersionReq among them), "
             "FragSessionDeleteReq to %d collars, McGroupDeleteReq to %d collars%s", row.campaign_id, campaign.state,
             dropped, withdrawn, deleted, told,
             ", the network server's group to delete" if row.group_created else "",
             extra={"campaign_id": row.campaign_id})
    return told + deleted


def _unask(session: Session, row: FuotaSession, device_ids: set[str]) -> int:
    """The delivery's PackageVersionReq to device_ids were withdrawn before they went out: those collars count as
    not asked (the Updates page shows no question waiting, and a campaign its canaries stopped and a technician
    resumed asks them again, `_versions_known`); return how many."""
    if not device_ids:
        return 0
    for collar in session.scalars(select(FuotaCollar).where(FuotaCollar.campaign_id == row.campaign_id,
                                                             FuotaCollar.device_id.in_(sorted(device_ids)))):
        collar.version_asked_at = None
    log.info("PackageVersionReq withdrawn before it went out campaign_id=%d device_ids=%s", row.campaign_id,
             sorted(device_ids), extra={"campaign_id": row.campaign_id})
    return len(device_ids)


def _nothing_pushed(session: Session, campaign: UpdateCampaign, collars: set[str]) -> set[str]:
    """Of collars, those no frame of this campaign's delivery was ever pushed to (a push interrupted and
    queued again may have gone on air: it counts as pushed, `downlinks.record_transmission`)."""
    if not collars:
        return set()
    pushed = session.scalars(
        select(Downlink.device_id).join(DownlinkTransmission, DownlinkTransmission.downlink_id == Downlink.id)
        .where(Downlink.device_id.in_(sorted(collars)), Downlink.command.in_(DELIVERY_COMMANDS),
               Downlink.created_at >= campaign.created_at))
    return collars - set(pushed)


def delete_due(session: Session, now: datetime) -> list[tuple[int, str]]:
    """The network server groups the bridge made whose deliveries ended and that are due for a
    (first or repeated) deletion: (campaign id, group id)."""
    rows = session.scalars(select(FuotaSession).where(
        FuotaSession.group_created.is_(True), FuotaSession.group_deleted_at.is_(None),
        FuotaSession.group_delete_next_at.is_not(None), FuotaSession.group_delete_next_at <= now))
    return [(r.campaign_id, r.group_id) for r in rows]


def record_group_delete(session: Session, campaign_id: int, error: str | None, now: datetime) -> None:
    """Record one try at deleting a delivery's network server group: done, or retried later (backing
    off) until MAX_DELETE_ATTEMPTS, after which the error stays recorded for a technician."""
    row = session.get(FuotaSession, campaign_id)
    if row is None:
        return
    row.group_delete_attempts += 1
    if error is None:
        row.group_deleted_at, row.group_delete_next_at, row.group_delete_error = now, None, None
        log.info("network server group %s of campaign_id=%d deleted", row.group_id, campaign_id,
                 extra={"campaign_id": campaign_id})
        return
    row.group_delete_error = error[:200]
    if row.group_delete_attempts >= MAX_DELETE_ATTEMPTS:
        row.group_delete_next_at = None
        log.error("network server group %s of campaign_id=%d not deleted after %d tries: %s; delete it by hand",
                  row.group_id, campaign_id, row.group_delete_attempts, error, extra={"campaign_id": campaign_id})
        return
    wait_s = min(DELETE_RETRY_S * 2 ** (row.group_delete_attempts - 1), DELETE_RETRY_MAX_S)
    row.group_delete_next_at = now + timedelta(seconds=wait_s)
    log.warning("network server group %s of campaign_id=%d not deleted (try %d, again in %d s): %s", row.group_id,
                campaign_id, row.group_delete_attempts, wait_s, error, extra={"campaign_id": campaign_id})


# ---- what the collars answer -------------------------------------------------------------------


def apply_uplink(session: Session, codec: Any, device_id: str, fields: dict[str, Any], heard_at: datetime) -> list[int]:
    """Take a collar's FUOTA answer (ports 200-202); return the downlinks it queued (a clock request's
    answer: the correction from the collar's time to the time the network heard it)."""
    message = fields.get("message")
    if message == "app_time_req":
        device_time = wire.unix_from_gps(int(fields.get("device_time_gps_s") or 0))
        correction = round(heard_at.timestamp() - device_time)
        answer = downlinks.queue_command(session, codec, device_id=device_id, command="app_time_ans",
                                         values={"correction_s": correction, "token": int(fields.get("token") or 0)})
        log.info("clock sync device_id=%s correction_s=%d", device_id, correction, extra={"device_id": device_id})
        return [answer.id]
    if multicast_groups.record_answer(session, device_id, fields, heard_at):
        _refused_group(session, device_id, fields)
        return []
    if message == "frag_session_delete_ans":
        log.info("fragmentation session FragIndex %d %s device_id=%s", int(fields.get("frag_index") or 0),
                 "absent" if fields.get("session_does_not_exist") else "deleted", device_id,
                 extra={"device_id": device_id})
        return []
    if collar_packages.record(session, device_id, fields, heard_at) is not None:
        return []
    if message not in ("mc_class_c_session_ans", "frag_session_setup_ans", "frag_session_status_ans",
                       "frag_data_block_received"):
        return []
    found = session.execute(
        select(FuotaCollar, FuotaSession)
        .join(FuotaSession, FuotaSession.campaign_id == FuotaCollar.campaign_id)
        .where(FuotaCollar.device_id == device_id, FuotaCollar.complete.is_(False))
        .order_by(FuotaCollar.campaign_id.desc())
    ).first()
    if found is None:
        log.info("FUOTA answer outside any delivery device_id=%s %s", device_id, message, extra={"device_id": device_id})
        return []
    collar, row = found
    if _step_over(session, row, device_id, message):
        return []
    if message == "frag_data_block_received":
        return _block_received(session, codec, row, collar, fields)
    if message == "frag_session_status_ans":
        fields = _status_counts(fields)
        if fields.get("mic_error") and not fields.get("session_does_not_exist"):  # v2.0.0's Status bit 1
            _mic_refused(session, row, device_id)
            return []
    if message == "mc_class_c_session_ans":
        errors = int(fields.get("status") or 0) & ~3
        collar.session_answered = errors == 0  # no TS005 error bit
        if errors:
            _exclude(collar, row, f"refused the Class C window (McClassCSessionAns status {errors:#04x})")
    elif message == "frag_session_setup_ans":
        status = int(fields.get("status") or 0)
        fw_version = collar_packages.firmware_of(session, device_id)
        if not setup_layouts.answers_set_up(fw_version, SESSION_INDEX, status):
            log.warning("FragSessionSetupAns device_id=%s names FragIndex %d, not the delivery's %d: not its answer",
                        device_id, status >> 6, SESSION_INDEX, extra={"device_id": device_id})
            return []
        if status & SETUP_ERROR_BITS == SETUP_ENCODING_UNSUPPORTED and _set_up_v2(session, codec, device_id,
                                                                                   row.campaign_id):
            return [_set_up_v1_instead(session, codec, row, collar, heard_at).id]
        if status & SETUP_ERROR_BITS == SETUP_SESSION_CNT_REPLAY and _set_up_v2(session, codec, device_id,
                                                                                 row.campaign_id):
            _replayed_setup(session, row, collar, heard_at)
            return []
        if status & SETUP_ERROR_BITS and (collar.setup_answered or collar.setup_queued_at is None):
            _stray_setup_refused(session, row, device_id, status, heard_at)  # no set-up of the delivery's is out
        elif status & SETUP_ERROR_BITS:  # the collar took no session: failed now, with the bits it gave
            collar.setup_answered = False
            _refused_setup(session, row, device_id, status)
        else:
            _setup_taken(row, collar)
    elif fields.get("received_and_index") is None and fields.get("session_does_not_exist"):
        _session_lost(session, row, collar, heard_at)  # v2.0.0's answer for no session: Status alone, no FragIndex
    elif int(fields.get("received_and_index") or 0) >> 14 != SESSION_INDEX:
        log.warning("FragSessionStatusAns device_id=%s about FragIndex %d, not the delivery's %d: not its answer",
                    device_id, int(fields.get("received_and_index") or 0) >> 14, SESSION_INDEX,
                    extra={"device_id": device_id})
    elif fields.get("session_does_not_exist"):
        _session_lost(session, row, collar, heard_at)
    else:
        received = int(fields.get("received_and_index") or 0) & 0x3FFF
        collar.received = received
        collar.missing = int(fields.get("missing") or 0)
        collar.status_fragment = row.next_fragment - 1
        collar.status_at = heard_at
        heard_from = collar.unicast_sent if collar.unicast_reason else row.next_fragment - 1 + collar.unicast_sent
        collar.loss = delivery.observed_loss(received, heard_from, PRIOR_LOSS)  # outside the group: unicast only
        collar.complete = collar.missing == 0
        if row.state == CLOSED and collar.missing:  # answered after the rounds: a straggler, by unicast
            row.state = STRAGGLERS
        if collar.missing and (fields.get("not_enough_matrix_memory") or fields.get("memory_error")):
            _matrix_full(session, row, device_id, collar.missing)
    return []


def _status_counts(fields: dict[str, Any]) -> dict[str, Any]:
    """A FragSessionStatusAns's fields with Received&index and MissingFrag at the top: v1.0.0's row has them there,
    v2.0.0's in its `session` list (one item, none when the session does not exist: collar_firmware/codec.py)."""
    held = fields.get("session")
    return {**fields, **held[0]} if held else fields


def _set_up_v2(session: Session, codec: Any, device_id: str, campaign_id: int) -> bool:
    """True when the last fragmentation set-up the bridge queued for this collar was TS004 v2.0.0's, for the
    delivery of campaign_id, as the deliveries keep it (`frag_package.last_kept_setup`; for one queued before that,
    the outbox's last set-up, whose Descriptor, payload bytes 7..10, names its campaign)."""
    kept = frag_package.last_kept_setup(session, device_id)
    if kept is not None:
        return kept == (campaign_id, frag_package.V2)
    last = frag_package.last_setup(session, device_id)  # a delivery queued before the version was kept
    return last is not None and frag_package.setup_version(bytes(last), codec) == frag_package.V2 \
        and frag_v2.descriptor(bytes(last)) == campaign_id


def _set_up_v1_instead(session: Session, codec: Any, row: FuotaSession, collar: FuotaCollar,
                       now: datetime) -> Downlink:
    """The collar refused its TS004 v2.0.0 set-up with EncodingUnsupported, what a collar whose radio has no
    crypto engine to check the block's MIC answers (the board's LR1110 driver, collar_firmware/hal/board.py): it
    gets v1.0.0's set-up for the same delivery, once (its own refusal then fails it, `_refused_setup`). Queued
    after the window opened, its answer may come after the rounds, as a rejoined collar's (`_close`)."""
    device_id = collar.device_id
    collar.setup_queued_at = now
    campaign = session.get(UpdateCampaign, row.campaign_id)
    log.warning("TS004 v2.0.0 set-up refused (EncodingUnsupported: no crypto engine) device_id=%s campaign_id=%d: "
                "set up again in v1.0.0", device_id, row.campaign_id,
                extra={"device_id": device_id, "campaign_id": row.campaign_id})
    campaigns.record_event(session, campaign, SET_UP_V1_EVENT, device_id, time=now,
                           why="the collar refused TS004 v2.0.0's set-up (EncodingUnsupported): its radio has no "
                               "crypto engine to check the image's MIC")
    return _queue_frag_setup(session, codec, row, device_id, campaign, now)


def _replayed_setup(session: Session, row: FuotaSession, collar: FuotaCollar, heard_at: datetime) -> None:
    """The collar answered SessionCntReplay to the delivery's TS004 v2.0.0 set-up. Heard after its answer taking the
    set-up, it is a copy the network server handed it (the outbox pushed it again after a push answered too late, or
    a kill before it was marked sent): as TS004 v2.0.0 has it, the collar keeps the session it took. Heard before
    any, the collar's own SessionCnt may be ahead of what the bridge gave it (a store restored from a backup, a collar
    set up by another bridge), or the answer taking a first copy was lost: its campaign's history says so
    (`fuota_session_counts.REPLAY_EVENT`) and `tick` sets it up again with a greater SessionCnt, the step doubled by
    each such refusal (`fuota_session_counts.next_count`): its fragmentation set-up alone while the window is to
    come, by unicast once it opened (`_set_up_rejoined`). A collar that held the copy's session takes the new one."""
    device_id = collar.device_id
    if collar.setup_answered:
        log.info("FragSessionSetupAns SessionCntReplay device_id=%s campaign_id=%d: a copy of the set-up it took, it "
                 "holds the session", device_id, row.campaign_id,
                 extra={"device_id": device_id, "campaign_id": row.campaign_id})
        _setup_taken(row, collar)
        return
    campaigns.record_event(session, session.get(UpdateCampaign, row.campaign_id), fuota_session_counts.REPLAY_EVENT,
                           device_id, time=heard_at, session_cnt=collar.session_cnt,
                           why="SessionCntReplay before any answer taking the set-up: the collar's SessionCnt is "
                               "ahead of the bridge's, or that answer was lost; set up again with a greater one")
    collar.setup_queued_at = None
    if row.state != SETUP:
        collar.unicast_reason = "its SessionCnt is ahead of the bridge's (FragSessionSetupAns SessionCntReplay)"
    log.warning("FragSessionSetupAns SessionCntReplay device_id=%s campaign_id=%d session_cnt=%s before any answer "
                "taking it: set up again with a greater SessionCnt", device_id, row.campaign_id, collar.session_cnt,
                extra={"device_id": device_id, "campaign_id": row.campaign_id})


def _setup_taken(row: FuotaSession, collar: FuotaCollar) -> None:
    """The collar holds the delivery's fragmentation session; one outside the group that says so late now has a
    session for unicast (a straggler)."""
    collar.setup_answered = True
    if collar.unicast_reason is not None and not collar.missing:
        collar.missing = row.nb_frag
        if row.state == CLOSED:
            row.state = STRAGGLERS


def _block_received(session: Session, codec: Any, row: FuotaSession, collar: FuotaCollar,
                    fields: dict[str, Any]) -> list[int]:
    """TS004 v2.0.0 FragDataBlockReceivedReq: the collar rebuilt the block and checked its MIC. Acknowledged
    (FragDataBlockReceivedAns); with the MIC held the collar is done without another status round, with
    MICError it is failed (it will not process the block)."""
    index = int(fields.get("frag_index") or 0)
    if index != SESSION_INDEX:
        log.warning("FragDataBlockReceivedReq device_id=%s about FragIndex %d, not the delivery's %d: not its answer",
                    collar.device_id, index, SESSION_INDEX, extra={"device_id": collar.device_id})
        return []
    answer = downlinks.queue_command(session, codec, device_id=collar.device_id,
                                     command="frag_data_block_received_ans", values={"frag_index": index})
    if fields.get("mic_error"):
        _mic_refused(session, row, collar.device_id)
        return [answer.id]
    collar.received = max(collar.received or 0, row.nb_frag)
    collar.missing = 0
    collar.complete = True
    log.info("data block received device_id=%s campaign_id=%d: MIC held", collar.device_id, row.campaign_id,
             extra={"device_id": collar.device_id, "campaign_id": row.campaign_id})
    return [answer.id]


def _mic_refused(session: Session, row: FuotaSession, device_id: str) -> None:
    """The collar's rebuilt block is not the MIC its set-up named: it will not process it; failed with that reason."""
    collar = session.scalars(select(CampaignCollar).where(CampaignCollar.campaign_id == row.campaign_id,
                                                          CampaignCollar.device_id == device_id)).first()
    log.warning("data block MIC error device_id=%s campaign_id=%d", device_id, row.campaign_id,
                extra={"device_id": device_id, "campaign_id": row.campaign_id})
    if collar is not None and collar.state == "sending":
        campaigns.fail_collar(session, session.get(UpdateCampaign, row.campaign_id), collar,
                              "the rebuilt image is not the one sent (TS004 v2.0.0 MICError)")


def _matrix_full(session: Session, row: FuotaSession, device_id: str, missing: int) -> None:
    """The collar dropped a parity row for want of RAM (TS004 v1.0.0's NotEnoughMatrixMemory, v2.0.0's MemoryError):
    its matrix holds no more rows, so no parity, multicast or unicast, can rebuild the fragments it misses; failed with
    that reason at once (it would have waited for its time to run out, its fair use spent on parity it drops)."""
    collar = session.scalars(select(CampaignCollar).where(CampaignCollar.campaign_id == row.campaign_id,
                                                          CampaignCollar.device_id == device_id)).first()
    log.warning("FEC matrix full device_id=%s campaign_id=%d: %d fragments missing", device_id, row.campaign_id,
                missing, extra={"device_id": device_id, "campaign_id": row.campaign_id})
    if collar is not None and collar.state == "sending":
        campaigns.fail_collar(session, session.get(UpdateCampaign, row.campaign_id), collar,
                              f"FEC matrix full: {missing} fragments missing",
                              detail=f"it missed {missing} fragments, more than its RAM holds parity rows for "
                                     "(TS004 NotEnoughMatrixMemory); a campaign that sends it the image again "
                                     "starts it afresh")


def record_result(session: Session, device_id: str, result: str) -> None:
    """A collar's update outcome arrived (a port-31 ack, which names no update): a rebuilt image means its
    delivery is complete, for a delivery whose session the collar opened (before, the ack is an older
    update's: the delivery goes on). A set-up's refusal (campaigns.SETUP_REFUSAL_RESULTS) answers a set-up
    that is not the delivery's, which the collar took: the delivery goes on (a session the stray set-up ended
    is found by the status rounds, `_session_lost`)."""
    if result == "truncated" or result in campaigns.SETUP_REFUSAL_RESULTS:
        return
    for collar in session.scalars(select(FuotaCollar).where(FuotaCollar.device_id == device_id,
                                                             FuotaCollar.complete.is_(False),
                                                             FuotaCollar.setup_answered.is_(True))):
        collar.complete = True
        collar.missing = 0


def view(session: Session, campaign_id: int) -> dict[str, Any] | None:
    """Return a delivery's progress as plain data (None when the campaign has no image to deliver)."""
    row = session.get(FuotaSession, campaign_id)
    if row is None:
        return None
    collars = list(session.scalars(select(FuotaCollar).where(FuotaCollar.campaign_id == campaign_id)))
    packages = collar_packages.view(session, [c.device_id for c in collars])
    return {"state": row.state, "nb_frag": row.nb_frag, "frag_size": row.frag_size, "sf": row.sf,
            "target_fragment": row.target_fragment, "next_fragment": row.next_fragment, "sent": row.sent,
            "airtime_s": round(row.airtime_s, 1), "window_opens": row.session_time, "rounds": row.status_rounds,
            "duty_cycle": DOWNLINK_DUTY, "ended_at": row.ended_at,
            "group_frames": group_pushes.tally(session, campaign_id),  # `sent` counts them queued, these pushed
            "network_group": {"id": row.group_id, "created": row.group_created, "deleted_at": row.group_deleted_at,
                              "delete_attempts": row.group_delete_attempts, "delete_error": row.group_delete_error},
            "collars": {c.device_id: {"setup_answered": c.setup_answered, "missing": c.missing,
                                      "loss": None if c.loss is None else round(c.loss, 3),
                                      "unicast_sent": c.unicast_sent, "complete": c.complete,
                                      "unicast_reason": c.unicast_reason, "version_asked_at": c.version_asked_at,
                                      "packages": packages[c.device_id]} for c in collars}}

