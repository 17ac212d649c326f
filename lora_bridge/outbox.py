"""The downlink outbox, worked outside any webhook request.

`Outbox.flush()` pushes what is queued and due: it first returns downlinks whose push was
interrupted (an expired `sending` lease: the bridge died mid-push) to the queue, then for each
downlink takes a lease, checks the collar's fair-use budget (`downlinks_per_device_per_day`, The
Things Network's ~10 a day, counted over what went on air: each push, from its claim so that one
whose outcome was lost counts too, and each resend the network made of a nacked downlink; over it
the downlink waits until the oldest of the last 24 h ages out), pushes it — with `down/replace` when
it supersedes a command still waiting at the network —
and records the outcome. Then the multicast frames of update deliveries, each by the route of its
delivery's own collars (`fuota_delivery.group_route`); a server (and key) that refused a push in the
flush gets nothing more in it, other tenants' servers still do. `OutboxWorker` runs flushes in a daemon thread, woken at once when ingest
queues a downlink (with its id: only that one is looked at) and every `outbox_every_s` otherwise
(a full flush), so a hung network server (short timeouts) slows only the worker, never ingest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import select, update

from lora_bridge.cut_off_pushes import cut_off_reason
from lora_bridge.domain import alerts, downlinks, fuota_delivery, group_pushes
from lora_bridge.errors import DownlinkError, is_transient_store_error, log_failure
from lora_bridge.network_server import (
    AnswerCutOff,
    DownlinkTarget,
    MulticastFrame,
    NetworkServerClient,
    OutgoingDownlink,
    RouteHint,
    ServerKey,
    allowed_route,
)
from lora_bridge.refusal_reasons import push_failure_said
from lora_bridge.settings import BridgeSettings
from lora_bridge.store.database import Database
from lora_bridge.store.tables import (
    Alert,
    Device,
    Downlink,
    DownlinkRoute,
    FuotaCollar,
    FuotaSession,
    MulticastDownlink,
    RawUplink,
)
from lora_bridge.store.utc import as_utc, utc_now
from lora_bridge.uplink_formats import label

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _DeliveryRoute:
    """Where an update delivery's multicast frames go, read once per outbox pass (`Outbox._delivery_route`)."""

    network: str
    hint: RouteHint | None
    server: ServerKey
    spacing_s: float
    split: str | None = None  # why its collars cannot be one multicast session: its frames fail with it


