"""Tembo ranger dashboard: live map, alerts and animals, read through `lora_bridge.service`.

Run with `streamlit run ranger_dashboard/dashboard_server.py -- --database-url sqlite:///var/tembo.db`
(app.py with the routes that keep a sign-in in a cookie; or `ranger_dashboard.launch.command(port,
database_url)`); without `--database-url` the
TEMBO_DATABASE_URL environment variable, then `sqlite:///var/tembo.db`, is used.

Nobody sees anything before the login gate (`login.py`) says who they are; a `--role visitor`
dashboard is a kiosk that sees as a visitor without signing in. The pages find the viewer in
`st.session_state[roles.VIEWER_KEY]` and the navigation lists only the pages its role may use.
"""

from __future__ import annotations

import logging
from functools import cache

import streamlit as st
from PIL import Image, ImageDraw

from lora_bridge.access import VISITOR
from lora_bridge.errors import StoreNotOpened, is_transient_store_error
from ranger_dashboard import config, data, login, logs, navigation, palette, roles

logger = logging.getLogger("ranger_dashboard.app")


@cache
def favicon() -> Image.Image:
    """The browser tab's icon, drawn here so that no icon is fetched from the internet."""
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse(
        (2, 2, 62, 62),
        fill=palette.THEME["secondaryBackgroundColor"],
        outline=palette.ACCENT,
        width=5,
    )
    draw.ellipse((22, 22, 42, 42), fill=palette.ACCENT)
    return image


st.set_page_config(page_title="Tembo · Rangers", page_icon=favicon(), layout="wide")

logs.configure()
options = config.options()
url = options.database_url
try:
    if not data.bridge(url).healthy():
        raise RuntimeError("the store does not answer")
    viewer = login.signed_in_viewer(options)
except Exception as error:  # the store is down or the URL is wrong: say so instead of a traceback
    logger.exception("dashboard cannot read the store", extra={"database_url": data.safe_url(url)})
    if is_transient_store_error(error) and not isinstance(error, StoreNotOpened):  # busy: plain words, no SQL
        data.show_store_busy()
    st.error(f"The dashboard cannot read the Tembo store at {data.safe_url(url)}: {error}")
    st.stop()
if viewer is None:
    login.remember_requested_page()
    login.sign_in_form(options)
    st.stop()

open_count = data.nav_alert_count(url, viewer)
role = roles.role(viewer.role)
with st.sidebar:
    st.markdown("### :material/pets: Tembo")
    if options.role == VISITOR:
        st.caption(f"{role.title} · {role.describe_positions()}")
    else:
        st.caption(f"Signed in as **{viewer.username}** ({role.title}) · {role.describe_positions()}")
        login.keep_sign_in()
        if st.button("Sign out", key="sign_out", icon=":material/logout:"):
            login.sign_out(options)
            st.rerun()

pages = navigation.pages_for(viewer, open_count)
router = st.navigation(pages)
login.open_requested_page(pages)  # a link opened before signing in: its page, now
router.run()
