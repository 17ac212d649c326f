"""A fleet of simulated collars, each running the real firmware, updated over the air.

The bridge side cuts a signed update image into TS004 fragments with parity
(lora_bridge.updates.fec), plans the session (lora_bridge.updates.planner), and sends: set-up
downlinks to each collar, then every fragment once in a multicast Class C window, each collar
hearing it or not at its own loss rate (seeded), then unicast parity fragments to stragglers
within fair use. Between frames the collars live (their loop verifies the signature a few steps
per wake-up, installs, reboots into a firmware on trial, runs the self-test, confirms or rolls
back). `run_campaign` returns what happened; `bench` is `tembo bench fuota`.
"""

from __future__ import annotations

import hashlib
import logging
import random
import statistics
from dataclasses import dataclass, field

from collar_firmware import codec, config
from collar_firmware.main import Collar
from collar_firmware.scheduler import airtime_us
from lora_bridge.updates import delivery, frag_v2, multicast_keys
from lora_bridge.updates.fec import Fragmented, fragment
from lora_bridge.updates.parity_order import counter_at
from lora_bridge.updates.planner import (
    DOWNLINK_DUTY,
    FAIR_USE_DOWNLINKS_PER_DAY,
    CollarLink,
    Plan,
    Progress,
    make_plan,
)
from simulator.hal_sim import SimFlash, make_hal
from simulator.scripted import synth_window

log = logging.getLogger(__name__)

MC_GROUP = 0  # the TS005 group the campaign opens its window for, and its fragmentation session names
START_S = 1772323200  # 2026-03-01 00:00 UTC
SESSION_LEAD_S = 600  # the Class C window opens this long after the set-up
SETTLE_S = 60 * 60  # collars live this long after the window (signature check, install, trial, confirm)


class _Walker:
    """Accelerometer source of a walking elephant (the scripted day's sway)."""

    def __init__(self, seed: int) -> None:
        self.noise = seed & 0xFFFFF

    def fill(self, t_s: int, n: int, rate_hz: int, buf) -> int:
        self.noise = synth_window(buf, n, 170, 50, 20, (80, -150, -975), self.noise, 0)
        return n


@dataclass
class FleetCollar:
    """One collar of the fleet: its device id, loss rate, HAL and firmware."""

    device_id: str
    loss: float
    sf: int
    flash: SimFlash
    hal: object
    collar: Collar
    acks: list[dict] = field(default_factory=list)
    answers: list[tuple[int, int, int]] = field(default_factory=list)  # fragment status: (sent at, received, missing)
    status_answers: int = 0  # FragSessionStatusAns uplinks the collar sent in all (each costs it a transmission)
    root_key: bytes | None = None  # its root key as the technician's key file holds it (None: not in the file)
    package_answer: tuple[int, int] | None = None  # what it answered TS004 PackageVersionReq: (identifier, version)
    frag_version: int = 1  # the TS004 version of the session it was set up in: its answers' layouts
    block_received: list[int] = field(default_factory=list)  # when it sent FragDataBlockReceivedReq (v2.0.0)

    def live_until(self, t_s: int) -> None:
        """Run the collar's loop until t_s and keep the acks it queued."""
        clock = self.hal.clock
        while clock.now_s() < t_s:
            wake = self.collar.step()
            clock.sleep_until(min(wake, t_s))
        radio = self.hal.radio
        for sent_s, port, payload, _confirmed, _heard in radio.uplinks:
            if port == codec.port_of("ack"):
                ack = codec.decode(port, payload)
                if ack["on_port"] == codec.port_of("data_fragment"):
                    self.acks.append(ack)
            elif port == codec.PORT_FRAGMENTS and payload[0] == codec.tag_of("frag_session_status_ans"):
                answer = codec.decode(port, payload, "up", self.frag_version)
                counts = answer["session"][0] if answer.get("session") else answer  # v2.0.0: after Status, if any
                self.answers.append((sent_s, int(counts.get("received_and_index") or 0) & 0x3FFF,
                                     int(counts.get("missing") or 0)))
                self.status_answers += 1
            elif port == codec.PORT_FRAGMENTS and payload[0] == codec.tag_of("frag_package_version_ans"):
                answer = codec.decode(port, payload, "up")
                self.package_answer = (int(answer["package_id"]), int(answer["package_version"]))
            elif port == codec.PORT_FRAGMENTS and payload[0] == codec.tag_of("frag_data_block_received"):
                self.block_received.append(sent_s)
        radio.uplinks.clear()

    def hear(self, port: int, payload: bytes, group: int | None = None) -> None:
        """A FUOTA frame reaches the collar's modem on multicast group 0..3, or on its own address (None)."""
        self.collar.fuota_downlink(port, payload, group)


