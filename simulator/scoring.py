"""Ground truth of Tembo's digital twin and the score of the alerts a bridge raised against it.

`Truth` records what really happened while a scenario runs: the behaviour of every animal at every
accelerometer window (so behaviour shares per animal-day can be compared with what the collar
reported), the scripted events (start, place, end), the farmland entries and boundary exits the
animals made, and the silences of collars no gateway heard (offline). `score()` matches the alerts a
bridge raised with those events, per alert type: recall, precision, median and 90th-percentile delay
(from the event's start to the alert reaching the bridge), and names every missed and false alert
with what may explain it, so a failed goal points at its cause.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from collar_firmware.codec import BEHAVIOURS
from collar_firmware.config import DEFAULTS
from simulator.animals import AnimalState
from simulator.scenario import ANIMAL_EVENTS, Scenario

SCORED_TYPES = ("mortality", "immobility", "poaching_risk", "geofence_farmland", "geofence_exit",
                "collar_drop", "low_battery", "offline")
# Judged for precision only: a failing battery is the truth of the collar's critical reading and of the
# bridge's forecast of empty, but it need not reach either within a run, so no recall is asked of them.
PRECISION_ONLY_TYPES = {"battery_critical": "a failing battery need not read critical within the run",
                        "battery_forecast": "a failing battery need not be forecast empty within the run"}
JUDGED_TYPES = SCORED_TYPES + tuple(PRECISION_ONLY_TYPES)
# Goals of issue 16 per type: (recall, delay in minutes, how the delay is read); precision >= 0.9 for all.
# "median": recall as given and the median delay within the goal ("mortality recall >= 0.95 with median
# delay <= 3 h"); "within": that share of the events caught within the delay ("poaching risk >= 0.9
# within 15 min"), a late alert counting as missed.
GOALS = {"mortality": (0.95, 180.0, "median"), "poaching_risk": (0.9, 15.0, "within"),
         "geofence_farmland": (0.95, 30.0, "within")}
PRECISION_GOAL = 0.9
EARLY_S = 10 * 60  # an alert this long before an event's start still counts for it (clock, window)
GRACE_S = 3 * 3600  # ... and this long after its end (a confirmed alert repeated through a gap)
SPELL_MIN_S = 5 * 60  # a farmland visit or boundary exit shorter than this is noise at a fence line ...
SPELL_DEPTH_M = float(DEFAULTS["fence_margin_m"])  # ... unless it went this far past the line (a collar's margin)


@dataclass(frozen=True)
class TruthEvent:
    """Something a ranger should hear about: on device_id, of `kind`, from start to end (None: on)."""

    device_id: str
    kind: str
    alert_types: tuple[str, ...]
    start_s: int
    end_s: int | None
    lat: float | None = None
    lon: float | None = None

    def as_dict(self) -> dict:
        """JSON-able form with ISO times."""
        out = asdict(self)
        out["start"] = _iso(self.start_s)
        out["end"] = _iso(self.end_s) if self.end_s is not None else None
        return out


@dataclass(frozen=True)
class SeenAlert:
    """An alert as the bridge raised it: id, type, device, when the collar/rule raised it and when it
    reached the bridge (seen_s)."""

    alert_id: int
    device_id: str
    alert_type: str
    raised_s: int
    seen_s: int
    source: str = "collar"  # "collar" (raised on the collar) or "server" (a bridge rule)
    verdict: str | None = None  # the ranger's verdict on it in the bridge (None: not judged, or no bridge)


@dataclass
class Truth:
    """What really happened in a run (fed by the fleet's on_window hook and the scenario)."""

    scenario: Scenario
    windows: dict[tuple[str, int], Counter] = field(default_factory=lambda: defaultdict(Counter))
    events: list[TruthEvent] = field(default_factory=list)
    # per device: (visit open, since, lat, lon at its start, out since: 0 while inside, deepest metres)
    _in_farm: dict[str, tuple[bool, int, float, float, int, float]] = field(default_factory=dict)
    _outside: dict[str, tuple[bool, int, float, float, int, float]] = field(default_factory=dict)
    _heard: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    _start_place: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    _awaiting: dict[str, list[int]] | None = None  # per device: start times of its events not yet placed

    def on_window(self, device_id: str, t_s: int, state: AnimalState) -> None:
        """One accelerometer window of device_id at t_s saw the animal in `state`."""
        day = (t_s - self.scenario.start_s) // 86400
        self.windows[(device_id, day)][state.behaviour] += 1
        self._spell(self._in_farm, device_id, t_s, state, state.in_farmland, "farmland_entry", ("geofence_farmland",),
                    self._depth)
        self._spell(self._outside, device_id, t_s, state, not state.inside_reserve, "boundary_exit",
                    ("geofence_exit",), self._depth)
        if self._awaiting is None:
            self._awaiting = defaultdict(list)
            for e in self.scenario.events:
                if e.collar is not None:
                    self._awaiting[_device(e.collar)].append(e.start_s)
        awaiting = self._awaiting.get(device_id)
        while awaiting and t_s >= min(awaiting):  # where the animal was when each of its events began
            start_s = min(awaiting)
            awaiting.remove(start_s)
            self._start_place.setdefault((device_id, start_s), (state.lat, state.lon))

    def _depth(self, kind: str, state: AnimalState) -> float:
        reserve = self.scenario.reserve
        x, y = reserve.frame.to_xy(state.lon, state.lat)
        return reserve.farmland_depth_m(x, y) if kind == "farmland_entry" else reserve.boundary_distance_m(x, y)

    def _spell(self, held: dict, device_id: str, t_s: int, state: AnimalState, now_in: bool, kind: str,
               alerts: tuple[str, ...], depth_of) -> None:
        """One visit lasts from the first window inside to the last one before the animal stayed out for
        SPELL_MIN_S (a step back over the line and in again is the same visit, as a fence's margin has it).
        It counts when it lasted SPELL_MIN_S or went SPELL_DEPTH_M past the line."""
        was_in, since_s, lat, lon, out_s, deepest = held.get(device_id, (False, 0, 0.0, 0.0, 0, 0.0))
        if now_in:
            depth = depth_of(kind, state)
            if not was_in:
                held[device_id] = (True, t_s, state.lat, state.lon, 0, depth)
            else:  # still in, or back in within the gap: the same visit
                held[device_id] = (True, since_s, lat, lon, 0, max(deepest, depth))
        elif was_in:
            if not out_s:
                held[device_id] = (True, since_s, lat, lon, t_s, deepest)
            elif t_s - out_s >= SPELL_MIN_S:
                held[device_id] = (False, t_s, 0.0, 0.0, 0, 0.0)
                if out_s - since_s >= SPELL_MIN_S or deepest >= SPELL_DEPTH_M:
                    self.events.append(TruthEvent(device_id, kind, alerts, since_s, out_s, lat, lon))

    def heard(self, device_id: str, t_s: float) -> None:
        """The network delivered an uplink of device_id at t_s (offline periods are the gaps)."""
        self._heard[device_id].append(int(t_s))

    def finish(self, end_s: int, offline_after_s: int) -> list[TruthEvent]:
        """Close open spells at end_s and return every truth event of the run, in time order."""
        for held, kind, alerts in ((self._in_farm, "farmland_entry", ("geofence_farmland",)),
                                   (self._outside, "boundary_exit", ("geofence_exit",))):
            for device_id, (was_in, since_s, lat, lon, out_s, deepest) in held.items():
                if was_in and ((out_s or end_s) - since_s >= SPELL_MIN_S or deepest >= SPELL_DEPTH_M):
                    self.events.append(TruthEvent(device_id, kind, alerts, since_s, out_s or None, lat, lon))
            held.clear()
        for e in self.scenario.events:
            if e.kind in ANIMAL_EVENTS and ANIMAL_EVENTS[e.kind][1] and e.start_s < end_s:
                device_id = _device(e.collar)
                lat, lon = self._start_place.get((device_id, e.start_s), (None, None))
                self.events.append(TruthEvent(device_id, e.kind, ANIMAL_EVENTS[e.kind][1], e.start_s, e.end_s, lat, lon))
                if e.kind == "collar_drop":  # a dropped collar lies still: immobility is true too
                    self.events.append(TruthEvent(device_id, "collar_drop", ("immobility",), e.start_s, None, lat, lon))
        for device_id, times in self._heard.items():
            times = sorted(times)
            for a, b in zip(times, [*times[1:], end_s], strict=True):
                if b - a > offline_after_s:
                    self.events.append(TruthEvent(device_id, "silence", ("offline",), a + offline_after_s,
                                                  b if b < end_s else None))
        self.events.sort(key=lambda e: (e.start_s, e.device_id, e.kind))
        return self.events

    def behaviour_shares(self) -> dict[tuple[str, int], dict[str, float]]:
        """True share of each behaviour per (device_id, day), from every window the collars took."""
        out = {}
        for key, counts in self.windows.items():
            total = sum(counts.values())
            out[key] = {b: counts.get(b, 0) / total for b in BEHAVIOURS}
        return out


def _device(collar_index: int) -> str:
    from simulator.animals import demo_device_id

    return demo_device_id(collar_index)


def _iso(t_s: int) -> str:
    return datetime.fromtimestamp(t_s, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class CollarReports:
    """What the collars told the bridge, per device, to name the cause of a missed event: the behaviour
    shares of every activity summary (time, seconds covered, shares by class name) and every fix time."""

    activity: dict[str, list[tuple[int, int, dict[str, float]]]] = field(default_factory=lambda: defaultdict(list))
    fixes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    _seen: set = field(default_factory=set)

    def note(self, device_id: str, f_port: int, payload: bytes) -> None:
        """Decode one delivered uplink (each frame once) and keep what explains misses."""
        from collar_firmware import codec

        key = (device_id, f_port, bytes(payload))
        if key in self._seen or f_port not in (codec.port_of("activity"), codec.port_of("positions")):
            return
        self._seen.add(key)
        try:
            fields = codec.decode(f_port, payload)
        except Exception:  # noqa: BLE001 - the bridge keeps it as a dead letter; nothing to explain with
            return
        if fields.get("message") == "activity":
            total = sum(fields["shares"]) or 1
            shares = {BEHAVIOURS[i]: v / total for i, v in enumerate(fields["shares"]) if i < len(BEHAVIOURS)}
            self.activity[device_id].append((fields["time_s"], fields["interval_min"] * 60, shares))
        else:
            t = fields["time_s"]
            for fix in fields["fixes"]:
                self.fixes[device_id].append(t + fix["dt_s"])

    def explain(self, event: TruthEvent, alert_type: str) -> str:
        """Why an event of alert_type may have been missed, from what its collar reported."""
        stop = event.end_s if event.end_s is not None else event.start_s + 3600
        covered = [(s, shares) for t, s, shares in self.activity.get(event.device_id, [])
                   if t < stop + 900 and t + s > event.start_s]
        fixes = [t for t in self.fixes.get(event.device_id, []) if event.start_s <= t <= stop]
        seen = ", ".join(f"{b} {100 * sum(sh.get(b, 0) for _, sh in covered) / len(covered):.0f} %"
                         for b in BEHAVIOURS) if covered else "no activity summary arrived"
        if alert_type == "poaching_risk":
            run = sum(sh.get("run", 0) for _, sh in covered) / len(covered) if covered else 0.0
            if covered and run < 0.1:
                return f"model: the collar saw almost no running during the chase ({seen})"
            return f"collar rule or radio: running was reported ({seen}) but no alert arrived"
        if alert_type in ("geofence_farmland", "geofence_exit"):
            if not fixes:
                return (f"fix schedule: no fix arrived from inside the {(stop - event.start_s) // 60}-minute "
                        "spell")
            return f"collar rule or radio: {len(fixes)} fix(es) from the spell arrived but no alert"
        return f"collar rule, model or radio (the collar reported: {seen})"


def verdict(alert: SeenAlert, events: list[TruthEvent], end_s: int) -> tuple[str, TruthEvent | None]:
    """("true", event) when a truth event of the alert's device and type explains it, else
    ("false_alarm", None): the twin playing the ranger who went to look."""
    best = None
    for e in events:
        if e.device_id != alert.device_id or alert.alert_type not in e.alert_types:
            continue
        stop = (e.end_s if e.end_s is not None else end_s) + GRACE_S
        if e.start_s - EARLY_S <= alert.raised_s <= stop and (best is None or e.start_s > best.start_s):
            best = e
    return ("true", best) if best is not None else ("false_alarm", None)


def score(alerts: list[SeenAlert], events: list[TruthEvent], end_s: int, reports: CollarReports | None = None,
          delivered_by: str = "bridge", verdicts: Mapping[str, Mapping[str, Any]] | None = None) -> dict:
    """Per alert type: recall, precision, median and p90 delay (minutes), missed and false events (a
    missed one with its likely cause when the collars' reports are given).

    verdicts: the bridge's precision per type from the rangers' verdicts (`Bridge.alert_verdicts()`).
    When given, a type's `precision` (and its goal) is that figure, the one the dashboard shows; the
    truth's own figure stays beside it (`precision_from_truth`) with its false alerts as the diagnosis,
    and every alert whose ranger verdict (given at a round, with what was known then) differs from the
    final truth's is listed in `precision_disagreements`. Without a bridge the truth's figure is the one."""
    out = {}
    for kind in JUDGED_TYPES:
        truth = [e for e in events if kind in e.alert_types]
        raised = [a for a in alerts if a.alert_type == kind]
        if kind in PRECISION_ONLY_TYPES:
            out[kind] = _precision_only(kind, truth, raised, end_s)
            _read_verdicts(out[kind], kind, raised, truth, end_s, verdicts)
            precision = out[kind]["precision"]
            out[kind]["goal_met"] = None if precision is None else precision >= PRECISION_GOAL
            continue
        matched: dict[int, list[SeenAlert]] = defaultdict(list)
        false = []
        for a in raised:
            _, event = verdict(a, truth, end_s)
            if event is None:
                false.append(a)
            else:
                matched[id(event)].append(a)
        caught, missed = [], []  # caught: (event, delay in minutes)
        for e in truth:
            got = matched.get(id(e))
            if got:
                caught.append((e, max(0.0, (min(a.seen_s for a in got) - e.start_s) / 60.0)))
            else:
                missed.append(e)
        delays = [d for _, d in caught]
        figures = {
            "events": len(truth),
            "alerts": len(raised),
            "recall": round(1 - len(missed) / len(truth), 4) if truth else None,
            "precision": round(1 - len(false) / len(raised), 4) if raised else None,
            "median_delay_min": round(float(np.median(delays)), 1) if delays else None,
            "p90_delay_min": round(float(np.percentile(delays, 90)), 1) if delays else None,
        }
        _read_verdicts(figures, kind, raised, truth, end_s, verdicts)
        goal_recall, goal_delay, delay_reading = GOALS.get(kind, (None, None, None))
        if goal_delay is not None and truth:  # "caught within the goal's delay": late alerts count as missed
            figures["recall_within_goal_delay"] = round(sum(d <= goal_delay for d in delays) / len(truth), 4)
        if not truth and not raised:
            figures["goal_met"] = None  # nothing happened and nothing was raised: not measured
            figures["false_by_source"] = {}
            out[kind] = figures
            continue
        if delay_reading == "within":
            recalled = figures["recall_within_goal_delay"]
            late = [e for e, d in caught if d > goal_delay]
        else:
            recalled, late = figures["recall"], []
        goal_met = ((figures["precision"] is None or figures["precision"] >= PRECISION_GOAL)
                    and (goal_recall is None or (recalled is not None and recalled >= goal_recall))
                    and (delay_reading != "median" or (figures["median_delay_min"] is not None
                                                       and figures["median_delay_min"] <= goal_delay)))
        figures["goal_met"] = goal_met
        figures["false_by_source"] = dict(Counter(a.source for a in false))
        if not goal_met:
            figures["missed"] = [{**e.as_dict(), "cause": (f"no alert of this type reached the {delivered_by}"
                                                            + (f"; {reports.explain(e, kind)}" if reports else ""))}
                                 for e in missed]
            figures["missed"] += [{**e.as_dict(), "cause": f"raised after the goal's {goal_delay:g} minutes"}
                                  for e in late]
        if false:  # the diagnosis: which alerts the final truth calls false, and what raised them
            figures["false"] = _false_list(false)
        out[kind] = figures
    return out


def _read_verdicts(figures: dict, kind: str, raised: list[SeenAlert], truth: list[TruthEvent], end_s: int,
                   verdicts: Mapping[str, Mapping[str, Any]] | None) -> None:
    """Make the rangers' verdict figure the type's precision (see `score`), the truth's kept beside it."""
    figures["precision_from_truth"] = figures["precision"]
    if verdicts is None:
        figures["precision_source"] = "truth"
        return
    entry = verdicts.get(kind) or {}
    precision = entry.get("precision")
    figures["precision"] = round(float(precision), 4) if precision is not None else None
    figures["precision_source"] = "ranger verdicts"
    figures["verdicts"] = {word: int(entry.get(word, 0)) for word in ("true", "false_alarm", "unknown", "unjudged")}
    disagreements = []
    for a in raised:
        final, _ = verdict(a, truth, end_s)
        if a.verdict != final:
            disagreements.append({"alert_id": a.alert_id, "device_id": a.device_id, "raised": _iso(a.raised_s),
                                  "source": a.source, "ranger_verdict": a.verdict, "final_truth": final})
    figures["precision_disagreements"] = disagreements


def _false_list(false: list[SeenAlert]) -> list[dict]:
    return [{"alert_id": a.alert_id, "device_id": a.device_id, "raised": _iso(a.raised_s),
             "source": a.source, "cause": _false_cause(a)} for a in false]


def _precision_only(kind: str, truth: list[TruthEvent], raised: list[SeenAlert], end_s: int) -> dict:
    """The figures of a type judged for precision only (PRECISION_ONLY_TYPES): every alert true or false
    (its goal is set by `score` once the precision it reads is known)."""
    false = [a for a in raised if verdict(a, truth, end_s)[1] is None]
    precision = round(1 - len(false) / len(raised), 4) if raised else None
    figures = {"events": len(truth), "alerts": len(raised), "recall": None,
               "recall_not_asked": PRECISION_ONLY_TYPES[kind], "precision": precision,
               "false_by_source": dict(Counter(a.source for a in false))}
    if false:
        figures["false"] = _false_list(false)
    return figures


def not_scored(alerts: list[SeenAlert]) -> dict[str, dict]:
    """The alert types raised that the twin's truth cannot judge (no event of theirs is simulated), with
    how many came from which source: listed, not scored, and left for the ranger as `unknown`."""
    out: dict[str, Counter] = defaultdict(Counter)
    for a in alerts:
        if a.alert_type not in JUDGED_TYPES:
            out[a.alert_type][a.source] += 1
    return {kind: {"alerts": sum(c.values()), "by_source": dict(c),
                   "why": "the twin's truth has no event of this type: listed, not scored"}
            for kind, c in sorted(out.items())}


def _false_cause(alert: SeenAlert) -> str:
    if alert.source != "collar":
        return "bridge rule (raised by the server with no such event in the truth)"
    return "collar rule or model (raised on the collar with no such event in the truth)"


def time_budget_error(reported: dict[tuple[str, int], Counter], truth: Truth) -> float | None:
    """Mean over animal-days of the total variation distance between the behaviour shares the collar
    reported (windows per class from its activity summaries) and the true shares (0 same, 1 disjoint)."""
    true_shares = truth.behaviour_shares()
    errors = []
    for key, counts in reported.items():
        total = sum(counts.values())
        if not total or key not in true_shares:
            continue
        errors.append(0.5 * sum(abs(counts.get(b, 0) / total - true_shares[key][b]) for b in BEHAVIOURS))
    return round(float(np.mean(errors)), 4) if errors else None
