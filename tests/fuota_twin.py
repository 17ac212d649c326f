"""The twin of a reserve that FUOTA tests deliver updates through: simulated collars running the real
firmware, the real bridge's webhook and outbox, and a stand-in network server between them on one
simulated clock (tests/fuota_network.py), with the release key, the model image and the campaign a
field technician starts.
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime
from typing import Any

import bridge_builders as b
from fuota_network import GROUP, StandInTheThingsStack
from starlette.testclient import TestClient

from collar_firmware import codec
from collar_firmware.main import Collar
from lora_bridge.adapters.webhook import create_app
from lora_bridge.domain import fuota_delivery
from simulator import fuota
from simulator.hal_sim import make_hal

KEY, KEYS_FOR = fuota.bench_keys()
HEADERS = {"X-Tembo-Secret": b.SECRET, "Content-Type": "application/json"}


def open_bridge(store_url: str, network, group: str | None = GROUP, **settings):
    """A bridge with its outbox flushed by the test, pushing to the stand-in network server `network`
    (group: the network server's multicast group the deliveries use; settings: more BridgeSettings)."""
    return b.fresh_bridge(store_url, network_server_url=network.url, network_server_api_key=network.api_key,
                          outbox_worker=False, fuota_multicast_group=group, signed_by=(KEY,), **settings)


class Reserve:
    """The collars, the bridge's webhook and the network server between them, on one simulated clock."""

    def __init__(self, fleet: list[fuota.FleetCollar], network: StandInTheThingsStack, seed: int) -> None:
        self.fleet = fleet
        self.by_name = {c.device_id: c for c in fleet}
        self.network = network
        self.rng = random.Random(seed)
        self.f_cnt = {c.device_id: 0 for c in fleet}
        self.routed = (0, 0)  # unicast and multicast pushes already handed on
        self.waiting: list[dict] = []  # multicast frames not yet on the air
        self.heard: list[tuple[str, dict]] = []  # every uplink the bridge got, decoded
        self.bridge = None
        self.client = None

    def attach(self, bridge) -> None:
        self.bridge = bridge
        self.client = TestClient(create_app(bridge))

    def start(self, bridge, image: bytes, version: int) -> dict:
        """The collars' boot status reaches `bridge` (it knows them, their firmware), then the field
        technician starts the model campaign: return it."""
        self.attach(bridge)
        self.run_until(self.now_s() + 60)
        return start_campaign(bridge, image, version)

    def through_delivery(self, campaign: dict, window_step_s: int = 30) -> None:
        """Set-up after the collars' uplinks, the window and its repair rounds, then the hours in which
        the collars check, install and say so."""
        opens = int(campaign["delivery"]["window_opens"].timestamp())
        self.run_until(opens - 600, step_s=600)
        self.run_until(opens + 3600, step_s=window_step_s)
        self.run_until(self.now_s() + 5 * 3600, step_s=600)

    def now_s(self) -> int:
        return self.fleet[0].hal.clock.now_s()

    def run_until(self, t_s: int, step_s: int = 30) -> None:
        while self.now_s() < t_s:
            self._advance(min(t_s, self.now_s() + step_s))

    def _advance(self, t_s: int) -> None:
        for c in self.fleet:
            clock = c.hal.clock
            while clock.now_s() < t_s:
                clock.sleep_until(min(c.collar.step(), t_s))
        for frame in sorted(self.waiting, key=lambda f: f["at"]):  # Class C: heard at their time, or lost
            if frame["at"].timestamp() <= t_s:
                self._on_air(frame)
        self.waiting = [f for f in self.waiting if f["at"].timestamp() > t_s]
        self._uplinks()
        self.bridge.clock = lambda: datetime.fromtimestamp(t_s, UTC)
        self.bridge.deliver_updates()
        self.bridge.flush_downlinks()
        self._route()

    def _on_air(self, frame: dict) -> None:
        """A multicast frame goes on the air: each collar hears it unless lost."""
        for c in self.fleet:  # a modem hears the group only in its Class C window
            if self.rng.random() >= c.loss and c.hal.radio.class_c is not None:
                c.hear(frame["f_port"], frame["payload"], fuota_delivery.MC_GROUP)

    def _post_uplink(self, device_id: str, message: tuple[int, bytes], f_cnt: int, received_at: datetime) -> None:
        """The network server hands the bridge's webhook one uplink (The Things Stack's)."""
        body = b.tts_uplink(message, device_id=device_id, f_cnt=f_cnt, received_at=received_at)
        assert self.client.post("/uplinks/tts", content=body, headers=HEADERS).status_code == 200

    def _uplinks(self) -> None:
        for c in self.fleet:
            for t_s, port, payload, _confirmed, heard in c.hal.radio.uplinks:
                if not heard:
                    continue
                self.f_cnt[c.device_id] += 1
                self._post_uplink(c.device_id, (port, payload), self.f_cnt[c.device_id],
                                  datetime.fromtimestamp(t_s, UTC))
                self.heard.append((c.device_id, self._decoded(port, payload)))
            c.hal.radio.uplinks.clear()
        self.bridge.process_pending()

    @staticmethod
    def _decoded(port: int, payload: bytes) -> dict:
        """An uplink decoded for `heard`: in TS004 v2.0.0's layout when v1.0.0's cannot read it (a v2.0.0
        FragSessionStatusAns saying SessionDoesNotExist is its Status alone)."""
        try:
            return codec.decode(port, payload)
        except codec.CodecError:
            return codec.decode(port, payload, "up", 2)

    def brown_out(self, device_id: str) -> None:
        """The collar's power dips: its firmware boots again from flash (what RAM held, its fragmentation
        session and Class C window, is gone; the modem forgets its multicast group), and the modem joins
        the network again, which The Things Stack reports to the bridge."""
        c = self.by_name[device_id]
        now_s = self.now_s()
        self._uplinks()  # what it said before the dip reached the bridge
        old_radio = c.hal.radio
        c.hal = make_hal(now_s, fuota._Walker(now_s), lambda t: (0.57, 37.58), sf=c.sf, flash=c.flash,
                         reset_cause="brownout", crypto_engine=hasattr(old_radio, "derive_key"))
        c.hal.radio.power_back(old_radio)  # the same LR1110: what its own flash keeps comes back, RAM does not
        c.collar = Collar(c.hal, None, c.collar.trust)
        self.f_cnt[device_id] = 0  # a new session: its frame counter starts again
        join = b.tts_join(device_id=device_id, received_at=datetime.fromtimestamp(now_s, UTC))
        assert self.client.post("/uplinks/tts", content=join, headers=HEADERS).status_code == 200
        self.bridge.process_pending()

    def watchdog_reset(self, device_id: str) -> None:
        """The collar's watchdog resets its processor: the firmware boots again from flash (what RAM held,
        its fragmentation session, is gone) while the modem, powered on, keeps its network session and its
        multicast group: no rejoin, nothing the network server reports."""
        c = self.by_name[device_id]
        self._uplinks()
        c.hal.clock.cause = "watchdog"
        c.collar = Collar(c.hal, None, c.collar.trust)

    def _route(self) -> None:
        unicast, multicast = self.routed
        for push in self.network.unicast[unicast:]:  # class A: after the collar's next uplink
            self.by_name[push["device"]].hal.radio.push_downlink(push["f_port"], push["payload"])
        self.waiting.extend(self.network.multicast[multicast:])
        self.routed = (len(self.network.unicast), len(self.network.multicast))


def model_image() -> tuple[bytes, int]:
    from collar_firmware import config
    from lora_bridge.updates import release

    blob = fuota._bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), KEY)
    return release.model_image(blob, KEY, config.HARDWARE_ID), fuota._version_of(blob)


def start_campaign(bridge, image: bytes, version: int, *, canary_pct: int = 100,
                   max_canary_failures_pct: int | None = None, **options: Any) -> dict:
    """The field technician starts the campaign of the model `image` (`version`) with the battery and
    RSSI gates open: `canary_pct` of the collars first, stopped above `max_canary_failures_pct` of them
    failing (None: the bridge's default); `options` are more of create_campaign's (devices,
    max_spreading_factor, name)."""
    options = {"name": "model retrained", **options}
    if max_canary_failures_pct is not None:
        options["max_canary_failures_pct"] = max_canary_failures_pct
    return bridge.create_campaign(
        kind="model", version=f"0.0.{version}", image_sha256=hashlib.sha256(image).hexdigest(), image_bytes=len(image),
        image=image, user="tech", canary_pct=canary_pct, min_battery_mv=0, min_rssi_dbm=-140.0, **options)


def one_collar_campaign(bridge) -> tuple[dict, datetime]:
    """collar-01 has sent its status and the technician started a model campaign: the campaign and the
    time its window opens."""
    image, version = model_image()
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1))
    campaign = start_campaign(bridge, image, version)
    return campaign, campaign["delivery"]["window_opens"]
