"""How the dashboard is started: database, role, clock and refresh period, from its command line or env.

`streamlit run ranger_dashboard/app.py -- --database-url URL --role ranger --clock data --refresh-s 5`;
each option falls back to an environment variable (TEMBO_DATABASE_URL, TEMBO_DASHBOARD_ROLE,
TEMBO_DASHBOARD_CLOCK, TEMBO_DASHBOARD_REFRESH_S), then to the embedded default.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from lora_bridge.settings import DEFAULT_DATABASE_URL
from ranger_dashboard.roles import ANY_ROLE, DEFAULT_ROLE, ROLES

# "wall": ages are measured from the control room's clock (real collars).
# "data": from the newest report in the store (replays and the accelerated demo).
CLOCKS = ("wall", "data")
DEFAULT_REFRESH_S = 15.0
MIN_REFRESH_S = 1.0


@dataclass(frozen=True)
class DashboardOptions:
    """The dashboard's start-up options."""

    database_url: str = DEFAULT_DATABASE_URL
    clock: str = "wall"
    refresh_s: float = DEFAULT_REFRESH_S
    role: str = DEFAULT_ROLE

    def __post_init__(self) -> None:
        if self.role not in ROLES and self.role != ANY_ROLE:
            raise ValueError(f"role must be one of {sorted(ROLES)} or {ANY_ROLE!r}, got {self.role!r}")
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {self.clock!r}")
        if self.refresh_s < MIN_REFRESH_S:
            raise ValueError(f"refresh_s must be at least {MIN_REFRESH_S}, got {self.refresh_s}")

    def args(self) -> list[str]:
        """These options as the script arguments that `options()` reads back."""
        return [
            "--database-url",
            self.database_url,
            "--role",
            self.role,
            "--clock",
            self.clock,
            "--refresh-s",
            f"{self.refresh_s:g}",
        ]


def options(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> DashboardOptions:
    """The options of this dashboard process: script arguments, else environment, else defaults."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--role", default=None)
    parser.add_argument("--clock", default=None)
    parser.add_argument("--refresh-s", type=float, default=None)
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    refresh = known.refresh_s if known.refresh_s is not None else env.get("TEMBO_DASHBOARD_REFRESH_S")
    return DashboardOptions(
        database_url=known.database_url or env.get("TEMBO_DATABASE_URL") or DEFAULT_DATABASE_URL,
        clock=known.clock or env.get("TEMBO_DASHBOARD_CLOCK") or "wall",
        refresh_s=float(refresh) if refresh is not None else DEFAULT_REFRESH_S,
        role=known.role or env.get("TEMBO_DASHBOARD_ROLE") or DEFAULT_ROLE,
    )
