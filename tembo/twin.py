"""Wire the digital twin to its outlets and to the bridge: `tembo simulate`, `tembo bench alerts` / `sim`.

No business logic: the scenario, the fleet and the scoring live in `simulator`, the bridge in
`lora_bridge`. This module sends what the twin's network server delivers where the user asked (a
bridge's webhook, an MQTT broker, a JSON-lines file) and, for the alert bench, runs the standard
scenario through a real bridge (HTTP webhook, SQLite) while the twin plays the ranger.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import secrets
import tempfile
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import httpx

from collar_firmware import codec
from lora_bridge.access import Viewer
from simulator import scenario as scenarios
from simulator.network import Delivery
from simulator.scoring import (
    JUDGED_TYPES,
    CollarReports,
    SeenAlert,
    Truth,
    not_scored,
    score,
    time_budget_error,
)
from tembo.twin_checks import SentFrames, network_event_checks

log = logging.getLogger("tembo.twin")

# The twin's ranger: reads through the bridge's privacy policy like any ranger, and signs its verdicts.
RANGER = Viewer("twin-ranger", "ranger")


# --- outlets ------------------------------------------------------------------------------------------
class Outlet:
    """Where delivered uplinks go: send(message_json, delivery); close()."""

    def send(self, message: dict, delivery: Delivery) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release what the outlet holds."""


class FileOutlet(Outlet):
    """One JSON document per line."""

    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "w")  # noqa: SIM115 - closed by close()

    def send(self, message: dict, delivery: Delivery) -> None:
        self.handle.write(json.dumps(message) + "\n")

    def close(self) -> None:
        self.handle.close()


class HttpOutlet(Outlet):
    """POST each message: a TTS webhook (uplink message body) or ChirpStack's HTTP integration (?event=up)."""

    def __init__(self, url: str, network_format: str, secret: str | None) -> None:
        self.url = url
        self.params = {"event": "up"} if network_format == "chirpstack" else None
        headers = {"Content-Type": "application/json"}
        if secret:
            headers["X-Tembo-Secret"] = secret
        self.client = httpx.Client(timeout=30, headers=headers)
        self.failed = 0

    def send(self, message: dict, delivery: Delivery) -> None:
        for attempt in range(3):  # a network server retries a webhook that does not answer 2xx
            reply = self.client.post(self.url, content=json.dumps(message), params=self.params)
            if reply.status_code < 300:
                return
            if reply.status_code < 500:
                break
            time.sleep(0.2 * (attempt + 1))
        self.failed += 1
        log.warning("webhook answered %s", reply.status_code,
                    extra={"device_id": delivery.uplink.device_id, "f_cnt": delivery.uplink.f_cnt})

    def close(self) -> None:
        self.client.close()


class ParallelHttpOutlet(Outlet):
    """POST messages from several workers at once, as a network server's webhooks arrive (a bridge that
    commits bodies in groups takes them together). Every device keeps one worker, so a collar's uplinks
    arrive in the order it sent them; `drain()` waits until everything handed in has been answered."""

    def __init__(self, url: str, network_format: str, secret: str | None, workers: int = 8) -> None:
        self.outlets = [HttpOutlet(url, network_format, secret) for _ in range(max(1, workers))]
        self.queues: list[queue.Queue] = [queue.Queue() for _ in self.outlets]
        self.threads = [threading.Thread(target=self._work, args=(i,), daemon=True, name=f"twin-post-{i}")
                        for i in range(len(self.outlets))]
        for thread in self.threads:
            thread.start()

    @property
    def failed(self) -> int:
        """Messages the bridge did not take (after the retries a network server makes)."""
        return sum(o.failed for o in self.outlets)

    def _work(self, i: int) -> None:
        outlet, inbox = self.outlets[i], self.queues[i]
        while True:
            item = inbox.get()
            try:
                if item is None:
                    return
                outlet.send(*item)
            except Exception:  # noqa: BLE001 - a refused connection counts as a failed post, the run goes on
                outlet.failed += 1
                log.exception("webhook post failed")
            finally:
                inbox.task_done()

    def send(self, message: dict, delivery: Delivery) -> None:
        worker = zlib.crc32(delivery.uplink.device_id.encode()) % len(self.queues)
        self.queues[worker].put((message, delivery))

    def drain(self) -> None:
        """Wait until every message handed in has been posted and answered."""
        for inbox in self.queues:
            inbox.join()

    def close(self) -> None:
        self.drain()
        for inbox in self.queues:
            inbox.put(None)
        for thread in self.threads:
            thread.join(timeout=30)
        for outlet in self.outlets:
            outlet.close()