def build_fleet(n: int, loss: float, seed: int, keys_for=None, sf: int = 9,
                start_s: int = START_S, factory_bundle: bytes | None = None,
                without_crypto: frozenset[int] = frozenset(), root_keys: bool = False) -> list[FleetCollar]:
    """Return n collars with independent loss draws around loss (the per-collar loss the bridge saw);
    keys_for(flash) gives each collar its trust.Trust (None: the keys the firmware ships).
    factory_bundle: the bundle the factory flashed into slot 0 as config.FW_VERSION, which a delta
    against that version is composed with (None: a slot without one, which takes whole images only).
    without_crypto: the indexes of collars whose radio has no crypto engine (hal_sim.SimModem: TS004 v1.0.0 only).
    root_keys: each collar's radio is given a root key of its own, which the technician's key file holds too
    (`FleetCollar.root_key`): with its crypto engine, it speaks TS004 v2.0.0 and can be set up so."""
    from collar_firmware import update, update_slot

    rng = random.Random(seed)
    fleet = []
    for i in range(n):
        flash = SimFlash()
        if factory_bundle is not None:
            update_slot.provision(flash, 0, update.version_raw(config.FW_VERSION), factory_bundle)
        hal = make_hal(start_s, _Walker(seed * 1000 + i), lambda t: (0.57, 37.58), sf=sf, flash=flash, seed=i,
                       crypto_engine=i not in without_crypto)
        collar_loss = max(0.0, min(0.9, loss * (0.5 + rng.random())))
        keys = keys_for(flash) if keys_for is not None else None
        root = hashlib.sha256(b"tembo bench root key %d %d" % (seed, i)).digest()[:16] if root_keys else None
        if root is not None:
            hal.radio.provision_root_key(root)
        fleet.append(FleetCollar(f"collar-{i:03d}", collar_loss, sf, flash, hal, Collar(hal, None, keys),
                                 root_key=root))
    return fleet


def _setup_frames(frags: Fragmented, session_s: int, spacing_s: float = 6.8,
                  sf: int = 9, collar: FleetCollar | None = None, session_cnt: int = 1) -> list[tuple[int, bytes]]:
    """The unicast set-up of one collar: its Class C window (TS005, GPS time, a timeout that leaves
    room for the repair rounds) and the fragmentation session (TS004): v2.0.0's, with SessionCnt and the block's
    MIC under its DataBlockIntKey (lora_bridge/updates/frag_v2.py), for a collar whose `frag_version` is 2."""
    mc = codec.encode_packet("mc_class_c_session", {
        "group": MC_GROUP, "session_time_gps_s": codec.gps_from_unix(session_s),
        "timeout_log2_s": delivery.window_timeout_log2(frags.nb_frag, spacing_s),
        "frequency_hz100": 8695250, "data_rate": max(0, 12 - sf)})
    values = {"frag_index": 0, "mc_group_bit_mask": 1 << MC_GROUP,  # that group carries it
              "nb_frag": frags.nb_frag, "frag_size": frags.frag_size, "control": 0, "padding": frags.padding,
              "descriptor": 0}
    if collar is not None and collar.frag_version == 2:
        block = b"".join(frags.data)[:frags.nb_frag * frags.frag_size - frags.padding]  # the image
        key = multicast_keys.data_block_int_key(collar.root_key)
        mic = cmac_4(key, frag_v2.b0(session_cnt, 0, 0, len(block)) + block)
        values = {**values, "control": frag_v2.ACK_RECEPTION, "session_cnt": session_cnt,
                  "mic": int.from_bytes(mic, "little")}
    setup = (codec.PORT_FRAGMENTS, codec.encode("frag_session_setup", values, collar.frag_version if collar else 1))
    return [mc, setup]


