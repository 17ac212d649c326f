"""Live map page: every collared animal's last position by state, recent tracks and open alerts.

The map comes first on every screen (a phone too), fitted to the reserve. Works without
internet: the base layer is the reserve's own geometry. Only the live panel refreshes itself (a
Streamlit fragment); the sidebar controls stay put. Clicking an animal opens its page.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import streamlit as st

from ranger_dashboard import (
    as_of,
    config,
    data,
    herd,
    login,
    map_layers,
    markers,
    name_routes,
    navigation,
    palette,
    roles,
    selection,
    track_routes,
    views,
)

logger = logging.getLogger("ranger_dashboard.live_map")

TRACK_HOURS = track_routes.TRACK_HOURS
DEFAULT_TRACK_HOURS = track_routes.DEFAULT_TRACK_HOURS
NO_FOCUS = "all"
# An animal clicked on the map, handed to the next full run, which opens its page.
OPEN_FROM_MAP_KEY = "_open_from_map"
PICKS_KEY = "_map_picks"
# The map's size: fitted for a phone when the browser says it is one.
PHONE_MAP_PX = (360, 440)
DESK_MAP_PX = (640, 620)
# A herd up to this size has its table shown under the map on a desk; a larger one on request.
TABLE_SHOWN_UP_TO = 50
LEGEND = (
    "**Animal** "
    + " · ".join(
        f":{colour}[●] {palette.STATE_LABELS[state]}"
        for state, colour in zip(palette.ANIMAL_STATES, ("green", "red", "gray", "violet"), strict=True)
    )
    + "  \n**Open alert ring** :red[◯] high · :orange[◯] medium · :green[◯] low · :gray[◯] info  \n"
    "**Reserve** :gray[▭] boundary · :orange[■] farmland · :blue[■] water · :gray[━] road · :blue[●] gateway"
)

options = config.options()
url = options.database_url
viewer = roles.current_viewer()
role = roles.role(viewer.role)

opened = st.session_state.pop(OPEN_FROM_MAP_KEY, None)
if opened is not None:
    st.switch_page(navigation.animals_page(), query_params={"animal": opened})

# While the store is busy (a backup holds its write lock) the map shows the herd last read, marked stale.
# The store's change counter, read once for this run: the panel's first draw uses it too (`live_panel`).
changed_this_run = [data.changes(url)]
animal_list = sorted(data.animals(url, viewer, when_busy=data.LAST_READ, changed=changed_this_run[0]),
                     key=lambda a: (a.name or "", a.device_id or ""))
names = {str(a.animal_id): a.name or a.device_id for a in animal_list}
focus_options = [NO_FOCUS, *names]

with st.sidebar:
    selection.restore("focus", "animal", focus_options, default=NO_FOCUS)
    st.selectbox(
        "Focus on animal",
        focus_options,
        key="focus",
        format_func=lambda option: "All animals" if option == NO_FOCUS else names[option],
    )
    selection.restore("track_hours", "hours", TRACK_HOURS, default=DEFAULT_TRACK_HOURS)
    st.selectbox("Track length", TRACK_HOURS, key="track_hours", format_func=lambda h: f"{h} h before")
    online = st.toggle(
        "Online base map",
        key="online_tiles",
        value=False,
        help="Draws CARTO's dark tiles under the reserve. Needs internet; off by default.",
    )
selection.mirror("animal", None if st.session_state["focus"] == NO_FOCUS else st.session_state["focus"])
selection.mirror("hours", st.session_state["track_hours"])

tiles = False
if online:
    if data.reachable(map_layers.ONLINE_TILES_PROBE):
        tiles = True
    else:
        st.sidebar.warning(
            "No internet here: the online base map's tiles cannot be reached, so the map shows the "
            "reserve's own geometry only."
        )
phone = "Mobile" in (st.context.headers.get("User-Agent") or "")
moment = as_of.control(data.now(options, viewer, when_busy=data.LAST_READ))


@st.fragment(run_every=options.refresh_s)
def live_panel() -> None:
    """The map (first), the metrics and the table, redrawn every `options.refresh_s` seconds."""
    login.require_live_sign_in(options)  # a refresh runs only this panel, not app.py's gate
    moment = as_of.current()
    focus = st.session_state.get("focus", NO_FOCUS)
    hours = int(st.session_state.get("track_hours", DEFAULT_TRACK_HOURS))
    # Drawn within the page's run: the counter it read; a refresh of the panel alone reads it anew.
    changed = changed_this_run.pop() if changed_this_run else data.changes(url)
    # The bridge hands out only what the viewer's role may see (coarse and late for some roles),
    # at the chosen moment: positions then, alerts open then, tracks ending then. While the store is
    # busy, what this viewer was shown last, as its role saw it then (`data.LAST_READ`).
    data.start_stale_watch()
    animals = data.animals_at(url, viewer, changed, when_busy=data.LAST_READ)
    alerts = data.alerts_at(url, viewer, moment, changed, when_busy=data.LAST_READ)
    stale_since = data.stale_read_at()
    if moment is None and stale_since is None and data.alert_count_changed(len(alerts)):
        st.rerun(scope="app")  # the navigation's alert count is stale: redraw it with the map
    positions = data.positions_at(url, viewer, moment, changed, when_busy=data.LAST_READ)
    stale_since = data.stale_read_at()
    # The herd at the moment shown, composed as the name tiles compose it (`herd.compose`).
    shown = herd.compose(animals, alerts, positions, moment, options.clock)
    now, points = shown.now, shown.points
    latest_fix = max((p.time for p in positions), default=None)
    until = moment or latest_fix
    # The tracks are fetched by the map after its first frame (`track_routes`), for this window.
    tracks_url = None
    if until is not None and stale_since is None:
        tracks_url = track_routes.tracks_url(until - timedelta(hours=hours), until, changed)
        # The map asks for its tracks and names as it draws its first frame: have them read now.
        track_routes.warm(data.bridge(url), viewer, tracks_url, changed)
    if points and stale_since is None:
        name_routes.warm_herd(data.bridge(url), viewer, moment, options.clock, changed)
    rings = map_layers.alert_points(alerts, now, positions) if role.exact_positions else []

    low_battery_mv = data.low_battery_mv(url)
    width_px, height_px = PHONE_MAP_PX if phone else DESK_MAP_PX
    deck = map_layers.build_deck(
        data.geography(url),
        points,
        [],
        rings,
        focus_animal_id=None if focus == NO_FOCUS else focus,
        online_tiles=tiles,
        fit_px=(width_px, height_px),
        as_of=moment,
        tracks_url=tracks_url,
        names=stale_since is None,  # the names and tracks routes need the store: back with it
    )
    if stale_since is not None:
        st.warning(views.not_live_message("The map shows the positions and alerts",
                                          "names and tracks return with the store", stale_since,
                                          datetime.now(UTC), options.refresh_s),
                   icon=":material/hourglass_top:")
    as_of.banner(moment, "The map shows the reserve")
    map_column, table_column = st.columns([5, 2])
    with map_column:
        state = st.pydeck_chart(
            deck,
            height=height_px,
            on_select="rerun",
            selection_mode="single-object",
            # A new key per focus and per click starts each map with no selection left over.
            key=f"live-map-{focus}-{st.session_state.get(PICKS_KEY, 0)}",
        )
        markers.ready(markers.MAP_READY_ID, animals=len(points), alerts=len(rings),
                      stale="live" if stale_since is None else stale_since.isoformat())
        unplaced = views.unplaced_message(animals, points, role.exact_positions, moment)
        if unplaced:  # a collar with no fix yet: counted beside the map, so named under it
            st.caption(unplaced)
    picked = map_layers.selected_animal_id(state.selection.objects) if state is not None else None
    if picked is not None:
        st.session_state[OPEN_FROM_MAP_KEY] = picked
        st.session_state[PICKS_KEY] = st.session_state.get(PICKS_KEY, 0) + 1
        st.rerun(scope="app")

    summary = views.fleet_summary(animals, alerts, now, low_battery_mv)
    with table_column:
        columns = st.columns(2)
        columns[0].metric("Animals", summary["animals"])
        columns[1].metric("Open alerts", summary["open_alerts"])
        columns[0].metric(
            "Heard in the last 6 h" if role.exact_positions else "Heard in the 6 h before your view's delay",
            summary["reporting"],
        )
        columns[1].metric("High priority", summary["high_priority"])
        st.markdown(LEGEND)
    # The table is built only when shown: for a large herd (or on a phone) it waits for the ranger to
    # ask, so the map does not wait for hundreds of rows the browser would lay out unseen.
    if st.toggle(
        f"Table of the animals on the map ({len(points)})",
        value=not phone and len(points) <= TABLE_SHOWN_UP_TO,
        key="show_live_table",
    ):
        st.dataframe(views.live_table(points, animals, now, low_battery_mv), hide_index=True)
    clock = "newest report" if options.clock == "data" else "control-room clock"
    shown = f"As of {views.format_time(moment)} UTC (not live)" if moment else f"Now {views.format_time(now)} UTC ({clock})"
    st.caption(
        f"{shown} · tracks: {hours} h up to "
        + ("the moment shown" if moment else "the latest fix")
        + (f" (last fix {views.format_time(latest_fix)} UTC)" if latest_fix else "")
        + f" · {role.describe_positions()} · click an animal to open its page"
    )
    # One audit line when a session starts watching, and whenever who or what it watches changes.
    watching = (viewer, focus, moment)
    if st.session_state.get("_watching") != watching:
        st.session_state["_watching"] = watching
        logger.info(
            "live positions viewed",
            extra={"viewer": viewer.username, "animals": len(points), "focus": focus, "as_of": str(moment or "live")},
        )


if not animal_list:
    st.info("No collared animals yet. Register collars with the bridge and they appear here.")
live_panel()
