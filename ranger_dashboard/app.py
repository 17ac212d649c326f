"""Tembo ranger dashboard: live map, alerts and animals, read through `lora_bridge.service`.

Run with `streamlit run ranger_dashboard/app.py -- --database-url sqlite:///var/tembo.db`
(or `ranger_dashboard.launch.command(port, database_url)`); without `--database-url` the
TEMBO_DATABASE_URL environment variable, then `sqlite:///var/tembo.db`, is used.
"""

from __future__ import annotations

import logging
from functools import cache

import streamlit as st
from PIL import Image, ImageDraw

from ranger_dashboard import config, data, logs, navigation, palette, roles, selection

logger = logging.getLogger("ranger_dashboard.app")


@cache
def favicon() -> Image.Image:
    """The browser tab's icon, drawn here so that no icon is fetched from the internet."""
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse(
        (2, 2, 62, 62),
        fill=palette.THEME["secondaryBackgroundColor"],
        outline=palette.THEME["primaryColor"],
        width=5,
    )
    draw.ellipse((22, 22, 42, 42), fill=palette.THEME["primaryColor"])
    return image


st.set_page_config(page_title="Tembo · Rangers", page_icon=favicon(), layout="wide")

logs.configure()
options = config.options()
url = options.database_url
try:
    open_count = data.nav_alert_count(url)  # the live panels redraw the page when theirs differs
except Exception as error:  # the store is down or the URL is wrong: say so instead of a traceback
    logger.exception("dashboard cannot read the store", extra={"database_url": data.safe_url(url)})
    st.error(f"The dashboard cannot read the Tembo store at {data.safe_url(url)}: {error}")
    st.stop()

with st.sidebar:
    st.markdown("### :material/pets: Tembo")
    role = roles.role(options.role)
    st.caption(f"{role.title} view · {role.describe_positions()}")
    st.text_input(
        "Your name",
        key=selection.RANGER_KEY,
        placeholder="Ranger's name",
        help="Acknowledged and resolved alerts carry this name; views of live positions are logged with it.",
    )

st.navigation(
    [
        navigation.live_map_page(),
        navigation.alerts_page(open_count),
        navigation.animals_page(),
        navigation.fleet_page(),
        navigation.geofences_page(),
        navigation.models_page(),
        navigation.updates_page(),
    ]
).run()
