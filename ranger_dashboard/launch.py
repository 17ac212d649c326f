"""The command line that starts Tembo's ranger dashboard (used by `tembo dashboard` and `tembo demo`)."""

from __future__ import annotations

import sys
from pathlib import Path

from ranger_dashboard.config import DEFAULT_DATABASE_URL, DEFAULT_REFRESH_S, DashboardOptions
from ranger_dashboard.palette import THEME
from ranger_dashboard.roles import DEFAULT_ROLE

APP_PATH = Path(__file__).resolve().parent / "app.py"
DEFAULT_PORT = 8501
ADDRESS = "127.0.0.1"


def command(
    port: int = DEFAULT_PORT,
    database_url: str = DEFAULT_DATABASE_URL,
    *,
    role: str = DEFAULT_ROLE,
    clock: str = "wall",
    refresh_s: float = DEFAULT_REFRESH_S,
) -> list[str]:
    """`streamlit run` for the dashboard on 127.0.0.1:`port`, reading `database_url`.

    Headless (no browser is opened), no usage statistics sent, no file watcher, night theme.
    The dashboard's own options go to the app after streamlit's `--`: `role` says what its users
    may see and do (see `ranger_dashboard.roles`), `clock="data"` measures
    ages from the newest report (for replays and the accelerated demo), `refresh_s` is how often
    the live panel redraws.
    """
    options = DashboardOptions(database_url=database_url, clock=clock, refresh_s=refresh_s, role=role)
    if not 0 < int(port) < 65536:
        raise ValueError(f"port must be 1..65535, got {port}")
    theme_flags = [item for key, value in THEME.items() for item in (f"--theme.{key}", value)]
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.headless",
        "true",
        "--server.address",
        ADDRESS,
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
