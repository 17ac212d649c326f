"""Who looks at the dashboard: the signed-in viewer, and what their role may see and do.

The policy itself (roles, exact / coarsened / delayed positions, high-value animals) lives in the
bridge, `lora_bridge.access`, and is applied by the service layer: pages get only what the viewer
may see, whatever they ask for. This module hands the pages the viewer of the session:

    viewer = roles.current_viewer()          # st.session_state[VIEWER_KEY], set by the login gate
    role = roles.role(viewer.role)           # title, exact_positions, handles_alerts, may(...)
"""

from __future__ import annotations

import streamlit as st

from lora_bridge.access.roles import ADMIN, ROLES, VISITOR, Role, Viewer, role

__all__ = ["ANY_ROLE", "DEFAULT_ROLE", "ROLES", "VIEWER_KEY", "Role", "Viewer", "admits", "current_viewer", "role"]

# The key of st.session_state under which app.py keeps the signed-in `lora_bridge.access.Viewer`.
VIEWER_KEY = "tembo_viewer"
# A dashboard started without a role is a ranger's (control room), behind the login gate.
DEFAULT_ROLE = "ranger"
# A dashboard for every account (`--role any`, the demo's): each signs in and sees what its own role
# allows (the pages and the precision of positions follow the account's role, never the dashboard's).
ANY_ROLE = "any"


def admits(dashboard_role: str, account_role: str) -> bool:
    """True when an account of account_role may sign in to a dashboard started for dashboard_role:
    one of its own role, an admin anywhere, every account on a dashboard for any role."""
    return dashboard_role == ANY_ROLE or account_role in (dashboard_role, ADMIN)


def current_viewer() -> Viewer:
    """The viewer of this session (set by app.py before any page runs); a page run without one
    (it cannot happen through app.py) sees as a visitor, the role that sees least."""
    viewer = st.session_state.get(VIEWER_KEY)
    if isinstance(viewer, Viewer):
        return viewer
    return Viewer("unsigned", VISITOR)
