"""Live map page: every collared animal's last position, recent tracks and open alerts.

Works without internet: the base layer is the reserve's own geometry. Only the live panel
refreshes itself (a Streamlit fragment); the sidebar controls stay put.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import streamlit as st

from ranger_dashboard import config, data, map_layers, roles, selection, views

logger = logging.getLogger("ranger_dashboard.live_map")

TRACK_HOURS = (6, 12, 24, 48, 72, 168)
DEFAULT_TRACK_HOURS = 24
NO_FOCUS = "all"
# An animal clicked on the map, handed to the next full run (the sidebar is outside the fragment).
FOCUS_FROM_MAP_KEY = "_focus_from_map"
LEGEND = (
    "**Behaviour** :blue[●] rest · :green[●] forage · :orange[●] walk · :red[●] run  \n"
    "**Open alert ring** :red[◯] high · :orange[◯] medium · :green[◯] low  \n"
    "**Reserve** :gray[▭] boundary · :orange[■] farmland · :blue[■] water · :gray[━] road · :blue[●] gateway"
)

options = config.options()
url = options.database_url
role = roles.role(options.role)
animal_list = sorted(data.animals(url), key=lambda a: (a.name or "", a.device_id or ""))
names = {str(a.animal_id): a.name or a.device_id for a in animal_list}

focus_options = [NO_FOCUS, *names]
clicked = st.session_state.pop(FOCUS_FROM_MAP_KEY, None)
if clicked in focus_options:
    st.session_state["focus"] = clicked

with st.sidebar:
    selection.restore("focus", "animal", focus_options, default=NO_FOCUS)
    st.selectbox(
        "Focus on animal",
        focus_options,
        key="focus",
        format_func=lambda option: "All animals" if option == NO_FOCUS else names[option],
    )
    selection.restore("track_hours", "hours", TRACK_HOURS, default=DEFAULT_TRACK_HOURS)
    st.select_slider("Track length (hours)", TRACK_HOURS, key="track_hours")
    st.toggle(
        "Online base map",
        key="online_tiles",
        value=False,
        help="Draws CARTO's dark tiles under the reserve. Needs internet; off by default.",
    )
selection.mirror("animal", None if st.session_state["focus"] == NO_FOCUS else st.session_state["focus"])
selection.mirror("hours", st.session_state["track_hours"])


@st.fragment(run_every=options.refresh_s)
def live_panel() -> None:
    """Metrics, the map and the table beside it, redrawn every `options.refresh_s` seconds."""
    now = data.now(options)
    focus = st.session_state.get("focus", NO_FOCUS)
    hours = int(st.session_state.get("track_hours", DEFAULT_TRACK_HOURS))
    animals = data.animals(url)
    alerts = data.open_alerts(url)
    viewer = f"{role.name}:{selection.ranger_name() or 'anonymous'}"
    if role.exact_positions:
        positions = data.latest_positions(url, viewer)
        latest_fix = max((p.time for p in positions), default=None)
        since = latest_fix - timedelta(hours=hours) if latest_fix is not None else None
        tracks = data.tracks(url, since, viewer)
        rings = map_layers.alert_points(alerts, now, positions)
    else:
        cutoff = (now - role.position_delay).replace(second=0, microsecond=0)
        positions, tracks = roles.withheld_positions(
            data.tracks(url, cutoff - timedelta(hours=hours), viewer), cutoff, role.position_grid_m
        )
        latest_fix = max((p.time for p in positions), default=None)
        rings = []

    low_battery_mv = data.low_battery_mv(url)
    summary = views.fleet_summary(animals, alerts, now, low_battery_mv)
    columns = st.columns(4)
    columns[0].metric("Animals", summary["animals"])
    columns[1].metric("Heard in the last 6 h", summary["reporting"])
    columns[2].metric("Open alerts", summary["open_alerts"])
    columns[3].metric("High priority", summary["high_priority"])

    points = map_layers.animal_points(positions, animals, now)
    paths = map_layers.track_paths(tracks)
    deck = map_layers.build_deck(
        data.geography(url),
        points,
        paths,
        rings,
        focus_animal_id=None if focus == NO_FOCUS else focus,
        online_tiles=bool(st.session_state.get("online_tiles", False)),
    )
    map_column, table_column = st.columns([5, 2])
    with map_column:
        # A new key per focus starts each focused map with no selection left over.
        state = st.pydeck_chart(
            deck,
            height=620,
            alt=f"Map of the reserve with {len(points)} collared animals and {len(rings)} open alerts",
            on_select="rerun",
            selection_mode="single-object",
            key=f"live-map-{focus}",
        )
    picked = map_layers.selected_animal_id(state.selection.objects) if state is not None else None
    if picked is not None and picked != focus:
        st.session_state[FOCUS_FROM_MAP_KEY] = picked
        st.rerun(scope="app")
    with table_column:
        st.dataframe(views.live_table(points, animals, now, low_battery_mv), hide_index=True)
        st.markdown(LEGEND)
    clock = "newest report" if options.clock == "data" else "control-room clock"
    st.caption(
        f"Now {views.format_time(now)} UTC ({clock}) · tracks: {hours} h up to the latest fix"
        + (f" ({views.format_time(latest_fix)} UTC)" if latest_fix else "")
        + f" · {role.describe_positions()}"
    )
    # One audit line when a session starts watching, and whenever who or what it watches changes.
    watching = (viewer, focus)
    if st.session_state.get("_watching") != watching:
        st.session_state["_watching"] = watching
        logger.info("live positions viewed", extra={"viewer": viewer, "animals": len(points), "focus": focus})


st.title("Live map")
if not animal_list:
    st.info("No collared animals yet. Register collars with the bridge and they appear here.")
live_panel()