def cmac_4(key: bytes, data: bytes) -> bytes:
    """The first 4 bytes of AES-CMAC(key, data) (RFC 4493), TS004 v2.0.0's data block MIC."""
    from cryptography.hazmat.primitives import cmac
    from cryptography.hazmat.primitives.ciphers import algorithms

    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()[:4]


def _fragment_frame(frags: Fragmented, position: int) -> bytes:
    """The position-th fragment sent (data first, then parity in the bridge's send order)."""
    n = counter_at(position, frags.nb_frag)
    return codec.encode("data_fragment", {"index_and_n": n & 0x3FFF, "data": list(frags.fragment(n))})


@dataclass
class CampaignResult:
    """What a campaign did, for the bench and the tests: delivery_s is from the window's opening
    until the last collar held the whole image, session_s until the bridge closed the session;
    m_heard_s from the window's opening until the last collar had heard as many fragments as the
    image has (what a code with no overhead would have needed, with the same draws)."""

    plan: Plan
    progress: Progress
    updated: int
    collars: int
    results: dict[str, str]
    unicast_days: float
    delivery_s: float = 0.0
    session_s: float = 0.0
    rounds: int = 0
    m_heard_s: float = 0.0
    status_answers: int = 0

    @property
    def success(self) -> float:
        return self.updated / self.collars if self.collars else 0.0


def _status_request(rounds_done: int) -> bytes:
    return codec.encode("frag_session_status", {"participants": delivery.status_participants(rounds_done)})


