"""Who looks at the dashboard, and what that role may see and do.

Poachers read leaked positions, so exact live positions are for the roles that need them; other
roles see positions snapped to a coarse grid and held back by a delay. A role is chosen when a
dashboard is started (`--role`, or TEMBO_DASHBOARD_ROLE): the control room runs `ranger`, a
research office `researcher`, a screen in the visitor centre `visitor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Role:
    """What one kind of dashboard user may see and do."""

    name: str
    title: str
    exact_positions: bool
    position_grid_m: int = 0
    position_delay: timedelta = timedelta(0)
    handles_alerts: bool = False

    def __post_init__(self) -> None:
        if not self.exact_positions and self.position_grid_m <= 0:
            raise ValueError(f"role {self.name}: coarsened positions need a grid size in metres")

    def describe_positions(self) -> str:
        """How this role sees positions, in one sentence for the page."""
        if self.exact_positions:
            return "Exact live positions."
        delay_h = self.position_delay.total_seconds() / 3600
        delay = f", {delay_h:g} h late" if delay_h else ""
        return f"Positions coarsened to {self.position_grid_m / 1000:g} km{delay} ({self.title} view)."


ROLES: dict[str, Role] = {
    "ranger": Role("ranger", "Ranger", exact_positions=True, handles_alerts=True),
    "researcher": Role(
        "researcher",
        "Researcher",
        exact_positions=False,
        position_grid_m=1_000,
        position_delay=timedelta(hours=6),
    ),
    "visitor": Role(
        "visitor",
        "Visitor centre",
        exact_positions=False,
        position_grid_m=5_000,
        position_delay=timedelta(hours=24),
    ),
}
DEFAULT_ROLE = "ranger"


def role(name: str) -> Role:
    """The role called `name`; ValueError naming the known roles otherwise."""
    try:
        return ROLES[name]
    except KeyError:
        raise ValueError(f"unknown role {name!r}; expected one of {sorted(ROLES)}") from None