class MqttOutlet(Outlet):
    """Publish each message as a network server does: TTS `v3/{app}@{tenant}/devices/{id}/up` (QoS 0, the
    only QoS TTS's MQTT server offers), ChirpStack `application/{app}/device/{devEui}/event/up`."""

    def __init__(self, url: str, network_format: str, application_id: str, tenant: str = "ttn") -> None:
        import paho.mqtt.client as mqtt

        parts = urlparse(url)
        self.network_format = network_format
        self.application_id = application_id
        self.tenant = tenant
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"tembo-twin-{int(time.time())}")
        if parts.username:
            self.client.username_pw_set(parts.username, parts.password)
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.loop_start()

    def topic(self, message: dict) -> str:
        """The topic a network server publishes this uplink on."""
        if self.network_format == "tts":
            device = message["end_device_ids"]["device_id"]
            return f"v3/{self.application_id}@{self.tenant}/devices/{device}/up"
        return f"application/{message['deviceInfo']['applicationId']}/device/{message['deviceInfo']['devEui']}/event/up"

    def send(self, message: dict, delivery: Delivery) -> None:
        self.client.publish(self.topic(message), json.dumps(message), qos=0).wait_for_publish(timeout=10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def outlet_for(to: str, network_format: str, application_id: str, secret: str | None = None) -> Outlet:
    """The outlet a --to value names: http(s)://..., mqtt://host:port, or a file path."""
    scheme = urlparse(to).scheme
    if scheme in ("http", "https"):
        return HttpOutlet(to, network_format, secret)
    if scheme == "mqtt":
        return MqttOutlet(to, network_format, application_id)
    if scheme:
        raise ValueError(f"--to {to!r}: expected http://..., https://..., mqtt://host:port or a file path")
    return FileOutlet(to)


# --- tembo simulate -------------------------------------------------------------------------------------
def parse_until(value: str | None, scenario: scenarios.Scenario) -> int | None:
    """--until: an offset from the scenario's start ("2d", "12h") or an RFC 3339 time; None: to the end."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return scenario.start_s + scenarios._Reader("--until").duration(value, "--until")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def simulate(name: str, to: str | None = None, speed: float | None = None, until: str | None = None,
             network_format: str | None = None, secret: str | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Run a scenario and send what the network delivers to `to`; return the summary."""
    scenario = scenarios.load_scenario(name)
    fmt = network_format or scenario.network.get("format", "tts")
    fleet = scenarios.fleet(scenario, until_s=parse_until(until, scenario))
    to = to or f"var/{scenario.name}-{fmt}.jsonl"
    outlet = outlet_for(to, fmt, scenario.network.get("application_id", "tembo-demo"), secret)
    to_json = fleet.network.tts_uplink if fmt == "tts" else fleet.network.chirpstack_uplink
    started = time.perf_counter()
    sent = 0
    try:
        for delivery in fleet.deliveries(pace=speed):
            outlet.send(to_json(delivery), delivery)
            sent += 1
            if progress is not None:
                progress(int(delivery.received_at_s) - fleet.start_s, fleet.end_s - fleet.start_s)
    finally:
        outlet.close()
    wall_s = time.perf_counter() - started
    return {"scenario": scenario.name, "to": to, "format": fmt, "collars": len(fleet.manifest()),
            "simulated_days": round((fleet.end_s - fleet.start_s) / 86400, 3), "messages_sent": sent,
            **fleet.counters(), "collisions": fleet.network.collisions, "wall_s": round(wall_s, 1),
            "failed_posts": getattr(outlet, "failed", 0)}


# --- tembo bench alerts -----------------------------------------------------------------------------------
@contextmanager
def _bridge_for(fleet, reserve, folder: str) -> Iterator[tuple[object, str, str]]:
    from lora_bridge.adapters.webhook import create_app
    from lora_bridge.server import serve_app_in_thread
    from lora_bridge.service import Bridge
    from lora_bridge.settings import load_settings
    from simulator.network_server import NetworkServerStandIn

    with ExitStack() as running:
        network = NetworkServerStandIn(fleet, application_id="tembo-demo")
        network.start()
        running.callback(network.stop)
        # the twin's clock is its own: network-server times are believed over the whole scenario
        ahead_s = (fleet.end_s - fleet.start_s) + 86400.0
        settings = load_settings(database_url=f"sqlite:///{Path(folder) / 'tembo.db'}",
                                 network_server_url=network.url, network_server_api_key=network.api_key,
                                 max_clock_ahead_s=ahead_s, webhook_secret=secrets.token_urlsafe(32))
        bridge = running.enter_context(Bridge(settings))
        webhook = serve_app_in_thread(create_app(bridge), port=0)
        running.callback(webhook.stop)
        bridge.load_geography(reserve.geojson())
        # the reserve's fences as a technician imports them (boundary: exit, farmland / villages: enter),
        # so the bridge's own crossing rule judges the month's tracks beside the collars' fence alerts
        fences = bridge.import_geofences(json.dumps(reserve.geojson()).encode(), "reserve.geojson")
        log.info("reserve fences imported", extra={"fences": len(fences)})
        for member in fleet.manifest():
            bridge.register_animal(member["device_id"], member["name"], species=member["species"],
                                   sex=member.get("sex"))
        yield bridge, webhook.url, settings.webhook_secret.get_secret_value()


def _play_ranger(bridge, alert_seen: dict, events, now_s: int) -> int:
    """The twin goes to look at every open alert and at every alert Tembo closed itself since the last
    round (its screen's "awaiting a verdict"), and gives each the verdict its truth gives now; how many
    of the latter it judged."""
    from simulator.scoring import verdict

    closed = bridge.alerts_awaiting_verdict(viewer=RANGER)
    for view in [*bridge.open_alerts(viewer=RANGER), *closed]:
        if view.alert_type not in JUDGED_TYPES:  # no event of the truth can say: the ranger does not know
            bridge.resolve_alert(view.alert_id, RANGER, "unknown", note="the twin's ground truth has no such event")
            continue
        word, _ = verdict(_seen(view, alert_seen), events, now_s)
        bridge.resolve_alert(view.alert_id, RANGER, word, note="verdict from the twin's ground truth")
    return len(closed)


def _seen(view, alert_seen: dict) -> SeenAlert:
    raised = int(view.time.timestamp())
    arrivals = [t for t in alert_seen.get((view.device_id, view.alert_type), []) if t >= raised - 1]
    seen_s = int(min(arrivals)) if arrivals else raised
    return SeenAlert(view.alert_id, view.device_id, view.alert_type, raised, seen_s, view.source, view.verdict)


def run_through_bridge(name: str = "standard", until: str | None = None, network_format: str = "tts",
                       collars: int | None = None, workers: int = 8, keep_store_in: str | None = None) -> dict:
    """Run a scenario through a real bridge over its HTTP webhook (SQLite); return the score.

    collars: only the first collars of the herd (and their events); workers: webhook posts in flight;
    keep_store_in: a folder where the bridge's store (tembo.db) stays after the run, to read it again."""
    scenario = scenarios.load_scenario(name)
    if collars is not None:
        scenario = _resized(scenario, collars)
    truth = Truth(scenario)
    fleet = scenarios.fleet(scenario, until_s=parse_until(until, scenario), on_window=truth.on_window)
    end_s = fleet.end_s
    alert_seen: dict[tuple[str, str], list[float]] = defaultdict(list)
    reported: dict[tuple[str, int], Counter] = defaultdict(Counter)
    seen_frames: set[tuple[str, int, int]] = set()
    frames = SentFrames()
    reports = CollarReports()
    fleet.on_sent = frames.on_sent
    to_json = fleet.network.tts_uplink if network_format == "tts" else fleet.network.chirpstack_uplink
    path = "/uplinks/tts" if network_format == "tts" else "/uplinks/chirpstack"
    started = time.perf_counter()
    # the bench measures alerts, not durability: the store lives in memory-backed /dev/shm when there is one
    scratch = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with ExitStack() as kept:
        folder = keep_store_in or kept.enter_context(tempfile.TemporaryDirectory(prefix="tembo-alerts-", dir=scratch))
        bridge, url, secret = kept.enter_context(_bridge_for(fleet, scenario.reserve, folder))
        outlet = ParallelHttpOutlet(url + path, network_format, secret, workers)
        next_round_s = fleet.start_s + 3600
        judged_closed = 0  # verdicts given on alerts Tembo had closed itself (condition cleared)
        try:
            for delivery in fleet.deliveries():
                while delivery.received_at_s >= next_round_s:  # the control room's hourly round
                    outlet.drain()  # everything heard before the round is in the bridge
                    bridge.process_pending()  # what the bridge's timer does with bodies kept for later
                    bridge.run_rules(datetime.fromtimestamp(next_round_s, UTC))
                    judged_closed += _play_ranger(bridge, alert_seen, _known(truth, scenario, next_round_s),
                                                  next_round_s)
                    next_round_s += 3600
                up = delivery.uplink
                truth.heard(up.device_id, delivery.received_at_s)
                frames.on_delivery(delivery)
                reports.note(up.device_id, up.f_port, up.payload)
                _note(up, delivery, alert_seen, reported, seen_frames, scenario.start_s)
                outlet.send(to_json(delivery), delivery)
        finally:
            outlet.close()
        bridge.process_pending()
        bridge.run_rules(datetime.fromtimestamp(end_s, UTC))
        events = truth.finish(end_s, offline_after_s(scenario))
        judged_closed += _play_ranger(bridge, alert_seen, events, end_s)
        views = bridge.alerts(viewer=RANGER)
        seen = [_seen(v, alert_seen) for v in views]
        wall_s = time.perf_counter() - started
        verdicts = bridge.alert_verdicts()  # the one precision figure, as the dashboard's table reads it
        figures = score(seen, events, end_s, reports, verdicts=verdicts)
        with bridge.db.read() as session:
            checks = network_event_checks(session, scenario, frames, end_s)
    return {
        "scenario": scenario.name,
        "collars": len(fleet.manifest()),
        "simulated_days": round((end_s - fleet.start_s) / 86400, 3),
        "wall_s": round(wall_s, 1),
        "truth_events": dict(Counter(e.kind for e in events)),
        "alerts_by_type": figures,
        "alerts_by_source": _by_source(seen),
        "not_scored": not_scored(seen),
        "behaviour_time_budget_error": time_budget_error(reported, truth),
        "alert_verdicts": verdicts,
        "verdicts_on_alerts_tembo_closed": judged_closed,
        "precision_disagreements": {kind: len(f["precision_disagreements"]) for kind, f in figures.items()
                                    if f.get("precision_disagreements")},
        "uplinks_sent": fleet.uplinks_sent,
        "uplinks_delivered": fleet.uplinks_delivered,
        "collisions": fleet.network.collisions,
        "failed_posts": outlet.failed,
        "network_events": checks,
    }


def _by_source(seen: list[SeenAlert]) -> dict[str, dict[str, int]]:
    """Per alert type, how many alerts each source raised (collar: the collar's rule; server: a bridge rule)."""
    out: dict[str, Counter] = defaultdict(Counter)
    for alert in seen:
        out[alert.alert_type][alert.source] += 1
    return {kind: dict(counts) for kind, counts in sorted(out.items())}


def offline_after_s(scenario) -> int:
    """The silence after which the bridge's default offline profile calls a collar of the scenario offline."""
    from collar_firmware import config
    from lora_bridge.domain.rules_profiles import OfflineProfile

    profile = OfflineProfile()
    interval = scenario.settings.get("status_interval_s", config.DEFAULTS["status_interval_s"])
    return int(profile.missed_reports * interval + profile.grace_min * 60)


def _known(truth: Truth, scenario, now_s: int) -> list:
    """What the twin-ranger knows at now_s: scripted events started by then and the spells closed so far,
    plus spells still open (a ranger at the fence sees the elephant in the field)."""
    from simulator.scenario import ANIMAL_EVENTS
    from simulator.scoring import TruthEvent, _device

    known = list(truth.events)  # spells closed so far
    for e in scenario.events:
        if e.kind in ANIMAL_EVENTS and e.start_s <= now_s:
            known.append(TruthEvent(_device(e.collar), e.kind, ANIMAL_EVENTS[e.kind][1], e.start_s, e.end_s))
            if e.kind == "collar_drop":
                known.append(TruthEvent(_device(e.collar), e.kind, ("immobility",), e.start_s, None))
    for held, kind, alerts in ((truth._in_farm, "farmland_entry", ("geofence_farmland",)),
                               (truth._outside, "boundary_exit", ("geofence_exit",))):
        for device_id, (was_in, since_s, lat, lon, *_) in held.items():
            if was_in:
                known.append(TruthEvent(device_id, kind, alerts, since_s, None, lat, lon))
    for device_id, times in truth._heard.items():  # a collar silent right now is offline for real
        if times and now_s - times[-1] > offline_after_s(scenario):
            known.append(TruthEvent(device_id, "silence", ("offline",), times[-1], None))
    return known


def _note(up, delivery, alert_seen, reported, seen_frames, start_s: int) -> None:
    key = (up.device_id, up.f_cnt, hash(up.payload))
    if key in seen_frames:
        return
    seen_frames.add(key)
    try:
        fields = codec.decode(up.f_port, up.payload)
    except Exception:  # noqa: BLE001 - the bridge keeps it as a dead letter; the score just skips it
        return
    if fields.get("message") == "alert":
        alert_seen[(up.device_id, fields["alert_type"])].append(delivery.received_at_s)
    elif fields.get("message") == "activity":
        day = (fields["time_s"] - start_s) // 86400
        total = 0
        for share in fields["shares"]:
            total += share
        windows = max(1, round(fields["interval_min"]))  # one window a minute by default
        for i, share in enumerate(fields["shares"]):
            if i < len(codec.BEHAVIOURS) and total:
                reported[(up.device_id, day)][codec.BEHAVIOURS[i]] += share / total * windows


def score_collar_alerts(name: str = "standard", until: str | None = None, collars: int | None = None) -> dict:
    """Run a scenario without a bridge and score the alerts the collars themselves sent, as the network
    delivered them (each alert once, at its first arrival): what the collar rules and the radio do, before
    any bridge rule. Same figures as the bridge run for the collar's alert types."""
    scenario = scenarios.load_scenario(name)
    if collars is not None:
        scenario = _resized(scenario, collars)
    truth = Truth(scenario)
    fleet = scenarios.fleet(scenario, until_s=parse_until(until, scenario), on_window=truth.on_window)
    started = time.perf_counter()
    reports = CollarReports()
    first: dict[tuple[str, str, int, int], SeenAlert] = {}
    for delivery in fleet.deliveries():
        up = delivery.uplink
        truth.heard(up.device_id, delivery.received_at_s)
        reports.note(up.device_id, up.f_port, up.payload)
        if up.f_port != codec.port_of("alert"):
            continue
        fields = codec.decode(up.f_port, up.payload)
        key = (up.device_id, fields["alert_type"], fields["seq"], fields["time_s"])
        if key not in first:
            first[key] = SeenAlert(len(first) + 1, up.device_id, fields["alert_type"], fields["time_s"],
                                   int(delivery.received_at_s))
    events = truth.finish(fleet.end_s, offline_after_s(scenario))
    figures = score(list(first.values()), events, fleet.end_s, reports, delivered_by="network server")
    return {"scenario": scenario.name, "collars": len(fleet.manifest()),
            "simulated_days": round((fleet.end_s - fleet.start_s) / 86400, 3),
            "wall_s": round(time.perf_counter() - started, 1), "bridge": False,
            "truth_events": dict(Counter(e.kind for e in events)),
            "alerts_by_type": {k: v for k, v in figures.items() if k != "offline"}}


def bench_alerts(scenario: str = "standard", until: str | None = None, collars: int | None = None,
                 workers: int = 8, bridge: bool = True) -> dict:
    """`tembo bench alerts`: the standard scenario through the real bridge, scored per alert type
    (`-o until=2d` / `-o collars=10` run a part of it; `-o workers=N` webhook posts in flight;
    `-o bridge=false` scores the collars' own alerts as delivered, without a bridge)."""
    if not bridge:
        return score_collar_alerts(scenario, until, collars)
    return run_through_bridge(scenario, until, collars=collars, workers=workers)


# --- tembo bench sim ----------------------------------------------------------------------------------------
def _rate(name: str, collars: int | None, days: float | None, library_windows: int | None = None) -> dict:
    scenario = scenarios.load_scenario(name)
    if collars is not None:
        scenario = _resized(scenario, collars)
    until = scenario.start_s + int(days * 86400) if days else None
    started = time.perf_counter()
    cpu_started = time.process_time()
    fleet = scenarios.fleet(scenario, until_s=until, library_windows=library_windows)
    digest = hashlib.sha256()
    for delivery in fleet.deliveries():
        up = delivery.uplink
        digest.update(b"%s|%d|%s|%.3f|" % (up.device_id.encode(), up.f_cnt, up.payload.hex().encode(),
                                           delivery.received_at_s))
    wall_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    collar_days = len(fleet.manifest()) * (fleet.end_s - fleet.start_s) / 86400
    memo = fleet.feature_memo
    return {"collars": len(fleet.manifest()), "collar_days": round(collar_days, 2), "wall_s": round(wall_s, 2),
            "cpu_s": round(cpu_s, 2), "collar_days_per_s": round(collar_days / wall_s, 3),
            "collar_days_per_cpu_s": round(collar_days / cpu_s, 3),
            "uplinks_sent": fleet.uplinks_sent, "deliveries_sha256": digest.hexdigest()[:16],
            "feature_pass_reused": round(memo.hits / max(1, memo.hits + memo.misses), 3) if memo else 0.0}


def _resized(scenario, collars: int):
    from dataclasses import replace

    events = tuple(e for e in scenario.events if e.collar is None or e.collar < collars)
    return replace(scenario, count=collars, events=events)


def bench_sim(scenario: str = "standard", days: float = 1.0, collars: list[int] | None = None,
              micropython_hours: int = 2) -> dict:
    """`tembo bench sim`: collar-days per second of the scenario (days of it) by wall clock and by the
    process's CPU time (the machine is shared: the CPU figure is the one the run itself costs), how the
    rate grows with the number of collars, the fresh-window baseline measured in the same run, whether the
    same seed gave the same uplinks byte for byte, and the collar code's slowdown under MicroPython
    against CPython for a short scripted run."""
    counts = collars or [10, 50, 100]
    growth = [_rate(scenario, n, days) for n in counts]
    again = _rate(scenario, counts[0], days)
    baseline = _rate(scenario, counts[0], days, library_windows=0)
    largest = growth[-1]
    mp = _micropython_slowdown(micropython_hours)
    cpu_rate = largest["collar_days_per_cpu_s"]
    return {
        "scenario": scenario,
        "simulated_days": days,
        "collars": largest["collars"],
        "collar_days_per_s": largest["collar_days_per_s"],
        "collar_days_per_cpu_s": cpu_rate,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "by_collars": growth,
        "same_seed_same_uplinks": again["deliveries_sha256"] == growth[0]["deliveries_sha256"],
        "fresh_windows_baseline": baseline,
        "speedup_vs_fresh_windows_cpu": round(growth[0]["collar_days_per_cpu_s"]
                                              / baseline["collar_days_per_cpu_s"], 2),
        "minutes_for_100_collars_30_days": round(100 * 30 / largest["collar_days_per_s"] / 60, 1),
        "cpu_minutes_for_100_collars_30_days": round(100 * 30 / cpu_rate / 60, 1),
        **mp,
    }


def _micropython_slowdown(hours: int) -> dict:
    from simulator import micropython_runner
    from simulator.scripted import START_S, ScriptedRun

    end_s = START_S + hours * 3600
    started = time.perf_counter()
    run = ScriptedRun(1, START_S, 7, False)
    run.advance(end_s)
    cpython_s = time.perf_counter() - started
    try:
        started = time.perf_counter()
        with micropython_runner.MicroPythonCollar(seed=1, sf=7, events=False) as mp:
            mp.advance(end_s)
            fuel = mp.fuel_used
        micropython_s = time.perf_counter() - started
    except Exception as err:  # noqa: BLE001 - reported in the figures, not hidden
        return {"micropython_slowdown": None, "micropython_error": str(err)}
    return {"micropython_hours": hours, "cpython_s": round(cpython_s, 3), "micropython_s": round(micropython_s, 2),
            "micropython_slowdown": round(micropython_s / cpython_s, 1), "micropython_fuel": fuel}