def run_campaign(fleet: list[FleetCollar], image: bytes, seed: int, check=None,
                 max_unicast_days: int = delivery.MAX_UNICAST_DAYS, ask_version: bool = False) -> CampaignResult:
    """Update fleet with image as the bridge's delivery does (lora_bridge/domain/fuota_delivery.py):
    the planned multicast round, status rounds whose answers size the repair parity
    (lora_bridge/updates/delivery.py), then unicast for stragglers; check(collar) says updated.
    ask_version: each collar is asked PackageVersionReq first and set up in TS004 v2.0.0 when it answers so and
    its root key is in the key file (`FleetCollar.root_key`), by the bridge's own rule (frag_v2.set_up_in_v2); a
    collar that says its block arrived (FragDataBlockReceivedReq, MIC held) counts as done."""
    rng = random.Random(seed)
    plan = make_plan(len(image), [CollarLink(c.device_id, c.sf, c.loss) for c in fleet])
    frags = fragment(image, plan.frag_size)
    progress = Progress(plan)
    now = fleet[0].hal.clock.now_s()
    session_s = now + SESSION_LEAD_S
    for c in fleet:
        if ask_version:
            c.hear(codec.PORT_FRAGMENTS, codec.encode("frag_package_version", {}))
            progress.unicast_sent(c.device_id, 1)
            c.live_until(now + 1)
            c.frag_version = 2 if frag_v2.set_up_in_v2(c.package_answer, config.FW_VERSION) \
                and c.root_key is not None else 1  # the bridge's decision (domain/fuota_delivery.py)
        for port, payload in _setup_frames(frags, session_s, plan.spacing_s, plan.sf, c):
            c.hear(port, payload)
            progress.unicast_sent(c.device_id, 1)
        c.live_until(session_s + 1)  # the collar wakes at the window's start and opens it
    t = float(session_s)
    frag_port = codec.port_of("data_fragment")
    status_port = codec.port_of("frag_session_status")
    completed: dict[str, float] = {}
    heard: dict[str, int] = {}  # fragments each collar heard
    m_heard: dict[str, float] = {}  # when it had heard nb_frag of them

    def on_air(port: int, frame: bytes) -> None:
        nonlocal t
        airtime_s = airtime_us(len(frame), plan.sf, 125) / 1e6
        if port == status_port:  # the collars live up to now, so each answers from its own next wake-up
            for c in fleet:
                c.live_until(int(t))
                c.answers.clear()
        for c in fleet:
            if rng.random() >= c.loss and c.hal.radio.class_c is not None:  # heard only in its Class C window
                receiving = c.collar.update.receiving()
                if port == frag_port:
                    heard[c.device_id] = heard.get(c.device_id, 0) + 1
                    if heard[c.device_id] == plan.nb_frag:
                        m_heard[c.device_id] = t + airtime_s
                c.hear(port, frame, MC_GROUP)  # the window's frames go to the group the set-up named
                if receiving and not c.collar.update.receiving():
                    completed.setdefault(c.device_id, t + airtime_s)
        progress.sent += 1
        progress.airtime_s += airtime_s
        t += airtime_s / DOWNLINK_DUTY

    port = frag_port
    closes_s = session_s + (1 << delivery.window_timeout_log2(plan.nb_frag, plan.spacing_s))
    sent = 0
    target = plan.fragments
    rounds = 0
    answers: list[delivery.StatusAnswer] = []
    said_complete: set[str] = set()  # what the bridge knows: answered "nothing missing" or acknowledged
    while True:
        while sent < target:
            sent += 1
            on_air(port, _fragment_frame(frags, sent))
        on_air(codec.port_of("frag_session_status"), _status_request(rounds))
        decided = int(t) + delivery.ANSWER_WAIT_S  # the bridge takes the answers heard by then
        answers, silent = [], []
        for c in fleet:
            c.live_until(decided)
            if c.acks or c.block_received:
                said_complete.add(c.device_id)
            heard_in_time = [a for a in c.answers if a[0] <= decided - delivery.UPLINK_LATENCY_S]
            if not heard_in_time:
                if c.device_id not in said_complete:
                    silent.append(c.device_id)  # missed the request, or its answer was lost or late: asked again
                continue
            _sent_s, received, missing = heard_in_time[-1]
            if not missing:
                said_complete.add(c.device_id)
            else:
                sent_to_it = sent + progress.unicast.get(c.device_id, 0)
                answers.append(delivery.StatusAnswer(c.device_id, sent, missing,
                                                     delivery.observed_loss(received, sent_to_it, c.loss)))
        t = max(t, float(decided))
        log.debug("status round %d at %.1f s: %d sent, missing %s, silent %s", rounds, t - session_s, sent,
                  {a.device_id: a.missing for a in answers}, silent)
        if not answers and not silent:
            break
        if t >= closes_s:
            break  # the collars closed their Class C windows: what they miss goes by unicast
        if rounds >= delivery.MAX_REPAIR_ROUNDS:
            break
        rounds += 1
        target = delivery.repair_target(answers, sent)
    session_end = t
    # stragglers: unicast parity fragments after their uplinks, at most the fair use per day
    days = 0
    by_device = {a.device_id: a for a in answers}
    stragglers = [c for c in fleet if c.collar.update.receiving()]
    next_parity = sent + 1
    while stragglers and days < max_unicast_days:
        days += 1
        for c in stragglers:
            budget = FAIR_USE_DOWNLINKS_PER_DAY - (2 if days == 1 else 0)
            wanted = delivery.needed(c.collar.update.still_needed(),
                                     by_device[c.device_id].loss if c.device_id in by_device else c.loss)
            sent_here = 0
            while sent_here < min(budget, max(1, wanted)) and c.collar.update.receiving():
                if rng.random() >= c.loss:
                    c.hear(port, _fragment_frame(frags, next_parity + sent_here))
                sent_here += 1
            progress.unicast_sent(c.device_id, sent_here)
            if not c.collar.update.receiving():
                completed.setdefault(c.device_id, session_end + days * 86400)
        next_parity += FAIR_USE_DOWNLINKS_PER_DAY
        stragglers = [c for c in stragglers if c.collar.update.receiving()]
    end = int(session_end + days * 86400) + SETTLE_S
    results = {}
    updated = 0
    for c in fleet:
        c.collar.update.session_over(int(session_end + days * 86400))
        c.live_until(end)
        results[c.device_id] = c.collar.update.last_result or "none"
        if check(c) if check is not None else c.collar.update.last_result == "ok":
            updated += 1
    progress.elapsed_s = session_end - session_s
    for c in fleet:  # heard fewer multicast fragments than the image has: it ended with unicast
        m_heard.setdefault(c.device_id, completed.get(c.device_id, session_end))
    last = max(completed.values()) if completed else session_end
    return CampaignResult(plan, progress, updated, len(fleet), results, float(days),
                          delivery_s=last - session_s, session_s=session_end + days * 86400 - session_s,
                          rounds=rounds, m_heard_s=max(m_heard.values(), default=session_end) - session_s,
                          status_answers=sum(c.status_answers for c in fleet))


