"""Location privacy: what a viewer's role may see of positions, tracks, animals and alerts.

Applied inside the service layer to the views it hands out. A role without exact positions gets,
per animal (ordinary or high-value, see `roles.Role.precision`):
- only fixes at least the role's delay old (the cutoff), and alerts raised before the cutoff on reports
  before it (a fence crossing is dated before the fixes that confirmed it, `known_at`);
- each position snapped to the centre of its cell in a grid of the role's size, laid in the
  equal-area EASE-Grid 2.0 projection (EPSG:6933), so a cell covers grid_m² on the ground at any
  latitude and the same fix always lands on the same centre (nothing to average away);
- a run of fixes in one cell as one fix; alert evidence without coordinates, geometry, the
  gateways that heard the collar or a fix's distance past a fence line, and alerts without the
  ranger's note (words can place exactly);
- an alert as it stood at the cutoff: an alert keeps being repeated while it is open (a collar
  still in farmland) and moves to its newest occurrence, so its place, last time, count, evidence and
  history leave out every occurrence after the cutoff (they say where the animal is now), and its
  state and history every step taken after it (Tembo closes an alert when the animal leaves the
  farmland);
- an animal's behaviour from the newest activity summary that ended by the cutoff, not the collar's
  live one (behaviour can tell where a chase is going on), and its last report, battery,
  temperature and versions from what the collar had reported by the cutoff.
An alert without an animal is treated as a high-value animal's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
from pyproj import Transformer

from lora_bridge.access.delayed import CollarReport
from lora_bridge.access.roles import Precision, Viewer
from lora_bridge.decode import decode_payload
from lora_bridge.domain import alerts as alert_rules
from lora_bridge.domain import rules_crossings
from lora_bridge.domain.rules_corroboration import CORROBORATED, CORROBORATION_KEY
from lora_bridge.domain.rules_lifecycle import ESCALATED
from lora_bridge.queries import ACTION_ASSIGNED
from lora_bridge.views import (
    KNOWN_AT_KEY,
    ActivityView,
    AlertEventView,
    AlertView,
    AnimalView,
    PositionView,
    time_of,
    until,
)

GRID_CRS = "EPSG:6933"  # WGS 84 / NSIDC EASE-Grid 2.0 Global: equal-area, metres
EXACT_LABEL = "exact"
COARSE_LABEL = "coarse"
# Keys that carry a place inside alert evidence and event details (dropped for coarse roles).
_PLACE_KEYS = frozenset(
    {"lat", "lon", "latitude", "longitude", "lat_deg", "lon_deg", "geometry", "coordinates", "position",
     "positions", "track", "fixes", "location", "point",
     # A fix's height: with the reserve's terrain it narrows where the collar is (a hill, a valley floor).
     "altitude", "altitude_m", "alt",
     # The gateways that heard an uplink place the collar within their range when it was sent.
     "gateways", "gateway", "gateway_id",
     # A ranger's note says in words what was found where ("the carcass by the north dam").
     "note",
     # How far past a fence line a fix lay, and a crossing's verdict that says it ("a fix 900 m past
     # the line"): the fences are everyone's to read, so the metres put the fix on a line across its cell.
     "metres_past_line", "decided"}
)
# Who an alert step was sent to (a ranger's phone number or e-mail address, in the notification events
# of an alert's history): the control room's business, not the visitor kiosk's or a researcher's.
_RECIPIENT_KEYS = frozenset({"to", "recipient"})
_NOTIFICATION_STEP = "notification_"
# Where a network event's detail keeps what a third-party service answered (`network_messages`).
SERVICE_ANSWER_KEYS = frozenset({"data", "object"})
# Where a simulated uplink's event keeps the bytes the network server was given (`network_messages`).
PAYLOAD_KEY = "payload_hex"


@cache
def _transformers() -> tuple[Transformer, Transformer]:
    to_grid = Transformer.from_crs("EPSG:4326", GRID_CRS, always_xy=True)
    from_grid = Transformer.from_crs(GRID_CRS, "EPSG:4326", always_xy=True)
    return to_grid, from_grid


def coarsen_many(lats: Iterable[float], lons: Iterable[float], grid_m: int) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes (degrees) snapped to the centres of their grid_m cells."""
    lat = np.asarray(list(lats), dtype=float)
    lon = np.asarray(list(lons), dtype=float)
    if grid_m <= 0 or lat.size == 0:
        return lat, lon
    to_grid, from_grid = _transformers()
    x, y = to_grid.transform(lon, lat)
    x_centre = (np.floor(np.asarray(x) / grid_m) + 0.5) * grid_m
    y_centre = (np.floor(np.asarray(y) / grid_m) + 0.5) * grid_m
    lon_c, lat_c = from_grid.transform(x_centre, y_centre)
    return np.round(np.asarray(lat_c), 6), np.round(np.asarray(lon_c), 6)


