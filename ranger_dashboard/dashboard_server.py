"""The ranger dashboard as a Streamlit `st.App`: app.py plus the two routes that carry a sign-in in
an HttpOnly cookie (`ranger_dashboard.cookie_routes`, `ranger_dashboard.session_cookie`) and the
live map's name tiles and tracks (`ranger_dashboard.name_routes`, `ranger_dashboard.track_routes`).

`streamlit run ranger_dashboard/dashboard_server.py -- --database-url URL --role ranger` (what
`ranger_dashboard.launch.command` runs) finds `app` below and serves it with Streamlit's own
server; the script arguments reach app.py as they would with `streamlit run app.py`. The server keeps
the pages' compiled scripts while nobody is connected (`ranger_dashboard.compiled_scripts`).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

# The bridge's service layer (SQLAlchemy, geopandas, shapely and pyproj under it: seconds to import)
# is loaded as the server starts, not in the page run of the first ranger to visit.
import lora_bridge.service  # noqa: F401
from ranger_dashboard import compiled_scripts, cookie_routes, name_routes, track_routes
from ranger_dashboard.night_page import NightPage

# app.py and the pages compiled once per change of their file, not again on every lone ranger's visit.
compiled_scripts.install()

APP_SCRIPT = Path(__file__).resolve().parent / "app.py"

# NightPage: the page's HTML shell starts in the night theme (no light flash before it arrives).
# name_routes: the live map's names, as tiles for the zoom the ranger looks at; track_routes: its
# tracks, fetched after the map's first frame.
app = st.App(
    APP_SCRIPT,
    routes=cookie_routes.routes() + name_routes.routes() + track_routes.routes(),
    middleware=[Middleware(NightPage)],
)
