"""The dashboard's pages as `st.Page` objects: the router in app.py and links between pages use
the same objects, so a link always lands on the registered page (and its URL path)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

# Not "pages/": Streamlit routes a folder of that name by itself when a first visitor opens a page's
# URL before app.py has run, and the ranger gets a bare page without the sidebar.
PAGES_DIR = Path(__file__).resolve().parent / "screens"


def live_map_page() -> st.Page:
    """The live map, the default page, at /live."""
    return st.Page(
        PAGES_DIR / "live_map.py", title="Live map", icon=":material/map:", url_path="live", default=True
    )


def alerts_page(open_count: int = 0) -> st.Page:
    """The alerts page at /alerts; its title carries the number of open alerts."""
    return st.Page(
        PAGES_DIR / "alerts.py",
        title=f"Alerts ({open_count})" if open_count else "Alerts",
        icon=":material/notifications_active:",
        url_path="alerts",
    )


def animals_page() -> st.Page:
    """The animals page at /animals."""
    return st.Page(PAGES_DIR / "animals.py", title="Animals", icon=":material/pets:", url_path="animals")


def updates_page() -> st.Page:
    """The field technicians' updates page at /updates (campaigns, who runs what)."""
    return st.Page(PAGES_DIR / "updates.py", title="Updates", icon=":material/system_update:", url_path="updates")


def fleet_page() -> st.Page:
    """The field technicians' fleet health page at /fleet."""
    return st.Page(PAGES_DIR / "fleet.py", title="Fleet health", icon=":material/battery_alert:", url_path="fleet")


def geofences_page() -> st.Page:
    """The geofences page at /geofences (import, preview, send to collars)."""
    return st.Page(PAGES_DIR / "geofences.py", title="Geofences", icon=":material/fence:", url_path="geofences")


def models_page() -> st.Page:
    """The researchers' models page at /models."""
    return st.Page(PAGES_DIR / "models.py", title="Models", icon=":material/model_training:", url_path="models")