def coarsen(lat: float, lon: float, grid_m: int) -> tuple[float, float]:
    """(lat, lon) snapped to the centre of its cell in the grid_m grid; unchanged for grid_m 0."""
    lats, lons = coarsen_many([lat], [lon], grid_m)
    return float(lats[0]), float(lons[0])


def label(viewer: Viewer) -> str:
    """'exact' or 'coarse': how this viewer sees positions (what the audit log records)."""
    return EXACT_LABEL if viewer.exact_positions else COARSE_LABEL


def precision_for(viewer: Viewer, high_value: bool) -> Precision:
    """How viewer sees an animal that is (or is not) high-value."""
    return viewer.policy.precision(high_value)


def cutoff(precision: Precision, now: datetime) -> datetime:
    """The newest time a viewer with this precision may see."""
    return now - precision.delay


def positions(
    viewer: Viewer, views: Iterable[PositionView], high_value: Mapping[str, bool], now: datetime
) -> list[PositionView]:
    """Fixes as viewer may see them: late enough and snapped to the grid (order kept)."""
    kept = [view for view in views if _visible(viewer, view.animal_id, view.time, high_value, now)]
    if viewer.exact_positions or not kept:
        return kept
    out: list[PositionView] = []
    for grid_m, group in _by_grid(viewer, kept, high_value).items():
        lats, lons = coarsen_many((v.lat for v in group), (v.lon for v in group), grid_m)
        out.extend(replace(v, lat=float(a), lon=float(o)) for v, a, o in zip(group, lats, lons, strict=True))
    rank = {(view.animal_id, view.time): index for index, view in enumerate(kept)}
    return sorted(out, key=lambda view: rank[(view.animal_id, view.time)])


def tracks(
    viewer: Viewer, tracks_: Mapping[str, list[PositionView]], high_value: Mapping[str, bool], now: datetime
) -> dict[str, list[PositionView]]:
    """Tracks (animal id -> fixes oldest first) as viewer may see them; for coarse roles a run of
    fixes in one cell becomes one fix (the last of the run) and an empty track is left out."""
    if viewer.exact_positions:
        return {animal_id: list(fixes) for animal_id, fixes in tracks_.items()}
    out: dict[str, list[PositionView]] = {}
    for animal_id, fixes in tracks_.items():
        seen = positions(viewer, fixes, high_value, now)
        merged: list[PositionView] = []
        for fix in seen:
            if merged and (merged[-1].lat, merged[-1].lon) == (fix.lat, fix.lon):
                merged[-1] = fix
            else:
                merged.append(fix)
        if merged:
            out[animal_id] = merged
    return out


def animals(
    viewer: Viewer,
    views: Iterable[AnimalView],
    latest: Mapping[str, PositionView],
    open_alerts: Mapping[str, int] | None = None,
    behaviour: Mapping[str, str | None] | None = None,
    reports: Mapping[str, CollarReport] | None = None,
    cutoffs: Mapping[str, datetime] | None = None,
) -> list[AnimalView]:
    """Animals as viewer may see them. For coarse roles `latest` holds each animal's newest fix the
    viewer may see (already coarsened), `open_alerts` the open alerts the viewer may see,
    `behaviour` the dominant behaviour of the newest activity summary the viewer may see and
    `reports` what its collar had reported by the viewer's cutoff (last seen, battery, temperature,
    versions; unknown when missing) and `cutoffs` that cutoff (the view's `as_of`)."""
    if viewer.exact_positions:
        return list(views)
    out = []
    for view in views:
        fix = latest.get(view.animal_id)
        report = (reports or {}).get(view.animal_id) or CollarReport(last_seen=None)
        out.append(
            replace(
                view,
                lat=fix.lat if fix else None,
                lon=fix.lon if fix else None,
                position_time=fix.time if fix else None,
                open_alerts=int((open_alerts or {}).get(view.animal_id, 0)),
                behaviour=(behaviour or {}).get(view.animal_id),
                last_seen=report.last_seen,
                battery_mv=report.battery_mv,
                temperature_c=report.temperature_c,
                fw_version=report.fw_version,
                model_version=report.model_version,
                as_of=(cutoffs or {}).get(view.animal_id),
            )
        )
    return out


# The steps of an alert's history that change how it stands: who it is assigned to, its priority.
STANDING_STEPS = (ACTION_ASSIGNED, ESCALATED, CORROBORATED)


