"""Page logic of the ranger dashboard as plain functions over the bridge's view dataclasses:
formatting, the alert and animal tables, the activity summary.

Nothing here imports streamlit: the pages call these functions and show what they return, and
unit tests call them directly. Inputs are the frozen views of `lora_bridge.views`, read by
attribute (`AnimalView`, `PositionView`, `AlertView`, `ActivityView`, `AlertEventView`); all
times are timezone-aware UTC. The map's layers are in `map_layers`, what a role may see in `roles`.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from collar_firmware.config import DEFAULTS as COLLAR_DEFAULTS
from lora_bridge.access import roles as access_roles
from lora_bridge.domain import alerts as alert_steps
from lora_bridge.domain import downlinks, rules_crossings
from lora_bridge.domain.alerts import SOURCE_COLLAR, SOURCE_SERVER, STATE_RESOLVED, SYSTEM_ACTOR, type_label
from lora_bridge.views import time_of
from ranger_dashboard import palette

log = logging.getLogger(__name__)

# Battery of the reference collar (Li-SOCl2 cells): 3.6 V nominal, flat until nearly empty.
# The pages pass the bridge's low_battery_mv; the default is the collar's own, the one source.
LOW_BATTERY_MV = int(COLLAR_DEFAULTS["low_battery_mv"])
# An animal not heard from for this long is shown as silent.
SILENT_AFTER = timedelta(hours=6)
# Verdicts a ranger gives when resolving an alert: label shown -> value stored by the bridge.
VERDICTS: dict[str, str] = {"True alert": "true", "False alarm": "false_alarm", "Unknown": "unknown"}

# Column names of the tables, imported by tests.
COL_PRIORITY = "Priority"
COL_TYPE = "Alert"
COL_ANIMAL = "Animal"
COL_TIME = "Time (UTC)"
COL_AGE = "Age"
COL_STATE = "State"
COL_SOURCE = "Source"
COL_POSITION = "Position"
COL_NAME = "Name"
COL_SPECIES = "Species"
COL_COLLAR = "Collar"
COL_LAST_SEEN = "Last seen (UTC)"
COL_HEARD = "Heard"
COL_BATTERY = "Battery (V)"
COL_BEHAVIOUR = "Behaviour"
COL_FIRMWARE = "Firmware"
COL_MODEL = "Model"
VEDBA_MEAN = "vedba_mean_mg"
VEDBA_MAX = "vedba_max_mg"


# ---------------------------------------------------------------- formatting


def format_age(then: datetime | None, now: datetime) -> str:
    """How long ago, as a ranger says it: 'just now', '12 min ago', '3 h ago', '2 d ago', 'never'."""
    if then is None:
        return "never"
    seconds = (now - then).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400 * 2:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


# What every page shows above what it last read while the store is busy (the map, Alerts, Animals).
NOT_LIVE_HEADLINE = "Not live: the Tembo store is busy"


def not_live_message(shows: str, meanwhile: str, read_at: datetime, now: datetime, retry_s: float) -> str:
    """What a page says while the store is busy and it shows what it last read at `read_at`: `shows`,
    the sentence's start ('The map shows the positions and alerts'), `meanwhile`, what waits for the
    store ('names and tracks return with the store')."""
    return (
        f"**{NOT_LIVE_HEADLINE}** (another program, such as a backup, is writing to it). "
        f"{shows} last read, at {read_at.astimezone(UTC):%H:%M:%S} UTC ({format_age(read_at, now)}); "
        f"{meanwhile}. The page tries again every {retry_s:g} s by itself."
    )


def stale_page_message(shown: str, waits: str, read_at: datetime, now: datetime, retry_s: float) -> str:
    """What the Alerts or Animals page says while the store is busy and it shows `shown` (e.g. 'the
    open alerts') last read at `read_at`; `waits`: what waits for the store (its buttons)."""
    return not_live_message(f"The page shows {shown}",
                            f"{waits} wait for the store, so nobody acts on an out-of-date state",
                            read_at, now, retry_s)


UNPLACED_NAMED_UP_TO = 12


def unplaced_message(animals: Iterable[Any], points: Iterable[Mapping[str, Any]], exact: bool, as_of: datetime | None) -> str:
    """What the live map says of the animals it cannot place (a collar with no fix yet, or none the
    viewer's role may see yet): their names, the first UNPLACED_NAMED_UP_TO of them; '' when none."""
    placed = {str(p["animal_id"]) for p in points}
    names = [isolated(name) for name in sorted(a.name or a.device_id or str(a.animal_id) for a in animals
                                               if str(a.animal_id) not in placed)]
    if not names:
        return ""
    why = ("no fix by the moment shown" if as_of else "no fix yet") if exact else "no position your view may show yet"
    listed = ", ".join(names[:UNPLACED_NAMED_UP_TO])
    more = f" and {len(names) - UNPLACED_NAMED_UP_TO} more" if len(names) > UNPLACED_NAMED_UP_TO else ""
    return f"Not on the map ({why}): {listed}{more}."


# Unicode's "first strong isolate" and "pop directional isolate": the text between them is laid out
# on its own, whichever way it reads.
FIRST_STRONG_ISOLATE, POP_ISOLATE = "\u2068", "\u2069"


def isolated(name: str) -> str:
    """`name` (an animal's, typed by a person) set apart from the words around it when it holds
    right-to-left letters (Arabic, Hebrew): otherwise the browser lays out what follows it with it,
    and 'نجمة · 15 d ago' reads '15 · نجمة d ago'. Other names as they are."""
    if any(unicodedata.bidirectional(letter) in ("R", "AL") for letter in name):
        return f"{FIRST_STRONG_ISOLATE}{name}{POP_ISOLATE}"
    return name


def name_of(item: Any) -> str:
    """How a line of text names an animal (`AnimalView`, `AlertView`, `PositionView`): its name, else
    its collar, `isolated`."""
    return isolated(str(item.name or item.device_id or ""))


def format_time(when: datetime | None) -> str:
    """'2026-11-25 08:40' in UTC, or an empty string when unknown."""
    if when is None:
        return ""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def format_time_utc(when: datetime | None) -> str:
    """'2026-11-25 08:40 UTC' (`format_time` with its zone, for text that stands without a column
    heading saying UTC), or an empty string when unknown."""
    return f"{format_time(when)} UTC" if when is not None else ""


def format_position(lat: float | None, lon: float | None) -> str:
    """'-2.33412, 34.83371' (about 1 m), or an empty string when there is no fix."""
    if lat is None or lon is None:
        return ""
    return f"{lat:.5f}, {lon:.5f}"


def format_battery(battery_mv: int | None, low_battery_mv: int = LOW_BATTERY_MV) -> str:
    """'3.61 V', with ' (low)' below low_battery_mv, or an empty string when unknown."""
    if battery_mv is None:
        return ""
    text = f"{battery_mv / 1000:.2f} V"
    return text + " (low)" if battery_mv < low_battery_mv else text


# The ranger's words for an alert type: the bridge's one list (`lora_bridge.domain.alerts`), which its
# SMS, e-mail and EarthRanger titles use too.
alert_type_label = type_label


def alert_label(alert: Any) -> str:
    """One line naming an alert in a select box: 'HIGH · Possible mortality · Tembo · 2026-11-25 08:40 UTC · new'."""
    return (
        f"{palette.priority_label(alert.priority).upper()} · {alert_type_label(alert.alert_type)} · "
        f"{name_of(alert)} · {format_time_utc(alert.time)} · {alert.state}"
    )


# ---------------------------------------------------------------- animal states

# Open alert types that say where the collar is rather than how the animal is.
COLLAR_DROP_TYPES = frozenset({"collar_drop"})
OFFLINE_TYPES = frozenset({"offline"})


def animal_states(animals: Iterable[Any], alerts: Iterable[Any]) -> dict[str, str]:
    """Each animal's state for the map, by animal id, from its open alerts: 'collar_dropped' (a
    collar-drop alert), 'alert' (any other alert but offline), 'offline' (the bridge's offline
    rule, which knows each collar's own reporting schedule, has an open alert), else 'normal'."""
    open_types: dict[str, set[str]] = {}
    for alert in alerts:
        if alert.animal_id is not None:
            open_types.setdefault(str(alert.animal_id), set()).add(alert.alert_type)
    states = {}
    for animal in animals:
        animal_id = str(animal.animal_id)
        types = open_types.get(animal_id, set())
        if types & COLLAR_DROP_TYPES:
            states[animal_id] = "collar_dropped"
        elif types - OFFLINE_TYPES:
            states[animal_id] = "alert"
        elif types & OFFLINE_TYPES:
            states[animal_id] = "offline"
        else:
            states[animal_id] = "normal"
    return states


# ---------------------------------------------------------------- alerts


def sort_alerts(alerts: Iterable[Any]) -> list[Any]:
    """The queue: priority high to low, then the longest waiting first, then by alert id."""
    latest = datetime.max.replace(tzinfo=UTC)
    return sorted(alerts, key=lambda a: (-int(a.priority), a.time or latest, int(a.alert_id)))


def alert_table(alerts: Iterable[Any], now: datetime, show_positions: bool = True) -> pd.DataFrame:
    """Open alerts as the table the Alerts page shows, most urgent first (positions only if allowed)."""
    rows = [
        {
            COL_PRIORITY: palette.priority_label(a.priority),
            COL_TYPE: alert_type_label(a.alert_type),
            COL_ANIMAL: a.name or a.device_id,
            COL_TIME: format_time(a.time),
            COL_AGE: format_age(a.time, now),
            COL_STATE: a.state,
            COL_SOURCE: a.source,
            COL_POSITION: format_position(a.lat, a.lon) if show_positions else "withheld",
        }
        for a in sort_alerts(alerts)
    ]
    columns = [COL_PRIORITY, COL_TYPE, COL_ANIMAL, COL_TIME, COL_AGE, COL_STATE, COL_SOURCE, COL_POSITION]
    return pd.DataFrame(rows, columns=columns)


def state_text(alert: Any) -> str:
    """'new', or 'acknowledged by Amina at 2026-11-25 08:40'."""
    if alert.state == "acknowledged" and getattr(alert, "acknowledged_by", None):
        when = getattr(alert, "acknowledged_at", None)
        return f"acknowledged by {alert.acknowledged_by}" + (f" at {format_time(when)} UTC" if when else "")
    return str(alert.state)


def style_alert_table(table: pd.DataFrame) -> Any:
    """The alert table with each priority cell in its priority colour (a pandas Styler)."""
    colours = {
        palette.PRIORITY_LABELS[step]: "rgb({}, {}, {})".format(*palette.PRIORITY_COLOURS[step][:3])
        for step in palette.PRIORITY_LABELS
    }
    return table.style.map(
        lambda label: f"color: {colours.get(label, 'inherit')}; font-weight: 600", subset=[COL_PRIORITY]
    )


COL_WHO = "Who"
COL_WHAT = "What"
COL_TECHNICAL = "Technical detail"
# Who reads the technician's side of an alert's history (ports, network reports, a gateway's error, ids):
# the roles that send collars commands (field technicians, admins); a ranger reads only the sentence.
TECHNICAL_DETAIL_PERMISSION = access_roles.QUEUE_DOWNLINKS


def alert_history_table(events: Iterable[Any], technical: bool = False) -> pd.DataFrame:
    """An alert's history (`AlertEventView`), oldest first: time (UTC), who, what in a ranger's words
    (`history_step`), and for a technician's role (`technical`, TECHNICAL_DETAIL_PERMISSION) the
    technical detail beside it (`history_technical`)."""
    columns = [COL_TIME, COL_WHO, COL_WHAT] + ([COL_TECHNICAL] if technical else [])
    rows = []
    for e in sorted(events, key=lambda e: e.at):
        row = {COL_TIME: format_time(e.at), COL_WHO: e.actor, COL_WHAT: history_step(e.action, e.detail or {}, e.actor)}
        if technical:
            row[COL_TECHNICAL] = history_technical(e.action, e.detail or {})
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def history_step(action: str, detail: Mapping[str, Any], actor: str = "") -> str:
    """One step of an alert's history as a short sentence a ranger reads on her phone at night
    (HISTORY_WORDINGS, one per step the bridge records, `alerts.ACTIONS`), never the technician's detail
    (`history_technical`); a step this dashboard has no wording for reads as its name, not an error.
    Until 6 December the history showed each step's name ("ack unconfirmed", "notification queued · sms")."""
    wording = HISTORY_WORDINGS.get(action)
    if wording is None:
        log.warning("alert history step without a wording action=%s", action, extra={"action": action})
        return f"{str(action).replace('_', ' ').strip().capitalize() or 'A step'} (no description yet)."
    return wording(actor, detail)


def history_technical(action: str, detail: Mapping[str, Any]) -> str:
    """The technician's side of one step of an alert's history: the downlink's reason (`technical`, or
    the whole `reason` of a step stored before 6 December), a notification's last error, then the
    ids and states it names; '' when it has none."""
    parts = [str(detail[key]) for key in ("technical", "failed_with") if detail.get(key)]
    if not parts and _legacy_ack_reason(action, detail):
        parts.append(str(detail["reason"]))
    parts += [f"{label} {detail[key]}" for key, label in TECHNICAL_FIELDS if detail.get(key) not in (None, "")]
    return "; ".join(parts)


# The detail of a step a technician reads after its reason (`history_technical`), with its label.
TECHNICAL_FIELDS = (("downlink_id", "downlink"), ("resent_as", "sent again as downlink"), ("seq", "seq"),
                    ("result", "collar's ack result"), ("network_state", "network state"),
                    ("notification_id", "notification"), ("tries", "tries this round"), ("tries_total", "tries in all"))

# Until 6 December an `ack_unconfirmed` step's reason was the technician's ("unconfirmed: no port-31 ack
# from the collar in 3 uplinks since it was pushed at ...; pushed again as downlink 12").
LEGACY_ACK_REASON_PREFIX = "unconfirmed: "
_LEGACY_HEARD = re.compile(r"in (\d+) uplinks? since")


def _legacy_ack_reason(action: str, detail: Mapping[str, Any]) -> bool:
    """True for an ack step stored before 6 December, its reason in the technician's words."""
    return action in ACK_STEPS and str(detail.get("reason") or "").startswith(LEGACY_ACK_REASON_PREFIX)


def _by(actor: str) -> str:
    """Who took a step, for a sentence: Tembo itself, or the person's login."""
    return "Tembo" if actor in (SYSTEM_ACTOR, "") else actor


def _ack_step(fallback: str) -> Callable[[str, Mapping[str, Any]], str]:
    """The wording of an ack step: the ranger's words the bridge stored as its reason, else `fallback`."""
    def wording(actor: str, detail: Mapping[str, Any]) -> str:
        reason = detail.get("reason")
        return str(reason) if reason and not str(reason).startswith(LEGACY_ACK_REASON_PREFIX) else fallback
    return wording


def _ack_unconfirmed(actor: str, detail: Mapping[str, Any]) -> str:
    reason = str(detail.get("reason") or "")
    if reason and not reason.startswith(LEGACY_ACK_REASON_PREFIX):
        return reason
    heard = _LEGACY_HEARD.search(reason)  # a step stored before 6 December: its words made again
    resent = detail.get("resent_as") is not None or "pushed again" in reason
    return downlinks.ranger_unconfirmed(int(heard.group(1)) if heard else None, None if resent else "")


def _message(detail: Mapping[str, Any]) -> str:
    """A notification as a ranger names it: 'SMS to +254700000001 (duty-sms)'; without whom it went to
    for a role that may not see it (`privacy`)."""
    channel, route, to = detail.get("channel"), detail.get("route"), detail.get("to")
    words = CHANNEL_WORDS.get(str(channel), f"Message by {channel}" if channel else "Message")
    if to and to != channel:
        words += f" to {to}"
    if route and route != channel:
        words += f" ({route})"
    return words


CHANNEL_WORDS = {"sms": "SMS", "email": "Email", "webhook": "Webhook message", "earthranger": "EarthRanger event"}
VERDICT_WORDS = {"true": "a true alert", "false_alarm": "a false alarm", "unknown": "outcome unknown"}


def _raised(actor: str, detail: Mapping[str, Any]) -> str:
    return "The collar raised the alert." if detail.get("source") == SOURCE_COLLAR else "Tembo raised the alert."


def _repeated(actor: str, detail: Mapping[str, Any]) -> str:
    server = detail.get("source") == SOURCE_SERVER or actor == SYSTEM_ACTOR
    words = "Tembo saw it again in the collar's positions" if server else "The collar reported it again"
    if detail.get("while") == STATE_RESOLVED:
        words += " after the alert was resolved"
    if detail.get("reentry"):
        words += "; a new visit, to be confirmed by the collar's positions"
    return words + "."


def _corroborated(actor: str, detail: Mapping[str, Any]) -> str:
    confidence = detail.get("confidence")
    words = "Tembo weighed the positions, behaviour, herd and time of night"
    if isinstance(confidence, int | float):
        words += f": {confidence:.0%} likely to be real"
    if detail.get("held"):
        return words + "; held back from waking anyone until more confirms it."
    return words + "."


def _track_checked(actor: str, detail: Mapping[str, Any]) -> str:
    verdict = detail.get("verdict")
    if verdict == rules_crossings.CONFIRMED:
        return "The collar's positions confirm the fence crossing."
    if verdict == rules_crossings.LONE_FIX or detail.get("held"):
        return "Only one of the collar's positions is past the fence: held at info priority until more confirm it."
    return f"Checked against the collar's positions: {str(verdict or 'no verdict').replace('_', ' ')}."


def _crossing_refined(actor: str, detail: Mapping[str, Any]) -> str:
    fence = f" of {detail['fence']}" if detail.get("fence") else ""
    was, now = format_time_utc(time_of(detail.get("from"))), format_time_utc(time_of(detail.get("to")))
    if not (was and now):
        return f"The time of the fence crossing{fence} was corrected by later positions."
    return f"The time of the fence crossing{fence} was corrected by later positions: {now}, not {was}."


def _escalated(actor: str, detail: Mapping[str, Any]) -> str:
    minutes = detail.get("unacknowledged_min")
    words = f"Nobody acknowledged it in {minutes:g} minutes" if isinstance(minutes, int | float) else (
        "Nobody acknowledged it in time")
    if detail.get("top_of_scale"):
        return words + ": escalated, already at the highest priority."
    if not isinstance(detail.get("priority_to"), int):
        return words + ": escalated."
    return words + f": raised to {palette.priority_label(int(detail['priority_to']))} priority."


def _resolved(actor: str, detail: Mapping[str, Any]) -> str:
    note = str(detail.get("note") or "")
    if actor == SYSTEM_ACTOR:
        return f"Tembo closed it: {note}." if note else "Tembo closed it."
    verdict = VERDICT_WORDS.get(str(detail.get("verdict")), str(detail.get("verdict") or "").replace("_", " "))
    words = f"Resolved by {_by(actor)}" + (f": {verdict}" if verdict else "")
    return words + (f' ("{note}").' if note else ".")


def _auto_resolved(actor: str, detail: Mapping[str, Any]) -> str:
    """'Tembo closed it, the condition cleared at 2026-11-25 08:40 UTC: back inside the fence.' The time
    is the step's `cleared_at`, said as every time of the dashboard is (`format_time_utc`)."""
    when = format_time_utc(time_of(detail.get("cleared_at")))
    cleared = "Tembo closed it, the condition cleared" + (f" at {when}" if when else "")
    reason = _cleared_words(str(detail.get("reason") or ""))
    return f"{cleared}: {reason}." if reason else f"{cleared}."


# Until 6 December a fence's or a stillness's reason ended with the time it cleared, raw ("moving again at
# 2026-11-25T08:40:00+00:00"): the same moment as the step's `cleared_at`, which the sentence now says.
_LEGACY_CLEARED_AT = re.compile(r" at (\S+)$")


def _cleared_words(reason: str) -> str:
    """What cleared, in the bridge's words, without the raw time a step stored before 6 December ends with."""
    legacy = _LEGACY_CLEARED_AT.search(reason)
    return reason[: legacy.start()] if legacy and time_of(legacy.group(1)) is not None else reason


def _assigned(actor: str, detail: Mapping[str, Any]) -> str:
    to = detail.get("to")
    return f"Assigned to {to} by {_by(actor)}." if to else f"Assignment taken back by {_by(actor)}."


def _withdrawn(actor: str, detail: Mapping[str, Any]) -> str:
    reason = detail.get("reason")
    return f"{_message(detail)} not sent" + (f": {reason}." if reason else ".")


def _collar_confirmed(actor: str, detail: Mapping[str, Any]) -> str:
    result = detail.get("result")
    if result in (None, "", "ok"):
        return "The collar confirmed it heard that the alert arrived."
    return f"The collar heard that the alert arrived but answered: {str(result).replace('_', ' ')}."


# One short sentence for every step the bridge records in an alert's history (`alerts.ACTIONS`; a test
# fails when one has none): what a ranger reads in the "What" column, from the step's actor and detail.
HISTORY_WORDINGS: dict[str, Callable[[str, Mapping[str, Any]], str]] = {
    alert_steps.ACTION_RAISED: _raised,
    alert_steps.ACTION_REPEATED: _repeated,
    alert_steps.ACTION_CORROBORATED: _corroborated,
    alert_steps.ACTION_TRACK_CHECKED: _track_checked,
    alert_steps.ACTION_CROSSING_REFINED: _crossing_refined,
    alert_steps.ACTION_ESCALATED: _escalated,
    alert_steps.ACTION_ACKNOWLEDGED: lambda actor, detail: f"Acknowledged by {_by(actor)}.",
    alert_steps.ACTION_ASSIGNED: _assigned,
    alert_steps.ACTION_RESOLVED: _resolved,
    alert_steps.ACTION_AUTO_RESOLVED: _auto_resolved,
    alert_steps.ACTION_NOTIFICATION_QUEUED: lambda actor, detail: f"{_message(detail)} waiting to go out.",
    alert_steps.ACTION_NOTIFICATION_SENT: lambda actor, detail: f"{_message(detail)} sent.",
    alert_steps.ACTION_NOTIFICATION_WITHDRAWN: _withdrawn,
    alert_steps.ACTION_NOTIFICATION_REQUEUED: lambda actor, detail: f"{_message(detail)} failed, will retry "
                                                               f"(asked by {_by(actor)}).",
    alert_steps.ACTION_ACK_QUEUED: lambda actor, detail: "Tembo will tell the collar that its alert arrived.",
    alert_steps.ACTION_ACK_SENT: lambda actor, detail: "Tembo's message that the alert arrived went out to the collar.",
    alert_steps.ACTION_ACK_UNCONFIRMED: _ack_unconfirmed,
    alert_steps.ACTION_ACK_DELIVERED: _ack_step(downlinks.RANGER_DELIVERED_LATE),
    alert_steps.ACTION_ACK_REQUEUED: _ack_step(downlinks.RANGER_REQUEUED),
    alert_steps.ACTION_COLLAR_CONFIRMED_ACK: _collar_confirmed,
}
# The ack steps whose reason the bridge stores in a ranger's words (`downlinks._tell_alert`).
ACK_STEPS = frozenset({alert_steps.ACTION_ACK_UNCONFIRMED, alert_steps.ACTION_ACK_DELIVERED, alert_steps.ACTION_ACK_REQUEUED})


def precision_table(verdicts: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per alert type, from rangers' verdicts (`Bridge.alert_verdicts()`): counts and precision,
    true / (true + false alarm), as a percentage; worst precision first."""
    rows = [
        {
            COL_TYPE: alert_type_label(alert_type),
            "True": int(entry.get("true", 0)),
            "False alarm": int(entry.get("false_alarm", 0)),
            "Unknown": int(entry.get("unknown", 0)),
            "Precision (%)": None
            if entry.get("precision") is None
            else round(100 * float(entry["precision"]), 1),
        }
        for alert_type, entry in verdicts.items()
    ]
    table = pd.DataFrame(rows, columns=[COL_TYPE, "True", "False alarm", "Unknown", "Precision (%)"])
    return table.sort_values(["Precision (%)", COL_TYPE], na_position="last").reset_index(drop=True)


def priority_counts(alerts: Iterable[Any]) -> dict[int, int]:
    """How many alerts at each EarthRanger step (300, 200, 100, 0)."""
    counts = dict.fromkeys(palette.PRIORITY_STEPS, 0)
    for alert in alerts:
        counts[palette.priority_step(alert.priority)] += 1
    return counts


VERDICT_LABELS = {value: label for label, value in VERDICTS.items()}


def resolved_table(alerts: Iterable[Any]) -> pd.DataFrame:
    """Resolved alerts, most recently resolved first: what, who, when, the verdict and the note."""
    epoch = datetime.min.replace(tzinfo=UTC)
    rows = [
        {
            COL_TYPE: alert_type_label(a.alert_type),
            COL_ANIMAL: a.name or a.device_id,
            "Raised (UTC)": format_time(a.time),
            "Resolved (UTC)": format_time(a.resolved_at),
            "By": a.resolved_by or "",
            "Verdict": VERDICT_LABELS.get(a.verdict or "", a.verdict or ""),
            "Note": getattr(a, "note", None) or "",
        }
        for a in sorted(alerts, key=lambda a: a.resolved_at or epoch, reverse=True)
    ]
    columns = [COL_TYPE, COL_ANIMAL, "Raised (UTC)", "Resolved (UTC)", "By", "Verdict", "Note"]
    return pd.DataFrame(rows, columns=columns)


def can_acknowledge(alert: Any) -> bool:
    """Only a new alert can be acknowledged."""
    return alert.state == "new"


def can_resolve(alert: Any) -> bool:
    """A new or acknowledged alert can be resolved with a verdict."""
    return alert.state in ("new", "acknowledged")


# ---------------------------------------------------------------- animals


def animal_table(
    animals: Iterable[Any], now: datetime, low_battery_mv: int = LOW_BATTERY_MV, show_positions: bool = True
) -> pd.DataFrame:
    """Per animal: last seen, battery, behaviour, firmware and model versions (and position if allowed)."""
    rows = [
        {
            COL_NAME: a.name,
            COL_SPECIES: a.species,
            COL_COLLAR: a.device_id or "",
            COL_LAST_SEEN: format_time(a.last_seen),
            COL_AGE: format_age(a.last_seen, now),
            COL_BATTERY: format_battery(a.battery_mv, low_battery_mv),
            COL_BEHAVIOUR: a.behaviour or "",
            COL_FIRMWARE: a.fw_version or "",
            COL_MODEL: "" if a.model_version is None else str(a.model_version),
            COL_POSITION: format_position(a.lat, a.lon) if show_positions else "withheld",
        }
        for a in sorted(animals, key=lambda a: (a.name or "", a.device_id or ""))
    ]
    columns = [
        COL_NAME,
        COL_SPECIES,
        COL_COLLAR,
        COL_LAST_SEEN,
        COL_AGE,
        COL_BATTERY,
        COL_BEHAVIOUR,
        COL_FIRMWARE,
        COL_MODEL,
        COL_POSITION,
    ]
    return pd.DataFrame(rows, columns=columns)


def fleet_summary(
    animals: Sequence[Any], alerts: Sequence[Any], now: datetime, low_battery_mv: int = LOW_BATTERY_MV
) -> dict[str, int]:
    """Counts for the header metrics: animals, heard within SILENT_AFTER (before `now`, or before the
    moment a role with a delay sees an animal at, its `as_of`), low battery, open alerts, high."""
    return {
        "animals": len(animals),
        "reporting": sum(
            1 for a in animals
            if a.last_seen is not None and (a.as_of or now) - a.last_seen <= SILENT_AFTER
        ),
        "low_battery": sum(1 for a in animals if a.battery_mv is not None and a.battery_mv < low_battery_mv),
        "open_alerts": len(alerts),
        "high_priority": sum(1 for a in alerts if a.priority >= 300),
    }


def activity_frame(summaries: Iterable[Any]) -> pd.DataFrame:
    """Activity summaries (`ActivityView`) as a frame indexed by interval start (UTC): one column
    per behaviour (percent of the interval) plus `vedba_mean_mg` and `vedba_max_mg`."""
    rows = []
    for s in summaries:
        row: dict[str, Any] = {"time": s.time, VEDBA_MEAN: s.vedba_mean_mg, VEDBA_MAX: s.vedba_max_mg}
        for behaviour, share_pct in dict(s.shares_pct).items():
            row[behaviour] = float(share_pct)
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=[VEDBA_MEAN, VEDBA_MAX])
    frame = pd.DataFrame(rows).set_index("time").sort_index()
    behaviours = [c for c in frame.columns if c not in (VEDBA_MEAN, VEDBA_MAX)]
    frame[behaviours] = frame[behaviours].fillna(0.0)
    return frame


def behaviour_shares(frame: pd.DataFrame) -> pd.Series:
    """Percent of the whole period spent in each behaviour, most common first, from `activity_frame`."""
    behaviours = [c for c in frame.columns if c not in (VEDBA_MEAN, VEDBA_MAX)]
    if frame.empty or not behaviours:
        return pd.Series(dtype=float)
    return frame[behaviours].mean().sort_values(ascending=False)


# ---------------------------------------------------------------- the table beside the map


def live_table(
    points: Sequence[Mapping[str, Any]],
    animals: Iterable[Any],
    now: datetime,
    low_battery_mv: int = LOW_BATTERY_MV,
) -> pd.DataFrame:
    """The table beside the map: each mapped animal, behaviour, last seen and battery, by name."""
    by_id = {str(a.animal_id): a for a in animals}
    rows = []
    for p in points:
        animal = by_id.get(p["animal_id"])
        rows.append(
            {
                COL_NAME: p["name"],
                COL_BEHAVIOUR: p["behaviour"],
                COL_HEARD: format_age(animal.last_seen if animal else None, now),
                COL_BATTERY: format_battery(animal.battery_mv if animal else None, low_battery_mv),
            }
        )
    return pd.DataFrame(rows, columns=[COL_NAME, COL_BEHAVIOUR, COL_HEARD, COL_BATTERY])


def animal_alert_table(alerts: Iterable[Any]) -> pd.DataFrame:
    """One animal's alerts, newest first: type, priority, raised, state, verdict and note."""
    epoch = datetime.min.replace(tzinfo=UTC)
    rows = [
        {
            COL_TYPE: alert_type_label(a.alert_type),
            COL_PRIORITY: palette.priority_label(a.priority),
            COL_TIME: format_time(a.time),
            COL_STATE: a.state,
            "Verdict": VERDICT_LABELS.get(a.verdict or "", a.verdict or ""),
            "Note": getattr(a, "note", None) or "",
        }
        for a in sorted(alerts, key=lambda a: a.time or epoch, reverse=True)
    ]
    return pd.DataFrame(rows, columns=[COL_TYPE, COL_PRIORITY, COL_TIME, COL_STATE, "Verdict", "Note"])


# ---------------------------------------------------------------- fleet health

COL_UPLINK_DUE = "Uplink due"
COL_LOW_ON = "Low on"
COL_EMPTY_ON = "Empty on"


# What the fleet table names a collar in the herd register's stock by (it is on no animal).
IN_STOCK = "in stock"


def fleet_health_table(collars: Iterable[Any], now: datetime, low_battery_mv: int = LOW_BATTERY_MV) -> pd.DataFrame:
    """Per collar (`CollarHealthView`): battery and its trend, last uplink against the collar's own
    interval, radio, lost uplinks, versions; the most urgent first (overdue, then lowest battery).
    A collar seen as of a role's delay (`as_of`) is due or overdue by then, not by `now`."""
    rows = []
    for c in collars:
        then = c.as_of or now
        silent_s = (then - c.last_seen).total_seconds() if c.last_seen is not None else None
        if c.in_stock:  # in the workshop: no uplink is due from it, and no silence of it is overdue
            due = IN_STOCK
        elif silent_s is None or silent_s > c.offline_after_s:
            due = "overdue"
        elif silent_s > c.expected_interval_s:
            due = "late"
        else:
            due = "on time"
        rows.append(
            {
                COL_NAME: IN_STOCK if c.in_stock else c.name or "",
                COL_COLLAR: c.device_id,
                COL_BATTERY: format_battery(c.battery_mv, low_battery_mv),
                "Trend (mV/day)": c.battery_slope_mv_per_day,
                COL_LOW_ON: (c.battery_low_on or "")[:10],
                COL_EMPTY_ON: (c.battery_empty_on or "")[:10],
                COL_HEARD: format_age(c.last_seen, now),
                "Interval": f"{c.expected_interval_s / 3600:g} h",
                COL_UPLINK_DUE: due,
                "RSSI (dBm)": c.last_rssi_dbm,
                "SNR (dB)": c.last_snr_db,
                "Gateway": c.last_gateway or "",
                "Lost uplinks (%)": c.frame_loss_pct,
                COL_FIRMWARE: c.fw_version or "",
                COL_MODEL: "" if c.model_version is None else str(c.model_version),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    urgency = table[COL_UPLINK_DUE].map({"overdue": 0, "late": 1, "on time": 2, IN_STOCK: 3})
    battery = pd.Series([c.battery_mv if c.battery_mv is not None else 10**6 for c in collars])
    order = pd.DataFrame({"u": urgency, "b": battery}).sort_values(["u", "b"]).index
    return table.loc[order].reset_index(drop=True)


# How the fleet table's measured numbers read (a Styler shows six decimals otherwise: "-116.000000").
FLEET_NUMBER_FORMATS = {"Trend (mV/day)": "{:+.0f}", "RSSI (dBm)": "{:.0f}", "SNR (dB)": "{:.1f}",
                        "Lost uplinks (%)": "{:.1f}"}


def style_fleet_table(table: pd.DataFrame) -> Any:
    """The fleet table with overdue / late uplinks in the priority colours and its numbers as a
    technician reads them (a dash where nothing is known yet, such as a trend before enough readings)."""
    colours = {"overdue": palette.PRIORITY_COLOURS[300], "late": palette.PRIORITY_COLOURS[200]}
    css = {label: "color: rgb({}, {}, {}); font-weight: 600".format(*rgb[:3]) for label, rgb in colours.items()}
    formats = {column: text for column, text in FLEET_NUMBER_FORMATS.items() if column in table.columns}
    return (table.style.map(lambda value: css.get(value, ""), subset=[COL_UPLINK_DUE])
            .format(formats, na_rep="—"))
