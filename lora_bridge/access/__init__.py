"""Who may see what in Tembo: roles and location privacy, accounts, API tokens, the audit log.

    from lora_bridge.access import Viewer
    bridge.latest_positions(viewer=Viewer("amani", "ranger"))   # exact, live; logged
    bridge.latest_positions(viewer=Viewer("kiosk", "visitor"))  # 5 km grid, 24 h late; logged

The policy (roles.py) is applied inside the service layer (privacy.py), so the HTTP API and the
dashboard cannot differ.
"""

from lora_bridge.access.roles import (
    ADMIN,
    FIELD_TECHNICIAN,
    RANGER,
    RESEARCHER,
    ROLES,
    VISITOR,
    Precision,
    Role,
    Viewer,
    require,
    role,
)

__all__ = [
    "ADMIN",
    "FIELD_TECHNICIAN",
    "RANGER",
    "RESEARCHER",
    "ROLES",
    "VISITOR",
    "Precision",
    "Role",
    "Viewer",
    "require",
    "role",
]