def alerts(
    viewer: Viewer,
    views: Iterable[AlertView],
    high_value: Mapping[str, bool],
    now: datetime,
    steps: Mapping[int, list[AlertEventView]] | None = None,
) -> list[AlertView]:
    """Alerts as viewer may see them: for coarse roles only those raised before the cutoff of their
    animal, as they stood then (with `steps`, each alert's STANDING_STEPS: assigned to whom it was
    then, at the priority it had before any later escalation), with a coarse position and evidence
    without places (order kept)."""
    if viewer.exact_positions:
        return list(views)
    out = []
    for view in views:
        precision = _precision(viewer, view.animal_id, high_value)
        seen_until = cutoff(precision, now)
        if known_at(view) > seen_until:
            continue
        checked_later = _checked_after(view, seen_until)  # read before as_it_stood drops the later fixes
        view = alert_rules.as_it_stood(view, seen_until)
        if checked_later:
            view = _unchecked(view)
        if steps is not None:
            view = _standing_then(view, steps.get(view.alert_id, []), seen_until)
        lat, lon = view.lat, view.lon
        if lat is not None and lon is not None:
            lat, lon = coarsen(lat, lon, precision.grid_m)
        out.append(replace(view, lat=lat, lon=lon, evidence=without_places(view.evidence), note=None))
    return out


def known_at(view: AlertView) -> datetime:
    """The time of the newest report an alert rests on: its own time, or for a fence crossing (dated
    at the crossing, interpolated between two fixes) the newest fix that confirmed it. A role with a
    delay sees the alert once that report is as old as its delay, as it sees the fix itself."""
    confirmed = rules_crossings.confirmed_at(view.evidence)
    return max(view.time, confirmed) if confirmed is not None else view.time


def _checked_after(view: AlertView, seen_until: datetime) -> bool:
    """True when the bridge's verdict on the crossing before a collar's fence alert rests on a fix after
    seen_until: a fix back inside (held, priority 0) or a second one outside (confirmed) says where the
    animal is now."""
    check = view.evidence.get(rules_crossings.TRACK_CHECK_KEY) if isinstance(view.evidence, Mapping) else None
    decided = rules_crossings.decided_at(check) if isinstance(check, Mapping) else None
    return decided is not None and decided > seen_until


def _unchecked(view: AlertView) -> AlertView:
    """A collar's fence alert without the bridge's verdict, at the priority it had before the verdict held it."""
    check = view.evidence.get(rules_crossings.TRACK_CHECK_KEY) or {}
    evidence = {key: value for key, value in view.evidence.items() if key != rules_crossings.TRACK_CHECK_KEY}
    priority = alert_rules.priority_for(view.alert_type) if check.get("held") else view.priority
    return replace(view, evidence=evidence, priority=priority)


def _standing_then(view: AlertView, steps: list[AlertEventView], seen_until: datetime) -> AlertView:
    """`view` assigned as it was at seen_until, weighed as it was then (`_weighed_then`), and at the
    priority it had before the first escalation after it (an escalation says nobody has answered it since)."""
    view = _weighed_then(view, [step for step in steps if step.action == CORROBORATED], seen_until)
    assigned = [step for step in steps if step.action == ACTION_ASSIGNED and step.at <= seen_until]
    later = [step for step in steps if step.action == ESCALATED and step.at > seen_until]
    priority = later[0].detail.get("priority_from", view.priority) if later else view.priority
    return replace(view, assigned_to=(assigned[-1].detail.get("to") or None) if assigned else None,
                   priority=int(priority))


def _weighed_then(view: AlertView, weighed: list[AlertEventView], seen_until: datetime) -> AlertView:
    """A poaching or mortality alert with the bridge's corroboration as it stood at seen_until: its
    confidence and hold from the last weighing by then, without the witnesses' reasons of a later one,
    and held (priority 0) or not as it was then. A weighing after the cutoff rests on fixes and
    behaviour heard after it ("moved 900 m after the alert: alive")."""
    if not weighed or weighed[-1].at <= seen_until:
        return view
    then = [step for step in weighed if step.at <= seen_until]
    evidence = {key: value for key, value in view.evidence.items() if key != CORROBORATION_KEY}
    if then:
        evidence[CORROBORATION_KEY] = {"confidence": then[-1].detail.get("confidence"),
                                       "held": bool(then[-1].detail.get("held"))}
    held_then, held_now = bool(then and then[-1].detail.get("held")), bool(weighed[-1].detail.get("held"))
    priority = view.priority
    if held_now and not held_then:
        priority = alert_rules.priority_for(view.alert_type)
    elif held_then and not held_now:
        priority = alert_rules.PRIORITY_INFO
    return replace(view, evidence=evidence, priority=priority)


def alert_cutoff(viewer: Viewer, animal_id: str | None, high_value: Mapping[str, bool], now: datetime) -> datetime:
    """The newest time of an alert of this animal that viewer may see."""
    return cutoff(_precision(viewer, animal_id, high_value), now)


