"""The dashboard's pages as `st.Page` objects: the router in app.py and links between pages use
the same objects, so a link always lands on the registered page (and its URL path).

`pages_for(viewer)` lists the pages the viewer's role may use; a page that is not registered for
a session cannot be opened by its URL either (Streamlit routes only registered pages).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from lora_bridge.access import VISITOR, Viewer
from lora_bridge.access import roles as access

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


def audit_page() -> st.Page:
    """The audit log (admins) at /audit."""
    return st.Page(PAGES_DIR / "audit.py", title="Audit log", icon=":material/policy:", url_path="audit")


# Pages other rooms add; each shows only once its script exists, for the roles that may use it.
OPTIONAL_PAGES = (
    # (script, title, icon, url path, permission)
    # The herd register: who wears which collar since when (every role that reads collars); its forms
    # to rename an animal and fit or move a collar only for roles that may change it (manage_herd).
    ("herd.py", "Herd register", ":material/badge:", "herd", access.READ_DEVICES),
    ("fleet.py", "Fleet health", ":material/battery_charging_full:", "fleet", access.READ_FLEET),
    ("updates.py", "Updates", ":material/system_update:", "updates", access.READ_UPDATES),
    ("models.py", "Models", ":material/model_training:", "models", access.READ_MODELS),
    ("geofences.py", "Geofences", ":material/fence:", "geofences", access.MANAGE_GEOFENCES),
)


def page_paths_for(viewer: Viewer) -> list[str]:
    """The URL paths of the pages viewer's role may use, the live map first."""
    paths = ["live"]
    if viewer.role != VISITOR:  # the visitor-centre kiosk shows the herd, not the alert room
        paths.append("alerts")
    paths.append("animals")
    for script, _, _, url_path, permission in OPTIONAL_PAGES:
        if viewer.may(permission) and (PAGES_DIR / script).exists():
            paths.append(url_path)
    if viewer.may(access.READ_AUDIT):
        paths.append("audit")
    return paths


def pages_for(viewer: Viewer, open_count: int = 0) -> list[st.Page]:
    """The pages viewer's role may use, the live map first."""
    optional = {
        url_path: (script, title, icon) for script, title, icon, url_path, _ in OPTIONAL_PAGES
    }
    pages = []
    for path in page_paths_for(viewer):
        if path == "live":
            pages.append(live_map_page())
        elif path == "alerts":
            pages.append(alerts_page(open_count))
        elif path == "animals":
            pages.append(animals_page())
        elif path == "audit":
            pages.append(audit_page())
        else:
            script, title, icon = optional[path]
            pages.append(st.Page(PAGES_DIR / script, title=title, icon=icon, url_path=path))
    return pages
