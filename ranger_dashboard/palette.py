"""Colours and labels of the ranger dashboard, chosen for a dark control room at night.

Colours are RGBA lists as pydeck wants them. Behaviour and priority colours are the same on the
map, in the tables and in the charts, so a ranger learns them once.
"""

from __future__ import annotations

Rgba = list[int]

# Behaviours the collar's model reports (the model's class list); anything else is drawn grey.
BEHAVIOUR_COLOURS: dict[str, Rgba] = {
    "rest": [110, 140, 200, 255],
    "forage": [90, 190, 110, 255],
    "walk": [235, 200, 80, 255],
    "run": [240, 90, 60, 255],
}
UNKNOWN_BEHAVIOUR_COLOUR: Rgba = [150, 150, 150, 255]

# What a ranger needs to know about an animal at a glance, as the colour of its dot on the map.
ANIMAL_STATES = ("normal", "alert", "offline", "collar_dropped")
STATE_COLOURS: dict[str, Rgba] = {
    "normal": [110, 200, 140, 255],
    "alert": [245, 70, 60, 255],
    "offline": [120, 130, 165, 255],
    "collar_dropped": [190, 110, 230, 255],
}
STATE_LABELS: dict[str, str] = {
    "normal": "normal",
    "alert": "open alert",
    "offline": "offline",
    "collar_dropped": "collar dropped",
}

# EarthRanger priority scale: 0 none (grey), 100 low (green), 200 medium (amber), 300 high (red).
PRIORITY_STEPS = (300, 200, 100, 0)
PRIORITY_COLOURS: dict[int, Rgba] = {
    300: [235, 50, 50, 255],
    200: [245, 160, 30, 255],
    100: [80, 180, 90, 255],
    0: [140, 140, 140, 255],
}
PRIORITY_LABELS: dict[int, str] = {300: "high", 200: "medium", 100: "low", 0: "info"}
# Colour names of st.badge / markdown for each priority step.
PRIORITY_BADGE_COLOURS: dict[int, str] = {300: "red", 200: "orange", 100: "green", 0: "gray"}

# Reserve geometry, by the GeoJSON `properties.kind` that `Bridge.geography()` sets.
GEOGRAPHY_FILL: dict[str, Rgba] = {
    "farmland": [150, 110, 50, 110],
    "water": [50, 110, 180, 150],
}
GEOGRAPHY_LINE: dict[str, Rgba] = {
    "boundary": [200, 190, 140, 255],
    "farmland": [190, 140, 70, 220],
    "water": [80, 150, 220, 230],
    "road": [160, 160, 160, 200],
}
GATEWAY_COLOUR: Rgba = [120, 220, 230, 255]
LABEL_COLOUR: Rgba = [235, 230, 215, 255]
TRACK_ALPHA = 170

# The night amber: Tembo's accent, bright on the dark page (8.2:1 on its background). Links read in it
# (the theme's linkColor), and it draws the browser tab's icon.
ACCENT = "#e0a030"
# Streamlit writes a primary button's label in white on primaryColor, and has no setting for that
# colour: white on ACCENT reads at 2.3:1. A darker amber carries white at 4.7:1 (WCAG AA: 4.5:1) and
# still stands out as a slider, a ticked box or a focus ring on the night page (4.0:1; 3:1 is asked).
PRIMARY = "#a3660a"

# Night-friendly dark theme; `launch.command` passes it to streamlit as --theme.* flags.
THEME: dict[str, str] = {
    "base": "dark",
    "primaryColor": PRIMARY,
    "linkColor": ACCENT,
    "backgroundColor": "#0e1411",
    "secondaryBackgroundColor": "#18221c",
    "textColor": "#e6e1d3",
}


def behaviour_colour(behaviour: str | None) -> Rgba:
    """Map colour of a behaviour name; grey for an unknown or missing one."""
    return list(BEHAVIOUR_COLOURS.get(behaviour or "", UNKNOWN_BEHAVIOUR_COLOUR))


def state_colour(state: str) -> Rgba:
    """Map colour of an animal state (see ANIMAL_STATES)."""
    return list(STATE_COLOURS[state])


def priority_step(priority: int) -> int:
    """The EarthRanger step (300, 200, 100 or 0) of a priority; a value between steps takes the step below it."""
    return next((step for step in PRIORITY_STEPS if priority >= step), 0)


def priority_colour(priority: int) -> Rgba:
    """Colour of an EarthRanger priority (by its step)."""
    return list(PRIORITY_COLOURS[priority_step(priority)])


def priority_label(priority: int) -> str:
    """'high', 'medium', 'low' or 'info' for an EarthRanger priority."""
    return PRIORITY_LABELS[priority_step(priority)]


def priority_badge_colour(priority: int) -> str:
    """The Streamlit colour name ('red', 'orange', 'green', 'gray') matching `priority_colour`."""
    return PRIORITY_BADGE_COLOURS[priority_step(priority)]


def track_colour(index: int) -> Rgba:
    """A distinct, muted colour for the track of the index-th animal."""
    hues = (
        [230, 180, 120],
        [140, 200, 230],
        [200, 150, 220],
        [160, 220, 160],
        [230, 140, 150],
        [220, 220, 140],
        [140, 170, 240],
        [240, 170, 200],
    )
    return [*hues[index % len(hues)], TRACK_ALPHA]