def alert_events(
    viewer: Viewer, events: Iterable[AlertEventView], seen_until: datetime | None = None
) -> list[AlertEventView]:
    """An alert's history as viewer may see it: for coarse roles details without places, and only the
    steps taken by `seen_until` (the alert's cutoff): none that an animal's report after it made (a
    repeat says where the animal is now), nor any the bridge or a ranger took after it (an escalation,
    an acknowledgement, a resolution when the animal left the farmland). A step that carries the time
    of the report it records is placed at that time, any other at when it was taken; one taken after
    the cutoff is shown at its report's time."""
    if viewer.exact_positions:
        return list(events)
    kept = [event for event in events if seen_until is None or _step_time(event) <= seen_until]
    # A step taken after the cutoff for a report before it (an alert the collar kept in its queue and
    # sent late) is shown at the report's time: when it was taken says the collar was heard then.
    return [
        replace(event, at=_step_time(event) if seen_until is not None and event.at > seen_until else event.at,
                detail=_without_recipients(event.action, without_places(until(event.detail, seen_until))))
        for event in kept
    ]


def _without_recipients(action: str, detail: dict[str, Any]) -> dict[str, Any]:
    """A notification step's detail without whom it went to (the duty officer's phone number)."""
    if not action.startswith(_NOTIFICATION_STEP):
        return detail
    return {key: value for key, value in detail.items() if key not in _RECIPIENT_KEYS}


def _step_time(event: AlertEventView) -> datetime:
    """When a step of an alert's history happened: the time of the report it records (or when that
    became known, for a fence crossing repeated once fixes after it confirmed it), else when it was taken."""
    reported = [moment for moment in (time_of(event.detail.get("time")), time_of(event.detail.get(KNOWN_AT_KEY)))
                if moment is not None]
    return max(reported) if reported else event.at


def activity(
    viewer: Viewer, views: Iterable[ActivityView], high_value: Mapping[str, bool], now: datetime
) -> list[ActivityView]:
    """Activity summaries as viewer may see them: for coarse roles only intervals that ended before
    the cutoff (behaviour can tell where a chase is going on)."""
    if viewer.exact_positions:
        return list(views)
    return [
        view
        for view in views
        if _visible(viewer, view.animal_id, view.time + timedelta(minutes=view.interval_min), high_value, now)
    ]


def without_places(value: Any) -> Any:
    """A JSON-like value with every coordinate, geometry and position list removed."""
    if isinstance(value, Mapping):
        return {key: without_places(item) for key, item in value.items() if str(key).lower() not in _PLACE_KEYS}
    if isinstance(value, list | tuple):
        return [without_places(item) for item in value]
    return value


def network_event_detail(detail: Mapping[str, Any], codec: Any) -> dict[str, Any]:
    """A network event's detail for a role without exact positions: without places and gateways,
    without the answer of a third-party service (TTS `service_data`'s `data`, a ChirpStack integration
    event's `object`), whose shape is the service's own: LoRa Cloud's answer places the collar as
    `position_solution.llh`, under no key Tembo could strip; and without the bytes of an uplink the
    network server simulated (`payload_hex`) when they carry a place (`payload_places`): decoded
    with the codec, a status, positions or alert payload gives the exact fix no grid coarsened."""
    shown = {key: value for key, value in without_places(detail).items() if key not in SERVICE_ANSWER_KEYS}
    if PAYLOAD_KEY in shown and payload_places(codec, detail.get("f_port"), shown[PAYLOAD_KEY]):
        del shown[PAYLOAD_KEY]
    return shown


def payload_places(codec: Any, f_port: Any, payload_hex: Any) -> bool:
    """True unless the payload (hex) on f_port decodes, with codec, to a message without a place (an
    activity summary, an ack): a payload the codec cannot read may hold one as well as not."""
    if not isinstance(f_port, int) or isinstance(f_port, bool) or not isinstance(payload_hex, str):
        return True
    try:
        payload = bytes.fromhex(payload_hex)
    except ValueError:
        return True
    fields = decode_payload(codec, f_port, payload).fields
    return fields is None or without_places(fields) != fields


def _precision(viewer: Viewer, animal_id: str | None, high_value: Mapping[str, bool]) -> Precision:
    # No animal (a collar not yet registered): treated as high-value, the strictest.
    return precision_for(viewer, high_value.get(animal_id, True) if animal_id is not None else True)


def _visible(
    viewer: Viewer, animal_id: str | None, time: datetime, high_value: Mapping[str, bool], now: datetime
) -> bool:
    return time <= cutoff(_precision(viewer, animal_id, high_value), now)


def _by_grid(
    viewer: Viewer, views: list[PositionView], high_value: Mapping[str, bool]
) -> dict[int, list[PositionView]]:
    groups: dict[int, list[PositionView]] = {}
    for view in views:
        groups.setdefault(_precision(viewer, view.animal_id, high_value).grid_m, []).append(view)
    return groups
