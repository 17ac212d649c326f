"""The dashboard's only door to Tembo's data: `lora_bridge.service`, cached the Streamlit way.

One `Bridge` per database URL for the whole server (`st.cache_resource`); read queries cached for
a few seconds (`st.cache_data(ttl=...)`), keyed by the viewer, so a viewer never gets an answer
made for another role. A cached answer holding positions is kept with the reads it was made from
and logged in the bridge's audit log each time it is handed to its viewer (`kept_answers`), not
only when it was read. Writes (acknowledge, resolve, assign) go straight to the bridge in the
viewer's name and then drop the cached alerts.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import httpx
import streamlit as st

from lora_bridge.access import Viewer
from lora_bridge.errors import driver_said, is_transient_store_error
from lora_bridge.service import Bridge, open_bridge
from lora_bridge.settings import masked_database_url
from ranger_dashboard.config import DashboardOptions
from ranger_dashboard.kept_answers import Kept, hand_out, keep

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Seconds a cached query answer is reused; the live panel refreshes a little slower than this.
QUERY_TTL_S = 2
# Fixes per animal on the live map: a longer track is thinned evenly by the bridge (newest kept).
TRACK_MAX_POINTS = 48
# Session key holding the open-alert count the navigation shows, so the live panels can tell
# when it went stale and redraw the whole page (sidebar and map then agree).
SHOWN_ALERT_COUNT_KEY = "_open_alerts_shown"


def safe_url(url: str) -> str:
    """`url` without its password, for messages and logs (masked as the bridge masks it in its settings)."""
    return masked_database_url(url)


@st.cache_resource(show_spinner=False)
def bridge(url: str) -> Bridge:
    """The bridge service for `url`, opened once per server process."""
    logger.info("dashboard opens the bridge", extra={"database_url": safe_url(url)})
    return open_bridge(url)


# A read that finds the store busy (`audited`, when_busy) ends the run with STORE_BUSY_MESSAGE.
STOP = object()
# What a ranger reads instead of a traceback while the store is busy: another program holds SQLite's
# write lock (a backup, `tembo bridge compact`), or the store is read-only, full or does not answer.
STORE_BUSY_MESSAGE = ("The Tembo store is busy (another program is writing to it, or it does not answer), so "
                      "what needs it is not shown now; the page tries again by itself. The alert count "
                      "beside Alerts is the last one read.")


@dataclass(frozen=True)
class ShownOn:
    """Given as `when_busy=`: while the store is busy, the answer last handed to the same viewer for the
    same question on the same page (`LastRead`), its repeat logged in the audit log once the store takes
    writes again. Remembered per page: a viewer is shown again only what that page showed them."""

    page: str


# The live map's; the Alerts and Animals pages have theirs (`LAST_ALERTS_READ`, `LAST_ANIMALS_READ`).
LAST_READ = ShownOn("live map")
LAST_ALERTS_READ = ShownOn("alerts")
LAST_ANIMALS_READ = ShownOn("animals")
# After a read found the store busy, the next reads (of any session) for this long do not wait for
# the store's busy timeout again, each of them: the page shows what it has at once.
BUSY_HOLD_S = 5.0
# Answers remembered for each `ShownOn` page (viewer x question: the map asks 3, the Alerts page 3,
# the Animal page 3 per animal opened; each the newest answer only, a large herd's being a megabyte or
# two; the least recently shown of that page dropped first, its viewer then told the store is busy),
# and views owed to the audit log. Each page keeps its own: until 6 December a ranger opening animal
# after animal pushed the other rangers' live maps out, and during a backup they were told "store busy".
LAST_READS_KEPT = 64
OWED_KEPT = 10_000
# Session key: when the oldest answer this run showed from LAST_READ was read (None: all fresh).
STALE_READ_AT_KEY = "_stale_read_at"


@dataclass(frozen=True)
class LastRead:
    """An answer handed to its viewer (`kept.viewer`) at `read_at` (UTC), with the reads it logged."""

    kept: Kept[Any]
    read_at: datetime


_last_reads: dict[Any, OrderedDict[tuple[Any, ...], LastRead]] = {}  # by page (a question's first part)
_owed: list[tuple[Any, datetime]] = []  # (PositionsRead, when shown again) not logged yet
_busy_until = 0.0
_memory_lock = threading.Lock()


def _remember(key: tuple[Any, ...], kept: Kept[Any]) -> None:
    with _memory_lock:
        shown = _last_reads.setdefault(key[0], OrderedDict())
        shown[key] = LastRead(kept, datetime.now(UTC))
        shown.move_to_end(key)
        while len(shown) > LAST_READS_KEPT:
            shown.popitem(last=False)


def _recall(key: tuple[Any, ...], viewer: Viewer) -> LastRead | None:
    with _memory_lock:
        last = _last_reads.get(key[0], {}).get(key)
    return last if last is not None and last.kept.viewer == viewer else None


def _owe(reads: tuple[Any, ...], at: datetime) -> None:
    """Views of positions shown again while the store took no audit line: logged once it does."""
    with _memory_lock:
        _owed.extend((read, at) for read in reads)
        if len(_owed) > OWED_KEPT:
            dropped = len(_owed) - OWED_KEPT
            del _owed[:dropped]
            logger.warning("dashboard drops %d repeat views owed to the audit log (the store busy for long)", dropped)


def pay_owed_views(bridge_: Bridge) -> None:
    """Log the views shown again from the last read while the store was busy, each at its time; those
    not yet written kept for the next try when the store is busy again (until 6 December the ones
    already written were kept too when a backup began between two moments, and logged twice)."""
    with _memory_lock:
        owed = list(_owed)
        _owed.clear()
    if not owed:
        return
    for at in sorted({at for _, at in owed}):  # each moment its own write: one kept is never owed again
        try:
            bridge_.record_reads([read for read, when in owed if when == at], at=at)
        except Exception as error:
            if not is_transient_store_error(error):
                raise
            with _memory_lock:  # the views of this moment on, in front of any owed meanwhile
                _owed[:0] = [(read, when) for read, when in owed if when >= at]
            return
    logger.info("dashboard logged %d views shown while the store was busy", len(owed))


def _busy_lately() -> bool:
    return time.monotonic() < _busy_until


def _mark_busy() -> None:
    global _busy_until
    _busy_until = time.monotonic() + BUSY_HOLD_S


class _BusyLately(Exception):
    """The store was found busy less than BUSY_HOLD_S ago: do not wait for it again now."""


def start_stale_watch() -> None:
    """Forget which answers of the last run came from LAST_READ (call before a panel's reads)."""
    st.session_state[STALE_READ_AT_KEY] = None


def stale_read_at() -> datetime | None:
    """When the oldest answer this run showed from LAST_READ was read; None when every one was fresh."""
    return st.session_state.get(STALE_READ_AT_KEY)


def _note_stale(read_at: datetime) -> None:
    try:
        shown = st.session_state.get(STALE_READ_AT_KEY)
        st.session_state[STALE_READ_AT_KEY] = read_at if shown is None else min(shown, read_at)
    except Exception:  # outside a Streamlit run (a bare call in a test): nothing to tell
        logger.debug("no session to note a stale answer in")


def audited(ttl: int, max_entries: int | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A read of the bridge taking `url` and `viewer`, cached for `ttl` seconds per viewer and
    arguments and kept with the position reads it made (`kept_answers.keep`); each call hands the
    answer out to its viewer, logging those reads again (`kept_answers.hand_out`). The wrapped
    function's `clear()` drops its cached answers. While the store is busy (its audit line or the read
    refused for a reason that passes) the run ends with STORE_BUSY_MESSAGE, or, given `when_busy=`,
    that value is returned; `when_busy=LAST_READ` (a `ShownOn` page): the answer last handed to this
    viewer for the same arguments (a `changed` argument aside) on that page, its age in
    `stale_read_at()`, when there is one (else STORE_BUSY_MESSAGE).

    Showing a viewer again what it was shown and logged as shown reveals nothing new: the repeat is
    owed to the audit log and written, at its time, by the next read the store takes."""

    def wrap(read: Callable[..., T]) -> Callable[..., T]:
        signature = inspect.signature(read)
        names = list(signature.parameters)
        url_at, viewer_at = names.index("url"), names.index("viewer")

        def kept(*args: Any) -> Kept[T]:  # every argument, positional, in the read's order
            return keep(bridge(args[url_at]), args[viewer_at], lambda: read(*args))

        # Streamlit keys a cache by the function's module, qualified name and source: every
        # `kept` has the same source, so each is named after its read to get a cache of its own.
        kept.__module__ = read.__module__
        kept.__qualname__ = f"{read.__qualname__}.kept"
        cached = st.cache_data(ttl=ttl, show_spinner=False, max_entries=max_entries)(kept)

        @functools.wraps(read)
        def handed(*args: Any, when_busy: Any = STOP, **kwargs: Any) -> T:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            every = bound.args  # one cache entry per question, however it was asked
            bridge_, viewer = bridge(every[url_at]), every[viewer_at]
            # The question without the store's change counter, on its page: what was shown last for it.
            question = (when_busy.page if isinstance(when_busy, ShownOn) else None, read.__qualname__,
                        *(a for name, a in zip(names, every, strict=True) if name != "changed"))
            try:
                if _busy_lately():
                    raise _BusyLately(read.__name__)
                kept = cached(*every)
                value = hand_out(bridge_, kept, viewer)
            except Exception as error:
                if not (isinstance(error, _BusyLately) or is_transient_store_error(error)):
                    raise
                if not isinstance(error, _BusyLately):
                    _mark_busy()
                    # Positions leave only with their audit line, which a busy store cannot take now.
                    logger.warning("dashboard read %s refused: the store is busy (%s: %s)", read.__name__,
                                   type(error).__name__, driver_said(error)[:200],
                                   extra={"database_url": safe_url(every[url_at]), "read": read.__name__})
                if isinstance(when_busy, ShownOn):
                    last = _recall(question, viewer)
                    if last is not None:
                        _owe(last.kept.reads, bridge_.clock())
                        _note_stale(last.read_at)
                        return last.kept.value
                    show_store_busy()
                if when_busy is not STOP:
                    return when_busy
                show_store_busy()
            if isinstance(when_busy, ShownOn):
                _remember(question, kept)
            pay_owed_views(bridge_)
            return value

        handed.clear = cached.clear  # type: ignore[attr-defined]
        return handed

    return wrap


def show_store_busy() -> NoReturn:
    """Tell the ranger the store is busy, in plain words instead of a traceback, and end this run (or this
    refresh of a live panel): what the page drew before stays, the next refresh tries again."""
    st.warning(STORE_BUSY_MESSAGE, icon=":material/hourglass_top:")
    st.stop()


def now(options: DashboardOptions, viewer: Viewer | None = None, when_busy: Any = STOP) -> datetime:
    """The dashboard's 'now': the wall clock, or with clock 'data' the newest report in the store
    (as the session's viewer, `roles.current_viewer()`, when none is given); `herd.moment_shown`
    of a live page. `when_busy` as for `animals`."""
    from ranger_dashboard.herd import moment_shown

    if options.clock == "wall":
        return moment_shown(None, options.clock, ())
    from ranger_dashboard.roles import current_viewer

    herd = animals(options.database_url, viewer or current_viewer(), when_busy=when_busy)
    return moment_shown(None, options.clock, herd or ())


def low_battery_mv(url: str) -> int:
    """The battery level under which the bridge raises low_battery (the dashboard flags the same)."""
    return int(bridge(url).settings.low_battery_mv)


@st.cache_data(ttl=60, show_spinner=False)
def reachable(probe_url: str, timeout_s: float = 2.0) -> bool:
    """True when this machine gets an HTTP answer from `probe_url` (any status) within the timeout."""
    try:
        httpx.head(probe_url, timeout=timeout_s)
    except httpx.HTTPError as error:
        logger.info("not reachable", extra={"url": probe_url, "error": str(error)})
        return False
    return True


def nav_alert_count(url: str, viewer: Viewer) -> int:
    """The open-alert count for the navigation, remembered for `alert_count_changed` (while the store is
    busy, the one remembered last)."""
    alerts = open_alerts(url, viewer, when_busy=None)
    if alerts is None:  # the store is busy: the count shown last, the page then says why
        return int(st.session_state.get(SHOWN_ALERT_COUNT_KEY) or 0)
    count = len(alerts)
    st.session_state[SHOWN_ALERT_COUNT_KEY] = count
    return count


def alert_count_changed(count: int) -> bool:
    """True when `count` open alerts differs from what the navigation shows since the last full run."""
    shown = st.session_state.get(SHOWN_ALERT_COUNT_KEY)
    return shown is not None and shown != count


def animals(url: str, viewer: Viewer, when_busy: Any = STOP, changed: tuple[Any, ...] | None = None) -> list[Any]:
    """Every collared animal with its latest status (`AnimalView`), as viewer may see it: read again
    once the store has changed (`animals_at`), not on every page load (for 500 animals the read
    is a good part of a page's run). `when_busy` as for `audited` reads; changed: the store's change
    counter this page run read already (`changes`), else read here."""
    return animals_at(url, viewer, changes(url) if changed is None else changed, when_busy=when_busy)


@audited(QUERY_TTL_S)
def latest_positions(url: str, viewer: Viewer) -> list[Any]:
    """Each animal's last known position (`PositionView`); logged as viewed each time."""
    return bridge(url).latest_positions(viewer=viewer)


# ---------------------------------------------------------------- the map at a moment
# Read once per change of the store (`Bridge.change_counter`) and viewer, for at most
# MOMENT_TTL_S: every viewer's first read of a state reaches the bridge and its audit log. A
# role with a delay sees more as time passes, never less: an answer kept a minute shows no more
# than the role may see.
MOMENT_TTL_S = 60


def changes(url: str) -> tuple[Any, ...]:
    """The store's change counter: equal values, nothing the pages show has changed. It reads the
    whole (small) animals table: a page run reads it once and hands the value to what it calls."""
    return bridge(url).change_counter()


@audited(MOMENT_TTL_S, max_entries=64)
def positions_at(url: str, viewer: Viewer, as_of: datetime | None, changed: tuple[Any, ...]) -> list[Any]:
    """Each animal's last position at `as_of` (None: its latest), as viewer may see it."""
    return bridge(url).positions_at(as_of, viewer=viewer)


@audited(MOMENT_TTL_S, max_entries=64)
def alerts_at(url: str, viewer: Viewer, as_of: datetime | None, changed: tuple[Any, ...]) -> list[Any]:
    """The alerts open at `as_of` (None: now) as they stood then, as viewer may see them."""
    return bridge(url).alerts_at(as_of, viewer=viewer)


@audited(MOMENT_TTL_S, max_entries=64)
def animals_at(url: str, viewer: Viewer, changed: tuple[Any, ...]) -> list[Any]:
    """Every collared animal with its latest status, as viewer may see it."""
    return bridge(url).animals(viewer=viewer)


@audited(QUERY_TTL_S)
def animal(url: str, animal_id: str, viewer: Viewer) -> Any | None:
    """One animal with its collar's latest state (`AnimalView`) as viewer may see it (for a role
    with a delay, as reported by its cutoff), or None: read alone, not with the herd."""
    return next(iter(bridge(url).animals(viewer=viewer, animal_ids=[animal_id])), None)


@audited(QUERY_TTL_S)
def animal_track(url: str, animal_id: str, since: datetime | None, viewer: Viewer) -> list[Any]:
    """Every fix of one animal since `since`, oldest first (for its page and its exports)."""
    return bridge(url).tracks(since=since, animal_ids=[animal_id], viewer=viewer).get(str(animal_id), [])


@audited(QUERY_TTL_S)
def alerts(
    url: str, viewer: Viewer, states: tuple[str, ...] | None = None, limit: int | None = None
) -> list[Any]:
    """Alerts in `states` (all when None) that viewer may see, highest priority first, then newest first."""
    return bridge(url).alerts(states, limit, viewer=viewer)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def device(url: str, device_id: str | None) -> Any | None:
    """One collar's health (`DeviceView`), or None for no collar: read alone, not with the fleet's."""
    if device_id is None:
        return None
    return next(iter(bridge(url).devices([device_id])), None)


@audited(QUERY_TTL_S)
def open_alerts(url: str, viewer: Viewer) -> list[Any]:
    """Alerts that are new or acknowledged (`AlertView`), as viewer may see them."""
    return bridge(url).open_alerts(viewer=viewer)


@st.cache_data(ttl=300, show_spinner=False)
def geography(url: str) -> dict[str, Any]:
    """The reserve as a GeoJSON FeatureCollection; it changes rarely, so it is cached longer."""
    return bridge(url).geography()


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def activity(
    url: str, animal_id: str, since: datetime | None, viewer: Viewer, until: datetime | None = None
) -> list[Any]:
    """Activity summaries of one animal from `since` (up to `until`), as viewer may see them."""
    return bridge(url).activity(animal_id, since, viewer=viewer, until=until)


@audited(QUERY_TTL_S)
def alert_events(url: str, alert_id: int, viewer: Viewer) -> list[Any]:
    """Who did what to an alert and when, oldest first (`AlertEventView`)."""
    return bridge(url).alert_events(alert_id, viewer=viewer)


@audited(QUERY_TTL_S)
def alerts_awaiting_verdict(url: str, viewer: Viewer) -> list[Any]:
    """Alerts Tembo closed itself (their condition cleared) that no ranger has judged yet, oldest first."""
    return bridge(url).alerts_awaiting_verdict(viewer=viewer)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def alert_verdicts(url: str, viewer: Viewer) -> dict[str, dict[str, Any]]:
    """Per alert type: verdict counts and precision, over the alerts viewer may see as they stood."""
    return bridge(url).alert_verdicts(viewer=viewer)


def forget_alerts() -> None:
    """Drop every cached answer about alerts (after a change a ranger made: shown at once)."""
    for cached in (open_alerts, alerts, alerts_at, alert_events, alerts_awaiting_verdict, alert_verdicts):
        cached.clear()


def acknowledge_alert(url: str, alert_id: Any, viewer: Viewer) -> None:
    """Acknowledge an alert in the signed-in viewer's name and forget the cached alert list."""
    bridge(url).acknowledge_alert(alert_id, viewer)
    logger.info("alert acknowledged", extra={"alert_id": alert_id, "user": viewer.username})
    forget_alerts()


def resolve_alert(url: str, alert_id: Any, viewer: Viewer, verdict: str, note: str | None = None) -> None:
    """Resolve an alert with the signed-in viewer's verdict (and note); forget the cached alert lists."""
    bridge(url).resolve_alert(alert_id, viewer, verdict, (note or "").strip() or None)
    logger.info("alert resolved", extra={"alert_id": alert_id, "user": viewer.username, "verdict": verdict})
    forget_alerts()


def assign_alert(url: str, alert_id: Any, assignee: str, viewer: Viewer) -> None:
    """Hand an alert to `assignee` in the signed-in viewer's name and forget the cached alert lists."""
    bridge(url).assign_alert(alert_id, assignee, viewer)
    logger.info("alert assigned", extra={"alert_id": alert_id, "user": viewer.username, "assignee": assignee})
    forget_alerts()


@audited(QUERY_TTL_S)
def track_between(url: str, animal_id: str, start: datetime, end: datetime, viewer: Viewer) -> list[Any]:
    """One animal's fixes from `start` to `end`, oldest first (an alert's evidence)."""
    return bridge(url).tracks(since=start, until=end, animal_ids=[animal_id], viewer=viewer).get(str(animal_id), [])


@st.cache_data(ttl=30, show_spinner=False)
def fleet_health(url: str, now: datetime, viewer: Viewer) -> list[Any]:
    """Every collar's health (`CollarHealthView`) at `now`, as viewer may see it (for a role with a
    delay, each collar as heard by its animal's cutoff)."""
    return bridge(url).fleet_health(now, viewer=viewer)


@st.cache_data(ttl=60, show_spinner=False)
def battery_trend(url: str, device_id: str) -> dict[str, Any] | None:
    """The collar's battery slope and the dates it reaches low, critical and empty (None: too few readings)."""
    return bridge(url).battery_trend(device_id)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def geofences(url: str) -> list[Any]:
    """Every stored fence (`GeofenceView`), oldest first."""
    return bridge(url).geofences()


def import_geofences(
    url: str, content: bytes, filename: str, kind: str, alert_on: str, replace: bool, name: str | None,
    viewer: Viewer,
) -> list[Any]:
    """Import a fence file through the bridge (which reads and reprojects it) in the viewer's name
    (audited); name the new fences `name` (numbered when the file held several) when given."""
    added = bridge(url).import_geofences(
        content, filename, kind=kind, alert_on=alert_on, replace=replace, actor=viewer
    )
    if name:
        added = [
            bridge(url).rename_geofence(view.geofence_id, name if len(added) == 1 else f"{name} {number}")
            for number, view in enumerate(added, start=1)
        ]
    logger.info(
        "geofences imported", extra={"geofence_file": filename, "fences": len(added), "user": viewer.username}
    )
    geofences.clear()
    return added


def send_fences_to_collars(url: str, geofence_ids: list[int], viewer: Viewer) -> list[Any]:
    """Queue the chosen fences for every collar in the viewer's name, audited (CollarFenceLimits
    when they do not fit)."""
    return bridge(url).send_fences_to_collars(list(geofence_ids), actor=viewer)


@st.cache_data(ttl=60, show_spinner=False)
def model_versions(url: str) -> list[dict[str, Any]]:
    """The activity models the bridge knows, their classes and how many collars run each."""
    return bridge(url).model_versions()


# ---------------------------------------------------------------- the herd register


@st.cache_data(ttl=MOMENT_TTL_S, show_spinner=False)
def herd_register(url: str, viewer: Viewer, changed: tuple[Any, ...]) -> list[Any]:
    """Every animal with its species, sex and the collar it wears since when (`HerdEntryView`), without
    positions: nothing to log as a view of them, so a backup holding the store does not keep the register
    from the page. Read again once the store changed (`changes`) or the register did (`forget_herd`)."""
    return bridge(url).herd_register(viewer=viewer)


@st.cache_data(ttl=MOMENT_TTL_S, show_spinner=False)
def collars_in_stock(url: str, viewer: Viewer, changed: tuple[Any, ...]) -> list[Any]:
    """The collars taken off with none fitted (`CollarInStockView`): when each came off and the animal it
    came off, without positions. Read again as `herd_register` is."""
    return bridge(url).collars_in_stock(viewer=viewer)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def collar_history(url: str, animal_id: str, viewer: Viewer, changed: tuple[Any, ...]) -> list[Any]:
    """The collars an animal wore (`CollarWornView`), oldest first, the one it wears now last; read
    again once the store changed (`changes`)."""
    return bridge(url).collar_history(animal_id, viewer=viewer)


def forget_herd() -> None:
    """Drop every cached answer naming animals and their collars (after a change to the register: a
    sex corrected does not move the store's change counter)."""
    for cached in (animals_at, animal, herd_register, collars_in_stock, collar_history):
        cached.clear()


def rename_animal(url: str, animal_id: str, viewer: Viewer, *, name: str | None = None,
                  species: str | None = None, sex: str | None = None) -> Any:
    """Rename an animal or correct its species or sex (each when given) in the viewer's name (the
    bridge checks the role and the values, and keeps the change in its audit log); its `AnimalView`."""
    view = bridge(url).rename_animal(animal_id, viewer=viewer, name=name, species=species, sex=sex)
    logger.info("animal record changed", extra={"animal_id": animal_id, "user": viewer.username})
    forget_herd()
    return view


def fit_collar(url: str, animal_id: str, collar: str, viewer: Viewer, *, move: bool = False,
               fitted_at: datetime | None = None) -> Any:
    """Fit `collar` (device id or DevEUI) to an animal at `fitted_at` (None: now) in the viewer's name,
    taking it from another animal only with `move`; the animal's `AnimalView` after it."""
    view = bridge(url).fit_collar(animal_id, collar, viewer=viewer, move=move, fitted_at=fitted_at)
    logger.info("collar fitted", extra={"animal_id": animal_id, "device_id": view.device_id, "user": viewer.username})
    forget_herd()
    return view


def take_off_collar(url: str, animal_id: str, viewer: Viewer, *, removed_at: datetime | None = None) -> Any:
    """Take an animal's collar off at `removed_at` (None: now) without fitting another, in the viewer's name;
    the animal's `AnimalView` after it (it wears none)."""
    view = bridge(url).take_off_collar(animal_id, viewer=viewer, removed_at=removed_at)
    logger.info("collar taken off", extra={"animal_id": animal_id, "user": viewer.username})
    forget_herd()
    return view