def bench(collars: int = 50, seed: int = 1) -> dict:
    """`tembo bench fuota`: a 40 KB firmware bundle and a model-only update at losses 0, 0.1, 0.3 in TS004 v1.0.0
    (`firmware_loss_0.1`, ...), and again in v2.0.0 as V2_RUNS lists (`model_v2_loss_0.1`, ...)."""
    from lora_bridge.updates import release

    key, keys_for = bench_keys()
    files = release.compile_modules()
    bundle: dict[str, bytes] = {}
    for name in sorted(files, key=lambda k: -len(files[k])):
        if sum(len(v) for v in bundle.values()) + len(files[name]) <= 40 * 1024:
            bundle[name] = files[name]
    model_blob = _bumped_model(release.DEFAULT_MODEL_PATH.read_bytes(), key)
    images = {
        "firmware": release.build_image(1, "1.1.0", config.HARDWARE_ID, release.pack_bundle(bundle), key,
                                        release.golden_vector(files["default_model.bin"])),
        "model": release.model_image(model_blob, key, config.HARDWARE_ID),
    }
    model_version = _version_of(model_blob)
    checks = {"firmware": lambda c: c.collar.update.fw_version() == "1.1.0",
              "model": lambda c: c.collar.model.version == model_version}
    figures: dict = {"collars": collars, "firmware_image_bytes": len(images["firmware"]),
                     "model_image_bytes": len(images["model"])}
    runs = [(kind, loss, 1) for kind in images for loss in (0.0, 0.1, 0.3)]
    runs += [(kind, loss, 2) for kind, loss in V2_RUNS]  # TS004 v2.0.0: asked, set up with the block's MIC
    for kind, loss, version in runs:
        fleet = build_fleet(collars, loss, seed, keys_for, root_keys=version == 2)
        result = run_campaign(fleet, images[kind], seed, checks[kind], ask_version=version == 2)
        p = result.plan
        # the least time: the data fragments back to back at the duty cycle, the last one's end
        minimum_s = (p.nb_frag - 1) * p.spacing_s + p.fragment_airtime_s
        tag = f"{kind}_loss_{loss:g}" if version == 1 else f"{kind}_v2_loss_{loss:g}"
        figures[tag] = {
            "success": round(result.success, 4),
            "fragments_sent": result.progress.sent,
            "airtime_s": round(result.progress.airtime_s, 1),
            "delivery_hours": round(result.delivery_s / 3600, 3),
            "ratio_to_minimum": round(result.delivery_s / minimum_s, 3),
            "ratio_without_code_overhead": round(result.m_heard_s / minimum_s, 3),
            "session_hours": round(result.session_s / 3600, 3),
            "session_ratio_to_minimum": round(result.session_s / minimum_s, 3),
            "repair_rounds": result.rounds, "status_answers": result.status_answers,
            "unicast_days": result.unicast_days,
            "sf": p.sf, "frag_size": p.frag_size, "nb_frag": p.nb_frag, "parity": p.parity,
            "refusals": sorted({r for r in result.results.values() if r != "ok"}),
        }
        if version == 2:
            figures[tag]["set_up_v2"] = sum(c.frag_version == 2 for c in fleet)
            figures[tag]["block_received"] = sum(bool(c.block_received) for c in fleet)
    figures["model_loss_0.1_over_fleets"] = _over_fleets(images["model"], checks["model"], keys_for, collars,
                                                         range(seed, seed + SPREAD_FLEETS))
    from simulator.fuota_micropython import update_costs

    figures.update(update_costs(images["firmware"], key.public_key))  # the decoder fed 112-byte fragments
    return figures


