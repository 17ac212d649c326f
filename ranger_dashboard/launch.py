"""The command line that starts Tembo's ranger dashboard (used by `tembo dashboard` and `tembo demo`)."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

from ranger_dashboard.config import DEFAULT_DATABASE_URL, DEFAULT_REFRESH_S, DashboardOptions
from ranger_dashboard.palette import THEME
from ranger_dashboard.roles import DEFAULT_ROLE

APP_PATH = Path(__file__).resolve().parent / "app.py"
# What `streamlit run` starts: app.py as an st.App with the routes that keep a sign-in in a cookie.
SERVER_PATH = Path(__file__).resolve().parent / "dashboard_server.py"
DEFAULT_PORT = 8501
ADDRESS = "127.0.0.1"  # the default: this machine only; 0.0.0.0 lets rangers' phones on the LAN in


def role_from_env(role: str | None = None, environ: dict[str, str] | None = None, default: str = DEFAULT_ROLE) -> str:
    """The dashboard's role: `role` when given, else TEMBO_DASHBOARD_ROLE, else default (ranger)."""
    env = os.environ if environ is None else environ
    return role or env.get("TEMBO_DASHBOARD_ROLE") or default


def command(
    port: int = DEFAULT_PORT,
    database_url: str = DEFAULT_DATABASE_URL,
    *,
    role: str | None = None,
    clock: str = "wall",
    refresh_s: float = DEFAULT_REFRESH_S,
    address: str = ADDRESS,
) -> list[str]:
    """`streamlit run` for the dashboard on `address`:`port`, reading `database_url`.

    `role` None takes TEMBO_DASHBOARD_ROLE, else ranger: `visitor` starts a kiosk that nobody signs
    in to and that sees as a visitor; any other role asks every user to sign in.

    It runs `dashboard_server.py` (app.py with the sign-in cookie routes, `session_cookie`).
    Headless (no browser is opened), no usage statistics sent, no file watcher, night theme.
    The dashboard's own options go to the app after streamlit's `--`: `role` says what its users
    may see and do (see `ranger_dashboard.roles`), `clock="data"` measures
    ages from the newest report (for replays and the accelerated demo), `refresh_s` is how often
    the live panel redraws.
    """
    options = DashboardOptions(database_url=database_url, clock=clock, refresh_s=refresh_s, role=role_from_env(role))
    if not 0 < int(port) < 65536:
        raise ValueError(f"port must be 1..65535, got {port}")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"address must be an IP address such as 127.0.0.1 or 0.0.0.0, got {address!r}") from None
    theme_flags = [item for key, value in THEME.items() for item in (f"--theme.{key}", value)]
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(SERVER_PATH),
        "--server.headless",
        "true",
        "--server.address",
        address,
        "--server.port",
        str(int(port)),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "minimal",
        *theme_flags,
        "--",
        *options.args(),
    ]
