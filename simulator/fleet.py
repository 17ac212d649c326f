"""A herd of collared elephants running the REAL collar firmware in accelerated time.

Each animal wears a `collar_firmware.main.Collar` built on simulator/hal_sim back ends fed by the
animal: the accelerometer plays the animal's motion (simulator/signals), GNSS reads its position
through the noise model (simulator/gnss_noise), the radio is heard or not by the gateways of the
network model (simulator/network), the temperature follows the sun and the animal's body heat.
Collars are interleaved by wake time (a heap), and the uplinks the network server delivers come out
in time order as The Things Stack v3 JSON (or ChirpStack v4, when asked):

    fleet = Fleet(n_collars=20, seed=1, start=datetime(2026, 3, 1, tzinfo=UTC), days=2)
    for message in fleet.uplinks():        # TTS uplink_message dicts, time-ordered
        bridge.ingest_tts_uplink(json.dumps(message).encode())

Downlinks (`push_downlink`, or HTTP through simulator.network_server.NetworkServerStandIn) reach a collar in the RX window
after its next uplink that a gateway hears. At start every collar is sent the reserve's virtual
fences (park boundary, farmland) over the air, as a field team would. `pace=None` runs as fast as
possible; `pace=3600` plays an hour of the herd's life per wall-clock second (the live demo).
Same arguments, same seed: the same uplinks, byte for byte.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from collar_firmware import codec, config
from collar_firmware.hal import Hal
from collar_firmware.main import Collar
from simulator import hal_sim
from simulator.animals import AnimalIdentity, AnimalState, GroundTruthEvent, Herd
from simulator.gnss_noise import GnssReceiver, NoisyGnss
from simulator.movement import local_hour
from simulator.network import Delivery, Network, Reception, Uplink
from simulator.reserve import Reserve
from simulator.signals import AccelStream, rotation_from_angles

log = logging.getLogger(__name__)

DEFAULT_START = datetime(2026, 3, 1, tzinfo=UTC)
FORMATS = ("tts", "chirpstack")
FENCE_POINTS_PER_DOWNLINK = 7  # codec "fence" list bound
_FLEET_STREAM = 0x7E3B0  # mixes into the seed so network and sensor draws never repeat the herd's
SEND_SPACING_S = 2.0  # gap between two uplinks of one wake-up (airtime plus the RX windows)
PICK_BLOCK = 1024  # library picks drawn at once


class Animal(Protocol):
    """What the fleet needs of an animal (SimulatedAnimal and MovebankReplay both fit)."""

    identity: AnimalIdentity

    def state_at(self, t_s: float) -> AnimalState: ...


def fence_commands(reserve: Reserve) -> list[bytes]:
    """Port-32 downlinks that load the reserve into a collar: fence 0 = park boundary, 1.. = farmland
    (as many as the collar holds, config.MAX_FENCES). Raises ValueError for a ring with more vertices
    than a collar fence holds (config.MAX_FENCE_POINTS), which the collar would refuse."""
    areas = [("park", reserve.boundary)] + [("farmland", a) for a in reserve.farmland]
    commands = []
    for fence_id, (kind, area) in enumerate(areas[:config.MAX_FENCES]):
        ring = area.ring_lonlat
        if len(ring) > config.MAX_FENCE_POINTS:
            raise ValueError(f"{kind} fence {area.name!r} has {len(ring)} vertices, "
                             f"a collar holds {config.MAX_FENCE_POINTS}: simplify it first")
        for first in range(0, len(ring), FENCE_POINTS_PER_DOWNLINK):
            part = ring[first:first + FENCE_POINTS_PER_DOWNLINK]
            commands.append(codec.encode("fence", {
                "fence_id": fence_id, "kind": kind, "last": int(first + len(part) >= len(ring)), "spare": 0,
                "first_index": first, "points": [{"lat": lat, "lon": lon} for lon, lat in part],
            }))
    return commands


def ambient_temperature_c(t_s: float) -> float:
    """Shade air temperature in Kenyan savanna: about 17 C before dawn, 31 C at 15:00 local."""
    return 24.0 + 7.0 * math.sin(2.0 * math.pi * (local_hour(t_s) - 9.0) / 24.0)


class CollarTemperature:
    """Temperature source (deci-degrees C) of a collar: ambient plus body heat while worn by a live animal;
    the body heat fades within minutes when the collar drops and over hours when the animal dies."""

    BODY_HEAT_C = 8.0  # the sensor sits against the skin: several degrees above the air
    FADE_DROPPED_S = 900.0
    FADE_DEAD_S = 4 * 3600.0

    def __init__(self, animal: Animal) -> None:
        self.animal = animal
        self._since_s: dict[str, float] = {}

    def __call__(self, t_s: int) -> int:
        motion = self.animal.state_at(t_s).motion
        heat = self.BODY_HEAT_C
        if motion in ("dropped", "still"):
            since = self._since_s.setdefault(motion, t_s)
            fade = self.FADE_DROPPED_S if motion == "dropped" else self.FADE_DEAD_S
            heat *= math.exp(-max(0.0, t_s - since) / fade)
        return int(round(10.0 * (ambient_temperature_c(t_s) + heat)))


class CollarBattery:
    """Battery source (mV) of a collar: a Li-SOCl2 pack stays flat for years, losing about 1 mV a day,
    until the end of its life (a `low_battery` scenario), when it falls about 40 mV an hour."""

    END_OF_LIFE_MV_PER_H = 40.0
    FLOOR_MV = 2900

    def __init__(self, start_mv: int, start_s: int, end_of_life_s: int | None = None) -> None:
        self.start_mv = start_mv
        self.start_s = start_s
        self.end_of_life_s = end_of_life_s

    def __call__(self, t_s: int) -> int:
        mv = self.start_mv - (t_s - self.start_s) / 86400.0
        if self.end_of_life_s is not None and t_s > self.end_of_life_s:
            mv -= (t_s - self.end_of_life_s) / 3600.0 * self.END_OF_LIFE_MV_PER_H
        return int(round(max(self.FLOOR_MV, mv)))


class AnimalAccelerometer:
    """Accelerometer source of hal_sim.SimIMU: each window plays the motion the animal has at its start.

    library_windows > 0: the collar's accelerometer replays a library of that many windows per motion,
    drawn from the animal's own stream the first times the motion is seen (a recorded-bout library, as a
    twin fed with field recordings would be), then picked at random; 0 draws a fresh window every time.
    A twisted collar (scenario "twisted_collar") turns the collar on the neck at its start: from then on
    the windows are drawn anew in the turned orientation. `on_window(t_s, state)` is told of each window
    (the twin's ground truth of behaviour per window).
    """

    def __init__(self, animal: Animal, rng: np.random.Generator, library_windows: int = 0,
                 on_window: Callable[[int, AnimalState], None] | None = None) -> None:
        if library_windows < 0:
            raise ValueError(f"library_windows must be 0 or more, got {library_windows}")
        self.animal = animal
        self.rng = rng
        self.stream = AccelStream(rng)
        self.library_windows = library_windows
        self.on_window = on_window
        self._library: dict[tuple[str, int, int], list[np.ndarray]] = {}
        self._end_s: float | None = None
        twists = sorted(s.start_s for s in getattr(animal, "scenarios", ()) if s.kind == "twisted_collar")
        self._twists = twists
        self._twisted = 0
        self._picks: list[float] = []

    def _twist(self, t_s: int) -> int:
        while self._twisted < len(self._twists) and t_s >= self._twists[self._twisted]:
            self._twisted += 1
            roll = float(self.rng.choice([-1.0, 1.0])) * float(self.rng.uniform(100.0, 170.0))
            turned = rotation_from_angles(roll, 0.0) @ self.stream.profile.orientation
            self.stream.profile = replace(self.stream.profile, orientation=turned)
        return self._twisted

    def fill(self, t_s: int, n: int, rate_hz: int, buf) -> int:
        """Write n interleaved x, y, z milli-g samples into the array('h') buf; return n."""
        state = self.animal.state_at(t_s)
        if self.on_window is not None:
            self.on_window(t_s, state)
        motion = state.motion
        twist = self._twist(t_s) if self._twists else 0
        if self.library_windows:
            shelf = self._library.setdefault((motion, twist, n, rate_hz), [])
            if len(shelf) < self.library_windows:
                self.stream.rate_hz = float(rate_hz)
                samples = array("h", self.stream.read(motion, n, 0.0).reshape(-1).tobytes())
                shelf.append(samples)
            else:
                samples = shelf[int(self._pick() * len(shelf))]
            buf[: 3 * n] = samples
            return n
        self.stream.rate_hz = float(rate_hz)
        gap_s = 0.0 if self._end_s is None else max(0.0, t_s - self._end_s)
        samples = self.stream.read(motion, n, gap_s)
        self._end_s = t_s + n / rate_hz
        np.frombuffer(buf, dtype=np.int16)[: 3 * n] = samples.reshape(-1)
        return n

    def _pick(self) -> float:
        """A uniform draw in [0, 1) from the accelerometer's generator, drawn PICK_BLOCK at a time."""
        if not self._picks:
            self._picks = self.rng.random(PICK_BLOCK).tolist()
            self._picks.reverse()
        return self._picks.pop()


def remember_model(collar: Collar) -> None:
    """The classifier's prediction for features it has seen is remembered on the model the collar runs
    (the model is a pure function of its features; the twin's library replays windows, so the same
    features come again and again). A model loaded later (an update) is remembered once wrapped again."""
    model = collar.model
    if collar.smoother is None or getattr(model, "_twin_memo", None) is not None:
        return
    seen: dict[bytes, int] = {}
    predict = model.predict

    def remembered(features) -> int:
        key = bytes(features)
        known = seen.get(key)
        if known is None:
            if len(seen) >= 100_000:
                seen.clear()
            known = seen[key] = predict(features)
        return known

    model._twin_memo = seen
    model.predict = remembered


class FeatureMemo:
    """The collar's own feature pass, remembered per window: a window the twin's accelerometer replays
    from its library gets the numbers the firmware computed on it the first time (compute_features is a
    pure function of the samples). Bounded: forgets everything when max_entries is reached."""

    def __init__(self, compute: Callable, max_entries: int = 400_000) -> None:
        self.compute = compute
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._seen: dict[bytes, object] = {}

    def __call__(self, buf, n_samples: int, rate_hz: int, out) -> None:
        key = bytes(memoryview(buf)[: 3 * n_samples]) + bytes((rate_hz & 0xFF,))
        known = self._seen.get(key)
        if known is not None:
            self.hits += 1
            out[:] = known
            return
        self.misses += 1
        self.compute(buf, n_samples, rate_hz, out)
        if len(self._seen) >= self.max_entries:
            self._seen.clear()
        self._seen[key] = array(out.typecode, out)


def _end_of_life_s(animal: Animal) -> int | None:
    starts = [s.start_s for s in getattr(animal, "scenarios", ()) if s.kind == "low_battery"]
    return min(starts) if starts else None


@dataclass
class _Wearer:
    """One animal with its collar, its simulated hardware and its radio bookkeeping."""

    index: int
    animal: Animal
    hal: Hal | None = None
    collar: Collar | None = None
    spreading_factor: int = 9
    f_cnt: int = 0
    pending: deque = field(default_factory=deque)  # downlinks not yet handed to the radio
    heard: tuple[int, list[Reception]] = (0, [])
    send_t_s: float = -1.0
    send_offset_s: float = 0.0


class Fleet:
    """N collared animals, the network and its server, stepped in accelerated time (see module doc).

    n_collars, seed, start, days: the demo herd (simulator.animals.Herd) and how long it lives;
    network: the radio network (default: the reserve's gateways, seeded from seed);
    pace: None = as fast as possible, else simulated seconds per wall second (3600 for the live demo);
    animals: given animals instead of a herd (e.g. MovebankReplay), with reserve for their fences;
    fences: send the reserve's park and farmland fences to every collar over the air at start;
    settings: collar settings overriding collar_firmware.config.DEFAULTS; battery_mv: pack voltage at start;
    sleep, monotonic: the wall clock used for pacing (tests hand in a fake one);
    library_windows: windows per motion in each collar's accelerometer library (0: a fresh window every
    time; see AnimalAccelerometer), with the firmware's feature pass remembered per window (FeatureMemo);
    on_window(device_id, t_s, state): told of every accelerometer window (the twin's ground truth);
    rejoins: device_id -> Unix seconds at which the collar rejoins and its frame counter restarts at 0.
    """

    def __init__(
        self,
        n_collars: int = 20,
        seed: int = 1,
        start: datetime = DEFAULT_START,
        days: float = 2.0,
        network: Network | None = None,
        pace: float | None = None,
        animals: Sequence[Animal] | None = None,
        reserve: Reserve | None = None,
        fences: bool = True,
        settings: dict | None = None,
        battery_mv: int = 3640,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        library_windows: int = 0,
        on_window: Callable[[str, int, AnimalState], None] | None = None,
        rejoins: dict[str, Sequence[int]] | None = None,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        if pace is not None and pace <= 0:
            raise ValueError(f"pace must be positive simulated seconds per wall second, got {pace}")
        if days <= 0:
            raise ValueError(f"days must be positive, got {days}")
        self.seed = seed
        self.start = start
        self.start_s = int(start.timestamp())
        self.end_s = self.start_s + int(days * 86400)
        self.pace = pace
        self._sleep, self._monotonic = sleep, monotonic
        self.library_windows = library_windows
        self.on_window = on_window
        self.feature_memo: FeatureMemo | None = None
        self._rejoins = {d: sorted(int(t) for t in ts) for d, ts in (rejoins or {}).items()}
        seeds = np.random.SeedSequence([seed, _FLEET_STREAM]).spawn(2)  # apart from the herd's streams
        if animals is None:
            self.herd: Herd | None = Herd(n_collars, seed, start, reserve=reserve, days=days)
            animals = self.herd.animals
            reserve = self.herd.reserve
        else:
            self.herd = None
        self.reserve = reserve
        self.network = network or Network(reserve.gateways if reserve else None, seed=seeds[0])
        per_collar = seeds[1].spawn(len(animals))
        self._wearers = [self._wear(i, a, per_collar[i], settings, battery_mv) for i, a in enumerate(animals)]
        self._by_device = {w.animal.identity.device_id: w for w in self._wearers}
        self._by_eui = {w.animal.identity.dev_eui.lower(): w for w in self._wearers}
        if len(self._by_device) != len(self._wearers):
            raise ValueError("every animal needs its own device_id")
        self._lock = threading.Lock()
        self.uplinks_sent = 0
        self.uplinks_delivered = 0
        self.messages_delivered = 0
        self.downlinks_queued = 0
        self._started = False
        self._wall0: float | None = None
        self._outbox: list[tuple[float, int, Delivery]] = []
        self._outbox_seq = 0
        # on_sent(uplink, heard): told of every uplink a collar sends, heard by a gateway or not
        self.on_sent: Callable[[Uplink, bool], None] | None = None
        if fences and reserve is not None:
            for command in fence_commands(reserve):
                for w in self._wearers:
                    w.pending.append((32, command, False))

    def __repr__(self) -> str:
        return f"Fleet({len(self._wearers)} collars, seed={self.seed}, {self.start.isoformat()}..)"

    # --- building a collar on simulated hardware ---
    def _wear(
        self, index: int, animal: Animal, seed: np.random.SeedSequence, settings: dict | None, battery_mv: int
    ) -> _Wearer:
        accel_seed, gnss_seed = seed.spawn(2)
        clock = hal_sim.SimClock(self.start_s)
        first = animal.state_at(self.start_s)
        wearer = _Wearer(index=index, animal=animal, spreading_factor=self.network.spreading_factor(first.lon, first.lat))
        device_id = animal.identity.device_id
        on_window = None if self.on_window is None else (lambda t_s, state: self.on_window(device_id, t_s, state))

        def position(t_s: int) -> tuple[float, float]:
            s = animal.state_at(t_s)
            return s.lat, s.lon

        radio = hal_sim.SimRadio(
            clock, sf=wearer.spreading_factor, bw_khz=125,
            coverage=lambda t_s: self._coverage(wearer, t_s),
            on_uplink=lambda t_s, port, payload, confirmed, heard: self._on_uplink(wearer, port, payload, confirmed),
        )
        wearer.hal = Hal(
            clock,
            hal_sim.SimIMU(clock, AnimalAccelerometer(animal, np.random.default_rng(accel_seed),
                                                      self.library_windows, on_window)),
            NoisyGnss(clock, position, GnssReceiver(np.random.default_rng(gnss_seed))),
            radio,
            hal_sim.SimPower(clock, battery=CollarBattery(battery_mv, self.start_s, _end_of_life_s(animal)),
                             temperature=CollarTemperature(animal)),
            hal_sim.SimFlash(),
            watchdog=hal_sim.SimWatchdog(clock),
        )
        wearer.collar = Collar(wearer.hal, settings)
        self.remember_passes(wearer.collar)
        return wearer

    def remember_passes(self, collar: Collar) -> None:
        """With a window library, the collar's feature pass and its model's prediction are remembered per
        window (FeatureMemo, remember_model); call again after the collar loads another model."""
        if self.library_windows and collar.feature_pass is not None:
            if self.feature_memo is None:
                self.feature_memo = FeatureMemo(collar.feature_pass)
            collar.feature_pass = self.feature_memo
            remember_model(collar)

    # --- the radio path, called from inside SimRadio.send ---
    def _coverage(self, wearer: _Wearer, t_s: int) -> bool:
        if t_s == wearer.send_t_s:
            wearer.send_offset_s += SEND_SPACING_S
        else:
            wearer.send_t_s, wearer.send_offset_s = t_s, 0.0
        state = wearer.animal.state_at(t_s)
        probe = self._uplink(wearer, 0, b"", False, state)
        wearer.heard = self.network.hear(probe)
        return bool(wearer.heard[1])

    def _uplink(self, wearer: _Wearer, port: int, payload: bytes, confirmed: bool, state: AnimalState) -> Uplink:
        identity = wearer.animal.identity
        return Uplink(
            device_id=identity.device_id, dev_eui=identity.dev_eui, f_port=port, f_cnt=wearer.f_cnt,
            payload=payload, time_s=wearer.send_t_s + wearer.send_offset_s, lat=state.lat, lon=state.lon,
            spreading_factor=wearer.spreading_factor, confirmed=confirmed,
        )

    def _on_uplink(self, wearer: _Wearer, port: int, payload: bytes, confirmed: bool) -> bool:
        """Hand the frame to the network; return whether a gateway kept it (the collar's ACK if confirmed)."""
        state = wearer.animal.state_at(wearer.send_t_s)
        rejoins = self._rejoins.get(wearer.animal.identity.device_id)
        if rejoins and wearer.send_t_s >= rejoins[0]:
            rejoins.pop(0)
            wearer.f_cnt = 0  # a new session after the rejoin: the frame counter starts again
            log.info("collar rejoined, frame counter reset", extra={"device_id": wearer.animal.identity.device_id})
        uplink = self._uplink(wearer, port, payload, confirmed, state)
        wearer.f_cnt += 1
        self.uplinks_sent += 1
        frequency_hz, receptions = wearer.heard
        receptions = self.network.collide(uplink, frequency_hz, receptions)
        context = {"device_id": uplink.device_id, "f_cnt": uplink.f_cnt, "f_port": port}
        if receptions:
            self.uplinks_delivered += 1
            log.debug("uplink heard by %d gateway(s)", len(receptions), extra=context)
        else:
            log.debug("uplink lost", extra=context)
        if self.on_sent is not None:
            self.on_sent(uplink, bool(receptions))
        for delivery in self.network.package(uplink, frequency_hz, receptions):
            self._outbox_seq += 1
            heapq.heappush(self._outbox, (delivery.received_at_s, self._outbox_seq, delivery))
        return bool(receptions)

    # --- running ---
    def deliveries(self, pace: float | None = None) -> Iterator[Delivery]:
        """Step every collar until the end; yield what the network server delivers, in time order.

        pace (simulated seconds per wall second) overrides the fleet's pace for this run.
        """
        if pace is not None:
            if pace <= 0:
                raise ValueError(f"pace must be positive simulated seconds per wall second, got {pace}")
            self.pace = pace
        if self._started:
            raise RuntimeError("a Fleet runs once; build a new one to run again")
        self._started = True
        wake = [(self.start_s, w.index) for w in self._wearers]
        heapq.heapify(wake)
        while wake:
            t_s, index = heapq.heappop(wake)
            if t_s < self.end_s:
                wearer = self._wearers[index]
                self._hand_downlinks(wearer)
                wearer.hal.clock.sleep_until(t_s)
                next_s = wearer.collar.step()
                wearer.hal.radio.uplinks.clear()  # already handed to the network in _on_uplink
                heapq.heappush(wake, (max(int(next_s), t_s + 1), index))
            horizon = wake[0][0] if wake else math.inf
            while self._outbox and self._outbox[0][0] <= horizon:
                delivery = heapq.heappop(self._outbox)[2]
                if delivery.received_at_s >= self.end_s:
                    continue
                self._wait_for(delivery.received_at_s)
                self.messages_delivered += 1
                yield delivery

    def uplinks(self, network_format: str = "tts", pace: float | None = None) -> Iterator[dict]:
        """Yield delivered uplinks as The Things Stack v3 ("tts") or ChirpStack v4 ("chirpstack") JSON dicts."""
        if network_format not in FORMATS:
            raise ValueError(f"network_format must be one of {FORMATS}, got {network_format!r}")
        to_json = self.network.tts_uplink if network_format == "tts" else self.network.chirpstack_uplink
        for delivery in self.deliveries(pace):
            yield to_json(delivery)

    def __iter__(self) -> Iterator[dict]:
        return self.uplinks()

    def _wait_for(self, t_s: float) -> None:
        if self.pace is None:
            return
        if self._wall0 is None:
            self._wall0 = self._monotonic()
        delay = self._wall0 + (t_s - self.start_s) / self.pace - self._monotonic()
        if delay > 0:
            self._sleep(delay)

    # --- downlinks (simulator.network_server.DownlinkSink) ---
    def push_downlink(self, device_id: str, port: int, payload: bytes, confirmed: bool = False) -> None:
        """Queue a downlink; the collar hears it after its next uplink a gateway hears (class A)."""
        if not 1 <= port <= 223:
            raise ValueError(f"downlink port must be 1..223, got {port}")
        wearer = self._wearer(device_id)
        with self._lock:
            wearer.pending.append((port, bytes(payload), bool(confirmed)))
            self.downlinks_queued += 1
        log.info("downlink queued", extra={"device_id": device_id, "f_port": port})

    def clear_downlinks(self, device_id: str) -> None:
        """Drop every downlink still queued for the device."""
        wearer = self._wearer(device_id)
        with self._lock:
            wearer.pending.clear()
            wearer.hal.radio.downlinks.clear()

    def downlink_queue(self, device_id: str) -> list[tuple[int, bytes, bool]]:
        """Downlinks queued for the device and not yet sent: (port, payload, confirmed)."""
        wearer = self._wearer(device_id)
        with self._lock:
            in_radio = [(p, b, False) for p, b in wearer.hal.radio.downlinks]
            return in_radio + list(wearer.pending)

    def has_device(self, device_id: str) -> bool:
        """True when the fleet has a collar with this device id."""
        return device_id in self._by_device

    def device_id_of(self, dev_eui: str) -> str | None:
        """The device id of a DevEUI (any case), or None."""
        wearer = self._by_eui.get(dev_eui.lower())
        return None if wearer is None else wearer.animal.identity.device_id

    def _hand_downlinks(self, wearer: _Wearer) -> None:
        if not wearer.pending:  # most wake-ups: nothing queued (a push made meanwhile waits for the next)
            return
        with self._lock:
            while wearer.pending:
                port, payload, _confirmed = wearer.pending.popleft()
                wearer.hal.radio.push_downlink(port, payload)

    def _wearer(self, device_id: str) -> _Wearer:
        try:
            return self._by_device[device_id]
        except KeyError:
            raise KeyError(f"no collar with device_id {device_id!r} in this fleet") from None

    # --- what others read ---
    def collar(self, device_id: str) -> Collar:
        """The firmware object running on the device (for tests and the demo's inspector)."""
        return self._wearer(device_id).collar

    def animal(self, device_id: str) -> Animal:
        """The animal wearing the device (its `state_at` is the ground truth of position and motion)."""
        return self._wearer(device_id).animal

    def manifest(self) -> list[dict]:
        """device_id, dev_eui, name, species, sex of every collar (to register the herd with the bridge)."""
        return [
            {"device_id": w.animal.identity.device_id, "dev_eui": w.animal.identity.dev_eui,
             "name": w.animal.identity.name, "species": w.animal.identity.species, "sex": w.animal.identity.sex}
            for w in self._wearers
        ]

    def ground_truth(self) -> list[GroundTruthEvent]:
        """The injected scenarios (the answer key for alert scoring); [] for a fleet of given animals."""
        return self.herd.ground_truth() if self.herd is not None else []

    def counters(self) -> dict[str, int]:
        """uplinks_sent, uplinks_delivered, messages_delivered, downlinks_queued, downlinks_received."""
        return {
            "uplinks_sent": self.uplinks_sent,
            "uplinks_delivered": self.uplinks_delivered,
            "messages_delivered": self.messages_delivered,
            "downlinks_queued": self.downlinks_queued,
            "downlinks_received": sum(w.collar.downlinks for w in self._wearers),
        }


def bench_fleet(n_collars: int = 20, days: float = 2.0, seed: int = 1) -> dict:
    """Run a herd as fast as possible and return its figures (for `tembo bench`): wall time, how many
    simulated seconds pass per wall second, uplinks sent / delivered, and the first alert of each type."""
    fleet = Fleet(n_collars=n_collars, seed=seed, days=days)
    alerts: dict[str, int] = {}
    started = time.perf_counter()
    for delivery in fleet.deliveries():
        up = delivery.uplink
        if up.f_port == codec.port_of("alert") and delivery.copy == 0:
            kind = codec.decode(up.f_port, up.payload)["alert_type"]
            alerts[kind] = alerts.get(kind, 0) + 1
    wall_s = time.perf_counter() - started
    simulated_s = fleet.end_s - fleet.start_s
    return {
        "collars": n_collars,
        "simulated_days": days,
        "wall_s": round(wall_s, 2),
        "simulated_s_per_wall_s": round(simulated_s * n_collars / wall_s),
        "collar_days_per_wall_minute": round(n_collars * days * 60 / wall_s, 1),
        **fleet.counters(),
        "delivery_ratio": round(fleet.uplinks_delivered / max(1, fleet.uplinks_sent), 4),
        "alert_uplinks": dict(sorted(alerts.items())),
        "scenarios": [f"{e.device_id}:{e.kind}" for e in fleet.ground_truth()],
    }