SPREAD_FLEETS = 8  # fleets (loss draws) the model update at 10 % runs on: one draw is one tail
# the deliveries also run in TS004 v2.0.0 (collars with a crypto engine and their root key in the key file): the
# model at every loss, the firmware at 10 % (its MIC over 41 KB is checked by each collar's simulated engine)
V2_RUNS = (("model", 0.0), ("model", 0.1), ("model", 0.3), ("firmware", 0.1))


def _over_fleets(image: bytes, check, keys_for, collars: int, seeds) -> dict:
    """The model update at 10 % loss on several fleets: how its ratio spreads from draw to draw."""
    ratios, code_free, success = [], [], []
    for s in seeds:
        result = run_campaign(build_fleet(collars, 0.1, s, keys_for), image, s, check)
        p = result.plan
        minimum_s = (p.nb_frag - 1) * p.spacing_s + p.fragment_airtime_s
        success.append(result.success)
        ratios.append(round(result.delivery_s / minimum_s, 3))
        code_free.append(round(result.m_heard_s / minimum_s, 3))
    return {"seeds": [seeds[0], seeds[-1]], "success_min": min(success), "ratio_to_minimum": ratios,
            "median": statistics.median(ratios), "mean": round(statistics.mean(ratios), 3),
            "without_code_overhead_median": statistics.median(code_free),
            "without_code_overhead_mean": round(statistics.mean(code_free), 3)}


def bench_keys():
    """Return a release key made for this run and a factory of collar Trusts that hold it (beside
    the keys the firmware ships), so the bench never needs the deployment's private key."""
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from collar_firmware import trust
    from lora_bridge.updates.keys import SigningKey

    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key = SigningKey(200, Path("in-memory"), public, private)

    def keys_for(storage=None):
        shipped = trust.shipped()
        held = dict(shipped.keys)
        held[key.key_id] = public
        return trust.Trust(held, None, storage, shipped.pinned)

    return key, keys_for


def _version_of(blob: bytes) -> int:
    from collar_firmware import blob as collar_blob

    return collar_blob.parse(blob).model_version


def _bumped_model(blob: bytes, key) -> bytes:
    """Return the shipped model as version + 1 (a researcher's retrained model), signed."""
    import struct
    import zlib

    from lora_bridge.updates import release

    raw = bytearray(release.unsigned_part(blob))
    version = struct.unpack_from("<I", raw, 16 + 3)[0]
    struct.pack_into("<I", raw, 16 + 3, version + 1)
    body_len = struct.unpack_from("<I", raw, 8)[0]
    struct.pack_into("<I", raw, 12, zlib.crc32(bytes(raw[16:16 + body_len])))
    return release.sign_model(bytes(raw), key)