class Outbox:
    """Pushes queued downlinks through a NetworkServerClient, one lease at a time."""

    def __init__(self, db: Database, settings: BridgeSettings, client: NetworkServerClient,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.db = db
        self.clock = clock  # what multicast frames' times and the collars' fair-use days are reckoned by
        self.settings = settings
        self.client = client
        self._routes_seen: dict[str, tuple[tuple[str, str], str | None, str | None, str | None]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Outbox(every_s={self.settings.outbox_every_s}, per_device_per_day={self.settings.downlinks_per_device_per_day})"

    def flush(self, limit: int = 100, ids: list[int] | None = None) -> int:
        """Push queued, due downlinks (only `ids` when given); how many the network server accepted.
        A refused push ends the flush for its network server (down, or refusing that API key): the rest
        bound there stay queued for the next one, while those of other servers and keys (TTS header
        routes of another cluster or application) still go. A full flush (no ids) first puts interrupted
        pushes back in the queue, then reads the queue a page of `limit` at a time to its end: a page of
        one tenant's downlinks held at its refusing server no longer hides the other tenants' behind it."""
        if ids is None:
            with self.db.read() as session:
                interrupted = downlinks.any_push_interrupted(session)
                due = downlinks.unconfirmed_due(session, **self._unconfirmed_after())
            if interrupted:
                with self.db.write() as session:
                    downlinks.release_expired_leases(session)
            if due:  # read once; each is checked again under the write (`downlinks.mark_unconfirmed`)
                with self.db.write() as session:
                    downlinks.mark_unconfirmed(session, due, now=utc_now())
        accepted = 0
        refused: set[ServerKey] = set()  # the servers (and keys) that refused in this flush
        after_id = 0
        while True:
            if ids is None:
                with self.db.read() as session:
                    page = [row.id for row in downlinks.queued(session, limit, now=self.clock(), after_id=after_id)]
            else:
                page = list(ids)
            accepted += self._push_page(page, refused)
            if ids is not None or len(page) < limit:
                break
            after_id = page[-1]
        if ids is None:  # multicast frames too, but none to a server (and key) that refused in this flush
            accepted += self.flush_multicast(limit, refused)
        return accepted

    def _unconfirmed_after(self) -> dict[str, Any]:
        """When a pushed downlink with no word of its delivery counts as unconfirmed (the settings), by the
        wall clock its push and the collar's uplinks are stamped with (`sent_at`, `received_at`)."""
        return {"after_uplinks": self.settings.downlink_unconfirmed_after_uplinks,
                "after_s": self.settings.downlink_unconfirmed_after_s, "now": utc_now()}

    def _push_page(self, page: list[int], refused: set[ServerKey]) -> int:
        """Push the downlinks of page that have somewhere to go, none to a server (and key) in refused;
        add the servers that refuse now to it; how many were accepted."""
        servers = self._servers(page)  # read without the write lock: which still wait, where they go, for whom
        held: set[str] = set()  # the collars found at their fair-use limit in this page (`_claim` held them all)
        accepted = 0
        for downlink_id in page:
            server, device_id = servers.get(downlink_id, (None, None))
            if server is None or server in refused or device_id in held:
                continue  # nowhere to go yet, its server refused, its collar's day is spent: no write transaction
            claimed = self._claim(downlink_id, held, skip=lambda target: self._server_of(target) in refused)
            if claimed is None:
                continue  # another worker has it, it went already, it waits for the fair-use window or its server
            target, items, replace = claimed
            lease_ends = time.monotonic() + self.settings.downlink_lease_s
            try:
                reference = self.client.send(target, items, replace=replace)
            except DownlinkError as error:
                if isinstance(error, AnswerCutOff) and items[-1].f_port in downlinks.COLLAR_ACKED_PORTS:
                    self._follow_cut_off(downlink_id, target.device_id, error, lease_ends)
                    refused.add(self._server_of(target))  # a server that slow: its other pushes wait for the next flush
                    continue
                wait_s = _rate_limit_wait_s(error)
                self._finish(downlink_id, str(error), None, lease_ends, wait_s)
                log.warning(
                    "downlink push failed downlink_id=%d device_id=%s f_port=%d: %s%s",
                    downlink_id,
                    target.device_id,
                    items[-1].f_port,
                    push_failure_said(error),  # the server's reason, escaped and bounded: why it refused
                    "" if wait_s is None else f" (rate limited: it waits {wait_s:.0f} s, no attempt spent)",
                    extra={"device_id": target.device_id, "downlink_id": downlink_id, "f_port": items[-1].f_port},
                )
                if error.status not in COLLAR_NOT_AT_SERVER:  # the server refuses: its other pushes wait too
                    refused.add(self._server_of(target))
                continue
            self._finish(downlink_id, None, reference, lease_ends)
            accepted += 1
        return accepted

    def _claim(
        self, downlink_id: int, held: set[str], skip: Callable[[DownlinkTarget], bool] | None = None
    ) -> tuple[DownlinkTarget, list[OutgoingDownlink], bool] | None:
        """Lease downlink_id for its push: its target, what goes (more than one when it replaces what waits
        at the network) and whether it replaces; None when it cannot go now. A collar over its fair-use day
        has every due downlink of it held to the same time in one write, and its id added to held: a
        straggler's queue of unicast fragments costs one transaction a flush, not one for each."""
        # The collar's fair-use day runs on the bridge's clock, as its update deliveries do: a replay or a
        # simulated week (the twin) renews each collar's budget every simulated day, not every wall-clock day.
        now = self.clock()
        with self.db.write() as session:
            downlink = session.get(Downlink, downlink_id)
            if downlink is None or downlink.state != downlinks.STATE_QUEUED:
                return None
            if downlink.not_before is not None and as_utc(downlink.not_before) > now:
                return None
            count, oldest = downlinks.transmissions_today(session, downlink.device_id, now)
            if count >= self.settings.downlinks_per_device_per_day:
                until = (oldest or now) + timedelta(days=1)
                waiting = session.execute(
                    update(Downlink)
                    .where(Downlink.device_id == downlink.device_id, Downlink.state == downlinks.STATE_QUEUED,
                           Downlink.not_before.is_(None) | (Downlink.not_before <= now))
                    .values(not_before=until)
                    .execution_options(synchronize_session=False)  # the rows are not read again in this session
                ).rowcount
                held.add(downlink.device_id)
                log.warning(
                    "fair-use limit: %d downlinks on air to device_id=%s in 24 h; downlink_id=%d and %d more of "
                    "its due downlinks wait until %s",
                    count,
                    downlink.device_id,
                    downlink.id,
                    max(0, (waiting or 0) - 1),
                    until.isoformat(),
                    extra={"device_id": downlink.device_id, "downlink_id": downlink.id},
                )
                return None
            device = session.get(Device, downlink.device_id)
            target = self._target(session, device)
            if not self.client.can_reach(target):
                return None  # nowhere to push yet (no network server, no TTS route): it waits, no attempt spent
            if skip is not None and skip(target):
                return None  # its server refused a push in this flush: it waits for the next, no attempt spent
            taken = session.execute(
                update(Downlink)
                .where(Downlink.id == downlink_id, Downlink.state == downlinks.STATE_QUEUED)
                .values(state=downlinks.STATE_SENDING,
                        lease_until=utc_now() + timedelta(seconds=self.settings.downlink_lease_s))  # wall time
            ).rowcount
            if taken != 1:
                return None
            # Counted when claimed: a push whose outcome is lost (a crash, a store that cannot take it
            # before the lease runs out) may have gone on air, and goes again once the lease expires.
            downlinks.record_transmission(session, downlink, downlinks.TRANSMISSION_PUSH, now)
            together = downlinks.replaced_at_network(session, downlink)
            if together:
                items = [OutgoingDownlink(row.f_port, row.payload, row.correlation_id) for row in together]
                return target, items, True
            return target, [OutgoingDownlink(downlink.f_port, downlink.payload, downlink.correlation_id)], False

    def _servers(self, downlink_ids: list[int]) -> dict[int, tuple[ServerKey, str]]:
        """downlink id -> the server (and key, `_server_of`) it goes to and its collar's device id, for those
        of downlink_ids still queued that have somewhere to go: read without the store's write lock, the
        downlinks with their collars and their routes in one statement (a herd's acks: one read, not one a
        collar)."""
        if not downlink_ids:
            return {}
        reachable: dict[int, tuple[ServerKey, str]] = {}
        with self.db.read() as session:
            rows = session.execute(
                select(Downlink.id, Device, DownlinkRoute)
                .join(Device, Device.device_id == Downlink.device_id)
                .outerjoin(DownlinkRoute, DownlinkRoute.device_id == Downlink.device_id)
                .where(Downlink.id.in_(downlink_ids), Downlink.state == downlinks.STATE_QUEUED)
            ).all()
            targets: dict[str, DownlinkTarget] = {}
            for downlink_id, device, route in rows:
                target = targets.get(device.device_id)
                if target is None:
                    target = targets[device.device_id] = _target_of(device, route)
                if self.client.can_reach(target):
                    reachable[downlink_id] = (self._server_of(target), device.device_id)
        return reachable

    def _target(self, session: Any, device: Device) -> DownlinkTarget:
        return _target_of(device, session.get(DownlinkRoute, device.device_id))

    def _follow_cut_off(self, downlink_id: int, device_id: str, error: AnswerCutOff, lease_ends: float) -> None:
        """A command or setting whose push the network server had whole and never answered whole: it may wait
        in the collar's queue there already, so it is recorded as pushed, not pushed again blindly (the
        collar would hear it twice, out of its ten downlinks a day). Its delivery report or the collar's
        port-31 ack settle it; the collar's uplinks with neither (two, the one whose receive windows would
        have carried it and the one with the ack: `cut_off_pushes`) make it unconfirmed, and an alert's ack
        goes again then (`downlinks.mark_unconfirmed`). A downlink on another port has no such follow-up: it is pushed again."""
        self._finish(downlink_id, None, None, lease_ends, cut_off=str(error))
        log.warning("downlink push answer cut off downlink_id=%d device_id=%s: %s; it may be queued at the network, "
                    "so it waits for word of its delivery instead of a second push", downlink_id, device_id, error,
                    extra={"device_id": device_id, "downlink_id": downlink_id})

    def _finish(self, downlink_id: int, error: str | None, reference: str | None, lease_ends: float,
                wait_s: float | None = None, cut_off: str | None = None) -> None:
        """Record how the push went, tried again while the store cannot take it (locked by a backup,
        full, read-only) and the lease still holds the downlink: an accepted push whose outcome was
        lost went out again once the lease expired, and the collar got its ack twice. wait_s: the
        server rate-limited the push (429): the downlink waits that long, no attempt spent. cut_off: the
        push went with no whole answer (`AnswerCutOff`, why): recorded as pushed, the network silent."""
        pause_s = 0.2
        while True:
            try:
                self._record_push(downlink_id, error, reference, wait_s, cut_off)
                return
            except Exception as failure:
                if not is_transient_store_error(failure) or time.monotonic() + pause_s >= lease_ends:
                    raise
                log.warning("outcome of the push of downlink_id=%d not stored yet (%s); trying again",
                            downlink_id, str(failure)[:200], extra={"downlink_id": downlink_id})
                time.sleep(pause_s)
                pause_s = min(2 * pause_s, 5.0)

    def _record_push(self, downlink_id: int, error: str | None, reference: str | None,
                     wait_s: float | None = None, cut_off: str | None = None) -> None:
        with self.db.write() as session:
            downlink = session.get(Downlink, downlink_id)
            if error is None:
                downlinks.mark_sent(downlink, reference)
                if cut_off is not None:
                    downlink.network_state = None  # the network said nothing of it, not even that it took it
                    downlink.last_error = cut_off_reason(cut_off)
                if downlink.alert_id is not None:
                    alert = session.get(Alert, downlink.alert_id)
                    detail = {"seq": downlink.seq, "downlink_id": downlink.id}
                    alerts.record_event(session, alert, alerts.SYSTEM_ACTOR, alerts.ACTION_ACK_SENT,
                                        detail if cut_off is None else {**detail, "answer_cut_off": True})
            else:
                downlink.state = downlinks.STATE_QUEUED
                downlink.lease_until = None
                if wait_s is None:
                    downlinks.mark_push_failed(downlink, error)
                else:  # rate limited: not refused, asked to come back later
                    downlink.last_error = error
                    downlink.not_before = self.clock() + timedelta(seconds=wait_s)
                downlinks.forget_push(session, downlink)

    # ---- multicast frames of update deliveries (lora_bridge/domain/fuota_delivery.py) ------------

    def flush_multicast(self, limit: int = 100, refused: set[ServerKey] | None = None) -> int:
        """Push queued multicast frames in the order of their transmission time; how many were accepted.
        Frames are not counted against a collar's fair use (they go to the group, within the duty
        cycle the delivery spaced them by). A frame whose time passed while the bridge was down is
        moved later together with the rest of its delivery, keeping their spacing. refused: the
        servers (and keys, `_server_of`) that refused a push in this flush; their frames wait for the
        next, while those of other tenants' servers still go."""
        refused = set() if refused is None else refused
        now = self.clock()
        interrupted = (MulticastDownlink.state == downlinks.STATE_SENDING) & (MulticastDownlink.lease_until < now)
        with self.db.read() as session:  # a pass with no push interrupted takes no write lock
            any_interrupted = session.scalar(select(MulticastDownlink.id).where(interrupted).limit(1)) is not None
        if any_interrupted:
            with self.db.write() as session:
                session.execute(update(MulticastDownlink).where(interrupted)
                                .values(state=downlinks.STATE_QUEUED, lease_until=None))
        with self.db.read() as session:
            waiting = list(session.scalars(
                select(MulticastDownlink.id).where(MulticastDownlink.state == downlinks.STATE_QUEUED)
                .order_by(MulticastDownlink.send_at, MulticastDownlink.id).limit(limit)))
        accepted = 0
        routes: dict[int, _DeliveryRoute] = {}  # each delivery's route, read once in this pass
        for frame_id in waiting:
            claimed = self._claim_multicast(frame_id, skip=lambda server: server in refused, routes=routes)
            if claimed is None:
                continue
            frame, hint, server = claimed
            try:
                self.client.send_multicast(frame, hint)
            except AnswerCutOff as error:
                self._finish_multicast(frame_id, None, cut_off=str(error))
                log.warning("multicast push answer cut off frame_id=%d group=%s: %s; it may be on its way to the "
                            "group, so it is not pushed again (parity and the repair rounds cover a fragment that "
                            "did not go)", frame_id, frame.group_id, error, extra={"multicast_frame_id": frame_id})
                refused.add(server)  # a server that slow: its other frames wait for the next flush
                continue
            except DownlinkError as error:
                self._finish_multicast(frame_id, error, counted=_rate_limit_wait_s(error) is None)
                log.warning("multicast push failed frame_id=%d group=%s: %s", frame_id, frame.group_id, push_failure_said(error),
                            extra={"multicast_frame_id": frame_id})
                refused.add(server)  # the rest of its server's frames wait for the next flush, in their order
                continue
            self._finish_multicast(frame_id, None)
            accepted += 1
        return accepted

    def _claim_multicast(
        self, frame_id: int, skip: Callable[[ServerKey], bool] | None = None,
        routes: dict[int, _DeliveryRoute] | None = None,
    ) -> tuple[MulticastFrame, RouteHint | None, ServerKey] | None:
        """Lease frame_id for a push: the frame, the route of its delivery's own collars, and the server
        (and key) it goes to; None when it is not to be pushed now (taken, not due, its server in skip, or
        refused for good: its collars cannot be one multicast session). routes: each delivery's route
        read so far in this pass (`_delivery_route`), so that a pass over a delivery's hundreds of frames
        reads its collars' routes once, not once a frame."""
        now = self.clock()
        routes = {} if routes is None else routes
        with self.db.write() as session:
            row = session.get(MulticastDownlink, frame_id)
            if row is None or row.state != downlinks.STATE_QUEUED:
                return None
            route = routes.get(row.campaign_id)
            if route is None:
                route = routes[row.campaign_id] = self._delivery_route(session, row)
            if route.split is not None:
                _refuse_frames(session, row.campaign_id, route.split)
                return None
            network, hint, server = route.network, route.hint, route.server
            if network == "chirpstack" and row.send_at > now:
                return None  # ChirpStack sends what it holds at once: a frame goes to it when it is due
            if skip is not None and skip(server):
                return None  # its server refused a push in this flush: it waits for the next, no attempt spent
            taken = session.execute(
                update(MulticastDownlink)
                .where(MulticastDownlink.id == frame_id, MulticastDownlink.state == downlinks.STATE_QUEUED)
                .values(state=downlinks.STATE_SENDING,
                        lease_until=now + timedelta(seconds=self.settings.downlink_lease_s))
            ).rowcount
            if taken != 1:
                return None
            session.refresh(row)
            if row.send_at < now:
                _later(session, row, now + timedelta(seconds=1) - row.send_at)
            spacing = timedelta(seconds=route.spacing_s)
            return MulticastFrame(row.group_id, row.application_id, tuple(row.gateways or ()), row.f_port,
                                  row.payload, row.send_at, row.correlation_id, network=network,
                                  expires_at=row.send_at + spacing if spacing else None), hint, server

    def _delivery_route(self, session: Any, frame: MulticastDownlink) -> _DeliveryRoute:
        """Where the frames of frame's delivery go: its collars' network server, the route of its own
        collars (`fuota_delivery.group_route`) and the server (and key) that names; or why they cannot
        go at all (the collars span tenants or network servers: SplitNetwork)."""
        delivery = session.get(FuotaSession, frame.campaign_id)
        spacing_s = delivery.spacing_s if delivery is not None else 0.0
        network = _delivery_network(session, frame.campaign_id)
        collars = list(session.scalars(select(FuotaCollar.device_id)
                                       .where(FuotaCollar.campaign_id == frame.campaign_id)))
        try:
            route = fuota_delivery.group_route(session, collars, frame.application_id, self.usable_route)
        except fuota_delivery.SplitNetwork as split:
            return _DeliveryRoute(network, None, self.client.server_of(), spacing_s, split=str(split))
        hint = RouteHint(route.push_url, route.api_key) if route is not None and route.push_url else None
        return _DeliveryRoute(network, hint, self._multicast_server(network, hint), spacing_s)

    def usable_route(self, url: str) -> bool:
        """Whether a push URL from a webhook header may be pushed to (network_server.allowed_route)."""
        return allowed_route(url, self.settings)

    def _multicast_server(self, network: str, hint: RouteHint | None) -> ServerKey:
        """Which network server (and key) a delivery's frames go to, named as `_server_of` names a unicast
        push's (`NetworkServerClient.server_of`): the configured one (ChirpStack, or a configured TTS URL,
        with its key), else the origin and key of the route of the delivery's collars."""
        if network == "chirpstack" or self.settings.network_server_url or hint is None:
            return self.client.server_of()
        return self.client.server_of(hint.url, hint.api_key)

    def _server_of(self, target: DownlinkTarget) -> ServerKey:
        """Which network server (and key) a push to target goes to: a TTS header route's origin and key,
        or the configured network server (always for ChirpStack)."""
        if target.network == "chirpstack":
            return self.client.server_of()
        return self.client.server_of(target.push_url, target.api_key)

    def _finish_multicast(self, frame_id: int, error: DownlinkError | None, counted: bool = True,
                          cut_off: str | None = None) -> None:
        """Record how a frame's push went; counted: whether it spent one of its attempts (a push the
        server rate-limited did not: the frame waits for the next flush). A refusal that spent an attempt
        is said in the campaign's history with the server's answer, once for a run of them (group_pushes).
        cut_off: the push went with no whole answer (`AnswerCutOff`, why): recorded as pushed, and why."""
        with self.db.write() as session:
            row = session.get(MulticastDownlink, frame_id)
            row.lease_until = None
            row.attempts += 1 if counted or error is None else 0
            if error is None:
                row.state = downlinks.STATE_SENT
                row.sent_at = utc_now()
                row.last_error = None if cut_off is None else cut_off_reason(cut_off)
            else:
                row.last_error = str(error)
                row.state = downlinks.STATE_FAILED if row.attempts >= downlinks.MAX_PUSH_ATTEMPTS \
                    else downlinks.STATE_QUEUED
                if counted:
                    group_pushes.record_refusal(session, row, str(error), error.status, self.clock())

    # ---- routes from TTS webhook headers ---------------------------------------------------------

    def remember_route(
        self,
        push_url: str | None,
        replace_url: str | None,
        api_key: str | None,
        path_ids: dict[str, str] | None = None,
        *,
        device_id: str | None,
        raw_uplink_id: int | None = None,
    ) -> bool:
        """Keep where TTS says the collar device_id's downlinks go (from the X-Downlink-* headers of a
        message of it); True if stored. No collar (a body that names none), no route: the next
        message brings the headers again. raw_uplink_id: the stored message that brought them; one
        heard before the collar's newest (a webhook call its server retried late) does not replace
        the route its newer messages brought: a collar moved to another network server (or whose
        webhook key was rotated) had its downlinks pushed back to the old one, where it no longer listens.

        The route is the collar's, not its application's and name's: two tenants (or clusters) may
        hold the same application id and device id, each with its own host and API key. The
        application and device named in the push path
        (`.../applications/{app}/webhooks/{webhook}/devices/{device}/down/push`, else path_ids) are
        kept beside it.
        """
        ids = _ids_from_push_url(push_url) or _ids_from_push_url(replace_url)
        if ids is None and path_ids and path_ids.get("application_id") and path_ids.get("device_id"):
            ids = (label(path_ids["application_id"]) or "", label(path_ids["device_id"]) or "")
        if ids is None or not all(ids) or not device_id:
            return False
        wanted = (ids, push_url, replace_url, api_key)
        with self._lock:
            if self._routes_seen.get(device_id) == wanted:
                return False  # TTS sends the same headers with every message; write only on change
        with self.db.write() as session:
            route = session.get(DownlinkRoute, device_id)
            if route is None:
                route = DownlinkRoute(device_id=device_id)
                session.add(route)
            elif _older_than_collars_newest(session, device_id, raw_uplink_id):
                log.info("downlink route of an older message of device_id=%s not taken: its newer messages' "
                         "route stays", device_id, extra={"device_id": device_id, "raw_uplink_id": raw_uplink_id})
                return False
            route.application_id, route.tts_device_id = ids
            route.push_url, route.replace_url, route.api_key = push_url, replace_url, api_key
            route.updated_at = utc_now()
        with self._lock:
            self._routes_seen[device_id] = wanted
        log.info("downlink route from TTS headers stored",
                 extra={"device_id": device_id, "application_id": ids[0], "device_label": ids[1]})
        return True


def _target_of(device: Device, route: DownlinkRoute | None) -> DownlinkTarget:
    """Where device's downlinks go: its network and ids, and the route TTS gave for it (None: none yet)."""
    return DownlinkTarget(
        device_id=device.device_id,
        network=device.network,
        application_id=device.application_id,
        dev_eui=device.dev_eui,
        label=device.label,
        push_url=route.push_url if route else None,
        replace_url=route.replace_url if route else None,
        api_key=route.api_key if route else None,
    )


def _older_than_collars_newest(session: Any, device_id: str, raw_uplink_id: int | None) -> bool:
    """True when the message raw_uplink_id was heard before the newest message of the collar device_id."""
    raw = session.get(RawUplink, raw_uplink_id) if raw_uplink_id is not None else None
    device = session.get(Device, device_id)
    if raw is None or raw.heard_at is None or device is None or device.last_seen is None:
        return False
    return as_utc(raw.heard_at) < as_utc(device.last_seen)


# What a network server answers when the collar, not the server, is the trouble (TTS: the end device
# was deleted or renamed, NOT_FOUND): the server's other pushes still go in the flush.
COLLAR_NOT_AT_SERVER = frozenset({404})
# How long a push the server rate-limited (429, The Things Stack's ResourceExhausted) waits when the
# answer has no Retry-After.
RATE_LIMIT_WAIT_S = 60.0


def _rate_limit_wait_s(error: DownlinkError) -> float | None:
    """How long a push the server answered 429 waits (its Retry-After, else RATE_LIMIT_WAIT_S); None for
    any other failure (it spends an attempt)."""
    if error.status != 429:
        return None
    return error.retry_after_s if error.retry_after_s is not None else RATE_LIMIT_WAIT_S


def _delivery_network(session: Any, campaign_id: int) -> str:
    """The network server of a delivery's collars (one per delivery: fuota_delivery.start sees to it)."""
    network = session.scalars(
        select(Device.network).join(FuotaCollar, FuotaCollar.device_id == Device.device_id)
        .where(FuotaCollar.campaign_id == campaign_id, Device.network.is_not(None))).first()
    return network or "tts"


def _refuse_frames(session: Any, campaign_id: int, reason: str) -> None:
    """Fail every frame of a delivery still waiting, with the reason kept on each: its collars cannot
    be one multicast session (fuota_delivery.group_route), so no route of theirs may carry them."""
    failed = session.execute(
        update(MulticastDownlink)
        .where(MulticastDownlink.campaign_id == campaign_id,
               MulticastDownlink.state.in_((downlinks.STATE_QUEUED, downlinks.STATE_SENDING)))
        .values(state=downlinks.STATE_FAILED, lease_until=None, last_error=f"not pushed: {reason}")
    ).rowcount
    log.error("multicast frames of campaign_id=%d not pushed (%d failed): %s", campaign_id, failed, reason,
              extra={"campaign_id": campaign_id})


def _later(session: Any, frame: MulticastDownlink, delta: timedelta) -> None:
    """Move frame and every frame of its delivery still waiting, and the delivery's next slot, by delta."""
    for row in session.scalars(select(MulticastDownlink).where(
            MulticastDownlink.campaign_id == frame.campaign_id,
            MulticastDownlink.state.in_((downlinks.STATE_QUEUED, downlinks.STATE_SENDING)))):
        row.send_at = row.send_at + delta
    delivery = session.get(FuotaSession, frame.campaign_id)
    if delivery is not None:
        delivery.next_at = delivery.next_at + delta
    log.info("multicast frames of campaign_id=%d moved %.0f s later (their time passed)", frame.campaign_id,
             delta.total_seconds(), extra={"campaign_id": frame.campaign_id})


def _ids_from_push_url(url: str | None) -> tuple[str, str] | None:
    if not url:
        return None
    parts = [unquote(p) for p in urlsplit(url).path.split("/") if p]
    try:
        app = parts[parts.index("applications") + 1]
        device = parts[parts.index("devices") + 1]
    except (ValueError, IndexError):
        return None
    app_label, device_label = label(app), label(device)
    return (app_label, device_label) if app_label and device_label else None


class OutboxWorker:
    """Flushes the outbox in a daemon thread, woken by work rather than polling the store.

    `wake(ids)` (ingest, after the commit that queued those downlinks) pushes just those: no scan of
    the queue, no write transaction per downlink still waiting for a route. `wake()` with no ids, the
    first round after start, and a safety round every `every_s` (a lost wake, a fair-use window that
    opened, a lease that expired) run a full flush: `before_flush` (update deliveries), expired
    leases back to the queue, every due downlink and multicast frame."""

    def __init__(self, outbox: Outbox, every_s: float, before_flush: Callable[[], object] | None = None) -> None:
        self.outbox = outbox
        self.every_s = every_s
        self.before_flush = before_flush  # e.g. update deliveries queueing their next frames
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._full = True  # the first round after start looks at everything a previous run left
        self._ids: set[int] = set()
        self._thread = threading.Thread(target=self._loop, name="tembo-outbox", daemon=True)
        self.flushes = 0
        self.full_flushes = 0

    def start(self) -> None:
        """Start the background loop."""
        self._thread.start()

    @property
    def running(self) -> bool:
        """True while the loop runs."""
        return self._thread.is_alive()

    def wake(self, ids: Iterable[int] | None = None) -> None:
        """Flush as soon as the worker is free: only the downlinks `ids` when given (just committed),
        else everything due."""
        with self._lock:
            if ids is None:
                self._full = True
            else:
                self._ids.update(ids)
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop and wait for it (a push in flight ends within the client's timeout)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        woken = True  # the first round runs at once
        while not self._stop.is_set():
            if not woken:
                woken = self._wake.wait(self.every_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._lock:
                full = self._full or not woken  # the safety round when nothing woke it
                ids = sorted(self._ids)
                self._full = False
                self._ids.clear()
            woken = False
            try:
                if full:
                    if self.before_flush is not None:
                        self.before_flush()
                    self.outbox.flush()
                    self.full_flushes += 1
                elif ids:
                    self.outbox.flush(ids=ids)
            except Exception as error:
                log_failure(log, error, "outbox flush failed")
            self.flushes += 1
